// One handle per network namespace: a handle only ever sees and changes its
// own netns, whichever way the netns was named, and opening it leaves the
// calling thread where it was.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readlinkSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { linkAddBridge, linkAddVeth, linkGet, linkList, NetlinkHandle } from '../../src/netlink/index.ts';
import { ipJson, makeNetns } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (creates network namespaces)');

test("a handle opened for netns A never sees netns B's links", { skip }, (t) => {
  const a = makeNetns(t);
  const b = makeNetns(t);
  const before = readlinkSync('/proc/thread-self/ns/net');
  const ha = NetlinkHandle.open(a);
  const hb = NetlinkHandle.open(b);
  t.after(() => { ha.close(); hb.close(); });
  assert.equal(readlinkSync('/proc/thread-self/ns/net'), before, 'opening a handle returns the thread to its netns');
  assert.equal(ha.netns, a);

  linkAddVeth(hb, { name: 'onlyb0', peerName: 'onlyb1' });
  linkAddBridge(ha, { name: 'samename', mac: '02:00:00:00:0a:01' });
  linkAddBridge(hb, { name: 'samename', mac: '02:00:00:00:0b:01' }); // no clash: different netns

  const namesA = linkList(ha).map((l) => l.name);
  assert.deepEqual(namesA.sort(), ['lo', 'samename']);
  assert.equal(linkGet(ha, 'onlyb0'), undefined);
  assert.equal(linkGet(ha, 'samename')?.mac, '02:00:00:00:0a:01');
  assert.equal(linkGet(hb, 'samename')?.mac, '02:00:00:00:0b:01');
  assert.deepEqual(ipJson(a, ['link', 'show']).map((l: any) => l.ifname).sort(), ['lo', 'samename']);
  assert.deepEqual(ipJson(b, ['link', 'show']).map((l: any) => l.ifname).sort(), ['lo', 'onlyb0', 'onlyb1', 'samename']);
});

test('a netns can be named by path: /run/netns/NAME and /proc/PID/ns/net', { skip }, async (t) => {
  const a = makeNetns(t);
  const h1 = NetlinkHandle.open(`/run/netns/${a}`);
  t.after(() => h1.close());
  linkAddBridge(h1, { name: 'bypath' });
  assert.ok(ipJson(a, ['link', 'show']).some((l: any) => l.ifname === 'bypath'));

  // A process living in the netns, as a container runtime would hand it to CNI.
  const child = spawn('ip', ['netns', 'exec', a, 'sleep', '30'], { stdio: 'ignore' });
  t.after(() => { child.kill('SIGKILL'); });
  const want = statSync(`/run/netns/${a}`).ino;
  for (let i = 0; i < 100 && statSync(`/proc/${child.pid}/ns/net`).ino !== want; i++) await sleep(10);
  const h2 = NetlinkHandle.open(`/proc/${child.pid}/ns/net`);
  t.after(() => h2.close());
  assert.ok(linkList(h2).some((l) => l.name === 'bypath'));
});

test('a handle for a missing netns fails with E_NETNS; a closed handle with E_CLOSED', { skip }, (t) => {
  assert.throws(() => NetlinkHandle.open('mbt-does-not-exist'), { code: 'E_NETNS', message: /no such network namespace/ });
  const h = NetlinkHandle.open(makeNetns(t));
  h.close();
  assert.throws(() => linkList(h), { code: 'E_CLOSED' });
});
