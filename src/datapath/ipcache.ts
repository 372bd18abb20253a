// Who owns which ipcache entry, decided here and only here. Three writers
// share cilium_ipcache_v2:
//   node      this node's own entries: 0.0.0.0/0 -> world, the router and
//             node IPs -> host (datapath init, from the config);
//   cluster   other nodes and their pods: pod CIDR fallbacks, node and
//             router IPs, remote pod /32s (static remoteNodes at init, then
//             the agent's cluster sync from the store);
//   endpoint  this node's pods' /32s (the agent's endpoints);
//   cidr      prefixes network policies name in CIDR rules, with their
//             node-local CIDR identities (>= 1<<24), so traffic to and from
//             them carries an identity policy can select.
// The owner is written into each entry (remote_endpoint_info.owner), so a
// writer reconciles and deletes only its own entries, also after a restart,
// without guessing from prefix and identity. If two writers want one prefix
// (a stale remote pod /32 for an IP now used here), the higher-ranked one
// holds it: node, then endpoint, then cluster, then cidr (a CIDR rule that
// names a pod CIDR does not redirect pod traffic: CIDR rules are for
// addresses outside the cluster, as in Cilium).
import * as codec from './maps/ipcache.ts';
import { MAP_NAMES, withNodeMap } from './node-maps.ts';

export type IpcacheOwner = 'node' | 'cluster' | 'endpoint' | 'cidr';

/** Values in the map: stable (they are in pinned maps across upgrades); 0 = written before owners existed. */
const OWNER_CODE: Readonly<Record<IpcacheOwner, number>> = { node: 1, cluster: 2, endpoint: 3, cidr: 4 };
const OWNER_BY_CODE = new Map(Object.entries(OWNER_CODE).map(([k, v]) => [v, k as IpcacheOwner]));
/** Higher wins a contested prefix; an unowned (0) entry yields to anyone. */
const RANK: Readonly<Record<IpcacheOwner, number>> = { node: 4, endpoint: 3, cluster: 2, cidr: 1 };

export interface IpcacheEntry extends Omit<codec.DecodedIpcacheValue, 'owner'> {
  prefix: string;
  /** The writer; 'unknown' for an entry written before owners existed. */
  owner: IpcacheOwner | 'unknown';
}

function ownerOf(code: number): IpcacheOwner | undefined {
  return OWNER_BY_CODE.get(code);
}

/** May `owner` overwrite an entry whose owner code is `code`? */
function mayTake(owner: IpcacheOwner, code: number): boolean {
  const cur = ownerOf(code);
  return cur === undefined || cur === owner || RANK[owner] > RANK[cur];
}

function encode(owner: IpcacheOwner, v: codec.IpcacheValue): Buffer {
  return codec.encodeValue({ ...v, owner: OWNER_CODE[owner] });
}

/** Every entry with its owner, sorted by prefix (numeric order). */
export function listIpcache(nodeDir: string): IpcacheEntry[] {
  return withNodeMap(nodeDir, MAP_NAMES.ipcache, (m) => [...m.entries()].map(([k, v]) => {
    const { owner, ...d } = codec.decodeValue(v);
    return { prefix: codec.decodeKey(k), ...d, owner: ownerOf(owner) ?? 'unknown' as const };
  })).sort((a, b) => a.prefix.localeCompare(b.prefix, undefined, { numeric: true }));
}

/**
 * Makes `owner`'s entries exactly `want`: missing or different ones are
 * written (unless a higher-ranked owner holds the prefix), and, with
 * `prune` (default), entries of `owner` that `want` lacks are deleted.
 * Other owners' entries are never deleted. One dump of the map.
 */
export function reconcileIpcache(nodeDir: string, owner: IpcacheOwner, want: ReadonlyMap<string, codec.IpcacheValue>, opts: { prune?: boolean } = {}): { written: number; deleted: number; contested: string[] } {
  let written = 0;
  let deleted = 0;
  const contested: string[] = [];
  withNodeMap(nodeDir, MAP_NAMES.ipcache, (m) => {
    const have = new Map<string, Buffer>();
    for (const [k, v] of m.entries()) have.set(codec.decodeKey(k), v);
    for (const [prefix, v] of want) {
      const enc = encode(owner, v);
      const cur = have.get(prefix);
      if (cur?.equals(enc)) continue;
      if (cur && !mayTake(owner, codec.decodeValue(cur).owner)) {
        contested.push(prefix);
        continue;
      }
      m.update(codec.encodeKey(prefix), enc);
      written++;
    }
    if (opts.prune === false) return;
    for (const [prefix, raw] of have) {
      if (want.has(prefix) || ownerOf(codec.decodeValue(raw).owner) !== owner) continue;
      m.delete(codec.encodeKey(prefix));
      deleted++;
    }
  });
  return { written, deleted, contested };
}

// Single entries are only for endpoints: an LPM trie lookup returns the
// longest match, not the exact key, so "is my /32 there?" can only be
// answered from the value. Endpoint entries are all /32s, so a /32 lookup
// that finds an endpoint-owned value found exactly that /32. And no other
// owner can hold a local pod's /32 first that outranks it: node entries are
// 0.0.0.0/0 and the router and node IPs (never a pod IP, the config and
// IPAM see to that), cluster entries rank lower.

/** Writes a local pod's /32 (no-op if it is already so). */
export function putEndpointIpcache(nodeDir: string, ip: string, identity: number): void {
  withNodeMap(nodeDir, MAP_NAMES.ipcache, (m) => {
    const key = codec.encodeKey(`${ip}/32`);
    const enc = encode('endpoint', { identity });
    if (!m.lookup(key)?.equals(enc)) m.update(key, enc);
  });
}

/** Deletes a local pod's /32 if an endpoint wrote it; returns whether it did. */
export function deleteEndpointIpcache(nodeDir: string, ip: string): boolean {
  return withNodeMap(nodeDir, MAP_NAMES.ipcache, (m) => {
    const key = codec.encodeKey(`${ip}/32`);
    const cur = m.lookup(key);
    if (!cur || ownerOf(codec.decodeValue(cur).owner) !== 'endpoint') return false;
    m.delete(key);
    return true;
  });
}
