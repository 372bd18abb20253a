// The observe pipeline's pure parts: frames parsed, a packet's events
// joined into one Hubble-shaped flow (and different packets kept apart),
// filters, the pcap encoding, subscribers that read slowly, and the trace
// level the listeners ask for.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlowJoiner, FlowRing, type Flow, type FlowContext } from '../../src/agent/observe/flows.ts';
import { flowMatches, parseFlowFilter } from '../../src/agent/observe/filters.ts';
import { STALL_MS, Subscriber, TraceLevels, type LineSink } from '../../src/agent/observe/hub.ts';
import type { ObservedEvent } from '../../src/agent/observe/model.ts';
import { packetKey, parsePacket } from '../../src/agent/observe/packet.ts';
import { pcapHeader, pcapRecord } from '../../src/agent/observe/pcap.ts';
import { MembraneError } from '../../src/shared/errors.ts';

/** An Ethernet + IPv4 + ICMP echo frame (28 bytes of L3/L4 header, 56 of payload), cut at 128 bytes like a datapath capture. */
function icmpFrame(src: string, dst: string, seq: number, type = 8): Buffer {
  const b = Buffer.alloc(14 + 84);
  b.writeUInt16BE(0x0800, 12);
  const ip = 14;
  b[ip] = 0x45;
  b.writeUInt16BE(84, ip + 2);
  b.writeUInt16BE(0x1234 + seq, ip + 4);
  b[ip + 8] = 64;
  b[ip + 9] = 1;
  src.split('.').forEach((o, i) => { b[ip + 12 + i] = Number(o); });
  dst.split('.').forEach((o, i) => { b[ip + 16 + i] = Number(o); });
  b[ip + 20] = type;
  b.writeUInt16BE(77, ip + 24);
  b.writeUInt16BE(seq, ip + 26);
  return b;
}

const A = '10.244.1.2';
const B = '10.244.2.2';
const ctx: FlowContext = {
  node: 'node-2',
  wallTime: (ns) => new Date(Number(ns / 1_000_000n)),
  endpointByIP: (ip) => (ip === B ? { id: 7, identity: 257, podName: 'pod-2-1', podNamespace: 'default', labels: { app: 'pod-2-1' } } : undefined),
  identityOfIP: (ip) => (ip === A ? 256 : undefined),
  identityLabels: (id) => (id === 256 ? ['k8s:app=pod-1-1', 'k8s:io.kubernetes.pod.namespace=default'] : undefined),
  ifname: (i) => ({ 5: 'cilium_vxlan', 9: 'lxc1' } as Record<number, string>)[i],
};

function trace(point: number, frame: Buffer, ns: bigint, extra: Partial<ObservedEvent> = {}): ObservedEvent {
  return { type: 'trace', timeNs: ns, source: 0, hash: 1, lenOrig: frame.length, packet: frame, summary: 'x', point, reason: 5, ifindex: point === 9 ? 5 : 9, srcLabel: 256, dstLabel: point === 0 ? 257 : 0, dstId: point === 0 ? 7 : 0, ...extra };
}

test('a packet parses into addresses, protocol and ICMP id/seq; the key tells packets apart, not hops', () => {
  const p = parsePacket(icmpFrame(A, B, 1));
  assert.deepEqual(p.ipv4 && [p.ipv4.source, p.ipv4.destination, p.ipv4.protocol], [A, B, 1]);
  assert.deepEqual(p.icmp, { type: 8, code: 0, id: 77, seq: 1 });
  const hop2 = icmpFrame(A, B, 1);
  hop2[14 + 8] = 63; // TTL changes on the way
  hop2.fill(0xaa, 0, 12); // and the MACs
  assert.equal(packetKey(parsePacket(hop2)), packetKey(p));
  assert.notEqual(packetKey(parsePacket(icmpFrame(A, B, 2))), packetKey(p));
  assert.equal(packetKey(parsePacket(Buffer.alloc(10))), undefined, 'a frame too short has no key');
});

test('the events of one packet become one flow with every point in order; a drop ends its flow at once', () => {
  const j = new FlowJoiner(ctx, 10_000_000n);
  const f1 = icmpFrame(A, B, 1);
  const f2 = icmpFrame(A, B, 2);
  assert.deepEqual(j.add([trace(9, f1, 1_000n), trace(9, f2, 2_000n), trace(0, f1, 3_000n)], 3_000n), []);
  const drop: ObservedEvent = { type: 'drop', timeNs: 4_000n, source: 7, hash: 1, lenOrig: 98, packet: f2, summary: 'x', reason: 133, srcLabel: 256, dstLabel: 257, dstId: 7, fileName: 'bpf_lxc.c', line: 321, ifindex: 5 };
  const [dropped] = j.add([drop], 4_000n);
  assert.equal(dropped!.verdict, 'DROPPED');
  assert.equal(dropped!.drop_reason_desc, 'POLICY_DENIED');
  assert.deepEqual([dropped!.drop!.file, dropped!.drop!.line, dropped!.drop!.reason_text], ['bpf_lxc.c', 321, 'Policy denied']);
  assert.deepEqual(dropped!.trace_observation_points, ['FROM_OVERLAY', 'DROPPED']);
  assert.equal(j.flush(5_000n).length, 0, 'the other packet is still within its window');
  const [fwd] = j.flush(3_000n + 10_000_000n);
  assert.equal(fwd!.verdict, 'FORWARDED');
  assert.deepEqual(fwd!.trace_observation_points, ['FROM_OVERLAY', 'TO_ENDPOINT']);
  assert.deepEqual(fwd!.hops.map((h) => h.program), ['cil_from_overlay', 'tail_ipv4_from_overlay']);
  assert.equal(fwd!.trace_observation_point, 'TO_ENDPOINT');
  assert.equal(fwd!.traffic_direction, 'INGRESS');
  assert.deepEqual(fwd!.IP, { source: A, destination: B, ipVersion: 'IPv4' });
  assert.deepEqual(fwd!.l4, { ICMPv4: { type: 8 } });
  assert.deepEqual(fwd!.destination, { ID: 7, identity: 257, namespace: 'default', labels: ['k8s:app=pod-2-1', 'k8s:io.kubernetes.pod.namespace=default'], pod_name: 'pod-2-1' });
  assert.deepEqual(fwd!.source, { identity: 256, namespace: 'default', labels: ['k8s:app=pod-1-1', 'k8s:io.kubernetes.pod.namespace=default'] });
  assert.equal(fwd!.interface?.name, 'lxc1');
  assert.equal(fwd!.node_name, 'node-2');
});

test('a flood cannot grow the pending flows past their bound: the oldest is finished early', () => {
  const j = new FlowJoiner(ctx, 10_000_000n, 4);
  const out: Flow[] = [];
  for (let i = 0; i < 10; i++) out.push(...j.add([trace(9, icmpFrame(A, B, i), BigInt(i))], BigInt(i)));
  assert.equal(j.pendingCount, 4);
  assert.equal(out.length, 6);
});

test('the ring keeps the newest flows; last(n, filter) returns the newest matching, oldest first', () => {
  const r = new FlowRing(3);
  const mk = (n: number, verdict: Flow['verdict']) => ({ uuid: String(n), verdict } as Flow);
  for (let i = 0; i < 5; i++) r.push(mk(i, i % 2 ? 'DROPPED' : 'FORWARDED'), `${i}\n`);
  assert.equal(r.size, 3);
  assert.deepEqual(r.last(10).map((x) => x.json), ['2\n', '3\n', '4\n']);
  assert.deepEqual(r.last(10, (f) => f.verdict === 'FORWARDED').map((x) => x.flow.uuid), ['2', '4']);
  assert.deepEqual(r.last(1).map((x) => x.flow.uuid), ['4']);
});

test('flow filters: pod by name or IP on either side, verdict, protocol, port; bad values are usage errors', () => {
  const j = new FlowJoiner(ctx, 0n);
  j.add([trace(9, icmpFrame(A, B, 1), 1n)], 1n);
  const [f] = j.flush(10n);
  const q = (s: string) => parseFlowFilter(new URLSearchParams(s));
  assert.ok(flowMatches(f!, q('to-pod=pod-2-1')));
  assert.ok(flowMatches(f!, q('to-pod=default/pod-2-1')));
  assert.ok(!flowMatches(f!, q('to-pod=other/pod-2-1')));
  assert.ok(flowMatches(f!, q(`from-ip=${A}`)), 'a remote pod is matched by its IP');
  assert.ok(!flowMatches(f!, q(`from-ip=${B}`)));
  assert.ok(flowMatches(f!, q(`pod=pod-2-1&verdict=forwarded&protocol=icmp`)));
  assert.ok(!flowMatches(f!, q('verdict=DROPPED')));
  assert.ok(!flowMatches(f!, q('protocol=tcp')));
  assert.ok(!flowMatches(f!, q('port=80')));
  assert.throws(() => parseFlowFilter(new URLSearchParams('verdict=maybe'), 'E_USAGE'), (e: MembraneError) => e.code === 'E_USAGE' && /verdict: must be FORWARDED or DROPPED/.test(e.message));
  assert.throws(() => q('port=70000'), /port: must be 0\.\.65535/);
  assert.throws(() => q('protocol=sctp'), /protocol: must be tcp, udp or icmp/);
  assert.throws(() => q('from-ip=10.1.2'), /from-ip: 10\.1\.2 is not an IPv4 address/);
});

test('pcap: the classic header with nanosecond times and LINKTYPE_ETHERNET; records keep the wire length', () => {
  const h = pcapHeader();
  assert.equal(h.length, 24);
  assert.equal(h.readUInt32LE(0), 0xa1b23c4d);
  assert.deepEqual([h.readUInt16LE(4), h.readUInt16LE(6), h.readUInt32LE(16), h.readUInt32LE(20)], [2, 4, 128, 1]);
  const frame = icmpFrame(A, B, 1).subarray(0, 60);
  const r = pcapRecord(1_700_000_000_123_456_789n, frame, 1514);
  assert.deepEqual([r.readUInt32LE(0), r.readUInt32LE(4), r.readUInt32LE(8), r.readUInt32LE(12)], [1_700_000_000, 123_456_789, 60, 1514]);
  assert.deepEqual(r.subarray(16), frame);
});

/** A socket that takes `room` writes, then pushes back until drain(). */
class SlowSink implements LineSink {
  lines: string[] = [];
  private onDrain?: () => void;
  constructor(public room: number) {}
  write(chunk: string): boolean {
    this.lines.push(chunk);
    return --this.room > 0;
  }
  once(_e: 'drain', fn: () => void): void { this.onDrain = fn; }
  drain(room: number): void { this.room = room; const f = this.onDrain; this.onDrain = undefined; f?.(); }
}

test('a slow subscriber queues, then loses lines past its queue, and is told how many once it drains', () => {
  const sink = new SlowSink(1);
  const sub = new Subscriber(sink, 1, (n, total) => `lost ${n} of ${total}\n`, 2);
  for (let i = 0; i < 6; i++) sub.send(`${i}\n`);
  assert.deepEqual(sink.lines, ['0\n'], 'the socket pushed back after the first line');
  assert.equal(sub.queued, 2);
  assert.equal(sub.lost, 3);
  sink.drain(100);
  assert.deepEqual(sink.lines, ['0\n', 'lost 3 of 3\n', '1\n', '2\n']);
  sub.send('6\n');
  assert.equal(sink.lines.at(-1), '6\n');
});

test('trace level: the highest a listener asks for; a stalled level-2 reader and an expired hold no longer count', () => {
  let now = 0;
  const levels = new TraceLevels(() => now);
  assert.equal(levels.effective(), 0);
  const sink = new SlowSink(1);
  const s2 = new Subscriber(sink, 2, () => '', 8, () => now);
  levels.addStream(new Subscriber(new SlowSink(100), 1, () => ''));
  levels.addStream(s2);
  assert.equal(levels.effective(), 2);
  s2.send('a\n'); // the socket pushes back from here on
  now += STALL_MS;
  assert.equal(levels.effective(), 1, 'a reader that stopped reading holds level 1 only');
  const h = levels.hold(2, 5);
  assert.equal(levels.effective(), 2);
  now += 5000;
  assert.equal(levels.effective(), 1, 'the hold expired');
  assert.equal(levels.release(h.id), false);
});

test('the observer: a stream sets the level and gets hello, events, marks and the ring\'s losses; closing it sets 0 again', async () => {
  const { Observer } = await import('../../src/agent/observe/observer.ts');
  let clock = 1_000_000_000n;
  let queued: ObservedEvent[] = [];
  let lost = 0;
  const levels: number[] = [];
  const obs = new Observer({
    node: 'node-2',
    ctx: { ...ctx, podOfEndpoint: (id) => (id === 7 ? 'default/pod-2-1' : undefined) },
    openSource: () => ({ consume: () => { const q = queued; queued = []; return q; }, lost: () => lost, close: () => {} }),
    setTraceLevel: (l) => { levels.push(l); },
    monotonicNs: () => clock,
  });
  obs.poll();
  const sink = new SlowSink(1e9);
  const end = obs.subscribeEvents(sink, {}, 1);
  assert.deepEqual(levels, [1], 'the level is set before the hello line');
  const hello = JSON.parse(sink.lines[0]!) as { kind: string; traceLevel: number };
  assert.deepEqual([hello.kind, hello.traceLevel], ['hello', 1]);
  queued = [trace(9, icmpFrame(A, B, 1), clock - 5_000n), trace(0, icmpFrame(A, B, 1), clock - 4_000n)];
  lost = 3;
  clock += 200_000_000n;
  obs.poll();
  const lines = sink.lines.slice(1).map((l) => JSON.parse(l) as { kind: string; timeNs?: string; point?: number; count?: number; ifname?: string });
  assert.deepEqual(lines.map((l) => l.kind), ['lost', 'event', 'event', 'mark']);
  assert.equal(lines[0]!.count, 3, 'records the ring could not take');
  assert.deepEqual(lines.slice(1, 3).map((l) => [l.point, l.ifname]), [[9, 'cilium_vxlan'], [0, 'lxc1']]);
  assert.ok(BigInt(lines[3]!.timeNs!) > BigInt(lines[2]!.timeNs!), 'the mark comes after every event made before it');
  assert.equal(obs.status().lost.ringBuffer, 3);
  end();
  assert.deepEqual(levels, [1, 0], 'the last listener gone: level 0');
  obs.stop();
});
