// Pure encoders/decoders for the libbpf option structs and kernel info
// structs the bpf layer passes as Buffers. Offsets come from the installed
// headers (libbpf 1.4.6 /usr/include/bpf, linux UAPI) via offsetof(); the
// kernel and libbpf accept a shorter or longer struct as long as `sz`/the
// length says so and unknown tail bytes are zero, so these stay valid on
// newer versions.

// enum bpf_map_type (subset, with names for messages)
export const MAP_TYPE = {
  HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERF_EVENT_ARRAY: 4, PERCPU_HASH: 5, PERCPU_ARRAY: 6,
  STACK_TRACE: 7, CGROUP_ARRAY: 8, LRU_HASH: 9, LRU_PERCPU_HASH: 10, LPM_TRIE: 11,
  ARRAY_OF_MAPS: 12, HASH_OF_MAPS: 13, DEVMAP: 14, SOCKMAP: 15, CPUMAP: 16, XSKMAP: 17,
  SOCKHASH: 18, CGROUP_STORAGE: 19, REUSEPORT_SOCKARRAY: 20, PERCPU_CGROUP_STORAGE: 21,
  QUEUE: 22, STACK: 23, SK_STORAGE: 24, DEVMAP_HASH: 25, STRUCT_OPS: 26, RINGBUF: 27,
} as const;

export function mapTypeName(t: number): string {
  for (const [k, v] of Object.entries(MAP_TYPE)) if (v === t) return k.toLowerCase();
  return `type ${t}`;
}

/** Map types whose values are stored once per possible CPU. */
export const PERCPU_MAP_TYPES: ReadonlySet<number> = new Set([
  MAP_TYPE.PERCPU_HASH, MAP_TYPE.PERCPU_ARRAY, MAP_TYPE.LRU_PERCPU_HASH, MAP_TYPE.PERCPU_CGROUP_STORAGE,
]);

export const PROG_TYPE_SCHED_CLS = 3;

// enum bpf_attach_type (read from the running kernel's BTF: BPF_TCX_INGRESS = 46)
export const ATTACH_TCX_INGRESS = 46;
export const ATTACH_TCX_EGRESS = 47;
export const LINK_TYPE_TCX = 11;

// enum bpf_tc_attach_point
export const TC_INGRESS = 1;
export const TC_EGRESS = 2;
export const TC_CUSTOM = 4;
export const TC_F_REPLACE = 1;

export const UPDATE_FLAGS = { any: 0, noexist: 1, exist: 2 } as const;

/** struct bpf_tc_hook { size_t sz; int ifindex; enum attach_point; __u32 parent; } = 24 bytes */
export function encodeTcHook(ifindex: number, attachPoint: number, parent = 0): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(24n, 0);
  b.writeInt32LE(ifindex, 8);
  b.writeInt32LE(attachPoint, 12);
  b.writeUInt32LE(parent, 16);
  return b;
}

export interface TcOpts {
  progFd?: number;
  flags?: number;
  progId?: number;
  handle?: number;
  priority?: number;
}

/** struct bpf_tc_opts { size_t sz; int prog_fd; __u32 flags, prog_id, handle, priority; } = 32 bytes */
export function encodeTcOpts(o: TcOpts): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(32n, 0);
  b.writeInt32LE(o.progFd ?? 0, 8);
  b.writeUInt32LE(o.flags ?? 0, 12);
  b.writeUInt32LE(o.progId ?? 0, 16);
  b.writeUInt32LE(o.handle ?? 0, 20);
  b.writeUInt32LE(o.priority ?? 0, 24);
  return b;
}

export function decodeTcOpts(b: Buffer): Required<TcOpts> {
  return {
    progFd: b.readInt32LE(8), flags: b.readUInt32LE(12), progId: b.readUInt32LE(16),
    handle: b.readUInt32LE(20), priority: b.readUInt32LE(24),
  };
}

/**
 * struct bpf_prog_query_opts (64 bytes): sz@0, query_flags@8, attach_flags@12,
 * prog_ids@16, count@24, prog_attach_flags@32, link_ids@40, link_attach_flags@48, revision@56.
 * Pointer fields hold addresses; the caller keeps the pointed-to Buffers alive.
 */
export function encodeProgQueryOpts(o: { progIds: bigint; linkIds: bigint; count: number }): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(64n, 0);
  b.writeBigUInt64LE(o.progIds, 16);
  b.writeUInt32LE(o.count, 24);
  b.writeBigUInt64LE(o.linkIds, 40);
  return b;
}

export function decodeProgQueryOpts(b: Buffer): { attachFlags: number; count: number; revision: bigint } {
  return { attachFlags: b.readUInt32LE(12), count: b.readUInt32LE(24), revision: b.readBigUInt64LE(56) };
}

/**
 * struct bpf_test_run_opts (80 bytes): sz@0, data_in@8, data_out@16, data_size_in@24,
 * data_size_out@28, ctx_in@32, ctx_out@40, ctx_size_in@48, ctx_size_out@52,
 * retval@56, repeat@60, duration@64, flags@68, cpu@72, batch_size@76.
 */
export function encodeTestRunOpts(o: {
  dataIn: bigint; dataSizeIn: number; dataOut: bigint; dataSizeOut: number;
  ctxIn?: bigint; ctxSizeIn?: number; ctxOut?: bigint; ctxSizeOut?: number;
  repeat?: number; flags?: number; cpu?: number;
}): Buffer {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(80n, 0);
  b.writeBigUInt64LE(o.dataIn, 8);
  b.writeBigUInt64LE(o.dataOut, 16);
  b.writeUInt32LE(o.dataSizeIn, 24);
  b.writeUInt32LE(o.dataSizeOut, 28);
  b.writeBigUInt64LE(o.ctxIn ?? 0n, 32);
  b.writeBigUInt64LE(o.ctxOut ?? 0n, 40);
  b.writeUInt32LE(o.ctxSizeIn ?? 0, 48);
  b.writeUInt32LE(o.ctxSizeOut ?? 0, 52);
  b.writeInt32LE(o.repeat ?? 0, 60);
  b.writeUInt32LE(o.flags ?? 0, 68);
  b.writeUInt32LE(o.cpu ?? 0, 72);
  return b;
}

export function decodeTestRunOpts(b: Buffer): { dataSizeOut: number; ctxSizeOut: number; retval: number; duration: number } {
  return { dataSizeOut: b.readUInt32LE(28), ctxSizeOut: b.readUInt32LE(52), retval: b.readUInt32LE(56), duration: b.readUInt32LE(64) };
}

function cname(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return s.toString('utf8', 0, z < 0 ? len : z);
}

// Info buffers are sized generously: the kernel copies min(our length, its struct).
export const PROG_INFO_SIZE = 256;
export const MAP_INFO_SIZE = 128;
export const LINK_INFO_SIZE = 128;

export interface ProgInfo {
  type: number;
  id: number;
  tag: string;
  /** Kernel name, truncated to 15 characters (BPF_OBJ_NAME_LEN - 1). */
  name: string;
  btfId: number;
  funcInfoRecSize: number;
  nrFuncInfo: number;
}

/** struct bpf_prog_info: type@0 id@4 tag[8]@8 name[16]@64 btf_id@128 func_info_rec_size@132 func_info@136 nr_func_info@144 */
export function decodeProgInfo(b: Buffer): ProgInfo {
  return {
    type: b.readUInt32LE(0), id: b.readUInt32LE(4), tag: b.subarray(8, 16).toString('hex'),
    name: cname(b, 64, 16), btfId: b.readUInt32LE(128), funcInfoRecSize: b.readUInt32LE(132), nrFuncInfo: b.readUInt32LE(144),
  };
}

/** Request buffer for one func_info record (bpftool's trick to get a program's full BTF name). */
export function encodeProgInfoFuncInfoRequest(recSize: number, funcInfoAddr: bigint): Buffer {
  const b = Buffer.alloc(PROG_INFO_SIZE);
  b.writeUInt32LE(recSize, 132);
  b.writeBigUInt64LE(funcInfoAddr, 136);
  b.writeUInt32LE(1, 144);
  return b;
}

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
  btfId: number;
  mapExtra: bigint;
}

/** struct bpf_map_info: type@0 id@4 key_size@8 value_size@12 max_entries@16 map_flags@20 name[16]@24 btf_id@64 map_extra@80 */
export function decodeMapInfo(b: Buffer): MapInfo {
  return {
    type: b.readUInt32LE(0), id: b.readUInt32LE(4), keySize: b.readUInt32LE(8), valueSize: b.readUInt32LE(12),
    maxEntries: b.readUInt32LE(16), flags: b.readUInt32LE(20), name: cname(b, 24, 16), btfId: b.readUInt32LE(64),
    mapExtra: b.readBigUInt64LE(80),
  };
}

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  /** tcx links only: 0 once the device is gone (the link is defunct). */
  tcxIfindex: number;
  tcxAttachType: number;
}

/** struct bpf_link_info: type@0 id@4 prog_id@8, union@16: tcx { ifindex@16, attach_type@20 } */
export function decodeLinkInfo(b: Buffer): LinkInfo {
  return { type: b.readUInt32LE(0), id: b.readUInt32LE(4), progId: b.readUInt32LE(8), tcxIfindex: b.readUInt32LE(16), tcxAttachType: b.readUInt32LE(20) };
}

export interface MapCreateOptions {
  innerMapFd?: number;
  flags?: number;
}

/**
 * struct bpf_map_create_opts (56 bytes): sz@0, btf_fd@8, btf_key_type_id@12,
 * btf_value_type_id@16, btf_vmlinux_value_type_id@20, inner_map_fd@24,
 * map_flags@28, map_extra@32, numa_node@40, map_ifindex@44,
 * value_type_btf_obj_fd@48, token_fd@52.
 */
export function encodeMapCreateOpts(o: MapCreateOptions): Buffer {
  const b = Buffer.alloc(56);
  b.writeBigUInt64LE(56n, 0);
  b.writeUInt32LE(o.innerMapFd ?? 0, 24);
  b.writeUInt32LE(o.flags ?? 0, 28);
  return b;
}

/** struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; } = 24 bytes */
export function encodeMapBatchOpts(): Buffer {
  const b = Buffer.alloc(24);
  b.writeBigUInt64LE(24n, 0);
  return b;
}

/** BPF_F_NO_PREALLOC: required for LPM tries. */
export const MAP_F_NO_PREALLOC = 1;

/** Map types whose values are other maps (update with a map fd, lookup gives a map id). */
export const MAP_IN_MAP_TYPES: ReadonlySet<number> = new Set([MAP_TYPE.ARRAY_OF_MAPS, MAP_TYPE.HASH_OF_MAPS]);
