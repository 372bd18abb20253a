// Decodes cilium_events ring-buffer records (bpf/lib/events.h) into typed drop,
// debug, trace and policy verdict events, with the CLOCK_MONOTONIC time the
// record was made, the captured packet bytes and a one-line L3/L4 summary such
// as "10.0.1.5 -> 10.0.2.7 ICMP echo". Pure: the caller reads the ring buffer
// (src/datapath/events-reader.ts) and hands each record here.
import { MembraneError } from '../../shared/errors.ts';
import { dropReasonText } from './drop-reasons.ts';
import { defineLayout, readIPv4, readMac } from './layout.ts';
import { observationPointText, TRACE_REASONS } from './observation-points.ts';
import { protocolName } from './policy.ts';
import { sourceFileName } from './source-files.ts';

export const EVENTS_MAP_NAME = 'cilium_events';
/** Per-CPU count of the records a full ring could not take, by event type (bpf/lib/maps.h). */
export const EVENTS_LOST_MAP_NAME = 'cilium_events_lost';
/** Slots of cilium_events_lost: event types 0..7. */
export const EVENTS_LOST_TYPES = 8;
export const EVENT_TYPE_DROP = 1;
export const EVENT_TYPE_DEBUG = 2;
export const EVENT_TYPE_TRACE = 4;
export const EVENT_TYPE_POLICY_VERDICT = 5;
/** Debug subtype: the tunnel key set for encapsulation (arg1 remote IPv4 in host order, arg2 VNI). */
export const DBG_ENCAP = 3;
export const EVENT_VERSION = 2;
export const EVENT_CAP_LEN = 128;

export const EVENT_HDR = defineLayout('event_hdr', 24, {
  type: 0, subtype: 1, source: 2, hash: 4, len_orig: 8, len_cap: 12, version: 14, pad: 15, ktime_ns: 16,
});
export const DROP_NOTIFY = defineLayout('drop_notify', 48 + EVENT_CAP_LEN, {
  hdr: 0, src_label: 24, dst_label: 28, dst_id: 32, line: 36, file: 38, ext_error: 39, ifindex: 40, pad: 44, data: 48,
});
export const TRACE_NOTIFY = defineLayout('trace_notify', 48 + EVENT_CAP_LEN, {
  hdr: 0, src_label: 24, dst_label: 28, dst_id: 32, reason: 34, flags: 35, ifindex: 36, orig_ip: 40, pad: 44, data: 48,
});
export const DEBUG_NOTIFY = defineLayout('debug_notify', 48 + EVENT_CAP_LEN, {
  hdr: 0, arg1: 24, arg2: 28, arg3: 32, ifindex: 36, pad: 40, data: 48,
});
export const POLICY_VERDICT_NOTIFY = defineLayout('policy_verdict_notify', 48 + EVENT_CAP_LEN, {
  hdr: 0, remote_label: 24, cookie: 28, dst_port: 32, proto: 34, dir: 35, ep_id: 36, verdict: 38, match_type: 39, ifindex: 40, pad: 44, data: 48,
});

/** Event type names as `cilium monitor -t` has them, by type number. */
export const EVENT_TYPE_NAMES: Readonly<Record<number, DatapathEvent['type']>> = Object.freeze({
  [EVENT_TYPE_DROP]: 'drop', [EVENT_TYPE_DEBUG]: 'debug', [EVENT_TYPE_TRACE]: 'trace', [EVENT_TYPE_POLICY_VERDICT]: 'policy-verdict',
});

/** Names of the debug subtypes the datapath emits (Cilium's DBG_* values). */
export const DEBUG_SUBTYPES: Readonly<Record<number, string>> = Object.freeze({ [DBG_ENCAP]: 'encap' });

/** Policy verdict match kinds (Cilium's POLICY_MATCH_* values and monitor texts). */
export const POLICY_MATCH_NONE = 0;
export const POLICY_MATCH_L3_ONLY = 1;
export const POLICY_MATCH_L3_L4 = 2;
export const POLICY_MATCH_L4_ONLY = 3;
export const POLICY_MATCH_ALL = 4;
export const POLICY_MATCH_L3_PROTO = 5;
export const POLICY_MATCH_PROTO_ONLY = 6;
export const POLICY_MATCH_TEXT: Readonly<Record<number, string>> = Object.freeze({
  [POLICY_MATCH_NONE]: 'none', [POLICY_MATCH_L3_ONLY]: 'L3-Only', [POLICY_MATCH_L3_L4]: 'L3-L4', [POLICY_MATCH_L4_ONLY]: 'L4-Only',
  [POLICY_MATCH_ALL]: 'all', [POLICY_MATCH_L3_PROTO]: 'L3-Proto', [POLICY_MATCH_PROTO_ONLY]: 'Proto-Only',
});
/** Verdict codes: 0 allowed, else the drop reason of the denial. */
const DROP_POLICY = 133;
const DROP_POLICY_DENY = 181;
/** Policy verdict direction (Cilium's POLICY_INGRESS / POLICY_EGRESS). */
const POLICY_INGRESS = 1;
const POLICY_EGRESS = 2;

interface EventCommon {
  /** CLOCK_MONOTONIC nanoseconds when the record was made (process.hrtime.bigint() reads the same clock). */
  timeNs: bigint;
  /** Endpoint id of the program that emitted the event (0 for the overlay). */
  source: number;
  /** skb hash: equal for the packets of one flow. */
  hash: number;
  /** Length of the packet on the wire. */
  lenOrig: number;
  /** The first bytes of the packet (up to 128), starting at the Ethernet header. */
  packet: Buffer;
  /** One-line L3/L4 summary of `packet`. */
  summary: string;
}

export interface DropEvent extends EventCommon {
  type: 'drop';
  /** Drop reason code (drop-reasons.ts). */
  reason: number;
  reasonText: string;
  srcLabel: number;
  dstLabel: number;
  dstId: number;
  /** Drop site: source file id, its name and the line. */
  file: number;
  fileName: string;
  line: number;
  /** Extra error detail, e.g. the errno of a failed helper; 0 if none. */
  extError: number;
  /** Device the program ran on. */
  ifindex: number;
}

export interface TraceEvent extends EventCommon {
  type: 'trace';
  /** Observation point (observation-points.ts). */
  point: number;
  pointText: string;
  srcLabel: number;
  dstLabel: number;
  dstId: number;
  /** Conntrack state: 0 new, 1 established, 2 reply, 3 related, 5 unknown (no check saw the packet yet). */
  reason: number;
  reasonText: string;
  flags: number;
  /** Device the packet goes to (TO_*) or came from (FROM_*). */
  ifindex: number;
  origIp: string;
}

export interface DebugEvent extends EventCommon {
  type: 'debug';
  /** DBG_* subtype and its name ("debug-N" if unknown). */
  subtype: number;
  subtypeText: string;
  /** Raw arguments; their meaning depends on the subtype. */
  arg1: number;
  arg2: number;
  arg3: number;
  /** Device the packet goes to. */
  ifindex: number;
  /** One line, e.g. "Encapsulating to node 192.168.50.2 with VNI 1234". */
  message: string;
  /** DBG_ENCAP: the tunnel key's remote address and VNI (= source identity). */
  tunnelEndpoint?: string;
  vni?: number;
}

export interface PolicyVerdictEvent extends EventCommon {
  type: 'policy-verdict';
  /** Endpoint whose policy decided (1: the host firewall); the packet's source or destination by `direction`. */
  endpointId: number;
  /** The endpoint's view: ingress = it receives the packet from `remoteLabel`, egress = it sends it there. */
  direction: 'ingress' | 'egress';
  remoteLabel: number;
  verdict: 'allow' | 'deny';
  /** For a denial: a deny entry matched ('rule') or no entry did ('default'). */
  denyKind?: 'rule' | 'default';
  /** 0 when allowed, else the drop reason (133 default deny, 181 deny rule). */
  reason: number;
  reasonText: string;
  /** IP protocol number and its name. */
  proto: number;
  protoText: string;
  /** Destination port matched (ICMP: the type; 0 for protocols without ports). */
  dstPort: number;
  /** POLICY_MATCH_* kind of the deciding entry and its text ("L3-L4", "none", ...). */
  match: number;
  matchText: string;
  /** The deciding entry's cookie (the agent's rule tag); 0 for the default deny. */
  cookie: number;
  /** Device the deciding program ran on. */
  ifindex: number;
}

export type DatapathEvent = DropEvent | TraceEvent | DebugEvent | PolicyVerdictEvent;

function decodeError(cause: string): MembraneError {
  return new MembraneError('decode datapath event', { code: 'E_EVENT_DECODE', cause });
}

const LAYOUTS: Readonly<Record<number, { fields: { data: number }; size: number }>> = {
  [EVENT_TYPE_DROP]: DROP_NOTIFY, [EVENT_TYPE_DEBUG]: DEBUG_NOTIFY, [EVENT_TYPE_TRACE]: TRACE_NOTIFY, [EVENT_TYPE_POLICY_VERDICT]: POLICY_VERDICT_NOTIFY,
};

/**
 * Decodes one ring-buffer record. Throws MembraneError (code E_EVENT_DECODE)
 * for a truncated record, an unknown type or an unsupported version, so a
 * reader can skip a record it cannot read and carry on.
 */
export function decodeEvent(record: Uint8Array): DatapathEvent {
  const b = Buffer.from(record.buffer, record.byteOffset, record.byteLength);
  // The version byte sits at the same place in every version: check it first.
  if (b.length < 16) throw decodeError(`record of ${b.length} bytes is too short for a header`);
  const h = EVENT_HDR.fields;
  const type = b[h.type];
  const version = b[h.version];
  if (version !== EVENT_VERSION) throw decodeError(`version ${version} is not supported (want ${EVENT_VERSION})`);
  const layout = LAYOUTS[type];
  if (!layout) throw decodeError(`unknown event type ${type}`);
  if (b.length < layout.size) throw decodeError(`record of ${b.length} bytes is shorter than the ${layout.size}-byte ${EVENT_TYPE_NAMES[type]} record`);
  const lenCap = b.readUInt16LE(h.len_cap);
  if (lenCap > EVENT_CAP_LEN) throw decodeError(`record claims ${lenCap} captured bytes, more than the ${EVENT_CAP_LEN} it holds`);
  const dataOff = layout.fields.data;
  const packet = Buffer.from(b.subarray(dataOff, dataOff + lenCap));
  const common: EventCommon = {
    timeNs: b.readBigUInt64LE(h.ktime_ns),
    source: b.readUInt16LE(h.source),
    hash: b.readUInt32LE(h.hash),
    lenOrig: b.readUInt32LE(h.len_orig),
    packet,
    summary: summarizePacket(packet),
  };
  const subtype = b[h.subtype];
  switch (type) {
    case EVENT_TYPE_DROP: {
      const f = DROP_NOTIFY.fields;
      return {
        type: 'drop',
        ...common,
        reason: subtype,
        reasonText: dropReasonText(subtype),
        srcLabel: b.readUInt32LE(f.src_label),
        dstLabel: b.readUInt32LE(f.dst_label),
        dstId: b.readUInt32LE(f.dst_id),
        file: b[f.file],
        fileName: sourceFileName(b[f.file]),
        line: b.readUInt16LE(f.line),
        extError: b[f.ext_error],
        ifindex: b.readUInt32LE(f.ifindex),
      };
    }
    case EVENT_TYPE_DEBUG:
      return decodeDebug(b, subtype, common);
    case EVENT_TYPE_POLICY_VERDICT:
      return decodePolicyVerdict(b, common);
    default: {
      const f = TRACE_NOTIFY.fields;
      const reason = b[f.reason];
      return {
        type: 'trace',
        ...common,
        point: subtype,
        pointText: observationPointText(subtype),
        srcLabel: b.readUInt32LE(f.src_label),
        dstLabel: b.readUInt32LE(f.dst_label),
        dstId: b.readUInt16LE(f.dst_id),
        reason,
        reasonText: TRACE_REASONS[reason] ?? `reason-${reason}`,
        flags: b[f.flags],
        ifindex: b.readUInt32LE(f.ifindex),
        origIp: readIPv4(b, f.orig_ip),
      };
    }
  }
}

function decodeDebug(b: Buffer, subtype: number, common: EventCommon): DebugEvent {
  const f = DEBUG_NOTIFY.fields;
  const arg1 = b.readUInt32LE(f.arg1);
  const arg2 = b.readUInt32LE(f.arg2);
  const arg3 = b.readUInt32LE(f.arg3);
  const e: DebugEvent = {
    type: 'debug',
    ...common,
    subtype,
    subtypeText: DEBUG_SUBTYPES[subtype] ?? `debug-${subtype}`,
    arg1, arg2, arg3,
    ifindex: b.readUInt32LE(f.ifindex),
    message: `debug ${subtype}: arg1 0x${arg1.toString(16)} arg2 ${arg2} arg3 ${arg3}`,
  };
  if (subtype === DBG_ENCAP) {
    // arg1 is the address as the tunnel key holds it: a host-order u32.
    const ip = [arg1 >>> 24, (arg1 >>> 16) & 0xff, (arg1 >>> 8) & 0xff, arg1 & 0xff].join('.');
    e.tunnelEndpoint = ip;
    e.vni = arg2;
    e.message = `Encapsulating to node ${ip} with VNI ${arg2}`;
  }
  return e;
}

function decodePolicyVerdict(b: Buffer, common: EventCommon): PolicyVerdictEvent {
  const f = POLICY_VERDICT_NOTIFY.fields;
  const dir = b[f.dir];
  if (dir !== POLICY_INGRESS && dir !== POLICY_EGRESS) throw decodeError(`policy verdict direction ${dir} is neither ingress (1) nor egress (2)`);
  const reason = b[f.verdict];
  const match = b[f.match_type];
  const proto = b[f.proto];
  const e: PolicyVerdictEvent = {
    type: 'policy-verdict',
    ...common,
    endpointId: b.readUInt16LE(f.ep_id),
    direction: dir === POLICY_INGRESS ? 'ingress' : 'egress',
    remoteLabel: b.readUInt32LE(f.remote_label),
    verdict: reason === 0 ? 'allow' : 'deny',
    reason,
    reasonText: reason === 0 ? 'allowed' : dropReasonText(reason),
    proto,
    protoText: protocolName(proto),
    dstPort: b.readUInt16LE(f.dst_port),
    match,
    matchText: POLICY_MATCH_TEXT[match] ?? `match-${match}`,
    cookie: b.readUInt32LE(f.cookie),
    ifindex: b.readUInt32LE(f.ifindex),
  };
  if (reason === DROP_POLICY_DENY) e.denyKind = 'rule';
  else if (reason === DROP_POLICY) e.denyKind = 'default';
  return e;
}

const ICMP_TYPES: Readonly<Record<number, string>> = {
  0: 'echo-reply', 3: 'dest-unreachable', 5: 'redirect', 8: 'echo', 11: 'time-exceeded', 12: 'parameter-problem',
};
const TCP_FLAGS: readonly [number, string][] = [[0x02, 'SYN'], [0x10, 'ACK'], [0x01, 'FIN'], [0x04, 'RST'], [0x08, 'PSH'], [0x20, 'URG']];

/**
 * A one-line summary of an Ethernet frame (possibly cut short by the capture):
 * "10.0.1.5 -> 10.0.2.7 ICMP echo", "10.0.1.5:41000 -> 10.0.2.7:80 TCP SYN",
 * "ARP who-has 10.0.1.1 tell 10.0.1.5". Headers cut off by the capture are
 * reported as "(truncated)".
 */
export function summarizePacket(frame: Uint8Array): string {
  const b = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  const cut = '(truncated)';
  if (b.length < 14) return b.length === 0 ? 'no packet data' : `Ethernet ${cut}`;
  const ethertype = b.readUInt16BE(12);
  const l3 = b.subarray(14);
  if (ethertype === 0x0806) {
    if (l3.length < 28) return `ARP ${cut}`;
    const op = l3.readUInt16BE(6);
    const sip = readIPv4(l3, 14);
    const tip = readIPv4(l3, 24);
    if (op === 1) return `ARP who-has ${tip} tell ${sip}`;
    if (op === 2) return `ARP reply ${sip} is-at ${readMac(l3, 8)}`;
    return `ARP op ${op} ${sip} -> ${tip}`;
  }
  if (ethertype === 0x86dd) return 'IPv6';
  if (ethertype !== 0x0800) return ethertype < 0x0600 ? `802.3 frame, length ${ethertype}` : `ethertype 0x${ethertype.toString(16).padStart(4, '0')}`;
  if (l3.length < 20) return `IPv4 ${cut}`;
  const ihl = (l3[0] & 0x0f) * 4;
  const proto = l3[9];
  const src = readIPv4(l3, 12);
  const dst = readIPv4(l3, 16);
  const fragOff = l3.readUInt16BE(6) & 0x1fff;
  if ((l3[0] >> 4) !== 4 || ihl < 20) return `${src} -> ${dst} invalid IPv4 header`;
  if (fragOff !== 0) return `${src} -> ${dst} IPv4 fragment (proto ${proto})`;
  const l4 = l3.subarray(ihl);
  switch (proto) {
    case 1: {
      if (l4.length < 2) return `${src} -> ${dst} ICMP ${cut}`;
      const t = ICMP_TYPES[l4[0]] ?? `type ${l4[0]}`;
      return `${src} -> ${dst} ICMP ${t}${l4[0] === 3 || l4[0] === 11 ? ` code ${l4[1]}` : ''}`;
    }
    case 6: {
      if (l4.length < 14) return `${src} -> ${dst} TCP ${cut}`;
      const flags = TCP_FLAGS.filter(([bit]) => l4[13] & bit).map(([, n]) => n).join('|');
      return `${src}:${l4.readUInt16BE(0)} -> ${dst}:${l4.readUInt16BE(2)} TCP${flags ? ` ${flags}` : ''}`;
    }
    case 17: {
      if (l4.length < 4) return `${src} -> ${dst} UDP ${cut}`;
      return `${src}:${l4.readUInt16BE(0)} -> ${dst}:${l4.readUInt16BE(2)} UDP`;
    }
    default:
      return `${src} -> ${dst} proto ${proto}`;
  }
}
