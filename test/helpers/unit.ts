// Running the agent exactly as the systemd unit `membrane install --root R`
// wrote would run it, on a "host" that is a network namespace: the unit's
// ExecStartPre, then its ExecStart with only its Environment and its
// capability bounding set (setpriv), and with R/etc laid over /etc in a
// mount namespace of its own (an overlay), so /etc/membrane/config.yaml is
// the installed file. That namespace is a slave of this machine's, so mounts
// made later (a pod's /run/netns/NAME) reach the agent, as under systemd,
// where it runs in the host's. The unit's KillSignal (SIGHUP) stops it.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { execFileSync } from 'node:child_process';
import { apiCall } from '../../src/api/client.ts';
import { parseUnit } from '../../src/cli/install/plan.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface UnitAgent {
  pid: number;
  log: () => string;
  /** Resolves with the exit code once it exited. */
  exited: Promise<number | null>;
  /** Sends the unit's KillSignal (SIGHUP) and waits for the exit code. */
  stop: () => Promise<number | null>;
}

/** The installed unit of `root`, parsed. */
export function installedUnit(root: string): ReturnType<typeof parseUnit> {
  return parseUnit(readFileSync(`${root}/etc/systemd/system/membrane-agent.service`, 'utf8'));
}

/**
 * Starts the agent of the unit installed under `root` in netns `ns` and
 * waits until its API (`socket`) says ok; killed when `t` ends. Throws with
 * its output if it exits or is not ready in 30 s.
 */
export async function startAsUnit(t: TestContext, root: string, ns: string, socket: string): Promise<UnitAgent> {
  const unit = installedUnit(root);
  const net = `--net=/run/netns/${ns}`;
  if (unit.execStartPre) execFileSync('nsenter', [net, '/bin/sh', '-c', unit.execStartPre]);
  const caps = unit.capabilities.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`).join(',');
  const envArgs = Object.entries(unit.env).map(([k, v]) => `${k}=${v}`);
  const script = `mount -t overlay membrane-etc -o lowerdir=${root}/etc:/etc /etc && exec "$@"`;
  const child = spawn('nsenter', [
    net, 'unshare', '--mount', '--propagation', 'slave', '/bin/sh', '-c', script, 'sh',
    'setpriv', '--inh-caps=-all', `--bounding-set=-all,${caps}`, 'env', '-i', ...envArgs, ...unit.execStart,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (c) => { log += c; });
  child.stderr.on('data', (c) => { log += c; });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.after(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the agent exited ${child.exitCode}:\n${log}`);
    try {
      const h = await apiCall<{ status: string }>(socket, 'GET', '/v1/healthz');
      if (h.status === 'ok') break;
    } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`the agent did not become ready in 30 s:\n${log}`);
    await sleep(100);
  }
  return {
    pid: child.pid!, log: () => log, exited,
    stop: async () => { child.kill('SIGHUP'); return exited; },
  };
}
