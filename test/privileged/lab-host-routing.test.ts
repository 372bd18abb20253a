// BPF host routing in a lab, verified by what the devices and the stack
// count: a packet delivered with bpf_redirect_peer enters the pod's eth0
// without being sent through the host-side lxc (its TX counter does not
// move), while bpf_redirect (cilium_host's egress, or legacy host routing)
// sends it through the lxc; a pod's packet routed with bpf_redirect_neigh
// leaves the node without the kernel's IP forwarding (ForwDatagrams does not
// move), which legacy host routing takes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listEndpointMap, withNodeMap, MAP_NAMES } from '../../src/datapath/node-maps.ts';
import * as nodeCfg from '../../src/datapath/maps/node-config.ts';
import { inNetns, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import { rootOnly } from '../helpers/skip.ts';

const N = 20;

function lxcTx(nodeNs: string, nodeDir: string, podIP: string): number {
  const ifindex = listEndpointMap(nodeDir).find((e) => e.ip === podIP)!.ifindex;
  const l = (JSON.parse(inNetns(nodeNs, ['ip', '-j', '-s', 'link', 'show'])) as { ifindex: number; stats64: { tx: { packets: number } } }[]).find((x) => x.ifindex === ifindex)!;
  return l.stats64.tx.packets;
}

function forwarded(ns: string): number {
  const [head, vals] = inNetns(ns, ['cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Ip:')) as [string, string];
  return Number(vals.split(/\s+/)[head.split(/\s+/).indexOf('ForwDatagrams')]);
}

function ping(ns: string, ip: string): void {
  assert.match(inNetns(ns, ['ping', '-c', String(N), '-i', '0.02', '-q', '-W', '1', ip]), new RegExp(`${N} received`));
}

/** Sets or clears legacy host routing in a node's cilium_node_cfg (what hostRouting: legacy in its config writes); the programs read it per packet. */
function setLegacy(nodeDir: string, legacy: boolean): void {
  withNodeMap(nodeDir, MAP_NAMES.nodeConfig, (m) => {
    const c = nodeCfg.decodeValue(m.lookup(nodeCfg.encodeKey())!);
    m.update(nodeCfg.encodeKey(), nodeCfg.encodeValue({ ...c, legacyHostRouting: legacy }));
  });
}

test('BPF host routing: redirect_peer into pods, fallbacks where the hook cannot', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '2']);
  const s = await labStatus(name);
  const [n1, n2] = s.nodes as [typeof s.nodes[0], typeof s.nodes[0]];
  const dir1 = `${s.pinRoot}/${n1.name}`;
  const pods1 = s.pods.filter((p) => p.node === n1.name);
  const [a1, a2] = [pods1[0]!, pods1[1]!];
  const b1 = s.pods.find((p) => p.node === n2.name)!;
  const tx = () => lxcTx(n1.netns, dir1, a1.ip!);

  await t.test('datapath explain names the delivery of each path', async () => {
    const ex = JSON.parse(await membraneIn(n1.netns, ['datapath', 'explain', '-o', 'json']));
    assert.equal(ex.hostRouting, 'bpf');
    const mode = (p: RegExp) => ex.paths.find((x: { path: string }) => p.test(x.path))?.mode;
    assert.equal(mode(/^pod -> pod, same node/), 'bpf_redirect_peer');
    assert.equal(mode(/^overlay -> pod/), 'bpf_redirect_peer');
    assert.equal(mode(/^eth0 -> pod/), 'bpf_redirect_peer');
    assert.equal(mode(/^host -> pod/), 'bpf_redirect');
    assert.equal(mode(/^pod -> other node's pod/), 'tunnel');
    assert.equal(mode(/^pod -> world/), 'bpf_redirect_neigh');
  });

  await t.test('from the overlay and from a pod on the node: into the pod without the lxc', () => {
    let before = tx();
    ping(b1.netns, a1.ip!);
    assert.ok(tx() - before < N / 2, `cross-node: lxc TX moved by ${tx() - before} for ${N} requests (bpf_redirect_peer skips it)`);
    before = tx();
    ping(a2.netns, a1.ip!);
    assert.ok(tx() - before < N / 2, `same node: lxc TX moved by ${tx() - before} for ${N} requests`);
  });

  await t.test('from the host (cilium_host egress): bpf_redirect through the lxc', () => {
    const before = tx();
    ping(n1.netns, a1.ip!);
    assert.ok(tx() - before >= N, `host -> pod: lxc TX moved by ${tx() - before} for ${N} requests`);
  });

  await t.test('legacy host routing: bpf_redirect through the lxc from every hook', () => {
    setLegacy(dir1, true);
    try {
      const before = tx();
      ping(b1.netns, a1.ip!);
      assert.ok(tx() - before >= N, `cross-node, legacy: lxc TX moved by ${tx() - before} for ${N} requests`);
    } finally {
      setLegacy(dir1, false);
    }
    const before = tx();
    ping(b1.netns, a1.ip!);
    assert.ok(tx() - before < N / 2, 'back to bpf_redirect_peer');
  });
});

test('BPF host routing, native routing: bpf_redirect_neigh out of eth0, no IP forwarding', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '2', '--routing', 'native']);
  const s = await labStatus(name);
  const [n1, n2] = s.nodes as [typeof s.nodes[0], typeof s.nodes[0]];
  const a1 = s.pods.find((p) => p.node === n1.name)!;
  const b1 = s.pods.find((p) => p.node === n2.name)!;
  const ex = JSON.parse(await membraneIn(n1.netns, ['datapath', 'explain', '-o', 'json']));
  assert.equal(ex.paths.find((x: { path: string }) => /^pod -> other node's pod/.test(x.path)).mode, 'bpf_redirect_neigh');

  let before = forwarded(n1.netns);
  ping(a1.netns, b1.ip!);
  assert.ok(forwarded(n1.netns) - before < N / 2, `pod -> other node's pod: node-1 forwarded ${forwarded(n1.netns) - before} datagrams for ${N} requests`);
  before = forwarded(n1.netns);
  ping(a1.netns, s.externalHost!.ip);
  assert.ok(forwarded(n1.netns) - before < N / 2, `pod -> world: node-1 forwarded ${forwarded(n1.netns) - before} datagrams`);

  const dir1 = `${s.pinRoot}/${n1.name}`;
  setLegacy(dir1, true);
  try {
    before = forwarded(n1.netns);
    ping(a1.netns, b1.ip!);
    assert.ok(forwarded(n1.netns) - before >= N, `legacy: node-1 forwarded ${forwarded(n1.netns) - before} datagrams for ${N} requests`);
  } finally {
    setLegacy(dir1, false);
  }
});
