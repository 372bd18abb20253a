// struct nlmsghdr and the message-type / flag constants of rtnetlink.
// A netlink datagram holds one or more messages, each 4-byte aligned:
// {u32 len, u16 type, u16 flags, u32 seq, u32 pid} followed by the payload.
import { align4 } from './attr.ts';
import { WireError } from './wire-error.ts';

export const NLMSG_HDRLEN = 16;

export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLMSG_OVERRUN = 4;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

const TYPE_NAMES: Record<number, string> = {
  [NLMSG_NOOP]: 'NLMSG_NOOP', [NLMSG_ERROR]: 'NLMSG_ERROR', [NLMSG_DONE]: 'NLMSG_DONE', [NLMSG_OVERRUN]: 'NLMSG_OVERRUN',
  [RTM_NEWLINK]: 'RTM_NEWLINK', [RTM_DELLINK]: 'RTM_DELLINK', [RTM_GETLINK]: 'RTM_GETLINK', [RTM_SETLINK]: 'RTM_SETLINK',
  [RTM_NEWADDR]: 'RTM_NEWADDR', [RTM_DELADDR]: 'RTM_DELADDR', [RTM_GETADDR]: 'RTM_GETADDR',
  [RTM_NEWROUTE]: 'RTM_NEWROUTE', [RTM_DELROUTE]: 'RTM_DELROUTE', [RTM_GETROUTE]: 'RTM_GETROUTE',
  [RTM_NEWNEIGH]: 'RTM_NEWNEIGH', [RTM_DELNEIGH]: 'RTM_DELNEIGH', [RTM_GETNEIGH]: 'RTM_GETNEIGH',
};

/** "RTM_NEWROUTE" for 24; unknown types read "nlmsg type N". */
export function msgTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `nlmsg type ${type}`;
}

// Flags common to all requests.
export const NLM_F_REQUEST = 0x01;
export const NLM_F_MULTI = 0x02;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
/** Set by the kernel on dump messages when the table changed during the dump. */
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP_FILTERED = 0x20;
// GET requests.
export const NLM_F_ROOT = 0x100;
export const NLM_F_MATCH = 0x200;
export const NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH;
// NEW requests.
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
export const NLM_F_APPEND = 0x800;
// Flags on NLMSG_ERROR / NLMSG_DONE replies.
/** The echoed request was cut to its header (NETLINK_CAP_ACK). */
export const NLM_F_CAPPED = 0x100;
/** Extended-ack TLVs follow (NETLINK_EXT_ACK). */
export const NLM_F_ACK_TLVS = 0x200;

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** View of the bytes after the header, up to nlmsg_len. */
  payload: Buffer;
}

/** One message: header (with nlmsg_len filled in) + payload, padded to 4 bytes. */
export function encodeMsg(m: { type: number; flags: number; seq: number; pid?: number; payload: Buffer }): Buffer {
  const len = NLMSG_HDRLEN + m.payload.length;
  const out = Buffer.alloc(align4(len));
  out.writeUInt32LE(len, 0);
  out.writeUInt16LE(m.type, 4);
  out.writeUInt16LE(m.flags, 6);
  out.writeUInt32LE(m.seq >>> 0, 8);
  out.writeUInt32LE((m.pid ?? 0) >>> 0, 12);
  m.payload.copy(out, NLMSG_HDRLEN);
  return out;
}

/** Splits a received datagram into messages. Throws WireError on a bad nlmsg_len. */
export function parseMsgs(buf: Buffer): NlMsg[] {
  const out: NlMsg[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= buf.length) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) {
      throw new WireError(`message at offset ${off}: nlmsg_len ${len} outside the ${buf.length}-byte datagram`);
    }
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}
