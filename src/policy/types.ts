// The validated form of policy documents (./document.ts builds it). Close to
// CiliumNetworkPolicy, with everything resolved that can be resolved without
// the identity universe: selectors compiled (and namespace-scoped as Cilium
// scopes them), CIDRs normalized, ports checked, defaults filled in.
import type { Selector } from './selector.ts';

export type PolicyKind = 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy';
export const CNP: PolicyKind = 'CiliumNetworkPolicy';
export const CCNP: PolicyKind = 'CiliumClusterwideNetworkPolicy';

/**
 * Cilium's entities (docs.cilium.io, "Layer 3 Policies: Entities based").
 * `world-ipv4` is world in this IPv4-only network; `world-ipv6` is refused.
 */
export type Entity =
  | 'host' | 'remote-node' | 'world' | 'world-ipv4' | 'cluster' | 'all'
  | 'health' | 'init' | 'unmanaged' | 'kube-apiserver' | 'ingress';
export const ENTITIES: readonly Entity[] = [
  'host', 'remote-node', 'world', 'world-ipv4', 'cluster', 'all', 'health', 'init', 'unmanaged', 'kube-apiserver', 'ingress',
];

export type ProtocolName = 'TCP' | 'UDP' | 'SCTP' | 'ICMP' | 'ANY';

/**
 * One `toPorts[].ports[]` item. `port` 0 = every port; `endPort` (>= port)
 * makes a range. For ICMP, `port` is the ICMP type, as the datapath keys
 * ICMP by type: toPorts gives port 0 = every type; an icmps type is given as
 * port = endPort = the type, so type 0 (echo reply) stays one type.
 */
export interface PortProtocol {
  readonly port: number;
  readonly endPort?: number;
  readonly protocol: ProtocolName;
}

/** An IPv4 prefix, normalized (host bits cleared). */
export interface Prefix {
  readonly network: number;
  readonly length: number;
  /** Canonical text, e.g. "10.0.0.0/8". */
  readonly text: string;
}

/** `fromCIDRSet` / `toCIDRSet` item (and `fromCIDR` / `toCIDR`, with no except). */
export interface CidrSelector {
  readonly cidr: Prefix;
  readonly except: readonly Prefix[];
}

/**
 * The peers of one rule item. `all` when the item names no peer field (Cilium:
 * an absent field has no effect, so e.g. a toPorts-only rule allows every
 * peer); `none` when a peer field is an empty list (Cilium: "explicitly check
 * for empty non-nil slices, it should not result in any identity being
 * selected"); otherwise what the one peer field lists.
 */
export type Peers =
  | { readonly kind: 'all' }
  | { readonly kind: 'none'; readonly field: string }
  | { readonly kind: 'endpoints'; readonly field: string; readonly selectors: readonly Selector[] }
  | { readonly kind: 'entities'; readonly field: string; readonly entities: readonly Entity[] }
  | { readonly kind: 'cidr'; readonly field: string; readonly cidrs: readonly CidrSelector[] };

export type Section = 'ingress' | 'ingressDeny' | 'egress' | 'egressDeny';
export const SECTIONS: readonly Section[] = ['ingress', 'ingressDeny', 'egress', 'egressDeny'];
export type Direction = 'ingress' | 'egress';

/** One item of ingress / ingressDeny / egress / egressDeny. */
export interface RuleItem {
  readonly section: Section;
  /** Position in its section. */
  readonly index: number;
  /** Where it is written, e.g. "specs[0].ingress[1]". */
  readonly path: string;
  readonly peers: Peers;
  /** The ports of every toPorts item and the ICMP types of icmps, flattened; undefined = every protocol and port. */
  readonly ports?: readonly PortProtocol[];
}

/** One rule (`spec`, or one of `specs`). */
export interface PolicyRule {
  /** Position in Policy.rules (spec first, then specs). */
  readonly index: number;
  /** "spec" or "specs[i]". */
  readonly path: string;
  /** endpointSelector rules apply to pods, nodeSelector rules (clusterwide only) to nodes. */
  readonly subject: 'endpoint' | 'node';
  /** The effective subject selector (a CiliumNetworkPolicy's is limited to its namespace). */
  readonly selector: Selector;
  readonly description?: string;
  /**
   * Whether the rule puts its subjects into default deny per direction:
   * `enableDefaultDeny` if given, else whether the rule has any allow or deny
   * item in that direction (docs.cilium.io "Policy Enforcement Modes").
   */
  readonly defaultDeny: { readonly ingress: boolean; readonly egress: boolean };
  readonly ingress: readonly RuleItem[];
  readonly ingressDeny: readonly RuleItem[];
  readonly egress: readonly RuleItem[];
  readonly egressDeny: readonly RuleItem[];
}

export interface Policy {
  readonly kind: PolicyKind;
  readonly name: string;
  /** CiliumNetworkPolicy only (default "default"). */
  readonly namespace?: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** A top-level description (Cilium's own examples put one there). */
  readonly description?: string;
  readonly rules: readonly PolicyRule[];
  /** 1-based position of the document in the text it was parsed from. */
  readonly document: number;
  /** The document as plain JSON data, unchanged: store this, parse it again later. */
  readonly raw: unknown;
}

/** "default/allow-web" for a CiliumNetworkPolicy, "allow-dns" for a clusterwide one. */
export function policyId(p: Pick<Policy, 'name' | 'namespace'>): string {
  return p.namespace === undefined ? p.name : `${p.namespace}/${p.name}`;
}
