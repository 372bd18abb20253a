// struct ifaddrmsg + IFA_* attributes (RTM_NEWADDR/DELADDR/GETADDR).
// For IPv4, IFA_LOCAL is the interface's own address and IFA_ADDRESS the
// peer/prefix address; on a non point-to-point device both are the same, and
// iproute2 sends both, so the codec does too when asked.
import { attr, attrMap, attrStr, attrU32, readStr, readU32 } from './attr.ts';
import { formatIp, ipv4Bytes } from './inet.ts';
import { WireError } from './wire-error.ts';

export const IFADDRMSG_LEN = 8;

export const IFA_ADDRESS = 1;
export const IFA_LOCAL = 2;
export const IFA_LABEL = 3;
export const IFA_BROADCAST = 4;
export const IFA_FLAGS = 8;

export const IFA_F_PERMANENT = 0x80;
export const IFA_F_NOPREFIXROUTE = 0x200;

export interface AddrMsg {
  family: number;
  prefixLen: number;
  /** ifa_flags (8 bits); the full set is in `extFlags` (IFA_FLAGS). */
  flags: number;
  scope: number;
  index: number;
  address?: string;
  local?: string;
  label?: string;
  broadcast?: string;
  extFlags?: number;
}

export function encodeAddrMsg(m: AddrMsg): Buffer {
  const h = Buffer.alloc(IFADDRMSG_LEN);
  h.writeUInt8(m.family, 0);
  h.writeUInt8(m.prefixLen, 1);
  h.writeUInt8(m.flags, 2);
  h.writeUInt8(m.scope, 3);
  h.writeUInt32LE(m.index >>> 0, 4);
  const a: Buffer[] = [h];
  if (m.address !== undefined) a.push(attr(IFA_ADDRESS, ipv4Bytes(m.address)));
  if (m.local !== undefined) a.push(attr(IFA_LOCAL, ipv4Bytes(m.local)));
  if (m.label !== undefined) a.push(attrStr(IFA_LABEL, m.label));
  if (m.broadcast !== undefined) a.push(attr(IFA_BROADCAST, ipv4Bytes(m.broadcast, 'broadcast')));
  if (m.extFlags !== undefined) a.push(attrU32(IFA_FLAGS, m.extFlags));
  return Buffer.concat(a);
}

export function decodeAddrMsg(p: Buffer): AddrMsg {
  if (p.length < IFADDRMSG_LEN) throw new WireError(`ifaddrmsg of ${p.length} bytes, need ${IFADDRMSG_LEN}`);
  const m: AddrMsg = { family: p.readUInt8(0), prefixLen: p.readUInt8(1), flags: p.readUInt8(2), scope: p.readUInt8(3), index: p.readUInt32LE(4) };
  const a = attrMap(p.subarray(IFADDRMSG_LEN));
  const address = a.get(IFA_ADDRESS);
  if (address) m.address = formatIp(address);
  const local = a.get(IFA_LOCAL);
  if (local) m.local = formatIp(local);
  const label = a.get(IFA_LABEL);
  if (label) m.label = readStr(label);
  const brd = a.get(IFA_BROADCAST);
  if (brd) m.broadcast = formatIp(brd);
  const fl = a.get(IFA_FLAGS);
  if (fl) m.extFlags = readU32(fl);
  return m;
}
