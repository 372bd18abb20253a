// Live flows for the web UI: one follow stream per node agent (GET
// /v1/flows, NDJSON, Hubble's field names), reconnected by itself when the
// agent goes away and comes back. Each line is handed on as it came, tagged
// with the node; the UI server keeps a short ring of recent flows so that a
// page opened now shows what just happened, and nothing else.
import { request, type ClientRequest } from 'node:http';

/** A flow as the agents serve it (src/agent/observe/flows.ts): only the fields the UI reads are typed. */
export interface WireFlow {
  time?: string;
  uuid?: string;
  verdict?: string;
  drop_reason_desc?: string;
  node_name?: string;
  IP?: { source: string; destination: string };
  l4?: Record<string, { source_port?: number; destination_port?: number; type?: number }>;
  source?: { pod_name?: string; identity?: number; labels?: string[] };
  destination?: { pod_name?: string; identity?: number; labels?: string[] };
  trace_observation_point?: string;
  is_reply?: boolean;
  traffic_direction?: string;
  Summary?: string;
  hops?: { point: string; point_text?: string; ifname?: string; ifindex?: number; program?: string }[];
  drop?: { reason_desc?: string; reason_text?: string; file?: string; line?: number; ifname?: string };
  [k: string]: unknown;
}

export interface FlowStreamState {
  node: string;
  connected: boolean;
  error?: string;
  /** Flows received on this stream since the UI server started. */
  received: number;
  /** Events or flows the agent reported lost on this stream (its lost_events lines: ring buffer full, or this reader too slow). */
  lost: number;
}

/** How long to wait before reconnecting a stream that ended or failed. */
const RECONNECT_MS = 1_000;

/**
 * Follows one agent's flows until stop(). `onFlows` gets batches (one per
 * chunk read); `onState` every change of the connection.
 */
export class FlowStream {
  private req?: ClientRequest;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  readonly state: FlowStreamState;

  constructor(
    readonly node: string,
    private readonly apiSocket: string,
    private readonly onFlows: (flows: WireFlow[]) => void,
    private readonly onState: (s: FlowStreamState) => void,
    /** The trace level this stream asks the agent for: 1 traces each connection's first packets, 2 every packet. */
    private readonly level: 1 | 2 = 1,
  ) {
    this.state = { node, connected: false, received: 0, lost: 0 };
    this.connect();
  }

  private set(connected: boolean, error?: string): void {
    if (this.state.connected === connected && this.state.error === error) return;
    this.state.connected = connected;
    this.state.error = error;
    this.onState({ ...this.state });
  }

  private retry(error: string): void {
    this.req = undefined;
    this.set(false, error);
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => { this.timer = undefined; this.connect(); }, RECONNECT_MS);
  }

  private connect(): void {
    if (this.stopped) return;
    let rest = '';
    const req = request({ socketPath: this.apiSocket, method: 'GET', path: `/v1/flows?follow=true&level=${this.level}` }, (res) => {
      if ((res.statusCode ?? 500) >= 400) {
        res.resume();
        return this.retry(`the agent answered HTTP ${res.statusCode} to GET /v1/flows`);
      }
      this.set(true);
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        const lines = (rest + chunk).split('\n');
        rest = lines.pop() ?? '';
        const flows: WireFlow[] = [];
        for (const l of lines) {
          if (!l.trim()) continue;
          try {
            // Hubble's GetFlowsResponse lines: { flow, node_name, time }; the others (node_status, lost_events) carry no flow.
            const v = JSON.parse(l) as { flow?: WireFlow; lost_events?: { num_events_lost?: number } };
            if (v.flow) flows.push({ ...v.flow, node_name: v.flow.node_name ?? this.node });
            else if (v.lost_events?.num_events_lost) {
              this.state.lost += v.lost_events.num_events_lost;
              this.onState({ ...this.state });
            }
          } catch { /* a torn line: skip it */ }
        }
        if (flows.length) {
          this.state.received += flows.length;
          this.onFlows(flows);
        }
      });
      res.on('end', () => this.retry('the agent closed the flow stream'));
      res.on('error', (e) => this.retry(e.message));
    });
    req.on('error', (e: NodeJS.ErrnoException) => this.retry(e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'agent not running' : e.message));
    req.end();
    this.req = req;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.req?.destroy();
  }
}
