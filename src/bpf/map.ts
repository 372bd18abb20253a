// A BPF map behind an fd: typed byte-level CRUD through libbpf's syscall
// wrappers. Keys and values are raw Buffers laid out as in C (little-endian
// host order); codecs for particular maps live with their users.
//
// Value layout by map type:
// - HASH, ARRAY, LPM_TRIE (key = { u32 prefixlen; data }): valueSize bytes;
// - PERCPU_*: one slot per possible CPU, each roundup(valueSize, 8) bytes
//   (lookup() returns all slots concatenated, lookupPerCpu() splits them);
// - PROG_ARRAY: update() takes a program fd (u32), lookup() returns the
//   program id (u32) — the kernel translates both ways;
// - ARRAY_OF_MAPS, HASH_OF_MAPS: likewise a map fd in, a map id out
//   (setInnerMap / innerMapId).
import { KernelError, MembraneError } from '../shared/errors.ts';
import { possibleCpus } from './cpus.ts';
import { mapInfoByFd } from './info.ts';
import { bpf, closeFd, dupFd } from './native/libbpf.ts';
import {
  encodeMapBatchOpts, encodeMapCreateOpts, MAP_IN_MAP_TYPES, mapTypeName, PERCPU_MAP_TYPES, UPDATE_FLAGS, type MapInfo,
} from './native/structs.ts';
import { pinFd } from './pin.ts';

export type UpdateFlag = keyof typeof UPDATE_FLAGS;

/** A map made by BpfMap.create (not from an object file). */
export interface CreateMapOptions {
  /** MAP_TYPE.* */
  type: number;
  /** Name for messages; the kernel keeps `kernelName` (default: the first 15 characters of this). */
  name: string;
  kernelName?: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** BPF_F_* map flags (LPM tries need MAP_F_NO_PREALLOC). */
  flags?: number;
  /** Map-in-map types: a map like the ones it will hold (the kernel checks every inner map against it). */
  innerMap?: BpfMap;
}

const ENOENT = 2;
const ENOSPC = 28;
/** BPF_OBJ_NAME_LEN - 1: the kernel keeps this many characters of a map name. */
const KERNEL_NAME_MAX = 15;

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly flags: number;
  readonly id: number;
  #fd: number;
  readonly #owned: boolean;

  /**
   * Wraps an fd. With `owned`, close() closes it; otherwise the fd belongs to
   * someone else (a BpfObject) who invalidates this wrapper when it closes.
   */
  constructor(fd: number, info: MapInfo, owned: boolean, name?: string) {
    this.#fd = fd;
    this.#owned = owned;
    this.name = name ?? info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.flags = info.flags;
    this.id = info.id;
  }

  /**
   * Creates a map (bpf_map_create). The caller owns the result; close()
   * releases the fd, and the map dies then unless it was pinned or put
   * into another map. Throws KernelError (EINVAL for a bad combination,
   * EPERM/ENOMEM over the memory limit).
   */
  static create(o: CreateMapOptions): BpfMap {
    const kernelName = (o.kernelName ?? o.name).slice(0, KERNEL_NAME_MAX);
    const opts = encodeMapCreateOpts({ flags: o.flags, innerMapFd: o.innerMap?.fd });
    const fd = bpf.map_create(o.type, kernelName, o.keySize, o.valueSize, o.maxEntries, opts);
    if (fd < 0) throw new KernelError(`create ${mapTypeName(o.type)} map ${o.name}`, fd);
    try {
      return new BpfMap(fd, mapInfoByFd(fd), true, o.name);
    } catch (err) {
      closeFd(fd);
      throw new MembraneError(`create map ${o.name}`, { cause: err });
    }
  }

  /** Takes ownership of `fd` (closed by close()). Throws KernelError if `fd` is not a map. */
  static fromFd(fd: number): BpfMap {
    return new BpfMap(fd, mapInfoByFd(fd), true);
  }

  /**
   * Opens a map pinned in bpffs. The caller owns the returned map; close()
   * releases the fd; the pin keeps the map alive.
   * Throws KernelError (ENOENT if nothing is pinned there).
   */
  static openPinned(path: string): BpfMap {
    const fd = bpf.obj_get(path);
    if (fd < 0) throw new KernelError(`open pinned map ${path}`, fd);
    try {
      return BpfMap.fromFd(fd);
    } catch (err) {
      closeFd(fd);
      throw new MembraneError(`open pinned map ${path}`, { cause: err });
    }
  }

  /** Opens a map by kernel id (as listed by bpftool). The caller owns the result. */
  static fromId(id: number): BpfMap {
    const fd = bpf.map_get_fd_by_id(id);
    if (fd < 0) throw new KernelError(`open map id ${id}`, fd);
    return BpfMap.fromFd(fd);
  }

  /** The fd; throws once the map (or the object that owns it) is closed, so a reused fd number is never hit. */
  get fd(): number {
    if (this.#fd < 0) throw new MembraneError(`use map ${this.name}`, { code: 'E_CLOSED', cause: 'map is closed' });
    return this.#fd;
  }

  get typeName(): string {
    return mapTypeName(this.type);
  }

  get isPerCpu(): boolean {
    return PERCPU_MAP_TYPES.has(this.type);
  }

  /** Bytes a lookup returns: valueSize, or roundup(valueSize, 8) × possible CPUs for per-CPU maps. */
  get valueBufferSize(): number {
    return this.isPerCpu ? Math.ceil(this.valueSize / 8) * 8 * possibleCpus() : this.valueSize;
  }

  /** The value for `key`, or undefined if there is none (per-CPU maps: every CPU's slot, concatenated). */
  lookup(key: Buffer): Buffer | undefined {
    this.checkKey('lookup', key);
    const value = Buffer.alloc(this.valueBufferSize);
    const rc = bpf.map_lookup_elem(this.fd, key, value);
    if (rc === -ENOENT) return undefined;
    if (rc < 0) throw new KernelError(`lookup map ${this.name}`, rc);
    return value;
  }

  /**
   * Allocation-free lookup for hot paths: writes the value into `out`
   * (valueBufferSize bytes) and returns false if `key` is absent.
   */
  lookupInto(key: Buffer, out: Buffer): boolean {
    this.checkKey('lookup', key);
    if (out.length < this.valueBufferSize) {
      throw new MembraneError(`lookup map ${this.name}`, { code: 'E_BPF_MAP', cause: `output buffer is ${out.length} bytes, map needs ${this.valueBufferSize}` });
    }
    const rc = bpf.map_lookup_elem(this.fd, key, out);
    if (rc === -ENOENT) return false;
    if (rc < 0) throw new KernelError(`lookup map ${this.name}`, rc);
    return true;
  }

  /** Per-CPU maps: one Buffer of valueSize bytes per possible CPU, or undefined if `key` is absent. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined {
    if (!this.isPerCpu) throw new MembraneError(`lookup map ${this.name}`, { code: 'E_BPF_MAP', cause: `${this.typeName} map is not per-cpu` });
    const raw = this.lookup(key);
    if (!raw) return undefined;
    const stride = Math.ceil(this.valueSize / 8) * 8;
    const out: Buffer[] = [];
    for (let off = 0; off < raw.length; off += stride) out.push(raw.subarray(off, off + this.valueSize));
    return out;
  }

  /**
   * Creates or replaces the value for `key`. `flags`: 'any' (default),
   * 'noexist' (EEXIST if present), 'exist' (ENOENT if absent).
   * Per-CPU maps accept either valueSize bytes (written to every CPU) or
   * the full per-CPU buffer. PROG_ARRAY values are program fds (u32).
   * Throws KernelError (E2BIG when full, EEXIST/ENOENT per flags).
   */
  update(key: Buffer, value: Buffer, flags: UpdateFlag = 'any'): void {
    this.checkKey('update', key);
    const v = this.isPerCpu ? this.perCpuValue(value) : value;
    if (v.length !== this.valueSize && !this.isPerCpu) {
      throw new MembraneError(`update map ${this.name}`, { code: 'E_BPF_MAP', cause: `value is ${value.length} bytes, map wants ${this.valueSize}` });
    }
    const rc = bpf.map_update_elem(this.fd, key, v, UPDATE_FLAGS[flags]);
    if (rc < 0) throw new KernelError(`update map ${this.name}`, rc);
  }

  /**
   * Map-in-map: puts `inner` at `key` (replacing what was there; the outer
   * map holds its own reference, so `inner` may be closed afterwards).
   * Throws KernelError (EINVAL if `inner` does not match the outer map's
   * inner definition: type, key or value size, flags).
   */
  setInnerMap(key: Buffer, inner: BpfMap): void {
    this.checkMapInMap('update');
    const v = Buffer.alloc(4);
    v.writeUInt32LE(inner.fd);
    this.update(key, v);
  }

  /** Map-in-map: the id of the map at `key`, or undefined if the slot is empty. */
  innerMapId(key: Buffer): number | undefined {
    this.checkMapInMap('lookup');
    return this.lookup(key)?.readUInt32LE(0);
  }

  /** Deletes `key`; false if it was not there. Throws KernelError otherwise (EINVAL on arrays). */
  delete(key: Buffer): boolean {
    this.checkKey('delete', key);
    const rc = bpf.map_delete_elem(this.fd, key);
    if (rc === -ENOENT) return false;
    if (rc < 0) throw new KernelError(`delete from map ${this.name}`, rc);
    return true;
  }

  /**
   * Iterates keys in the kernel's order. For hash maps modified while
   * iterating, the kernel restarts from the first key when the previous one
   * vanished; iteration stops after maxEntries + 1 keys so that cannot loop forever.
   */
  *keys(): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (let i = 0; i <= this.maxEntries; i++) {
      const next = Buffer.alloc(this.keySize);
      const rc = bpf.map_get_next_key(this.fd, prev, next);
      if (rc === -ENOENT) return;
      if (rc < 0) throw new KernelError(`iterate map ${this.name}`, rc);
      yield next;
      prev = next;
    }
  }

  /**
   * Every key/value pair, read `chunk` entries per syscall
   * (BPF_MAP_LOOKUP_BATCH) instead of two syscalls per entry: for big hash
   * maps (conntrack). Per-CPU values come as with lookup(). Not a snapshot:
   * entries changed meanwhile may be seen old or new, not twice.
   */
  *batchEntries(chunk = 4096): Generator<[Buffer, Buffer]> {
    const vsize = this.valueBufferSize;
    let size = chunk;
    let keys = Buffer.alloc(size * this.keySize);
    let values = Buffer.alloc(size * vsize);
    const count = Buffer.alloc(4);
    // The batch token: a bucket number for hash maps (4 bytes), a key for the others.
    const tokenSize = Math.max(this.keySize, 8);
    let inBatch: Buffer | null = null;
    const outBatch = Buffer.alloc(tokenSize);
    const opts = encodeMapBatchOpts();
    for (;;) {
      count.writeUInt32LE(size);
      const rc = bpf.map_lookup_batch(this.fd, inBatch, outBatch, keys, values, count, opts);
      if (rc === -ENOSPC && count.readUInt32LE(0) === 0) {
        // One hash bucket holds more entries than fit: retry it with more room.
        size *= 2;
        keys = Buffer.alloc(size * this.keySize);
        values = Buffer.alloc(size * vsize);
        continue;
      }
      if (rc < 0 && rc !== -ENOENT) throw new KernelError(`read map ${this.name} in batches`, rc);
      const n = count.readUInt32LE(0);
      for (let i = 0; i < n; i++) {
        yield [Buffer.from(keys.subarray(i * this.keySize, (i + 1) * this.keySize)), Buffer.from(values.subarray(i * vsize, (i + 1) * vsize))];
      }
      if (rc === -ENOENT) return; // the end of the map
      inBatch = Buffer.from(outBatch);
    }
  }

  /**
   * Deletes `keys` with BPF_MAP_DELETE_BATCH (one syscall per up to 4096
   * keys); keys already gone are skipped. Returns how many were deleted.
   */
  deleteBatch(keys: readonly Buffer[]): number {
    const opts = encodeMapBatchOpts();
    const count = Buffer.alloc(4);
    let deleted = 0;
    for (let start = 0; start < keys.length;) {
      const part = keys.slice(start, start + 4096);
      for (const k of part) this.checkKey('delete', k);
      count.writeUInt32LE(part.length);
      const rc = bpf.map_delete_batch(this.fd, Buffer.concat(part), count, opts);
      const n = count.readUInt32LE(0);
      deleted += n;
      if (rc === -ENOENT) {
        start += n + 1; // that key was gone already (the datapath's LRU or another GC)
        continue;
      }
      if (rc < 0) throw new KernelError(`delete from map ${this.name} in batches`, rc);
      start += part.length;
    }
    return deleted;
  }

  /** Key/value pairs (entries deleted between the key walk and the lookup are skipped). */
  *entries(): Generator<[Buffer, Buffer]> {
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v) yield [k, v];
    }
  }

  /** Pins the map at `path` in bpffs (parent directories are created). Throws KernelError (EEXIST if taken). */
  pin(path: string): void {
    pinFd(this.fd, path, `map ${this.name}`);
  }

  /** A new, independently owned handle on the same map. */
  dup(): BpfMap {
    const fd = dupFd(this.fd);
    if (fd < 0) throw new KernelError(`dup map ${this.name}`, fd);
    return new BpfMap(fd, this.info(), true, this.name);
  }

  /** Current kernel view of the map (type, sizes, flags, id). */
  info(): MapInfo {
    return mapInfoByFd(this.fd);
  }

  /** Releases the fd if this handle owns it; a handle borrowed from a BpfObject is just invalidated. Idempotent. */
  close(): void {
    if (this.#fd >= 0 && this.#owned) closeFd(this.#fd);
    this.#fd = -1;
  }

  /** @internal Called by the owning BpfObject when it closes the fd. */
  invalidate(): void {
    this.#fd = -1;
  }

  private checkMapInMap(op: string): void {
    if (!MAP_IN_MAP_TYPES.has(this.type)) {
      throw new MembraneError(`${op} inner map of ${this.name}`, { code: 'E_BPF_MAP', cause: `${this.typeName} map does not hold maps` });
    }
  }

  private checkKey(op: string, key: Buffer): void {
    if (key.length !== this.keySize) {
      throw new MembraneError(`${op} map ${this.name}`, { code: 'E_BPF_MAP', cause: `key is ${key.length} bytes, map wants ${this.keySize}` });
    }
  }

  private perCpuValue(value: Buffer): Buffer {
    const full = this.valueBufferSize;
    if (value.length === full) return value;
    if (value.length !== this.valueSize) {
      throw new MembraneError(`update map ${this.name}`, { code: 'E_BPF_MAP', cause: `value is ${value.length} bytes, per-cpu map wants ${this.valueSize} (one cpu) or ${full} (all cpus)` });
    }
    const stride = Math.ceil(this.valueSize / 8) * 8;
    const out = Buffer.alloc(full);
    for (let off = 0; off < full; off += stride) value.copy(out, off);
    return out;
  }
}

/** Type, sizes, name and id of the map behind `fd` (re-exported for callers holding raw fds). */
export { mapInfoByFd };
