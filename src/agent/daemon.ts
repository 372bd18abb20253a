// `membrane agent`: one daemon per node, run in the node's netns. On start
// it sets up the node datapath (without deleting anything it has not
// re-learned), opens the cluster store, restores its endpoints without
// touching their devices or traffic, and serves its API on a unix socket.
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { ApiServer } from '../api/server.ts';
import { cniHttpHandler } from '../cni/http.ts';
import { NodeDatapath } from '../datapath/node.ts';
import type { NodeConfig } from '../shared/config.ts';
import { ConfigError, MembraneError, wrap } from '../shared/errors.ts';
import { missingCapabilities } from '../shared/privileges.ts';
import { IdentityAllocator } from '../store/identity-allocator.ts';
import { openStore, type KVStore, type Lease } from '../store/store.ts';
import { ClusterSync } from './cluster-sync.ts';
import { EndpointManager } from './endpoint-manager.ts';
import { Publisher } from './publisher.ts';
import { agentRoutes } from './routes.ts';

export const CNI_NETWORK_NAME = 'membrane';

export class Agent {
  readonly startedAt = new Date();
  readonly bootID = randomUUID();
  private api = new ApiServer();

  private constructor(
    readonly cfg: NodeConfig,
    readonly dp: NodeDatapath,
    readonly store: KVStore,
    readonly lease: Lease,
    readonly endpoints: EndpointManager,
    readonly identities: IdentityAllocator,
    readonly publisher: Publisher,
    readonly sync: ClusterSync,
  ) {}

  static async start(cfg: NodeConfig, log: (s: string) => void = () => {}): Promise<Agent> {
    const missing = missingCapabilities();
    if (missing.length > 0) throw new MembraneError('start agent', { code: 'E_NOT_ROOT', cause: `must run as root (lacks ${missing.join(', ')})` });
    if (!cfg.nodeIP) throw new ConfigError('start agent', ['nodeIP: required by the agent (the underlay address other nodes tunnel to)']);
    mkdirSync(cfg.paths.stateDir, { recursive: true, mode: 0o700 });
    const dp = NodeDatapath.open(cfg, { prune: false, apiSocket: cfg.paths.apiSocket });
    log(`datapath ready: ${dp.init.programs.length} programs attached, routes +${dp.init.routes.added}`);
    let store: KVStore;
    try {
      store = await openStore(cfg.store);
    } catch (e) {
      dp.close();
      throw wrap(`start agent: open ${cfg.store.backend} store`, e);
    }
    try {
      const lease = await store.grantLease(cfg.leaseTTL);
      const identities = await IdentityAllocator.create(store, { node: cfg.nodeName, leaseTtlSeconds: cfg.leaseTTL });
      // The publisher renews its lease itself if it is lost (store outage past the TTL).
      const publisher = new Publisher(store, lease, cfg, log);
      const endpoints = new EndpointManager(dp, identities, publisher, log);
      const sync = new ClusterSync(dp, store, log);
      const agent = new Agent(cfg, dp, store, lease, endpoints, identities, publisher, sync);
      const r = await endpoints.restore();
      log(`endpoints restored: ${r.restored} kept, ${r.reloaded} reloaded, ${r.removed} gone, ${r.orphans} orphans removed`);
      await publisher.registerNode(agent.bootID);
      await sync.start();
      log(`cluster synced: ${sync.nodes.size} remote nodes, ${sync.pods.size} pod IPs`);
      agentRoutes(agent, agent.api);
      agent.api.raw('POST', '/v1/cni', cniHttpHandler(agent.cniBackend(), { networkName: CNI_NETWORK_NAME }));
      await agent.api.listen(cfg.paths.apiSocket);
      log(`serving API on ${cfg.paths.apiSocket}`);
      return agent;
    } catch (e) {
      dp.close();
      await store.close();
      throw e;
    }
  }

  /** The EndpointBackend the CNI handler drives. */
  cniBackend() {
    const ep = this.endpoints;
    const cfg = this.cfg;
    return {
      async add(r: { containerID: string; netns: string; ifname: string; podName?: string; podNamespace?: string; labels: Record<string, string> }, opts?: { signal?: AbortSignal }) {
        const e = await ep.add(r, opts);
        return { ip: e.ip, podMac: e.podMac, hostIfname: e.hostIfname, hostMac: e.hostMac, routerIP: cfg.routerIP, routeMTU: cfg.routeMTU, deviceMTU: cfg.deviceMTU };
      },
      async del(r: { containerID: string; ifname: string }) { await ep.del(r); },
      async check(r: { containerID: string; ifname: string; netns: string; prevResult?: unknown }) { ep.check(r); },
      async status() {
        if (!ep.ready) throw new MembraneError('agent status', { code: 'E_NOT_READY', cause: 'restoring endpoints' });
      },
      async gc(valid: { containerID: string; ifname: string }[]) { return { removed: await ep.gc(valid) }; },
    };
  }

  /** Stops serving; leaves the datapath, pins and store entries in place (their lease keeps them until it expires). */
  async stop(): Promise<void> {
    await this.api.close();
    this.publisher.close();
    this.sync.stop();
    await this.endpoints.settled();
    await this.identities.close().catch(() => undefined);
    await this.store.close();
    this.dp.close();
  }
}
