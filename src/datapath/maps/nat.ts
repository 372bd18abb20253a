// cilium_snat_v4_external: the BPF masquerade's translations (bpf/lib/nat.h).
// Pure codec. Keys are conntrack tuples (struct ct4_tuple) whose flags byte
// says the direction: egress = the pod's original tuple -> {node IP, new
// port}; ingress = the reply tuple (world -> node IP) -> {pod IP, old port}.
// ICMP echo follows conntrack's convention: the id is dport of the request
// and sport of the reply.
import { defineLayout, expectSize, MapCodecError, readIPv4, writeIPv4 } from './layout.ts';
import { decodeTuple, encodeTuple, type CtTuple } from './conntrack.ts';

export const NAT_MAP_NAME = 'cilium_snat_v4_external';
export const NAT_MAX_ENTRIES = 65536;
export const NAT_ENTRY = defineLayout('nat_entry', 16, { created: 0, to_addr: 4, to_port: 8, pad: 10, reserved: 12 });

export const NAT_DIR_EGRESS = 0;
export const NAT_DIR_INGRESS = 1;
/** The ports (and ICMP echo ids) the masquerade hands out. */
export const NAT_PORT_MIN = 61000;
export const NAT_PORT_MAX = 65535;
const PROTO_ICMP = 1;

export interface NatKey extends Omit<CtTuple, 'dir'> {
  dir: 'egress' | 'ingress';
}

export interface NatValue {
  created: number;
  toAddr: string;
  toPort: number;
}

export function encodeKey(k: NatKey): Buffer {
  return encodeTuple('NAT key', k, k.dir === 'ingress' ? NAT_DIR_INGRESS : NAT_DIR_EGRESS);
}

export function decodeKey(buf: Uint8Array): NatKey {
  const { tuple, flags } = decodeTuple('NAT key', buf);
  if (flags !== NAT_DIR_EGRESS && flags !== NAT_DIR_INGRESS) throw new MapCodecError(`decode NAT key: direction ${flags} is neither egress (0) nor ingress (1)`);
  return { ...tuple, dir: flags === NAT_DIR_INGRESS ? 'ingress' : 'egress' };
}

export function encodeValue(v: NatValue): Buffer {
  const b = Buffer.alloc(NAT_ENTRY.size);
  const f = NAT_ENTRY.fields;
  b.writeUInt32LE(v.created, f.created);
  writeIPv4(b, f.to_addr, v.toAddr);
  b.writeUInt16BE(v.toPort, f.to_port);
  return b;
}

export function decodeValue(buf: Uint8Array): NatValue {
  expectSize('NAT value', NAT_ENTRY, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const f = NAT_ENTRY.fields;
  return { created: b.readUInt32LE(f.created), toAddr: readIPv4(b, f.to_addr), toPort: b.readUInt16BE(f.to_port) };
}

/** The pod's side port of a tuple: TCP/UDP source port, ICMP echo id (dport of the request). */
export function podPortOf(t: Omit<CtTuple, 'dir'>): number {
  return t.proto === PROTO_ICMP ? t.dport : t.sport;
}

/**
 * The connection an ingress (reply) entry belongs to, as the pod's original
 * tuple: what its egress entry and its conntrack entry (OUT) are keyed by.
 */
export function originalOfIngress(k: NatKey, v: NatValue): Omit<CtTuple, 'dir'> {
  return k.proto === PROTO_ICMP
    ? { saddr: v.toAddr, daddr: k.saddr, sport: 0, dport: v.toPort, proto: k.proto }
    : { saddr: v.toAddr, daddr: k.saddr, sport: v.toPort, dport: k.sport, proto: k.proto };
}

/** The translated port an ingress key carries (TCP/UDP dport, ICMP echo-reply id = sport). */
export function translatedPortOfIngress(k: NatKey): number {
  return k.proto === PROTO_ICMP ? k.sport : k.dport;
}
