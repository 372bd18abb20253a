// Policy trace: would a packet from a source to a destination pass, and which
// rule decides? It evaluates the rules themselves (not the map entries), in
// the order the datapath meets them: the source's egress policy, then the
// destination's ingress policy. Its verdict for each direction must equal the
// datapath's lookup on compute()'s entries; test/unit/policy-property.test.ts
// checks that on random policies and universes.
import { MembraneError } from '../shared/errors.ts';
import { identityOfAddress } from './cidr.ts';
import { PolicyEngine, type Enforcement, type SelectedRule, type Subject } from './compute.ts';
import type { Labels, Universe } from './labels.ts';
import { IPPROTO_ICMP, PROTOCOL_NUMBERS, blockMatches } from './ports.ts';
import { CNP, policyId, type Direction, type Policy, type PolicyKind, type RuleItem, type Section } from './types.ts';

/**
 * One end of the traced flow. A pod is subject to endpointSelector rules, a
 * node to nodeSelector rules; `identity` is what the other end sees (for a
 * node: 1 host from its own pods, 6 remote-node from other nodes' pods). An
 * address is outside the cluster: it has no policy of its own and carries the
 * CIDR identity of the longest prefix a policy names, else world. An
 * endpoint given by labels no pod has yet has no identity: identity 0
 * (UNKNOWN_IDENTITY), and the trace gives it a stand-in of its own.
 */
export type TracePeer =
  | { readonly kind: 'endpoint'; readonly identity: number; readonly labels: Labels; readonly name?: string }
  | { readonly kind: 'host'; readonly identity: number; readonly labels: Labels; readonly name?: string }
  | { readonly kind: 'address'; readonly address: string };

export interface TraceRequest {
  readonly src: TracePeer;
  readonly dst: TracePeer;
  /** TCP, UDP, SCTP, ICMP or an IP protocol number. */
  readonly protocol: 'TCP' | 'UDP' | 'SCTP' | 'ICMP' | number;
  /**
   * Destination port (default 0); for ICMP the ICMP type, as the datapath
   * looks ICMP up by type (default 8, an echo request: what ping sends).
   */
  readonly dport?: number;
}

/** Where a deciding rule item is written. */
export interface RuleRef {
  readonly kind: PolicyKind;
  readonly name: string;
  readonly namespace?: string;
  /** Index of the rule in the policy (spec first, then specs). */
  readonly rule: number;
  /** "spec" or "specs[i]". */
  readonly rulePath: string;
  readonly section?: Section;
  readonly item?: number;
  /** "specs[0].ingress[1]", or the rule's path when no item is meant. */
  readonly path: string;
}

export type DirectionReason =
  | 'outside'           // the subject is an outside address: it has no policy here
  | 'not-enforced'      // no rule puts the subject into default deny in this direction (and no deny matched)
  | 'allowed-by-rule'
  | 'denied-by-rule'
  | 'default-deny';

export interface DirectionVerdict {
  readonly direction: Direction;
  /** The identity the subject's policy sees on the other end. */
  readonly remoteIdentity: number;
  readonly enforcement: Enforcement | 'none';
  readonly allowed: boolean;
  readonly reason: DirectionReason;
  /** The deciding item, for allowed-by-rule and denied-by-rule. */
  readonly rule?: RuleRef;
  /** The rules that put the subject into default deny in this direction. */
  readonly selectedBy: readonly RuleRef[];
  /** One line for people. */
  readonly text: string;
}

export type Verdict = 'allowed' | 'denied-by-deny-rule' | 'denied-by-default';

export interface TraceResult {
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly protocol: number;
  readonly dport: number;
  /** The source's egress policy. */
  readonly egress: DirectionVerdict;
  /** The destination's ingress policy. */
  readonly ingress: DirectionVerdict;
  /** The first denial on the way (egress is checked first), or allowed. */
  readonly verdict: Verdict;
  readonly text: string;
}

function ruleRef(sel: SelectedRule, item?: RuleItem): RuleRef {
  const { policy, rule } = sel;
  return {
    kind: policy.kind, name: policy.name, ...(policy.namespace !== undefined ? { namespace: policy.namespace } : {}),
    rule: rule.index, rulePath: rule.path,
    ...(item ? { section: item.section, item: item.index, path: item.path } : { path: rule.path }),
  };
}

/** "CiliumNetworkPolicy default/allow-web specs[0].ingress[1]" */
export function formatRuleRef(r: RuleRef): string {
  return `${r.kind === CNP ? 'CiliumNetworkPolicy' : 'CiliumClusterwideNetworkPolicy'} ${policyId(r)} ${r.path}`;
}

/**
 * The verdict of one subject's policy in one direction for a packet to or
 * from `remote`: the first matching deny item, else the first matching allow
 * item if the direction is in default deny, else default deny or "not
 * enforced". Rules are taken in policy order, items in written order.
 */
export function explainDirection(
  engine: PolicyEngine, subject: Subject, direction: Direction, remote: number, protocol: number, port: number,
): DirectionVerdict {
  const selected = engine.selectingRules(subject);
  const denySection = direction === 'ingress' ? 'ingressDeny' : 'egressDeny';
  const matches = (item: RuleItem) => engine.itemSelects(item, remote) && engine.blocksOf(item).some((b) => blockMatches(b, protocol, port));
  const enforcing = selected.filter(({ rule }) => rule.defaultDeny[direction]);
  const enforcement: Enforcement = enforcing.length > 0 ? 'enforced' : 'allow-all';
  const selectedBy = enforcing.map((s) => ruleRef(s));
  const base = { direction, remoteIdentity: remote, enforcement, selectedBy };

  for (const sel of selected) {
    const item = sel.rule[denySection].find(matches);
    if (item) {
      const rule = ruleRef(sel, item);
      return { ...base, allowed: false, reason: 'denied-by-rule', rule, text: `denied by ${formatRuleRef(rule)}` };
    }
  }
  if (enforcement === 'allow-all') {
    const text = selected.length === 0
      ? `allowed: no policy selects it for ${direction}`
      : `allowed: no rule puts it into default deny for ${direction}`;
    return { ...base, allowed: true, reason: 'not-enforced', text };
  }
  for (const sel of selected) {
    const item = sel.rule[direction].find(matches);
    if (item) {
      const rule = ruleRef(sel, item);
      return { ...base, allowed: true, reason: 'allowed-by-rule', rule, text: `allowed by ${formatRuleRef(rule)}` };
    }
  }
  return {
    ...base, allowed: false, reason: 'default-deny',
    text: `denied: default deny for ${direction} (selected by ${selectedBy.map(formatRuleRef).join(', ')}) and no rule allows it`,
  };
}

const ICMP_ECHO_REQUEST = 8;
/** A trace peer's identity when its labels have none yet (Cilium's UNKNOWN identity). */
const UNKNOWN_IDENTITY = 0;
/** Stand-ins for such peers start above the cluster's identities (16 bits) and below local CIDR ones (1 << 24). */
const LABELS_ONLY_BASE = 0xff_0000;

function protocolNumber(p: TraceRequest['protocol']): number {
  if (typeof p === 'number') {
    if (!Number.isInteger(p) || p < 0 || p > 255) throw new MembraneError(`trace policy: protocol ${p} is not an IP protocol number (0-255)`, { code: 'E_USAGE' });
    return p;
  }
  const n = PROTOCOL_NUMBERS[p];
  if (n === undefined) throw new MembraneError(`trace policy: protocol ${JSON.stringify(p)} is not TCP, UDP, SCTP or ICMP`, { code: 'E_USAGE' });
  return n;
}

function peerName(p: TracePeer, identity: number): string {
  if (p.kind === 'address') return `${p.address} (identity ${identity})`;
  if (p.identity === UNKNOWN_IDENTITY) return `${p.name ?? p.kind} (labels no identity has yet)`;
  return `${p.name ?? p.kind} (identity ${identity})`;
}

/**
 * Traces one packet: the source's egress verdict, the destination's ingress
 * verdict, each with the rule that decided it, and the overall verdict.
 * Identities of trace peers missing from the universe are added to it with
 * the labels given, so their selectors see them.
 */
export function tracePolicy(policies: readonly Policy[], universe: Universe, req: TraceRequest): TraceResult {
  const protocol = protocolNumber(req.protocol);
  const dport = req.dport ?? (protocol === IPPROTO_ICMP ? ICMP_ECHO_REQUEST : 0);
  const max = protocol === IPPROTO_ICMP ? 255 : 65535;
  if (!Number.isInteger(dport) || dport < 0 || dport > max) {
    throw new MembraneError(`trace policy: ${protocol === IPPROTO_ICMP ? 'ICMP type' : 'destination port'} ${dport} is out of range (0-${max})`, { code: 'E_USAGE' });
  }

  const full = new Map(universe);
  // Labels without an identity yet: each end gets a stand-in above every id in
  // use, so two such ends never share one (0 would also read as "any identity"
  // in the engine's wildcard rows) and the selectors see the labels given.
  let next = Math.max(LABELS_ONLY_BASE, ...full.keys()) + 1;
  const stand = (p: TracePeer): TracePeer => (p.kind === 'endpoint' && p.identity === UNKNOWN_IDENTITY ? { ...p, identity: next++ } : p);
  const src = stand(req.src);
  const dst = stand(req.dst);
  for (const p of [src, dst]) if (p.kind !== 'address' && !full.has(p.identity)) full.set(p.identity, p.labels);
  const identityOf = (p: TracePeer, end: string) => {
    if (p.kind !== 'address') return p.identity;
    try {
      return identityOfAddress(universe, p.address);
    } catch (err) {
      throw new MembraneError(`trace policy: ${end} address ${JSON.stringify(p.address)}`, { cause: err });
    }
  };
  const srcIdentity = identityOf(src, 'source');
  const dstIdentity = identityOf(dst, 'destination');
  const engine = new PolicyEngine(policies, full);

  const side = (p: TracePeer, direction: Direction, remote: number): DirectionVerdict => {
    if (p.kind === 'address') {
      return {
        direction, remoteIdentity: remote, enforcement: 'none', allowed: true, reason: 'outside', selectedBy: [],
        text: `not checked: ${p.address} is outside the cluster and has no ${direction} policy here`,
      };
    }
    return explainDirection(engine, { kind: p.kind, labels: p.labels }, direction, remote, protocol, dport);
  };
  const egress = side(src, 'egress', dstIdentity);
  const ingress = side(dst, 'ingress', srcIdentity);
  const denied = [egress, ingress].find((d) => !d.allowed);
  const verdict: Verdict = !denied ? 'allowed' : denied.reason === 'denied-by-rule' ? 'denied-by-deny-rule' : 'denied-by-default';
  const proto = Object.entries(PROTOCOL_NUMBERS).find(([, n]) => n === protocol)?.[0] ?? `protocol ${protocol}`;
  const flow = `${peerName(req.src, srcIdentity)} -> ${peerName(req.dst, dstIdentity)} ${proto}${protocol === IPPROTO_ICMP ? ` type ${dport}` : `/${dport}`}`;
  const text = `${flow}: ${verdict === 'allowed' ? 'allowed' : `denied at ${denied!.direction}`}`;
  return { srcIdentity, dstIdentity, protocol, dport, egress, ingress, verdict, text };
}
