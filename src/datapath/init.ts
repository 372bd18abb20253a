// `membrane datapath init`: the node setup of the seed, in Cilium's order
// (loader.Reinitialize): global sysctls, cilium_host/cilium_net, cilium_vxlan,
// the router IP, the routes, the host and overlay programs, the node maps.
// Runs in the calling process's network namespace. Everything is validated
// and pre-checked before the first change; a failure part way undoes every
// change this run made, so the node is left as it was.
import { existsSync, statSync } from 'node:fs';
import { ensureBpffs, removePinTree } from '../bpf/index.ts';
import { addrList, linkGet, linkList, NetlinkHandle, type Link } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import type { PhaseTimer } from '../shared/phase-timer.ts';
import { missingCapabilities } from '../shared/privileges.ts';
import { VXLAN_DEVICE } from './constants.ts';
import { addHostDeviceAddr, checkVxlanPort, setupBaseDevice, setupVxlanDevice } from './devices.ts';
import { attachNodePrograms, type AttachedProgram } from './host-programs.ts';
import { writeMarker } from './node-marker.ts';
import { objectPath } from './objects.ts';
import { ensureKnownEndpointPolicyMaps } from './policy-maps.ts';
import { Rollback } from './rollback.ts';
import { reconcileIpcache } from './ipcache.ts';
import { desiredRemoteIpcache, reconcileRemoteRoutes, type RemoteNodeEntry } from './remote-nodes.ts';
import { applySysctls, GLOBAL_SYSCTLS } from './sysctl.ts';
import type { TraceLevel } from './maps/node-config.ts';
import { syncNodeEntries, writeNodeConfigFor } from './static-entries.ts';

export interface InitResult {
  nodeName: string;
  devices: { name: string; ifindex: number; mac: string; created: boolean }[];
  vxlanRecreated: boolean;
  routes: { added: number; removed: number };
  programs: AttachedProgram[];
  notes: string[];
}

/**
 * The node's pin directory must be root's and writable by nobody else: a
 * user who could create it (on a bpffs mounted world-writable, 1777 being
 * the kernel's default) could plant maps or links the loader would reuse.
 */
function checkPinDirOwner(dir: string): void {
  const st = statSync(dir);
  if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new MembraneError(`use pin directory ${dir}`, {
      code: 'E_BPFFS', cause: `it is owned by uid ${st.uid} with mode ${(st.mode & 0o7777).toString(8)}: root-only (owner 0, not group/other writable) is required`,
      hint: `remove it (rm -rf ${dir}) and mount the bpffs root-only (mount -t bpf -o mode=700 bpffs <root>)`,
    });
  }
}

/** Checks that need no change to the system; throws the first problem found. */
export function preflight(cfg: NodeConfig, h: NetlinkHandle): void {
  const missing = missingCapabilities();
  if (missing.length > 0) {
    throw new MembraneError('datapath init', { code: 'E_NOT_ROOT', cause: `must run as root (lacks ${missing.join(', ')})` });
  }
  ensureBpffs(cfg.bpffsRoot);
  objectPath('bpf_host');
  objectPath('bpf_overlay');
  checkVxlanPort(h, cfg.tunnelPort, `datapath init: set up ${VXLAN_DEVICE}`);
}

/**
 * The native device: the one holding the node IP (Cilium selects devices by
 * their addresses and routes; a node has one underlay here). None without a
 * node IP or when no device has it (e.g. a node IP given for peers only).
 */
export function findNativeDevice(h: NetlinkHandle, nodeIP: string | undefined): Link | undefined {
  if (!nodeIP) return undefined;
  const a = addrList(h).find((x) => x.address === nodeIP);
  return a ? linkGet(h, a.index) : undefined;
}

/**
 * Brings this netns's node datapath to `cfg`. Idempotent: a second run with
 * the same config changes nothing (same ifindexes, MACs, routes, link ids).
 */
export interface InitOptions {
  /** Remote nodes to route to (default cfg.remoteNodes; the agent passes what the store says). */
  remoteNodes?: readonly RemoteNodeEntry[];
  /**
   * Delete routes and node-level ipcache entries of nodes not in remoteNodes
   * (default true). A restarting agent passes false until it has re-learned
   * its peers, so a restart never cuts traffic to a node it simply has not heard of yet.
   */
  prune?: boolean;
  /** The trace level to write into node_config (default: keep the one the map holds; 0 on a new node). */
  traceLevel?: TraceLevel;
  /** Recorded in the node marker so CLI commands run in this netns find the agent. */
  apiSocket?: string;
  /** Marks the setup's phases (the agent's start timing, MEMBRANE_TIMING=1). */
  timer?: PhaseTimer;
}

export function initNode(cfg: NodeConfig, opts: InitOptions = {}): InitResult {
  const h = NetlinkHandle.open();
  try {
    return initNodeWith(h, cfg, opts);
  } finally {
    h.close();
  }
}

/** initNode on a handle the caller owns (the agent keeps its handle for later reconciles). */
export function initNodeWith(h: NetlinkHandle, cfg: NodeConfig, opts: InitOptions = {}): InitResult {
  const remotes = opts.remoteNodes ?? cfg.remoteNodes;
  const timer = opts.timer;
  preflight(cfg, h);
  timer?.mark('datapath preflight');
  const nodeDir = cfg.paths.pinDir;
  const freshPins = !existsSync(nodeDir);
  return Rollback.guard((rb) => {
    ensureBpffs(nodeDir);
    checkPinDirOwner(nodeDir);
    // A first run that fails leaves no pins either (registered first, so undone last).
    if (freshPins) rb.push(`pins under ${nodeDir}`, () => removePinTree(nodeDir));
    const notes: string[] = [];
    applySysctls(GLOBAL_SYSCTLS, rb);
    timer?.mark('sysctls');
    const existed = new Set(linkList(h).map((l) => l.name));
    const { host, net } = setupBaseDevice(h, cfg.deviceMTU, rb);
    const vx = setupVxlanDevice(h, { port: cfg.tunnelPort, srcPortLow: cfg.tunnelSrcPortLow, srcPortHigh: cfg.tunnelSrcPortHigh, mtu: cfg.deviceMTU }, rb);
    notes.push(...vx.notes);
    addHostDeviceAddr(h, host, cfg.routerIP, rb);
    writeMarker(h, host.index, { nodeName: cfg.nodeName, bpffsRoot: cfg.bpffsRoot, apiSocket: opts.apiSocket });
    timer?.mark('devices');
    const native = findNativeDevice(h, cfg.nodeIP);
    if (!native && cfg.routingMode === 'native') {
      throw new MembraneError('datapath init', { code: 'E_CONFIG', cause: `routingMode native: no device has the node IP ${cfg.nodeIP} (the native device carries the routes to other nodes' pods)` });
    }
    const routes = reconcileRemoteRoutes(h, host.index, native?.index, cfg, remotes, rb, { prune: opts.prune });
    timer?.mark('routes');
    // An upgrade from an agent without policy: the new programs must find every known pod's policy map.
    ensureKnownEndpointPolicyMaps(nodeDir);
    // The maps are pinned by the first object loaded, so entries come after the programs.
    if (!native && cfg.nodeIP) notes.push(`no device has the node IP ${cfg.nodeIP}: no programs on a native device, no masquerade`);
    const programs = attachNodePrograms(cfg, { host, net, vxlan: vx.link, native }, rb, timer);
    writeNodeConfigFor(cfg, { host, net, vxlan: vx.link, native }, opts.traceLevel);
    syncNodeEntries(cfg);
    reconcileIpcache(nodeDir, 'cluster', desiredRemoteIpcache(cfg, remotes), { prune: opts.prune });
    timer?.mark('map entries');
    return {
      nodeName: cfg.nodeName,
      devices: [host, net, vx.link, ...(native ? [native] : [])].map((l) => ({ name: l.name, ifindex: l.index, mac: l.mac, created: !existed.has(l.name) })),
      vxlanRecreated: vx.recreated,
      routes,
      programs,
      notes,
    };
  });
}
