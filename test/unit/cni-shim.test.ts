// The plugin binary (cni/membrane-cni, C) run the way a runtime runs it,
// against a node:http server on a unix socket in a temp dir: the transport
// keeps env, stdin, stdout and the exit code intact; it answers VERSION and
// "agent not reachable" itself; it finds the agent through `agentSocket`.
// No root needed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cniHttpHandler, decodeHeaderValue, encodeHeaderValue, readCniRequest, writeCniResponse } from '../../src/cni/http.ts';
import { assertCniError, assertValidResult, FakeBackend } from '../helpers/cni-fakes.ts';
import { cniExec, runConflist, type Conflist } from '../../src/cni/runtime.ts';
import { skipUnless } from '../helpers/skip.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const SHIM = join(REPO, 'cni/membrane-cni');
const SUPPORTED = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
let dir = '';
const servers: (Server | NetServer)[] = [];

before(() => {
  execFileSync('make', ['-s', '-C', join(REPO, 'cni')], { stdio: 'inherit' });
  dir = mkdtempSync(join(tmpdir(), 'mbt-cni-'));
});
after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
/** Serves `handler` on a fresh unix socket in the temp dir; returns the socket path. */
async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const path = join(dir, `agent-${seq++}.sock`);
  const s = createServer(handler);
  servers.push(s);
  await new Promise<void>((resolve) => s.listen(path, resolve));
  return path;
}

/** A server that echoes what the transport delivered: env and a digest of stdin. Exit code from CNI_ARGS "EXIT=n". */
function echoServer(): Promise<string> {
  return serve((req, res) => {
    void readCniRequest(req).then(({ env, stdin }) => {
      const exit = Number(/EXIT=(\d+)/.exec(env.CNI_ARGS ?? '')?.[1] ?? 0);
      const headers = Object.keys(req.headers).filter((h) => h.startsWith('x-cni-')).sort();
      writeCniResponse(res, {
        exitCode: exit,
        stdout: JSON.stringify({ env, headers, stdinBytes: Buffer.byteLength(stdin), stdinSha: createHash('sha256').update(stdin).digest('hex') }),
      });
    });
  });
}

const conf = (sock: string, extra: Record<string, unknown> = {}) => ({ cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: sock, ...extra });
const sha = (s: string) => createHash('sha256').update(s).digest('hex');

describe('transport', () => {
  it('delivers every CNI variable and stdin intact, and only the variables that are set', async () => {
    const sock = await echoServer();
    const stdin = JSON.stringify(conf(sock, { note: 'é ☃ \u0000 "q" \\ %41' }));
    const r = await cniExec(SHIM, 'ADD', {
      containerID: 'c0ffee', netns: '/run/netns/with space', ifname: 'eth0',
      args: 'K8S_POD_NAME=web%1;K8S_POD_NAMESPACE= spaced \t;X=ünï☃', cniPath: '/opt/cni/bin:/usr/lib/cni', stdin,
    });
    assert.equal(r.exitCode, 0, r.stdoutText);
    assert.deepEqual(r.stdout.env, {
      CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c0ffee', CNI_NETNS: '/run/netns/with space', CNI_IFNAME: 'eth0',
      CNI_ARGS: 'K8S_POD_NAME=web%1;K8S_POD_NAMESPACE= spaced \t;X=ünï☃', CNI_PATH: '/opt/cni/bin:/usr/lib/cni',
    });
    assert.equal(r.stdout.stdinSha, sha(stdin));

    const partial = await cniExec(SHIM, 'DEL', { containerID: 'c0ffee', ifname: 'eth0', conf: conf(sock), unset: ['CNI_NETNS', 'CNI_ARGS', 'CNI_PATH'] });
    assert.deepEqual(partial.stdout.headers, ['x-cni-command', 'x-cni-containerid', 'x-cni-ifname']);
    const empty = await cniExec(SHIM, 'DEL', { containerID: 'c0ffee', ifname: 'eth0', conf: conf(sock) });
    assert.equal(empty.stdout.env.CNI_NETNS, '', 'a variable set to "" arrives as ""');
  });

  it('carries a 1 MiB stdin, with agentSocket after the big value', async () => {
    const sock = await echoServer();
    const text = JSON.stringify({ cniVersion: '1.1.0', name: 'membrane', pad: 'x\\"y'.repeat(1 << 18), nested: { a: [1, { b: '}' }] }, agentSocket: sock });
    assert.ok(text.length > 1 << 20);
    const r = await cniExec(SHIM, 'ADD', { containerID: 'c1', netns: '/x', ifname: 'eth0', stdin: text });
    assert.equal(r.exitCode, 0, r.stdoutText.slice(0, 300));
    assert.equal(r.stdout.stdinBytes, Buffer.byteLength(text));
    assert.equal(r.stdout.stdinSha, sha(text));
  });

  it('returns the agent\'s exit code and stdout byte for byte', async () => {
    const payload = `{"a":"é☃"}\n\nnot json at all \u0001\r\n${'z'.repeat(300_000)}`;
    const sock = await serve((req, res) => { void readCniRequest(req).then(() => writeCniResponse(res, { exitCode: 42, stdout: payload })); });
    const r = await cniExec(SHIM, 'CHECK', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: conf(sock) });
    assert.equal(r.exitCode, 42);
    assert.equal(r.stdoutText, payload);
    assert.equal(r.stderr, '');
  });

  it('reads a chunked answer too', async () => {
    const sock = await serve((req, res) => {
      void readCniRequest(req).then(() => {
        res.writeHead(200, { 'X-Cni-Exit-Code': '3' }); // no Content-Length: node sends chunks
        res.write('{"part":');
        setTimeout(() => res.end('1}\n'), 20);
      });
    });
    const r = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: conf(sock) });
    assert.equal(r.exitCode, 3);
    assert.equal(r.stdoutText, '{"part":1}\n');
  });

  it('header values round-trip through the shim\'s percent-encoding', () => {
    for (const v of ['', 'plain', ' lead and trail ', 'a%b%41', 'new\nline\r', 'ünï☃', '\u0001\u007f']) {
      const e = encodeHeaderValue(v);
      assert.match(e, /^[\x21-\x7e]*$/, 'only visible ASCII on the wire');
      assert.equal(decodeHeaderValue(e), v);
    }
    assert.equal(decodeHeaderValue('50%zz%4'), '50%zz%4', 'stray % is kept');
  });
});

describe('the shim on its own', () => {
  it('answers VERSION without an agent, echoing the input version', async () => {
    const r = await cniExec(SHIM, 'VERSION', { stdin: '{"cniVersion":"1.0.0"}' });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.stdout, { cniVersion: '1.0.0', supportedVersions: SUPPORTED });
    const none = await cniExec(SHIM, 'VERSION', { stdin: '' });
    assert.deepEqual(none.stdout, { cniVersion: '1.1.0', supportedVersions: SUPPORTED });
  });

  it('reports an agent that is not running as code 11 with the socket path, exit 1', async () => {
    const sock = join(dir, 'nobody-home.sock');
    const r = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: { ...conf(sock), cniVersion: '1.0.0' } });
    assert.equal(r.exitCode, 1);
    assert.deepEqual(r.stdout, {
      cniVersion: '1.0.0', code: 11,
      msg: `membrane agent not reachable at ${sock}: no such file or directory (ENOENT)`,
      details: 'start the agent on this node (membrane agent --config FILE)',
    });
  });

  it('reports a path that is not a listening socket as connection refused', async () => {
    const sock = join(dir, 'stale.sock');
    writeFileSync(sock, '');
    assertCniError(await cniExec(SHIM, 'DEL', { containerID: 'c', ifname: 'eth0', conf: conf(sock) }), 11, /not reachable at .*stale\.sock: connection refused \(ECONNREFUSED\)/);
  });

  it('answers STATUS with code 50 when the agent is not reachable', async () => {
    assertCniError(await cniExec(SHIM, 'STATUS', { conf: conf(join(dir, 'none.sock')) }), 50, /membrane agent not reachable/);
  });

  it('uses only the top-level agentSocket, else /run/membrane/agent.sock', async (t) => {
    const sock = await echoServer();
    const decoy = join(dir, 'decoy.sock');
    const nested = { args: { agentSocket: decoy }, prevResult: { agentSocket: decoy, x: ['agentSocket', decoy] } };
    const r = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: { ...nested, ...conf(sock) } });
    assert.equal(r.exitCode, 0, r.stdoutText);
    const busy = skipUnless(!existsSync('/run/membrane/agent.sock'), 'an agent serves /run/membrane/agent.sock on this machine');
    if (busy) return t.skip(busy);
    const d = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: { cniVersion: '1.1.0', ...nested } });
    assertCniError(d, 11, /not reachable at \/run\/membrane\/agent\.sock: no such file/);
  });

  it('gives up after the timeout when the agent never answers', async () => {
    const sock = await serve(() => { /* accept and say nothing */ });
    const r = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: conf(sock), env: { MEMBRANE_CNI_TIMEOUT_MS: '300' } });
    assertCniError(r, 11, /not reachable at .*: no answer within 300 ms/);
    assert.ok(r.ms < 5000, `took ${r.ms} ms`);
  });

  it('treats a non-CNI answer as a bad response', async () => {
    const notFound = await serve((_req, res) => { res.writeHead(404, { 'Content-Type': 'application/json' }); res.end('{"code":"E_NOT_FOUND"}'); });
    assertCniError(await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: conf(notFound) }), 11, /bad response: HTTP status 404/);
    const noCode = await serve((_req, res) => { res.writeHead(200, { 'Content-Length': 2 }); res.end('{}'); });
    assertCniError(await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: conf(noCode) }), 11, /no X-Cni-Exit-Code header/);
    const hangup = join(dir, `hangup-${seq++}.sock`);
    const raw = createNetServer((s) => s.destroy());
    servers.push(raw);
    await new Promise<void>((resolve) => raw.listen(hangup, resolve));
    assertCniError(await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: conf(hangup) }), 11, /connection closed without a response|connection reset/);
  });
});

describe('through cniHttpHandler and a conflist', () => {
  it('runs ADD, CHECK, STATUS, GC and DEL of cni/membrane.conflist like a runtime', async () => {
    const be = new FakeBackend();
    const sock = await serve(cniHttpHandler(be, { networkName: 'membrane' }));
    const list = JSON.parse(execFileSync('cat', [join(REPO, 'cni/membrane.conflist')], { encoding: 'utf8' })) as Conflist;
    list.plugins[0]!.agentSocket = sock;
    const cniPath = [join(REPO, 'bin')];
    const att = { containerID: 'pod-1', netns: '/run/netns/pod-1', ifname: 'eth0', args: { K8S_POD_NAME: 'web', K8S_POD_NAMESPACE: 'default' }, cniPath };

    const added = await runConflist(list, 'ADD', att);
    assert.equal(added.exitCode, 0, added.stdoutText);
    assertValidResult(added.stdout, '1.1.0');
    assert.equal(added.stdout.interfaces[1].sandbox, '/run/netns/pod-1');
    assert.deepEqual(be.calls[0], { method: 'add', arg: { containerID: 'pod-1', netns: '/run/netns/pod-1', ifname: 'eth0', podName: 'web', podNamespace: 'default', labels: {} } });

    const checked = await runConflist(list, 'CHECK', { ...att, prevResult: added.stdout });
    assert.equal(checked.exitCode, 0, checked.stdoutText);
    assert.deepEqual(be.calls[1]!.arg.prevResult, added.stdout);

    assert.equal((await runConflist(list, 'STATUS', { cniPath })).exitCode, 0);
    const gc = await runConflist(list, 'GC', { cniPath, validAttachments: [{ containerID: 'pod-1', ifname: 'eth0' }] });
    assert.equal(gc.exitCode, 0, gc.stdoutText);
    assert.equal(gc.steps[0]!.stdinConf['cni.dev/valid-attachments']!.constructor, Array);

    const del = await runConflist(list, 'DEL', { ...att, netns: undefined, prevResult: added.stdout });
    assert.equal(del.exitCode, 0, del.stdoutText);
    assert.deepEqual(be.methods(), ['add', 'check', 'status', 'gc', 'del']);
    assert.equal(be.endpoints.size, 0);

    const ver = await runConflist(list, 'VERSION', { cniPath });
    assert.deepEqual(ver.stdout.supportedVersions, SUPPORTED);
  });

  it('turns validation errors into CNI errors end to end', async () => {
    const be = new FakeBackend();
    const sock = await serve(cniHttpHandler(be, { networkName: 'membrane' }));
    const r = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', conf: { ...conf(sock), name: 'other' } });
    assertCniError(r, 7, /network "other" is not the membrane network "membrane"/);
    const bad = await cniExec(SHIM, 'ADD', { containerID: 'c', netns: '/x', ifname: 'eth0', stdin: `{"agentSocket": ${JSON.stringify(sock)}, "name": }` });
    assertCniError(bad, 6, /decode network config: .* at line 1, column/);
    assert.deepEqual(be.calls, []);
  });

  it('serves concurrent invocations', async () => {
    const be = new FakeBackend();
    const sock = await serve(cniHttpHandler(be, { networkName: 'membrane' }));
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => cniExec(SHIM, 'ADD', { containerID: `pod-${i}`, netns: `/run/netns/p${i}`, ifname: 'eth0', conf: conf(sock) })));
    for (const r of rs) assert.equal(r.exitCode, 0, r.stdoutText);
    assert.equal(new Set(rs.map((r) => r.stdout.ips[0].address)).size, 20);
  });

  it('answers anything but POST with 405', async () => {
    const sock = await serve(cniHttpHandler(new FakeBackend(), { networkName: 'membrane' }));
    const status = await new Promise<number>((resolve, reject) => {
      request({ socketPath: sock, path: '/v1/cni', method: 'GET' }, (res) => { res.resume(); resolve(res.statusCode ?? 0); }).on('error', reject).end();
    });
    assert.equal(status, 405);
  });
});
