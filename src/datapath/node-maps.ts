// The node's pinned global maps: opening them by name, writing
// cilium_node_cfg, and the listings of cilium_lxc and cilium_metrics
// (ipcache entries go through ipcache.ts, which decides their owner).
import { BpfMap, pinExists, possibleCpus } from '../bpf/index.ts';
import { MembraneError } from '../shared/errors.ts';
import * as endpoints from './maps/endpoints.ts';
import * as ipcache from './maps/ipcache.ts';
import * as metrics from './maps/metrics.ts';
import * as nodeCfg from './maps/node-config.ts';
import { globalsDir } from './paths.ts';

export const MAP_NAMES = {
  ipcache: ipcache.IPCACHE_MAP_NAME,
  endpoints: endpoints.ENDPOINTS_MAP_NAME,
  nodeConfig: nodeCfg.NODE_CONFIG_MAP_NAME,
  metrics: 'cilium_metrics',
  events: 'cilium_events',
} as const;

/** Opens a pinned global map of the node; the caller owns (and closes) it. */
export function openNodeMap(nodeDir: string, name: string): BpfMap {
  const path = `${globalsDir(nodeDir)}/${name}`;
  if (!pinExists(path)) {
    throw new MembraneError(`open map ${name}`, { code: 'E_NOT_INITIALIZED', cause: `${path} is not pinned`, hint: 'run `membrane datapath init` (or start the agent) on this node first' });
  }
  return BpfMap.openPinned(path);
}

/** Runs fn with the map open, closing it afterwards. */
export function withNodeMap<T>(nodeDir: string, name: string, fn: (m: BpfMap) => T): T {
  const m = openNodeMap(nodeDir, name);
  try {
    return fn(m);
  } finally {
    m.close();
  }
}

export function writeNodeConfig(nodeDir: string, c: nodeCfg.NodeConfig): void {
  withNodeMap(nodeDir, MAP_NAMES.nodeConfig, (m) => m.update(nodeCfg.encodeKey(), nodeCfg.encodeValue(c)));
}

export function listEndpointMap(nodeDir: string): endpoints.EndpointEntry[] {
  return withNodeMap(nodeDir, MAP_NAMES.endpoints, (m) => [...m.entries()].map(([k, v]) => endpoints.decodeEntry(k, v)));
}

export interface MetricRow {
  reason: number;
  reasonText: string;
  direction: string;
  site: string;
  packets: number;
  bytes: number;
}

/** cilium_metrics summed over CPUs, one row per (reason, direction, file:line). */
export function listMetrics(nodeDir: string): MetricRow[] {
  const ncpu = possibleCpus();
  return withNodeMap(nodeDir, MAP_NAMES.metrics, (m) => [...m.entries()].map(([k, v]) => {
    const key = metrics.decodeKey(k);
    const sum = metrics.sumValues(metrics.decodePerCpuValues(v, ncpu));
    const d = metrics.describeKey(key);
    return { reason: key.reason, reasonText: d.reason, direction: d.direction, site: d.site, packets: Number(sum.count), bytes: Number(sum.bytes) };
  }).sort((a, b) => a.reason - b.reason || a.site.localeCompare(b.site)));
}
