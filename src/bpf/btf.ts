// Pure reader for BTF, the type information clang writes into a BPF object's
// `.BTF` section (format: include/uapi/linux/btf.h, Documentation/bpf/btf.rst).
// No syscalls and no bpftool: the loader uses it for map definitions, and the
// tests use it to hold the TypeScript codecs to the C structs (sizes, member
// offsets), to list programs (FUNC), and to read load-time constants with the
// descriptions their "config:" decl tags carry.
//
// Layout: a 24-byte header, then the type section (one btf_type of 12 bytes
// per type, each followed by kind-specific data) and the string section
// (names as offsets into it). Type ids count from 1 in section order; id 0 is
// void. Everything is little-endian here: ElfObject rejects big-endian objects.
import { MembraneError } from '../shared/errors.ts';

export const BTF_KIND = {
  INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8,
  VOLATILE: 9, CONST: 10, RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14,
  DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19,
} as const;

const KIND_NAMES = Object.fromEntries(Object.entries(BTF_KIND).map(([name, kind]) => [kind, name])) as Record<number, string>;

/** "STRUCT" for 4, "KIND_42" for a kind this reader does not know. */
export function btfKindName(kind: number): string {
  return KIND_NAMES[kind] ?? `KIND_${kind}`;
}

/** btf_type.info encoding bits of an INT (BTF_INT_SIGNED, _CHAR, _BOOL). */
export const BTF_INT = { SIGNED: 1, CHAR: 2, BOOL: 4 } as const;

/** Linkage of a VAR (btf_var.linkage) or FUNC (its vlen): 0 static, 1 global, 2 extern. */
export const BTF_LINKAGE = { STATIC: 0, GLOBAL: 1, EXTERN: 2 } as const;

export interface BtfRawMember {
  name: string;
  type: number;
  /** Bit offset from the start of the struct (decoded from btf_member.offset). */
  bitOffset: number;
  /** Bitfield width when the struct's kind_flag is set, else 0. */
  bitfieldSize: number;
}

/** One type as stored: common header plus the fields its kind carries. */
export interface BtfType {
  id: number;
  kind: number;
  name: string;
  vlen: number;
  kindFlag: boolean;
  /** btf_type.size for INT/STRUCT/UNION/ENUM/ENUM64/DATASEC/FLOAT, btf_type.type (a type id) for the others. */
  sizeOrType: number;
  int?: { encoding: number; offset: number; bits: number };
  array?: { type: number; indexType: number; nelems: number };
  members?: BtfRawMember[];
  /** ENUM values are numbers (signed if kindFlag), ENUM64 values bigints. */
  enumValues?: { name: string; value: number | bigint }[];
  params?: { name: string; type: number }[];
  /** VAR: btf_var.linkage; FUNC: its vlen. */
  linkage?: number;
  /** DATASEC entries. clang leaves `offset` 0 in objects (libbpf fills it in at load); use the ELF symbols for offsets. */
  secinfo?: { type: number; offset: number; size: number }[];
  /** DECL_TAG: -1 tags the declaration itself, N >= 0 its Nth member or parameter. */
  componentIdx?: number;
}

/** A struct member with its byte offset resolved. */
export interface BtfMember {
  name: string;
  type: number;
  /** Byte offset in the struct (rounded down for bitfields). */
  offset: number;
  bitOffset: number;
  /** Width in bits for a bitfield, else 0. */
  bitSize: number;
  /** True for bitfields: the member has a bit width or does not start on a byte. */
  bitfield: boolean;
}

export interface BtfStruct {
  id: number;
  name: string;
  size: number;
  members: BtfMember[];
}

/** A BTF-defined map (`struct { __uint(type, ...); ... } name SEC(".maps")`), resolved. Fields absent from the C definition are undefined. */
export interface BtfMapDef {
  type?: number;
  keySize?: number;
  valueSize?: number;
  maxEntries?: number;
  /** map_flags. */
  flags?: number;
  /** 0 none, 1 LIBBPF_PIN_BY_NAME. */
  pinning?: number;
  /** C type of __type(key, T), e.g. "struct ipcache_key", "__u32". */
  key?: string;
  value?: string;
}

export interface BtfDatasecVar {
  name: string;
  /** Type id of the VAR. */
  id: number;
  /** As recorded in the object: 0 for every variable before libbpf fixes it up. */
  offset: number;
  size: number;
  linkage: number;
}

/** A load-time constant in .rodata, with the description from its "config:" decl tag. */
export interface BtfConfigVar {
  name: string;
  size: number;
  description?: string;
}

const HEADER_LEN = 24;
const TYPE_LEN = 12;
const MAX_CHAIN = 32; // typedef/qualifier chains and nested names: bounds malformed cycles

function btfError(cause: string): MembraneError {
  return new MembraneError('parse BTF', { code: 'E_BPF_ELF', cause });
}

/** Parsed BTF: every type by id, and the queries the loader and the tests need. */
export class Btf {
  /** Index = type id; [0] is void (undefined). */
  readonly types: readonly (BtfType | undefined)[];

  constructor(types: (BtfType | undefined)[]) {
    this.types = types;
  }

  /** Parses a `.BTF` section. Throws MembraneError E_BPF_ELF naming the offending type or offset. */
  static parse(data: Buffer): Btf {
    return new Btf(parseTypes(data));
  }

  type(id: number): BtfType | undefined {
    return this.types[id];
  }

  private ofKind(kind: number): BtfType[] {
    return this.types.filter((t): t is BtfType => t?.kind === kind);
  }

  /** Skips typedef/const/volatile/restrict/type_tag. */
  resolve(id: number): number {
    for (let i = 0; i < MAX_CHAIN; i++) {
      const t = this.types[id];
      if (!t || !isModifier(t.kind)) return id;
      id = t.sizeOrType;
    }
    return id;
  }

  /** sizeof the type in bytes; 0 for void, functions and unknown ids. */
  sizeOf(id: number, depth = 0): number {
    const t = this.types[this.resolve(id)];
    if (!t || depth > MAX_CHAIN) return 0;
    switch (t.kind) {
      case BTF_KIND.PTR: return 8;
      case BTF_KIND.ARRAY: return t.array!.nelems * this.sizeOf(t.array!.type, depth + 1);
      case BTF_KIND.VAR: return this.sizeOf(t.sizeOrType, depth + 1);
      case BTF_KIND.INT: case BTF_KIND.STRUCT: case BTF_KIND.UNION: case BTF_KIND.ENUM:
      case BTF_KIND.ENUM64: case BTF_KIND.FLOAT: case BTF_KIND.DATASEC: return t.sizeOrType;
      default: return 0;
    }
  }

  /** The type a pointer points to (0 if `id` is not a pointer). */
  pointee(id: number): number {
    const t = this.types[this.resolve(id)];
    return t?.kind === BTF_KIND.PTR ? t.sizeOrType : 0;
  }

  /** `__uint(name, N)` is `int (*name)[N]`: returns N (0 if the member is not of that shape). */
  uintMember(id: number): number {
    const arr = this.types[this.resolve(this.pointee(id))];
    return arr?.kind === BTF_KIND.ARRAY ? arr.array!.nelems : 0;
  }

  /** C spelling of a type: "struct ipcache_key", "__u32", "const volatile __u32", "__u8[6]", "struct x *". */
  typeName(id: number, depth = 0): string {
    if (id === 0) return 'void';
    const t = this.types[id];
    if (!t) return `<type ${id}>`;
    if (depth > MAX_CHAIN) return '...';
    const name = t.name || '<anon>';
    const inner = () => this.typeName(t.sizeOrType, depth + 1);
    switch (t.kind) {
      case BTF_KIND.STRUCT: return `struct ${name}`;
      case BTF_KIND.UNION: return `union ${name}`;
      case BTF_KIND.ENUM: case BTF_KIND.ENUM64: return `enum ${name}`;
      case BTF_KIND.FWD: return `${t.kindFlag ? 'union' : 'struct'} ${name}`;
      case BTF_KIND.PTR: return `${inner()} *`;
      case BTF_KIND.CONST: return `const ${inner()}`;
      case BTF_KIND.VOLATILE: return `volatile ${inner()}`;
      case BTF_KIND.RESTRICT: return `restrict ${inner()}`;
      case BTF_KIND.TYPE_TAG: return inner();
      case BTF_KIND.ARRAY: return `${this.typeName(t.array!.type, depth + 1)}[${t.array!.nelems}]`;
      case BTF_KIND.FUNC_PROTO:
        return `${inner()} (${(t.params ?? []).map((p) => this.typeName(p.type, depth + 1)).join(', ')})`;
      default: return name; // INT, FLOAT, TYPEDEF, VAR, FUNC, DATASEC, DECL_TAG
    }
  }

  /** The named struct with byte offsets and bitfield flags, or undefined. */
  struct(name: string): BtfStruct | undefined {
    const t = this.ofKind(BTF_KIND.STRUCT).find((s) => s.name === name);
    if (!t) return undefined;
    return { id: t.id, name, size: t.sizeOrType, members: (t.members ?? []).map((m) => this.member(m)) };
  }

  private member(m: BtfRawMember): BtfMember {
    let bitOffset = m.bitOffset;
    let bitSize = m.bitfieldSize;
    // Without kind_flag, a bitfield is a member whose INT type is narrower
    // than its storage or starts at a bit offset inside it.
    const int = this.types[this.resolve(m.type)];
    if (bitSize === 0 && int?.kind === BTF_KIND.INT && int.int &&
      (int.int.offset !== 0 || int.int.bits !== int.sizeOrType * 8)) {
      bitOffset += int.int.offset;
      bitSize = int.int.bits;
    }
    return {
      name: m.name, type: m.type, offset: Math.floor(bitOffset / 8), bitOffset, bitSize,
      bitfield: bitSize !== 0 || bitOffset % 8 !== 0,
    };
  }

  /** Names of the enumerators of enum `name` and their values, or undefined. */
  enumValues(name: string): Map<string, number | bigint> | undefined {
    const t = this.types.find((x) => (x?.kind === BTF_KIND.ENUM || x?.kind === BTF_KIND.ENUM64) && x.name === name);
    return t ? new Map((t.enumValues ?? []).map((v) => [v.name, v.value])) : undefined;
  }

  /** Names of all FUNCs, in type order: programs and subprograms clang did not inline. */
  funcs(): string[] {
    return this.ofKind(BTF_KIND.FUNC).map((f) => f.name);
  }

  /** Variables of a data section (".maps", ".rodata", ".bss", "license"), in DATASEC order; [] if absent. */
  datasecVars(section: string): BtfDatasecVar[] {
    const ds = this.ofKind(BTF_KIND.DATASEC).find((d) => d.name === section);
    return (ds?.secinfo ?? []).map((v) => {
      const variable = this.types[v.type];
      return { name: variable?.name ?? '', id: v.type, offset: v.offset, size: v.size, linkage: variable?.linkage ?? 0 };
    });
  }

  /** Decl tag strings attached to type `id` (component -1: the declaration itself). */
  declTags(id: number, componentIdx = -1): string[] {
    return this.ofKind(BTF_KIND.DECL_TAG)
      .filter((t) => t.sizeOrType === id && t.componentIdx === componentIdx)
      .map((t) => t.name);
  }

  /** Load-time constants: the .rodata variables and the text of their "config:" decl tags. */
  configVars(): BtfConfigVar[] {
    return this.datasecVars('.rodata').map((v) => {
      const out: BtfConfigVar = { name: v.name, size: v.size };
      const tag = this.declTags(v.id).find((s) => s.startsWith('config:'));
      if (tag !== undefined) out.description = tag.slice('config:'.length);
      return out;
    });
  }

  /** Every map in ".maps": __uint fields as numbers, __type fields as sizes and C type names. */
  mapDefs(): Map<string, BtfMapDef> {
    const out = new Map<string, BtfMapDef>();
    for (const v of this.datasecVars('.maps')) {
      const variable = this.types[v.id];
      if (variable?.kind !== BTF_KIND.VAR) continue;
      const def = this.types[this.resolve(variable.sizeOrType)];
      if (def?.kind !== BTF_KIND.STRUCT) continue;
      const m: BtfMapDef = {};
      for (const member of def.members ?? []) {
        const n = () => this.uintMember(member.type);
        switch (member.name) {
          case 'type': m.type = n(); break;
          case 'max_entries': m.maxEntries = n(); break;
          case 'map_flags': m.flags = n(); break;
          case 'pinning': m.pinning = n(); break;
          case 'key_size': m.keySize = n(); break;
          case 'value_size': m.valueSize = n(); break;
          case 'key': case 'value': {
            const target = this.pointee(member.type);
            m[member.name === 'key' ? 'keySize' : 'valueSize'] = this.sizeOf(target);
            m[member.name] = this.typeName(target);
            break;
          }
          default: break; // values (__array), numa_node, map_extra: not needed yet
        }
      }
      out.set(variable.name, m);
    }
    return out;
  }
}

/** Parses a `.BTF` section (types and strings). Throws MembraneError E_BPF_ELF on malformed data. */
export function parseBtf(data: Buffer): Btf {
  return Btf.parse(data);
}

function isModifier(kind: number): boolean {
  return kind === BTF_KIND.TYPEDEF || kind === BTF_KIND.VOLATILE || kind === BTF_KIND.CONST ||
    kind === BTF_KIND.RESTRICT || kind === BTF_KIND.TYPE_TAG;
}

/** Bytes of kind-specific data after the 12-byte btf_type, or undefined for an unknown kind. */
function trailingBytes(kind: number, vlen: number): number | undefined {
  switch (kind) {
    case BTF_KIND.INT: case BTF_KIND.VAR: case BTF_KIND.DECL_TAG: return 4;
    case BTF_KIND.ARRAY: return 12;
    case BTF_KIND.STRUCT: case BTF_KIND.UNION: case BTF_KIND.DATASEC: case BTF_KIND.ENUM64: return 12 * vlen;
    case BTF_KIND.ENUM: case BTF_KIND.FUNC_PROTO: return 8 * vlen;
    case BTF_KIND.PTR: case BTF_KIND.FWD: case BTF_KIND.TYPEDEF: case BTF_KIND.VOLATILE: case BTF_KIND.CONST:
    case BTF_KIND.RESTRICT: case BTF_KIND.FUNC: case BTF_KIND.FLOAT: case BTF_KIND.TYPE_TAG: return 0;
    default: return undefined;
  }
}

function parseTypes(data: Buffer): (BtfType | undefined)[] {
  if (data.length < HEADER_LEN) throw btfError(`${data.length} bytes, shorter than the ${HEADER_LEN}-byte header`);
  const magic = data.readUInt16LE(0);
  if (magic !== 0xeb9f) throw btfError(`bad magic 0x${magic.toString(16)} (want 0xeb9f)`);
  if (data[2] !== 1) throw btfError(`version ${data[2]} (this reader knows version 1)`);
  const hdrLen = data.readUInt32LE(4);
  if (hdrLen < HEADER_LEN || hdrLen > data.length) throw btfError(`header length ${hdrLen} out of range (data is ${data.length} bytes)`);
  const typeOff = hdrLen + data.readUInt32LE(8);
  const typeEnd = typeOff + data.readUInt32LE(12);
  const strOff = hdrLen + data.readUInt32LE(16);
  const strLen = data.readUInt32LE(20);
  if (typeEnd > data.length) throw btfError(`type section (bytes ${typeOff}..${typeEnd}) past end of data (${data.length} bytes)`);
  if (strOff + strLen > data.length) throw btfError(`string section (bytes ${strOff}..${strOff + strLen}) past end of data (${data.length} bytes)`);

  const types: (BtfType | undefined)[] = [undefined];
  const str = (off: number): string => {
    if (off >= strLen) throw btfError(`type ${types.length}: name offset ${off} past the string section (${strLen} bytes)`);
    const start = strOff + off;
    const end = data.indexOf(0, start);
    if (end === -1 || end >= strOff + strLen) throw btfError(`type ${types.length}: name at offset ${off} is not NUL-terminated`);
    return data.toString('utf8', start, end);
  };

  let o = typeOff;
  while (o < typeEnd) {
    const id = types.length;
    if (o + TYPE_LEN > typeEnd) throw btfError(`type ${id}: truncated (${typeEnd - o} bytes left, want ${TYPE_LEN})`);
    const info = data.readUInt32LE(o + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const extra = trailingBytes(kind, vlen);
    if (extra === undefined) throw btfError(`type ${id}: unknown kind ${kind} at byte ${o - typeOff} of the type section`);
    if (o + TYPE_LEN + extra > typeEnd) throw btfError(`type ${id} (${btfKindName(kind)}): ${extra} bytes of data run past the type section`);
    const t: BtfType = {
      id, kind, name: str(data.readUInt32LE(o)), vlen, kindFlag: (info >>> 31) === 1, sizeOrType: data.readUInt32LE(o + 8),
    };
    const p = o + TYPE_LEN;
    const each = <T>(size: number, read: (at: number) => T): T[] => Array.from({ length: vlen }, (_, i) => read(p + i * size));
    switch (kind) {
      case BTF_KIND.INT: {
        const v = data.readUInt32LE(p);
        t.int = { encoding: (v >>> 24) & 0x0f, offset: (v >>> 16) & 0xff, bits: v & 0xff };
        break;
      }
      case BTF_KIND.ARRAY:
        t.array = { type: data.readUInt32LE(p), indexType: data.readUInt32LE(p + 4), nelems: data.readUInt32LE(p + 8) };
        break;
      case BTF_KIND.STRUCT: case BTF_KIND.UNION:
        t.members = each(12, (at) => {
          const off = data.readUInt32LE(at + 8);
          return {
            name: str(data.readUInt32LE(at)), type: data.readUInt32LE(at + 4),
            bitOffset: t.kindFlag ? off & 0xffffff : off, bitfieldSize: t.kindFlag ? off >>> 24 : 0,
          };
        });
        break;
      case BTF_KIND.ENUM:
        t.enumValues = each(8, (at) => ({
          name: str(data.readUInt32LE(at)), value: t.kindFlag ? data.readInt32LE(at + 4) : data.readUInt32LE(at + 4),
        }));
        break;
      case BTF_KIND.ENUM64:
        t.enumValues = each(12, (at) => {
          const v = (BigInt(data.readUInt32LE(at + 8)) << 32n) | BigInt(data.readUInt32LE(at + 4));
          return { name: str(data.readUInt32LE(at)), value: t.kindFlag ? BigInt.asIntN(64, v) : v };
        });
        break;
      case BTF_KIND.FUNC_PROTO:
        t.params = each(8, (at) => ({ name: str(data.readUInt32LE(at)), type: data.readUInt32LE(at + 4) }));
        break;
      case BTF_KIND.FUNC: t.linkage = vlen; break;
      case BTF_KIND.VAR: t.linkage = data.readUInt32LE(p); break;
      case BTF_KIND.DATASEC:
        t.secinfo = each(12, (at) => ({ type: data.readUInt32LE(at), offset: data.readUInt32LE(at + 4), size: data.readUInt32LE(at + 8) }));
        break;
      case BTF_KIND.DECL_TAG: t.componentIdx = data.readInt32LE(p); break;
      default: break;
    }
    types.push(t);
    o = p + extra;
  }
  return types;
}
