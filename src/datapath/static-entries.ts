// Node-level map entries that do not depend on pods or on other nodes
// (reference 4.1, 4.3): the catch-all 0.0.0.0/0 -> world and this node's
// router and node IPs -> host in the ipcache (owner "node"), the same IPs in
// cilium_lxc with the HOST flag (pods reach them through the stack), and
// cilium_node_cfg (device ifindexes and MACs, router IP, flags).
import type { Link } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { reconcileIpcache } from './ipcache.ts';
import * as endpoints from './maps/endpoints.ts';
import { IDENTITY_HOST, IDENTITY_WORLD } from './maps/identities.ts';
import type { IpcacheValue } from './maps/ipcache.ts';
import { MAP_NAMES, withNodeMap, writeNodeConfig } from './node-maps.ts';

export function writeNodeConfigFor(cfg: NodeConfig, d: { host: Link; net: Link; vxlan: Link }, traceEvents = false): void {
  writeNodeConfig(cfg.paths.pinDir, {
    hostIfindex: d.host.index, netIfindex: d.net.index, encapIfindex: d.vxlan.index,
    routerIp: cfg.routerIP, nodeIp: cfg.nodeIP ?? '0.0.0.0',
    hostMac: d.host.mac, netMac: d.net.mac, encapMac: d.vxlan.mac,
    endpointRoutes: cfg.enableEndpointRoutes, traceEvents, routeMtu: cfg.routeMTU,
  });
}

/** This node's own ipcache entries, by prefix. */
export function desiredNodeIpcache(cfg: Pick<NodeConfig, 'routerIP' | 'nodeIP'>): Map<string, IpcacheValue> {
  const m = new Map<string, IpcacheValue>();
  m.set('0.0.0.0/0', { identity: IDENTITY_WORLD });
  m.set(`${cfg.routerIP}/32`, { identity: IDENTITY_HOST });
  if (cfg.nodeIP) m.set(`${cfg.nodeIP}/32`, { identity: IDENTITY_HOST });
  return m;
}

/** This node's router and node IPs in cilium_lxc with the HOST flag (pods reach them through the stack); stale host entries removed. */
export function syncHostEndpoints(cfg: NodeConfig): { written: number; deleted: number } {
  let written = 0;
  let deleted = 0;
  withNodeMap(cfg.paths.pinDir, MAP_NAMES.endpoints, (m) => {
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

/** Makes the node-owned ipcache entries and the host entries of cilium_lxc exactly what `cfg` says. */
export function syncNodeEntries(cfg: NodeConfig): { written: number; deleted: number } {
  const a = reconcileIpcache(cfg.paths.pinDir, 'node', desiredNodeIpcache(cfg));
  const b = syncHostEndpoints(cfg);
  return { written: a.written + b.written, deleted: a.deleted + b.deleted };
}
