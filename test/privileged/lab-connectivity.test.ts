// A 3-node lab, as a user builds it with `membrane lab up`: every scenario of
// `membrane connectivity test` passes, each node has exactly one MTU route
// per remote node, and the cross-node flow is visible on cilium_vxlan.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inNetns, lab, labOk, labStatus, labUp } from '../helpers/lab.ts';
import type { SuiteResult } from '../../src/connectivity/suite.ts';
import { spawn } from 'node:child_process';
import { rootOnly } from '../helpers/skip.ts';

test('3-node lab: connectivity test, routes, VXLAN', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const { name, ms } = await labUp(t, ['--nodes', '3']);
  t.diagnostic(`lab up 3 nodes x 2 pods: ${(ms / 1000).toFixed(2)} s (CLI start included)`);
  const s = await labStatus(name);
  assert.equal(s.nodes.length, 3);
  assert.equal(s.pods.length, 6);
  for (const p of s.pods) {
    assert.match(p.ip ?? '', /^10\.244\.\d\.\d+$/, `${p.name} has an IP`);
    assert.ok((p.identity ?? 0) >= 256, `${p.name} has a cluster identity`);
    assert.deepEqual(p.labels, { app: p.name });
  }
  assert.equal(new Set(s.pods.map((p) => p.identity)).size, 6, 'different labels, different identities');

  await t.test('connectivity test: every scenario passes', async () => {
    const r = await lab(['connectivity', 'test', '--name', name, '-o', 'json']);
    const res = JSON.parse(r.stdout) as SuiteResult;
    const failed = res.scenarios.filter((x) => !x.pass).map((x) => `${x.scenario} ${x.protocol} ${x.from} -> ${x.to}: ${x.measured}`);
    assert.deepEqual(failed, [], 'no scenario fails or is skipped');
    assert.deepEqual([res.failed, res.skipped, res.passed], [0, 0, res.scenarios.length]);
    assert.equal(r.code, 0);
    t.diagnostic(`connectivity test: ${res.scenarios.length} scenarios in ${(res.durationMs / 1000).toFixed(1)} s`);
    const kinds = new Set(res.scenarios.map((x) => `${x.scenario}/${x.protocol}`));
    for (const k of ['pod-to-pod/same-node/ICMP', 'pod-to-pod/cross-node/ICMP', 'pod-to-pod/cross-node/TCP', 'pod-to-pod/cross-node/UDP',
      'pod-to-host/ICMP', 'host-to-pod/ICMP', 'node-to-remote-pod/ICMP', 'mtu/no-fragmentation/ICMP+TCP', 'vxlan/on-the-wire/UDP 8472', 'drops/all']) {
      assert.ok(kinds.has(k), `scenario ${k} ran`);
    }
    // Every ordered pair of the 3 nodes, each protocol.
    assert.equal(res.scenarios.filter((x) => x.scenario === 'pod-to-pod/cross-node').length, 6 * 3);
    const vx = res.scenarios.find((x) => x.scenario === 'vxlan/on-the-wire')!;
    assert.equal(vx.values.requestVni, vx.values.srcIdentity, 'VNI on the wire is the source identity');
  });

  await t.test('one MTU route per remote node, in every node', () => {
    for (const n of s.nodes) {
      const routes = JSON.parse(inNetns(n.netns, ['ip', '-j', '-d', 'route', 'show'])) as { dst: string; gateway?: string; dev: string; metrics?: { mtu?: number }[] }[];
      const mtu = routes.filter((r) => r.metrics?.some((m) => m.mtu !== undefined));
      const remote = s.nodes.filter((o) => o !== n).map((o) => o.podCIDR).sort();
      assert.deepEqual(mtu.map((r) => r.dst).sort(), remote, `${n.name}: exactly one mtu route per remote node`);
      for (const r of mtu) {
        assert.equal(r.dev, 'cilium_host');
        assert.equal(r.gateway, n.routerIP);
        assert.equal(r.metrics!.find((m) => m.mtu)!.mtu, 1450);
      }
    }
  });

  await t.test('tcpdump on cilium_vxlan in a node sees the cross-node flow', async () => {
    const [a, b] = [s.pods.find((p) => p.node === 'node-1')!, s.pods.find((p) => p.node === 'node-2')!];
    const cap = spawn('ip', ['netns', 'exec', s.nodes[0]!.netns, 'tcpdump', '-i', 'cilium_vxlan', '-n', '-l', '-c', '2', 'icmp', 'and', 'host', b.ip!], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    cap.stdout.on('data', (c) => { out += c; });
    cap.stderr.on('data', (c) => { err += c; });
    const exited = new Promise((r) => cap.on('close', r));
    const timer = setTimeout(() => cap.kill('SIGKILL'), 10_000);
    while (!/listening on/.test(err) && cap.exitCode === null) await new Promise((r) => setTimeout(r, 10));
    inNetns(a.netns, ['ping', '-c', '2', '-i', '0.1', '-W', '1', b.ip!]);
    await exited;
    clearTimeout(timer);
    assert.match(out, new RegExp(`IP ${a.ip!.replace(/\./g, '\\.')} > ${b.ip!.replace(/\./g, '\\.')}: ICMP echo request`));
    assert.match(out, new RegExp(`IP ${b.ip!.replace(/\./g, '\\.')} > ${a.ip!.replace(/\./g, '\\.')}: ICMP echo reply`));
  });

  await t.test('lab exec passes the exit code through; lab status text lists the pods', async () => {
    const r = await lab(['lab', 'exec', '--name', name, 'pod-2-1', '--', 'sh', '-c', 'ip -4 -o addr show dev eth0; exit 3']);
    assert.equal(r.code, 3);
    assert.match(r.stdout, new RegExp(`inet ${s.pods.find((p) => p.name === 'pod-2-1')!.ip!.replace(/\./g, '\\.')}/32`));
    const text = (await labOk(['lab', 'status', '--name', name])).stdout;
    for (const p of s.pods) assert.match(text, new RegExp(`^${p.name}\\s+${p.node}\\s+${p.netns}\\s+${p.ip!.replace(/\./g, '\\.')}\\s+${p.identity}`, 'm'));
    const bad = await lab(['lab', 'exec', '--name', name, 'nope', '--', 'true']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /no pod or node of that name/);
  });
});

test('a lab too small for a scenario reports it as SKIP, not as passed', { skip: rootOnly() }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '1', '--pods-per-node', '1']);
  const r = await lab(['connectivity', 'test', '--name', name]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^SKIP\s+pod-to-pod\/same-node .* no node has two pods/m);
  for (const s of ['pod-to-pod/cross-node', 'node-to-remote-pod', 'pod-to-remote-node', 'mtu/no-fragmentation', 'vxlan/on-the-wire']) {
    assert.match(r.stdout, new RegExp(`^SKIP\\s+${s.replace('/', '\\/')} .* no two nodes with a pod each`, 'm'), s);
  }
  assert.match(r.stdout, /^PASS\s+pod-to-host /m, 'what can run still runs');
  const summary = /all (\d+) scenarios passed, (\d+) skipped/.exec(r.stdout);
  assert.ok(summary, r.stdout);
  const json = JSON.parse((await lab(['connectivity', 'test', '--name', name, '-o', 'json'])).stdout) as SuiteResult;
  // The five above, pod-to-pod/same-node, and every policy scenario (they need two nodes, one with two pods).
  const policySkips = json.scenarios.filter((x) => x.status === 'skip' && x.scenario.startsWith('policy/'));
  assert.ok(policySkips.length > 0 && policySkips.every((x) => /needs a node with two pods and another node/.test(x.measured)), JSON.stringify(policySkips[0]));
  assert.equal(json.skipped - policySkips.length, 6);
  assert.equal(json.passed + json.failed, Number(summary[1]), 'skips are not counted as run');
  assert.ok(json.scenarios.filter((x) => x.status === 'skip').every((x) => !x.pass), 'a skipped scenario never has pass: true');
});
