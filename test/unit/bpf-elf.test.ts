// ELF and BTF readers on the compiled fixture and datapath objects (make -C
// bpf builds them), on a small C file compiled here for the BTF kinds the
// datapath does not use (bitfields, enums, floats, member decl tags), and on
// hand-built BTF for encodings clang 14 never writes (ENUM64, bitfields
// without kind_flag) and for malformed input. Checked against what the C
// source declares, and against llvm-readelf / bpftool when they are installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ElfObject } from '../../src/bpf/elf.ts';
import { Btf, BTF_KIND, btfKindName, parseBtf, type BtfType } from '../../src/bpf/btf.ts';
import { constantPatches } from '../../src/bpf/constants.ts';
import { MAP_TYPE } from '../../src/bpf/native/structs.ts';
import { skipUnless } from '../helpers/skip.ts';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '../testdata/bpf');
const COUNTER = join(FIX, 'counter.o');
const BPF = join(dirname(fileURLToPath(import.meta.url)), '../../bpf');
const DATAPATH_OBJECTS = readdirSync(BPF).filter((f) => f.endsWith('.o')).map((f) => join(BPF, f));

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('fixture object is built (run make -C bpf)', () => {
  assert.ok(existsSync(COUNTER), `${COUNTER} missing`);
});

test('programs: entry functions in executable sections, in load order', () => {
  const elf = ElfObject.fromFile(COUNTER);
  const progs = elf.programs();
  assert.deepEqual(progs.map((p) => [p.name, p.section]), [
    ['count_pkts', 'tc'],
    ['tail_1_mark', 'tc'],
    ['classify', 'tc'],
  ]);
  for (const p of progs) assert.ok(p.insns > 0 && Number.isInteger(p.insns), `${p.name} insns ${p.insns}`);
  assert.equal(progs[0]!.offset, 0);
  assert.ok(progs[1]!.offset >= progs[0]!.insns * 8);
  assert.equal(elf.license(), 'GPL');
});

test('maps: names and BTF definitions as declared in counter.c', () => {
  const maps = new Map(ElfObject.fromFile(COUNTER).maps().map((m) => [m.name, m]));
  assert.deepEqual([...maps.keys()].sort(), ['cilium_calls', 'counters', 'hash', 'lpm', 'pinned_counters', 'proto_count']);
  const u32u64 = { keySize: 4, valueSize: 8, key: '__u32', value: '__u64' };
  assert.deepEqual(maps.get('counters'), { name: 'counters', type: MAP_TYPE.ARRAY, maxEntries: 8, ...u32u64 });
  assert.deepEqual(maps.get('pinned_counters'), { name: 'pinned_counters', type: MAP_TYPE.ARRAY, maxEntries: 8, ...u32u64, pinning: 1 });
  assert.deepEqual(maps.get('lpm'), { name: 'lpm', type: MAP_TYPE.LPM_TRIE, maxEntries: 64, keySize: 8, valueSize: 4, key: 'struct lpm_v4_key', value: '__u32', flags: 1 });
  // __uint(key_size, ...) instead of __type(key, ...): a size and no type name
  assert.deepEqual(maps.get('cilium_calls'), { name: 'cilium_calls', type: MAP_TYPE.PROG_ARRAY, maxEntries: 8, keySize: 4, valueSize: 4 });
  assert.deepEqual(maps.get('proto_count'), { name: 'proto_count', type: MAP_TYPE.PERCPU_HASH, maxEntries: 16, keySize: 4, valueSize: 4, key: '__u32', value: '__u32' });
  assert.equal(maps.get('hash')!.type, MAP_TYPE.HASH);
});

test('.rodata variables: offsets, sizes and initial values', () => {
  const elf = ElfObject.fromFile(COUNTER);
  const vars = elf.variables();
  assert.deepEqual(vars, [
    { name: 'COUNTER_SLOT', offset: 0, size: 4 },
    { name: 'MAGIC', offset: 8, size: 8 },
    { name: 'NODE_MAC', offset: 16, size: 6 },
    { name: 'LPM_MISS_RET', offset: 22, size: 2 },
  ]);
  const data = elf.sectionData('.rodata')!;
  assert.equal(data.readUInt32LE(0), 0);
  assert.equal(data.readBigUInt64LE(8), 0x1122334455667788n);
  assert.equal(data.subarray(16, 22).toString('hex'), '020000000001');
  assert.equal(data.readUInt16LE(22), 77);
});

test('symbols agree with llvm-readelf', { skip: skipUnless(have('llvm-readelf'), 'llvm-readelf not installed') }, () => {
  const elf = ElfObject.fromFile(COUNTER);
  const json = JSON.parse(execFileSync('llvm-readelf', ['-s', '--elf-output-style=JSON', COUNTER], { encoding: 'utf8' }));
  const syms = ((Object.values(json[0])[0] as any).Symbols as { Symbol: { Name: { Value: string }; Value: number; Size: number; Type: { RawValue: number } } }[])
    .map((s) => s.Symbol);
  assert.equal(syms.length, elf.symbols.length);
  for (const [i, s] of syms.entries()) {
    const mine = elf.symbols[i]!;
    // readelf shows a section symbol (STT_SECTION, no name of its own) under its section's name
    const name = mine.type === 3 ? mine.section : mine.name;
    assert.deepEqual([name, mine.value, mine.size, mine.type], [s.Name.Value, s.Value, s.Size, s.Type.RawValue], `symbol ${i}`);
  }
});

test('every BTF type agrees with bpftool btf dump, in the fixture and the datapath objects', { skip: skipUnless(have('bpftool'), 'bpftool not installed') }, () => {
  const objects = [COUNTER, ...DATAPATH_OBJECTS];
  assert.ok(DATAPATH_OBJECTS.length >= 4, `datapath objects built in ${BPF} (run make -C bpf)`);
  for (const path of objects) compareWithBpftool(path, ElfObject.fromFile(path).btf()!);
});

test('constants: encoded little-endian at the right size; unknown names list the known ones', () => {
  const elf = ElfObject.fromFile(COUNTER);
  const p = constantPatches(elf, COUNTER, { COUNTER_SLOT: 3, MAGIC: -2n, NODE_MAC: Buffer.from('aabbccddeeff', 'hex'), LPM_MISS_RET: 0xfffe });
  const by = new Map(p.map((x) => [x.variable.name, x.bytes.toString('hex')]));
  assert.equal(by.get('COUNTER_SLOT'), '03000000');
  assert.equal(by.get('MAGIC'), 'feffffffffffffff');
  assert.equal(by.get('NODE_MAC'), 'aabbccddeeff');
  assert.equal(by.get('LPM_MISS_RET'), 'feff');

  assert.throws(() => constantPatches(elf, COUNTER, { COUNTR_SLOT: 1 }), (e: any) =>
    e.code === 'E_BPF_CONST' && /unknown constant "COUNTR_SLOT"/.test(e.message) && /COUNTER_SLOT \(4 bytes\)/.test(e.message) && /LPM_MISS_RET/.test(e.message));
  assert.throws(() => constantPatches(elf, COUNTER, { LPM_MISS_RET: 70000 }), /LPM_MISS_RET: 70000 does not fit in 2 bytes/);
  assert.throws(() => constantPatches(elf, COUNTER, { NODE_MAC: Buffer.alloc(4) }), /NODE_MAC: value is 4 bytes, variable is 6/);
  assert.throws(() => constantPatches(elf, COUNTER, { NODE_MAC: 1 }), /NODE_MAC: variable is 6 bytes: pass a Buffer/);
  assert.throws(() => constantPatches(elf, COUNTER, { COUNTER_SLOT: 1.5 }), /1.5 is not an integer/);
});

test('not a BPF object: clear error', () => {
  assert.throws(() => ElfObject.fromFile(join(FIX, 'counter.c')), (e: any) => e.code === 'E_BPF_ELF' && /counter\.c: not an ELF file/.test(e.message));
  assert.throws(() => ElfObject.fromFile(process.execPath), /not EM_BPF/);
  assert.throws(() => ElfObject.fromFile(join(FIX, 'missing.o')), (e: any) => e.code === 'E_BPF_ELF' && /ENOENT/.test(e.message));
  // truncated file: header claims sections past the end
  assert.throws(() => ElfObject.fromBuffer(readFileSync(COUNTER).subarray(0, 200), 'cut.o'), /section headers past end of file/);
});

// --- BTF -------------------------------------------------------------------

/** bpftool's JSON form of one type, built from ours, so the two can be compared field by field. */
function asBpftool(t: BtfType): Record<string, unknown> {
  const linkage = ['static', 'global', 'extern'];
  const o: Record<string, unknown> = { id: t.id, kind: btfKindName(t.kind), name: t.name || '(anon)' };
  switch (t.kind) {
    case BTF_KIND.INT:
      Object.assign(o, { size: t.sizeOrType, bits_offset: t.int!.offset, nr_bits: t.int!.bits,
        encoding: ({ 0: '(none)', 1: 'SIGNED', 2: 'CHAR', 4: 'BOOL' } as Record<number, string>)[t.int!.encoding] });
      break;
    case BTF_KIND.ARRAY:
      Object.assign(o, { type_id: t.array!.type, index_type_id: t.array!.indexType, nr_elems: t.array!.nelems });
      break;
    case BTF_KIND.STRUCT: case BTF_KIND.UNION:
      Object.assign(o, { size: t.sizeOrType, vlen: t.vlen, members: t.members!.map((m) => ({
        name: m.name || '(anon)', type_id: m.type, bits_offset: m.bitOffset, ...(m.bitfieldSize ? { bitfield_size: m.bitfieldSize } : {}),
      })) });
      break;
    case BTF_KIND.ENUM:
      Object.assign(o, { encoding: t.kindFlag ? 'SIGNED' : 'UNSIGNED', size: t.sizeOrType, vlen: t.vlen,
        values: t.enumValues!.map((v) => ({ name: v.name, val: v.value })) });
      break;
    case BTF_KIND.FWD: o.fwd_kind = t.kindFlag ? 'union' : 'struct'; break;
    case BTF_KIND.FUNC: Object.assign(o, { type_id: t.sizeOrType, linkage: linkage[t.linkage!] }); break;
    case BTF_KIND.FUNC_PROTO:
      Object.assign(o, { ret_type_id: t.sizeOrType, vlen: t.vlen, params: t.params!.map((p) => ({ name: p.name || '(anon)', type_id: p.type })) });
      break;
    case BTF_KIND.VAR: Object.assign(o, { type_id: t.sizeOrType, linkage: linkage[t.linkage!] }); break;
    case BTF_KIND.DATASEC:
      Object.assign(o, { size: t.sizeOrType, vlen: t.vlen, vars: t.secinfo!.map((v) => ({ type_id: v.type, offset: v.offset, size: v.size })) });
      break;
    case BTF_KIND.FLOAT: o.size = t.sizeOrType; break;
    case BTF_KIND.DECL_TAG: Object.assign(o, { type_id: t.sizeOrType, component_idx: t.componentIdx }); break;
    default: o.type_id = t.sizeOrType; // PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
  }
  return o;
}

function compareWithBpftool(path: string, btf: Btf): void {
  const json = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', path], { encoding: 'utf8' })) as { types: Record<string, unknown>[] };
  assert.equal(btf.types.length - 1, json.types.length, `${path}: number of types`);
  for (const want of json.types) {
    const mine = asBpftool(btf.type(want.id as number)!);
    if (want.kind === 'ENUM') {
      // bpftool prints an unsigned enum's negative s32 as a u64 beyond 2^53, which JSON numbers cannot hold
      for (const [i, v] of (want.values as { val: number }[]).entries()) {
        if (!Number.isSafeInteger(v.val)) (mine.values as { val: unknown }[])[i]!.val = v.val;
      }
    }
    assert.deepEqual(mine, want, `${path}: type ${want.id}`);
  }
}

function compileBpf(source: string): { dir: string; path: string } {
  const dir = mkdtempSync(join(tmpdir(), 'membrane-btf-'));
  writeFileSync(join(dir, 'kinds.c'), source);
  execFileSync(process.env.CLANG ?? 'clang', ['-O2', '-g', '-target', 'bpf', '-c', join(dir, 'kinds.c'), '-o', join(dir, 'kinds.o')], { stdio: 'pipe' });
  return { dir, path: join(dir, 'kinds.o') };
}

// The kinds the datapath objects do not contain, from the same compiler.
const KINDS_C = `
#define SEC(n) __attribute__((section(n), used))
struct flags {
	unsigned int a:3, b:5;
	unsigned char c;
	unsigned int d:12 __attribute__((btf_decl_tag("member-tag")));
	long long e;
};
enum color { RED = 1, BLUE = -2 };
typedef unsigned int u32;
struct flags f_var;
enum color c_var = RED;
float ratio = 1.5f;
volatile const u32 cfg __attribute__((btf_decl_tag("config:a described constant"))) = 0;
volatile const unsigned char untagged[3] = {};
char LICENSE[] SEC("license") = "GPL";
static __attribute__((noinline)) int helper(const u32 *p, struct flags *f) { return *p + f->d; }
SEC("tc") int prog(void *ctx) { u32 x = cfg; return f_var.a + c_var + (int)sizeof(ratio) + helper(&x, &f_var) + untagged[1]; }
`;

test('BTF of the fixture: struct layout, functions, data sections, map key and value types', () => {
  const btf = ElfObject.fromFile(COUNTER).btf();
  assert.ok(btf, 'counter.o has .BTF (built with -g)');
  assert.deepEqual(btf.struct('lpm_v4_key'), {
    id: btf.struct('lpm_v4_key')!.id, name: 'lpm_v4_key', size: 8, members: [
      { name: 'prefixlen', type: btf.struct('lpm_v4_key')!.members[0]!.type, offset: 0, bitOffset: 0, bitSize: 0, bitfield: false },
      { name: 'addr', type: btf.struct('lpm_v4_key')!.members[1]!.type, offset: 4, bitOffset: 32, bitSize: 0, bitfield: false },
    ],
  });
  assert.equal(btf.typeName(btf.struct('lpm_v4_key')!.members[1]!.type), '__u8[4]');
  assert.equal(btf.struct('no_such_struct'), undefined);
  assert.deepEqual(btf.funcs().sort(), ['classify', 'count_pkts', 'tail_1_mark']);
  // DATASEC order and sizes; offsets stay 0 until libbpf fixes them up, so the ELF symbols give those
  assert.deepEqual(btf.datasecVars('.rodata').map((v) => [v.name, v.size, v.offset]),
    [['COUNTER_SLOT', 4, 0], ['MAGIC', 8, 0], ['NODE_MAC', 6, 0], ['LPM_MISS_RET', 2, 0]]);
  assert.deepEqual(btf.configVars(), [
    { name: 'COUNTER_SLOT', size: 4 }, { name: 'MAGIC', size: 8 }, { name: 'NODE_MAC', size: 6 }, { name: 'LPM_MISS_RET', size: 2 },
  ], 'no config: decl tags in counter.c, so no descriptions');
  assert.deepEqual(btf.datasecVars('license').map((v) => v.name), ['_license']);
  assert.deepEqual(btf.datasecVars('.no_such_section'), []);
  const rodata = btf.datasecVars('.rodata');
  assert.equal(btf.typeName(btf.type(rodata[0]!.id)!.sizeOrType), 'const volatile __u32');
  assert.equal(btf.sizeOf(rodata[2]!.id), 6, 'sizeof a VAR is sizeof its type');
});

test('BTF of the datapath objects: every program is a FUNC, config constants carry their descriptions', () => {
  for (const path of DATAPATH_OBJECTS) {
    const elf = ElfObject.fromFile(path);
    const btf = elf.btf()!;
    assert.deepEqual(btf.funcs().sort(), elf.programs().map((p) => p.name).sort(), `${path}: FUNCs are the entry programs`);
    assert.deepEqual(btf.configVars().map((v) => [v.name, v.size]), elf.variables().map((v) => [v.name, v.size]), `${path}: .rodata in BTF and symbols`);
    assert.ok(btf.configVars().every((v) => v.description && !v.description.startsWith('config:')), `${path}: descriptions without the tag prefix`);
  }
});

test('BTF of bitfields, enums, floats and decl tags, as clang writes them', { skip: skipUnless(have(process.env.CLANG ?? 'clang'), 'clang not installed') }, () => {
  const { dir, path } = compileBpf(KINDS_C);
  try {
    const btf = ElfObject.fromFile(path).btf()!;
    const flags = btf.struct('flags')!;
    assert.equal(flags.size, 16);
    assert.deepEqual(flags.members.map((m) => [m.name, m.offset, m.bitOffset, m.bitSize, m.bitfield]), [
      ['a', 0, 0, 3, true], ['b', 0, 3, 5, true], ['c', 1, 8, 0, false], ['d', 2, 16, 12, true], ['e', 8, 64, 0, false],
    ]);
    assert.deepEqual(btf.declTags(flags.id, 3), ['member-tag'], 'tag on member 3 (d)');
    assert.deepEqual(btf.declTags(flags.id), [], 'no tag on the struct itself');
    // clang 14 leaves kind_flag 0 (unsigned), so -2 reads as its u32 pattern, as bpftool shows it
    assert.deepEqual([...btf.enumValues('color')!], [['RED', 1], ['BLUE', 0xfffffffe]]);
    assert.equal(btf.enumValues('colour'), undefined);
    assert.deepEqual(btf.configVars(), [{ name: 'cfg', size: 4, description: 'a described constant' }, { name: 'untagged', size: 3 }]);
    assert.deepEqual(btf.datasecVars('.data').map((v) => [v.name, v.size, v.linkage]), [['c_var', 4, 1], ['ratio', 4, 1]]);
    assert.equal(btf.typeName(btf.datasecVars('.data')[0]!.id), 'c_var');
    assert.equal(btf.typeName(btf.type(btf.datasecVars('.data')[0]!.id)!.sizeOrType), 'enum color');
    assert.equal(btf.sizeOf(btf.datasecVars('.data')[1]!.id), 4, 'float');
    assert.deepEqual(btf.funcs(), ['prog', 'helper']);
    const helper = btf.types.find((t) => t?.kind === BTF_KIND.FUNC && t.name === 'helper')!;
    assert.equal(helper.linkage, 0, 'static');
    assert.equal(btf.typeName(helper.sizeOrType), 'int (const u32 *, struct flags *)');
    if (have('bpftool')) compareWithBpftool(path, btf);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

/** Writes BTF by hand: types as [name, kind, vlen, kindFlag, sizeOrType, ...u32/s32 trailing words]. */
class BtfBuilder {
  private strings = Buffer.from([0]);
  private readonly words: number[] = [];
  str(s: string): number {
    const off = this.strings.length;
    this.strings = Buffer.concat([this.strings, Buffer.from(`${s}\0`)]);
    return off;
  }
  add(name: string, kind: number, vlen: number, kindFlag: boolean, sizeOrType: number, ...trailing: number[]): this {
    this.words.push(name ? this.str(name) : 0, ((kindFlag ? 1 : 0) << 31 | kind << 24 | vlen) >>> 0, sizeOrType, ...trailing);
    return this;
  }
  build(patch?: (hdr: Buffer) => void): Buffer {
    const types = Buffer.alloc(this.words.length * 4);
    this.words.forEach((w, i) => (w < 0 ? types.writeInt32LE(w, i * 4) : types.writeUInt32LE(w, i * 4)));
    const hdr = Buffer.alloc(24);
    hdr.writeUInt16LE(0xeb9f, 0);
    hdr[2] = 1;
    hdr.writeUInt32LE(24, 4);
    hdr.writeUInt32LE(0, 8);
    hdr.writeUInt32LE(types.length, 12);
    hdr.writeUInt32LE(types.length, 16);
    hdr.writeUInt32LE(this.strings.length, 20);
    patch?.(hdr);
    return Buffer.concat([hdr, types, this.strings]);
  }
}

test('BTF encodings clang 14 does not write: ENUM64, signed enums, bitfields without kind_flag', () => {
  const b = new BtfBuilder();
  const int = (bits: number, offset: number) => (offset << 16) | bits;
  b.add('u32', BTF_KIND.INT, 0, false, 4, int(32, 0)) // 1
    .add('u4', BTF_KIND.INT, 0, false, 4, int(4, 0)) // 2: old-style bitfield type, 4 bits of a u32
    .add('u4_at2', BTF_KIND.INT, 0, false, 4, int(4, 2)) // 3: 4 bits starting 2 bits into the storage
    .add('old', BTF_KIND.STRUCT, 3, false, 8, b.str('x'), 1, 0, b.str('y'), 2, 32, b.str('z'), 3, 32) // 4
    .add('big', BTF_KIND.ENUM64, 2, false, 8, b.str('HIGH'), 5, 0x80000000, b.str('MAX'), 0xffffffff, 0xffffffff) // 5
    .add('sbig', BTF_KIND.ENUM64, 1, true, 8, b.str('MINUS_ONE'), 0xffffffff, 0xffffffff) // 6
    .add('s', BTF_KIND.ENUM, 1, true, 4, b.str('NEG'), -3) // 7
    .add('', BTF_KIND.PTR, 0, false, 1) // 8
    .add('', BTF_KIND.RESTRICT, 0, false, 8) // 9
    .add('later', BTF_KIND.FWD, 0, true, 0) // 10
    .add('t', BTF_KIND.TYPE_TAG, 0, false, 10); // 11
  const btf = parseBtf(b.build());
  assert.deepEqual(btf.struct('old')!.members.map((m) => [m.name, m.offset, m.bitOffset, m.bitSize, m.bitfield]), [
    ['x', 0, 0, 0, false], ['y', 4, 32, 4, true], ['z', 4, 34, 4, true],
  ]);
  assert.deepEqual([...btf.enumValues('big')!], [['HIGH', (1n << 63n) + 5n], ['MAX', (1n << 64n) - 1n]]);
  assert.deepEqual([...btf.enumValues('sbig')!], [['MINUS_ONE', -1n]]);
  assert.deepEqual([...btf.enumValues('s')!], [['NEG', -3]]);
  assert.equal(btf.sizeOf(5), 8);
  assert.equal(btf.typeName(9), 'restrict u32 *');
  assert.equal(btf.typeName(11), 'union later', 'type tags are transparent, FWD kind_flag means union');
  assert.equal(btf.resolve(11), 10);
});

test('malformed BTF: errors name the operation, the type and what is wrong', () => {
  const good = () => new BtfBuilder().add('u32', BTF_KIND.INT, 0, false, 4, 32);
  assert.doesNotThrow(() => parseBtf(good().build()));
  const fails = (data: Buffer, want: RegExp) =>
    assert.throws(() => parseBtf(data), (e: any) => e.code === 'E_BPF_ELF' && /^parse BTF: /.test(e.message) && want.test(e.message), String(want));
  fails(Buffer.alloc(10), /10 bytes, shorter than the 24-byte header/);
  fails(good().build((h) => h.writeUInt16LE(0x9feb, 0)), /bad magic 0x9feb/);
  fails(good().build((h) => { h[2] = 2; }), /version 2/);
  fails(good().build((h) => h.writeUInt32LE(4, 12)), /type 1: truncated \(4 bytes left, want 12\)/);
  fails(good().build((h) => h.writeUInt32LE(1000, 12)), /type section \(bytes 24\.\.1024\) past end of data/);
  fails(good().build((h) => h.writeUInt32LE(99, 20)), /string section .* past end of data/);
  fails(new BtfBuilder().add('x', 25, 0, false, 0).build(), /type 1: unknown kind 25/);
  fails(new BtfBuilder().add('s', BTF_KIND.STRUCT, 2, false, 8, 0, 0, 0).build(), /type 1 \(STRUCT\): 24 bytes of data run past the type section/);
  fails(good().build((h) => h.writeUInt32LE(14, 12)), /type 1 \(INT\): 4 bytes of data run past the type section/);
  const badName = new BtfBuilder().add('u32', BTF_KIND.INT, 0, false, 4, 32).build();
  badName.writeUInt32LE(500, 24); // name_off of type 1
  fails(badName, /type 1: name offset 500 past the string section \(5 bytes\)/);

  // through ElfObject: the object's path in front, and maps() still lists names from the symbols
  const obj = readFileSync(COUNTER);
  const sec = ElfObject.fromBuffer(obj).section('.BTF')!;
  obj.writeUInt16LE(0, sec.offset);
  const elf = ElfObject.fromBuffer(obj, 'bad-btf.o');
  assert.throws(() => elf.btf(), (e: any) => e.code === 'E_BPF_ELF' && /^read bpf object bad-btf\.o: parse BTF: bad magic 0x0/.test(e.message));
  assert.deepEqual(elf.maps().map((m) => Object.keys(m)), elf.maps().map(() => ['name']), 'names only');
  assert.equal(elf.maps().length, 6);
});
