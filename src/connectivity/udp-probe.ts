// The first-packet probe: UDP sockets opened inside a given netns from this
// process (through libc, so the socket lives in that netns whatever thread
// uses it later). A benchmark or test sends from a brand-new pod and sees
// the first datagram arrive elsewhere without spawning a process per packet
// (the probes in probes.ts spawn a tool such as ping per measurement).
import { check, libc } from '../shared/libc.ts';
import { withNetns } from '../shared/netns.ts';
import { parseIPv4 } from '../shared/ip.ts';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;

function sockaddr(ip: string, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_INET, 0);
  b.writeUInt16BE(port, 2);
  b.writeUInt32BE(parseIPv4(ip), 4);
  return b;
}

export class UdpProbe {
  private constructor(readonly fd: number) {}

  /** A non-blocking UDP socket in `netns`, bound to `port` if given. */
  static open(netns: string, port?: number): UdpProbe {
    const fd = withNetns(netns, () => check('socket', libc.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)));
    if (port !== undefined) {
      const a = sockaddr('0.0.0.0', port);
      check(`bind udp ${port}`, libc.bind(fd, a, a.length));
    }
    return new UdpProbe(fd);
  }

  send(ip: string, port: number, payload: Buffer): boolean {
    const a = sockaddr(ip, port);
    return libc.sendto(this.fd, payload, payload.length, 0, a, a.length) >= 0;
  }

  /** Every datagram waiting now (non-blocking). */
  drain(): Buffer[] {
    const out: Buffer[] = [];
    for (;;) {
      const buf = Buffer.alloc(2048);
      const n = Number(libc.recv(this.fd, buf, buf.length, MSG_DONTWAIT));
      if (n < 0) return out;
      out.push(buf.subarray(0, n));
    }
  }

  close(): void {
    libc.close(this.fd);
  }
}
