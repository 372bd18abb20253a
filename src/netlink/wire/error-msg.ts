// NLMSG_ERROR (struct nlmsgerr) and NLMSG_DONE payloads, with extended ack.
// nlmsgerr = {s32 error; struct nlmsghdr msg} then, unless NLM_F_CAPPED, the
// rest of the request we sent, then (NLM_F_ACK_TLVS) NLMSGERR_ATTR_* TLVs.
// error 0 is a plain ACK. NLMSG_DONE carries an s32 (a dump's final status)
// and may carry the same TLVs.
import { attrStr, attrU32, attrMap, readStr, readU32 } from './attr.ts';
import { NLMSG_HDRLEN, NLM_F_ACK_TLVS, NLM_F_CAPPED, type NlMsg } from './header.ts';
import { WireError } from './wire-error.ts';

export const NLMSGERR_ATTR_MSG = 1;
export const NLMSGERR_ATTR_OFFS = 2;
export const NLMSGERR_ATTR_COOKIE = 3;
export const NLMSGERR_ATTR_POLICY = 4;
export const NLMSGERR_ATTR_MISS_TYPE = 5;
export const NLMSGERR_ATTR_MISS_NEST = 6;

export interface ExtAck {
  /** Human-readable reason (NL_SET_ERR_MSG). */
  msg?: string;
  /** Offset in the request of the attribute the kernel blames. */
  offset?: number;
  /** Type of a required attribute that was missing, and the nest it was missing from. */
  missingType?: number;
  missingNest?: number;
}

export interface NlError {
  /** 0 for an ACK, otherwise a negative errno. */
  error: number;
  /** Header of the request this answers (its seq identifies it). */
  request: { len: number; type: number; flags: number; seq: number; pid: number };
  extAck?: ExtAck;
}

function decodeTlvs(b: Buffer): ExtAck | undefined {
  const m = attrMap(b);
  const ack: ExtAck = {};
  const msg = m.get(NLMSGERR_ATTR_MSG);
  if (msg) ack.msg = readStr(msg);
  const offs = m.get(NLMSGERR_ATTR_OFFS);
  if (offs) ack.offset = readU32(offs);
  const miss = m.get(NLMSGERR_ATTR_MISS_TYPE);
  if (miss) ack.missingType = readU32(miss);
  const nest = m.get(NLMSGERR_ATTR_MISS_NEST);
  if (nest) ack.missingNest = readU32(nest);
  return Object.keys(ack).length ? ack : undefined;
}

function encodeTlvs(a: ExtAck): Buffer {
  const parts: Buffer[] = [];
  if (a.msg !== undefined) parts.push(attrStr(NLMSGERR_ATTR_MSG, a.msg));
  if (a.offset !== undefined) parts.push(attrU32(NLMSGERR_ATTR_OFFS, a.offset));
  if (a.missingType !== undefined) parts.push(attrU32(NLMSGERR_ATTR_MISS_TYPE, a.missingType));
  if (a.missingNest !== undefined) parts.push(attrU32(NLMSGERR_ATTR_MISS_NEST, a.missingNest));
  return Buffer.concat(parts);
}

/** Decodes an NLMSG_ERROR message. */
export function decodeError(m: NlMsg): NlError {
  const p = m.payload;
  if (p.length < 4 + NLMSG_HDRLEN) throw new WireError(`NLMSG_ERROR payload of ${p.length} bytes, need ${4 + NLMSG_HDRLEN}`);
  const request = { len: p.readUInt32LE(4), type: p.readUInt16LE(8), flags: p.readUInt16LE(10), seq: p.readUInt32LE(12), pid: p.readUInt32LE(16) };
  const out: NlError = { error: p.readInt32LE(0), request };
  if (m.flags & NLM_F_ACK_TLVS) {
    // Without NLM_F_CAPPED the whole request is echoed before the TLVs.
    const echoed = m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : (request.len + 3) & ~3;
    const start = 4 + echoed;
    if (start > p.length) throw new WireError(`NLMSG_ERROR: echoed request of ${echoed} bytes runs past the ${p.length}-byte payload`);
    const ack = decodeTlvs(p.subarray(start));
    if (ack) out.extAck = ack;
  }
  return out;
}

/** Encodes an NLMSG_ERROR payload (capped form) — what the kernel sends with NETLINK_CAP_ACK; used by tests. */
export function encodeErrorPayload(e: NlError): { payload: Buffer; flags: number } {
  const head = Buffer.alloc(4 + NLMSG_HDRLEN);
  head.writeInt32LE(e.error, 0);
  head.writeUInt32LE(e.request.len, 4);
  head.writeUInt16LE(e.request.type, 8);
  head.writeUInt16LE(e.request.flags, 10);
  head.writeUInt32LE(e.request.seq >>> 0, 12);
  head.writeUInt32LE(e.request.pid >>> 0, 16);
  const tlvs = e.extAck ? encodeTlvs(e.extAck) : Buffer.alloc(0);
  return { payload: Buffer.concat([head, tlvs]), flags: NLM_F_CAPPED | (tlvs.length ? NLM_F_ACK_TLVS : 0) };
}

/** Decodes NLMSG_DONE: the dump's final status (0 or a negative errno) and any ext ack. */
export function decodeDone(m: NlMsg): { error: number; extAck?: ExtAck } {
  // Very old kernels sent an empty DONE; treat that as success.
  if (m.payload.length < 4) return { error: 0 };
  const error = m.payload.readInt32LE(0);
  const extAck = m.flags & NLM_F_ACK_TLVS ? decodeTlvs(m.payload.subarray(4)) : undefined;
  return extAck ? { error, extAck } : { error };
}

/** One line for KernelError: the message, else which attribute was missing or blamed. */
export function extAckText(a: ExtAck | undefined): string | undefined {
  if (!a) return undefined;
  if (a.msg) return a.msg;
  if (a.missingType !== undefined) return `missing attribute type ${a.missingType}${a.missingNest !== undefined ? ` in nest at offset ${a.missingNest}` : ''}`;
  if (a.offset !== undefined) return `bad attribute at offset ${a.offset}`;
  return undefined;
}

