// Endpoint faults of issue 8 (hardening), against a real agent and real pods:
// an ADD repeated after the pod's netns changed must not answer with an
// endpoint that no longer exists (fault 6); CHECK must look at the pod side
// and the runtime's prevResult (fault 7); the standard plugins chained after
// ours must work: tuning changing the pod's MAC, portmap, bandwidth (fault 9).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runConflist, type Conflist } from '../../src/cni/runtime.ts';
import { mountBpffs } from '../../src/datapath/bpffs.ts';
import { REPO } from '../helpers/membrane.ts';
import { ipJson, makeNetns, nsExec } from '../helpers/netns.ts';
import { addPod, cni, lxcLinks, membraneJson, nodeWithAgent, ping, podLinks, waitForTcx } from '../helpers/pods.ts';
import { rootOnly, skipUnless } from '../helpers/skip.ts';

const CNI_PLUGINS = '/usr/lib/cni'; // Debian's containernetworking-plugins
const haveStdPlugins = ['tuning', 'portmap', 'bandwidth'].every((p) => existsSync(`${CNI_PLUGINS}/${p}`));

const podMac = (ns: string) => ipJson<{ address: string }[]>(ns, ['link', 'show', 'dev', 'eth0'])[0]!.address;
const lxcEntry = (node: Awaited<ReturnType<typeof nodeWithAgent>>, ip: string) =>
  membraneJson<{ ip: string; mac: string }[]>(node, ['bpf', 'endpoint', 'list']).find((e) => e.ip === ip);

test('ADD again after the pod netns was recreated or moved gives a working endpoint, not the stale one (fault 6)', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 91 });
  const peer = await addPod(t, node);

  // Same container id, same netns path, but a new netns behind it: the old veth died with the old netns.
  const ns = makeNetns(t, 'rc');
  const netns = `/run/netns/${ns}`;
  const containerID = `ctr-${ns}`;
  const first = await cni(node, 'ADD', { containerID, netns, ifname: 'eth0' });
  assert.equal(first.exitCode, 0, first.stdoutText);
  execFileSync('ip', ['netns', 'del', ns]);
  execFileSync('ip', ['netns', 'add', ns]);
  execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  const again = await cni(node, 'ADD', { containerID, netns, ifname: 'eth0' });
  assert.equal(again.exitCode, 0, again.stdoutText);
  assert.deepEqual(podLinks(ns), ['eth0', 'lo'], 'the pod has its interface again');
  const ip = (again.stdout.ips[0].address as string).split('/')[0]!;
  assert.equal(ping(ns, peer.ip).received, 1, 'and it works');
  assert.equal(membraneJson<unknown[]>(node, ['endpoint', 'list']).length, 2, 'one endpoint per pod, the stale one gone');
  assert.equal(lxcEntry(node, ip)?.mac, again.stdout.interfaces[1].mac);

  // Same container id, another netns: the endpoint moves there.
  const other = makeNetns(t, 'rc');
  const moved = await cni(node, 'ADD', { containerID, netns: `/run/netns/${other}`, ifname: 'eth0' });
  assert.equal(moved.exitCode, 0, moved.stdoutText);
  assert.deepEqual(podLinks(other), ['eth0', 'lo']);
  assert.deepEqual(podLinks(ns), ['lo'], 'nothing left in the old netns');
  assert.equal(ping(other, peer.ip).received, 1);
  assert.equal(lxcLinks(node.ns).length, 2);

  // And a plain repeat of a working ADD still answers with the same endpoint.
  const repeat = await cni(node, 'ADD', { containerID, netns: `/run/netns/${other}`, ifname: 'eth0' });
  assert.deepEqual(repeat.stdout, moved.stdout);
});

test('CHECK looks at the pod side and at prevResult (fault 7)', { skip: rootOnly() }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 92 });
  const pod = await addPod(t, node);
  const check = (prevResult: unknown = pod.result) => cni(node, 'CHECK', { containerID: pod.containerID, netns: pod.netns, ifname: 'eth0', prevResult });
  const broken = async (why: RegExp, prevResult?: unknown) => {
    const r = await check(prevResult);
    assert.equal(r.exitCode, 1, r.stdoutText);
    assert.equal(r.stdout.code, 111, r.stdoutText);
    assert.match(r.stdout.msg, why);
  };
  assert.equal((await check()).exitCode, 0);

  execFileSync('ip', ['-n', pod.ns, 'route', 'del', 'default']);
  await broken(/the pod has no default route \(want via 10\.244\.92\.1 dev eth0 mtu 1450\)/);
  execFileSync('ip', ['-n', pod.ns, 'route', 'add', 'default', 'via', node.routerIP, 'dev', 'eth0', 'mtu', '1500']);
  await broken(/default route is via 10\.244\.92\.1 mtu 1500, not via 10\.244\.92\.1 dev eth0 mtu 1450/);
  execFileSync('ip', ['-n', pod.ns, 'route', 'replace', 'default', 'via', node.routerIP, 'dev', 'eth0', 'mtu', '1450']);
  assert.equal((await check()).exitCode, 0, 'repaired');

  execFileSync('ip', ['-n', pod.ns, 'addr', 'del', `${pod.ip}/32`, 'dev', 'eth0']);
  await broken(new RegExp(`eth0 in ${pod.netns} lacks its address ${pod.ip.replace(/\./g, '\\.')}/32`));
  execFileSync('ip', ['-n', pod.ns, 'addr', 'add', `${pod.ip}/32`, 'dev', 'eth0']);
  execFileSync('ip', ['-n', pod.ns, 'route', 'replace', 'default', 'via', node.routerIP, 'dev', 'eth0', 'onlink', 'mtu', '1450']);

  // A new MAC (as a chained plugin would set it): the datapath follows it, but the old prevResult no longer matches.
  execFileSync('ip', ['-n', pod.ns, 'link', 'set', 'eth0', 'address', '02:7e:00:00:92:01']);
  for (let i = 0; i < 100 && lxcEntry(node, pod.ip)?.mac !== '02:7e:00:00:92:01'; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(lxcEntry(node, pod.ip)?.mac, '02:7e:00:00:92:01', 'cilium_lxc learned the MAC from the gratuitous ARP');
  await broken(/prevResult gives eth0 MAC .*, but it has 02:7e:00:00:92:01/);
  const now = structuredClone(pod.result);
  now.interfaces[1].mac = '02:7e:00:00:92:01';
  assert.equal((await check(now)).exitCode, 0, 'a prevResult with the new MAC checks');
  await broken(/prevResult lists no address/, { ...now, ips: [] });

  execFileSync('ip', ['-n', pod.ns, 'link', 'set', 'eth0', 'down']);
  await broken(new RegExp(`eth0 in ${pod.netns} is down`), now);
});

test('standard plugins chained after membrane: tuning (new MAC), portmap, bandwidth (fault 9)', {
  skip: rootOnly() || skipUnless(haveStdPlugins, `Debian's containernetworking-plugins are not installed (${CNI_PLUGINS})`),
}, async (t) => {
  const node = await nodeWithAgent(t, { octet: 93 });
  const peer = await addPod(t, node);
  const ns = makeNetns(t, 'ch');
  const tuned = '02:7e:00:00:93:01';
  const list: Conflist = {
    cniVersion: '1.0.0', name: 'membrane',
    plugins: [
      { type: 'membrane-cni', agentSocket: node.socket },
      { type: 'tuning', mac: tuned, sysctl: { 'net.ipv4.conf.eth0.accept_local': '1' } },
      { type: 'portmap', capabilities: { portMappings: true }, snat: true },
      { type: 'bandwidth', ingressRate: 8_000_000, ingressBurst: 100_000 },
    ],
  };
  const att = {
    containerID: `ctr-${ns}`, netns: `/run/netns/${ns}`, ifname: 'eth0', cniPath: [join(REPO, 'bin'), CNI_PLUGINS],
    fromNetns: node.ns, capabilityArgs: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: 'tcp' }] },
  };
  const added = await runConflist(list, 'ADD', att);
  assert.equal(added.exitCode, 0, `${added.stdoutText}${added.stderr}`);
  assert.equal(podMac(ns), tuned, 'tuning set the MAC');
  const ip = (added.stdout.ips[0].address as string).split('/')[0]!;
  const host = added.stdout.interfaces.find((i: { sandbox?: string }) => !i.sandbox).name as string;

  // Delivery to the pod follows its new MAC.
  for (let i = 0; i < 100 && lxcEntry(node, ip)?.mac !== tuned; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(lxcEntry(node, ip)?.mac, tuned);
  assert.equal(ping(peer.ns, ip).received, 1, 'a pod reaches the tuned pod');
  assert.equal(ping(ns, peer.ip).received, 1, 'and the tuned pod reaches it');

  // bandwidth put its qdisc on the lxc device, beside the clsact the ADD made for the legacy
  // filter. After the move to tcx that clsact stays, empty (deleting it would drop the packets
  // delivered into the pod meanwhile: src/datapath/endpoint.ts).
  const qdiscs = (JSON.parse(execFileSync('tc', ['-n', node.ns, '-j', 'qdisc', 'show', 'dev', host], { encoding: 'utf8' })) as { kind: string }[]).map((q) => q.kind);
  assert.ok(qdiscs.includes('tbf'), `bandwidth's tbf on ${host}: ${qdiscs.join(', ')}`);
  await waitForTcx(node, 2);
  for (const dir of ['ingress', 'egress']) {
    assert.equal(nsExec(node.ns, ['tc', 'filter', 'show', 'dev', host, dir]).trim(), '', `no legacy filter left on ${host} ${dir} after the move to tcx`);
  }

  // portmap: the node's port 18080 reaches the pod's port 80.
  const server = execFileSync('sh', ['-c', `ip netns exec ${ns} sh -c 'echo served | nc -l -p 80 -q 1 >/dev/null 2>&1 & echo $!'`], { encoding: 'utf8' }).trim();
  t.after(() => { try { process.kill(Number(server)); } catch { /* done */ } });
  await new Promise((r) => setTimeout(r, 200));
  const got = nsExec(node.ns, ['sh', '-c', `nc -w 2 ${node.nodeIP} 18080 </dev/null`]);
  assert.equal(got.trim(), 'served');

  // CHECK of the chain passes. Without portmap: its CHECK in Debian's 1.1.1 looks for IPv6 rules an
  // IPv4-only pod never gets (containernetworking/plugins#819), whatever plugin comes before it.
  const noPortmap = { ...list, plugins: list.plugins.filter((p) => p.type !== 'portmap') };
  const checked = await runConflist(noPortmap, 'CHECK', { ...att, prevResult: added.stdout });
  assert.equal(checked.exitCode, 0, `${checked.stdoutText}${checked.stderr}`);
  const deleted = await runConflist(list, 'DEL', { ...att, prevResult: added.stdout });
  assert.equal(deleted.exitCode, 0, `${deleted.stdoutText}${deleted.stderr}`);
  assert.deepEqual(podLinks(ns), ['lo']);
  assert.doesNotMatch(nsExec(node.ns, ['iptables-save', '-t', 'nat']), /18080/, 'portmap rules gone');

  // Egress shaping cannot hold on this datapath: a runtime's egress limit is refused up front, clearly.
  const shaped: Conflist = {
    cniVersion: '1.0.0', name: 'membrane',
    plugins: [
      { type: 'membrane-cni', agentSocket: node.socket, capabilities: { bandwidth: true } },
      { type: 'bandwidth', capabilities: { bandwidth: true } },
    ],
  };
  const other = makeNetns(t, 'ch');
  const egress = await runConflist(shaped, 'ADD', {
    ...att, containerID: `ctr-${other}`, netns: `/run/netns/${other}`, capabilityArgs: { bandwidth: { egressRate: 1_000_000, egressBurst: 20_000 } },
  });
  assert.equal(egress.exitCode, 1, egress.stdoutText);
  assert.equal(egress.stdout.code, 7);
  assert.match(egress.stdout.msg, /egress limits \(egressRate, egressBurst\) are not supported/);
  assert.deepEqual(podLinks(other), ['lo'], 'nothing was made');
  const ingressOnly = await runConflist(shaped, 'ADD', {
    ...att, containerID: `ctr-${other}`, netns: `/run/netns/${other}`, capabilityArgs: { bandwidth: { ingressRate: 8_000_000, ingressBurst: 100_000 } },
  });
  assert.equal(ingressOnly.exitCode, 0, `${ingressOnly.stdoutText}${ingressOnly.stderr}`);
});

test('the bpffs is root-only, and a node pin directory another user made is refused (fault 11)', { skip: rootOnly() }, async (t) => {
  const root = mountBpffs();
  assert.equal(statSync(root).mode & 0o7777, 0o700);
  const dir = `${root}/mbt-foreign-${process.pid}`;
  execFileSync('mkdir', ['-m', '0777', dir]);
  execFileSync('chown', ['65534:65534', dir]);
  t.after(() => execFileSync('rm', ['-rf', dir]));
  const ns = makeNetns(t, 'bf');
  const r = (() => {
    try {
      execFileSync('ip', ['netns', 'exec', ns, join(REPO, 'bin/membrane'), 'datapath', 'init', '--node-name', `mbt-foreign-${process.pid}`,
        '--router-ip', '10.244.94.1', '--pod-cidr', '10.244.94.0/24', '--bpffs-root', root], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { code: 0, stderr: '' };
    } catch (e) {
      return { code: (e as { status: number }).status, stderr: String((e as { stderr: string }).stderr) };
    }
  })();
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /use pin directory .*mbt-foreign-\d+: it is owned by uid 65534 with mode 777: root-only/);
  assert.deepEqual(ipJson<{ ifname: string }[]>(ns, ['link', 'show']).map((l) => l.ifname), ['lo'], 'nothing was set up');
});
