// Netns file descriptors for IFLA_NET_NS_FD (veth peer placement, moving a
// link). The fd is only needed while the request is in flight.
import { check, libc, O_CLOEXEC, O_RDONLY } from '../shared/libc.ts';
import { netnsPath } from '../shared/netns.ts';
import { existsSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';

/** Opens the netns `nameOrPath`, runs `fn` with its fd, closes the fd. Throws E_NETNS if it does not exist. */
export function withNetnsFd<T>(nameOrPath: string, fn: (fd: number) => T): T {
  const path = netnsPath(nameOrPath);
  if (!existsSync(path)) throw new MembraneError(`open netns ${path}`, { code: 'E_NETNS', cause: 'no such network namespace' });
  const fd = check(`open ${path}`, libc.open(path, O_RDONLY | O_CLOEXEC, 0) as number);
  try {
    return fn(fd);
  } finally {
    libc.close(fd);
  }
}
