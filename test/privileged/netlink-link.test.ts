// Link verbs against the real kernel, each test in its own throwaway netns,
// checked with `ip -j -d link` (an independent reader of the same state).
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import {
  linkAddBridge, linkAddVeth, linkAddVxlan, linkDel, linkGet, linkList, linkSet, linkSetMac, linkSetMaster, linkSetMtu, linkSetName,
  linkSetNetns, linkSetNoArp, linkSetTxqlen, linkSetUp, NetlinkHandle,
} from '../../src/netlink/index.ts';
import { KernelError } from '../../src/shared/errors.ts';
import { ipJson, makeNetns } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (creates network namespaces)');

function open(t: TestContext, ns: string): NetlinkHandle {
  const h = NetlinkHandle.open(ns);
  t.after(() => h.close());
  return h;
}
const ipLink = (ns: string, dev: string): any => ipJson(ns, ['-d', 'link', 'show', 'dev', dev])[0];
const names = (ns: string): string[] => ipJson(ns, ['link', 'show']).map((l: any) => l.ifname);

test('veth: peer created directly in another netns with MAC, MTU and txqlen on both ends', { skip }, (t) => {
  const host = makeNetns(t);
  const pod = makeNetns(t);
  const h = open(t, host);
  linkAddVeth(h, { name: 'lxc0', peerName: 'eth0', peerNetns: pod, mtu: 1450, txqlen: 500, mac: '02:00:00:00:01:01', peerMac: '02:00:00:00:01:02' });

  const a = ipLink(host, 'lxc0');
  const b = ipLink(pod, 'eth0');
  assert.deepEqual([a.linkinfo.info_kind, a.mtu, a.txqlen, a.address], ['veth', 1450, 500, '02:00:00:00:01:01']);
  assert.deepEqual([b.linkinfo.info_kind, b.mtu, b.txqlen, b.address], ['veth', 1450, 500, '02:00:00:00:01:02']);
  assert.ok(!names(host).includes('eth0'), 'the peer never appears in the host netns');

  const l = linkGet(h, 'lxc0')!;
  assert.equal(l.kind, 'veth');
  assert.equal(l.parentIndex, b.ifindex, "IFLA_LINK is the peer's ifindex in the pod netns");
  assert.equal(l.linkNetnsId, a.link_netnsid);
  assert.equal(l.up, false);
});

test('vxlan external: dstport 8472, source port range, nolearning, random locally administered MAC', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddVxlan(h, { name: 'cilium_vxlan', port: 8472, srcPortLow: 30000, srcPortHigh: 40000, external: true, mtu: 1500 });
  const j = ipLink(ns, 'cilium_vxlan');
  const d = j.linkinfo.info_data;
  assert.equal(j.linkinfo.info_kind, 'vxlan');
  assert.deepEqual([d.external, d.port, d.port_range, d.learning, j.mtu], [true, 8472, { low: 30000, high: 40000 }, false, 1500]);
  assert.equal(parseInt(j.address.slice(0, 2), 16) & 0x03, 0x02, 'locally administered unicast');

  const l = linkGet(h, 'cilium_vxlan')!;
  assert.equal(l.mac, j.address);
  assert.deepEqual(l.vxlan, { vni: 0, port: 8472, srcPortLow: 30000, srcPortHigh: 40000, external: true, learning: false, ttl: 0 });
});

test('vxlan: a second external device on the same port is refused with EEXIST and the kernel reason', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddVxlan(h, { name: 'vx0', port: 8472, external: true });
  assert.throws(
    () => linkAddVxlan(h, { name: 'vx1', port: 8472, external: true }),
    (err: unknown) =>
      err instanceof KernelError && err.errnoName === 'EEXIST' &&
      err.message === 'RTM_NEWLINK vx1 type vxlan external dstport 8472: file exists (EEXIST) (kernel: A VXLAN device with the specified VNI already exists)',
  );
  linkAddVxlan(h, { name: 'vx1', port: 8473, external: true });
  assert.deepEqual(names(ns).filter((n) => n.startsWith('vx')).sort(), ['vx0', 'vx1']);
});

test('vxlan: a foreign device already up on the port makes bringing ours up fail with EADDRINUSE', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddVxlan(h, { name: 'flannel.1', port: 8472, vni: 1, learning: false });
  linkSetUp(h, linkGet(h, 'flannel.1')!.index);
  linkAddVxlan(h, { name: 'cilium_vxlan', port: 8472, external: true }); // creation is allowed...
  const idx = linkGet(h, 'cilium_vxlan')!.index;
  assert.throws(() => linkSetUp(h, idx), { message: `RTM_SETLINK cilium_vxlan (ifindex ${idx}) up: address already in use (EADDRINUSE)` }); // ...up is not
});

test('set NOARP, MTU, txqlen, MAC, name and up in place: ifindex unchanged, visible in ip -j', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddVeth(h, { name: 'cilium_host', peerName: 'cilium_net' });
  const idx = linkGet(h, 'cilium_host')!.index;
  linkSetNoArp(h, idx, true);
  linkSetMtu(h, idx, 1400);
  linkSetTxqlen(h, idx, 1000);
  linkSetMac(h, idx, '02:00:00:00:aa:01');
  linkSetName(h, idx, 'ch');
  linkSetUp(h, idx);
  const j = ipLink(ns, 'ch');
  assert.equal(j.ifindex, idx);
  assert.ok(j.flags.includes('NOARP') && j.flags.includes('UP'), `flags ${j.flags}`);
  assert.deepEqual([j.mtu, j.txqlen, j.address], [1400, 1000, '02:00:00:00:aa:01']);
  const l = linkGet(h, idx)!;
  assert.deepEqual([l.name, l.up, l.noarp, l.mtu, l.txqlen, l.mac], ['ch', true, true, 1400, 1000, '02:00:00:00:aa:01']);

  linkSetNoArp(h, idx, false);
  assert.ok(!ipLink(ns, 'ch').flags.includes('NOARP'));
});

test('linkSet applies several changes in one message: rename + mtu + arp off + up; live rename', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddVeth(h, { name: 'tmp1', peerName: 'tmp2' });
  const idx = linkGet(h, 'tmp1')!.index;
  linkSet(h, idx, { name: 'renamed', mtu: 1300, noarp: true, up: true });
  const j = ipLink(ns, 'renamed');
  assert.deepEqual([j.ifindex, j.mtu, j.flags.includes('NOARP'), j.flags.includes('UP')], [idx, 1300, true, true]);
  linkSetName(h, idx, 'live'); // renaming an UP device works on 6.x (older kernels: EBUSY)
  assert.equal(linkGet(h, idx)?.name, 'live');
});

test('move a link to another netns and rename it there in one message; a name clash is EEXIST', { skip }, (t) => {
  const host = makeNetns(t);
  const pod = makeNetns(t);
  const h = open(t, host);
  linkAddVeth(h, { name: 'lxcab', peerName: 'tmp12345' });
  linkSetNetns(h, linkGet(h, 'tmp12345')!.index, pod, { newName: 'eth0' });
  assert.ok(names(pod).includes('eth0'));
  assert.ok(!names(host).includes('tmp12345'));
  assert.equal(linkGet(h, 'tmp12345'), undefined);

  linkAddVeth(h, { name: 'lxccd', peerName: 'eth0' });
  const idx = linkGet(h, 'eth0')!.index;
  assert.throws(() => linkSetNetns(h, idx, pod), (err: unknown) =>
    err instanceof KernelError && err.errnoName === 'EEXIST' && /^RTM_SETLINK eth0 \(ifindex \d+\) netns \S+: file exists \(EEXIST\) \(kernel: An interface with the same name exists in the target netns\)$/.test(err.message));
  linkSetNetns(h, idx, `/run/netns/${pod}`, { newName: 'eth1' }); // by path, with a new name there is no clash
  assert.deepEqual(names(pod).filter((n) => n.startsWith('eth')).sort(), ['eth0', 'eth1']);
});

test('duplicate add: EEXIST with a readable message; delete; get of a missing link is undefined', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddVeth(h, { name: 'va', peerName: 'vb' });
  assert.throws(() => linkAddVeth(h, { name: 'va', peerName: 'vc' }), (err: unknown) =>
    err instanceof KernelError && err.errnoName === 'EEXIST' && err.message.startsWith('RTM_NEWLINK va type veth peer vc: file exists (EEXIST)'));
  linkDel(h, linkGet(h, 'va')!.index);
  assert.deepEqual(names(ns), ['lo'], 'deleting one end of a veth removes both');
  assert.equal(linkGet(h, 'va'), undefined);
  assert.throws(() => linkDel(h, 'va'), { message: 'RTM_DELLINK va: no such device (ENODEV)' });
});

test('bridge: create, enslave and release a port; linkList reports the master', { skip }, (t) => {
  const ns = makeNetns(t);
  const h = open(t, ns);
  linkAddBridge(h, { name: 'br0', mtu: 1400, mac: '02:00:00:00:bb:01' });
  linkAddVeth(h, { name: 'p0', peerName: 'p1' });
  const br = linkGet(h, 'br0')!;
  const p0 = linkGet(h, 'p0')!;
  linkSetMaster(h, p0.index, br.index);
  assert.equal(ipLink(ns, 'p0').master, 'br0');
  const listed = linkList(h);
  assert.equal(listed.find((l) => l.name === 'p0')?.masterIndex, br.index);
  assert.deepEqual(listed.find((l) => l.name === 'br0') && [br.kind, br.mac], ['bridge', '02:00:00:00:bb:01']);
  linkSetMaster(h, p0.index, 0);
  assert.equal(ipLink(ns, 'p0').master, undefined);
  assert.equal(linkGet(h, 'p0')!.masterIndex, undefined);
});
