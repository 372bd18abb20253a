// Label sets and the identity universe, as the policy engine reads them.
//
// An identity's labels are a map from `source:key` to value, exactly as the
// agent builds them (src/agent/labels.ts: `k8s:app=web`,
// `k8s:io.kubernetes.pod.namespace=default`) and the store keeps them. A key
// written without a source is read as `k8s:`, as the store does
// (DEFAULT_LABEL_SOURCE in src/store/keys.ts).
//
// Reserved identities carry one `reserved:<name>` label with an empty value
// (Cilium's numbering, reference 7.1). CIDR identities are described in
// ./cidr.ts: `cidr:<prefix>` plus `reserved:world`.

/** Labels of one identity: `source:key` -> value. */
export type Labels = Readonly<Record<string, string>>;

/** Every identity the engine may see as a peer: number -> labels. */
export type Universe = ReadonlyMap<number, Labels>;

export const SOURCE_ANY = 'any';
export const SOURCE_K8S = 'k8s';
export const SOURCE_RESERVED = 'reserved';
export const SOURCE_CIDR = 'cidr';

/** The namespace label the agent gives every pod (key without its source). */
export const NAMESPACE_KEY = 'io.kubernetes.pod.namespace';

/**
 * Reserved identities (Cilium's numbering, reference 7.1). Duplicated from
 * src/datapath/maps/identities.ts because src/policy may import only
 * src/shared; test/unit/policy-selector.test.ts checks that the two agree.
 */
export const ReservedIdentity = {
  HOST: 1,
  WORLD: 2,
  UNMANAGED: 3,
  HEALTH: 4,
  INIT: 5,
  REMOTE_NODE: 6,
  KUBE_APISERVER: 7,
  INGRESS: 8,
} as const;

/** Local CIDR identities are `1<<24 | n` (reference 7.1): node-local, never on the wire. */
export const CIDR_IDENTITY_BASE = 1 << 24;

const RESERVED_NAMES: Readonly<Record<number, readonly string[]>> = {
  [ReservedIdentity.HOST]: ['host'],
  [ReservedIdentity.WORLD]: ['world'],
  [ReservedIdentity.UNMANAGED]: ['unmanaged'],
  [ReservedIdentity.HEALTH]: ['health'],
  [ReservedIdentity.INIT]: ['init'],
  [ReservedIdentity.REMOTE_NODE]: ['remote-node'],
  // The API server's nodes are remote nodes too (reference 7.1), so `remote-node` selects it.
  [ReservedIdentity.KUBE_APISERVER]: ['kube-apiserver', 'remote-node'],
  [ReservedIdentity.INGRESS]: ['ingress'],
};

/** The labels of a reserved identity, e.g. 1 -> { 'reserved:host': '' }; undefined for other numbers. */
export function reservedLabels(id: number): Labels | undefined {
  const names = RESERVED_NAMES[id];
  return names && Object.freeze(Object.fromEntries(names.map((n) => [`${SOURCE_RESERVED}:${n}`, ''])));
}

/** The reserved part of a universe: 1 host, 2 world, 3..8 as Cilium numbers them. */
export function reservedUniverse(): Map<number, Labels> {
  return new Map(Object.keys(RESERVED_NAMES).map((id) => [Number(id), reservedLabels(Number(id))!]));
}

/** Splits a label's name into source and key; a name without a source is `k8s:` (as stored). */
export function splitLabelName(name: string): { source: string; key: string } {
  const colon = name.indexOf(':');
  return colon < 0 ? { source: SOURCE_K8S, key: name } : { source: name.slice(0, colon), key: name.slice(colon + 1) };
}

/**
 * A label set indexed by key (without source) for selector matching: key ->
 * [source, value] pairs. Built once per identity; matching a selector then
 * costs one map lookup per requirement.
 */
export type IndexedLabels = ReadonlyMap<string, readonly (readonly [source: string, value: string])[]>;

export function indexLabels(labels: Labels): IndexedLabels {
  const out = new Map<string, [string, string][]>();
  for (const [name, value] of Object.entries(labels)) {
    const { source, key } = splitLabelName(name);
    const list = out.get(key);
    if (list) list.push([source, value]);
    else out.set(key, [[source, value]]);
  }
  return out;
}

/** True if the label set has `reserved:<name>`. */
export function hasReserved(labels: IndexedLabels, name: string): boolean {
  return labels.get(name)?.some(([s]) => s === SOURCE_RESERVED) ?? false;
}
