// The setups the throughput benchmark compares, each built in its own
// namespaces (two "node" netns joined by a veth underlay, MTU 1500, plus pod
// netns where there are pods):
//
//   underlay  node to node over the veth pair;
//   flannel   the traditional kernel VXLAN overlay as flannel's vxlan backend
//             builds it (docs/benchmarks.md): flannel.1 (VNI 1, dstport 8472,
//             nolearning, MTU 1450), per peer a permanent neighbour, a static
//             FDB entry and an onlink route; pods on a cni0 bridge; a second
//             pod on node 1's bridge gives the same-node veth+bridge setup;
//   membrane  a `membrane agent` per node (shared SQLite store) and one pod
//             per node attached through the membrane-cni plugin (tunnel
//             routing; with `routingMode: native` a second cluster), and a
//             second pod on node 1 for the same-node setup.
//
// Kernel state is written with our netlink layer (src/netlink); only what it
// has no verb for (sysctls via /proc in the netns) is done otherwise.
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import {
  addrAdd, linkAddBridge, linkAddVeth, linkAddVxlan, linkGet, linkSet, linkSetUp, neighAdd, NetlinkHandle, routeAdd, type Link,
} from '../../src/netlink/index.ts';
import { withNetns } from '../../src/shared/netns.ts';
import { cniExec } from '../../src/cni/runtime.ts';
import { mountBpffs } from '../../src/datapath/bpffs.ts';
import { startAgentProcess, type AgentProcess } from '../../src/lab/agent-process.ts';
import { CNI_PLUGIN as SHIM } from '../../src/lab/layout.ts';
import type { Lab } from './lab.ts';
import { apiSocketIn } from '../../src/shared/config.ts';

export const UNDERLAY_MTU = 1500;
/** Outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50;

/** One end of a measurement: the netns a program runs in and the address it is reached at. */
export interface Endpoint {
  ns: string;
  ip: string;
}

export interface Setup {
  name: 'underlay' | 'flannel-vxlan' | 'membrane' | 'membrane-native' | 'bridge-same-node' | 'membrane-same-node' | 'membrane-legacy' | 'membrane-legacy-same-node';
  description: string;
  /** Sender (iperf3 client, RR client). */
  client: Endpoint;
  /** Receiver (iperf3 server, RR server). */
  server: Endpoint;
  /** Graceful teardown before lab.cleanup() (stop agents, CNI DEL); optional. */
  stop?: () => Promise<void>;
}

interface NodeSpec {
  nodeIP: string;
  podCIDR: string;
  /** Network address of podCIDR (flannel's VTEP address and gateway name for the subnet). */
  subnet: string;
  /** First address of podCIDR (bridge / router IP). */
  gateway: string;
}

const NODES: [NodeSpec, NodeSpec] = [
  { nodeIP: '10.13.1.5', podCIDR: '10.244.1.0/24', subnet: '10.244.1.0', gateway: '10.244.1.1' },
  { nodeIP: '10.13.1.6', podCIDR: '10.244.2.0/24', subnet: '10.244.2.0', gateway: '10.244.2.1' },
];

/** Runs fn with a netlink handle for netns `ns`, closed afterwards. */
function withHandle<T>(ns: string, fn: (h: NetlinkHandle) => T): T {
  const h = NetlinkHandle.open(ns);
  try {
    return fn(h);
  } finally {
    h.close();
  }
}

function must(link: Link | undefined, what: string): Link {
  if (!link) throw new Error(`${what}: not found`);
  return link;
}

/** Writes a sysctl of netns `ns` (/proc/sys/net shows the netns of the thread that opens it). */
function sysctl(ns: string, name: string, value: string): void {
  withNetns(ns, () => writeFileSync(`/proc/sys/${name.replace(/\./g, '/')}`, value));
}

/** Two node namespaces joined by a veth pair (eth0 on both sides, MTU 1500), node IPs /24 on it. */
function nodePair(lab: Lab, kind: string): [string, string] {
  const ns: [string, string] = [lab.addNetns(`${kind}1`), lab.addNetns(`${kind}2`)];
  withHandle(ns[0], (h) => linkAddVeth(h, { name: 'eth0', peerName: 'eth0', peerNetns: ns[1], mtu: UNDERLAY_MTU }));
  ns.forEach((n, i) => withHandle(n, (h) => {
    const eth0 = must(linkGet(h, 'eth0'), `${n} eth0`);
    addrAdd(h, { index: eth0.index, address: NODES[i]!.nodeIP, prefixLen: 24 });
    linkSetUp(h, eth0.index);
  }));
  return ns;
}

export function buildUnderlay(lab: Lab): Setup {
  const [a, b] = nodePair(lab, 'u');
  return {
    name: 'underlay',
    description: `node to node over a veth pair (MTU ${UNDERLAY_MTU})`,
    client: { ns: a, ip: NODES[0].nodeIP },
    server: { ns: b, ip: NODES[1].nodeIP },
  };
}

/**
 * flannel's vxlan backend by hand (pkg/backend/vxlan in flannel): flannel.1
 * is a classic single-VNI device bound to the node IP and eth0, holding the
 * node subnet's network address as a /32; per remote node, in flannel's
 * order, neighbour (peer .0 -> peer VTEP MAC), FDB (peer VTEP MAC -> peer
 * node IP) and `<peer podCIDR> via <peer .0> dev flannel.1 onlink`. Pods sit
 * on the cni0 bridge as the bridge CNI plugin puts them (veth, MTU 1450).
 */
export function buildFlannel(lab: Lab): Setup {
  return buildFlannelPair(lab).cross;
}

/** flannel's setup (above) and, with a second pod on node 1's cni0, the same-node veth+bridge setup. */
export function buildFlannelPair(lab: Lab): { cross: Setup; sameNode: Setup } {
  const nodes = nodePair(lab, 'f');
  const mtu = UNDERLAY_MTU - VXLAN_OVERHEAD;
  const vtepMac: string[] = [];
  nodes.forEach((ns, i) => withHandle(ns, (h) => {
    const spec = NODES[i]!;
    sysctl(ns, 'net.ipv4.ip_forward', '1');
    const eth0 = must(linkGet(h, 'eth0'), `${ns} eth0`);
    linkAddVxlan(h, { name: 'flannel.1', vni: 1, port: 8472, local: spec.nodeIP, underlayIndex: eth0.index, learning: false, mtu });
    const vx = must(linkGet(h, 'flannel.1'), `${ns} flannel.1`);
    vtepMac.push(vx.mac);
    addrAdd(h, { index: vx.index, address: spec.subnet, prefixLen: 32 });
    linkSetUp(h, vx.index);
    linkAddBridge(h, { name: 'cni0', mtu });
    const br = must(linkGet(h, 'cni0'), `${ns} cni0`);
    addrAdd(h, { index: br.index, address: spec.gateway, prefixLen: 24 });
    linkSetUp(h, br.index);
  }));
  nodes.forEach((ns, i) => withHandle(ns, (h) => {
    const peer = NODES[1 - i]!;
    const vx = must(linkGet(h, 'flannel.1'), `${ns} flannel.1`);
    // flannel's order: ARP, FDB, then the route (else the kernel would ARP for the gateway).
    neighAdd(h, { index: vx.index, ip: peer.subnet, mac: vtepMac[1 - i]!, state: 'permanent' });
    neighAdd(h, { index: vx.index, mac: vtepMac[1 - i]!, dst: peer.nodeIP, self: true, permanent: true });
    routeAdd(h, { dst: peer.podCIDR, gateway: peer.subnet, oif: vx.index, onlink: true });
  }));
  const addPod = (nodeNs: string, i: number, j: number) => {
    const spec = NODES[i]!;
    const podNs = lab.addNetns(`fp${i + 1}${j ? `-${j + 1}` : ''}`);
    const podIP = spec.gateway.replace(/\.1$/, `.${2 + j}`);
    withHandle(nodeNs, (h) => {
      linkAddVeth(h, { name: `veth${j}`, peerName: 'eth0', peerNetns: podNs, mtu });
      const br = must(linkGet(h, 'cni0'), `${nodeNs} cni0`);
      const veth = must(linkGet(h, `veth${j}`), `${nodeNs} veth${j}`);
      linkSet(h, veth.index, { masterIndex: br.index, up: true });
    });
    withHandle(podNs, (p) => {
      const eth0 = must(linkGet(p, 'eth0'), `${podNs} eth0`);
      addrAdd(p, { index: eth0.index, address: podIP, prefixLen: 24 });
      linkSetUp(p, eth0.index);
      routeAdd(p, { dst: 'default', gateway: spec.gateway, oif: eth0.index });
    });
    return { ns: podNs, ip: podIP };
  };
  const pods = nodes.map((nodeNs, i) => addPod(nodeNs, i, 0));
  const second = addPod(nodes[0], 0, 1);
  return {
    cross: {
      name: 'flannel-vxlan',
      description: `flannel.1 VNI 1 dstport 8472 nolearning MTU ${mtu}, static FDB + neighbour + onlink route, pods on cni0 bridge`,
      client: pods[0]!,
      server: pods[1]!,
    },
    sameNode: {
      name: 'bridge-same-node',
      description: `two pods on one node's cni0 bridge (veth pairs, MTU ${mtu}), as the bridge CNI plugin makes them`,
      client: pods[0]!,
      server: second,
    },
  };
}

/**
 * Two Membrane nodes: a `membrane agent` in each node netns (one SQLite
 * store file shared by both, so each learns the other), one pod per node
 * added through cni/membrane-cni. Resolves once the agents are ready; the
 * caller waits for pod-to-pod reachability. The agents' pin directories are
 * removed by lab.cleanup().
 */
export async function buildMembrane(lab: Lab): Promise<Setup> {
  return (await buildMembraneCluster(lab)).cross;
}

/**
 * A Membrane cluster as buildMembrane's, in `routingMode` (nodes <tag>-m1/2,
 * or -n1/2 for native), with `sameNodePod` a second pod on node 1: the
 * cross-node setup and, if asked, the same-node one.
 */
export async function buildMembraneCluster(lab: Lab, o: { routingMode?: 'tunnel' | 'native'; sameNodePod?: boolean; legacyHostRouting?: boolean } = {}): Promise<{ cross: Setup; sameNode?: Setup }> {
  const native = o.routingMode === 'native';
  const legacy = !!o.legacyHostRouting && !native;
  const k = native ? 'n' : legacy ? 'l' : 'm';
  const nodes = nodePair(lab, k);
  const bpffs = mountBpffs();
  const store = `${lab.dir}/cluster-${k}.db`;
  const agents: AgentProcess[] = [];
  const conf: Record<string, unknown>[] = [];
  for (const [i, ns] of nodes.entries()) {
    const spec = NODES[i]!;
    const nodeName = `${lab.tag}-${k}${i + 1}`;
    lab.removeLater(`${bpffs}/${nodeName}`);
    const stateDir = `${lab.dir}/${k}${i + 1}`;
    const cfgPath = `${lab.dir}/${k}${i + 1}.yaml`;
    writeFileSync(cfgPath, stringify({
      nodeName, nodeIP: spec.nodeIP, routerIP: spec.gateway, podCIDR: spec.podCIDR, stateDir, store: { backend: 'sqlite', path: store },
      ...(native ? { routingMode: 'native' } : {}), ...(legacy ? { hostRouting: 'legacy' } : {}),
    }));
    const socket = apiSocketIn(stateDir);
    const agent = await startAgentProcess({ name: nodeName, netns: ns, configFile: cfgPath, apiSocket: socket, env: { ...process.env, MEMBRANE_TIMING: '0' } }, 15_000);
    lab.track(agent.child!);
    agents.push(agent);
    conf.push({ cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: socket });
  }
  const pods: (Endpoint & { containerID: string; node: number })[] = [];
  const placement = [0, 1, ...(o.sameNodePod ? [0] : [])];
  for (const [j, i] of placement.entries()) {
    const podNs = lab.addNetns(`${k}p${j + 1}`);
    const containerID = `${lab.tag}-${k}p${j + 1}`;
    const r = await cniExec(SHIM, 'ADD', { containerID, netns: `/run/netns/${podNs}`, ifname: 'eth0', conf: { ...conf[i], args: { labels: { app: 'bench' } } } });
    if (r.exitCode !== 0) throw new Error(`membrane-cni ADD ${containerID}: ${r.stdoutText}${r.stderr}`);
    pods.push({ ns: podNs, ip: (r.stdout.ips[0].address as string).split('/')[0]!, containerID, node: i });
  }
  const stop = async () => {
    for (const p of pods) {
      const r = await cniExec(SHIM, 'DEL', { containerID: p.containerID, netns: `/run/netns/${p.ns}`, ifname: 'eth0', conf: conf[p.node]!, timeoutMs: 10_000 }).catch((e) => ({ exitCode: -1, stdoutText: String(e), stderr: '' }));
      if (r.exitCode !== 0) process.stderr.write(`membrane-cni DEL ${p.containerID}: ${r.stdoutText}${r.stderr}\n`);
    }
    for (const a of agents) await a.stop();
  };
  const cross: Setup = {
    name: native ? 'membrane-native' : legacy ? 'membrane-legacy' : 'membrane',
    description: native
      ? 'membrane agent per node, routingMode native: pod CIDRs via the node IPs on eth0, bpf_redirect_neigh out, bpf_redirect_peer in'
      : `membrane agent per node (sqlite store), pods via membrane-cni, cilium_vxlan external (BPF tunnel key)${legacy ? ', hostRouting legacy (bpf_redirect to the lxc)' : ''}`,
    client: { ns: pods[0]!.ns, ip: pods[0]!.ip },
    server: { ns: pods[1]!.ns, ip: pods[1]!.ip },
    stop,
  };
  if (!o.sameNodePod) return { cross };
  return {
    cross,
    sameNode: {
      name: legacy ? 'membrane-legacy-same-node' : 'membrane-same-node',
      description: legacy ? 'two pods on one membrane node, hostRouting legacy: bpf_redirect to the peer\'s lxc' : 'two pods on one membrane node: cil_from_container redirects into the peer (bpf_redirect_peer)',
      client: { ns: pods[0]!.ns, ip: pods[0]!.ip }, server: { ns: pods[2]!.ns, ip: pods[2]!.ip },
    },
  };
}

/** Pings `to` from `from` once a while until a reply comes back; throws after timeoutMs. */
export async function waitReachable(lab: Lab, from: Endpoint, to: Endpoint, timeoutMs = 20_000): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    const r = await lab.run(from.ns, ['ping', '-n', '-c', '1', '-W', '1', to.ip], { timeoutMs: 5_000 });
    if (r.code === 0) return performance.now() - t0;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`${from.ip} (netns ${from.ns}) cannot reach ${to.ip} within ${timeoutMs} ms`);
}
