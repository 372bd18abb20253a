// struct ifinfomsg + IFLA_* attributes (RTM_NEWLINK/DELLINK/GETLINK/SETLINK),
// including IFLA_LINKINFO for the kinds Membrane creates: veth (the peer is a
// whole ifinfomsg + attributes inside VETH_INFO_PEER), vxlan and bridge.
// Pure codec: the verbs in ../link.ts turn these into friendly Link objects.
import {
  attr, attrBe16, attrMap, attrS32, attrStr, attrU32, attrU8, nest, readBe16, readS32, readStr, readU32, readU8,
} from './attr.ts';
import { formatIp, formatMac, ipv4Bytes, macBytes } from './inet.ts';
import { WireError } from './wire-error.ts';

export const IFINFOMSG_LEN = 16;

export const IFLA_ADDRESS = 1;
export const IFLA_BROADCAST = 2;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_MASTER = 10;
export const IFLA_TXQLEN = 13;
export const IFLA_IFALIAS = 20;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_NET_NS_PID = 19;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;
export const IFLA_MIN_MTU = 50;
export const IFLA_MAX_MTU = 51;

export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;
export const IFLA_INFO_SLAVE_KIND = 4;

export const VETH_INFO_PEER = 1;

export const IFLA_VXLAN_ID = 1;
export const IFLA_VXLAN_LINK = 3;
export const IFLA_VXLAN_LOCAL = 4;
export const IFLA_VXLAN_TTL = 5;
export const IFLA_VXLAN_LEARNING = 7;
export const IFLA_VXLAN_PORT_RANGE = 10;
export const IFLA_VXLAN_PORT = 15;
export const IFLA_VXLAN_COLLECT_METADATA = 25;

/** IFLA_EXT_MASK bit: leave IFLA_STATS/STATS64 out of replies (smaller, faster dumps). */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;

export const IFF_UP = 0x1;
export const IFF_BROADCAST = 0x2;
export const IFF_LOOPBACK = 0x8;
export const IFF_POINTOPOINT = 0x10;
export const IFF_RUNNING = 0x40;
export const IFF_NOARP = 0x80;
export const IFF_PROMISC = 0x100;
export const IFF_MASTER = 0x400;
export const IFF_SLAVE = 0x800;
export const IFF_MULTICAST = 0x1000;
export const IFF_LOWER_UP = 0x10000;

/** RFC 2863 operstates as IFLA_OPERSTATE numbers them (IF_OPER_*). */
export const OPERSTATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'] as const;

export interface VxlanInfo {
  id?: number;
  /** IFLA_VXLAN_LINK: underlay ifindex. */
  link?: number;
  local?: string;
  ttl?: number;
  learning?: boolean;
  port?: number;
  portRange?: { low: number; high: number };
  collectMetadata?: boolean;
}

export interface LinkInfo {
  kind: string;
  /** veth creation only: the peer's ifinfomsg + attributes. */
  vethPeer?: LinkMsg;
  vxlan?: VxlanInfo;
  /** Kind of the master this device is enslaved to (e.g. "bridge"). */
  slaveKind?: string;
}

export interface LinkMsg {
  family: number;
  /** ifi_type: ARPHRD_* (1 = ether, 772 = loopback). */
  type: number;
  index: number;
  flags: number;
  /** Mask of `flags` bits to change (requests only). */
  change: number;
  ifname?: string;
  /** IFLA_IFALIAS: free text the kernel keeps with the device (`ip link set X alias ...`). */
  alias?: string;
  mtu?: number;
  minMtu?: number;
  maxMtu?: number;
  txqlen?: number;
  /** IFLA_ADDRESS as "aa:bb:.." */
  address?: string;
  broadcast?: string;
  /** IFLA_LINK: the "parent" ifindex (a veth's peer, a vlan's lower device). */
  link?: number;
  master?: number;
  operstate?: number;
  /** IFLA_LINK_NETNSID: netns id (as seen from this netns) where `link` lives. */
  linkNetnsId?: number;
  /** IFLA_NET_NS_FD: move the device / create the veth peer in the netns of this fd. */
  netnsFd?: number;
  extMask?: number;
  linkinfo?: LinkInfo;
}

/** A LinkMsg with every header field zero; requests start from this. */
export function emptyLinkMsg(index = 0): LinkMsg {
  return { family: 0, type: 0, index, flags: 0, change: 0 };
}

function encodeVxlan(v: VxlanInfo): Buffer[] {
  const a: Buffer[] = [];
  if (v.id !== undefined) a.push(attrU32(IFLA_VXLAN_ID, v.id));
  if (v.link !== undefined) a.push(attrU32(IFLA_VXLAN_LINK, v.link));
  if (v.local !== undefined) a.push(attr(IFLA_VXLAN_LOCAL, ipv4Bytes(v.local, 'vxlan local')));
  if (v.ttl !== undefined) a.push(attrU8(IFLA_VXLAN_TTL, v.ttl));
  if (v.learning !== undefined) a.push(attrU8(IFLA_VXLAN_LEARNING, v.learning ? 1 : 0));
  if (v.portRange !== undefined) {
    // struct ifla_vxlan_port_range { __be16 low, high; }
    const r = Buffer.alloc(4);
    r.writeUInt16BE(v.portRange.low, 0);
    r.writeUInt16BE(v.portRange.high, 2);
    a.push(attr(IFLA_VXLAN_PORT_RANGE, r));
  }
  if (v.port !== undefined) a.push(attrBe16(IFLA_VXLAN_PORT, v.port));
  if (v.collectMetadata !== undefined) a.push(attrU8(IFLA_VXLAN_COLLECT_METADATA, v.collectMetadata ? 1 : 0));
  return a;
}

function decodeVxlan(b: Buffer): VxlanInfo {
  const m = attrMap(b);
  const v: VxlanInfo = {};
  const id = m.get(IFLA_VXLAN_ID);
  if (id) v.id = readU32(id);
  const link = m.get(IFLA_VXLAN_LINK);
  if (link) v.link = readU32(link);
  const local = m.get(IFLA_VXLAN_LOCAL);
  if (local) v.local = formatIp(local);
  const ttl = m.get(IFLA_VXLAN_TTL);
  if (ttl) v.ttl = readU8(ttl);
  const learning = m.get(IFLA_VXLAN_LEARNING);
  if (learning) v.learning = readU8(learning) !== 0;
  const range = m.get(IFLA_VXLAN_PORT_RANGE);
  if (range) {
    if (range.length < 4) throw new WireError(`IFLA_VXLAN_PORT_RANGE of ${range.length} bytes, need 4`);
    v.portRange = { low: range.readUInt16BE(0), high: range.readUInt16BE(2) };
  }
  const port = m.get(IFLA_VXLAN_PORT);
  if (port) v.port = readBe16(port);
  const md = m.get(IFLA_VXLAN_COLLECT_METADATA);
  if (md) v.collectMetadata = readU8(md) !== 0;
  return v;
}

function encodeLinkInfo(li: LinkInfo): Buffer {
  const parts = [attrStr(IFLA_INFO_KIND, li.kind)];
  if (li.vethPeer) {
    // VETH_INFO_PEER's payload is an ifinfomsg followed by attributes, not a
    // plain attribute list, so it is not flagged NLA_F_NESTED (iproute2 neither).
    parts.push(nest(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, encodeLinkMsg(li.vethPeer))]));
  } else if (li.vxlan) {
    parts.push(nest(IFLA_INFO_DATA, encodeVxlan(li.vxlan)));
  }
  if (li.slaveKind !== undefined) parts.push(attrStr(IFLA_INFO_SLAVE_KIND, li.slaveKind));
  return nest(IFLA_LINKINFO, parts);
}

function decodeLinkInfo(b: Buffer): LinkInfo {
  const m = attrMap(b);
  const kind = m.get(IFLA_INFO_KIND);
  const li: LinkInfo = { kind: kind ? readStr(kind) : '' };
  const data = m.get(IFLA_INFO_DATA);
  if (data && li.kind === 'vxlan') li.vxlan = decodeVxlan(data);
  if (data && li.kind === 'veth') {
    const peer = attrMap(data).get(VETH_INFO_PEER);
    if (peer) li.vethPeer = decodeLinkMsg(peer);
  }
  const slave = m.get(IFLA_INFO_SLAVE_KIND);
  if (slave) li.slaveKind = readStr(slave);
  return li;
}

/** ifinfomsg + attributes: the payload of an RTM_*LINK message. */
export function encodeLinkMsg(m: LinkMsg): Buffer {
  const h = Buffer.alloc(IFINFOMSG_LEN);
  h.writeUInt8(m.family, 0);
  h.writeUInt16LE(m.type, 2);
  h.writeInt32LE(m.index, 4);
  h.writeUInt32LE(m.flags >>> 0, 8);
  h.writeUInt32LE(m.change >>> 0, 12);
  const a: Buffer[] = [h];
  if (m.address !== undefined) a.push(attr(IFLA_ADDRESS, macBytes(m.address)));
  if (m.broadcast !== undefined) a.push(attr(IFLA_BROADCAST, macBytes(m.broadcast, 'broadcast')));
  if (m.ifname !== undefined) a.push(attrStr(IFLA_IFNAME, m.ifname));
  if (m.alias !== undefined) a.push(attrStr(IFLA_IFALIAS, m.alias));
  if (m.mtu !== undefined) a.push(attrU32(IFLA_MTU, m.mtu));
  if (m.link !== undefined) a.push(attrU32(IFLA_LINK, m.link));
  if (m.master !== undefined) a.push(attrU32(IFLA_MASTER, m.master));
  if (m.txqlen !== undefined) a.push(attrU32(IFLA_TXQLEN, m.txqlen));
  if (m.operstate !== undefined) a.push(attrU8(IFLA_OPERSTATE, m.operstate));
  if (m.linkinfo !== undefined) a.push(encodeLinkInfo(m.linkinfo));
  if (m.netnsFd !== undefined) a.push(attrU32(IFLA_NET_NS_FD, m.netnsFd));
  if (m.extMask !== undefined) a.push(attrU32(IFLA_EXT_MASK, m.extMask));
  if (m.linkNetnsId !== undefined) a.push(attrS32(IFLA_LINK_NETNSID, m.linkNetnsId));
  if (m.minMtu !== undefined) a.push(attrU32(IFLA_MIN_MTU, m.minMtu));
  if (m.maxMtu !== undefined) a.push(attrU32(IFLA_MAX_MTU, m.maxMtu));
  return Buffer.concat(a);
}

/** Decodes an RTM_NEWLINK payload; attributes it does not know are skipped. */
export function decodeLinkMsg(p: Buffer): LinkMsg {
  if (p.length < IFINFOMSG_LEN) throw new WireError(`ifinfomsg of ${p.length} bytes, need ${IFINFOMSG_LEN}`);
  const m: LinkMsg = {
    family: p.readUInt8(0),
    type: p.readUInt16LE(2),
    index: p.readInt32LE(4),
    flags: p.readUInt32LE(8),
    change: p.readUInt32LE(12),
  };
  const a = attrMap(p.subarray(IFINFOMSG_LEN));
  const get = <T>(t: number, f: (b: Buffer) => T): T | undefined => {
    const b = a.get(t);
    return b ? f(b) : undefined;
  };
  const set = <K extends keyof LinkMsg>(k: K, v: LinkMsg[K] | undefined): void => {
    if (v !== undefined) m[k] = v;
  };
  set('address', get(IFLA_ADDRESS, formatMac));
  set('broadcast', get(IFLA_BROADCAST, formatMac));
  set('ifname', get(IFLA_IFNAME, readStr));
  set('alias', get(IFLA_IFALIAS, readStr));
  set('mtu', get(IFLA_MTU, readU32));
  set('link', get(IFLA_LINK, readU32));
  set('master', get(IFLA_MASTER, readU32));
  set('txqlen', get(IFLA_TXQLEN, readU32));
  set('operstate', get(IFLA_OPERSTATE, readU8));
  set('linkinfo', get(IFLA_LINKINFO, decodeLinkInfo));
  set('netnsFd', get(IFLA_NET_NS_FD, readU32));
  set('extMask', get(IFLA_EXT_MASK, readU32));
  set('linkNetnsId', get(IFLA_LINK_NETNSID, readS32));
  set('minMtu', get(IFLA_MIN_MTU, readU32));
  set('maxMtu', get(IFLA_MAX_MTU, readU32));
  return m;
}
