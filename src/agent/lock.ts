// One agent per node, decided before the agent touches anything. A second
// agent used to run its whole start (endpoint restore, which removes the
// devices and pins of endpoints it has no record of, and the store publish
// under its own lease) before it found the API socket taken: it swept the
// pods the running agent was adding and left its lease behind to expire.
//
// The lock is three flock(2) locks, taken in this order, all non-blocking:
//  1. the node's network namespace (its nsfs inode, /proc/self/ns/net): a
//     node is a netns, so this refuses a second agent there whatever its
//     config says (another stateDir, another socket, even another nodeName);
//  2. <stateDir>/agent.lock: refuses an agent in another netns that would
//     share this one's state file and socket; it also records the holder's pid;
//  3. the node's pin directory in bpffs, if it exists: refuses an agent in
//     another netns for the same node name and bpffs root (shared pins).
// flock locks belong to the open file description and go when the process
// dies, however it dies (SIGKILL included), so a crashed agent never leaves
// a stale lock behind. Node opens files O_CLOEXEC, so helpers the agent
// spawns never inherit them. The holder's pid comes from /proc/locks, which
// the kernel keeps, so it is right even when the pid in agent.lock is stale.
import { closeSync, constants, existsSync, fchmodSync, fstatSync, ftruncateSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import type { NodeConfig } from '../shared/config.ts';
import { KernelError, MembraneError } from '../shared/errors.ts';
import { errno, libc, LOCK_EX, LOCK_NB, LOCK_UN } from '../shared/libc.ts';

const EWOULDBLOCK = 11;

/** The lock file of an agent whose runtime directory is `stateDir`. */
export function lockFileIn(stateDir: string): string {
  return `${stateDir}/agent.lock`;
}

interface Held {
  what: string;
  path: string;
  fd: number;
}

/** Major and minor of a device number as userspace sees it (glibc's encoding; /proc/locks prints these). */
function majorMinor(dev: number): [number, number] {
  const hi = Math.floor(dev / 2 ** 32);
  const lo = dev >>> 0;
  return [((lo >>> 8) & 0xfff) | ((hi & ~0xfff) >>> 0), (lo & 0xff) | ((lo >>> 12) & 0xfff00)];
}

/**
 * The pid holding an flock(2) lock on `path` (found in /proc/locks by device
 * and inode), or undefined if nobody does (or `path` does not exist).
 */
export function lockHolder(path: string): number | undefined {
  let st: { dev: number; ino: number };
  let locks: string;
  try {
    st = statSync(path);
    locks = readFileSync('/proc/locks', 'utf8');
  } catch {
    return undefined;
  }
  const [maj, min] = majorMinor(st.dev);
  for (const line of locks.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 1603 00:04:4026532178 0 EOF"; waiters read "1: -> FLOCK ..." and hold nothing.
    const m = /^\d+:\s+FLOCK\s+\S+\s+\S+\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (!m) continue;
    if (Number(m[4]) === st.ino && parseInt(m[2]!, 16) === maj && parseInt(m[3]!, 16) === min) return Number(m[1]);
  }
  return undefined;
}

/** The live agent of a state dir: the holder of its lock file, else undefined. */
export function agentHolding(stateDir: string): number | undefined {
  return lockHolder(lockFileIn(stateDir));
}

/** The node's exclusive lock, held until release() or the process's end. */
export class NodeLock {
  private constructor(private held: Held[], readonly lockFile: string) {}

  /**
   * Takes the node's locks (see the file comment), or throws E_ALREADY_RUNNING
   * naming the pid that holds one; a refused agent holds nothing afterwards.
   * Creates the state dir (0700) and its lock file (0600) if missing; nothing else.
   */
  static acquire(cfg: NodeConfig): NodeLock {
    const held: Held[] = [];
    const what = `start agent for node ${cfg.nodeName}`;
    const lockFile = lockFileIn(cfg.paths.stateDir);
    try {
      take(held, what, 'its network namespace', '/proc/self/ns/net', constants.O_RDONLY);
      mkdirSync(cfg.paths.stateDir, { recursive: true, mode: 0o700 });
      const fd = take(held, what, 'its state dir', lockFile, constants.O_RDWR | constants.O_CREAT);
      if (existsSync(cfg.paths.pinDir)) take(held, what, 'its pin dir', cfg.paths.pinDir, constants.O_RDONLY | constants.O_DIRECTORY);
      // A lock file made under another umask: it only holds a pid, but the state dir stays root-only.
      if ((fstatSync(fd).mode & 0o077) !== 0) fchmodSync(fd, 0o600);
      // For people reading the file; lockHolder() asks the kernel instead.
      ftruncateSync(fd, 0);
      writeSync(fd, `${process.pid}\n`, 0);
    } catch (e) {
      for (const h of held.reverse()) closeSync(h.fd);
      throw e;
    }
    return new NodeLock(held, lockFile);
  }

  /** Releases every lock (also done by the kernel when the process ends). */
  release(): void {
    for (const h of this.held.reverse()) {
      try {
        libc.flock(h.fd, LOCK_UN);
        closeSync(h.fd);
      } catch { /* already closed */ }
    }
    this.held = [];
  }
}

function take(held: Held[], what: string, name: string, path: string, flags: number): number {
  let fd: number;
  try {
    fd = openSync(path, flags, 0o600);
  } catch (e) {
    throw new MembraneError(`${what}: open ${path} to lock ${name}`, { code: 'E_STATE', cause: e });
  }
  held.push({ what: name, path, fd });
  if (libc.flock(fd, LOCK_EX | LOCK_NB) === 0) return fd;
  const err = errno();
  if (err !== EWOULDBLOCK) throw new MembraneError(`${what}: lock ${name} (${path})`, { code: 'E_STATE', cause: new KernelError('flock', err) });
  const pid = lockHolder(path);
  throw new MembraneError(what, {
    code: 'E_ALREADY_RUNNING',
    cause: `another agent${pid ? ` (pid ${pid})` : ''} runs for this node: it holds the lock on ${name} (${path})`,
    hint: pid
      ? `stop it first: kill -TERM ${pid} (it leaves the cluster) or kill -HUP ${pid} (it keeps the node's store entries, for a restart)`
      : 'stop the other agent first',
  });
}
