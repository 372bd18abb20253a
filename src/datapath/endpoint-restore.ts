// Existing endpoints after an agent restart, and CNI CHECK: keep what works
// untouched, repair what drifted, remove what nobody owns. The agent says
// which endpoints it has (from its state file); what that means in devices,
// pins and map entries is decided here.
import { existsSync, readdirSync } from 'node:fs';
import { pinExists, removePinTree, unpin } from '../bpf/index.ts';
import { linkDel, linkGet, linkList, type NetlinkHandle } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import {
  attachEndpointPrograms, endpointEntry, isEndpointDevice, type EndpointDevices, type EndpointSpec,
} from './endpoint.ts';
import { putEndpointIpcache, reconcileIpcache } from './ipcache.ts';
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
 * ipcache entries are rewritten only if missing or different.
 */
export function restoreEndpoint(cfg: NodeConfig, ep: EndpointRecord, reload: boolean): RestoreOutcome {
  let outcome: RestoreOutcome = 'kept';
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

/** Throws a MembraneError (E_ENDPOINT) naming what is wrong with a recorded endpoint's datapath, if anything. */
export function checkEndpoint(cfg: NodeConfig, h: NetlinkHandle, ep: EndpointRecord, what: string): void {
  const broken = (cause: string) => new MembraneError(what, { code: 'E_ENDPOINT', cause });
  const l = linkGet(h, ep.hostIfname);
  if (!l || l.index !== ep.hostIfindex) throw broken(`host device ${ep.hostIfname} is missing`);
  if (!l.up) throw broken(`host device ${ep.hostIfname} is down`);
  const entry = withNodeMap(cfg.paths.pinDir, MAP_NAMES.endpoints, (m) => m.lookup(endpointsMap.encodeKey(ep.ip)));
  if (!entry || endpointsMap.decodeValue(entry).lxcId !== ep.id) throw broken(`cilium_lxc has no entry for ${ep.ip}`);
  if (!existsSync(`${globalsDir(cfg.paths.pinDir)}/${callsMapName.endpoint(ep.id)}`)) throw broken('its calls map is not pinned');
}

/**
 * Removes every endpoint remain that belongs to none of `keep`: lxc
 * devices, endpoint pin directories and calls maps, cilium_lxc pod entries
 * and endpoint-owned ipcache entries (an ADD cut short by a crash leaves
 * any of these). Host entries and other owners' entries are never touched.
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
  return n;
}
