// Attaching to real devices: tcx links (pinned, updated in place, surviving
// the process), legacy clsact filters, and the attachment listing compared
// with bpftool. Each test builds two throwaway netns joined by a veth pair
// and sends pings between them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { bpffsDir, bpftoolTc, counter, fixture, ifindexIn, ping, vethPair } from '../testdata/bpf/env.ts';
import {
  attachTcLegacy, attachTcx, BpfMap, BpfObject, detachTcLegacy, detachTcx, haveTcx, listAttachments, pinnedTcxLink, queryTcLegacy,
} from '../../src/bpf/index.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (CAP_BPF, CAP_NET_ADMIN)');
const COUNTER = fixture('counter.o');

test('kernel has tcx (6.18 here; the probe must say so)', { skip }, () => {
  assert.equal(haveTcx(), true);
});

test('tcx: attach, packets counted, listing matches bpftool, update in place keeps the link id, detach', { skip }, (t) => {
  const net = vethPair(t);
  const pins = bpffsDir(t, 'tcx');
  const ifindex = ifindexIn(net.nsA, net.devA);
  const o1 = BpfObject.open(COUNTER, { pinRoot: `${pins}/maps`, constants: { COUNTER_SLOT: 2 } });
  t.after(() => o1.close());
  const linkPin = `${pins}/links/${net.devA}/count_pkts`;

  const a = attachTcx({ progFd: o1.program('count_pkts').fd, ifindex, direction: 'ingress', pinPath: linkPin, netns: net.nsA });
  assert.equal(a.updated, false);
  assert.ok(existsSync(linkPin));
  assert.ok(ping(net.nsB, net.ipA, 3), 'ping through the tcx program');
  const counters = o1.map('counters');
  assert.ok(counter(counters, 2) >= 3n, `ingress counter ${counter(counters, 2)}`);
  assert.equal(counter(counters, 7), counter(counters, 2), 'every packet took the tail call');

  const list = listAttachments(net.nsA);
  assert.deepEqual(list, [{ ifname: net.devA, ifindex, hook: 'tcx/ingress', progName: 'count_pkts', progId: o1.program('count_pkts').id, linkId: a.linkId }]);
  assert.deepEqual(bpftoolTc(net.nsA).map((e) => ({ ifname: e.devname, ifindex: e.ifindex, hook: e.kind, progName: e.name, progId: e.prog_id, linkId: e.link_id })), list);

  // swap in a program that counts at slot 5: same link, the old one stops counting
  const o2 = BpfObject.open(COUNTER, { pinRoot: `${pins}/maps`, constants: { COUNTER_SLOT: 5 } });
  t.after(() => o2.close());
  const b = attachTcx({ progFd: o2.program('count_pkts').fd, ifindex, direction: 'ingress', pinPath: linkPin, netns: net.nsA });
  assert.deepEqual(b, { linkId: a.linkId, updated: true });
  const shared = o2.map('pinned_counters'); // pinned: the same map for both objects
  const before2 = counter(shared, 2);
  assert.ok(ping(net.nsB, net.ipA, 3));
  assert.ok(counter(shared, 5) >= 3n);
  assert.equal(counter(shared, 2), before2);
  assert.equal(listAttachments(net.nsA)[0]!.progId, o2.program('count_pkts').id);
  assert.equal(pinnedTcxLink(linkPin)?.progId, o2.program('count_pkts').id);

  assert.equal(detachTcx(linkPin), true);
  assert.equal(existsSync(linkPin), false);
  assert.deepEqual(listAttachments(net.nsA), []);
  const after = counter(shared, 5);
  assert.ok(ping(net.nsB, net.ipA, 2));
  assert.equal(counter(shared, 5), after, 'detached program no longer runs');
  assert.equal(detachTcx(linkPin), false);
});

test('tcx: a link pin whose device was deleted is replaced by a new link', { skip }, (t) => {
  const net = vethPair(t);
  const pins = bpffsDir(t, 'defunct');
  const o = BpfObject.open(COUNTER);
  t.after(() => o.close());
  const fd = o.program('count_pkts').fd;
  const linkPin = `${pins}/links/dev/count_pkts`;
  execFileSync('ip', ['-n', net.nsA, 'link', 'add', 'mbtc0', 'type', 'veth', 'peer', 'name', 'mbtc1']);
  const first = attachTcx({ progFd: fd, ifindex: ifindexIn(net.nsA, 'mbtc0'), direction: 'egress', pinPath: linkPin, netns: net.nsA });
  execFileSync('ip', ['-n', net.nsA, 'link', 'del', 'mbtc0']);
  assert.equal(pinnedTcxLink(linkPin)?.ifindex, 0, 'link is defunct');
  execFileSync('ip', ['-n', net.nsA, 'link', 'add', 'mbtc0', 'type', 'veth', 'peer', 'name', 'mbtc1']);
  const idx = ifindexIn(net.nsA, 'mbtc0');
  const second = attachTcx({ progFd: fd, ifindex: idx, direction: 'egress', pinPath: linkPin, netns: net.nsA });
  assert.equal(second.updated, false);
  assert.notEqual(second.linkId, first.linkId);
  assert.deepEqual(listAttachments(net.nsA).map((x) => [x.ifname, x.hook, x.linkId]), [['mbtc0', 'tcx/egress', second.linkId]]);
  // a pin on another device is refused rather than silently moved
  assert.throws(() => attachTcx({ progFd: fd, ifindex: ifindexIn(net.nsA, net.devA), direction: 'egress', pinPath: linkPin, netns: net.nsA }),
    (e: any) => e.code === 'E_BPF_PIN_MISMATCH' && e.message.includes(linkPin));
  assert.equal(detachTcx(linkPin), true);
});

test('tcx: the pinned link outlives the process that attached it', { skip }, (t) => {
  const net = vethPair(t);
  const pins = bpffsDir(t, 'child');
  const ifindex = ifindexIn(net.nsA, net.devA);
  const linkPin = `${pins}/links/${net.devA}/count_pkts_egress`;
  const out = execFileSync(process.execPath, ['--import', 'tsx', fixture('attach-child.ts'), COUNTER, `${pins}/maps`, net.nsA, String(ifindex), linkPin, '6'],
    { encoding: 'utf8', timeout: 30_000 });
  const child = JSON.parse(out) as { linkId: number; progId: number };
  t.after(() => detachTcx(linkPin));

  // the child is gone; its program is still attached and still counting
  assert.deepEqual(listAttachments(net.nsA), [{ ifname: net.devA, ifindex, hook: 'tcx/egress', progName: 'count_pkts', progId: child.progId, linkId: child.linkId }]);
  const pinned = BpfMap.openPinned(`${pins}/maps/pinned_counters`);
  t.after(() => pinned.close());
  const before = counter(pinned, 6);
  assert.ok(ping(net.nsB, net.ipA, 3));
  assert.ok(counter(pinned, 6) >= before + 3n, `egress counter ${before} -> ${counter(pinned, 6)}`);
  assert.equal(detachTcx(linkPin), true);
  assert.deepEqual(listAttachments(net.nsA), []);
});

test('legacy tc: clsact filter attach, listing matches bpftool, tcx takes precedence, detach', { skip }, (t) => {
  const net = vethPair(t);
  const pins = bpffsDir(t, 'legacy');
  const ifindex = ifindexIn(net.nsB, net.devB);
  const legacy = BpfObject.open(COUNTER, { constants: { COUNTER_SLOT: 4 } });
  t.after(() => legacy.close());
  const prog = legacy.program('count_pkts');

  assert.equal(detachTcLegacy({ ifindex, direction: 'ingress', netns: net.nsB }), false, 'nothing to detach is not an error');
  const { progId } = attachTcLegacy({ progFd: prog.fd, ifindex, direction: 'ingress', netns: net.nsB });
  assert.equal(progId, prog.id);
  assert.equal(queryTcLegacy({ ifindex, direction: 'ingress', netns: net.nsB }), prog.id);
  // replace flag: attaching again at the same handle/priority is fine
  attachTcLegacy({ progFd: prog.fd, ifindex, direction: 'ingress', netns: net.nsB });
  assert.ok(ping(net.nsA, net.ipB, 3));
  const legacyCount = counter(legacy.map('counters'), 4);
  assert.ok(legacyCount >= 3n, `legacy counter ${legacyCount}`);

  const list = listAttachments(net.nsB);
  assert.deepEqual(list, [{ ifname: net.devB, ifindex, hook: 'clsact/ingress', progName: 'count_pkts', progId: prog.id }]);
  // bpftool shows the tc filter name libbpf set: "<prog>:[<id>]"
  assert.deepEqual(bpftoolTc(net.nsB).map((e) => [e.devname, e.ifindex, e.kind, e.name, e.id]),
    [[net.devB, ifindex, 'clsact/ingress', `count_pkts:[${prog.id}]`, prog.id]]);

  // tcx on the same hook runs first; its TCX_PASS verdict ends the hook, legacy stops counting
  const tcxObj = BpfObject.open(COUNTER, { constants: { COUNTER_SLOT: 1 } });
  t.after(() => tcxObj.close());
  const linkPin = `${pins}/links/count_pkts`;
  attachTcx({ progFd: tcxObj.program('count_pkts').fd, ifindex, direction: 'ingress', pinPath: linkPin, netns: net.nsB });
  t.after(() => detachTcx(linkPin));
  assert.deepEqual(listAttachments(net.nsB).map((x) => x.hook), ['tcx/ingress', 'clsact/ingress']);
  assert.deepEqual(bpftoolTc(net.nsB).map((e) => e.kind).sort(), ['clsact/ingress', 'tcx/ingress']);
  const legacyBefore = counter(legacy.map('counters'), 4);
  assert.ok(ping(net.nsA, net.ipB, 2));
  assert.ok(counter(tcxObj.map('counters'), 1) >= 2n);
  assert.equal(counter(legacy.map('counters'), 4), legacyBefore);

  // after a successful tcx attach the caller removes the legacy filter
  assert.equal(detachTcLegacy({ ifindex, direction: 'ingress', netns: net.nsB }), true);
  assert.equal(detachTcLegacy({ ifindex, direction: 'ingress', netns: net.nsB }), false);
  assert.equal(queryTcLegacy({ ifindex, direction: 'ingress', netns: net.nsB }), undefined);
  assert.deepEqual(listAttachments(net.nsB).map((x) => x.hook), ['tcx/ingress']);
});

test('listAttachments with a caller-supplied device list and unknown netns', { skip }, (t) => {
  const net = vethPair(t);
  const pins = bpffsDir(t, 'list');
  const o = BpfObject.open(COUNTER);
  t.after(() => o.close());
  const ifindex = ifindexIn(net.nsA, net.devA);
  const linkPin = `${pins}/l`;
  attachTcx({ progFd: o.program('classify').fd, ifindex, direction: 'egress', pinPath: linkPin, netns: net.nsA });
  t.after(() => detachTcx(linkPin));
  assert.deepEqual(listAttachments(net.nsA, [{ ifindex, ifname: 'whatever' }]).map((x) => [x.ifname, x.hook, x.progName]), [['whatever', 'tcx/egress', 'classify']]);
  assert.deepEqual(listAttachments(net.nsA, [{ ifindex: 1, ifname: 'lo' }]), []);
  assert.throws(() => listAttachments('mbt-no-such-netns'), (e: any) => e.code === 'E_NETNS' && /list tc attachments in netns mbt-no-such-netns/.test(e.message));
});
