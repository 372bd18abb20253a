// Compares every struct layout the TypeScript codecs use with the BTF of the
// compiled BPF objects (sizeof, member names in order, byte offsets), and the
// map definitions with the codecs' names and sizes, and the .rodata constants
// with the load-config encoders. Needs the objects built (make -C bpf); the
// BTF is read by src/bpf/btf.ts, so no bpftool and no root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ElfObject } from '../../src/bpf/elf.ts';
import type { Btf } from '../../src/bpf/btf.ts';
import type { StructLayout } from '../../src/datapath/maps/layout.ts';
import { IPCACHE_KEY, IPCACHE_VALUE, IPCACHE_MAP_NAME, IPCACHE_MAX_ENTRIES } from '../../src/datapath/maps/ipcache.ts';
import { ENDPOINT_INFO, ENDPOINT_KEY, ENDPOINTS_MAP_NAME, ENDPOINTS_MAX_ENTRIES } from '../../src/datapath/maps/endpoints.ts';
import { NODE_CONFIG, NODE_CONFIG_MAP_NAME } from '../../src/datapath/maps/node-config.ts';
import { METRICS_KEY, METRICS_VALUE, METRICS_MAP_NAME, METRICS_MAX_ENTRIES } from '../../src/datapath/maps/metrics.ts';
import { DEBUG_NOTIFY, DROP_NOTIFY, EVENT_HDR, EVENTS_MAP_NAME, TRACE_NOTIFY } from '../../src/datapath/maps/events.ts';
import { encodeHostConfig, encodeLxcConfig } from '../../src/datapath/maps/load-config.ts';
import { POLICY_ENTRY, POLICY_KEY, POLICY_MAP_MAX_ENTRIES, POLICY_MAPS_MAX_ENTRIES, POLICY_MAPS_NAME } from '../../src/datapath/maps/policy.ts';
import {
  CT_ANY_MAP_NAME, CT_ANY_MAX_ENTRIES, CT_ENTRY, CT_TCP_MAP_NAME, CT_TCP_MAX_ENTRIES, CT_TUPLE, FRAG_ID, FRAG_L4, FRAG_MAP_NAME,
} from '../../src/datapath/maps/conntrack.ts';
import { NAT_ENTRY, NAT_MAP_NAME, NAT_MAX_ENTRIES } from '../../src/datapath/maps/nat.ts';

const BPF = fileURLToPath(new URL('../../bpf/', import.meta.url));

/** BTF of bpf/<name>.o; fails (does not skip) if the object is missing or older than a source. */
function btf(name: string): Btf {
  const obj = `${BPF}${name}.o`;
  assert.ok(existsSync(obj), `${obj} is missing: run make -C bpf`);
  const sources = [`${BPF}${name}.c`, ...readdirSync(`${BPF}lib`).map((f) => `${BPF}lib/${f}`)];
  const newest = Math.max(...sources.map((s) => statSync(s).mtimeMs));
  assert.ok(statSync(obj).mtimeMs >= newest, `${obj} is older than its sources: run make -C bpf`);
  const info = ElfObject.fromFile(obj).btf();
  assert.ok(info, `${obj} has no .BTF section: build it with -g (make -C bpf)`);
  return info;
}

function assertLayout(info: Btf, layout: StructLayout, where: string): void {
  const s = info.struct(layout.name);
  assert.ok(s, `struct ${layout.name} is not in the BTF of ${where}`);
  assert.equal(s.size, layout.size, `sizeof(struct ${layout.name}) in ${where}`);
  assert.deepEqual(
    s.members.map((m) => [m.name, m.offset, m.bitfield]),
    Object.entries(layout.fields).map(([name, off]) => [name, off, false]),
    `members and offsets of struct ${layout.name} in ${where}`,
  );
}

const MAP_STRUCTS = [IPCACHE_KEY, IPCACHE_VALUE, ENDPOINT_KEY, ENDPOINT_INFO, NODE_CONFIG, METRICS_KEY, METRICS_VALUE, CT_TUPLE, CT_ENTRY, FRAG_ID, FRAG_L4, NAT_ENTRY];
/** In bpf_alignchecker.o only: the programs see them as sizes (the inner map definition). */
const POLICY_STRUCTS = [POLICY_KEY, POLICY_ENTRY];
const EVENT_STRUCTS = [EVENT_HDR, DROP_NOTIFY, TRACE_NOTIFY, DEBUG_NOTIFY];

test('every codec layout matches bpf_alignchecker.o', () => {
  const info = btf('bpf_alignchecker');
  for (const l of [...MAP_STRUCTS, ...POLICY_STRUCTS, ...EVENT_STRUCTS]) assertLayout(info, l, 'bpf_alignchecker.o');
});

test('map key/value layouts match the program objects that use them', () => {
  for (const obj of ['bpf_lxc', 'bpf_host', 'bpf_overlay']) {
    const info = btf(obj);
    for (const l of MAP_STRUCTS) assertLayout(info, l, `${obj}.o`);
  }
});

test('map names, key/value types and sizes match the codecs', () => {
  const maps = btf('bpf_lxc').mapDefs();
  const expect = [
    { name: IPCACHE_MAP_NAME, key: IPCACHE_KEY, value: IPCACHE_VALUE, max: IPCACHE_MAX_ENTRIES },
    { name: ENDPOINTS_MAP_NAME, key: ENDPOINT_KEY, value: ENDPOINT_INFO, max: ENDPOINTS_MAX_ENTRIES },
    { name: METRICS_MAP_NAME, key: METRICS_KEY, value: METRICS_VALUE, max: METRICS_MAX_ENTRIES },
    { name: CT_TCP_MAP_NAME, key: CT_TUPLE, value: CT_ENTRY, max: CT_TCP_MAX_ENTRIES },
    { name: CT_ANY_MAP_NAME, key: CT_TUPLE, value: CT_ENTRY, max: CT_ANY_MAX_ENTRIES },
    { name: FRAG_MAP_NAME, key: FRAG_ID, value: FRAG_L4, max: 8192 },
    { name: NAT_MAP_NAME, key: CT_TUPLE, value: NAT_ENTRY, max: NAT_MAX_ENTRIES },
  ];
  for (const e of expect) {
    const def = maps.get(e.name);
    assert.ok(def, `map ${e.name} is defined`);
    assert.equal(def.key, `struct ${e.key.name}`, `${e.name} key`);
    assert.equal(def.value, `struct ${e.value.name}`, `${e.name} value`);
    assert.equal(def.maxEntries, e.max, `${e.name} max_entries`);
  }
  assert.equal(maps.get(NODE_CONFIG_MAP_NAME)?.value, `struct ${NODE_CONFIG.name}`);
  assert.equal(maps.get(NODE_CONFIG_MAP_NAME)?.maxEntries, 1);
  assert.ok(maps.has(EVENTS_MAP_NAME));
  assert.equal(maps.get(POLICY_MAPS_NAME)?.maxEntries, POLICY_MAPS_MAX_ENTRIES, `${POLICY_MAPS_NAME} max_entries`);
});

test('the policy maps the agent creates match the inner map definition', () => {
  // struct policy_map in maps.h: LPM trie, key/value by size, max_entries, BPF_F_NO_PREALLOC.
  const src = readFileSync(`${BPF}lib/maps.h`, 'utf8');
  const inner = /struct policy_map \{([^}]*)\}/.exec(src)?.[1] ?? '';
  assert.match(inner, /BPF_MAP_TYPE_LPM_TRIE/);
  assert.match(inner, /key_size, sizeof\(struct policy_key\)/);
  assert.match(inner, /value_size, sizeof\(struct policy_entry\)/);
  assert.match(inner, /max_entries, POLICY_MAP_SIZE/);
  assert.match(inner, /BPF_F_NO_PREALLOC/);
  assert.equal(Number(/#define POLICY_MAP_SIZE\s+(\d+)/.exec(src)?.[1]), POLICY_MAP_MAX_ENTRIES, 'POLICY_MAP_SIZE');
  assert.equal(Number(/#define POLICY_MAPS_SIZE\s+(\d+)/.exec(src)?.[1]), POLICY_MAPS_MAX_ENTRIES, 'POLICY_MAPS_SIZE');
});

test('load-time constant encoders cover exactly the .rodata symbols, with their sizes', () => {
  const lxc = encodeLxcConfig({ endpointId: 7, ipv4: '10.0.1.5', identity: 1234, ifindex: 42, ifMac: '02:aa:00:00:00:05' });
  const sizes = (v: Record<string, Buffer>) => Object.entries(v).map(([k, b]) => [k, b.length]).sort();
  assert.deepEqual(sizes(lxc), btf('bpf_lxc').configVars().map((v) => [v.name, v.size]).sort());
  assert.deepEqual(sizes(encodeHostConfig({ hostEndpointId: 1 })), btf('bpf_host').configVars().map((v) => [v.name, v.size]).sort());
  assert.deepEqual([...lxc.LXC_IPV4], [10, 0, 1, 5], 'LXC_IPV4 is in network byte order');
  assert.deepEqual([...lxc.LXC_SECLABEL], [0xd2, 0x04, 0, 0], 'integers are little-endian');
  assert.throws(() => encodeLxcConfig({ endpointId: 70000, ipv4: '10.0.1.5', identity: 1, ifindex: 1, ifMac: '02:00:00:00:00:01' }), /endpoint id: 70000/);
});
