// `membrane agent`: one daemon per node, run in the node's netns. On start
// it takes the node's lock (before anything else: a second agent for the
// node changes nothing), sets up the node datapath (without deleting
// anything it has not re-learned), opens the cluster store, restores its
// endpoints without touching their devices or traffic, publishes the node,
// and serves its API on a unix socket.
//
// Stopping: stop({ leave: true }) (SIGTERM) removes the node from the store
// at once, so peers drop it now; stop({ leave: false }) (SIGHUP, a restart)
// leaves its entries under their lease for the next agent to take over, so a
// restart costs no packet. The datapath and pins stay either way.
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { ApiServer } from '../api/server.ts';
import { cniHttpHandler } from '../cni/http.ts';
import { NodeDatapath } from '../datapath/node.ts';
import type { NodeConfig } from '../shared/config.ts';
import { ConfigError, MembraneError, wrap } from '../shared/errors.ts';
import { PhaseTimer } from '../shared/phase-timer.ts';
import { missingCapabilities } from '../shared/privileges.ts';
import { IdentityAllocator } from '../store/identity-allocator.ts';
import { openStore, type KVStore, type Lease } from '../store/store.ts';
import { ClusterSync } from './cluster-sync.ts';
import { EndpointManager } from './endpoint-manager.ts';
import { securityLabels } from './labels.ts';
import { NodeLock } from './lock.ts';
import type { Observability } from './observe/agent-observe.ts';
import { PolicyManager } from './policy-manager.ts';
import { deleteNodeEntries, Publisher } from './publisher.ts';
import { agentRoutes } from './routes.ts';
import { loadState } from './state-file.ts';
import { StoreHealth } from './store-health.ts';
import { storeTrace, traceWarning } from './store-trace.ts';

export const CNI_NETWORK_NAME = 'membrane';

/** How often expired conntrack entries are deleted (Cilium's GC runs every 30 s to 12 min, adaptively). */
const CT_GC_INTERVAL_MS = 30_000;

/** Written when the node left the cluster on purpose; the next start expects no trace of it in the store. */
const leftMarker = (cfg: NodeConfig): string => `${cfg.paths.stateDir}/left`;

/** `p`, or a rejection after `ms` (p keeps running; its outcome is ignored then). */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined);
  return Promise.race([p, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms); })])
    .finally(() => clearTimeout(timer));
}

export class Agent {
  readonly startedAt = new Date();
  readonly bootID = randomUUID();
  /** Things an operator must hear about (shown by `membrane status`), e.g. a store that lost this node. */
  readonly warnings: string[] = [];
  private api = new ApiServer();

  private constructor(
    readonly cfg: NodeConfig,
    private readonly lock: NodeLock,
    readonly dp: NodeDatapath,
    readonly store: KVStore,
    readonly lease: Lease,
    readonly endpoints: EndpointManager,
    readonly identities: IdentityAllocator,
    readonly publisher: Publisher,
    readonly sync: ClusterSync,
    readonly health: StoreHealth,
    readonly policy: PolicyManager,
  ) {}

  private ctGc?: NodeJS.Timeout;
  /** Events, flows and metrics (src/agent/observe). */
  observe?: Observability;

  static async start(cfg: NodeConfig, log: (s: string) => void = () => {}): Promise<Agent> {
    const missing = missingCapabilities();
    if (missing.length > 0) throw new MembraneError('start agent', { code: 'E_NOT_ROOT', cause: `must run as root (lacks ${missing.join(', ')})` });
    if (!cfg.nodeIP) throw new ConfigError('start agent', ['nodeIP: required by the agent (the underlay address other nodes tunnel to)']);
    // MEMBRANE_TIMING=1: one line with every phase, the first from the process's start (Node and module loading).
    const timer = new PhaseTimer(`agent start ${cfg.nodeName}`, { from: 0 });
    timer.mark('process start');
    // First, before the kernel or the store is touched: a refused agent changes nothing.
    const lock = NodeLock.acquire(cfg);
    timer.mark('lock');
    let dp: NodeDatapath;
    try {
      dp = NodeDatapath.open(cfg, { prune: false, apiSocket: cfg.paths.apiSocket, timer });
    } catch (e) {
      lock.release();
      throw e;
    }
    log(`datapath ready: ${dp.init.programs.length} programs attached, routes +${dp.init.routes.added}`);
    let store: KVStore;
    try {
      store = await openStore(cfg.store);
      timer.mark('store open');
    } catch (e) {
      dp.close();
      lock.release();
      throw wrap(`start agent: open ${cfg.store.backend} store`, e);
    }
    const undo: (() => Promise<unknown> | unknown)[] = [];
    try {
      const health = new StoreHealth(store, log);
      const lease = await store.grantLease(cfg.leaseTTL);
      timer.mark('lease');
      const identities = await IdentityAllocator.create(store, {
        node: cfg.nodeName, leaseTtlSeconds: cfg.leaseTTL, onError: (e) => log(`identities: ${e.message}`),
      });
      timer.mark('identities');
      undo.push(() => identities.close({ revoke: false }));
      // The publisher renews its lease itself if it is lost (store outage past the TTL).
      const publisher = new Publisher(store, lease, cfg, log);
      undo.push(() => publisher.close());
      const recorded = loadState(cfg.paths.stateFile, cfg.nodeName).endpoints;
      // Identities keep their numbers even when the store lost them (see store-trace.ts).
      identities.prefer(recorded.map((ep) => ({ labels: securityLabels(ep.labels, ep.podNamespace), id: ep.identity })));
      // An agent that left on purpose (SIGTERM) finds no trace of its node when it comes back: expected, not damage.
      const left = leftMarker(cfg);
      const leftAt = existsSync(left) ? readFileSync(left, 'utf8').trim() : undefined;
      const warning = leftAt === undefined ? traceWarning(await storeTrace(store, cfg, recorded), cfg, recorded) : undefined;
      if (warning) log(`WARNING: ${warning}`);
      if (leftAt !== undefined) log(`joining the cluster again (this node left it at ${leftAt})`);
      timer.mark('state and store trace');
      const endpoints = new EndpointManager(dp, identities, publisher, log);
      const sync = new ClusterSync(dp, store, log, { ownKeyDeleted: (k) => publisher.ownKeyDeleted(k), storeError: (e) => health.failed(e) });
      undo.push(() => sync.stop());
      const policy = new PolicyManager(dp, cfg, store, endpoints, log);
      undo.push(() => policy.stop());
      const agent = new Agent(cfg, lock, dp, store, lease, endpoints, identities, publisher, sync, health, policy);
      if (warning) agent.warnings.push(warning);
      const r = await endpoints.restore();
      timer.mark('restore');
      log(`endpoints restored: ${r.restored} kept, ${r.reloaded} reloaded, ${r.removed} gone, ${r.orphans} orphans removed`);
      await publisher.registerNode(agent.bootID);
      timer.mark('publish');
      // What an earlier run left claiming this node: pod IPs and identity references of endpoints that are gone.
      const ips = await publisher.sweepStaleIps(endpoints.list().map((e) => e.ip));
      const refs = await identities.sweepReferences();
      if (ips || refs) log(`store: removed ${ips} stale pod IP keys and ${refs} stale identity references of this node`);
      timer.mark('sweep store');
      await sync.start();
      timer.mark('first sync');
      // Policy after restore (restored endpoints keep the maps they had until then), before the API:
      // from the first ADD on, a new endpoint's map starts with its policy.
      await policy.start();
      endpoints.policy = policy;
      timer.mark('policy');
      log(`policy: ${policy.status().policies.length} policies, host firewall ${policy.status().hostFirewall ? 'on' : 'off'}`);
      agent.startConntrackGc(log);
      log(`cluster synced: ${sync.nodes.size} remote nodes, ${sync.pods.size} pod IPs`);
      health.start();
      undo.push(() => health.stop());
      identities.startGc();
      rmSync(left, { force: true });
      agentRoutes(agent, agent.api);
      const { startObservability } = await import('./observe/agent-observe.ts');
      agent.observe = await startObservability(agent, agent.api, log);
      undo.push(() => agent.observe?.stop());
      agent.api.raw('POST', '/v1/cni', cniHttpHandler(agent.cniBackend(), { networkName: CNI_NETWORK_NAME }));
      await agent.api.listen(cfg.paths.apiSocket);
      timer.mark('api listen');
      timer.done();
      log(`serving API on ${cfg.paths.apiSocket}`);
      return agent;
    } catch (e) {
      for (const u of undo.reverse()) await Promise.resolve().then(u).catch(() => undefined);
      dp.close();
      await store.close();
      lock.release();
      throw e;
    }
  }

  /** The EndpointBackend the CNI handler drives. */
  cniBackend() {
    const ep = this.endpoints;
    const cfg = this.cfg;
    const health = this.health;
    return {
      async add(r: { containerID: string; netns: string; ifname: string; podName?: string; podNamespace?: string; labels: Record<string, string> }, opts?: { signal?: AbortSignal }) {
        const e = await ep.add(r, opts);
        return { ip: e.ip, podMac: e.podMac, hostIfname: e.hostIfname, hostMac: e.hostMac, routerIP: cfg.routerIP, routeMTU: cfg.routeMTU, deviceMTU: cfg.deviceMTU };
      },
      async del(r: { containerID: string; ifname: string }) { await ep.del(r); },
      async check(r: { containerID: string; ifname: string; netns: string; prevResult?: unknown }) { ep.check(r); },
      async status() {
        if (!ep.ready) throw new MembraneError('agent status', { code: 'E_NOT_READY', cause: 'restoring endpoints' });
        // Every ADD needs the store (identities): say so rather than "available". A recent result, no round trip.
        health.check('agent status');
      },
      async gc(valid: { containerID: string; ifname: string }[]) { return { removed: await ep.gc(valid) }; },
    };
  }

  /**
   * An operator's "delete node" for another node that is gone for good: its
   * store entries go at once (peers drop its routes now, not after its lease).
   */
  async deleteNode(name: string): Promise<{ node: boolean; ips: number; references: number }> {
    if (name === this.cfg.nodeName) {
      throw new MembraneError(`delete node ${name}`, { code: 'E_BAD_REQUEST', cause: 'it is this agent\'s own node, which it publishes again; stop the agent with SIGTERM to remove it' });
    }
    return deleteNodeEntries(this.store, this.cfg.cluster, name);
  }

  /**
   * Stops serving. With `leave`, the node's store entries (node, pod IPs,
   * identity references) are removed now; without, they stay under their
   * lease for leaseTTL (a restart takes them over). The datapath and pins stay.
   */
  /** Expired conntrack entries go every CT_GC_INTERVAL_MS (the LRU tables never fill, but listings and memory stay small). */
  private startConntrackGc(log: (s: string) => void): void {
    this.ctGc = setInterval(() => {
      try {
        this.dp.conntrackGc();
      } catch (e) {
        log(`conntrack gc: ${(e as Error).message}`);
      }
    }, CT_GC_INTERVAL_MS);
    this.ctGc.unref();
  }

  async stop(opts: { leave?: boolean; log?: (s: string) => void } = {}): Promise<void> {
    await this.api.close();
    await this.observe?.stop();
    clearInterval(this.ctGc);
    this.policy.stop();
    this.health.stop();
    this.sync.stop();
    await this.endpoints.settled();
    if (opts.leave) {
      if (await this.publisher.leave()) {
        opts.log?.(`left the cluster: node ${this.cfg.nodeName} and its pod IPs removed from the store`);
        writeFileSync(leftMarker(this.cfg), `${new Date().toISOString()}\n`, { mode: 0o600 });
      }
      // Bounded like leave(): with the store away, the references expire with their lease.
      await within(5_000, this.identities.close({ revoke: true })).catch(() => undefined);
    } else {
      this.publisher.close();
      await this.identities.close({ revoke: false }).catch(() => undefined);
    }
    await this.store.close();
    this.dp.close();
    this.lock.release();
  }
}
