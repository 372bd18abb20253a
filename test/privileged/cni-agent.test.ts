// CNI end to end: the plugin binary, run as a runtime runs it, against a real
// `membrane agent` in a throwaway node netns, attaching throwaway pod netns.
// What a user sees: the pod gets its /32 and routes, reaches its router,
// CHECK/STATUS/GC/DEL behave per the spec, a failed ADD leaves nothing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { startAgent } from '../helpers/agent.ts';
import { assertCniError, assertValidResult } from '../helpers/cni-fakes.ts';
import { cniExec, runConflist, type Conflist } from '../../src/cni/runtime.ts';
import { REPO, testNode, writeConfig } from '../helpers/membrane.ts';
import { ipJson, makeNetns, nsExec, tempDir, uniqueName } from '../helpers/netns.ts';
import { apiSocketIn } from '../../src/shared/config.ts';
import { rootOnly } from '../helpers/skip.ts';

const SHIM = join(REPO, 'cni/membrane-cni');

const lxcLinks = (ns: string) => ipJson<{ ifname: string }[]>(ns, ['link', 'show']).map((l) => l.ifname).filter((n) => n.startsWith('lxc'));

test('CNI through the plugin binary against a real agent', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  execFileSync('make', ['-s', '-C', join(REPO, 'cni')], { stdio: 'inherit' });
  const node = makeNetns(t, 'cn');
  // The agent wants an underlay device with the node IP; a veth pair inside the node netns is enough alone.
  execFileSync('ip', ['-n', node, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  execFileSync('ip', ['-n', node, 'addr', 'add', '10.13.77.5/24', 'dev', 'eth0']);
  for (const d of ['eth0', 'eth1']) execFileSync('ip', ['-n', node, 'link', 'set', d, 'up']);
  const state = tempDir(t, `/tmp/${uniqueName('cnist')}`);
  const { nodeName } = testNode(t, 'cni');
  const cfg = writeConfig(t, {
    nodeName, routerIP: '10.244.77.1', podCIDR: '10.244.77.0/24', nodeIP: '10.13.77.5',
    stateDir: `${state}/state`, store: { backend: 'sqlite', path: `${state}/cluster.db` },
  });
  const socket = apiSocketIn(`${state}/state`);
  await startAgent(t, node, cfg, socket);

  const list: Conflist = { cniVersion: '1.1.0', name: 'membrane', plugins: [{ type: 'membrane-cni', agentSocket: socket }] };
  const cniPath = [join(REPO, 'bin')];

  await t.test('ADD gives the pod its /32, routes with the tunnel MTU, and a reachable router; CHECK, DEL', async (tt) => {
    const pod = makeNetns(tt, 'cp');
    const att = { containerID: `ctr-${uniqueName('')}`, netns: `/run/netns/${pod}`, ifname: 'eth0', args: { K8S_POD_NAME: 'web', K8S_POD_NAMESPACE: 'default' }, cniPath };
    const added = await runConflist(list, 'ADD', att);
    assert.equal(added.exitCode, 0, added.stdoutText);
    tt.diagnostic(`ADD through the plugin binary: ${added.ms.toFixed(1)} ms`);
    assertValidResult(added.stdout, '1.1.0');
    const [host, podIf] = added.stdout.interfaces;
    assert.equal(podIf.sandbox, `/run/netns/${pod}`);
    const ip = added.stdout.ips[0].address as string;
    assert.match(ip, /^10\.244\.77\.\d+\/32$/);

    const addrs = ipJson<any[]>(pod, ['addr', 'show', 'dev', 'eth0']);
    assert.equal(addrs[0].address, podIf.mac);
    assert.deepEqual(addrs[0].addr_info.filter((a: any) => a.family === 'inet').map((a: any) => `${a.local}/${a.prefixlen}`), [ip]);
    const def = ipJson<any[]>(pod, ['route', 'show', 'default']);
    assert.equal(def[0].gateway, '10.244.77.1');
    assert.equal(def[0].metrics?.[0]?.mtu ?? def[0].mtu, added.stdout.routes[0].mtu);
    assert.ok(lxcLinks(node).includes(host.name), `host device ${host.name} exists`);
    nsExec(pod, ['ping', '-c', '1', '-W', '2', '10.244.77.1']);

    const checked = await runConflist(list, 'CHECK', { ...att, prevResult: added.stdout });
    assert.equal(checked.exitCode, 0, checked.stdoutText);
    assert.equal((await runConflist(list, 'STATUS', { cniPath })).exitCode, 0);

    const del = await runConflist(list, 'DEL', { ...att, prevResult: added.stdout });
    assert.equal(del.exitCode, 0, del.stdoutText);
    assert.ok(!lxcLinks(node).includes(host.name), 'host device removed');
    assert.deepEqual(ipJson<any[]>(pod, ['link', 'show']).map((l) => l.ifname), ['lo'], 'pod interface removed');
    const again = await runConflist(list, 'DEL', { ...att, netns: undefined, prevResult: added.stdout });
    assert.equal(again.exitCode, 0, 'a second DEL, without CNI_NETNS, succeeds');
    const check = await runConflist(list, 'CHECK', { ...att, prevResult: added.stdout });
    assertCniError(check, 110, /no such endpoint/);
  });

  await t.test('a failed ADD (netns gone) is code 3 and leaves nothing behind', async () => {
    const before = lxcLinks(node);
    const r = await cniExec(SHIM, 'ADD', {
      containerID: `gone-${uniqueName('')}`, netns: `/run/netns/${uniqueName('none')}`, ifname: 'eth0', cniPath: cniPath.join(':'),
      conf: { cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: socket },
    });
    assertCniError(r, 3, /does not exist/);
    assert.deepEqual(lxcLinks(node), before);
  });

  await t.test('GC removes the endpoints not listed as valid', async (tt) => {
    const pods = [makeNetns(tt, 'cg'), makeNetns(tt, 'cg')];
    const atts = pods.map((p, i) => ({ containerID: `gc${i}-${uniqueName('')}`, netns: `/run/netns/${p}`, ifname: 'eth0', cniPath }));
    const hosts: string[] = [];
    for (const a of atts) {
      const r = await runConflist(list, 'ADD', a);
      assert.equal(r.exitCode, 0, r.stdoutText);
      hosts.push(r.stdout.interfaces[0].name);
    }
    const gc = await runConflist(list, 'GC', { cniPath, validAttachments: [{ containerID: atts[0]!.containerID, ifname: 'eth0' }] });
    assert.equal(gc.exitCode, 0, gc.stdoutText);
    const left = lxcLinks(node);
    assert.ok(left.includes(hosts[0]!), 'the valid endpoint stays');
    assert.ok(!left.includes(hosts[1]!), 'the stale endpoint is gone');
    nsExec(pods[0]!, ['ping', '-c', '1', '-W', '2', '10.244.77.1']);
    const del = await runConflist(list, 'DEL', atts[0]!);
    assert.equal(del.exitCode, 0, del.stdoutText);
  });
});
