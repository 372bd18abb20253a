// IPv4 address verbs. addrReplace is the idempotent one (NLM_F_REPLACE): it
// creates the address or updates it in place, never duplicating it.
import type { NetlinkHandle } from './handle.ts';
import { decodeAddrMsg, encodeAddrMsg, type AddrMsg } from './wire/addr-msg.ts';
import { NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, RTM_DELADDR, RTM_GETADDR, RTM_NEWADDR } from './wire/header.ts';
import { AF_INET } from './wire/inet.ts';

export interface Addr {
  /** ifindex of the device carrying the address. */
  index: number;
  /** '10.0.0.1' */
  address: string;
  prefixLen: number;
  /** RT_SCOPE_*: 0 universe (default), 253 link, 254 host. */
  scope?: number;
  /** Defaults to the device name (the kernel fills it in). */
  label?: string;
  /** Broadcast address; none unless given (like `ip addr add` without `brd`). */
  broadcast?: string;
}

function toMsg(a: Addr): AddrMsg {
  // IFA_LOCAL is the address; IFA_ADDRESS equal to it marks "not point-to-point".
  const m: AddrMsg = { family: AF_INET, prefixLen: a.prefixLen, flags: 0, scope: a.scope ?? 0, index: a.index, address: a.address, local: a.address };
  if (a.label !== undefined) m.label = a.label;
  if (a.broadcast !== undefined) m.broadcast = a.broadcast;
  return m;
}

/** Turns a decoded RTM_NEWADDR into an Addr. */
export function addrFromMsg(m: AddrMsg): Addr {
  const a: Addr = { index: m.index, address: m.local ?? m.address ?? '', prefixLen: m.prefixLen, scope: m.scope };
  if (m.label !== undefined) a.label = m.label;
  if (m.broadcast !== undefined) a.broadcast = m.broadcast;
  return a;
}

const subject = (a: Addr): string => `${a.address}/${a.prefixLen} ifindex ${a.index}`;

/** Adds an address; throws KernelError EEXIST if it is already there. */
export function addrAdd(h: NetlinkHandle, a: Addr): void {
  h.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, encodeAddrMsg(toMsg(a)), subject(a));
}

/** Adds the address or updates the existing one (idempotent). Throws KernelError. */
export function addrReplace(h: NetlinkHandle, a: Addr): void {
  h.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, encodeAddrMsg(toMsg(a)), subject(a));
}

/** Removes an address; throws KernelError EADDRNOTAVAIL if it is not there. */
export function addrDel(h: NetlinkHandle, a: Addr): void {
  const m: AddrMsg = { family: AF_INET, prefixLen: a.prefixLen, flags: 0, scope: 0, index: a.index, local: a.address };
  h.request(RTM_DELADDR, 0, encodeAddrMsg(m), subject(a));
}

/** IPv4 addresses in the handle's netns, optionally of one device only. */
export function addrList(h: NetlinkHandle, index?: number): Addr[] {
  // With strict checking the kernel filters by ifa_index itself; filter here too for older kernels.
  const req = encodeAddrMsg({ family: AF_INET, prefixLen: 0, flags: 0, scope: 0, index: h.strict ? index ?? 0 : 0 });
  return h
    .dump(RTM_GETADDR, req)
    .filter((m) => m.type === RTM_NEWADDR)
    .map((m) => decodeAddrMsg(m.payload))
    .filter((m) => m.family === AF_INET && (index === undefined || m.index === index))
    .map(addrFromMsg);
}
