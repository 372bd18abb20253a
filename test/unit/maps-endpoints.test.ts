// cilium_lxc codec: struct endpoint_key / endpoint_info (bpf/lib/maps.h).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeEntry, decodeKey, decodeValue, encodeEntry, encodeKey, encodeValue, ENDPOINT_F_HOST, hostEndpoint,
  type EndpointEntry,
} from '../../src/datapath/maps/endpoints.ts';

const pod: EndpointEntry = {
  ip: '10.0.1.6', ifindex: 42, lxcId: 1834, flags: 0, mac: '02:00:00:00:00:06', nodeMac: '02:aa:00:00:00:06',
  secId: 0x10203, parentIfindex: 0,
};

test('key: address first, then family 1, key 0, cluster id 0', () => {
  const k = encodeKey('10.0.1.6');
  assert.equal(k.length, 20);
  assert.deepEqual([...k], [10, 0, 1, 6, ...new Array(12).fill(0), 1, 0, 0, 0]);
  assert.equal(decodeKey(k), '10.0.1.6');
  const v6 = Buffer.from(k);
  v6[16] = 2;
  assert.throws(() => decodeKey(v6), /family 2 is not IPv4/);
  assert.throws(() => encodeKey('10.0.1'), /encode endpoint key: "10\.0\.1" is not a valid IPv4 address/);
});

test('value: field offsets as struct endpoint_info', () => {
  const v = encodeValue(pod);
  assert.equal(v.length, 48);
  assert.equal(v.readUInt32LE(0), 42, 'ifindex');
  assert.equal(v.readUInt16LE(4), 0, 'unused');
  assert.equal(v.readUInt16LE(6), 1834, 'lxc_id');
  assert.equal(v.readUInt32LE(8), 0, 'flags');
  assert.equal(v.readUInt32LE(12), 0, 'rt_info');
  assert.deepEqual([...v.subarray(16, 24)], [2, 0, 0, 0, 0, 6, 0, 0], 'mac + pad');
  assert.deepEqual([...v.subarray(24, 32)], [2, 0xaa, 0, 0, 0, 6, 0, 0], 'node_mac + pad');
  assert.equal(v.readUInt32LE(32), 0x10203, 'sec_id');
  assert.equal(v.readUInt32LE(36), 0, 'parent_ifindex');
  assert.deepEqual([...v.subarray(40)], new Array(8).fill(0), 'pad[2]');
});

test('entry round trip, including a host IP entry', () => {
  const { key, value } = encodeEntry(pod);
  assert.deepEqual(decodeEntry(key, value), pod);
  const host = hostEndpoint('10.0.1.1');
  assert.equal(host.flags, ENDPOINT_F_HOST);
  assert.deepEqual(decodeEntry(encodeKey(host.ip), encodeValue(host)), host);
  assert.equal(decodeValue(encodeValue({ ...pod, mac: '02:AB:CD:EF:01:23' })).mac, '02:ab:cd:ef:01:23', 'MACs decode lower-case');
});

test('value rejects out-of-range fields and bad MACs', () => {
  assert.throws(() => encodeValue({ ...pod, lxcId: 70000 }), /endpoint id: 70000 is not an unsigned 16-bit integer/);
  assert.throws(() => encodeValue({ ...pod, mac: '02:00:00:00:00' }), /not a MAC address/);
  assert.throws(() => decodeValue(Buffer.alloc(40)), /want 48 bytes \(struct endpoint_info\), got 40/);
});
