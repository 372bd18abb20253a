// cilium_policy_v2_<epID>: one endpoint's policy, an LPM trie keyed by
// (remote identity, direction, protocol, port) with wildcards by prefix
// length, and cilium_policy_maps, the array that holds every endpoint's trie
// at the endpoint's id. Pure codecs and the rules that keep a set of entries
// right for the datapath's lookup; see struct policy_key / policy_entry in
// bpf/lib/maps.h and the lookup in bpf/lib/policy.h.
import { checkU32, defineLayout, expectSize, MapCodecError } from './layout.ts';

export const POLICY_MAPS_NAME = 'cilium_policy_maps';
/** u32 per endpoint id: incremented after every change of its policy map (conntrack caches verdicts per revision). */
export const POLICY_REV_NAME = 'cilium_policy_rev';
/** Slots of cilium_policy_maps: endpoint ids 1..4095 (slot 1 = the host). */
export const POLICY_MAPS_MAX_ENTRIES = 4096;
/** max_entries of every endpoint's trie (the inner map definition). */
export const POLICY_MAP_MAX_ENTRIES = 16384;

const pad5 = (n: number) => String(n).padStart(5, '0');

/** Pin name of an endpoint's policy map (Cilium's cilium_policy_v2_<epID 5 digits>). */
export function policyMapName(epId: number): string {
  return `cilium_policy_v2_${pad5(epId)}`;
}

/** The kernel's name for it (15 characters at most). */
export function policyMapKernelName(epId: number): string {
  return `policy_v2_${pad5(epId)}`;
}

export const POLICY_KEY = defineLayout('policy_key', 12, { prefixlen: 0, sec_label: 4, egress: 8, protocol: 9, dport: 10 });
export const POLICY_ENTRY = defineLayout('policy_entry', 8, { flags: 0, pad: 1, cookie: 4 });

/** sec_label and egress: always matched. */
export const POLICY_STATIC_PREFIX = 40;
/** + protocol: a rule for one protocol, any port. */
export const POLICY_PROTO_PREFIX = 48;
/** + the 16 port bits: one port. */
export const POLICY_FULL_PREFIX = 64;

export const POLICY_F_DENY = 0x01;

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_SCTP = 132;

/** One entry of an endpoint's policy map, as the agent computes it. */
export interface PolicyMapEntry {
  /** Remote identity; 0 = any. */
  identity: number;
  /** The endpoint sends (true) or receives (false). */
  egress: boolean;
  /** IP protocol number; 0 = any (then port and portPrefixLen are 0). */
  protocol: number;
  /** Destination port (ICMP: the type); with portPrefixLen < 16 the first port of a power-of-two block. */
  port: number;
  /** How many leading bits of `port` are matched: 16 one port, 0 any port. */
  portPrefixLen: number;
  deny: boolean;
  /** The agent's tag for the rule the entry came from (listings only); default 0. */
  cookie?: number;
}

function checkEntry(e: PolicyMapEntry): void {
  checkU32('policy identity', e.identity);
  if (!Number.isInteger(e.protocol) || e.protocol < 0 || e.protocol > 255) throw new MapCodecError(`policy protocol: ${e.protocol} is not 0..255`);
  if (!Number.isInteger(e.portPrefixLen) || e.portPrefixLen < 0 || e.portPrefixLen > 16) throw new MapCodecError(`policy port prefix length: ${e.portPrefixLen} is not 0..16`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff) throw new MapCodecError(`policy port: ${e.port} is not 0..65535`);
  if (e.protocol === 0 && (e.port !== 0 || e.portPrefixLen !== 0)) throw new MapCodecError('policy entry: a port needs a protocol');
  if (e.port & ~portMask(e.portPrefixLen) & 0xffff) {
    throw new MapCodecError(`policy port: ${e.port}/${e.portPrefixLen} has bits below its prefix (a block starts at a multiple of ${1 << (16 - e.portPrefixLen)})`);
  }
  if (e.cookie !== undefined) checkU32('policy cookie', e.cookie);
}

function portMask(prefixLen: number): number {
  return prefixLen === 0 ? 0 : (0xffff << (16 - prefixLen)) & 0xffff;
}

/** The key's prefixlen for an entry: 40 any protocol, 48 any port, 48 + portPrefixLen otherwise. */
export function entryPrefixLen(e: Pick<PolicyMapEntry, 'protocol' | 'portPrefixLen'>): number {
  if (e.protocol === 0) return POLICY_STATIC_PREFIX;
  return POLICY_PROTO_PREFIX + e.portPrefixLen;
}

export function encodeKey(e: Omit<PolicyMapEntry, 'deny' | 'cookie'>): Buffer {
  checkEntry({ ...e, deny: false });
  const b = Buffer.alloc(POLICY_KEY.size);
  const f = POLICY_KEY.fields;
  b.writeUInt32LE(entryPrefixLen(e), f.prefixlen);
  b.writeUInt32LE(e.identity, f.sec_label);
  b[f.egress] = e.egress ? 1 : 0;
  b[f.protocol] = e.protocol;
  b.writeUInt16BE(e.port, f.dport);
  return b;
}

export function encodeValue(e: Pick<PolicyMapEntry, 'deny' | 'cookie'>): Buffer {
  const b = Buffer.alloc(POLICY_ENTRY.size);
  b[POLICY_ENTRY.fields.flags] = e.deny ? POLICY_F_DENY : 0;
  b.writeUInt32LE(checkU32('policy cookie', e.cookie ?? 0), POLICY_ENTRY.fields.cookie);
  return b;
}

export function encodeEntry(e: PolicyMapEntry): { key: Buffer; value: Buffer } {
  return { key: encodeKey(e), value: encodeValue(e) };
}

export function decodeKey(buf: Uint8Array): Omit<PolicyMapEntry, 'deny' | 'cookie'> {
  expectSize('policy key', POLICY_KEY, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const f = POLICY_KEY.fields;
  const prefixlen = b.readUInt32LE(f.prefixlen);
  if (prefixlen < POLICY_STATIC_PREFIX || prefixlen > POLICY_FULL_PREFIX || (prefixlen > POLICY_STATIC_PREFIX && prefixlen < POLICY_PROTO_PREFIX)) {
    throw new MapCodecError(`decode policy key: prefix length ${prefixlen} is not 40 or 48..64`);
  }
  const protocol = prefixlen === POLICY_STATIC_PREFIX ? 0 : b[f.protocol];
  const portPrefixLen = prefixlen <= POLICY_PROTO_PREFIX ? 0 : prefixlen - POLICY_PROTO_PREFIX;
  return {
    identity: b.readUInt32LE(f.sec_label),
    egress: b[f.egress] !== 0,
    protocol,
    port: b.readUInt16BE(f.dport) & portMask(portPrefixLen),
    portPrefixLen,
  };
}

export function decodeValue(buf: Uint8Array): Pick<PolicyMapEntry, 'deny' | 'cookie'> {
  expectSize('policy value', POLICY_ENTRY, buf);
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { deny: (b[POLICY_ENTRY.fields.flags] & POLICY_F_DENY) !== 0, cookie: b.readUInt32LE(POLICY_ENTRY.fields.cookie) };
}

export function decodeEntry(key: Uint8Array, value: Uint8Array): PolicyMapEntry {
  return { ...decodeKey(key), ...decodeValue(value) };
}

/** What a key matches, as text: "ingress 1234 TCP 80", "egress any any", "ingress any UDP 1024-2047". */
export function describeEntry(e: PolicyMapEntry): string {
  const id = e.identity === 0 ? 'any' : String(e.identity);
  const proto = e.protocol === 0 ? 'any' : protocolName(e.protocol);
  let port = '';
  if (e.protocol !== 0) {
    const r = portRangeOf(e);
    port = r.first === r.last ? ` ${r.first}` : r.first === 0 && r.last === 0xffff ? ' any' : ` ${r.first}-${r.last}`;
  }
  return `${e.egress ? 'egress' : 'ingress'} ${id} ${proto}${port}${e.deny ? ' deny' : ''}`;
}

export function protocolName(p: number): string {
  switch (p) {
    case 0: return 'any';
    case PROTO_ICMP: return 'ICMP';
    case PROTO_TCP: return 'TCP';
    case PROTO_UDP: return 'UDP';
    case PROTO_SCTP: return 'SCTP';
    default: return `proto-${p}`;
  }
}

/** The ports an entry matches. */
export function portRangeOf(e: Pick<PolicyMapEntry, 'port' | 'portPrefixLen'>): { first: number; last: number } {
  const size = 1 << (16 - e.portPrefixLen);
  return { first: e.port, last: e.port + size - 1 };
}

/**
 * A port range as the fewest power-of-two blocks (what LPM keys can match):
 * 80-80 -> [80/16]; 1024-2047 -> [1024/6]; 0-65535 -> [0/0]; 8000-8080 ->
 * 8000/11 ... 8080/16 (a handful). Throws for an empty or out-of-range span.
 */
export function portRangeBlocks(first: number, last: number): { port: number; portPrefixLen: number }[] {
  if (!Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last > 0xffff || first > last) {
    throw new MapCodecError(`port range ${first}-${last}: want 0 <= first <= last <= 65535`);
  }
  const out: { port: number; portPrefixLen: number }[] = [];
  let p = first;
  while (p <= last) {
    // The biggest block that starts at p (aligned) and ends by `last`.
    let bits = 0;
    while (bits < 16 && (p & ((1 << (bits + 1)) - 1)) === 0 && p + (1 << (bits + 1)) - 1 <= last) bits++;
    out.push({ port: p, portPrefixLen: 16 - bits });
    p += 1 << bits;
  }
  return out;
}

function keyText(e: Omit<PolicyMapEntry, 'deny' | 'cookie'>): string {
  return `${e.identity}/${e.egress ? 1 : 0}/${e.protocol}/${e.port}/${e.portPrefixLen}`;
}

/**
 * The entries as the datapath must hold them for "deny wins": one entry per
 * key (a deny and an allow for the same key: the deny), and no allow more
 * specific than a deny of the same identity and direction. The datapath's
 * LPM lookup returns only the most specific entry per identity, so such an
 * allow would hide the deny: it becomes a deny. (Deny against allow across
 * "any identity" and one identity needs nothing: the datapath looks both up
 * and lets a deny in either win.) Order is kept; cookies of the kept entries.
 */
export function normalizePolicyEntries(entries: readonly PolicyMapEntry[]): PolicyMapEntry[] {
  const byKey = new Map<string, PolicyMapEntry>();
  for (const e of entries) {
    checkEntry(e);
    const k = keyText(e);
    const cur = byKey.get(k);
    if (!cur || (e.deny && !cur.deny)) byKey.set(k, { ...e, cookie: e.cookie ?? cur?.cookie ?? 0 });
  }
  const denies = new Set([...byKey.values()].filter((e) => e.deny).map(keyText));
  if (denies.size === 0) return [...byKey.values()];
  return [...byKey.values()].map((e) => (e.deny || !coveredByDeny(e, denies) ? e : { ...e, deny: true }));
}

/** Is there a deny of the same identity and direction matching everything `e` matches, less specifically? */
function coveredByDeny(e: PolicyMapEntry, denies: ReadonlySet<string>): boolean {
  const base = { identity: e.identity, egress: e.egress };
  if (e.protocol !== 0 && denies.has(keyText({ ...base, protocol: 0, port: 0, portPrefixLen: 0 }))) return true;
  for (let len = e.portPrefixLen - 1; e.protocol !== 0 && len >= 0; len--) {
    if (denies.has(keyText({ ...base, protocol: e.protocol, port: e.port & portMask(len), portPrefixLen: len }))) return true;
  }
  return false;
}

/** The entry that allows everything in one direction: what an endpoint has where no policy selects it. */
export function allowAll(egress: boolean): PolicyMapEntry {
  return { identity: 0, egress, protocol: 0, port: 0, portPrefixLen: 0, deny: false, cookie: 0 };
}

/** A new endpoint's policy: everything allowed both ways, until the agent says otherwise. */
export const ALLOW_ALL: readonly PolicyMapEntry[] = Object.freeze([allowAll(false), allowAll(true)]);
