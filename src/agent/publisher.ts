// What this agent tells the cluster: its node (name, node IP, router IP,
// pod CIDR) and its endpoints' IPs with their identities, all under one
// lease, so a node that stops renewing disappears from every other node.
//
// If the lease is lost while the agent lives (the store was unreachable for
// longer than keepalive could bridge: etcd down > 2 x TTL, or the process
// stalled past the TTL), the node and its IPs are published again under a
// new lease as soon as the store answers. Without that, the old lease
// expires once the store is back and every other node drops this node's
// routes and pods for good (found with the lab: etcd stopped for 3 x TTL).
import type { NodeConfig } from '../shared/config.ts';
import type { KVStore, Lease } from '../store/store.ts';
import { encodeIpIdentity, encodeNode, ipKey, ipMetadata, maskFromPrefixLength, nodeKey, type NodeValue } from '../store/keys.ts';
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

export class Publisher implements EndpointListener {
  private lease: Lease;
  private bootID?: string;
  /** Endpoints published now, by IP: what a new lease must carry again. */
  private readonly published = new Map<string, EndpointState>();
  private renewing?: Promise<void>;
  private closed = false;

  constructor(private readonly store: KVStore, lease: Lease, private readonly cfg: NodeConfig, private readonly log: (s: string) => void = () => {}) {
    this.lease = lease;
    this.watchLease(lease);
  }

  async registerNode(bootID: string): Promise<void> {
    this.bootID = bootID;
    await this.store.put(nodeKey(this.cfg.cluster, this.cfg.nodeName), encodeNode(nodeValue(this.cfg, bootID)), { lease: this.lease });
  }

  async up(ep: EndpointState): Promise<void> {
    // A renewal in progress re-puts everything in `published`: wait for it, so this put uses the new lease.
    if (this.renewing) await this.renewing;
    this.published.set(ep.ip, ep);
    await this.putEndpoint(ep);
  }

  async down(ep: EndpointState): Promise<void> {
    if (this.renewing) await this.renewing;
    this.published.delete(ep.ip);
    await this.store.delete(ipKey(ep.ip));
  }

  /** Stops renewing (the agent is stopping); the current lease is left to expire. */
  close(): void {
    this.closed = true;
  }

  private putEndpoint(ep: EndpointState): Promise<number> {
    return this.store.put(ipKey(ep.ip), encodeIpIdentity({
      IP: ep.ip, Mask: maskFromPrefixLength(32, 4), HostIP: this.cfg.nodeIP ?? this.cfg.routerIP, ID: ep.identity,
      Metadata: ipMetadata(this.cfg.nodeName, ep.id), K8sNamespace: ep.podNamespace, K8sPodName: ep.podName,
    }), { lease: this.lease });
  }

  private watchLease(lease: Lease): void {
    lease.onLost((err) => {
      if (this.closed || lease !== this.lease) return;
      this.log(`store lease lost (${err.message}); publishing this node again under a new lease once the store answers`);
      void this.renew();
    });
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
          if (this.bootID) await this.registerNode(this.bootID);
          for (const ep of this.published.values()) await this.putEndpoint(ep);
          this.watchLease(lease);
          this.log(`published again under a new lease: node and ${this.published.size} endpoint IPs`);
          return;
        } catch (e) {
          const code = (e as { code?: string }).code;
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
