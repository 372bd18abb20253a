// The runtime side of CNI (src/cni/runtime.ts) follows the spec's
// conflist rules: checked with two recording shell plugins.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cniExec, negotiatedVersion, runConflist, type Conflist } from '../../src/cni/runtime.ts';

let dir = '';
// Logs "COMMAND plugin CNI_CONTAINERID|CNI_NETNS|CNI_IFNAME|CNI_ARGS|CNI_PATH" and stdin; on ADD prints
// prevResult with its own interface appended (as a chained plugin must).
const PLUGIN = `#!/bin/sh
me=$(basename "$0")
in=$(cat)
printf '%s %s %s|%s|%s|%s|%s\\n%s\\n' "$CNI_COMMAND" "$me" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" "$in" >> "$(dirname "$0")/log"
[ "$me" = failing ] && [ "$CNI_COMMAND" = ADD ] && { echo '{"cniVersion":"1.1.0","code":7,"msg":"no"}'; exit 1; }
[ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"1.1.0","interfaces":[{"name":"%s"}]}' "$me"
exit 0
`;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'mbt-cnirt-'));
  for (const name of ['first', 'second', 'failing']) {
    writeFileSync(join(dir, name), PLUGIN);
    chmodSync(join(dir, name), 0o755);
  }
});
after(() => rmSync(dir, { recursive: true, force: true }));

function log(): { head: string; conf: any }[] {
  const lines = readFileSync(join(dir, 'log'), 'utf8').trimEnd().split('\n');
  rmSync(join(dir, 'log'));
  const out = [];
  for (let i = 0; i < lines.length; i += 2) out.push({ head: lines[i]!, conf: JSON.parse(lines[i + 1]!) });
  return out;
}

const list: Conflist = {
  cniVersion: '1.0.0', cniVersions: ['1.0.0', '1.1.0', '9.9.9'], name: 'net1',
  plugins: [{ type: 'first', capabilities: { mac: true, portMappings: false }, keep: [1] }, { type: 'second' }],
};
const att = { containerID: 'ctr', netns: '/run/netns/a', ifname: 'eth0', args: { A: '1', B: '2' }, cniPath: [dir] };

describe('runConflist', () => {
  it('ADD: in order, name/cniVersion injected, capabilities -> runtimeConfig, each result the next prevResult', async () => {
    const r = await runConflist(list, 'ADD', { ...att, capabilityArgs: { mac: '02:00:00:00:00:09', portMappings: [1] } });
    assert.equal(r.exitCode, 0);
    assert.deepEqual(r.stdout, { cniVersion: '1.1.0', interfaces: [{ name: 'second' }] });
    const [a, b] = log();
    assert.equal(a!.head, `ADD first ctr|/run/netns/a|eth0|A=1;B=2|${dir}`);
    assert.deepEqual(a!.conf, { type: 'first', keep: [1], cniVersion: '1.1.0', name: 'net1', runtimeConfig: { mac: '02:00:00:00:00:09' } });
    assert.equal(b!.head.split(' ')[1], 'second');
    assert.deepEqual(b!.conf.prevResult, { cniVersion: '1.1.0', interfaces: [{ name: 'first' }] });
  });

  it('stops at the first failing plugin', async () => {
    const r = await runConflist({ ...list, plugins: [{ type: 'failing' }, { type: 'second' }] }, 'ADD', att);
    assert.equal(r.exitCode, 1);
    assert.equal(r.stdout.code, 7);
    assert.equal(log().length, 1);
  });

  it('DEL: reverse order, the ADD result as prevResult; CHECK: in order; disableCheck skips', async () => {
    const prev = { cniVersion: '1.1.0', interfaces: [{ name: 'x' }] };
    await runConflist(list, 'DEL', { ...att, netns: undefined, prevResult: prev });
    const del = log();
    assert.deepEqual(del.map((l) => l.head.split(' ').slice(0, 2).join(' ')), ['DEL second', 'DEL first']);
    assert.match(del[0]!.head, /^DEL second ctr\|\|eth0\|/);
    for (const l of del) assert.deepEqual(l.conf.prevResult, prev);
    await runConflist(list, 'CHECK', { ...att, prevResult: prev });
    assert.deepEqual(log().map((l) => l.head.split(' ')[1]), ['first', 'second']);
    const skipped = await runConflist({ ...list, disableCheck: true }, 'CHECK', { ...att, prevResult: prev });
    assert.equal(skipped.steps.length, 0);
  });

  it('GC/STATUS: no attachment variables, valid-attachments injected', async () => {
    await runConflist(list, 'GC', { cniPath: [dir], validAttachments: [{ containerID: 'ctr', ifname: 'eth0' }] });
    const gc = log();
    assert.equal(gc[0]!.head, `GC first |||${''}|${dir}`);
    assert.deepEqual(gc[0]!.conf['cni.dev/valid-attachments'], [{ containerID: 'ctr', ifname: 'eth0' }]);
    const old = await runConflist({ ...list, cniVersions: undefined }, 'STATUS', { cniPath: [dir] });
    assert.equal(old.steps.length, 0, 'STATUS is not sent for a 1.0.0 network');
  });

  it('negotiates the highest known version from cniVersions', () => {
    assert.equal(negotiatedVersion(list), '1.1.0');
    assert.equal(negotiatedVersion({ ...list, cniVersions: undefined }), '1.0.0');
  });

  it('refuses a missing plugin binary', async () => {
    await assert.rejects(runConflist({ ...list, plugins: [{ type: 'nope' }] }, 'ADD', att), /CNI plugin nope not found/);
    await assert.rejects(runConflist({ ...list, plugins: [{ type: 'nope' }] }, 'ADD', att), (e: any) => e.code === 'E_CNI_CONFIG');
  });
});

describe('cniExec', () => {
  it('runs the plugin from the named netns through `ip netns exec` (here one that does not exist: it never runs)', async () => {
    const r = await cniExec(join(dir, 'first'), 'VERSION', { fromNetns: 'mbt-no-such-netns', conf: { cniVersion: '1.1.0' } });
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, /mbt-no-such-netns/);
    assert.equal(existsSync(join(dir, 'log')), false, 'the plugin did not run');
  });
});
