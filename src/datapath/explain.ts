// `membrane datapath explain`: the seed's device table (SPEC 1.1) read from
// live state: device type, addresses, MTU and flags from netlink, programs
// per hook from the kernel's tcx/tc attachments, calls maps from the node's
// bpffs, and the routes on cilium_host.
import { listAttachments, pinExists, type Attachment } from '../bpf/index.ts';
import { addrList, linkGet, NetlinkHandle, type Link, type Route } from '../netlink/index.ts';
import { HOST_DEVICE, HOST_ENDPOINT_ID, SECOND_HOST_DEVICE, VXLAN_DEVICE } from './constants.ts';
import { markerPinDir, readMarker } from './node-marker.ts';
import { callsMapName, globalsDir } from './paths.ts';
import { hostDeviceRoutes, nativeDeviceRoutes } from './routes.ts';
import * as nodeCfg from './maps/node-config.ts';
import { MAP_NAMES, withNodeMap } from './node-maps.ts';

export interface ExplainedProgram {
  name: string;
  id: number;
  mode: 'tcx' | 'tc';
  linkId?: number;
}

export interface ExplainedDevice {
  name: string;
  present: boolean;
  ifindex?: number;
  type?: string;
  peer?: string;
  mac?: string;
  mtu?: number;
  up?: boolean;
  noarp?: boolean;
  addresses: string[];
  programs: { ingress: ExplainedProgram[]; egress: ExplainedProgram[] };
  callsMap?: string;
  callsMapPinned?: boolean;
  purpose: string;
  traffic: string;
}

/** tc/tcx attachments of this netns, as `bpftool net` shows them. */
export function listNodeAttachments(): Attachment[] {
  return listAttachments();
}

export type { Attachment, Route };

export interface Explanation {
  nodeName: string;
  bpffsRoot: string;
  devices: ExplainedDevice[];
  routes: Route[];
  /** Added: tunnel or native (node_config flags). */
  routingMode: 'tunnel' | 'native';
  /** Added: pod traffic leaving the cluster is SNATed to the node IP on the native device. */
  masquerade: boolean;
  /** Added: the native device's name, if the node has one (its programs are in `devices`). */
  nativeDevice?: string;
  /** Added: native routing's routes to other nodes' pod CIDRs on the native device. */
  nativeRoutes: Route[];
  /** Added: bpf (BPF host routing) or legacy. */
  hostRouting: 'bpf' | 'legacy';
  /** Added: how each traffic path is delivered, from node_config's flags (the programs decide per packet by the same flags). */
  paths: ExplainedPath[];
}

export interface ExplainedPath {
  path: string;
  /** e.g. 'bpf_redirect_peer', 'bpf_redirect', 'bpf_redirect_neigh', 'stack', 'tunnel'. */
  mode: string;
  how: string;
}

/** The delivery mode of every path for these node_config flags (mirrors local_delivery.h, fib.h, bpf_lxc.c, bpf_host.c). */
export function explainPaths(c: Pick<nodeCfg.NodeConfig, 'endpointRoutes'> & { nativeRouting?: boolean; legacyHostRouting?: boolean; nativeIfindex?: number }, nativeName?: string): ExplainedPath[] {
  const peer = !c.legacyHostRouting && !c.endpointRoutes;
  const neigh = !c.legacyHostRouting && !!c.nativeIfindex;
  const intoPod = (from: string): ExplainedPath => peer
    ? { path: from, mode: 'bpf_redirect_peer', how: 'straight into the pod\'s eth0 ingress (its netns), no pass through the lxc or the backlog' }
    : c.endpointRoutes
      ? { path: from, mode: 'bpf_redirect', how: 'to the lxc\'s egress, where cil_to_container enforces the pod\'s ingress (endpoint routes)' }
      : { path: from, mode: 'bpf_redirect', how: 'to the lxc\'s egress, which hands it to the pod (legacy host routing)' };
  const out = (path: string): ExplainedPath => neigh
    ? { path, mode: 'bpf_redirect_neigh', how: `FIB lookup, then out of ${nativeName ?? 'the native device'} to the next hop (the stack when the route goes elsewhere)` }
    : { path, mode: 'stack', how: 'identity mark, then the kernel routes it' };
  return [
    c.endpointRoutes ? { path: 'pod -> pod, same node', mode: 'stack', how: 'the kernel routes to the lxc (endpoint routes); cil_to_container' } : intoPod('pod -> pod, same node (cil_from_container)'),
    intoPod('overlay -> pod (cil_from_overlay)'),
    intoPod(`${nativeName ?? 'native device'} -> pod: native routing, masquerade replies (cil_from_netdev)`),
    { path: 'host -> pod (cil_from_host)', mode: 'bpf_redirect', how: 'cilium_host\'s egress is no ingress hook: bpf_redirect_peer cannot be used there' },
    c.nativeRouting ? out('pod -> other node\'s pod') : { path: 'pod -> other node\'s pod', mode: 'tunnel', how: 'tunnel key, bpf_redirect to cilium_vxlan' },
    out('pod -> world (masqueraded by cil_to_netdev)'),
  ];
}

const ROLES: Record<string, { purpose: string; traffic: string }> = {
  [HOST_DEVICE]: { purpose: 'joins the pod IP space to the host network stack; its address is the pods\' default gateway', traffic: 'host <-> pod, node-to-pod' },
  [SECOND_HOST_DEVICE]: { purpose: 'other end of the cilium_host veth pair', traffic: 'host-side traffic sent out of cilium_host arrives on its ingress' },
  [VXLAN_DEVICE]: { purpose: 'flow-based VXLAN: tunnel key (remote node, VNI = source identity) set per packet by BPF', traffic: 'pod <-> pod across nodes' },
};
const NATIVE_ROLE = {
  purpose: 'the native (underlay) device holding the node IP: masquerade (SNAT to the node IP on egress, reverse NAT on ingress) and, with native routing, delivery of other nodes\' traffic to local pods',
  traffic: 'pod -> world (masqueraded), world -> pod (replies), pod <-> pod across nodes in native routing',
};

function typeOf(l: Link, peer?: string): string {
  if (l.kind === 'vxlan' && l.vxlan) {
    const range = l.vxlan.srcPortLow || l.vxlan.srcPortHigh ? ` srcport ${l.vxlan.srcPortLow} ${l.vxlan.srcPortHigh}` : '';
    return `vxlan ${l.vxlan.external ? 'external' : `id ${l.vxlan.vni}`} dstport ${l.vxlan.port}${range}`;
  }
  return peer ? `${l.kind ?? 'unknown'} (peer ${peer})` : l.kind ?? 'unknown';
}

function progs(att: Attachment[], ifindex: number, dir: 'ingress' | 'egress'): ExplainedProgram[] {
  return att.filter((a) => a.ifindex === ifindex && a.hook.endsWith(dir)).map((a) => ({
    name: a.progName, id: a.progId, mode: a.hook.startsWith('tcx') ? 'tcx' as const : 'tc' as const, ...(a.linkId !== undefined ? { linkId: a.linkId } : {}),
  }));
}

/** Reads the live state of the node in this process's netns. */
export function explainNode(): Explanation {
  const h = NetlinkHandle.open();
  try {
    const marker = readMarker(h);
    const nodeDir = markerPinDir(marker);
    const att = listAttachments();
    const cfg = withNodeMap(nodeDir, MAP_NAMES.nodeConfig, (m) => {
      const v = m.lookup(nodeCfg.encodeKey());
      return v ? nodeCfg.decodeValue(v) : undefined;
    });
    const native = cfg?.nativeIfindex ? linkGet(h, cfg.nativeIfindex) : undefined;
    const names = [HOST_DEVICE, SECOND_HOST_DEVICE, VXLAN_DEVICE, ...(native ? [native.name] : [])];
    const devices = names.map((name): ExplainedDevice => {
      const l = linkGet(h, name);
      const base = { name, addresses: [], programs: { ingress: [], egress: [] }, ...(ROLES[name] ?? NATIVE_ROLE) };
      if (!l) return { ...base, present: false };
      // The native device's veth peer (a lab) is in another netns: its ifindex means nothing here.
      const peer = l.kind === 'veth' && l.parentIndex && ROLES[name] ? linkGet(h, l.parentIndex)?.name : undefined;
      const callsMap = name === HOST_DEVICE ? callsMapName.hostns(HOST_ENDPOINT_ID)
        : name === VXLAN_DEVICE ? callsMapName.overlay() : callsMapName.netdev(l.index);
      return {
        ...base, present: true, ifindex: l.index, type: typeOf(l, peer), peer, mac: l.mac, mtu: l.mtu, up: l.up, noarp: l.noarp,
        addresses: addrList(h, l.index).map((a) => `${a.address}/${a.prefixLen}`),
        programs: { ingress: progs(att, l.index, 'ingress'), egress: progs(att, l.index, 'egress') },
        callsMap, callsMapPinned: pinExists(`${globalsDir(nodeDir)}/${callsMap}`),
      };
    });
    const host = devices[0];
    return {
      nodeName: marker.nodeName, bpffsRoot: marker.bpffsRoot, devices, routes: host.ifindex ? hostDeviceRoutes(h, host.ifindex) : [],
      routingMode: cfg?.nativeRouting ? 'native' : 'tunnel', masquerade: !!cfg?.masquerade,
      ...(native ? { nativeDevice: native.name } : {}), nativeRoutes: native ? nativeDeviceRoutes(h, native.index) : [],
      hostRouting: cfg?.legacyHostRouting ? 'legacy' : 'bpf',
      paths: explainPaths(cfg ?? { endpointRoutes: false }, native?.name),
    };
  } finally {
    h.close();
  }
}
