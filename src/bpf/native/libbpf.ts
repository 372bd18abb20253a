// The single unsafe boundary of the bpf layer: koffi bindings to the system
// libbpf (libbpf.so.1, 1.4.x) plus the few libc calls the layer needs.
//
// Conventions of libbpf 1.x that every caller relies on:
// - int-returning functions return -errno directly (no need to read errno);
// - pointer-returning functions return NULL (koffi: null) and set errno;
// - structs are passed as Buffers to `void *` parameters, in place (koffi
//   passes the Buffer's backing store; out-parameters are written into it).
//   Layouts are hand-encoded in ../structs.ts with offsets checked against
//   the installed headers (see docs/kernel-notes/bpf.md).
//
// libbpf prints through a callback (stderr by default). We install ours once,
// when this module loads: it keeps the last lines in a ring so error messages
// can quote them, and prints nothing unless MEMBRANE_LIBBPF_DEBUG=1.
import koffi from 'koffi';
import { env } from '../../shared/env.ts';

const lib = koffi.load('libbpf.so.1');
const libc = koffi.load('libc.so.6');

// Pointers are BigInt in koffi 3; NULL comes back as null.
export type Ptr = bigint;

export const bpf = {
  // object
  object_open_file: lib.func('void *bpf_object__open_file(const char *path, void *opts)') as (path: string, opts: Buffer | null) => Ptr | null,
  object_load: lib.func('int bpf_object__load(void *obj)') as (obj: Ptr) => number,
  object_close: lib.func('void bpf_object__close(void *obj)') as (obj: Ptr) => void,
  object_name: lib.func('const char *bpf_object__name(void *obj)') as (obj: Ptr) => string,
  object_next_program: lib.func('void *bpf_object__next_program(void *obj, void *prev)') as (obj: Ptr, prev: Ptr | null) => Ptr | null,
  object_next_map: lib.func('void *bpf_object__next_map(void *obj, void *prev)') as (obj: Ptr, prev: Ptr | null) => Ptr | null,
  object_find_map_by_name: lib.func('void *bpf_object__find_map_by_name(void *obj, const char *name)') as (obj: Ptr, name: string) => Ptr | null,

  // program (within an object)
  program_name: lib.func('const char *bpf_program__name(void *prog)') as (p: Ptr) => string,
  program_section_name: lib.func('const char *bpf_program__section_name(void *prog)') as (p: Ptr) => string,
  program_fd: lib.func('int bpf_program__fd(void *prog)') as (p: Ptr) => number,
  program_type: lib.func('int bpf_program__type(void *prog)') as (p: Ptr) => number,
  program_autoload: lib.func('bool bpf_program__autoload(void *prog)') as (p: Ptr) => boolean,
  program_set_log_buf: lib.func('int bpf_program__set_log_buf(void *prog, void *buf, size_t size)') as (p: Ptr, buf: Buffer | null, size: number) => number,
  program_set_log_level: lib.func('int bpf_program__set_log_level(void *prog, uint32_t level)') as (p: Ptr, level: number) => number,

  // map (within an object)
  map_name: lib.func('const char *bpf_map__name(void *map)') as (m: Ptr) => string,
  map_fd: lib.func('int bpf_map__fd(void *map)') as (m: Ptr) => number,
  map_type: lib.func('int bpf_map__type(void *map)') as (m: Ptr) => number,
  map_key_size: lib.func('uint32_t bpf_map__key_size(void *map)') as (m: Ptr) => number,
  map_value_size: lib.func('uint32_t bpf_map__value_size(void *map)') as (m: Ptr) => number,
  map_max_entries: lib.func('uint32_t bpf_map__max_entries(void *map)') as (m: Ptr) => number,
  map_flags: lib.func('uint32_t bpf_map__map_flags(void *map)') as (m: Ptr) => number,
  map_extra: lib.func('uint64_t bpf_map__map_extra(void *map)') as (m: Ptr) => number | bigint,
  map_is_internal: lib.func('bool bpf_map__is_internal(void *map)') as (m: Ptr) => boolean,
  map_pin_path: lib.func('const char *bpf_map__pin_path(void *map)') as (m: Ptr) => string | null,
  map_set_pin_path: lib.func('int bpf_map__set_pin_path(void *map, const char *path)') as (m: Ptr, path: string | null) => number,
  map_pin: lib.func('int bpf_map__pin(void *map, const char *path)') as (m: Ptr, path: string) => number,
  map_is_pinned: lib.func('bool bpf_map__is_pinned(void *map)') as (m: Ptr) => boolean,
  map_initial_value: lib.func('void *bpf_map__initial_value(void *map, void *psize)') as (m: Ptr, psize: Buffer) => Ptr | null,
  map_set_initial_value: lib.func('int bpf_map__set_initial_value(void *map, const void *data, size_t size)') as (m: Ptr, data: Buffer, size: number) => number,

  // raw fd-based syscall wrappers (bpf.h)
  map_update_elem: lib.func('int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)') as (fd: number, key: Buffer, value: Buffer, flags: number) => number,
  map_lookup_elem: lib.func('int bpf_map_lookup_elem(int fd, const void *key, void *value)') as (fd: number, key: Buffer, value: Buffer) => number,
  map_delete_elem: lib.func('int bpf_map_delete_elem(int fd, const void *key)') as (fd: number, key: Buffer) => number,
  map_get_next_key: lib.func('int bpf_map_get_next_key(int fd, const void *key, void *next_key)') as (fd: number, key: Buffer | null, next: Buffer) => number,
  map_create: lib.func('int bpf_map_create(int map_type, const char *map_name, uint32_t key_size, uint32_t value_size, uint32_t max_entries, const void *opts)') as
    (type: number, name: string | null, keySize: number, valueSize: number, maxEntries: number, opts: Buffer | null) => number,
  map_lookup_batch: lib.func('int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)') as
    (fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Buffer, opts: Buffer | null) => number,
  map_delete_batch: lib.func('int bpf_map_delete_batch(int fd, const void *keys, void *count, const void *opts)') as
    (fd: number, keys: Buffer, count: Buffer, opts: Buffer | null) => number,
  obj_pin: lib.func('int bpf_obj_pin(int fd, const char *path)') as (fd: number, path: string) => number,
  obj_get: lib.func('int bpf_obj_get(const char *path)') as (path: string) => number,
  obj_get_info_by_fd: lib.func('int bpf_obj_get_info_by_fd(int fd, void *info, void *info_len)') as (fd: number, info: Buffer, len: Buffer) => number,
  prog_get_fd_by_id: lib.func('int bpf_prog_get_fd_by_id(uint32_t id)') as (id: number) => number,
  map_get_fd_by_id: lib.func('int bpf_map_get_fd_by_id(uint32_t id)') as (id: number) => number,
  link_get_fd_by_id: lib.func('int bpf_link_get_fd_by_id(uint32_t id)') as (id: number) => number,
  link_create: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, void *opts)') as (progFd: number, target: number, type: number, opts: Buffer | null) => number,
  /** Same call, run on a libuv worker thread (koffi async): tcx attach waits for an RCU grace period. */
  link_create_async: lib.func('int bpf_link_create(int prog_fd, int target_fd, int attach_type, void *opts)') as unknown as { async: (progFd: number, target: number, type: number, opts: null, cb: (err: unknown, rc: number) => void) => void },
  link_update: lib.func('int bpf_link_update(int link_fd, int new_prog_fd, void *opts)') as (linkFd: number, progFd: number, opts: Buffer | null) => number,
  link_detach: lib.func('int bpf_link_detach(int link_fd)') as (linkFd: number) => number,
  prog_query_opts: lib.func('int bpf_prog_query_opts(int target, int type, void *opts)') as (target: number, type: number, opts: Buffer) => number,
  prog_test_run_opts: lib.func('int bpf_prog_test_run_opts(int prog_fd, void *opts)') as (fd: number, opts: Buffer) => number,
  prog_load: lib.func('int bpf_prog_load(int prog_type, const char *name, const char *license, const void *insns, size_t insn_cnt, void *opts)') as
    (type: number, name: string, license: string, insns: Buffer, cnt: number, opts: Buffer | null) => number,

  // legacy tc (netlink inside libbpf, in the calling thread's netns)
  tc_hook_create: lib.func('int bpf_tc_hook_create(void *hook)') as (hook: Buffer) => number,
  tc_hook_destroy: lib.func('int bpf_tc_hook_destroy(void *hook)') as (hook: Buffer) => number,
  tc_attach: lib.func('int bpf_tc_attach(void *hook, void *opts)') as (hook: Buffer, opts: Buffer) => number,
  tc_detach: lib.func('int bpf_tc_detach(void *hook, void *opts)') as (hook: Buffer, opts: Buffer) => number,
  tc_query: lib.func('int bpf_tc_query(void *hook, void *opts)') as (hook: Buffer, opts: Buffer) => number,

  // BTF (program full names, like bpftool)
  btf_load_from_kernel_by_id: lib.func('void *btf__load_from_kernel_by_id(uint32_t id)') as (id: number) => Ptr | null,
  btf_type_by_id: lib.func('void *btf__type_by_id(void *btf, uint32_t id)') as (btf: Ptr, id: number) => Ptr | null,
  btf_name_by_offset: lib.func('const char *btf__name_by_offset(void *btf, uint32_t off)') as (btf: Ptr, off: number) => string | null,
  btf_free: lib.func('void btf__free(void *btf)') as (btf: Ptr) => void,

  libbpf_major_version: lib.func('uint32_t libbpf_major_version()') as () => number,
  libbpf_minor_version: lib.func('uint32_t libbpf_minor_version()') as () => number,
};

export const c = {
  close: libc.func('int close(int fd)') as (fd: number) => number,
  fcntl: libc.func('int fcntl(int fd, int cmd, int arg)') as (fd: number, cmd: number, arg: number) => number,
  if_nameindex: libc.func('void *if_nameindex()') as () => Ptr | null,
  if_freenameindex: libc.func('void if_freenameindex(void *ptr)') as (p: Ptr) => void,
  if_nametoindex: libc.func('uint32_t if_nametoindex(const char *name)') as (name: string) => number,
};

const vsnprintf = libc.func('int vsnprintf(void *buf, size_t n, const char *fmt, void *ap)') as
  (buf: Buffer, n: number, fmt: string, ap: Ptr) => number;

export function errno(): number {
  return koffi.errno();
}

/** Copies `len` bytes of native memory at `ptr`. */
export function readNative(ptr: Ptr, len: number): Buffer {
  return Buffer.from(Buffer.from(koffi.view(ptr, len)));
}

export function decodeCString(ptr: Ptr): string {
  return koffi.decode.string(ptr);
}

/** Address of a Buffer's bytes, for pointer fields inside option structs. The Buffer must stay referenced. */
export function addressOf(buf: Buffer): bigint {
  return koffi.address(buf);
}

// --- libbpf print capture ---------------------------------------------------

export const LIBBPF_WARN = 0;
export const LIBBPF_INFO = 1;
export const LIBBPF_DEBUG = 2;

const RING = 2000;
const ring: string[] = [];
let seq = 0; // number of lines ever captured
const fmtBuf = Buffer.alloc(8192);

const PrintFn = koffi.proto('int membrane_libbpf_print_fn(int level, const char *fmt, void *ap)');
const setPrint = lib.func('void *libbpf_set_print(void *fn)') as (fn: bigint | null) => Ptr | null;
// Registered for the life of the process: libbpf may print from any later call.
const printCb = koffi.register((level: number, fmt: string, ap: Ptr): number => {
  if (level === LIBBPF_DEBUG && !env().libbpfDebug) return 0;
  try {
    const n = vsnprintf(fmtBuf, fmtBuf.length, fmt, ap);
    const text = fmtBuf.toString('utf8', 0, Math.max(0, Math.min(n, fmtBuf.length - 1)));
    if (env().libbpfDebug) process.stderr.write(text);
    for (const line of text.split('\n')) {
      if (line === '') continue;
      ring.push(line.replace(/^libbpf: /, ''));
      seq++;
      if (ring.length > RING) ring.shift();
    }
  } catch {
    // never throw into C
  }
  return 0;
}, koffi.pointer(PrintFn));
setPrint(printCb);

/** Position in the libbpf message stream; pass to `libbpfLinesSince`. */
export function libbpfMark(): number {
  return seq;
}

/** Warning/info lines libbpf printed since `mark` (at most the last 2000 overall). */
export function libbpfLinesSince(mark: number): string[] {
  const n = Math.min(seq - mark, ring.length);
  return n > 0 ? ring.slice(ring.length - n) : [];
}

// --- fds ----------------------------------------------------------------------

const F_DUPFD_CLOEXEC = 1030;

/** Closes an fd this layer owns. Never throws (close errors are not actionable here). */
export function closeFd(fd: number): void {
  if (fd >= 0) c.close(fd);
}

/** A new fd for the same kernel object (close-on-exec); -errno on failure. */
export function dupFd(fd: number): number {
  const r = c.fcntl(fd, F_DUPFD_CLOEXEC, 3);
  return r < 0 ? -errno() : r;
}
