// IPv4 route verbs. Routes are written and listed with the same field names,
// so a listed route can be compared with a wanted one, or passed to routeDel.
// Defaults follow `ip route`: protocol boot, scope link without a gateway and
// universe with one; a delete matches any protocol/scope/type not given.
import { KernelError } from '../shared/errors.ts';
import type { NetlinkHandle } from './handle.ts';
import { NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, RTM_DELROUTE, RTM_GETROUTE, RTM_NEWROUTE } from './wire/header.ts';
import { AF_INET, formatIp, formatPrefix, parsePrefix } from './wire/inet.ts';
import {
  decodeRouteMsg, encodeRouteMsg, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN, RTN_BROADCAST,
  RTN_LOCAL, RTN_UNICAST, RTNH_F_ONLINK, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC, type RouteMsg,
} from './wire/route-msg.ts';

const ENOENT = 2;

export type RouteProtocol = 'kernel' | 'boot' | 'static' | number;
export type RouteScope = 'universe' | 'link' | 'host' | number;
export type RouteType = 'unicast' | 'local' | 'broadcast' | number;

export interface Route {
  /** '10.0.0.0/24', '10.0.0.1/32' (a bare address means /32) or 'default'. */
  dst: string;
  gateway?: string;
  /** Output ifindex. */
  oif?: number;
  prefsrc?: string;
  protocol?: RouteProtocol;
  scope?: RouteScope;
  /** RTA_PRIORITY; listed routes always carry it (0 when unset). */
  metric?: number;
  /** RTAX_MTU route metric ("mtu 1450" in `ip route`). */
  mtu?: number;
  /** Default: main (254). */
  table?: number;
  type?: RouteType;
  /** Gateway is on-link even if no prefix covers it (RTNH_F_ONLINK). */
  onlink?: boolean;
}

const PROTOCOLS: Record<string, number> = { kernel: RTPROT_KERNEL, boot: RTPROT_BOOT, static: RTPROT_STATIC };
const SCOPES: Record<string, number> = { universe: RT_SCOPE_UNIVERSE, link: RT_SCOPE_LINK, host: RT_SCOPE_HOST };
const TYPES: Record<string, number> = { unicast: RTN_UNICAST, local: RTN_LOCAL, broadcast: RTN_BROADCAST };

function num(v: string | number, names: Record<string, number>): number {
  return typeof v === 'number' ? v : names[v]!;
}
function named<T extends string>(v: number, names: Record<string, number>): T | number {
  for (const [k, n] of Object.entries(names)) if (n === v) return k as T;
  return v;
}

/** The rtmsg for a request: `forDelete` leaves unset fields as wildcards instead of `ip route add` defaults. */
export function routeToMsg(r: Route, forDelete = false): RouteMsg {
  const { addr, prefixLen } = parsePrefix(r.dst);
  const table = r.table ?? RT_TABLE_MAIN;
  const type = r.type !== undefined ? num(r.type, TYPES) : forDelete ? 0 : RTN_UNICAST;
  let scope: number;
  if (r.scope !== undefined) scope = num(r.scope, SCOPES);
  else if (forDelete) scope = RT_SCOPE_NOWHERE;
  else if (type === RTN_LOCAL) scope = RT_SCOPE_HOST;
  else if (type === RTN_BROADCAST || r.gateway === undefined) scope = RT_SCOPE_LINK;
  else scope = RT_SCOPE_UNIVERSE;
  const m: RouteMsg = {
    family: AF_INET, dstLen: prefixLen, srcLen: 0, tos: 0,
    table: table < 256 ? table : 0, // larger ids travel only in RTA_TABLE
    protocol: r.protocol !== undefined ? num(r.protocol, PROTOCOLS) : forDelete ? 0 : RTPROT_BOOT,
    scope, type, flags: r.onlink ? RTNH_F_ONLINK : 0, tableId: table,
  };
  if (prefixLen > 0) m.dst = formatIp(addr);
  if (r.gateway !== undefined) m.gateway = r.gateway;
  if (r.oif !== undefined) m.oif = r.oif;
  if (r.prefsrc !== undefined) m.prefsrc = r.prefsrc;
  if (r.metric !== undefined) m.priority = r.metric;
  if (r.mtu !== undefined) m.metrics = { mtu: r.mtu };
  return m;
}

/** Turns a decoded RTM_NEWROUTE into a Route (IPv4). Multipath next hops are not decoded. */
export function routeFromMsg(m: RouteMsg): Route {
  const r: Route = {
    dst: m.dstLen === 0 ? 'default' : `${m.dst ?? '0.0.0.0'}/${m.dstLen}`,
    protocol: named<'kernel' | 'boot' | 'static'>(m.protocol, PROTOCOLS),
    scope: named<'universe' | 'link' | 'host'>(m.scope, SCOPES),
    metric: m.priority ?? 0,
    table: m.tableId ?? m.table,
    type: named<'unicast' | 'local' | 'broadcast'>(m.type, TYPES),
  };
  if (m.gateway !== undefined) r.gateway = m.gateway;
  if (m.oif !== undefined) r.oif = m.oif;
  if (m.prefsrc !== undefined) r.prefsrc = m.prefsrc;
  if (m.metrics?.mtu !== undefined) r.mtu = m.metrics.mtu;
  if (m.flags & RTNH_F_ONLINK) r.onlink = true;
  return r;
}

function subject(r: Route): string {
  const { addr, prefixLen } = parsePrefix(r.dst);
  let s = formatPrefix(addr, prefixLen);
  if (r.gateway !== undefined) s += ` via ${r.gateway}`;
  if (r.oif !== undefined) s += ` oif ${r.oif}`;
  if (r.table !== undefined && r.table !== RT_TABLE_MAIN) s += ` table ${r.table}`;
  return s;
}

/** Adds a route (NLM_F_EXCL): KernelError EEXIST if one with the same dst/tos/metric exists. */
export function routeAdd(h: NetlinkHandle, r: Route): void {
  h.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, encodeRouteMsg(routeToMsg(r)), subject(r));
}

/** Adds or replaces the route with the same dst/tos/metric in the table (idempotent). Throws KernelError. */
export function routeReplace(h: NetlinkHandle, r: Route): void {
  h.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, encodeRouteMsg(routeToMsg(r)), subject(r));
}

/** Deletes the first route matching every given field; KernelError ESRCH if none does. */
export function routeDel(h: NetlinkHandle, r: Route): void {
  h.request(RTM_DELROUTE, 0, encodeRouteMsg(routeToMsg(r, true)), subject(r));
}

/**
 * IPv4 routes of one table (default main, 254; 0 = every table). A table that
 * does not exist yet lists as empty.
 */
export function routeList(h: NetlinkHandle, opts: { table?: number } = {}): Route[] {
  const table = opts.table ?? RT_TABLE_MAIN;
  const filter = h.strict && table !== 0;
  const req = encodeRouteMsg({
    family: AF_INET, dstLen: 0, srcLen: 0, tos: 0, table: filter && table < 256 ? table : 0, protocol: 0, scope: 0, type: 0, flags: 0,
    ...(filter ? { tableId: table } : {}),
  });
  let msgs;
  try {
    msgs = h.dump(RTM_GETROUTE, req, table ? `table ${table}` : 'all tables');
  } catch (err) {
    if (err instanceof KernelError && err.errno === ENOENT) return []; // "ipv4: FIB table does not exist"
    throw err;
  }
  return msgs
    .filter((m) => m.type === RTM_NEWROUTE)
    .map((m) => decodeRouteMsg(m.payload))
    .filter((m) => m.family === AF_INET && (table === 0 || (m.tableId ?? m.table) === table))
    .map(routeFromMsg);
}
