// From policies and the identity universe to one subject's policy map.
//
// The datapath (reference 4.4; bpf/lib/policy.h) keys its
// per-endpoint policy map by (remote identity, direction, protocol, port) in
// an LPM trie whose prefix runs over protocol then port, within an exact
// identity and direction. For a packet it looks up (remote, dir, proto,
// dport) and (0, dir, proto, dport); it drops if either hit is a deny, allows
// if either is an allow, and drops otherwise.
//
// What this module guarantees about the entries it returns, for every packet:
// the lookup above answers exactly what the rules say (./trace.ts evaluates
// the rules directly and test/unit/policy-property.test.ts checks the two
// agree), namely
//   - denied if any deny item of a rule selecting the subject matches the
//     remote identity and the packet (deny wins over allow: docs.cilium.io
//     "Deny Policies");
//   - else allowed if any allow item matches;
//   - else dropped if the subject is in default deny for the direction, and
//     allowed if not (docs.cilium.io "Policy Enforcement Modes").
// An LPM returns only the most specific hit, so deny precedence is resolved
// here: an allow nested inside a deny of the same identity is not emitted
// (the deny then answers for it). An allow for an identity where identity 0
// has a deny needs nothing: the datapath's second lookup finds the deny.
//
// The entries are also minimal in the ways that are easy to prove: no
// duplicates; no allow nested inside another allow of the same identity or
// of identity 0; no deny nested inside another deny of the same identity or
// of identity 0 (each of those answers the same without it).
import { cidrSelects, identityPrefix } from './cidr.ts';
import { hasReserved, indexLabels, type IndexedLabels, type Labels, type Universe } from './labels.ts';
import { ANY_BLOCK, blockFromKey, blockKey, blockMatches, blockPrefixBits, itemBlocks, type PortBlock } from './ports.ts';
import { selectorMatches } from './selector.ts';
import type { Direction, Entity, Peers, Policy, PolicyRule, RuleItem } from './types.ts';

/** One policy map entry; the same fields as src/datapath/maps/policy.ts's codec type. */
export interface PolicyMapEntry {
  /** Remote identity; 0 = any identity. */
  identity: number;
  /** Direction, from the subject's point of view. */
  egress: boolean;
  /** IP protocol number: 6 TCP, 17 UDP, 1 ICMP; 0 = any protocol (then the port is wildcarded too). */
  protocol: number;
  /** Destination port, host order (0 when wildcarded). */
  port: number;
  /** 16 = exact port, 0..15 = a prefix block of ports, 0 also for "any port". */
  portPrefixLen: number;
  deny: boolean;
}

/** `enforced`: default deny in that direction (no entry = drop); `allow-all`: no rule puts the subject into default deny there. */
export type Enforcement = 'enforced' | 'allow-all';

/**
 * Shared between subjects that the same rules select, so read-only: the
 * object and the list are frozen, the entries typed Readonly (freezing each
 * of 60,000 entries would cost more than computing them).
 */
export interface SubjectPolicy {
  readonly ingress: Enforcement;
  readonly egress: Enforcement;
  /** Sorted by direction (ingress first), identity, protocol, port, prefix length. */
  readonly entries: readonly Readonly<PolicyMapEntry>[];
}

/**
 * Whose policy: a local pod (rules with endpointSelector) or the node itself
 * (clusterwide rules with nodeSelector; its labels are the node's labels).
 */
export type Subject =
  | { readonly kind: 'endpoint'; readonly labels: Labels }
  | { readonly kind: 'host'; readonly labels: Labels };

/** A rule and the policy it belongs to. */
export interface SelectedRule {
  readonly policy: Policy;
  readonly rule: PolicyRule;
  /** Position among all the engine's rules. */
  readonly seq: number;
}

/** Does one entity select an identity with these labels? (docs.cilium.io "Layer 3 Policies: Entities based") */
export function entitySelects(entity: Entity, labels: IndexedLabels): boolean {
  switch (entity) {
    case 'all': return true;
    case 'world':
    case 'world-ipv4': return hasReserved(labels, 'world');
    // "all network endpoints inside of the local cluster": everything but world and CIDR identities.
    case 'cluster': return identityPrefix(labels) === undefined;
    default: return hasReserved(labels, entity); // host, remote-node, health, init, unmanaged, kube-apiserver, ingress
  }
}

/** Does an item's peer part select a remote identity with these labels? (identity 0 / unknown: pass empty labels) */
export function peersSelect(peers: Peers, labels: IndexedLabels): boolean {
  switch (peers.kind) {
    case 'all': return true;
    case 'none': return false;
    case 'endpoints': return peers.selectors.some((s) => selectorMatches(s, labels));
    case 'entities': return peers.entities.some((e) => entitySelects(e, labels));
    case 'cidr': return peers.cidrs.some((c) => cidrSelects(c, labels));
  }
}

/** Whether the item's peers are every identity (one identity-0 entry) rather than a list. */
function selectsAll(peers: Peers): boolean {
  return peers.kind === 'all' || (peers.kind === 'entities' && peers.entities.includes('all'));
}

/**
 * Policies and a universe, compiled once; compute() then answers per subject.
 * Keep one engine for as long as neither the policies nor the universe
 * change: the peers of each rule item are resolved once and reused for every
 * subject.
 */
export class PolicyEngine {
  readonly policies: readonly Policy[];
  readonly universe: Universe;
  private readonly rules: SelectedRule[];
  private readonly indexed = new Map<number, IndexedLabels>();
  private readonly peerCache = new WeakMap<RuleItem, 'any' | readonly number[]>();
  private readonly blockCache = new WeakMap<RuleItem, readonly PortBlock[]>();
  /** A subject's entries depend only on which rules select it: results by that set. */
  private readonly results = new Map<string, SubjectPolicy>();

  constructor(policies: readonly Policy[], universe: Universe) {
    this.policies = policies;
    this.universe = universe;
    let seq = 0;
    this.rules = policies.flatMap((policy) => policy.rules.map((rule) => ({ policy, rule, seq: seq++ })));
    for (const [id, labels] of universe) if (id !== 0) this.indexed.set(id, indexLabels(labels));
  }

  /** Every rule whose endpointSelector (pods) or nodeSelector (the host) selects the subject, in policy order. */
  selectingRules(subject: Subject): SelectedRule[] {
    const want = subject.kind === 'host' ? 'node' : 'endpoint';
    const labels = indexLabels(subject.labels);
    return this.rules.filter(({ rule }) => rule.subject === want && selectorMatches(rule.selector, labels));
  }

  /** The remote identities an item selects: 'any' (identity 0) or the universe's identities, ascending. */
  peersOf(item: RuleItem): 'any' | readonly number[] {
    let peers = this.peerCache.get(item);
    if (peers === undefined) {
      if (selectsAll(item.peers)) peers = 'any';
      else if (item.peers.kind === 'none') peers = [];
      else {
        const ids: number[] = [];
        for (const [id, labels] of this.indexed) if (peersSelect(item.peers, labels)) ids.push(id);
        peers = ids.sort((a, b) => a - b);
      }
      this.peerCache.set(item, peers);
    }
    return peers;
  }

  /** Does the item select this remote identity? (Identity 0 or one outside the universe: only an item that selects every peer.) */
  itemSelects(item: RuleItem, identity: number): boolean {
    const peers = this.peersOf(item);
    return peers === 'any' || (identity !== 0 && this.indexed.has(identity) && binarySearch(peers, identity));
  }

  /** The (protocol, port) blocks an item covers. */
  blocksOf(item: RuleItem): readonly PortBlock[] {
    let blocks = this.blockCache.get(item);
    if (blocks === undefined) {
      blocks = itemBlocks(item.ports);
      this.blockCache.set(item, blocks);
    }
    return blocks;
  }

  /** The subject's policy map contents. */
  compute(subject: Subject): SubjectPolicy {
    const selected = this.selectingRules(subject);
    const key = selected.map((r) => r.seq).join(',');
    let result = this.results.get(key);
    if (!result) {
      result = this.build(selected);
      this.results.set(key, result);
    }
    return result;
  }

  /**
   * The entries for a set of selecting rules. Each identity's entries depend
   * only on the items that select it (its contribution list), and broad rules
   * (entities, empty selectors) give many identities the same list, so each
   * distinct list is resolved once and its blocks emitted per identity.
   */
  private build(selected: readonly SelectedRule[]): SubjectPolicy {
    const out: PolicyMapEntry[] = [];
    const enforcement = {} as Record<Direction, Enforcement>;
    for (const dir of ['ingress', 'egress'] as const) {
      const egress = dir === 'egress';
      const enforced = selected.some(({ rule }) => rule.defaultDeny[dir]);
      enforcement[dir] = enforced ? 'enforced' : 'allow-all';
      // identity -> the items (allow and deny) that select it, in rule order.
      const contributions = new Map<number, RuleItem[]>();
      const add = (identity: number, item: RuleItem) => {
        const list = contributions.get(identity);
        if (list) list.push(item);
        else contributions.set(identity, [item]);
      };
      if (!enforced) add(0, ALLOW_ALL);
      const denySection = dir === 'ingress' ? 'ingressDeny' : 'egressDeny';
      for (const { rule } of selected) {
        for (const item of [...rule[dir], ...rule[denySection]]) {
          const peers = this.peersOf(item);
          if (peers === 'any') add(0, item);
          else for (const id of peers) add(id, item);
        }
      }
      const zero = this.blockSets(contributions.get(0) ?? []);
      const groups = new Map<string, ResolvedBlock[]>();
      const itemIds = new Map<RuleItem, number>();
      for (const identity of [...contributions.keys()].sort((a, b) => a - b)) {
        const items = contributions.get(identity)!;
        const sig = items.map((i) => { let n = itemIds.get(i); if (n === undefined) itemIds.set(i, (n = itemIds.size)); return n; }).join(',');
        const key = identity === 0 ? '0' : sig;
        let blocks = groups.get(key);
        if (!blocks) groups.set(key, (blocks = resolveBlocks(this.blockSets(items), identity === 0 ? undefined : zero)));
        for (const { b, deny } of blocks) {
          out.push({ identity, egress, protocol: b.protocol, port: b.port, portPrefixLen: b.prefixLen, deny });
        }
      }
    }
    return Object.freeze({ ingress: enforcement.ingress, egress: enforcement.egress, entries: Object.freeze(out) });
  }

  /** The block keys of some items, allow and deny apart. */
  private blockSets(items: readonly RuleItem[]): BlockSets {
    const sets: BlockSets = { allow: new Set(), deny: new Set() };
    for (const item of items) {
      const set = item.section.endsWith('Deny') ? sets.deny : sets.allow;
      for (const b of this.blocksOf(item)) set.add(blockKey(b));
    }
    return sets;
  }
}

/** The allow-all item a direction no rule puts into default deny gets (for identity 0). */
const ALLOW_ALL: RuleItem = Object.freeze({ section: 'ingress' as const, index: -1, path: '', peers: { kind: 'all' as const } });

interface BlockSets { allow: Set<number>; deny: Set<number> }
interface ResolvedBlock { b: PortBlock; deny: boolean }

function binarySearch(sorted: readonly number[], x: number): boolean {
  let lo = 0;
  let hi = sorted.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = sorted[mid]!;
    if (v === x) return true;
    if (v < x) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

const PORT_MASKS = Array.from({ length: 17 }, (_, len) => (len === 0 ? 0 : (0xffff << (16 - len)) & 0xffff));
const ANY_KEY = blockKey(ANY_BLOCK);

/**
 * Is `b` (key k) inside a block of `set`: strictly (another block), or also
 * itself? Blocks nest, so the blocks containing `b` are a chain: every
 * protocol, then b's protocol with each shorter port prefix, then b.
 */
function inside(set: Set<number> | undefined, b: PortBlock, k: number, strict: boolean): boolean {
  if (!set || set.size === 0) return false;
  if (set.has(ANY_KEY) && !(strict && k === ANY_KEY)) return true;
  if (b.protocol === 0) return false;
  for (let len = 0; len <= b.prefixLen; len++) {
    const a = ((b.protocol << 21) | (len << 16) | (b.port & PORT_MASKS[len]!)) >>> 0;
    if (set.has(a) && (!strict || a !== k)) return true;
  }
  return false;
}

/**
 * One identity's entries from its allow and deny blocks (and identity 0's,
 * for an identity other than 0), sorted by protocol, port, prefix length.
 */
function resolveBlocks({ allow, deny }: BlockSets, zero: BlockSets | undefined): ResolvedBlock[] {
  const out: ResolvedBlock[] = [];
  for (const k of deny) {
    const b = blockFromKey(k);
    // A deny inside a wider deny of this identity, or of identity 0, changes no answer.
    if (inside(deny, b, k, true) || inside(zero?.deny, b, k, false)) continue;
    out.push({ b, deny: true });
  }
  for (const k of allow) {
    const b = blockFromKey(k);
    // Deny precedence: the LPM would return this allow, not the wider deny of the same identity.
    if (inside(deny, b, k, false)) continue;
    // Redundant: a wider allow of this identity, or one of identity 0, answers the same.
    if (inside(allow, b, k, true) || inside(zero?.allow, b, k, false)) continue;
    out.push({ b, deny: false });
  }
  // An allow and a deny never share a block (the allow is inside the deny), so this order is total.
  return out.sort((x, y) => x.b.protocol - y.b.protocol || x.b.port - y.b.port || x.b.prefixLen - y.b.prefixLen);
}

/** compute() for one subject, without keeping the engine. */
export function computePolicy(policies: readonly Policy[], universe: Universe, subject: Subject): SubjectPolicy {
  return new PolicyEngine(policies, universe).compute(subject);
}

/**
 * The datapath's decision for a packet, simulated on a policy map's entries:
 * the most specific entry of (remote, dir) and of (0, dir) containing (protocol,
 * port); deny if either is a deny, allow if either is an allow, else drop.
 * The hits are returned for explanations and tests.
 */
export function lookupEntries(
  entries: readonly PolicyMapEntry[], remote: number, egress: boolean, protocol: number, port: number,
): { verdict: 'allow' | 'deny' | 'drop'; hits: PolicyMapEntry[] } {
  const best = (identity: number) => {
    let hit: PolicyMapEntry | undefined;
    let bits = -1;
    for (const e of entries) {
      if (e.identity !== identity || e.egress !== egress) continue;
      const b = { protocol: e.protocol, port: e.port, prefixLen: e.portPrefixLen };
      if (!blockMatches(b, protocol, port)) continue;
      const n = blockPrefixBits(b);
      if (n > bits) { hit = e; bits = n; }
    }
    return hit;
  };
  const hits = [best(remote), remote === 0 ? undefined : best(0)].filter((h): h is PolicyMapEntry => h !== undefined);
  const verdict = hits.some((h) => h.deny) ? 'deny' : hits.length > 0 ? 'allow' : 'drop';
  return { verdict, hits };
}
