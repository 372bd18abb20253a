// `membrane ui`: the web UI of a lab, a cluster config or this node (the
// target is chosen as for every cluster-wide command, src/cli/target.ts).
// Runs until SIGINT/SIGTERM. The server (src/ui) is imported when it runs.
import { writeFileSync, renameSync } from 'node:fs';
import { defaults } from '../../shared/defaults.ts';
import { MembraneError } from '../../shared/errors.ts';
import type { Command } from '../command.ts';
import { resolveTarget, TARGET_FLAGS, type ClusterTarget } from '../target.ts';

/** HOST:PORT (IPv4, [IPv6] or a name), checked. */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new MembraneError(`ui --listen ${s}`, { code: 'E_USAGE', cause: 'must be HOST:PORT, e.g. 127.0.0.1:12000 (port 0: any free port)' });
  return { host: (m[1] ?? m[2])!, port };
}

const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\./.test(host);

export const uiCmd: Command = {
  path: ['ui'],
  summary: 'the web UI: the cluster drawn as the seed draws a node, live flows, the packet trace, policies (serves on loopback)',
  usage: `[--listen HOST:PORT] [--lab NAME | --cluster FILE]`,
  flags: {
    listen: { type: 'string', help: `address to serve on (default ${defaults.uiListen}; the UI has no authentication: keep it on loopback)` },
    'url-file': { type: 'string', help: 'write the URL served to this file once listening (lab up uses it)' },
    'trace-level': { type: 'string', help: 'trace level the flow streams ask the agents for: 1 the first packets of each connection (default), 2 every packet' },
    ...TARGET_FLAGS,
  },
  async run(ctx) {
    const f = ctx.args.flags;
    const listen = parseListen(typeof f.listen === 'string' ? f.listen : defaults.uiListen);
    const level = f['trace-level'] === undefined ? 1 : Number(f['trace-level']);
    if (level !== 1 && level !== 2) throw new MembraneError('ui --trace-level', { code: 'E_USAGE', cause: `must be 1 or 2 (got ${JSON.stringify(f['trace-level'])})` });
    const target = await resolveTarget(ctx);
    const [{ UiServer }, sources] = await Promise.all([import('../../ui/server.ts'), sourcesOf(target)]);
    const log = (s: string) => process.stderr.write(`${new Date().toISOString()} ui: ${s}\n`);
    const targetFlags = target.kind === 'lab' ? ['--lab', target.name] : typeof f.cluster === 'string' ? ['--cluster', f.cluster] : [];
    const server = new UiServer({
      cluster: target.name, sources, host: listen.host, port: listen.port, traceLevel: level, log,
      membrane: { argv: [process.execPath, process.argv[1]!], targetFlags },
    });
    const url = await server.start();
    if (!isLoopback(listen.host)) log(`warning: listening on ${listen.host}: anyone who reaches it sees the cluster and can send probes (no authentication)`);
    ctx.out(`membrane ui: ${url} (${target.kind} ${target.name}, ${sources().length} nodes)\n`);
    if (typeof f['url-file'] === 'string') {
      const tmp = `${f['url-file']}.tmp`;
      writeFileSync(tmp, `${url}\n`, { mode: 0o600 });
      renameSync(tmp, f['url-file']);
    }
    await new Promise<void>((resolve) => {
      for (const s of ['SIGTERM', 'SIGINT'] as const) process.once(s, () => resolve());
    });
    await server.stop();
    return 0;
  },
};

/** How to reach each node of the target, asked again on every poll (a lab's record changes as nodes come and go). */
async function sourcesOf(target: ClusterTarget): Promise<() => import('../../ui/cluster.ts').UiNodeSource[]> {
  if (target.kind === 'lab') {
    const { tryLoadLab } = await import('../../lab/record.ts');
    let last = target.nodes.map((n) => ({ name: n.name, apiSocket: n.apiSocket, netns: n.exec?.[3] }));
    return () => {
      const rec = tryLoadLab(target.name);
      if (rec) last = rec.nodes.map((n) => ({ name: n.name, apiSocket: n.apiSocket, netns: n.netns, underlay: { ifname: 'eth0', address: n.nodeIP }, routingMode: rec.routingMode ?? 'tunnel' }));
      return last;
    };
  }
  // A cluster config or this node: an exec prefix `ip netns exec NS` names a netns this machine has.
  const nodes = target.nodes.map((n) => ({
    name: n.name, apiSocket: n.apiSocket,
    netns: target.kind === 'node' ? undefined : n.exec?.[0] === 'ip' && n.exec[1] === 'netns' && n.exec[2] === 'exec' ? n.exec[3] : undefined,
  }));
  if (target.kind === 'node') {
    // This process runs in the node's netns: read the devices here (withNetns(undefined) runs in place).
    return () => nodes.map((n) => ({ ...n, netns: '/proc/self/ns/net' }));
  }
  return () => nodes;
}
