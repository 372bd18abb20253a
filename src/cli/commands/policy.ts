// `membrane policy import|get|delete|list|trace`, `membrane identity list`:
// network policy, cluster-wide. They act on the cluster chosen the same way
// for every cluster-wide command (src/cli/target.ts: --lab, $MEMBRANE_LAB,
// --cluster FILE, or this node): through any of its agents' APIs, or, for a
// cluster config with a store, on the store directly. Node-local listings of
// what the kernel enforces are `membrane bpf policy get` and `bpf ct list`
// (src/cli/commands/bpf.ts).
import { readFileSync } from 'node:fs';
import type { Command, CommandContext } from '../command.ts';
import { positional } from '../command.ts';
import { json, table } from '../output.ts';
import { TARGET_FLAGS, resolveTarget, type ClusterTarget } from '../target.ts';
import { MembraneError } from '../../shared/errors.ts';
import type { PolicyStatus } from '../../agent/policy-manager.ts';
import type { StoredPolicy } from '../../agent/policy-store.ts';
import type { TracePeer, TraceRequest, TraceResult } from '../../policy/trace.ts';

type Labels = Record<string, string>;

/** What the policy commands need of a cluster, whichever way it is reached. */
interface PolicyApi {
  importPolicies(documents: unknown[]): Promise<{ imported: string[]; revision: number }>;
  listPolicies(): Promise<{ policies: StoredPolicy[]; revision: number }>;
  deletePolicy(id: string): Promise<{ deleted: string; revision: number }>;
  identities(): Promise<{ id: number; labels: Labels }[]>;
  trace(req: TraceRequest): Promise<TraceResult>;
  /** Every node's policy status (for --wait); nodes that do not answer are listed with an error. */
  nodeStatus(): Promise<{ node: string; status?: PolicyStatus; error?: string }[]>;
  /** Every endpoint of every node, for resolving pod names. */
  endpoints(): Promise<{ node: string; podName?: string; podNamespace?: string; identity: number; labels: Labels; ip: string }[]>;
  close(): Promise<void>;
}

async function viaAgents(t: ClusterTarget): Promise<PolicyApi> {
  const { apiCall } = await import('../../api/client.ts');
  const reachable = t.nodes.filter((n) => n.apiSocket);
  if (!reachable.length) throw new MembraneError(`reach cluster ${t.name}`, { code: 'E_USAGE', cause: 'no node with an agent socket this machine can reach, and no store in the cluster config' });
  /** The first agent that answers: any agent reads and writes the same store. */
  const any = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    let last: unknown;
    for (const n of reachable) {
      try {
        return await apiCall<T>(n.apiSocket!, method, path, body, { timeoutMs: 10_000 });
      } catch (e) {
        if ((e as MembraneError).code !== 'E_UNAVAILABLE') throw e;
        last = e;
      }
    }
    throw last;
  };
  return {
    importPolicies: (documents) => any('POST', '/v1/policies', { documents }),
    listPolicies: () => any('GET', '/v1/policies'),
    deletePolicy: (id) => any('DELETE', `/v1/policies/${id.split('/').map(encodeURIComponent).join('/')}`),
    identities: () => any('GET', '/v1/identities'),
    trace: (req) => any('POST', '/v1/policy/trace', req),
    nodeStatus: () => Promise.all(reachable.map(async (n) => {
      try {
        return { node: n.name, status: await apiCall<PolicyStatus>(n.apiSocket!, 'GET', '/v1/policy', undefined, { timeoutMs: 2_000 }) };
      } catch (e) {
        return { node: n.name, error: (e as Error).message };
      }
    })),
    endpoints: async () => (await Promise.all(reachable.map(async (n) => {
      const eps = await apiCall<{ podName?: string; podNamespace?: string; identity: number; labels: Labels; ip: string }[]>(n.apiSocket!, 'GET', '/v1/endpoints', undefined, { timeoutMs: 2_000 }).catch(() => []);
      return eps.map((e) => ({ node: n.name, ...e }));
    }))).flat(),
    close: async () => {},
  };
}

async function viaStore(t: ClusterTarget): Promise<PolicyApi> {
  const [{ openPolicyStore }, agents] = await Promise.all([import('../../agent/policy-store.ts'), viaAgents(t).catch(() => undefined)]);
  const ps = await openPolicyStore(t.store!);
  return {
    importPolicies: (documents) => ps.importPolicies(documents),
    listPolicies: () => ps.listPolicies(),
    deletePolicy: (id) => ps.deletePolicy(id),
    identities: () => ps.identities(),
    trace: (req) => ps.trace(req),
    // Per-node state needs the agents: a cluster config may name their sockets where this machine reaches them.
    nodeStatus: async () => agents ? agents.nodeStatus() : [],
    endpoints: async () => agents ? agents.endpoints() : [],
    close: () => ps.close(),
  };
}

async function clusterApi(ctx: CommandContext): Promise<{ api: PolicyApi; target: ClusterTarget }> {
  const target = await resolveTarget(ctx);
  return { target, api: target.store ? await viaStore(target) : await viaAgents(target) };
}

/** Runs `fn` with the cluster's API, closing it afterwards. */
async function withApi<T>(ctx: CommandContext, fn: (api: PolicyApi, target: ClusterTarget) => Promise<T>): Promise<T> {
  const { api, target } = await clusterApi(ctx);
  try {
    return await fn(api, target);
  } finally {
    await api.close();
  }
}

/** Waits until every reachable node enforces at least `revision` (its policy status), up to `ms`. */
async function waitEnforced(api: PolicyApi, revision: number, ms: number): Promise<{ node: string; ms: number }[]> {
  const t0 = performance.now();
  const done = new Map<string, number>();
  for (;;) {
    const all = await api.nodeStatus();
    for (const s of all) if (!done.has(s.node) && s.status && s.status.revision >= revision && s.status.appliedAt) done.set(s.node, performance.now() - t0);
    if (all.every((s) => done.has(s.node))) return [...done].map(([node, t]) => ({ node, ms: t }));
    if (performance.now() - t0 > ms) {
      const late = all.filter((s) => !done.has(s.node)).map((s) => `${s.node}${s.error ? ` (${s.error})` : ` (at revision ${s.status?.revision})`}`);
      throw new MembraneError('wait for the policy to be enforced', { code: 'E_UNAVAILABLE', cause: `after ${ms} ms not on ${late.join(', ')}` });
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

export const policyImport: Command = {
  path: ['policy', 'import'],
  summary: 'validate a CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy file (YAML or JSON) and store it; every agent enforces it',
  usage: 'FILE [--wait] [--lab NAME | --cluster FILE]',
  flags: { ...TARGET_FLAGS, wait: { type: 'boolean', help: 'wait until every node enforces it, and say how long that took' } },
  async run(ctx) {
    const file = positional(ctx, 'policy import', 'FILE');
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new MembraneError(`import policy file ${file}`, { code: 'E_CONFIG', cause: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
    }
    // Validated here, with lines and columns, before anything is sent: a bad file changes nothing.
    const { parsePolicies } = await import('../../policy/document.ts');
    const { policies, warnings } = parsePolicies(text, { source: file, operation: 'import policy file' });
    const { formatProblem } = await import('../../policy/document.ts');
    for (const w of warnings) process.stderr.write(`warning: ${formatProblem(w)}\n`);
    const t0 = performance.now();
    await withApi(ctx, async (api) => {
      const r = await api.importPolicies(policies.map((p) => p.raw));
      const enforced = ctx.args.flags.wait ? await waitEnforced(api, r.revision, 30_000) : undefined;
      if (ctx.json) return void ctx.out(json({ ...r, enforced }));
      ctx.out(`imported ${r.imported.join(', ')} (store revision ${r.revision})\n`);
      if (enforced) ctx.out(`enforced on ${enforced.length} nodes ${(performance.now() - t0).toFixed(0)} ms after the import started (${enforced.map((e) => `${e.node} ${e.ms.toFixed(0)} ms`).join(', ')})\n`);
    });
  },
};

export const policyList: Command = {
  path: ['policy', 'list'],
  summary: 'the policies in the cluster store',
  flags: TARGET_FLAGS,
  async run(ctx) {
    await withApi(ctx, async (api) => {
      const { policies } = await api.listPolicies();
      if (ctx.json) return void ctx.out(json(policies.map(({ document: _d, ...p }) => p)));
      ctx.out(table(['NAME', 'KIND', 'REVISION'], policies.map((p) => [p.id, p.kind, p.revision])));
    });
  },
};

export const policyGet: Command = {
  path: ['policy', 'get'],
  summary: 'a policy (or all) as stored, in YAML (-o json: JSON)',
  usage: '[NAME | NAMESPACE/NAME] [--lab NAME | --cluster FILE]',
  flags: TARGET_FLAGS,
  async run(ctx) {
    const want = ctx.args.positionals[0];
    await withApi(ctx, async (api) => {
      const { policies } = await api.listPolicies();
      const chosen = want === undefined ? policies : policies.filter((p) => p.id === want || (!want.includes('/') && p.name === want));
      if (want !== undefined && !chosen.length) throw new MembraneError(`get policy ${want}`, { code: 'E_NOT_FOUND', cause: `no such policy (there are: ${policies.map((p) => p.id).join(', ') || 'none'})` });
      if (ctx.json) return void ctx.out(json(chosen.map((p) => p.document)));
      // yaml is CommonJS: imported dynamically from the split bundle its exports arrive as `default` only (as under Node, too).
      const { stringify } = (await import('yaml')).default;
      ctx.out(chosen.map((p) => stringify(p.document)).join('---\n'));
    });
  },
};

export const policyDelete: Command = {
  path: ['policy', 'delete'],
  summary: 'remove a policy from the cluster store; every agent stops enforcing it',
  usage: 'NAME | NAMESPACE/NAME [--wait] [--lab NAME | --cluster FILE]',
  flags: { ...TARGET_FLAGS, wait: { type: 'boolean', help: 'wait until every node enforces the change' } },
  async run(ctx) {
    const id = positional(ctx, 'policy delete', 'NAME');
    await withApi(ctx, async (api) => {
      const r = await api.deletePolicy(id);
      if (ctx.args.flags.wait) await waitEnforced(api, r.revision, 30_000);
      if (ctx.json) return void ctx.out(json(r));
      ctx.out(`deleted ${r.deleted}\n`);
    });
  },
};

export const identityList: Command = {
  path: ['identity', 'list'],
  summary: 'security identities: reserved ones, the cluster\'s (from the store) and this node\'s CIDR identities, with their labels',
  flags: TARGET_FLAGS,
  async run(ctx) {
    await withApi(ctx, async (api) => {
      const ids = await api.identities();
      if (ctx.json) return void ctx.out(json(ids));
      ctx.out(table(['ID', 'LABELS'], ids.map((i) => [i.id, Object.entries(i.labels).map(([k, v]) => (v ? `${k}=${v}` : k)).join(' ')])));
    });
  },
};

/** "web" (a pod), "default/web", "app=web,tier=front" (labels), "host" / a node name, or an IP address outside the cluster. */
async function peer(api: PolicyApi, spec: string, role: 'src' | 'dst', other: string): Promise<TracePeer> {
  const what = `policy trace --${role} ${spec}`;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(spec)) {
    const ep = (await api.endpoints()).find((e) => e.ip === spec);
    if (ep) return { kind: 'endpoint', identity: ep.identity, labels: withSources(ep.labels, ep.podNamespace), name: ep.podName ?? spec };
    return { kind: 'address', address: spec };
  }
  if (spec.includes('=')) {
    const labels: Labels = {};
    for (const kv of spec.split(',')) {
      const [k, ...v] = kv.split('=');
      if (!k) throw new MembraneError(what, { code: 'E_USAGE', cause: `"${kv}" is not KEY=VALUE` });
      labels[k] = v.join('=');
    }
    const want = withSources(labels, labels['io.kubernetes.pod.namespace'] ?? 'default');
    const match = (await api.identities()).find((i) => sameLabels(i.labels, want));
    return { kind: 'endpoint', identity: match?.id ?? 0, labels: want, name: spec };
  }
  if (spec === 'host' || spec === 'node') {
    // The node the other end is on sees its own host as identity 1.
    return { kind: 'host', identity: 1, labels: { 'reserved:host': '' }, name: `host (of ${other})` };
  }
  const [ns, name] = spec.includes('/') ? spec.split('/', 2) as [string, string] : [undefined, spec];
  const eps = (await api.endpoints()).filter((e) => e.podName === name && (ns === undefined || (e.podNamespace ?? 'default') === ns));
  if (eps.length === 1) {
    const e = eps[0]!;
    return { kind: 'endpoint', identity: e.identity, labels: withSources(e.labels, e.podNamespace), name: `${e.podNamespace ?? 'default'}/${name} on ${e.node}` };
  }
  throw new MembraneError(what, {
    code: 'E_USAGE', cause: eps.length ? `${eps.length} pods are named ${spec}: give NAMESPACE/NAME` : `no pod ${spec} (give a pod name, KEY=VALUE labels, "host" or an IP address)`,
  });
}

/** Pod labels as identities carry them: `k8s:` source, plus the namespace label. */
function withSources(labels: Labels, namespace = 'default'): Labels {
  const out: Labels = {};
  for (const [k, v] of Object.entries(labels)) out[k.includes(':') ? k : `k8s:${k}`] = v;
  out['k8s:io.kubernetes.pod.namespace'] ??= namespace;
  return out;
}

function sameLabels(a: Labels, b: Labels): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
}

export const policyTrace: Command = {
  path: ['policy', 'trace'],
  summary: 'would a packet pass? the verdict of the source\'s egress and the destination\'s ingress policy, with the rule that decided',
  usage: '--src POD|LABELS|host|IP --dst POD|LABELS|host|IP [--dport N/PROTO] [--lab NAME | --cluster FILE]',
  flags: {
    ...TARGET_FLAGS,
    src: { type: 'string', help: 'the source: a pod name (or NAMESPACE/NAME), labels KEY=VALUE,..., "host", or an IP address' },
    dst: { type: 'string', help: 'the destination, the same ways' },
    dport: { type: 'string', help: 'destination port and protocol: 80/TCP, 53/UDP, ICMP (an echo request); default ICMP' },
  },
  async run(ctx) {
    const f = ctx.args.flags;
    if (typeof f.src !== 'string' || typeof f.dst !== 'string') throw new MembraneError('policy trace', { code: 'E_USAGE', cause: '--src and --dst are required' });
    const m = /^(?:(\d+)\/)?(TCP|UDP|SCTP|ICMP)$/i.exec(typeof f.dport === 'string' ? f.dport : 'ICMP');
    if (!m) throw new MembraneError('policy trace', { code: 'E_USAGE', cause: `--dport ${String(f.dport)}: want PORT/PROTO (80/TCP, 53/UDP) or ICMP` });
    const protocol = m[2]!.toUpperCase() as TraceRequest['protocol'];
    const dport = m[1] !== undefined ? Number(m[1]) : undefined;
    if (dport !== undefined && dport > 65535) throw new MembraneError('policy trace', { code: 'E_USAGE', cause: `--dport ${dport}: not a port (0-65535)` });
    await withApi(ctx, async (api) => {
      const src = await peer(api, f.src as string, 'src', f.dst as string);
      const dst = await peer(api, f.dst as string, 'dst', f.src as string);
      const r = await api.trace({ src, dst, protocol, ...(dport !== undefined ? { dport } : {}) });
      if (ctx.json) return void ctx.out(json(r));
      ctx.out(`${r.verdict === 'allowed' ? 'ALLOWED' : 'DENIED'}: ${r.text}\n`);
      ctx.out(`  egress of ${describe(src)} (to identity ${r.dstIdentity}): ${r.egress.text}\n`);
      ctx.out(`  ingress of ${describe(dst)} (from identity ${r.srcIdentity}): ${r.ingress.text}\n`);
    });
    function describe(p: TracePeer): string {
      return p.kind === 'address' ? p.address : `${p.name ?? p.kind} (identity ${p.identity})`;
    }
  },
};

export const policyCommands: Command[] = [policyImport, policyGet, policyList, policyDelete, policyTrace, identityList];
