// Two pods' bpf_lxc.o under BPF_PROG_TEST_RUN, as the per-packet benchmarks
// (bench/conntrack.ts, bench/tracing.ts) load them: the pods, the remote
// pod, the node's config, and the frames and skb context they run.
import type * as nodeConfig from '../../src/datapath/maps/node-config.ts';

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
