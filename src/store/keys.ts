// Cilium's kvstore key layout and the JSON values Membrane writes there, as pure
// encode/decode functions (no I/O). Layout (pkg/kvstore, pkg/node/store,
// pkg/ipcache/kvstore.go, pkg/kvstore/allocator):
//   cilium/state/nodes/v1/<cluster>/<node>                     node JSON
//   cilium/state/ip/v1/<namespace: "default">/<IP>             IPIdentityPair JSON
//   cilium/state/identities/v1/id/<ID>                         label key (master key, no lease)
//   cilium/state/identities/v1/value/<labelKey>/<nodeSuffix>   ID in decimal (slave key, leased)
//   cilium/state/identities/v1/locks/<labelKey>                allocation lock (leased)
//   cilium/state/identities/v1/freed/<ID>                      Membrane: an ID the GC freed, kept out of reuse for a while
//   cilium/state/policies/v1/cnp/<namespace>/<name>            Membrane: a CiliumNetworkPolicy as imported (JSON)
//   cilium/state/policies/v1/ccnp/<name>                       Membrane: a CiliumClusterwideNetworkPolicy as imported (JSON)
// (Cilium keeps policies in Kubernetes; with no API server here they live in the same store as the rest.)
// Field names are Go's (PascalCase) so the values read like Cilium's.
import { isIP } from 'node:net';
import { MembraneError } from '../shared/errors.ts';

export const STATE_PREFIX = 'cilium/state/';
export const NODES_PREFIX = 'cilium/state/nodes/v1/';
export const IP_PREFIX = 'cilium/state/ip/v1/';
export const IDENTITIES_PREFIX = 'cilium/state/identities/v1/';
export const IDENTITY_ID_PREFIX = 'cilium/state/identities/v1/id/';
export const IDENTITY_VALUE_PREFIX = 'cilium/state/identities/v1/value/';
export const IDENTITY_LOCK_PREFIX = 'cilium/state/identities/v1/locks/';
/** Membrane's own: IDs the garbage collector freed, in quarantine (not handed to another label set) until it ends. */
export const IDENTITY_FREED_PREFIX = 'cilium/state/identities/v1/freed/';

export const POLICIES_PREFIX = 'cilium/state/policies/v1/';

export const DEFAULT_CLUSTER = 'default';
/** Cilium writes every ipcache entry under the "default" address space. */
export const DEFAULT_IP_NAMESPACE = 'default';
/** Global (label-based) identities for cluster ID 0: 256..65535 (reference §7.1). */
export const MIN_GLOBAL_IDENTITY = 256;
export const MAX_GLOBAL_IDENTITY = 65535;
/** Label source used when a label is given without one (`app` means `k8s:app`). */
export const DEFAULT_LABEL_SOURCE = 'k8s';

function keyError(what: string, problem: string): MembraneError {
  return new MembraneError(`${what}: ${problem}`, { code: 'E_STORE_KEY' });
}

/** A path segment must be non-empty and free of '/', or keys of different objects could collide. */
function segment(what: string, s: string): string {
  if (s === '' || s.includes('/')) throw keyError(what, `${JSON.stringify(s)} is not a valid key segment (empty or contains "/")`);
  return s;
}

// ---- nodes ----

export function nodesPrefix(cluster?: string): string {
  return cluster === undefined ? NODES_PREFIX : `${NODES_PREFIX}${segment('nodes prefix', cluster)}/`;
}

export function nodeKey(cluster: string, node: string): string {
  return `${NODES_PREFIX}${segment('node key', cluster)}/${segment('node key', node)}`;
}

export function parseNodeKey(key: string): { cluster: string; node: string } | undefined {
  if (!key.startsWith(NODES_PREFIX)) return undefined;
  const parts = key.slice(NODES_PREFIX.length).split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) return undefined;
  return { cluster: parts[0], node: parts[1] };
}

// ---- ipcache ----

export function ipPrefix(namespace = DEFAULT_IP_NAMESPACE): string {
  return `${IP_PREFIX}${segment('ip prefix', namespace)}/`;
}

/** `ip` is a bare address (pod IPs), as Cilium's key is the IP without a prefix length. */
export function ipKey(ip: string, namespace = DEFAULT_IP_NAMESPACE): string {
  if (isIP(ip) === 0) throw keyError('ip key', `${JSON.stringify(ip)} is not an IP address`);
  return `${ipPrefix(namespace)}${ip}`;
}

export function parseIpKey(key: string): { namespace: string; ip: string } | undefined {
  if (!key.startsWith(IP_PREFIX)) return undefined;
  const rest = key.slice(IP_PREFIX.length);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const ip = rest.slice(slash + 1);
  return isIP(ip) ? { namespace: rest.slice(0, slash), ip } : undefined;
}

// ---- identities ----

export function identityIdKey(id: number): string {
  if (!Number.isInteger(id) || id < 0) throw keyError('identity key', `${id} is not an identity`);
  return `${IDENTITY_ID_PREFIX}${id}`;
}

export function parseIdentityIdKey(key: string): number | undefined {
  if (!key.startsWith(IDENTITY_ID_PREFIX)) return undefined;
  const s = key.slice(IDENTITY_ID_PREFIX.length);
  return /^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : undefined;
}

/** All slave keys of one label set. The label key's trailing ';' keeps `k8s:a=b;` from matching `k8s:a=bc;`. */
export function identityValuePrefix(labelKey: string): string {
  return `${IDENTITY_VALUE_PREFIX}${labelKey}/`;
}

export function identityValueKey(labelKey: string, nodeSuffix: string): string {
  return `${identityValuePrefix(labelKey)}${segment('identity value key', nodeSuffix)}`;
}

/** The label key may itself contain '/' (k8s label prefixes), so the node suffix is what follows the last '/'. */
export function parseIdentityValueKey(key: string): { labelKey: string; node: string } | undefined {
  if (!key.startsWith(IDENTITY_VALUE_PREFIX)) return undefined;
  const rest = key.slice(IDENTITY_VALUE_PREFIX.length);
  const slash = rest.lastIndexOf('/');
  if (slash <= 0 || slash === rest.length - 1) return undefined;
  return { labelKey: rest.slice(0, slash), node: rest.slice(slash + 1) };
}

export function identityLockKey(labelKey: string): string {
  return `${IDENTITY_LOCK_PREFIX}${labelKey}`;
}

export function identityFreedKey(id: number): string {
  if (!Number.isInteger(id) || id < 0) throw keyError('freed identity key', `${id} is not an identity`);
  return `${IDENTITY_FREED_PREFIX}${id}`;
}

export function parseIdentityFreedKey(key: string): number | undefined {
  if (!key.startsWith(IDENTITY_FREED_PREFIX)) return undefined;
  const s = key.slice(IDENTITY_FREED_PREFIX.length);
  return /^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : undefined;
}

/** A freed ID's record: the labels it meant and when it was freed (ms since the epoch). */
export interface FreedIdentity {
  labelKey: string;
  freedAt: number;
}

export function encodeFreedIdentity(v: FreedIdentity): string {
  return JSON.stringify(v);
}

/** Undefined for a value that is not a freed-identity record (it then quarantines its ID with no end known). */
export function decodeFreedIdentity(value: string): FreedIdentity | undefined {
  try {
    const v = JSON.parse(value) as Partial<FreedIdentity>;
    return typeof v.labelKey === 'string' && Number.isFinite(v.freedAt) ? { labelKey: v.labelKey, freedAt: v.freedAt! } : undefined;
  } catch {
    return undefined;
  }
}

/** Master and slave key values are the ID in decimal. */
export function encodeIdentityId(id: number): string {
  return String(id);
}

export function decodeIdentityId(value: string): number | undefined {
  return /^(0|[1-9][0-9]*)$/.test(value.trim()) ? Number(value.trim()) : undefined;
}

// ---- label sets ----

/** Labels keyed `source:key` (or plain `key`, meaning `k8s:key`), e.g. `{ 'k8s:app': 'web' }`. */
export type Labels = Record<string, string>;

const SOURCE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function splitLabel(name: string): [source: string, key: string] {
  const colon = name.indexOf(':');
  return colon < 0 ? [DEFAULT_LABEL_SOURCE, name] : [name.slice(0, colon), name.slice(colon + 1)];
}

/**
 * Serialises a label set the way Cilium's kvstore allocator does
 * (`Labels.SortedList` + `FormatForKVStore`): each label as `source:key=value;`,
 * ordered by key (then source, which Cilium never needs as its keys are unique),
 * concatenated, e.g. `k8s:app=web;k8s:tier=db;`.
 * Throws MembraneError E_STORE_KEY for an empty set or a label that could not be
 * parsed back (';' anywhere, '=' in a key, an empty key, a bad source).
 */
export function formatLabelKey(labels: Labels): string {
  const parsed: [source: string, key: string, value: string][] = [];
  for (const [name, value] of Object.entries(labels)) {
    const [source, key] = splitLabel(name);
    if (!SOURCE_RE.test(source)) throw keyError('format labels', `label ${JSON.stringify(name)}: bad source ${JSON.stringify(source)}`);
    if (key === '' || key.includes(';') || key.includes('=')) {
      throw keyError('format labels', `label ${JSON.stringify(name)}: key must be non-empty without ';' or '='`);
    }
    if (value.includes(';')) throw keyError('format labels', `label ${JSON.stringify(name)}: value ${JSON.stringify(value)} contains ';'`);
    parsed.push([source, key, value]);
  }
  if (parsed.length === 0) throw keyError('format labels', 'empty label set');
  const cmp = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  parsed.sort((x, y) => cmp(x[1], y[1]) || cmp(x[0], y[0]));
  return parsed.map(([source, key, value]) => `${source}:${key}=${value};`).join('');
}

/** Inverse of formatLabelKey; keys come back as `source:key`. Throws E_STORE_KEY on malformed input. */
export function parseLabelKey(labelKey: string): Labels {
  if (!labelKey.endsWith(';')) throw keyError('parse labels', `${JSON.stringify(labelKey)} does not end with ';'`);
  const out: Labels = {};
  for (const part of labelKey.slice(0, -1).split(';')) {
    const eq = part.indexOf('=');
    const colon = part.indexOf(':');
    if (eq < 0 || colon <= 0 || colon > eq) throw keyError('parse labels', `${JSON.stringify(part)} is not source:key=value`);
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

/** The same labels with every key written `source:key` (what parseLabelKey returns). */
export function normalizeLabels(labels: Labels): Labels {
  return parseLabelKey(formatLabelKey(labels));
}

// ---- policies ----

/** Where a policy lives: a namespaced CiliumNetworkPolicy, or a clusterwide one (namespace undefined). */
export function policyKey(name: string, namespace?: string): string {
  return namespace === undefined
    ? `${POLICIES_PREFIX}ccnp/${segment('policy name', name)}`
    : `${POLICIES_PREFIX}cnp/${segment('policy namespace', namespace)}/${segment('policy name', name)}`;
}

export function parsePolicyKey(key: string): { name: string; namespace?: string } | undefined {
  if (!key.startsWith(POLICIES_PREFIX)) return undefined;
  const parts = key.slice(POLICIES_PREFIX.length).split('/');
  if (parts[0] === 'ccnp' && parts.length === 2 && parts[1]) return { name: parts[1] };
  if (parts[0] === 'cnp' && parts.length === 3 && parts[1] && parts[2]) return { namespace: parts[1], name: parts[2] };
  return undefined;
}

// ---- value codecs ----

function decodeError(what: string, key: string | undefined, problem: string): MembraneError {
  return new MembraneError(`decode ${what}${key ? ` ${key}` : ''}: ${problem}`, { code: 'E_STORE_DECODE' });
}

function parseJson(what: string, key: string | undefined, text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw decodeError(what, key, `invalid JSON (${(err as Error).message})`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw decodeError(what, key, 'not a JSON object');
  return v as Record<string, unknown>;
}

function isCidr(s: string): boolean {
  const m = /^(.+)\/(\d{1,3})$/.exec(s);
  if (!m) return false;
  const fam = isIP(m[1]!);
  const len = Number(m[2]);
  return fam !== 0 && len <= (fam === 4 ? 32 : 128);
}

/** Go's net.IPMask marshals as base64 of the mask bytes; this builds one from a prefix length. */
export function maskFromPrefixLength(prefixLength: number, family: 4 | 6): string {
  const bytes = Buffer.alloc(family === 4 ? 4 : 16);
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bytes.length * 8) {
    throw keyError('mask', `prefix length ${prefixLength} out of range for IPv${family}`);
  }
  for (let i = 0; i < prefixLength; i++) bytes[i >> 3]! |= 0x80 >> (i & 7);
  return bytes.toString('base64');
}

/** Prefix length of a base64 net.IPMask; undefined if it is not a contiguous mask. */
export function prefixLengthFromMask(mask: string): number | undefined {
  const bytes = Buffer.from(mask, 'base64');
  if (bytes.length !== 4 && bytes.length !== 16) return undefined;
  let bits = 0;
  let ended = false;
  for (const b of bytes) {
    for (let i = 7; i >= 0; i--) {
      const on = (b >> i) & 1;
      if (on && ended) return undefined;
      if (on) bits++;
      else ended = true;
    }
  }
  return bits;
}

export type NodeAddressType = 'InternalIP' | 'ExternalIP' | 'CiliumInternalIP';
export interface NodeAddress { Type: NodeAddressType; IP: string }

/**
 * A node as published under `cilium/state/nodes/v1/<cluster>/<node>`: Cilium's
 * `nodeTypes.Node` fields we use, except that IPv4AllocCIDR is written as a CIDR
 * string (Cilium writes `{IP, Mask}`; decode accepts both), plus Membrane's own.
 */
export interface NodeValue {
  Name: string;
  Cluster: string;
  ClusterID?: number;
  /** InternalIP: the underlay address (tunnel endpoint); CiliumInternalIP: the router IP on cilium_host. */
  IPAddresses: NodeAddress[];
  /** The node's pod CIDR, e.g. "10.1.2.0/24". */
  IPv4AllocCIDR: string;
  IPv4HealthIP?: string;
  Labels?: Record<string, string>;
  Annotations?: Record<string, string>;
  /** Changes when the node reboots (Cilium uses it to flush state that referred to the old boot). */
  BootID?: string;
  /** Membrane: encapsulation this node's agent expects and its UDP port. */
  TunnelProtocol?: 'vxlan' | 'geneve';
  TunnelPort?: number;
  /** Membrane: the MTU the node's agent gives pods. */
  MTU?: number;
  /** Membrane: version of the agent that wrote the entry. */
  MembraneVersion?: string;
}

const ADDRESS_TYPES: readonly string[] = ['InternalIP', 'ExternalIP', 'CiliumInternalIP'];

export function encodeNode(n: NodeValue): string {
  return JSON.stringify(n);
}

/**
 * Parses and checks a node value (`key` only names it in errors). Fields other
 * than the ones checked are kept as they are. Throws MembraneError E_STORE_DECODE.
 */
export function decodeNode(text: string, key?: string): NodeValue {
  const v = parseJson('node', key, text);
  const bad = (p: string) => decodeError('node', key, p);
  if (typeof v.Name !== 'string' || v.Name === '') throw bad('Name: missing');
  if (typeof v.Cluster !== 'string' || v.Cluster === '') throw bad('Cluster: missing');
  if (!Array.isArray(v.IPAddresses)) throw bad('IPAddresses: not a list');
  for (const a of v.IPAddresses as unknown[]) {
    const ok = a !== null && typeof a === 'object' && ADDRESS_TYPES.includes((a as NodeAddress).Type) && isIP(String((a as NodeAddress).IP)) !== 0;
    if (!ok) throw bad(`IPAddresses: bad entry ${JSON.stringify(a)}`);
  }
  let cidr = v.IPv4AllocCIDR;
  if (cidr !== null && typeof cidr === 'object') {
    // Cilium's own shape: {"IP": "10.1.2.0", "Mask": "////AA=="}.
    const c = cidr as { IP?: unknown; Mask?: unknown };
    const len = typeof c.Mask === 'string' ? prefixLengthFromMask(c.Mask) : undefined;
    cidr = typeof c.IP === 'string' && len !== undefined ? `${c.IP}/${len}` : undefined;
  }
  if (typeof cidr !== 'string' || !isCidr(cidr)) throw bad(`IPv4AllocCIDR: ${JSON.stringify(v.IPv4AllocCIDR)} is not a CIDR`);
  if (v.IPv4HealthIP !== undefined && v.IPv4HealthIP !== '' && isIP(String(v.IPv4HealthIP)) === 0) throw bad(`IPv4HealthIP: ${JSON.stringify(v.IPv4HealthIP)} is not an IP`);
  if (v.TunnelPort !== undefined && !(Number.isInteger(v.TunnelPort) && (v.TunnelPort as number) > 0 && (v.TunnelPort as number) < 65536)) throw bad(`TunnelPort: ${JSON.stringify(v.TunnelPort)} is not a port`);
  return { ...(v as unknown as NodeValue), IPv4AllocCIDR: cidr };
}

/** The first address of a type (InternalIP = where to send tunnel traffic for this node). */
export function nodeAddress(n: NodeValue, type: NodeAddressType): string | undefined {
  return n.IPAddresses.find((a) => a.Type === type)?.IP;
}

/**
 * An ipcache entry under `cilium/state/ip/v1/default/<IP>` (Cilium's IPIdentityPair).
 * `Mask` is Go's net.IPMask JSON: base64 mask bytes, or null for a host address
 * (/32, /128), which is what pod entries have.
 */
export interface IPIdentityValue {
  IP: string;
  Mask: string | null;
  /** The node's InternalIP: the tunnel endpoint for this address. */
  HostIP: string;
  ID: number;
  /** Encryption key index (0: none). */
  Key?: number;
  /** `cilium-global:default:<node>:<endpointID>`, see ipMetadata(). */
  Metadata: string;
  K8sNamespace?: string;
  K8sPodName?: string;
  K8sServiceAccount?: string;
  NamedPorts?: { Name: string; Port: number; Protocol: string }[] | null;
}

/** Cilium's metadata string naming who owns an ipcache entry. */
export function ipMetadata(node: string, endpointId: number | string): string {
  return `cilium-global:default:${node}:${endpointId}`;
}

/** The node named by an ipMetadata() string, or undefined if it is not one. */
export function nodeOfIpMetadata(metadata: string): string | undefined {
  const m = /^cilium-global:[^:]*:([^:]+):[^:]*$/.exec(metadata);
  return m?.[1];
}

export function encodeIpIdentity(v: IPIdentityValue): string {
  return JSON.stringify(v);
}

/** Parses and checks an ipcache value; throws MembraneError E_STORE_DECODE. */
export function decodeIpIdentity(text: string, key?: string): IPIdentityValue {
  const v = parseJson('ip', key, text);
  const bad = (p: string) => decodeError('ip', key, p);
  if (typeof v.IP !== 'string' || isIP(v.IP) === 0) throw bad(`IP: ${JSON.stringify(v.IP)} is not an IP`);
  if (v.Mask !== null && v.Mask !== undefined && (typeof v.Mask !== 'string' || prefixLengthFromMask(v.Mask) === undefined)) {
    throw bad(`Mask: ${JSON.stringify(v.Mask)} is not a base64 netmask`);
  }
  if (typeof v.HostIP !== 'string' || isIP(v.HostIP) === 0) throw bad(`HostIP: ${JSON.stringify(v.HostIP)} is not an IP`);
  if (!Number.isInteger(v.ID) || (v.ID as number) < 0 || (v.ID as number) > 0xffffffff) throw bad(`ID: ${JSON.stringify(v.ID)} is not an identity`);
  return { ...(v as unknown as IPIdentityValue), Mask: (v.Mask as string | null | undefined) ?? null, Metadata: typeof v.Metadata === 'string' ? v.Metadata : '' };
}
