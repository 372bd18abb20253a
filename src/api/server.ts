// The agent's HTTP API on a unix socket (mode 0600: root only). A tiny
// router: JSON in and out, errors as { code, message, hint } with the HTTP
// status the error-code catalogue gives the code. Used by the CLI and the CNI plugin.
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { errorCodeOf, httpStatusOf, type ErrorCode } from '../shared/error-codes.ts';
import { MembraneError } from '../shared/errors.ts';

export type Handler = (req: IncomingMessage, url: URL, body: () => Promise<unknown>) => Promise<unknown> | unknown;
export type RawHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** The body of every error answer; `code` is a catalogue code (src/api/client.ts checks it). */
export interface ApiErrorBody {
  code: ErrorCode;
  message: string;
  hint?: string;
}

export class ApiServer {
  private readonly routes: { method: string; path: string | RegExp; handler?: Handler; raw?: RawHandler }[] = [];
  private server?: Server;

  get(path: string | RegExp, handler: Handler): this { this.routes.push({ method: 'GET', path, handler }); return this; }
  post(path: string | RegExp, handler: Handler): this { this.routes.push({ method: 'POST', path, handler }); return this; }
  delete(path: string | RegExp, handler: Handler): this { this.routes.push({ method: 'DELETE', path, handler }); return this; }
  raw(method: string, path: string, raw: RawHandler): this { this.routes.push({ method, path, raw }); return this; }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://agent');
    const route = this.routes.find((r) => r.method === req.method && (typeof r.path === 'string' ? r.path === url.pathname : r.path.test(url.pathname)));
    if (!route) return sendError(res, new MembraneError(`no route ${req.method} ${url.pathname}`, { code: 'E_NOT_FOUND' }));
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
    const body = async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      if (!text) return undefined;
      try {
        return JSON.parse(text);
      } catch (e) {
        throw new MembraneError('decode request body', { code: 'E_BAD_REQUEST', cause: (e as Error).message });
      }
    };
    try {
      send(res, 200, await route.handler!(req, url, body));
    } catch (e) {
      sendError(res, e);
    }
  }

  /** Listens on `socketPath` (0600). Refuses if another live process serves it; removes a stale socket file. */
  async listen(socketPath: string): Promise<void> {
    if (existsSync(socketPath)) {
      if (await socketAlive(socketPath)) {
        throw new MembraneError(`listen on ${socketPath}`, { code: 'E_ALREADY_RUNNING', cause: 'another agent is already serving this socket' });
      }
      unlinkSync(socketPath);
    }
    this.server = createServer((req, res) => { void this.dispatch(req, res); });
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(socketPath, () => resolve());
    });
    chmodSync(socketPath, 0o600);
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    await new Promise<void>((r) => s.close(() => r()));
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
