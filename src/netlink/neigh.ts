// Neighbour verbs for two tables that share RTM_*NEIGH: IPv4 neighbours
// (ARP entries, family AF_INET) and bridge/vxlan forwarding-database entries
// (family AF_BRIDGE). A flannel-style VXLAN overlay needs both: an FDB entry
// "remote VTEP MAC → remote node IP" and a permanent neighbour "remote
// gateway IP → remote VTEP MAC" on the vxlan device.
import type { NetlinkHandle } from './handle.ts';
import { NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, RTM_DELNEIGH, RTM_GETNEIGH, RTM_NEWNEIGH } from './wire/header.ts';
import { AF_BRIDGE, AF_INET } from './wire/inet.ts';
import {
  decodeNeighMsg, encodeNeighMsg, NTF_MASTER, NTF_ROUTER, NTF_SELF, NUD_DELAY, NUD_FAILED, NUD_INCOMPLETE, NUD_NOARP, NUD_PERMANENT,
  NUD_PROBE, NUD_REACHABLE, NUD_STALE, type NeighMsg,
} from './wire/neigh-msg.ts';

export type NeighState = 'permanent' | 'reachable' | 'stale' | 'noarp' | 'incomplete' | 'delay' | 'probe' | 'failed' | number;

/** An IPv4 neighbour (ARP) entry. */
export interface Neighbour {
  index: number;
  ip: string;
  /** Absent for an unresolved (incomplete/failed) entry. */
  mac?: string;
  /** Default on add: 'permanent'. Listed entries always carry it. */
  state?: NeighState;
  router?: boolean;
}

/** A bridge / vxlan FDB entry (AF_BRIDGE). */
export interface FdbEntry {
  /** The vxlan device (or bridge port) the entry belongs to. */
  index: number;
  mac: string;
  /** vxlan: the remote VTEP's IP. */
  dst?: string;
  /** Entry lives in the device's own table (NTF_SELF; default on add unless `master`). */
  self?: boolean;
  /** Entry lives in the master bridge's table (NTF_MASTER). */
  master?: boolean;
  /** Static entry (NUD_PERMANENT; default on add). */
  permanent?: boolean;
  vni?: number;
  port?: number;
  vlan?: number;
  /** Listed only: the bridge the entry belongs to (NDA_MASTER). */
  masterIndex?: number;
}

const STATES: Record<string, number> = {
  incomplete: NUD_INCOMPLETE, reachable: NUD_REACHABLE, stale: NUD_STALE, delay: NUD_DELAY, probe: NUD_PROBE,
  failed: NUD_FAILED, noarp: NUD_NOARP, permanent: NUD_PERMANENT,
};

function stateNum(s: NeighState): number {
  return typeof s === 'number' ? s : STATES[s]!;
}
function stateName(n: number): NeighState {
  for (const [k, v] of Object.entries(STATES)) if (v === n) return k as NeighState;
  return n;
}

function isFdb(n: Neighbour | FdbEntry): n is FdbEntry {
  return !('ip' in n);
}

/** The ndmsg for a request about `n`. */
export function neighToMsg(n: Neighbour | FdbEntry): NeighMsg {
  if (isFdb(n)) {
    // Like `bridge fdb add`: self unless master is asked for, permanent unless told otherwise.
    const flags = (n.master ? NTF_MASTER : 0) | ((n.self ?? !n.master) ? NTF_SELF : 0);
    const m: NeighMsg = { family: AF_BRIDGE, index: n.index, state: n.permanent === false ? NUD_REACHABLE : NUD_PERMANENT, flags, type: 0, lladdr: n.mac };
    if (n.dst !== undefined) m.dst = n.dst;
    if (n.vni !== undefined) m.vni = n.vni;
    if (n.port !== undefined) m.port = n.port;
    if (n.vlan !== undefined) m.vlan = n.vlan;
    return m;
  }
  const m: NeighMsg = { family: AF_INET, index: n.index, state: stateNum(n.state ?? 'permanent'), flags: n.router ? NTF_ROUTER : 0, type: 0, dst: n.ip };
  if (n.mac !== undefined) m.lladdr = n.mac;
  return m;
}

export function neighFromMsg(m: NeighMsg): Neighbour {
  const n: Neighbour = { index: m.index, ip: m.dst ?? '', state: stateName(m.state) };
  if (m.lladdr !== undefined) n.mac = m.lladdr;
  if (m.flags & NTF_ROUTER) n.router = true;
  return n;
}

export function fdbFromMsg(m: NeighMsg): FdbEntry {
  const f: FdbEntry = {
    index: m.index,
    mac: m.lladdr ?? '',
    self: (m.flags & NTF_SELF) !== 0,
    // The bridge reports its own entries with NDA_MASTER rather than NTF_MASTER.
    master: (m.flags & NTF_MASTER) !== 0 || m.master !== undefined,
    permanent: (m.state & NUD_PERMANENT) !== 0,
  };
  if (m.dst !== undefined) f.dst = m.dst;
  if (m.vni !== undefined) f.vni = m.vni;
  if (m.port !== undefined) f.port = m.port;
  if (m.vlan !== undefined) f.vlan = m.vlan;
  if (m.master !== undefined) f.masterIndex = m.master;
  return f;
}

function subject(n: Neighbour | FdbEntry): string {
  return isFdb(n) ? `fdb ${n.mac}${n.dst ? ` dst ${n.dst}` : ''} ifindex ${n.index}` : `${n.ip}${n.mac ? ` lladdr ${n.mac}` : ''} ifindex ${n.index}`;
}

/** Adds an entry; KernelError EEXIST if the key (ip, or mac[+dst]) exists. */
export function neighAdd(h: NetlinkHandle, n: Neighbour | FdbEntry): void {
  h.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_EXCL, encodeNeighMsg(neighToMsg(n)), subject(n));
}

/** Adds or overwrites the entry (idempotent). Throws KernelError. */
export function neighReplace(h: NetlinkHandle, n: Neighbour | FdbEntry): void {
  h.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, encodeNeighMsg(neighToMsg(n)), subject(n));
}

/** vxlan FDB: adds one more remote for the same MAC (`bridge fdb append`, e.g. 00:00:00:00:00:00 flooding). */
export function neighAppend(h: NetlinkHandle, n: FdbEntry): void {
  h.request(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_APPEND, encodeNeighMsg(neighToMsg(n)), subject(n));
}

/** Deletes an entry (for a vxlan FDB entry with `dst`, only that remote). KernelError ENOENT if absent. */
export function neighDel(h: NetlinkHandle, n: Neighbour | FdbEntry): void {
  h.request(RTM_DELNEIGH, 0, encodeNeighMsg(neighToMsg(n)), subject(n));
}

/** IPv4 neighbours (default), or FDB entries with `{ fdb: true }`; optionally of one device. */
export function neighList(h: NetlinkHandle, opts?: { index?: number; fdb?: false }): Neighbour[];
export function neighList(h: NetlinkHandle, opts: { index?: number; fdb: true }): FdbEntry[];
export function neighList(h: NetlinkHandle, opts: { index?: number; fdb?: boolean } = {}): Neighbour[] | FdbEntry[] {
  const family = opts.fdb ? AF_BRIDGE : AF_INET;
  // NDA_IFINDEX is the kernel-side device filter for both tables (the ndmsg ifindex must stay 0 in strict mode).
  const req: NeighMsg = { family, index: 0, state: 0, flags: 0, type: 0 };
  if (opts.index !== undefined) req.ifindex = opts.index;
  const msgs = h
    .dump(RTM_GETNEIGH, encodeNeighMsg(req), opts.fdb ? 'fdb' : 'inet')
    .filter((m) => m.type === RTM_NEWNEIGH)
    .map((m) => decodeNeighMsg(m.payload))
    .filter((m) => m.family === family && (opts.index === undefined || m.index === opts.index));
  return opts.fdb ? msgs.map(fdbFromMsg) : msgs.map(neighFromMsg);
}
