// The captured bytes of a datapath event (an Ethernet frame cut at 128
// bytes) parsed into what flows, filters and the packet trace need: the IPv4
// addresses and protocol, the L4 ports or ICMP type/id/seq, TCP flags, and a
// key that is equal for the events of one packet on one node and differs
// between packets (see packetKey). Pure: no I/O.

export interface ParsedPacket {
  ethernet?: { source: string; destination: string; ethertype: number };
  ipv4?: { source: string; destination: string; protocol: number; id: number; ttl: number; totalLength: number; fragment: boolean };
  tcp?: { sourcePort: number; destinationPort: number; seq: number; ack: number; flags: TcpFlags };
  udp?: { sourcePort: number; destinationPort: number; length: number; checksum: number };
  icmp?: { type: number; code: number; id: number; seq: number };
  /** ARP: operation and the sender/target addresses. */
  arp?: { op: number; senderIP: string; targetIP: string };
}

export interface TcpFlags {
  FIN?: boolean; SYN?: boolean; RST?: boolean; PSH?: boolean; ACK?: boolean; URG?: boolean; ECE?: boolean; CWR?: boolean;
}

const TCP_FLAG_BITS: readonly [keyof TcpFlags, number][] = [['FIN', 0x01], ['SYN', 0x02], ['RST', 0x04], ['PSH', 0x08], ['ACK', 0x10], ['URG', 0x20], ['ECE', 0x40], ['CWR', 0x80]];

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

const mac = (b: Uint8Array, o: number): string => Array.from(b.subarray(o, o + 6), (x) => x.toString(16).padStart(2, '0')).join(':');
const ip4 = (b: Uint8Array, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const u16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) >>> 0) + (b[o + 1]! << 16) + (b[o + 2]! << 8) + b[o + 3]!;

/** Parses as much of `frame` as the capture holds; headers cut short are left out. */
export function parsePacket(frame: Uint8Array): ParsedPacket {
  const out: ParsedPacket = {};
  if (frame.length < 14) return out;
  const ethertype = u16(frame, 12);
  out.ethernet = { destination: mac(frame, 0), source: mac(frame, 6), ethertype };
  const l3 = frame.subarray(14);
  if (ethertype === 0x0806) {
    if (l3.length >= 28) out.arp = { op: u16(l3, 6), senderIP: ip4(l3, 14), targetIP: ip4(l3, 24) };
    return out;
  }
  if (ethertype !== 0x0800 || l3.length < 20 || l3[0]! >> 4 !== 4) return out;
  const ihl = (l3[0]! & 0x0f) * 4;
  const fragOff = u16(l3, 6) & 0x1fff;
  const protocol = l3[9]!;
  out.ipv4 = { source: ip4(l3, 12), destination: ip4(l3, 16), protocol, id: u16(l3, 4), ttl: l3[8]!, totalLength: u16(l3, 2), fragment: fragOff !== 0 || (u16(l3, 6) & 0x2000) !== 0 };
  if (ihl < 20 || fragOff !== 0) return out;
  const l4 = l3.subarray(ihl);
  if (protocol === IPPROTO_TCP && l4.length >= 14) {
    const flags: TcpFlags = {};
    for (const [name, bit] of TCP_FLAG_BITS) if (l4[13]! & bit) flags[name] = true;
    out.tcp = { sourcePort: u16(l4, 0), destinationPort: u16(l4, 2), seq: u32(l4, 4), ack: u32(l4, 8), flags };
  } else if (protocol === IPPROTO_UDP && l4.length >= 8) {
    out.udp = { sourcePort: u16(l4, 0), destinationPort: u16(l4, 2), length: u16(l4, 4), checksum: u16(l4, 6) };
  } else if (protocol === IPPROTO_ICMP && l4.length >= 8) {
    out.icmp = { type: l4[0]!, code: l4[1]!, id: u16(l4, 4), seq: u16(l4, 6) };
  } else if (protocol === IPPROTO_ICMP && l4.length >= 2) {
    out.icmp = { type: l4[0]!, code: l4[1]!, id: 0, seq: 0 };
  }
  return out;
}

/**
 * A key equal for every event of one packet on one node and different for
 * different packets: the fields no hop rewrites (not TTL, checksums or MACs,
 * which local delivery changes) that tell packets apart: addresses, protocol,
 * IP id, and per protocol the ports with TCP sequence and acknowledgement
 * numbers, UDP length and checksum, or ICMP type, code, id and sequence. IP
 * ids repeat (0 for many DF packets), so the L4 fields carry most of it.
 * Undefined for a frame without IPv4 (ARP, IPv6): such events form a flow
 * each.
 */
export function packetKey(p: ParsedPacket): string | undefined {
  const ip = p.ipv4;
  if (!ip) return undefined;
  let l4 = '';
  if (p.tcp) l4 = `t${p.tcp.sourcePort}:${p.tcp.destinationPort}:${p.tcp.seq}:${p.tcp.ack}:${tcpFlagBits(p.tcp.flags)}`;
  else if (p.udp) l4 = `u${p.udp.sourcePort}:${p.udp.destinationPort}:${p.udp.length}:${p.udp.checksum}`;
  else if (p.icmp) l4 = `i${p.icmp.type}:${p.icmp.code}:${p.icmp.id}:${p.icmp.seq}`;
  return `${ip.source}>${ip.destination}/${ip.protocol}#${ip.id}:${ip.totalLength}${l4 ? `/${l4}` : ''}`;
}

function tcpFlagBits(f: TcpFlags): number {
  let n = 0;
  for (const [name, bit] of TCP_FLAG_BITS) if (f[name]) n |= bit;
  return n;
}

/** Protocol name as `--protocol` takes it and Hubble's l4 keys spell it. */
export function protocolName(p: ParsedPacket): 'TCP' | 'UDP' | 'ICMPv4' | 'ARP' | undefined {
  if (p.tcp) return 'TCP';
  if (p.udp) return 'UDP';
  if (p.icmp) return 'ICMPv4';
  if (p.arp) return 'ARP';
  return undefined;
}

/** Source and destination ports (TCP/UDP), undefined otherwise. */
export function ports(p: ParsedPacket): { source: number; destination: number } | undefined {
  const l4 = p.tcp ?? p.udp;
  return l4 ? { source: l4.sourcePort, destination: l4.destinationPort } : undefined;
}
