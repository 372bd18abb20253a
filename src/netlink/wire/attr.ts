// Netlink attributes (struct nlattr): 4-byte header {u16 len, u16 type} then the
// payload, padded to 4 bytes. Pure encode/decode over Buffer, no I/O.
// Nested attributes carry NLA_F_NESTED; decoding masks the flag bits off the
// type because the kernel sets them on some nests (nla_nest_start) and not on
// others (nla_nest_start_noflag, e.g. RTA_METRICS).
import { WireError } from './wire-error.ts';

export const NLA_HDRLEN = 4;
export const NLA_F_NESTED = 0x8000;
export const NLA_F_NET_BYTEORDER = 0x4000;
export const NLA_TYPE_MASK = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xffff;

/** Rounds up to the 4-byte netlink alignment (NLA_ALIGN / NLMSG_ALIGN). */
export function align4(n: number): number {
  return (n + 3) & ~3;
}

/** One encoded attribute: header, payload and zero padding. */
export function attr(type: number, payload: Buffer): Buffer {
  const len = NLA_HDRLEN + payload.length;
  if (len > 0xffff) throw new WireError(`attribute ${type}: payload of ${payload.length} bytes does not fit in nla_len`);
  const out = Buffer.alloc(align4(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, NLA_HDRLEN);
  return out;
}

/** A nested attribute whose payload is a list of attributes; sets NLA_F_NESTED. */
export function nest(type: number, children: Buffer[]): Buffer {
  return attr(type | NLA_F_NESTED, Buffer.concat(children));
}

export const attrU8 = (type: number, v: number): Buffer => attr(type, Buffer.from([v & 0xff]));
export function attrU16(type: number, v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return attr(type, b);
}
/** A big-endian (network order) u16, e.g. IFLA_VXLAN_PORT. */
export function attrBe16(type: number, v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return attr(type, b);
}
export function attrU32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return attr(type, b);
}
export function attrS32(type: number, v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return attr(type, b);
}
/** A NUL-terminated string (NLA_STRING / NLA_NUL_STRING both accept it). */
export const attrStr = (type: number, s: string): Buffer => attr(type, Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]));

/** A decoded attribute: type without flag bits, and a view of its payload. */
export interface Attr {
  type: number;
  nested: boolean;
  data: Buffer;
}

/**
 * Splits a buffer into attributes. Throws WireError on a length that is too
 * small or runs past the end; trailing bytes shorter than a header are ignored
 * (the kernel's nla_for_each_attr does the same).
 */
export function parseAttrs(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + NLA_HDRLEN <= buf.length) {
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    if (len < NLA_HDRLEN || off + len > buf.length) {
      throw new WireError(`attribute at offset ${off}: length ${len} outside the ${buf.length}-byte buffer`);
    }
    out.push({ type: rawType & NLA_TYPE_MASK, nested: (rawType & NLA_F_NESTED) !== 0, data: buf.subarray(off + NLA_HDRLEN, off + len) });
    off += align4(len);
  }
  return out;
}

/** Attributes by type; a repeated type keeps the last one (as nla_parse does). */
export function attrMap(buf: Buffer): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (const a of parseAttrs(buf)) m.set(a.type, a.data);
  return m;
}

function need(b: Buffer, n: number, what: string): Buffer {
  if (b.length < n) throw new WireError(`${what}: payload of ${b.length} bytes, need ${n}`);
  return b;
}
export const readU8 = (b: Buffer): number => need(b, 1, 'u8 attribute').readUInt8(0);
export const readU16 = (b: Buffer): number => need(b, 2, 'u16 attribute').readUInt16LE(0);
export const readBe16 = (b: Buffer): number => need(b, 2, 'be16 attribute').readUInt16BE(0);
export const readU32 = (b: Buffer): number => need(b, 4, 'u32 attribute').readUInt32LE(0);
export const readS32 = (b: Buffer): number => need(b, 4, 's32 attribute').readInt32LE(0);
/** A string attribute up to its first NUL (or the whole payload without one). */
export function readStr(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.toString('utf8', 0, nul < 0 ? b.length : nul);
}
