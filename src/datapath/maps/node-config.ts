// cilium_node_cfg: node-wide values the agent writes at runtime (device
// ifindexes and MACs, router/node IP, feature flags, trace level). A
// one-entry array, key 0. Pure codec; see struct node_config in bpf/lib/maps.h.
import { checkU32, defineLayout, expectSize, MapCodecError, readIPv4, readMac, writeIPv4, writeMac } from './layout.ts';

export const NODE_CONFIG_MAP_NAME = 'cilium_node_cfg';

export const NODE_CONFIG = defineLayout('node_config', 64, {
  host_ifindex: 0, net_ifindex: 4, encap_ifindex: 8, router_ip: 12, node_ip: 16, flags: 20,
  host_mac: 24, pad1: 30, net_mac: 32, pad2: 38, encap_mac: 40, pad3: 46, route_mtu: 48, trace_level: 52, pad4: 53, native_ifindex: 56, reserved: 60,
});

/** Local pods are reached through the kernel (per-pod routes), not by direct redirect. */
export const NODE_F_ENDPOINT_ROUTES = 0x01;

/** No traces or debug records; drops and policy denials only. A trace site costs one load and one branch. */
export const TRACE_LEVEL_OFF = 0;
/**
 * Per connection (Cilium's monitor aggregation "medium"): traces at the to-* points of a packet that opens a
 * connection, adds TCP flags to what its direction has seen, or comes 5 s after its direction's last report; a
 * policy verdict for every new connection.
 */
export const TRACE_LEVEL_CONN = 1;
/** Every packet at every observation point, and the debug records (membrane trace, monitor -v). */
export const TRACE_LEVEL_ALL = 2;

export type TraceLevel = typeof TRACE_LEVEL_OFF | typeof TRACE_LEVEL_CONN | typeof TRACE_LEVEL_ALL;

/** Throws MapCodecError (E_MAP_CODEC) unless `v` is a trace level (0, 1 or 2). */
export function checkTraceLevel(v: unknown): TraceLevel {
  if (v !== TRACE_LEVEL_OFF && v !== TRACE_LEVEL_CONN && v !== TRACE_LEVEL_ALL) {
    throw new MapCodecError(`trace level: ${String(v)} is not 0 (off), 1 (per connection) or 2 (every packet)`);
  }
  return v;
}
/** SNAT pod traffic leaving the cluster to the node IP (bpf/lib/nat.h). */
export const NODE_F_MASQUERADE = 0x04;
/** Native routing: no tunnel, remote pods are reached over the native device. */
export const NODE_F_NATIVE_ROUTING = 0x08;
/** No BPF host routing: local delivery by bpf_redirect to the lxc, pod traffic out through the stack. */
export const NODE_F_LEGACY_HOST_ROUTING = 0x10;

export interface NodeConfig {
  /** ifindex of cilium_host. */
  hostIfindex: number;
  /** ifindex of cilium_net. */
  netIfindex: number;
  /** ifindex of cilium_vxlan; 0 = no tunnel device (encapsulation drops with reason 160). */
  encapIfindex: number;
  routerIp: string;
  nodeIp: string;
  hostMac: string;
  netMac: string;
  encapMac: string;
  endpointRoutes: boolean;
  /** Which traces the programs send (TRACE_LEVEL_*). */
  traceLevel: TraceLevel;
  routeMtu: number;
  /** Masquerade pod traffic leaving the cluster (default false in the codec: the agent says). */
  masquerade?: boolean;
  nativeRouting?: boolean;
  /** No bpf_redirect_peer / bpf_redirect_neigh (hostRouting: legacy). */
  legacyHostRouting?: boolean;
  /** ifindex of the native (underlay) device carrying cil_from_netdev/cil_to_netdev; 0 = none. */
  nativeIfindex?: number;
}

/** The key of the single entry. */
export function encodeKey(): Buffer {
  return Buffer.alloc(4);
}

export function encodeValue(c: NodeConfig): Buffer {
  const buf = Buffer.alloc(NODE_CONFIG.size);
  const f = NODE_CONFIG.fields;
  buf.writeUInt32LE(checkU32('host ifindex', c.hostIfindex), f.host_ifindex);
  buf.writeUInt32LE(checkU32('net ifindex', c.netIfindex), f.net_ifindex);
  buf.writeUInt32LE(checkU32('encap ifindex', c.encapIfindex), f.encap_ifindex);
  writeIPv4(buf, f.router_ip, c.routerIp);
  writeIPv4(buf, f.node_ip, c.nodeIp);
  buf.writeUInt32LE((c.endpointRoutes ? NODE_F_ENDPOINT_ROUTES : 0) | (c.masquerade ? NODE_F_MASQUERADE : 0) | (c.nativeRouting ? NODE_F_NATIVE_ROUTING : 0)
    | (c.legacyHostRouting ? NODE_F_LEGACY_HOST_ROUTING : 0), f.flags);
  writeMac(buf, f.host_mac, c.hostMac);
  writeMac(buf, f.net_mac, c.netMac);
  writeMac(buf, f.encap_mac, c.encapMac);
  buf.writeUInt32LE(checkU32('route mtu', c.routeMtu), f.route_mtu);
  buf[f.trace_level] = checkTraceLevel(c.traceLevel);
  buf.writeUInt32LE(checkU32('native ifindex', c.nativeIfindex ?? 0), f.native_ifindex);
  return buf;
}

export function decodeValue(buf: Uint8Array): NodeConfig {
  expectSize('node config', NODE_CONFIG, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const f = NODE_CONFIG.fields;
  const flags = b.readUInt32LE(f.flags);
  const level = b[f.trace_level];
  return {
    hostIfindex: b.readUInt32LE(f.host_ifindex),
    netIfindex: b.readUInt32LE(f.net_ifindex),
    encapIfindex: b.readUInt32LE(f.encap_ifindex),
    routerIp: readIPv4(b, f.router_ip),
    nodeIp: readIPv4(b, f.node_ip),
    hostMac: readMac(b, f.host_mac),
    netMac: readMac(b, f.net_mac),
    encapMac: readMac(b, f.encap_mac),
    endpointRoutes: (flags & NODE_F_ENDPOINT_ROUTES) !== 0,
    // A level this build does not know reads as "every packet": the programs treat anything >= 2 so.
    traceLevel: level > TRACE_LEVEL_ALL ? TRACE_LEVEL_ALL : (level as TraceLevel),
    routeMtu: b.readUInt32LE(f.route_mtu),
    masquerade: (flags & NODE_F_MASQUERADE) !== 0,
    nativeRouting: (flags & NODE_F_NATIVE_ROUTING) !== 0,
    legacyHostRouting: (flags & NODE_F_LEGACY_HOST_ROUTING) !== 0,
    nativeIfindex: b.readUInt32LE(f.native_ifindex),
  };
}
