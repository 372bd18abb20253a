// cilium_metrics codec: struct metrics_key / metrics_value and per-CPU values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeKey, decodePerCpuValues, decodeValue, describeKey, encodeKey, encodeValue, METRIC_EGRESS, METRIC_INGRESS, sumValues,
} from '../../src/datapath/maps/metrics.ts';

test('key: reason, dir, line (LE u16), file, 3 reserved bytes', () => {
  const k = encodeKey({ reason: 132, dir: METRIC_EGRESS, line: 77, file: 2 });
  assert.deepEqual([...k], [132, 2, 77, 0, 2, 0, 0, 0]);
  assert.deepEqual(decodeKey(k), { reason: 132, dir: 2, line: 77, file: 2 });
  assert.deepEqual(decodeKey(encodeKey({ reason: 0, dir: METRIC_INGRESS, line: 0x1234, file: 14 })), { reason: 0, dir: 1, line: 0x1234, file: 14 });
});

test('per-CPU values are split and summed', () => {
  const cpu0 = encodeValue({ count: 3n, bytes: 294n });
  const cpu1 = encodeValue({ count: 2n, bytes: 196n });
  const values = decodePerCpuValues(Buffer.concat([cpu0, cpu1]), 2);
  assert.deepEqual(values, [{ count: 3n, bytes: 294n }, { count: 2n, bytes: 196n }]);
  assert.deepEqual(sumValues(values), { count: 5n, bytes: 490n });
  assert.deepEqual(decodeValue(encodeValue({ count: 2n ** 63n, bytes: 1n })), { count: 2n ** 63n, bytes: 1n });
  assert.throws(() => decodePerCpuValues(cpu0, 2), /want 32 bytes for 2 CPUs, got 16/);
});

test('describeKey names reason, direction and drop site', () => {
  assert.deepEqual(describeKey({ reason: 132, dir: 2, line: 77, file: 2 }), { reason: 'Invalid source ip', direction: 'egress', site: 'bpf_lxc.c:77' });
  assert.deepEqual(describeKey({ reason: 0, dir: 1, line: 9, file: 3 }), { reason: 'Forwarded', direction: 'ingress', site: 'bpf_overlay.c:9' });
  assert.equal(describeKey({ reason: 250, dir: 3, line: 1, file: 99 }).site, 'file-99:1');
});
