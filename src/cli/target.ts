// Which cluster a cluster-wide command (policy, identity, connectivity test,
// observe, ...) talks to, found the same way by all of them:
//   --cluster FILE      a cluster config: the store, and the nodes with how
//                       to reach each (a real cluster; see docs/deploy.md)
//   --lab NAME          a lab on this machine
//   $MEMBRANE_LAB       the same
//   otherwise           the lab named "lab" if there is one, else the agent of
//                       the node this command runs on (its netns' marker)
// A lab's agents are reached through their API sockets (unix sockets are
// reachable from any netns), so nothing here needs a route into the lab.
// Heavy modules (netlink for the node marker, YAML) load only when needed:
// the command registry reads this module for every command line.
import { readFileSync } from 'node:fs';
import { DEFAULT_LAB, checkLabName } from '../lab/layout.ts';
import { labExists, loadLab } from '../lab/record.ts';
import type { StoreConfig } from '../shared/config.ts';
import { apiSocketIn, defaults } from '../shared/defaults.ts';
import { env } from '../shared/env.ts';
import { ConfigError, MembraneError } from '../shared/errors.ts';
import type { FlagSpec } from './args.ts';
import type { CommandContext } from './command.ts';

export interface TargetNode {
  name: string;
  /** The node agent's API socket, where this machine can reach it. */
  apiSocket?: string;
  /** Argv prefix that runs a command on the node (`ip netns exec lab-node-1`, `ssh root@host-1`). */
  exec?: string[];
}

export interface ClusterTarget {
  kind: 'lab' | 'cluster' | 'node';
  /** The lab's name, the cluster config's name, or the local node's. */
  name: string;
  /** Set for a cluster config: commands may use the store directly. Labs are reached through their agents. */
  store?: StoreConfig;
  nodes: TargetNode[];
}

export const TARGET_FLAGS: Record<string, FlagSpec> = {
  lab: { type: 'string', help: `the lab to act on (default $MEMBRANE_LAB, else "${DEFAULT_LAB}" if it exists, else this node's agent)` },
  cluster: { type: 'string', help: 'a cluster config (YAML: name, store, nodes[{name, exec, apiSocket}]) instead of a lab' },
};

/** Resolves the command's target from --cluster / --lab / $MEMBRANE_LAB / the default lab / this node. */
export async function resolveTarget(ctx: CommandContext): Promise<ClusterTarget> {
  const f = ctx.args.flags;
  if (typeof f.cluster === 'string') {
    if (typeof f.lab === 'string') throw new MembraneError('choose the cluster', { code: 'E_USAGE', cause: 'give --lab or --cluster, not both' });
    return readClusterConfig(f.cluster);
  }
  const explicit = (f.lab as string | undefined) ?? env().lab;
  if (explicit !== undefined) return labTarget(checkLabName(explicit));
  if (labExists(DEFAULT_LAB)) return labTarget(DEFAULT_LAB);
  const { currentNode } = await import('../datapath/node-marker.ts');
  let m: ReturnType<typeof currentNode>;
  try {
    m = currentNode();
  } catch {
    throw new MembraneError('choose the cluster', {
      code: 'E_USAGE', cause: `no --lab or --cluster given, no $MEMBRANE_LAB, no lab "${DEFAULT_LAB}", and this netns is not a node`,
      hint: 'membrane lab up, or pass --lab NAME / --cluster FILE, or run it on a node (ip netns exec NODE ...)',
    });
  }
  return { kind: 'node', name: m.nodeName, nodes: [{ name: m.nodeName, apiSocket: m.apiSocket ?? apiSocketIn(defaults.stateDir) }] };
}

export function labTarget(name: string): ClusterTarget {
  const rec = loadLab(name);
  return {
    kind: 'lab', name,
    nodes: rec.nodes.map((n) => ({ name: n.name, apiSocket: n.apiSocket, exec: ['ip', 'netns', 'exec', n.netns] })),
  };
}

/** A cluster config file, validated with every problem named. */
export async function readClusterConfig(path: string): Promise<ClusterTarget> {
  // yaml is CommonJS: imported dynamically from the split bundle its exports arrive as `default` only.
  const { parse } = (await import('yaml')).default;
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ConfigError(`read cluster config ${path}`, [(e as Error).message.split('\n')[0]!]);
  }
  const problems: string[] = [];
  const o = (raw ?? {}) as Record<string, unknown>;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(`read cluster config ${path}`, ['must be a mapping (name, store, nodes)']);
  for (const k of Object.keys(o)) if (!['name', 'store', 'nodes'].includes(k)) problems.push(`${k}: unknown key (known: name, store, nodes)`);
  const name = typeof o.name === 'string' && o.name ? o.name : (problems.push('name: required, a string'), '');
  let store: StoreConfig | undefined;
  const s = o.store as Record<string, unknown> | undefined;
  if (s !== undefined) {
    if (s.backend === 'sqlite' && typeof s.path === 'string' && s.path.startsWith('/')) store = { backend: 'sqlite', path: s.path };
    else if (s.backend === 'etcd' && Array.isArray(s.endpoints) && s.endpoints.length && s.endpoints.every((e) => typeof e === 'string')) store = { backend: 'etcd', endpoints: s.endpoints as string[] };
    else problems.push('store: must be { backend: sqlite, path: /ABS } or { backend: etcd, endpoints: [URL, ...] }');
  }
  const nodes: TargetNode[] = [];
  if (!Array.isArray(o.nodes) || o.nodes.length === 0) problems.push('nodes: required, a list of { name, exec?, apiSocket? }');
  else {
    o.nodes.forEach((n: unknown, i: number) => {
      const r = (n ?? {}) as Record<string, unknown>;
      if (typeof r.name !== 'string' || !r.name) { problems.push(`nodes[${i}].name: required, a string`); return; }
      if (r.exec !== undefined && !(Array.isArray(r.exec) && r.exec.every((a) => typeof a === 'string'))) problems.push(`nodes[${i}].exec: must be a list of strings (an argv prefix)`);
      if (r.apiSocket !== undefined && (typeof r.apiSocket !== 'string' || !r.apiSocket.startsWith('/'))) problems.push(`nodes[${i}].apiSocket: must be an absolute path`);
      nodes.push({ name: r.name, exec: r.exec as string[] | undefined, apiSocket: r.apiSocket as string | undefined });
    });
  }
  if (problems.length) throw new ConfigError(`read cluster config ${path}`, problems);
  return { kind: 'cluster', name, store, nodes };
}
