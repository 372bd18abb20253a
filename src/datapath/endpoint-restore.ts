// Existing endpoints after an agent restart, and CNI CHECK: keep what works
// untouched, repair what drifted, remove what nobody owns. The agent says
// which endpoints it has (from its state file); what that means in devices,
// pins and map entries is decided here.
import { existsSync, readdirSync } from 'node:fs';
import { pinExists, removePinTree, unpin } from '../bpf/index.ts';
import { addrList, linkDel, linkGet, linkList, NetlinkHandle, routeList } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import {
  attachEndpointPrograms, endpointEntry, isEndpointDevice, type EndpointDevices, type EndpointSpec,
} from './endpoint.ts';
import { putEndpointIpcache, reconcileIpcache } from './ipcache.ts';
import type { PolicyMapEntry } from './maps/policy.ts';
import { endpointPolicyMapInstalled, ensureEndpointPolicyMap, sweepPolicyMaps } from './policy-maps.ts';
import * as endpointsMap from './maps/endpoints.ts';
import { MAP_NAMES, withNodeMap } from './node-maps.ts';
import { callsMapName, endpointLinkPin, globalsDir } from './paths.ts';
import { Rollback } from './rollback.ts';

/** An endpoint as the agent recorded it: what it asked for and the devices it got. */
export type EndpointRecord = EndpointSpec & EndpointDevices;

export type RestoreOutcome = 'kept' | 'reloaded';

/** Does the endpoint still exist: its veth (the same one, not a namesake) and its pod netns? If not, deleteEndpointDatapath removes its remains. */
export function endpointPresent(h: NetlinkHandle, ep: Pick<EndpointRecord, 'hostIfname' | 'hostIfindex' | 'netns'>): boolean {
  const link = linkGet(h, ep.hostIfname);
  return !!link && link.index === ep.hostIfindex && existsSync(ep.netns);
}

/**
 * Brings back one present endpoint (endpointPresent) after a restart
 * without touching it if it works: bpf_lxc.o is reloaded in place only when
 * `reload` says the loaded program is stale (another object, or the
 * identity, a load-time constant, changed) or its tcx link pin is missing
 * (the agent died before moving it from legacy tc), and its cilium_lxc and
 * ipcache entries are rewritten only if missing or different. Its policy
 * map comes first: an endpoint an older agent made has none, and gets one
 * with `policy` (default allow-all both ways, what it had) before the new
 * program that looks it up; an existing map is kept as it is.
 */
export function restoreEndpoint(cfg: NodeConfig, ep: EndpointRecord, reload: boolean, policy?: readonly PolicyMapEntry[]): RestoreOutcome {
  let outcome: RestoreOutcome = 'kept';
  ensureEndpointPolicyMap(cfg.paths.pinDir, ep.id, policy);
  if (reload || !pinExists(endpointLinkPin(cfg.paths.pinDir, ep.id, 'cil_from_container'))) {
    Rollback.guard((rb) => attachEndpointPrograms(cfg, ep, ep, rb));
    outcome = 'reloaded';
  }
  ensureEndpointEntries(cfg, ep);
  return outcome;
}

/**
 * Rewrites the endpoint's cilium_lxc and ipcache entries if missing or
 * different (map recreated, identity changed: the ipcache /32 must follow
 * cilium_lxc, or it keeps the old identity).
 */
function ensureEndpointEntries(cfg: NodeConfig, ep: EndpointRecord): void {
  const { key, value } = endpointsMap.encodeEntry(endpointEntry(ep, ep));
  withNodeMap(cfg.paths.pinDir, MAP_NAMES.endpoints, (m) => {
    if (!m.lookup(key)?.equals(value)) m.update(key, value);
  });
  putEndpointIpcache(cfg.paths.pinDir, ep.ip, ep.identity);
}

/** The pod's side of an endpoint, as the kernel has it now. */
export interface PodSide {
  /** The interface named ifname in the pod netns; absent if there is none. */
  link?: { index: number; up: boolean; mac: string };
  /** IPv4 addresses on it, "a.b.c.d/len". */
  addresses: string[];
  /** The pod's IPv4 default route, if any. */
  defaultRoute?: { gateway?: string; oif?: number; mtu?: number };
}

/** Reads the pod's interface, addresses and default route from its netns (throws E_NETNS if the netns is gone). */
export function inspectPod(ep: Pick<EndpointRecord, 'netns' | 'ifname'>): PodSide {
  const h = NetlinkHandle.open(ep.netns);
  try {
    const l = linkGet(h, ep.ifname);
    if (!l) return { addresses: [] };
    const def = routeList(h).find((r) => r.dst === 'default');
    return {
      link: { index: l.index, up: l.up, mac: l.mac },
      addresses: addrList(h, l.index).map((a) => `${a.address}/${a.prefixLen}`),
      defaultRoute: def && { gateway: def.gateway, oif: def.oif, mtu: def.mtu },
    };
  } finally {
    h.close();
  }
}

/** The interface of a CNI result (prevResult) that is ours: named ifname, in a sandbox. */
function resultInterface(prev: unknown, ifname: string): { mac?: string; index: number } | undefined {
  const ifs = (prev as { interfaces?: unknown })?.interfaces;
  if (!Array.isArray(ifs)) return undefined;
  const index = ifs.findIndex((i) => (i as { name?: unknown })?.name === ifname && (i as { sandbox?: unknown }).sandbox);
  return index < 0 ? undefined : { mac: (ifs[index] as { mac?: string }).mac, index };
}

/**
 * Throws a MembraneError (E_ENDPOINT) naming what is wrong with a recorded
 * endpoint, if anything: the host side (veth, cilium_lxc entry, calls map),
 * the pod side (its interface, up, its /32, the default route via the router
 * with the pod MTU, the MAC the datapath delivers to) and, given the runtime's
 * prevResult, that the pod still matches it (CNI CHECK: the spec asks the
 * plugin to verify what it set up against the result).
 */
export function checkEndpoint(cfg: NodeConfig, h: NetlinkHandle, ep: EndpointRecord, what: string, prevResult?: unknown): void {
  const broken = (cause: string) => new MembraneError(what, { code: 'E_ENDPOINT', cause });
  const l = linkGet(h, ep.hostIfname);
  if (!l || l.index !== ep.hostIfindex) throw broken(`host device ${ep.hostIfname} is missing`);
  if (!l.up) throw broken(`host device ${ep.hostIfname} is down`);
  const entry = withNodeMap(cfg.paths.pinDir, MAP_NAMES.endpoints, (m) => m.lookup(endpointsMap.encodeKey(ep.ip)));
  const lxc = entry && endpointsMap.decodeValue(entry);
  if (!lxc || lxc.lxcId !== ep.id) throw broken(`cilium_lxc has no entry for ${ep.ip}`);
  if (!existsSync(`${globalsDir(cfg.paths.pinDir)}/${callsMapName.endpoint(ep.id)}`)) throw broken('its calls map is not pinned');
  if (!endpointPolicyMapInstalled(cfg.paths.pinDir, ep.id)) throw broken('its policy map is not installed in cilium_policy_maps');

  const pod = inspectPod(ep);
  const inPod = `${ep.ifname} in ${ep.netns}`;
  if (!pod.link) throw broken(`${inPod} is missing`);
  if (!pod.link.up) throw broken(`${inPod} is down`);
  if (!pod.addresses.includes(`${ep.ip}/32`)) throw broken(`${inPod} lacks its address ${ep.ip}/32 (has ${pod.addresses.join(', ') || 'none'})`);
  const r = pod.defaultRoute;
  if (!r) throw broken(`the pod has no default route (want via ${cfg.routerIP} dev ${ep.ifname} mtu ${cfg.routeMTU})`);
  if (r.gateway !== cfg.routerIP || r.oif !== pod.link.index || r.mtu !== cfg.routeMTU) {
    throw broken(`the pod's default route is via ${r.gateway ?? 'nothing'} mtu ${r.mtu ?? 'unset'}, not via ${cfg.routerIP} dev ${ep.ifname} mtu ${cfg.routeMTU}`);
  }
  if (lxc.mac !== pod.link.mac) throw broken(`cilium_lxc delivers ${ep.ip} to MAC ${lxc.mac}, but ${inPod} has ${pod.link.mac}`);

  if (prevResult === undefined) return;
  const mine = resultInterface(prevResult, ep.ifname);
  if (!mine) throw broken(`prevResult lists no interface ${ep.ifname}`);
  if (mine.mac !== undefined && mine.mac.toLowerCase() !== pod.link.mac) throw broken(`prevResult gives ${ep.ifname} MAC ${mine.mac}, but it has ${pod.link.mac}`);
  const ips = (prevResult as { ips?: { address?: unknown }[] }).ips;
  if (!Array.isArray(ips) || !ips.some((i) => i?.address === `${ep.ip}/32`)) throw broken(`prevResult lists no address ${ep.ip}/32`);
}

/**
 * Removes every endpoint remain that belongs to none of `keep`: lxc
 * devices, endpoint pin directories, calls maps and policy maps, cilium_lxc
 * pod entries and endpoint-owned ipcache entries (an ADD cut short by a crash
 * leaves any of these). Host entries (and the host's policy map) and other
 * owners' entries are never touched.
 * Returns how many things it removed.
 */
export function sweepEndpoints(cfg: NodeConfig, h: NetlinkHandle, keep: readonly EndpointRecord[]): number {
  const nodeDir = cfg.paths.pinDir;
  let n = 0;
  const names = new Set(keep.map((e) => e.hostIfname));
  for (const l of linkList(h)) {
    if (isEndpointDevice(l.name) && !names.has(l.name)) {
      linkDel(h, l.index);
      n++;
    }
  }
  const ids = new Set(keep.map((e) => e.id));
  const epDir = `${nodeDir}/endpoints`;
  for (const d of existsSync(epDir) ? readdirSync(epDir) : []) {
    if (!ids.has(Number(d))) { removePinTree(`${epDir}/${d}`); n++; }
  }
  const globals = globalsDir(nodeDir);
  for (const f of existsSync(globals) ? readdirSync(globals) : []) {
    const m = /^cilium_calls_(\d{5})$/.exec(f);
    if (m && !ids.has(Number(m[1]))) { unpin(`${globals}/${f}`); n++; }
  }
  withNodeMap(nodeDir, MAP_NAMES.endpoints, (m) => {
    for (const [k, v] of m.entries()) {
      const e = endpointsMap.decodeEntry(k, v);
      if (!(e.flags & endpointsMap.ENDPOINT_F_HOST) && !ids.has(e.lxcId)) { m.delete(k); n++; }
    }
  });
  const want = new Map(keep.map((e) => [`${e.ip}/32`, { identity: e.identity }]));
  n += reconcileIpcache(nodeDir, 'endpoint', want).deleted;
  n += sweepPolicyMaps(nodeDir, ids);
  return n;
}
