// The cluster as the web UI draws it, read on demand from the live sources
// only: each node's agent API (status, endpoints, identities) and, for the
// devices and the programs attached to them, the node's kernel state read in
// its netns (what `membrane datapath explain` and `bpf net` show). Nothing is
// stored here but the last answer of each node, so that a node whose agent
// stops answering keeps its drawing (marked unreachable) until it is back.
import { apiCall } from '../api/client.ts';
import { explainNode, listNodeAttachments, type Attachment, type ExplainedDevice } from '../datapath/explain.ts';
import { withNetns } from '../shared/netns.ts';
import type { DeviceRole, UiDevice, UiNode, UiPod, UiProgram, UiTopology } from './topology-types.ts';

/** How the UI reaches one node: its agent's API socket, and its netns when this machine has it (a lab). */
export interface UiNodeSource {
  name: string;
  apiSocket?: string;
  /** Network namespace name or path: the devices and programs are read there. Undefined: not readable from here. */
  netns?: string;
  /** The node's underlay device, when known (a lab node's eth0). */
  underlay?: { ifname: string; address?: string };
  /** tunnel (VXLAN between nodes, the default) or native (pod CIDRs routed over the underlay: no cilium_vxlan), when known. */
  routingMode?: 'tunnel' | 'native';
}

export type { DeviceRole, UiDevice, UiNode, UiPod, UiProgram, UiTopology } from './topology-types.ts';

interface StatusLike { node: string; nodeIP?: string; routerIP: string; podCIDR: string; tunnelPort: number; routeMTU: number; startedAt: string }
interface EndpointLike { id: number; containerID: string; podName?: string; podNamespace?: string; labels: Record<string, string>; identity: number; ip: string; hostIfname: string; hostIfindex: number }

/** How long a poll waits for one agent: a stopped agent must not hold the page. */
const AGENT_TIMEOUT_MS = 2_000;

function devicesOf(src: UiNodeSource, eps: readonly EndpointLike[]): { devices: UiDevice[]; error?: string } {
  if (!src.netns) return { devices: [], error: 'the node\'s netns is not on this machine' };
  let explained: ExplainedDevice[];
  let att: Attachment[];
  try {
    ({ explained, att } = withNetns(src.netns, () => ({ explained: explainNode().devices, att: listNodeAttachments() })));
  } catch (e) {
    return { devices: [], error: (e as Error).message };
  }
  const roles: Record<string, DeviceRole> = { cilium_host: 'host', cilium_net: 'net', cilium_vxlan: 'vxlan' };
  const out: UiDevice[] = explained.filter((d) => d.present).map((d) => ({
    name: d.name, role: roles[d.name] ?? 'host', ifindex: d.ifindex, type: d.type, mtu: d.mtu, addresses: d.addresses,
    programs: [
      ...d.programs.ingress.map((p) => ({ name: p.name, hook: 'ingress' as const, mode: p.mode, id: p.id })),
      ...d.programs.egress.map((p) => ({ name: p.name, hook: 'egress' as const, mode: p.mode, id: p.id })),
    ],
  }));
  const progsOn = (ifindex: number): UiProgram[] => att.filter((a) => a.ifindex === ifindex).map((a) => ({
    name: a.progName, hook: a.hook.endsWith('egress') ? 'egress' as const : 'ingress' as const, mode: a.hook.startsWith('tcx') ? 'tcx' : 'tc', id: a.progId,
  }));
  if (src.underlay) {
    const u = att.find((a) => a.ifname === src.underlay!.ifname);
    out.push({ name: src.underlay.ifname, role: 'underlay', ifindex: u?.ifindex, addresses: src.underlay.address ? [src.underlay.address] : [], programs: u ? progsOn(u.ifindex) : [] });
  }
  for (const e of eps) {
    out.push({ name: e.hostIfname, role: 'lxc', ifindex: e.hostIfindex, addresses: [], programs: progsOn(e.hostIfindex), pod: e.podName ?? e.containerID });
  }
  return { devices: out };
}

/**
 * Reads every node now. A node whose agent does not answer keeps the pods of
 * its previous reading (`previous`), marked unreachable; its devices are read
 * from the kernel either way.
 */
export async function readTopology(cluster: string, sources: readonly UiNodeSource[], previous?: UiTopology): Promise<UiTopology> {
  const now = new Date().toISOString();
  const identities = new Map<number, string[]>();
  const nodes = await Promise.all(sources.map(async (src): Promise<UiNode> => {
    const before = previous?.nodes.find((n) => n.name === src.name);
    let status: StatusLike | undefined;
    let eps: EndpointLike[] | undefined;
    let error: string | undefined;
    if (!src.apiSocket) error = 'no API socket known for this node';
    else {
      try {
        [status, eps] = await Promise.all([
          apiCall<StatusLike>(src.apiSocket, 'GET', '/v1/status', undefined, { timeoutMs: AGENT_TIMEOUT_MS }),
          apiCall<EndpointLike[]>(src.apiSocket, 'GET', '/v1/endpoints', undefined, { timeoutMs: AGENT_TIMEOUT_MS }),
        ]);
        const ids = await apiCall<{ id: number; labels: Record<string, string> | string[] }[]>(src.apiSocket, 'GET', '/v1/identities', undefined, { timeoutMs: AGENT_TIMEOUT_MS });
        for (const i of ids) identities.set(i.id, Array.isArray(i.labels) ? i.labels : Object.entries(i.labels).map(([k, v]) => (v ? `${k}=${v}` : k)));
      } catch (e) {
        error = (e as Error).message;
        status = undefined;
      }
    }
    const pods: UiPod[] = eps
      ? eps.map((e) => ({ name: e.podName ?? e.containerID, namespace: e.podNamespace, node: src.name, ip: e.ip, labels: e.labels, identity: e.identity, endpointID: e.id, lxc: e.hostIfname }))
        .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }))
      : before?.pods ?? [];
    const epsForDevices = eps ?? pods.map((p) => ({ id: p.endpointID, containerID: p.name, podName: p.name, labels: p.labels, identity: p.identity, ip: p.ip, hostIfname: p.lxc, hostIfindex: before?.devices.find((d) => d.name === p.lxc)?.ifindex ?? 0 }));
    const dev = devicesOf(src, epsForDevices);
    return {
      name: src.name,
      reachable: status !== undefined,
      ...(error ? { error, unreachableSince: before && !before.reachable && before.unreachableSince ? before.unreachableSince : now } : {}),
      nodeIP: status?.nodeIP ?? before?.nodeIP ?? src.underlay?.address,
      routerIP: status?.routerIP ?? before?.routerIP,
      podCIDR: status?.podCIDR ?? before?.podCIDR,
      tunnelPort: status?.tunnelPort ?? before?.tunnelPort,
      routeMTU: status?.routeMTU ?? before?.routeMTU,
      ...(src.routingMode ? { routingMode: src.routingMode } : {}),
      agentStartedAt: status?.startedAt ?? before?.agentStartedAt,
      devices: dev.devices,
      ...(dev.error ? { devicesError: dev.error } : {}),
      pods,
    };
  }));
  if (!identities.size && previous) for (const i of previous.identities) identities.set(i.id, i.labels);
  return { cluster, nodes, identities: [...identities].map(([id, labels]) => ({ id, labels })).sort((a, b) => a.id - b.id), time: now };
}
