// `membrane lab ...`: a multi-node lab on this machine (src/lab/), and its
// status, exec, node join/leave and teardown. Progress goes to stdout, or to
// stderr with -o json so stdout stays one JSON document.
//
// The registry reads this module for every command line, so the lab itself
// (netlink through koffi, yaml, the agent's API client) is imported inside
// run().
import { spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { checkLabName, DEFAULT_LAB } from '../../lab/layout.ts';
import type { LabStatus } from '../../lab/status.ts';
import { env } from '../../shared/env.ts';
import { MembraneError } from '../../shared/errors.ts';
import type { FlagSpec } from '../args.ts';
import { positional, type Command, type CommandContext } from '../command.ts';
import { json, table } from '../output.ts';

const NAME_FLAG: Record<string, FlagSpec> = {
  name: { type: 'string', help: `lab name (default $MEMBRANE_LAB or "${DEFAULT_LAB}")` },
};

export function labName(ctx: CommandContext): string {
  return checkLabName((ctx.args.flags.name as string | undefined) ?? env().lab ?? DEFAULT_LAB);
}

function progressOf(ctx: CommandContext): (s: string) => void {
  const t0 = Date.now();
  const w = ctx.json ? (s: string) => process.stderr.write(s) : ctx.out;
  return (line) => w(`[${((Date.now() - t0) / 1000).toFixed(2).padStart(5)}s] ${line}\n`);
}

function intFlag(ctx: CommandContext, name: string): number | undefined {
  const v = ctx.args.flags[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !/^\d+$/.test(v)) throw new MembraneError(`flag --${name}`, { code: 'E_USAGE', cause: `must be a number (got ${JSON.stringify(v)})` });
  return Number(v);
}

export function renderStatus(s: LabStatus): string {
  const head = `lab ${s.name}: ${s.state}, ${s.store} store${s.etcd ? ` (${s.etcd.endpoint}, pid ${s.etcd.pid ?? '-'}${s.etcd.running ? '' : ', not running'})` : ''}, underlay ${s.underlay.netns} ${s.underlay.bridge} ${s.underlay.gateway}/24, device MTU ${s.deviceMTU}, ${s.routingMode} routing${s.externalHost ? `, external host ${s.externalHost.ip} (${s.externalHost.netns})` : ''}${s.uiURL ? `, web UI ${s.uiURL}` : ''}\n\n`;
  const nodes = table(['NODE', 'NETNS', 'NODE IP', 'POD CIDR', 'ROUTER IP', 'AGENT'], s.nodes.map((n) => [
    n.name, n.netns, n.nodeIP, n.podCIDR, n.routerIP, `${n.agentPid ?? '-'} ${n.stopped ? 'stopped' : n.running ? 'running' : 'not running'}`,
  ]));
  const pods = table(['POD', 'NODE', 'NETNS', 'IP', 'IDENTITY', 'ENDPOINT', 'LABELS'], s.pods.map((p) => [
    p.name, p.node, p.netns, p.ip ?? undefined, p.identity ?? undefined, p.endpointID ?? undefined, Object.entries(p.labels).map(([k, v]) => `${k}=${v}`).join(','),
  ]));
  return head + nodes + '\n' + pods;
}

export const labUpCmd: Command = {
  path: ['lab', 'up'],
  summary: 'build a lab: an underlay, N node netns each running an agent, M pods per node attached through CNI',
  usage: '[--name NAME] [--nodes N] [--pods-per-node M] [--store sqlite|etcd [--etcd-tls]] [--routing tunnel|native] [--labels POD=K=V,...] [--lab-file F] [--no-ui]',
  flags: {
    ...NAME_FLAG,
    nodes: { type: 'string', help: 'number of nodes (default 2)' },
    podsPerNode: { type: 'string', help: 'pods per node (default 2)' },
    store: { type: 'string', help: 'cluster store: sqlite (default, a file in the lab dir) or etcd (the lab runs its own)' },
    etcdTls: { type: 'boolean', help: 'with --store etcd: etcd on https with client-certificate auth, certificates made for the lab (as on real hosts)' },
    noUi: { type: 'boolean', help: 'do not start the web UI (by default `membrane ui` serves the lab on a loopback port: uiURL in lab status)' },
    routing: { type: 'string', help: 'tunnel (default: VXLAN between nodes) or native (pod CIDRs routed to their node IPs over the underlay)' },
    labels: { type: 'string', help: 'extra pod labels: POD=KEY=VALUE,... (every pod has app=<pod name>)' },
    labFile: { type: 'string', help: 'YAML/JSON lab file: store, deviceMTU, nodes (count or [{pods: count | [{name, labels}]}]), podsPerNode, labels' },
  },
  async run(ctx) {
    const [{ labUp }, { buildSpec }, { statusOf }] = await Promise.all([import('../../lab/lab.ts'), import('../../lab/spec.ts'), import('../../lab/status.ts')]);
    const name = labName(ctx);
    const spec = buildSpec({
      nodes: intFlag(ctx, 'nodes'), podsPerNode: intFlag(ctx, 'podsPerNode'), store: ctx.args.flags.store as string | undefined,
      routing: ctx.args.flags.routing as string | undefined,
      labels: ctx.args.flags.labels as string | undefined, labFile: ctx.args.flags.labFile as string | undefined,
    });
    const progress = progressOf(ctx);
    // Interrupted (Ctrl-C): lab up stops at its next step and removes what it made. A second Ctrl-C kills it at once.
    const ac = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => {
      progress(`${sig}: stopping; removing what was made`);
      ac.abort();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      const etcdTls = ctx.args.flags.etcdTls === true;
      if (etcdTls && spec.store !== 'etcd') throw new MembraneError('lab up --etcd-tls', { code: 'E_USAGE', cause: 'needs --store etcd' });
      const rec = await labUp({ name, spec, progress, signal: ac.signal, etcdTls, ui: ctx.args.flags.noUi !== true });
      if (ctx.json) ctx.out(json(await statusOf(rec)));
    } catch (e) {
      if (ac.signal.aborted) return 130;
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  },
};

export const labStatusCmd: Command = {
  path: ['lab', 'status'],
  summary: 'the lab\'s nodes and pods (-o json: the stable interface, see docs/lab.md)',
  flags: NAME_FLAG,
  async run(ctx) {
    const { labStatus } = await import('../../lab/status.ts');
    const s = await labStatus(labName(ctx));
    ctx.out(ctx.json ? json(s) : renderStatus(s));
  },
};

export const labDownCmd: Command = {
  path: ['lab', 'down'],
  summary: 'remove the lab: agents, etcd, namespaces, pins, files (also after a crashed lab up; idempotent)',
  flags: NAME_FLAG,
  async run(ctx) {
    const { labDown } = await import('../../lab/lab.ts');
    const name = labName(ctx);
    const r = await labDown(name, progressOf(ctx));
    if (ctx.json) return void ctx.out(json(r));
    ctx.out(r.processes + r.namespaces.length + r.removed.length === 0 ? `lab ${name}: nothing to remove\n` : `lab ${name} removed\n`);
  },
};

export const labExecCmd: Command = {
  path: ['lab', 'exec'],
  summary: 'run a command in a pod\'s (or node\'s, or "underlay") network namespace; its exit code is passed through',
  usage: 'POD|NODE -- CMD [ARGS...]',
  flags: NAME_FLAG,
  async run(ctx) {
    const { loadLab } = await import('../../lab/record.ts');
    const target = ctx.args.positionals[0];
    const cmd = ctx.args.rest.length ? ctx.args.rest : ctx.args.positionals.slice(1);
    if (!target || !cmd.length) throw new MembraneError('lab exec', { code: 'E_USAGE', cause: 'usage: membrane lab exec POD -- CMD [ARGS...]' });
    const rec = loadLab(labName(ctx));
    const ns = target === 'underlay' ? rec.underlay.netns
      : rec.pods.find((p) => p.name === target || p.netns === target)?.netns ?? rec.nodes.find((n) => n.name === target || n.netns === target)?.netns;
    if (!ns) {
      throw new MembraneError(`lab exec ${target}`, { code: 'E_USAGE', cause: `no pod or node of that name in lab ${rec.name} (pods: ${rec.pods.map((p) => p.name).join(', ')}; nodes: ${rec.nodes.map((n) => n.name).join(', ')})` });
    }
    const r = spawnSync('ip', ['netns', 'exec', ns, ...cmd], { stdio: 'inherit' });
    if (r.error) throw new MembraneError(`lab exec ${target}: ${cmd[0]}`, { code: 'E_LAB', cause: r.error });
    if (r.signal) return 128 + (constants.signals[r.signal] ?? 0);
    return r.status ?? 1;
  },
};

export const labAddNodeCmd: Command = {
  path: ['lab', 'add-node'],
  summary: 'add one node (next index) with its pods to a running lab; waits until every node knows it',
  flags: { ...NAME_FLAG, podsPerNode: { type: 'string', help: 'pods on the new node (default 2)' } },
  async run(ctx) {
    const [{ addNode }, { statusOf }] = await Promise.all([import('../../lab/lab.ts'), import('../../lab/status.ts')]);
    const { rec, node } = await addNode(labName(ctx), intFlag(ctx, 'podsPerNode') ?? 2, progressOf(ctx));
    if (ctx.json) ctx.out(json({ node: node.name, status: await statusOf(rec) }));
  },
};

export const labStopNodeCmd: Command = {
  path: ['lab', 'stop-node'],
  summary: 'fail a node and delete it: SIGKILL its agent, remove it from the store (peers drop it at once), its netns and pods',
  usage: 'NODE [--name LAB]',
  flags: NAME_FLAG,
  async run(ctx) {
    const { stopNode } = await import('../../lab/lab.ts');
    const node = positional(ctx, 'lab stop-node', 'NODE');
    await stopNode(labName(ctx), node, progressOf(ctx));
  },
};

export const labRestartAgentCmd: Command = {
  path: ['lab', 'restart-agent'],
  summary: 'restart a node\'s agent (SIGHUP: it keeps the node in the cluster; a new one starts on the same config); no packet is lost',
  usage: 'NODE [--name LAB]',
  flags: NAME_FLAG,
  async run(ctx) {
    const { restartAgent } = await import('../../lab/lab.ts');
    const node = positional(ctx, 'lab restart-agent', 'NODE');
    const r = await restartAgent(labName(ctx), node, progressOf(ctx));
    if (ctx.json) ctx.out(json({ node: r.node.name, oldPid: r.oldPid ?? null, agentPid: r.node.agentPid ?? null }));
  },
};

export const labAddPodCmd: Command = {
  path: ['lab', 'add-pod'],
  summary: 'add one pod to a node of a running lab (CNI ADD through the plugin)',
  usage: '--node NODE [--pod NAME] [--labels K=V,...] [--name LAB]',
  flags: {
    ...NAME_FLAG,
    node: { type: 'string', help: 'the node (e.g. node-1)' },
    pod: { type: 'string', help: 'pod name (default pod-<node>-<next>)' },
    labels: { type: 'string', help: 'labels K=V,... (app=<pod name> is always set unless given)' },
  },
  async run(ctx) {
    const [{ addPod }, { parseLabels }] = await Promise.all([import('../../lab/lab.ts'), import('../../lab/spec.ts')]);
    const node = ctx.args.flags.node as string | undefined;
    if (!node) throw new MembraneError('lab add-pod', { code: 'E_USAGE', cause: '--node is required' });
    const labels = typeof ctx.args.flags.labels === 'string' ? parseLabels(ctx.args.flags.labels) : undefined;
    const p = await addPod(labName(ctx), node, { name: ctx.args.flags.pod as string | undefined, labels }, progressOf(ctx));
    // The same shape as a pod in `lab status -o json`.
    if (ctx.json) ctx.out(json({ name: p.name, node: p.node, netns: p.netns, ifname: p.ifname, ip: p.ip ?? null, labels: p.labels, identity: p.identity ?? null, endpointID: p.endpointID ?? null }));
  },
};

export const labDeletePodCmd: Command = {
  path: ['lab', 'delete-pod'],
  summary: 'delete one pod (CNI DEL, then its netns)',
  usage: 'POD [--name LAB]',
  flags: NAME_FLAG,
  async run(ctx) {
    const { deletePod } = await import('../../lab/lab.ts');
    const pod = positional(ctx, 'lab delete-pod', 'POD');
    await deletePod(labName(ctx), pod, progressOf(ctx));
  },
};

export const labEtcdStopCmd: Command = {
  path: ['lab', 'etcd', 'stop'],
  summary: 'kill the lab\'s etcd (SIGKILL: a store outage; the datapath keeps forwarding)',
  flags: NAME_FLAG,
  async run(ctx) { const { labEtcd } = await import('../../lab/lab.ts'); await labEtcd(labName(ctx), 'stop', progressOf(ctx)); },
};

export const labEtcdStartCmd: Command = {
  path: ['lab', 'etcd', 'start'],
  summary: 'start the lab\'s etcd again (same data dir and address); waits until healthy',
  flags: NAME_FLAG,
  async run(ctx) { const { labEtcd } = await import('../../lab/lab.ts'); await labEtcd(labName(ctx), 'start', progressOf(ctx)); },
};

export const labCommands: Command[] = [
  labUpCmd, labStatusCmd, labExecCmd, labAddNodeCmd, labStopNodeCmd, labRestartAgentCmd, labAddPodCmd, labDeletePodCmd, labEtcdStopCmd, labEtcdStartCmd, labDownCmd,
];
