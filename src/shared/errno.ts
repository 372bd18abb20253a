// errno numbers (x86_64 Linux) to names and the kernel's strerror texts, so
// KernelError can say "file exists (EEXIST)" without a native strerror call.
const TABLE: Record<number, [string, string]> = {
  1: ['EPERM', 'operation not permitted'],
  2: ['ENOENT', 'no such file or directory'],
  3: ['ESRCH', 'no such process'],
  4: ['EINTR', 'interrupted system call'],
  5: ['EIO', 'input/output error'],
  6: ['ENXIO', 'no such device or address'],
  7: ['E2BIG', 'argument list too long'],
  9: ['EBADF', 'bad file descriptor'],
  11: ['EAGAIN', 'resource temporarily unavailable'],
  12: ['ENOMEM', 'cannot allocate memory'],
  13: ['EACCES', 'permission denied'],
  14: ['EFAULT', 'bad address'],
  16: ['EBUSY', 'device or resource busy'],
  17: ['EEXIST', 'file exists'],
  18: ['EXDEV', 'invalid cross-device link'],
  19: ['ENODEV', 'no such device'],
  20: ['ENOTDIR', 'not a directory'],
  21: ['EISDIR', 'is a directory'],
  22: ['EINVAL', 'invalid argument'],
  23: ['ENFILE', 'too many open files in system'],
  24: ['EMFILE', 'too many open files'],
  28: ['ENOSPC', 'no space left on device'],
  34: ['ERANGE', 'numerical result out of range'],
  36: ['ENAMETOOLONG', 'file name too long'],
  38: ['ENOSYS', 'function not implemented'],
  39: ['ENOTEMPTY', 'directory not empty'],
  61: ['ENODATA', 'no data available'],
  67: ['ENOLINK', 'link has been severed'],
  71: ['EPROTO', 'protocol error'],
  74: ['EBADMSG', 'bad message'],
  75: ['EOVERFLOW', 'value too large for defined data type'],
  90: ['EMSGSIZE', 'message too long'],
  93: ['EPROTONOSUPPORT', 'protocol not supported'],
  95: ['EOPNOTSUPP', 'operation not supported'],
  97: ['EAFNOSUPPORT', 'address family not supported by protocol'],
  98: ['EADDRINUSE', 'address already in use'],
  99: ['EADDRNOTAVAIL', 'cannot assign requested address'],
  100: ['ENETDOWN', 'network is down'],
  101: ['ENETUNREACH', 'network is unreachable'],
  105: ['ENOBUFS', 'no buffer space available'],
  110: ['ETIMEDOUT', 'connection timed out'],
  111: ['ECONNREFUSED', 'connection refused'],
  113: ['EHOSTUNREACH', 'no route to host'],
  122: ['EDQUOT', 'disk quota exceeded'],
  524: ['ENOTSUPP', 'operation not supported'],
};

export function errnoName(errno: number): string {
  return TABLE[Math.abs(errno)]?.[0] ?? `errno ${Math.abs(errno)}`;
}

export function strerror(errno: number): string {
  return TABLE[Math.abs(errno)]?.[1] ?? `unknown error ${Math.abs(errno)}`;
}
