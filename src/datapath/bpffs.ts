// The bpffs every node pins under: mounted once in the root mount namespace
// (a bpffs mounted inside `ip netns exec` lives in that process's private
// mount namespace and dies with it, taking pinned links, and so the
// attached programs, along). The lab, the tests and the benchmarks mount it
// here the same way.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { isBpffs } from '../bpf/index.ts';
import { defaults } from '../shared/defaults.ts';
import { MembraneError } from '../shared/errors.ts';

/**
 * Root only: a bpffs root is 1777 by default, so any user could pre-create
 * a node's pin directory (or a map pin the loader would then reuse).
 */
const BPFFS_MODE = 0o700;

/** Mounts a bpffs at `path` (default: the configured bpffsRoot default) unless one is there, root-only; returns the path. */
export function mountBpffs(path: string = defaults.bpffsRoot): string {
  mkdirSync(path, { recursive: true, mode: BPFFS_MODE });
  if (!isBpffs(path)) {
    try {
      execFileSync('mount', ['-t', 'bpf', '-o', `mode=${BPFFS_MODE.toString(8)}`, 'bpffs', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      throw new MembraneError(`mount bpffs at ${path}`, { code: 'E_BPFFS', cause: (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message });
    }
  }
  // Also one mounted earlier with the default mode (by an older version or by hand).
  if ((statSync(path).mode & 0o7777) !== BPFFS_MODE) chmodSync(path, BPFFS_MODE);
  return path;
}
