// `membrane connectivity test`: the scenario suite against a lab
// (src/connectivity/suite.ts). One line per scenario as it completes; exit 1
// if any failed.
// The suite (netns sockets through koffi) is imported when the command runs.
import type { ScenarioResult } from '../../connectivity/suite.ts';
import type { Command, CommandContext } from '../command.ts';
import { Exit } from '../command.ts';
import { json } from '../output.ts';
import { labName } from './lab.ts';

function line(r: ScenarioResult): string {
  return `${r.status.toUpperCase()}  ${r.scenario.padEnd(22)} ${r.protocol.padEnd(8)} ${`${r.from} -> ${r.to}`.padEnd(44)} ${r.measured}\n`;
}

/** `connectivity test --cluster FILE`: src/connectivity/cluster-check.ts. */
async function clusterCheck(ctx: CommandContext, file: string): Promise<number> {
  const { loadClusterFile, runClusterCheck } = await import('../../connectivity/cluster-check.ts');
  const cluster = loadClusterFile(file);
  const r = await runClusterCheck(cluster, file, { onResult: ctx.json ? undefined : (x) => ctx.out(line(x)) });
  if (ctx.json) ctx.out(json(r));
  else {
    for (const c of r.cleanup) ctx.out(`cleanup: ${c}\n`);
    ctx.out(`\n${r.failed === 0 ? 'all' : `${r.failed} of`} ${r.passed + r.failed} checks ${r.failed === 0 ? 'passed' : 'FAILED'} (${cluster.hosts.length} hosts, ${(r.durationMs / 1000).toFixed(1)} s)\n`);
  }
  return r.failed === 0 && r.cleanup.every((c) => !/FAILED|NOT removed/.test(c)) ? Exit.OK : Exit.FAILURE;
}

export const connectivityTestCmd: Command = {
  path: ['connectivity', 'test'],
  summary: 'run the connectivity scenarios against a lab (pod/host/node paths, MTU, VXLAN on the wire, drops), or check real hosts with --cluster',
  usage: '[--name LAB] [--allow-drop REASON]... [-o json] | --cluster FILE [-o json]',
  flags: {
    name: { type: 'string', help: 'lab name (default $MEMBRANE_LAB or "lab")' },
    cluster: { type: 'string', help: 'a cluster file (hosts: [{name, exec, conflist?, cniBinDir?}]): create short-lived test pods through each host\'s installed plugin and check traffic between them (docs/deploy.md)' },
    allowDrop: { type: 'string', multiple: true, help: 'a drop reason (as `bpf metrics list` prints it) not to count as a failure; "Unsupported L3 protocol" always is' },
  },
  async run(ctx) {
    if (typeof ctx.args.flags.cluster === 'string') return clusterCheck(ctx, ctx.args.flags.cluster);
    const name = labName(ctx);
    const { runConnectivityTest } = await import('../../connectivity/suite.ts');
    const r = await runConnectivityTest(name, {
      allowDrops: ctx.args.flags.allowDrop as string[] | undefined,
      onResult: ctx.json ? undefined : (x) => ctx.out(line(x)),
    });
    if (ctx.json) ctx.out(json(r));
    else {
      const ran = r.passed + r.failed;
      const skipped = r.skipped ? `, ${r.skipped} skipped (see SKIP lines)` : '';
      ctx.out(`\n${r.failed === 0 ? 'all' : `${r.failed} of`} ${ran} scenarios ${r.failed === 0 ? 'passed' : 'FAILED'}${skipped} (lab ${name}, ${(r.durationMs / 1000).toFixed(1)} s)\n`);
    }
    return r.failed === 0 ? Exit.OK : Exit.FAILURE;
  },
};
