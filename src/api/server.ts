// The agent's HTTP API on a unix socket (mode 0600: root only). A tiny
// router: JSON in and out, errors as { code, message, hint } with the HTTP
// status the error-code catalogue gives the code. Used by the CLI and the CNI plugin.
//
// Its limits keep any one client, or a crowd of them, from taking the agent
// away from the others: a bounded number of connections, idle and slow ones
// closed, bounded headers and bodies (ApiLimits says why each value).
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { errorCodeOf, httpStatusOf, type ErrorCode } from '../shared/error-codes.ts';
import { MembraneError } from '../shared/errors.ts';
import { readJsonBody } from './body.ts';

export type Handler = (req: IncomingMessage, url: URL, body: () => Promise<unknown>) => Promise<unknown> | unknown;
export type RawHandler = (req: IncomingMessage, res: ServerResponse) => void;
/**
 * A streaming route: `open` starts the stream on `res` (NDJSON, one JSON
 * value per line, written as the data comes) and returns the function that
 * ends it, which the server calls when the client goes away or the server
 * closes. Throwing before writing anything answers with a coded error.
 */
export type StreamHandler = (req: IncomingMessage, url: URL, res: ServerResponse) => () => void;

/** One answered request, for latency metrics: the route's pattern (not the path, so ids do not make new series). */
export interface RequestRecord {
  method: string;
  route: string;
  status: number;
  seconds: number;
}

/** The body of every error answer; `code` is a catalogue code (src/api/client.ts checks it). */
export interface ApiErrorBody {
  code: ErrorCode;
  message: string;
  hint?: string;
}

export interface ApiLimits {
  /**
   * Connections open at once. Each costs the agent a file descriptor, and
   * 20,000 held-open connections once took every descriptor the agent had,
   * so that no ADD could open a netlink socket or a BPF map. 256 leaves
   * most of a default 1024-descriptor limit to the agent's own work and is
   * still well above what a node asks at once (a burst of 100 concurrent
   * ADDs, a few CLI calls). At the cap a new connection closes the oldest
   * idle one (connected, no request in flight), so a crowd of idle
   * connections cannot lock out a real request; only when every connection
   * has a request in flight is the new one refused (closed at once: the
   * plugin reports "try again later").
   */
  maxConnections: number;
  /**
   * Time to receive a request's headers, counted from the connection (or
   * the previous response): node:http answers 408 and closes after it. It
   * is also how long a connection that sends nothing stays. Local clients
   * send their headers in the same write as the connect (the CNI plugin) or
   * right after it (the CLI): 5 s is a slow machine's worth of slack.
   */
  headersTimeoutMs: number;
  /**
   * Time to receive a whole request, headers and body. The largest body
   * the agent reads is a 1 MiB network config over a unix socket, which
   * takes milliseconds; a body that trickles in is closed after 10 s. The
   * time the agent then takes to answer (an ADD) is not counted.
   */
  requestTimeoutMs: number;
  /**
   * How often node:http checks the two timeouts above (its default, 30 s,
   * would let a stalled connection stay 35 s instead of 5).
   */
  timeoutCheckIntervalMs: number;
  /**
   * An idle keep-alive connection is closed after this long. The CLI's
   * keep-alive agent reuses a connection within one command; the plugin
   * sends `Connection: close`. node:http's default, kept on purpose.
   */
  keepAliveTimeoutMs: number;
  /**
   * Request line plus headers, in bytes (node:http answers 431 beyond it).
   * The CNI plugin sends at most 16 KiB of X-Cni-* headers (the CNI_*
   * variables, src/cni/http.ts MAX_CNI_HEADER_BYTES) plus a few fixed ones,
   * so it is never refused for that; twice that bounds what a stalled
   * connection can make the agent hold.
   */
  maxHeaderBytes: number;
  /**
   * Largest JSON request body of the API's own routes (the CNI route bounds
   * its body itself, at the same 1 MiB). The CLI sends a few hundred bytes.
   */
  maxBodyBytes: number;
}

export const DEFAULT_API_LIMITS: Readonly<ApiLimits> = Object.freeze({
  maxConnections: 256,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  timeoutCheckIntervalMs: 1_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderBytes: 32 << 10,
  maxBodyBytes: 1 << 20,
});

/** Per connection: how many requests are in flight on it (0: idle). */
interface ConnState {
  busy: number;
}

export class ApiServer {
  private readonly routes: { method: string; path: string | RegExp; handler?: Handler; raw?: RawHandler; stream?: StreamHandler }[] = [];
  /** Open streams, ended when the server closes (a stream never ends by itself). */
  private readonly streams = new Set<ServerResponse>();
  /** Called once per answered request (streams: when the stream starts). */
  onRequest?: (r: RequestRecord) => void;
  private server?: Server;
  readonly limits: Readonly<ApiLimits>;
  /** Open connections in the order they became idle (a Map keeps insertion order: re-inserted when idle again). */
  private readonly conns = new Map<Socket, ConnState>();

  constructor(limits: Partial<ApiLimits> = {}) {
    this.limits = Object.freeze({ ...DEFAULT_API_LIMITS, ...limits });
  }

  get(path: string | RegExp, handler: Handler): this { this.routes.push({ method: 'GET', path, handler }); return this; }
  post(path: string | RegExp, handler: Handler): this { this.routes.push({ method: 'POST', path, handler }); return this; }
  delete(path: string | RegExp, handler: Handler): this { this.routes.push({ method: 'DELETE', path, handler }); return this; }
  raw(method: string, path: string, raw: RawHandler): this { this.routes.push({ method, path, raw }); return this; }
  stream(path: string, stream: StreamHandler): this { this.routes.push({ method: 'GET', path, stream }); return this; }

  /** Open connections, and how many of them have a request in flight (for tests and status). */
  get connections(): { open: number; busy: number } {
    let busy = 0;
    for (const s of this.conns.values()) if (s.busy > 0) busy++;
    return { open: this.conns.size, busy };
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const route = this.routes.find((r) => r.method === req.method && (typeof r.path === 'string' ? r.path === url.pathname : r.path.test(url.pathname)));
    if (this.onRequest) {
      const t0 = performance.now();
      const label = route ? (typeof route.path === 'string' ? route.path : route.path.source) : 'unmatched';
      const report = () => this.onRequest?.({ method: req.method ?? '', route: label, status: res.statusCode, seconds: (performance.now() - t0) / 1000 });
      if (route?.stream) res.once('streaming', report);
      else res.once('close', report);
    }
    if (!route) return sendError(res, new MembraneError(`no route ${req.method} ${url.pathname}`, { code: 'E_NOT_FOUND' }));
    if (route.stream) return this.openStream(route.stream, req, url, res);
    if (route.raw) {
      // A raw handler answers by itself; one that throws still gets a coded answer (and must not take the agent down).
      try {
        return route.raw(req, res);
      } catch (e) {
        if (!res.headersSent) sendError(res, e);
        else res.destroy();
        return;
      }
    }
    const max = this.limits.maxBodyBytes;
    const body = () => readJsonBody(req, max, () => new MembraneError(`read request body of ${req.method} ${url.pathname}`, { code: 'E_BAD_REQUEST', cause: `larger than ${max} bytes` }));
    try {
      send(res, 200, await route.handler!(req, url, body));
    } catch (e) {
      // The rest of an unread body is not worth reading: answer and close.
      if (!req.complete) res.setHeader('Connection', 'close');
      sendError(res, e);
    }
  }

  private openStream(open: StreamHandler, req: IncomingMessage, url: URL, res: ServerResponse): void {
    let end: () => void;
    // Set, not sent: a handler that refuses the request (a bad filter) still answers with a coded error.
    res.statusCode = 200;
    res.setHeader('content-type', 'application/x-ndjson');
    res.setHeader('cache-control', 'no-store');
    try {
      end = open(req, url, res);
    } catch (e) {
      if (!res.headersSent) return sendError(res, e);
      // Lines were sent already: the error goes as the stream's last line.
      res.end(JSON.stringify({ kind: 'error', code: errorCodeOf(e), message: e instanceof Error ? e.message : String(e) }) + '\n');
      return;
    }
    // The status line and headers now: a client learns the stream is open before the first line.
    if (!res.headersSent) res.flushHeaders();
    res.emit('streaming');
    this.streams.add(res);
    res.once('close', () => {
      this.streams.delete(res);
      end();
    });
  }

  /** A new connection: counted, and at the cap the oldest idle one makes room for it (or it is refused). */
  private admit(socket: Socket): void {
    if (this.conns.size >= this.limits.maxConnections) {
      let victim: Socket | undefined;
      for (const [s, st] of this.conns) {
        if (st.busy === 0) { victim = s; break; } // the first idle one in the map is the longest idle
      }
      if (!victim) {
        socket.destroy();
        return;
      }
      this.conns.delete(victim);
      victim.destroy();
    }
    this.conns.set(socket, { busy: 0 });
    socket.once('close', () => this.conns.delete(socket));
  }

  /** A request on `socket` started; it is busy until its response is done (finished or aborted). */
  private track(req: IncomingMessage, res: ServerResponse): void {
    const socket = req.socket;
    const st = this.conns.get(socket);
    if (!st) return;
    st.busy++;
    res.once('close', () => {
      st.busy--;
      if (st.busy === 0 && this.conns.has(socket)) {
        // Idle again: move it to the end, the most recently idle.
        this.conns.delete(socket);
        this.conns.set(socket, st);
      }
    });
  }

  /** Listens on `socketPath` (0600). Refuses if another live process serves it; removes a stale socket file. */
  async listen(socketPath: string): Promise<void> {
    if (existsSync(socketPath)) {
      if (await socketAlive(socketPath)) {
        throw new MembraneError(`listen on ${socketPath}`, { code: 'E_ALREADY_RUNNING', cause: 'another agent is already serving this socket' });
      }
      unlinkSync(socketPath);
    }
    const l = this.limits;
    this.server = createServer({
      maxHeaderSize: l.maxHeaderBytes,
      headersTimeout: Math.min(l.headersTimeoutMs, l.requestTimeoutMs), // node:http insists: the headers are part of the request
      requestTimeout: l.requestTimeoutMs,
      connectionsCheckingInterval: l.timeoutCheckIntervalMs,
      keepAliveTimeout: l.keepAliveTimeoutMs,
    }, (req, res) => {
      this.track(req, res);
      void this.dispatch(req, res);
    });
    this.server.on('connection', (s: Socket) => this.admit(s));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, 0o600);
  }

  /** Stops listening, closes the idle connections at once and waits for the requests in flight. */
  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    const closed = new Promise<void>((r) => s.close(() => r()));
    // Streams last until their client goes: end them, or closing would wait for every client.
    for (const res of this.streams) res.end();
    // A connection without a request in flight has nothing to finish; without this, a
    // stopping agent would wait out the header timeout of every silent connection.
    for (const [socket, st] of this.conns) if (st.busy === 0) socket.destroy();
    await closed;
    s.closeAllConnections?.();
  }
}

/** Answers with the error's catalogue code and that code's HTTP status (500 for an uncoded error: E_INTERNAL). */
function sendError(res: ServerResponse, e: unknown): void {
  const code = errorCodeOf(e);
  const body: ApiErrorBody = { code, message: e instanceof Error ? e.message : String(e) };
  const hint = e instanceof MembraneError ? e.hint : undefined;
  if (hint) body.hint = hint;
  send(res, httpStatusOf(code), body);
}

function send(res: ServerResponse, status: number, v: unknown): void {
  if (res.headersSent || res.destroyed) return;
  const body = JSON.stringify(v ?? null);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function socketAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}
