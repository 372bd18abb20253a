// Issue 8 on the etcd store (the lab's own etcd), during an outage:
//  - fault 8: CNI STATUS said "available" while every ADD failed for want
//    of the store; now it answers code 50 (plugin not available) naming the
//    store within seconds of the outage, and 0 again once it is back;
//  - fault 5: a DEL during the outage failed with 11 and a retried DEL
//    returned 0 without retrying the store delete, leaving the pod IP's key
//    in the store and in every peer's ipcache. Now DEL succeeds at once and
//    the key's delete stays pending until the store is back: retried by the
//    running agent (node-2's pod), or, if the agent died meanwhile, done by
//    the next agent at start, which removes the keys claiming its node that
//    belong to no endpoint of its own (node-1's pod).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { cniExec } from '../../src/cni/runtime.ts';
import { CNI_PLUGIN } from '../../src/lab/layout.ts';
import type { StatusReply } from '../../src/agent/routes.ts';
import { apiCall } from '../../src/api/client.ts';
import { inNetns, lab, labOk, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(100);
  }
  return Date.now() - t0;
}

test('store outage: STATUS says unavailable, DEL succeeds and its store delete is done once the store is back', {
  skip: rootOnly() || skipUnless(existsSync('/usr/bin/etcd'), '/usr/bin/etcd is not installed (apt-get install etcd-server)'),
}, async (t) => {
  const { name } = await labUp(t, ['--store', 'etcd', '--nodes', '2', '--pods-per-node', '2']);
  const s = await labStatus(name);
  const [n1, n2] = s.nodes as [typeof s.nodes[0], typeof s.nodes[0]];
  const pods = (n: typeof n1) => s.pods.filter((p) => p.node === n.name);
  const status = (n: typeof n1) => cniExec(CNI_PLUGIN, 'STATUS', {
    fromNetns: n.netns, conf: { cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: n.apiSocket },
  });
  const ipcache = async (n: typeof n1): Promise<string[]> =>
    (JSON.parse(await membraneIn(n.netns, ['bpf', 'ipcache', 'list', '-o', 'json'])) as { prefix: string }[]).map((e) => e.prefix);
  assert.equal((await status(n1)).exitCode, 0, 'STATUS: available');

  await labOk(['lab', 'etcd', 'stop', '--name', name]);
  t.after(() => lab(['lab', 'etcd', 'start', '--name', name]).then(() => undefined));

  // Fault 8: STATUS follows the store within seconds (a recent health result, no round trip per call).
  const ms = await waitUntil('STATUS reports the outage', async () => (await status(n1)).exitCode !== 0, 8_000);
  const r = await status(n1);
  assert.equal(r.stdout?.code, 50, `code 50, plugin not available: ${r.stdoutText}`);
  assert.match(r.stdout?.msg ?? '', /cluster store cannot be written/);
  t.diagnostic(`etcd stopped: STATUS answered 50 after ${ms} ms: ${r.stdout?.msg}`);
  const t0 = Date.now();
  const st = await status(n1);
  assert.ok(Date.now() - t0 < 1_000, 'STATUS stays quick during the outage');
  assert.equal(st.exitCode, r.exitCode);

  // Fault 5: DEL during the outage succeeds on both nodes; the deletes of their keys are pending.
  const [gone1, gone2] = [pods(n1)[1]!, pods(n2)[1]!];
  for (const p of [gone1, gone2]) {
    const d = await lab(['lab', 'delete-pod', '--name', name, p.name]);
    assert.equal(d.code, 0, `DEL of ${p.name} during the outage: ${d.stderr}`);
  }
  const pending = await apiCall<StatusReply>(n2.apiSocket, 'GET', '/v1/status');
  assert.deepEqual(pending.pendingStoreDeletes.ips, [gone2.ip], 'node-2 keeps the delete of its pod IP pending');
  assert.equal(pending.storeHealth.healthy, false);

  // node-1's agent dies with its pending delete; it comes back after the store does.
  process.kill((await labStatus(name)).nodes[0]!.agentPid!, 'SIGKILL');
  await sleep(500);
  await labOk(['lab', 'etcd', 'start', '--name', name]);
  await labOk(['lab', 'restart-agent', '--name', name, n1.name]);

  // Both keys leave the store, so both peers drop them from their ipcache.
  const gone = await waitUntil('the pod IPs leave every ipcache', async () => {
    const [c1, c2] = await Promise.all([ipcache(n1), ipcache(n2)]);
    return !c1.includes(`${gone2.ip}/32`) && !c2.includes(`${gone1.ip}/32`);
  }, 10_000);
  t.diagnostic(`etcd back: the deleted pods' IPs left the peers' ipcache within ${gone} ms`);
  await waitUntil('STATUS available again', async () => (await status(n1)).exitCode === 0 && (await status(n2)).exitCode === 0, 8_000);
  assert.deepEqual((await apiCall<StatusReply>(n2.apiSocket, 'GET', '/v1/status')).pendingStoreDeletes.ips, []);
  assert.match(inNetns(n1.netns, ['cat', n1.logFile]), /removed 1 stale pod IP keys/, 'node-1 swept its stale key at start');
  // The remaining pods still talk across nodes.
  inNetns(pods(n1)[0]!.netns, ['ping', '-c', '1', '-W', '2', pods(n2)[0]!.ip!]);
});
