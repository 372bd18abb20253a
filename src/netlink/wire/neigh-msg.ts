// struct ndmsg + NDA_* attributes (RTM_NEWNEIGH/DELNEIGH/GETNEIGH): IPv4
// neighbours (family AF_INET) and bridge/vxlan FDB entries (family AF_BRIDGE,
// where NDA_LLADDR is the key and NDA_DST the remote VTEP).
import { attr, attrBe16, attrMap, attrU16, attrU32, readBe16, readU16, readU32 } from './attr.ts';
import { formatIp, formatMac, ipv4Bytes, macBytes } from './inet.ts';
import { WireError } from './wire-error.ts';

export const NDMSG_LEN = 12;

export const NDA_DST = 1;
export const NDA_LLADDR = 2;
export const NDA_VLAN = 5;
export const NDA_PORT = 6;
export const NDA_VNI = 7;
export const NDA_IFINDEX = 8;
export const NDA_MASTER = 9;

export const NUD_INCOMPLETE = 0x01;
export const NUD_REACHABLE = 0x02;
export const NUD_STALE = 0x04;
export const NUD_DELAY = 0x08;
export const NUD_PROBE = 0x10;
export const NUD_FAILED = 0x20;
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;

export const NTF_USE = 0x01;
export const NTF_SELF = 0x02;
export const NTF_MASTER = 0x04;
export const NTF_PROXY = 0x08;
export const NTF_EXT_LEARNED = 0x10;
export const NTF_ROUTER = 0x80;

export interface NeighMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
  dst?: string;
  lladdr?: string;
  vlan?: number;
  /** NDA_PORT: remote UDP port of a vxlan FDB entry (network order on the wire). */
  port?: number;
  vni?: number;
  /** NDA_IFINDEX: in a vxlan FDB entry, the underlay device; in a dump request, a filter. */
  ifindex?: number;
  master?: number;
}

export function encodeNeighMsg(m: NeighMsg): Buffer {
  const h = Buffer.alloc(NDMSG_LEN);
  h.writeUInt8(m.family, 0);
  h.writeInt32LE(m.index, 4);
  h.writeUInt16LE(m.state, 8);
  h.writeUInt8(m.flags, 10);
  h.writeUInt8(m.type, 11);
  const a: Buffer[] = [h];
  if (m.dst !== undefined) a.push(attr(NDA_DST, ipv4Bytes(m.dst, 'dst')));
  if (m.lladdr !== undefined) a.push(attr(NDA_LLADDR, macBytes(m.lladdr)));
  if (m.vlan !== undefined) a.push(attrU16(NDA_VLAN, m.vlan));
  if (m.port !== undefined) a.push(attrBe16(NDA_PORT, m.port));
  if (m.vni !== undefined) a.push(attrU32(NDA_VNI, m.vni));
  if (m.ifindex !== undefined) a.push(attrU32(NDA_IFINDEX, m.ifindex));
  if (m.master !== undefined) a.push(attrU32(NDA_MASTER, m.master));
  return Buffer.concat(a);
}

export function decodeNeighMsg(p: Buffer): NeighMsg {
  if (p.length < NDMSG_LEN) throw new WireError(`ndmsg of ${p.length} bytes, need ${NDMSG_LEN}`);
  const m: NeighMsg = { family: p.readUInt8(0), index: p.readInt32LE(4), state: p.readUInt16LE(8), flags: p.readUInt8(10), type: p.readUInt8(11) };
  const a = attrMap(p.subarray(NDMSG_LEN));
  const dst = a.get(NDA_DST);
  if (dst) m.dst = formatIp(dst);
  const ll = a.get(NDA_LLADDR);
  if (ll) m.lladdr = formatMac(ll);
  const vlan = a.get(NDA_VLAN);
  if (vlan) m.vlan = readU16(vlan);
  const port = a.get(NDA_PORT);
  if (port) m.port = readBe16(port);
  const vni = a.get(NDA_VNI);
  if (vni) m.vni = readU32(vni);
  const ifi = a.get(NDA_IFINDEX);
  if (ifi) m.ifindex = readU32(ifi);
  const master = a.get(NDA_MASTER);
  if (master) m.master = readU32(master);
  return m;
}
