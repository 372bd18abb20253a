// Pods on a real node for privileged tests: a throwaway node netns running
// `membrane agent` (embedded SQLite store, temp state dir, own bpffs node
// directory), pods added and deleted by executing the membrane-cni binary as
// a runtime does, a snapshot of everything an endpoint leaves in the node
// (devices, IPAM, maps, pins), and raw Ethernet frames sent from inside a
// pod (ARP requests, packets with a forged source IP) through an AF_PACKET
// socket, so a test controls exactly what goes on the wire.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { startAgent, type RunningAgent } from './agent.ts';
import { buildOnce, membraneOk, testNode, writeConfig } from './membrane.ts';
import { ipJson, makeNetns, nsExec, tempDir, uniqueName } from './netns.ts';
import { apiCall } from '../../src/api/client.ts';
import { cniExec, type CniExecOptions, type CniExecResult } from '../../src/cni/runtime.ts';
import { CNI_PLUGIN } from '../../src/lab/layout.ts';
import type { StatusReply } from '../../src/agent/routes.ts';
import type { EndpointState } from '../../src/agent/state-file.ts';
import { ENDPOINT_F_HOST } from '../../src/datapath/maps/endpoints.ts';
import { listIpcache } from '../../src/datapath/ipcache.ts';
import { listEndpointMap } from '../../src/datapath/node-maps.ts';
import { check, libc } from '../../src/shared/libc.ts';
import { withNetns } from '../../src/shared/netns.ts';
import { formatIPv4, parseIPv4 } from '../../src/shared/ip.ts';
import { apiSocketIn } from '../../src/shared/config.ts';

export const SHIM = CNI_PLUGIN;

/** Builds bpf/*.o and cni/membrane-cni once per process (no-ops when up to date). */

export interface NodeOptions {
  /** Third octet of the node's addresses (10.13.X.5, 10.244.X.0/24); unique per test file keeps logs readable. */
  octet?: number;
  /** Pod CIDR (default 10.244.X.0/24); the router IP is its first address. */
  podCIDR?: string;
}

export interface AgentNode {
  ns: string;
  nodeName: string;
  /** <bpffs>/<nodeName>: the node's pins (removed when the test ends). */
  pinDir: string;
  nodeIP: string;
  routerIP: string;
  podCIDR: string;
  cfgPath: string;
  stateDir: string;
  socket: string;
  agent: RunningAgent;
  /** The CNI execution config membrane-cni is run with. */
  conf(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Starts `membrane agent` again with the same config (after a stop or kill). */
  restart(): Promise<RunningAgent>;
}

/**
 * A node netns (with an underlay veth carrying the node IP) running `membrane
 * agent`; the agent, netns, state dir and pins are removed when `t` ends.
 */
export async function nodeWithAgent(t: TestContext, opts: NodeOptions = {}): Promise<AgentNode> {
  buildOnce();
  const x = opts.octet ?? 80;
  const podCIDR = opts.podCIDR ?? `10.244.${x}.0/24`;
  const routerIP = formatIPv4(parseIPv4(podCIDR.split('/')[0]!) + 1);
  const nodeIP = `10.13.${x}.5`;
  // Registered first so it runs first (after-hooks run in order): the agent
  // must be gone before its pins are removed, or a tcx move still running
  // in its background pins a link into a fresh copy of the node's directory.
  let node: AgentNode | undefined;
  t.after(async () => { await node?.agent.stop(); });
  const ns = makeNetns(t, 'en');
  // The agent wants the node IP on a device; a veth pair inside the node netns suffices.
  execFileSync('ip', ['-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1']);
  execFileSync('ip', ['-n', ns, 'addr', 'add', `${nodeIP}/24`, 'dev', 'eth0']);
  for (const d of ['eth0', 'eth1']) execFileSync('ip', ['-n', ns, 'link', 'set', d, 'up']);
  const dir = tempDir(t, `/tmp/${uniqueName('epst')}`);
  const { nodeName, pinDir } = testNode(t, 'ep');
  const stateDir = `${dir}/state`;
  const cfgPath = writeConfig(t, { nodeName, nodeIP, routerIP, podCIDR, stateDir, store: { backend: 'sqlite', path: `${dir}/cluster.db` } });
  const socket = apiSocketIn(stateDir);
  node = {
    ns, nodeName, pinDir, nodeIP, routerIP, podCIDR, cfgPath, stateDir, socket,
    agent: await startAgent(t, ns, cfgPath, socket),
    conf: (extra = {}) => ({ cniVersion: '1.1.0', name: 'membrane', type: 'membrane-cni', agentSocket: socket, ...extra }),
    restart: async () => (node!.agent = await startAgent(t, ns, cfgPath, socket)),
  };
  return node;
}

export interface Pod {
  /** The pod's netns name (`ip -n NAME`). */
  ns: string;
  /** CNI_NETNS. */
  netns: string;
  containerID: string;
  ifname: string;
  ip: string;
  hostIfname: string;
  hostMac: string;
  podMac: string;
  /** The ADD result as printed by the plugin. */
  result: any;
}

/** Runs membrane-cni for `node` (its conf, the pod's attachment unless overridden). */
export function cni(node: AgentNode, command: string, opts: CniExecOptions = {}): Promise<CniExecResult> {
  return cniExec(SHIM, command, { conf: node.conf(), ...opts });
}

/** Creates a pod netns (removed when `t` ends) and ADDs it; throws with the plugin's output if the ADD fails. */
export async function addPod(t: TestContext, node: AgentNode, opts: { labels?: Record<string, string>; name?: string } = {}): Promise<Pod> {
  const ns = makeNetns(t, 'ep');
  const netns = `/run/netns/${ns}`;
  const containerID = `ctr-${ns}`;
  const r = await cni(node, 'ADD', {
    containerID, netns, ifname: 'eth0',
    args: { K8S_POD_NAME: opts.name ?? ns, K8S_POD_NAMESPACE: 'default' },
    conf: node.conf(opts.labels ? { args: { labels: opts.labels } } : {}),
  });
  if (r.exitCode !== 0) throw new Error(`ADD ${containerID} exited ${r.exitCode}: ${r.stdoutText}${r.stderr}`);
  const [host, pod] = r.stdout.interfaces;
  return {
    ns, netns, containerID, ifname: 'eth0', ip: (r.stdout.ips[0].address as string).split('/')[0]!,
    hostIfname: host.name, hostMac: host.mac, podMac: pod.mac, result: r.stdout,
  };
}

/** DELs the pod's attachment (its netns stays); resolves with the plugin's result. */
export function delPod(node: AgentNode, pod: Pod, opts: CniExecOptions = {}): Promise<CniExecResult> {
  return cni(node, 'DEL', { containerID: pod.containerID, netns: pod.netns, ifname: pod.ifname, ...opts });
}

/** `membrane ARGS -o json` inside the node netns, parsed (agent commands get `--socket`). */
export function membraneJson<T = any>(node: AgentNode, args: string[]): T {
  const agentCmd = args[0] === 'status' || args[0] === 'endpoint';
  return JSON.parse(membraneOk(node.ns, [...args, ...(agentCmd ? ['--socket', node.socket] : []), '-o', 'json']));
}

export interface Link {
  ifname: string;
  ifindex: number;
  address: string;
}

/** The node's lxc devices (host ends of pod veths). */
export function lxcLinks(ns: string): Link[] {
  return ipJson<Link[]>(ns, ['link', 'show']).filter((l) => /^lxc[0-9a-f]{12}$/.test(l.ifname));
}

/** What endpoints leave in a node: compare before/after to show an operation left nothing behind. */
export interface NodeSnapshot {
  lxc: string[];
  /** From the agent's API (undefined when the agent is down). */
  ipamUsed?: number;
  endpoints?: string[];
  /** cilium_lxc entries that are pods (not host IPs). */
  lxcEntries: string[];
  /** cilium_ipcache_v2 prefixes. */
  ipcache: string[];
  /** <pinDir>/endpoints/* */
  endpointPins: string[];
  /** cilium_calls_NNNNN pins (pods only). */
  callsPins: string[];
}

/**
 * Reads the node's state straight from the kernel, bpffs and the agent's API
 * (fast enough to take around every operation; the CLI's rendering of the
 * same is tested separately). Without `agent`, the API is not asked.
 */
export async function snapshot(node: AgentNode, opts: { agent?: boolean } = {}): Promise<NodeSnapshot> {
  const globals = `${node.pinDir}/tc/globals`;
  const epDir = `${node.pinDir}/endpoints`;
  const up = opts.agent ?? true;
  // A running agent moves new endpoints to tcx once ADDs pause (their link pins appear then):
  // wait for that, so two snapshots differ only by what the test did.
  if (up) await waitForTcx(node, lxcLinks(node.ns).length);
  return {
    lxc: lxcLinks(node.ns).map((l) => l.ifname).sort(),
    ipamUsed: up ? (await apiCall<StatusReply>(node.socket, 'GET', '/v1/status')).ipam.used : undefined,
    endpoints: up ? (await apiCall<EndpointState[]>(node.socket, 'GET', '/v1/endpoints')).map((e) => `${e.id} ${e.ip}`).sort() : undefined,
    lxcEntries: listEndpointMap(node.pinDir).filter((e) => !(e.flags & ENDPOINT_F_HOST)).map((e) => e.ip).sort(),
    ipcache: listIpcache(node.pinDir).map((e) => e.prefix).sort(),
    endpointPins: existsSync(epDir) ? readdirSync(epDir).sort() : [],
    callsPins: readdirSync(globals).filter((f) => /^cilium_calls_\d{5}$/.test(f)).sort(),
  };
}

/** The pod netns' devices (only lo once its attachment is gone). */
export function podLinks(ns: string): string[] {
  return ipJson<Link[]>(ns, ['link', 'show']).map((l) => l.ifname).sort();
}

/** Pings from a pod (or the node netns) and returns the number of replies; never throws on loss. */
export function ping(ns: string, ip: string, opts: { count?: number; interval?: number; source?: string } = {}): { transmitted: number; received: number } {
  const args = ['-n', '-c', String(opts.count ?? 1), '-W', '2', ...(opts.interval ? ['-i', String(opts.interval)] : []), ...(opts.source ? ['-I', opts.source] : []), ip];
  let out: string;
  try {
    out = execFileSync('ip', ['netns', 'exec', ns, 'ping', ...args], { encoding: 'utf8', timeout: 30_000 });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? '');
  }
  return parsePingSummary(out);
}

export function parsePingSummary(out: string): { transmitted: number; received: number } {
  const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
  if (!m) throw new Error(`no ping summary in: ${out}`);
  return { transmitted: Number(m[1]), received: Number(m[2]) };
}

// ---- Raw frames from inside a pod (AF_PACKET) ----

const AF_PACKET = 17;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const ETH_P_ALL = 0x0003;
const MSG_DONTWAIT = 0x40;

const macBytes = (mac: string) => Buffer.from(mac.split(':').map((h) => parseInt(h, 16)));
const macText = (b: Buffer) => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
const ipBytes = (ip: string) => { const b = Buffer.alloc(4); b.writeUInt32BE(parseIPv4(ip)); return b; };

/** A raw socket bound to one device of a netns: sees every frame in and out of it, sends frames as they are. */
export class RawSocket {
  private constructor(readonly fd: number, private readonly addr: Buffer) {}

  static open(netns: string, ifname: string): RawSocket {
    const ifindex = ipJson<Link[]>(netns, ['link', 'show', 'dev', ifname])[0]!.ifindex;
    const proto = ((ETH_P_ALL & 0xff) << 8) | (ETH_P_ALL >> 8); // htons
    const fd = withNetns(netns, () => check('socket AF_PACKET', libc.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto)));
    // struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8].
    const addr = Buffer.alloc(20);
    addr.writeUInt16LE(AF_PACKET, 0);
    addr.writeUInt16BE(ETH_P_ALL, 2);
    addr.writeInt32LE(ifindex, 4);
    try {
      check(`bind AF_PACKET to ${ifname}`, libc.bind(fd, addr, addr.length));
    } catch (e) {
      libc.close(fd);
      throw e;
    }
    return new RawSocket(fd, addr);
  }

  send(frame: Buffer): void {
    check('send raw frame', libc.sendto(this.fd, frame, frame.length, 0, this.addr, this.addr.length));
  }

  /** Frames seen until `match` accepts one or `ms` pass (the first match, else undefined). */
  async waitFor(ms: number, match: (f: Buffer) => boolean): Promise<Buffer | undefined> {
    const end = Date.now() + ms;
    do {
      for (;;) {
        const buf = Buffer.alloc(2048);
        const n = Number(libc.recv(this.fd, buf, buf.length, MSG_DONTWAIT));
        if (n < 0) break;
        const f = buf.subarray(0, n);
        if (match(f)) return f;
      }
      await new Promise((r) => setTimeout(r, 2));
    } while (Date.now() < end);
    return undefined;
  }

  close(): void {
    libc.close(this.fd);
  }
}

/**
 * Sends one ARP request for `targetIP` out of the pod's interface and
 * returns the sender MAC of the reply (undefined if none within 1 s).
 */
export async function arpRequest(pod: Pod, targetIP: string): Promise<string | undefined> {
  const s = RawSocket.open(pod.ns, pod.ifname);
  try {
    const f = Buffer.alloc(42);
    Buffer.from('ffffffffffff', 'hex').copy(f, 0);
    macBytes(pod.podMac).copy(f, 6);
    f.writeUInt16BE(0x0806, 12);
    f.writeUInt16BE(1, 14); // Ethernet
    f.writeUInt16BE(0x0800, 16); // IPv4
    f[18] = 6; f[19] = 4;
    f.writeUInt16BE(1, 20); // request
    macBytes(pod.podMac).copy(f, 22);
    ipBytes(pod.ip).copy(f, 28);
    ipBytes(targetIP).copy(f, 38);
    s.send(f);
    const reply = await s.waitFor(1000, (r) => r.length >= 42 && r.readUInt16BE(12) === 0x0806 && r.readUInt16BE(20) === 2
      && r.subarray(28, 32).equals(ipBytes(targetIP)) && r.subarray(38, 42).equals(ipBytes(pod.ip)));
    return reply ? macText(reply.subarray(22, 28)) : undefined;
  } finally {
    s.close();
  }
}

function ipv4Checksum(h: Buffer): number {
  let sum = 0;
  for (let i = 0; i < h.length; i += 2) sum += h.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Sends one UDP datagram out of the pod's interface as a raw Ethernet frame
 * to the pod's gateway MAC (its lxc), with whatever source IP is given: the
 * kernel's source-address selection is bypassed, so a forged source really
 * goes on the wire.
 */
export function sendUdpFrame(pod: Pod, o: { src: string; dst: string; dport: number; payload: Buffer }): void {
  const udpLen = 8 + o.payload.length;
  const f = Buffer.alloc(14 + 20 + udpLen);
  macBytes(pod.hostMac).copy(f, 0);
  macBytes(pod.podMac).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  const ip = f.subarray(14, 34);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + udpLen, 2);
  ip.writeUInt16BE(0x4000, 6); // DF
  ip[8] = 64;
  ip[9] = 17;
  ipBytes(o.src).copy(ip, 12);
  ipBytes(o.dst).copy(ip, 16);
  ip.writeUInt16BE(ipv4Checksum(ip), 10);
  f.writeUInt16BE(40000, 34);
  f.writeUInt16BE(o.dport, 36);
  f.writeUInt16BE(udpLen, 38); // checksum 0: none (IPv4)
  o.payload.copy(f, 42);
  const s = RawSocket.open(pod.ns, pod.ifname);
  try {
    s.send(f);
  } finally {
    s.close();
  }
}

/**
 * Polls `bpftool net` in the node until `n` lxc devices are on tcx ingress
 * (the agent moves endpoints from legacy tc in the background after ADD),
 * then returns `membrane bpf net -o json` (also on timeout: the caller asserts).
 */
export async function waitForTcx(node: AgentNode, n: number, timeoutMs = 5000): Promise<any[]> {
  const end = Date.now() + timeoutMs;
  do {
    const tc: { devname: string; kind: string }[] = JSON.parse(nsExec(node.ns, ['bpftool', '-j', 'net', 'show']))[0]?.tc ?? [];
    if (tc.filter((a) => a.devname.startsWith('lxc') && a.kind === 'tcx/ingress').length === n) break;
    await new Promise((r) => setTimeout(r, 20));
  } while (Date.now() < end);
  return membraneJson<any[]>(node, ['bpf', 'net']);
}
