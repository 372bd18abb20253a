// The server side of `membrane ui`: serves the built single-page app
// (ui/dist) and a small API that aggregates the agents' APIs, bound to
// loopback unless told otherwise. It keeps no state of its own beyond the
// last reading of each node (to show an unreachable node as it was) and a
// short ring of recent flows; every answer comes from the agents and the
// nodes' kernel state.
//
//   GET  /api/topology            nodes, devices with programs, pods (cluster.ts)
//   GET  /api/events              server-sent events: topology, flows, streams
//   GET  /api/flows               the recent flows (newest last)
//   GET  /api/policies            the cluster's policies (from any agent)
//   GET  /api/pods/NODE/POD/policies   which policies select the pod, per direction
//   POST /api/policy/trace        { src, dst, protocol, port }: the verdict for a pair (the agent's policy trace);
//                                 an end is { node, pod }, pod "@host" for the node itself
//   POST /api/trace               { src, dst, protocol, port }: `membrane trace` (a probe and its path)
//   POST /api/flow/entries        a flow: the map entries that decided each of its hops, read now
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readJsonBody } from '../api/body.ts';
import { apiCall } from '../api/client.ts';
import { errorCodeOf, httpStatusOf } from '../shared/error-codes.ts';
import { MembraneError } from '../shared/errors.ts';
import { readTopology, type UiNodeSource, type UiPod, type UiTopology } from './cluster.ts';
import { FlowStream, type WireFlow } from './flows.ts';

/** The built app: ui/dist at the repository root (two levels above src/ui and dist/cli alike). */
export const DEFAULT_ASSETS_DIR = fileURLToPath(new URL('../../ui/dist/', import.meta.url));

export interface UiServerOptions {
  /** The lab's or cluster's name, shown in the page. */
  cluster: string;
  /** The nodes, asked again on every poll (a lab may gain or lose nodes). */
  sources: () => UiNodeSource[];
  host: string;
  port: number;
  assetsDir?: string;
  /** How to run `membrane trace`: the argv of `membrane`, and the flags that name the target (after the command's own). */
  membrane?: { argv: string[]; targetFlags: string[] };
  /** The trace level the flow streams ask for (1: each connection's first packets, 2: every packet). */
  traceLevel?: 1 | 2;
  /** How often the topology is read while a page is open. */
  pollMs?: number;
  log?: (line: string) => void;
}

/** Recent flows kept for a page opened now. */
const FLOW_RING = 2_000;
/** Flows sent to the pages at most this often, as one batch: 1,000 flows/s become 10 events/s.
 * At most MAX_BATCH per event: 2,500 flows/s reach a page at most. */
const FLOW_FLUSH_MS = 100;
/** A batch larger than this is cut to its newest flows (the rest counted as skipped): the page cannot draw more anyway. */
const MAX_BATCH = 250;

const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json', '.map': 'application/json', '.ico': 'image/x-icon',
};

export class UiServer {
  private server?: Server;
  private readonly clients = new Set<ServerResponse>();
  private topology?: UiTopology;
  private reading?: Promise<UiTopology>;
  private pollTimer?: NodeJS.Timeout;
  private flushTimer?: NodeJS.Timeout;
  private readonly streams = new Map<string, FlowStream>();
  private readonly ring: WireFlow[] = [];
  private batch: WireFlow[] = [];
  private skipped = 0;
  private lastTopologyJson = '';
  readonly assetsDir: string;
  url = '';

  constructor(private readonly o: UiServerOptions) {
    this.assetsDir = o.assetsDir ?? DEFAULT_ASSETS_DIR;
  }

  /** Listens; resolves with the URL. The caller owns the server: stop() closes it and every stream. */
  async start(): Promise<string> {
    const server = createServer((req, res) => { this.handle(req, res).catch((e) => this.fail(res, e)); });
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => reject(new MembraneError(`listen on ${this.o.host}:${this.o.port}`, {
        code: 'E_USAGE', cause: e.code === 'EADDRINUSE' ? 'address in use' : e.message,
        hint: e.code === 'EADDRINUSE' ? 'another membrane ui (or something else) listens there: pick another --listen' : undefined,
      })));
      server.listen(this.o.port, this.o.host, () => resolve());
    });
    this.server = server;
    const a = server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    this.url = `http://${host}:${a.port}/`;
    return this.url;
  }

  async stop(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.flushTimer) clearInterval(this.flushTimer);
    for (const s of this.streams.values()) s.stop();
    this.streams.clear();
    for (const c of this.clients) c.end();
    this.clients.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
  }

  /** The topology now (one reading shared by concurrent callers). */
  async read(): Promise<UiTopology> {
    this.reading ??= readTopology(this.o.cluster, this.o.sources(), this.topology).then((t) => {
      this.topology = t;
      this.reading = undefined;
      return t;
    }, (e) => {
      this.reading = undefined;
      throw e;
    });
    return this.reading;
  }

  private fail(res: ServerResponse, e: unknown): void {
    if (res.headersSent) return void res.destroy();
    const code = errorCodeOf(e);
    const err = e as MembraneError;
    sendJson(res, httpStatusOf(code), { code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://ui');
    const p = url.pathname;
    if (p.startsWith('/api/')) this.checkOrigin(req);
    if (req.method === 'GET' && p === '/api/topology') return sendJson(res, 200, await this.read());
    if (req.method === 'GET' && p === '/api/events') return this.subscribe(req, res);
    if (req.method === 'GET' && p === '/api/flows') return sendJson(res, 200, this.ring);
    if (req.method === 'GET' && p === '/api/policies') return sendJson(res, 200, await this.anyAgent((s) => apiCall(s, 'GET', '/v1/policies', undefined, { timeoutMs: 5_000 })));
    const sel = /^\/api\/pods\/([^/]+)\/([^/]+)\/policies$/.exec(p);
    if (req.method === 'GET' && sel) return sendJson(res, 200, await this.selecting(decode(sel[1]!), decode(sel[2]!)));
    if (req.method === 'POST' && p === '/api/policy/trace') return sendJson(res, 200, await this.policyTrace(await readBody(req)));
    if (req.method === 'POST' && p === '/api/trace') return sendJson(res, 200, await this.trace(await readBody(req)));
    if (req.method === 'POST' && p === '/api/flow/entries') return sendJson(res, 200, await this.flowEntries(await readBody(req)));
    if (p.startsWith('/api/')) throw new MembraneError(`no route ${req.method} ${p}`, { code: 'E_NOT_FOUND' });
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new MembraneError(`${req.method} ${p}`, { code: 'E_NOT_FOUND', cause: 'only GET serves files' });
    return this.serveFile(p, res);
  }

  /**
   * The API answers this page only. A page of another site open in the same
   * browser could otherwise send probes (POST /api/trace) or read the
   * cluster: a request naming another origin is refused, and so is one whose
   * Host is not the address served (DNS rebinding) while that is loopback.
   * POSTs must say application/json, which a cross-site form cannot send
   * without a preflight this server never grants.
   */
  private checkOrigin(req: IncomingMessage): void {
    const host = req.headers.host ?? '';
    const served = new URL(this.url || 'http://127.0.0.1/');
    const port = served.port;
    const local = ['127.0.0.1', 'localhost', '[::1]'].map((h) => `${h}:${port}`);
    const refuse = (cause: string) => new MembraneError(`${req.method} ${req.url}`, { code: 'E_BAD_REQUEST', cause, hint: 'open the UI at the address membrane ui printed' });
    if (isLoopbackHost(served.hostname) && !local.includes(host)) throw refuse(`Host ${JSON.stringify(host)} is not this server`);
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== `http://${host}`) throw refuse(`a page of ${origin} may not use this API`);
    if (req.method === 'POST' && !/^application\/json\b/.test(req.headers['content-type'] ?? '')) throw refuse('the body must be sent as application/json');
  }

  private serveFile(path: string, res: ServerResponse): void {
    const rel = normalize(decode(path)).replace(/^(\.\.[/\\])+/, '');
    let file = join(this.assetsDir, rel === '/' ? 'index.html' : rel);
    if (!file.startsWith(this.assetsDir) || !existsSync(file) || statSync(file).isDirectory()) file = join(this.assetsDir, 'index.html');
    if (!existsSync(file)) {
      throw new MembraneError('serve the web UI', { code: 'E_NOT_FOUND', cause: `${this.assetsDir} has no built app`, hint: 'npm run build (it builds ui/dist)' });
    }
    res.writeHead(200, { 'content-type': MIME[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache' });
    res.end(readFileSync(file));
  }

  /** Server-sent events: the topology when it changes, flows in batches, the flow streams' state. */
  private subscribe(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write('retry: 1000\n\n');
    this.clients.add(res);
    req.on('close', () => {
      this.clients.delete(res);
      if (!this.clients.size) this.idle();
    });
    if (this.topology) send(res, 'topology', this.topology);
    if (this.ring.length) send(res, 'flows', { flows: this.ring.slice(-MAX_BATCH), skipped: 0 });
    send(res, 'streams', [...this.streams.values()].map((s) => s.state));
    this.busy();
  }

  /** A page is open: poll the nodes, follow their flows. */
  private busy(): void {
    if (!this.pollTimer) {
      const poll = () => this.read().then((t) => this.publishTopology(t)).catch((e) => this.o.log?.(`read topology: ${(e as Error).message}`));
      poll();
      this.pollTimer = setInterval(poll, this.o.pollMs ?? 1_000);
    }
    this.flushTimer ??= setInterval(() => this.flush(), FLOW_FLUSH_MS);
  }

  /** No page open: stop polling and streaming (the lab's UI costs nothing while nobody looks). */
  private idle(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.flushTimer) clearInterval(this.flushTimer);
    this.pollTimer = this.flushTimer = undefined;
    for (const s of this.streams.values()) s.stop();
    this.streams.clear();
  }

  private publishTopology(t: UiTopology): void {
    this.followFlows(t);
    const { time: _t, ...rest } = t;
    const j = JSON.stringify(rest);
    if (j === this.lastTopologyJson) return;
    this.lastTopologyJson = j;
    this.broadcast('topology', t);
  }

  /** One flow stream per node with an API socket; streams of nodes gone are stopped. */
  private followFlows(t: UiTopology): void {
    const sources = new Map(this.o.sources().map((s) => [s.name, s]));
    for (const [name, s] of this.streams) if (!sources.has(name)) { s.stop(); this.streams.delete(name); }
    for (const n of t.nodes) {
      const src = sources.get(n.name);
      if (!src?.apiSocket || this.streams.has(n.name)) continue;
      this.streams.set(n.name, new FlowStream(n.name, src.apiSocket, (flows) => this.addFlows(flows), () => {
        this.broadcast('streams', [...this.streams.values()].map((x) => x.state));
      }, this.o.traceLevel ?? 1));
    }
  }

  private addFlows(all: WireFlow[]): void {
    const flows = all.map(slim);
    this.ring.push(...flows);
    if (this.ring.length > FLOW_RING) this.ring.splice(0, this.ring.length - FLOW_RING);
    this.batch.push(...flows);
    if (this.batch.length > MAX_BATCH) {
      this.skipped += this.batch.length - MAX_BATCH;
      this.batch = this.batch.slice(-MAX_BATCH);
    }
  }

  private flush(): void {
    if (!this.batch.length) return;
    this.broadcast('flows', { flows: this.batch, skipped: this.skipped });
    this.batch = [];
    this.skipped = 0;
  }

  private broadcast(event: string, data: unknown): void {
    const text = `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
    for (const c of this.clients) c.write(text);
  }

  /** The first agent that answers `fn`. */
  private async anyAgent<T>(fn: (socket: string) => Promise<T>): Promise<T> {
    const errors: string[] = [];
    for (const s of this.o.sources()) {
      if (!s.apiSocket) continue;
      try {
        return await fn(s.apiSocket);
      } catch (e) {
        errors.push(`${s.name}: ${(e as Error).message}`);
      }
    }
    throw new MembraneError('ask the agents', { code: 'E_UNAVAILABLE', cause: errors.length ? errors.join('; ') : 'no node has an API socket' });
  }

  private async pod(node: string, name: string): Promise<UiPod> {
    const t = this.topology ?? await this.read();
    const p = t.nodes.find((n) => n.name === node)?.pods.find((x) => x.name === name);
    if (!p) throw new MembraneError(`find pod ${node}/${name}`, { code: 'E_NOT_FOUND', cause: 'no such pod in the topology' });
    return p;
  }

  /** One end of a pair: a pod, or (pod "@host") the node itself; either must be in the topology. */
  private async end(e: { node: string; pod: string }): Promise<UiPod | { host: string }> {
    if (e.pod !== HOST) return this.pod(e.node, e.pod);
    const t = this.topology ?? await this.read();
    if (!t.nodes.some((n) => n.name === e.node)) throw new MembraneError(`find node ${e.node}`, { code: 'E_NOT_FOUND', cause: 'no such node in the topology' });
    return { host: e.node };
  }

  /**
   * An end as the agent's policy trace takes it: a pod with its labels' sources; a node as the other end
   * sees it (host, 1, from its own pods; remote-node, 6, from other nodes' pods), as `membrane policy trace` does.
   */
  private traceEnd(e: UiPod | { host: string }, other: UiPod | { host: string }): unknown {
    if (!('host' in e)) return this.peer(e);
    const otherNode = 'host' in other ? other.host : other.node;
    return otherNode === e.host
      ? { kind: 'host', identity: 1, labels: { 'reserved:host': '' }, name: `host (of ${e.host})` }
      : { kind: 'host', identity: 6, labels: { 'reserved:host': '' }, name: `node ${e.host}` };
  }

  /** A pod as the agent's policy trace takes it (labels with their source, as identities carry them). */
  private peer(p: UiPod): { kind: 'endpoint'; identity: number; labels: Record<string, string>; name: string } {
    const labels: Record<string, string> = {};
    for (const [k, v] of Object.entries(p.labels)) labels[k.includes(':') ? k : `k8s:${k}`] = v;
    labels['k8s:io.kubernetes.pod.namespace'] ??= p.namespace ?? 'default';
    return { kind: 'endpoint', identity: p.identity, labels, name: p.name };
  }

  /** Which policies select the pod: the rules that put it into default deny per direction, from the agent's own trace. */
  private async selecting(node: string, name: string): Promise<unknown> {
    const p = await this.pod(node, name);
    const self = this.peer(p);
    const r = await this.anyAgent((s) => apiCall<TraceReply>(s, 'POST', '/v1/policy/trace', { src: self, dst: self, protocol: 'TCP', dport: 0 }, { timeoutMs: 5_000 }));
    return { pod: p.name, node, identity: p.identity, egress: { enforcement: r.egress.enforcement, selectedBy: r.egress.selectedBy }, ingress: { enforcement: r.ingress.enforcement, selectedBy: r.ingress.selectedBy } };
  }

  private async policyTrace(body: unknown): Promise<unknown> {
    const b = parsePair(body, 'trace policy');
    const [src, dst] = await Promise.all([this.end(b.src), this.end(b.dst)]);
    const req = { src: this.traceEnd(src, dst), dst: this.traceEnd(dst, src), protocol: b.protocol, ...(b.port !== undefined ? { dport: b.port } : {}) };
    return this.anyAgent((s) => apiCall(s, 'POST', '/v1/policy/trace', req, { timeoutMs: 5_000 }));
  }

  /** The map entries that decided each hop of a flow the page shows, read on its node now (flow-entries.ts). */
  private async flowEntries(body: unknown): Promise<unknown> {
    const f = (body ?? {}) as WireFlow;
    const src = this.o.sources().find((s) => s.name === f.node_name);
    if (!src) throw new MembraneError('explain flow', { code: 'E_BAD_REQUEST', cause: `node_name: ${JSON.stringify(f.node_name)} is not a node of ${this.o.cluster}` });
    if (!src.netns) throw new MembraneError(`explain flow on ${src.name}`, { code: 'E_NOT_FOUND', cause: 'the node\'s maps are not on this machine' });
    const { flowEntries } = await import('./flow-entries.ts');
    return flowEntries(src.netns, f);
  }

  /** `membrane trace SRC DST -o json`: the CLI's contract, run as a command (it sends a probe into the source pod). */
  private async trace(body: unknown): Promise<unknown> {
    const b = parsePair(body, 'trace');
    // Only pods and nodes the page shows: nothing else reaches the command line.
    await Promise.all([this.end(b.src), this.end(b.dst)]);
    if (!this.o.membrane) throw new MembraneError('trace', { code: 'E_USAGE', cause: 'this UI server was started without a membrane command to run' });
    const arg = (e: { node: string; pod: string }) => (e.pod === HOST ? e.node : e.pod);
    const argv = [...this.o.membrane.argv, 'trace', arg(b.src), arg(b.dst), '--proto', b.protocol.toLowerCase(),
      ...(b.port !== undefined && b.protocol !== 'ICMP' ? ['--port', String(b.port)] : []), ...this.o.membrane.targetFlags, '-o', 'json'];
    const out = await new Promise<string>((resolve, reject) => {
      execFile(argv[0]!, argv.slice(1), { timeout: 30_000, maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
        if (err && !stdout.trim()) {
          const line = stderr.trim().split('\n').filter(Boolean).pop() ?? err.message;
          return reject(new MembraneError('trace', { code: 'E_API', cause: line.replace(/^membrane: /, '') }));
        }
        resolve(stdout);
      });
    });
    try {
      return JSON.parse(out);
    } catch {
      throw new MembraneError('trace', { code: 'E_API', cause: `membrane trace printed no JSON: ${out.slice(0, 200)}` });
    }
  }
}

interface TraceReply {
  egress: { enforcement: string; selectedBy: unknown[] };
  ingress: { enforcement: string; selectedBy: unknown[] };
}

interface PairRequest {
  src: { node: string; pod: string };
  dst: { node: string; pod: string };
  protocol: 'TCP' | 'UDP' | 'ICMP';
  port?: number;
}

/** The pod name that stands for the node itself (its host) in a pair: no pod name starts with "@". */
export const HOST = '@host';

/** Validates { src: {node, pod}, dst: {node, pod}, protocol, port? }, naming every problem. */
export function parsePair(body: unknown, what: string): PairRequest {
  const b = (body ?? {}) as Record<string, unknown>;
  const problems: string[] = [];
  const end = (k: 'src' | 'dst') => {
    const e = b[k] as Record<string, unknown> | undefined;
    if (!e || typeof e.node !== 'string' || typeof e.pod !== 'string' || !e.node || !e.pod) problems.push(`${k}: must be { node, pod }`);
    return { node: String(e?.node ?? ''), pod: String(e?.pod ?? '') };
  };
  const src = end('src');
  const dst = end('dst');
  const protocol = typeof b.protocol === 'string' ? b.protocol.toUpperCase() : '';
  if (!['TCP', 'UDP', 'ICMP'].includes(protocol)) problems.push('protocol: must be TCP, UDP or ICMP');
  let port: number | undefined;
  if (b.port !== undefined && b.port !== null && b.port !== '') {
    port = Number(b.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) problems.push('port: must be an integer 0-65535');
  }
  if (problems.length) throw new MembraneError(what, { code: 'E_BAD_REQUEST', cause: problems.join('; ') });
  return { src, dst, protocol: protocol as PairRequest['protocol'], ...(port !== undefined ? { port } : {}) };
}

/**
 * What the page reads of a flow: Hubble's fields, the hops and the drop, the
 * policy verdict's decision. The rest (raw event fields, MACs, per-hop
 * times) stays with the agents (`membrane observe -o json` has it): under a
 * flood the page parses a third of the bytes.
 */
export function slim(f: WireFlow): WireFlow {
  const pv = f.policy_verdict as Record<string, unknown> | undefined;
  return {
    time: f.time, uuid: f.uuid, verdict: f.verdict, drop_reason_desc: f.drop_reason_desc, node_name: f.node_name, IP: f.IP, l4: f.l4,
    source: f.source, destination: f.destination, trace_observation_point: f.trace_observation_point, is_reply: f.is_reply,
    traffic_direction: f.traffic_direction, drop: f.drop, encap: f.encap, Summary: f.Summary,
    hops: f.hops?.map((h) => ({ point: h.point, point_text: h.point_text, ifname: h.ifname, ifindex: h.ifindex, program: h.program, state: (h as { state?: string }).state,
      src_identity: (h as { src_identity?: number }).src_identity, dst_identity: (h as { dst_identity?: number }).dst_identity })),
    ...(pv ? { policy_verdict: { direction: pv.direction, verdict: pv.verdict, reason: pv.reasonText, match: pv.matchText, remote_identity: pv.remoteLabel, dport: pv.dstPort, proto: pv.protoText, proto_num: pv.proto, endpoint: pv.endpointId } } : {}),
  };
}

/** A path segment decoded; a malformed escape is the client's error, not a crash. */
function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new MembraneError(`decode ${JSON.stringify(s)}`, { code: 'E_BAD_REQUEST', cause: 'malformed %-escape' });
  }
}

const isLoopbackHost = (h: string): boolean => h === 'localhost' || h === '[::1]' || h === '::1' || /^127\./.test(h);

function send(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function sendJson(res: ServerResponse, status: number, v: unknown): void {
  const text = JSON.stringify(v);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-cache' });
  res.end(text);
}

/** A POST's JSON body: the page's requests are small. */
const UI_BODY_MAX = 64 << 10;
const readBody = (req: IncomingMessage): Promise<unknown> =>
  readJsonBody(req, UI_BODY_MAX, () => new MembraneError('read request body', { code: 'E_BAD_REQUEST', cause: 'larger than 64 KiB' }));
