// Keeps this node's routes and ipcache in step with the cluster store: list
// nodes and IPs, then watch from that revision. Every change schedules one
// reconcile (coalesced), which brings the kernel to what the store says:
// one route and a pod-CIDR fallback entry per remote node, node IPs as
// remote-node, remote pod /32s with their node as tunnel endpoint. Nothing
// is deleted before the first complete list (a restarting agent keeps its
// peers' routes until it has re-learned them), and a store outage changes
// nothing in the kernel: established traffic keeps flowing. A peer is only
// dropped when its keys are deleted: it left (its agent revoked its lease,
// an operator deleted it) or it has been gone for its whole leaseTTL.
//
// Deletes of this node's own keys are handed to `ownKeyDeleted` (the
// publisher puts them back while the agent runs).
import type { NodeDatapath, RemoteNodeEntry, RemotePodEntry } from '../datapath/node.ts';
import type { NodeConfig } from '../shared/config.ts';
import { decodeIpIdentity, decodeNode, ipPrefix, nodeAddress, nodeKey, nodesPrefix, parseIpKey, parseNodeKey } from '../store/keys.ts';
import type { KVStore, Watch, WatchEvent } from '../store/store.ts';
import type { MembraneError } from '../shared/errors.ts';

export interface RemoteNode extends RemoteNodeEntry {
  name: string;
}

export type RemotePod = RemotePodEntry;

export class ClusterSync {
  readonly nodes = new Map<string, RemoteNode>();
  readonly pods = new Map<string, RemotePod>();
  private watches: Watch[] = [];
  private timer?: NodeJS.Timeout;
  private synced = false;
  lastError?: string;
  lastSync?: Date;
  reconciles = 0;

  private readonly cfg: NodeConfig;

  constructor(
    private readonly dp: NodeDatapath,
    private readonly store: KVStore,
    private readonly log: (s: string) => void,
    private readonly hooks: { ownKeyDeleted?: (key: string) => void; storeError?: (e: Error) => void } = {},
  ) {
    this.cfg = dp.cfg;
  }

  /** Lists, applies, then watches. Resolves once the first reconcile is done. */
  async start(): Promise<void> {
    await this.listAndWatch();
  }

  /**
   * A consistent snapshot replaces what we knew (entries that vanished while
   * we were not watching are dropped), then watches resume from its revision.
   * Also the recovery path when the store compacted away events we missed.
   */
  private async listAndWatch(): Promise<void> {
    for (const w of this.watches) w.close();
    this.watches = [];
    const nodes = await this.store.list(nodesPrefix(this.cfg.cluster));
    const ips = await this.store.list(ipPrefix());
    this.nodes.clear();
    this.pods.clear();
    for (const e of nodes.entries) this.applyNode({ type: 'put', key: e.key, value: e.value, revision: e.modRevision });
    for (const e of ips.entries) this.applyIp({ type: 'put', key: e.key, value: e.value, revision: e.modRevision });
    // Listed again after a gap in the watch: a delete of this node's key may be among what was missed.
    if (this.synced && !nodes.entries.some((e) => parseNodeKey(e.key)?.node === this.cfg.nodeName)) {
      this.hooks.ownKeyDeleted?.(nodeKey(this.cfg.cluster, this.cfg.nodeName));
    }
    this.synced = true;
    this.reconcile();
    const onError = (e: Error) => {
      this.lastError = e.message;
      this.hooks.storeError?.(e);
      this.log(`store watch: ${e.message} (kernel state kept as is)`);
      if ((e as MembraneError).code === 'E_STORE_COMPACTED') this.relist();
    };
    const onEvent = (apply: (ev: WatchEvent) => void) => (ev: WatchEvent) => {
      this.lastError = undefined; // events flow again: the store is back
      apply(ev);
      this.schedule();
    };
    this.watches.push(this.store.watch(nodesPrefix(this.cfg.cluster), nodes.revision, onEvent((ev) => this.applyNode(ev)), onError));
    this.watches.push(this.store.watch(ipPrefix(), ips.revision, onEvent((ev) => this.applyIp(ev)), onError));
  }

  /** Lists again (retrying while the store is unreachable); nothing in the kernel changes until it succeeds. */
  private relist(): void {
    if (this.relisting) return;
    this.relisting = true;
    const attempt = (): void => {
      this.listAndWatch().then(
        () => { this.relisting = false; this.lastError = undefined; this.log('store: listed again after a compacted watch'); },
        (e) => { this.lastError = (e as Error).message; this.retry = setTimeout(attempt, 1000); },
      );
    };
    attempt();
  }

  private relisting = false;
  private retry?: NodeJS.Timeout;

  stop(): void {
    for (const w of this.watches) w.close();
    this.watches = [];
    clearTimeout(this.timer);
    clearTimeout(this.retry);
  }

  private applyNode(ev: WatchEvent): void {
    const k = parseNodeKey(ev.key);
    if (!k) return;
    if (k.node === this.cfg.nodeName) {
      if (ev.type === 'delete' && this.synced) this.hooks.ownKeyDeleted?.(ev.key);
      return;
    }
    if (ev.type === 'delete') {
      if (this.nodes.delete(k.node)) this.log(`node ${k.node} left`);
      return;
    }
    try {
      const n = decodeNode(ev.value, ev.key);
      const nodeIP = nodeAddress(n, 'InternalIP');
      if (!nodeIP || !n.IPv4AllocCIDR) return;
      const known = this.nodes.has(k.node);
      this.nodes.set(k.node, { name: k.node, nodeIP, podCIDR: n.IPv4AllocCIDR, routerIP: nodeAddress(n, 'CiliumInternalIP') });
      if (!known) this.log(`node ${k.node} joined (${nodeIP}, pods ${n.IPv4AllocCIDR})`);
    } catch (e) {
      this.log(`ignore node entry ${ev.key}: ${(e as Error).message}`);
    }
  }

  private applyIp(ev: WatchEvent): void {
    const k = parseIpKey(ev.key);
    if (!k) return;
    if (ev.type === 'delete') {
      const was = this.pods.get(k.ip);
      this.pods.delete(k.ip);
      if (this.synced && was?.hostIP === this.cfg.nodeIP) this.hooks.ownKeyDeleted?.(ev.key);
      return;
    }
    try {
      const v = decodeIpIdentity(ev.value, ev.key);
      this.pods.set(k.ip, { ip: v.IP, identity: v.ID, hostIP: v.HostIP });
    } catch (e) {
      this.log(`ignore ip entry ${ev.key}: ${(e as Error).message}`);
    }
  }

  private schedule(): void {
    if (this.timer) return;
    // Coalesce a burst of events (a node with many pods joining) into one reconcile.
    this.timer = setTimeout(() => {
      this.timer = undefined;
      try {
        this.reconcile();
      } catch (e) {
        this.lastError = (e as Error).message;
        this.log(`reconcile: ${(e as Error).message}`);
      }
    }, 5);
  }

  /** Brings routes and ipcache to what the store says. */
  reconcile(): void {
    if (!this.synced) return;
    const remotes = [...this.nodes.values()].filter((n) => n.nodeIP !== this.cfg.nodeIP).sort((a, b) => a.name.localeCompare(b.name));
    this.dp.reconcileRemotes(remotes, [...this.pods.values()]);
    this.reconciles++;
    this.lastSync = new Date();
  }
}
