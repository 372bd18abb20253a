// `membrane datapath explain`: the seed's device table (SPEC 1.1) read from
// live state: device type, addresses, MTU and flags from netlink, programs
// per hook from the kernel's tcx/tc attachments, calls maps from the node's
// bpffs, and the routes on cilium_host.
import { listAttachments, pinExists, type Attachment } from '../bpf/index.ts';
import { addrList, linkGet, NetlinkHandle, type Link, type Route } from '../netlink/index.ts';
import { HOST_DEVICE, HOST_ENDPOINT_ID, SECOND_HOST_DEVICE, VXLAN_DEVICE } from './constants.ts';
import { markerPinDir, readMarker } from './node-marker.ts';
import { callsMapName, globalsDir } from './paths.ts';
import { hostDeviceRoutes } from './routes.ts';

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
}

const ROLES: Record<string, { purpose: string; traffic: string }> = {
  [HOST_DEVICE]: { purpose: 'joins the pod IP space to the host network stack; its address is the pods\' default gateway', traffic: 'host <-> pod, node-to-pod' },
  [SECOND_HOST_DEVICE]: { purpose: 'other end of the cilium_host veth pair', traffic: 'host-side traffic sent out of cilium_host arrives on its ingress' },
  [VXLAN_DEVICE]: { purpose: 'flow-based VXLAN: tunnel key (remote node, VNI = source identity) set per packet by BPF', traffic: 'pod <-> pod across nodes' },
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
    const devices = [HOST_DEVICE, SECOND_HOST_DEVICE, VXLAN_DEVICE].map((name): ExplainedDevice => {
      const l = linkGet(h, name);
      const base = { name, addresses: [], programs: { ingress: [], egress: [] }, ...ROLES[name] };
      if (!l) return { ...base, present: false };
      const peer = l.kind === 'veth' && l.parentIndex ? linkGet(h, l.parentIndex)?.name : undefined;
      const callsMap = name === HOST_DEVICE ? callsMapName.hostns(HOST_ENDPOINT_ID)
        : name === SECOND_HOST_DEVICE ? callsMapName.netdev(l.index) : callsMapName.overlay();
      return {
        ...base, present: true, ifindex: l.index, type: typeOf(l, peer), peer, mac: l.mac, mtu: l.mtu, up: l.up, noarp: l.noarp,
        addresses: addrList(h, l.index).map((a) => `${a.address}/${a.prefixLen}`),
        programs: { ingress: progs(att, l.index, 'ingress'), egress: progs(att, l.index, 'egress') },
        callsMap, callsMapPinned: pinExists(`${globalsDir(nodeDir)}/${callsMap}`),
      };
    });
    const host = devices[0];
    return { nodeName: marker.nodeName, bpffsRoot: marker.bpffsRoot, devices, routes: host.ifindex ? hostDeviceRoutes(h, host.ifindex) : [] };
  } finally {
    h.close();
  }
}
