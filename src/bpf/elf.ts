// Pure reader for the BPF ELF64 objects clang writes (little-endian,
// relocatable, EM_BPF). No syscalls: the same bytes give the same answer on
// every host, so the loader can validate names (programs, maps, load-time
// constants) before touching the kernel, and tests run without root.
//
// What libbpf treats as what (and so do we):
// - programs: FUNC symbols in executable sections other than `.text`
//   (functions in `.text` are subprograms, not entry points);
// - maps: OBJECT symbols in `.maps` (BTF-defined maps); their definition
//   (type, sizes, flags, pinning) comes from the `.maps` DATASEC in `.BTF`;
// - load-time constants: OBJECT symbols in `.rodata`. clang 14 leaves the
//   DATASEC offsets at 0 (libbpf fixes them up), so the symbol value is the
//   offset of a variable inside the section.
import { readFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  entsize: number;
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
  /** STT_*: 0 NOTYPE, 1 OBJECT, 2 FUNC, 3 SECTION, 4 FILE. */
  type: number;
  /** STB_*: 0 LOCAL, 1 GLOBAL, 2 WEAK. */
  bind: number;
  sectionIndex: number;
  /** Name of the section the symbol is defined in ('' for undefined/absolute). */
  section: string;
}

export interface ElfProgram {
  name: string;
  /** ELF section, i.e. the SEC("...") string: tells libbpf the program type. */
  section: string;
  /** Offset of the first instruction inside the section, in bytes. */
  offset: number;
  /** Number of 8-byte instructions (wide instructions count twice). */
  insns: number;
}

/** A BTF-defined map as declared in `.maps` (fields absent from the C definition are undefined). */
export interface ElfMap {
  name: string;
  type?: number;
  keySize?: number;
  valueSize?: number;
  maxEntries?: number;
  flags?: number;
  /** 0 none, 1 LIBBPF_PIN_BY_NAME. */
  pinning?: number;
}

export interface ElfVariable {
  name: string;
  /** Byte offset inside the section (`.rodata`). */
  offset: number;
  size: number;
}

const SHT_SYMTAB = 2;
const SHF_EXECINSTR = 0x4n;
const STT_OBJECT = 1;
const STT_FUNC = 2;
const EM_BPF = 247;

function elfError(path: string, cause: string): MembraneError {
  return new MembraneError(`read bpf object ${path}`, { code: 'E_BPF_ELF', cause });
}

/** A parsed BPF object file. Holds a copy of the bytes; no fds. */
export class ElfObject {
  readonly path: string;
  readonly sections: ElfSection[];
  readonly symbols: ElfSymbol[];
  private readonly buf: Buffer;

  private constructor(path: string, buf: Buffer) {
    this.path = path;
    this.buf = buf;
    if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw elfError(path, 'not an ELF file');
    if (buf[4] !== 2) throw elfError(path, 'not ELF64');
    if (buf[5] !== 1) throw elfError(path, 'not little-endian (big-endian BPF objects are not supported)');
    const machine = buf.readUInt16LE(18);
    if (machine !== EM_BPF) throw elfError(path, `e_machine is ${machine}, not EM_BPF (247)`);
    const shoff = Number(buf.readBigUInt64LE(40));
    const shentsize = buf.readUInt16LE(58);
    const shnum = buf.readUInt16LE(60);
    const shstrndx = buf.readUInt16LE(62);
    if (shoff + shnum * shentsize > buf.length) throw elfError(path, 'section headers past end of file');

    const raw: Omit<ElfSection, 'name'>[] = [];
    const nameOffs: number[] = [];
    for (let i = 0; i < shnum; i++) {
      const o = shoff + i * shentsize;
      nameOffs.push(buf.readUInt32LE(o));
      raw.push({
        index: i,
        type: buf.readUInt32LE(o + 4),
        flags: buf.readBigUInt64LE(o + 8),
        offset: Number(buf.readBigUInt64LE(o + 24)),
        size: Number(buf.readBigUInt64LE(o + 32)),
        link: buf.readUInt32LE(o + 40),
        info: buf.readUInt32LE(o + 44),
        entsize: Number(buf.readBigUInt64LE(o + 56)),
      });
    }
    const shstr = raw[shstrndx];
    if (!shstr) throw elfError(path, 'missing section name table');
    this.sections = raw.map((s, i) => ({ ...s, name: cstr(buf, shstr.offset + nameOffs[i]!) }));

    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    this.symbols = [];
    if (symtab) {
      const strtab = this.sections[symtab.link];
      if (!strtab) throw elfError(path, 'symbol table without string table');
      const ent = symtab.entsize || 24;
      for (let o = symtab.offset; o + ent <= symtab.offset + symtab.size; o += ent) {
        const info = buf[o + 4]!;
        const shndx = buf.readUInt16LE(o + 6);
        this.symbols.push({
          name: cstr(buf, strtab.offset + buf.readUInt32LE(o)),
          type: info & 0xf,
          bind: info >> 4,
          sectionIndex: shndx,
          section: shndx > 0 && shndx < 0xff00 ? (this.sections[shndx]?.name ?? '') : '',
          value: Number(buf.readBigUInt64LE(o + 8)),
          size: Number(buf.readBigUInt64LE(o + 16)),
        });
      }
    }
  }

  /** Parses a file. Throws MembraneError E_BPF_ELF if it is not a BPF ELF64 object. */
  static fromFile(path: string): ElfObject {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch (err) {
      throw elfError(path, (err as Error).message);
    }
    return new ElfObject(path, buf);
  }

  static fromBuffer(buf: Buffer, name = '<buffer>'): ElfObject {
    return new ElfObject(name, buf);
  }

  section(name: string): ElfSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** A copy of a section's bytes (empty for SHT_NOBITS sections such as .bss). */
  sectionData(name: string): Buffer | undefined {
    const s = this.section(name);
    if (!s) return undefined;
    if (s.type === 8 /* SHT_NOBITS */) return Buffer.alloc(s.size);
    return Buffer.from(this.buf.subarray(s.offset, s.offset + s.size));
  }

  /** Entry programs in the order libbpf loads them (section order, then offset). */
  programs(): ElfProgram[] {
    return this.symbols
      .filter((s) => s.type === STT_FUNC && s.section !== '.text' && s.section !== '' &&
        ((this.sections[s.sectionIndex]?.flags ?? 0n) & SHF_EXECINSTR) !== 0n)
      .sort((a, b) => a.sectionIndex - b.sectionIndex || a.value - b.value)
      .map((s) => ({ name: s.name, section: s.section, offset: s.value, insns: s.size / 8 }));
  }

  /** BTF-defined maps in `.maps`, with their definitions when `.BTF` is present and parses. */
  maps(): ElfMap[] {
    const defs = this.btfMapDefs();
    return this.symbols
      .filter((s) => s.section === '.maps' && s.type === STT_OBJECT)
      .sort((a, b) => a.value - b.value)
      .map((s) => ({ name: s.name, ...defs.get(s.name) }));
  }

  /** Variables of a data section (default `.rodata`), by symbol: name, offset, size. */
  variables(section = '.rodata'): ElfVariable[] {
    return this.symbols
      .filter((s) => s.section === section && s.type === STT_OBJECT)
      .sort((a, b) => a.value - b.value)
      .map((s) => ({ name: s.name, offset: s.value, size: s.size }));
  }

  /** The license string (`license` section), which decides access to GPL-only helpers. */
  license(): string | undefined {
    const d = this.sectionData('license');
    return d ? cstr(d, 0) : undefined;
  }

  private btfMapDefs(): Map<string, Omit<ElfMap, 'name'>> {
    const out = new Map<string, Omit<ElfMap, 'name'>>();
    const data = this.sectionData('.BTF');
    if (!data) return out;
    let btf: Btf;
    try {
      btf = parseBtf(data);
    } catch {
      return out; // names still come from the symbols; libbpf will explain bad BTF at load
    }
    const sec = btf.types.find((t) => t?.kind === BTF_KIND.DATASEC && t.name === '.maps');
    if (!sec) return out;
    for (const v of sec.secinfo ?? []) {
      const variable = btf.types[v.type];
      if (!variable || variable.kind !== BTF_KIND.VAR) continue;
      const def = btf.types[btf.resolve(variable.type)];
      if (!def || def.kind !== BTF_KIND.STRUCT) continue;
      const m: Omit<ElfMap, 'name'> = {};
      for (const member of def.members ?? []) {
        const uintVal = () => btf.uintMember(member.type);
        switch (member.name) {
          case 'type': m.type = uintVal(); break;
          case 'max_entries': m.maxEntries = uintVal(); break;
          case 'map_flags': m.flags = uintVal(); break;
          case 'pinning': m.pinning = uintVal(); break;
          case 'key_size': m.keySize = uintVal(); break;
          case 'value_size': m.valueSize = uintVal(); break;
          case 'key': m.keySize = btf.sizeOf(btf.pointee(member.type)); break;
          case 'value': m.valueSize = btf.sizeOf(btf.pointee(member.type)); break;
        }
      }
      out.set(variable.name, m);
    }
    return out;
  }
}

function cstr(buf: Buffer, off: number): string {
  let end = off;
  while (end < buf.length && buf[end] !== 0) end++;
  return buf.toString('utf8', off, end);
}

// --- minimal BTF (only what map definitions need) ---------------------------

export const BTF_KIND = {
  INT: 1, PTR: 2, ARRAY: 3, STRUCT: 4, UNION: 5, ENUM: 6, FWD: 7, TYPEDEF: 8,
  VOLATILE: 9, CONST: 10, RESTRICT: 11, FUNC: 12, FUNC_PROTO: 13, VAR: 14,
  DATASEC: 15, FLOAT: 16, DECL_TAG: 17, TYPE_TAG: 18, ENUM64: 19,
} as const;

export interface BtfType {
  id: number;
  kind: number;
  name: string;
  vlen: number;
  /** `size` for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT, `type` for the others. */
  sizeOrType: number;
  get type(): number;
  members?: { name: string; type: number; offset: number }[];
  array?: { type: number; indexType: number; nelems: number };
  secinfo?: { type: number; offset: number; size: number }[];
}

export interface Btf {
  types: (BtfType | undefined)[];
  /** Skips typedef/const/volatile/restrict/type_tag. */
  resolve(id: number): number;
  sizeOf(id: number): number;
  pointee(id: number): number;
  /** `__uint(name, N)` is `int (*name)[N]`: returns N. */
  uintMember(id: number): number;
}

/** Parses a `.BTF` section (types and strings). Throws on a malformed header. */
export function parseBtf(data: Buffer): Btf {
  if (data.length < 24 || data.readUInt16LE(0) !== 0xeb9f) throw new MembraneError('parse btf', { code: 'E_BPF_ELF', cause: 'bad magic' });
  const hdrLen = data.readUInt32LE(4);
  const typeOff = hdrLen + data.readUInt32LE(8);
  const typeLen = data.readUInt32LE(12);
  const strOff = hdrLen + data.readUInt32LE(16);
  if (typeOff + typeLen > data.length || strOff > data.length) throw new MembraneError('parse btf', { code: 'E_BPF_ELF', cause: 'sections past end of data' });
  const str = (off: number) => cstr(data, strOff + off);
  const types: (BtfType | undefined)[] = [undefined]; // id 0 is void
  let o = typeOff;
  while (o + 12 <= typeOff + typeLen) {
    const info = data.readUInt32LE(o + 4);
    const vlen = info & 0xffff;
    const kind = (info >> 24) & 0x1f;
    const sizeOrType = data.readUInt32LE(o + 8);
    const t: BtfType = {
      id: types.length, kind, name: str(data.readUInt32LE(o)), vlen, sizeOrType,
      get type() { return this.sizeOrType; },
    };
    o += 12;
    switch (kind) {
      case BTF_KIND.INT: case BTF_KIND.VAR: case BTF_KIND.DECL_TAG: o += 4; break;
      case BTF_KIND.ARRAY:
        t.array = { type: data.readUInt32LE(o), indexType: data.readUInt32LE(o + 4), nelems: data.readUInt32LE(o + 8) };
        o += 12;
        break;
      case BTF_KIND.STRUCT: case BTF_KIND.UNION:
        t.members = [];
        for (let i = 0; i < vlen; i++, o += 12) {
          t.members.push({ name: str(data.readUInt32LE(o)), type: data.readUInt32LE(o + 4), offset: data.readUInt32LE(o + 8) });
        }
        break;
      case BTF_KIND.ENUM: case BTF_KIND.FUNC_PROTO: o += 8 * vlen; break;
      case BTF_KIND.ENUM64: o += 12 * vlen; break;
      case BTF_KIND.DATASEC:
        t.secinfo = [];
        for (let i = 0; i < vlen; i++, o += 12) {
          t.secinfo.push({ type: data.readUInt32LE(o), offset: data.readUInt32LE(o + 4), size: data.readUInt32LE(o + 8) });
        }
        break;
      default: break; // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: no trailing data
    }
    types.push(t);
  }
  const modifiers = new Set<number>([BTF_KIND.TYPEDEF, BTF_KIND.VOLATILE, BTF_KIND.CONST, BTF_KIND.RESTRICT, BTF_KIND.TYPE_TAG]);
  const btf: Btf = {
    types,
    resolve(id) {
      for (let i = 0; i < 32; i++) {
        const t = types[id];
        if (!t || !modifiers.has(t.kind)) return id;
        id = t.sizeOrType;
      }
      return id;
    },
    sizeOf(id) {
      const t = types[btf.resolve(id)];
      if (!t) return 0;
      switch (t.kind) {
        case BTF_KIND.PTR: return 8;
        case BTF_KIND.ARRAY: return t.array!.nelems * btf.sizeOf(t.array!.type);
        case BTF_KIND.INT: case BTF_KIND.STRUCT: case BTF_KIND.UNION: case BTF_KIND.ENUM:
        case BTF_KIND.ENUM64: case BTF_KIND.FLOAT: case BTF_KIND.DATASEC: return t.sizeOrType;
        default: return 0;
      }
    },
    pointee(id) {
      const t = types[btf.resolve(id)];
      return t?.kind === BTF_KIND.PTR ? t.sizeOrType : 0;
    },
    uintMember(id) {
      const arr = types[btf.resolve(btf.pointee(id))];
      return arr?.kind === BTF_KIND.ARRAY ? arr.array!.nelems : 0;
    },
  };
  return btf;
}
