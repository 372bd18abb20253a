// Issue 8, fault 2: a node's routes were dropped when its agent was down
// for ~10 s (the lease TTL), though its datapath forwards without it. Now a
// node's store entries outlive its agent by leaseTTL (15 min by default), so:
//  - an agent SIGSTOPped for 12 s, or SIGKILLed and down for 16 s, costs
//    its pods no packet (two long pings across nodes, none lost);
//  - an agent that leaves (SIGTERM) is dropped by its peers at once;
//  - an agent whose node key and pod IP key are deleted under it puts them back;
//  - a node gone for good (agent killed, never back) is dropped after its
//    leaseTTL (here 3 s, set for that one agent through MEMBRANE_LEASE_TTL).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { inNetns, lab, labOk, labStatus, labUp } from '../helpers/lab.ts';
import { REPO } from '../helpers/membrane.ts';
import { join } from 'node:path';
import { ipKey, nodeKey } from '../../src/store/keys.ts';
import { openStore } from '../../src/store/store.ts';
import { rootOnly } from '../helpers/skip.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const hasRoute = (ns: string, cidr: string): boolean => inNetns(ns, ['ip', 'route', 'show', cidr]).includes('cilium_host');

/** A ping of `count` packets 0.1 s apart; resolves with what was sent and received. */
function longPing(fromNs: string, ip: string, count: number): Promise<{ sent: number; got: number; out: string }> {
  const p = spawn('ip', ['netns', 'exec', fromNs, 'ping', '-n', '-i', '0.1', '-W', '2', '-c', String(count), ip], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (c) => { out += c; });
  return new Promise((resolve) => p.on('close', () => {
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
    resolve({ sent: Number(m?.[1] ?? 0), got: Number(m?.[2] ?? 0), out });
  }));
}

async function waitUntil(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<number> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) assert.fail(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
  return Date.now() - t0;
}

test('fault 2: agents down, stopped or restarting cost no packet; leaving is at once, gone for good after leaseTTL', { skip: rootOnly() }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '3', '--pods-per-node', '1']);
  const s = await labStatus(name);
  const [n1, n2, n3] = s.nodes as [typeof s.nodes[0], typeof s.nodes[0], typeof s.nodes[0]];
  const pod = (n: typeof n1) => s.pods.find((p) => p.node === n.name)!;
  const pid = async (node: string) => (await labStatus(name)).nodes.find((n) => n.name === node)!.agentPid!;

  await t.test('agent SIGSTOPped 12 s, another SIGKILLed and down 16 s: no packet lost', async () => {
    const [stopped, killed] = [await pid(n1.name), await pid(n2.name)];
    const pings = [longPing(pod(n3).netns, pod(n1).ip!, 170), longPing(pod(n3).netns, pod(n2).ip!, 170)];
    await sleep(500);
    process.kill(stopped, 'SIGSTOP');
    t.after(() => { try { process.kill(stopped, 'SIGCONT'); } catch { /* gone */ } });
    process.kill(killed, 'SIGKILL');
    // lab status while node-1's agent is stopped: it must not wait for an answer that cannot come.
    const during = labStatus(name);
    during.catch(() => undefined);
    await sleep(12_000);
    process.kill(stopped, 'SIGCONT');
    const [to1, to2] = await Promise.all(pings);
    t.diagnostic(`node-1 agent stopped 12 s: ${to1.got}/${to1.sent} replies; node-2 agent down for the whole ${to2.sent / 10} s: ${to2.got}/${to2.sent}`);
    assert.equal(to1.got, to1.sent, `no packet lost while node-1's agent was stopped:\n${to1.out.slice(-300)}`);
    assert.equal(to2.got, to2.sent, `no packet lost while node-2's agent was down:\n${to2.out.slice(-300)}`);
    assert.doesNotMatch(readFileSync(n3.logFile, 'utf8'), /node node-[12] left/, 'node-3 never dropped a node');
    const st = await during;
    assert.deepEqual(st.nodes.map((n) => `${n.name} running=${n.running} stopped=${n.stopped}`),
      ['node-1 running=true stopped=true', 'node-2 running=false stopped=false', 'node-3 running=true stopped=false'], 'lab status saw the stopped and the dead agent');
    // Restarted (lab-restart.test.ts shows a restart costs no packet either).
    await labOk(['lab', 'restart-agent', '--name', name, n2.name]);
  });

  await t.test('an agent that leaves (SIGTERM) is dropped at once, and joins again on restart', async () => {
    process.kill(await pid(n2.name), 'SIGTERM');
    const ms = await waitUntil('node-3 drops node-2', () => !hasRoute(n3.netns, n2.podCIDR), 3_000);
    t.diagnostic(`node-2 left (SIGTERM): node-3 dropped its route after ${ms} ms (leaseTTL 900 s)`);
    await labOk(['lab', 'restart-agent', '--name', name, n2.name]);
    await waitUntil('node-3 routes to node-2 again', () => hasRoute(n3.netns, n2.podCIDR), 3_000);
    inNetns(pod(n3).netns, ['ping', '-c', '1', '-W', '2', pod(n2).ip!]);
  });

  await t.test('an agent whose node and pod IP keys are deleted under it publishes them again', async () => {
    const store = await openStore({ backend: 'sqlite', path: `/run/membrane/labs/${name}/cluster.db` });
    try {
      const keys = [nodeKey('default', n1.name), ipKey(pod(n1).ip!)];
      for (const k of keys) assert.ok(await store.delete(k), `${k} existed`);
      const ms = await waitUntil('node-1 puts its keys back', async () => (await Promise.all(keys.map((k) => store.get(k)))).every(Boolean), 3_000);
      t.diagnostic(`node-1's keys deleted: back after ${ms} ms`);
      await waitUntil('node-3 routes to node-1', () => hasRoute(n3.netns, n1.podCIDR), 3_000);
      inNetns(pod(n3).netns, ['ping', '-c', '1', '-W', '2', pod(n1).ip!]);
    } finally {
      await store.close();
    }
  });

  await t.test('`membrane node delete` drops a killed node at once, long before its lease would', async () => {
    process.kill(await pid(n2.name), 'SIGKILL');
    await sleep(300);
    assert.ok(hasRoute(n3.netns, n2.podCIDR), 'kept while its lease (900 s) runs');
    const r = await lab(['lab', 'exec', '--name', name, n1.name, '--', join(REPO, 'bin/membrane'), 'node', 'delete', n2.name]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`node ${n2.name} removed from the store \\(1 pod IPs`));
    const ms = await waitUntil('node-3 drops node-2', () => !hasRoute(n3.netns, n2.podCIDR), 3_000);
    t.diagnostic(`node-2 deleted with membrane node delete: node-3 dropped its route after ${ms} ms`);
    const own = await lab(['lab', 'exec', '--name', name, n1.name, '--', join(REPO, 'bin/membrane'), 'node', 'delete', n1.name]);
    assert.equal(own.code, 1);
    assert.match(own.stderr, /it is this agent's own node/);
  });

  await t.test('a node gone for good is dropped after its leaseTTL', async () => {
    await labOk(['lab', 'restart-agent', '--name', name, n2.name], { env: { MEMBRANE_LEASE_TTL: '3' } });
    process.kill(await pid(n2.name), 'SIGKILL');
    const t0 = Date.now();
    await sleep(1_000);
    assert.ok(hasRoute(n3.netns, n2.podCIDR), 'kept while its lease runs');
    await waitUntil('node-3 drops node-2', () => !hasRoute(n3.netns, n2.podCIDR), 8_000);
    t.diagnostic(`node-2 killed with leaseTTL 3 s: dropped by node-3 after ${Date.now() - t0} ms`);
  });
});
