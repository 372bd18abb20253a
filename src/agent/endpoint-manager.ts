// Endpoints of one node: creation and deletion for the CNI plugin, IPAM,
// endpoint IDs, identities, persisted state and restore after a restart.
// Operations are serialised; each kernel change rolls back on failure, and
// the state file is written only once the endpoint is complete.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { BpfMap, pinExists, removePinTree, unpin } from '../bpf/index.ts';
import type { NodeConfig } from '../datapath/config.ts';
import { defaults, routeMTU } from '../datapath/defaults.ts';
import {
  attachEndpointPrograms, createEndpointDatapath, deleteEndpointDatapath, hostIfname, type EndpointSpec, type TcxUpgrade,
} from '../datapath/endpoint.ts';
import * as endpointsMap from '../datapath/maps/endpoints.ts';
import * as ipcache from '../datapath/maps/ipcache.ts';
import { MAP_NAMES, withNodeMap } from '../datapath/node-maps.ts';
import { objectPath } from '../datapath/objects.ts';
import { callsMapName, endpointLinkPin, globalsDir } from '../datapath/paths.ts';
import { Rollback } from '../datapath/rollback.ts';
import { linkGet, linkList, linkDel, type NetlinkHandle } from '../netlink/index.ts';
import { MembraneError, wrap } from '../shared/errors.ts';
import { cidrContains, parseCidr, parseIPv4 } from '../shared/ip.ts';
import { Ipam } from './ipam.ts';
import { securityLabels } from './labels.ts';
import { Mutex } from './mutex.ts';
import { PhaseTimer } from '../shared/phase-timer.ts';
import { loadState, saveState, type AgentState, type EndpointState } from './state-file.ts';

/** Cluster-wide identities for label sets (the store's allocator in the agent). */
export interface IdentityResolver {
  allocate(labels: Record<string, string>): Promise<number>;
  release(labels: Record<string, string>): Promise<unknown>;
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

const MAX_ENDPOINT_ID = 4095;

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export class EndpointManager {
  private readonly ipam: Ipam;
  private readonly eps = new Map<number, EndpointState>();
  private readonly mutex = new Mutex();
  private readonly lxcHash: string;
  ready = false;

  constructor(
    private readonly cfg: NodeConfig,
    private readonly nodeDir: string,
    private readonly h: NetlinkHandle,
    private readonly statePath: string,
    private readonly identities: IdentityResolver,
    private readonly listener?: EndpointListener,
    private readonly log?: (s: string) => void,
  ) {
    const st = loadState(statePath, cfg.nodeName);
    // IPs are re-claimed in restore(); keep the cursor so released IPs are not reused early.
    this.ipam = new Ipam(cfg.podCIDR, cfg.routerIP, { allocated: {}, cursor: st.ipam.cursor });
    for (const ep of st.endpoints) this.eps.set(ep.id, ep);
    this.lxcHash = sha256File(objectPath('bpf_lxc'));
  }

  list(): EndpointState[] {
    return [...this.eps.values()].sort((a, b) => a.id - b.id);
  }

  get ipamStatus(): { used: number; capacity: number; cidr: string } {
    return { used: this.ipam.used, capacity: this.ipam.capacity, cidr: this.cfg.podCIDR };
  }

  private save(): void {
    const st: AgentState = { version: 1, nodeName: this.cfg.nodeName, ipam: this.ipam.snapshot(), endpoints: this.list() };
    saveState(this.statePath, st);
  }

  private find(containerID: string, ifname: string): EndpointState | undefined {
    for (const ep of this.eps.values()) if (ep.containerID === containerID && ep.ifname === ifname) return ep;
    return undefined;
  }

  /** Lowest free endpoint id (the host endpoint's is never handed out). Called only under the mutex, so no two adds race for one. */
  private nextId(): number {
    for (let id = 1; id <= MAX_ENDPOINT_ID; id++) if (id !== defaults.hostEndpointID && !this.eps.has(id)) return id;
    throw new MembraneError('allocate endpoint id', { code: 'E_ENDPOINT_IDS_EXHAUSTED', cause: `all ${MAX_ENDPOINT_ID - 1} ids in use` });
  }

  private spec(ep: { id: number; containerID: string; ifname: string; netns: string; ip: string; identity: number }): EndpointSpec {
    return { ...ep, routerIP: this.cfg.routerIP, deviceMTU: this.cfg.deviceMTU, enableEndpointRoutes: this.cfg.enableEndpointRoutes };
  }

  /**
   * Restores endpoints after a restart without touching working ones: an
   * endpoint whose veth still exists keeps its devices, program and map
   * entries (the program is reloaded in place only if bpf_lxc.o changed);
   * one whose veth or pod netns is gone is cleaned up; lxc devices, pins
   * and map entries that belong to no endpoint (a crash mid-ADD) are removed.
   */
  async restore(): Promise<{ restored: number; removed: number; reloaded: number; orphans: number }> {
    return this.mutex.run(async () => {
      let restored = 0;
      let removed = 0;
      let reloaded = 0;
      for (const ep of this.list()) {
        const link = linkGet(this.h, ep.hostIfname);
        if (!link || link.index !== ep.hostIfindex || !existsSync(ep.netns)) {
          deleteEndpointDatapath(this.nodeDir, this.h, ep);
          this.eps.delete(ep.id);
          removed++;
          await this.listener?.down(ep);
          continue;
        }
        this.ipam.claim(ep.ip, ep.containerID);
        const loadedIdentity = ep.identity;
        ep.identity = await this.identities.allocate(securityLabels(ep.labels, ep.podNamespace));
        // Reload when bpf_lxc.o changed, when the tcx link is missing (the agent died before moving it from legacy tc),
        // or when the store gave the labels another identity (it lost its data): LXC_SECLABEL is a load-time constant,
        // and without the reload the pod kept sending with the old identity.
        if (ep.objectHash !== this.lxcHash || ep.identity !== loadedIdentity || !pinExists(endpointLinkPin(this.nodeDir, ep.id, 'cil_from_container'))) {
          Rollback.guard((rb) => attachEndpointPrograms(this.nodeDir, this.spec(ep), ep, rb));
          ep.objectHash = this.lxcHash;
          reloaded++;
        }
        this.ensureMapEntries(ep);
        restored++;
        await this.listener?.up(ep);
      }
      const orphans = this.removeOrphans();
      this.save();
      this.ready = true;
      return { restored, removed, reloaded, orphans };
    });
  }

  /**
   * Rewrites the endpoint's cilium_lxc and ipcache entries if missing or
   * different (map recreated, identity changed). The ipcache /32 used to be
   * left alone here, so after an identity change it kept the old identity
   * while cilium_lxc had the new one.
   */
  private ensureMapEntries(ep: EndpointState): void {
    const { key, value } = endpointsMap.encodeEntry({ ip: ep.ip, ifindex: ep.hostIfindex, lxcId: ep.id, flags: 0, mac: ep.podMac, nodeMac: ep.hostMac, secId: ep.identity, parentIfindex: 0 });
    withNodeMap(this.nodeDir, MAP_NAMES.endpoints, (m: BpfMap) => {
      if (!m.lookup(key)?.equals(value)) m.update(key, value);
    });
    const ipKey = ipcache.encodeKey(`${ep.ip}/32`);
    const ipValue = ipcache.encodeValue({ identity: ep.identity });
    withNodeMap(this.nodeDir, MAP_NAMES.ipcache, (m: BpfMap) => {
      if (!m.lookup(ipKey)?.equals(ipValue)) m.update(ipKey, ipValue);
    });
  }

  private removeOrphans(): number {
    let n = 0;
    const names = new Set(this.list().map((e) => e.hostIfname));
    for (const l of linkList(this.h)) {
      if (/^lxc[0-9a-f]{12}$/.test(l.name) && !names.has(l.name)) {
        linkDel(this.h, l.index);
        n++;
      }
    }
    const ids = new Set(this.list().map((e) => e.id));
    const epDir = `${this.nodeDir}/endpoints`;
    if (existsSync(epDir)) {
      for (const d of readdirSync(epDir)) if (!ids.has(Number(d))) { removePinTree(`${epDir}/${d}`); n++; }
    }
    const globals = globalsDir(this.nodeDir);
    for (const f of existsSync(globals) ? readdirSync(globals) : []) {
      const m = /^cilium_calls_(\d{5})$/.exec(f);
      if (m && !ids.has(Number(m[1]))) { unpin(`${globals}/${f}`); n++; }
    }
    withNodeMap(this.nodeDir, MAP_NAMES.endpoints, (m: BpfMap) => {
      for (const [k, v] of m.entries()) {
        const e = endpointsMap.decodeEntry(k, v);
        if (!(e.flags & endpointsMap.ENDPOINT_F_HOST) && !ids.has(e.lxcId)) { m.delete(k); n++; }
      }
    });
    // An ADD cut short after writing its ipcache /32 (it goes in just before
    // the cilium_lxc entry) left that entry too, and nothing else removes a
    // local pod's entry (cluster sync only owns entries with a tunnel
    // endpoint): without this it stayed, with a stale identity, until the
    // IP was handed out again. Local pod entries are the /32s in our pod
    // CIDR, other than the router IP, with no tunnel endpoint.
    const cidr = parseCidr(this.cfg.podCIDR);
    const ips = new Set(this.list().map((e) => e.ip));
    withNodeMap(this.nodeDir, MAP_NAMES.ipcache, (m: BpfMap) => {
      for (const [k, v] of m.entries()) {
        const prefix = ipcache.decodeKey(k);
        if (!prefix.endsWith('/32')) continue;
        const ip = prefix.slice(0, -3);
        if (ip === this.cfg.routerIP || ips.has(ip) || !cidrContains(cidr, parseIPv4(ip))) continue;
        if (ipcache.decodeValue(v).tunnelEndpoint === undefined) { m.delete(k); n++; }
      }
    });
    return n;
  }

  async add(r: AddRequest): Promise<EndpointState> {
    return this.mutex.run(async () => {
      if (!this.ready) throw new MembraneError('add endpoint', { code: 'E_NOT_READY', cause: 'the agent is still restoring its endpoints' });
      const existing = this.find(r.containerID, r.ifname);
      if (existing) return existing;
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
        const spec = this.spec({ id, containerID: r.containerID, ifname: r.ifname, netns: r.netns, ip, identity });
        const dev = Rollback.guard((rb) => createEndpointDatapath(this.nodeDir, this.h, spec, rb, timer));
        const ep: EndpointState = {
          id, containerID: r.containerID, ifname: r.ifname, netns: r.netns, podName: r.podName, podNamespace: r.podNamespace,
          labels: r.labels, identity, ip, podMac: dev.podMac, hostIfname: dev.hostIfname, hostIfindex: dev.hostIfindex, hostMac: dev.hostMac,
          objectHash: this.lxcHash, state: 'ready', createdAt: new Date().toISOString(),
        };
        this.eps.set(id, ep);
        const unrecord = () => {
          this.eps.delete(id);
          dev.upgrade?.cancel();
          deleteEndpointDatapath(this.nodeDir, this.h, ep);
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
    });
  }

  private readonly upgrades = new Map<number, Promise<unknown>>();

  /** Moves the endpoint from its legacy tc filter to tcx in the background (the kernel waits on a worker thread). */
  private startUpgrade(ep: EndpointState, upgrade: TcxUpgrade): void {
    const p = upgrade.run().then(
      (mode) => { if (mode === 'tc') this.log?.(`endpoint ${ep.id}: tcx not supported, staying on legacy tc`); },
      (e) => this.log?.(`endpoint ${ep.id}: ${(e as Error).message} (staying on legacy tc)`),
    ).finally(() => this.upgrades.delete(ep.id));
    this.upgrades.set(ep.id, p);
  }

  /** Resolves once every background tcx upgrade has finished (tests, shutdown). */
  async settled(): Promise<void> {
    await Promise.all([...this.upgrades.values()]);
  }

  /** Idempotent: deleting an endpoint that does not exist succeeds. */
  async del(r: { containerID: string; ifname: string }): Promise<EndpointState | undefined> {
    return this.mutex.run(async () => {
      const ep = this.find(r.containerID, r.ifname);
      if (!ep) {
        // Nothing recorded; still remove a device of the name this pair would have had (crash mid-ADD).
        const name = hostIfname(r.containerID, r.ifname);
        if (linkGet(this.h, name)) linkDel(this.h, name);
        return undefined;
      }
      await this.upgrades.get(ep.id);
      deleteEndpointDatapath(this.nodeDir, this.h, ep);
      this.eps.delete(ep.id);
      this.ipam.release(ep.ip, ep.containerID);
      this.save();
      await this.identities.release(securityLabels(ep.labels, ep.podNamespace)).catch(() => undefined);
      await this.listener?.down(ep);
      return ep;
    });
  }

  /** Throws a MembraneError naming what is wrong with the endpoint, if anything. */
  check(r: { containerID: string; ifname: string; netns: string }): void {
    const ep = this.find(r.containerID, r.ifname);
    const what = `check endpoint of container ${r.containerID} ${r.ifname}`;
    if (!ep) throw new MembraneError(what, { code: 'E_ENDPOINT_NOT_FOUND', cause: 'no such endpoint' });
    if (ep.netns !== r.netns) throw new MembraneError(what, { code: 'E_ENDPOINT', cause: `endpoint is in ${ep.netns}, not ${r.netns}` });
    const l = linkGet(this.h, ep.hostIfname);
    if (!l || l.index !== ep.hostIfindex) throw new MembraneError(what, { code: 'E_ENDPOINT', cause: `host device ${ep.hostIfname} is missing` });
    if (!l.up) throw new MembraneError(what, { code: 'E_ENDPOINT', cause: `host device ${ep.hostIfname} is down` });
    const entry = withNodeMap(this.nodeDir, MAP_NAMES.endpoints, (m: BpfMap) => m.lookup(endpointsMap.encodeKey(ep.ip)));
    if (!entry || endpointsMap.decodeValue(entry).lxcId !== ep.id) throw new MembraneError(what, { code: 'E_ENDPOINT', cause: `cilium_lxc has no entry for ${ep.ip}` });
    if (!existsSync(`${globalsDir(this.nodeDir)}/${callsMapName.endpoint(ep.id)}`)) throw new MembraneError(what, { code: 'E_ENDPOINT', cause: 'its calls map is not pinned' });
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

  routeMTU(): number {
    return routeMTU(this.cfg.deviceMTU);
  }
}
