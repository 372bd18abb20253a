// The seed's node devices: the cilium_host/cilium_net veth pair and the
// flow-based cilium_vxlan device (Cilium's pkg/datapath/loader/netlink.go).
// Devices are created only when missing and never recreated needlessly, so
// ifindexes and MACs stay stable across re-runs; every change registers its
// undo so a failed run leaves the node as it was.
import { MembraneError } from '../shared/errors.ts';
import {
  type Link, type NetlinkHandle, linkAddVeth, linkAddVxlan, linkDel, linkGet, linkList,
  linkSetMtu, linkSetNoArp, linkSetUp, linkSetDown,
} from '../netlink/index.ts';
import { addrList, addrReplace, addrDel } from '../netlink/index.ts';
import { HOST_DEVICE, SECOND_HOST_DEVICE, TXQLEN, VXLAN_DEVICE } from './constants.ts';
import { randomMac } from './mac.ts';
import type { Rollback } from './rollback.ts';
import { applySysctls, deviceSysctls } from './sysctl.ts';

function mustGet(h: NetlinkHandle, name: string): Link {
  const l = linkGet(h, name);
  if (!l) throw new MembraneError(`look up device ${name}`, { code: 'E_DEVICE', cause: 'not found right after creation' });
  return l;
}

/**
 * Creates the device with `create` only if no device of that name exists,
 * then (every run) brings it up, applies the per-device sysctls and sets the
 * MTU if it differs. Never recreates an existing device.
 */
export function ensureDevice(h: NetlinkHandle, name: string, mtu: number, create: () => void, rb: Rollback): { link: Link; created: boolean } {
  let link = linkGet(h, name);
  let created = false;
  if (!link) {
    create();
    link = mustGet(h, name);
    created = true;
    const idx = link.index;
    rb.push(`create ${name}`, () => linkDel(h, idx));
  }
  setMtu(h, link, mtu, rb);
  setUp(h, link, rb);
  applySysctls(deviceSysctls(name), rb);
  return { link: mustGet(h, name), created };
}

function setMtu(h: NetlinkHandle, link: Link, mtu: number, rb: Rollback): void {
  if (link.mtu === mtu) return;
  const old = link.mtu;
  linkSetMtu(h, link.index, mtu);
  rb.push(`mtu of ${link.name}`, () => linkSetMtu(h, link.index, old));
}

function setUp(h: NetlinkHandle, link: Link, rb: Rollback): void {
  if (link.up) return;
  linkSetUp(h, link.index);
  rb.push(`up ${link.name}`, () => linkSetDown(h, link.index));
}

function setNoArp(h: NetlinkHandle, link: Link, rb: Rollback): void {
  if (link.noarp) return;
  linkSetNoArp(h, link.index, true);
  rb.push(`noarp ${link.name}`, () => linkSetNoArp(h, link.index, false));
}

/**
 * setupBaseDevice: the cilium_host/cilium_net veth pair, created only if
 * cilium_host is missing (random MACs, txqlen 1000); on every run both ends
 * are up, NOARP, at `mtu`, with forwarding sysctls.
 */
export function setupBaseDevice(h: NetlinkHandle, mtu: number, rb: Rollback): { host: Link; net: Link } {
  const existing = linkGet(h, HOST_DEVICE);
  if (existing && existing.kind !== 'veth') {
    throw new MembraneError(`set up ${HOST_DEVICE}`, { code: 'E_DEVICE', cause: `a device of that name exists with type ${existing.kind ?? 'unknown'}, not veth; remove it` });
  }
  if (!existing) {
    // A lone cilium_net (its peer deleted by hand) would block creating the pair.
    const stale = linkGet(h, SECOND_HOST_DEVICE);
    if (stale) {
      throw new MembraneError(`set up ${HOST_DEVICE}`, { code: 'E_DEVICE', cause: `${SECOND_HOST_DEVICE} exists without its peer ${HOST_DEVICE}; remove it (ip link del ${SECOND_HOST_DEVICE})` });
    }
  }
  const { link: host } = ensureDevice(h, HOST_DEVICE, mtu, () => linkAddVeth(h, {
    name: HOST_DEVICE, peerName: SECOND_HOST_DEVICE, mac: randomMac(), peerMac: randomMac(), mtu, txqlen: TXQLEN,
  }), rb);
  const { link: net } = ensureDevice(h, SECOND_HOST_DEVICE, mtu, () => {
    throw new MembraneError(`set up ${SECOND_HOST_DEVICE}`, { code: 'E_DEVICE', cause: `${HOST_DEVICE} exists without its peer ${SECOND_HOST_DEVICE}; remove ${HOST_DEVICE}` });
  }, rb);
  if (net.kind !== 'veth' || host.parentIndex !== net.index) {
    throw new MembraneError(`set up ${HOST_DEVICE}`, { code: 'E_DEVICE', cause: `${SECOND_HOST_DEVICE} is not the veth peer of ${HOST_DEVICE}` });
  }
  setNoArp(h, host, rb);
  setNoArp(h, net, rb);
  return { host: mustGet(h, HOST_DEVICE), net: mustGet(h, SECOND_HOST_DEVICE) };
}

/**
 * addHostDeviceAddr: the router IP as the only /32 on cilium_host (address
 * replace is idempotent); stale IPv4 addresses from an earlier router IP are removed.
 */
export function addHostDeviceAddr(h: NetlinkHandle, host: Link, routerIP: string, rb: Rollback): void {
  const addrs = addrList(h, host.index);
  for (const a of addrs) {
    if (a.address === routerIP && a.prefixLen === 32) continue;
    addrDel(h, a);
    rb.push(`remove address ${a.address}/${a.prefixLen}`, () => addrReplace(h, a));
  }
  if (!addrs.some((a) => a.address === routerIP && a.prefixLen === 32)) {
    addrReplace(h, { index: host.index, address: routerIP, prefixLen: 32 });
    rb.push(`address ${routerIP}/32`, () => addrDel(h, { index: host.index, address: routerIP, prefixLen: 32 }));
  }
}

export interface VxlanParams {
  port: number;
  srcPortLow: number;
  srcPortHigh: number;
  mtu: number;
}

/**
 * Throws E_VXLAN_PORT_CONFLICT naming a foreign VXLAN device already up on
 * `port` (creating or bringing up ours would fail with EEXIST/EADDRINUSE,
 * without the kernel saying which device is in the way).
 */
export function checkVxlanPort(h: NetlinkHandle, port: number, op = `set up ${VXLAN_DEVICE}`): void {
  const conflict = linkList(h).find((l) => l.kind === 'vxlan' && l.name !== VXLAN_DEVICE && l.up && l.vxlan?.port === port);
  if (!conflict) return;
  throw new MembraneError(op, {
    code: 'E_VXLAN_PORT_CONFLICT',
    cause: `UDP port ${port} is already used by vxlan device ${conflict.name} (ifindex ${conflict.index}), which is up`,
    hint: `set tunnelPort to another port, or remove ${conflict.name} (ip link del ${conflict.name})`,
  });
}

/**
 * setupVxlanDevice: cilium_vxlan in flow-based (`external`) mode with the
 * dstport and source port range, random MAC, the full device MTU and nothing
 * else (no VNI, remote, FDB or address: everything per packet from BPF).
 * Reused when it exists; MTU changed in place; a different port (or a
 * non-external device of that name) means delete and recreate.
 * Returns `notes` for things deliberately left alone.
 */
export function setupVxlanDevice(h: NetlinkHandle, p: VxlanParams, rb: Rollback): { link: Link; recreated: boolean; notes: string[] } {
  const notes: string[] = [];
  checkVxlanPort(h, p.port);
  let recreated = false;
  const existing = linkGet(h, VXLAN_DEVICE);
  if (existing && (existing.kind !== 'vxlan' || existing.vxlan?.port !== p.port || !existing.vxlan?.external)) {
    // Cilium deletes before ensureDevice: two VXLAN devices may share a port but only one can be up.
    linkDel(h, existing.index);
    recreated = true;
    const old = existing;
    rb.push(`delete ${VXLAN_DEVICE}`, () => {
      const cur = linkGet(h, VXLAN_DEVICE);
      if (cur) linkDel(h, cur.index);
      linkAddVxlan(h, { name: VXLAN_DEVICE, port: old.vxlan?.port ?? p.port, srcPortLow: old.vxlan?.srcPortLow, srcPortHigh: old.vxlan?.srcPortHigh, external: true, mtu: old.mtu, mac: old.mac });
      const back = linkGet(h, VXLAN_DEVICE);
      if (back && old.up) linkSetUp(h, back.index);
    });
  } else if (existing && (existing.vxlan?.srcPortLow !== p.srcPortLow || existing.vxlan?.srcPortHigh !== p.srcPortHigh)
      && !(p.srcPortLow === 0 && p.srcPortHigh === 0)) {
    notes.push(`source port range hint ${p.srcPortLow}-${p.srcPortHigh} ignored: ${VXLAN_DEVICE} already exists with ${existing.vxlan?.srcPortLow}-${existing.vxlan?.srcPortHigh} (changing it would cut traffic; delete the device to apply)`);
  }
  const { link, created } = ensureDevice(h, VXLAN_DEVICE, p.mtu, () => linkAddVxlan(h, {
    name: VXLAN_DEVICE, port: p.port, srcPortLow: p.srcPortLow || undefined, srcPortHigh: p.srcPortHigh || undefined,
    external: true, learning: false, mtu: p.mtu, mac: randomMac(),
  }), rb);
  return { link, recreated: recreated && created, notes };
}
