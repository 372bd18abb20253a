// A throwaway etcd for tests: loopback only, random free ports, a temporary
// data dir, fast elections. `stop()` kills it and removes the dir; `halt()` +
// `restart()` simulate an outage on the same dir and ports. Every instance is
// killed and its dir removed at process exit or SIGINT/SIGTERM, and where
// setpriv exists etcd also gets SIGKILL if this process dies without cleanup.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ETCD_BIN = '/usr/bin/etcd';
export const haveEtcd = existsSync(ETCD_BIN);

export interface EtcdInstance {
  /** `127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly clientPort: number;
  readonly dataDir: string;
  /** Kills etcd (SIGKILL, like a crash) but keeps the data dir and ports for `restart()`. */
  halt(): Promise<void>;
  /** Starts etcd again on the same dir and ports and waits until it is healthy. */
  restart(): Promise<void>;
  /** Kills etcd and removes the data dir. */
  stop(): Promise<void>;
}

const live = new Set<{ proc?: ChildProcess; dir: string }>();

function cleanupAll(): void {
  for (const inst of live) {
    try { inst.proc?.kill('SIGKILL'); } catch { /* already gone */ }
    rmSync(inst.dir, { recursive: true, force: true });
  }
  live.clear();
}
process.once('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { cleanupAll(); process.exit(130); });
}

const usePdeathsig = existsSync('/usr/bin/setpriv');

function randomPort(): number {
  return 20_000 + Math.floor(Math.random() * 40_000);
}

async function healthy(port: number): Promise<boolean> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(500) });
    const body = (await res.json()) as { health?: string };
    return body.health === 'true';
  } catch {
    return false;
  }
}

function exited(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) resolve();
    else proc.once('exit', () => resolve());
  });
}

/** Spawns etcd and waits for /health; rejects (with its stderr) if it exits or stays unhealthy. */
async function launch(name: string, dir: string, clientPort: number, peerPort: number): Promise<ChildProcess> {
  const args = [
    '--name', name, '--data-dir', dir,
    '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `${name}=http://127.0.0.1:${peerPort}`,
    '--heartbeat-interval', '10', '--election-timeout', '100', '--log-level', 'error',
  ];
  const [cmd, argv] = usePdeathsig ? ['/usr/bin/setpriv', ['--pdeathsig', 'SIGKILL', ETCD_BIN, ...args]] : [ETCD_BIN, args];
  const proc = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  let gone = false;
  proc.once('exit', () => { gone = true; });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (gone) throw new Error(`etcd exited during startup: ${stderr.trim() || 'no output'}`);
    if (await healthy(clientPort)) return proc;
    await new Promise((r) => setTimeout(r, 25));
  }
  proc.kill('SIGKILL');
  await exited(proc);
  throw new Error(`etcd on 127.0.0.1:${clientPort} not healthy after 10s: ${stderr.trim()}`);
}

/**
 * Starts a single-member etcd on 127.0.0.1 with random high ports (retrying on a
 * port conflict). The caller owns it: call `stop()` (also done at process exit).
 */
export async function startEtcd(): Promise<EtcdInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'membrane-etcd-'));
  const rec: { proc?: ChildProcess; dir: string } = { dir };
  live.add(rec);
  const name = `mbt-${process.pid}`;
  let clientPort = 0;
  let peerPort = 0;
  let lastErr: unknown;
  for (let attempt = 0; attempt < 5 && !rec.proc; attempt++) {
    clientPort = randomPort();
    peerPort = randomPort();
    if (peerPort === clientPort) continue;
    try {
      rec.proc = await launch(name, dir, clientPort, peerPort);
    } catch (err) {
      lastErr = err;
      // A half-initialised data dir from the failed attempt would pin the old peer URL.
      rmSync(dir, { recursive: true, force: true });
      if (!/address already in use/i.test(String(err))) break;
    }
  }
  if (!rec.proc) {
    live.delete(rec);
    rmSync(dir, { recursive: true, force: true });
    throw lastErr instanceof Error ? lastErr : new Error(String(lastErr));
  }

  const kill = async () => {
    const p = rec.proc;
    rec.proc = undefined;
    if (!p) return;
    p.kill('SIGKILL');
    await exited(p);
  };
  return {
    endpoint: `127.0.0.1:${clientPort}`,
    clientPort,
    dataDir: dir,
    halt: kill,
    restart: async () => {
      await kill();
      rec.proc = await launch(name, dir, clientPort, peerPort);
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
      live.delete(rec);
    },
  };
}
