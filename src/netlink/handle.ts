// A rtnetlink handle bound to one network namespace. The socket is opened
// inside that netns (a socket's netns is fixed at creation), so every later
// call acts there from any thread, without switching namespaces again.
import { withNetns } from '../shared/netns.ts';
import { NetlinkSocket } from './socket.ts';
import type { NlMsg } from './wire/header.ts';

export class NetlinkHandle {
  /** The netns given to open() (name under /run/netns or a path); undefined = the caller's netns at open time. */
  readonly netns?: string;
  #sock: NetlinkSocket;

  private constructor(sock: NetlinkSocket, netns?: string) {
    this.#sock = sock;
    if (netns !== undefined) this.netns = netns;
  }

  /**
   * Opens a handle for `netns` (a name under /run/netns, or a path such as
   * /proc/PID/ns/net or a CNI netns path); without one, for the current netns.
   * The caller owns the handle and must close() it (or `using`). Reusable for
   * any number of calls. Throws MembraneError E_NETNS if the netns does not
   * exist, KernelError if the socket cannot be opened.
   */
  static open(netns?: string): NetlinkHandle {
    const sock = withNetns(netns, () => NetlinkSocket.open());
    return new NetlinkHandle(sock, netns);
  }

  /** @internal For tests: a handle over an already-open socket (e.g. one with a fake transport). Takes ownership. */
  static fromSocket(sock: NetlinkSocket, netns?: string): NetlinkHandle {
    return new NetlinkHandle(sock, netns);
  }

  /** True when the kernel applies dump filters we send (NETLINK_GET_STRICT_CHK). */
  get strict(): boolean {
    return this.#sock.strict;
  }

  get closed(): boolean {
    return this.#sock.closed;
  }

  /** Closes the socket; later calls throw E_CLOSED. Closing twice is harmless. */
  close(): void {
    this.#sock.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /** @internal Used by the verbs: one request, answered by an ACK (see NetlinkSocket.request). */
  request(type: number, flags: number, payload: Buffer, subject?: string): NlMsg[] {
    return this.#sock.request(type, flags, payload, subject);
  }

  /** @internal Used by the verbs: a whole dump (see NetlinkSocket.dump). */
  dump(type: number, payload: Buffer, subject?: string): NlMsg[] {
    return this.#sock.dump(type, payload, subject);
  }
}
