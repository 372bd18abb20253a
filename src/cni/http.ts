// The agent's end of the plugin binary's transport (cni/membrane-cni.c):
// POST /v1/cni with the CNI_* variables as X-Cni-* headers (percent-encoded)
// and stdin as the body; the answer is 200 with X-Cni-Exit-Code and the
// exact bytes the plugin prints. docs/cni.md describes the wire format.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { isUtf8 } from 'node:buffer';
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

/**
 * Largest network config accepted, in bytes; the shim refuses the same size
 * (cni/defaults.h). A network config is a few kilobytes, even with a chained
 * plugin's prevResult and runtimeConfig; 1 MiB leaves a hundredfold margin
 * while bounding what one request costs the agent: reading, validating and
 * parsing 1 MiB takes about 10-20 ms of the event loop, where the 64 MiB
 * allowed before took seconds (a 60 MiB nesting of `[` stalled it for 22 s).
 */
export const MAX_STDIN = 1 << 20;
export const MAX_STDIN_TEXT = '1 MiB';

/**
 * Most bytes the shim sends as X-Cni-* header lines (names, ": ", encoded
 * values, CRLFs). Real values are short: a container ID of 64 characters, a
 * netns path, Kubernetes' CNI_ARGS of about 300 bytes, a few CNI_PATH
 * directories; even a PATH_MAX netns path with every byte percent-encoded
 * fits. The API server's header limit (src/api/server.ts, 32 KiB) leaves
 * room for these plus the request line and the fixed headers, so a request
 * the shim sends is never refused with HTTP 431; the shim refuses larger
 * variables itself with code 4, naming the largest.
 */
export const MAX_CNI_HEADER_BYTES = 16 << 10;

/**
 * Encodes a variable's value the way the shim does: bytes <= 0x20, >= 0x7f and
 * '%' become %XX, so any value survives HTTP header rules (no CR/LF, no
 * trimmed blanks, no latin1 guessing).
 */
export function encodeHeaderValue(v: string | Uint8Array): string {
  let out = '';
  for (const b of typeof v === 'string' ? Buffer.from(v, 'utf8') : v) {
    out += b <= 0x20 || b >= 0x7f || b === 0x25 ? `%${b.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(b);
  }
  return out;
}

/** The bytes a header value stands for: the inverse of encodeHeaderValue; a '%' not followed by two hex digits is kept as is. */
export function decodeHeaderBytes(v: string): Buffer {
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
  return Buffer.from(bytes);
}

/** decodeHeaderBytes as UTF-8 text (bytes that are not UTF-8 become U+FFFD: check with isUtf8 first where that matters). */
export function decodeHeaderValue(v: string): string {
  return decodeHeaderBytes(v).toString('utf8');
}

/** One shim request as read from the wire. */
export interface CniHttpRequest {
  /** The CNI environment, from the headers. */
  env: Record<string, string>;
  /**
   * The variables whose bytes are not UTF-8. Their `env` value is a lossy
   * decoding; the handler refuses them (code 4) rather than act on another
   * name than the runtime gave.
   */
  invalidUtf8: string[];
  /** stdin as sent, byte for byte. */
  body: Buffer;
  /** stdin as text (lossy if not UTF-8: the handler checks `body`). */
  stdin: string;
}

const tooLarge = (what: string) => new MembraneError(`read network config: ${what} larger than ${MAX_STDIN_TEXT} (${MAX_STDIN} bytes)`, { code: 'E_CNI_IO' });

/** Reads one shim request: the CNI environment from the headers, stdin from the body. Rejects (E_CNI_IO) past MAX_STDIN bytes, before reading them. */
export async function readCniRequest(req: IncomingMessage): Promise<CniHttpRequest> {
  const env: Record<string, string> = {};
  const invalidUtf8: string[] = [];
  for (const [name, value] of Object.entries(req.headers)) {
    const key = HEADER_ENV[name];
    if (!key || typeof value !== 'string') continue;
    const bytes = decodeHeaderBytes(value);
    if (!isUtf8(bytes)) invalidUtf8.push(key);
    env[key] = bytes.toString('utf8');
  }
  // A declared size over the limit is refused without reading a byte of it.
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_STDIN) throw tooLarge(`${declared} bytes,`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > MAX_STDIN) throw tooLarge('stdin is');
    chunks.push(c as Buffer);
  }
  const body = Buffer.concat(chunks);
  return { env, invalidUtf8, body, stdin: body.toString('utf8') };
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
 * An AbortSignal for "the caller of this request is gone": it aborts when
 * the connection ends or closes before the response was written in full.
 * The shim closes its socket when it gives up (its deadline passed, or the
 * runtime killed it), and nobody will ever read this request's answer; an
 * ADD carried out after that creates an endpoint no runtime knows of.
 */
export function callerGone(req: IncomingMessage, res: ServerResponse): { signal: AbortSignal; dispose: () => void } {
  const ac = new AbortController();
  const what = `${req.headers['x-cni-command'] ?? 'CNI request'}`;
  const gone = () => {
    if (res.writableFinished || ac.signal.aborted) return;
    ac.abort(new MembraneError(`CNI ${decodeHeaderValue(what)}`, { code: 'E_CANCELLED', cause: 'the plugin closed its connection before the agent answered' }));
  };
  const socket = req.socket;
  // 'end': the shim closed its side (node:http then aborts the request); 'close': the connection is gone.
  socket.once('end', gone);
  socket.once('close', gone);
  res.once('close', gone);
  if (socket.destroyed || socket.readableEnded) gone();
  return {
    signal: ac.signal,
    dispose: () => {
      socket.off('end', gone);
      socket.off('close', gone);
      res.off('close', gone);
    },
  };
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
    const caller = callerGone(req, res);
    void (async () => {
      let out: CniOutput;
      try {
        const r = await readCniRequest(req);
        out = await handleCni(r.env, r.body, backend, opts, { signal: caller.signal, invalidUtf8: r.invalidUtf8 });
      } catch (e) {
        // Only our own size limit is worth answering once the request is torn down; anything else means the shim went away.
        if (req.destroyed && errorCodeOf(e) !== 'E_CNI_IO') return caller.dispose();
        const err = wrap('read CNI request', e, 'E_CNI_IO');
        out = { exitCode: 1, stdout: `${JSON.stringify({ cniVersion: '1.1.0', code: codeFor(err), msg: err.message })}\n` };
        res.setHeader('Connection', 'close');
      }
      caller.dispose();
      // Nobody reads an answer once the caller is gone: in particular no success is
      // written for an ADD whose plugin already reported failure. The backend was
      // told through the signal (it does not carry out, or undoes, such an ADD).
      if (caller.signal.aborted) {
        res.destroy();
        return;
      }
      if (!res.headersSent && !res.destroyed) writeCniResponse(res, out);
    })();
  };
}
