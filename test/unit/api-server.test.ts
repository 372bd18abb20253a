// The agent's API server under load it did not ask for (issue 8, fault 11):
// a bounded number of connections, with idle ones making room for real
// requests; connections that send nothing, or too slowly, closed; headers
// and bodies bounded. Each test runs an ApiServer on a unix socket in a temp
// dir, with short timeouts where a test waits for one. No root needed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { ApiServer, DEFAULT_API_LIMITS, type ApiLimits } from '../../src/api/server.ts';
import { cniHttpHandler, MAX_CNI_HEADER_BYTES } from '../../src/cni/http.ts';
import { cniExec } from '../../src/cni/runtime.ts';
import { FakeBackend } from '../helpers/cni-fakes.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SHIM = join(REPO, 'cni/membrane-cni');
let dir = '';
let seq = 0;
const servers: ApiServer[] = [];
const clients: Socket[] = [];

before(() => {
  execFileSync('make', ['-s', '-C', join(REPO, 'cni')], { stdio: 'inherit' });
  dir = mkdtempSync(join(tmpdir(), 'mbt-api-'));
});
after(async () => {
  for (const c of clients) c.destroy();
  for (const s of servers) await s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An ApiServer with /v1/healthz, a /v1/hold route that answers when released, a JSON echo and the CNI route (fake backend). */
async function agent(limits: Partial<ApiLimits> = {}): Promise<{ api: ApiServer; sock: string; release: () => void }> {
  const api = new ApiServer(limits);
  let waiting: (() => void)[] = [];
  api.get('/v1/healthz', () => ({ status: 'ok' }))
    .get('/v1/hold', () => new Promise((r) => waiting.push(() => r({ held: true }))))
    .post('/v1/echo', async (_req, _url, body) => ({ got: await body() }))
    .raw('POST', '/v1/cni', cniHttpHandler(new FakeBackend(), { networkName: 'membrane' }));
  const sock = join(dir, `agent-${seq++}.sock`);
  await api.listen(sock);
  servers.push(api);
  return { api, sock, release: () => { for (const w of waiting) w(); waiting = []; } };
}

/** A connection that connects and then says nothing; resolves once connected. */
function idle(sock: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = connect(sock, () => resolve(c));
    c.on('error', () => { /* closed by the server */ });
    c.once('error', reject);
    clients.push(c);
  });
}

const closed = (c: Socket) => c.destroyed || c.readableEnded;

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 10));
  return cond();
}

function get(sock: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request({ socketPath: sock, path, headers, agent: false }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject).end();
  });
}

/** Sends `text` on a fresh connection and resolves with what came back by the time the server closed it. */
function raw(sock: string, text: string, waitMs = 5000): Promise<{ reply: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const c = connect(sock);
    let reply = '';
    const timer = setTimeout(() => { c.destroy(); reject(new Error(`still open after ${waitMs} ms; got ${JSON.stringify(reply.slice(0, 80))}`)); }, waitMs);
    c.on('data', (d) => { reply += d; });
    c.on('error', () => { /* closed by the server */ });
    c.on('close', () => { clearTimeout(timer); resolve({ reply, ms: Date.now() - t0 }); });
    c.write(text);
  });
}

describe('fault 11: connections are capped, and idle ones cannot lock out a real request', () => {
  it('with the default limits, 400 idle connections leave at most 256 open, and an ADD still goes through', async () => {
    const { api, sock } = await agent();
    const held = await Promise.all(Array.from({ length: 400 }, () => idle(sock)));
    assert.ok(await until(() => held.filter(closed).length >= 400 - DEFAULT_API_LIMITS.maxConnections, 3000), `${held.filter(closed).length} closed`);
    assert.ok(api.connections.open <= DEFAULT_API_LIMITS.maxConnections, `${api.connections.open} open`);
    assert.ok(held.slice(0, 100).every(closed), 'the oldest idle ones made room');
    const r = await cniExec(SHIM, 'ADD', {
      containerID: 'real', netns: '/proc/self/ns/net', ifname: 'eth0', conf: { cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: sock },
    });
    assert.equal(r.exitCode, 0, r.stdoutText);
    assert.equal((await get(sock, '/v1/healthz')).status, 200);
  });

  it('when every connection has a request in flight, a new one is closed at once, and gets in once one finishes', async () => {
    const { api, sock, release } = await agent({ maxConnections: 4 });
    const busy = Array.from({ length: 4 }, () => get(sock, '/v1/hold'));
    assert.ok(await until(() => api.connections.busy === 4, 2000));
    const refused = await raw(sock, 'GET /v1/healthz HTTP/1.1\r\nHost: a\r\n\r\n');
    assert.equal(refused.reply, '', 'closed without an answer (the plugin reports "try again later")');
    assert.ok(refused.ms < 1000);
    release();
    for (const b of await Promise.all(busy)) assert.equal(b.status, 200);
    assert.equal((await get(sock, '/v1/healthz')).status, 200);
  });
});

describe('fault 11: idle and slow connections are closed', () => {
  it('a connection that sends nothing is closed after headersTimeout (408)', async () => {
    const { sock } = await agent({ headersTimeoutMs: 300, timeoutCheckIntervalMs: 100 });
    const r = await raw(sock, '', 3000);
    assert.match(r.reply, /^HTTP\/1\.1 408/);
    assert.ok(r.ms >= 250 && r.ms < 2000, `${r.ms} ms`);
  });

  it('headers that trickle in are closed after headersTimeout', async () => {
    const { sock } = await agent({ headersTimeoutMs: 300, timeoutCheckIntervalMs: 100 });
    const r = await raw(sock, 'GET /v1/healthz HTTP/1.1\r\nHost: a\r\n', 3000);
    assert.match(r.reply, /^HTTP\/1\.1 408/);
  });

  it('a body that trickles in is closed after requestTimeout', async () => {
    const { sock } = await agent({ requestTimeoutMs: 400, timeoutCheckIntervalMs: 100 });
    const r = await raw(sock, 'POST /v1/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a"', 3000);
    assert.match(r.reply, /^HTTP\/1\.1 408/);
    assert.ok(r.ms < 2000, `${r.ms} ms`);
  });

  it('an idle keep-alive connection is closed after keepAliveTimeout', async () => {
    const { sock } = await agent({ keepAliveTimeoutMs: 300 });
    const r = await raw(sock, 'GET /v1/healthz HTTP/1.1\r\nHost: a\r\n\r\n', 3000);
    assert.match(r.reply, /^HTTP\/1\.1 200/);
    assert.ok(r.ms >= 250 && r.ms < 2000, `${r.ms} ms`);
  });

  it('an ADD that takes longer than requestTimeout is still answered (only receiving the request is timed)', async () => {
    const { sock, release } = await agent({ requestTimeoutMs: 300, timeoutCheckIntervalMs: 100 });
    const p = get(sock, '/v1/hold');
    await new Promise((r) => setTimeout(r, 700));
    release();
    assert.equal((await p).status, 200);
  });
});

describe('fault 11: headers and bodies are bounded', () => {
  it('takes headers up to 32 KiB (the CNI plugin\'s 16 KiB of variables fit) and answers 431 beyond', async () => {
    const { sock } = await agent();
    assert.equal((await get(sock, '/v1/healthz', { 'x-cni-args': 'a'.repeat(MAX_CNI_HEADER_BYTES) })).status, 200);
    const big = await raw(sock, `GET /v1/healthz HTTP/1.1\r\nHost: a\r\nX-Pad: ${'a'.repeat(40 << 10)}\r\n\r\n`);
    assert.match(big.reply, /^HTTP\/1\.1 431/);
  });

  it('refuses a JSON body over 1 MiB with E_BAD_REQUEST, without reading it', async () => {
    const { sock } = await agent();
    const r = await raw(sock, `POST /v1/echo HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: ${64 << 20}\r\n\r\n`);
    assert.match(r.reply, /^HTTP\/1\.1 400/);
    assert.equal(JSON.parse(r.reply.split('\r\n\r\n')[1]!).code, 'E_BAD_REQUEST');
    const small = await raw(sock, 'POST /v1/echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{"a":1}');
    assert.deepEqual(JSON.parse(small.reply.split('\r\n\r\n')[1]!), { got: { a: 1 } });
  });

  it('the defaults are the documented ones, and the CNI plugin\'s headers fit under the header limit', () => {
    assert.deepEqual({ ...DEFAULT_API_LIMITS }, {
      maxConnections: 256, headersTimeoutMs: 5_000, requestTimeoutMs: 10_000, timeoutCheckIntervalMs: 1_000,
      keepAliveTimeoutMs: 5_000, maxHeaderBytes: 32 << 10, maxBodyBytes: 1 << 20,
    });
    // The shim's request line and fixed headers take about 150 bytes.
    assert.ok(MAX_CNI_HEADER_BYTES + 1024 <= DEFAULT_API_LIMITS.maxHeaderBytes);
  });
});

describe('fault 11: stopping', () => {
  it('closes idle connections at once instead of waiting out their timeouts', async () => {
    const { api, sock } = await agent();
    const held = await Promise.all(Array.from({ length: 20 }, () => idle(sock)));
    assert.ok(await until(() => api.connections.open === 20, 2000));
    const t0 = Date.now();
    await api.close();
    assert.ok(Date.now() - t0 < 1000, `close took ${Date.now() - t0} ms`);
    assert.ok(await until(() => held.every(closed), 1000));
  });
});
