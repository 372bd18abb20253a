// The CLI's side of the agent API: JSON over the agent's unix socket.
// Errors come back as MembraneErrors with the agent's code and message; a
// code this CLI does not know (an agent of another version) becomes E_API.
import { request } from 'node:http';
import { isErrorCode } from '../shared/error-codes.ts';
import { MembraneError } from '../shared/errors.ts';

/** The error for an answer with status >= 400; `body` is the parsed JSON, or the raw text if it was not JSON. */
export function agentError(status: number, body: unknown): MembraneError {
  const b = typeof body === 'object' && body !== null ? body as { code?: unknown; message?: unknown; hint?: unknown } : {};
  const hint = typeof b.hint === 'string' ? b.hint : undefined;
  const text = typeof body === 'string' && body.trim() ? `: ${body.trim().split('\n')[0]}` : '';
  const message = typeof b.message === 'string' ? b.message : `agent answered HTTP ${status}${text}`;
  if (isErrorCode(b.code)) return new MembraneError(message, { code: b.code, hint });
  // Keep the agent's own code in the text: it is what its docs and logs use.
  const theirs = b.code !== undefined ? ` (agent error code ${JSON.stringify(b.code)}, unknown to this CLI)` : '';
  return new MembraneError(`${message}${theirs}`, { code: 'E_API', hint });
}

/**
 * One request to the agent. `timeoutMs` (default 60 s, for slow operations
 * such as a CNI burst) is how long the agent may stay silent; pollers pass a
 * short one so a stopped agent (SIGSTOP) does not hold them for a minute.
 */
export async function apiCall<T = unknown>(socketPath: string, method: string, path: string, body?: unknown, opts: { timeoutMs?: number } = {}): Promise<T> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise<T>((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let v: unknown;
        try { v = text ? JSON.parse(text) : undefined; } catch { v = text; }
        if ((res.statusCode ?? 500) >= 400) reject(agentError(res.statusCode ?? 500, v));
        else resolve(v as T);
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => reject(new MembraneError(`connect to agent at ${socketPath}`, {
      code: 'E_UNAVAILABLE', cause: e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'agent not running' : e.message,
      hint: 'start it in the node\'s netns: membrane agent --config FILE',
    })));
    req.setTimeout(timeoutMs, () => req.destroy(new MembraneError(`no answer within ${timeoutMs / 1000} s`, { code: 'E_UNAVAILABLE' })));
    if (payload) req.write(payload);
    req.end();
  });
}
