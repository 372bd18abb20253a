// cilium_ct4_global (TCP) and cilium_ct_any4_global (everything else): the
// node's connection tracking tables. Pure codecs; see struct ct4_tuple /
// ct_entry in bpf/lib/maps.h and the semantics in bpf/lib/conntrack.h.
// Times are whole seconds of CLOCK_MONOTONIC, the clock of
// process.hrtime.bigint() (monotonicSeconds()).
import { defineLayout, expectSize, MapCodecError, readIPv4, writeIPv4 } from './layout.ts';
import { protocolName, PROTO_TCP } from './policy.ts';

export const CT_TCP_MAP_NAME = 'cilium_ct4_global';
export const CT_ANY_MAP_NAME = 'cilium_ct_any4_global';
export const CT_TCP_MAX_ENTRIES = 131072;
export const CT_ANY_MAX_ENTRIES = 65536;
export const FRAG_MAP_NAME = 'cilium_ipv4_frag_datagrams';

export const CT_TUPLE = defineLayout('ct4_tuple', 16, { saddr: 0, daddr: 4, sport: 8, dport: 10, proto: 12, flags: 13, pad: 14 });
export const CT_ENTRY = defineLayout('ct_entry', 64, {
  packets: 0, bytes: 8, lifetime: 16, created: 20, flags: 24, tx_flags_seen: 26, rx_flags_seen: 27, src_sec_id: 28,
  nat_orig_addr: 32, nat_addr: 36, nat_orig_port: 40, nat_port: 42, policy_rev: 44, policy_remote: 48,
  last_tx_report: 52, last_rx_report: 56, reserved: 60,
});
export const FRAG_ID = defineLayout('ipv4_frag_id', 12, { daddr: 0, saddr: 4, id: 8, proto: 10, pad: 11 });
export const FRAG_L4 = defineLayout('ipv4_frag_l4', 8, { sport: 0, dport: 2, policy_port: 4, pad: 6 });

/** Key flags: which side made the entry. */
export const CT_F_OUT = 0;
export const CT_F_IN = 1;

export const CT_ENTRY_F_RX_CLOSING = 0x0001;
export const CT_ENTRY_F_TX_CLOSING = 0x0002;
export const CT_ENTRY_F_SEEN_NON_SYN = 0x0004;
export const CT_ENTRY_F_NAT = 0x0008;

/** Lifetimes in seconds (bpf/lib/conntrack.h). */
export const CT_LIFETIME = Object.freeze({ tcpEstablished: 8000, nonTcp: 60, tcpSyn: 60, tcpClosing: 10 });

export interface CtTuple {
  /** The connection's initiator. */
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  /** Made at the initiator's egress ('out') or the responder's ingress ('in'). */
  dir: 'out' | 'in';
}

export interface CtEntry {
  /** Expiry, seconds of CLOCK_MONOTONIC. */
  lifetime: number;
  /** Creation, seconds of CLOCK_MONOTONIC. */
  created: number;
  /** CT_ENTRY_F_* bits. */
  flags: number;
  txFlagsSeen: number;
  rxFlagsSeen: number;
  /** Identity of the initiator. */
  srcSecId: number;
  packets: bigint;
  bytes: bigint;
  /** The cached verdict: the entry's endpoint's policy revision and the remote identity the connection was last allowed at (0: none). */
  policyRev: number;
  policyRemote: number;
  /** Second a trace last reported the original / the reply direction (trace level 1 rate limit; 0: never). */
  lastTxReport: number;
  lastRxReport: number;
  nat?: { origAddr: string; origPort: number; addr: string; port: number };
}

/** Seconds of CLOCK_MONOTONIC now: what the datapath compares lifetimes with. */
export function monotonicSeconds(): number {
  return Number(process.hrtime.bigint() / 1_000_000_000n);
}

/**
 * A struct ct4_tuple: the 5-tuple and a flags byte, which conntrack keys use
 * for the direction (CT_F_IN/OUT) and NAT keys (src/datapath/maps/nat.ts)
 * for theirs. `what` names the key in errors.
 */
export function encodeTuple(what: string, t: Omit<CtTuple, 'dir'>, flags: number): Buffer {
  const b = Buffer.alloc(CT_TUPLE.size);
  const f = CT_TUPLE.fields;
  try {
    writeIPv4(b, f.saddr, t.saddr);
    writeIPv4(b, f.daddr, t.daddr);
  } catch (err) {
    throw new MapCodecError(`encode ${what}: ${(err as Error).message}`);
  }
  b.writeUInt16BE(t.sport, f.sport);
  b.writeUInt16BE(t.dport, f.dport);
  b[f.proto] = t.proto;
  b[f.flags] = flags;
  return b;
}

/** The 5-tuple and the flags byte of a struct ct4_tuple; throws E_MAP_CODEC naming `what` for a wrong size. */
export function decodeTuple(what: string, buf: Uint8Array): { tuple: Omit<CtTuple, 'dir'>; flags: number } {
  expectSize(what, CT_TUPLE, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const f = CT_TUPLE.fields;
  return {
    tuple: { saddr: readIPv4(b, f.saddr), daddr: readIPv4(b, f.daddr), sport: b.readUInt16BE(f.sport), dport: b.readUInt16BE(f.dport), proto: b[f.proto]! },
    flags: b[f.flags]!,
  };
}

export function encodeKey(t: CtTuple): Buffer {
  return encodeTuple('conntrack key', t, t.dir === 'in' ? CT_F_IN : CT_F_OUT);
}

export function decodeKey(buf: Uint8Array): CtTuple {
  const { tuple, flags } = decodeTuple('conntrack key', buf);
  if (flags !== CT_F_OUT && flags !== CT_F_IN) throw new MapCodecError(`decode conntrack key: flags ${flags} is neither OUT (0) nor IN (1)`);
  return { ...tuple, dir: flags === CT_F_IN ? 'in' : 'out' };
}

export function encodeValue(e: Partial<CtEntry> & Pick<CtEntry, 'lifetime'>): Buffer {
  const b = Buffer.alloc(CT_ENTRY.size);
  const f = CT_ENTRY.fields;
  b.writeBigUInt64LE(e.packets ?? 0n, f.packets);
  b.writeBigUInt64LE(e.bytes ?? 0n, f.bytes);
  b.writeUInt32LE(e.lifetime, f.lifetime);
  b.writeUInt32LE(e.created ?? 0, f.created);
  b.writeUInt16LE(e.flags ?? 0, f.flags);
  b[f.tx_flags_seen] = e.txFlagsSeen ?? 0;
  b[f.rx_flags_seen] = e.rxFlagsSeen ?? 0;
  b.writeUInt32LE(e.srcSecId ?? 0, f.src_sec_id);
  b.writeUInt32LE(e.policyRev ?? 0, f.policy_rev);
  b.writeUInt32LE(e.policyRemote ?? 0, f.policy_remote);
  b.writeUInt32LE(e.lastTxReport ?? 0, f.last_tx_report);
  b.writeUInt32LE(e.lastRxReport ?? 0, f.last_rx_report);
  if (e.nat) {
    writeIPv4(b, f.nat_orig_addr, e.nat.origAddr);
    writeIPv4(b, f.nat_addr, e.nat.addr);
    b.writeUInt16BE(e.nat.origPort, f.nat_orig_port);
    b.writeUInt16BE(e.nat.port, f.nat_port);
    b.writeUInt16LE((e.flags ?? 0) | CT_ENTRY_F_NAT, f.flags);
  }
  return b;
}

export function decodeValue(buf: Uint8Array): CtEntry {
  expectSize('conntrack value', CT_ENTRY, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const f = CT_ENTRY.fields;
  const flags = b.readUInt16LE(f.flags);
  return {
    lifetime: b.readUInt32LE(f.lifetime),
    created: b.readUInt32LE(f.created),
    flags,
    txFlagsSeen: b[f.tx_flags_seen],
    rxFlagsSeen: b[f.rx_flags_seen],
    srcSecId: b.readUInt32LE(f.src_sec_id),
    packets: b.readBigUInt64LE(f.packets),
    bytes: b.readBigUInt64LE(f.bytes),
    policyRev: b.readUInt32LE(f.policy_rev),
    policyRemote: b.readUInt32LE(f.policy_remote),
    lastTxReport: b.readUInt32LE(f.last_tx_report),
    lastRxReport: b.readUInt32LE(f.last_rx_report),
    ...(flags & CT_ENTRY_F_NAT ? {
      nat: {
        origAddr: readIPv4(b, f.nat_orig_addr), origPort: b.readUInt16BE(f.nat_orig_port),
        addr: readIPv4(b, f.nat_addr), port: b.readUInt16BE(f.nat_port),
      },
    } : {}),
  };
}

/** The table a protocol's entries live in. */
export function ctMapFor(proto: number): string {
  return proto === PROTO_TCP ? CT_TCP_MAP_NAME : CT_ANY_MAP_NAME;
}

const TCP_FLAG_NAMES: [number, string][] = [[0x02, 'SYN'], [0x10, 'ACK'], [0x01, 'FIN'], [0x04, 'RST'], [0x08, 'PSH'], [0x20, 'URG']];

export function tcpFlagNames(bits: number): string[] {
  return TCP_FLAG_NAMES.filter(([b]) => bits & b).map(([, n]) => n);
}

export function entryFlagNames(bits: number): string[] {
  const out: string[] = [];
  if (bits & CT_ENTRY_F_TX_CLOSING) out.push('tx-closing');
  if (bits & CT_ENTRY_F_RX_CLOSING) out.push('rx-closing');
  if (bits & CT_ENTRY_F_SEEN_NON_SYN) out.push('seen-non-syn');
  if (bits & CT_ENTRY_F_NAT) out.push('nat');
  return out;
}

/** "TCP OUT 10.0.1.5:40000 -> 10.0.1.6:80" (ICMP echo: "id N"). */
export function describeTuple(t: CtTuple): string {
  const p = protocolName(t.proto);
  const dir = t.dir.toUpperCase();
  if (t.proto === 1) return `${p} ${dir} ${t.saddr} -> ${t.daddr} id ${t.dport}`;
  if (t.sport === 0 && t.dport === 0) return `${p} ${dir} ${t.saddr} -> ${t.daddr}`;
  return `${p} ${dir} ${t.saddr}:${t.sport} -> ${t.daddr}:${t.dport}`;
}
