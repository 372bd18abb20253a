// The few libc calls Membrane needs outside libbpf, bound once through koffi.
// Int-returning calls return -1 and set errno; `check` turns that into a KernelError.
import koffi from 'koffi';
import { KernelError } from './errors.ts';

const lib = koffi.load('libc.so.6');

export const libc = {
  open: lib.func('int open(const char *path, int flags, int mode)'),
  close: lib.func('int close(int fd)'),
  setns: lib.func('int setns(int fd, int nstype)'),
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
  setsockopt: lib.func('int setsockopt(int fd, int level, int optname, const void *optval, uint32_t optlen)'),
  getsockname: lib.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *addrlen)'),
  sendto: lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)'),
  recv: lib.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
  geteuid: lib.func('uint32_t geteuid()'),
  flock: lib.func('int flock(int fd, int operation)'),
};

export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
/** flock(2) operations: exclusive, non-blocking, unlock. */
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export function errno(): number {
  return koffi.errno();
}

/** Throws a KernelError for `op` if a libc call returned a negative value. */
export function check<T extends number | bigint>(op: string, rc: T): T {
  if (rc < 0) throw new KernelError(op, errno());
  return rc;
}
