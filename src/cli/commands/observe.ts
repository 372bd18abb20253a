// `membrane observe`: flows in the style of `hubble observe`, from every node
// of the lab (or cluster, or this node): each agent joins its datapath's
// events into flows and keeps the newest in a ring (src/agent/observe);
// this asks each for the newest --last N that match, merges them by time,
// and with --follow keeps printing new ones. -o json prints one flow per
// line with Hubble's field names, so jq recipes written for Hubble work.
// Also the helpers monitor and trace share: the nodes to follow, and pod
// names resolved to IPs (a remote pod's name is known only on its node).
import type { Flow } from '../../agent/observe/flows.ts';
import type { Command, CommandContext } from '../command.ts';
import { followStreams, TimeMerge } from '../stream-merge.ts';
import { resolveTarget, TARGET_FLAGS, type TargetNode } from '../target.ts';

export interface PodRef {
  node: string;
  name: string;
  namespace: string;
  ip: string;
  id: number;
  identity: number;
  apiSocket: string;
}

/** The target's nodes with an API socket, narrowed to --node when given. */
export async function observedNodes(ctx: CommandContext, what: string): Promise<(TargetNode & { apiSocket: string })[]> {
  const { MembraneError } = await import('../../shared/errors.ts');
  const target = await resolveTarget(ctx);
  const want = ctx.args.flags.node as string | undefined;
  let nodes = target.nodes;
  if (want !== undefined) {
    nodes = nodes.filter((n) => n.name === want);
    if (!nodes.length) throw new MembraneError(`${what} --node ${want}`, { code: 'E_NOT_FOUND', cause: `no node ${want} in ${target.kind} ${target.name} (nodes: ${target.nodes.map((n) => n.name).join(', ')})` });
  }
  const noSocket = nodes.filter((n) => !n.apiSocket);
  if (noSocket.length) {
    throw new MembraneError(what, { code: 'E_USAGE', cause: `node ${noSocket.map((n) => n.name).join(', ')} has no apiSocket in the cluster config: ${what} reads each agent's API` });
  }
  return nodes as (TargetNode & { apiSocket: string })[];
}

/** Every pod of the given nodes, from their agents (a node whose agent does not answer is skipped). */
export async function listPods(nodes: (TargetNode & { apiSocket: string })[]): Promise<PodRef[]> {
  const { apiCall } = await import('../../api/client.ts');
  const all = await Promise.all(nodes.map(async (n) => {
    try {
      const eps = await apiCall<{ id: number; ip: string; identity: number; podName?: string; podNamespace?: string; containerID: string }[]>(n.apiSocket, 'GET', '/v1/endpoints', undefined, { timeoutMs: 10_000 });
      return eps.map((e) => ({ node: n.name, name: e.podName ?? e.containerID, namespace: e.podNamespace ?? 'default', ip: e.ip, id: e.id, identity: e.identity, apiSocket: n.apiSocket }));
    } catch {
      return [];
    }
  }));
  return all.flat();
}

/** The pods a --pod/--from-pod/--to-pod value names: "name", "namespace/name", or an IPv4 address. */
export async function findPods(pods: PodRef[], ref: string, what: string): Promise<PodRef[]> {
  const { MembraneError } = await import('../../shared/errors.ts');
  const slash = ref.indexOf('/');
  const hits = pods.filter((p) => p.ip === ref || (slash < 0 ? p.name === ref : p.namespace === ref.slice(0, slash) && p.name === ref.slice(slash + 1)));
  if (!hits.length && !/^\d+\.\d+\.\d+\.\d+$/.test(ref)) {
    throw new MembraneError(what, { code: 'E_NOT_FOUND', cause: `no pod ${ref} on any node (pods: ${pods.map((p) => p.name).slice(0, 20).join(', ') || 'none'})` });
  }
  return hits;
}

/** The IPs a pod reference stands for (an address stands for itself). */
export async function podIPs(pods: PodRef[], ref: string, what: string): Promise<string[]> {
  const hits = await findPods(pods, ref, what);
  return hits.length ? hits.map((p) => p.ip) : [ref];
}

function endpointText(ep: Flow['source'], ip: string | undefined, port: number | undefined): string {
  const where = ep?.pod_name ? `${ep.namespace ?? 'default'}/${ep.pod_name}` : ip ?? '?';
  const p = port !== undefined ? `:${port}` : '';
  const id = ep?.identity !== undefined ? ` (ID:${ep.identity})` : '';
  return `${where}${p}${id}`;
}

const month = (d: Date) => d.toLocaleString('en-US', { month: 'short', timeZone: 'UTC' });

/** A flow as `hubble observe` prints it, plus the node and every point crossed. */
export function flowLine(f: Flow): string {
  const d = new Date(f.time);
  const t = `${month(d)} ${String(d.getUTCDate()).padStart(2, ' ')} ${d.toISOString().slice(11, 23)}`;
  const l4 = f.l4?.TCP ?? f.l4?.UDP;
  const src = endpointText(f.source, f.IP?.source, l4?.source_port);
  const dst = endpointText(f.destination, f.IP?.destination, l4?.destination_port);
  const points = f.trace_observation_points.filter((p) => p !== 'DROPPED').map((p) => p.toLowerCase().replace(/_/g, '-')).join(',');
  const verdict = f.verdict === 'DROPPED' ? `DROPPED (${f.drop?.reason_text ?? f.drop_reason_desc})${f.drop ? ` at ${f.drop.file}:${f.drop.line}` : ''}` : 'FORWARDED';
  const what = f.l4?.ICMPv4 ? `ICMPv4 ${f.l4.ICMPv4.type === 8 ? 'EchoRequest' : f.l4.ICMPv4.type === 0 ? 'EchoReply' : `type ${f.l4.ICMPv4.type}`}` : f.l4?.TCP ? `TCP Flags: ${Object.keys(f.l4.TCP.flags ?? {}).join(', ')}` : f.l4?.UDP ? 'UDP' : f.Summary;
  // As hubble prints a reply: its connection's direction, the reply's source on the right.
  const pair = f.is_reply ? `${dst} <- ${src}` : `${src} -> ${dst}`;
  return `${t} [${f.node_name}]: ${pair} ${points || '-'} ${verdict} (${what})\n`;
}

export const observeCmd: Command = {
  path: ['observe'],
  summary: 'flows (Hubble-style) from every node: source, destination, verdict, drop reason, observation points; --follow for live',
  usage: '[--pod P] [--from-pod P] [--to-pod P] [--verdict FORWARDED|DROPPED] [--protocol tcp|udp|icmp] [--port N] [--node N] [--last N] [--follow] [--every-packet] [-o json]',
  flags: {
    ...TARGET_FLAGS,
    node: { type: 'string', help: 'only this node\'s flows' },
    pod: { type: 'string', help: 'flows from or to this pod (NAME, NAMESPACE/NAME or an IP)' },
    fromPod: { type: 'string', help: 'flows from this pod' },
    toPod: { type: 'string', help: 'flows to this pod' },
    verdict: { type: 'string', help: 'FORWARDED or DROPPED' },
    protocol: { type: 'string', help: 'tcp, udp or icmp' },
    port: { type: 'string', help: 'source or destination port' },
    last: { type: 'string', help: 'the newest N flows of all nodes together (default 20; with --follow: of each node first, default 0)' },
    follow: { type: 'boolean', short: 'f', help: 'keep printing new flows (Ctrl-C ends)' },
    everyPacket: { type: 'boolean', help: 'while following, trace every packet at every observation point (trace level 2), not one per connection' },
    duration: { type: 'string', help: 'with --follow: stop after this many seconds' },
  },
  async run(ctx) {
    const [{ MembraneError }, { parseFlowFilter, flowFilterQuery }, { openStream }] = await Promise.all([
      import('../../shared/errors.ts'), import('../../agent/observe/filters.ts'), import('../../api/stream.ts')]);
    const f = ctx.args.flags;
    const nodes = await observedNodes(ctx, 'observe');
    const q = new URLSearchParams();
    for (const k of ['verdict', 'protocol', 'port'] as const) if (typeof f[k] === 'string') q.set(k, f[k] as string);
    // Checked here, as the agent would (one message whatever the node count).
    const filter = parseFlowFilter(q, 'E_USAGE');
    if (f.pod || f.fromPod || f.toPod) {
      const pods = await listPods(nodes);
      if (typeof f.pod === 'string') { filter.pod = f.pod; filter.ip = await podIPs(pods, f.pod, 'observe --pod'); }
      if (typeof f.fromPod === 'string') { filter.fromPod = f.fromPod; filter.fromIP = await podIPs(pods, f.fromPod, 'observe --from-pod'); }
      if (typeof f.toPod === 'string') { filter.toPod = f.toPod; filter.toIP = await podIPs(pods, f.toPod, 'observe --to-pod'); }
    }
    const query = flowFilterQuery(filter);
    const follow = f.follow === true;
    const lastRaw = f.last as string | undefined;
    if (lastRaw !== undefined && !/^\d{1,7}$/.test(lastRaw)) throw new MembraneError('observe --last', { code: 'E_USAGE', cause: `must be a number (got ${JSON.stringify(lastRaw)})` });
    query.set('last', lastRaw ?? (follow ? '0' : '20'));
    if (follow) {
      query.set('follow', '1');
      query.set('level', f.everyPacket ? '2' : '1');
    }
    const durRaw = f.duration as string | undefined;
    if (durRaw !== undefined && !(Number(durRaw) > 0)) throw new MembraneError('observe --duration', { code: 'E_USAGE', cause: `must be a positive number of seconds (got ${JSON.stringify(durRaw)})` });
    const print = (v: Record<string, unknown>) => {
      if (v.flow) ctx.out(ctx.json ? `${JSON.stringify(v)}\n` : flowLine(v.flow as Flow));
      else if (v.lost_events) {
        const l = v.lost_events as { source: string; num_events_lost: number };
        ctx.out(ctx.json ? `${JSON.stringify(v)}\n` : `EVENTS LOST: ${l.source} ${l.num_events_lost} [${v.node_name as string}]\n`);
      } else if (v.kind === 'error') throw new MembraneError(`observe ${v.node_name as string}`, { code: 'E_API', cause: String(v.message) });
    };
    if (!follow) {
      // Each node's newest N, merged by time (oldest first, as hubble prints them).
      const got: Record<string, unknown>[] = [];
      await Promise.all(nodes.map((n) => openStream(n.apiSocket, `/v1/flows?${query}`, (v) => { if (v.flow || v.lost_events) got.push(v); }).done));
      // One CLOCK_MONOTONIC for every node of a machine: time_ns orders a lab's flows finer than time.
      const ns = (v: Record<string, unknown>) => BigInt(String((v.flow as Flow | undefined)?.time_ns ?? 0));
      got.sort((a, b) => String(a.time).localeCompare(String(b.time)) || (ns(a) < ns(b) ? -1 : ns(a) > ns(b) ? 1 : 0));
      // The newest N of all nodes together, as Hubble Relay answers --last N.
      for (const v of got.slice(-Number(query.get('last')))) print(v);
      return;
    }
    // Flows come in the order their agent finished them; they are printed in the order they began
    // (time_ns), merged across nodes by their marks (src/cli/stream-merge.ts).
    const merge = new TimeMerge<Record<string, unknown>>(nodes.map((n) => n.name), print);
    const onLine = (v: Record<string, unknown>) => {
      const mark = v.mark as { time_ns?: string } | undefined;
      if (mark) return merge.mark(String(v.node_name), BigInt(mark.time_ns ?? '0'));
      if (v.flow) merge.push(BigInt(String((v.flow as Flow).time_ns ?? '0')), v);
      else print(v);
    };
    const streams = nodes.map((n) => openStream(n.apiSocket, `/v1/flows?${query}`, onLine));
    await followStreams(streams, merge, durRaw !== undefined ? Number(durRaw) : undefined);
  },
};
