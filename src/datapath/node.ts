// The node datapath as the agent sees it: one object per node, opened once
// (node setup, then a netlink handle kept for the agent's life), with the
// operations the agent needs and nothing of how they are done. The agent
// decides what should exist (endpoints, remote nodes and pods); this layer
// decides what that means in devices, routes, programs and map entries.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { linkDel, linkGet, NetlinkHandle } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import type { PhaseTimer } from '../shared/phase-timer.ts';
import { HOST_DEVICE } from './constants.ts';
import { gcConntrack, listConntrack, type CtGcResult, type CtListEntry } from './conntrack.ts';
import { createEndpointDatapath, deleteEndpointDatapath, hostIfname, type CreateEndpointOptions, type CreatedEndpoint, type EndpointSpec } from './endpoint.ts';
import { checkEndpoint, endpointPresent, inspectPod, restoreEndpoint, sweepEndpoints, type EndpointRecord, type RestoreOutcome } from './endpoint-restore.ts';
import { findNativeDevice, initNodeWith, type InitOptions, type InitResult } from './init.ts';
import { objectPath } from './objects.ts';
import type { PolicyMapEntry } from './maps/policy.ts';
import {
  listEndpointPolicy, listHostPolicy, setHostPolicy, syncEndpointPolicy, type HostPolicyResult, type PolicySyncResult,
} from './policy-maps.ts';
import { reconcileRemotes, type RemoteNodeEntry, type RemotePodEntry } from './remote-nodes.ts';
import { reconcileIpcache } from './ipcache.ts';
import { Rollback } from './rollback.ts';
import type { TraceLevel } from './maps/node-config.ts';
import { readTraceLevel, setTraceLevel } from './static-entries.ts';
import { EventReader, readEventsLost, type LostEvents } from './events-reader.ts';

export type { CreateEndpointOptions, CreatedEndpoint, EndpointSpec, TcxUpgrade } from './endpoint.ts';
export type { CtGcResult, CtListEntry } from './conntrack.ts';
export type { PolicyMapEntry } from './maps/policy.ts';
export type { TraceLevel } from './maps/node-config.ts';
export { TRACE_LEVEL_ALL, TRACE_LEVEL_CONN, TRACE_LEVEL_OFF, checkTraceLevel } from './maps/node-config.ts';
export { EventReader, type LostEvents } from './events-reader.ts';
export type { DatapathEvent, DebugEvent, DropEvent, PolicyVerdictEvent, TraceEvent } from './maps/events.ts';
export type { HostPolicyResult, PolicySyncResult } from './policy-maps.ts';
export type { EndpointRecord, RestoreOutcome } from './endpoint-restore.ts';
export type { RemoteNodeEntry, RemotePodEntry } from './remote-nodes.ts';

export class NodeDatapath {
  /** sha256 of the bpf_lxc.o endpoints are loaded from: a recorded endpoint with another hash runs a stale program. */
  readonly lxcObjectHash: string;

  private constructor(readonly cfg: NodeConfig, private readonly h: NetlinkHandle, readonly init: InitResult) {
    this.lxcObjectHash = createHash('sha256').update(readFileSync(objectPath('bpf_lxc'))).digest('hex');
  }

  /** Sets the node up (initNode) in this process's netns and keeps a handle for later changes. The caller owns the result: close() it. */
  static open(cfg: NodeConfig, opts: InitOptions = {}): NodeDatapath {
    const h = NetlinkHandle.open();
    try {
      return new NodeDatapath(cfg, h, initNodeWith(h, cfg, opts));
    } catch (e) {
      h.close();
      throw e;
    }
  }

  /**
   * Creates an endpoint's datapath; on failure everything it made is undone. The endpoint runs on a legacy tc filter until `upgrade` (if any) moves it to tcx.
   * Its policy map is in place before anything else can reach it: `opts.policy`, or allow-all both ways until setEndpointPolicy.
   */
  createEndpoint(spec: EndpointSpec, timer?: PhaseTimer, opts?: CreateEndpointOptions): CreatedEndpoint {
    return Rollback.guard((rb) => createEndpointDatapath(this.cfg, this.h, spec, rb, timer, opts));
  }

  /** Removes an endpoint's datapath; tolerates any part being gone already. */
  deleteEndpoint(ep: { id: number; ip?: string; hostIfname: string }): void {
    deleteEndpointDatapath(this.cfg, this.h, ep);
  }

  /** DEL of an endpoint nobody recorded: removes a device of the name it would have had (a crash mid-ADD). */
  deleteUnrecordedEndpoint(containerID: string, ifname: string): void {
    const name = hostIfname(containerID, ifname);
    if (linkGet(this.h, name)) linkDel(this.h, name);
  }

  /** Is the recorded endpoint's veth (the same one) and pod netns still there? If not, deleteEndpoint removes its remains. */
  endpointPresent(ep: EndpointRecord): boolean {
    return endpointPresent(this.h, ep);
  }

  /**
   * Brings back a present endpoint after a restart, touching it only where it drifted; `reload` forces a fresh program.
   * An endpoint without a policy map (made by an older agent) gets one with `policy` (default allow-all both ways); an existing map is kept.
   */
  restoreEndpoint(ep: EndpointRecord, reload: boolean, policy?: readonly PolicyMapEntry[]): RestoreOutcome {
    return restoreEndpoint(this.cfg, ep, reload, policy);
  }

  /**
   * Makes endpoint `id`'s policy map exactly `entries` (deny wins over an allow it covers) without a gap: new and changed
   * entries first, stale ones after. No program is reloaded. Throws E_POLICY_MAP for an endpoint without a map.
   */
  setEndpointPolicy(id: number, entries: readonly PolicyMapEntry[]): PolicySyncResult {
    return syncEndpointPolicy(this.cfg.paths.pinDir, id, entries);
  }

  /** Endpoint `id`'s policy map entries (for `membrane bpf policy get`). */
  endpointPolicy(id: number): PolicyMapEntry[] {
    return listEndpointPolicy(this.cfg.paths.pinDir, id);
  }

  /** The host firewall: `entries` when a host policy selects this node, undefined when none does (firewall off: everything allowed). */
  setHostPolicy(entries: readonly PolicyMapEntry[] | undefined): HostPolicyResult {
    return setHostPolicy(this.cfg.paths.pinDir, entries);
  }

  /** The host firewall's entries, undefined while it is off. */
  hostPolicy(): PolicyMapEntry[] | undefined {
    return listHostPolicy(this.cfg.paths.pinDir);
  }

  /** Deletes expired conntrack entries; `now` in seconds of CLOCK_MONOTONIC (default: now). Call it periodically (e.g. every 30 s). */
  conntrackGc(now?: number): CtGcResult {
    return gcConntrack(this.cfg.paths.pinDir, now);
  }

  /** The node's conntrack entries (for `membrane bpf ct list`). */
  listConntrack(): CtListEntry[] {
    return listConntrack(this.cfg.paths.pinDir);
  }

  // --- Events: the surface the agent's observe pipeline (src/agent/observe) uses. Kept stable: ---
  //   openEventReader()   the node's cilium_events ring as decoded DatapathEvents (maps/events.ts:
  //                       DropEvent, TraceEvent, DebugEvent, PolicyVerdictEvent, each with timeNs,
  //                       source endpoint, hash, lenOrig, packet bytes and summary), plus lost() since open;
  //   setTraceLevel(n) / traceLevel()   0 drops and denials, 1 per connection, 2 every packet;
  //   eventsLost()        records lost since the maps were made (exact, per type).
  // Records are in ring order per node; across nodes, order them by timeNs (one clock per machine).

  /**
   * Opens the reader of this node's events. A ring has one consumer position, so a node has one reader (the agent's
   * pipeline), which hands events on; consume() never blocks: call it on a timer. The caller close()s it.
   * Throws E_NOT_INITIALIZED if the node's maps are not pinned.
   */
  openEventReader(): EventReader {
    return EventReader.open(this.cfg.paths.pinDir);
  }

  /** Records the programs could not write because the ring was full, since the node's maps were made: exact, by type. */
  eventsLost(): LostEvents {
    return readEventsLost(this.cfg.paths.pinDir);
  }

  /**
   * Which trace events the programs send, at once and without a reload: 0 none (drops and policy denials only),
   * 1 per connection (to-* traces of new connections, new TCP flags, every 5 s; allow verdicts of new connections),
   * 2 every packet at every point with the debug records. Throws E_MAP_CODEC for another value.
   */
  setTraceLevel(level: TraceLevel): void {
    setTraceLevel(this.cfg.paths.pinDir, level);
  }

  /** The trace level the programs use now. */
  traceLevel(): TraceLevel {
    return readTraceLevel(this.cfg.paths.pinDir);
  }

  /** Throws E_ENDPOINT naming what is broken, host and pod side, and what differs from the runtime's prevResult (CNI CHECK). */
  checkEndpoint(ep: EndpointRecord, what: string, prevResult?: unknown): void {
    checkEndpoint(this.cfg, this.h, ep, what, prevResult);
  }

  /**
   * Whether what an earlier ADD made is still whole, so that returning its
   * result again is true: the same veth, the pod's interface up with the
   * endpoint's address. Anything less is a stale endpoint to replace.
   */
  endpointIntact(ep: EndpointRecord): boolean {
    if (!endpointPresent(this.h, ep)) return false;
    try {
      const pod = inspectPod(ep);
      return !!pod.link?.up && pod.addresses.includes(`${ep.ip}/32`);
    } catch {
      return false; // the netns went away meanwhile
    }
  }

  /** The MAC the pod's interface has now (a chained plugin may have changed it), if it is there. */
  podMac(ep: EndpointRecord): string | undefined {
    try {
      return inspectPod(ep).link?.mac;
    } catch {
      return undefined;
    }
  }

  /** Removes endpoint remains that belong to none of `keep`; returns how many. */
  sweepEndpoints(keep: readonly EndpointRecord[]): number {
    return sweepEndpoints(this.cfg, this.h, keep);
  }

  /**
   * The ipcache entries of CIDR rules: each prefix with its node-local CIDR
   * identity (owner cidr; prefixes the cluster or this node hold stay theirs).
   * Returns the prefixes another owner holds, which no packet will carry the CIDR identity for.
   */
  setCidrIdentities(ids: ReadonlyMap<string, number>): string[] {
    const want = new Map([...ids].map(([prefix, identity]) => [prefix, { identity }]));
    return reconcileIpcache(this.cfg.paths.pinDir, 'cidr', want).contested;
  }

  /** Brings routes and cluster-owned ipcache entries to these remote nodes and pods (deleting the rest); route changes roll back on failure. */
  reconcileRemotes(remotes: readonly RemoteNodeEntry[], pods: readonly RemotePodEntry[]): ReturnType<typeof reconcileRemotes> {
    const host = linkGet(this.h, HOST_DEVICE);
    if (!host) throw new MembraneError('reconcile remote nodes', { code: 'E_NOT_INITIALIZED', cause: `${HOST_DEVICE} is missing`, hint: 'restart the agent to set the node up again' });
    const native = findNativeDevice(this.h, this.cfg.nodeIP);
    return Rollback.guard((rb) => reconcileRemotes(this.h, host.index, this.cfg, remotes, pods, rb, { nativeIndex: native?.index }));
  }

  close(): void {
    this.h.close();
  }
}
