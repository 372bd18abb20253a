// Link verbs: list/get, create veth/vxlan/bridge, change attributes, move, delete.
// All changes to an existing link go through one RTM_SETLINK builder, so
// several changes (e.g. MTU + NOARP + up, or netns + new name) can be applied
// in a single message with linkSet().
import { ConfigError, KernelError } from '../shared/errors.ts';
import type { NetlinkHandle } from './handle.ts';
import { withNetnsFd } from './netns-fd.ts';
import { NLM_F_CREATE, NLM_F_EXCL, RTM_DELLINK, RTM_GETLINK, RTM_NEWLINK, RTM_SETLINK, msgTypeName } from './wire/header.ts';
import {
  decodeLinkMsg, emptyLinkMsg, encodeLinkMsg, IFF_NOARP, IFF_UP, OPERSTATES, RTEXT_FILTER_SKIP_STATS, type LinkMsg, type VxlanInfo,
} from './wire/link-msg.ts';

const ENODEV = 19;
/** IFNAMSIZ is 16 including the terminating NUL. */
const IFNAME_MAX = 15;

export interface VxlanAttrs {
  /** VNI; 0 on an `external` device. */
  vni?: number;
  /** UDP destination port (IFLA_VXLAN_PORT). */
  port: number;
  /** Source port range; 0-0 means the kernel's default (the local port range). */
  srcPortLow: number;
  srcPortHigh: number;
  /** Flow-based / collect-metadata mode (`ip link add ... type vxlan external`). */
  external: boolean;
  learning: boolean;
  local?: string;
  /** 0 = inherit from the inner packet / default. */
  ttl?: number;
  /** Underlay device ifindex (IFLA_VXLAN_LINK). */
  underlayIndex?: number;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND: 'veth', 'vxlan', 'bridge', ...; undefined for e.g. loopback. */
  kind?: string;
  mtu: number;
  /** ifi_flags (IFF_*). */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  noarp: boolean;
  /** 'aa:bb:cc:dd:ee:ff' */
  mac: string;
  txqlen: number;
  /** 'up', 'down', 'lowerlayerdown', 'unknown', ... */
  operstate: string;
  /** IFLA_LINK: for a veth, the peer's ifindex (in the netns `linkNetnsId` when set). */
  parentIndex?: number;
  /** IFLA_LINK_NETNSID: the peer/parent lives in another netns, known here by this id. */
  linkNetnsId?: number;
  /** Bridge (or other master) this link is enslaved to. */
  masterIndex?: number;
  vxlan?: VxlanAttrs;
  /** IFLA_IFALIAS, if set. */
  alias?: string;
}

function toVxlan(v: VxlanInfo): VxlanAttrs {
  const out: VxlanAttrs = {
    port: v.port ?? 0,
    srcPortLow: v.portRange?.low ?? 0,
    srcPortHigh: v.portRange?.high ?? 0,
    external: v.collectMetadata ?? false,
    // The kernel always reports LEARNING; absent would mean its default (on).
    learning: v.learning ?? true,
  };
  if (v.id !== undefined) out.vni = v.id;
  if (v.local !== undefined) out.local = v.local;
  if (v.ttl !== undefined) out.ttl = v.ttl;
  if (v.link !== undefined) out.underlayIndex = v.link;
  return out;
}

/** Turns a decoded RTM_NEWLINK into a Link. Exported for tests on captured dumps. */
export function linkFromMsg(m: LinkMsg): Link {
  const link: Link = {
    index: m.index,
    name: m.ifname ?? '',
    mtu: m.mtu ?? 0,
    flags: m.flags,
    up: (m.flags & IFF_UP) !== 0,
    noarp: (m.flags & IFF_NOARP) !== 0,
    mac: m.address ?? '',
    txqlen: m.txqlen ?? 0,
    operstate: OPERSTATES[m.operstate ?? 0] ?? `operstate ${m.operstate}`,
  };
  if (m.linkinfo?.kind) link.kind = m.linkinfo.kind;
  // Not compared with our own index: a veth peer in another netns may have the same ifindex.
  if (m.link !== undefined) link.parentIndex = m.link;
  if (m.linkNetnsId !== undefined) link.linkNetnsId = m.linkNetnsId;
  if (m.master) link.masterIndex = m.master;
  if (m.linkinfo?.vxlan) link.vxlan = toVxlan(m.linkinfo.vxlan);
  if (m.alias) link.alias = m.alias;
  return link;
}

function checkName(field: string, name: string): void {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > IFNAME_MAX || /[\s/:]/.test(name)) {
    throw new ConfigError(field, [`${JSON.stringify(name)} is not a valid interface name (1-${IFNAME_MAX} bytes, no whitespace, '/' or ':')`]);
  }
}

/** Every link in the handle's netns. Throws KernelError. */
export function linkList(h: NetlinkHandle): Link[] {
  const req = encodeLinkMsg({ ...emptyLinkMsg(), extMask: RTEXT_FILTER_SKIP_STATS });
  return h.dump(RTM_GETLINK, req).filter((m) => m.type === RTM_NEWLINK).map((m) => linkFromMsg(decodeLinkMsg(m.payload)));
}

/**
 * One link by name or ifindex; undefined if there is none (ENODEV).
 * Throws ConfigError for a name no interface can have, KernelError on other errors.
 */
export function linkGet(h: NetlinkHandle, nameOrIndex: string | number): Link | undefined {
  if (typeof nameOrIndex === 'string') checkName('name', nameOrIndex);
  const msg: LinkMsg = typeof nameOrIndex === 'number' ? emptyLinkMsg(nameOrIndex) : { ...emptyLinkMsg(), ifname: nameOrIndex };
  msg.extMask = RTEXT_FILTER_SKIP_STATS;
  try {
    const reply = h.request(RTM_GETLINK, 0, encodeLinkMsg(msg), typeof nameOrIndex === 'number' ? `ifindex ${nameOrIndex}` : nameOrIndex);
    const m = reply.find((r) => r.type === RTM_NEWLINK);
    return m ? linkFromMsg(decodeLinkMsg(m.payload)) : undefined;
  } catch (err) {
    if (err instanceof KernelError && err.errno === ENODEV) return undefined;
    throw err;
  }
}

export interface VethOptions {
  name: string;
  peerName: string;
  /** Default: a random locally administered MAC chosen by the kernel. */
  mac?: string;
  peerMac?: string;
  /** Applied to both ends. */
  mtu?: number;
  /** Applied to both ends. */
  txqlen?: number;
  /** Create the peer directly in this netns (name under /run/netns or a path). */
  peerNetns?: string;
}

/**
 * Creates a veth pair (NLM_F_EXCL: fails with EEXIST if either name is taken).
 * The peer can be created straight into another netns, so a pod's eth0 never
 * appears in the host netns. Throws KernelError, ConfigError on bad names/MACs,
 * E_NETNS if peerNetns does not exist.
 */
export function linkAddVeth(h: NetlinkHandle, o: VethOptions): void {
  checkName('name', o.name);
  checkName('peerName', o.peerName);
  const send = (peerFd?: number): void => {
    const peer: LinkMsg = emptyLinkMsg();
    peer.ifname = o.peerName;
    if (o.peerMac !== undefined) peer.address = o.peerMac;
    if (o.mtu !== undefined) peer.mtu = o.mtu;
    if (o.txqlen !== undefined) peer.txqlen = o.txqlen;
    if (peerFd !== undefined) peer.netnsFd = peerFd;
    const msg: LinkMsg = { ...emptyLinkMsg(), ifname: o.name, linkinfo: { kind: 'veth', vethPeer: peer } };
    if (o.mac !== undefined) msg.address = o.mac;
    if (o.mtu !== undefined) msg.mtu = o.mtu;
    if (o.txqlen !== undefined) msg.txqlen = o.txqlen;
    const where = o.peerNetns ? ` in netns ${o.peerNetns}` : '';
    h.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeLinkMsg(msg), `${o.name} type veth peer ${o.peerName}${where}`);
  };
  if (o.peerNetns !== undefined) withNetnsFd(o.peerNetns, send);
  else send();
}

export interface VxlanOptions {
  name: string;
  /** UDP destination port, e.g. 8472 (Linux/flannel/Cilium) or 4789 (IANA). */
  port: number;
  srcPortLow?: number;
  srcPortHigh?: number;
  /** Flow-based (collect metadata): tunnel parameters come per packet from BPF. */
  external?: boolean;
  vni?: number;
  local?: string;
  /** Default: off for an external device (as `ip link add ... external` does), else the kernel default (on). */
  learning?: boolean;
  ttl?: number;
  mtu?: number;
  mac?: string;
  underlayIndex?: number;
}

/**
 * Creates a vxlan device (NLM_F_EXCL). Port conflicts show up at two points
 * (docs/kernel-notes/netlink.md): a second external device on the same port
 * is refused here with EEXIST ("A VXLAN device with the specified VNI already
 * exists"); a device whose port is held by another vxlan that is up is
 * created fine but linkSetUp fails with EADDRINUSE. Throws KernelError or ConfigError.
 */
export function linkAddVxlan(h: NetlinkHandle, o: VxlanOptions): void {
  checkName('name', o.name);
  const vx: VxlanInfo = { port: o.port };
  if (o.vni !== undefined) vx.id = o.vni;
  if (o.underlayIndex !== undefined) vx.link = o.underlayIndex;
  if (o.local !== undefined) vx.local = o.local;
  if (o.ttl !== undefined) vx.ttl = o.ttl;
  const learning = o.learning ?? (o.external ? false : undefined);
  if (learning !== undefined) vx.learning = learning;
  if (o.srcPortLow !== undefined || o.srcPortHigh !== undefined) vx.portRange = { low: o.srcPortLow ?? 0, high: o.srcPortHigh ?? 0 };
  if (o.external) vx.collectMetadata = true;
  const msg: LinkMsg = { ...emptyLinkMsg(), ifname: o.name, linkinfo: { kind: 'vxlan', vxlan: vx } };
  if (o.mtu !== undefined) msg.mtu = o.mtu;
  if (o.mac !== undefined) msg.address = o.mac;
  const what = `${o.name} type vxlan${o.external ? ' external' : ''}${o.vni !== undefined ? ` id ${o.vni}` : ''} dstport ${o.port}`;
  h.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeLinkMsg(msg), what);
}

/** Creates a bridge (NLM_F_EXCL). Throws KernelError or ConfigError. */
export function linkAddBridge(h: NetlinkHandle, o: { name: string; mtu?: number; mac?: string }): void {
  checkName('name', o.name);
  const msg: LinkMsg = { ...emptyLinkMsg(), ifname: o.name, linkinfo: { kind: 'bridge' } };
  if (o.mtu !== undefined) msg.mtu = o.mtu;
  if (o.mac !== undefined) msg.address = o.mac;
  h.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, encodeLinkMsg(msg), `${o.name} type bridge`);
}

export interface LinkChanges {
  up?: boolean;
  noarp?: boolean;
  mtu?: number;
  /** New name. With `netns`, the rename happens in the target netns, in the same message. */
  name?: string;
  mac?: string;
  /** Device alias (IFLA_IFALIAS); '' clears it. */
  alias?: string;
  txqlen?: number;
  /** Enslave to this ifindex; 0 releases the link from its master. */
  masterIndex?: number;
  /** Move to this netns (name under /run/netns or a path). The link's ifindex is kept when free there. */
  netns?: string;
}

/**
 * Applies several changes to link `index` in one RTM_SETLINK. The kernel
 * applies them in its own order (netns move first, the up/down flag change
 * after the rename, so rename + up works on a down link) and stops at the
 * first failure, keeping the changes made before it. Throws KernelError (op
 * names the link and the changes), ConfigError, E_NETNS.
 */
export function linkSet(h: NetlinkHandle, index: number, c: LinkChanges): void {
  if (c.name !== undefined) checkName('name', c.name);
  const send = (nsFd?: number): void => {
    const msg = emptyLinkMsg(index);
    if (c.up !== undefined) {
      msg.change |= IFF_UP;
      if (c.up) msg.flags |= IFF_UP;
    }
    if (c.noarp !== undefined) {
      msg.change |= IFF_NOARP;
      if (c.noarp) msg.flags |= IFF_NOARP;
    }
    if (c.mtu !== undefined) msg.mtu = c.mtu;
    if (c.name !== undefined) msg.ifname = c.name;
    if (c.mac !== undefined) msg.address = c.mac;
    if (c.alias !== undefined) msg.alias = c.alias;
    if (c.txqlen !== undefined) msg.txqlen = c.txqlen;
    if (c.masterIndex !== undefined) msg.master = c.masterIndex;
    if (nsFd !== undefined) msg.netnsFd = nsFd;
    try {
      h.request(RTM_SETLINK, 0, encodeLinkMsg(msg), `ifindex ${index}`);
    } catch (err) {
      throw nameInError(h, index, err, describeChanges(c));
    }
  };
  if (c.netns !== undefined) withNetnsFd(c.netns, send);
  else send();
}

function describeChanges(c: LinkChanges): string {
  const parts: string[] = [];
  if (c.netns !== undefined) parts.push(`netns ${c.netns}`);
  if (c.name !== undefined) parts.push(`name ${c.name}`);
  if (c.mtu !== undefined) parts.push(`mtu ${c.mtu}`);
  if (c.mac !== undefined) parts.push(`address ${c.mac}`);
  if (c.alias !== undefined) parts.push(`alias ${JSON.stringify(c.alias)}`);
  if (c.txqlen !== undefined) parts.push(`txqlen ${c.txqlen}`);
  if (c.masterIndex !== undefined) parts.push(c.masterIndex ? `master ifindex ${c.masterIndex}` : 'nomaster');
  if (c.noarp !== undefined) parts.push(`arp ${c.noarp ? 'off' : 'on'}`);
  if (c.up !== undefined) parts.push(c.up ? 'up' : 'down');
  return parts.join(' ');
}

/** On failure, re-issues the KernelError with the link's name (looked up only on this error path). */
function nameInError(h: NetlinkHandle, index: number, err: unknown, what: string): unknown {
  if (!(err instanceof KernelError)) return err;
  let label = `ifindex ${index}`;
  try {
    const l = linkGet(h, index);
    if (l) label = `${l.name} (ifindex ${index})`;
  } catch { /* keep the index */ }
  const type = err.op.split(' ')[0] ?? msgTypeName(RTM_SETLINK);
  return new KernelError(`${type} ${label}${what ? ` ${what}` : ''}`, err.errno, err.extAck);
}

/** Sets IFF_UP. */
export const linkSetUp = (h: NetlinkHandle, index: number): void => linkSet(h, index, { up: true });
/** Clears IFF_UP. */
export const linkSetDown = (h: NetlinkHandle, index: number): void => linkSet(h, index, { up: false });
/** Sets or clears IFF_NOARP (`ip link set dev X arp off` = on=true). */
export const linkSetNoArp = (h: NetlinkHandle, index: number, on: boolean): void => linkSet(h, index, { noarp: on });
export const linkSetMtu = (h: NetlinkHandle, index: number, mtu: number): void => linkSet(h, index, { mtu });
export const linkSetName = (h: NetlinkHandle, index: number, name: string): void => linkSet(h, index, { name });
export const linkSetMac = (h: NetlinkHandle, index: number, mac: string): void => linkSet(h, index, { mac });
export const linkSetTxqlen = (h: NetlinkHandle, index: number, txqlen: number): void => linkSet(h, index, { txqlen });
/** Enslaves link `index` to `masterIndex`; 0 releases it. */
export const linkSetMaster = (h: NetlinkHandle, index: number, masterIndex: number): void => linkSet(h, index, { masterIndex });

/**
 * Moves link `index` to `netns` (name or path); with `newName`, renames it
 * there in the same message (used to turn a temporary veth name into eth0).
 * After this the link is no longer visible through `h`.
 */
export function linkSetNetns(h: NetlinkHandle, index: number, netns: string, opts: { newName?: string } = {}): void {
  linkSet(h, index, opts.newName !== undefined ? { netns, name: opts.newName } : { netns });
}

/**
 * Deletes a link by ifindex or name (a veth deletes its peer too; this one is
 * slow, ~16 ms, because the kernel waits for an RCU grace period).
 * Throws KernelError (ENODEV if it does not exist).
 */
export function linkDel(h: NetlinkHandle, nameOrIndex: number | string): void {
  const msg: LinkMsg = typeof nameOrIndex === 'number' ? emptyLinkMsg(nameOrIndex) : { ...emptyLinkMsg(), ifname: nameOrIndex };
  try {
    h.request(RTM_DELLINK, 0, encodeLinkMsg(msg), typeof nameOrIndex === 'number' ? `ifindex ${nameOrIndex}` : nameOrIndex);
  } catch (err) {
    throw typeof nameOrIndex === 'number' && !(err instanceof KernelError && err.errno === ENODEV) ? nameInError(h, nameOrIndex, err, '') : err;
  }
}
