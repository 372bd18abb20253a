// The error-code catalogue (src/shared/error-codes.ts) is the one source of
// what each surface answers: docs/errors.md is generated from it, src/ uses
// no code outside it, and the CNI handler, the API server and client, and the
// CLI answer exactly what it says. No root needed.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ERRORS_DOC, REGENERATE, renderErrorsDoc } from '../../scripts/gen-errors-doc.ts';
import { apiCall } from '../../src/api/client.ts';
import { ApiServer } from '../../src/api/server.ts';
import { handleCni } from '../../src/cni/handler.ts';
import {
  CATALOGUE, CNI_CODES, CNI_SHIM_ERRORS, cniCodeOf, ERROR_CODES, errorCodeOf, Exit, exitCodeOf, httpStatusOf, isErrorCode, type ErrorCode,
} from '../../src/shared/error-codes.ts';
import { ConfigError, KernelError, MembraneError, wrap } from '../../src/shared/errors.ts';
import { FakeBackend } from '../helpers/cni-fakes.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

describe('the catalogue', () => {
  it('docs/errors.md is what the catalogue generates', () => {
    const want = renderErrorsDoc();
    let have = '';
    try { have = readFileSync(ERRORS_DOC, 'utf8'); } catch { /* missing: reported below */ }
    assert.ok(have === want, `docs/errors.md is out of date with src/shared/error-codes.ts: run \`${REGENERATE}\``);
  });

  it('every \'E_...\' string in src/ is a catalogue code', () => {
    const unknown: string[] = [];
    for (const file of sourceFiles(join(REPO, 'src'))) {
      readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
        for (const m of line.matchAll(/(['"`])(E_[A-Z0-9_]+)\1/g)) {
          if (!isErrorCode(m[2])) unknown.push(`${relative(REPO, file)}:${i + 1}: ${m[2]}`);
        }
      });
    }
    assert.deepEqual(unknown, [], 'add these codes to CATALOGUE in src/shared/error-codes.ts (then regenerate docs/errors.md)');
  });

  it('every entry is complete: a sentence each, a CNI code from the table, an error HTTP status, a known exit code', () => {
    const cniCodes = new Set<number>(Object.values(CNI_CODES).map((c) => c.code));
    const exits = new Set<number>(Object.values(Exit));
    for (const code of ERROR_CODES) {
      const e = CATALOGUE[code];
      assert.match(code, /^E_[A-Z0-9_]+$/);
      for (const text of [e.meaning, e.fix]) assert.match(text, /^\S.*[.)]$/, `${code}: one sentence or two, ending with a full stop`);
      assert.ok(cniCodes.has(e.cni), `${code}: CNI code ${e.cni}`);
      assert.ok(e.http >= 400 && e.http <= 599, `${code}: HTTP ${e.http}`);
      assert.ok(exits.has(e.exit) && e.exit > Exit.OK, `${code}: exit ${e.exit} (an error never exits 0)`);
    }
  });

  it('keeps the mappings users and runtimes rely on', () => {
    const got = (c: ErrorCode) => [cniCodeOf(c), httpStatusOf(c), exitCodeOf(c)];
    assert.deepEqual(got('E_INTERNAL'), [999, 500, 1]);
    assert.deepEqual(got('E_USAGE'), [999, 400, 2]);
    assert.deepEqual(got('E_CONFIG'), [999, 400, 3]);
    assert.deepEqual(got('E_NOT_ROOT'), [999, 500, 4]);
    assert.deepEqual(got('E_UNAVAILABLE'), [11, 503, 5]);
    assert.deepEqual(got('E_NETNS'), [3, 500, 1]);
    assert.deepEqual(got('E_IPAM_EXHAUSTED'), [100, 507, 1]);
    assert.deepEqual(got('E_ENDPOINT_NOT_FOUND'), [110, 404, 1]);
    assert.deepEqual(Exit, { OK: 0, FAILURE: 1, USAGE: 2, CONFIG: 3, NOT_ROOT: 4, UNAVAILABLE: 5 });
  });

  it('answers E_INTERNAL\'s mappings for a code smuggled past the type', () => {
    const bogus = 'constructor' as ErrorCode;
    assert.equal(isErrorCode(bogus), false);
    assert.deepEqual([cniCodeOf(bogus), httpStatusOf(bogus), exitCodeOf(bogus)], [999, 500, 1]);
  });

  it('documents what the C shim answers by itself, as the C source has it', () => {
    // The C source's string literals, with their escaped quotes read as quotes.
    const c = readFileSync(join(REPO, 'cni/membrane-cni.c'), 'utf8').replaceAll('\\"', '"');
    for (const e of CNI_SHIM_ERRORS) {
      const literal = e.msg.split('<')[0]!;
      assert.ok(c.includes(literal), `cni/membrane-cni.c no longer says "${literal}": update CNI_SHIM_ERRORS in src/shared/error-codes.ts`);
    }
    const codes = new Set<number>();
    for (const m of c.matchAll(/cni_error\(\w+, (\d+),/g)) codes.add(Number(m[1]));
    for (const m of c.matchAll(/\\"code\\":(\d+)/g)) codes.add(Number(m[1]));
    for (const m of c.matchAll(/int code = [^;]*\? (\d+) : (\d+);/g)) { codes.add(Number(m[1])); codes.add(Number(m[2])); }
    for (const m of c.matchAll(/\brefuse = ([1-9]\d*);/g)) codes.add(Number(m[1]));
    assert.deepEqual([...codes].sort((a, b) => a - b), [...new Set(CNI_SHIM_ERRORS.map((e) => e.cni))].sort((a, b) => a - b),
      'the CNI codes cni/membrane-cni.c answers by itself, against CNI_SHIM_ERRORS');
  });
});

describe('errorCodeOf', () => {
  it('finds the code of any thrown value', () => {
    assert.equal(errorCodeOf(new MembraneError('x', { code: 'E_STORE' })), 'E_STORE');
    assert.equal(errorCodeOf(wrap('outer', new MembraneError('inner', { code: 'E_NETNS' }))), 'E_NETNS', 'wrapping keeps the code');
    assert.equal(errorCodeOf(new ConfigError('load config', ['x: bad'])), 'E_CONFIG');
    assert.equal(errorCodeOf(new KernelError('RTM_NEWLINK', 17)), 'E_KERNEL');
    assert.equal(errorCodeOf(new Error('plain', { cause: new MembraneError('inner', { code: 'E_BPFFS' }) })), 'E_BPFFS', 'through a plain Error');
    assert.equal(errorCodeOf(new TypeError('x is undefined')), 'E_INTERNAL');
    assert.equal(errorCodeOf('boom'), 'E_INTERNAL');
    assert.equal(errorCodeOf(undefined), 'E_INTERNAL');
    assert.equal(errorCodeOf({ code: 'SQLITE_BUSY' }), 'E_INTERNAL', 'a library\'s own code is not ours');
    assert.equal(errorCodeOf({ code: 'constructor' }), 'E_INTERNAL');
  });

  it('calls a system call Node reports failing E_KERNEL, also as a cause', () => {
    let fsErr: unknown;
    try { readFileSync('/nonexistent/membrane'); } catch (e) { fsErr = e; }
    assert.equal(errorCodeOf(fsErr), 'E_KERNEL');
    assert.equal(new MembraneError('read config', { cause: fsErr }).code, 'E_KERNEL');
  });

  it('stops on a cause cycle', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    a.cause = a;
    assert.equal(errorCodeOf(a), 'E_INTERNAL');
  });
});

describe('CNI: the handler answers each code\'s CNI code', () => {
  const NET = { networkName: 'membrane' };
  const env = (command: string, extra: Record<string, string | undefined> = {}) =>
    ({ CNI_COMMAND: command, CNI_CONTAINERID: 'c0ffee01', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', ...extra });
  const conf = (extra: Record<string, unknown> = {}) => JSON.stringify({ cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', ...extra });
  const codeOf = async (e: Record<string, string | undefined>, stdin: string, be = new FakeBackend()) => {
    const out = await handleCni(e, stdin, be, NET);
    assert.equal(out.exitCode, 1, out.stdout);
    return JSON.parse(out.stdout).code as number;
  };

  it('for every code a backend may throw', async () => {
    for (const code of ERROR_CODES) {
      const be = new FakeBackend();
      be.fail.add = wrap('add endpoint', new MembraneError('step', { code }));
      assert.equal(await codeOf(env('ADD'), conf(), be), cniCodeOf(code), code);
    }
  });

  it('for the request errors it finds itself', async () => {
    assert.equal(await codeOf(env('ADD', { CNI_NETNS: undefined }), conf()), cniCodeOf('E_CNI_ENV'));
    assert.equal(await codeOf(env('ADD'), '{oops'), cniCodeOf('E_CNI_DECODE'));
    assert.equal(await codeOf(env('ADD'), JSON.stringify({ cniVersion: '0.1.0', name: 'membrane', type: 'membrane-cni' })), cniCodeOf('E_CNI_VERSION'));
    assert.equal(await codeOf(env('ADD'), conf({ name: 'calico' })), cniCodeOf('E_CNI_CONFIG'));
    const be = new FakeBackend();
    be.fail.status = new MembraneError('agent status', { code: 'E_NOT_READY' });
    assert.equal(await codeOf({ CNI_COMMAND: 'STATUS' }, conf(), be), cniCodeOf('E_CNI_NOT_AVAILABLE'));
  });
});

describe('API: the server answers each code\'s HTTP status, the client keeps the code', () => {
  let dir = '';
  let socket = '';
  const server = new ApiServer();

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mbt-api-'));
    socket = join(dir, 'agent.sock');
    server
      .get(/^\/v1\/throw\/E_[A-Z0-9_]+$/, (_req, url) => { throw new MembraneError('do the thing', { code: url.pathname.split('/').pop() as ErrorCode, hint: 'try harder' }); })
      .get('/v1/plain', () => { throw new Error('undefined is not a function'); })
      .raw('GET', '/v1/raw-throws', () => { throw new KernelError('bpf_obj_get', 2); })
      .raw('GET', '/v1/future', (_req, res) => { res.writeHead(500, { 'content-type': 'application/json' }); res.end(JSON.stringify({ code: 'E_FROM_THE_FUTURE', message: 'frobnicate endpoint 3' })); })
      .raw('GET', '/v1/text', (_req, res) => { res.writeHead(502); res.end('upstream sad\n'); });
    await server.listen(socket);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const get = (path: string) => new Promise<{ status: number; body: any }>((resolve, reject) => {
    request({ socketPath: socket, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
    }).on('error', reject).end();
  });

  it('maps every code to its status, with code, message and hint in the body', async () => {
    for (const code of ERROR_CODES) {
      const r = await get(`/v1/throw/${code}`);
      assert.equal(r.status, httpStatusOf(code), code);
      assert.deepEqual(r.body, { code, message: 'do the thing', hint: 'try harder' });
    }
  });

  it('answers an uncoded error as E_INTERNAL, a missing route as E_NOT_FOUND, a throwing raw route with its code', async () => {
    assert.deepEqual(await get('/v1/plain'), { status: 500, body: { code: 'E_INTERNAL', message: 'undefined is not a function' } });
    const nf = await get('/v1/nope');
    assert.deepEqual([nf.status, nf.body.code], [httpStatusOf('E_NOT_FOUND'), 'E_NOT_FOUND']);
    const raw = await get('/v1/raw-throws');
    assert.deepEqual([raw.status, raw.body.code], [httpStatusOf('E_KERNEL'), 'E_KERNEL']);
    assert.match(raw.body.message, /bpf_obj_get: .*\(ENOENT\)/);
  });

  it('the client rejects with the agent\'s code, message and hint', async () => {
    for (const code of ['E_NOT_READY', 'E_CONFIG', 'E_IPAM_EXHAUSTED'] as const) {
      await assert.rejects(apiCall(socket, 'GET', `/v1/throw/${code}`), (e: unknown) =>
        e instanceof MembraneError && e.code === code && e.message === 'do the thing' && e.hint === 'try harder');
    }
  });

  it('the client turns an unknown code or a non-JSON answer into E_API, keeping what the agent said', async () => {
    await assert.rejects(apiCall(socket, 'GET', '/v1/future'), (e: unknown) =>
      e instanceof MembraneError && e.code === 'E_API' && /frobnicate endpoint 3 \(agent error code "E_FROM_THE_FUTURE", unknown to this CLI\)/.test(e.message));
    await assert.rejects(apiCall(socket, 'GET', '/v1/text'), (e: unknown) =>
      e instanceof MembraneError && e.code === 'E_API' && e.message === 'agent answered HTTP 502: upstream sad');
  });

  it('the client reports an agent that is not there as E_UNAVAILABLE', async () => {
    await assert.rejects(apiCall(join(dir, 'none.sock'), 'GET', '/v1/status'), (e: unknown) =>
      e instanceof MembraneError && e.code === 'E_UNAVAILABLE' && /agent not running/.test(e.message));
  });
});

describe('CLI: bin/membrane exits with each code\'s exit code', () => {
  const MEMBRANE = join(REPO, 'bin/membrane');
  let dir = '';
  let socket = '';
  let statusError: unknown;
  const server = new ApiServer().get('/v1/status', () => { throw statusError; });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mbt-cli-'));
    socket = join(dir, 'agent.sock');
    await server.listen(socket);
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs the CLI without blocking, so the in-process agent above can answer it. */
  const membrane = (args: string[]) => new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(MEMBRANE, args, { encoding: 'utf8', timeout: 30_000 }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stderr });
    });
  });

  it('an unknown command: E_USAGE', async () => {
    const r = await membrane(['frobnicate']);
    assert.equal(r.code, exitCodeOf('E_USAGE'));
    assert.match(r.stderr, /^membrane: unknown command "frobnicate"\n/);
  });

  it('a bad flag: E_USAGE, and --verbose shows the code', async () => {
    const r = await membrane(['status', '--frob']);
    assert.equal(r.code, exitCodeOf('E_USAGE'));
    assert.match(r.stderr, /^membrane status: unknown flag --frob\n/);
    assert.match((await membrane(['status', '--frob', '--verbose'])).stderr, /caused by MembraneError \[E_USAGE\]: unknown flag --frob/);
  });

  it('no agent: E_UNAVAILABLE', async () => {
    const r = await membrane(['status', '--socket', join(dir, 'none.sock')]);
    assert.equal(r.code, exitCodeOf('E_UNAVAILABLE'));
    assert.match(r.stderr, /connect to agent at .*none\.sock: agent not running/);
  });

  it('the agent\'s code decides the exit code', async () => {
    for (const [err, code] of [
      [new MembraneError('agent status', { code: 'E_NOT_READY', cause: 'restoring endpoints' }), 'E_NOT_READY'],
      [new ConfigError('load config', ['podCIDR: missing']), 'E_CONFIG'],
      [new MembraneError('agent status', { code: 'E_STORE', cause: 'etcd said no' }), 'E_STORE'],
    ] as const) {
      statusError = err;
      const r = await membrane(['status', '--socket', socket]);
      assert.equal(r.code, exitCodeOf(code), `${code}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^membrane status: ${err.message}\n`));
    }
  });
});
