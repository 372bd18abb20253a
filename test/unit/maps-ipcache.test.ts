// cilium_ipcache_v2 codec: byte layout of struct ipcache_key /
// remote_endpoint_info (bpf/lib/maps.h) and round trips.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeKey, decodeValue, encodeKey, encodeValue, ipcacheFlagNames } from '../../src/datapath/maps/ipcache.ts';

test('key: prefixlen counts the 32 static bits, IPv4 in network order in the first 4 address bytes', () => {
  const k = encodeKey('10.0.0.0/24');
  assert.equal(k.length, 24);
  assert.deepEqual([...k], [
    56, 0, 0, 0, // prefixlen 32 + 24, little-endian u32
    0, 0, // cluster_id
    0, // pad
    1, // family IPv4
    10, 0, 0, 0, ...new Array(12).fill(0),
  ]);
  assert.equal(k.readUInt32LE(0), 56);
  assert.equal(encodeKey('10.0.1.5').readUInt32LE(0), 64, 'a bare address is a /32 (prefixlen 64)');
  assert.equal(encodeKey('0.0.0.0/0').readUInt32LE(0), 32);
});

test('key round trip', () => {
  for (const c of ['10.0.0.0/24', '10.0.1.5/32', '0.0.0.0/0', '192.168.128.0/17', '255.255.255.255/32']) {
    assert.equal(decodeKey(encodeKey(c)), c);
  }
  assert.equal(decodeKey(encodeKey('10.0.1.5')), '10.0.1.5/32');
});

test('key rejects bad prefixes, host bits and other families', () => {
  assert.throws(() => encodeKey('10.0.0.1/24'), /host bits set \(did you mean 10\.0\.0\.0\/24\?\)/);
  assert.throws(() => encodeKey('10.0.0.0/33'), RangeError);
  assert.throws(() => encodeKey('fd00::/64'), RangeError);
  const v6 = encodeKey('10.0.0.0/8');
  v6[7] = 2;
  assert.throws(() => decodeKey(v6), /family 2 is not IPv4/);
  assert.throws(() => decodeKey(Buffer.alloc(20)), /want 24 bytes \(struct ipcache_key\), got 20/);
  const short = encodeKey('10.0.0.0/8');
  short.writeUInt32LE(20, 0);
  assert.throws(() => decodeKey(short), /prefixlen 20 is not 32\.\.64/);
});

test('value: identity LE u32, tunnel endpoint in network order, flags byte has_tunnel_ep/skip_tunnel', () => {
  const v = encodeValue({ identity: 0x12345, tunnelEndpoint: '192.168.0.2' });
  assert.equal(v.length, 12);
  assert.deepEqual([...v], [0x45, 0x23, 0x01, 0, 192, 168, 0, 2, 0, 0, 0, 0x02]);
  assert.equal(encodeValue({ identity: 2 })[11], 0, 'no tunnel endpoint: no flags');
  assert.equal(encodeValue({ identity: 6, tunnelEndpoint: '192.168.0.2', skipTunnel: true })[11], 0x03);
  assert.equal(encodeValue({ identity: 6, owner: 3 })[8], 3, 'owner: the byte after the tunnel endpoint');
  assert.throws(() => encodeValue({ identity: 6, owner: 256 }), /ipcache owner: 256 is not an unsigned 8-bit integer/);
});

test('value round trip and flag names', () => {
  const cases = [
    { identity: 2, skipTunnel: false, key: 0, owner: 0 },
    { identity: 1234, tunnelEndpoint: '192.168.0.2', skipTunnel: false, key: 0, owner: 2 },
    { identity: 6, tunnelEndpoint: '10.9.8.7', skipTunnel: true, key: 3, owner: 3 },
  ];
  for (const c of cases) assert.deepEqual(decodeValue(encodeValue(c)), c);
  assert.deepEqual(ipcacheFlagNames(decodeValue(encodeValue({ identity: 2 }))), ['<none>']);
  assert.deepEqual(ipcacheFlagNames({ tunnelEndpoint: '1.2.3.4', skipTunnel: true }), ['skiptunnel', 'hastunnel']);
});

test('value rejects identities that do not fit a u32 and bad tunnel endpoints', () => {
  assert.throws(() => encodeValue({ identity: -1 }), /not an unsigned 32-bit integer/);
  assert.throws(() => encodeValue({ identity: 2 ** 32 }), RangeError);
  assert.throws(() => encodeValue({ identity: 1, tunnelEndpoint: 'node-2' }), /not a valid IPv4 address/);
});
