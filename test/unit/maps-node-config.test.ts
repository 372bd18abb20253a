// cilium_node_cfg codec: struct node_config (bpf/lib/maps.h), 64 bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkTraceLevel, decodeValue, encodeKey, encodeValue, type NodeConfig } from '../../src/datapath/maps/node-config.ts';

const cfg: NodeConfig = {
  hostIfindex: 3, netIfindex: 4, encapIfindex: 5, routerIp: '10.0.1.1', nodeIp: '192.168.0.1',
  hostMac: '02:cc:00:00:00:01', netMac: '02:cc:00:00:00:02', encapMac: '02:cc:00:00:00:03',
  endpointRoutes: false, traceLevel: 2, routeMtu: 1450, masquerade: false, nativeRouting: false, legacyHostRouting: false, nativeIfindex: 0,
};

test('layout: ifindexes, IPs in network order, flags, MACs at 8-byte slots, MTU, trace level', () => {
  const b = encodeValue(cfg);
  assert.equal(b.length, 64);
  assert.equal(b.readUInt32LE(0), 3);
  assert.equal(b.readUInt32LE(4), 4);
  assert.equal(b.readUInt32LE(8), 5);
  assert.deepEqual([...b.subarray(12, 16)], [10, 0, 1, 1]);
  assert.deepEqual([...b.subarray(16, 20)], [192, 168, 0, 1]);
  assert.equal(b.readUInt32LE(20), 0, 'no flags: the trace level has its own byte');
  assert.deepEqual([...b.subarray(24, 32)], [2, 0xcc, 0, 0, 0, 1, 0, 0]);
  assert.deepEqual([...b.subarray(32, 40)], [2, 0xcc, 0, 0, 0, 2, 0, 0]);
  assert.deepEqual([...b.subarray(40, 48)], [2, 0xcc, 0, 0, 0, 3, 0, 0]);
  assert.equal(b.readUInt32LE(48), 1450);
  assert.equal(b[52], 2, 'trace level');
  assert.deepEqual([...b.subarray(53)], new Array(11).fill(0));
  const routes = encodeValue({ ...cfg, endpointRoutes: true, traceLevel: 0 });
  assert.equal(routes.readUInt32LE(20), 0x01);
  assert.equal(routes[52], 0);
  const nat = encodeValue({ ...cfg, traceLevel: 0, masquerade: true, nativeRouting: true, nativeIfindex: 2 });
  assert.equal(nat.readUInt32LE(20), 0x04 | 0x08, 'masquerade and native-routing bits');
  assert.equal(encodeValue({ ...cfg, legacyHostRouting: true }).readUInt32LE(20), 0x10, 'legacy host routing bit');
  assert.equal(nat.readUInt32LE(56), 2, 'native device ifindex');
  assert.deepEqual([...nat.subarray(60)], new Array(4).fill(0));
  assert.deepEqual([...encodeKey()], [0, 0, 0, 0]);
});

test('round trip', () => {
  assert.deepEqual(decodeValue(encodeValue(cfg)), cfg);
  const other: NodeConfig = { ...cfg, endpointRoutes: true, traceLevel: 1, encapIfindex: 0 };
  assert.deepEqual(decodeValue(encodeValue(other)), other);
});

test('rejects bad input', () => {
  assert.throws(() => encodeValue({ ...cfg, routerIp: '10.0.1.256' }), /not a valid IPv4 address/);
  assert.throws(() => encodeValue({ ...cfg, hostIfindex: -3 }), /host ifindex: -3/);
  assert.throws(() => decodeValue(Buffer.alloc(56)), /want 64 bytes/);
  assert.throws(() => encodeValue({ ...cfg, traceLevel: 3 as never }), /trace level: 3 is not 0 \(off\), 1 \(per connection\) or 2 \(every packet\)/);
  assert.throws(() => checkTraceLevel('1'), /trace level: 1 is not/);
  assert.equal(checkTraceLevel(1), 1);
});

test('a trace level this build does not know reads as every packet, as the programs treat it', () => {
  const b = encodeValue(cfg);
  b[52] = 7;
  assert.equal(decodeValue(b).traceLevel, 2);
});
