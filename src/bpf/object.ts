// Loading a BPF object file: open with libbpf, patch load-time constants in
// .rodata by name, place map pins, load (verifier), fill the tail-call map.
//
// Ownership: the BpfObject owns every program and map fd it loaded. The
// BpfProgram/BpfMap handles it returns borrow those fds and are invalidated by
// close(); use BpfMap.dup() for a handle that outlives the object. Pinned
// maps, and programs that are attached (tcx link pin, tc filter) or sit in a
// pinned PROG_ARRAY, stay in the kernel after close().
//
// Pinned maps: a map declared with __uint(pinning, LIBBPF_PIN_BY_NAME) is
// pinned at `${pinRoot}/${name}` (reused if already pinned there); without
// `pinRoot` it is NOT pinned (libbpf's default, /sys/fs/bpf, is not mounted
// on the hosts we target, and silently pinning into it would surprise).
// `mapPins` pins any map at an explicit path. If a pin exists but differs
// from the ELF definition (type, key/value size, max entries, flags), open()
// throws E_BPF_PIN_INCOMPATIBLE naming the pin, unless
// `onIncompatiblePin: 'replace'`, which loads a fresh map and swaps the pin
// only after the whole object loaded (programs still using the old map keep it).
import { statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { MembraneError } from '../shared/errors.ts';
import { constantPatches, type ConstantValue, type Patch } from './constants.ts';
import { ElfObject } from './elf.ts';
import { LibbpfError } from './libbpf-error.ts';
import { BpfMap } from './map.ts';
import { mapInfoByFd } from './info.ts';
import { bpf, closeFd, errno, libbpfLinesSince, libbpfMark, readNative, type Ptr } from './native/libbpf.ts';
import { mapTypeName, MAP_TYPE } from './native/structs.ts';
import { ensureBpffs, pinExists, unpin } from './pin.ts';
import { BpfProgram } from './program.ts';
import { VerifierError } from './verifier-error.ts';

export interface BpfObjectOptions {
  /** `.rodata` variables (`volatile const` in C) to set before loading, by name. */
  constants?: Record<string, ConstantValue>;
  /** Directory (on a bpffs) for maps declared with LIBBPF_PIN_BY_NAME. */
  pinRoot?: string;
  /** Explicit pin path per map name: reused if pinned and compatible, else created and pinned. */
  mapPins?: Record<string, string>;
  /** What to do with an existing pin that does not match the ELF definition (default 'error'). */
  onIncompatiblePin?: 'error' | 'replace';
  /** Verifier log level for every program (0: log only on failure; 1, 2 or 1|2: always, kept in BpfProgram.log). */
  logLevel?: number;
  /** Bytes of verifier log kept per program (default 256 KiB; a failed load whose log overflowed is retried with 16 MiB). */
  logSize?: number;
  /** PROG_ARRAY filled with programs named tail_<N>_... (default 'cilium_calls'). */
  callsMap?: string;
}

const DEFAULT_LOG_SIZE = 256 * 1024;
const RETRY_LOG_SIZE = 16 * 1024 * 1024;
const ENOSPC = 28;
const TAIL_RE = /^tail_(\d+)_/;

class RetryWithLog extends Error {
  constructor(readonly level: number) {
    super('retry');
  }
}

interface PinSwap {
  map: Ptr;
  path: string;
}

/**
 * Parsed objects by file version: every pod loads the same bpf_lxc.o, and
 * parsing its ELF and BTF again for each was a quarter of a load. A rebuilt
 * file (new inode, size or mtime) is parsed afresh.
 */
const parsedObjects = new Map<string, { version: string; elf: ElfObject }>();

function parsedObject(path: string): ElfObject {
  let version: string;
  try {
    const st = statSync(path);
    version = `${st.ino}:${st.size}:${st.mtimeMs}`;
  } catch {
    return ElfObject.fromFile(path); // reports the missing or unreadable file
  }
  const hit = parsedObjects.get(path);
  if (hit?.version === version) return hit.elf;
  const elf = ElfObject.fromFile(path);
  parsedObjects.set(path, { version, elf });
  return elf;
}

let sharedLog: Buffer | undefined;

/** The verifier log buffer loads at log level 0 share, emptied (loads are synchronous, so one at a time). */
function sharedLogBuffer(size: number): Buffer {
  if (!sharedLog || sharedLog.length !== size) sharedLog = Buffer.allocUnsafeSlow(size);
  sharedLog[0] = 0;
  return sharedLog;
}

export class BpfObject {
  readonly path: string;
  readonly elf: ElfObject;
  readonly programs: ReadonlyMap<string, BpfProgram>;
  readonly maps: ReadonlyMap<string, BpfMap>;
  #obj: Ptr | null;
  readonly #callsMap: string;
  readonly #rodata: BpfMap | undefined;

  private constructor(path: string, elf: ElfObject, obj: Ptr, programs: Map<string, BpfProgram>, maps: Map<string, BpfMap>, rodata: BpfMap | undefined, callsMap: string) {
    this.path = path;
    this.elf = elf;
    this.#obj = obj;
    this.programs = programs;
    this.maps = maps;
    this.#rodata = rodata;
    this.#callsMap = callsMap;
  }

  /**
   * Opens, configures and loads `path`, then fills the tail-call map. The
   * caller owns the returned object and must close() it.
   * Throws: MembraneError E_BPF_CONST (unknown/invalid constant, lists the
   * known ones), E_BPF_PIN_INCOMPATIBLE, E_BPFFS, E_BPF_LOAD (libbpf/kernel
   * refused something other than a program; cause is a LibbpfError with
   * libbpf's messages), VerifierError (E_BPF_VERIFIER) for a rejected program.
   */
  static open(path: string, opts: BpfObjectOptions = {}): BpfObject {
    const elf = parsedObject(path);
    const patches = constantPatches(elf, path, opts.constants ?? {});
    const known = elf.maps().map((m) => m.name);
    for (const name of Object.keys(opts.mapPins ?? {})) {
      if (!known.includes(name)) {
        throw new MembraneError(`load ${basename(path)}`, { code: 'E_BPF_MAP', cause: `no map "${name}" to pin (maps: ${known.join(', ') || 'none'})` });
      }
    }
    if (opts.pinRoot) ensureBpffs(opts.pinRoot);
    for (const p of Object.values(opts.mapPins ?? {})) ensureBpffs(dirname(p));

    const logLevel = opts.logLevel ?? 0;
    try {
      return BpfObject.attempt(path, elf, patches, opts, opts.logSize ?? DEFAULT_LOG_SIZE, logLevel, true);
    } catch (err) {
      if (!(err instanceof RetryWithLog)) throw err;
      // The verifier log overflowed our buffer (since Linux 6.4 the kernel then
      // reports ENOSPC instead of the real error and keeps the log's tail) or
      // came back empty: load again with a 16 MiB buffer, at level 1|2 if empty.
      return BpfObject.attempt(path, elf, patches, opts, RETRY_LOG_SIZE, err.level, false);
    }
  }

  private static attempt(path: string, elf: ElfObject, patches: Patch[], opts: BpfObjectOptions, logSize: number, logLevel: number, canRetry: boolean): BpfObject {
    const file = basename(path);
    const mark = libbpfMark();
    const obj = bpf.object_open_file(path, null);
    if (!obj) {
      throw new MembraneError(`open bpf object ${path}`, { code: 'E_BPF_LOAD', cause: new LibbpfError('bpf_object__open_file', -errno(), libbpfLinesSince(mark)) });
    }
    let ok = false;
    try {
      if (patches.length) applyPatches(obj, file, patches);
      const swaps = configurePins(obj, file, opts);

      const progs: { ptr: Ptr; name: string; section: string; log: Buffer }[] = [];
      // Without a log level the log is written only for the program that fails (libbpf retries it
      // with one), and loading stops there: all programs can share one buffer, kept between loads
      // (zero-filling 256 KiB per program was a sixth of an endpoint's load).
      const shared = logLevel ? undefined : sharedLogBuffer(logSize);
      for (let p = bpf.object_next_program(obj, null); p; p = bpf.object_next_program(obj, p)) {
        const log = shared ?? Buffer.alloc(logSize);
        bpf.program_set_log_buf(p, log, log.length);
        if (logLevel) bpf.program_set_log_level(p, logLevel);
        progs.push({ ptr: p, name: bpf.program_name(p), section: bpf.program_section_name(p), log });
      }

      const rc = bpf.object_load(obj);
      if (rc < 0) {
        const lines = libbpfLinesSince(mark);
        const failed = failedProgram(lines, progs);
        if (failed) {
          const log = bufferLines(failed.log);
          if (canRetry && log.length === 0) throw new RetryWithLog(1 | 2);
          if (canRetry && -rc === ENOSPC) throw new RetryWithLog(logLevel || 1);
          throw new VerifierError(`load program ${failed.name} from ${file}`, failed.name, rc, log, lines);
        }
        throw new MembraneError(`load bpf object ${file}`, { code: 'E_BPF_LOAD', cause: new LibbpfError('bpf_object__load', rc, lines) });
      }

      for (const s of swaps) {
        unpin(s.path);
        const prc = bpf.map_pin(s.map, s.path);
        if (prc < 0) throw new MembraneError(`load bpf object ${file}`, { code: 'E_BPF_LOAD', cause: new LibbpfError(`pin map ${bpf.map_name(s.map)} at ${s.path}`, prc, libbpfLinesSince(mark)) });
      }

      const programs = new Map<string, BpfProgram>();
      for (const p of progs) {
        const fd = bpf.program_fd(p.ptr);
        if (fd < 0) continue; // autoload disabled
        programs.set(p.name, new BpfProgram(fd, { owned: false, name: p.name, section: p.section, log: logLevel ? bufferLines(p.log) : [] }));
      }
      const maps = new Map<string, BpfMap>();
      let rodata: BpfMap | undefined;
      for (let m = bpf.object_next_map(obj, null); m; m = bpf.object_next_map(obj, m)) {
        const fd = bpf.map_fd(m);
        if (fd < 0) continue;
        const map = new BpfMap(fd, mapInfoByFd(fd), false, bpf.map_name(m));
        if (bpf.map_is_internal(m)) {
          if (bpf.map_name(m).endsWith('.rodata')) rodata = map;
          continue;
        }
        maps.set(map.name, map);
      }
      const o = new BpfObject(path, elf, obj, programs, maps, rodata, opts.callsMap ?? 'cilium_calls');
      o.fillTailCalls();
      ok = true;
      return o;
    } finally {
      if (!ok) bpf.object_close(obj);
    }
  }

  /** A loaded program by function name (borrowed: valid until close()). Throws listing the known names. */
  program(name: string): BpfProgram {
    this.live();
    const p = this.programs.get(name);
    if (!p) throw new MembraneError(`program ${name} in ${basename(this.path)}`, { code: 'E_BPF_PROG', cause: `no such program (programs: ${[...this.programs.keys()].join(', ')})` });
    return p;
  }

  /** A map by name (borrowed: valid until close(); dup() it to keep it longer). Throws listing the known names. */
  map(name: string): BpfMap {
    this.live();
    const m = this.maps.get(name);
    if (!m) throw new MembraneError(`map ${name} in ${basename(this.path)}`, { code: 'E_BPF_MAP', cause: `no such map (maps: ${[...this.maps.keys()].join(', ')})` });
    return m;
  }

  /** The loaded bytes of a `.rodata` constant (read back from the kernel's frozen map). */
  constant(name: string): Buffer {
    this.live();
    const v = this.elf.variables('.rodata').find((x) => x.name === name);
    if (!v || !this.#rodata) throw new MembraneError(`constant ${name} in ${basename(this.path)}`, { code: 'E_BPF_CONST', cause: 'no such constant' });
    const all = this.#rodata.lookup(Buffer.alloc(4));
    if (!all) throw new MembraneError(`constant ${name} in ${basename(this.path)}`, { code: 'E_BPF_CONST', cause: '.rodata map is empty' });
    return all.subarray(v.offset, v.offset + v.size);
  }

  /**
   * Puts every program named tail_<N>_... into the calls map (PROG_ARRAY) at
   * index N. open() calls it before returning, i.e. before any entry program
   * can be attached, so no tail call misses. Returns the indices filled.
   * Throws if N is out of the map's range.
   */
  fillTailCalls(): number[] {
    this.live();
    const calls = this.maps.get(this.#callsMap);
    if (!calls || calls.type !== MAP_TYPE.PROG_ARRAY) return [];
    const filled: number[] = [];
    const key = Buffer.alloc(4);
    const val = Buffer.alloc(4);
    for (const p of this.programs.values()) {
      const m = TAIL_RE.exec(p.name);
      if (!m) continue;
      const idx = Number(m[1]);
      if (idx >= calls.maxEntries) {
        throw new MembraneError(`fill ${this.#callsMap} in ${basename(this.path)}`, { code: 'E_BPF_PROG', cause: `tail call ${p.name}: index ${idx} >= max_entries ${calls.maxEntries}` });
      }
      key.writeUInt32LE(idx);
      val.writeUInt32LE(p.fd);
      calls.update(key, val);
      filled.push(idx);
    }
    return filled.sort((a, b) => a - b);
  }

  /** Closes every fd the object holds and invalidates its program/map handles. Idempotent. */
  close(): void {
    if (!this.#obj) return;
    for (const p of this.programs.values()) p.invalidate();
    for (const m of this.maps.values()) m.invalidate();
    this.#rodata?.invalidate();
    bpf.object_close(this.#obj);
    this.#obj = null;
  }

  private live(): void {
    if (!this.#obj) throw new MembraneError(`use bpf object ${basename(this.path)}`, { code: 'E_CLOSED', cause: 'object is closed' });
  }
}

function applyPatches(obj: Ptr, file: string, patches: Patch[]): void {
  const m = bpf.object_find_map_by_name(obj, '.rodata');
  if (!m) throw new MembraneError(`set constants of ${file}`, { code: 'E_BPF_CONST', cause: 'libbpf has no .rodata map for this object' });
  const sz = Buffer.alloc(8);
  const ptr = bpf.map_initial_value(m, sz);
  if (!ptr) throw new MembraneError(`set constants of ${file}`, { code: 'E_BPF_CONST', cause: 'no initial value for .rodata' });
  const size = Number(sz.readBigUInt64LE(0));
  const data = readNative(ptr, size);
  for (const p of patches) p.bytes.copy(data, p.variable.offset);
  const rc = bpf.map_set_initial_value(m, data, size);
  if (rc < 0) throw new MembraneError(`set constants of ${file}`, { code: 'E_BPF_CONST', cause: new LibbpfError('bpf_map__set_initial_value', rc) });
}

// --- pins -------------------------------------------------------------------

function configurePins(obj: Ptr, file: string, opts: BpfObjectOptions): PinSwap[] {
  const swaps: PinSwap[] = [];
  for (let m = bpf.object_next_map(obj, null); m; m = bpf.object_next_map(obj, m)) {
    const name = bpf.map_name(m);
    let path: string | null = null;
    // libbpf gives pin-by-name maps a path under /sys/fs/bpf at open time.
    if (bpf.map_pin_path(m)) path = opts.pinRoot ? `${opts.pinRoot}/${name}` : null;
    const explicit = opts.mapPins?.[name];
    if (explicit) path = explicit;
    const rc = bpf.map_set_pin_path(m, path);
    if (rc < 0) throw new MembraneError(`set pin path of map ${name} in ${file}`, { code: 'E_BPF_LOAD', cause: new LibbpfError('bpf_map__set_pin_path', rc) });
    if (!path || !pinExists(path)) continue;
    const diff = pinDifferences(m, path);
    if (diff.length === 0) continue;
    if (opts.onIncompatiblePin !== 'replace') {
      throw new MembraneError(`load ${file}: reuse pinned map ${path}`, {
        code: 'E_BPF_PIN_INCOMPATIBLE',
        cause: `pinned map differs from the definition of "${name}": ${diff.join(', ')}`,
        hint: `remove the pin (rm ${path}) or load with onIncompatiblePin: 'replace'`,
      });
    }
    bpf.map_set_pin_path(m, null); // create a fresh map; the pin is swapped after a successful load
    swaps.push({ map: m, path });
  }
  return swaps;
}

/** What differs between an existing pin and the ELF map definition (libbpf's reuse check). */
function pinDifferences(m: Ptr, path: string): string[] {
  const fd = bpf.obj_get(path);
  if (fd < 0) return [`cannot open pin (${new LibbpfError('bpf_obj_get', fd).message})`];
  try {
    let info;
    try {
      info = mapInfoByFd(fd);
    } catch {
      return ['pinned object is not a map'];
    }
    const want = {
      type: bpf.map_type(m), keySize: bpf.map_key_size(m), valueSize: bpf.map_value_size(m),
      maxEntries: bpf.map_max_entries(m), flags: bpf.map_flags(m),
    };
    const d: string[] = [];
    if (info.type !== want.type) d.push(`type ${mapTypeName(info.type)} != ${mapTypeName(want.type)}`);
    if (info.keySize !== want.keySize) d.push(`key size ${info.keySize} != ${want.keySize}`);
    if (info.valueSize !== want.valueSize) d.push(`value size ${info.valueSize} != ${want.valueSize}`);
    if (info.maxEntries !== want.maxEntries) d.push(`max entries ${info.maxEntries} != ${want.maxEntries}`);
    if (info.flags !== want.flags) d.push(`flags 0x${info.flags.toString(16)} != 0x${want.flags.toString(16)}`);
    const extra = BigInt(bpf.map_extra(m));
    if (info.mapExtra !== extra) d.push(`map_extra ${info.mapExtra} != ${extra}`);
    return d;
  } finally {
    closeFd(fd);
  }
}

// --- verifier logs ----------------------------------------------------------

function bufferLines(buf: Buffer): string[] {
  const end = buf.indexOf(0);
  const text = buf.toString('utf8', 0, end < 0 ? buf.length : end);
  const lines = text.split('\n');
  while (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** The program libbpf reported as failing, else the first one with a non-empty log. */
function failedProgram<T extends { name: string; log: Buffer }>(lines: string[], progs: T[]): T | undefined {
  for (const l of lines) {
    const m = /prog '([^']+)': (?:failed to load|BPF program load failed)/.exec(l);
    const p = m && progs.find((x) => x.name === m[1]);
    if (p) return p;
  }
  return progs.find((p) => p.log[0] !== 0);
}
