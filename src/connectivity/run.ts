// Running the tools of the connectivity test (ping, nc, iperf3, tcpdump)
// inside a lab namespace with `ip netns exec`: one-shot commands with a
// deadline, and servers that are ready once they print a line. Each runs in
// its own process group, so stopping it also stops what it started (a
// `sh -c 'nc | wc'` pipeline); any still running when this process exits
// are killed then.
import { spawn, type ChildProcess } from 'node:child_process';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

const live = new Set<ChildProcess>();

function killGroup(child: ChildProcess, sig: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try { process.kill(-child.pid, sig); } catch { /* group gone */ }
}

/** Kills every tool still running (their whole process groups). */
export function killAllTools(): void {
  for (const c of live) killGroup(c, 'SIGKILL');
}

process.once('exit', killAllTools);

interface Spawned {
  child: ChildProcess;
  /** Resolves once the process exited and its output was read. */
  done: Promise<RunResult>;
  stdout: () => string;
  stderr: () => string;
}

function spawnIn(netns: string, argv: string[], input?: string | Buffer): Spawned {
  const t0 = performance.now();
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], detached: true });
  live.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  if (input !== undefined) {
    child.stdin!.on('error', () => { /* exited before reading */ });
    child.stdin!.end(input);
  }
  const done = new Promise<RunResult>((resolve) => {
    let exitCode = 1;
    child.on('error', (e) => { live.delete(child); resolve({ code: 127, stdout, stderr: stderr + e.message, ms: performance.now() - t0 }); });
    child.on('exit', (code, sig) => {
      live.delete(child);
      exitCode = code ?? (sig === 'SIGKILL' ? 137 : 143);
      // Something the process started may still hold its stdout open (nc in `nc | wc`): stop the
      // group, and if the pipes still do not close, stop reading them.
      killGroup(child, 'SIGKILL');
      setTimeout(() => { child.stdout!.destroy(); child.stderr!.destroy(); }, 300).unref();
    });
    child.on('close', () => resolve({ code: exitCode, stdout, stderr, ms: performance.now() - t0 }));
  });
  return { child, done, stdout: () => stdout, stderr: () => stderr };
}

/** Runs argv in `netns`; resolves with exit code and output (killed after timeoutMs: code 124). Never rejects. */
export async function nsRun(netns: string, argv: string[], opts: { timeoutMs?: number; input?: string | Buffer } = {}): Promise<RunResult> {
  const s = spawnIn(netns, argv, opts.input);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; killGroup(s.child, 'SIGKILL'); }, opts.timeoutMs ?? 10_000);
  const r = await s.done;
  clearTimeout(timer);
  return timedOut ? { ...r, code: 124 } : r;
}

/** A background command in a netns (a server, a capture). */
export interface Background {
  child: ChildProcess;
  /** Resolves with the whole output once it exits (or is stopped). */
  done: Promise<RunResult>;
  /** SIGTERM to its process group (SIGKILL after 1 s); resolves with its output. */
  stop(): Promise<RunResult>;
}

/**
 * Starts argv in `netns` and resolves once `ready` matches its stdout or
 * stderr (e.g. "listening on"). Rejects if it exits first or after
 * readyTimeoutMs; otherwise the caller must stop() it (it is killed after
 * timeoutMs in any case).
 */
export function nsStart(netns: string, argv: string[], ready: RegExp, opts: { readyTimeoutMs?: number; timeoutMs?: number } = {}): Promise<Background> {
  const s = spawnIn(netns, argv);
  const hard = setTimeout(() => killGroup(s.child, 'SIGKILL'), opts.timeoutMs ?? 15_000);
  void s.done.then(() => clearTimeout(hard));
  const bg: Background = {
    child: s.child,
    done: s.done,
    stop: async () => {
      killGroup(s.child, 'SIGTERM');
      const t = setTimeout(() => killGroup(s.child, 'SIGKILL'), 1000);
      const r = await s.done;
      clearTimeout(t);
      return r;
    },
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(poll);
      if (err) { killGroup(s.child, 'SIGKILL'); reject(err); } else resolve(bg);
    };
    const poll = setInterval(() => { if (ready.test(s.stdout()) || ready.test(s.stderr())) finish(); }, 5);
    const timer = setTimeout(() => finish(new Error(`${argv[0]} in ${netns}: not ready after ${opts.readyTimeoutMs ?? 3000} ms: ${s.stderr().trim().split('\n').pop() ?? ''}`)), opts.readyTimeoutMs ?? 3000);
    void s.done.then((r) => {
      if (ready.test(r.stdout) || ready.test(r.stderr)) return finish();
      finish(new Error(`${argv[0]} in ${netns} exited ${r.code} before it was ready: ${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}`));
    });
  });
}
