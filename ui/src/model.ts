// The shapes the UI server sends (src/ui/cluster.ts, src/ui/flows.ts, and
// `membrane trace -o json`), as the page reads them. Copied, not imported:
// the page is built apart from the server's Node code.

export type DeviceRole = 'host' | 'net' | 'vxlan' | 'underlay' | 'lxc';

export interface UiProgram { name: string; hook: 'ingress' | 'egress'; mode: string; id?: number }

export interface UiDevice {
  name: string;
  role: DeviceRole;
  ifindex?: number;
  type?: string;
  mtu?: number;
  addresses: string[];
  programs: UiProgram[];
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
  lxc: string;
}

export interface UiNode {
  name: string;
  reachable: boolean;
  error?: string;
  unreachableSince?: string;
  nodeIP?: string;
  routerIP?: string;
  podCIDR?: string;
  tunnelPort?: number;
  routeMTU?: number;
  routingMode?: 'tunnel' | 'native';
  agentStartedAt?: string;
  devices: UiDevice[];
  devicesError?: string;
  pods: UiPod[];
}

export interface UiTopology {
  cluster: string;
  nodes: UiNode[];
  identities: { id: number; labels: string[] }[];
  time: string;
}

export interface FlowHop {
  point: string;
  point_text?: string;
  ifindex?: number;
  ifname?: string;
  program?: string;
  state?: string;
  src_identity?: number;
  dst_identity?: number;
  dst_endpoint?: number;
}

export interface Flow {
  time?: string;
  uuid?: string;
  verdict?: string;
  drop_reason?: number;
  drop_reason_desc?: string;
  node_name?: string;
  IP?: { source: string; destination: string };
  l4?: {
    TCP?: { source_port: number; destination_port: number; flags?: Record<string, boolean> };
    UDP?: { source_port: number; destination_port: number };
    ICMPv4?: { type: number; code?: number };
  };
  source?: { pod_name?: string; identity?: number; labels?: string[]; ID?: number };
  destination?: { pod_name?: string; identity?: number; labels?: string[]; ID?: number };
  trace_observation_point?: string;
  trace_observation_points?: string[];
  is_reply?: boolean;
  traffic_direction?: string;
  Summary?: string;
  hops?: FlowHop[];
  encap?: { tunnel_endpoint: string; vni: number };
  drop?: { reason: number; reason_desc: string; reason_text: string; file: string; line: number; ifname?: string; ext_error?: number };
  policy_verdict?: Record<string, unknown>;
}

export interface StreamState { node: string; connected: boolean; error?: string; received: number; lost?: number }

/** `membrane trace -o json` (src/cli/commands/trace.ts). */
export interface TraceHop { node: string; kind: string; point: string; device?: string; program?: string; decided: string[]; reply: boolean }
export interface TraceResult {
  source: { name: string; ip: string; node?: string };
  destination: { name: string; ip: string; node?: string };
  protocol: string;
  port?: number;
  hops: TraceHop[];
  verdict: string;
  drop?: { node: string; point: string; device?: string; reason: number; reasonText: string; file: string; line: number };
  replySeen?: boolean;
}

/** Hubble's spelling of an observation point: "to-overlay" and "TO_OVERLAY" both become TO_OVERLAY. */
export const normPoint = (p: string): string => p.toUpperCase().replace(/-/g, '_');

export function protoOf(f: Flow): string {
  if (f.l4?.TCP) return `TCP ${f.l4.TCP.destination_port}`;
  if (f.l4?.UDP) return `UDP ${f.l4.UDP.destination_port}`;
  if (f.l4?.ICMPv4) return f.l4.ICMPv4.type === 8 ? 'ICMP echo' : f.l4.ICMPv4.type === 0 ? 'ICMP reply' : `ICMP ${f.l4.ICMPv4.type}`;
  return '';
}

export function portOf(f: Flow): number | undefined {
  return f.l4?.TCP?.destination_port ?? f.l4?.UDP?.destination_port;
}

export const dropped = (f: Flow): boolean => f.verdict === 'DROPPED';

export function dropReasonOf(f: Flow): string {
  return f.drop_reason_desc ?? f.drop?.reason_desc ?? '';
}

/** The label a drop gets on the drawing: Hubble's reason name and the datapath's text. */
export function dropLabel(f: Flow): string {
  const text = f.drop?.reason_text;
  return `✗ ${dropReasonOf(f)}${text ? `: ${text}` : ''}`;
}
