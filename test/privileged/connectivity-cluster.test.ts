// `membrane connectivity test --cluster FILE` on lab nodes driven as if they
// were hosts: each node gets `membrane install --root R<i>` from its own node
// config (so its conflist names its agent's socket), and the cluster file
// reaches each "host" through `nsenter --net=/run/netns/<node netns>`, as `ssh root@host`
// would reach a real one. The check creates its own test pods through the
// installed plugin on every node, checks traffic between them, and releases
// them: afterwards no agent has an endpoint more than before and no test
// netns is left. A host whose conflist is missing fails with the host named,
// leaving nothing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { lab, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import { MEMBRANE } from '../helpers/membrane.ts';
import { rootOnly } from '../helpers/skip.ts';
import type { SuiteResult } from '../../src/connectivity/suite.ts';

const netnsList = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });

test('connectivity test --cluster: test pods through each node\'s installed plugin, traffic between them, all released', { skip: rootOnly() }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '3', '--pods-per-node', '1']);
  const s = await labStatus(name);
  const dir = mkdtempSync(join(tmpdir(), 'membrane-cluster-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const hosts = s.nodes.map((n, i) => {
    const root = `${dir}/root-${i + 1}`;
    execFileSync(MEMBRANE, ['install', '--root', root, '--config', n.configFile]);
    // nsenter --net: the node's network namespace in this machine's mount namespace, as a shell on a host is
    // (`ip netns exec` would make a private mount namespace, where the test pods' `ip netns add` mounts stay).
    return { name: n.name, exec: ['nsenter', `--net=/run/netns/${n.netns}`], conflist: `${root}/etc/cni/net.d/10-membrane.conflist`, cniBinDir: `${root}/opt/cni/bin` };
  });
  const clusterFile = `${dir}/cluster.yaml`;
  writeFileSync(clusterFile, stringify({ hosts }));
  const endpointsBefore = await Promise.all(s.nodes.map(async (n) => JSON.parse(await membraneIn(n.netns, ['endpoint', 'list', '-o', 'json'])).length));

  const r = await lab(['connectivity', 'test', '--cluster', clusterFile, '-o', 'json'], { timeoutMs: 240_000 });
  assert.ok(r.stdout.trim(), `a JSON report (exit ${r.code}): ${r.stderr}`);
  const res = JSON.parse(r.stdout) as SuiteResult & { cleanup: string[] };
  assert.deepEqual(res.scenarios.filter((x) => !x.pass).map((x) => `${x.scenario} ${x.from} -> ${x.to}: ${x.measured}`), []);
  assert.equal(r.code, 0, r.stderr);
  // Every ordered pair of nodes, both ways, pod to pod and at full MTU; same-node and host paths on each.
  const count = (sc: string) => res.scenarios.filter((x) => x.scenario === sc).length;
  assert.equal(count('pod-to-pod/cross-node'), 6);
  assert.equal(count('pod-to-pod/full-mtu'), 6);
  assert.equal(count('host-to-pod/cross-node'), 6);
  assert.equal(count('pod-to-pod/same-node'), 3);
  assert.equal(count('host-to-pod/same-node'), 3);
  assert.equal(count('pod-to-gateway'), 3);
  assert.ok(res.scenarios.filter((x) => x.scenario === 'pod-to-pod/full-mtu').every((x) => x.protocol === 'ICMP 1450'), 'full MTU of the lab\'s pods');
  // The test pods had addresses from each node's pod CIDR.
  for (const n of s.nodes) {
    const prefix = n.podCIDR.split('.').slice(0, 3).join('.');
    assert.ok(res.scenarios.some((x) => x.to.startsWith(`check-${n.name}-1 ${prefix}.`)), `a test pod on ${n.name} in ${n.podCIDR}`);
  }
  // Released: 6 DELs, 6 netns removed; the agents are back to their own endpoints.
  assert.equal(res.cleanup.filter((c) => /CNI DEL membrane-check-\S+$/.test(c)).length, 6, res.cleanup.join('\n'));
  assert.equal(res.cleanup.filter((c) => / removed$/.test(c)).length, 6, res.cleanup.join('\n'));
  assert.doesNotMatch(netnsList(), /mbcheck-/);
  const endpointsAfter = await Promise.all(s.nodes.map(async (n) => JSON.parse(await membraneIn(n.netns, ['endpoint', 'list', '-o', 'json'])).length));
  assert.deepEqual(endpointsAfter, endpointsBefore);

  // A host whose conflist is not there: fails naming the host and path; nothing created, nothing left.
  writeFileSync(clusterFile, stringify({ hosts: [hosts[0], { ...hosts[1]!, conflist: `${dir}/nowhere.conflist` }] }));
  const bad = await lab(['connectivity', 'test', '--cluster', clusterFile]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, new RegExp(`read ${dir}/nowhere\\.conflist on ${s.nodes[1]!.name}`));
  assert.doesNotMatch(netnsList(), /mbcheck-/);

  // A host whose plugin is missing: the ADD fails there, naming host and plugin; the pods made before it and
  // the failed one's netns are released all the same (DEL, netns removed), and the agents keep no test endpoint.
  writeFileSync(clusterFile, stringify({ hosts: [hosts[0], { ...hosts[1]!, cniBinDir: `${dir}/no-plugins` }] }));
  const noPlugin = await lab(['connectivity', 'test', '--cluster', clusterFile]);
  assert.notEqual(noPlugin.code, 0);
  assert.match(noPlugin.stderr, new RegExp(`CNI ADD check-${s.nodes[1]!.name}-1 on ${s.nodes[1]!.name} \\(plugin membrane-cni\\)`));
  assert.doesNotMatch(netnsList(), /mbcheck-/);
  assert.deepEqual(await Promise.all(s.nodes.map(async (n) => JSON.parse(await membraneIn(n.netns, ['endpoint', 'list', '-o', 'json'])).length)), endpointsBefore);

  // A malformed cluster file: every problem listed, exit 3.
  writeFileSync(clusterFile, stringify({ hosts: [{ name: 'a', exec: 'ssh a' }, { name: 'a', exec: [], conflist: 'rel' }] }));
  const invalid = await lab(['connectivity', 'test', '--cluster', clusterFile]);
  assert.equal(invalid.code, 3);
  assert.match(invalid.stderr, /hosts\[0\]\.exec: must be a command prefix/);
  assert.match(invalid.stderr, /hosts\[1\]\.conflist: must be an absolute path/);
  assert.match(invalid.stderr, /hosts: a is listed twice/);
});
