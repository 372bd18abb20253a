// cilium_events decoder: records captured from the real programs (BPF_PROG_TEST_RUN
// of bpf_lxc.o on kernel 6.18) and hand-built frames for the packet summary.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DBG_ENCAP, DEBUG_NOTIFY, decodeEvent, DROP_NOTIFY, POLICY_VERDICT_NOTIFY, summarizePacket, TRACE_NOTIFY } from '../../src/datapath/maps/events.ts';
import { MembraneError } from '../../src/shared/errors.ts';

// Records are 176 bytes: a 24-byte header (with the CLOCK_MONOTONIC time at 16),
// 24 bytes of type fields, 128 bytes of packet; the captures below end in zeroes.
const record = (hex: string) => Buffer.concat([Buffer.from(hex, 'hex'), Buffer.alloc(176 - hex.length / 2)]);

// cil_from_container of endpoint 7 (identity 1234, IP 10.0.1.5) dropping an ICMP echo
// from the spoofed source 10.0.1.99 to 10.0.1.6: DROP_INVALID_SIP at bpf_lxc.c:113.
const DROP_INVALID_SIP = record(
  '01840700932380874a0000004a0002001e3b0b94b50b0000d2040000000000000000000071000200010000000000000002aa0000000502000000000508004500003c12344000400112250a0001630a00010608008630004d000108090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627');
// The same endpoint delivering 10.0.1.5 -> 10.0.1.6 to endpoint 8 (identity 5678) on ifindex 43:
// trace TO_LXC after the L2 rewrite and TTL decrement (ttl 0x3f), a new connection.
const TRACE_TO_LXC = record(
  '04000700d352ac004a0000004a000200593d4b8cb50b0000d20400002e160000080000002b000000000000000000000002000000000602aa0000000608004500003c123440003f0113830a0001050a00010608008630004d000108090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627');

// The same endpoint encapsulating 10.0.1.5 -> 10.0.2.7 (ipcache: tunnel endpoint 192.168.50.2)
// at trace level 2: DBG_ENCAP, arg1 = 192.168.50.2 in host order, arg2 = VNI 1234, cilium_vxlan ifindex 4.
const DEBUG_ENCAP = record(
  '0203070028e1139a4a0000004a00020095167a9ab50b00000232a8c0d20400000000000004000000000000000000000002aa0000000502000000000508004500003c12344000400111820a0001050a00020708008630004d000108090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f2021222324252627');

// Endpoint 8's ingress policy allowing a TCP SYN 10.0.1.5:40000 -> 10.0.1.6:80 from identity 1234
// by its entry (identity 1234, TCP, port 80) with cookie 77, checked in endpoint 7's program.
const POLICY_VERDICT_ALLOW = record(
  '05000700237e65d53600000036000200e558d4a2b50b0000d20400004d0000005000060108000002010000000000000002aa0000000502000000000508004500002812344000400612920a0001050a0001069c400050000003e8000000005002faf0');

test('decodes a drop event captured from bpf_lxc.o', () => {
  assert.equal(DROP_INVALID_SIP.length, 176);
  const e = decodeEvent(DROP_INVALID_SIP);
  assert.equal(e.type, 'drop');
  if (e.type !== 'drop') return;
  assert.equal(e.reason, 132);
  assert.equal(e.reasonText, 'Invalid source ip');
  assert.equal(e.source, 7);
  assert.equal(e.srcLabel, 1234);
  assert.equal(e.dstLabel, 0);
  assert.equal(e.fileName, 'bpf_lxc.c');
  assert.equal(e.line, 113);
  assert.equal(e.ifindex, 1);
  assert.equal(e.lenOrig, 74);
  assert.equal(e.packet.length, 74);
  assert.equal(e.timeNs, 0xbb5940b3b1en, 'CLOCK_MONOTONIC ns at the drop (read little-endian at 16)');
  assert.equal(e.summary, '10.0.1.99 -> 10.0.1.6 ICMP echo');
});

test('decodes a trace event captured from bpf_lxc.o', () => {
  const e = decodeEvent(TRACE_TO_LXC);
  assert.equal(e.type, 'trace');
  if (e.type !== 'trace') return;
  assert.equal(e.point, 0);
  assert.equal(e.pointText, 'to-endpoint');
  assert.equal(e.srcLabel, 1234);
  assert.equal(e.dstLabel, 5678);
  assert.equal(e.dstId, 8);
  assert.equal(e.reason, 0);
  assert.equal(e.reasonText, 'new');
  assert.equal(e.ifindex, 43);
  assert.equal(e.origIp, '0.0.0.0');
  assert.equal(e.packet.subarray(0, 6).toString('hex'), '020000000006', 'destination MAC rewritten to the pod MAC');
  assert.equal(e.summary, '10.0.1.5 -> 10.0.1.6 ICMP echo');
});

test('decodes a DBG_ENCAP debug event captured from bpf_lxc.o: tunnel endpoint and VNI', () => {
  assert.equal(DEBUG_ENCAP.length, 176);
  const e = decodeEvent(DEBUG_ENCAP);
  assert.equal(e.type, 'debug');
  if (e.type !== 'debug') return;
  assert.equal(e.subtype, DBG_ENCAP);
  assert.equal(e.subtypeText, 'encap');
  assert.equal(e.source, 7);
  assert.equal(e.arg1, 0xc0a83202, 'arg1 is the remote address as the tunnel key holds it (host order)');
  assert.equal(e.tunnelEndpoint, '192.168.50.2');
  assert.equal(e.arg2, 1234);
  assert.equal(e.vni, 1234);
  assert.equal(e.arg3, 0);
  assert.equal(e.ifindex, 4);
  assert.equal(e.message, 'Encapsulating to node 192.168.50.2 with VNI 1234');
  assert.equal(e.lenOrig, 74);
  assert.equal(e.summary, '10.0.1.5 -> 10.0.2.7 ICMP echo');
});

test('a debug event of an unknown subtype decodes with its raw arguments', () => {
  const rec = Buffer.from(DEBUG_ENCAP);
  rec[1] = 42;
  const e = decodeEvent(rec);
  assert.equal(e.type, 'debug');
  if (e.type !== 'debug') return;
  assert.equal(e.subtypeText, 'debug-42');
  assert.equal(e.tunnelEndpoint, undefined);
  assert.equal(e.vni, undefined);
  assert.equal(e.message, 'debug 42: arg1 0xc0a83202 arg2 1234 arg3 0');
});

test('decodes a policy verdict captured from bpf_lxc.o: endpoint, direction, identity, port, match kind, cookie', () => {
  const e = decodeEvent(POLICY_VERDICT_ALLOW);
  assert.equal(e.type, 'policy-verdict');
  if (e.type !== 'policy-verdict') return;
  assert.deepEqual(
    { endpointId: e.endpointId, direction: e.direction, remoteLabel: e.remoteLabel, verdict: e.verdict, reason: e.reason, reasonText: e.reasonText, denyKind: e.denyKind },
    { endpointId: 8, direction: 'ingress', remoteLabel: 1234, verdict: 'allow', reason: 0, reasonText: 'allowed', denyKind: undefined },
  );
  assert.deepEqual([e.proto, e.protoText, e.dstPort], [6, 'TCP', 80]);
  assert.deepEqual([e.match, e.matchText, e.cookie], [2, 'L3-L4', 77]);
  assert.equal(e.source, 7, 'the program that ran: endpoint 7 checks 8\'s ingress before delivering');
  assert.equal(e.summary, '10.0.1.5:40000 -> 10.0.1.6:80 TCP SYN');
  // The same record as a denial by a deny entry, and by no entry.
  const denied = Buffer.from(POLICY_VERDICT_ALLOW);
  denied[POLICY_VERDICT_NOTIFY.fields.verdict] = 181;
  const d = decodeEvent(denied);
  assert.ok(d.type === 'policy-verdict' && d.verdict === 'deny' && d.denyKind === 'rule' && d.reasonText === 'Policy denied by denylist');
  denied[POLICY_VERDICT_NOTIFY.fields.verdict] = 133;
  denied[POLICY_VERDICT_NOTIFY.fields.match_type] = 0;
  const n = decodeEvent(denied);
  assert.ok(n.type === 'policy-verdict' && n.denyKind === 'default' && n.matchText === 'none' && n.reasonText === 'Policy denied');
});

test('rejects truncated, unknown and future records with E_EVENT_DECODE', () => {
  const badDir = Buffer.from(POLICY_VERDICT_ALLOW);
  badDir[POLICY_VERDICT_NOTIFY.fields.dir] = 3;
  const cases: [Buffer, RegExp][] = [
    [DROP_INVALID_SIP.subarray(0, 10), /record of 10 bytes is too short for a header/],
    [Buffer.concat([Buffer.from([3]), DROP_INVALID_SIP.subarray(1)]), /unknown event type 3/],
    [DEBUG_ENCAP.subarray(0, 60), /record of 60 bytes is shorter than the 176-byte debug record/],
    [Buffer.concat([DROP_INVALID_SIP.subarray(0, 14), Buffer.from([1]), DROP_INVALID_SIP.subarray(15)]), /version 1 is not supported \(want 2\)/],
    [Buffer.concat([DROP_INVALID_SIP.subarray(0, 12), Buffer.from([129, 0]), DROP_INVALID_SIP.subarray(14)]), /claims 129 captured bytes/],
    [badDir, /policy verdict direction 3 is neither ingress/],
  ];
  for (const [rec, re] of cases) {
    assert.throws(() => decodeEvent(rec), (err: unknown) => err instanceof MembraneError && err.code === 'E_EVENT_DECODE' && re.test(err.message), String(re));
  }
});

test('every record type has the same size with the packet at the same offset', () => {
  // events.h keeps all records 176 bytes with data[] at 48, so a reader can
  // size its reads and find the packet without knowing the type.
  for (const l of [DROP_NOTIFY, TRACE_NOTIFY, DEBUG_NOTIFY, POLICY_VERDICT_NOTIFY]) {
    assert.equal(l.size, 176, l.name);
    assert.equal(l.fields.data, 48, `${l.name}.data`);
  }
  assert.deepEqual(DEBUG_NOTIFY.fields, { hdr: 0, arg1: 24, arg2: 28, arg3: 32, ifindex: 36, pad: 40, data: 48 }, 'offsets pinned by the _Static_asserts in events.h');
});

function frame(ethertype: number, l3: number[]): Buffer {
  return Buffer.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, ethertype >> 8, ethertype & 0xff, ...l3]);
}
function ipv4(proto: number, l4: number[], fragOff = 0): number[] {
  return [0x45, 0, 0, 40, 0, 0, fragOff >> 8, fragOff & 0xff, 64, proto, 0, 0, 10, 0, 1, 5, 10, 0, 2, 7, ...l4];
}

test('summarizes TCP, UDP, ICMP, ARP and damaged frames', () => {
  const syn = ipv4(6, [0xa0, 0x28, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff]);
  assert.equal(summarizePacket(frame(0x0800, syn)), '10.0.1.5:41000 -> 10.0.2.7:80 TCP SYN');
  const synack = [...syn];
  synack[20 + 13] = 0x12;
  assert.equal(summarizePacket(frame(0x0800, synack)), '10.0.1.5:41000 -> 10.0.2.7:80 TCP SYN|ACK');
  assert.equal(summarizePacket(frame(0x0800, ipv4(17, [0x9c, 0x40, 0, 53, 0, 8, 0, 0]))), '10.0.1.5:40000 -> 10.0.2.7:53 UDP');
  assert.equal(summarizePacket(frame(0x0800, ipv4(1, [0, 0, 0, 0]))), '10.0.1.5 -> 10.0.2.7 ICMP echo-reply');
  assert.equal(summarizePacket(frame(0x0800, ipv4(1, [3, 4, 0, 0]))), '10.0.1.5 -> 10.0.2.7 ICMP dest-unreachable code 4');
  assert.equal(summarizePacket(frame(0x0800, ipv4(47, []))), '10.0.1.5 -> 10.0.2.7 proto 47');
  assert.equal(summarizePacket(frame(0x0800, ipv4(6, [0, 1], 0x10))), '10.0.1.5 -> 10.0.2.7 IPv4 fragment (proto 6)');
  assert.equal(summarizePacket(frame(0x0800, ipv4(6, [0, 1]))), '10.0.1.5 -> 10.0.2.7 TCP (truncated)');
  assert.equal(summarizePacket(frame(0x0800, [0x45, 0, 0])), 'IPv4 (truncated)');
  const arp = [0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 5, 10, 0, 1, 5, 0, 0, 0, 0, 0, 0, 10, 0, 1, 1];
  assert.equal(summarizePacket(frame(0x0806, arp)), 'ARP who-has 10.0.1.1 tell 10.0.1.5');
  const reply = [...arp];
  reply[7] = 2;
  assert.equal(summarizePacket(frame(0x0806, reply)), 'ARP reply 10.0.1.5 is-at 02:00:00:00:00:05');
  assert.equal(summarizePacket(frame(0x86dd, [0x60])), 'IPv6');
  assert.equal(summarizePacket(frame(0x002e, [])), '802.3 frame, length 46');
  assert.equal(summarizePacket(frame(0x88cc, [])), 'ethertype 0x88cc');
  assert.equal(summarizePacket(Buffer.alloc(0)), 'no packet data');
});
