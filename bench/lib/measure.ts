// The measurements, each run the same way for every setup: iperf3 TCP
// throughput (server in the setup's server netns, client in its client
// netns, -J), ICMP ping RTT (iputils, per-packet times) and a TCP
// request/response loop (bench/lib/tcp-rr.ts). Every process runs inside the
// namespaces through lab.run/spawnIn, so cleanup() can kill it.
import { fileURLToPath } from 'node:url';
import { REPO } from '../../src/lab/layout.ts';
import type { Lab } from './lab.ts';
import type { Setup } from './setups.ts';

const TCP_RR = fileURLToPath(new URL('./tcp-rr.ts', import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface IperfResult {
  streams: number;
  seconds: number;
  /** Receiver-side throughput (end.sum_received). */
  gbps: number;
  /** TCP retransmissions seen by the sender (end.sum_sent.retransmits). */
  retransmits: number;
  /** CPU use of the client and server processes, % of one CPU (iperf3's cpu_utilization_percent). */
  cpuClient: number;
  cpuServer: number;
}

export interface LatencySummary {
  n: number;
  meanUs: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
}

/** Percentile p (0..100) of sorted values, nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

export function summarize(samples: number[]): LatencySummary {
  const s = [...samples].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / (s.length || 1);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { n: s.length, meanUs: r(mean), p50Us: r(percentile(s, 50)), p90Us: r(percentile(s, 90)), p99Us: r(percentile(s, 99)) };
}

/** Polls `ss` in `ns` until something listens on TCP `port`. */
async function waitListening(lab: Lab, ns: string, port: number, timeoutMs = 10_000): Promise<void> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const r = await lab.run(ns, ['ss', '-Hltn', `sport = :${port}`], { timeoutMs: 5_000 });
    if (r.stdout.trim() !== '') return;
    await sleep(20);
  }
  throw new Error(`nothing listens on tcp port ${port} in netns ${ns} after ${timeoutMs} ms`);
}

/** One iperf3 TCP run client -> server with `streams` parallel streams for `seconds`. Throws with iperf3's error. */
export async function iperf(lab: Lab, s: Setup, streams: number, seconds: number, port = 5201): Promise<IperfResult> {
  const server = lab.spawnIn(s.server.ns, ['iperf3', '-s', '-1', '-p', String(port)]);
  server.stdout!.resume();
  server.stderr!.resume();
  const serverExit = new Promise<void>((r) => (server.exitCode !== null ? r() : server.once('exit', () => r())));
  try {
    await waitListening(lab, s.server.ns, port);
    const r = await lab.run(s.client.ns, ['iperf3', '-c', s.server.ip, '-p', String(port), '-t', String(seconds), '-P', String(streams), '-J'], { timeoutMs: (seconds + 30) * 1000 });
    let j: any;
    try {
      j = JSON.parse(r.stdout);
    } catch {
      throw new Error(`iperf3 -c ${s.server.ip} (${s.name}) exited ${r.code}: ${r.stderr || r.stdout}`);
    }
    if (j.error) throw new Error(`iperf3 -c ${s.server.ip} (${s.name}): ${j.error}`);
    return {
      streams, seconds,
      gbps: j.end.sum_received.bits_per_second / 1e9,
      retransmits: j.end.sum_sent.retransmits ?? 0,
      cpuClient: j.end.cpu_utilization_percent?.host_total ?? NaN,
      cpuServer: j.end.cpu_utilization_percent?.remote_total ?? NaN,
    };
  } finally {
    // A one-off server (-1) exits after the test; make sure it has before the next run reuses the port.
    const timer = setTimeout(() => server.kill('SIGKILL'), 5_000);
    await serverExit;
    clearTimeout(timer);
  }
}

/** `ping -c count -i interval` client -> server; the per-packet RTTs in microseconds. */
export async function ping(lab: Lab, s: Setup, count = 200, interval = 0.005): Promise<number[]> {
  const r = await lab.run(s.client.ns, ['ping', '-n', '-c', String(count), '-i', String(interval), '-W', '1', s.server.ip], { timeoutMs: 60_000 });
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  if (times.length < count * 0.9) throw new Error(`ping ${s.server.ip} (${s.name}): ${times.length}/${count} replies\n${r.stdout}${r.stderr}`);
  return times;
}

/** The TCP RR loop client -> server for `seconds`; one RTT per transaction, in microseconds. */
export async function tcpRR(lab: Lab, s: Setup, seconds: number, port = 5202): Promise<number[]> {
  const node = [process.execPath, '--import', 'tsx', TCP_RR];
  const server = lab.spawnIn(s.server.ns, [...node, 'server', String(port)], { cwd: REPO });
  let serverErr = '';
  server.stderr!.on('data', (c) => { serverErr += c; });
  const serverExit = new Promise<void>((r) => (server.exitCode !== null ? r() : server.once('exit', () => r())));
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`tcp-rr server in ${s.server.ns} not listening after 15 s: ${serverErr}`)), 15_000);
      server.stdout!.on('data', (c) => {
        out += c;
        if (out.includes('listening')) { clearTimeout(timer); resolve(); }
      });
      server.once('exit', (code) => { clearTimeout(timer); reject(new Error(`tcp-rr server exited ${code}: ${serverErr}`)); });
    });
    const r = await lab.run(s.client.ns, [...node, 'client', s.server.ip, String(port), String(seconds)], { cwd: REPO, timeoutMs: (seconds + 30) * 1000 });
    if (r.code !== 0) throw new Error(`tcp-rr client -> ${s.server.ip} (${s.name}) exited ${r.code}: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { samplesUs: number[] }).samplesUs;
  } finally {
    const timer = setTimeout(() => server.kill('SIGKILL'), 5_000);
    await serverExit;
    clearTimeout(timer);
  }
}
