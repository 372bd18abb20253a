// Labs for privileged tests: `membrane lab ...` run as a user runs it, a
// unique lab name per test, `lab down` when the test ends (and at process
// exit), and a check that nothing of the lab is left on the machine.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import type { LabStatus } from '../../src/lab/status.ts';
import { buildOnce, MEMBRANE } from './membrane.ts';

/** Builds bpf/*.o and cni/membrane-cni once per process (no-ops when up to date). */

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `membrane ARGS` (asynchronously, so a test can probe traffic meanwhile). */
export function lab(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(MEMBRANE, args, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, stdout, stderr, ms: performance.now() - t0 }); });
  });
}

/** Runs `membrane ARGS` inside netns `ns` (asynchronously); throws unless it exits 0. Returns stdout. */
export async function membraneIn(ns: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, MEMBRANE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => { stdout += c; });
    child.stderr.on('data', (c) => { stderr += c; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`membrane ${args.join(' ')} in ${ns} exited ${code}: ${stderr}`))));
  });
}

/** Like lab() but throws with the output when the exit code is not 0. */
export async function labOk(args: string[], opts: Parameters<typeof lab>[1] = {}): Promise<CliResult> {
  const r = await lab(args, opts);
  if (r.code !== 0) throw new Error(`membrane ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

let seq = 0;
/** A lab name unique to this test process (mbt<pid><n>). */
export function uniqueLab(): string {
  return `mbt${process.pid.toString(36)}${(seq++).toString(36)}`;
}

const live = new Set<string>();
process.once('exit', () => {
  for (const name of live) spawnSync(MEMBRANE, ['lab', 'down', '--name', name], { stdio: 'ignore' });
});

/** Registers `lab down` for when the test ends (also at process exit), then asserts the lab left nothing behind. */
export function downAfter(t: TestContext, name: string): void {
  live.add(name);
  t.after(async () => {
    const r = await lab(['lab', 'down', '--name', name]);
    live.delete(name);
    assert.equal(r.code, 0, `lab down: ${r.stderr}`);
    assertLabGone(name);
  });
}

/** `lab up` with a unique name, torn down (and checked) after the test. Returns the name and how long `lab up` took. */
export async function labUp(t: TestContext, args: string[] = [], env: Record<string, string> = {}): Promise<{ name: string; ms: number; stdout: string }> {
  buildOnce();
  const name = uniqueLab();
  downAfter(t, name);
  const r = await labOk(['lab', 'up', '--name', name, ...args], { env });
  return { name, ms: r.ms, stdout: r.stdout };
}

export async function labStatus(name: string): Promise<LabStatus> {
  return JSON.parse((await labOk(['lab', 'status', '--name', name, '-o', 'json'])).stdout);
}

/** Pids of processes whose command line mentions the lab's directory (agents, etcd). */
export function labProcesses(name: string): number[] {
  const marker = `/run/membrane/labs/${name}/`;
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try { if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(marker)) out.push(Number(d)); } catch { /* gone */ }
  }
  return out;
}

export function labNetns(name: string): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`${name}-`));
}

/** Nothing of lab `name` is left: no netns, no pins dir, no lab dir, no processes. */
export function assertLabGone(name: string): void {
  assert.deepEqual(labNetns(name), [], 'no netns of the lab is left');
  assert.equal(existsSync(`/run/membrane/bpffs/labs/${name}`), false, 'no pins dir is left');
  assert.equal(existsSync(`/run/membrane/labs/${name}`), false, 'no lab dir is left');
  assert.deepEqual(labProcesses(name), [], 'no process of the lab is left');
}

/** Names of the root netns's links (a lab must never change them). */
export function rootLinks(): string[] {
  return (JSON.parse(execFileSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' })) as { ifname: string }[]).map((l) => l.ifname).sort();
}

/** Runs argv inside a netns (synchronously); returns stdout. */
export function inNetns(ns: string, argv: string[], timeout = 15_000): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout });
}
