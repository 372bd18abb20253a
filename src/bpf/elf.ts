// Pure reader for the BPF ELF64 objects clang writes (little-endian,
// relocatable, EM_BPF). No syscalls: the same bytes give the same answer on
// every host, so the loader can validate names (programs, maps, load-time
// constants) before touching the kernel, and tests run without root.
//
// What libbpf treats as what (and so do we):
// - programs: FUNC symbols in executable sections other than `.text`
//   (functions in `.text` are subprograms, not entry points);
// - maps: OBJECT symbols in `.maps` (BTF-defined maps); their definition
//   (type, sizes, flags, pinning) comes from the `.maps` DATASEC in `.BTF`
//   (parsed by btf.ts, which btf() also hands out for layouts and tags);
// - load-time constants: OBJECT symbols in `.rodata`. clang 14 leaves the
//   DATASEC offsets at 0 (libbpf fixes them up), so the symbol value is the
//   offset of a variable inside the section.
import { readFileSync } from 'node:fs';
import { MembraneError } from '../shared/errors.ts';
import { Btf, type BtfMapDef } from './btf.ts';

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
export interface ElfMap extends BtfMapDef {
  name: string;
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
  private btfCache?: Btf | null;

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

  /**
   * The object's BTF (`.BTF` section): struct layouts, map definitions,
   * functions, data-section variables, decl tags. Undefined if the object has
   * none (built without -g). Throws MembraneError E_BPF_ELF if it is malformed.
   */
  btf(): Btf | undefined {
    if (this.btfCache === undefined) {
      const data = this.sectionData('.BTF');
      try {
        this.btfCache = data ? Btf.parse(data) : null;
      } catch (err) {
        throw new MembraneError(`read bpf object ${this.path}`, { code: 'E_BPF_ELF', cause: err });
      }
    }
    return this.btfCache ?? undefined;
  }

  private btfMapDefs(): Map<string, BtfMapDef> {
    try {
      return this.btf()?.mapDefs() ?? new Map();
    } catch {
      return new Map(); // names still come from the symbols; libbpf will explain bad BTF at load
    }
  }
}

function cstr(buf: Buffer, off: number): string {
  let end = off;
  while (end < buf.length && buf[end] !== 0) end++;
  return buf.toString('utf8', off, end);
}
