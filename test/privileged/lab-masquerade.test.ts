// Masquerade in a 2-node lab, as a user sees it: the lab's external host
// (no route to any pod) gets pod traffic from node IPs only and its replies
// reach the pods; traffic between pods and from nodes to pods keeps its
// source; the NAT entries of a connection go with its conntrack entry.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { spawn } from 'node:child_process';
import { gcConntrack, listConntrack, listNat } from '../../src/datapath/conntrack.ts';
import { monotonicSeconds } from '../../src/datapath/maps/conntrack.ts';
import { inNetns, labStatus, labUp, membraneIn } from '../helpers/lab.ts';
import { rootOnly } from '../helpers/skip.ts';

/** Runs tcpdump in `ns` on `dev` while `traffic` runs; returns its lines. */
async function capture(ns: string, dev: string, filter: string[], traffic: () => void | Promise<void>): Promise<string> {
  const cap = spawn('ip', ['netns', 'exec', ns, 'tcpdump', '-i', dev, '-n', '-l', ...filter], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  cap.stdout.on('data', (c) => { out += c; });
  cap.stderr.on('data', (c) => { err += c; });
  const exited = new Promise((r) => cap.on('close', r));
  const hard = setTimeout(() => cap.kill('SIGKILL'), 20_000);
  try {
    while (!/listening on/.test(err) && cap.exitCode === null) await new Promise((r) => setTimeout(r, 10));
    await traffic();
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    cap.kill('SIGTERM');
    await exited;
    clearTimeout(hard);
  }
  return out;
}

const esc = (s: string) => s.replace(/\./g, '\\.');

test('masquerade: pod to world leaves with the node IP; pod/node to pod never', { skip: rootOnly('needs root (netns, bpf)') }, async (t) => {
  const { name } = await labUp(t, ['--nodes', '2']);
  const s = await labStatus(name);
  const ext = s.externalHost;
  assert.ok(ext, 'lab status shows the external host');
  assert.deepEqual(Object.keys(ext).sort(), ['ip', 'name', 'netns']);
  assert.equal(ext.netns, `${name}-external`);
  const [n1, n2] = s.nodes as [typeof s.nodes[0], typeof s.nodes[0]];
  const pod = (n: string, i: number) => s.pods.filter((p) => p.node === n)[i]!;
  const [a1, a2, b1] = [pod('node-1', 0), pod('node-1', 1), pod('node-2', 0)];
  const nodeDir = (n: { name: string }) => `${s.pinRoot}/${n.name}`;

  await t.test('the external host has no route to any pod CIDR', () => {
    const routes = inNetns(ext.netns, ['ip', '-4', 'route', 'show']).trim().split('\n');
    assert.deepEqual(routes.map((r) => r.split(' ')[0]), ['10.13.0.0/24'], routes.join('\n'));
  });

  await t.test('cil_from_netdev / cil_to_netdev on each node\'s eth0', async () => {
    for (const n of s.nodes) {
      const att = JSON.parse(await membraneIn(n.netns, ['bpf', 'net', '-o', 'json'])) as { ifname: string; hook: string; progName: string }[];
      const eth0 = att.filter((a) => a.ifname === 'eth0').map((a) => `${a.hook} ${a.progName}`).sort();
      assert.deepEqual(eth0, ['tcx/egress cil_to_netdev', 'tcx/ingress cil_from_netdev'], n.name);
    }
  });

  await t.test('pod -> external host: ICMP, TCP and UDP answered; the external host sees only node IPs', async () => {
    const out = await capture(ext.netns, 'eth0', ['ip', 'and', 'host', ext.ip], () => {
      assert.match(inNetns(a1.netns, ['ping', '-c', '2', '-i', '0.2', '-W', '1', ext.ip]), /2 received/);
      assert.match(inNetns(b1.netns, ['ping', '-c', '2', '-i', '0.2', '-W', '1', ext.ip]), /2 received/);
      // TCP: nc needs the server's replies (handshake, ACKs) to deliver and close.
      const srv = spawn('ip', ['netns', 'exec', ext.netns, 'sh', '-c', 'nc -l -n -p 40001 | wc -c'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let got = '';
      srv.stdout.on('data', (c) => { got += c; });
      const done = new Promise((r) => srv.on('close', r));
      return (async () => {
        await new Promise((r) => setTimeout(r, 300));
        inNetns(a2.netns, ['sh', '-c', `head -c 200000 /dev/zero | nc -N -w 3 ${ext.ip} 40001`]);
        await done;
        assert.equal(got.trim(), '200000', 'every TCP byte arrived (replies came back to the pod)');
        // UDP: one datagram to a receiver in the external host.
        const echo = spawn('ip', ['netns', 'exec', ext.netns, 'timeout', '3', 'nc', '-u', '-l', '-n', '-p', '40002', '-W', '1'], { stdio: ['ignore', 'pipe', 'ignore'] });
        const eDone = new Promise((r) => echo.on('close', r));
        await new Promise((r) => setTimeout(r, 300));
        inNetns(b1.netns, ['sh', '-c', `echo hello | nc -u -n -w 1 ${ext.ip} 40002`]);
        await eDone;
      })();
    });
    const sources = new Set([...out.matchAll(/ IP (\d+\.\d+\.\d+\.\d+)(?:\.\d+)? > (\d+\.\d+\.\d+\.\d+)/g)].filter((m) => m[2] === ext.ip).map((m) => m[1]));
    assert.deepEqual([...sources].sort(), [n1.nodeIP, n2.nodeIP].sort(), `the external host saw only the node IPs:\n${out}`);
    for (const p of [a1, a2, b1]) assert.doesNotMatch(out, new RegExp(`\\b${esc(p.ip!)}\\b`), `${p.name}'s own address never reaches the external host`);
    assert.match(out, new RegExp(`${esc(ext.ip)} > ${esc(n1.nodeIP)}: ICMP echo reply`), 'replies go to the node IP');
    assert.match(out, new RegExp(`${esc(n2.nodeIP)}\\.\\d+ > ${esc(ext.ip)}\\.40002: UDP`), 'UDP masqueraded too');
    // The translations are in the NAT map and in the pods' conntrack entries.
    const nat1 = listNat(nodeDir(n1));
    const egress = nat1.filter((e) => e.dir === 'egress' && e.daddr === ext.ip);
    assert.ok(egress.some((e) => e.saddr === a1.ip && e.proto === 1), 'ICMP of pod-1-1 translated');
    assert.ok(egress.some((e) => e.saddr === a2.ip && e.proto === 6 && e.dport === 40001), 'TCP of pod-1-2 translated');
    assert.ok(egress.every((e) => e.toAddr === n1.nodeIP && e.toPort >= 61000), 'to the node IP, ports from 61000');
    for (const e of egress) {
      const rev = nat1.find((r) => r.dir === 'ingress' && r.toAddr === e.saddr && r.daddr === n1.nodeIP && r.saddr === ext.ip);
      assert.ok(rev, `reply entry of ${e.saddr} -> ${e.daddr}`);
    }
    const ct = listConntrack(nodeDir(n1)).filter((c) => c.daddr === ext.ip && c.dir === 'out');
    assert.ok(ct.length >= 2 && ct.every((c) => c.flagNames.includes('nat') && c.nat?.addr === n1.nodeIP), ct.map((c) => `${c.summary} ${c.flagNames} ${c.nat?.addr}`).join('; '));
  });

  await t.test('pod -> pod (same node, other node) and node -> pod keep their source', async () => {
    const natBefore = [listNat(nodeDir(n1)).length, listNat(nodeDir(n2)).length];
    const out = await capture(a1.netns, 'eth0', ['icmp', 'and', 'icmp[icmptype] == icmp-echo'], () => {
      inNetns(a2.netns, ['ping', '-c', '1', '-W', '1', a1.ip!]);
      inNetns(b1.netns, ['ping', '-c', '1', '-W', '1', a1.ip!]);
      inNetns(n1.netns, ['ping', '-c', '1', '-W', '1', a1.ip!]);
      inNetns(n2.netns, ['ping', '-c', '1', '-W', '1', a1.ip!]);
    });
    assert.match(out, new RegExp(`IP ${esc(a2.ip!)} > ${esc(a1.ip!)}: ICMP echo request`), 'same node: the pod\'s address');
    assert.match(out, new RegExp(`IP ${esc(b1.ip!)} > ${esc(a1.ip!)}: ICMP echo request`), 'other node: the pod\'s address');
    assert.match(out, new RegExp(`IP (${esc(n1.nodeIP)}|${esc(n1.routerIP)}) > ${esc(a1.ip!)}: ICMP echo request`), 'its node: a node address');
    assert.match(out, new RegExp(`IP (${esc(n2.nodeIP)}|${esc(n2.routerIP)}) > ${esc(a1.ip!)}: ICMP echo request`), 'another node: that node\'s address');
    assert.deepEqual([listNat(nodeDir(n1)).length, listNat(nodeDir(n2)).length], natBefore, 'no NAT entry made');
  });

  await t.test('NAT entries go with their conntrack entries: none left once the connections ended', () => {
    const now = monotonicSeconds();
    const natOf = (n: typeof n1) => listNat(nodeDir(n)).filter((e) => e.daddr === ext.ip || e.saddr === ext.ip);
    assert.ok(natOf(n1).length >= 4, 'ICMP and TCP of node-1, both directions');
    // The TCP connection closed (FIN both ways): its entries live 10 s more; the ICMP and UDP ones 60 s.
    gcConntrack(nodeDir(n1), now + 11);
    const left = natOf(n1);
    assert.ok(!left.some((e) => e.proto === 6), `closed TCP connection: its NAT entries are gone (${JSON.stringify(left)})`);
    assert.ok(left.some((e) => e.proto === 1), 'the ICMP flow is not over yet: its entries stay');
    for (const n of s.nodes) {
      const r = gcConntrack(nodeDir(n), now + 61);
      assert.ok(r.nat.deleted >= 0);
      assert.deepEqual(natOf(n), [], `${n.name}: no NAT entry left`);
      assert.deepEqual(listConntrack(nodeDir(n)).filter((c) => c.daddr === ext.ip), [], `${n.name}: no conntrack entry left`);
    }
    // A new connection after the GC is translated afresh and answered.
    assert.match(inNetns(a1.netns, ['ping', '-c', '1', '-W', '1', ext.ip]), /1 received/);
    assert.equal(natOf(n1).length, 2);
  });
});
