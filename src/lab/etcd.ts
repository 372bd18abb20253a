// The lab's own etcd (`lab up --store etcd`): a single member inside the
// underlay netns, listening on the bridge address (where every node's agent
// reaches it over its eth0, as across machines) and on that netns's
// loopback. The netns is the lab's alone, so the standard ports are free.
// Data dir and log in the lab directory; the pid goes into lab.json.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';
import { ETCD_CLIENT_PORT, ETCD_PEER_PORT, UNDERLAY_GATEWAY } from './layout.ts';
import { httpGetIn } from './netns-http.ts';
import { alive, killProcessGroup, sleep, spawnDetached, throwIfAborted } from './processes.ts';
import type { EtcdRecord } from './record.ts';

export const ETCD_BIN = '/usr/bin/etcd';

export function etcdCommand(lab: string, underlayNs: string, dataDir: string): string[] {
  const peer = `http://127.0.0.1:${ETCD_PEER_PORT}`;
  return [
    'ip', 'netns', 'exec', underlayNs, ETCD_BIN,
    '--name', lab, '--data-dir', dataDir,
    '--listen-client-urls', `http://${UNDERLAY_GATEWAY}:${ETCD_CLIENT_PORT},http://127.0.0.1:${ETCD_CLIENT_PORT}`,
    '--advertise-client-urls', `http://${UNDERLAY_GATEWAY}:${ETCD_CLIENT_PORT}`,
    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer, '--initial-cluster', `${lab}=${peer}`,
    // One member: it elects itself after one election timeout; keep that short.
    '--heartbeat-interval', '10', '--election-timeout', '100', '--log-level', 'error',
  ];
}

export function newEtcdRecord(lab: string, underlayNs: string, dir: string): EtcdRecord {
  if (!existsSync(ETCD_BIN)) {
    throw new MembraneError('lab up --store etcd', { code: 'E_LAB', cause: `${ETCD_BIN} is not installed`, hint: 'apt-get install etcd-server' });
  }
  const dataDir = `${dir}/etcd`;
  return { endpoint: `http://${UNDERLAY_GATEWAY}:${ETCD_CLIENT_PORT}`, dataDir, logFile: `${dir}/etcd.log`, argv: etcdCommand(lab, underlayNs, dataDir) };
}

function logTail(rec: EtcdRecord): string {
  try {
    return readFileSync(rec.logFile, 'utf8').trimEnd().split('\n').slice(-5).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Starts etcd (rec.argv) and records its pid via `onPid` at once; resolves when it reports healthy. */
export async function startEtcd(rec: EtcdRecord, underlayNs: string, onPid: (pid: number) => void, timeoutMs = 10_000, signal?: AbortSignal): Promise<void> {
  mkdirSync(rec.dataDir, { recursive: true, mode: 0o700 });
  const pid = spawnDetached(rec.argv, rec.logFile);
  onPid(pid);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    throwIfAborted(signal, 'start etcd');
    if (!alive(pid)) throw new MembraneError('start etcd', { code: 'E_LAB', cause: `it exited; ${rec.logFile}:\n${logTail(rec)}` });
    if (await etcdHealthy(underlayNs)) return;
    await sleep(20);
  }
  throw new MembraneError('start etcd', { code: 'E_LAB', cause: `not healthy after ${timeoutMs} ms; ${rec.logFile}:\n${logTail(rec)}` });
}

export async function etcdHealthy(underlayNs: string): Promise<boolean> {
  try {
    const r = await httpGetIn(underlayNs, `http://127.0.0.1:${ETCD_CLIENT_PORT}/health`, 500);
    return r.status === 200 && /"health":\s*"true"/.test(r.body);
  } catch {
    return false;
  }
}

export async function stopEtcd(rec: EtcdRecord): Promise<void> {
  if (rec.pid) await killProcessGroup(rec.pid, 'SIGKILL');
}
