// The measurements the connectivity scenarios make: ICMP with ping, TCP and
// UDP with iperf3, an exact-size TCP transfer with nc, a VXLAN capture with
// tcpdump, IP fragmentation counters and the datapath's drop counters.
import { readFileSync } from 'node:fs';
import { listMetrics, type MetricRow } from '../datapath/node-maps.ts';
import { REASON_FORWARDED } from '../datapath/maps/drop-reasons.ts';
import { withNetns } from '../shared/netns.ts';
import { nsRun, nsStart } from './run.ts';

export interface PingResult {
  ok: boolean;
  sent: number;
  received: number;
  rttAvgMs?: number;
  /** A local error such as "message too long, mtu=1450". */
  error?: string;
}

/** `ping -c count` from `netns` (each reply awaited up to waitS); -M do with `df`; payload `size` bytes. */
export async function ping(netns: string, ip: string, o: { count?: number; size?: number; df?: boolean; waitS?: number } = {}): Promise<PingResult> {
  const count = o.count ?? 3;
  const argv = ['ping', '-n', '-c', String(count), '-i', '0.02', '-W', String(o.waitS ?? 1)];
  if (o.size !== undefined) argv.push('-s', String(o.size));
  if (o.df) argv.push('-M', 'do');
  const r = await nsRun(netns, [...argv, ip], { timeoutMs: count * (o.waitS ?? 1) * 1000 + 3000 });
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  // Local errors (e.g. "local error: message too long, mtu=1450") go to stderr.
  const err = /ping: (.*)/.exec(r.stderr)?.[1]?.trim() ?? /(From \S+ .*)/.exec(r.stdout)?.[1]?.trim();
  const received = m ? Number(m[2]) : 0;
  return {
    ok: r.code === 0 && received === count, sent: m ? Number(m[1]) : 0, received,
    ...(rtt ? { rttAvgMs: Number(rtt[1]) } : {}), ...(err ? { error: err } : r.code !== 0 && !m ? { error: (r.stderr || r.stdout).trim().split('\n')[0] } : {}),
  };
}

/** Resolves with p's value, or undefined after ms (the timer never outlives the race). */
export async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((res) => { timer = setTimeout(() => res(undefined), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}

let nextPort = 5300 + Math.floor(Math.random() * 1000);
/** Ports for one-shot servers: distinct within a run, so a lingering server never answers the next test. */
export function port(): number {
  nextPort = nextPort >= 6999 ? 5300 : nextPort + 1;
  return nextPort;
}

export interface IperfResult {
  ok: boolean;
  protocol: 'tcp' | 'udp';
  bytesSent: number;
  bytesReceived: number;
  bitsPerSecond: number;
  retransmits?: number;
  lostPercent?: number;
  mss?: number;
  error?: string;
}

/**
 * One iperf3 test from `fromNs` to `toIP` (server started in `toNs`):
 * TCP of `bytes`, or UDP at 25 Mbit/s with full-size datagrams.
 */
export async function iperf(fromNs: string, toNs: string, toIP: string, protocol: 'tcp' | 'udp', o: { bytes?: number; udpLen?: number } = {}): Promise<IperfResult> {
  const p = port();
  const bytes = o.bytes ?? (protocol === 'tcp' ? 8 << 20 : 1 << 20);
  const fail = (error: string): IperfResult => ({ ok: false, protocol, bytesSent: 0, bytesReceived: 0, bitsPerSecond: 0, error });
  let server;
  try {
    server = await nsStart(toNs, ['iperf3', '-s', '-1', '-p', String(p), '--forceflush'], /Server listening/, { timeoutMs: 15_000 });
  } catch (e) {
    return fail((e as Error).message);
  }
  try {
    const argv = ['iperf3', '-c', toIP, '-p', String(p), '-n', String(bytes), '-J', '--connect-timeout', '2000'];
    if (protocol === 'udp') argv.push('-u', '-b', '25M', '-l', String(o.udpLen ?? 1400));
    const r = await nsRun(fromNs, argv, { timeoutMs: 10_000 });
    let j: any;
    try { j = JSON.parse(r.stdout); } catch { return fail(`iperf3 exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`); }
    if (j.error) return fail(`iperf3: ${j.error}`);
    if (protocol === 'tcp') {
      const sent = j.end?.sum_sent?.bytes ?? 0;
      const recv = j.end?.sum_received?.bytes ?? 0;
      return {
        ok: r.code === 0 && sent >= bytes && recv > 0, protocol, bytesSent: sent, bytesReceived: recv,
        bitsPerSecond: j.end?.sum_received?.bits_per_second ?? 0, retransmits: j.end?.sum_sent?.retransmits, mss: j.start?.tcp_mss_default,
      };
    }
    const s = j.end?.sum ?? {};
    const recv = j.end?.sum_received?.bytes ?? Math.round((s.bytes ?? 0) * (1 - (s.lost_percent ?? 100) / 100));
    const lost = Number(s.lost_percent ?? 100);
    // A little loss is UDP being UDP: the receiving iperf3's socket buffer
    // (~150 datagrams) overflows when a busy machine keeps it off the CPU.
    // At 25 Mbit/s that takes a stall of ~65 ms, not ~17 ms as at 100 Mbit/s,
    // so what is lost is the datapath's, not the test's; most must arrive.
    return { ok: r.code === 0 && lost <= 5, protocol, bytesSent: s.bytes ?? 0, bytesReceived: recv, bitsPerSecond: s.bits_per_second ?? 0, lostPercent: lost };
  } finally {
    await server.stop();
  }
}

export interface StreamResult {
  ok: boolean;
  /** Bytes the server received. */
  bytesReceived: number;
  /** Per-interval receiver-side bytes and length, in order. */
  intervals: { start: number; seconds: number; bytes: number }[];
  retransmits: number;
  error?: string;
}

/**
 * A TCP stream of `seconds` at `bitrate` (iperf3 -b, e.g. "100M") from
 * `fromNs` to `toIP`:`p`, reported every `intervalS`: for a connection that
 * must live through something (a policy change). The server must already
 * listen (iperfServer); the promise resolves when the stream ends.
 */
export async function iperfStream(fromNs: string, toIP: string, p: number, o: { seconds: number; intervalS: number; bitrate: string }): Promise<StreamResult> {
  const argv = ['iperf3', '-c', toIP, '-p', String(p), '-t', String(o.seconds), '-i', String(o.intervalS), '-b', o.bitrate, '-J', '--connect-timeout', '2000'];
  const r = await nsRun(fromNs, argv, { timeoutMs: (o.seconds + 10) * 1000 });
  const fail = (error: string): StreamResult => ({ ok: false, bytesReceived: 0, intervals: [], retransmits: 0, error });
  let j: any;
  try { j = JSON.parse(r.stdout); } catch { return fail(`iperf3 exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n')[0]}`); }
  if (j.error) return fail(`iperf3: ${j.error}`);
  const intervals = ((j.intervals ?? []) as any[]).map((i) => ({ start: Number(i.sum?.start ?? 0), seconds: Number(i.sum?.seconds ?? 0), bytes: Number(i.sum?.bytes ?? 0) }));
  return { ok: r.code === 0, bytesReceived: j.end?.sum_received?.bytes ?? 0, intervals, retransmits: j.end?.sum_sent?.retransmits ?? 0 };
}

/** An iperf3 server for one test on port `p` in `ns`; stop() it when done. */
export function iperfServer(ns: string, p: number) {
  return nsStart(ns, ['iperf3', '-s', '-1', '-p', String(p), '--forceflush'], /Server listening/, { timeoutMs: 30_000 });
}

/** Sends exactly `bytes` over TCP with nc (to port `p`, default a fresh one) and returns how many the server counted (-1 on failure). */
export async function tcpExact(fromNs: string, toNs: string, toIP: string, bytes: number, p: number = port()): Promise<{ received: number; ms: number; error?: string }> {
  let server;
  try {
    server = await nsStart(toNs, ['sh', '-c', `nc -l -n -v ${p} | wc -c`], /Listening on/);
  } catch (e) {
    return { received: -1, ms: 0, error: (e as Error).message };
  }
  const r = await nsRun(fromNs, ['sh', '-c', `head -c ${bytes} /dev/urandom | nc -N -w 3 ${toIP} ${p}`], { timeoutMs: 10_000 });
  const s = await within(server.done, 3000);
  if (!s) await server.stop();
  const n = s ? Number(s.stdout.trim()) : -1;
  return { received: Number.isFinite(n) ? n : -1, ms: r.ms, ...(r.code !== 0 ? { error: `nc exited ${r.code}: ${r.stderr.trim()}` } : {}) };
}

/** IPv4 fragmentation/reassembly counters of a netns (/proc/net/snmp as that netns sees it). */
export function fragCounters(netns: string): Record<string, number> {
  const text = withNetns(netns, () => readFileSync('/proc/thread-self/net/snmp', 'utf8'));
  const [head, vals] = text.split('\n').filter((l) => l.startsWith('Ip:')) as [string, string];
  const k = head.split(/\s+/);
  const v = vals.split(/\s+/);
  const out: Record<string, number> = {};
  k.forEach((name, i) => { if (/^(Frag|Reasm)/.test(name)) out[name] = Number(v[i]); });
  return out;
}

export interface VxlanPacket {
  outerSrc: string;
  outerDst: string;
  dstPort: number;
  vni: number;
  inner: string;
}

/**
 * Captures VXLAN packets on `dev` in `netns` (tcpdump -T vxlan, UDP port
 * `udpPort`) while `traffic()` runs; returns each packet's outer addresses,
 * VNI and inner summary line.
 */
export async function captureVxlan(netns: string, dev: string, udpPort: number, traffic: () => Promise<unknown>, maxPackets = 8): Promise<{ packets: VxlanPacket[]; error?: string }> {
  let cap;
  try {
    cap = await nsStart(netns, ['tcpdump', '-i', dev, '-n', '-l', '-c', String(maxPackets), '-T', 'vxlan', 'udp', 'port', String(udpPort)], /listening on/, { timeoutMs: 10_000 });
  } catch (e) {
    return { packets: [], error: (e as Error).message };
  }
  await traffic();
  const r = await within(cap.done, 1500) ?? await cap.stop();
  const lines = r.stdout.split('\n');
  const packets: VxlanPacket[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /IP (\d+\.\d+\.\d+\.\d+)\.\d+ > (\d+\.\d+\.\d+\.\d+)\.(\d+): VXLAN.*vni (\d+)/.exec(lines[i]!);
    if (m) packets.push({ outerSrc: m[1]!, outerDst: m[2]!, dstPort: Number(m[3]), vni: Number(m[4]), inner: (lines[i + 1] ?? '').trim() });
  }
  return { packets };
}

/** Drop counters (packets per reason text and site) of a node, from its pinned cilium_metrics. */
export function dropCounters(nodePinDir: string): Map<string, { reason: string; site: string; direction: string; packets: number }> {
  const out = new Map<string, { reason: string; site: string; direction: string; packets: number }>();
  for (const r of listMetrics(nodePinDir) as MetricRow[]) {
    if (r.reason === REASON_FORWARDED) continue;
    out.set(`${r.reason}/${r.direction}/${r.site}`, { reason: r.reasonText, site: r.site, direction: r.direction, packets: r.packets });
  }
  return out;
}
