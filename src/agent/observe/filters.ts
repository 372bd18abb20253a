// Filters of the event and flow streams, parsed from the API's query
// parameters (the CLI sends its flags as the same parameters, so both check
// them the same way). A pod is "name" or "namespace/name"; --pod matches
// either end, --from-pod the source, --to-pod the destination. The CLI
// also resolves pod names to IPs through every node (a remote pod's name
// is known only on its own node) and sends from-ip/to-ip/ip.
import type { ErrorCode } from '../../shared/error-codes.ts';
import { isIPv4 } from '../../shared/ip.ts';
import { MembraneError } from '../../shared/errors.ts';
import type { Flow, FlowEndpoint } from './flows.ts';
import { EVENT_TYPES, type EventType } from './model.ts';

export interface FlowFilter {
  pod?: string;
  fromPod?: string;
  toPod?: string;
  ip?: string[];
  fromIP?: string[];
  toIP?: string[];
  verdict?: 'FORWARDED' | 'DROPPED';
  protocol?: 'TCP' | 'UDP' | 'ICMPv4';
  port?: number;
}

export interface EventFilter {
  types?: Set<EventType>;
  /** Events emitted by this pod's endpoint, or whose packet comes from one of fromIP. */
  fromPod?: string;
  fromIP?: string[];
}

const PROTOCOLS: Record<string, FlowFilter['protocol']> = { tcp: 'TCP', udp: 'UDP', icmp: 'ICMPv4', icmpv4: 'ICMPv4' };

function problem(op: string, code: ErrorCode, cause: string): MembraneError {
  return new MembraneError(op, { code, cause });
}

function ips(v: string | null, name: string, code: ErrorCode): string[] | undefined {
  if (v === null || v === '') return undefined;
  const list = v.split(',');
  const bad = list.filter((x) => !isIPv4(x));
  if (bad.length) throw problem('filter flows', code, `${name}: ${bad.join(', ')} is not an IPv4 address`);
  return list;
}

/** Parses flow filters from query parameters; `code` is E_BAD_REQUEST in the agent, E_USAGE in the CLI. */
export function parseFlowFilter(q: URLSearchParams, code: ErrorCode = 'E_BAD_REQUEST'): FlowFilter {
  const f: FlowFilter = {};
  const s = (k: string) => q.get(k) || undefined;
  f.pod = s('pod');
  f.fromPod = s('from-pod');
  f.toPod = s('to-pod');
  f.ip = ips(q.get('ip'), 'ip', code);
  f.fromIP = ips(q.get('from-ip'), 'from-ip', code);
  f.toIP = ips(q.get('to-ip'), 'to-ip', code);
  const verdict = s('verdict')?.toUpperCase();
  if (verdict !== undefined) {
    if (verdict !== 'FORWARDED' && verdict !== 'DROPPED') throw problem('filter flows', code, `verdict: must be FORWARDED or DROPPED (got ${JSON.stringify(s('verdict'))})`);
    f.verdict = verdict;
  }
  const proto = s('protocol');
  if (proto !== undefined) {
    f.protocol = PROTOCOLS[proto.toLowerCase()];
    if (!f.protocol) throw problem('filter flows', code, `protocol: must be tcp, udp or icmp (got ${JSON.stringify(proto)})`);
  }
  const port = s('port');
  if (port !== undefined) {
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw problem('filter flows', code, `port: must be 0..65535 (got ${JSON.stringify(port)})`);
    f.port = Number(port);
  }
  for (const [k, v] of Object.entries(f)) if (v === undefined) delete (f as Record<string, unknown>)[k];
  return f;
}

/** Whether `ep` is the pod `want` ("name" or "namespace/name"). */
export function podMatches(ep: FlowEndpoint | undefined, want: string): boolean {
  if (!ep?.pod_name) return false;
  const slash = want.indexOf('/');
  if (slash < 0) return ep.pod_name === want;
  return (ep.namespace ?? 'default') === want.slice(0, slash) && ep.pod_name === want.slice(slash + 1);
}

export function flowMatches(f: Flow, q: FlowFilter): boolean {
  const src = f.IP?.source;
  const dst = f.IP?.destination;
  if (q.verdict && f.verdict !== q.verdict) return false;
  if (q.protocol && !(f.l4 && q.protocol in f.l4)) return false;
  if (q.port !== undefined) {
    const l4 = f.l4?.TCP ?? f.l4?.UDP;
    if (!l4 || (l4.source_port !== q.port && l4.destination_port !== q.port)) return false;
  }
  // A pod name and its IPs both name the pod: either matches.
  const side = (ep: FlowEndpoint | undefined, addr: string | undefined, pod: string | undefined, ipList: string[] | undefined) =>
    (pod !== undefined && podMatches(ep, pod)) || (ipList !== undefined && addr !== undefined && ipList.includes(addr));
  if ((q.fromPod !== undefined || q.fromIP) && !side(f.source, src, q.fromPod, q.fromIP)) return false;
  if ((q.toPod !== undefined || q.toIP) && !side(f.destination, dst, q.toPod, q.toIP)) return false;
  if ((q.pod !== undefined || q.ip) && !side(f.source, src, q.pod, q.ip) && !side(f.destination, dst, q.pod, q.ip)) return false;
  return true;
}

export function parseEventFilter(q: URLSearchParams, code: ErrorCode = 'E_BAD_REQUEST'): EventFilter {
  const f: EventFilter = {};
  const t = q.get('type');
  if (t) {
    const list = t.split(',').map((x) => x.trim()).filter(Boolean);
    const bad = list.filter((x) => !(EVENT_TYPES as readonly string[]).includes(x));
    if (bad.length) throw problem('filter events', code, `type: ${bad.join(', ')} is not one of ${EVENT_TYPES.join(', ')}`);
    f.types = new Set(list as EventType[]);
  }
  const fromPod = q.get('from-pod');
  if (fromPod) f.fromPod = fromPod;
  const fromIP = ips(q.get('from-ip'), 'from-ip', code);
  if (fromIP) f.fromIP = fromIP;
  return f;
}

/** Query parameters back from a flow filter (the CLI's side). */
export function flowFilterQuery(f: FlowFilter): URLSearchParams {
  const q = new URLSearchParams();
  if (f.pod) q.set('pod', f.pod);
  if (f.fromPod) q.set('from-pod', f.fromPod);
  if (f.toPod) q.set('to-pod', f.toPod);
  if (f.ip?.length) q.set('ip', f.ip.join(','));
  if (f.fromIP?.length) q.set('from-ip', f.fromIP.join(','));
  if (f.toIP?.length) q.set('to-ip', f.toIP.join(','));
  if (f.verdict) q.set('verdict', f.verdict);
  if (f.protocol) q.set('protocol', f.protocol === 'ICMPv4' ? 'icmp' : f.protocol.toLowerCase());
  if (f.port !== undefined) q.set('port', String(f.port));
  return q;
}
