// Endpoints of one node: creation and deletion for the CNI plugin, IPAM,
// endpoint IDs, identities, persisted state and restore after a restart.
// Operations are serialised; each kernel change rolls back on failure, and
// the state file is written only once the endpoint is complete.
import { existsSync } from 'node:fs';
import { HOST_ENDPOINT_ID, MAX_ENDPOINT_ID } from '../datapath/constants.ts';
import type { NodeDatapath, PolicyMapEntry, TcxUpgrade } from '../datapath/node.ts';
import type { NodeConfig } from '../shared/config.ts';
import { MembraneError, wrap } from '../shared/errors.ts';
import { PhaseTimer } from '../shared/phase-timer.ts';
import { Ipam } from './ipam.ts';
import { securityLabels } from './labels.ts';
import { Mutex } from './mutex.ts';
import { loadState, saveState, type AgentState, type EndpointState } from './state-file.ts';

/** Cluster-wide identities for label sets (the store's allocator in the agent). */
export interface IdentityResolver {
  allocate(labels: Record<string, string>): Promise<number>;
  release(labels: Record<string, string>): Promise<unknown>;
}

/** The policy a new endpoint starts with (the policy manager); without one it starts allow-all until the policy is applied. */
export interface EndpointPolicySource {
  entriesFor(labels: Record<string, string>, podNamespace?: string): PolicyMapEntry[];
}

/** Told about endpoints coming and going (the agent publishes them to the store). */
export interface EndpointListener {
  up(ep: EndpointState): Promise<void> | void;
  down(ep: EndpointState): Promise<void> | void;
}

export interface AddRequest {
  containerID: string;
  netns: string;
  ifname: string;
  podName?: string;
  podNamespace?: string;
  labels: Record<string, string>;
}

/** How long endpoint operations must have paused before a move to tcx starts (longer than the gap between a burst's ADDs). */
const UPGRADE_QUIET_MS = 100;
/** ...but no move waits longer than this for a pause (a steady stream of ADDs). */
const UPGRADE_MAX_WAIT_MS = 2000;

export class EndpointManager {
  private readonly ipam: Ipam;
  private readonly eps = new Map<number, EndpointState>();
  private readonly mutex = new Mutex();
  private readonly cfg: NodeConfig;
  ready = false;
  /** Set once policy is loaded: a new endpoint's policy map starts with its policy, so no packet passes it unchecked. */
  policy?: EndpointPolicySource;

  constructor(
    private readonly dp: NodeDatapath,
    private readonly identities: IdentityResolver,
    private readonly listener?: EndpointListener,
    private readonly log?: (s: string) => void,
  ) {
    this.cfg = dp.cfg;
    const st = loadState(this.cfg.paths.stateFile, this.cfg.nodeName);
    // IPs are re-claimed in restore(); keep the cursor so released IPs are not reused early.
    this.ipam = new Ipam(this.cfg.podCIDR, this.cfg.routerIP, { allocated: {}, cursor: st.ipam.cursor });
    for (const ep of st.endpoints) this.eps.set(ep.id, ep);
  }

  list(): EndpointState[] {
    return [...this.eps.values()].sort((a, b) => a.id - b.id);
  }

  get ipamStatus(): { used: number; capacity: number; cidr: string } {
    return { used: this.ipam.used, capacity: this.ipam.capacity, cidr: this.cfg.podCIDR };
  }

  private save(): void {
    const st: AgentState = { version: 1, nodeName: this.cfg.nodeName, ipam: this.ipam.snapshot(), endpoints: this.list() };
    saveState(this.cfg.paths.stateFile, st);
  }

  private find(containerID: string, ifname: string): EndpointState | undefined {
    for (const ep of this.eps.values()) if (ep.containerID === containerID && ep.ifname === ifname) return ep;
    return undefined;
  }

  /** Lowest free endpoint id (the host endpoint's is never handed out). Called only under the mutex, so no two adds race for one. */
  private nextId(): number {
    for (let id = 1; id <= MAX_ENDPOINT_ID; id++) if (id !== HOST_ENDPOINT_ID && !this.eps.has(id)) return id;
    throw new MembraneError('allocate endpoint id', { code: 'E_ENDPOINT_IDS_EXHAUSTED', cause: `all ${MAX_ENDPOINT_ID - 1} ids in use` });
  }

  /**
   * Restores endpoints after a restart without touching working ones (the
   * datapath decides what that takes: NodeDatapath.restoreEndpoint); an
   * endpoint whose veth or pod netns is gone is forgotten; then every
   * endpoint remain that belongs to no recorded endpoint (a crash mid-ADD)
   * is swept.
   */
  async restore(): Promise<{ restored: number; removed: number; reloaded: number; orphans: number }> {
    return this.mutex.run(async () => {
      let restored = 0;
      let removed = 0;
      let reloaded = 0;
      for (const ep of this.list()) {
        if (!this.dp.endpointPresent(ep)) {
          this.dp.deleteEndpoint(ep);
          this.eps.delete(ep.id);
          removed++;
          await this.listener?.down(ep);
          continue;
        }
        this.ipam.claim(ep.ip, ep.containerID);
        // The store may give the labels another identity (it lost its data): LXC_SECLABEL is a
        // load-time constant, so the program must be reloaded or the pod keeps sending the old one.
        const loadedIdentity = ep.identity;
        ep.identity = await this.identities.allocate(securityLabels(ep.labels, ep.podNamespace));
        // The pod's interface is the truth for its MAC: a chained plugin may have changed it
        // (the datapath learned it from the pod's ARP); rewriting the recorded one would undo that.
        const mac = this.dp.podMac(ep);
        if (mac && mac !== ep.podMac) {
          this.log?.(`endpoint ${ep.id}: the pod's ${ep.ifname} has MAC ${mac} now (recorded ${ep.podMac})`);
          ep.podMac = mac;
        }
        if (this.dp.restoreEndpoint(ep, ep.objectHash !== this.dp.lxcObjectHash || ep.identity !== loadedIdentity) === 'reloaded') {
          ep.objectHash = this.dp.lxcObjectHash;
          reloaded++;
        }
        restored++;
        await this.listener?.up(ep);
      }
      const orphans = this.dp.sweepEndpoints(this.list());
      this.save();
      this.ready = true;
      return { restored, removed, reloaded, orphans };
    });
  }

  /**
   * CNI ADD. Idempotent, but only for what still exists: an earlier ADD's
   * endpoint is returned again if its veth and the pod's interface with its
   * address are still there in the same netns; otherwise (the netns was
   * recreated, another netns, a half-gone endpoint) it is replaced. With
   * `signal` aborted (the plugin gave up waiting) the ADD is not started,
   * and one that finished meanwhile is undone before any other request
   * sees it: no endpoint may exist that no runtime knows of.
   */
  async add(r: AddRequest, opts: { signal?: AbortSignal } = {}): Promise<EndpointState> {
    const what = `add endpoint for container ${r.containerID}`;
    const callerGone = (when: string) => new MembraneError(what, { code: 'E_CANCELLED', cause: `the caller went away ${when}` });
    return this.mutex.run(async () => {
      if (opts.signal?.aborted) throw callerGone('before the ADD started; nothing was done');
      if (!this.ready) throw new MembraneError('add endpoint', { code: 'E_NOT_READY', cause: 'the agent is still restoring its endpoints' });
      const existing = this.find(r.containerID, r.ifname);
      if (existing) {
        if (existing.netns === r.netns && this.dp.endpointIntact(existing)) return existing;
        this.log?.(`endpoint ${existing.id} (${r.containerID} ${r.ifname}): ${existing.netns === r.netns ? 'no longer whole' : `was in ${existing.netns}`}; replaced by this ADD`);
        await this.remove(existing);
      }
      // The spec allows several attachments per container; this datapath gives a pod one
      // interface (one /32, its default route via the router), so a second is refused
      // before anything is made, unless the other one is only a stale remain.
      const sibling = this.list().find((e) => e.containerID === r.containerID && e.ifname !== r.ifname);
      if (sibling) {
        if (this.dp.endpointIntact(sibling)) {
          throw new MembraneError(what, {
            code: 'E_SECOND_INTERFACE',
            cause: `the container already has ${sibling.ifname} on the membrane network (endpoint ${sibling.id}, ${sibling.ip}); a pod gets one interface, so ${r.ifname} is refused`,
          });
        }
        this.log?.(`endpoint ${sibling.id} (${r.containerID} ${sibling.ifname}): no longer whole; removed for this ADD of ${r.ifname}`);
        await this.remove(sibling);
      }
      const ep = await this.create(r);
      if (opts.signal?.aborted) {
        await this.remove(ep);
        throw callerGone('while the ADD ran; it was undone');
      }
      return ep;
    });
  }

  /** The body of an ADD (under the mutex): everything it makes is undone if a step fails. */
  private async create(r: AddRequest): Promise<EndpointState> {
    if (!existsSync(r.netns)) {
      throw new MembraneError(`add endpoint for container ${r.containerID}`, { code: 'E_NETNS', cause: `network namespace ${r.netns} does not exist` });
    }
    const timer = new PhaseTimer(`add endpoint for ${r.containerID}`);
    const id = this.nextId();
    const ip = this.ipam.allocate(r.containerID);
    const labels = securityLabels(r.labels, r.podNamespace);
    let identity: number | undefined;
    try {
      identity = await this.identities.allocate(labels);
      timer.mark('identity');
      const dev = this.dp.createEndpoint({ id, containerID: r.containerID, ifname: r.ifname, netns: r.netns, ip, identity }, timer,
        { policy: this.policy?.entriesFor(r.labels, r.podNamespace) });
      timer.mark('policy');
      const ep: EndpointState = {
        id, containerID: r.containerID, ifname: r.ifname, netns: r.netns, podName: r.podName, podNamespace: r.podNamespace,
        labels: r.labels, identity, ip, podMac: dev.podMac, hostIfname: dev.hostIfname, hostIfindex: dev.hostIfindex, hostMac: dev.hostMac,
        objectHash: this.dp.lxcObjectHash, state: 'ready', createdAt: new Date().toISOString(),
      };
      this.eps.set(id, ep);
      const unrecord = () => {
        this.eps.delete(id);
        dev.upgrade?.cancel();
        this.dp.deleteEndpoint(ep);
      };
      try {
        this.save();
      } catch (e) {
        unrecord();
        throw wrap(`add endpoint ${id}: save state`, e);
      }
      timer.mark('save state');
      try {
        await this.listener?.up(ep);
      } catch (e) {
        // A failed publish (store unavailable) used to leave the endpoint
        // recorded, its devices and map entries in place and its tcx move
        // never started, while the catch below released its IP and
        // identity: a retried ADD then "succeeded" with an IP that IPAM
        // could hand to another pod. Undo it all: a failed ADD leaves nothing.
        unrecord();
        try {
          this.save();
        } catch { /* the state file still lists it; restore removes it (its veth is gone) */ }
        throw e;
      }
      timer.mark('publish');
      timer.done();
      if (dev.upgrade) this.startUpgrade(ep, dev.upgrade);
      return ep;
    } catch (e) {
      this.ipam.release(ip, r.containerID);
      if (identity !== undefined) await this.identities.release(labels).catch(() => undefined);
      throw wrap(`add endpoint for container ${r.containerID}`, e);
    }
  }

  /** Endpoints still on their legacy tc filter, waiting for the move to tcx, in ADD order. */
  private readonly pendingUpgrades = new Map<number, { ep: EndpointState; upgrade: TcxUpgrade }>();
  /** The move to tcx in progress, if any. */
  private runningUpgrade?: { id: number; done: Promise<void> };
  private draining?: Promise<void>;

  /**
   * Moves the endpoint from its legacy tc filter to tcx in the background,
   * one at a time and only once endpoint operations have been quiet for a
   * moment: creating a tcx link waits for an RCU grace period with the RTNL
   * lock held, which made every veth of a burst of ADDs wait too (100 ADDs:
   * 2.8 s instead of 1.6 s). The pod works meanwhile: same program, same
   * maps, on the legacy hook.
   */
  private startUpgrade(ep: EndpointState, upgrade: TcxUpgrade): void {
    this.pendingUpgrades.set(ep.id, { ep, upgrade });
    this.draining ??= this.drainUpgrades().finally(() => { this.draining = undefined; });
  }

  private async drainUpgrades(): Promise<void> {
    for (;;) {
      await this.mutex.whenQuiet(UPGRADE_QUIET_MS, UPGRADE_MAX_WAIT_MS);
      const next = this.pendingUpgrades.entries().next();
      if (next.done) return;
      const [id, { ep, upgrade }] = next.value;
      this.pendingUpgrades.delete(id);
      const done = upgrade.run().then(
        (mode) => { if (mode === 'tc') this.log?.(`endpoint ${ep.id}: tcx not supported, staying on legacy tc`); },
        (e) => this.log?.(`endpoint ${ep.id}: ${(e as Error).message} (staying on legacy tc)`),
      );
      this.runningUpgrade = { id, done };
      await done;
      this.runningUpgrade = undefined;
    }
  }

  /** An endpoint about to go: its move to tcx is dropped if not started, awaited if running. */
  private async forgetUpgrade(id: number): Promise<void> {
    const pending = this.pendingUpgrades.get(id);
    if (pending) {
      this.pendingUpgrades.delete(id);
      pending.upgrade.cancel();
    }
    if (this.runningUpgrade?.id === id) await this.runningUpgrade.done;
  }

  /** Resolves once every background tcx upgrade has finished (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.draining) await this.draining;
  }

  /** Idempotent: deleting an endpoint that does not exist succeeds. */
  async del(r: { containerID: string; ifname: string }): Promise<EndpointState | undefined> {
    return this.mutex.run(async () => {
      const ep = this.find(r.containerID, r.ifname);
      if (!ep) {
        // Nothing recorded; still remove a device of the name this pair would have had (crash mid-ADD).
        this.dp.deleteUnrecordedEndpoint(r.containerID, r.ifname);
        return undefined;
      }
      await this.remove(ep);
      return ep;
    });
  }

  /** Removes a recorded endpoint everywhere (under the mutex): datapath, IPAM, state file, identity, store. */
  private async remove(ep: EndpointState): Promise<void> {
    await this.forgetUpgrade(ep.id);
    this.dp.deleteEndpoint(ep);
    this.eps.delete(ep.id);
    this.ipam.release(ep.ip, ep.containerID);
    this.save();
    await this.identities.release(securityLabels(ep.labels, ep.podNamespace)).catch(() => undefined);
    await this.listener?.down(ep);
  }

  /** CNI CHECK: throws a MembraneError naming what is wrong with the endpoint, host or pod side, or against the runtime's prevResult. */
  check(r: { containerID: string; ifname: string; netns: string; prevResult?: unknown }): void {
    const ep = this.find(r.containerID, r.ifname);
    const what = `check endpoint of container ${r.containerID} ${r.ifname}`;
    if (!ep) throw new MembraneError(what, { code: 'E_ENDPOINT_NOT_FOUND', cause: 'no such endpoint' });
    if (ep.netns !== r.netns) throw new MembraneError(what, { code: 'E_ENDPOINT', cause: `endpoint is in ${ep.netns}, not ${r.netns}` });
    this.dp.checkEndpoint(ep, what, r.prevResult);
  }

  /** CNI GC: deletes endpoints not in `valid`. */
  async gc(valid: { containerID: string; ifname: string }[]): Promise<string[]> {
    const keep = new Set(valid.map((v) => `${v.containerID}/${v.ifname}`));
    const removed: string[] = [];
    for (const ep of this.list()) {
      if (keep.has(`${ep.containerID}/${ep.ifname}`)) continue;
      await this.del(ep);
      removed.push(`${ep.containerID}/${ep.ifname}`);
    }
    return removed;
  }
}
