// The CLI's side of the agent API: JSON over the agent's unix socket.
// Errors come back as MembraneErrors with the agent's code and message.
import { request } from 'node:http';
import { MembraneError } from '../shared/errors.ts';

export async function apiCall<T = unknown>(socketPath: string, method: string, path: string, body?: unknown): Promise<T> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise<T>((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let v: any;
        try { v = text ? JSON.parse(text) : undefined; } catch { v = text; }
        if ((res.statusCode ?? 500) >= 400) reject(new MembraneError(v?.message ?? `agent answered ${res.statusCode}`, { code: v?.code ?? 'E_API', hint: v?.hint }));
        else resolve(v as T);
      });
    });
    req.on('error', (e: NodeJS.ErrnoException) => reject(new MembraneError(`connect to agent at ${socketPath}`, {
      code: 'E_UNAVAILABLE', cause: e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? 'agent not running' : e.message,
      hint: 'start it in the node\'s netns: membrane agent --config FILE',
    })));
    req.setTimeout(60_000, () => req.destroy(new Error('timed out after 60 s')));
    if (payload) req.write(payload);
    req.end();
  });
}
