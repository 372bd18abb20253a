// Node-level map entries that do not depend on pods or on other nodes
// (reference 4.1, 4.3): the catch-all 0.0.0.0/0 -> world and this node's
// router and node IPs -> host in the ipcache (owner "node"), the same IPs in
// cilium_lxc with the HOST flag (pods reach them through the stack), and
// cilium_node_cfg (device ifindexes and MACs, router IP, flags, trace level).
import type { Link } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { reconcileIpcache } from './ipcache.ts';
import * as endpoints from './maps/endpoints.ts';
import { IDENTITY_HOST, IDENTITY_WORLD } from './maps/identities.ts';
import type { IpcacheValue } from './maps/ipcache.ts';
import * as nodeCfg from './maps/node-config.ts';
import { MAP_NAMES, withNodeMap, writeNodeConfig } from './node-maps.ts';

/**
 * Writes cilium_node_cfg for this node's devices. The trace level is the
 * agent's to set at run time (setTraceLevel): without `traceLevel` the one the
 * map holds is kept, so a second `datapath init` (or an agent restart) does
 * not silence a monitor that is listening.
 */
export function writeNodeConfigFor(cfg: NodeConfig, d: { host: Link; net: Link; vxlan: Link; native?: Link }, traceLevel?: nodeCfg.TraceLevel): void {
  writeNodeConfig(cfg.paths.pinDir, {
    hostIfindex: d.host.index, netIfindex: d.net.index, encapIfindex: d.vxlan.index,
    routerIp: cfg.routerIP, nodeIp: cfg.nodeIP ?? '0.0.0.0',
    hostMac: d.host.mac, netMac: d.net.mac, encapMac: d.vxlan.mac,
    endpointRoutes: cfg.enableEndpointRoutes, traceLevel: traceLevel ?? readTraceLevel(cfg.paths.pinDir), routeMtu: cfg.routeMTU,
    // Masquerade needs the native device's programs and the node IP to translate to.
    masquerade: cfg.enableMasquerade && !!d.native && !!cfg.nodeIP,
    nativeRouting: cfg.routingMode === 'native',
    legacyHostRouting: cfg.hostRouting === 'legacy',
    nativeIfindex: d.native?.index ?? 0,
  });
}

/** The node's trace level (node_config.trace_level; 0 in a map nothing wrote yet). `nodeDir` is the node's pin directory. */
export function readTraceLevel(nodeDir: string): nodeCfg.TraceLevel {
  return withNodeMap(nodeDir, MAP_NAMES.nodeConfig, (m) => {
    const v = m.lookup(nodeCfg.encodeKey());
    return v ? nodeCfg.decodeValue(v).traceLevel : nodeCfg.TRACE_LEVEL_OFF;
  });
}

/**
 * Sets the node's trace level; the programs read it per packet, so it takes
 * effect at once, without a reload. Everything else in node_config is kept.
 * Throws E_MAP_CODEC for a level other than 0, 1, 2 and E_NOT_INITIALIZED
 * before `datapath init` made the map.
 */
export function setTraceLevel(nodeDir: string, level: nodeCfg.TraceLevel): void {
  nodeCfg.checkTraceLevel(level);
  withNodeMap(nodeDir, MAP_NAMES.nodeConfig, (m) => {
    const key = nodeCfg.encodeKey();
    // An array's entry always exists (zeroes until init writes it); a map write replaces the whole value.
    const c = nodeCfg.decodeValue(m.lookup(key) ?? Buffer.alloc(nodeCfg.NODE_CONFIG.size));
    if (c.traceLevel !== level) m.update(key, nodeCfg.encodeValue({ ...c, traceLevel: level }));
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
