// The kernel state for other nodes and their pods (SPEC 1.2, reference
// 4.1): one route per remote pod CIDR on cilium_host with the tunnel-safe
// MTU (native routing: via the node IP on the native device), and the ipcache entries owned by "cluster": per remote node its pod
// CIDR -> world with the node as tunnel endpoint (the fallback for pods not
// yet known), its node IP -> remote-node, its router IP -> remote-node
// through the tunnel, and each remote pod's /32 -> its identity through the
// tunnel to its node. The agent's cluster sync and `datapath init` (static
// remoteNodes) both bring the node here.
import type { NetlinkHandle } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { parseCidr } from '../shared/ip.ts';
import { reconcileIpcache } from './ipcache.ts';
import { IDENTITY_REMOTE_NODE, IDENTITY_WORLD } from './maps/identities.ts';
import type { IpcacheValue } from './maps/ipcache.ts';
import type { Rollback } from './rollback.ts';
import { desiredNativeRoutes, desiredNodeRoutes, reconcileNodeRoutes } from './routes.ts';

export interface RemoteNodeEntry {
  podCIDR: string;
  nodeIP: string;
  routerIP?: string;
}

export interface RemotePodEntry {
  ip: string;
  identity: number;
  /** The node hosting the pod (its tunnel endpoint). */
  hostIP: string;
}

/** The cluster-owned ipcache entries for `remotes` and their pods, by prefix. Pods of unknown nodes (or of this node) are left out. */
export function desiredRemoteIpcache(cfg: Pick<NodeConfig, 'nodeIP'> & Partial<Pick<NodeConfig, 'routingMode'>>, remotes: readonly RemoteNodeEntry[], pods: readonly RemotePodEntry[] = []): Map<string, IpcacheValue> {
  const m = new Map<string, IpcacheValue>();
  // Native routing: the node stays the entry's tunnel endpoint (it says "in the cluster, on that node": never
  // masqueraded) but the programs hand the packet to the stack, which routes it to that node over the underlay.
  const skip = cfg.routingMode === 'native' ? { skipTunnel: true } : {};
  for (const r of remotes) {
    m.set(parseCidr(r.podCIDR).text, { identity: IDENTITY_WORLD, tunnelEndpoint: r.nodeIP, ...skip });
    m.set(`${r.nodeIP}/32`, { identity: IDENTITY_REMOTE_NODE });
    if (r.routerIP) m.set(`${r.routerIP}/32`, { identity: IDENTITY_REMOTE_NODE, tunnelEndpoint: r.nodeIP, ...skip });
  }
  const nodeIPs = new Set(remotes.map((r) => r.nodeIP));
  for (const p of pods) {
    if (p.hostIP === cfg.nodeIP || !nodeIPs.has(p.hostIP)) continue;
    m.set(`${p.ip}/32`, { identity: p.identity, tunnelEndpoint: p.hostIP, ...skip });
  }
  return m;
}

/**
 * Routes to the remote pod CIDRs: tunnel mode, on cilium_host with the tunnel
 * MTU; native mode, via each node IP on the native device (and none on
 * cilium_host: a mode change moves them). Registered on `rb`.
 */
export function reconcileRemoteRoutes(h: NetlinkHandle, hostIndex: number, nativeIndex: number | undefined, cfg: NodeConfig, remotes: readonly RemoteNodeEntry[], rb: Rollback, opts: { prune?: boolean } = {}): { added: number; removed: number } {
  const native = cfg.routingMode === 'native';
  const host = reconcileNodeRoutes(h, hostIndex, desiredNodeRoutes(cfg, hostIndex, native ? [] : remotes.map((r) => r.podCIDR)), rb, opts);
  if (nativeIndex === undefined) return host;
  const direct = reconcileNodeRoutes(h, nativeIndex, native ? desiredNativeRoutes(cfg, nativeIndex, remotes) : [], rb, { ...opts, native: true });
  return { added: host.added + direct.added, removed: host.removed + direct.removed };
}

/**
 * Brings the routes to the remote pod CIDRs (on cilium_host, or with native
 * routing on the native device `opts.nativeIndex`) and the cluster-owned
 * ipcache entries to `remotes` and `pods`. Without `prune` nothing is deleted (an agent that
 * has not re-learned its peers yet keeps their routes). Route changes are
 * registered on `rb`.
 */
export function reconcileRemotes(h: NetlinkHandle, hostIndex: number, cfg: NodeConfig, remotes: readonly RemoteNodeEntry[], pods: readonly RemotePodEntry[], rb: Rollback, opts: { prune?: boolean; nativeIndex?: number } = {}): { routes: { added: number; removed: number }; ipcache: { written: number; deleted: number } } {
  const routes = reconcileRemoteRoutes(h, hostIndex, opts.nativeIndex, cfg, remotes, rb, { prune: opts.prune });
  const ipcache = reconcileIpcache(cfg.paths.pinDir, 'cluster', desiredRemoteIpcache(cfg, remotes, pods), opts);
  return { routes, ipcache };
}
