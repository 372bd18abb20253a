// Native routing (`lab up --routing native`), as a user builds it: every
// scenario of `connectivity test` passes on 2 and 3 nodes (the policy ones
// included, so the receiving node knows the sender's identity from the
// ipcache, without a VNI), other nodes' pod CIDRs are routed to their node
// IPs on eth0, and nothing is encapsulated.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SuiteResult } from '../../src/connectivity/suite.ts';
import { inNetns, lab, labStatus, labUp } from '../helpers/lab.ts';
import { rootOnly } from '../helpers/skip.ts';

for (const nodes of [2, 3]) {
  test(`native routing, ${nodes} nodes: connectivity test passes, direct routes, no tunnel`, { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
    const { name } = await labUp(t, ['--nodes', String(nodes), '--routing', 'native']);
    const s = await labStatus(name);
    assert.equal(s.routingMode, 'native');

    await t.test('connectivity test: every scenario passes', async () => {
      const r = await lab(['connectivity', 'test', '--name', name, '-o', 'json']);
      const res = JSON.parse(r.stdout) as SuiteResult;
      const failed = res.scenarios.filter((x) => !x.pass).map((x) => `${x.scenario} ${x.protocol} ${x.from} -> ${x.to}: ${x.measured}`);
      assert.deepEqual(failed, [], 'no scenario fails or is skipped');
      assert.equal(r.code, 0);
      const kinds = new Set(res.scenarios.map((x) => x.scenario));
      for (const k of ['pod-to-pod/cross-node', 'node-to-remote-pod', 'pod-to-world', 'mtu/no-fragmentation', 'native/on-the-wire', 'policy/cross-node', 'policy/ingress-allow/cross-node']) {
        assert.ok(kinds.has(k), `scenario ${k} ran`);
      }
      assert.ok(!kinds.has('vxlan/on-the-wire'), 'no VXLAN scenario in native mode');
      const mtu = res.scenarios.find((x) => x.scenario === 'mtu/no-fragmentation')!;
      assert.equal(mtu.values.podMTU, 1500, 'no tunnel overhead: pods get the device MTU');
      const wire = res.scenarios.find((x) => x.scenario === 'native/on-the-wire')!;
      assert.equal(wire.values.vxlanPackets, 0);
    });

    await t.test('each remote pod CIDR via its node IP on eth0; none on cilium_host', () => {
      for (const n of s.nodes) {
        const routes = JSON.parse(inNetns(n.netns, ['ip', '-j', 'route', 'show'])) as { dst: string; gateway?: string; dev: string; protocol?: string }[];
        const remote = s.nodes.filter((o) => o !== n);
        for (const o of remote) {
          const r = routes.filter((x) => x.dst === o.podCIDR);
          assert.equal(r.length, 1, `${n.name}: one route to ${o.podCIDR}`);
          assert.equal(r[0]!.dev, 'eth0');
          assert.equal(r[0]!.gateway, o.nodeIP);
        }
        assert.equal(routes.filter((x) => x.dev === 'cilium_host' && remote.some((o) => o.podCIDR === x.dst)).length, 0, `${n.name}: no remote route on cilium_host`);
      }
    });
  });
}
