// Checks the compiled BPF objects without loading them (no root): which
// programs each object has and which tail-call slot the loader will put them
// in, that shared maps are defined identically in every object and pinned by
// name, the load-time constants the loader patches, and that nothing refers to
// an undefined symbol (e.g. an unfolded __builtin_strcmp). Everything is
// read by src/bpf (ElfObject and its BTF), so no bpftool or llvm tools.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ElfObject } from '../../src/bpf/elf.ts';
import type { Btf } from '../../src/bpf/btf.ts';

const BPF = fileURLToPath(new URL('../../bpf/', import.meta.url));
const OBJECTS = ['bpf_lxc', 'bpf_host', 'bpf_overlay'] as const;
const STT_FUNC = 2;

function elf(name: string): ElfObject {
  const p = `${BPF}${name}.o`;
  assert.ok(existsSync(p), `${p} is missing: run make -C bpf`);
  return ElfObject.fromFile(p);
}
function btf(name: string): Btf {
  const info = elf(name).btf();
  assert.ok(info, `${name}.o has no .BTF section: build it with -g (make -C bpf)`);
  return info;
}
/** ELF symbols: name, section ('' for undefined or absolute), whether it is a function. */
function symbols(name: string): { name: string; section: string; undefined: boolean; func: boolean }[] {
  return elf(name).symbols.map((s) => ({ name: s.name, section: s.section, undefined: s.sectionIndex === 0, func: s.type === STT_FUNC }));
}

const TAIL_RE = /^tail_(\d+)_/;
const PROGRAMS: Record<(typeof OBJECTS)[number], { entry: string[]; tails: Record<string, number> }> = {
  bpf_lxc: { entry: ['cil_from_container', 'cil_to_container'], tails: { tail_6_handle_arp: 6, tail_7_ipv4_from_lxc: 7 } },
  bpf_host: { entry: ['cil_from_host', 'cil_from_netdev', 'cil_to_host', 'cil_to_netdev'], tails: { tail_23_ipv4_from_host: 23 } },
  bpf_overlay: { entry: ['cil_from_overlay', 'cil_to_overlay'], tails: { tail_7_ipv4_from_overlay: 7 } },
};

test('each object has exactly its entry and tail programs, all in SEC("tc")', () => {
  for (const obj of OBJECTS) {
    const want = PROGRAMS[obj];
    const funcs = btf(obj).funcs().sort();
    assert.deepEqual(funcs, [...want.entry, ...Object.keys(want.tails)].sort(), `${obj}: programs (a non-inlined helper would show up here)`);
    for (const [name, slot] of Object.entries(want.tails)) assert.equal(Number(TAIL_RE.exec(name)?.[1]), slot, `${name} slot`);
    for (const e of want.entry) assert.ok(!TAIL_RE.test(e), `${e} must not look like a tail call`);
    const progSyms = symbols(obj).filter((s) => s.func);
    assert.deepEqual(progSyms.map((s) => s.name).sort(), funcs);
    assert.ok(progSyms.every((s) => s.section === 'tc'), `${obj}: every program is in section tc`);
  }
});

test('no undefined symbols (helpers inlined, source-file ids folded at compile time)', () => {
  for (const obj of OBJECTS) {
    // symbol 0 is the ELF null symbol: undefined by definition and nameless
    const und = symbols(obj).filter((s) => s.undefined && s.name !== '').map((s) => s.name);
    assert.deepEqual(und, [], `${obj}: undefined symbols`);
  }
});

test('shared maps are identical in every object and pinned by name; cilium_calls is per object and not pinned', () => {
  const defs = OBJECTS.map((o) => new Map(elf(o).maps().map((m) => [m.name, m])));
  const shared = {
    cilium_ipcache_v2: { type: 11, maxEntries: 512000, flags: 1, pinning: 1 },
    cilium_lxc: { type: 1, maxEntries: 65535, pinning: 1 },
    cilium_node_cfg: { type: 2, maxEntries: 1, pinning: 1 },
    cilium_metrics: { type: 5, maxEntries: 1024, pinning: 1 },
    cilium_events: { type: 27, maxEntries: 1 << 20, pinning: 1 },
    cilium_events_lost: { type: 6, maxEntries: 8, pinning: 1 },
    cilium_policy_maps: { type: 12, maxEntries: 4096, pinning: 1 },
    cilium_policy_rev: { type: 2, maxEntries: 4096, pinning: 1 },
    cilium_ct4_global: { type: 9, maxEntries: 131072, pinning: 1 },
    cilium_ct_any4_global: { type: 9, maxEntries: 65536, pinning: 1 },
    cilium_ipv4_frag_datagrams: { type: 9, maxEntries: 8192, pinning: 1 },
    cilium_snat_v4_external: { type: 9, maxEntries: 65536, pinning: 1 },
  };
  for (const [name, want] of Object.entries(shared)) {
    const first = defs[0].get(name);
    assert.ok(first, `${name} defined`);
    assert.deepEqual({ type: first.type, maxEntries: first.maxEntries, flags: first.flags, pinning: first.pinning },
      { flags: undefined, ...want }, `${name} definition`);
    // key and value type names included: the same struct, not just the same size
    defs.forEach((d, i) => assert.deepEqual(d.get(name), first, `${name} in ${OBJECTS[i]}.o equals bpf_lxc.o`));
  }
  for (const [i, d] of defs.entries()) {
    assert.deepEqual(d.get('cilium_calls'), { name: 'cilium_calls', type: 3, keySize: 4, valueSize: 4, maxEntries: 50 }, `${OBJECTS[i]} cilium_calls`);
    assert.deepEqual([...d.keys()].sort(), [...Object.keys(shared), 'cilium_calls'].sort(), `${OBJECTS[i]}: no other maps`);
  }
});

test('load-time constants the loader patches by name, each with a description', () => {
  const vars = Object.fromEntries(OBJECTS.map((o) => [o, btf(o).configVars()]));
  assert.deepEqual(vars.bpf_lxc.map((v) => [v.name, v.size]), [
    ['LXC_ID', 4], ['LXC_IPV4', 4], ['LXC_SECLABEL', 4], ['LXC_IFINDEX', 4], ['LXC_IF_MAC', 6],
  ]);
  assert.deepEqual(vars.bpf_host.map((v) => [v.name, v.size]), [['HOST_EP_ID', 4]]);
  assert.deepEqual(vars.bpf_overlay, []);
  for (const v of [...vars.bpf_lxc, ...vars.bpf_host]) assert.ok(v.description && v.description.length > 5, `${v.name} has a description`);
  assert.match(vars.bpf_lxc.find((v) => v.name === 'LXC_IPV4')?.description ?? '', /network byte order/);
});

test('license allows every helper the programs use', () => {
  for (const obj of OBJECTS) assert.equal(elf(obj).license(), 'Dual BSD/GPL', `${obj} license section`);
});
