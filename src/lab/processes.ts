// The long-lived processes the lab, the tests and the benchmarks start
// (agents, etcd), in one of two ways:
//  - detached, for the lab: own session and process group, output appended
//    to a log file, so they outlive `lab up`; found again by pid, and also by
//    their command line (every one of them names a path inside the lab's
//    directory), so `lab down` finds the ones a crashed `lab up` started but
//    never recorded;
//  - piped, for tests and benchmarks: output kept in memory, and killed when
//    this process exits, because nothing else would ever stop them.
// Either way the caller gets the same handle (ProcessHandle).
import { spawn, type ChildProcess } from 'node:child_process';
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

/** A started process, however it was started: what readiness waits and cleanup need. */
export interface ProcessHandle {
  /** Its pid; for a detached process also its process group. */
  readonly pid: number;
  /** The child, only for a piped process (a detached one is not waited for by this process). */
  readonly child?: ChildProcess;
  /** Where its output goes, for error messages: the log file, or "its output". */
  readonly outputName: string;
  /** True until it has exited. */
  running(): boolean;
  /** Its output so far: everything, or the last `lines` lines. */
  output(lines?: number): string;
  /**
   * Sends `signal` (default SIGTERM) and resolves once it is gone, sending
   * SIGKILL after `graceMs`. A detached process gets the signal on its
   * whole process group.
   */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

/** Where a process's output goes: a log file (and it runs detached), or a pipe into this process. */
export type ProcessOutput = { logFile: string } | 'pipe';

const lastLines = (text: string, lines?: number): string =>
  lines === undefined ? text : text.trimEnd().split('\n').slice(-lines).join('\n');

/** The handle of a detached process known by pid (also one a previous command started and recorded). */
export function detachedProcess(pid: number | undefined, logFile: string): ProcessHandle {
  return {
    pid: pid ?? 0,
    outputName: logFile,
    // An unknown pid (not spawned yet) is not reported as gone: the readiness wait times out instead.
    running: () => pid === undefined || alive(pid),
    output: (lines) => {
      try {
        return lastLines(readFileSync(logFile, 'utf8'), lines);
      } catch {
        return '(no log)';
      }
    },
    stop: async (signal = 'SIGTERM', graceMs = 10_000) => {
      if (pid !== undefined) await killProcessGroup(pid, signal, graceMs);
    },
  };
}

const piped = new Set<ChildProcess>();
let pipedExitHook = false;

/**
 * Starts `argv` with its output piped into memory. It belongs to this
 * process: it is SIGKILLed when this process exits, if still running.
 */
function spawnPiped(argv: string[], env: NodeJS.ProcessEnv): ProcessHandle {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env });
  if (child.pid === undefined) {
    child.on('error', () => { /* reported here */ });
    throw new MembraneError(`start ${argv[0]}`, { code: 'E_LAB', cause: 'spawn failed' });
  }
  let out = '';
  child.stdout!.on('data', (c) => { out += c; });
  child.stderr!.on('data', (c) => { out += c; });
  child.on('error', () => { /* reported through the output / readiness wait */ });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  piped.add(child);
  void exited.then(() => piped.delete(child));
  if (!pipedExitHook) {
    pipedExitHook = true;
    process.once('exit', () => { for (const c of piped) c.kill('SIGKILL'); });
  }
  return {
    pid: child.pid,
    child,
    outputName: 'its output',
    running: () => !gone(),
    output: (lines) => lastLines(out, lines),
    stop: async (signal = 'SIGTERM', graceMs = 10_000) => {
      if (gone()) return;
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Starts `argv` detached with output to a log file, or piped into this process. */
export function startProcess(argv: string[], output: ProcessOutput, env: NodeJS.ProcessEnv = process.env): ProcessHandle {
  if (output === 'pipe') return spawnPiped(argv, env);
  return detachedProcess(spawnDetached(argv, output.logFile, env), output.logFile);
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
 * with `--config <dir>/...`, an etcd with `--data-dir <dir>/...` or the UI
 * with `--url-file <dir>/...`. Nothing
 * else that merely mentions the directory (a `tail -f` of a log) matches.
 */
export function findLabProcesses(dir: string): number[] {
  return findProcesses((argv) => argv.some((a, i) => (a === '--config' || a === '--data-dir' || a === '--url-file') && argv[i + 1]?.startsWith(`${dir}/`)));
}

/** Pids of processes whose command line has `flag` followed by exactly `value` (e.g. an agent's --config FILE). */
export function findProcessesWithArg(flag: string, value: string): number[] {
  return findProcesses((argv) => argv.some((a, i) => a === flag && argv[i + 1] === value));
}

/** Pids (this process's excepted) whose command line satisfies `match`. */
function findProcesses(match: (argv: string[]) => boolean): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (pid === process.pid) continue;
    const argv = cmdline(pid);
    if (argv && match(argv)) out.push(pid);
  }
  return out;
}

/** The process's state letter from /proc (R, S, D, T stopped, t traced, Z zombie, ...), or undefined when it is gone. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  } catch {
    return undefined;
  }
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
