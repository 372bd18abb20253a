// The CNI logic (src/cni/handler.ts) against a fake backend: every
// validation error, the result in each spec version's shape, and the
// DEL/CHECK/STATUS/GC/VERSION semantics of CNI 1.1.0.
import assert from 'node:assert/strict';
import { isUtf8 } from 'node:buffer';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { codeFor, handleCni } from '../../src/cni/handler.ts';
import { firstInvalidUtf8, locateJsonError } from '../../src/cni/json-error.ts';
import { MembraneError, wrap, type ErrorCode } from '../../src/shared/errors.ts';
import { assertCniError, assertValidResult, FakeBackend } from '../helpers/cni-fakes.ts';

const NET = { networkName: 'membrane' };
// A real network namespace: the handler checks that CNI_NETNS is one (this process's own will do).
const NETNS = '/proc/self/ns/net';

function conf(extra: Record<string, unknown> = {}, version = '1.1.0') {
  return { cniVersion: version, name: 'membrane', type: 'membrane-cni', ...extra };
}

function env(command: string, extra: Record<string, string | undefined> = {}) {
  return { CNI_COMMAND: command, CNI_CONTAINERID: 'c0ffee01', CNI_NETNS: NETNS, CNI_IFNAME: 'eth0', CNI_ARGS: '', CNI_PATH: '/opt/cni/bin', ...extra };
}

async function run(e: Record<string, string | undefined>, stdin: unknown, be = new FakeBackend()) {
  const out = await handleCni(e, typeof stdin === 'string' ? stdin : JSON.stringify(stdin), be, NET);
  const parsed = out.stdout === '' ? undefined : JSON.parse(out.stdout);
  return { ...out, stdout: parsed, text: out.stdout, be };
}

describe('ADD', () => {
  it('returns a 1.1.0 result: host and pod interface, /32 via the router, default route with the tunnel MTU', async () => {
    const be = new FakeBackend();
    const r = await run(env('ADD', { CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-1' }), conf({ args: { labels: { app: 'web' } } }), be);
    assert.equal(r.exitCode, 0, r.text);
    assert.ok(r.text.endsWith('}\n'));
    assertValidResult(r.stdout, '1.1.0');
    assert.deepEqual(r.stdout, {
      cniVersion: '1.1.0',
      interfaces: [
        { name: 'lxcc0ffee01', mac: 'ee:ee:0a:01:00:02', mtu: 1500 },
        { name: 'eth0', mac: '0a:58:0a:01:00:02', mtu: 1500, sandbox: NETNS },
      ],
      ips: [{ address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 1 }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.1.0.1', mtu: 1450 }],
      dns: {},
    });
    assert.deepEqual(be.calls, [{ method: 'add', arg: { containerID: 'c0ffee01', netns: NETNS, ifname: 'eth0', podName: 'web-1', podNamespace: 'prod', labels: { app: 'web' } } }]);
  });

  it('renders 1.0.0 without mtu fields and 0.4.0/0.3.x with ips[].version', async () => {
    const r1 = await run(env('ADD'), conf({}, '1.0.0'));
    assertValidResult(r1.stdout, '1.0.0');
    assert.deepEqual(r1.stdout.ips, [{ address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 1 }]);
    assert.deepEqual(r1.stdout.routes, [{ dst: '0.0.0.0/0', gw: '10.1.0.1' }]);
    assert.equal(r1.stdout.interfaces[1].mtu, undefined);
    for (const v of ['0.4.0', '0.3.1', '0.3.0']) {
      const r = await run(env('ADD'), conf({}, v));
      assert.equal(r.exitCode, 0, r.text);
      assertValidResult(r.stdout, v);
      assert.deepEqual(r.stdout.ips, [{ version: '4', address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 1 }]);
    }
  });

  it('keeps a prevResult from an earlier plugin and appends to it', async () => {
    const prev = {
      cniVersion: '1.1.0',
      interfaces: [{ name: 'dummy0', mac: '02:00:00:00:00:01' }],
      ips: [{ address: '192.0.2.5/24', interface: 0 }],
      routes: [{ dst: '192.0.2.0/24' }],
      dns: { nameservers: ['192.0.2.53'] },
    };
    const r = await run(env('ADD'), conf({ prevResult: prev }));
    assert.equal(r.exitCode, 0, r.text);
    assertValidResult(r.stdout, '1.1.0');
    assert.deepEqual(r.stdout.interfaces.map((i: any) => i.name), ['dummy0', 'lxcc0ffee01', 'eth0']);
    assert.deepEqual(r.stdout.ips[1], { address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 2 });
    assert.equal(r.stdout.routes.length, 2);
    assert.deepEqual(r.stdout.dns, prev.dns);
  });

  it('takes labels from args.cni.labels (the CNI convention) too', async () => {
    const be = new FakeBackend();
    await run(env('ADD'), conf({ args: { labels: { a: '1' }, cni: { labels: [{ key: 'b', value: '2' }] } } }), be);
    assert.deepEqual(be.calls[0]!.arg.labels, { a: '1', b: '2' });
  });

  it('refuses an egress bandwidth limit from the runtime (code 7, before anything is done); an ingress one passes', async () => {
    const be = new FakeBackend();
    const r = await run(env('ADD'), conf({ runtimeConfig: { bandwidth: { ingressRate: 1000, ingressBurst: 100, egressRate: 8000, egressBurst: 100 } } }), be);
    assertCniError(r, 7, /runtimeConfig\.bandwidth: egress limits \(egressRate, egressBurst\) are not supported/, /ingress limits \(ingressRate, ingressBurst\) work/);
    assert.deepEqual(be.calls, [], 'the backend was not asked to add anything');
    const ok = await run(env('ADD'), conf({ runtimeConfig: { bandwidth: { ingressRate: 1000, ingressBurst: 100 } } }));
    assert.equal(ok.exitCode, 0, ok.text);
  });
});

describe('validation: code, message naming the culprit, and nothing done', () => {
  const cases: [string, Record<string, string | undefined>, unknown, number, RegExp[]][] = [
    ['no CNI_COMMAND', env('ADD', { CNI_COMMAND: undefined }), conf(), 4, [/CNI_COMMAND is not set/]],
    ['empty CNI_COMMAND', env('ADD', { CNI_COMMAND: '' }), conf(), 4, [/CNI_COMMAND/]],
    ['unknown command', env('FROB'), conf(), 4, [/"FROB" is not a CNI command/, /ADD, DEL, CHECK, STATUS, GC, VERSION/]],
    ['ADD without CNI_CONTAINERID', env('ADD', { CNI_CONTAINERID: undefined }), conf(), 4, [/^CNI_CONTAINERID is not set \(required for ADD\)$/]],
    ['ADD without CNI_NETNS', env('ADD', { CNI_NETNS: '' }), conf(), 4, [/^CNI_NETNS is not set/]],
    ['ADD without CNI_IFNAME', env('ADD', { CNI_IFNAME: undefined }), conf(), 4, [/^CNI_IFNAME is not set/]],
    ['ADD without two variables', env('ADD', { CNI_NETNS: undefined, CNI_IFNAME: undefined }), conf(), 4, [/CNI_NETNS, CNI_IFNAME are not set/]],
    ['CHECK without CNI_NETNS', env('CHECK', { CNI_NETNS: undefined }), conf({ prevResult: {} }), 4, [/CNI_NETNS is not set \(required for CHECK\)/]],
    ['DEL without CNI_IFNAME', env('DEL', { CNI_IFNAME: undefined }), conf(), 4, [/CNI_IFNAME is not set \(required for DEL\)/]],
    ['DEL without CNI_CONTAINERID', env('DEL', { CNI_CONTAINERID: '' }), conf(), 4, [/CNI_CONTAINERID/]],
    ['a container ID starting with -', env('ADD', { CNI_CONTAINERID: '-abc' }), conf(), 4, [/CNI_CONTAINERID "-abc" is invalid/]],
    ['an interface name with :', env('ADD', { CNI_IFNAME: 'eth0:1' }), conf(), 4, [/CNI_IFNAME "eth0:1" is invalid/]],
    ['a 16-byte interface name', env('ADD', { CNI_IFNAME: 'a'.repeat(16) }), conf(), 4, [/CNI_IFNAME .* shorter than 16 bytes/]],
    ['interface name ..', env('ADD', { CNI_IFNAME: '..' }), conf(), 4, [/CNI_IFNAME/]],
    ['malformed CNI_ARGS', env('ADD', { CNI_ARGS: 'K8S_POD_NAME=a;oops' }), conf(), 4, [/CNI_ARGS has an invalid pair "oops"/]],
    ['empty stdin', env('ADD'), '', 6, [/stdin is empty/]],
    ['malformed JSON', env('ADD'), '{\n  "cniVersion": "1.1.0",\n  "name": \n}', 6, [/decode network config: unexpected "}", expected a value at line 4, column 1 \(offset 38\)/]],
    ['trailing garbage', env('ADD'), '{"cniVersion":"1.1.0"} x', 6, [/after the JSON value at line 1, column 24/]],
    ['a JSON array', env('ADD'), '[1]', 7, [/must be a JSON object, not an array/]],
    ['no cniVersion', env('ADD'), { name: 'membrane', type: 'membrane-cni' }, 1, [/no cniVersion/, /0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/]],
    ['cniVersion 0.2.0', env('ADD'), conf({}, '0.2.0'), 1, [/incompatible CNI version "0.2.0": membrane-cni supports 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0/]],
    ['cniVersion 2.0.0', env('ADD'), conf({}, '2.0.0'), 1, [/"2.0.0"/]],
    ['another network', env('ADD'), conf({ name: 'calico' }), 7, [/^network "calico" is not the membrane network "membrane"$/]],
    ['no network name', env('ADD'), { cniVersion: '1.1.0', type: 'membrane-cni' }, 7, [/no "name"/]],
    ['another plugin type', env('ADD'), conf({ type: 'bridge' }), 7, [/plugin type "bridge" is not membrane-cni/]],
    ['no plugin type', env('ADD'), { cniVersion: '1.1.0', name: 'membrane' }, 7, [/no "type"/]],
    ['a non-string label', env('ADD'), conf({ args: { labels: { app: 3 } } }), 7, [/"args.labels.app" must be a string, not number/]],
    ['a bad args.cni.labels entry', env('ADD'), conf({ args: { cni: { labels: [{ key: 'a' }] } } }), 7, [/"args.cni.labels"\[0\]/]],
    ['prevResult not an object', env('ADD'), conf({ prevResult: 'x' }), 7, [/prevResult must be a JSON object/]],
    ['CHECK on 0.3.1', env('CHECK'), conf({ prevResult: {} }, '0.3.1'), 1, [/CHECK needs cniVersion 0.4.0 or later; the network config has 0.3.1/]],
    ['STATUS on 1.0.0', env('STATUS'), conf({}, '1.0.0'), 1, [/STATUS needs cniVersion 1.1.0/]],
    ['GC on 1.0.0', env('GC'), conf({ 'cni.dev/valid-attachments': [] }, '1.0.0'), 1, [/GC needs cniVersion 1.1.0/]],
  ];
  for (const [name, e, stdin, code, patterns] of cases) {
    it(`${name} -> code ${code}`, async () => {
      const r = await run(e, stdin);
      assertCniError(r, code, ...patterns);
      assert.equal(r.exitCode, 1);
      assert.deepEqual(r.be.calls, [], 'the backend was not called');
    });
  }

  it('echoes the config\'s cniVersion in errors, and 1.1.0 when there is none to echo', async () => {
    assert.equal((await run(env('ADD'), conf({ name: 'x' }, '1.0.0'))).stdout.cniVersion, '1.0.0');
    assert.equal((await run(env('ADD'), '{oops')).stdout.cniVersion, '1.1.0');
  });

  it('reports environment errors before config errors (like libcni\'s skel)', async () => {
    assertCniError(await run(env('ADD', { CNI_NETNS: undefined }), '{oops'), 4, /CNI_NETNS/);
  });
});

describe('backend errors map to CNI codes', () => {
  const netnsGone = wrap('add endpoint for container c0ffee01', new MembraneError('enter netns /run/netns/pod-a', { code: 'E_NETNS', cause: 'no such network namespace' }));
  const exhausted = wrap('add endpoint for container c0ffee01', new MembraneError('allocate IP for c0ffee01', {
    code: 'E_IPAM_EXHAUSTED', cause: 'pool 10.1.0.0/24 exhausted (253/253 in use)', hint: 'use a larger pod CIDR',
  }));
  const cases: [string, unknown, number, RegExp][] = [
    ['E_NETNS', netnsGone, 3, /enter netns \/run\/netns\/pod-a: no such network namespace/],
    ['E_IPAM_EXHAUSTED', exhausted, 100, /pool 10\.1\.0\.0\/24 exhausted/],
    ['E_NOT_READY', new MembraneError('add endpoint', { code: 'E_NOT_READY', cause: 'restoring' }), 11, /restoring/],
    ['E_UNAVAILABLE', new MembraneError('store', { code: 'E_UNAVAILABLE' }), 11, /store/],
    ['E_IFNAME_EXISTS', new MembraneError('create endpoint 7', { code: 'E_IFNAME_EXISTS', cause: 'the pod netns already has an interface named eth0' }), 101, /already has an interface named eth0/],
    ['an unknown code', new MembraneError('sysctl', { code: 'E_SYSCTL' }), 999, /sysctl/],
    ['a plain Error', new TypeError('x is undefined'), 999, /^x is undefined$/],
    ['a thrown string', 'boom', 999, /^boom$/],
  ];
  for (const [name, err, code, msg] of cases) {
    it(`${name} -> ${code}`, async () => {
      const be = new FakeBackend();
      be.fail.add = err;
      const r = await run(env('ADD'), conf(), be);
      assertCniError(r, code, msg);
    });
  }

  it('puts the cause chain and the hint in details, the one-line message in msg', async () => {
    const be = new FakeBackend();
    be.fail.add = exhausted;
    const r = await run(env('ADD'), conf(), be);
    assert.equal(r.stdout.msg, 'add endpoint for container c0ffee01: allocate IP for c0ffee01: pool 10.1.0.0/24 exhausted (253/253 in use)');
    const lines = r.stdout.details.split('\n');
    assert.match(lines[0], /^MembraneError \[E_IPAM_EXHAUSTED\]: add endpoint/);
    assert.match(lines[1], /^MembraneError \[E_IPAM_EXHAUSTED\]: allocate IP for c0ffee01/);
    assert.equal(lines.at(-1), 'hint: use a larger pod CIDR');
  });

  it('a multi-line message keeps only its first line in msg', async () => {
    const be = new FakeBackend();
    be.fail.add = new MembraneError('load program\nverifier log line 1\nline 2', { code: 'E_BPF_VERIFIER' });
    assertCniError(await run(env('ADD'), conf(), be), 999, /^load program$/);
  });

  it('codeFor ignores inherited object keys', () => {
    // A code smuggled past the ErrorCode type (JSON, a cast) must not match inherited keys.
    assert.equal(codeFor(new MembraneError('x', { code: 'constructor' as ErrorCode })), 999);
    assert.equal(codeFor(new MembraneError('x', { code: 'E_NETNS' })), 3);
  });
});

describe('DEL', () => {
  it('is idempotent: a second DEL of the same attachment succeeds with no output', async () => {
    const be = new FakeBackend();
    await run(env('ADD'), conf(), be);
    const a = await run(env('DEL'), conf(), be);
    const b = await run(env('DEL'), conf(), be);
    for (const r of [a, b]) { assert.equal(r.exitCode, 0); assert.equal(r.text, ''); }
    assert.equal(be.endpoints.size, 0);
    assert.deepEqual(be.methods(), ['add', 'del', 'del']);
  });

  it('succeeds without CNI_NETNS (unset or empty) and passes no netns', async () => {
    for (const netns of [undefined, '']) {
      const be = new FakeBackend();
      const r = await run(env('DEL', { CNI_NETNS: netns }), conf(), be);
      assert.equal(r.exitCode, 0, r.text);
      assert.deepEqual(be.calls, [{ method: 'del', arg: { containerID: 'c0ffee01', ifname: 'eth0', netns: undefined } }]);
    }
  });

  it('passes CNI_NETNS when given and accepts a prevResult', async () => {
    const be = new FakeBackend();
    const r = await run(env('DEL'), conf({ prevResult: { cniVersion: '1.1.0', interfaces: [] } }), be);
    assert.equal(r.exitCode, 0);
    assert.equal(be.calls[0]!.arg.netns, NETNS);
  });

  it('reports a backend failure', async () => {
    const be = new FakeBackend();
    be.fail.del = new MembraneError('delete endpoint 3: RTM_DELLINK', { code: 'E_KERNEL' });
    assertCniError(await run(env('DEL'), conf(), be), 999, /RTM_DELLINK/);
  });
});

describe('CHECK', () => {
  const prev = (netns = NETNS) => ({
    cniVersion: '1.1.0',
    interfaces: [{ name: 'lxcc0ffee01', mac: 'ee:ee:0a:01:00:02' }, { name: 'eth0', mac: '0a:58:0a:01:00:02', sandbox: netns }],
    ips: [{ address: '10.1.0.2/32', gateway: '10.1.0.1', interface: 1 }],
  });

  it('passes prevResult to the backend; success prints nothing', async () => {
    const be = new FakeBackend();
    const r = await run(env('CHECK'), conf({ prevResult: prev() }), be);
    assert.equal(r.exitCode, 0, r.text);
    assert.equal(r.text, '');
    assert.deepEqual(be.calls, [{ method: 'check', arg: { containerID: 'c0ffee01', ifname: 'eth0', netns: NETNS, prevResult: prev() } }]);
  });

  it('requires prevResult', async () => {
    const r = await run(env('CHECK'), conf());
    assertCniError(r, 7, /CHECK needs prevResult/);
    assert.deepEqual(r.be.calls, []);
  });

  it('requires prevResult to list our interface in CNI_NETNS', async () => {
    assertCniError(await run(env('CHECK', { CNI_IFNAME: 'net1' }), conf({ prevResult: prev() })), 7, /no container interface "net1"/);
    assertCniError(await run(env('CHECK'), conf({ prevResult: prev('/run/netns/other') })), 7, /in "\/run\/netns\/other", not CNI_NETNS/);
  });

  it('maps a broken endpoint to 111 and a missing one to 110', async () => {
    const be = new FakeBackend();
    be.fail.check = new MembraneError('check endpoint of container c0ffee01 eth0', { code: 'E_ENDPOINT', cause: 'host device lxcc0ffee01 is down' });
    assertCniError(await run(env('CHECK'), conf({ prevResult: prev() }), be), 111, /host device lxcc0ffee01 is down/);
    be.fail.check = new MembraneError('check endpoint', { code: 'E_ENDPOINT_NOT_FOUND', cause: 'no such endpoint' });
    assertCniError(await run(env('CHECK'), conf({ prevResult: prev() }), be), 110, /no such endpoint/);
  });
});

describe('STATUS', () => {
  it('exits 0 with no output when the agent can serve ADD', async () => {
    const r = await run({ CNI_COMMAND: 'STATUS' }, conf());
    assert.equal(r.exitCode, 0);
    assert.equal(r.text, '');
    assert.deepEqual(r.be.methods(), ['status']);
  });

  it('returns code 50 when it cannot', async () => {
    const be = new FakeBackend();
    be.fail.status = new MembraneError('agent status', { code: 'E_NOT_READY', cause: 'restoring endpoints' });
    const r = await run({ CNI_COMMAND: 'STATUS', CNI_PATH: '/opt/cni/bin' }, conf(), be);
    assertCniError(r, 50, /^plugin not available: agent status: restoring endpoints$/);
  });
});

describe('GC', () => {
  it('hands cni.dev/valid-attachments to the backend; success prints nothing', async () => {
    const be = new FakeBackend();
    await run(env('ADD', { CNI_CONTAINERID: 'keep' }), conf(), be);
    await run(env('ADD', { CNI_CONTAINERID: 'stale' }), conf(), be);
    const valid = [{ containerID: 'keep', ifname: 'eth0' }];
    const r = await run({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, conf({ 'cni.dev/valid-attachments': valid }), be);
    assert.equal(r.exitCode, 0, r.text);
    assert.equal(r.text, '');
    assert.deepEqual(be.calls.at(-1), { method: 'gc', arg: valid });
    assert.deepEqual([...be.endpoints.keys()], ['keep/eth0']);
  });

  it('treats null (libcni\'s empty list) as none valid, and accepts the old cni.dev/attachments key', async () => {
    const a = await run({ CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': null }));
    assert.deepEqual(a.be.calls, [{ method: 'gc', arg: [] }]);
    const b = await run({ CNI_COMMAND: 'GC' }, conf({ 'cni.dev/attachments': [{ containerID: 'x', ifname: 'eth0' }] }));
    assert.deepEqual(b.be.calls, [{ method: 'gc', arg: [{ containerID: 'x', ifname: 'eth0' }] }]);
  });

  it('refuses a GC without the list (it would delete every endpoint) or with bad entries', async () => {
    const a = await run({ CNI_COMMAND: 'GC' }, conf());
    assertCniError(a, 7, /GC needs "cni.dev\/valid-attachments"/);
    assert.deepEqual(a.be.calls, []);
    assertCniError(await run({ CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': [{ containerID: 'x' }] })), 7, /\[0\] must be/);
    assertCniError(await run({ CNI_COMMAND: 'GC' }, conf({ 'cni.dev/valid-attachments': {} })), 7, /must be an array/);
  });
});

describe('VERSION', () => {
  it('echoes the input cniVersion and lists the supported versions, without touching the backend', async () => {
    const r = await run({ CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0' });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.stdout, { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    assert.deepEqual(r.be.calls, []);
  });

  it('answers 1.1.0 with no input or a version it does not speak', async () => {
    assert.equal((await run({ CNI_COMMAND: 'VERSION' }, '')).stdout.cniVersion, '1.1.0');
    assert.equal((await run({ CNI_COMMAND: 'VERSION' }, { cniVersion: '0.1.0' })).stdout.cniVersion, '1.1.0');
  });
});

describe('locateJsonError', () => {
  it('accepts valid JSON', () => {
    for (const s of ['{}', '[]', '{"a":[1,2.5e3,-0,true,false,null,"x\\u00e9\\n"]}', ' "s" ', '0', '{"a":{"b":{"c":[[]]}}}']) {
      assert.equal(locateJsonError(s), undefined, s);
      JSON.parse(s);
    }
  });

  it('finds the first bad byte', () => {
    const cases: [string, number, RegExp][] = [
      ['{"a": }', 6, /expected a value/],
      ['{"a":1', 6, /end of input, expected ',' or '}'/],
      ['[1,]', 3, /expected a value/],
      ['{"a" 1}', 5, /expected ':'/],
      ['{"a":1,}', 7, /expected a property name/],
      ['{"a":"x\\q"}', 7, /bad escape \\q/],
      ['{"a":"x', 7, /unterminated string/],
      ['"\t"', 1, /control character/],
      ['01', 1, /after the JSON value/],
      ['{} {}', 3, /after the JSON value/],
      ['', 0, /end of input/],
      ['nul', 0, /expected a value/],
    ];
    for (const [s, offset, reason] of cases) {
      assert.throws(() => JSON.parse(s));
      const e = locateJsonError(s);
      assert.ok(e, s);
      assert.equal(e.offset, offset, `${JSON.stringify(s)}: ${e.reason}`);
      assert.match(e.reason, reason);
    }
  });

  it('handles deep nesting without recursion', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    assert.equal(locateJsonError(deep), undefined);
    assert.equal(locateJsonError(deep.slice(0, -1))?.offset, 199_999);
  });
});

// ---- issue 8: the CNI edge ----

describe('fault 10: CNI_NETNS must be a network namespace', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'mbt-netns-'));
    writeFileSync(join(dir, 'file'), '');
    mkdirSync(join(dir, 'dir'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string, () => string, number, RegExp][] = [
    ['a regular file', () => join(dir, 'file'), 4, /^CNI_NETNS ".*\/file" is not a network namespace: it is a regular file/],
    ['a directory', () => join(dir, 'dir'), 4, /^CNI_NETNS ".*\/dir" is not a network namespace: it is a directory$/],
    ['/dev/null', () => '/dev/null', 4, /^CNI_NETNS "\/dev\/null" is not a network namespace: it is a character device$/],
    ['another kind of namespace', () => '/proc/self/ns/mnt', 4, /^CNI_NETNS "\/proc\/self\/ns\/mnt" is not a network namespace: it is a mnt namespace$/],
    ['a path that does not exist', () => join(dir, 'gone'), 3, /^check CNI_NETNS: network namespace .*\/gone does not exist$/],
    ['a path under a file', () => join(dir, 'file', 'x'), 3, /does not exist$/],
  ];
  for (const [name, path, code, msg] of cases) {
    it(`ADD and CHECK refuse ${name}: code ${code}, nothing done`, async () => {
      const p = path();
      for (const cmd of ['ADD', 'CHECK']) {
        const prevResult = { cniVersion: '1.1.0', interfaces: [{ name: 'eth0', sandbox: p }] };
        const r = await run(env(cmd, { CNI_NETNS: p }), conf(cmd === 'CHECK' ? { prevResult } : {}));
        assertCniError(r, code, msg);
        assert.deepEqual(r.be.calls, [], 'the backend was not called');
      }
    });
  }

  it('accepts a netns file and /proc/PID/ns/net; DEL does not look at it', async () => {
    for (const p of ['/proc/self/ns/net', `/proc/${process.pid}/ns/net`]) assert.equal((await run(env('ADD', { CNI_NETNS: p }), conf())).exitCode, 0);
    assert.equal((await run(env('DEL', { CNI_NETNS: '/dev/null' }), conf())).exitCode, 0, 'DEL succeeds whatever the netns (spec: clean up what can be)');
  });
});

describe('fault 10: labels the cluster store cannot hold are code 7, naming the field', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['a ";" in a key', { labels: { 'a;b': 'x' } }, /^"args.labels": label "a;b" is invalid: its key must not contain ';' or '='$/],
    ['an "=" in a key', { labels: { 'a=b': 'x' } }, /^"args.labels": label "a=b" is invalid: its key must not contain ';' or '='$/],
    ['an empty key', { labels: { '': 'x' } }, /^"args.labels": label "" is invalid: its key is empty$/],
    ['an empty key after a source', { labels: { 'k8s:': 'x' } }, /^"args.labels": label "k8s:" is invalid: its key is empty$/],
    ['a bad source', { labels: { ':app': 'x' } }, /^"args.labels": label ":app" is invalid: its source "" must be/],
    ['a ";" in a value', { labels: { app: 'a;b' } }, /^"args.labels": label "app" is invalid: its value "a;b" must not contain ';'$/],
    ['a bad args.cni.labels entry', { cni: { labels: [{ key: 'ok', value: 'x' }, { key: 'x;y', value: '1' }] } }, /^"args.cni.labels"\[1\]: label "x;y" is invalid/],
  ];
  for (const [name, args, msg] of cases) {
    it(`${name} -> 7`, async () => {
      const r = await run(env('ADD'), conf({ args }));
      assertCniError(r, 7, msg);
      assert.deepEqual(r.be.calls, []);
    });
  }

  it('keeps labels with a source, dots, slashes and dashes', async () => {
    const r = await run(env('ADD'), conf({ args: { labels: { 'k8s:app.kubernetes.io/name': 'web-1', 'io.cilium.k8s.policy.cluster': 'default' } } }));
    assert.equal(r.exitCode, 0, r.text);
  });
});

describe('fault 10: variables that are not UTF-8 are refused, never read as another name', () => {
  it('CNI_IFNAME (or any variable the agent uses) not valid UTF-8 -> 4, naming it', async () => {
    for (const cmd of ['ADD', 'DEL', 'CHECK']) {
      const be = new FakeBackend();
      const out = await handleCni(env(cmd, { CNI_IFNAME: 'eth\ufffd' }), JSON.stringify(conf()), be, NET, { invalidUtf8: ['CNI_IFNAME'] });
      assertCniError({ exitCode: out.exitCode, stdout: JSON.parse(out.stdout) }, 4, /^CNI_IFNAME is not valid UTF-8/);
      assert.deepEqual(be.calls, []);
    }
    const two = await handleCni(env('ADD'), JSON.stringify(conf()), new FakeBackend(), NET, { invalidUtf8: ['CNI_NETNS', 'CNI_ARGS'] });
    assert.match(JSON.parse(two.stdout).msg, /^CNI_NETNS, CNI_ARGS are not valid UTF-8/);
  });

  it('ignores CNI_PATH, which the plugin never uses', async () => {
    const out = await handleCni(env('ADD'), JSON.stringify(conf()), new FakeBackend(), NET, { invalidUtf8: ['CNI_PATH'] });
    assert.equal(out.exitCode, 0, out.stdout);
  });
});

describe('fault 3: stdin is validated before it is parsed, and bounded', () => {
  it('refuses stdin that is not UTF-8 (code 6), with the byte offset', async () => {
    const be = new FakeBackend();
    const bytes = Buffer.concat([Buffer.from('{"cniVersion":"1.1.0",\n"name":"mé'), Buffer.from([0xff]), Buffer.from('"}')]);
    const out = await handleCni(env('ADD'), bytes, be, NET);
    assertCniError({ exitCode: out.exitCode, stdout: JSON.parse(out.stdout) }, 6, /^decode network config: invalid UTF-8 at line 2, column 11 \(offset 34\)$/);
    assert.deepEqual(be.calls, []);
  });

  it('refuses nesting deeper than 64 levels (code 6), also in valid JSON', async () => {
    const ok = conf({ x: JSON.parse(`${'['.repeat(63)}${']'.repeat(63)}`) });
    assert.equal((await run(env('ADD'), ok)).exitCode, 0);
    const r = await run(env('ADD'), JSON.stringify(conf({ x: 1 })).replace('"x":1', `"x":${'['.repeat(64)}${']'.repeat(64)}`));
    assertCniError(r, 6, /^decode network config: nesting deeper than 64 levels at line 1, column \d+ \(offset \d+\)$/);
    assert.deepEqual(r.be.calls, []);
  });

  it('decides about a megabyte of nested brackets at once', async () => {
    const t0 = performance.now();
    assertCniError(await run(env('ADD'), '['.repeat(1 << 20)), 6, /nesting deeper than 64 levels at line 1, column 65 \(offset 64\)/);
    assert.ok(performance.now() - t0 < 50, `${(performance.now() - t0).toFixed(1)} ms`);
  });
});

describe('fault 4: the caller gone', () => {
  it('hands the signal to backend.add, and does not start an ADD whose caller is already gone', async () => {
    const ac = new AbortController();
    let seen: AbortSignal | undefined;
    const be = new (class extends FakeBackend {
      override async add(r: Parameters<FakeBackend['add']>[0], o?: { signal?: AbortSignal }) { seen = o?.signal; return super.add(r); }
    })();
    assert.equal((await handleCni(env('ADD'), JSON.stringify(conf()), be, NET, { signal: ac.signal })).exitCode, 0);
    assert.equal(seen, ac.signal);
    ac.abort(new MembraneError('CNI ADD', { code: 'E_CANCELLED', cause: 'the plugin closed its connection before the agent answered' }));
    const be2 = new FakeBackend();
    const out = await handleCni(env('ADD'), JSON.stringify(conf()), be2, NET, { signal: ac.signal });
    assertCniError({ exitCode: out.exitCode, stdout: JSON.parse(out.stdout) }, 11, /the plugin closed its connection/);
    assert.deepEqual(be2.calls, []);
  });
});

describe('fault 10: a second interface in one pod', () => {
  it('the backend\'s refusal (E_SECOND_INTERFACE) is membrane code 112 with its message', async () => {
    const be = new FakeBackend();
    be.fail.add = wrap('add endpoint for container c0ffee01', new MembraneError('attach interface net1', {
      code: 'E_SECOND_INTERFACE', cause: 'the container already has eth0 on this network; membrane gives a pod one interface',
    }));
    assertCniError(await run(env('ADD', { CNI_IFNAME: 'net1' }), conf(), be), 112, /already has eth0 on this network/);
  });
});

describe('locateJsonError: positions in bytes and characters, depth, UTF-8', () => {
  it('gives the byte offset and the column in characters', () => {
    const e = locateJsonError('{"é😀": }');
    assert.deepEqual([e?.index, e?.offset, e?.line, e?.column], [8, 11, 1, 8]); // '😀' is 2 code units, 4 bytes, 1 character
  });

  it('stops at the first container past maxDepth', () => {
    assert.equal(locateJsonError('[[[]]]', 3), undefined);
    assert.deepEqual([locateJsonError('[[[[]]]]', 3)?.offset, locateJsonError('[[[[]]]]', 3)?.reason], [3, 'nesting deeper than 3 levels']);
  });

  it('finds the first byte that is not UTF-8', () => {
    assert.equal(firstInvalidUtf8(Buffer.from('aé€😀')), -1);
    for (const [bytes, at] of [[[0x61, 0xff], 1], [[0xc0, 0x80], 0], [[0xe0, 0x80, 0x80], 0], [[0xed, 0xa0, 0x80], 0], [[0xf4, 0x90, 0x80, 0x80], 0], [[0x61, 0xe2, 0x82], 1]] as const) {
      assert.equal(firstInvalidUtf8(Buffer.from(bytes)), at, JSON.stringify(bytes));
      assert.equal(isUtf8(Buffer.from(bytes)), false);
    }
  });
});
