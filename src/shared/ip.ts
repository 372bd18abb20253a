// IPv4 address and CIDR arithmetic on unsigned 32-bit numbers.
// Parsing is strict (no leading zeros, no shorthand) so config errors are caught early.
// Parse errors are E_INVALID_ADDRESS; config validation turns them into ConfigError problems.
import { MembraneError } from './errors.ts';

function invalid(message: string): MembraneError {
  return new MembraneError(message, { code: 'E_INVALID_ADDRESS' });
}

export interface Cidr {
  /** Network address as an unsigned 32-bit number. */
  network: number;
  prefixLen: number;
  /** Canonical text, e.g. "10.244.2.0/24". */
  text: string;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function isIPv4(s: unknown): s is string {
  if (typeof s !== 'string') return false;
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => OCTET.test(p));
}

/** Parses dotted-quad text into an unsigned 32-bit number; throws on anything else. */
export function parseIPv4(s: string): number {
  if (!isIPv4(s)) throw invalid(`"${s}" is not a valid IPv4 address`);
  return s.split('.').reduce((acc, p) => ((acc << 8) | Number(p)) >>> 0, 0);
}

export function formatIPv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
}

export function maskOf(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0;
}

/**
 * Parses "a.b.c.d/n". With `strict`, host bits must be zero (a pod CIDR with
 * host bits set is almost always a typo); the error suggests the canonical form.
 */
export function parseCidr(s: string, strict = true): Cidr {
  if (typeof s !== 'string') throw invalid(`${JSON.stringify(s)} is not a CIDR (want a.b.c.d/n)`);
  const m = /^([^/]+)\/(\d{1,2})$/.exec(s);
  if (!m || !isIPv4(m[1]) || Number(m[2]) > 32) throw invalid(`"${s}" is not a valid IPv4 CIDR (want a.b.c.d/n)`);
  const prefixLen = Number(m[2]);
  const addr = parseIPv4(m[1]);
  const network = (addr & maskOf(prefixLen)) >>> 0;
  const text = `${formatIPv4(network)}/${prefixLen}`;
  if (strict && network !== addr) throw invalid(`"${s}" has host bits set (did you mean ${text}?)`);
  return { network, prefixLen, text };
}

export function cidrContains(c: Cidr, ip: number): boolean {
  return ((ip & maskOf(c.prefixLen)) >>> 0) === c.network;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  const p = Math.min(a.prefixLen, b.prefixLen);
  return ((a.network & maskOf(p)) >>> 0) === ((b.network & maskOf(p)) >>> 0);
}

export function broadcastOf(c: Cidr): number {
  return (c.network | ~maskOf(c.prefixLen)) >>> 0;
}

/** Number of addresses in the CIDR. */
export function cidrSize(c: Cidr): number {
  return 2 ** (32 - c.prefixLen);
}
