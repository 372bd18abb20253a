// Network policies in the cluster store: written by `membrane policy import`
// (through an agent's API, or straight into the store with --cluster),
// read by every agent's policy manager. Each policy is one key
// (src/store/keys.ts policyKey), its value the document as imported (JSON).
// Import validates every document first: a bad file writes nothing, and the
// policies already in force stay in force.
import { parsePolicyValues, policyId, reservedUniverse, tracePolicy, type Policy, type TraceRequest, type TraceResult } from '../policy/index.ts';
import type { StoreConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import { IDENTITY_ID_PREFIX, parseIdentityIdKey, parseLabelKey, parsePolicyKey, policyKey, POLICIES_PREFIX } from '../store/keys.ts';
import { openStore, type KVStore } from '../store/store.ts';
import { withLocalhost } from './policy-manager.ts';

export interface StoredPolicy {
  /** "namespace/name", or "name" for a clusterwide policy. */
  id: string;
  kind: Policy['kind'];
  name: string;
  namespace?: string;
  /** Store revision of its last write. */
  revision: number;
  document: unknown;
}

/**
 * Validates `documents` (plain data: what the YAML or JSON file holds) and
 * writes each as its own key. Returns the ids and the store revision of the
 * last write: agents that reached it enforce the import.
 */
export async function importPolicies(store: KVStore, documents: readonly unknown[]): Promise<{ imported: string[]; revision: number }> {
  const { policies } = parsePolicyValues(documents, { operation: 'import policies' });
  let revision = 0;
  for (const p of policies) {
    revision = await store.put(policyKey(p.name, p.namespace), JSON.stringify(p.raw));
  }
  return { imported: policies.map(policyId), revision };
}

export async function listPolicies(store: KVStore): Promise<{ policies: StoredPolicy[]; revision: number }> {
  const r = await store.list(POLICIES_PREFIX);
  const policies: StoredPolicy[] = [];
  for (const e of r.entries) {
    const k = parsePolicyKey(e.key);
    if (!k) continue;
    let document: unknown;
    try { document = JSON.parse(e.value); } catch { document = e.value; }
    const kind = k.namespace === undefined ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy';
    policies.push({ id: policyId(k), kind, name: k.name, namespace: k.namespace, revision: e.modRevision, document });
  }
  policies.sort((a, b) => a.id.localeCompare(b.id));
  return { policies, revision: r.revision };
}

/** "ns/name" or "name" (clusterwide) -> the key's parts; a bare name looks for a policy in `namespace` first, then a clusterwide one. */
export async function deletePolicy(store: KVStore, id: string): Promise<{ deleted: string; revision: number }> {
  const { policies } = await listPolicies(store);
  const slash = id.indexOf('/');
  const match = slash >= 0
    ? policies.find((p) => p.id === id)
    : policies.find((p) => p.namespace === 'default' && p.name === id) ?? policies.find((p) => p.namespace === undefined && p.name === id);
  if (!match) {
    throw new MembraneError(`delete policy ${id}`, {
      code: 'E_NOT_FOUND', cause: `no such policy (there are: ${policies.map((p) => p.id).join(', ') || 'none'})`,
    });
  }
  await store.delete(policyKey(match.name, match.namespace));
  return { deleted: match.id, revision: (await store.list(POLICIES_PREFIX)).revision };
}

/** Every identity: the reserved ones and the cluster's (from the store), with their labels. */
export async function listIdentities(store: KVStore): Promise<{ id: number; labels: Record<string, string> }[]> {
  const out: { id: number; labels: Record<string, string> }[] = [...reservedUniverse()].map(([id, labels]) => ({ id, labels: { ...labels } }));
  for (const e of (await store.list(IDENTITY_ID_PREFIX)).entries) {
    const id = parseIdentityIdKey(e.key);
    if (id === undefined) continue;
    try { out.push({ id, labels: parseLabelKey(e.value) }); } catch { /* a master key the allocator would not write */ }
  }
  return out.sort((a, b) => a.id - b.id);
}

/** A trace from what the store holds (for a cluster reached through its store, with no agent at hand). */
export async function tracePolicyFromStore(store: KVStore, req: TraceRequest): Promise<TraceResult> {
  const { policies } = parsePolicyValues((await listPolicies(store)).policies.map((p) => p.document));
  const universe = new Map((await listIdentities(store)).map((i) => [i.id, i.labels]));
  return withLocalhost(req, tracePolicy(policies, universe, req));
}

/** The policy operations on a store opened from a cluster config; close() it. */
export async function openPolicyStore(cfg: StoreConfig) {
  const store = await openStore(cfg);
  return {
    importPolicies: (documents: readonly unknown[]) => importPolicies(store, documents),
    listPolicies: () => listPolicies(store),
    deletePolicy: (id: string) => deletePolicy(store, id),
    identities: () => listIdentities(store),
    trace: (req: TraceRequest) => tracePolicyFromStore(store, req),
    close: () => store.close(),
  };
}
