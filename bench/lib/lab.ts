// Everything one benchmark run creates, so it can all be removed on every
// path: network namespaces (uniquely named after this process), temp
// directories, bpffs pin directories and child processes started inside the
// namespaces. cleanup() is synchronous and idempotent, so it can run from a
// signal handler, from `exit`, and at the end of a normal run.
import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class Lab {
  /** Short unique prefix for names (netns, node names, dirs). */
  readonly tag: string;
  /** Temp directory of this run (removed by cleanup). */
  readonly dir: string;
  private readonly netns: string[] = [];
  private readonly paths: string[] = [];
  private readonly children = new Set<ChildProcess>();
  private done = false;

  constructor(prefix: string) {
    this.tag = `${prefix}${process.pid.toString(36)}`;
    this.dir = `/tmp/${this.tag}`;
    mkdirSync(this.dir, { recursive: true });
    this.paths.push(this.dir);
    process.once('exit', () => this.cleanup());
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(sig, () => {
        process.stderr.write(`\n${sig}: removing what this run created\n`);
        this.cleanup();
        process.exit(130);
      });
    }
  }

  /** Creates netns `<tag>-<suffix>` (lo up); removed by cleanup. Returns its name. */
  addNetns(suffix: string): string {
    const name = `${this.tag}-${suffix}`;
    execFileSync('ip', ['netns', 'add', name]);
    this.netns.push(name);
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A path (file or directory, e.g. a bpffs pin directory) removed by cleanup. */
  removeLater(path: string): string {
    this.paths.push(path);
    return path;
  }

  /** A child process killed (SIGKILL) by cleanup if it is still running. */
  track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * Starts `argv` inside netns `ns` (`ip netns exec` execs it, so the child's
   * pid is the program's own). The caller owns the child; cleanup kills it.
   */
  spawnIn(ns: string, argv: string[], opts: { cwd?: string } = {}): ChildProcess {
    return this.track(spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd }));
  }

  /** Runs `argv` in `ns` to completion (killed after timeoutMs) and collects its output; never rejects on a non-zero exit. */
  run(ns: string, argv: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<RunResult> {
    const child = this.spawnIn(ns, argv, opts);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c) => { stdout += c; });
    child.stderr!.on('data', (c) => { stderr += c; });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
      child.once('error', (e) => { clearTimeout(timer); reject(e); });
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
  }

  /** Kills tracked children, deletes the namespaces (and with them every device in them), removes paths. */
  cleanup(): void {
    if (this.done) return;
    this.done = true;
    for (const c of this.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const ns of this.netns.reverse()) {
      try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
    }
    for (const p of this.paths.reverse()) rmSync(p, { recursive: true, force: true });
  }
}
