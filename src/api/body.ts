// A request's JSON body, read with a size bound (the agent's API and the web
// UI's server): more than `maxBytes` (by Content-Length or as read) throws
// what `tooLarge` makes, bad JSON E_BAD_REQUEST; an empty body is undefined.
import type { IncomingMessage } from 'node:http';
import { MembraneError } from '../shared/errors.ts';

export async function readJsonBody(req: IncomingMessage, maxBytes: number, tooLarge: () => Error): Promise<unknown> {
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > maxBytes) throw tooLarge();
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MembraneError('decode request body', { code: 'E_BAD_REQUEST', cause: (e as Error).message });
  }
}
