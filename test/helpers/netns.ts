// Throwaway network namespaces for privileged tests: unique names, removed on
// every path (pass, fail, SIGINT/SIGTERM, process exit).
import { execFileSync } from 'node:child_process';
import { rmSync, mkdirSync } from 'node:fs';
import type { TestContext } from 'node:test';

const created = new Set<string>();
const dirs = new Set<string>();
let seq = 0;

function cleanupAll(): void {
  for (const ns of created) {
    try { execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' }); } catch { /* already gone */ }
  }
  created.clear();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}
process.once('exit', cleanupAll);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => { cleanupAll(); process.exit(130); });
}

export { isRoot } from './skip.ts';

/** A unique short prefix for this test process (names must fit IFNAMSIZ). */
export function uniqueName(kind: string): string {
  return `mbt${kind}${process.pid.toString(36)}${(seq++).toString(36)}`;
}

/** Creates a netns removed when the test ends (and at process exit in any case). */
export function makeNetns(t: TestContext | undefined, kind = 'n'): string {
  const name = uniqueName(kind);
  execFileSync('ip', ['netns', 'add', name]);
  created.add(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  t?.after(() => deleteNetns(name));
  return name;
}

export function deleteNetns(name: string): void {
  try { execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' }); } catch { /* gone */ }
  created.delete(name);
}

/** A directory removed at the end of the test (also used for bpffs pin roots). */
export function tempDir(t: TestContext | undefined, path: string): string {
  mkdirSync(path, { recursive: true });
  dirs.add(path);
  t?.after(() => { rmSync(path, { recursive: true, force: true }); dirs.delete(path); });
  return path;
}

/** Runs a command inside a netns and returns stdout. */
export function nsExec(ns: string, cmd: string[], opts: { input?: string; timeout?: number } = {}): string {
  return execFileSync('ip', ['netns', 'exec', ns, ...cmd], { encoding: 'utf8', input: opts.input, timeout: opts.timeout ?? 30_000 });
}

/** `ip -j ...` inside a netns, parsed. */
export function ipJson<T = any>(ns: string, args: string[]): T {
  return JSON.parse(execFileSync('ip', ['-n', ns, '-j', ...args], { encoding: 'utf8' }) || '[]');
}
