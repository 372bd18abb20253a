// CIDR rules (fromCIDR, fromCIDRSet with except, toCIDR, toCIDRSet).
//
// As in Cilium (reference 7.1; docs.cilium.io "Layer 3 Policies: IP/CIDR
// based"), a prefix named by a policy gets a node-local CIDR identity
// (>= 1<<24) and an ipcache entry, so traffic to or from an address in it
// carries that identity and the policy map keys it like any other peer. The
// agent allocates the numbers and writes the ipcache; this module is the pure
// part:
//
// - cidrPrefixes(policies): every prefix a rule names, excepts included,
//   normalized. Excepts need identities too: with 10.0.0.0/8 except
//   10.96.0.0/12 both are in the ipcache, the longest match gives 10.96.1.1 the
//   except's identity, and the rule does not select that identity.
// - The label format of a CIDR identity: `cidr:<prefix>` (the canonical
//   prefix, value "") and `reserved:world` (it is outside the cluster, so the
//   world entity selects it, as Cilium's CIDR identities carry
//   reserved:world). cidrIdentityLabels() builds it.
// - A CIDR rule P except E1..En selects an identity whose prefix Q lies inside
//   P and inside no Ei. The world identity (2) stands for 0.0.0.0/0: whatever
//   no longer prefix covers. So only a rule for 0.0.0.0/0 selects it, and
//   0.0.0.0/0 never needs an identity of its own (this node's ipcache already
//   maps it to world), so cidrPrefixes() leaves it out.
// - CIDR rules never select pods, nodes or the host: their addresses are in
//   the ipcache with their own identities (Cilium: "CIDR selectors cannot
//   select pods").
import { formatIPv4, isIPv4, maskOf, parseIPv4 } from '../shared/ip.ts';
import { ReservedIdentity, SOURCE_CIDR, SOURCE_RESERVED, hasReserved, indexLabels, type IndexedLabels, type Labels, type Universe } from './labels.ts';
import type { CidrSelector, Policy, Prefix } from './types.ts';

export const WORLD_PREFIX: Prefix = Object.freeze({ network: 0, length: 0, text: '0.0.0.0/0' });

export function makePrefix(network: number, length: number): Prefix {
  const n = (network & maskOf(length)) >>> 0;
  return { network: n, length, text: `${formatIPv4(n)}/${length}` };
}

/** Is `inner` inside `outer` (or equal)? */
export function prefixContains(outer: Prefix, inner: Prefix): boolean {
  return inner.length >= outer.length && ((inner.network & maskOf(outer.length)) >>> 0) === outer.network;
}

export function prefixContainsAddress(p: Prefix, addr: number): boolean {
  return ((addr & maskOf(p.length)) >>> 0) === p.network;
}

export interface ParsedCidr {
  prefix?: Prefix;
  /** Why the text is not usable. */
  error?: string;
  /** Accepted, but not as written (host bits set). */
  warning?: string;
}

/**
 * Reads a policy's CIDR text: `a.b.c.d/n`, or (when `allowAddress`, as
 * fromCIDR/toCIDR allow) a bare address meaning /32. Host bits are cleared
 * with a warning, as Cilium masks them. IPv6 is refused: this network is
 * IPv4 only.
 */
export function parsePolicyCidr(text: string, allowAddress: boolean): ParsedCidr {
  if (text.includes(':')) return { error: `${JSON.stringify(text)} is an IPv6 prefix: membrane's network is IPv4 only` };
  const m = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(text);
  if (!m || !isIPv4(m[1])) return { error: `${JSON.stringify(text)} is not an IPv4 CIDR (want a.b.c.d/n${allowAddress ? ' or a.b.c.d' : ''})` };
  if (m[2] === undefined && !allowAddress) return { error: `${JSON.stringify(text)} has no prefix length (want a.b.c.d/n)` };
  const length = m[2] === undefined ? 32 : Number(m[2]);
  if (length > 32) return { error: `${JSON.stringify(text)}: prefix length ${length} is more than 32` };
  const addr = parseIPv4(m[1]);
  const prefix = makePrefix(addr, length);
  if (prefix.network !== addr) return { prefix, warning: `${JSON.stringify(text)} has host bits set: read as ${prefix.text}` };
  return { prefix };
}

/** The labels of the CIDR identity for a prefix: `cidr:<prefix>` and `reserved:world`. */
export function cidrIdentityLabels(prefix: string | Prefix): Labels {
  const text = typeof prefix === 'string' ? parseCanonical(prefix).text : prefix.text;
  return Object.freeze({ [`${SOURCE_CIDR}:${text}`]: '', [`${SOURCE_RESERVED}:world`]: '' });
}

function parseCanonical(text: string): Prefix {
  const p = parsePolicyCidr(text, false);
  if (!p.prefix || p.warning) throw new TypeError(`cidrIdentityLabels: ${p.error ?? p.warning}`);
  return p.prefix;
}

/**
 * The prefix an identity stands for: its `cidr:` label, 0.0.0.0/0 for a
 * world identity without one, undefined for everything else (pods, nodes,
 * the host).
 */
export function identityPrefix(labels: IndexedLabels): Prefix | undefined {
  // Cached per label set: the engine asks once per (rule item, identity).
  let p = prefixCache.get(labels);
  if (p === undefined) {
    p = null;
    for (const [key, pairs] of labels) {
      if (!pairs.some(([s]) => s === SOURCE_CIDR)) continue;
      const parsed = parsePolicyCidr(key, false);
      if (parsed.prefix) { p = parsed.prefix; break; }
    }
    if (p === null && hasReserved(labels, 'world')) p = WORLD_PREFIX;
    prefixCache.set(labels, p);
  }
  return p ?? undefined;
}

const prefixCache = new WeakMap<IndexedLabels, Prefix | null>();

/** Does a CIDR rule (prefix minus excepts) select the identity with these labels? */
export function cidrSelects(sel: CidrSelector, labels: IndexedLabels): boolean {
  const q = identityPrefix(labels);
  return q !== undefined && prefixContains(sel.cidr, q) && !sel.except.some((e) => prefixContains(e, q));
}

/**
 * Every prefix the policies' CIDR rules name, excepts included, canonical and
 * sorted (by address, then length); 0.0.0.0/0 is left out (it is world).
 */
export function cidrPrefixes(policies: readonly Policy[]): string[] {
  const seen = new Map<string, Prefix>();
  const add = (p: Prefix) => { if (p.length > 0) seen.set(p.text, p); };
  for (const policy of policies) {
    for (const rule of policy.rules) {
      for (const item of [...rule.ingress, ...rule.ingressDeny, ...rule.egress, ...rule.egressDeny]) {
        if (item.peers.kind !== 'cidr') continue;
        for (const c of item.peers.cidrs) { add(c.cidr); c.except.forEach(add); }
      }
    }
  }
  return [...seen.values()].sort((a, b) => a.network - b.network || a.length - b.length).map((p) => p.text);
}

/**
 * The identity traffic from or to an outside address carries: the CIDR
 * identity with the longest prefix containing it (as the ipcache's longest
 * match gives it), else world. Pod, node and host addresses are not resolved
 * here: their identities come from the ipcache's own entries.
 */
export function identityOfAddress(universe: Universe, address: string): number {
  const addr = parseIPv4(address);
  let best: { id: number; length: number } | undefined;
  for (const [id, labels] of universe) {
    const p = identityPrefix(indexLabels(labels));
    if (!p || p.length === 0 || !prefixContainsAddress(p, addr)) continue;
    if (!best || p.length > best.length) best = { id, length: p.length };
  }
  return best?.id ?? ReservedIdentity.WORLD;
}
