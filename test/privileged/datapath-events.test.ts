// The datapath's events on real packets: two nodes set up by `membrane
// datapath init` in their netns and joined by an underlay veth, one pod on
// each made by the datapath's endpoint functions, real pings between them.
// Each node's cilium_events ring is read with the EventReader the agent uses
// (NodeDatapath.openEventReader), the trace level set as NodeDatapath does.
// Shows: the observation points of a cross-node ping in order across both
// nodes (level 2), one trace per connection and direction (level 1), nothing
// for allowed traffic at level 0; drops of a spoofed source and of an address
// in a remote pod CIDR with no pod, with Cilium's reason and the source line;
// and the lost counter under a flood that fills the ring: exact (records read
// + records lost = drops counted), the node forwarding all the while.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import { createEndpointDatapath, type EndpointSpec } from '../../src/datapath/endpoint.ts';
import { EventReader, readEventsLost } from '../../src/datapath/events-reader.ts';
import type { DatapathEvent, DropEvent, TraceEvent } from '../../src/datapath/maps/events.ts';
import { listMetrics } from '../../src/datapath/node-maps.ts';
import { reconcileRemotes, type RemoteNodeEntry, type RemotePodEntry } from '../../src/datapath/remote-nodes.ts';
import { Rollback } from '../../src/datapath/rollback.ts';
import { readTraceLevel, setTraceLevel } from '../../src/datapath/static-entries.ts';
import { linkGet, NetlinkHandle } from '../../src/netlink/index.ts';
import { validateNodeConfig, type NodeConfig } from '../../src/shared/config.ts';
import { libc } from '../../src/shared/libc.ts';
import { withNetns } from '../../src/shared/netns.ts';
import { site } from '../helpers/bpf-programs.ts';
import { buildOnce, membraneOk, testNode, writeConfig } from '../helpers/membrane.ts';
import { makeNetns, tempDir, uniqueName } from '../helpers/netns.ts';
import { ping, RawSocket } from '../helpers/pods.ts';
import { rootOnly } from '../helpers/skip.ts';

const skip = rootOnly('requires root (netns, bpf)');

// Cilium's drop reasons.
const DROP_INVALID_SIP = 132;
const DROP_UNROUTABLE = 151;

interface Node {
  name: 'A' | 'B';
  ns: string;
  cfg: NodeConfig;
  h: NetlinkHandle;
  dir: string;
  spec: RemoteNodeEntry;
  /** `membrane datapath init` again, same config. */
  reinit(): void;
}

interface Pod {
  id: number;
  ip: string;
  identity: number;
  podNs: string;
  hostIfindex: number;
  hostMac: string;
  podMac: string;
}

function node(t: TestContext, name: 'A' | 'B', ns: string, spec: RemoteNodeEntry, peer: RemoteNodeEntry): Node {
  const { nodeName } = testNode(t, 'ev');
  const raw = {
    nodeName, routerIP: spec.routerIP, podCIDR: spec.podCIDR, nodeIP: spec.nodeIP, remoteNodes: [peer],
    stateDir: tempDir(t, `/tmp/${uniqueName('st')}`),
  };
  const cfgPath = writeConfig(t, raw);
  const reinit = () => { membraneOk(ns, ['datapath', 'init', '--config', cfgPath]); };
  reinit();
  const cfg = validateNodeConfig(raw);
  const h = NetlinkHandle.open(`/run/netns/${ns}`);
  t.after(() => h.close());
  return { name, ns, cfg, h, dir: cfg.paths.pinDir, spec, reinit };
}

function pod(t: TestContext, n: Node, id: number, identity: number): Pod {
  const podNs = makeNetns(t, 'ep');
  // No IPv6 chatter (router solicitations, MLD) from the pod: every packet it sends is one the test sent.
  execFileSync('ip', ['netns', 'exec', podNs, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  const prefix = n.cfg.podCIDR.split('.').slice(0, 3).join('.');
  const spec: EndpointSpec = { id, containerID: `events-test-${uniqueName('c')}`, ifname: 'eth0', netns: `/run/netns/${podNs}`, ip: `${prefix}.${id}`, identity };
  const made = withNetns(n.ns, () => Rollback.guard((rb) => createEndpointDatapath(n.cfg, n.h, spec, rb)));
  made.upgrade?.cancel(); // stays on its legacy tc filter: enough here
  return { id, ip: spec.ip, identity, podNs, hostIfindex: made.hostIfindex, hostMac: made.hostMac, podMac: made.podMac };
}

/** The cluster sync's part: routes and ipcache entries for the other node and its pod. */
function remotes(n: Node, nodes: RemoteNodeEntry[], pods: RemotePodEntry[]): void {
  const host = linkGet(n.h, 'cilium_host');
  assert.ok(host);
  withNetns(n.ns, () => Rollback.guard((rb) => reconcileRemotes(n.h, host.index, n.cfg, nodes, pods, rb)));
}

/** Drop packets counted in cilium_metrics (every reason but forwarded). */
const dropsCounted = (n: Node, reason?: number) =>
  listMetrics(n.dir).filter((r) => r.reason !== 0 && (reason === undefined || r.reason === reason)).reduce((s, r) => s + r.packets, 0);

type Tagged = DatapathEvent & { node: 'A' | 'B' };

test('datapath events on two nodes: observation points, trace levels, drops, lost records', { skip }, async (t) => {
  buildOnce();
  const ns = [makeNetns(t, 'evn'), makeNetns(t, 'evn')];
  const specs: RemoteNodeEntry[] = [
    { nodeIP: '10.13.83.5', routerIP: '10.244.83.1', podCIDR: '10.244.83.0/24' },
    { nodeIP: '10.13.83.6', routerIP: '10.244.84.1', podCIDR: '10.244.84.0/24' },
  ];
  execFileSync('ip', ['-n', ns[0], 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns[1]]);
  ns.forEach((x, i) => {
    execFileSync('ip', ['-n', x, 'addr', 'add', `${specs[i].nodeIP}/24`, 'dev', 'eth0']);
    execFileSync('ip', ['-n', x, 'link', 'set', 'eth0', 'up']);
  });
  const nA = node(t, 'A', ns[0], specs[0], specs[1]);
  const nB = node(t, 'B', ns[1], specs[1], specs[0]);
  const a = pod(t, nA, 10, 3000);
  const b = pod(t, nB, 10, 3001);
  remotes(nA, [specs[1]], [{ ip: b.ip, identity: b.identity, hostIP: specs[1].nodeIP }]);
  remotes(nB, [specs[0]], [{ ip: a.ip, identity: a.identity, hostIP: specs[0].nodeIP }]);

  const readers = { A: EventReader.open(nA.dir), B: EventReader.open(nB.dir) };
  t.after(() => { readers.A.close(); readers.B.close(); });
  const level = (l: 0 | 1 | 2) => { for (const n of [nA, nB]) setTraceLevel(n.dir, l); };
  const drain = () => { readers.A.consume(); readers.B.consume(); };
  /** Both nodes' events since the last call, in the order they were made (one clock for every netns). */
  const collect = (): Tagged[] => [
    ...readers.A.consume().map((e) => ({ ...e, node: 'A' as const })),
    ...readers.B.consume().map((e) => ({ ...e, node: 'B' as const })),
  ].sort((x, y) => (x.timeNs < y.timeNs ? -1 : x.timeNs > y.timeNs ? 1 : 0));
  const traces = (evs: Tagged[], summary: string) => evs.filter((e): e is TraceEvent & Tagged => e.type === 'trace' && e.summary === summary);
  const points = (evs: (TraceEvent & Tagged)[]) => evs.map((e) => `${e.node}:${e.pointText}`);
  const betweenPods = (e: DatapathEvent) => [`${a.ip} -> ${b.ip} `, `${b.ip} -> ${a.ip} `].some((p) => e.summary.startsWith(p));

  // Neighbours resolved, so the pings below are the only packets.
  assert.equal(ping(a.podNs, b.ip).received, 1, 'A reaches B (allow-all both sides)');

  await t.test('trace level 2: a cross-node ping is traced at from-endpoint, to-overlay on A, then from-overlay, to-endpoint on B', () => {
    level(2);
    assert.equal(readTraceLevel(nA.dir), 2);
    drain();
    assert.equal(ping(a.podNs, b.ip).received, 1);
    const evs = collect();
    const request = traces(evs, `${a.ip} -> ${b.ip} ICMP echo`);
    assert.deepEqual(points(request), ['A:from-endpoint', 'A:to-overlay', 'B:from-overlay', 'B:to-endpoint'], JSON.stringify(evs.map((e) => `${e.node} ${e.type} ${e.summary}`)));
    const [fromEp, toOverlay, fromOverlay, toEp] = request;
    assert.deepEqual([fromEp!.source, fromEp!.srcLabel], [a.id, a.identity], 'from-endpoint: pod A, its identity');
    assert.deepEqual([toOverlay!.srcLabel, toOverlay!.dstLabel], [a.identity, b.identity], 'to-overlay: both identities (ipcache)');
    assert.equal(fromOverlay!.srcLabel, a.identity, 'from-overlay: the source identity from the VNI');
    assert.deepEqual([toEp!.srcLabel, toEp!.dstLabel, toEp!.dstId, toEp!.ifindex], [a.identity, b.identity, b.id, b.hostIfindex], 'to-endpoint: pod B, its lxc device');
    assert.equal(toEp!.reasonText, 'new', 'the first echo of this ping opens a connection');
    // The encapsulation's tunnel key: B's node IP, VNI = A's identity.
    const encap = evs.filter((e) => e.type === 'debug' && e.node === 'A' && e.summary === `${a.ip} -> ${b.ip} ICMP echo`);
    assert.equal(encap.length, 1);
    assert.ok(encap[0]!.type === 'debug', 'a debug record');
    assert.deepEqual([encap[0]!.tunnelEndpoint, encap[0]!.vni, encap[0]!.message], [nB.spec.nodeIP, a.identity, `Encapsulating to node ${nB.spec.nodeIP} with VNI ${a.identity}`]);
    // And the reply the other way, in the same order.
    assert.deepEqual(points(traces(evs, `${b.ip} -> ${a.ip} ICMP echo-reply`)), ['B:from-endpoint', 'B:to-overlay', 'A:from-overlay', 'A:to-endpoint']);
    // Every trace of the pods' packets: the request and the reply, nothing else (the nodes' own
    // packets, e.g. router solicitations of their devices, may be traced at from-host too).
    assert.equal(evs.filter((e) => e.type === 'trace' && betweenPods(e)).length, 8, JSON.stringify(evs.map((e) => `${e.node} ${e.type} ${e.summary}`)));
  });

  await t.test('trace level 1: one trace per connection and direction at the to-* points, and the allow verdicts of the new connection', () => {
    level(1);
    drain();
    // One ping process: one ICMP id, one connection; three echoes within the 5 s report interval.
    assert.equal(ping(a.podNs, b.ip, { count: 3, interval: 0.2 }).received, 3);
    const evs = collect();
    assert.deepEqual(points(traces(evs, `${a.ip} -> ${b.ip} ICMP echo`)), ['A:to-overlay', 'B:to-endpoint'], 'the first echo only, at the to-* points');
    assert.deepEqual(points(traces(evs, `${b.ip} -> ${a.ip} ICMP echo-reply`)), ['B:to-overlay', 'A:to-endpoint'], 'the first reply only');
    assert.equal(evs.filter((e) => e.type === 'trace' && betweenPods(e)).length, 4);
    const verdicts = evs.filter((e) => e.type === 'policy-verdict').map((e) => e.type === 'policy-verdict' && `${e.node}:${e.endpointId}:${e.direction}:${e.remoteLabel}:${e.verdict}:${e.protoText}:${e.dstPort}`);
    assert.deepEqual(verdicts, [`A:${a.id}:egress:${b.identity}:allow:ICMP:8`, `B:${b.id}:ingress:${a.identity}:allow:ICMP:8`], 'one allow verdict per side, for the new connection');
    assert.equal(evs.filter((e) => e.type === 'debug').length, 0, 'debug records only at level 2');
  });

  await t.test('datapath init again (an agent restart) keeps the trace level a listener set', () => {
    level(1);
    nA.reinit();
    assert.equal(readTraceLevel(nA.dir), 1);
    assert.equal(ping(a.podNs, b.ip).received, 1, 'and the node forwards after it');
  });

  await t.test('trace level 0: allowed traffic sends nothing', () => {
    level(0);
    assert.equal(readTraceLevel(nB.dir), 0);
    drain();
    assert.equal(ping(a.podNs, b.ip, { count: 2, interval: 0.1 }).received, 2);
    assert.deepEqual(collect().map((e) => `${e.node} ${e.type} ${e.summary}`), []);
  });

  await t.test('a spoofed source is dropped at pod A\'s egress with "Invalid source ip" (132) and the line that dropped it', () => {
    const spoofed = '10.244.83.99';
    execFileSync('ip', ['-n', a.podNs, 'addr', 'add', `${spoofed}/32`, 'dev', 'eth0']);
    drain();
    assert.equal(ping(a.podNs, b.ip, { source: spoofed }).received, 0);
    const evs = collect();
    const drops = evs.filter((e): e is DropEvent & Tagged => e.type === 'drop');
    assert.equal(drops.length, 1, JSON.stringify(evs.map((e) => `${e.node} ${e.type} ${e.summary}`)));
    const d = drops[0]!;
    const at = site('bpf_lxc.c', 'DROP(DROP_INVALID_SIP)');
    assert.deepEqual(
      { node: d.node, reason: d.reason, reasonText: d.reasonText, file: d.fileName, line: d.line, source: d.source, srcLabel: d.srcLabel, ifindex: d.ifindex, summary: d.summary },
      { node: 'A', reason: DROP_INVALID_SIP, reasonText: 'Invalid source ip', file: at.file, line: at.line, source: a.id, srcLabel: a.identity, ifindex: a.hostIfindex, summary: `${spoofed} -> ${b.ip} ICMP echo` },
    );
  });

  await t.test('an address in B\'s pod CIDR with no pod: carried to B, dropped there with "Stale or unroutable IP" (151) and the line', () => {
    const nobody = '10.244.84.77';
    drain();
    assert.equal(ping(a.podNs, nobody).received, 0);
    const evs = collect();
    const drops = evs.filter((e): e is DropEvent & Tagged => e.type === 'drop');
    assert.equal(drops.length, 1, JSON.stringify(evs.map((e) => `${e.node} ${e.type} ${e.summary}`)));
    const d = drops[0]!;
    const at = site('bpf_host.c', 'DROP(DROP_UNROUTABLE)');
    assert.deepEqual(
      { node: d.node, reason: d.reason, reasonText: d.reasonText, file: d.fileName, line: d.line, srcLabel: d.srcLabel, summary: d.summary },
      { node: 'B', reason: DROP_UNROUTABLE, reasonText: 'Stale or unroutable IP', file: at.file, line: at.line, srcLabel: a.identity, summary: `${a.ip} -> ${nobody} ICMP echo` },
    );
  });

  await t.test('a flood fills the ring: every record lost is counted, exactly, and the node keeps forwarding', async () => {
    level(0);
    drain();
    const lostBefore = readEventsLost(nA.dir);
    const dropsBefore = dropsCounted(nA);
    const spoofBefore = dropsCounted(nA, DROP_INVALID_SIP);
    // Spoofed UDP frames out of pod A, as fast as one process sends them, for 3 s (at most 2M): each is one
    // drop, one record at level 0. The ring (1 MiB, 184 bytes a record with its header) takes about 5,700.
    const frame = spoofedUdp(a, '10.244.83.98', b.ip);
    const sock = RawSocket.open(a.podNs, 'eth0');
    const MAX_FRAMES = 2_000_000;
    const MAX_NS = 3_000_000_000n;
    let sent = 0;
    const t0 = process.hrtime.bigint();
    try {
      while (sent < MAX_FRAMES && (sent % 1024 !== 0 || process.hrtime.bigint() - t0 < MAX_NS)) {
        if (Number(libc.sendto(sock.fd, frame, frame.length, 0, null, 0)) === frame.length) sent++;
        else await new Promise((r) => setImmediate(r)); // socket buffer full: let the kernel drain it
      }
    } finally {
      sock.close();
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    t.diagnostic(`sent ${sent} spoofed frames in ${seconds.toFixed(2)} s (${Math.round(sent / seconds)} packets/s)`);

    // The ring is full and nobody reads it: the node forwards all the same.
    assert.equal(ping(a.podNs, b.ip, { count: 3, interval: 0.1 }).received, 3, 'pod A still reaches pod B across the tunnel');

    const dropped = dropsCounted(nA) - dropsBefore;
    const lost = readEventsLost(nA.dir);
    const lostDrops = lost.byType.drop! - lostBefore.byType.drop!;
    const read = readers.A.consume().filter((e) => e.type === 'drop').length;
    t.diagnostic(`node A: ${dropped} drops counted, ${read} drop records read, ${lostDrops} lost`);
    assert.ok(dropsCounted(nA, DROP_INVALID_SIP) - spoofBefore > 10_000, 'the flood reached the program');
    assert.ok(lostDrops > 0n, 'the ring was full: records were lost');
    assert.equal(BigInt(read) + lostDrops, BigInt(dropped), 'records read + records lost = drops the datapath counted');
    assert.equal(lost.total - lostBefore.total, lostDrops, 'only drop records were sent (level 0), so only they were lost');

    // Drained, the ring takes records again.
    drain();
    assert.equal(ping(a.podNs, '10.244.84.78').received, 0);
    assert.equal(readers.B.consume().filter((e) => e.type === 'drop' && e.reason === DROP_UNROUTABLE).length, 1, 'B reports the next drop');
  });
});

/** An Ethernet frame pod A sends to its gateway (the lxc MAC) with source `src`: UDP to `dst`:9. */
function spoofedUdp(p: Pod, src: string, dst: string): Buffer {
  const mac = (m: string) => Buffer.from(m.split(':').map((h) => parseInt(h, 16)));
  const ip4 = (s: string) => Buffer.from(s.split('.').map(Number));
  const f = Buffer.alloc(14 + 20 + 8 + 18);
  mac(p.hostMac).copy(f, 0);
  mac(p.podMac).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(f.length - 14, 2);
  ip[8] = 64;
  ip[9] = 17;
  ip4(src).copy(ip, 12);
  ip4(dst).copy(ip, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  f.writeUInt16BE(40000, 34);
  f.writeUInt16BE(9, 36);
  f.writeUInt16BE(8 + 18, 38);
  return f;
}
