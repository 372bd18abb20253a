// The agent killed with SIGKILL and started again with the same config.
// While two pods ping each other every 10 ms not one packet is lost (the
// datapath lives in the kernel and bpffs, not in the agent), and the new
// agent restores its endpoints as they were without re-creating anything:
// same endpoint ids, IPs, MACs, lxc ifindexes, tcx links and programs.
// Endpoints that need a reload (never moved to tcx; older bpf_lxc.o) are
// reloaded without loss; what an ADD cut short by the kill left behind is
// removed, and devices, IPs, map entries and pins agree afterwards. An
// identity that changed meanwhile reaches the program and both maps.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import type { EndpointState } from '../../src/agent/state-file.ts';
import { apiCall } from '../../src/api/client.ts';
import { attachTcLegacy, BpfProgram, closeFd, openPinnedFd, pinFd, unpin } from '../../src/bpf/index.ts';
import { hostIfname } from '../../src/datapath/endpoint.ts';
import * as endpointsMap from '../../src/datapath/maps/endpoints.ts';
import { putEndpointIpcache } from '../../src/datapath/ipcache.ts';
import { MAP_NAMES, withNodeMap } from '../../src/datapath/node-maps.ts';
import { makeNetns, nsExec } from '../helpers/netns.ts';
import { addPod, cni, delPod, lxcLinks, membraneJson, nodeWithAgent, parsePingSummary, ping, podLinks, snapshot, waitForTcx, type AgentNode, type Pod } from '../helpers/pods.ts';
import { rootOnly } from '../helpers/skip.ts';
import { formatLabelKey, identityIdKey } from '../../src/store/keys.ts';
import { openStore } from '../../src/store/store.ts';

/** What must survive a restart unchanged: endpoints, their devices, attachments and map entries. */
function endpointView(node: AgentNode, att: any[]) {
  return {
    endpoints: membraneJson<any[]>(node, ['endpoint', 'list']).map((e) => ({
      id: e.id, ip: e.ip, identity: e.identity, hostIfname: e.hostIfname, hostIfindex: e.hostIfindex, hostMac: e.hostMac, podMac: e.podMac, containerID: e.containerID,
    })),
    lxc: lxcLinks(node.ns).map((l) => `${l.ifname}(${l.ifindex}) ${l.address}`).sort(),
    attachments: att.filter((a) => a.ifname.startsWith('lxc')).map((a) => `${a.ifname}(${a.ifindex}) ${a.hook} ${a.progName} prog ${a.progId} link ${a.linkId}`).sort(),
    lxcEntries: membraneJson<any[]>(node, ['bpf', 'endpoint', 'list']).map((e) => `${e.ip} id=${e.lxcId} ifindex=${e.ifindex} sec=${e.secId} mac=${e.mac} nodemac=${e.nodeMac}`).sort(),
  };
}

/**
 * Pings `to` from `from` every 10 ms (`count` requests) while `during` runs;
 * fails unless the ping outlasts it. Resolves with ping's counts once it ends.
 */
async function pingDuring(t: TestContext, from: Pod, to: Pod, count: number, during: () => Promise<void>) {
  const pinger = spawn('ip', ['netns', 'exec', from.ns, 'ping', '-n', '-i', '0.01', '-c', String(count), '-W', '1', to.ip], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => { if (pinger.exitCode === null) pinger.kill('SIGKILL'); });
  let out = '';
  pinger.stdout.on('data', (c) => { out += c; });
  const done = new Promise<void>((r) => pinger.once('exit', () => r()));
  await during();
  assert.equal(pinger.exitCode, null, 'the ping was still running when the new agent became ready (the test covered the restart)');
  await done;
  return { ...parsePingSummary(out), summary: out.split('\n').slice(-4).join('\n') };
}

test('SIGKILL of the agent loses no packet; the restarted agent keeps every endpoint as it was', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 83 });
  const a = await addPod(t, node, { labels: { app: 'a' } });
  const b = await addPod(t, node, { labels: { app: 'b' } });
  const before = endpointView(node, await waitForTcx(node, 2));
  assert.equal(before.attachments.length, 2, `both endpoints on tcx: ${before.attachments.join('; ')}`);
  assert.equal(before.endpoints.length, 2);
  const statusBefore = membraneJson(node, ['status']);

  // 500 echo requests, one every 10 ms (~5 s): the kill comes after 1 s, and a restart takes ~1.5 s.
  const oldPid = node.agent.child.pid;
  const { transmitted, received, summary } = await pingDuring(t, a, b, 500, async () => {
    await new Promise((r) => setTimeout(r, 1000));
    await node.agent.stop('SIGKILL');
    assert.equal(node.agent.child.signalCode, 'SIGKILL', 'the agent died of SIGKILL');
    const t0 = performance.now();
    await node.restart();
    t.diagnostic(`restart: ${(performance.now() - t0).toFixed(0)} ms`);
  });
  assert.notEqual(node.agent.child.pid, oldPid);
  assert.equal(transmitted, 500);
  assert.equal(received, transmitted, `no packet lost across the kill and restart:\n${summary}`);

  assert.match(node.agent.log(), /endpoints restored: 2 kept, 0 reloaded, 0 gone, 0 orphans removed/);
  const after = endpointView(node, membraneJson<any[]>(node, ['bpf', 'net']));
  assert.deepEqual(after, before, 'endpoints, devices, tcx links and map entries unchanged');
  const status = membraneJson(node, ['status']);
  assert.equal(status.ready, true);
  assert.equal(status.endpoints, statusBefore.endpoints);
  assert.deepEqual(status.ipam, statusBefore.ipam);
  assert.notEqual(status.bootID, statusBefore.bootID, 'a new agent answers');

  // The restored agent still serves the pods it kept and new ones.
  const c = await addPod(t, node, { labels: { app: 'c' } });
  assert.notEqual(c.ip, a.ip);
  assert.notEqual(c.ip, b.ip);
  assert.equal(ping(c.ns, a.ip).received, 1);
  assert.ok(!before.endpoints.some((e) => e.id === membraneJson<any[]>(node, ['endpoint', 'list']).find((x) => x.ip === c.ip)?.id), 'the new pod gets an unused endpoint id');
});

test('endpoints restore reloads are lossless: one the agent died before moving to tcx is moved, one built from an older bpf_lxc.o is updated in place', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 84 });
  const a = await addPod(t, node, { labels: { app: 'a' } });
  const b = await addPod(t, node, { labels: { app: 'b' } });
  const tcxBefore: any[] = (await waitForTcx(node, 2)).filter((x) => x.ifname.startsWith('lxc'));
  const eps = membraneJson<any[]>(node, ['endpoint', 'list']);
  const [epA, epB] = [a, b].map((p) => eps.find((e) => e.ip === p.ip));
  const linkB = tcxBefore.find((x) => x.ifname === b.hostIfname);
  await node.agent.stop('SIGKILL');

  // a: back into the state an ADD leaves until the background move: its
  // program on a legacy tc filter, no tcx link pinned. (Attach first, then
  // drop the link: traffic never sees the hook empty.)
  const prog = BpfProgram.fromId(tcxBefore.find((x) => x.ifname === a.hostIfname).progId);
  try {
    attachTcLegacy({ progFd: prog.fd, ifindex: epA.hostIfindex, direction: 'ingress', netns: node.ns });
  } finally {
    prog.close();
  }
  assert.ok(unpin(`${node.pinDir}/endpoints/${epA.id}/links/cil_from_container`), 'the tcx link pin existed');
  const legacy = nsExec(node.ns, ['bpftool', 'net', 'show']);
  // bpftool shows tc filters by their 15-byte kernel program name.
  assert.match(legacy, new RegExp(`^${a.hostIfname}\\(${epA.hostIfindex}\\) clsact/ingress cil_from_contai`, 'm'), legacy);
  assert.doesNotMatch(legacy, new RegExp(`^${a.hostIfname}\\S* tcx`, 'm'), legacy);
  // b: recorded as loaded from another bpf_lxc.o (what an upgrade of membrane looks like).
  const statePath = `${node.stateDir}/endpoints.json`;
  const state = JSON.parse(readFileSync(statePath, 'utf8'));
  state.endpoints.find((e: any) => e.id === epB.id).objectHash = 'an-older-bpf_lxc.o';
  writeFileSync(statePath, JSON.stringify(state));

  const { transmitted, received, summary } = await pingDuring(t, a, b, 300, async () => {
    await new Promise((r) => setTimeout(r, 300));
    await node.restart();
  });
  assert.equal(received, transmitted, `no packet lost while the restarted agent reloaded both endpoints:\n${summary}`);
  assert.match(node.agent.log(), /endpoints restored: 2 kept, 2 reloaded, 0 gone, 0 orphans removed/);

  const bpftool = nsExec(node.ns, ['bpftool', 'net', 'show']);
  assert.match(bpftool, new RegExp(`^${a.hostIfname}\\(${epA.hostIfindex}\\) tcx/ingress cil_from_container prog_id \\d+ link_id \\d+`, 'm'), bpftool);
  assert.doesNotMatch(bpftool, /^lxc\S+ clsact/m, `no legacy filter left:\n${bpftool}`);
  assert.equal(nsExec(node.ns, ['tc', 'filter', 'show', 'dev', a.hostIfname, 'ingress']).trim(), '');
  const after = membraneJson<any[]>(node, ['bpf', 'net']).find((x) => x.ifname === b.hostIfname);
  assert.equal(after.linkId, linkB.linkId, 'b: the same tcx link, updated in place');
  assert.notEqual(after.progId, linkB.progId, 'b: a newly loaded program');
  const epsAfter = membraneJson<any[]>(node, ['endpoint', 'list']);
  assert.deepEqual(epsAfter.map((e) => ({ ...e, objectHash: undefined })), eps.map((e) => ({ ...e, objectHash: undefined })), 'same endpoints, same devices');
  assert.equal(epsAfter.find((e) => e.id === epB.id).objectHash, epA.objectHash, 'b is recorded as loaded from the current object');
});

test('leftovers of an ADD cut short by a crash are removed on restart; working endpoints are untouched', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 88 });
  const a = await addPod(t, node, { labels: { app: 'a' } });
  await waitForTcx(node, 1);
  const before = await snapshot(node);
  await node.agent.stop('SIGKILL');

  // What an ADD leaves when the agent dies after its kernel work and before
  // recording the endpoint: the veth (peer in the pod), the endpoint's pins,
  // its ipcache /32 and cilium_lxc entries. The IP was never recorded as allocated.
  const crashed = makeNetns(t, 'ec');
  const containerID = `ctr-${crashed}`;
  const name = hostIfname(containerID, 'eth0');
  execFileSync('ip', ['-n', node.ns, 'link', 'add', name, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', crashed]);
  const ifindex = lxcLinks(node.ns).find((l) => l.ifname === name)!.ifindex;
  const ip = node.routerIP.replace(/\.\d+$/, '.77');
  putEndpointIpcache(node.pinDir, ip, 300); // as the ADD writes it (owner: endpoint)
  const e = endpointsMap.encodeEntry({ ip, ifindex, lxcId: 77, flags: 0, mac: '02:00:00:00:00:77', nodeMac: '02:00:00:00:01:77', secId: 300, parentIfindex: 0 });
  withNodeMap(node.pinDir, MAP_NAMES.endpoints, (m) => m.update(e.key, e.value));
  mkdirSync(`${node.pinDir}/endpoints/77/links`, { recursive: true });
  const fd = openPinnedFd(`${node.pinDir}/tc/globals/cilium_node_cfg`); // any map will do as the stand-in calls map
  try { pinFd(fd, `${node.pinDir}/tc/globals/cilium_calls_00077`); } finally { closeFd(fd); }
  const leftovers = await snapshot(node, { agent: false });
  assert.notDeepEqual({ ...leftovers, ipamUsed: 1, endpoints: before.endpoints }, before, 'the leftovers are visible');

  await node.restart();
  assert.match(node.agent.log(), /endpoints restored: 1 kept, 0 reloaded, 0 gone, 5 orphans removed/);
  assert.deepEqual(await snapshot(node), before, 'device, ipcache and cilium_lxc entries, pins: all gone; the working endpoint kept');
  assert.deepEqual(podLinks(crashed), ['lo'], 'the pod end went with the host end');
  assert.equal(ping(a.ns, node.routerIP).received, 1);
  // The runtime's retry of that ADD now succeeds.
  const r = await cni(node, 'ADD', { containerID, netns: `/run/netns/${crashed}`, ifname: 'eth0' });
  assert.equal(r.exitCode, 0, r.stdoutText);
  assert.equal(r.stdout.interfaces[0].name, name);
});

test('SIGKILL in the middle of ADDs: after restart, devices, IPs, endpoints, map entries and pins agree', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 89 });
  for (let round = 0; round < 3; round++) {
    // Eight ADDs in flight (the agent runs them one at a time); the kill lands inside one of them.
    const nss = Array.from({ length: 8 }, () => makeNetns(t, 'em'));
    const start = lxcLinks(node.ns).length;
    const adds = Promise.all(nss.map((ns) => cni(node, 'ADD', { containerID: `ctr-${ns}`, netns: `/run/netns/${ns}`, ifname: 'eth0' })));
    for (let i = 0; lxcLinks(node.ns).length < start + 1 + round; i++) {
      assert.ok(i < 2500, 'the ADDs make progress');
      await new Promise((r) => setTimeout(r, 2));
    }
    await node.agent.stop('SIGKILL');
    const results = await adds;
    assert.ok(results.every((r) => r.exitCode === 0 || r.stdout.code === 11), results.map((r) => r.stdoutText).join(''));
    await node.restart();
    const s = await snapshot(node);
    const ips = s.endpoints!.map((x) => x.split(' ')[1]!).sort();
    const podPrefix = node.podCIDR.replace(/\.0\/\d+$/, '.');
    assert.equal(s.ipamUsed, ips.length, 'IPAM counts exactly the endpoints');
    assert.equal(s.lxc.length, ips.length, 'one lxc device per endpoint');
    assert.deepEqual(s.lxcEntries, ips, 'one cilium_lxc entry per endpoint');
    assert.deepEqual(s.ipcache.filter((p) => p.startsWith(podPrefix) && p !== `${node.routerIP}/32`).map((p) => p.slice(0, -3)).sort(), ips, 'one ipcache /32 per endpoint');
    assert.equal(s.endpointPins.length, ips.length, 'one pin directory per endpoint');
    assert.equal(s.callsPins.length, ips.length, 'one calls map per endpoint');
    // Every pod the agent kept works; every other pod netns has no interface left.
    const eps = await apiCall<EndpointState[]>(node.socket, 'GET', '/v1/endpoints');
    for (const ns of nss) {
      const ep = eps.find((x) => x.netns === `/run/netns/${ns}`);
      if (ep) assert.equal(ping(ns, node.routerIP).received, 1, `${ns} (kept) reaches its router`);
      else assert.deepEqual(podLinks(ns), ['lo'], `${ns} (not kept) has nothing left`);
    }
  }
});

/** The load-time constants (.rodata) of a loaded program, as bpftool formats them from BTF. */
function programConstants(ns: string, progId: number): Record<string, unknown> {
  const { map_ids: mapIds } = JSON.parse(nsExec(ns, ['bpftool', '-j', 'prog', 'show', 'id', String(progId)]));
  for (const id of mapIds as number[]) {
    if (!/\.rodata$/.test(JSON.parse(nsExec(ns, ['bpftool', '-j', 'map', 'show', 'id', String(id)])).name)) continue;
    const [entry] = JSON.parse(nsExec(ns, ['bpftool', '-j', 'map', 'dump', 'id', String(id)]));
    return Object.assign({}, ...entry.formatted.value['.rodata']);
  }
  throw new Error(`program ${progId} has no .rodata map`);
}

test('an identity that changed while the agent was down (store lost its data) reaches the program, cilium_lxc and ipcache', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const node = await nodeWithAgent(t, { octet: 79 });
  const x = await addPod(t, node, { labels: { app: 'x' } });
  const y = await addPod(t, node, { labels: { app: 'y' } });
  assert.equal((await delPod(node, x)).exitCode, 0);
  const att = await waitForTcx(node, 1);
  const [ep] = membraneJson<any[]>(node, ['endpoint', 'list']);
  const link = att.find((a) => a.ifname === y.hostIfname);
  assert.equal(programConstants(node.ns, link.progId).LXC_SECLABEL, ep.identity);
  await node.agent.stop('SIGKILL');
  // A fresh store in which other labels took y's identity: y gets another one (were it free, y would keep it).
  for (const f of ['cluster.db', 'cluster.db-wal', 'cluster.db-shm']) rmSync(`${node.stateDir}/../${f}`, { force: true });
  const fresh = await openStore({ backend: 'sqlite', path: `${node.stateDir}/../cluster.db` });
  await fresh.create(identityIdKey(ep.identity), formatLabelKey({ app: 'someone-else' }));
  await fresh.close();
  await node.restart();

  const [after] = membraneJson<any[]>(node, ['endpoint', 'list']);
  assert.notEqual(after.identity, ep.identity, 'the store handed out another identity');
  const lxc = membraneJson<any[]>(node, ['bpf', 'endpoint', 'list']).find((e) => e.ip === y.ip);
  assert.equal(lxc.secId, after.identity, 'cilium_lxc');
  const ipc = membraneJson<any[]>(node, ['bpf', 'ipcache', 'list']).find((e) => e.prefix === `${y.ip}/32`);
  assert.equal(ipc?.identity, after.identity, 'ipcache');
  const now = membraneJson<any[]>(node, ['bpf', 'net']).find((a) => a.ifname === y.hostIfname);
  assert.equal(now.linkId, link.linkId, 'the same tcx link, updated in place');
  assert.equal(programConstants(node.ns, now.progId).LXC_SECLABEL, after.identity, 'the program sends with the new identity');
  assert.match(node.agent.log(), /endpoints restored: 1 kept, 1 reloaded/);
});
