// Node-level map entries that do not depend on pods (reference 4.1, 4.3):
// the catch-all 0.0.0.0/0 -> world, this node's router and node IPs -> host
// (also in cilium_lxc with the HOST flag, so pods reach them via the stack),
// and per remote node: its pod CIDR -> world with that node as tunnel
// endpoint (the fallback for pods not yet known), its node IP -> remote-node,
// its router IP -> remote-node through the tunnel.
import type { Link } from '../netlink/index.ts';
import { parseCidr } from '../shared/ip.ts';
import type { NodeConfig } from './config.ts';
import * as endpoints from './maps/endpoints.ts';
import { IDENTITY_HOST as HOST_ID, IDENTITY_REMOTE_NODE as REMOTE_NODE_ID, IDENTITY_WORLD as WORLD_ID } from './maps/identities.ts';
import * as ipcache from './maps/ipcache.ts';
import { MAP_NAMES, withNodeMap, writeNodeConfig } from './node-maps.ts';

export function writeNodeConfigFor(nodeDir: string, cfg: NodeConfig, d: { host: Link; net: Link; vxlan: Link }, routeMtu: number, traceEvents = false): void {
  writeNodeConfig(nodeDir, {
    hostIfindex: d.host.index, netIfindex: d.net.index, encapIfindex: d.vxlan.index,
    routerIp: cfg.routerIP, nodeIp: cfg.nodeIP ?? '0.0.0.0',
    hostMac: d.host.mac, netMac: d.net.mac, encapMac: d.vxlan.mac,
    endpointRoutes: cfg.enableEndpointRoutes, traceEvents, routeMtu,
  });
}

export interface RemoteNodeEntry {
  podCIDR: string;
  nodeIP: string;
  routerIP?: string;
}

/** The node-level ipcache entries for this node and its remote nodes, by prefix. */
export function desiredNodeIpcache(cfg: Pick<NodeConfig, 'routerIP' | 'nodeIP'>, remotes: readonly RemoteNodeEntry[]): Map<string, ipcache.IpcacheValue> {
  const m = new Map<string, ipcache.IpcacheValue>();
  m.set('0.0.0.0/0', { identity: WORLD_ID });
  for (const r of remotes) {
    m.set(parseCidr(r.podCIDR).text, { identity: WORLD_ID, tunnelEndpoint: r.nodeIP });
    m.set(`${r.nodeIP}/32`, { identity: REMOTE_NODE_ID });
    if (r.routerIP) m.set(`${r.routerIP}/32`, { identity: REMOTE_NODE_ID, tunnelEndpoint: r.nodeIP });
  }
  m.set(`${cfg.routerIP}/32`, { identity: HOST_ID });
  if (cfg.nodeIP) m.set(`${cfg.nodeIP}/32`, { identity: HOST_ID });
  return m;
}

/** Node-level entries are these; pod /32 entries (any other identity) are left to the agent. */
export function isNodeLevelEntry(prefix: string, v: ipcache.IpcacheValue): boolean {
  if (prefix.endsWith('/32')) return v.identity === REMOTE_NODE_ID || v.identity === HOST_ID;
  return v.identity === WORLD_ID;
}

/**
 * Makes the ipcache hold every entry of `want` (writing only those missing
 * or different) and deletes the entries `owned` claims that `want` lacks.
 * One dump of the map, whatever the number of entries changed.
 */
export function reconcileIpcache(nodeDir: string, want: ReadonlyMap<string, ipcache.IpcacheValue>, owned: (prefix: string, v: ipcache.IpcacheValue) => boolean): { written: number; deleted: number } {
  let written = 0;
  let deleted = 0;
  withNodeMap(nodeDir, MAP_NAMES.ipcache, (m) => {
    const have = new Map<string, Buffer>();
    for (const [k, v] of m.entries()) have.set(ipcache.decodeKey(k), v);
    for (const [prefix, v] of want) {
      const enc = ipcache.encodeValue(v);
      if (have.get(prefix)?.equals(enc)) continue;
      m.update(ipcache.encodeKey(prefix), enc);
      written++;
    }
    for (const [prefix, raw] of have) {
      if (want.has(prefix) || !owned(prefix, ipcache.decodeValue(raw))) continue;
      m.delete(ipcache.encodeKey(prefix));
      deleted++;
    }
  });
  return { written, deleted };
}

/** This node's router and node IPs in cilium_lxc with the HOST flag (pods reach them through the stack); stale host entries removed. */
export function syncHostEndpoints(nodeDir: string, cfg: Pick<NodeConfig, 'routerIP' | 'nodeIP'>): { written: number; deleted: number } {
  let written = 0;
  let deleted = 0;
  withNodeMap(nodeDir, MAP_NAMES.endpoints, (m) => {
    const hostIPs = new Set([cfg.routerIP, ...(cfg.nodeIP ? [cfg.nodeIP] : [])]);
    for (const ip of hostIPs) {
      const { key, value } = endpoints.encodeEntry(endpoints.hostEndpoint(ip));
      if (m.lookup(key)?.equals(value)) continue;
      m.update(key, value);
      written++;
    }
    for (const [k, v] of m.entries()) {
      const e = endpoints.decodeEntry(k, v);
      if ((e.flags & endpoints.ENDPOINT_F_HOST) && !hostIPs.has(e.ip)) {
        m.delete(k);
        deleted++;
      }
    }
  });
  return { written, deleted };
}

/**
 * Makes the node-level ipcache entries and the host entries of cilium_lxc
 * exactly what `cfg` (and `remotes`, default cfg.remoteNodes) say: missing
 * or changed entries are written, node-level entries of removed nodes
 * deleted (unless `prune` is false).
 */
export function syncStaticNodeEntries(nodeDir: string, cfg: NodeConfig, remotes: readonly RemoteNodeEntry[] = cfg.remoteNodes, prune = true): { written: number; deleted: number } {
  const a = reconcileIpcache(nodeDir, desiredNodeIpcache(cfg, remotes), prune ? isNodeLevelEntry : () => false);
  const b = syncHostEndpoints(nodeDir, cfg);
  return { written: a.written + b.written, deleted: a.deleted + b.deleted };
}
