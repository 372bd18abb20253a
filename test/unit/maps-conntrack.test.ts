// The conntrack codecs (src/datapath/maps/conntrack.ts): tuple and entry
// bytes as bpf/lib/maps.h lays them out, the NAT room, names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CT_ANY_MAP_NAME, CT_ENTRY_F_NAT, CT_ENTRY_F_SEEN_NON_SYN, CT_TCP_MAP_NAME, ctMapFor, decodeKey, decodeValue, describeTuple, encodeKey, encodeValue,
  entryFlagNames, monotonicSeconds, tcpFlagNames, type CtTuple,
} from '../../src/datapath/maps/conntrack.ts';
import { MapCodecError } from '../../src/datapath/maps/layout.ts';

const t: CtTuple = { saddr: '10.0.1.5', daddr: '10.0.1.6', sport: 40000, dport: 80, proto: 6, dir: 'in' };

test('tuple bytes: addresses and ports in network order, protocol, side', () => {
  assert.equal(encodeKey(t).toString('hex'), '0a0001050a0001069c400050' + '06' + '01' + '0000');
  assert.deepEqual(decodeKey(encodeKey(t)), t);
  assert.equal(encodeKey({ ...t, dir: 'out' })[13], 0);
  const bad = encodeKey(t);
  bad[13] = 7;
  assert.throws(() => decodeKey(bad), /flags 7/);
  assert.throws(() => decodeKey(Buffer.alloc(14)), MapCodecError);
});

test('entry bytes: lifetime, created, flags, TCP flags seen, identity; NAT fields only with the NAT flag', () => {
  const v = encodeValue({ lifetime: 1000, created: 940, flags: CT_ENTRY_F_SEEN_NON_SYN, txFlagsSeen: 0x12, rxFlagsSeen: 0x10, srcSecId: 1234 });
  assert.equal(v.length, 64);
  assert.equal(v.readUInt32LE(16), 1000);
  assert.equal(v.readUInt32LE(20), 940);
  assert.equal(v.readUInt16LE(24), CT_ENTRY_F_SEEN_NON_SYN);
  assert.deepEqual([v[26], v[27]], [0x12, 0x10]);
  assert.equal(v.readUInt32LE(28), 1234);
  const d = decodeValue(v);
  assert.equal(d.nat, undefined);
  assert.deepEqual({ ...d, packets: undefined, bytes: undefined }, {
    lifetime: 1000, created: 940, flags: CT_ENTRY_F_SEEN_NON_SYN, txFlagsSeen: 0x12, rxFlagsSeen: 0x10, srcSecId: 1234, packets: undefined, bytes: undefined,
    policyRev: 0, policyRemote: 0, lastTxReport: 0, lastRxReport: 0,
  });
  const c = decodeValue(encodeValue({ lifetime: 1, policyRev: 7, policyRemote: 4321 }));
  assert.deepEqual([c.policyRev, c.policyRemote], [7, 4321]);
  // The trace reports' times (trace level 1): [52] original direction, [56] reply direction.
  const r = encodeValue({ lifetime: 1, lastTxReport: 900, lastRxReport: 905 });
  assert.deepEqual([r.readUInt32LE(52), r.readUInt32LE(56), r.readUInt32LE(60)], [900, 905, 0]);
  assert.deepEqual([decodeValue(r).lastTxReport, decodeValue(r).lastRxReport], [900, 905]);
  const n = decodeValue(encodeValue({ lifetime: 5, nat: { origAddr: '10.0.1.5', origPort: 40000, addr: '192.168.50.1', port: 61000 } }));
  assert.deepEqual(n.nat, { origAddr: '10.0.1.5', origPort: 40000, addr: '192.168.50.1', port: 61000 });
  assert.ok(n.flags & CT_ENTRY_F_NAT);
});

test('tables, names and the clock', () => {
  assert.equal(ctMapFor(6), CT_TCP_MAP_NAME);
  assert.equal(ctMapFor(17), CT_ANY_MAP_NAME);
  assert.equal(ctMapFor(1), CT_ANY_MAP_NAME);
  assert.equal(describeTuple(t), 'TCP IN 10.0.1.5:40000 -> 10.0.1.6:80');
  assert.equal(describeTuple({ ...t, proto: 1, sport: 0, dport: 0x4d, dir: 'out' }), 'ICMP OUT 10.0.1.5 -> 10.0.1.6 id 77');
  assert.deepEqual(tcpFlagNames(0x13), ['SYN', 'ACK', 'FIN']);
  assert.deepEqual(entryFlagNames(0x07), ['tx-closing', 'rx-closing', 'seen-non-syn']);
  const s = monotonicSeconds();
  assert.ok(Number.isInteger(s) && s > 0 && s < 2 ** 32);
});
