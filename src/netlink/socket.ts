// The only place Membrane opens a netlink socket (NETLINK_ROUTE). Synchronous
// by design: every call blocks until the kernel has answered; rtnetlink ops
// are sub-millisecond except veth deletion (~16 ms, RCU sync in the kernel).
// One request in flight at a time; replies are matched to it by sequence
// number, so a late reply to an abandoned request is skipped, never misread.
// Wire traffic is published on diagnostics_channel "membrane:netlink".
import { channel } from 'node:diagnostics_channel';
import { KernelError, MembraneError } from '../shared/errors.ts';
import { check, errno, libc } from '../shared/libc.ts';
import { decodeDone, decodeError, extAckText } from './wire/error-msg.ts';
import {
  encodeMsg, msgTypeName, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP,
  NLMSG_OVERRUN, parseMsgs, type NlMsg,
} from './wire/header.ts';
import { AF_NETLINK } from './wire/inet.ts';

const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_SOCKET = 1;
const SO_RCVBUF = 8;
const SO_RCVTIMEO = 20;
const SO_RCVBUFFORCE = 33;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const NETLINK_GET_STRICT_CHK = 12;
const MSG_TRUNC = 0x20;
const EINTR = 4;
const EAGAIN = 11;
const EMSGSIZE = 90;
const ETIMEDOUT = 110;

/** Kernel dump datagrams are at most ~32 KiB (netlink_recvmsg caps them); this leaves room for one oversized message. */
const RECV_BUF = 128 * 1024;
/** Socket receive buffer: large enough that a burst of replies is never dropped. */
const SO_RCVBUF_BYTES = 4 * 1024 * 1024;
/** A reply that does not come within this time means something is badly wrong; fail instead of hanging the agent. */
const RECV_TIMEOUT_S = 30;
/** How many times a dump that the kernel marked NLM_F_DUMP_INTR is restarted before giving up. */
const DUMP_ATTEMPTS = 5;

const wire = channel('membrane:netlink');

/** A dump that kept being interrupted by concurrent changes; `partial` holds the last (inconsistent) result. */
export class DumpInterruptedError extends MembraneError {
  readonly partial: NlMsg[];
  constructor(op: string, attempts: number, partial: NlMsg[]) {
    super(`${op}: dump interrupted by concurrent changes ${attempts} times in a row`, { code: 'E_DUMP_INTERRUPTED' });
    this.partial = partial;
  }
}

function setInt(fd: number, level: number, opt: number, value: number): number {
  const v = Buffer.alloc(4);
  v.writeInt32LE(value);
  return libc.setsockopt(fd, level, opt, v, 4);
}

/**
 * @internal The two syscalls a NetlinkSocket needs. The real one is a
 * NETLINK_ROUTE fd; unit tests substitute a scripted fake to exercise the
 * reply loop (stale replies, DUMP_INTR retries, errors) without root.
 */
export interface Transport {
  /** Sends one datagram. `op` names the request for errors. */
  send(msg: Buffer, op: string): void;
  /** Blocks for the next datagram and returns a copy of it. */
  recv(op: string): Buffer;
  close(): void;
}

/** The kernel transport: a NETLINK_ROUTE socket driven through koffi. */
class FdTransport implements Transport {
  #fd: number;
  readonly #buf = Buffer.alloc(RECV_BUF);

  constructor(fd: number) {
    this.#fd = fd;
  }

  send(msg: Buffer, op: string): void {
    for (;;) {
      // NULL address: the kernel (portid 0) is the default destination.
      if (Number(libc.sendto(this.#fd, msg, msg.length, 0, null, 0)) >= 0) return;
      const e = errno();
      if (e !== EINTR) throw new KernelError(`${op}: send`, e);
    }
  }

  recv(op: string): Buffer {
    for (;;) {
      // MSG_TRUNC makes recv return the datagram's real length, so truncation is detected.
      const n = Number(libc.recv(this.#fd, this.#buf, this.#buf.length, MSG_TRUNC));
      if (n < 0) {
        const e = errno();
        if (e === EINTR) continue; // SO_RCVTIMEO sockets are not restarted after a signal
        if (e === EAGAIN) throw new KernelError(op, ETIMEDOUT, `no reply from the kernel within ${RECV_TIMEOUT_S} s`);
        throw new KernelError(`${op}: recv`, e);
      }
      if (n > this.#buf.length) throw new KernelError(op, EMSGSIZE, `reply of ${n} bytes exceeds the ${this.#buf.length}-byte receive buffer`);
      return Buffer.from(this.#buf.subarray(0, n)); // copy: the receive buffer is reused
    }
  }

  close(): void {
    libc.close(this.#fd);
  }
}

export class NetlinkSocket {
  #t: Transport | undefined;
  #seq = 0;
  /** NETLINK_GET_STRICT_CHK is on: the kernel applies filters given in dump requests (Linux >= 4.20). */
  readonly strict: boolean;

  /** @internal Use open(); tests pass a fake Transport. */
  constructor(transport: Transport, strict: boolean) {
    this.#t = transport;
    this.strict = strict;
  }

  /**
   * Opens a NETLINK_ROUTE socket in the calling thread's current network
   * namespace (a socket's netns is fixed at creation). The caller owns it and
   * must close() it. Throws KernelError if socket() or bind() fails.
   */
  static open(): NetlinkSocket {
    const fd = check('socket AF_NETLINK NETLINK_ROUTE', libc.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) as number);
    try {
      // Extended ack (4.12+): the kernel explains refusals in text. CAP_ACK: errors
      // echo only our header, not the whole request. Both are optional niceties.
      setInt(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
      setInt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
      const strict = setInt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1) === 0;
      // RCVBUFFORCE ignores net.core.rmem_max but needs CAP_NET_ADMIN.
      if (setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, SO_RCVBUF_BYTES) < 0) setInt(fd, SOL_SOCKET, SO_RCVBUF, SO_RCVBUF_BYTES);
      const tv = Buffer.alloc(16); // struct timeval { long tv_sec; long tv_usec; }
      tv.writeBigInt64LE(BigInt(RECV_TIMEOUT_S), 0);
      check('setsockopt SO_RCVTIMEO', libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tv, 16) as number);
      const sa = Buffer.alloc(12); // struct sockaddr_nl { u16 family; u16 pad; u32 pid (0: kernel assigns); u32 groups; }
      sa.writeUInt16LE(AF_NETLINK, 0);
      check('bind netlink socket', libc.bind(fd, sa, 12) as number);
      return new NetlinkSocket(new FdTransport(fd), strict);
    } catch (err) {
      libc.close(fd);
      throw err;
    }
  }

  get closed(): boolean {
    return this.#t === undefined;
  }

  /** Closes the socket; closing twice is harmless. */
  close(): void {
    this.#t?.close();
    this.#t = undefined;
  }

  /**
   * Sends one request (NLM_F_REQUEST|NLM_F_ACK are added) and reads until its
   * ACK. Returns the messages that came before the ACK (the answer to a GET).
   * Throws KernelError(op = "<RTM_TYPE> <subject>", errno, ext-ack text) when the
   * kernel refuses, WireError if a reply cannot be decoded, E_CLOSED after close().
   */
  request(type: number, flags: number, payload: Buffer, subject?: string): NlMsg[] {
    const op = opName(type, subject);
    const seq = this.#send(type, flags | NLM_F_REQUEST | NLM_F_ACK, payload, op);
    const out: NlMsg[] = [];
    for (;;) {
      for (const m of this.#recv(op)) {
        // A reply to an earlier request that was abandoned (an exception mid-dump) is skipped.
        if (m.seq !== seq || m.type === NLMSG_NOOP) continue;
        if (m.type === NLMSG_ERROR) {
          const e = decodeError(m);
          if (e.error === 0) return out;
          throw new KernelError(op, e.error, extAckText(e.extAck));
        }
        if (m.type === NLMSG_DONE) return out;
        if (m.type === NLMSG_OVERRUN) throw new KernelError(op, EMSGSIZE, 'netlink overrun');
        out.push(m);
      }
    }
  }

  /**
   * Dumps a table (NLM_F_DUMP) and returns every message up to NLMSG_DONE.
   * A dump the kernel flags NLM_F_DUMP_INTR (the table changed meanwhile) is
   * restarted, up to 5 attempts, then DumpInterruptedError is thrown.
   */
  dump(type: number, payload: Buffer, subject?: string): NlMsg[] {
    const op = opName(type, subject);
    let out: NlMsg[] = [];
    for (let attempt = 1; attempt <= DUMP_ATTEMPTS; attempt++) {
      const seq = this.#send(type, NLM_F_REQUEST | NLM_F_DUMP, payload, op);
      out = [];
      let interrupted = false;
      let done = false;
      while (!done) {
        for (const m of this.#recv(op)) {
          if (m.seq !== seq || m.type === NLMSG_NOOP) continue;
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === NLMSG_DONE) {
            const d = decodeDone(m);
            if (d.error < 0) throw new KernelError(op, d.error, extAckText(d.extAck));
            done = true;
            break;
          }
          if (m.type === NLMSG_ERROR) {
            const e = decodeError(m);
            if (e.error < 0) throw new KernelError(op, e.error, extAckText(e.extAck));
            done = true;
            break;
          }
          out.push(m);
        }
      }
      if (!interrupted) return out;
    }
    throw new DumpInterruptedError(op, DUMP_ATTEMPTS, out);
  }

  #send(type: number, flags: number, payload: Buffer, op: string): number {
    if (!this.#t) throw new MembraneError(`${op}: netlink handle is closed`, { code: 'E_CLOSED' });
    this.#seq = (this.#seq + 1) >>> 0 || 1;
    const msg = encodeMsg({ type, flags, seq: this.#seq, payload });
    if (wire.hasSubscribers) wire.publish({ direction: 'send', bytes: msg });
    this.#t.send(msg, op);
    return this.#seq;
  }

  #recv(op: string): NlMsg[] {
    const bytes = this.#t!.recv(op);
    if (wire.hasSubscribers) wire.publish({ direction: 'recv', bytes });
    return parseMsgs(bytes);
  }
}

function opName(type: number, subject?: string): string {
  return subject ? `${msgTypeName(type)} ${subject}` : msgTypeName(type);
}
