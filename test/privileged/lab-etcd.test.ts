// The lab on the etcd store (the lab runs its own etcd in the underlay
// netns): the connectivity test passes, and a store outage does not touch
// the datapath: a long cross-node ping keeps flowing while etcd is down for
// 10 s, and after etcd is back a new pod is learned by the other node and
// reachable from it. The agents' lease TTL is 3 s, so the outage outlasts
// what keepalive can bridge (2 x TTL): the agents lose their leases and must
// publish themselves again, before the old leases expire, without any node
// ever dropping the other.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { inNetns, lab, labOk, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import type { SuiteResult } from '../../src/connectivity/suite.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';

const haveEtcd = existsSync('/usr/bin/etcd');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
interface IpcacheRow { prefix: string; identity: number; tunnelEndpoint?: string }

test('lab with --store etcd: connectivity, and traffic through a store outage', {
  skip: rootOnly() || skipUnless(haveEtcd, '/usr/bin/etcd is not installed (apt-get install etcd-server)'),
}, async (t) => {
  const ttl = 3;
  const { name, ms } = await labUp(t, ['--store', 'etcd'], { MEMBRANE_LEASE_TTL: String(ttl) });
  t.diagnostic(`lab up 2 nodes x 2 pods on etcd: ${(ms / 1000).toFixed(2)} s (CLI start included)`);
  const s = await labStatus(name);
  assert.equal(s.store, 'etcd');
  assert.ok(s.etcd?.running, 'the lab\'s etcd runs');

  await t.test('connectivity test passes', async () => {
    const r = await lab(['connectivity', 'test', '--name', name, '-o', 'json']);
    const res = JSON.parse(r.stdout) as SuiteResult;
    assert.deepEqual(res.scenarios.filter((x) => !x.pass).map((x) => `${x.scenario} ${x.protocol} ${x.from} -> ${x.to}: ${x.measured}`), []);
    assert.equal(r.code, 0);
  });

  await t.test('etcd down for 10 s: established traffic keeps flowing; a pod added after the restart is reachable', async () => {
    const a = s.pods.find((p) => p.node === 'node-1')!;
    const b = s.pods.find((p) => p.node === 'node-2')!;
    // 0.1 s apart for 18 s: from before the outage to past the expiry of the leases held when etcd went.
    const pinger = spawn('ip', ['netns', 'exec', a.netns, 'ping', '-n', '-i', '0.1', '-w', '18', b.ip!], { stdio: ['ignore', 'pipe', 'pipe'] });
    let pingOut = '';
    pinger.stdout.on('data', (c) => { pingOut += c; });
    const pingDone = new Promise((r) => pinger.on('close', r));
    t.after(() => { pinger.kill('SIGKILL'); });
    await sleep(1000);

    const tStop = Date.now();
    await labOk(['lab', 'etcd', 'stop', '--name', name]);
    // A pod added during the outage: ADD needs the store (identity), so it must fail cleanly, leaving nothing.
    const during = await lab(['lab', 'add-pod', '--name', name, '--node', 'node-1']);
    t.diagnostic(`add-pod during the outage: exit ${during.code}: ${during.stderr.trim().split('\n')[0]}`);
    if (during.code !== 0) {
      assert.match(during.stderr, /CNI error 11|unavailable/i, 'the failure says the store is unavailable (CNI code 11, try again later)');
      assert.equal((await labStatus(name)).pods.length, 4, 'the failed pod left nothing in the lab');
    }
    await sleep(Math.max(0, 10_000 - (Date.now() - tStop)));
    await labOk(['lab', 'etcd', 'start', '--name', name]);
    const tStart = Date.now();
    t.diagnostic(`etcd was down ${((Date.now() - tStop) / 1000).toFixed(1)} s (lease TTL ${ttl} s)`);

    let pod = during.code === 0 ? (await labStatus(name)).pods.find((p) => p.node === 'node-1' && !s.pods.some((o) => o.name === p.name)) : undefined;
    if (!pod) {
      const added = await labOk(['lab', 'add-pod', '--name', name, '--node', 'node-1', '-o', 'json']);
      pod = JSON.parse(added.stdout);
    }
    assert.ok(pod?.ip, 'the new pod has an IP');
    // Node 2 learns the pod's /32 from the store (with its identity), and reaches it.
    let entry: IpcacheRow | undefined;
    const deadline = Date.now() + 10_000;
    while (!entry && Date.now() < deadline) {
      const ic = JSON.parse(await membraneIn(s.nodes[1]!.netns, ['bpf', 'ipcache', 'list', '-o', 'json'])) as IpcacheRow[];
      entry = ic.find((e) => e.prefix === `${pod!.ip}/32`);
      if (!entry) await sleep(100);
    }
    assert.ok(entry, `node-2's ipcache learned ${pod!.ip} after the restart`);
    assert.equal(entry.identity, (await labStatus(name)).pods.find((p) => p.name === pod!.name)!.identity);
    assert.equal(entry.tunnelEndpoint, s.nodes[0]!.nodeIP);
    inNetns(b.netns, ['ping', '-c', '2', '-i', '0.2', '-W', '1', pod!.ip!]);

    // Past the moment the old leases expire on the restarted etcd: every node still has the other.
    await sleep(Math.max(0, (ttl + 1) * 1000 - (Date.now() - tStart)));
    for (const [n, o] of [[s.nodes[0]!, s.nodes[1]!], [s.nodes[1]!, s.nodes[0]!]]) {
      assert.ok(inNetns(n.netns, ['ip', 'route', 'show', o.podCIDR]).includes('cilium_host'), `${n.name} kept its route to ${o.name}`);
      const log = readFileSync(n.logFile, 'utf8');
      assert.doesNotMatch(log, /node \S+ left/, `${n.name} never dropped a node`);
      assert.match(log, /published again under a new lease/, `${n.name} re-published itself after losing its lease`);
    }

    await pingDone;
    const m = /(\d+) packets transmitted, (\d+) received/.exec(pingOut);
    assert.ok(m, pingOut);
    const [sent, got] = [Number(m[1]), Number(m[2])];
    t.diagnostic(`long ping across the outage: ${got}/${sent} replies`);
    assert.ok(sent >= 100, 'the ping ran across the outage');
    assert.ok(got >= sent - 1, `traffic kept flowing while etcd was down (${got}/${sent})`);
  });
});
