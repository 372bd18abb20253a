// Bad CNI invocations against a real agent, through the membrane-cni
// binary: each gets a CNI error object (exit 1) with the right code and a
// message that says what is wrong, and leaves nothing behind: no lxc device,
// no interface in the pod, no IP allocated, no endpoint, no cilium_lxc or
// ipcache entry, no pins. (The unit tests cover every validation rule
// against a fake backend; test/privileged/cni-agent.test.ts covers a failed
// ADD for a missing netns by its device only.) Likewise an exhausted pool
// and an ADD that fails at its very end, publishing to the cluster store.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { test } from 'node:test';
import { assertCniError } from '../helpers/cni-fakes.ts';
import type { CniExecOptions } from '../../src/cni/runtime.ts';
import { makeNetns, uniqueName } from '../helpers/netns.ts';
import { addPod, cni, delPod, nodeWithAgent, podLinks, snapshot, type AgentNode, type Pod } from '../helpers/pods.ts';
import { rootOnly } from '../helpers/skip.ts';

test('bad CNI input is refused with a clear error and leaves nothing behind', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 85 });
  // One pod already there: a refused ADD must not disturb it either.
  await addPod(t, node, { labels: { app: 'present' } });
  const before = await snapshot(node);
  assert.deepEqual([before.ipamUsed, before.lxc.length, before.lxcEntries.length, before.endpointPins.length, before.callsPins.length], [1, 1, 1, 1, 1], 'the snapshot sees the pod');

  /** Runs an ADD for a fresh pod netns with `opts` layered on a valid attachment. */
  const badAdd = async (opts: CniExecOptions & { podSetup?: (ns: string) => void } = {}) => {
    const pod = makeNetns(t, 'eb');
    opts.podSetup?.(pod);
    const podBefore = podLinks(pod);
    const r = await cni(node, 'ADD', { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0', ...opts });
    return { r, pod, podBefore };
  };
  const leftNothing = async (pod: string, podBefore: string[]) => {
    assert.deepEqual(podLinks(pod), podBefore, 'no interface added to the pod');
    assert.deepEqual(await snapshot(node), before, 'no device, IP, endpoint, map entry or pin left');
  };

  const cases: { name: string; opts: CniExecOptions & { podSetup?: (ns: string) => void }; code: number; msg: RegExp[] }[] = [
    { name: 'CNI_COMMAND unset', opts: { unset: ['CNI_COMMAND'] }, code: 4, msg: [/^CNI_COMMAND is not set \(want one of ADD, DEL, CHECK, STATUS, GC, VERSION\)$/] },
    { name: 'CNI_NETNS unset', opts: { unset: ['CNI_NETNS'] }, code: 4, msg: [/^CNI_NETNS is not set \(required for ADD\)$/] },
    { name: 'CNI_IFNAME empty', opts: { ifname: '' }, code: 4, msg: [/^CNI_IFNAME is not set \(required for ADD\)$/] },
    { name: 'CNI_NETNS and CNI_IFNAME unset', opts: { unset: ['CNI_NETNS', 'CNI_IFNAME'] }, code: 4, msg: [/^CNI_NETNS, CNI_IFNAME are not set \(required for ADD\)$/] },
    {
      name: 'malformed JSON', code: 6, msg: [/^decode network config: .* at line 1, column \d+ \(offset \d+\)$/],
      opts: { stdin: `{"cniVersion": "1.1.0", "name": "membrane", "type": "membrane-cni", "agentSocket": "${node.socket}",}` },
    },
    { name: 'unknown cniVersion', opts: { conf: node.conf({ cniVersion: '9.9.9' }) }, code: 1, msg: [/^incompatible CNI version "9\.9\.9": membrane-cni supports 0\.3\.0, 0\.3\.1, 0\.4\.0, 1\.0\.0, 1\.1\.0$/] },
    { name: 'wrong network name', opts: { conf: node.conf({ name: 'calico' }) }, code: 7, msg: [/^network "calico" is not the membrane network "membrane"$/] },
    { name: 'nonexistent netns path', opts: { netns: `/run/netns/${uniqueName('none')}` }, code: 3, msg: [/network namespace \/run\/netns\/mbtnone\S+ does not exist/] },
    {
      // The veth is made before the pod's ifname is checked: this one exercises the rollback.
      name: 'ifname taken in the pod', code: 101, msg: [/the pod netns already has an interface named eth0/],
      opts: { podSetup: (ns) => execFileSync('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p']) },
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const { r, pod, podBefore } = await badAdd(c.opts);
      assertCniError(r, c.code, ...c.msg);
      assert.equal(r.exitCode, 1);
      assert.equal(r.stdout.cniVersion, c.opts.conf?.cniVersion === '9.9.9' ? '9.9.9' : '1.1.0', 'the error names the config\'s version');
      await leftNothing(pod, podBefore);
    });
  }

  await t.test('the agent not running: code 11 from the plugin itself, nothing created', async () => {
    await node.agent.stop();
    const { r, pod, podBefore } = await badAdd();
    assertCniError(r, 11, new RegExp(`^membrane agent not reachable at ${node.socket}: `));
    assert.match(r.stdout.details, /start the agent on this node/);
    assert.deepEqual(podLinks(pod), podBefore);
    const down = await snapshot(node, { agent: false });
    assert.deepEqual(down, { ...before, ipamUsed: undefined, endpoints: undefined });
    await node.restart();
    assert.deepEqual(await snapshot(node), before, 'the restarted agent has allocated nothing for it');
  });
});

test('an exhausted IP pool refuses the ADD with code 100 and leaves nothing; a freed IP is handed out again', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  // A /29: 8 addresses less network, broadcast and router = 5 pods.
  const node: AgentNode = await nodeWithAgent(t, { octet: 86, podCIDR: '10.244.86.0/29' });
  const pods: Pod[] = [];
  for (let i = 0; i < 5; i++) pods.push(await addPod(t, node));
  const full = await snapshot(node);
  assert.equal(full.ipamUsed, 5);

  const pod = makeNetns(t, 'ex');
  const r = await cni(node, 'ADD', { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0' });
  assertCniError(r, 100, /pool 10\.244\.86\.0\/29 exhausted \(5\/5 in use\)/);
  assert.deepEqual(podLinks(pod), ['lo']);
  assert.deepEqual(await snapshot(node), full, 'the failed ADD left nothing');

  const freed = pods[2]!;
  const del = await delPod(node, freed);
  assert.equal(del.exitCode, 0, del.stdoutText);
  const again = await cni(node, 'ADD', { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0' });
  assert.equal(again.exitCode, 0, again.stdoutText);
  assert.equal(again.stdout.ips[0].address, `${freed.ip}/32`, 'the only free IP');
  assert.equal((await snapshot(node)).ipamUsed, 5);
});

test('an ADD whose endpoint cannot be published (store locked) fails with code 11, leaves nothing, and its retry works', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 78 });
  // The first pod of these labels makes the agent hold their identity: the
  // next ADD needs the store only to publish its endpoint.
  await addPod(t, node, { labels: { app: 'same' } });
  const before = await snapshot(node);
  const pod = makeNetns(t, 'es');
  const attachment = { containerID: `ctr-${pod}`, netns: `/run/netns/${pod}`, ifname: 'eth0', conf: node.conf({ args: { labels: { app: 'same' } } }) };

  // Another process holding the write lock past the agent's busy timeout (5 s).
  const db = new Database(`${node.stateDir}/../cluster.db`);
  let locked = true;
  const unlock = () => { if (locked) { db.exec('ROLLBACK'); db.close(); locked = false; } };
  t.after(unlock);
  db.exec('BEGIN EXCLUSIVE');
  const r = await cni(node, 'ADD', attachment);
  unlock();
  assertCniError(r, 11, /^add endpoint for container ctr-\S+: put \S+: sqlite store \S+: database is locked$/);
  assert.deepEqual(podLinks(pod), ['lo'], 'no interface left in the pod');
  assert.deepEqual(await snapshot(node), before, 'no device, IP, endpoint, map entry or pin left');

  const again = await cni(node, 'ADD', attachment);
  assert.equal(again.exitCode, 0, again.stdoutText);
  const ip = (again.stdout.ips[0].address as string).split('/')[0]!;
  const s = await snapshot(node);
  assert.equal(s.ipamUsed, 2, 'the retry\'s IP is allocated');
  assert.equal(s.endpointPins.length, 2, 'the retry\'s endpoint was moved to tcx (its link is pinned)');
  assert.ok(s.lxcEntries.includes(ip));
});
