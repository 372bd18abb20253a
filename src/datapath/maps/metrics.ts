// cilium_metrics: per-CPU packet/byte counters keyed by (reason, direction,
// source line, source file). Reason 0 counts forwards; any other reason is a
// drop code, and line/file name the drop site. Pure codecs; the caller reads
// the per-CPU values and sums them (sumValues). See bpf/lib/maps.h.
import { dropReasonText } from './drop-reasons.ts';
import { defineLayout, expectSize, MapCodecError } from './layout.ts';
import { formatSourceLocation } from './source-files.ts';

export const METRICS_MAP_NAME = 'cilium_metrics';
export const METRICS_MAX_ENTRIES = 1024;

export const METRICS_KEY = defineLayout('metrics_key', 8, { reason: 0, dir: 1, line: 2, file: 4, reserved: 5 });
export const METRICS_VALUE = defineLayout('metrics_value', 16, { count: 0, bytes: 8 });

export const METRIC_INGRESS = 1;
export const METRIC_EGRESS = 2;

export interface MetricsKey {
  /** 0 = forwarded, else the drop reason. */
  reason: number;
  /** METRIC_INGRESS or METRIC_EGRESS. */
  dir: number;
  /** Source line of the drop or forward site. */
  line: number;
  /** Source file id (source-files.ts). */
  file: number;
}

export interface MetricsValue {
  count: bigint;
  bytes: bigint;
}

export function encodeKey(k: MetricsKey): Buffer {
  const buf = Buffer.alloc(METRICS_KEY.size);
  buf[METRICS_KEY.fields.reason] = k.reason;
  buf[METRICS_KEY.fields.dir] = k.dir;
  buf.writeUInt16LE(k.line, METRICS_KEY.fields.line);
  buf[METRICS_KEY.fields.file] = k.file;
  return buf;
}

export function decodeKey(buf: Uint8Array): MetricsKey {
  expectSize('metrics key', METRICS_KEY, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    reason: b[METRICS_KEY.fields.reason],
    dir: b[METRICS_KEY.fields.dir],
    line: b.readUInt16LE(METRICS_KEY.fields.line),
    file: b[METRICS_KEY.fields.file],
  };
}

export function encodeValue(v: MetricsValue): Buffer {
  const buf = Buffer.alloc(METRICS_VALUE.size);
  buf.writeBigUInt64LE(v.count, METRICS_VALUE.fields.count);
  buf.writeBigUInt64LE(v.bytes, METRICS_VALUE.fields.bytes);
  return buf;
}

/** One CPU's value. */
export function decodeValue(buf: Uint8Array): MetricsValue {
  expectSize('metrics value', METRICS_VALUE, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { count: b.readBigUInt64LE(METRICS_VALUE.fields.count), bytes: b.readBigUInt64LE(METRICS_VALUE.fields.bytes) };
}

/**
 * Splits what a per-CPU map lookup returns (one value per possible CPU, each
 * rounded up to 8 bytes) into per-CPU values.
 */
export function decodePerCpuValues(buf: Uint8Array, possibleCpus: number): MetricsValue[] {
  const stride = Math.ceil(METRICS_VALUE.size / 8) * 8;
  if (buf.length !== stride * possibleCpus) {
    throw new MapCodecError(`decode metrics value: want ${stride * possibleCpus} bytes for ${possibleCpus} CPUs, got ${buf.length}`);
  }
  const out: MetricsValue[] = [];
  for (let cpu = 0; cpu < possibleCpus; cpu++) out.push(decodeValue(buf.subarray(cpu * stride, cpu * stride + METRICS_VALUE.size)));
  return out;
}

export function sumValues(values: Iterable<MetricsValue>): MetricsValue {
  let count = 0n;
  let bytes = 0n;
  for (const v of values) {
    count += v.count;
    bytes += v.bytes;
  }
  return { count, bytes };
}

export function directionName(dir: number): string {
  return dir === METRIC_INGRESS ? 'ingress' : dir === METRIC_EGRESS ? 'egress' : `dir-${dir}`;
}

/** Text for a listing row: reason text, direction and site, e.g. "Invalid source ip egress bpf_lxc.c:77". */
export function describeKey(k: MetricsKey): { reason: string; direction: string; site: string } {
  return { reason: dropReasonText(k.reason), direction: directionName(k.dir), site: formatSourceLocation(k.file, k.line) };
}
