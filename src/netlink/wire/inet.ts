// Address families and the text <-> bytes conversions the rtnetlink codecs
// need: IPv4 addresses and prefixes, and link-layer (MAC) addresses.
// Decoding also formats IPv6 so a dump containing one stays readable.
import { ConfigError } from '../../shared/errors.ts';

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Dotted quad → 4 bytes (network order). Throws ConfigError naming `field`. */
export function ipv4Bytes(s: string, field = 'address'): Buffer {
  const parts = typeof s === 'string' ? s.split('.') : [];
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) {
    throw new ConfigError(field, [`${JSON.stringify(s)} is not an IPv4 address`]);
  }
  return Buffer.from(parts.map(Number));
}

/** 4 bytes → dotted quad; 16 bytes → compressed IPv6 text. */
export function formatIp(b: Buffer): string {
  if (b.length === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  if (b.length === 16) {
    const words: number[] = [];
    for (let i = 0; i < 16; i += 2) words.push(b.readUInt16BE(i));
    // Longest run of zero words (length >= 2) becomes "::" (RFC 5952).
    let best = -1, bestLen = 0;
    for (let i = 0; i < 8; ) {
      if (words[i] !== 0) { i++; continue; }
      let j = i;
      while (j < 8 && words[j] === 0) j++;
      if (j - i > bestLen && j - i >= 2) { best = i; bestLen = j - i; }
      i = j;
    }
    const hex = words.map((w) => w.toString(16));
    if (best < 0) return hex.join(':');
    return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
  }
  return b.toString('hex');
}

/**
 * "10.1.0.0/24" → bytes + prefix length; a bare address means /32 and
 * "default" means 0.0.0.0/0. Host bits are left alone: the kernel rejects them
 * with "Invalid prefix for given prefix length", which names the problem.
 */
export function parsePrefix(s: string, field = 'dst'): { addr: Buffer; prefixLen: number } {
  if (s === 'default') return { addr: Buffer.alloc(4), prefixLen: 0 };
  const slash = typeof s === 'string' ? s.indexOf('/') : -1;
  if (slash < 0) return { addr: ipv4Bytes(s, field), prefixLen: 32 };
  const len = s.slice(slash + 1);
  const host = s.slice(0, slash);
  const parts = host.split('.');
  if (!/^\d{1,2}$/.test(len) || Number(len) > 32 || parts.length !== 4 || !parts.every((p) => OCTET.test(p))) {
    throw new ConfigError(field, [`${JSON.stringify(s)} is not an IPv4 prefix (want a.b.c.d/n)`]);
  }
  return { addr: ipv4Bytes(host, field), prefixLen: Number(len) };
}

/** The text routeList reports: "default" for /0, otherwise "a.b.c.d/n" (always with the length). */
export function formatPrefix(addr: Buffer | undefined, prefixLen: number): string {
  if (prefixLen === 0) return 'default';
  return `${formatIp(addr ?? Buffer.alloc(4))}/${prefixLen}`;
}

/** "aa:bb:cc:dd:ee:ff" (or with '-') → 6 bytes. Throws ConfigError naming `field`. */
export function macBytes(s: string, field = 'mac'): Buffer {
  if (typeof s !== 'string' || !/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(s)) {
    throw new ConfigError(field, [`${JSON.stringify(s)} is not a MAC address (want aa:bb:cc:dd:ee:ff)`]);
  }
  return Buffer.from(s.replace(/[:-]/g, ''), 'hex');
}

/** Link-layer address bytes → lowercase "aa:bb:..", any length (e.g. 4-byte tunnel addresses). */
export function formatMac(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}
