// A pod endpoint's datapath (Cilium's connector/veth.go + loader reloadEndpoint):
// the lxc veth pair (peer created straight in the pod netns, renamed to the
// CNI ifname), the pod's /32 address and routes, bpf_lxc.o loaded once per
// endpoint with its values as load-time constants (no compiler run), its
// tcx attachment, its policy map, and its cilium_lxc and ipcache entries. Every step
// registers its undo; deleteEndpointDatapath tolerates anything missing.
// Restore, check and sweep of existing endpoints are in endpoint-restore.ts.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { attachTcLegacy, attachTcxAsync, BpfObject, detachTcLegacy, removePinTree, unpin } from '../bpf/index.ts';
import {
  addrAdd, linkAddVeth, linkDel, linkGet, linkSet, NetlinkHandle, routeAdd, routeDel, type Route,
} from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { findCause, MembraneError, UnsupportedFeatureError, wrap } from '../shared/errors.ts';
import { withNetns } from '../shared/netns.ts';
import { attachProgram } from './attach.ts';
import { TXQLEN } from './constants.ts';
import { deleteEndpointIpcache, putEndpointIpcache } from './ipcache.ts';
import { randomMac } from './mac.ts';
import * as endpoints from './maps/endpoints.ts';
import { encodeLxcConfig } from './maps/load-config.ts';
import { MAP_NAMES, withNodeMap } from './node-maps.ts';
import { objectPath } from './objects.ts';
import { deleteEndpointPolicyMap, ensureEndpointPolicyMap } from './policy-maps.ts';
import type { PolicyMapEntry } from './maps/policy.ts';
import { callsMapName, endpointDir, endpointLinkPin, globalsDir } from './paths.ts';
import type { Rollback } from './rollback.ts';
import type { PhaseTimer } from '../shared/phase-timer.ts';
import { writeSysctl } from './sysctl.ts';

/** What the agent decided for an endpoint; the node-wide values (router IP, MTUs, endpoint routes) come from the node config. */
export interface EndpointSpec {
  id: number;
  containerID: string;
  /** Interface name inside the pod (CNI_IFNAME). */
  ifname: string;
  /** Pod netns path (CNI_NETNS). */
  netns: string;
  ip: string;
  identity: number;
}

export interface EndpointDevices {
  hostIfname: string;
  hostIfindex: number;
  hostMac: string;
  podMac: string;
}

export interface CreatedEndpoint extends EndpointDevices {
  /** Pending move from the legacy tc filter to tcx; the caller runs it once the endpoint is recorded. */
  upgrade?: TcxUpgrade;
}

/** Host-side name: lxc + 12 hex of sha256(containerID/ifname) (Cilium's Endpoint2IfName). */
export function hostIfname(containerID: string, ifname: string): string {
  return `lxc${createHash('sha256').update(`${containerID}/${ifname}`).digest('hex').slice(0, 12)}`;
}

/** Is `name` a host-side endpoint device (of any endpoint)? */
export function isEndpointDevice(name: string): boolean {
  return /^lxc[0-9a-f]{12}$/.test(name);
}

/** The pod's routes: the router as a scope-link nexthop, then the default route with the tunnel-safe MTU. */
export function podRoutes(podIndex: number, cfg: Pick<NodeConfig, 'routerIP' | 'routeMTU'>): Route[] {
  return [
    { dst: `${cfg.routerIP}/32`, oif: podIndex, scope: 'link', protocol: 'boot' },
    { dst: 'default', gateway: cfg.routerIP, oif: podIndex, mtu: cfg.routeMTU, protocol: 'boot' },
  ];
}

function endpointRoute(ip: string, hostIndex: number): Route {
  return { dst: `${ip}/32`, oif: hostIndex, scope: 'link', protocol: 'kernel' };
}

export interface CreateEndpointOptions {
  /** The endpoint's policy map entries from the start (default: allow-all both ways, until the agent sets its policy). */
  policy?: readonly PolicyMapEntry[];
}

/** Creates the endpoint's devices, addresses, routes, policy map, program and map entries. */
export function createEndpointDatapath(cfg: NodeConfig, h: NetlinkHandle, s: EndpointSpec, rb: Rollback, timer?: PhaseTimer, opts: CreateEndpointOptions = {}): CreatedEndpoint {
  const name = hostIfname(s.containerID, s.ifname);
  if (linkGet(h, name)) {
    throw new MembraneError(`create endpoint ${s.id}`, { code: 'E_ENDPOINT_EXISTS', cause: `host device ${name} already exists` });
  }
  const hostMac = randomMac();
  const podMac = randomMac();
  const tmp = `tmp${randomBytes(3).toString('hex').slice(0, 5)}`;
  try {
    linkAddVeth(h, { name, peerName: tmp, mac: hostMac, peerMac: podMac, mtu: cfg.deviceMTU, txqlen: TXQLEN, peerNetns: s.netns });
  } catch (e) {
    throw wrap(`create endpoint ${s.id}: veth ${name} with peer in ${s.netns}`, e);
  }
  const host = linkGet(h, name)!;
  rb.push(`veth ${name}`, () => { if (linkGet(h, name)) linkDel(h, name); });
  writeSysctl(`net.ipv4.conf.${name}.rp_filter`, '0');
  linkSet(h, host.index, { up: true });
  timer?.mark('veth');

  configurePod(cfg, s, tmp);
  timer?.mark('pod netns');
  createPolicyMap(cfg.paths.pinDir, s.id, opts.policy, rb);
  const upgrade = attachEndpointPrograms(cfg, s, { hostIfname: name, hostIfindex: host.index, hostMac, podMac }, rb, timer, { deferTcx: true });
  if (upgrade) rb.push('loaded bpf_lxc.o', () => upgrade.cancel());
  timer?.mark('bpf attach');

  if (cfg.enableEndpointRoutes) {
    const r = endpointRoute(s.ip, host.index);
    routeAdd(h, r);
    rb.push(`route ${s.ip}/32 dev ${name}`, () => routeDel(h, r));
  }
  // The cilium_lxc entry goes last: from then on other pods' traffic is redirected here.
  writeEndpointEntries(cfg.paths.pinDir, s, { hostIfname: name, hostIfindex: host.index, hostMac, podMac }, rb);
  timer?.mark('maps');
  return { hostIfname: name, hostIfindex: host.index, hostMac, podMac, upgrade };
}

/**
 * The endpoint's policy map, filled and in its slot of cilium_policy_maps
 * before its program is attached and its cilium_lxc entry written: no packet
 * may reach an endpoint (or leave it) before its policy is there. A pin left
 * under this id by an endpoint that died half-made is replaced, never reused.
 */
function createPolicyMap(nodeDir: string, id: number, policy: readonly PolicyMapEntry[] | undefined, rb: Rollback): void {
  try {
    deleteEndpointPolicyMap(nodeDir, id);
    ensureEndpointPolicyMap(nodeDir, id, policy);
  } catch (e) {
    throw wrap(`create endpoint ${id}: policy map`, e);
  }
  rb.push(`policy map of endpoint ${id}`, () => deleteEndpointPolicyMap(nodeDir, id));
}

/** Names, addresses and routes the pod side; it needs no undo of its own: it goes away with the veth. */
function configurePod(cfg: NodeConfig, s: EndpointSpec, tmp: string): void {
  let ph: NetlinkHandle;
  try {
    ph = NetlinkHandle.open(s.netns);
  } catch (e) {
    throw wrap(`create endpoint ${s.id}: open pod netns ${s.netns}`, e);
  }
  try {
    const peer = linkGet(ph, tmp);
    if (!peer) throw new MembraneError(`create endpoint ${s.id}`, { code: 'E_ENDPOINT', cause: `peer ${tmp} did not appear in ${s.netns}` });
    if (linkGet(ph, s.ifname)) {
      throw new MembraneError(`create endpoint ${s.id}`, { code: 'E_IFNAME_EXISTS', cause: `the pod netns already has an interface named ${s.ifname}` });
    }
    linkSet(ph, peer.index, { name: s.ifname, up: true });
    addrAdd(ph, { index: peer.index, address: s.ip, prefixLen: 32 });
    for (const r of podRoutes(peer.index, cfg)) routeAdd(ph, r);
    withNetns(s.netns, () => {
      // IPv6 is not part of this datapath: without this the pod's router
      // solicitations and MLD reports would show up as "Unsupported L3" drops.
      for (const k of ['all', 'default', s.ifname]) {
        try { writeFileSync(`/proc/sys/net/ipv6/conf/${k}/disable_ipv6`, '1'); } catch { /* IPv6 disabled in the kernel */ }
      }
      // A chained plugin (tuning) may change the pod's MAC after this ADD. With arp_notify the
      // kernel then sends a gratuitous ARP, from which cil_from_container learns the new MAC;
      // otherwise packets for the pod would keep the old one as destination and be dropped.
      writeFileSync(`/proc/sys/net/ipv4/conf/${s.ifname}/arp_notify`, '1');
    });
  } catch (e) {
    throw wrap(`create endpoint ${s.id}: configure ${s.ifname} in ${s.netns}`, e);
  } finally {
    ph.close();
  }
}

/** A tcx attachment still to be made for an endpoint that runs on its legacy tc filter meanwhile. */
export interface TcxUpgrade {
  /** Attaches with tcx (waiting for the kernel on a worker thread), then removes the legacy filters. Resolves to the final mode. */
  run(): Promise<'tcx' | 'tc'>;
  /** Drops the loaded object without attaching (endpoint deleted first). */
  cancel(): void;
}

/** Every program an endpoint can have attached (the pins deleteEndpointDatapath removes). */
export const ENDPOINT_PROGRAMS = ['cil_from_container', 'cil_to_container'] as const;

function endpointHooks(cfg: NodeConfig): { program: string; hook: 'ingress' | 'egress' }[] {
  return [
    { program: 'cil_from_container', hook: 'ingress' },
    ...(cfg.enableEndpointRoutes ? [{ program: 'cil_to_container', hook: 'egress' as const }] : []),
  ];
}

/**
 * Loads bpf_lxc.o with this endpoint's constants and attaches it.
 * Default: tcx right away (a pinned link is updated in place, as on restore
 * after an upgrade). With `deferTcx` the program is attached first as a
 * legacy tc filter, which takes no RCU grace period, so the pod has its
 * datapath within the CNI ADD, and a TcxUpgrade is returned that moves it
 * to tcx in the background: once the tcx link exists it runs first and the
 * legacy filter is never reached (then removed). Same program, same maps,
 * so packets see no difference between the two.
 */
export function attachEndpointPrograms(cfg: NodeConfig, s: EndpointSpec, d: EndpointDevices, rb: Rollback, timer?: PhaseTimer, opts: { deferTcx?: boolean } = {}): TcxUpgrade | undefined {
  const nodeDir = cfg.paths.pinDir;
  const globals = globalsDir(nodeDir);
  const calls = `${globals}/${callsMapName.endpoint(s.id)}`;
  let obj: BpfObject;
  try {
    obj = BpfObject.open(objectPath('bpf_lxc'), {
      pinRoot: globals,
      mapPins: { cilium_calls: calls },
      constants: encodeLxcConfig({ endpointId: s.id, ipv4: s.ip, identity: s.identity, ifindex: d.hostIfindex, ifMac: d.hostMac }),
    });
  } catch (e) {
    throw wrap(`create endpoint ${s.id}: load bpf_lxc.o`, e);
  }
  timer?.mark('bpf load');
  rb.push(`calls map ${calls}`, () => unpin(calls));
  rb.push(`pins of endpoint ${s.id}`, () => removePinTree(endpointDir(nodeDir, s.id)));
  const hooks = endpointHooks(cfg);
  if (!opts.deferTcx || cfg.forceLegacyTc) {
    try {
      // A clsact qdisc left from a legacy attachment stays, empty: see run() below.
      for (const { program, hook } of hooks) {
        attachProgram({ prog: obj.program(program), ifindex: d.hostIfindex, ifname: d.hostIfname, hook, linkPin: endpointLinkPin(nodeDir, s.id, program), legacyTc: cfg.forceLegacyTc, rb });
      }
    } finally {
      obj.close();
    }
    return undefined;
  }
  try {
    for (const { program, hook } of hooks) {
      attachTcLegacy({ progFd: obj.program(program).fd, ifindex: d.hostIfindex, direction: hook });
      rb.push(`tc ${hook} filter on ${d.hostIfname}`, () => detachTcLegacy({ ifindex: d.hostIfindex, direction: hook }));
    }
  } catch (e) {
    obj.close();
    throw wrap(`create endpoint ${s.id}: attach to ${d.hostIfname}`, e);
  }
  let done = false;
  return {
    async run() {
      try {
        for (const { program, hook } of hooks) {
          try {
            await attachTcxAsync({ progFd: obj.program(program).fd, ifindex: d.hostIfindex, direction: hook, pinPath: endpointLinkPin(nodeDir, s.id, program) });
          } catch (e) {
            if (findCause(e, UnsupportedFeatureError)) return 'tc';
            throw wrap(`attach ${program} to ${d.hostIfname} ${hook} with tcx`, e);
          }
          detachTcLegacy({ ifindex: d.hostIfindex, direction: hook });
        }
        // The emptied clsact qdisc stays. Deleting a qdisc of a device that is up goes through
        // the kernel's qdisc_graft -> dev_deactivate: for an RCU grace period the device's TX
        // queues point at noop_qdisc, and every packet sent on the lxc meanwhile, i.e. every
        // packet delivered into the pod, is dropped (the pod lost pings to this). Empty, it costs
        // nothing: tcx runs first and its filter blocks are empty. It keeps the ingress handle
        // (ffff:), which only the bandwidth plugin's egress shaping wants, refused up front
        // (docs/cni.md); ingress shaping (a root qdisc) works beside it.
        return 'tcx';
      } finally {
        done = true;
        obj.close();
      }
    },
    cancel() {
      if (!done) obj.close();
      done = true;
    },
  };
}

/** The endpoint's cilium_lxc entry, as written and as restore expects to find it. */
export function endpointEntry(s: Pick<EndpointSpec, 'id' | 'ip' | 'identity'>, d: EndpointDevices): endpoints.EndpointEntry {
  return { ip: s.ip, ifindex: d.hostIfindex, lxcId: s.id, flags: 0, mac: d.podMac, nodeMac: d.hostMac, secId: s.identity, parentIfindex: 0 };
}

function writeEndpointEntries(nodeDir: string, s: EndpointSpec, d: EndpointDevices, rb: Rollback): void {
  const { key, value } = endpoints.encodeEntry(endpointEntry(s, d));
  putEndpointIpcache(nodeDir, s.ip, s.identity);
  rb.push(`ipcache ${s.ip}/32`, () => deleteEndpointIpcache(nodeDir, s.ip));
  withNodeMap(nodeDir, MAP_NAMES.endpoints, (m) => m.update(key, value));
  rb.push(`cilium_lxc ${s.ip}`, () => withNodeMap(nodeDir, MAP_NAMES.endpoints, (m) => m.delete(key)));
}

/**
 * Removes everything createEndpointDatapath made; each step tolerates the
 * thing being gone already (DEL is idempotent, restore cleans half-made endpoints).
 */
export function deleteEndpointDatapath(cfg: NodeConfig, h: NetlinkHandle, ep: { id: number; ip?: string; hostIfname: string }): void {
  const nodeDir = cfg.paths.pinDir;
  if (ep.ip) {
    const ip = ep.ip;
    // Only our own entries: after IP reuse another endpoint may own the address.
    const ours = withNodeMap(nodeDir, MAP_NAMES.endpoints, (m) => {
      const v = m.lookup(endpoints.encodeKey(ip));
      if (v && endpoints.decodeValue(v).lxcId !== ep.id) return false;
      if (v) m.delete(endpoints.encodeKey(ip));
      return true;
    });
    if (ours) deleteEndpointIpcache(nodeDir, ip);
  }
  // Deleting the host side first removes the pod side (address, routes), any
  // /32 endpoint route and the tc filters, and leaves tcx links defunct, so
  // unpinning them needs no detach (which would wait for an RCU grace period).
  if (linkGet(h, ep.hostIfname)) linkDel(h, ep.hostIfname);
  for (const prog of ENDPOINT_PROGRAMS) unpin(endpointLinkPin(nodeDir, ep.id, prog));
  unpin(`${globalsDir(nodeDir)}/${callsMapName.endpoint(ep.id)}`);
  removePinTree(endpointDir(nodeDir, ep.id));
  // Last: until the device is gone its program may still run and look its policy up.
  deleteEndpointPolicyMap(nodeDir, ep.id);
}
