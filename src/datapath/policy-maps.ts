// Endpoint and host policy maps in the kernel (bpf/lib/policy.h): one LPM
// trie per endpoint, pinned as tc/globals/cilium_policy_v2_<epID> and
// installed at slot <epID> of cilium_policy_maps (pinned by the objects at
// node init), where every program finds the policy of the endpoint it
// sends from or delivers to.
//
// Order is what keeps packets from seeing a half-made policy:
//   - a map is filled before it is pinned and installed (a new endpoint's
//     with allow-all both ways, or what the caller gives), and installed
//     before the endpoint's program is attached and its cilium_lxc entry is
//     written (endpoint.ts), so no packet finds an endpoint without a map;
//   - a change writes new and changed entries first and deletes stale ones
//     after, so an unrelated change never cuts a flow the old and the new
//     policy both allow;
//   - deletion empties the slot first (packets then drop as "endpoint not
//     ready"), then removes the pin.
// Every change ends by incrementing the endpoint's revision in
// cilium_policy_rev: conntrack entries cache "allowed at revision R for
// remote identity I", and an established connection is looked up again only
// once R moved. The increment comes after the map is complete, so no packet
// caches a verdict of a half-written policy under the new revision.
// The host's map (slot HOST_ENDPOINT_ID) exists only while a host policy
// does: no map = host firewall off (the programs then allow).
import { existsSync, readdirSync } from 'node:fs';
import { BpfMap, MAP_F_NO_PREALLOC, MAP_TYPE, pinExists, unpin } from '../bpf/index.ts';
import { MembraneError } from '../shared/errors.ts';
import { HOST_ENDPOINT_ID, MAX_ENDPOINT_ID } from './constants.ts';
import * as endpoints from './maps/endpoints.ts';
import * as policy from './maps/policy.ts';
import { openNodeMap, withNodeMap } from './node-maps.ts';
import { globalsDir } from './paths.ts';

export type { PolicyMapEntry } from './maps/policy.ts';

/** Where endpoint `epId`'s policy map is pinned. */
export function policyMapPin(nodeDir: string, epId: number): string {
  return `${globalsDir(nodeDir)}/${policy.policyMapName(epId)}`;
}

function checkId(epId: number, what: string): void {
  if (!Number.isInteger(epId) || epId < 1 || epId > MAX_ENDPOINT_ID) {
    throw new MembraneError(what, { code: 'E_POLICY_MAP', cause: `endpoint id ${epId} is not 1..${MAX_ENDPOINT_ID}` });
  }
}

function slotKey(epId: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(epId);
  return k;
}

/**
 * Increments endpoint `epId`'s policy revision: established connections
 * look their policy up again at their next packet.
 */
export function bumpPolicyRevision(nodeDir: string, epId: number): number {
  // Not there yet only before the first objects with policy load (an upgrade): no verdict can be cached then.
  if (!pinExists(`${globalsDir(nodeDir)}/${policy.POLICY_REV_NAME}`)) return 0;
  return withNodeMap(nodeDir, policy.POLICY_REV_NAME, (m) => {
    const key = slotKey(epId);
    const next = ((m.lookup(key)?.readUInt32LE(0) ?? 0) + 1) >>> 0;
    const v = Buffer.alloc(4);
    v.writeUInt32LE(next);
    m.update(key, v);
    return next;
  });
}

/** Endpoint `epId`'s policy revision (0 before any change). */
export function policyRevision(nodeDir: string, epId: number): number {
  return withNodeMap(nodeDir, policy.POLICY_REV_NAME, (m) => m.lookup(slotKey(epId))?.readUInt32LE(0) ?? 0);
}

/** The entries as key/value bytes, by key (normalized: deny wins, one entry per key). */
function encodeAll(entries: readonly policy.PolicyMapEntry[]): Map<string, { key: Buffer; value: Buffer }> {
  const out = new Map<string, { key: Buffer; value: Buffer }>();
  for (const e of policy.normalizePolicyEntries(entries)) {
    const enc = policy.encodeEntry(e);
    out.set(enc.key.toString('hex'), enc);
  }
  return out;
}

/** A new, unpinned policy map holding `entries`. The caller owns it. */
function createPolicyMap(epId: number, entries: readonly policy.PolicyMapEntry[]): BpfMap {
  const m = BpfMap.create({
    type: MAP_TYPE.LPM_TRIE, name: policy.policyMapName(epId), kernelName: policy.policyMapKernelName(epId),
    keySize: policy.POLICY_KEY.size, valueSize: policy.POLICY_ENTRY.size, maxEntries: policy.POLICY_MAP_MAX_ENTRIES,
    flags: MAP_F_NO_PREALLOC,
  });
  try {
    for (const { key, value } of encodeAll(entries).values()) m.update(key, value);
    return m;
  } catch (e) {
    m.close();
    throw e;
  }
}

/** Refuses a pinned map that the outer array would not take (another version's layout). */
function checkShape(m: BpfMap, pin: string): void {
  if (m.type !== MAP_TYPE.LPM_TRIE || m.keySize !== policy.POLICY_KEY.size || m.valueSize !== policy.POLICY_ENTRY.size || m.flags !== MAP_F_NO_PREALLOC) {
    throw new MembraneError(`use policy map ${pin}`, {
      code: 'E_POLICY_MAP',
      cause: `it is a ${m.typeName} map with key ${m.keySize} / value ${m.valueSize} bytes and flags 0x${m.flags.toString(16)}, not an lpm_trie of ${policy.POLICY_KEY.size}/${policy.POLICY_ENTRY.size} with no-prealloc`,
      hint: `remove the pin (rm ${pin}) and restart the agent`,
    });
  }
}

export interface EnsureResult {
  /** The map was made now (with the initial entries). */
  created: boolean;
  /** The slot was empty or held another map, and now holds this one. */
  installed: boolean;
}

function ensurePolicyMap(nodeDir: string, epId: number, initial: readonly policy.PolicyMapEntry[]): EnsureResult {
  const pin = policyMapPin(nodeDir, epId);
  return withNodeMap(nodeDir, policy.POLICY_MAPS_NAME, (outer) => {
    const created = !pinExists(pin);
    const m = created ? createPolicyMap(epId, initial) : BpfMap.openPinned(pin);
    try {
      if (created) m.pin(pin);
      else checkShape(m, pin);
      const key = slotKey(epId);
      const installed = outer.innerMapId(key) !== m.id;
      if (installed) {
        outer.setInnerMap(key, m);
        bumpPolicyRevision(nodeDir, epId);
      }
      return { created, installed };
    } catch (e) {
      if (created) unpin(pin);
      throw e;
    } finally {
      m.close();
    }
  });
}

/**
 * Makes sure endpoint `epId` has its policy map, pinned and in its slot: a
 * missing one is made with `initial` (default: allow-all both ways, the
 * policy of an endpoint nothing selects) before anything can see it; an
 * existing one is kept as it is (restore). Throws E_POLICY_MAP for an id out
 * of range or a pin of another layout, E_NOT_INITIALIZED without
 * cilium_policy_maps.
 */
export function ensureEndpointPolicyMap(nodeDir: string, epId: number, initial: readonly policy.PolicyMapEntry[] = policy.ALLOW_ALL): EnsureResult {
  checkId(epId, `create the policy map of endpoint ${epId}`);
  if (epId === HOST_ENDPOINT_ID) {
    throw new MembraneError(`create the policy map of endpoint ${epId}`, { code: 'E_POLICY_MAP', cause: `id ${HOST_ENDPOINT_ID} is the host's (setHostPolicy)` });
  }
  return ensurePolicyMap(nodeDir, epId, initial);
}

/** Is endpoint `epId`'s map pinned and in its slot? */
export function endpointPolicyMapInstalled(nodeDir: string, epId: number): boolean {
  const pin = policyMapPin(nodeDir, epId);
  if (!pinExists(pin)) return false;
  const m = BpfMap.openPinned(pin);
  try {
    return withNodeMap(nodeDir, policy.POLICY_MAPS_NAME, (outer) => outer.innerMapId(slotKey(epId)) === m.id);
  } finally {
    m.close();
  }
}

/**
 * Removes endpoint `epId`'s policy map: the slot first, then the pin.
 * Tolerates either being gone. Returns whether anything was removed.
 */
export function deleteEndpointPolicyMap(nodeDir: string, epId: number): boolean {
  checkId(epId, `delete the policy map of endpoint ${epId}`);
  let removed = false;
  if (pinExists(`${globalsDir(nodeDir)}/${policy.POLICY_MAPS_NAME}`)) {
    removed = withNodeMap(nodeDir, policy.POLICY_MAPS_NAME, (outer) => outer.delete(slotKey(epId)));
    if (removed) bumpPolicyRevision(nodeDir, epId);
  }
  return unpin(policyMapPin(nodeDir, epId)) || removed;
}

export interface PolicySyncResult {
  /** Entries added or changed. */
  written: number;
  /** Stale entries removed. */
  deleted: number;
  unchanged: number;
}

function openPolicyMap(nodeDir: string, epId: number, what: string): BpfMap {
  const pin = policyMapPin(nodeDir, epId);
  if (!pinExists(pin)) {
    throw new MembraneError(what, {
      code: 'E_POLICY_MAP', cause: `${pin} is not pinned`,
      hint: epId === HOST_ENDPOINT_ID ? 'there is no host policy' : 'the endpoint does not exist on this node, or an agent restart will recreate its map',
    });
  }
  return BpfMap.openPinned(pin);
}

/** Makes endpoint `epId`'s map `m` hold exactly `want`: new and changed entries first, stale ones after, then the revision. */
function syncMap(nodeDir: string, epId: number, m: BpfMap, want: Map<string, { key: Buffer; value: Buffer }>): PolicySyncResult {
  const have = new Map<string, { key: Buffer; value: Buffer }>();
  for (const [key, value] of m.entries()) have.set(key.toString('hex'), { key, value });
  let written = 0;
  let unchanged = 0;
  for (const [k, e] of want) {
    if (have.get(k)?.value.equals(e.value)) {
      unchanged++;
      continue;
    }
    m.update(e.key, e.value);
    written++;
  }
  let deleted = 0;
  for (const [k, e] of have) {
    if (want.has(k)) continue;
    if (m.delete(e.key)) deleted++;
  }
  if (written + deleted > 0) bumpPolicyRevision(nodeDir, epId);
  return { written, deleted, unchanged };
}

/**
 * Makes endpoint `epId`'s policy exactly `entries` (normalized: a deny
 * wins over any allow it covers), without a gap: see the top of this file.
 * Throws E_POLICY_MAP if the endpoint has no map (not created by
 * createEndpoint/restoreEndpoint), MapCodecError for an invalid entry
 * (before anything is written).
 */
export function syncEndpointPolicy(nodeDir: string, epId: number, entries: readonly policy.PolicyMapEntry[]): PolicySyncResult {
  checkId(epId, `set the policy of endpoint ${epId}`);
  const want = encodeAll(entries);
  const m = openPolicyMap(nodeDir, epId, `set the policy of endpoint ${epId}`);
  try {
    return syncMap(nodeDir, epId, m, want);
  } finally {
    m.close();
  }
}

function listMap(m: BpfMap): policy.PolicyMapEntry[] {
  return [...m.entries()].map(([k, v]) => policy.decodeEntry(k, v)).sort((a, b) =>
    Number(a.egress) - Number(b.egress) || a.identity - b.identity || a.protocol - b.protocol || a.port - b.port || a.portPrefixLen - b.portPrefixLen);
}

/** Endpoint `epId`'s policy entries, ingress first, by identity, protocol and port. Throws E_POLICY_MAP without a map. */
export function listEndpointPolicy(nodeDir: string, epId: number): policy.PolicyMapEntry[] {
  checkId(epId, `list the policy of endpoint ${epId}`);
  const m = openPolicyMap(nodeDir, epId, `list the policy of endpoint ${epId}`);
  try {
    return listMap(m);
  } finally {
    m.close();
  }
}

export interface HostPolicyResult extends PolicySyncResult {
  /** The host firewall is on (a host policy exists). */
  enabled: boolean;
}

/**
 * The host firewall's policy: `entries` turns it on (a new map is filled
 * before it is installed, so it never starts empty), undefined turns it off
 * (slot emptied, pin removed). Off is the default: a node is never locked
 * out by a policy it does not have.
 */
export function setHostPolicy(nodeDir: string, entries: readonly policy.PolicyMapEntry[] | undefined): HostPolicyResult {
  if (entries === undefined) {
    const removed = deleteEndpointPolicyMap(nodeDir, HOST_ENDPOINT_ID);
    return { enabled: false, written: 0, deleted: removed ? 1 : 0, unchanged: 0 };
  }
  const want = encodeAll(entries);
  const made = ensurePolicyMap(nodeDir, HOST_ENDPOINT_ID, entries);
  if (made.created) return { enabled: true, written: want.size, deleted: 0, unchanged: 0 };
  const m = openPolicyMap(nodeDir, HOST_ENDPOINT_ID, 'set the host policy');
  try {
    return { enabled: true, ...syncMap(nodeDir, HOST_ENDPOINT_ID, m, want) };
  } finally {
    m.close();
  }
}

/** The host's policy entries, or undefined while the host firewall is off. */
export function listHostPolicy(nodeDir: string): policy.PolicyMapEntry[] | undefined {
  if (!pinExists(policyMapPin(nodeDir, HOST_ENDPOINT_ID))) return undefined;
  const m = openPolicyMap(nodeDir, HOST_ENDPOINT_ID, 'list the host policy');
  try {
    return listMap(m);
  } finally {
    m.close();
  }
}

/**
 * Before the node's programs are (re)loaded, on an upgrade from an agent
 * without policy maps (cilium_lxc has pods, cilium_policy_maps is not
 * pinned): makes cilium_policy_maps (with the inner definition of
 * bpf/lib/maps.h, which the objects then reuse) and an allow-all map for
 * every pod, so the new programs never find a known endpoint without its
 * policy (drop 203) in the time until the agent restores it. A fresh node
 * has no pods and a node of this version has the array and every
 * endpoint's map already (made before its cilium_lxc entry): nothing to do.
 * Returns how many maps it made.
 */
export function ensureKnownEndpointPolicyMaps(nodeDir: string): number {
  const globals = globalsDir(nodeDir);
  const outerPin = `${globals}/${policy.POLICY_MAPS_NAME}`;
  if (pinExists(outerPin) || !pinExists(`${globals}/${endpoints.ENDPOINTS_MAP_NAME}`)) return 0;
  const ids = new Set<number>();
  withNodeMap(nodeDir, endpoints.ENDPOINTS_MAP_NAME, (m) => {
    for (const [k, v] of m.entries()) {
      const e = endpoints.decodeEntry(k, v);
      if (!(e.flags & endpoints.ENDPOINT_F_HOST) && e.lxcId > HOST_ENDPOINT_ID && e.lxcId <= MAX_ENDPOINT_ID) ids.add(e.lxcId);
    }
  });
  if (ids.size === 0) return 0;
  const template = createPolicyMap(HOST_ENDPOINT_ID, []);
  try {
    const outer = BpfMap.create({
      type: MAP_TYPE.ARRAY_OF_MAPS, name: policy.POLICY_MAPS_NAME, keySize: 4, valueSize: 4,
      maxEntries: policy.POLICY_MAPS_MAX_ENTRIES, innerMap: template,
    });
    try {
      outer.pin(outerPin);
    } finally {
      outer.close();
    }
  } finally {
    template.close();
  }
  let made = 0;
  for (const id of ids) if (ensurePolicyMap(nodeDir, id, policy.ALLOW_ALL).created) made++;
  return made;
}

/**
 * Removes the policy maps (pins and slots) of endpoints not in `keep`; the
 * host's is never touched. Returns for how many endpoints it removed one.
 */
export function sweepPolicyMaps(nodeDir: string, keep: ReadonlySet<number>): number {
  const swept = new Set<number>();
  const globals = globalsDir(nodeDir);
  const outerPin = `${globals}/${policy.POLICY_MAPS_NAME}`;
  if (pinExists(outerPin)) {
    const outer = openNodeMap(nodeDir, policy.POLICY_MAPS_NAME);
    try {
      for (let id = 1; id <= MAX_ENDPOINT_ID; id++) {
        if (id === HOST_ENDPOINT_ID || keep.has(id)) continue;
        if (outer.delete(slotKey(id))) {
          bumpPolicyRevision(nodeDir, id);
          swept.add(id);
        }
      }
    } finally {
      outer.close();
    }
  }
  for (const f of existsSync(globals) ? readdirSync(globals) : []) {
    const m = /^cilium_policy_v2_(\d{5})$/.exec(f);
    if (!m) continue;
    const id = Number(m[1]);
    if (id !== HOST_ENDPOINT_ID && !keep.has(id) && unpin(`${globals}/${f}`)) swept.add(id);
  }
  return swept.size;
}
