// Store damage must not pass silently. An agent that restarts with endpoints
// in its state file expects the store to know its node: its node key, the
// IP keys of its pods and its identity references stay under its lease for
// leaseTTL, and the identities' master keys stay for good (until the GC
// frees them). If none of that is there, the store was emptied or replaced
// (a 0-byte database, a new etcd) or the node was gone past leaseTTL; the
// endpoints would come back under newly numbered identities (the lowest free
// ones) without a word. The agent says so (log and `membrane status`),
// re-creates the identities with their recorded numbers where no other
// labels took them (IdentityAllocator.prefer), and publishes itself again.
import { nodeKey, ipPrefix, IDENTITY_VALUE_PREFIX, identityIdKey, parseIdentityValueKey, parseIpKey, formatLabelKey } from '../store/keys.ts';
import type { KVStore } from '../store/store.ts';
import type { NodeConfig } from '../shared/config.ts';
import { securityLabels } from './labels.ts';
import { claimsNode } from './publisher.ts';
import type { EndpointState } from './state-file.ts';

export interface StoreTrace {
  nodeKey: boolean;
  /** This node's pod IP keys found. */
  ipKeys: number;
  /** This node's identity references (slave keys) found. */
  references: number;
  /** Recorded identities whose master key is missing or names other labels. */
  mastersMissing: number;
}

export async function storeTrace(store: KVStore, cfg: NodeConfig, eps: readonly EndpointState[]): Promise<StoreTrace> {
  const [node, ips, refs] = await Promise.all([
    store.get(nodeKey(cfg.cluster, cfg.nodeName)), store.list(ipPrefix()), store.list(IDENTITY_VALUE_PREFIX),
  ]);
  const recorded = new Map<number, string>();
  for (const ep of eps) {
    try { recorded.set(ep.identity, formatLabelKey(securityLabels(ep.labels, ep.podNamespace))); } catch { /* refused at restore anyway */ }
  }
  let mastersMissing = 0;
  for (const [id, labelKey] of recorded) if ((await store.get(identityIdKey(id)))?.value !== labelKey) mastersMissing++;
  return {
    nodeKey: node !== undefined,
    ipKeys: ips.entries.filter((e) => parseIpKey(e.key) && claimsNode(e.key, e.value, cfg.nodeName, cfg.nodeIP)).length,
    references: refs.entries.filter((e) => parseIdentityValueKey(e.key)?.node === cfg.nodeName).length,
    mastersMissing,
  };
}

/** The warning for an agent with endpoints whose node the store does not know, or undefined if all is as expected. */
export function traceWarning(t: StoreTrace, cfg: NodeConfig, eps: readonly EndpointState[]): string | undefined {
  if (eps.length === 0 || t.nodeKey || t.ipKeys > 0 || t.references > 0) return undefined;
  const ids = new Set(eps.map((e) => e.identity)).size;
  const where = cfg.store.backend === 'sqlite' ? `sqlite store ${cfg.store.path}` : `etcd store ${cfg.store.endpoints.join(',')}`;
  return `the ${where} has no trace of node ${cfg.nodeName} (no node key, none of its pod IPs, no identity references) although ` +
    `${cfg.paths.stateFile} records ${eps.length} endpoints; ${t.mastersMissing} of their ${ids} identities have no master key either: ` +
    `the store ${t.mastersMissing > 0 ? 'lost its data (emptied, replaced or a new database)' : 'forgot this node (down longer than leaseTTL, or deleted)'}. ` +
    'Keeping the recorded identities and publishing the node again';
}
