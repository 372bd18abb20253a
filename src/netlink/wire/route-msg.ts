// struct rtmsg + RTA_* attributes (RTM_NEWROUTE/DELROUTE/GETROUTE), IPv4.
// rtm_table is a u8, so tables above 255 travel only in RTA_TABLE; the codec
// always writes RTA_TABLE and on decode prefers it over rtm_table.
// RTA_METRICS is a nest of RTAX_* u32s (the kernel sends it without NLA_F_NESTED).
import { attr, attrMap, attrU32, nest, parseAttrs, readU32 } from './attr.ts';
import { formatIp, ipv4Bytes } from './inet.ts';
import { WireError } from './wire-error.ts';

export const RTMSG_LEN = 12;

export const RTA_DST = 1;
export const RTA_SRC = 2;
export const RTA_IIF = 3;
export const RTA_OIF = 4;
export const RTA_GATEWAY = 5;
export const RTA_PRIORITY = 6;
export const RTA_PREFSRC = 7;
export const RTA_METRICS = 8;
export const RTA_MULTIPATH = 9;
export const RTA_TABLE = 15;

export const RTAX_MTU = 2;

export const RT_TABLE_UNSPEC = 0;
export const RT_TABLE_MAIN = 254;
export const RT_TABLE_LOCAL = 255;

export const RTPROT_UNSPEC = 0;
export const RTPROT_KERNEL = 2;
export const RTPROT_BOOT = 3;
export const RTPROT_STATIC = 4;

export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
/** In a delete request: match any scope. */
export const RT_SCOPE_NOWHERE = 255;

export const RTN_UNSPEC = 0;
export const RTN_UNICAST = 1;
export const RTN_LOCAL = 2;
export const RTN_BROADCAST = 3;

/** rtm_flags / rtnh_flags: the gateway is on-link even if no prefix covers it. */
export const RTNH_F_ONLINK = 4;

export interface RouteMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  dst?: string;
  gateway?: string;
  oif?: number;
  prefsrc?: string;
  priority?: number;
  /** RTA_TABLE (u32). */
  tableId?: number;
  /** RTA_METRICS as RTAX_* → value. */
  metrics?: { mtu?: number };
  /** RTA_MULTIPATH present: the route has several next hops (not decoded). */
  multipath?: boolean;
}

export function encodeRouteMsg(m: RouteMsg): Buffer {
  const h = Buffer.alloc(RTMSG_LEN);
  h.writeUInt8(m.family, 0);
  h.writeUInt8(m.dstLen, 1);
  h.writeUInt8(m.srcLen, 2);
  h.writeUInt8(m.tos, 3);
  h.writeUInt8(m.table, 4);
  h.writeUInt8(m.protocol, 5);
  h.writeUInt8(m.scope, 6);
  h.writeUInt8(m.type, 7);
  h.writeUInt32LE(m.flags >>> 0, 8);
  const a: Buffer[] = [h];
  if (m.dst !== undefined) a.push(attr(RTA_DST, ipv4Bytes(m.dst, 'dst')));
  if (m.oif !== undefined) a.push(attrU32(RTA_OIF, m.oif));
  if (m.gateway !== undefined) a.push(attr(RTA_GATEWAY, ipv4Bytes(m.gateway, 'gateway')));
  if (m.priority !== undefined) a.push(attrU32(RTA_PRIORITY, m.priority));
  if (m.prefsrc !== undefined) a.push(attr(RTA_PREFSRC, ipv4Bytes(m.prefsrc, 'prefsrc')));
  if (m.metrics !== undefined) {
    const mx: Buffer[] = [];
    if (m.metrics.mtu !== undefined) mx.push(attrU32(RTAX_MTU, m.metrics.mtu));
    a.push(nest(RTA_METRICS, mx));
  }
  if (m.tableId !== undefined) a.push(attrU32(RTA_TABLE, m.tableId));
  return Buffer.concat(a);
}

export function decodeRouteMsg(p: Buffer): RouteMsg {
  if (p.length < RTMSG_LEN) throw new WireError(`rtmsg of ${p.length} bytes, need ${RTMSG_LEN}`);
  const m: RouteMsg = {
    family: p.readUInt8(0), dstLen: p.readUInt8(1), srcLen: p.readUInt8(2), tos: p.readUInt8(3),
    table: p.readUInt8(4), protocol: p.readUInt8(5), scope: p.readUInt8(6), type: p.readUInt8(7), flags: p.readUInt32LE(8),
  };
  const a = attrMap(p.subarray(RTMSG_LEN));
  const dst = a.get(RTA_DST);
  if (dst) m.dst = formatIp(dst);
  const oif = a.get(RTA_OIF);
  if (oif) m.oif = readU32(oif);
  const gw = a.get(RTA_GATEWAY);
  if (gw) m.gateway = formatIp(gw);
  const prio = a.get(RTA_PRIORITY);
  if (prio) m.priority = readU32(prio);
  const src = a.get(RTA_PREFSRC);
  if (src) m.prefsrc = formatIp(src);
  const mx = a.get(RTA_METRICS);
  if (mx) {
    m.metrics = {};
    for (const x of parseAttrs(mx)) if (x.type === RTAX_MTU) m.metrics.mtu = readU32(x.data);
  }
  const table = a.get(RTA_TABLE);
  if (table) m.tableId = readU32(table);
  if (a.has(RTA_MULTIPATH)) m.multipath = true;
  return m;
}
