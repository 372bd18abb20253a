// Every default of the datapath in one place, as Cilium's pkg/defaults.
// Config loading, the CLI's help and the docs all read from here.

export const HOST_DEVICE = 'cilium_host';
export const SECOND_HOST_DEVICE = 'cilium_net';
export const VXLAN_DEVICE = 'cilium_vxlan';

/** Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 (pkg/mtu TunnelOverheadIPv4). */
export const TUNNEL_OVERHEAD_IPV4 = 50;

export const MIN_MTU = 1280;
export const MAX_MTU = 65535;

export const defaults = {
  deviceMTU: 1500,
  tunnelPort: 8472,
  tunnelSourcePortRange: '0-0',
  enableEndpointRoutes: false,
  routeMetric: 0,
  /** A bpffs in the root mount namespace shared by every run for a node (see docs/kernel-notes/bpf.md). */
  bpffsRoot: '/run/membrane/bpffs',
  /** Agent state (endpoints, IPAM) and API sockets live under here, one directory per node. */
  stateRoot: '/run/membrane/state',
  /** The embedded cluster store shared by the agents of one machine. */
  storePath: '/run/membrane/cluster.db',
  /** Seconds a node's store entries outlive its agent. */
  leaseTTL: 10,
  txqlen: 1000,
  /** The host endpoint's ID: names the calls map of cilium_host (cilium_calls_hostns_00001). */
  hostEndpointID: 1,
} as const;

/** Pod-side and remote-route MTU: the device MTU less the VXLAN overhead. */
export function routeMTU(deviceMTU: number): number {
  return deviceMTU - TUNNEL_OVERHEAD_IPV4;
}
