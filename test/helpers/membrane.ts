// Running the membrane CLI the way a user does (inside a node's netns via
// `ip netns exec`), and per-test bpffs roots that are removed afterwards.
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { mountBpffs } from '../../src/datapath/bpffs.ts';
import { MEMBRANE_BIN, REPO } from '../../src/lab/layout.ts';
import { tempDir, uniqueName } from './netns.ts';

export { REPO };
export const MEMBRANE = MEMBRANE_BIN;

let built = false;

/**
 * Builds the BPF objects, the CNI plugin and the JavaScript bin/membrane runs
 * once per test process (each is a no-op when current), so a test file run
 * alone after an edit runs the edited code, as scripts/test.sh does.
 */
export function buildOnce(): void {
  if (built) return;
  execFileSync('make', ['-s', '-C', `${REPO}bpf`], { stdio: 'inherit' });
  execFileSync('make', ['-s', '-C', `${REPO}cni`], { stdio: 'inherit' });
  execFileSync(process.execPath, [`${REPO}scripts/build.mjs`]);
  built = true;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `membrane ARGS` inside netns `ns` (or in this netns when ns is undefined). */
export function membrane(ns: string | undefined, args: string[], opts: { env?: Record<string, string>; input?: string; dropCaps?: boolean } = {}): RunResult {
  let cmd = [MEMBRANE, ...args];
  // Without any capability (still uid 0, so the checkout stays readable wherever CI cloned it).
  if (opts.dropCaps) cmd = ['setpriv', '--inh-caps=-all', '--ambient-caps=-all', '--bounding-set=-all', ...cmd];
  if (ns) cmd = ['ip', 'netns', 'exec', ns, ...cmd];
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: 'utf8', input: opts.input, env: { ...process.env, ...opts.env }, timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Like membrane() but throws with stderr when the exit code is not 0. */
export function membraneOk(ns: string | undefined, args: string[], opts: Parameters<typeof membrane>[2] = {}): string {
  const r = membrane(ns, args, opts);
  if (r.code !== 0) throw new Error(`membrane ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Makes sure the project's bpffs is mounted (root mount namespace) and returns it. */
export function projectBpffs(): string {
  return mountBpffs();
}

/** A unique node name whose pin directory is removed when the test ends. */
export function testNode(t: TestContext, prefix = 'node'): { nodeName: string; pinDir: string } {
  const nodeName = `${prefix}-${uniqueName('')}`.toLowerCase();
  const pinDir = `${projectBpffs()}/${nodeName}`;
  t.after(() => rmSync(pinDir, { recursive: true, force: true }));
  return { nodeName, pinDir };
}

/** Writes a YAML config file into a temp dir removed after the test. */
export function writeConfig(t: TestContext, cfg: Record<string, unknown> | string): string {
  const dir = tempDir(t, `/tmp/${uniqueName('cfg')}`);
  const path = `${dir}/node.yaml`;
  writeFileSync(path, typeof cfg === 'string' ? cfg : stringify(cfg));
  return path;
}
