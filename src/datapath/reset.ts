// Removing a node's datapath from the network namespace it runs in, for
// `membrane uninstall --purge`: every device the datapath made (cilium_host
// with its peer cilium_net, cilium_vxlan, the pods' lxc* veths: deleting a
// device detaches its programs and takes its routes and addresses along),
// native routing's routes on the native device (which stays: it is not the
// datapath's; its programs go with their pinned links), then the node's pins (maps, programs, links) and its bpffs directory, and
// the agent's files in its state dir (endpoints, lock, socket). What
// is left afterwards is what was there before the agent first ran. Run it
// only while no agent runs for the node: a running agent would re-create it.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { linkDel, linkGet, linkList, NetlinkHandle, routeDel, routeList } from '../netlink/index.ts';
import type { NodeConfig } from '../shared/config.ts';
import { MembraneError } from '../shared/errors.ts';
import { HOST_DEVICE, SECOND_HOST_DEVICE, VXLAN_DEVICE } from './constants.ts';
import { parseMarker } from './node-marker.ts';
import { NATIVE_ROUTE_PROTO } from './routes.ts';

export interface ResetResult {
  /** Devices deleted, in order. */
  devices: string[];
  /** Native routing's routes deleted from the native device (protocol NATIVE_ROUTE_PROTO: only the datapath makes them). */
  routes: string[];
  /** The pin directory, if it existed and was removed. */
  pinDir?: string;
  /** Files of the agent's state dir removed (and the dir itself, if that left it empty). */
  state: string[];
}

/** What an agent keeps in its state dir (state-file.ts, lock.ts, daemon.ts, the API socket); nothing else there is touched. */
const STATE_FILES = /^(endpoints\.json.*|agent\.lock|agent\.sock|left)$/;

/** Pod host veths: the agent names them lxc<hash> (endpoint.ts). */
const isPodDevice = (name: string, kind?: string) => kind === 'veth' && /^lxc[0-9a-f]/.test(name);

/**
 * Deletes the node's devices in this netns and its pin directory
 * (`cfg.paths.pinDir`). Idempotent: a second run finds nothing and deletes
 * nothing. Throws E_DEVICE or E_BPFFS naming the device or path that could not be
 * removed (what came before it stays removed: there is nothing to roll back
 * to).
 */
export function resetNode(cfg: Pick<NodeConfig, 'paths' | 'nodeName'>): ResetResult {
  const state: string[] = [];
  const devices: string[] = [];
  const routes: string[] = [];
  const h = NetlinkHandle.open();
  try {
    // Never take another node's datapath: cilium_host names the node it was made for.
    const marker = parseMarker(linkGet(h, HOST_DEVICE)?.alias);
    if (marker && marker.nodeName !== cfg.nodeName) {
      throw new MembraneError(`purge node ${cfg.nodeName}`, { code: 'E_DEVICE', cause: `this network namespace's ${HOST_DEVICE} belongs to node ${marker.nodeName}`, hint: 'run it in the node\'s own netns, with its own config' });
    }
    const links = linkList(h);
    // Pods first (their veths), then cilium_vxlan, then cilium_host (which takes cilium_net, its peer, along).
    const order = [
      ...links.filter((l) => isPodDevice(l.name, l.kind)).map((l) => l.name),
      VXLAN_DEVICE, HOST_DEVICE, SECOND_HOST_DEVICE,
    ];
    for (const name of order) {
      if (!linkList(h).some((l) => l.name === name)) continue;
      try {
        linkDel(h, name);
      } catch (e) {
        throw new MembraneError(`purge node: delete device ${name}`, { code: 'E_DEVICE', cause: e });
      }
      devices.push(name);
    }
    // The native device is not ours and stays; the routes native routing put on it go (its programs go with the pins).
    for (const r of routeList(h).filter((x) => x.protocol === NATIVE_ROUTE_PROTO)) {
      try {
        routeDel(h, r);
      } catch (e) {
        throw new MembraneError(`purge node: delete route ${r.dst} via ${r.gateway ?? '-'}`, { code: 'E_DEVICE', cause: e });
      }
      routes.push(`${r.dst} via ${r.gateway ?? '-'}`);
    }
  } finally {
    h.close();
  }
  const pinDir = cfg.paths.pinDir;
  let removed: string | undefined;
  if (existsSync(pinDir)) {
    try {
      // bpffs: unlinking a pin drops the kernel object once nothing else holds it.
      rmSync(pinDir, { recursive: true, force: true });
    } catch (e) {
      throw new MembraneError(`purge node: remove pins ${pinDir}`, { code: 'E_BPFFS', cause: e });
    }
    removed = pinDir;
  }
  const dir = cfg.paths.stateDir;
  if (existsSync(dir)) {
    for (const f of readdirSync(dir).filter((n) => STATE_FILES.test(n))) {
      rmSync(`${dir}/${f}`, { force: true });
      state.push(`${dir}/${f}`);
    }
    if (isEmptyDir(dir)) {
      rmSync(dir, { recursive: true, force: true });
      state.push(dir);
    }
  }
  return { devices, routes, ...(removed ? { pinDir: removed } : {}), state };
}

/**
 * Removes a bpffs root that the purge left empty (no other node pins there):
 * unmounts it if it is a mount point of its own, then removes the directory.
 * True if it went; a root still in use (not empty) stays.
 */
export function removeEmptyBpffsRoot(dir: string): boolean {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return false;
  }
  // maps.debug and progs.debug: the kernel's own iterators in every new bpffs mount (CONFIG_BPF_PRELOAD), not pins of anyone.
  if (entries.some((e) => !KERNEL_PRELOAD.has(e))) return false;
  try {
    if (statSync(dir).dev !== statSync(dirname(dir)).dev) execFileSync('umount', [dir], { stdio: ['ignore', 'ignore', 'pipe'] });
    rmdirSync(dir);
    return true;
  } catch (e) {
    throw new MembraneError(`purge node: remove bpffs root ${dir}`, { code: 'E_BPFFS', cause: (e as { stderr?: Buffer }).stderr?.toString().trim() || e });
  }
}

const KERNEL_PRELOAD = new Set(['maps.debug', 'progs.debug']);

/** True when `dir` exists and has no entries (for removing a bpffs root a purge emptied). */
export function isEmptyDir(dir: string): boolean {
  try {
    return readdirSync(dir).length === 0;
  } catch {
    return false;
  }
}
