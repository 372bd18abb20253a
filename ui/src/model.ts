// The shapes the UI server sends, as the page reads them. The topology's
// types are the server's own (src/ui/topology-types.ts, types only); flows
// and `membrane trace -o json` are read loosely (every field optional), as
// the page must draw whatever an agent of another version sends.

export type { DeviceRole, UiDevice, UiNode, UiPod, UiProgram, UiTopology } from '../../src/ui/topology-types.ts';

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
