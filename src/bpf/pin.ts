// bpffs pins: a pin is a file in a bpf filesystem that holds a reference on a
// map, program or link, so it outlives the process that created it. Removing
// the pin (unlink) drops that reference; the object dies when no fd, pin or
// attachment is left.
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { KernelError, MembraneError } from '../shared/errors.ts';
import { bpf } from './native/libbpf.ts';

/** statfs f_type of a bpf filesystem (BPF_FS_MAGIC). */
export const BPF_FS_MAGIC = 0xcafe4a11;

/** True if `path` exists and lives on a bpffs. */
export function isBpffs(path: string): boolean {
  try {
    return statfsSync(path).type === BPF_FS_MAGIC;
  } catch {
    return false;
  }
}

/**
 * Makes sure `path` is a directory on a bpffs, creating it (and parents) if
 * its nearest existing ancestor is on a bpffs. Throws MembraneError E_BPFFS
 * saying how to mount one otherwise.
 */
export function ensureBpffs(path: string): void {
  let probe = path;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  if (!isBpffs(probe)) {
    const how = `mount one in the root mount namespace: mkdir -p ${path} && mount -t bpf bpffs ${path}`;
    const why = 'not from inside "ip netns exec", which runs in a private mount namespace with its own /sys: ' +
      'a bpffs mounted there disappears with that process and pins would not survive';
    throw new MembraneError(`use bpffs ${path}`, {
      code: 'E_BPFFS',
      cause: `${probe} is not on a bpf filesystem; ${how} (${why})`,
      hint: how,
    });
  }
  // Root-only directories: pins decide what programs run; nobody else may create or replace them.
  if (probe !== path) mkdirSync(path, { recursive: true, mode: 0o700 });
}

/** Pins `fd` (map, program or link) at `path`, creating parent directories. Throws KernelError (EEXIST if taken). */
export function pinFd(fd: number, path: string, what = 'object'): void {
  mkdirSync(dirname(path), { recursive: true });
  const rc = bpf.obj_pin(fd, path);
  if (rc < 0) throw new KernelError(`pin ${what} at ${path}`, rc);
}

/**
 * Opens whatever is pinned at `path` and returns a new fd the caller owns
 * (close it with closeFd). Throws KernelError (ENOENT if nothing is pinned).
 */
export function openPinnedFd(path: string): number {
  const fd = bpf.obj_get(path);
  if (fd < 0) throw new KernelError(`open pin ${path}`, fd);
  return fd;
}

export function pinExists(path: string): boolean {
  return existsSync(path);
}

/** Removes a pin; false if there was none. The object lives on while fds or attachments hold it. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new MembraneError(`unpin ${path}`, { code: 'E_BPFFS', cause: err });
  }
}

/**
 * Removes a directory of pins recursively. A pinned tcx link whose pin was
 * its last reference is detached by this; pinned maps die once no program
 * uses them. Refuses paths that are not on a bpffs, so a wrong argument
 * cannot delete ordinary files. Missing dir: no-op.
 */
export function removePinTree(dir: string): void {
  if (!existsSync(dir)) return;
  if (!isBpffs(dir)) throw new MembraneError(`remove pins ${dir}`, { code: 'E_BPFFS', cause: 'not on a bpf filesystem' });
  rmSync(dir, { recursive: true, force: true });
}

/** Entries of a pin directory (names only), empty if missing. */
export function listPins(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
