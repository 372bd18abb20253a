// Protocol and port blocks: the (protocol, port) half of a policy map key.
//
// The datapath's policy map is an LPM trie whose key ends in protocol (8 bits)
// then destination port (16 bits) (reference 4.4), so one entry matches a
// protocol with every port, or a power-of-two aligned block of ports, or one
// port; protocol 0 matches everything. A port range is split into the fewest
// such blocks, as Cilium does for endPort (docs.cilium.io "Layer 4 Policies:
// Example Port Ranges"; the LPM policy map since 1.14).
import type { PortProtocol } from './types.ts';

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_SCTP = 132;

export const PROTOCOL_NUMBERS: Readonly<Record<'TCP' | 'UDP' | 'SCTP' | 'ICMP', number>> = {
  TCP: IPPROTO_TCP, UDP: IPPROTO_UDP, SCTP: IPPROTO_SCTP, ICMP: IPPROTO_ICMP,
};

/**
 * One (protocol, port prefix) block. protocol 0 = every protocol (port 0,
 * prefixLen 0); prefixLen 16 = one port, 0..15 = the 2^(16-prefixLen) ports
 * sharing the top prefixLen bits of `port`, 0 = every port.
 */
export interface PortBlock {
  readonly protocol: number;
  readonly port: number;
  readonly prefixLen: number;
}

export const ANY_BLOCK: PortBlock = Object.freeze({ protocol: 0, port: 0, prefixLen: 0 });

/** The fewest aligned prefix blocks covering lo..hi (0 <= lo <= hi <= 65535). */
export function rangeToPrefixes(lo: number, hi: number): { port: number; prefixLen: number }[] {
  const out: { port: number; prefixLen: number }[] = [];
  let p = lo;
  while (p <= hi) {
    // The largest block aligned at p (p's lowest set bit; all 16 bits at 0) that ends by hi.
    let bits = 16;
    while (bits > 0 && (p & ((1 << bits) - 1)) !== 0) bits--;
    while (p + (1 << bits) - 1 > hi) bits--;
    out.push({ port: p, prefixLen: 16 - bits });
    p += 1 << bits;
  }
  return out;
}

/**
 * The blocks one `ports[]` item stands for. ANY with a port is TCP, UDP and
 * SCTP with that port (Cilium expands ANY to its port-carrying protocols; the
 * datapath reads SCTP ports too); ANY with port 0 is everything (protocol 0);
 * another protocol with port 0 is that protocol's every port.
 */
export function portBlocks(pp: PortProtocol): PortBlock[] {
  const protocols = pp.protocol === 'ANY' ? (pp.port === 0 ? [0] : [IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP]) : [PROTOCOL_NUMBERS[pp.protocol]];
  // port 0 alone is every port; with an endPort (an ICMP type 0 from icmps) it is a range like any other.
  const ranges = pp.port === 0 && pp.endPort === undefined ? [{ port: 0, prefixLen: 0 }] : rangeToPrefixes(pp.port, pp.endPort ?? pp.port);
  return protocols.flatMap((protocol) => (protocol === 0 ? [ANY_BLOCK] : ranges.map((r) => ({ protocol, ...r }))));
}

/** Blocks of an item's ports (undefined = everything). */
export function itemBlocks(ports: readonly PortProtocol[] | undefined): PortBlock[] {
  return ports === undefined ? [ANY_BLOCK] : ports.flatMap(portBlocks);
}

const portMask = (prefixLen: number) => (prefixLen === 0 ? 0 : (0xffff << (16 - prefixLen)) & 0xffff);

/** Does a packet (protocol, destination port) fall in the block? */
export function blockMatches(b: PortBlock, protocol: number, port: number): boolean {
  return b.protocol === 0 || (b.protocol === protocol && (port & portMask(b.prefixLen)) === b.port);
}

/** The block's prefix length over protocol+port as the LPM key counts it: 0 for every protocol, else 8 + port bits. */
export function blockPrefixBits(b: PortBlock): number {
  return b.protocol === 0 ? 0 : 8 + b.prefixLen;
}

/** A number unique per block, for sets and maps: protocol, prefix length and port packed into 32 bits. */
export function blockKey(b: PortBlock): number {
  return ((b.protocol << 21) | (b.prefixLen << 16) | b.port) >>> 0;
}

export function blockFromKey(k: number): PortBlock {
  return { protocol: k >>> 21, prefixLen: (k >>> 16) & 0x1f, port: k & 0xffff };
}

/** "TCP/80", "TCP/80-95", "UDP/*", "ICMP", "*" (for messages). */
export function formatBlock(b: PortBlock): string {
  if (b.protocol === 0) return '*';
  const name = Object.entries(PROTOCOL_NUMBERS).find(([, n]) => n === b.protocol)?.[0] ?? `proto ${b.protocol}`;
  if (b.prefixLen === 0) return b.protocol === IPPROTO_ICMP ? name : `${name}/*`;
  if (b.prefixLen === 16) return b.protocol === IPPROTO_ICMP ? `${name} type ${b.port}` : `${name}/${b.port}`;
  return `${name}/${b.port}-${b.port + (1 << (16 - b.prefixLen)) - 1}`;
}
