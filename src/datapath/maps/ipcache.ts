// cilium_ipcache_v2: LPM trie from an IPv4 prefix to the security identity of
// the addresses in it and, for prefixes behind another node, that node's IP
// (the VXLAN tunnel endpoint). Pure codecs; see bpf/lib/maps.h.
import { parseCidr } from '../../shared/ip.ts';
import { checkU32, defineLayout, expectSize, readIPv4, writeIPv4, MapCodecError } from './layout.ts';

export const IPCACHE_MAP_NAME = 'cilium_ipcache_v2';
export const IPCACHE_MAX_ENTRIES = 512000;

export const IPCACHE_KEY = defineLayout('ipcache_key', 24, { prefixlen: 0, cluster_id: 4, pad1: 6, family: 7, addr: 8 });
export const IPCACHE_VALUE = defineLayout('remote_endpoint_info', 12, { sec_identity: 0, tunnel_endpoint: 4, owner: 8, pad: 9, key: 10, flags: 11 });

export const IPCACHE_FAMILY_IPV4 = 1;
/** The key's prefixlen counts cluster_id, pad1 and family (32 bits) before the address. */
export const IPCACHE_STATIC_PREFIX_BITS = 32;
export const IPCACHE_F_SKIP_TUNNEL = 0x01;
export const IPCACHE_F_HAS_TUNNEL_EP = 0x02;

export interface IpcacheValue {
  /** Security identity of the addresses in the prefix. */
  identity: number;
  /** IP of the node hosting the prefix: packets to it are VXLAN-encapsulated to this address. */
  tunnelEndpoint?: string;
  /** Reachable without the tunnel even though a tunnel endpoint is known. */
  skipTunnel?: boolean;
  /** IPsec key index (unused; 0). */
  key?: number;
  /** Who wrote the entry (a number src/datapath/ipcache.ts assigns; 0 = unknown). Programs ignore it. */
  owner?: number;
}

/**
 * Encodes "a.b.c.d/n" (or a bare address, meaning /32) as an LPM key.
 * Throws RangeError for anything that is not an IPv4 CIDR, or has host bits set.
 */
export function encodeKey(cidr: string): Buffer {
  let c;
  try {
    c = parseCidr(cidr.includes('/') ? cidr : `${cidr}/32`);
  } catch (err) {
    throw new MapCodecError(`encode ipcache key: ${(err as Error).message}`);
  }
  const buf = Buffer.alloc(IPCACHE_KEY.size);
  buf.writeUInt32LE(IPCACHE_STATIC_PREFIX_BITS + c.prefixLen, IPCACHE_KEY.fields.prefixlen);
  buf[IPCACHE_KEY.fields.family] = IPCACHE_FAMILY_IPV4;
  buf.writeUInt32BE(c.network, IPCACHE_KEY.fields.addr);
  return buf;
}

/** Decodes an LPM key into "a.b.c.d/n". Throws RangeError for other families or a bad prefix length. */
export function decodeKey(buf: Uint8Array): string {
  expectSize('ipcache key', IPCACHE_KEY, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const family = b[IPCACHE_KEY.fields.family];
  if (family !== IPCACHE_FAMILY_IPV4) throw new MapCodecError(`decode ipcache key: family ${family} is not IPv4 (1)`);
  const plen = b.readUInt32LE(IPCACHE_KEY.fields.prefixlen) - IPCACHE_STATIC_PREFIX_BITS;
  if (plen < 0 || plen > 32) throw new MapCodecError(`decode ipcache key: prefixlen ${plen + IPCACHE_STATIC_PREFIX_BITS} is not 32..64`);
  return `${readIPv4(b, IPCACHE_KEY.fields.addr)}/${plen}`;
}

export function encodeValue(v: IpcacheValue): Buffer {
  const buf = Buffer.alloc(IPCACHE_VALUE.size);
  buf.writeUInt32LE(checkU32('ipcache identity', v.identity), IPCACHE_VALUE.fields.sec_identity);
  let flags = 0;
  if (v.tunnelEndpoint !== undefined) {
    writeIPv4(buf, IPCACHE_VALUE.fields.tunnel_endpoint, v.tunnelEndpoint);
    flags |= IPCACHE_F_HAS_TUNNEL_EP;
  }
  if (v.skipTunnel) flags |= IPCACHE_F_SKIP_TUNNEL;
  const owner = v.owner ?? 0;
  if (!Number.isInteger(owner) || owner < 0 || owner > 0xff) throw new MapCodecError(`ipcache owner: ${owner} is not an unsigned 8-bit integer`);
  buf[IPCACHE_VALUE.fields.owner] = owner;
  buf[IPCACHE_VALUE.fields.key] = v.key ?? 0;
  buf[IPCACHE_VALUE.fields.flags] = flags;
  return buf;
}

/** A decoded value: every optional field of IpcacheValue filled in, except an absent tunnel endpoint. */
export interface DecodedIpcacheValue extends IpcacheValue {
  skipTunnel: boolean;
  key: number;
  owner: number;
}

export function decodeValue(buf: Uint8Array): DecodedIpcacheValue {
  expectSize('ipcache value', IPCACHE_VALUE, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const flags = b[IPCACHE_VALUE.fields.flags];
  const out: DecodedIpcacheValue = {
    identity: b.readUInt32LE(IPCACHE_VALUE.fields.sec_identity),
    skipTunnel: (flags & IPCACHE_F_SKIP_TUNNEL) !== 0,
    key: b[IPCACHE_VALUE.fields.key],
    owner: b[IPCACHE_VALUE.fields.owner],
  };
  if (flags & IPCACHE_F_HAS_TUNNEL_EP) out.tunnelEndpoint = readIPv4(b, IPCACHE_VALUE.fields.tunnel_endpoint);
  return out;
}

/** The flag names the CLI shows, as Cilium's `bpf ipcache list`: "hastunnel", "skiptunnel" or "<none>". */
export function ipcacheFlagNames(v: Pick<IpcacheValue, 'skipTunnel' | 'tunnelEndpoint'>): string[] {
  const names: string[] = [];
  if (v.skipTunnel) names.push('skiptunnel');
  if (v.tunnelEndpoint !== undefined) names.push('hastunnel');
  return names.length ? names : ['<none>'];
}
