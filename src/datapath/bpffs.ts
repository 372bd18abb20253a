// The bpffs every node pins under: mounted once in the root mount namespace
// (a bpffs mounted inside `ip netns exec` lives in that process's private
// mount namespace and dies with it, taking pinned links, and so the
// attached programs, along). The lab, the tests and the benchmarks mount it
// here the same way.
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { isBpffs } from '../bpf/index.ts';
import { defaults } from '../shared/defaults.ts';
import { MembraneError } from '../shared/errors.ts';

/** Mounts a bpffs at `path` (default: the configured bpffsRoot default) unless one is there; returns the path. */
export function mountBpffs(path: string = defaults.bpffsRoot): string {
  mkdirSync(path, { recursive: true });
  if (isBpffs(path)) return path;
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpffs', path], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    throw new MembraneError(`mount bpffs at ${path}`, { code: 'E_BPFFS', cause: (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message });
  }
  return path;
}
