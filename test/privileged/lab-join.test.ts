// Nodes joining and leaving a running lab through the cluster store: a 4th
// node's pods become reachable from node 1 (the time is reported, SPEC
// target <= 1 s), and once that node is stopped (agent SIGKILLed, the node
// deleted from the store as an operator would, netns gone) every other node
// drops its route and ipcache entries at once, with the default leaseTTL
// (15 min: a node is only dropped after it when nobody deletes it).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { inNetns, lab, labOk, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import type { LabRecord } from '../../src/lab/record.ts';
import { rootOnly } from '../helpers/skip.ts';

interface IpcacheRow { prefix: string; identity: number; tunnelEndpoint?: string }

const ipcache = async (ns: string): Promise<IpcacheRow[]> => JSON.parse(await membraneIn(ns, ['bpf', 'ipcache', 'list', '-o', 'json']));
const routeDsts = (ns: string): string[] => (JSON.parse(inNetns(ns, ['ip', '-j', 'route', 'show'])) as { dst: string }[]).map((r) => r.dst);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('node join and leave', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '3', '--pods-per-node', '1']);
  const before = await labStatus(name);
  const pod1 = before.pods.find((p) => p.node === 'node-1')!;

  // add-node runs in the background; as soon as its pod exists (lab.json), node 1's pod starts pinging it.
  const t0 = Date.now();
  const adding = lab(['lab', 'add-node', '--name', name, '--pods-per-node', '1']);
  let pod4: LabRecord['pods'][number] | undefined;
  while (!pod4?.createdAt && Date.now() - t0 < 30_000) {
    try {
      const rec = JSON.parse(readFileSync(`/run/membrane/labs/${name}/lab.json`, 'utf8')) as LabRecord;
      pod4 = rec.pods.find((p) => p.node === 'node-4');
    } catch { /* being replaced */ }
    await sleep(5);
  }
  assert.ok(pod4?.ip && pod4.createdAt, 'the new node\'s pod was created');
  // -c 1 with -w: keep sending every 5 ms until the first reply; -D stamps it.
  const out = inNetns(pod1.netns, ['ping', '-n', '-D', '-c', '1', '-w', '5', '-i', '0.005', pod4.ip]);
  const stamp = /^\[(\d+\.\d+)\] \d+ bytes from/m.exec(out);
  assert.ok(stamp, `pod on node 1 reaches the pod on node 4:\n${out}`);
  const joinMs = Number(stamp[1]) * 1000 - pod4.createdAt;
  const added = await adding;
  assert.equal(added.code, 0, added.stderr);
  const rec = JSON.parse(readFileSync(`/run/membrane/labs/${name}/lab.json`, 'utf8')) as LabRecord;
  const node4 = rec.nodes.find((n) => n.name === 'node-4')!;
  t.diagnostic(`join: pod-4 CNI ADD done -> first reply from ${pod1.name}: ${joinMs.toFixed(0)} ms (SPEC target <= 1000 ms); ` +
    `node-4 agent ready ${(node4.readyAt! - t0)} ms after add-node started; add-node took ${(added.ms / 1000).toFixed(2)} s`);

  // Store propagation: node-4 registers right after "endpoints restored"; node-1 logs "node node-4 joined".
  const logTime = (file: string, re: RegExp) => Date.parse(/^(\S+) /.exec(readFileSync(file, 'utf8').split('\n').find((l) => re.test(l)) ?? '')?.[1] ?? '');
  const registered = logTime(node4.logFile, /endpoints restored/);
  const seen = logTime(rec.nodes.find((n) => n.name === 'node-1')!.logFile, /node node-4 joined/);
  t.diagnostic(`join: node-4 registered -> node-1 learned it from the store within ${seen - registered} ms`);

  const others = rec.nodes.filter((n) => n.name !== 'node-4');
  const caches = await Promise.all(others.map((n) => ipcache(n.netns)));
  others.forEach((n, i) => {
    assert.ok(routeDsts(n.netns).includes(node4.podCIDR), `${n.name} routes to node-4's pods`);
    assert.ok(caches[i]!.some((e) => e.prefix === `${pod4!.ip}/32` && e.tunnelEndpoint === node4.nodeIP), `${n.name} has node-4's pod in its ipcache`);
  });

  // Leave: SIGKILL node 4's agent, delete it from the store and remove its netns; the others forget it at once.
  const t1 = Date.now();
  await labOk(['lab', 'stop-node', '--name', name, 'node-4']);
  let routesGone = 0;
  while (Date.now() - t1 < 20_000) {
    if (others.every((n) => !routeDsts(n.netns).includes(node4.podCIDR))) { routesGone = Date.now() - t1; break; }
    await sleep(50);
  }
  assert.ok(routesGone > 0, 'routes to node-4 are gone from every other node');
  const cachesAfter = await Promise.all(others.map((n) => ipcache(n.netns)));
  others.forEach((n, i) => {
    const stale = cachesAfter[i]!.filter((e) => e.tunnelEndpoint === node4.nodeIP || e.prefix === `${node4.nodeIP}/32` || e.prefix === node4.podCIDR);
    assert.deepEqual(stale, [], `${n.name}: no ipcache entry of node-4 is left`);
  });
  assert.ok(routesGone < 3_000, `gone at once (${routesGone} ms), not after the node's lease`);
  t.diagnostic(`leave: lab stop-node node-4 -> its routes gone on every node after ${routesGone} ms (leaseTTL 900 s)`);
  const after = await labStatus(name);
  assert.deepEqual(after.nodes.map((n) => n.name), ['node-1', 'node-2', 'node-3']);
  // The remaining lab still works across nodes.
  const pod2 = after.pods.find((p) => p.node === 'node-2')!;
  inNetns(pod1.netns, ['ping', '-c', '1', '-W', '1', pod2.ip!]);
});
