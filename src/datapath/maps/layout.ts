// Byte layouts of the C structs shared with the datapath (bpf/lib/maps.h,
// bpf/lib/events.h). The codecs read and write fields at these offsets, and
// test/unit/maps-btf-layout.test.ts checks every layout against the BTF of the
// compiled objects, so the C and TypeScript sides cannot drift apart.
import type { ErrorCode } from '../../shared/error-codes.ts';
import { formatIPv4, parseIPv4 } from '../../shared/ip.ts';

/**
 * A map key or value that cannot be encoded (a number out of range, a bad
 * address) or decoded (a size or family this build does not know: a pin
 * left by another version). Still a RangeError for callers that test for
 * one, with a catalogue code so the CLI and API answer it properly.
 */
export class MapCodecError extends RangeError {
  readonly code: ErrorCode = 'E_MAP_CODEC';
  constructor(message: string) {
    super(message);
    this.name = 'MapCodecError';
  }
}

/** A C struct: its name in BTF, sizeof, and the byte offset of every member. */
export interface StructLayout {
  readonly name: string;
  readonly size: number;
  readonly fields: Readonly<Record<string, number>>;
}

export function defineLayout<F extends Record<string, number>>(name: string, size: number, fields: F): StructLayout & { readonly fields: Readonly<F> } {
  return Object.freeze({ name, size, fields: Object.freeze(fields) });
}

/** Throws unless `buf` holds exactly one `layout` (map keys/values have fixed sizes). */
export function expectSize(what: string, layout: StructLayout, buf: Uint8Array): void {
  if (buf.length !== layout.size) {
    throw new MapCodecError(`decode ${what}: want ${layout.size} bytes (struct ${layout.name}), got ${buf.length}`);
  }
}

export function checkU32(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new MapCodecError(`${what}: ${v} is not an unsigned 32-bit integer`);
  return v;
}

export function checkU16(what: string, v: number): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new MapCodecError(`${what}: ${v} is not an unsigned 16-bit integer`);
  return v;
}

/** Writes dotted-quad `ip` as 4 bytes in network order. */
export function writeIPv4(buf: Buffer, off: number, ip: string): void {
  buf.writeUInt32BE(parseIPv4(ip), off);
}

/** Reads 4 network-order bytes as dotted-quad text. */
export function readIPv4(buf: Uint8Array, off: number): string {
  return formatIPv4(Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength).readUInt32BE(off));
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export const ZERO_MAC = '00:00:00:00:00:00';

export function writeMac(buf: Buffer, off: number, mac: string): void {
  if (!MAC_RE.test(mac)) throw new MapCodecError(`"${mac}" is not a MAC address (want xx:xx:xx:xx:xx:xx)`);
  mac.split(':').forEach((p, i) => { buf[off + i] = parseInt(p, 16); });
}

/** Lower-case colon-separated MAC. */
export function readMac(buf: Uint8Array, off: number): string {
  return Array.from(buf.subarray(off, off + 6), (b) => b.toString(16).padStart(2, '0')).join(':');
}
