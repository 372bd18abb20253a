// The topology the UI server sends and the page draws: plain types with no
// imports, so that both sides take them from this one file (the page, built
// apart from the server's Node code by ui/build.mjs, imports them as types
// only, which the bundler drops).

export type DeviceRole = 'host' | 'net' | 'vxlan' | 'underlay' | 'lxc';

export interface UiProgram {
  name: string;
  hook: 'ingress' | 'egress';
  mode: string;
  id?: number;
}

export interface UiDevice {
  /** Unique in the node: the device name. */
  name: string;
  role: DeviceRole;
  ifindex?: number;
  type?: string;
  mtu?: number;
  addresses: string[];
  programs: UiProgram[];
  /** For an lxc device: the pod behind it. */
  pod?: string;
}

export interface UiPod {
  name: string;
  namespace?: string;
  node: string;
  ip: string;
  labels: Record<string, string>;
  identity: number;
  endpointID: number;
  /** The host side of its veth (lxc...). */
  lxc: string;
}

export interface UiNode {
  name: string;
  /** The agent answered the last poll. */
  reachable: boolean;
  /** Why not, and since when (ISO time). */
  error?: string;
  unreachableSince?: string;
  nodeIP?: string;
  routerIP?: string;
  podCIDR?: string;
  tunnelPort?: number;
  routeMTU?: number;
  routingMode?: 'tunnel' | 'native';
  /** The agent's start time: a changed value means it restarted. */
  agentStartedAt?: string;
  devices: UiDevice[];
  /** Why the devices could not be read (no netns here, not a node). */
  devicesError?: string;
  pods: UiPod[];
}

export interface UiTopology {
  /** The lab's or cluster's name. */
  cluster: string;
  nodes: UiNode[];
  identities: { id: number; labels: string[] }[];
  /** ISO time of this reading. */
  time: string;
}
