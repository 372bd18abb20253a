// Neighbour and FDB verbs: the static entries of a flannel-style VXLAN
// baseline (vxlan device with nolearning, FDB "VTEP MAC → remote node IP",
// permanent neighbour "remote subnet gateway → VTEP MAC"), checked with
// `ip -j neigh` and `bridge -j fdb`.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import {
  linkAddVeth, linkAddVxlan, linkGet, linkSetUp, NetlinkHandle, neighAdd, neighAppend, neighDel, neighList, neighReplace,
} from '../../src/netlink/index.ts';
import { KernelError } from '../../src/shared/errors.ts';
import { ipJson, makeNetns, nsExec } from '../helpers/netns.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (creates network namespaces)');
const VTEP_MAC = '02:00:00:00:0f:01';

function flannelNode(t: TestContext): { ns: string; h: NetlinkHandle; vx: number } {
  const ns = makeNetns(t);
  const h = NetlinkHandle.open(ns);
  t.after(() => h.close());
  linkAddVeth(h, { name: 'underlay0', peerName: 'underlay1' });
  const under = linkGet(h, 'underlay0')!.index;
  linkAddVxlan(h, { name: 'flannel.1', vni: 1, port: 8472, learning: false, local: '192.168.50.1', underlayIndex: under, mtu: 1450 });
  const vx = linkGet(h, 'flannel.1')!.index;
  linkSetUp(h, vx);
  return { ns, h, vx };
}

const fdb = (ns: string): any[] => JSON.parse(nsExec(ns, ['bridge', '-j', 'fdb', 'show', 'dev', 'flannel.1']) || '[]');

test('vxlan device for the baseline: vni, local, underlay, nolearning as configured', { skip }, (t) => {
  const { ns, h } = flannelNode(t);
  const d = ipJson(ns, ['-d', 'link', 'show', 'dev', 'flannel.1'])[0].linkinfo.info_data;
  assert.deepEqual([d.id, d.local, d.link, d.port, d.learning, d.external ?? false], [1, '192.168.50.1', 'underlay0', 8472, false, false]);
  const vx = linkGet(h, 'flannel.1')!.vxlan!;
  assert.deepEqual([vx.vni, vx.local, vx.underlayIndex, vx.learning, vx.external], [1, '192.168.50.1', linkGet(h, 'underlay0')!.index, false, false]);
});

test('static FDB entry: replace is idempotent, visible in bridge -j fdb, listed, deleted', { skip }, (t) => {
  const { ns, h, vx } = flannelNode(t);
  const entry = { index: vx, mac: VTEP_MAC, dst: '192.168.50.2' };
  neighReplace(h, entry);
  neighReplace(h, entry);
  assert.deepEqual(fdb(ns).filter((e) => e.mac === VTEP_MAC).map((e) => [e.dst, e.flags, e.state]), [['192.168.50.2', ['self'], 'permanent']]);
  assert.deepEqual(neighList(h, { fdb: true, index: vx }).filter((e) => e.mac === VTEP_MAC), [
    { index: vx, mac: VTEP_MAC, dst: '192.168.50.2', self: true, master: false, permanent: true },
  ]);
  assert.throws(() => neighAdd(h, entry), (err: unknown) =>
    err instanceof KernelError && err.errnoName === 'EEXIST' && err.message.startsWith(`RTM_NEWNEIGH fdb ${VTEP_MAC} dst 192.168.50.2 ifindex ${vx}: file exists (EEXIST)`));

  // A listed entry can be handed back to delete it.
  neighDel(h, neighList(h, { fdb: true, index: vx }).find((e) => e.mac === VTEP_MAC)!);
  assert.deepEqual(fdb(ns).filter((e) => e.mac === VTEP_MAC), []);
});

test('FDB append: several remotes for the all-zero MAC (head-end replication)', { skip }, (t) => {
  const { ns, h, vx } = flannelNode(t);
  neighAppend(h, { index: vx, mac: '00:00:00:00:00:00', dst: '192.168.50.2' });
  neighAppend(h, { index: vx, mac: '00:00:00:00:00:00', dst: '192.168.50.3' });
  assert.deepEqual(fdb(ns).filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst).sort(), ['192.168.50.2', '192.168.50.3']);
  neighDel(h, { index: vx, mac: '00:00:00:00:00:00', dst: '192.168.50.2' }); // only that remote
  assert.deepEqual(fdb(ns).filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst), ['192.168.50.3']);
});

test('permanent neighbour: replace is idempotent, visible in ip -j neigh, listed, deleted', { skip }, (t) => {
  const { ns, h, vx } = flannelNode(t);
  neighReplace(h, { index: vx, ip: '10.244.1.0', mac: VTEP_MAC, state: 'permanent' });
  neighReplace(h, { index: vx, ip: '10.244.1.0', mac: VTEP_MAC });
  assert.deepEqual(ipJson(ns, ['neigh', 'show', 'dev', 'flannel.1']), [{ dst: '10.244.1.0', lladdr: VTEP_MAC, state: ['PERMANENT'] }]);
  assert.deepEqual(neighList(h, { index: vx }), [{ index: vx, ip: '10.244.1.0', mac: VTEP_MAC, state: 'permanent' }]);

  // Replace moves it to another MAC in place.
  neighReplace(h, { index: vx, ip: '10.244.1.0', mac: '02:00:00:00:0f:02' });
  assert.deepEqual(neighList(h, { index: vx }).map((n) => n.mac), ['02:00:00:00:0f:02']);
  assert.throws(() => neighAdd(h, { index: vx, ip: '10.244.1.0', mac: VTEP_MAC }), { errnoName: 'EEXIST' });

  neighAdd(h, { index: vx, ip: '10.244.2.0', mac: '02:00:00:00:0f:03', state: 'reachable' });
  assert.deepEqual(ipJson(ns, ['neigh', 'show', 'dev', 'flannel.1', 'to', '10.244.2.0']).map((n: any) => n.state), [['REACHABLE']]);
  assert.equal(neighList(h).find((n) => n.ip === '10.244.2.0')?.state, 'reachable');

  neighDel(h, { index: vx, ip: '10.244.1.0' });
  neighDel(h, { index: vx, ip: '10.244.2.0' });
  assert.deepEqual(ipJson(ns, ['neigh', 'show', 'dev', 'flannel.1']), []);
  assert.throws(() => neighDel(h, { index: vx, ip: '10.244.1.0' }), { message: `RTM_DELNEIGH 10.244.1.0 ifindex ${vx}: no such file or directory (ENOENT)` });
});
