// Node-local IPAM over the node's pod CIDR (Cilium's host-scope allocator).
// Network, broadcast and router addresses are never handed out. Allocation
// walks forward from a cursor instead of taking the lowest free address, so a
// just-released IP is the last to be reused: stale state keyed by IP (conntrack,
// peers' caches) has time to age out before another pod gets that address.
import { MembraneError } from '../shared/errors.ts';
import { broadcastOf, cidrContains, cidrSize, formatIPv4, parseCidr, parseIPv4, type Cidr } from '../shared/ip.ts';

export interface IpamState {
  /** Allocated pod IP -> owner (endpoint/container reference). */
  allocated: Record<string, string>;
  /** Offset in the CIDR where the next search starts. */
  cursor: number;
}

export class Ipam {
  private readonly cidr: Cidr;
  private readonly reserved: Set<number>;
  private readonly owners = new Map<number, string>();
  private cursor = 1;

  constructor(podCIDR: string, routerIP: string, state?: IpamState) {
    this.cidr = parseCidr(podCIDR);
    this.reserved = new Set([this.cidr.network, broadcastOf(this.cidr), parseIPv4(routerIP)]);
    if (state) {
      for (const [ip, owner] of Object.entries(state.allocated)) this.claim(ip, owner);
      this.cursor = state.cursor;
    }
  }

  /** Number of addresses pods can get (CIDR size less network, broadcast and router). */
  get capacity(): number {
    return cidrSize(this.cidr) - this.reserved.size;
  }

  get used(): number {
    return this.owners.size;
  }

  /** Takes a specific IP (restore after restart); throws if taken by another owner or not allocatable. */
  claim(ip: string, owner: string): void {
    const n = parseIPv4(ip);
    if (!cidrContains(this.cidr, n) || this.reserved.has(n)) {
      throw new MembraneError(`claim IP ${ip}`, { code: 'E_IPAM', cause: `not allocatable in ${this.cidr.text}` });
    }
    const cur = this.owners.get(n);
    if (cur !== undefined && cur !== owner) throw new MembraneError(`claim IP ${ip}`, { code: 'E_IPAM', cause: `already allocated to ${cur}` });
    this.owners.set(n, owner);
  }

  /** Allocates the next free IP for `owner`; throws E_IPAM_EXHAUSTED when the pool is full. */
  allocate(owner: string): string {
    const size = cidrSize(this.cidr);
    for (let i = 0; i < size; i++) {
      const off = (this.cursor + i) % size;
      const n = (this.cidr.network + off) >>> 0;
      if (this.reserved.has(n) || this.owners.has(n)) continue;
      this.owners.set(n, owner);
      this.cursor = (off + 1) % size;
      return formatIPv4(n);
    }
    throw new MembraneError(`allocate IP for ${owner}`, {
      code: 'E_IPAM_EXHAUSTED', cause: `pool ${this.cidr.text} exhausted (${this.used}/${this.capacity} in use)`,
    });
  }

  /** Releases an IP; releasing an unallocated IP (or one owned by someone else) is a no-op returning false. */
  release(ip: string, owner?: string): boolean {
    const n = parseIPv4(ip);
    const cur = this.owners.get(n);
    if (cur === undefined || (owner !== undefined && cur !== owner)) return false;
    this.owners.delete(n);
    return true;
  }

  ownerOf(ip: string): string | undefined {
    return this.owners.get(parseIPv4(ip));
  }

  snapshot(): IpamState {
    const allocated: Record<string, string> = {};
    for (const [n, o] of [...this.owners].sort((a, b) => a[0] - b[0])) allocated[formatIPv4(n)] = o;
    return { allocated, cursor: this.cursor };
  }
}
