// Flows: the events of one packet on one node joined into one record, in
// Hubble's flow shape (field names as `hubble observe -o json` prints them,
// so jq recipes written for Hubble work), plus what Membrane adds: every
// observation point crossed in order (hops), the tunnel key of an
// encapsulated packet, the drop site and the policy verdict event.
//
// Joining: events carry the packet's first bytes; packetKey() is equal for
// the events of one packet and differs between packets. A packet's events on
// one node are emitted within microseconds, so a flow is complete when a
// drop ends it or when no event of it came for JOIN_WINDOW_NS. Pure: the
// agent feeds events and the clock, and takes finished flows.
import { dropReason, dropReasonText } from '../../datapath/maps/drop-reasons.ts';
import { observationPointText, TRACE_REASONS } from '../../datapath/maps/observation-points.ts';
import { hubblePoint, type ObservedEvent } from './model.ts';
import { packetKey, parsePacket, protocolName, type ParsedPacket } from './packet.ts';

/** A packet's events on one node are this close together; a flow with nothing newer for this long is complete. */
export const JOIN_WINDOW_NS = 10_000_000n;
/** Flows being joined at once; beyond, the oldest is finished early (a flood must not grow memory). */
export const MAX_PENDING = 4096;

export interface FlowEndpoint {
  ID?: number;
  identity?: number;
  namespace?: string;
  labels?: string[];
  pod_name?: string;
}

export interface FlowHop {
  /** Hubble's observation point name, e.g. TO_OVERLAY; DROPPED for the drop itself. */
  point: string;
  /** The CLI name, e.g. to-overlay. */
  point_text: string;
  ifindex?: number;
  ifname?: string;
  /** The BPF program at this point (cil_from_container, cil_to_overlay, ...). */
  program?: string;
  time_ns: string;
  /** Conntrack state the datapath reported (new, established, reply, related, unknown). */
  state?: string;
  src_identity?: number;
  dst_identity?: number;
  /** Destination endpoint id (local delivery). */
  dst_endpoint?: number;
}

/** A flow as the API serves it: Hubble's Flow fields, then Membrane's. */
export interface Flow {
  time: string;
  uuid: string;
  verdict: 'FORWARDED' | 'DROPPED';
  drop_reason?: number;
  drop_reason_desc?: string;
  ethernet?: { source: string; destination: string };
  IP?: { source: string; destination: string; ipVersion: 'IPv4' };
  l4?: {
    TCP?: { source_port: number; destination_port: number; flags?: Record<string, boolean> };
    UDP?: { source_port: number; destination_port: number };
    ICMPv4?: { type: number; code?: number };
  };
  source?: FlowEndpoint;
  destination?: FlowEndpoint;
  Type: 'L3_L4';
  node_name: string;
  event_type: { type: number; sub_type?: number };
  trace_observation_point?: string;
  trace_reason?: string;
  is_reply?: boolean;
  traffic_direction: 'INGRESS' | 'EGRESS' | 'TRAFFIC_DIRECTION_UNKNOWN';
  interface?: { index: number; name?: string };
  Summary: string;
  // Membrane's additions.
  /** Every observation point the packet crossed on this node, in order. */
  trace_observation_points: string[];
  hops: FlowHop[];
  /** The tunnel key set for encapsulation (the DBG_ENCAP record). */
  encap?: { tunnel_endpoint: string; vni: number };
  /** Where it was dropped. */
  drop?: { reason: number; reason_desc: string; reason_text: string; file: string; line: number; ifindex?: number; ifname?: string; ext_error?: number };
  /** The policy verdict event, as decoded. */
  policy_verdict?: Record<string, unknown>;
  /** CLOCK_MONOTONIC ns of the first event. */
  time_ns: string;
}

/** What the joiner needs to know of the node (the agent's endpoints, identities, devices). */
export interface FlowContext {
  node: string;
  /** Wall clock of a CLOCK_MONOTONIC time. */
  wallTime(ns: bigint): Date;
  endpointByIP(ip: string): { id: number; identity: number; podName?: string; podNamespace?: string; labels: Record<string, string> } | undefined;
  /** Identity of a non-local address (remote pods, nodes), when known. */
  identityOfIP(ip: string): number | undefined;
  /** Labels of an identity ("k8s:app=x", "reserved:host"), when known. */
  identityLabels(id: number): string[] | undefined;
  ifname(ifindex: number): string | undefined;
}

interface Pending {
  key: string;
  events: ObservedEvent[];
  parsed: ParsedPacket;
  firstNs: bigint;
  lastNs: bigint;
}

const TYPE_CODES: Record<string, number> = { drop: 1, debug: 2, trace: 4, 'policy-verdict': 5 };
const POINT_FROM_ENDPOINT = 5;
const POINT_TO_ENDPOINT = 0;
const POINT_TO_STACK = 3;
const POINT_TO_OVERLAY = 4;
const POINT_FROM_HOST = 7;
const POINT_FROM_STACK = 8;
const POINT_FROM_OVERLAY = 9;

/** The program and the device kind at an observation point, given the point before it (who delivers decides the program). */
export function programAt(point: number, previous: number | undefined): string {
  switch (point) {
    case POINT_FROM_ENDPOINT: return 'cil_from_container';
    case POINT_TO_OVERLAY: return 'cil_to_overlay';
    case POINT_FROM_OVERLAY: return 'cil_from_overlay';
    case POINT_FROM_HOST: return 'cil_from_host';
    case POINT_FROM_STACK: return 'cil_to_container';
    case POINT_TO_ENDPOINT:
      return previous === POINT_FROM_OVERLAY ? 'tail_ipv4_from_overlay' : previous === POINT_FROM_HOST ? 'tail_ipv4_from_host' : previous === POINT_FROM_STACK ? 'cil_to_container' : 'tail_ipv4_from_lxc';
    case POINT_TO_STACK:
      return previous === POINT_FROM_ENDPOINT ? 'tail_ipv4_from_lxc' : previous === POINT_FROM_HOST ? 'tail_ipv4_from_host' : 'cil_to_host';
    default: return observationPointText(point);
  }
}

/** Hubble's DropReason enum names for Cilium's codes (flow.proto), e.g. 133 -> POLICY_DENIED. */
const HUBBLE_DROP_NAMES: Readonly<Record<number, string>> = {
  130: 'INVALID_SOURCE_MAC', 131: 'INVALID_DESTINATION_MAC', 132: 'INVALID_SOURCE_IP', 133: 'POLICY_DENIED', 134: 'INVALID_PACKET_DROPPED',
  135: 'CT_TRUNCATED_OR_INVALID_HEADER', 136: 'CT_MISSING_TCP_ACK_FLAG', 137: 'CT_UNKNOWN_L4_PROTOCOL', 139: 'UNSUPPORTED_L3_PROTOCOL',
  140: 'MISSED_TAIL_CALL', 141: 'ERROR_WRITING_TO_PACKET', 142: 'UNKNOWN_L4_PROTOCOL', 147: 'ERROR_RETRIEVING_TUNNEL_KEY',
  150: 'UNKNOWN_L3_TARGET_ADDRESS', 151: 'STALE_OR_UNROUTABLE_IP', 155: 'CT_MAP_INSERTION_FAILED', 157: 'IP_FRAGMENTATION_NOT_SUPPORTED',
  158: 'SERVICE_BACKEND_NOT_FOUND', 160: 'NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT', 163: 'UNKNOWN_CONNECTION_TRACKING_STATE',
  166: 'UNSUPPORTED_L2_PROTOCOL', 169: 'FIB_LOOKUP_FAILED', 171: 'INVALID_IDENTITY', 181: 'POLICY_DENY', 184: 'INVALID_TC_BUFFER',
  189: 'AUTH_REQUIRED', 190: 'CT_NO_MAP_FOUND', 196: 'TTL_EXCEEDED', 202: 'DROP_HOST_NOT_READY', 203: 'DROP_EP_NOT_READY',
};

export function hubbleDropName(code: number): string {
  return HUBBLE_DROP_NAMES[code] ?? dropReason(code)?.name.replace(/^DROP_/, '') ?? `DROP_REASON_${code}`;
}

let uuidSeq = 0;
const uuidPrefix = `${process.pid.toString(16)}-${Date.now().toString(16)}`;

export class FlowJoiner {
  private pending = new Map<string, Pending>();
  private seq = 0;

  constructor(private readonly ctx: FlowContext, private readonly windowNs = JOIN_WINDOW_NS, private readonly maxPending = MAX_PENDING) {}

  /** Adds events (in the order the ring buffer gave them); returns the flows they finished. */
  add(events: readonly ObservedEvent[], receivedNs: bigint): Flow[] {
    const out: Flow[] = [];
    for (const e of events) {
      const ns = e.timeNs ?? receivedNs;
      const parsed = parsePacket(e.packet);
      const key = packetKey(parsed) ?? `solo-${this.seq++}`;
      let p = this.pending.get(key);
      if (!p) {
        if (this.pending.size >= this.maxPending) {
          const oldest = this.pending.values().next().value as Pending;
          this.pending.delete(oldest.key);
          out.push(this.finish(oldest));
        }
        p = { key, events: [], parsed, firstNs: ns, lastNs: ns };
        this.pending.set(key, p);
      }
      p.events.push(e);
      if (ns > p.lastNs) p.lastNs = ns;
      // A drop ends the packet here; a trace to the overlay, a pod or the stack may still be followed (to-stack by the host's own trace).
      if (e.type === 'drop') {
        this.pending.delete(key);
        out.push(this.finish(p));
      }
    }
    return out;
  }

  /** Finishes the flows with no event in the last window (call on every poll). */
  flush(nowNs: bigint, all = false): Flow[] {
    const out: Flow[] = [];
    for (const [key, p] of this.pending) {
      if (all || p.lastNs + this.windowNs <= nowNs) {
        this.pending.delete(key);
        out.push(this.finish(p));
      }
    }
    return out;
  }

  /** The first event time of the oldest flow still being joined (a flow stream's mark must stay before it). */
  oldestPendingNs(): bigint | undefined {
    let min: bigint | undefined;
    for (const p of this.pending.values()) if (min === undefined || p.firstNs < min) min = p.firstNs;
    return min;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  private finish(p: Pending): Flow {
    return buildFlow(this.ctx, p.events, p.parsed, p.firstNs);
  }
}

/** One flow from the events of one packet (in order). Exported for tests and for the trace's own joining. */
export function buildFlow(ctx: FlowContext, events: readonly ObservedEvent[], parsed: ParsedPacket, firstNs: bigint): Flow {
  const hops: FlowHop[] = [];
  let drop: ObservedEvent | undefined;
  let encap: Flow['encap'];
  let policy: ObservedEvent | undefined;
  let lastTrace: ObservedEvent | undefined;
  let previous: number | undefined;
  let srcIdentity: number | undefined;
  let dstIdentity: number | undefined;
  for (const e of events) {
    const ns = String(e.timeNs ?? firstNs);
    if (e.srcLabel) srcIdentity ??= e.srcLabel;
    if (e.dstLabel) dstIdentity = e.dstLabel;
    if (e.type === 'trace' && typeof e.point === 'number') {
      hops.push({
        point: hubblePoint(e.point), point_text: observationPointText(e.point), ifindex: e.ifindex, ifname: e.ifindex ? ctx.ifname(e.ifindex) : undefined,
        program: programAt(e.point, previous), time_ns: ns, state: typeof e.reason === 'number' ? TRACE_REASONS[e.reason] : undefined,
        src_identity: e.srcLabel, dst_identity: e.dstLabel, dst_endpoint: e.dstId || undefined,
      });
      previous = e.point;
      lastTrace = e;
    } else if (e.type === 'debug' && typeof e.tunnelEndpoint === 'string' && typeof e.vni === 'number') {
      encap = { tunnel_endpoint: e.tunnelEndpoint, vni: e.vni };
    } else if (e.type === 'policy-verdict') {
      policy = e;
    } else if (e.type === 'drop') {
      drop = e;
      const code = e.reason ?? 0;
      hops.push({
        point: 'DROPPED', point_text: `drop (${dropReasonText(code)})`, ifindex: e.ifindex, ifname: e.ifindex ? ctx.ifname(e.ifindex) : undefined,
        time_ns: ns, src_identity: e.srcLabel, dst_identity: e.dstLabel, dst_endpoint: e.dstId || undefined,
      });
    }
  }
  const first = events[0]!;
  const ip = parsed.ipv4;
  const proto = protocolName(parsed);
  const state = lastTrace && typeof lastTrace.reason === 'number' ? TRACE_REASONS[lastTrace.reason] : undefined;
  const isReply = state === 'reply' ? true : state === 'new' || state === 'established' ? false : undefined;
  const firstPoint = events.find((e) => e.type === 'trace')?.point;
  let direction: Flow['traffic_direction'] = 'TRAFFIC_DIRECTION_UNKNOWN';
  if (firstPoint === POINT_FROM_ENDPOINT || firstPoint === POINT_FROM_HOST) direction = 'EGRESS';
  else if (firstPoint === POINT_FROM_OVERLAY || firstPoint === POINT_FROM_STACK || firstPoint === POINT_TO_ENDPOINT) direction = 'INGRESS';
  else if (drop && ip) direction = ctx.endpointByIP(ip.source)?.id === drop.source && drop.source !== 0 ? 'EGRESS' : 'INGRESS';
  // Hubble reports a reply in the direction of its connection.
  if (isReply && direction !== 'TRAFFIC_DIRECTION_UNKNOWN') direction = direction === 'EGRESS' ? 'INGRESS' : 'EGRESS';
  const endpoint = (addr: string | undefined, identity: number | undefined): FlowEndpoint | undefined => {
    if (!addr) return identity ? { identity, labels: ctx.identityLabels(identity) } : undefined;
    const ep = ctx.endpointByIP(addr);
    if (ep) {
      return {
        ID: ep.id, identity: ep.identity, namespace: ep.podNamespace ?? 'default',
        labels: [...Object.entries(ep.labels).map(([k, v]) => `${k.includes(':') ? k : `k8s:${k}`}=${v}`), `k8s:io.kubernetes.pod.namespace=${ep.podNamespace ?? 'default'}`].sort(),
        ...(ep.podName ? { pod_name: ep.podName } : {}),
      };
    }
    const id = identity ?? ctx.identityOfIP(addr);
    if (id === undefined) return undefined;
    const labels = ctx.identityLabels(id);
    const ns = labels?.find((l) => l.startsWith('k8s:io.kubernetes.pod.namespace='))?.split('=')[1];
    return { identity: id, ...(ns ? { namespace: ns } : {}), ...(labels ? { labels } : {}) };
  };
  const l4: Flow['l4'] = parsed.tcp
    ? { TCP: { source_port: parsed.tcp.sourcePort, destination_port: parsed.tcp.destinationPort, ...(Object.keys(parsed.tcp.flags).length ? { flags: parsed.tcp.flags as Record<string, boolean> } : {}) } }
    : parsed.udp ? { UDP: { source_port: parsed.udp.sourcePort, destination_port: parsed.udp.destinationPort } }
      : parsed.icmp ? { ICMPv4: { type: parsed.icmp.type, ...(parsed.icmp.code ? { code: parsed.icmp.code } : {}) } } : undefined;
  const last = drop ?? lastTrace ?? first;
  const flow: Flow = {
    time: ctx.wallTime(firstNs).toISOString(),
    uuid: `${uuidPrefix}-${(uuidSeq++).toString(16)}`,
    verdict: drop ? 'DROPPED' : 'FORWARDED',
    ...(drop ? { drop_reason: drop.reason ?? 0, drop_reason_desc: hubbleDropName(drop.reason ?? 0) } : {}),
    ...(parsed.ethernet ? { ethernet: { source: parsed.ethernet.source, destination: parsed.ethernet.destination } } : {}),
    ...(ip ? { IP: { source: ip.source, destination: ip.destination, ipVersion: 'IPv4' as const } } : {}),
    ...(l4 ? { l4 } : {}),
    source: endpoint(ip?.source, srcIdentity),
    destination: endpoint(ip?.destination, dstIdentity),
    Type: 'L3_L4',
    node_name: ctx.node,
    event_type: { type: TYPE_CODES[last.type] ?? 0, ...(last.type === 'trace' ? { sub_type: last.point } : last.type === 'drop' ? { sub_type: last.reason } : {}) },
    ...(lastTrace && typeof lastTrace.point === 'number' ? { trace_observation_point: hubblePoint(lastTrace.point) } : {}),
    ...(state && state !== 'unknown' ? { trace_reason: state.toUpperCase() } : {}),
    ...(isReply !== undefined ? { is_reply: isReply } : {}),
    traffic_direction: direction,
    ...(last.ifindex ? { interface: { index: last.ifindex, name: ctx.ifname(last.ifindex) } } : {}),
    Summary: proto && !first.summary.startsWith(proto) ? `${proto} ${first.summary}` : first.summary,
    trace_observation_points: hops.map((h) => h.point),
    hops,
    ...(encap ? { encap } : {}),
    ...(drop ? {
      drop: {
        reason: drop.reason ?? 0, reason_desc: hubbleDropName(drop.reason ?? 0), reason_text: dropReasonText(drop.reason ?? 0),
        file: String(drop.fileName ?? drop.file ?? ''), line: Number(drop.line ?? 0), ifindex: drop.ifindex,
        ifname: drop.ifindex ? ctx.ifname(drop.ifindex) : undefined, ...(drop.extError ? { ext_error: Number(drop.extError) } : {}),
      },
    } : {}),
    ...(policy ? { policy_verdict: plainEvent(policy) } : {}),
    time_ns: String(firstNs),
  };
  if (!flow.source) delete flow.source;
  if (!flow.destination) delete flow.destination;
  return flow;
}

/** An event's own fields without its bytes (for embedding). */
function plainEvent(e: ObservedEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'packet') continue;
    out[k] = typeof v === 'bigint' ? String(v) : v;
  }
  return out;
}

/** A bounded ring of the newest flows (the API's `last=N`). */
export class FlowRing {
  private readonly buf: (string | undefined)[];
  private readonly flows: (Flow | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.buf = new Array(capacity);
    this.flows = new Array(capacity);
  }

  /** Keeps the flow and its JSON (serialised once, sent to every reader as is). */
  push(flow: Flow, json: string): void {
    this.flows[this.next] = flow;
    this.buf[this.next] = json;
    this.next = (this.next + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  get size(): number {
    return this.count;
  }

  /** The newest `n` matching `keep`, oldest first. */
  last(n: number, keep: (f: Flow) => boolean = () => true): { flow: Flow; json: string }[] {
    const out: { flow: Flow; json: string }[] = [];
    for (let i = 1; i <= this.count && out.length < n; i++) {
      const at = (this.next - i + this.capacity) % this.capacity;
      const f = this.flows[at]!;
      if (keep(f)) out.push({ flow: f, json: this.buf[at]! });
    }
    return out.reverse();
  }
}
