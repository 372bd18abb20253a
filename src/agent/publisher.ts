// What this agent tells the cluster: its node (name, node IP, router IP,
// pod CIDR) and its endpoints' IPs with their identities, all under one
// lease whose TTL is the node config's leaseTTL (15 min by default, as
// Cilium's kvstore lease). The datapath forwards without its agent, so an
// agent that crashes, is stopped or restarts must not make its peers drop
// the node: the entries outlive it by leaseTTL and the next agent takes them
// over (put re-attaches a key to the new lease). A node that leaves on
// purpose (agent SIGTERM: leave(); an operator's `node delete`) is removed
// at once.
//
// The agent keeps its entries there while it runs:
//  - if the lease is lost (the store was unreachable for longer than the
//    TTL, or the process stalled past it), the node and its IPs are
//    published again under a new lease as soon as the store answers;
//  - if its node key or one of its IP keys is deleted under it (an operator,
//    a lease that expired while the watch was away), it puts them back
//    (ClusterSync reports such deletes: ownKeyDeleted).
// A pod IP's key is deleted when its endpoint goes; if the store cannot be
// reached then, the delete stays pending and is retried until done (a DEL
// never fails for a store outage), and an agent that starts again deletes
// the keys that claim its node for IPs it has no endpoint for (staleIps).
import type { NodeConfig, StoreConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import { openStore, type KVStore, type Lease } from '../store/store.ts';
import {
  IDENTITY_VALUE_PREFIX, decodeIpIdentity, decodeNode, encodeIpIdentity, encodeNode, ipKey, ipMetadata, ipPrefix,
  maskFromPrefixLength, nodeAddress, nodeKey, nodeOfIpMetadata, parseIdentityValueKey, parseIpKey, type NodeValue,
} from '../store/keys.ts';
import type { EndpointListener } from './endpoint-manager.ts';
import type { EndpointState } from './state-file.ts';

export function nodeValue(cfg: NodeConfig, bootID: string): NodeValue {
  return {
    Name: cfg.nodeName,
    Cluster: cfg.cluster,
    IPAddresses: [
      ...(cfg.nodeIP ? [{ Type: 'InternalIP' as const, IP: cfg.nodeIP }] : []),
      { Type: 'CiliumInternalIP' as const, IP: cfg.routerIP },
    ],
    IPv4AllocCIDR: cfg.podCIDR,
    BootID: bootID,
    TunnelProtocol: 'vxlan',
    TunnelPort: cfg.tunnelPort,
    MTU: cfg.routeMTU,
    MembraneVersion: '0.1.0',
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const codeOf = (e: unknown): string | undefined => (e as { code?: string }).code;

/** True if the ipcache entry `value` (under `key`) is one this node published: its metadata or tunnel endpoint names it. */
export function claimsNode(key: string, value: string, node: string, nodeIP: string | undefined): boolean {
  try {
    const v = decodeIpIdentity(value, key);
    return nodeOfIpMetadata(v.Metadata) === node || (nodeIP !== undefined && v.HostIP === nodeIP);
  } catch {
    return false;
  }
}

export class Publisher implements EndpointListener {
  private lease: Lease;
  private bootID?: string;
  /** Endpoints published now, by IP: what a new lease must carry again. */
  private readonly published = new Map<string, EndpointState>();
  /** Pod IPs whose key must leave the store (their endpoint is gone); retried until done. */
  private readonly pendingDeletes = new Set<string>();
  /** Store writes of one key run one at a time, so a put and a delete of one IP never cross. */
  private readonly chains = new Map<string, Promise<unknown>>();
  private renewing?: Promise<void>;
  private repairing?: Promise<void>;
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = 200;
  private closed = false;

  constructor(private readonly store: KVStore, lease: Lease, private readonly cfg: NodeConfig, private readonly log: (s: string) => void = () => {}) {
    this.lease = lease;
    this.watchLease(lease);
  }

  private get nodeKey(): string {
    return nodeKey(this.cfg.cluster, this.cfg.nodeName);
  }

  async registerNode(bootID: string): Promise<void> {
    this.bootID = bootID;
    await this.serial(this.nodeKey, () => this.putNode());
  }

  async up(ep: EndpointState): Promise<void> {
    // A renewal in progress re-puts everything in `published`: wait for it, so this put uses the new lease.
    if (this.renewing) await this.renewing;
    this.pendingDeletes.delete(ep.ip);
    this.published.set(ep.ip, ep);
    try {
      await this.serial(ep.ip, () => this.putEndpoint(ep));
    } catch (e) {
      // The ADD fails and undoes its endpoint. The put may still have landed (a reply lost
      // in an outage), so the key is deleted like any other gone endpoint's.
      if (this.published.get(ep.ip) === ep) {
        this.published.delete(ep.ip);
        this.pendingDeletes.add(ep.ip);
        this.scheduleRetry();
      }
      throw e;
    }
  }

  /** Never fails: the key is deleted now, or later once the store answers (see the file comment). */
  async down(ep: EndpointState): Promise<void> {
    const cur = this.published.get(ep.ip);
    if (cur && cur.id !== ep.id) return; // the IP is another endpoint's now: its key stays
    this.published.delete(ep.ip);
    this.pendingDeletes.add(ep.ip);
    try {
      await this.deletePending(ep.ip);
    } catch (e) {
      if (codeOf(e) === 'E_STORE_CLOSED') return;
      this.log(`delete store key of ${ep.ip} (endpoint ${ep.id}): ${(e as Error).message}; retrying until the store answers`);
      this.scheduleRetry();
    }
  }

  /** Pod IP keys still to be deleted. */
  get pending(): string[] {
    return [...this.pendingDeletes].sort();
  }

  /**
   * Deletes the store keys that claim this node for IPs it has no endpoint
   * for: left by an earlier run (a DEL during an outage whose retry died with
   * that agent, a crash between delete and publish). Returns how many went.
   */
  async sweepStaleIps(keep: Iterable<string>): Promise<number> {
    const mine = new Set(keep);
    const { entries } = await this.store.list(ipPrefix());
    let n = 0;
    for (const e of entries) {
      const k = parseIpKey(e.key);
      if (!k || mine.has(k.ip) || this.published.has(k.ip) || !claimsNode(e.key, e.value, this.cfg.nodeName, this.cfg.nodeIP)) continue;
      this.pendingDeletes.add(k.ip);
      await this.deletePending(k.ip);
      n++;
    }
    return n;
  }

  /**
   * A key of this node was deleted while the agent runs (ClusterSync saw it): put
   * it back, under a new lease if the old one is gone. Deletes the agent made
   * itself (a gone endpoint, leave()) are not put back.
   */
  ownKeyDeleted(key: string): void {
    if (this.closed) return;
    const ip = parseIpKey(key)?.ip;
    if (key !== this.nodeKey && (ip === undefined || !this.published.has(ip))) return;
    this.log(`store key ${key} of this node was deleted while the agent runs; publishing it again`);
    void this.repair();
  }

  /**
   * The node leaves the cluster (agent SIGTERM): revokes the lease, which deletes
   * the node and its pod IPs at once, so every peer drops them now rather than
   * after leaseTTL. Bounded by `timeoutMs`; if the store cannot be reached in
   * that time, the entries expire with the lease. Returns whether it got through.
   */
  async leave(timeoutMs = 5_000): Promise<boolean> {
    this.close();
    const work = (async () => {
      await this.lease.revoke();
      // Keys of other leases: IPs whose delete was still pending.
      for (const ip of this.pendingDeletes) await this.store.delete(ipKey(ip));
      this.pendingDeletes.clear();
    })();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs); });
    try {
      await Promise.race([work, timeout]);
      return true;
    } catch (e) {
      work.catch(() => undefined);
      this.log(`leave the cluster: remove node ${this.cfg.nodeName} from the store: ${(e as Error).message}; its entries expire after leaseTTL (${this.cfg.leaseTTL} s)`);
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops renewing and retrying (the agent stops for a restart); the entries stay until the lease expires. */
  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private putNode(): Promise<number> {
    return this.store.put(this.nodeKey, encodeNode(nodeValue(this.cfg, this.bootID!)), { lease: this.lease });
  }

  private putEndpoint(ep: EndpointState): Promise<number> {
    return this.store.put(ipKey(ep.ip), encodeIpIdentity({
      IP: ep.ip, Mask: maskFromPrefixLength(32, 4), HostIP: this.cfg.nodeIP ?? this.cfg.routerIP, ID: ep.identity,
      Metadata: ipMetadata(this.cfg.nodeName, ep.id), K8sNamespace: ep.podNamespace, K8sPodName: ep.podName,
    }), { lease: this.lease });
  }

  /** Runs fn after every earlier store write of the same key. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(key) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.chains.set(key, tail);
    void tail.then(() => { if (this.chains.get(key) === tail) this.chains.delete(key); });
    return next;
  }

  private deletePending(ip: string): Promise<void> {
    return this.serial(ip, async () => {
      // Published again meanwhile (a new endpoint got the IP): its key must stay.
      if (!this.pendingDeletes.has(ip) || this.published.has(ip)) return void this.pendingDeletes.delete(ip);
      await this.store.delete(ipKey(ip));
      this.pendingDeletes.delete(ip);
    });
  }

  /** Retries pending deletes, 200 ms doubling to 5 s while the store stays away. */
  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retryDeletes();
    }, this.retryDelay);
  }

  private async retryDeletes(): Promise<void> {
    let failed = 0;
    for (const ip of [...this.pendingDeletes]) {
      if (this.closed) return;
      await this.deletePending(ip).catch(() => { failed++; });
    }
    if (failed === 0 && this.retryDelay > 200) this.log('store answers again: pending pod IP deletes done');
    this.retryDelay = failed ? Math.min(this.retryDelay * 2, 5_000) : 200;
    if (this.pendingDeletes.size) this.scheduleRetry();
  }

  private watchLease(lease: Lease): void {
    lease.onLost((err) => {
      if (this.closed || lease !== this.lease) return;
      this.log(`store lease lost (${err.message}); publishing this node again under a new lease once the store answers`);
      void this.renew();
    });
  }

  /** Puts the node and every published IP back under the current lease (a new one if it is gone), retrying until done. */
  private repair(): Promise<void> {
    if (this.repairing) return this.repairing;
    this.repairing = (async () => {
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          if (this.renewing) await this.renewing;
          if (this.bootID) await this.serial(this.nodeKey, () => this.putNode());
          for (const ep of [...this.published.values()]) await this.serial(ep.ip, () => (this.published.get(ep.ip) === ep ? this.putEndpoint(ep) : Promise.resolve(0)));
          this.log(`published again: node and ${this.published.size} endpoint IPs`);
          return;
        } catch (e) {
          const code = codeOf(e);
          if (code === 'E_STORE_CLOSED') return;
          if (code === 'E_STORE_LEASE_NOT_FOUND') return void (await this.renew());
          await sleep(Math.min(200 * 2 ** attempt, 2_000));
        }
      }
    })().finally(() => { this.repairing = undefined; });
    return this.repairing;
  }

  /**
   * Grants a new lease and puts the node and every published IP under it,
   * retrying (200 ms doubling to 1 s) until the store answers. Keys moved to
   * the new lease are not deleted when the old one expires.
   */
  private renew(): Promise<void> {
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      let lease: Lease | undefined;
      for (let attempt = 0; !this.closed; attempt++) {
        try {
          lease ??= await this.store.grantLease(this.lease.ttlSeconds);
          this.lease = lease;
          if (this.bootID) await this.serial(this.nodeKey, () => this.putNode());
          for (const ep of [...this.published.values()]) await this.serial(ep.ip, () => this.putEndpoint(ep));
          this.watchLease(lease);
          this.log(`published again under a new lease: node and ${this.published.size} endpoint IPs`);
          return;
        } catch (e) {
          const code = codeOf(e);
          if (code === 'E_STORE_CLOSED') return;
          // The new lease died too (store gone again past its TTL): start over with another one.
          if (code === 'E_STORE_LEASE_NOT_FOUND') lease = undefined;
          await sleep(Math.min(200 * 2 ** attempt, 1000));
        }
      }
    })().finally(() => { this.renewing = undefined; });
    return this.renewing;
  }
}

/**
 * What an operator's "delete node" does (`membrane node delete`, `lab
 * stop-node`): removes a node that is gone for good from the store at once,
 * instead of after its lease: its node key, the pod IPs that claim it and
 * its identity references. Peers drop its routes and ipcache entries as they
 * see the deletes. If the node's agent still runs, it publishes itself again.
 */
export async function deleteNodeEntries(store: KVStore, cluster: string, node: string): Promise<{ node: boolean; ips: number; references: number }> {
  const key = nodeKey(cluster, node);
  const cur = await store.get(key);
  let nodeIP: string | undefined;
  try { nodeIP = cur && nodeAddress(decodeNode(cur.value, key), 'InternalIP'); } catch { /* a damaged entry still goes */ }
  const out = { node: false, ips: 0, references: 0 };
  out.node = cur ? await store.delete(key) : false;
  for (const e of (await store.list(ipPrefix())).entries) {
    if (claimsNode(e.key, e.value, node, nodeIP) && (await store.delete(e.key))) out.ips++;
  }
  for (const e of (await store.list(IDENTITY_VALUE_PREFIX)).entries) {
    if (parseIdentityValueKey(e.key)?.node === node && (await store.delete(e.key))) out.references++;
  }
  return out;
}

/** deleteNodeEntries on a store opened for the purpose (the lab, when no agent is left to ask). */
export async function deleteNodeFromStore(cfg: StoreConfig, cluster: string, node: string): Promise<{ node: boolean; ips: number; references: number }> {
  const store = await openStore(cfg);
  try {
    return await deleteNodeEntries(store, cluster, node);
  } catch (e) {
    throw new MembraneError(`delete node ${node} from the store`, { cause: e });
  } finally {
    await store.close();
  }
}
