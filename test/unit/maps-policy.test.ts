// The policy map codecs (src/datapath/maps/policy.ts): key and value bytes,
// prefix lengths for wildcards, port ranges as prefix blocks, and the
// normalization that keeps "deny wins" true for the datapath's LPM lookup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  allowAll, ALLOW_ALL, decodeEntry, decodeKey, describeEntry, encodeEntry, encodeKey, encodeValue, entryPrefixLen, normalizePolicyEntries,
  policyMapKernelName, policyMapName, portRangeBlocks, portRangeOf, POLICY_F_DENY, PROTO_ICMP, PROTO_TCP, PROTO_UDP, type PolicyMapEntry,
} from '../../src/datapath/maps/policy.ts';
import { MapCodecError } from '../../src/datapath/maps/layout.ts';

const e = (o: Partial<PolicyMapEntry>): PolicyMapEntry => ({ identity: 0, egress: false, protocol: 0, port: 0, portPrefixLen: 0, deny: false, ...o });

test('key bytes: prefixlen, identity (LE), direction, protocol, port in network order', () => {
  const k = encodeKey(e({ identity: 1234, egress: true, protocol: PROTO_TCP, port: 80, portPrefixLen: 16 }));
  assert.equal(k.toString('hex'), [
    '40000000', // prefixlen 64
    'd2040000', // 1234
    '01', '06', '0050',
  ].join(''));
});

test('prefix lengths: any protocol 40, any port 48, one port 64, a block 48 + bits', () => {
  assert.equal(entryPrefixLen({ protocol: 0, portPrefixLen: 0 }), 40);
  assert.equal(entryPrefixLen({ protocol: PROTO_UDP, portPrefixLen: 0 }), 48);
  assert.equal(entryPrefixLen({ protocol: PROTO_TCP, portPrefixLen: 16 }), 64);
  assert.equal(entryPrefixLen({ protocol: PROTO_TCP, portPrefixLen: 6 }), 54);
  assert.equal(encodeKey(allowAll(false)).readUInt32LE(0), 40);
});

test('value bytes: deny flag and cookie', () => {
  assert.equal(encodeValue({ deny: true, cookie: 7 }).toString('hex'), '0100000007000000');
  assert.equal(encodeValue({ deny: false }).toString('hex'), '0000000000000000');
  assert.equal(encodeValue({ deny: true })[0], POLICY_F_DENY);
});

test('round trip', () => {
  for (const x of [
    e({}), e({ egress: true }), e({ identity: 5678, protocol: PROTO_UDP }), e({ identity: 2, protocol: PROTO_TCP, port: 443, portPrefixLen: 16, deny: true, cookie: 99 }),
    e({ protocol: PROTO_TCP, port: 1024, portPrefixLen: 6 }), e({ protocol: PROTO_ICMP, port: 8, portPrefixLen: 16 }),
  ]) {
    const { key, value } = encodeEntry(x);
    assert.deepEqual(decodeEntry(key, value), { ...x, cookie: x.cookie ?? 0 });
  }
});

test('decoding ignores bits beyond the prefix and refuses prefixes no entry has', () => {
  const k = encodeKey(e({ protocol: PROTO_TCP, port: 1024, portPrefixLen: 6 }));
  k.writeUInt16BE(1024 + 5, 10);
  assert.equal(decodeKey(k).port, 1024);
  const bad = encodeKey(e({}));
  bad.writeUInt32LE(44, 0);
  assert.throws(() => decodeKey(bad), /prefix length 44/);
  assert.throws(() => decodeKey(Buffer.alloc(8)), MapCodecError);
});

test('invalid entries are refused with the field named', () => {
  assert.throws(() => encodeKey(e({ port: 80, portPrefixLen: 16 })), /a port needs a protocol/);
  assert.throws(() => encodeKey(e({ protocol: PROTO_TCP, port: 70000, portPrefixLen: 16 })), /policy port: 70000/);
  assert.throws(() => encodeKey(e({ protocol: PROTO_TCP, port: 1025, portPrefixLen: 6 })), /bits below its prefix/);
  assert.throws(() => encodeKey(e({ protocol: 300 })), /policy protocol/);
  assert.throws(() => encodeKey(e({ identity: -1 })), /policy identity/);
  assert.throws(() => encodeKey(e({ protocol: PROTO_TCP, portPrefixLen: 17 })), /prefix length/);
});

test('port ranges become the fewest aligned blocks, covering exactly the range', () => {
  assert.deepEqual(portRangeBlocks(80, 80), [{ port: 80, portPrefixLen: 16 }]);
  assert.deepEqual(portRangeBlocks(0, 65535), [{ port: 0, portPrefixLen: 0 }]);
  assert.deepEqual(portRangeBlocks(1024, 2047), [{ port: 1024, portPrefixLen: 6 }]);
  assert.deepEqual(portRangeBlocks(8000, 8080), [{ port: 8000, portPrefixLen: 10 }, { port: 8064, portPrefixLen: 12 }, { port: 8080, portPrefixLen: 16 }]);
  for (const [a, b] of [[1, 65535], [3, 17], [8000, 8080], [1023, 1025], [32768, 60999]]) {
    const blocks = portRangeBlocks(a, b);
    const covered: number[] = [];
    for (const bl of blocks) {
      const r = portRangeOf(bl);
      for (let p = r.first; p <= r.last; p++) covered.push(p);
    }
    assert.deepEqual(covered, Array.from({ length: b - a + 1 }, (_, i) => a + i), `${a}-${b}`);
    assert.ok(blocks.length <= 30, `${a}-${b}: ${blocks.length} blocks`);
  }
  assert.throws(() => portRangeBlocks(10, 5), /port range 10-5/);
});

test('normalize: a deny for the same key wins over an allow', () => {
  const out = normalizePolicyEntries([e({ identity: 9, protocol: PROTO_TCP, port: 80, portPrefixLen: 16 }), e({ identity: 9, protocol: PROTO_TCP, port: 80, portPrefixLen: 16, deny: true })]);
  assert.deepEqual(out.map((x) => x.deny), [true]);
});

test('normalize: an allow more specific than a deny of the same identity and direction becomes a deny', () => {
  const out = normalizePolicyEntries([
    e({ identity: 9, protocol: PROTO_TCP, deny: true }), // TCP any port
    e({ identity: 9, protocol: PROTO_TCP, port: 80, portPrefixLen: 16 }), // covered
    e({ identity: 9, protocol: PROTO_UDP, port: 53, portPrefixLen: 16 }), // other protocol
    e({ identity: 10, protocol: PROTO_TCP, port: 80, portPrefixLen: 16 }), // other identity: the datapath's two lookups handle it
    e({ identity: 9, egress: true, protocol: PROTO_TCP, port: 80, portPrefixLen: 16 }), // other direction
  ]);
  assert.deepEqual(out.map((x) => `${describeEntry(x)}`), [
    'ingress 9 TCP any deny', 'ingress 9 TCP 80 deny', 'ingress 9 UDP 53', 'ingress 10 TCP 80', 'egress 9 TCP 80',
  ]);
  const blocks = normalizePolicyEntries([e({ identity: 9, protocol: PROTO_TCP, port: 1024, portPrefixLen: 6, deny: true }), e({ identity: 9, protocol: PROTO_TCP, port: 1500, portPrefixLen: 16 })]);
  assert.equal(blocks[1].deny, true, 'a port inside a denied block');
  const anyProto = normalizePolicyEntries([e({ identity: 9, deny: true }), e({ identity: 9, protocol: PROTO_UDP })]);
  assert.equal(anyProto[1].deny, true, 'a protocol under a denied "any protocol"');
});

test('allow-all and names', () => {
  assert.deepEqual(ALLOW_ALL.map(describeEntry), ['ingress any any', 'egress any any']);
  assert.equal(describeEntry(e({ identity: 7, protocol: PROTO_TCP, port: 8064, portPrefixLen: 12 })), 'ingress 7 TCP 8064-8079');
  assert.equal(policyMapName(7), 'cilium_policy_v2_00007');
  assert.ok(policyMapKernelName(4095).length <= 15);
});
