// Running synchronous kernel calls inside another network namespace.
// A socket's netns is fixed when it is created and an ifindex given to bpf()
// is resolved in the caller's netns, so the layers open sockets and attach
// programs inside `withNetns` and keep using the result afterwards.
import { existsSync } from 'node:fs';
import { check, CLONE_NEWNET, libc, O_CLOEXEC, O_RDONLY } from './libc.ts';
import { MembraneError } from './errors.ts';

/** Path of a named netns as `ip netns add` creates it. */
export function netnsPath(nameOrPath: string): string {
  return nameOrPath.includes('/') ? nameOrPath : `/run/netns/${nameOrPath}`;
}

/**
 * Runs `fn` on the main thread with its network namespace switched to `ns`
 * (a name under /run/netns or a path such as /proc/PID/ns/net), then switches
 * back, also when `fn` throws. `fn` must be synchronous: an await inside
 * would let other code run in the wrong namespace. `ns` undefined runs `fn` here.
 */
export function withNetns<T>(ns: string | undefined, fn: () => T extends Promise<unknown> ? never : T): T {
  if (ns === undefined) return fn();
  const path = netnsPath(ns);
  if (!existsSync(path)) throw new MembraneError(`enter netns ${path}`, { code: 'E_NETNS', cause: 'no such network namespace' });
  const self = check('open /proc/thread-self/ns/net', libc.open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC, 0));
  let target = -1;
  try {
    target = check(`open ${path}`, libc.open(path, O_RDONLY | O_CLOEXEC, 0));
    check(`setns ${path}`, libc.setns(target, CLONE_NEWNET));
    try {
      return fn();
    } finally {
      // Failing to return would leave the whole process in the wrong netns: fatal.
      if (libc.setns(self, CLONE_NEWNET) < 0) {
        process.stderr.write('membrane: cannot return to the original network namespace; aborting\n');
        process.abort();
      }
    }
  } finally {
    if (target >= 0) libc.close(target);
    libc.close(self);
  }
}
