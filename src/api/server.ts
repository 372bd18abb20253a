// The agent's HTTP API on a unix socket (mode 0600: root only). A tiny
// router: JSON in and out, errors as { code, message } with an HTTP status
// derived from the error code. Used by the CLI and the CNI plugin.
import { chmodSync, existsSync, unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { MembraneError } from '../shared/errors.ts';

export type Handler = (req: IncomingMessage, url: URL, body: () => Promise<unknown>) => Promise<unknown> | unknown;
export type RawHandler = (req: IncomingMessage, res: ServerResponse) => void;

const STATUS: Record<string, number> = {
  E_USAGE: 400, E_CONFIG: 400, E_BAD_REQUEST: 400, E_NOT_FOUND: 404, E_ENDPOINT_NOT_FOUND: 404,
  E_NOT_READY: 503, E_UNAVAILABLE: 503, E_STORE_UNAVAILABLE: 503, E_IPAM_EXHAUSTED: 507,
};

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
    if (!route) return send(res, 404, { code: 'E_NOT_FOUND', message: `no route ${req.method} ${url.pathname}` });
    if (route.raw) return route.raw(req, res);
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
      const code = e instanceof MembraneError ? e.code : 'E_INTERNAL';
      send(res, STATUS[code] ?? 500, { code, message: e instanceof Error ? e.message : String(e), hint: (e as MembraneError).hint });
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
