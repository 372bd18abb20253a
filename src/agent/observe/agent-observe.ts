// The agent's observability: the event pipeline (observer.ts) fed by the
// node's cilium_events, its API routes, and the Prometheus metrics
// (metrics.ts) on the API socket and on nodeIP:METRICS_PORT.
//
// Routes (NDJSON streams: one JSON value per line):
//   GET  /v1/events    live datapath events: a hello line, then events and
//                      lost lines. ?type=drop,trace,... ?from-pod= ?from-ip=
//                      ?level=1|2 (what the datapath traces while it is open)
//   GET  /v1/flows     flows in Hubble's shape: a hello line, the newest
//                      ?last=N matching ones, then (?follow=1) new ones;
//                      filters as filters.ts parses them
//   GET  /v1/observe   the pipeline's status (level, subscribers, counts, lost)
//   POST /v1/observe/level {level, seconds}: a timed trace level (for a probe)
//   DELETE /v1/observe/level/ID
//   GET  /v1/metrics   the Prometheus text
import { readdirSync, readFileSync } from 'node:fs';
import type { ApiServer } from '../../api/server.ts';
import { identityName } from '../../datapath/maps/identities.ts';
import { MembraneError } from '../../shared/errors.ts';
import type { Agent } from '../daemon.ts';
import type { EndpointState } from '../state-file.ts';
import { parseEventFilter, parseFlowFilter } from './filters.ts';
import { MAX_HOLD_SECONDS, type TraceLevel } from './hub.ts';
import type { ObservedEvent } from './model.ts';
import { Observer, type EventSource, type ObserverContext } from './observer.ts';
import { METRICS_PORT } from './constants.ts';
import type { Metrics } from './metrics.ts';

/** Lines a follower may have queued before further ones are dropped (and counted): ~6 MiB of events. */
const MAX_QUEUE = 8192;
/** How stale the endpoint lookups of the pipeline may be (a new pod's first packets may miss its name for this long). */
const ENDPOINTS_TTL_MS = 100;

/** Device names by ifindex, from /sys/class/net (the agent runs in its node's netns, and so does its sysfs). */
class IfNames {
  private names = new Map<number, string>();
  private readAt = 0;

  get(ifindex: number): string | undefined {
    const hit = this.names.get(ifindex);
    if (hit !== undefined) return hit;
    // Unknown: read again, at most once a second (a new pod's veth).
    if (Date.now() - this.readAt < 1000) return undefined;
    this.readAt = Date.now();
    const next = new Map<number, string>();
    try {
      for (const name of readdirSync('/sys/class/net')) {
        try { next.set(Number(readFileSync(`/sys/class/net/${name}/ifindex`, 'utf8')), name); } catch { /* gone */ }
      }
    } catch { /* no sysfs */ }
    this.names = next;
    return next.get(ifindex);
  }
}

/** Labels of identities, from the store (asked once per identity; the answer comes by the next event). */
class IdentityLabels {
  private cache = new Map<number, string[] | null>();

  constructor(private readonly agent: Agent) {}

  get(id: number): string[] | undefined {
    if (id < 256) return [identityName(id)];
    const hit = this.cache.get(id);
    if (hit !== undefined) return hit ?? undefined;
    if (this.cache.size > 65536) this.cache.clear();
    this.cache.set(id, null);
    this.agent.identities.lookup(id).then((l) => {
      if (l) this.cache.set(id, Object.entries(l).map(([k, v]) => `${k.includes(':') ? k : `k8s:${k}`}=${v}`).sort());
      else this.cache.delete(id);
    }, () => this.cache.delete(id));
    return undefined;
  }
}

function context(agent: Agent, labels: IdentityLabels): ObserverContext {
  const ifnames = new IfNames();
  // The endpoints by IP and by id, rebuilt at most every ENDPOINTS_TTL_MS: a flood asks for every flow.
  let cache: { at: number; byIP: Map<string, EndpointState>; byId: Map<number, EndpointState> } | undefined;
  const endpoints = () => {
    const now = Date.now();
    if (!cache || now - cache.at > ENDPOINTS_TTL_MS) {
      const list = agent.endpoints.list();
      cache = { at: now, byIP: new Map(list.map((e) => [e.ip, e])), byId: new Map(list.map((e) => [e.id, e])) };
    }
    return cache;
  };
  return {
    node: agent.cfg.nodeName,
    wallTime: () => new Date(0), // replaced by the observer's own clock below
    endpointByIP(ip) {
      const e = endpoints().byIP.get(ip);
      return e ? { id: e.id, identity: e.identity, podName: e.podName, podNamespace: e.podNamespace, labels: e.labels } : undefined;
    },
    identityOfIP(ip) {
      const remote = agent.sync.pods.get(ip);
      if (remote) return remote.identity;
      if (ip === agent.cfg.nodeIP || ip === agent.cfg.routerIP) return 1;
      for (const n of agent.sync.nodes.values()) if (n.nodeIP === ip || n.routerIP === ip) return 6;
      return undefined;
    },
    identityLabels: (id) => labels.get(id),
    ifname: (i) => ifnames.get(i),
    podOfEndpoint(id) {
      const e = endpoints().byId.get(id);
      return e?.podName ? `${e.podNamespace ?? 'default'}/${e.podName}` : undefined;
    },
  };
}

function levelParam(q: URLSearchParams): TraceLevel {
  const v = q.get('level');
  if (v === null || v === '' || v === '1') return 1;
  if (v === '2') return 2;
  if (v === '0') return 0;
  throw new MembraneError('open stream', { code: 'E_BAD_REQUEST', cause: `level: must be 0, 1 or 2 (got ${JSON.stringify(v)})` });
}

function lastParam(q: URLSearchParams): number {
  const v = q.get('last');
  if (v === null || v === '') return q.get('follow') ? 0 : 20;
  if (!/^\d{1,7}$/.test(v)) throw new MembraneError('list flows', { code: 'E_BAD_REQUEST', cause: `last: must be a number (got ${JSON.stringify(v)})` });
  return Number(v);
}

export interface Observability {
  observer: Observer;
  metricsText(): Promise<string>;
  /** The address the metrics listen on (http://IP:PORT/metrics), once listening. */
  metricsURL?: string;
  stop(): Promise<void>;
}

/** Starts the pipeline and mounts its routes on `api`; a failure to listen for metrics is logged, not fatal. */
export async function startObservability(agent: Agent, api: ApiServer, log: (s: string) => void): Promise<Observability> {
  const labels = new IdentityLabels(agent);
  const ctx = context(agent, labels);
  // The labels of remote pods' identities, asked before their first packet comes (a flow is built at once).
  const warm = () => { for (const p of agent.sync.pods.values()) labels.get(p.identity); };
  warm();
  const warmer = setInterval(warm, 250);
  warmer.unref();
  const observer = new Observer({
    node: agent.cfg.nodeName,
    ctx,
    openSource(): EventSource {
      const r = agent.dp.openEventReader();
      return { consume: () => r.consume() as unknown as ObservedEvent[], lost: () => r.lost().total, undecodable: () => r.undecodable(), close: () => r.close() };
    },
    setTraceLevel: (level) => agent.dp.setTraceLevel(level),
    log,
  });
  ctx.wallTime = (ns) => observer.wallTime(ns);
  observer.start();

  const { Metrics } = await import('./metrics.ts');
  const metrics: Metrics = new Metrics(agent, observer);
  api.onRequest = (r) => metrics.observeRequest(r);

  api.stream('/v1/events', (_req, url, res) => {
    const q = url.searchParams;
    const filter = parseEventFilter(q);
    return observer.subscribeEvents(res, filter, levelParam(q), MAX_QUEUE);
  });
  api.stream('/v1/flows', (_req, url, res) => {
    const q = url.searchParams;
    const filter = parseFlowFilter(q);
    const last = lastParam(q);
    if (!q.get('follow')) {
      // A listing: the hello line and the newest matching flows, then the end.
      const hello = JSON.stringify({ node_status: { state_change: 'NODE_CONNECTED', node_names: [observer.node], trace_level: observer.traceLevel, lost: observer.lost }, node_name: observer.node, time: new Date().toISOString() });
      res.write(`${hello}\n`);
      for (const line of observer.lastFlows(last, filter)) res.write(line);
      res.end();
      return () => {};
    }
    return observer.subscribeFlows(res, filter, levelParam(q), last, MAX_QUEUE);
  });
  api.get('/v1/observe', () => observer.status());
  api.post('/v1/observe/level', async (_req, _url, body) => {
    const b = (await body()) as { level?: unknown; seconds?: unknown } | undefined;
    const level = b?.level;
    const seconds = b?.seconds ?? 30;
    if (level !== 1 && level !== 2) throw new MembraneError('hold trace level', { code: 'E_BAD_REQUEST', cause: `level: must be 1 or 2 (got ${JSON.stringify(level)})` });
    if (typeof seconds !== 'number' || !(seconds > 0) || seconds > MAX_HOLD_SECONDS) {
      throw new MembraneError('hold trace level', { code: 'E_BAD_REQUEST', cause: `seconds: must be a number in (0, ${MAX_HOLD_SECONDS}] (got ${JSON.stringify(seconds)})` });
    }
    return observer.hold(level, seconds);
  });
  api.delete(/^\/v1\/observe\/level\/\d+$/, (_req, url) => observer.release(Number(url.pathname.split('/').pop())));
  api.raw('GET', '/v1/metrics', (_req, res) => {
    metrics.text().then((t) => {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(t);
    }, (e: Error) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${e.message}\n`);
    });
  });

  const out: Observability = {
    observer,
    metricsText: () => metrics.text(),
    async stop() {
      clearInterval(warmer);
      observer.stop();
      await metrics.close();
    },
  };
  if (agent.cfg.nodeIP) {
    try {
      out.metricsURL = await metrics.listen(agent.cfg.nodeIP, METRICS_PORT);
      log(`metrics on ${out.metricsURL}`);
    } catch (e) {
      log(`metrics: cannot listen on ${agent.cfg.nodeIP}:${METRICS_PORT}: ${(e as Error).message} (GET /v1/metrics on the API socket still serves them)`);
    }
  }
  return out;
}
