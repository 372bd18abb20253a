// ELF reader on the compiled fixture (make -C bpf builds it), checked against
// what the C source declares and against llvm-readelf / bpftool when present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ElfObject } from '../../src/bpf/elf.ts';
import { constantPatches } from '../../src/bpf/constants.ts';
import { MAP_TYPE } from '../../src/bpf/native/structs.ts';

const FIX = join(dirname(fileURLToPath(import.meta.url)), '../testdata/bpf');
const COUNTER = join(FIX, 'counter.o');

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
  assert.deepEqual(maps.get('counters'), { name: 'counters', type: MAP_TYPE.ARRAY, maxEntries: 8, keySize: 4, valueSize: 8 });
  assert.deepEqual(maps.get('pinned_counters'), { name: 'pinned_counters', type: MAP_TYPE.ARRAY, maxEntries: 8, keySize: 4, valueSize: 8, pinning: 1 });
  assert.deepEqual(maps.get('lpm'), { name: 'lpm', type: MAP_TYPE.LPM_TRIE, maxEntries: 64, keySize: 8, valueSize: 4, flags: 1 });
  assert.deepEqual(maps.get('cilium_calls'), { name: 'cilium_calls', type: MAP_TYPE.PROG_ARRAY, maxEntries: 8, keySize: 4, valueSize: 4 });
  assert.deepEqual(maps.get('proto_count'), { name: 'proto_count', type: MAP_TYPE.PERCPU_HASH, maxEntries: 16, keySize: 4, valueSize: 4 });
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

test('symbols agree with llvm-readelf', { skip: !have('llvm-readelf') && 'llvm-readelf not installed' }, () => {
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

test('.rodata and .maps variables agree with bpftool btf dump', { skip: !have('bpftool') && 'bpftool not installed' }, () => {
  const elf = ElfObject.fromFile(COUNTER);
  const btf = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', COUNTER], { encoding: 'utf8' })) as { types: any[] };
  const byId = new Map(btf.types.map((t) => [t.id, t]));
  const sec = (name: string) => btf.types.find((t) => t.kind === 'DATASEC' && t.name === name)!;
  const rodata = sec('.rodata').vars.map((v: any) => ({ name: byId.get(v.type_id).name, size: v.size }));
  assert.deepEqual(elf.variables().map(({ name, size }) => ({ name, size })).sort((a, b) => a.name.localeCompare(b.name)),
    rodata.sort((a: any, b: any) => a.name.localeCompare(b.name)));
  // max_entries of every map: VAR -> STRUCT member max_entries -> PTR -> ARRAY nr_elems
  for (const v of sec('.maps').vars) {
    const variable = byId.get(v.type_id);
    const def = byId.get(variable.type_id);
    const member = def.members.find((m: any) => m.name === 'max_entries');
    const arr = byId.get(byId.get(member.type_id).type_id);
    assert.equal(elf.maps().find((m) => m.name === variable.name)!.maxEntries, arr.nr_elems, variable.name);
  }
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
