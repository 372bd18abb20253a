// 50 pods added to one node and deleted again through the membrane-cni
// binary: while present, every pod reaches the first pod and is reached by
// it; after DEL nothing of them is left (IPs, lxc devices, cilium_lxc and
// ipcache entries, endpoint and calls-map pins), also for pods whose netns
// the runtime removed before the DEL, and a repeated DEL succeeds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { deleteNetns } from '../helpers/netns.ts';
import { addPod, delPod, lxcLinks, membraneJson, nodeWithAgent, podLinks, snapshot, type Pod } from '../helpers/pods.ts';
import { UdpProbe } from '../../src/connectivity/udp-probe.ts';
import { rootOnly } from '../helpers/skip.ts';

const N = 50;
const PORT = 9912;

/** Sends a marker from each `from[i]` to `to[i]` (resent every ms) until it arrives; returns the pairs that never made it. */
async function unreachable(pairs: { from: Pod; to: Pod; rx: UdpProbe; tx: UdpProbe }[]): Promise<string[]> {
  const pending = new Map(pairs.map((p) => [`${p.from.ip} -> ${p.to.ip}`, p]));
  for (let round = 0; round < 500 && pending.size; round++) {
    for (const [k, p] of pending) p.tx.send(p.to.ip, PORT, Buffer.from(k));
    await new Promise((r) => setTimeout(r, 1));
    for (const [k, p] of pending) if (p.rx.drain().some((d) => d.toString() === k)) pending.delete(k);
  }
  return [...pending.keys()];
}

test(`${N} pods added and deleted on one node`, { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 82 });
  const empty = await snapshot(node);
  assert.deepEqual({ ...empty, ipcache: undefined }, { lxc: [], ipamUsed: 0, endpoints: [], lxcEntries: [], ipcache: undefined, endpointPins: [], callsPins: [] });

  const pods: Pod[] = [];
  for (let i = 0; i < N; i++) pods.push(await addPod(t, node, { labels: { app: `churn-${i % 5}` } }));

  await t.test('every pod has its own IP and endpoint', () => {
    assert.equal(new Set(pods.map((p) => p.ip)).size, N, 'distinct IPs');
    assert.equal(membraneJson(node, ['status']).ipam.used, N);
    const eps = membraneJson<any[]>(node, ['endpoint', 'list']);
    assert.deepEqual(eps.map((e) => e.ip).sort(), pods.map((p) => p.ip).sort());
    assert.equal(lxcLinks(node.ns).length, N);
  });

  await t.test('every pod has its lxc device, cilium_lxc and ipcache entries, link and calls-map pins', async () => {
    const s = await snapshot(node);
    assert.equal(s.lxc.length, N);
    assert.deepEqual(s.lxcEntries, pods.map((p) => p.ip).sort());
    assert.deepEqual(s.ipcache, [...empty.ipcache, ...pods.map((p) => `${p.ip}/32`)].sort());
    const ids = membraneJson<any[]>(node, ['endpoint', 'list']).map((e) => e.id as number);
    assert.deepEqual(s.endpointPins, ids.map(String).sort());
    assert.deepEqual(s.callsPins, ids.map((id) => `cilium_calls_${String(id).padStart(5, '0')}`).sort());
  });

  await t.test('every pod reaches the first pod and is reached by it', async (tt) => {
    const probes = pods.map((p) => UdpProbe.open(p.ns, PORT));
    tt.after(() => probes.forEach((p) => p.close()));
    const [first, ...rest] = pods;
    const pairs = rest.flatMap((p, i) => [
      { from: p, to: first!, tx: probes[i + 1]!, rx: probes[0]! },
      { from: first!, to: p, tx: probes[0]!, rx: probes[i + 1]! },
    ]);
    assert.deepEqual(await unreachable(pairs), []);
  });

  await t.test('after DEL of every pod nothing is left; a repeated DEL succeeds', async () => {
    // A runtime may remove a sandbox's netns before it calls DEL (crash, forced teardown).
    const netnsGone = pods.slice(-5);
    for (const p of netnsGone) deleteNetns(p.ns);
    for (const p of pods) {
      const r = await delPod(node, p);
      assert.equal(r.exitCode, 0, `DEL ${p.containerID}: ${r.stdoutText}`);
      assert.equal(r.stdoutText, '', 'DEL prints nothing');
    }
    const after = await snapshot(node);
    assert.equal(after.ipamUsed, 0, 'every IP released');
    assert.deepEqual(after.endpoints, [], 'no endpoints');
    assert.deepEqual(after.lxc, [], 'no lxc device');
    assert.deepEqual(after.lxcEntries, [], 'cilium_lxc has only host entries');
    assert.ok(membraneJson<any[]>(node, ['bpf', 'endpoint', 'list']).length > 0, 'host entries stay');
    assert.deepEqual(after.ipcache, empty.ipcache, 'ipcache back to the node entries');
    assert.deepEqual(after.endpointPins, [], `no pins under ${node.pinDir}/endpoints`);
    assert.deepEqual(after.callsPins, [], 'no cilium_calls_NNNNN pins');
    for (const p of pods.slice(0, -5)) assert.deepEqual(podLinks(p.ns), ['lo'], `${p.ns} has only lo`);

    for (const p of pods) {
      const r = await delPod(node, p);
      assert.equal(r.exitCode, 0, `second DEL ${p.containerID}: ${r.stdoutText}`);
    }
    assert.deepEqual(await snapshot(node), after, 'a repeated DEL changes nothing');
  });
});
