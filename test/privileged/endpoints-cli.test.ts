// What `membrane status`, `membrane endpoint list` and `membrane bpf
// endpoint list` show for a node with pods, as text and as JSON, checked
// against what the CNI ADDs returned and what the kernel has (lxc devices).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { membrane, membraneOk } from '../helpers/membrane.ts';
import { addPod, delPod, lxcLinks, membraneJson, nodeWithAgent } from '../helpers/pods.ts';
import { apiSocketIn } from '../../src/shared/config.ts';
import { defaults } from '../../src/shared/defaults.ts';
import { rootOnly } from '../helpers/skip.ts';

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

test('status and endpoint listings show the agent\'s and the kernel\'s view', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 87 });
  const web1 = await addPod(t, node, { labels: { app: 'web', tier: 'fe' }, name: 'web-1' });
  const web2 = await addPod(t, node, { labels: { app: 'web', tier: 'fe' }, name: 'web-2' });
  const db = await addPod(t, node, { labels: { app: 'db' }, name: 'db-0' });
  const gone = await addPod(t, node, { labels: { app: 'tmp' }, name: 'tmp-0' });
  assert.equal((await delPod(node, gone)).exitCode, 0);
  const pods = [web1, web2, db];
  const ifindex = new Map(lxcLinks(node.ns).map((l) => [l.ifname, l.ifindex]));
  const sock = ['--socket', node.socket];

  await t.test('membrane status', () => {
    const s = membraneJson(node, ['status']);
    assert.equal(s.node, node.nodeName);
    assert.equal(s.nodeIP, node.nodeIP);
    assert.equal(s.routerIP, node.routerIP);
    assert.equal(s.podCIDR, node.podCIDR);
    assert.deepEqual(s.store, { backend: 'sqlite' });
    assert.deepEqual(s.ipam, { used: 3, capacity: 253, cidr: node.podCIDR }, 'the deleted pod\'s IP is free again');
    assert.equal(s.endpoints, 3);
    assert.equal(s.ready, true);
    const text = membraneOk(node.ns, ['status', ...sock]);
    assert.match(text, new RegExp(`^Node: +${esc(node.nodeName)} \\(node IP ${esc(node.nodeIP)}, router IP ${esc(node.routerIP)}\\)$`, 'm'), text);
    assert.match(text, /^KVStore: +Ok +sqlite$/m, text);
    assert.match(text, /^Membrane: +Ok +started \d{4}-\d\d-\d\dT/m, text);
    assert.match(text, new RegExp(`^IPAM: +IPv4: 3/253 allocated from ${esc(node.podCIDR)}$`, 'm'), text);
    assert.match(text, /^Endpoints: +3$/m, text);
  });

  await t.test('membrane endpoint list', () => {
    const eps = membraneJson<any[]>(node, ['endpoint', 'list']);
    assert.deepEqual(eps.map((e) => e.ip), pods.map((p) => p.ip), 'one endpoint per present pod, in id order');
    for (const [i, p] of pods.entries()) {
      const e = eps[i];
      assert.equal(e.containerID, p.containerID);
      assert.equal(e.ifname, 'eth0');
      assert.equal(e.netns, p.netns);
      assert.equal(e.hostIfname, p.hostIfname);
      assert.equal(e.hostIfindex, ifindex.get(p.hostIfname), 'the lxc device\'s ifindex');
      assert.equal(e.hostMac, p.hostMac);
      assert.equal(e.podMac, p.podMac);
      assert.equal(e.podNamespace, 'default');
      assert.equal(e.state, 'ready');
    }
    assert.deepEqual(eps.map((e) => e.podName), ['web-1', 'web-2', 'db-0']);
    assert.deepEqual(eps[0].labels, { app: 'web', tier: 'fe' });
    assert.equal(eps[0].identity, eps[1].identity, 'same labels, same identity');
    assert.notEqual(eps[0].identity, eps[2].identity, 'other labels, other identity');
    assert.ok(eps.every((e) => e.identity >= 256), 'pod identities are not reserved ones');
    assert.equal(new Set(eps.map((e) => e.id)).size, 3);

    const text = membraneOk(node.ns, ['endpoint', 'list', ...sock]);
    const lines = text.trimEnd().split('\n');
    assert.match(lines[0]!, /^ENDPOINT +IDENTITY +LABELS +IPv4 +INTERFACE +POD +STATUS$/);
    assert.equal(lines.length, 4, text);
    for (const [i, e] of eps.entries()) {
      const labels = Object.entries(e.labels).map(([k, v]) => `k8s:${k}=${v}`).join(',');
      assert.match(lines[i + 1]!, new RegExp(`^${e.id} +${e.identity} +${esc(labels)} +${esc(e.ip)} +${e.hostIfname} +default/${e.podName} +ready$`), text);
    }
  });

  await t.test('membrane bpf endpoint list: each pod IP with its endpoint id and lxc ifindex', () => {
    const eps = membraneJson<any[]>(node, ['endpoint', 'list']);
    const rows = membraneJson<any[]>(node, ['bpf', 'endpoint', 'list']);
    const podRows = rows.filter((r) => !(r.flags & 1)).sort((a, b) => a.lxcId - b.lxcId);
    assert.deepEqual(podRows.map((r) => ({ ip: r.ip, id: r.lxcId, ifindex: r.ifindex, mac: r.mac, nodeMac: r.nodeMac, secId: r.secId })),
      eps.map((e) => ({ ip: e.ip, id: e.id, ifindex: ifindex.get(e.hostIfname), mac: e.podMac, nodeMac: e.hostMac, secId: e.identity })));
    assert.deepEqual(rows.filter((r) => r.flags & 1).map((r) => r.ip).sort(), [node.nodeIP, node.routerIP].sort(), 'host entries: node IP and router IP');
    assert.ok(!rows.some((r) => r.ip === gone.ip), 'the deleted pod has no entry');

    const text = membraneOk(node.ns, ['bpf', 'endpoint', 'list']);
    assert.match(text, /^IP ADDRESS +LOCAL ENDPOINT INFO$/m);
    for (const e of eps) {
      assert.match(text, new RegExp(`^${esc(e.ip)} +id=${e.id} sec_id=${e.identity} flags=0x0000 ifindex=${ifindex.get(e.hostIfname)} mac=${e.podMac} nodemac=${e.hostMac}$`, 'm'), text);
    }
    assert.match(text, new RegExp(`^${esc(node.routerIP)} +\\(localhost\\)$`, 'm'), text);
    assert.doesNotMatch(text, new RegExp(`^${esc(gone.ip)} `, 'm'));
  });

  await t.test('without --socket, the agent is found through the node marker (also on a non-default state dir)', () => {
    const r = membrane(node.ns, ['status', '-o', 'json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).node, node.nodeName);
    // A node set up by `datapath init` alone has no agent: the error says where it looked and how to point elsewhere.
    const alias = JSON.parse(execFileSync('ip', ['-n', node.ns, '-j', 'link', 'show', 'cilium_host'], { encoding: 'utf8' }))[0].ifalias as string;
    execFileSync('ip', ['-n', node.ns, 'link', 'set', 'cilium_host', 'alias', alias.replace(/ api=\S+$/, '')]);
    try {
      const r2 = membrane(node.ns, ['status']);
      assert.equal(r2.code, 5, 'exit code 5: agent unavailable');
      assert.ok(r2.stderr.includes(`no agent socket at ${apiSocketIn(defaults.stateDir)}`), r2.stderr);
      assert.match(r2.stderr, /--socket/, r2.stderr);
    } finally {
      execFileSync('ip', ['-n', node.ns, 'link', 'set', 'cilium_host', 'alias', alias]);
    }
  });
});
