// The node routes of SPEC 1.2 (Cilium's createNodeRouteSpec): the router IP
// as a scope-link /32 nexthop route, the local pod CIDR via the router IP
// (unless endpoint routes are on), and in tunnel mode one route per remote
// node's pod CIDR with MTU = device MTU - 50 so pods never send what VXLAN
// would fragment; in native mode those go via the remote node IP on the
// native device instead (autoDirectNodeRoutes).
import { type NetlinkHandle, type Route, routeDel, routeList, routeReplace } from '../netlink/index.ts';
import { wrap } from '../shared/errors.ts';
import type { NodeConfig } from '../shared/config.ts';
import type { Rollback } from './rollback.ts';

/**
 * Routing protocol of the native-routing routes (`<podCIDR> via <nodeIP> dev
 * <native device>`, Cilium's autoDirectNodeRoutes): it marks them as ours, so
 * reconciling them never touches the device's other routes (its subnet, a
 * default route). 0xc4 is unassigned in iproute2's rt_protos.
 */
export const NATIVE_ROUTE_PROTO = 196;

/** Native routing: each remote node's pod CIDR straight to its node IP over the native device (no tunnel, so no MTU reduction). */
export function desiredNativeRoutes(cfg: Pick<NodeConfig, 'routeMetric'>, nativeIndex: number, remotes: readonly { podCIDR: string; nodeIP: string }[]): Route[] {
  const metric = cfg.routeMetric > 0 ? cfg.routeMetric : undefined;
  return remotes.map((r) => ({ dst: r.podCIDR, gateway: r.nodeIP, oif: nativeIndex, protocol: NATIVE_ROUTE_PROTO, scope: 'universe', metric }));
}

/** The routes cilium_host must carry for `cfg` and the remote pod CIDRs, nexthop route first. */
export function desiredNodeRoutes(cfg: Pick<NodeConfig, 'routerIP' | 'podCIDR' | 'routeMTU' | 'enableEndpointRoutes' | 'routeMetric'>, hostIndex: number, remotePodCIDRs: readonly string[]): Route[] {
  const metric = cfg.routeMetric > 0 ? cfg.routeMetric : undefined;
  const via = (dst: string, mtu?: number): Route => ({
    dst, gateway: cfg.routerIP, oif: hostIndex, prefsrc: cfg.routerIP, protocol: 'kernel', scope: 'universe', metric, mtu,
  });
  const routes: Route[] = [{ dst: `${cfg.routerIP}/32`, oif: hostIndex, protocol: 'kernel', scope: 'link', metric }];
  // With endpoint routes each pod gets a /32 to its lxc device instead (reference 5.4).
  if (!cfg.enableEndpointRoutes) routes.push(via(cfg.podCIDR));
  for (const c of remotePodCIDRs) routes.push(via(c, cfg.routeMTU));
  return routes;
}

function key(r: Route): string {
  return `${r.dst}|${r.metric ?? 0}`;
}

function same(a: Route, b: Route): boolean {
  return a.dst === b.dst && (a.gateway ?? '') === (b.gateway ?? '') && (a.prefsrc ?? '') === (b.prefsrc ?? '')
    && (a.metric ?? 0) === (b.metric ?? 0) && (a.mtu ?? 0) === (b.mtu ?? 0) && a.oif === b.oif;
}

function describe(r: Route): string {
  return `route ${r.dst}${r.gateway ? ` via ${r.gateway}` : ''}${r.metric ? ` metric ${r.metric}` : ''}`;
}

/** IPv4 routes in the main table whose output device is cilium_host. */
export function hostDeviceRoutes(h: NetlinkHandle, hostIndex: number): Route[] {
  return routeList(h).filter((r) => r.oif === hostIndex && r.dst !== undefined);
}

/** The native-routing routes on the native device (protocol NATIVE_ROUTE_PROTO): only ours. */
export function nativeDeviceRoutes(h: NetlinkHandle, nativeIndex: number): Route[] {
  return routeList(h).filter((r) => r.oif === nativeIndex && r.protocol === NATIVE_ROUTE_PROTO && r.dst !== undefined);
}

/**
 * Brings the routes on cilium_host to exactly `desired`: missing or changed
 * ones are replaced, others on that device (a removed remote node, an old
 * metric) are deleted unless `prune` is false. Unchanged routes are not touched.
 */
export function reconcileNodeRoutes(h: NetlinkHandle, hostIndex: number, desired: Route[], rb: Rollback, opts: { prune?: boolean; native?: boolean } = {}): { added: number; removed: number } {
  // native: the routes on the native device, of which only ours (NATIVE_ROUTE_PROTO) are compared and pruned.
  const current = opts.native ? nativeDeviceRoutes(h, hostIndex) : hostDeviceRoutes(h, hostIndex);
  const dev = opts.native ? `ifindex ${hostIndex}` : 'cilium_host';
  const byKey = new Map(current.map((r) => [key(r), r]));
  let added = 0;
  let removed = 0;
  for (const r of desired) {
    const cur = byKey.get(key(r));
    if (cur && same(cur, r)) continue;
    try {
      routeReplace(h, r);
    } catch (e) {
      throw wrap(`install ${describe(r)} dev ${dev}`, e);
    }
    added++;
    rb.push(describe(r), () => (cur ? routeReplace(h, cur) : routeDel(h, r)));
  }
  const want = new Set(desired.map(key));
  // Without prune (an agent that has not re-learned its peers yet) nothing is deleted.
  if (opts.prune === false) return { added, removed };
  // Prefix routes before the /32 nexthop route they go via.
  const stale = current.filter((r) => !want.has(key(r))).sort((a, b) => prefixLen(a) - prefixLen(b));
  for (const r of stale) {
    try {
      routeDel(h, r);
    } catch (e) {
      throw wrap(`remove stale ${describe(r)} dev ${dev}`, e);
    }
    removed++;
    rb.push(`remove ${describe(r)}`, () => routeReplace(h, r));
  }
  return { added, removed };
}

function prefixLen(r: Route): number {
  return r.dst === 'default' ? 0 : Number(r.dst.split('/')[1] ?? 32);
}
