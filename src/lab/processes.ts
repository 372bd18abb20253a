// The lab's long-lived processes (agents, etcd): started detached in their
// own process group with output to a log file, so they outlive `lab up`;
// found again by pid, and also by their command line (every one of them
// names a path inside the lab's directory), so `lab down` finds the ones a
// crashed `lab up` started but never recorded.
import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';

/**
 * Starts `argv` detached (own session and process group, stdin closed,
 * stdout+stderr appended to `logFile`) and returns its pid. The caller owns
 * the process: stop it with killProcessGroup().
 */
export function spawnDetached(argv: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): number {
  const fd = openSync(logFile, 'a', 0o600);
  try {
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], env });
    if (child.pid === undefined) throw new MembraneError(`start ${argv[0]}`, { code: 'E_LAB', cause: 'spawn failed' });
    child.on('error', () => { /* reported through the log / readiness wait */ });
    child.unref();
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

/** The process's command line, or undefined when it is gone (or a zombie). */
export function cmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (raw === '') return undefined;
    return raw.replace(/\0$/, '').split('\0');
  } catch {
    return undefined;
  }
}

/**
 * True while `pid` exists and is not a zombie. Unlike cmdline(), which reads
 * empty for a moment while a process execs (`ip netns exec` becoming the
 * real program), this never reports a starting process as gone.
 */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 3 (state) follows the parenthesised command name, which may contain spaces.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** True when `pid` runs and its command line mentions `marker` (guards against a recycled pid). */
export function isOurs(pid: number | undefined, marker: string): boolean {
  if (!pid) return false;
  const c = cmdline(pid);
  return c !== undefined && c.some((a) => a.includes(marker));
}

/**
 * Pids of the lab's own processes found by command line: an agent started
 * with `--config <dir>/...` or an etcd with `--data-dir <dir>/...`. Nothing
 * else that merely mentions the directory (a `tail -f` of a log) matches.
 */
export function findLabProcesses(dir: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid) continue;
    const argv = cmdline(pid);
    if (argv?.some((a, i) => (a === '--config' || a === '--data-dir') && argv[i + 1]?.startsWith(`${dir}/`))) out.push(pid);
  }
  return out;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  // The process group first (agent and anything it spawned), then the pid itself (if it left the group).
  try { process.kill(-pid, sig); } catch { /* no such group */ }
  try { process.kill(pid, sig); } catch { /* gone */ }
}

/** Sends `sig` to the process (and its group) and waits up to `timeoutMs` for it to go. Returns true once gone. */
export async function killProcessGroup(pid: number, sig: NodeJS.Signals = 'SIGKILL', timeoutMs = 3000): Promise<boolean> {
  signal(pid, sig);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await sleep(10);
  }
  if (sig !== 'SIGKILL') return killProcessGroup(pid, 'SIGKILL', timeoutMs);
  return !alive(pid);
}

/** Throws E_INTERRUPTED once `signal` is aborted (lab up interrupted by Ctrl-C): checked before every creation and in every wait. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new MembraneError(what, { code: 'E_INTERRUPTED', cause: 'interrupted' });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
