// Two pods' bpf_lxc.o under BPF_PROG_TEST_RUN, as the per-packet benchmarks
// (bench/conntrack.ts, bench/tracing.ts) load them: the pods, the remote
// pod, the node's config, the maps they read, the three probes (A's egress
// and a reply to A, B's ingress) and the connections the probes belong to.
import { BpfMap, BpfObject, MAP_F_NO_PREALLOC, MAP_TYPE, removePinTree } from '../../src/bpf/index.ts';
import { mountBpffs } from '../../src/datapath/bpffs.ts';
import * as ct from '../../src/datapath/maps/conntrack.ts';
import * as ipcache from '../../src/datapath/maps/ipcache.ts';
import { encodeLxcConfig } from '../../src/datapath/maps/load-config.ts';
import * as nodeConfig from '../../src/datapath/maps/node-config.ts';
import * as policy from '../../src/datapath/maps/policy.ts';
import { globalsDir } from '../../src/datapath/paths.ts';

export const A = { id: 7, ip: '10.0.1.5', identity: 1234, ifindex: 42, mac: '02:aa:00:00:00:05', podMac: '02:00:00:00:00:05' };
export const B = { id: 8, ip: '10.0.1.6', identity: 5678, ifindex: 43, mac: '02:aa:00:00:00:06', podMac: '02:00:00:00:00:06' };
export const REMOTE = { ip: '10.0.2.7', identity: 4321, node: '192.168.50.2' };
export const NODE: nodeConfig.NodeConfig = {
  hostIfindex: 3, netIfindex: 2, encapIfindex: 4, routerIp: '10.0.1.1', nodeIp: '192.168.50.1',
  hostMac: '02:00:00:00:0a:03', netMac: '02:00:00:00:0a:02', encapMac: '02:00:00:00:0a:04',
  endpointRoutes: false, traceLevel: 0, routeMtu: 1450,
};
export const TCP = 6;
const ACK = 0x10;
export const TC_ACT_OK = 0;
export const TC_ACT_REDIRECT = 7;

function ipBytes(ip: string): number[] {
  return ip.split('.').map(Number);
}

function macBytes(mac: string): number[] {
  return mac.split(':').map((x) => parseInt(x, 16));
}

/** Ethernet + IPv4 + a TCP ACK with 1400 bytes of payload. */
export function tcpFrame(src: string, sport: number, dst: string, dport: number, srcMac: string, dstMac: string): Buffer {
  const tcp = Buffer.alloc(20 + 1400);
  tcp.writeUInt16BE(sport, 0);
  tcp.writeUInt16BE(dport, 2);
  tcp[12] = 5 << 4;
  tcp[13] = ACK;
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + tcp.length, 2);
  ip.writeUInt16BE(0x4000, 6);
  ip[8] = 64;
  ip[9] = TCP;
  Buffer.from(ipBytes(src)).copy(ip, 12);
  Buffer.from(ipBytes(dst)).copy(ip, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += ip.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  ip.writeUInt16BE(~sum & 0xffff, 10);
  return Buffer.concat([Buffer.from([...macBytes(dstMac), ...macBytes(srcMac), 0x08, 0x00]), ip, tcp]);
}

/** skb->mark carrying an identity (bpf/lib/identity.h), in a __sk_buff for the test run. */
export function markCtx(identity: number): Buffer {
  const b = Buffer.alloc(192);
  b.writeUInt32LE((0x0f00 | ((identity & 0xffff) << 16) | ((identity >>> 16) & 0xff)) >>> 0, 8);
  return b;
}

/** Pod A's and pod B's bpf_lxc.o, sharing one node's pinned maps under `nodeDir`. */
export interface LxcPair {
  nodeDir: string;
  a: BpfObject;
  b: BpfObject;
}

/** Both pods' `objectFile` in a fresh pin root named `dir`, the node config `node` written and the remote pod in the ipcache. */
export function loadLxcPair(objectFile: string, dir: string, node: nodeConfig.NodeConfig): LxcPair {
  const nodeDir = `${mountBpffs()}/${dir}-${process.pid}`;
  const pinRoot = globalsDir(nodeDir);
  const open = (p: typeof A) => BpfObject.open(objectFile, {
    pinRoot, mapPins: { cilium_calls: `${pinRoot}/cilium_calls_${p.id}` },
    constants: encodeLxcConfig({ endpointId: p.id, ipv4: p.ip, identity: p.identity, ifindex: p.ifindex, ifMac: p.mac }),
  });
  const a = open(A);
  const b = open(B);
  a.map(nodeConfig.NODE_CONFIG_MAP_NAME).update(nodeConfig.encodeKey(), nodeConfig.encodeValue(node));
  a.map(ipcache.IPCACHE_MAP_NAME).update(ipcache.encodeKey(`${REMOTE.ip}/32`), ipcache.encodeValue({ identity: REMOTE.identity, tunnelEndpoint: REMOTE.node }));
  return { nodeDir, a, b };
}

export function unloadLxcPair(n: LxcPair): void {
  n.a.close();
  n.b.close();
  removePinTree(n.nodeDir);
}

/** Endpoint `id`'s policy map in `obj`'s cilium_policy_v2 map of maps, with `entries`. */
export function setPolicy(obj: BpfObject, id: number, entries: policy.PolicyMapEntry[]): void {
  const inner = BpfMap.create({
    type: MAP_TYPE.LPM_TRIE, name: policy.policyMapName(id), keySize: policy.POLICY_KEY.size, valueSize: policy.POLICY_ENTRY.size,
    maxEntries: policy.POLICY_MAP_MAX_ENTRIES, flags: MAP_F_NO_PREALLOC,
  });
  try {
    for (const e of policy.normalizePolicyEntries(entries)) {
      const { key, value } = policy.encodeEntry(e);
      inner.update(key, value);
    }
    const k = Buffer.alloc(4);
    k.writeUInt32LE(id);
    obj.map(policy.POLICY_MAPS_NAME).setInnerMap(k, inner);
  } finally {
    inner.close();
  }
}

/**
 * The probes' connections, established: A -> remote (A's egress), remote ->
 * A (the reply probe), remote -> B (B's ingress); `extra` fields go into
 * every entry.
 */
export function plantConnections(n: LxcPair, extra: Partial<ct.CtEntry> = {}): void {
  const now = ct.monotonicSeconds();
  const m = n.a.map(ct.CT_TCP_MAP_NAME);
  const put = (t: ct.CtTuple, srcSecId: number) =>
    m.update(ct.encodeKey(t), ct.encodeValue({ lifetime: now + 3600, created: now, flags: ct.CT_ENTRY_F_SEEN_NON_SYN, srcSecId, ...extra }));
  put({ saddr: A.ip, daddr: REMOTE.ip, sport: 40000, dport: 80, proto: TCP, dir: 'out' }, A.identity);
  put({ saddr: REMOTE.ip, daddr: A.ip, sport: 50000, dport: 80, proto: TCP, dir: 'in' }, REMOTE.identity);
  put({ saddr: REMOTE.ip, daddr: B.ip, sport: 40000, dport: 80, proto: TCP, dir: 'in' }, REMOTE.identity);
}

export interface Probe {
  name: 'egress' | 'reply' | 'ingress';
  obj: (n: LxcPair) => BpfObject;
  program: string;
  frame: Buffer;
  ctx?: Buffer;
  want: number;
}

/** A's egress of an established connection, a reply leaving A, and B's ingress from the remote pod. */
export const PROBES: Probe[] = [
  { name: 'egress', obj: (n) => n.a, program: 'cil_from_container', frame: tcpFrame(A.ip, 40000, REMOTE.ip, 80, A.podMac, A.mac), want: TC_ACT_REDIRECT },
  { name: 'reply', obj: (n) => n.a, program: 'cil_from_container', frame: tcpFrame(A.ip, 80, REMOTE.ip, 50000, A.podMac, A.mac), want: TC_ACT_REDIRECT },
  { name: 'ingress', obj: (n) => n.b, program: 'cil_to_container', frame: tcpFrame(REMOTE.ip, 40000, B.ip, 80, B.mac, B.podMac), ctx: markCtx(REMOTE.identity), want: TC_ACT_OK },
];
