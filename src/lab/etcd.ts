// The one way to run a single-member etcd, for the lab, the tests and the
// benchmarks: the same command line (fast elections, errors only in the
// log), started through processes.ts and ready once /health says true.
//
//  - The lab's own etcd (`lab up --store etcd`) runs inside the underlay
//    netns, listening on the bridge address (where every node's agent
//    reaches it over its eth0, as across machines) and on that netns's
//    loopback. The netns is the lab's alone, so the standard ports are free.
//    Detached, data dir and log in the lab directory; the pid goes into
//    lab.json.
//  - A throwaway etcd (store tests, store benchmark) runs in this netns on
//    127.0.0.1 with random high ports and a temporary data dir, piped, and
//    goes (process and dir) when its owner stops it or this process exits.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MembraneError } from '../shared/errors.ts';
import { makeEtcdPki, type EtcdPki } from './etcd-pki.ts';
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT, UNDERLAY_GATEWAY } from './layout.ts';
import { httpGetIn } from './netns-http.ts';
import { killProcessGroup, sleep, startProcess, throwIfAborted, type ProcessHandle, type ProcessOutput } from './processes.ts';
import type { EtcdRecord } from './record.ts';

export const ETCD_BIN = '/usr/bin/etcd';
/** The lab's TLS etcd serves /health on plain http here, on the underlay netns's loopback only. */
const ETCD_METRICS_PORT = 2381;

/** True when etcd is installed (the etcd store tests skip without it). */
export function haveEtcd(): boolean {
  return existsSync(ETCD_BIN);
}

interface EtcdMember {
  name: string;
  dataDir: string;
  /** Client URLs it listens on; the first is the one it advertises. */
  clientURLs: string[];
  peerURL: string;
  /** Run inside this named netns (`ip netns exec`); default: this process's. */
  netns?: string;
  /** Client URLs are https:// and every client must present a certificate signed by the CA. */
  tls?: { ca: string; cert: string; key: string };
  /** Plain-http URL for /health and /metrics (a TLS etcd with client-cert auth answers nothing else without a certificate). */
  metricsURL?: string;
}

/** The command line of a single-member etcd. */
function memberCommand(m: EtcdMember): string[] {
  return [
    ...(m.netns ? ['ip', 'netns', 'exec', m.netns] : []), ETCD_BIN,
    '--name', m.name, '--data-dir', m.dataDir,
    '--listen-client-urls', m.clientURLs.join(','), '--advertise-client-urls', m.clientURLs[0]!,
    '--listen-peer-urls', m.peerURL, '--initial-advertise-peer-urls', m.peerURL, '--initial-cluster', `${m.name}=${m.peerURL}`,
    // One member: it elects itself after one election timeout; keep that short.
    '--heartbeat-interval', '10', '--election-timeout', '100', '--log-level', 'error',
    ...(m.tls ? ['--cert-file', m.tls.cert, '--key-file', m.tls.key, '--trusted-ca-file', m.tls.ca, '--client-cert-auth'] : []),
    ...(m.metricsURL ? ['--listen-metrics-urls', m.metricsURL] : []),
  ];
}

/** True when the etcd at `clientURL` (reached from `netns` if given) reports itself healthy. */
export async function etcdAnswersHealthy(clientURL: string, netns?: string): Promise<boolean> {
  const url = `${clientURL}/health`;
  try {
    if (netns) {
      const r = await httpGetIn(netns, url, 500);
      return r.status === 200 && /"health":\s*"true"/.test(r.body);
    }
    const res = await fetch(url, { signal: AbortSignal.timeout(500) });
    return res.status === 200 && /"health":\s*"true"/.test(await res.text());
  } catch {
    return false;
  }
}

/** Waits until `health()` holds; throws E_LAB with the tail of etcd's output if it exits first or stays unhealthy. */
async function waitEtcdHealthy(p: ProcessHandle, health: () => Promise<boolean>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    throwIfAborted(signal, 'start etcd');
    if (!p.running()) throw new MembraneError('start etcd', { code: 'E_LAB', cause: `it exited; ${p.outputName}:\n${p.output(5)}` });
    if (await health()) return;
    await sleep(20);
  }
  throw new MembraneError('start etcd', { code: 'E_LAB', cause: `not healthy after ${timeoutMs} ms; ${p.outputName}:\n${p.output(5)}` });
}

/** Starts etcd (`argv` from memberCommand) and waits until it is healthy; `onStart` sees the process at once (to record its pid). */
async function launch(argv: string[], output: ProcessOutput, health: () => Promise<boolean>, timeoutMs: number, onStart?: (p: ProcessHandle) => void, signal?: AbortSignal): Promise<ProcessHandle> {
  const p = startProcess(argv, output);
  onStart?.(p);
  await waitEtcdHealthy(p, health, timeoutMs, signal);
  return p;
}

// ---- the lab's etcd ----

export function etcdCommand(lab: string, underlayNs: string, dataDir: string, tls?: EtcdMember['tls']): string[] {
  const scheme = tls ? 'https' : 'http';
  return memberCommand({
    name: lab, dataDir, netns: underlayNs, peerURL: `http://127.0.0.1:${ETCD_PEER_PORT}`,
    clientURLs: [`${scheme}://${UNDERLAY_GATEWAY}:${ETCD_CLIENT_PORT}`, `${scheme}://127.0.0.1:${ETCD_CLIENT_PORT}`],
    ...(tls ? { tls, metricsURL: `http://127.0.0.1:${ETCD_METRICS_PORT}` } : {}),
  });
}

/**
 * The lab's etcd: plain http, or (`tls`) https with client-certificate
 * authentication and certificates made for the lab in `dir`/etcd-pki (the
 * server's names the bridge address and loopback; the agents share one client
 * certificate).
 */
export function newEtcdRecord(lab: string, underlayNs: string, dir: string, tls = false): EtcdRecord {
  if (!haveEtcd()) {
    throw new MembraneError('lab up --store etcd', { code: 'E_LAB', cause: `${ETCD_BIN} is not installed`, hint: 'apt-get install etcd-server' });
  }
  const dataDir = `${dir}/etcd`;
  const pki = tls ? `${dir}/etcd-pki` : undefined;
  const files = pki ? { ca: `${pki}/ca.crt`, cert: `${pki}/client.crt`, key: `${pki}/client.key` } : undefined;
  return {
    endpoint: `${tls ? 'https' : 'http'}://${UNDERLAY_GATEWAY}:${ETCD_CLIENT_PORT}`, dataDir, logFile: `${dir}/etcd.log`,
    argv: etcdCommand(lab, underlayNs, dataDir, pki ? { ca: `${pki}/ca.crt`, cert: `${pki}/server.crt`, key: `${pki}/server.key` } : undefined),
    ...(files ? { tls: files } : {}),
  };
}

/** Starts the lab's etcd (rec.argv, detached) and records its pid via `onPid` at once; resolves when it reports healthy. Makes the lab's certificates first when it uses TLS and has none yet. */
export async function startEtcd(rec: EtcdRecord, underlayNs: string, onPid: (pid: number) => void, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
  mkdirSync(rec.dataDir, { recursive: true, mode: 0o700 });
  if (rec.tls && !existsSync(rec.tls.cert)) makeEtcdPki(dirname(rec.tls.ca), [UNDERLAY_GATEWAY, '127.0.0.1']);
  await launch(rec.argv, { logFile: rec.logFile }, () => etcdHealthy(underlayNs, rec), timeoutMs, (p) => onPid(p.pid), signal);
}

/** The lab's etcd is healthy, asked on the underlay netns's loopback (a TLS etcd: on its plain-http metrics port). */
export function etcdHealthy(underlayNs: string, rec?: Pick<EtcdRecord, 'tls'>): Promise<boolean> {
  return etcdAnswersHealthy(`http://127.0.0.1:${rec?.tls ? ETCD_METRICS_PORT : ETCD_CLIENT_PORT}`, underlayNs);
}

export async function stopEtcd(rec: EtcdRecord): Promise<void> {
  if (rec.pid) await killProcessGroup(rec.pid, 'SIGKILL');
}

// ---- throwaway etcd ----

export interface EtcdInstance {
  /** `127.0.0.1:<port>` */
  readonly endpoint: string;
  /** The endpoint as a client URL: `http://127.0.0.1:<port>`, or https:// with `tls`. */
  readonly url: string;
  /** With `{ tls: true }`: the certificates (etcd requires a client certificate signed by `pki.ca`). */
  readonly pki?: EtcdPki;
  readonly clientPort: number;
  readonly dataDir: string;
  /** Kills etcd (SIGKILL, like a crash) but keeps the data dir and ports for `restart()`. */
  halt(): Promise<void>;
  /** Starts etcd again on the same dir and ports and waits until it is healthy. */
  restart(): Promise<void>;
  /** Kills etcd and removes the data dir. */
  stop(): Promise<void>;
}

/** Live throwaway instances: their data dirs go at process exit or on SIGINT/SIGTERM even if nobody stopped them. */
const throwaway = new Set<{ proc?: ProcessHandle; dir: string; pki?: string }>();
let throwawayHooks = false;

function removeThrowaway(): void {
  for (const inst of throwaway) {
    if (inst.proc) try { process.kill(inst.proc.pid, 'SIGKILL'); } catch { /* already gone */ }
    rmSync(inst.dir, { recursive: true, force: true });
    if (inst.pki) rmSync(inst.pki, { recursive: true, force: true });
  }
  throwaway.clear();
}

/** Installed with the first throwaway etcd only: a process that never starts one (the CLI) keeps its own signal handling. */
function installThrowawayHooks(): void {
  if (throwawayHooks) return;
  throwawayHooks = true;
  process.once('exit', removeThrowaway);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => { removeThrowaway(); process.exit(130); });
  }
}

// Where setpriv exists, etcd also gets SIGKILL when this process dies without running its exit hooks.
const pdeathsig = (): string[] => (existsSync('/usr/bin/setpriv') ? ['/usr/bin/setpriv', '--pdeathsig', 'SIGKILL'] : []);

const randomPort = (): number => 20_000 + Math.floor(Math.random() * 40_000);

/**
 * Starts a single-member etcd on 127.0.0.1 with random high ports (retrying
 * on a port conflict) and a temporary data dir; with `tls`, https with
 * client-certificate authentication and a fresh set of certificates (in a
 * temporary dir of their own). The caller owns it: call `stop()` (also done
 * at process exit).
 */
export async function startThrowawayEtcd(timeoutMs = 10_000, opts: { tls?: boolean } = {}): Promise<EtcdInstance> {
  installThrowawayHooks();
  const dir = mkdtempSync(join(tmpdir(), 'membrane-etcd-'));
  const inst: { proc?: ProcessHandle; dir: string; pki?: string } = { dir };
  throwaway.add(inst);
  let pki: EtcdPki | undefined;
  if (opts.tls) {
    inst.pki = mkdtempSync(join(tmpdir(), 'membrane-etcd-pki-'));
    pki = makeEtcdPki(inst.pki, ['127.0.0.1']);
  }
  const name = `mbt-${process.pid}`;
  let clientPort = 0;
  let healthPort = 0;
  let argv: string[] = [];
  const start = async () => {
    inst.proc = await launch([...pdeathsig(), ...argv], 'pipe', () => etcdAnswersHealthy(`http://127.0.0.1:${healthPort}`), timeoutMs, (p) => { inst.proc = p; })
      .catch(async (e) => { await inst.proc?.stop('SIGKILL'); inst.proc = undefined; throw e; });
  };
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5 && !inst.proc; attempt++) {
    clientPort = randomPort();
    const peerPort = randomPort();
    healthPort = pki ? randomPort() : clientPort;
    if (new Set([clientPort, peerPort, healthPort]).size !== (pki ? 3 : 2)) continue;
    argv = memberCommand({
      name, dataDir: dir, clientURLs: [`${pki ? 'https' : 'http'}://127.0.0.1:${clientPort}`], peerURL: `http://127.0.0.1:${peerPort}`,
      ...(pki ? { tls: { ca: pki.ca, cert: pki.serverCert, key: pki.serverKey }, metricsURL: `http://127.0.0.1:${healthPort}` } : {}),
    });
    try {
      await start();
    } catch (err) {
      lastErr = err;
      // A half-initialised data dir from the failed attempt would pin the old peer URL.
      rmSync(dir, { recursive: true, force: true });
      if (!/address already in use/i.test(String(err))) break;
    }
  }
  if (!inst.proc) {
    throwaway.delete(inst);
    rmSync(dir, { recursive: true, force: true });
    if (inst.pki) rmSync(inst.pki, { recursive: true, force: true });
    throw lastErr instanceof Error ? lastErr : new MembraneError('start etcd', { code: 'E_LAB', cause: String(lastErr) });
  }

  const kill = async () => {
    const p = inst.proc;
    inst.proc = undefined;
    await p?.stop('SIGKILL');
  };
  return {
    endpoint: `127.0.0.1:${clientPort}`,
    url: `${pki ? 'https' : 'http'}://127.0.0.1:${clientPort}`,
    ...(pki ? { pki } : {}),
    clientPort,
    dataDir: dir,
    halt: kill,
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
      if (inst.pki) rmSync(inst.pki, { recursive: true, force: true });
      throwaway.delete(inst);
    },
  };
}
