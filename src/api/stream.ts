// The CLI's side of the agent's NDJSON streams (GET /v1/events, /v1/flows):
// one JSON value per line, handed over as each line arrives. A refused
// request (a bad filter) rejects with the agent's coded error; a stream the
// agent ends (it stopped) resolves `done`.
import { request, type ClientRequest } from 'node:http';
import { MembraneError } from '../shared/errors.ts';
import { agentError } from './client.ts';

export interface OpenStream {
  /** Resolves when the agent ends the stream or close() is called; rejects if the request fails. */
  done: Promise<void>;
  /** Resolves once the agent answered 200 (the stream is open); rejects like done. */
  opened: Promise<void>;
  close(): void;
}

export function openStream(socketPath: string, path: string, onLine: (v: Record<string, unknown>) => void): OpenStream {
  let req: ClientRequest | undefined;
  let closed = false;
  let markOpen!: () => void;
  let failOpen!: (e: unknown) => void;
  const opened = new Promise<void>((res, rej) => { markOpen = res; failOpen = rej; });
  opened.catch(() => undefined);
  const done = new Promise<void>((resolve, reject) => {
    const fail = (e: unknown) => { failOpen(e); reject(e); };
    req = request({ socketPath, method: 'GET', path }, (res) => {
      const status = res.statusCode ?? 500;
      let buf = '';
      if (status >= 400) {
        res.setEncoding('utf8');
        res.on('data', (c: string) => { buf += c; });
        res.on('end', () => {
          let v: unknown = buf;
          try { v = JSON.parse(buf); } catch { /* text */ }
          fail(agentError(status, v));
        });
        return;
      }
      markOpen();
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        buf += c;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (!line.trim()) continue;
          try {
            onLine(JSON.parse(line) as Record<string, unknown>);
          } catch (e) {
            if (e instanceof SyntaxError) continue;
            throw e;
          }
        }
      });
      res.on('end', () => resolve());
      res.on('close', () => resolve());
      res.on('error', (e) => (closed ? resolve() : reject(e)));
    });
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (closed) return resolve();
      fail(new MembraneError(`connect to agent at ${socketPath}`, {
        code: 'E_UNAVAILABLE', cause: e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'agent not running' : e.message,
        hint: 'is the node\'s agent running? (membrane lab status)',
      }));
    });
    req.end();
  });
  return {
    done,
    opened,
    close() {
      closed = true;
      req?.destroy();
    },
  };
}
