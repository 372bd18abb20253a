// Reads the JSON that `bpftool btf dump file X.o -j` prints: struct layouts,
// BTF-defined map definitions, program functions and load-time constants of a
// compiled object. Pure (the caller runs bpftool); used by the unit tests that
// keep the TypeScript codecs and the C structs in step, and usable by tools
// that want to describe an object without loading it.

export interface BtfMember {
  name: string;
  /** Byte offset in the struct. */
  offset: number;
  /** Set for bitfield members, whose offset is not byte-aligned or whose size is in bits. */
  bitfield?: boolean;
}

export interface BtfStruct {
  name: string;
  size: number;
  members: BtfMember[];
}

/** A BTF-defined map (`struct { __uint(type, ...); ... } name SEC(".maps")`), resolved. */
export interface BtfMapDef {
  name: string;
  type?: number;
  maxEntries?: number;
  mapFlags?: number;
  /** 1 = LIBBPF_PIN_BY_NAME. */
  pinning?: number;
  keySize?: number;
  valueSize?: number;
  /** Type name of __type(key, T): "struct ipcache_key", "__u32". */
  key?: string;
  value?: string;
}

/** A load-time constant in .rodata, with the description from its "config:" decl tag. */
export interface BtfConfigVar {
  name: string;
  size: number;
  description?: string;
}

interface RawType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  nr_elems?: number;
  members?: { name: string; type_id: number; bits_offset: number; bitfield_size?: number }[];
  vars?: { type_id: number; offset: number; size: number }[];
  component_idx?: number;
}

const MAP_UINT_FIELDS: Record<string, keyof BtfMapDef> = {
  type: 'type', max_entries: 'maxEntries', map_flags: 'mapFlags', pinning: 'pinning', key_size: 'keySize', value_size: 'valueSize',
};

export class BtfInfo {
  private readonly byId = new Map<number, RawType>();

  private constructor(types: RawType[]) {
    for (const t of types) this.byId.set(t.id, t);
  }

  /** Throws TypeError if `json` is not bpftool's `{ types: [...] }`. */
  static fromJson(json: unknown): BtfInfo {
    const types = (json as { types?: unknown })?.types;
    if (!Array.isArray(types)) throw new TypeError('parse BTF JSON: no "types" array (want the output of bpftool btf dump -j)');
    return new BtfInfo(types as RawType[]);
  }

  private all(kind: string): RawType[] {
    return [...this.byId.values()].filter((t) => t.kind === kind);
  }

  /** The named struct, or undefined. */
  struct(name: string): BtfStruct | undefined {
    const t = this.all('STRUCT').find((s) => s.name === name);
    if (!t) return undefined;
    return {
      name,
      size: t.size ?? 0,
      members: (t.members ?? []).map((m) => {
        const member: BtfMember = { name: m.name, offset: Math.floor(m.bits_offset / 8) };
        if (m.bits_offset % 8 !== 0 || m.bitfield_size) member.bitfield = true;
        return member;
      }),
    };
  }

  /** Names of all functions (programs and non-inlined subprograms). */
  funcs(): string[] {
    return this.all('FUNC').map((f) => f.name ?? '');
  }

  /** Names of the variables in a data section (".maps", ".rodata", "license"). */
  datasecVars(section: string): { name: string; size: number; typeId: number }[] {
    const ds = this.all('DATASEC').find((d) => d.name === section);
    return (ds?.vars ?? []).map((v) => ({ name: this.byId.get(v.type_id)?.name ?? '', size: v.size, typeId: v.type_id }));
  }

  /** Load-time constants: the .rodata variables and their "config:" decl tags. */
  configVars(): BtfConfigVar[] {
    const tags = new Map<number, string>();
    for (const t of this.all('DECL_TAG')) {
      if (t.component_idx === -1 && t.type_id !== undefined && t.name?.startsWith('config:')) tags.set(t.type_id, t.name.slice(7));
    }
    return this.datasecVars('.rodata').map((v) => {
      const out: BtfConfigVar = { name: v.name, size: v.size };
      const d = tags.get(v.typeId);
      if (d !== undefined) out.description = d;
      return out;
    });
  }

  /** Every map in ".maps", with __uint fields resolved to numbers and __type fields to type names. */
  mapDefs(): Map<string, BtfMapDef> {
    const out = new Map<string, BtfMapDef>();
    for (const v of this.datasecVars('.maps')) {
      const def: BtfMapDef = { name: v.name };
      const st = this.byId.get(this.byId.get(v.typeId)?.type_id ?? -1);
      for (const m of st?.members ?? []) {
        const ptr = this.byId.get(m.type_id);
        const target = this.byId.get(ptr?.type_id ?? -1);
        const uintField = MAP_UINT_FIELDS[m.name];
        if (uintField && target?.kind === 'ARRAY') (def as unknown as Record<string, number>)[uintField] = target.nr_elems ?? 0;
        else if ((m.name === 'key' || m.name === 'value') && target) def[m.name] = this.typeName(target);
      }
      out.set(v.name, def);
    }
    return out;
  }

  private typeName(t: RawType): string {
    if (t.kind === 'STRUCT' || t.kind === 'UNION') return `${t.kind.toLowerCase()} ${t.name}`;
    return t.name ?? t.kind;
  }
}
