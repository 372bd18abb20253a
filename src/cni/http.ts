// The agent's end of the plugin binary's transport (cni/membrane-cni.c):
// POST /v1/cni with the CNI_* variables as X-Cni-* headers (percent-encoded)
// and stdin as the body; the answer is 200 with X-Cni-Exit-Code and the
// exact bytes the plugin prints. docs/cni.md describes the wire format.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { errorCodeOf } from '../shared/error-codes.ts';
import { MembraneError, wrap } from '../shared/errors.ts';
import { codeFor, handleCni, type CniHandlerOptions } from './handler.ts';
import type { CniOutput, EndpointBackend } from './types.ts';

/** Request header (lowercase, as node:http presents it) -> CNI environment variable. Others are ignored. */
export const HEADER_ENV: Readonly<Record<string, string>> = {
  'x-cni-command': 'CNI_COMMAND',
  'x-cni-containerid': 'CNI_CONTAINERID',
  'x-cni-netns': 'CNI_NETNS',
  'x-cni-ifname': 'CNI_IFNAME',
  'x-cni-args': 'CNI_ARGS',
  'x-cni-path': 'CNI_PATH',
};

/** Largest network config accepted (the shim refuses the same size). */
export const MAX_STDIN = 64 << 20;

/**
 * Encodes a variable's value the way the shim does: bytes <= 0x20, >= 0x7f and
 * '%' become %XX, so any value survives HTTP header rules (no CR/LF, no
 * trimmed blanks, no latin1 guessing).
 */
export function encodeHeaderValue(v: string): string {
  let out = '';
  for (const b of Buffer.from(v, 'utf8')) {
    out += b <= 0x20 || b >= 0x7f || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

/** Inverse of encodeHeaderValue; a '%' not followed by two hex digits is kept as is. */
export function decodeHeaderValue(v: string): string {
  const raw = Buffer.from(v, 'latin1'); // node:http hands header bytes over as latin1
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    const hex = b === 0x25 && i + 2 < raw.length ? String.fromCharCode(raw[i + 1]!, raw[i + 2]!) : '';
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else bytes.push(b);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Reads one shim request: the CNI environment from the headers, stdin from the body. Rejects (E_CNI_IO) past MAX_STDIN bytes. */
export async function readCniRequest(req: IncomingMessage): Promise<{ env: Record<string, string>; stdin: string }> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    const key = HEADER_ENV[name];
    if (key && typeof value === 'string') env[key] = decodeHeaderValue(value);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_STDIN) throw new MembraneError(`network config larger than ${MAX_STDIN} bytes`, { code: 'E_CNI_IO' });
    chunks.push(c as Buffer);
  }
  return { env, stdin: Buffer.concat(chunks).toString('utf8') };
}

/** Writes the plugin's exit code and stdout (exact bytes, explicit length so the shim needs no chunked decoding). */
export function writeCniResponse(res: ServerResponse, out: CniOutput): void {
  const body = Buffer.from(out.stdout, 'utf8');
  res.writeHead(200, {
    'X-Cni-Exit-Code': String(out.exitCode),
    'Content-Type': 'application/json',
    'Content-Length': body.length,
  });
  res.end(body);
}

/**
 * The node:http handler the agent mounts at POST /v1/cni. `backend` does the
 * endpoint work; this only decodes, calls handleCni and encodes.
 */
export function cniHttpHandler(backend: EndpointBackend, opts: CniHandlerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    if (req.method !== 'POST') {
      res.writeHead(405, { Allow: 'POST', 'Content-Type': 'text/plain' });
      res.end('the CNI endpoint takes POST\n');
      return;
    }
    void (async () => {
      let out: CniOutput;
      try {
        const { env, stdin } = await readCniRequest(req);
        out = await handleCni(env, stdin, backend, opts);
      } catch (e) {
        // Only our own size limit is worth answering once the request is torn down; anything else means the shim went away.
        if (req.destroyed && errorCodeOf(e) !== 'E_CNI_IO') return;
        const err = wrap('read CNI request', e, 'E_CNI_IO');
        out = { exitCode: 1, stdout: `${JSON.stringify({ cniVersion: '1.1.0', code: codeFor(err), msg: err.message })}\n` };
        res.setHeader('Connection', 'close');
      }
      if (!res.headersSent && !res.destroyed) writeCniResponse(res, out);
    })();
  };
}
