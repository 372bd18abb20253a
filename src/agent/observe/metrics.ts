// The agent's Prometheus metrics, in the text exposition format (version
// 0.0.4), with Cilium's metric names where Cilium has the metric:
//   cilium_forward_count_total / cilium_forward_bytes_total {direction}
//   cilium_drop_count_total / cilium_drop_bytes_total {reason, direction}
//       from the node's cilium_metrics map (the datapath's per-CPU counters,
//       summed), read at every scrape: exact, nothing sampled
//   cilium_endpoint_state {endpoint_state}, cilium_identity {type}
//   cilium_policy, cilium_policy_max_revision
//   cilium_agent_api_process_time_seconds {method, path, return_code} (histogram)
//   hubble_lost_events_total {source}, hubble_flows_processed_total {verdict}
// and Membrane's own: membrane_datapath_events_total {type},
// membrane_trace_level, membrane_store_healthy, membrane_cluster_remote_nodes,
// membrane_cluster_pod_ips. Served at GET /v1/metrics on the API socket and
// at http://nodeIP:9962/metrics.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RequestRecord } from '../../api/server.ts';
import { listMetrics } from '../../datapath/node-maps.ts';
import type { Agent } from '../daemon.ts';
import type { Observer } from './observer.ts';

/** Cilium's API latency buckets (seconds). */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface Histogram {
  counts: number[];
  sum: number;
  count: number;
}

/** A label value escaped for the text format. */
const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const labels = (l: Record<string, string | number>): string => {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${esc(String(v))}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};

class Exposition {
  private out: string[] = [];

  metric(name: string, type: 'counter' | 'gauge' | 'histogram', help: string, samples: [Record<string, string | number>, number][]): void {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of samples) this.out.push(`${name}${labels(l)} ${v}`);
  }

  histogram(name: string, help: string, series: [Record<string, string | number>, Histogram][]): void {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const [l, h] of series) {
      let cum = 0;
      BUCKETS.forEach((b, i) => {
        cum += h.counts[i]!;
        this.out.push(`${name}_bucket${labels({ ...l, le: b })} ${cum}`);
      });
      this.out.push(`${name}_bucket${labels({ ...l, le: '+Inf' })} ${h.count}`);
      this.out.push(`${name}_sum${labels(l)} ${h.sum}`, `${name}_count${labels(l)} ${h.count}`);
    }
  }

  text(): string {
    return `${this.out.join('\n')}\n`;
  }
}

export class Metrics {
  private api = new Map<string, { l: Record<string, string>; h: Histogram }>();
  private server?: Server;

  constructor(private readonly agent: Agent, private readonly observer: Observer) {}

  /** One answered API request (ApiServer.onRequest). */
  observeRequest(r: RequestRecord): void {
    const l = { method: r.method, path: r.route, return_code: String(r.status) };
    const key = `${l.method} ${l.path} ${l.return_code}`;
    let s = this.api.get(key);
    if (!s) {
      if (this.api.size >= 512) return; // routes are patterns: a bound that is never reached
      s = { l, h: { counts: BUCKETS.map(() => 0), sum: 0, count: 0 } };
      this.api.set(key, s);
    }
    const i = BUCKETS.findIndex((b) => r.seconds <= b);
    if (i >= 0) s.h.counts[i]!++;
    s.h.sum += r.seconds;
    s.h.count++;
  }

  async text(): Promise<string> {
    const a = this.agent;
    const e = new Exposition();
    const rows = listMetrics(a.cfg.paths.pinDir);
    const fwdCount = new Map<string, number>();
    const fwdBytes = new Map<string, number>();
    const dropCount = new Map<string, [Record<string, string>, number]>();
    const dropBytes = new Map<string, [Record<string, string>, number]>();
    const add = (m: Map<string, number>, k: string, v: number) => m.set(k, (m.get(k) ?? 0) + v);
    const addL = (m: Map<string, [Record<string, string>, number]>, l: Record<string, string>, v: number) => {
      const k = JSON.stringify(l);
      const was = m.get(k);
      m.set(k, [l, (was?.[1] ?? 0) + v]);
    };
    for (const r of rows) {
      const direction = r.direction.toUpperCase();
      if (r.reason === 0) {
        add(fwdCount, direction, r.packets);
        add(fwdBytes, direction, r.bytes);
      } else {
        addL(dropCount, { reason: r.reasonText, direction }, r.packets);
        addL(dropBytes, { reason: r.reasonText, direction }, r.bytes);
      }
    }
    e.metric('cilium_forward_count_total', 'counter', 'Total forwarded packets, tagged by ingress/egress direction', [...fwdCount].map(([d, v]) => [{ direction: d }, v]));
    e.metric('cilium_forward_bytes_total', 'counter', 'Total forwarded bytes, tagged by ingress/egress direction', [...fwdBytes].map(([d, v]) => [{ direction: d }, v]));
    e.metric('cilium_drop_count_total', 'counter', 'Total dropped packets, tagged by drop reason and ingress/egress direction', [...dropCount.values()]);
    e.metric('cilium_drop_bytes_total', 'counter', 'Total dropped bytes, tagged by drop reason and ingress/egress direction', [...dropBytes.values()]);

    const eps = a.endpoints.list();
    e.metric('cilium_endpoint_state', 'gauge', 'Count of all endpoints, tagged by endpoint state', [[{ endpoint_state: 'ready' }, eps.length]]);
    const local = new Set(eps.map((x) => x.identity));
    const remote = new Set([...a.sync.pods.values()].map((p) => p.identity).filter((id) => !local.has(id)));
    e.metric('cilium_identity', 'gauge', 'Number of identities in use on this node, by type', [[{ type: 'local_endpoints' }, local.size], [{ type: 'remote_pods' }, remote.size]]);
    const pol = a.policy.status();
    e.metric('cilium_policy', 'gauge', 'Number of policies in force', [[{}, pol.policies.length]]);
    e.metric('cilium_policy_max_revision', 'gauge', 'Highest policy revision the maps reflect', [[{}, pol.revision]]);

    const o = this.observer;
    const lost = o.lost;
    e.metric('hubble_lost_events_total', 'counter', 'Number of lost events', [
      [{ source: 'PERF_EVENT_RING_BUFFER' }, lost.ringBuffer], [{ source: 'UNDECODABLE' }, lost.undecodable], [{ source: 'OBSERVER_EVENTS_QUEUE' }, lost.subscriber]]);
    e.metric('hubble_flows_processed_total', 'counter', 'Total number of flows processed', Object.entries(o.flowCounts).map(([v, n]) => [{ verdict: v, type: 'L3_L4' }, n]));
    e.metric('membrane_datapath_events_total', 'counter', 'Datapath events read from cilium_events, by type', Object.entries(o.eventCounts).map(([t, n]) => [{ type: t }, n]));
    e.metric('membrane_trace_level', 'gauge', 'Trace level the datapath uses now (0 drops only, 1 per connection, 2 every packet)', [[{}, o.traceLevel]]);
    e.metric('membrane_store_healthy', 'gauge', 'Whether the store took a write at the last check', [[{}, a.health.status.healthy ? 1 : 0]]);
    e.metric('membrane_cluster_remote_nodes', 'gauge', 'Remote nodes this agent routes to', [[{}, a.sync.nodes.size]]);
    e.metric('membrane_cluster_pod_ips', 'gauge', 'Remote pod IPs this agent knows', [[{}, a.sync.pods.size]]);
    e.histogram('cilium_agent_api_process_time_seconds', 'Duration of processed API calls labeled by path, method and return code', [...this.api.values()].map((s) => [s.l, s.h]));
    return e.text();
  }

  /** Serves GET /metrics on host:port; returns the URL. */
  listen(host: string, port: number): Promise<string> {
    const server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('try /metrics\n');
        return;
      }
      this.text().then((t) => {
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
        res.end(t);
      }, (err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`${err.message}\n`);
      });
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        this.server = server;
        const a = server.address() as AddressInfo;
        resolve(`http://${a.address}:${a.port}/metrics`);
      });
    });
  }

  close(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return Promise.resolve();
    s.closeAllConnections();
    return new Promise((r) => s.close(() => r()));
  }
}
