// The datapath's code lists (drop reasons, observation points, trace reasons,
// source file ids) are X-macros in bpf/lib/*.h; scripts/gen-bpf-tables.ts
// expands them with the C preprocessor into a committed TypeScript module.
// These tests regenerate it in memory and fail if the committed copy is stale,
// check the lists' own rules (unique codes, u8 range, Cilium's values, every
// datapath file has an id), and compare the remaining hand-kept constants
// (reserved identities, flags) with the C headers they mirror.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extractTables, generateTablesModule, REGENERATE_COMMAND, TABLES_MODULE } from '../../scripts/gen-bpf-tables.ts';
import { DROP_REASONS, dropReason, dropReasonText } from '../../src/datapath/maps/drop-reasons.ts';
import { OBSERVATION_POINTS, observationPoint, observationPointText, TRACE_REASONS } from '../../src/datapath/maps/observation-points.ts';
import { SOURCE_FILES, formatSourceLocation, sourceFileName, sourceFilePath } from '../../src/datapath/maps/source-files.ts';
import * as identities from '../../src/datapath/maps/identities.ts';
import * as ipcache from '../../src/datapath/maps/ipcache.ts';
import * as endpoints from '../../src/datapath/maps/endpoints.ts';
import * as nodeConfig from '../../src/datapath/maps/node-config.ts';
import * as metrics from '../../src/datapath/maps/metrics.ts';
import * as events from '../../src/datapath/maps/events.ts';

const BPF = fileURLToPath(new URL('../../bpf/', import.meta.url));
const header = (name: string): string => readFileSync(`${BPF}lib/${name}`, 'utf8');

test('generated/bpf-tables.ts is what the headers give now', () => {
  const want = generateTablesModule();
  const have = readFileSync(TABLES_MODULE, 'utf8');
  if (have !== want) {
    const a = have.split('\n');
    const b = want.split('\n');
    const i = a.findIndex((line, n) => line !== b[n]);
    const at = i === -1 ? b.length : i;
    assert.fail(`${TABLES_MODULE} is stale: line ${at + 1} is ${JSON.stringify(a[at] ?? '<end of file>')}, ` +
      `the headers give ${JSON.stringify(b[at] ?? '<end of file>')}; run ${REGENERATE_COMMAND} and commit the result`);
  }
});

test('the public tables carry every entry of the header lists', () => {
  const c = extractTables();
  assert.deepEqual(DROP_REASONS.map((r) => [r.code, r.name, r.text]), c.dropReasons.map((r) => [r.value, r.name, r.text]));
  assert.deepEqual(OBSERVATION_POINTS.map((p) => [p.value, p.name, p.text]), c.tracePoints.map((p) => [p.value, p.name, p.text]));
  assert.deepEqual(Object.entries(TRACE_REASONS).map(([v, t]) => [Number(v), t]), c.traceReasons.map((r) => [r.value, r.text]));
  assert.deepEqual(SOURCE_FILES.map((f) => [f.id, f.name]), c.sourceFiles.map((f) => [f.id, f.name]));
  assert.ok(Object.isFrozen(DROP_REASONS) && Object.isFrozen(DROP_REASONS[0]), 'callers cannot change the shared table');
});

/** Writes the three headers into a fresh directory; `drop` replaces the body of DROP_REASONS. */
function fakeLib(drop: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'membrane-gen-'));
  writeFileSync(join(dir, 'drop_reasons.h'), `#pragma once\n#define DROP_REASONS(DROP_REASON) ${drop}\n`);
  writeFileSync(join(dir, 'trace_points.h'), '#pragma once\n#define TRACE_POINTS(P) P(0, TO_X, "to-x")\n#define TRACE_REASONS(R) R(5, R_UNKNOWN, "unknown")\n');
  writeFileSync(join(dir, 'source_files.h'), '#pragma once\n#define SOURCE_FILES(F) F(1, "a.c")\n');
  return dir;
}

test('the generator reads the lists through the preprocessor, as the C build does', () => {
  // A macro for a text, continued lines and #if-selected entries reach the
  // tables as the compiler sees them.
  const dir = fakeLib(`\\
    DROP_REASON(140, DROP_A, TEXT_A) \\
    IF_ON(DROP_REASON(141, DROP_B, "two words")) \\
    IF_OFF(DROP_REASON(142, DROP_C, "never"))
#define TEXT_A "from a macro"
#if 1
#define IF_ON(x) x
#define IF_OFF(x)
#endif`);
  try {
    const t = extractTables(dir);
    assert.deepEqual(t.dropReasons, [{ value: 140, name: 'DROP_A', text: 'from a macro' }, { value: 141, name: 'DROP_B', text: 'two words' }]);
    assert.deepEqual(t.tracePoints, [{ value: 0, name: 'TO_X', text: 'to-x' }]);
    assert.deepEqual(t.traceReasons, [{ value: 5, name: 'R_UNKNOWN', text: 'unknown' }]);
    assert.deepEqual(t.sourceFiles, [{ id: 1, name: 'a.c' }]);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('the generator rejects entries it cannot carry exactly, naming list and header', () => {
  const cases: [string, RegExp][] = [
    ['DROP_REASON(0x84, DROP_HEX, "hex")', /DROP_REASONS in .*drop_reasons\.h: expansion is not JSON.*keep codes decimal/],
    ['DROP_REASON(132, DROP_ESC, "bell\\a")', /DROP_REASONS in .*drop_reasons\.h: expansion is not JSON/],
    ['DROP_REASON(132, DROP_CAT, "a" "b")', /expansion is not JSON/],
    ['DROP_REASON(-1, DROP_NEG, "negative")', /\{"value":-1,.*value is not a non-negative integer/],
  ];
  for (const [body, want] of cases) {
    const dir = fakeLib(body);
    try {
      assert.throws(() => extractTables(dir), (e: Error) => /^generate bpf tables: /.test(e.message) && want.test(e.message), body);
    } finally {
      rmSync(dir, { recursive: true });
    }
  }
  const dir = fakeLib('');
  try {
    writeFileSync(join(dir, 'trace_points.h'), '#pragma once\n#define TRACE_POINTS(P) P(0, TO_X, "to-x")\n');
    assert.throws(() => extractTables(dir), /DROP_REASONS in .*: the list is empty/);
    writeFileSync(join(dir, 'drop_reasons.h'), '#define DROP_REASONS(R) R(132, DROP_X, "x")\n');
    assert.throws(() => extractTables(dir), /TRACE_REASONS in .*trace_points\.h: the header does not define TRACE_REASONS/);
    assert.throws(() => extractTables(join(dir, 'missing')), /generate bpf tables: run clang -E on .*missing: .*drop_reasons\.h/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('drop reasons: unique u8 codes clear of TC return codes, with Cilium\'s numbers and texts', () => {
  assert.ok(DROP_REASONS.length >= 15, `${DROP_REASONS.length} drop reasons`);
  assert.equal(new Set(DROP_REASONS.map((r) => r.code)).size, DROP_REASONS.length, 'codes are unique');
  assert.equal(new Set(DROP_REASONS.map((r) => r.name)).size, DROP_REASONS.length, 'names are unique');
  assert.ok(DROP_REASONS.every((r) => r.code >= 130 && r.code <= 255), 'codes fit a u8 and stay clear of TC return codes');
  for (const [code, text] of [[132, 'Invalid source ip'], [134, 'Invalid packet'], [139, 'Unsupported L3 protocol'], [140, 'Missed tail call'],
    [141, 'Error writing to packet'], [147, 'Error retrieving tunnel key'], [151, 'Stale or unroutable IP'],
    [160, 'No tunnel/encapsulation endpoint (datapath BUG!)'], [166, 'Unsupported L2 protocol'], [171, 'Invalid identity'],
    [196, 'TTL exceeded'], [133, 'Policy denied']] as const) {
    assert.equal(dropReasonText(code), text, `Cilium's code ${code}`);
  }
  assert.equal(dropReason(140)?.name, 'DROP_MISSED_TAIL_CALL');
  assert.equal(dropReasonText(0), 'Forwarded');
  assert.equal(dropReasonText(250), 'Unknown drop reason 250');
});

test('observation points and trace reasons have Cilium\'s values', () => {
  const byName = Object.fromEntries(OBSERVATION_POINTS.map((p) => [p.name, p.value]));
  assert.deepEqual(
    [byName.TRACE_TO_LXC, byName.TRACE_TO_STACK, byName.TRACE_TO_OVERLAY, byName.TRACE_FROM_LXC, byName.TRACE_FROM_HOST, byName.TRACE_FROM_STACK, byName.TRACE_FROM_OVERLAY],
    [0, 3, 4, 5, 7, 8, 9],
  );
  assert.equal(new Set(OBSERVATION_POINTS.map((p) => p.value)).size, OBSERVATION_POINTS.length, 'values are unique');
  assert.equal(observationPoint(0)?.name, 'TRACE_TO_LXC');
  assert.equal(observationPointText(9), 'from-overlay');
  assert.equal(observationPointText(99), 'point-99');
  // enum trace_reason; events.h sends TRACE_REASON_UNKNOWN (5) until there is conntrack
  assert.deepEqual(TRACE_REASONS, { 0: 'new', 1: 'established', 2: 'reply', 3: 'related', 5: 'unknown' });
  assert.deepEqual(extractTables().traceReasons.map((r) => r.name),
    ['TRACE_REASON_POLICY', 'TRACE_REASON_CT_ESTABLISHED', 'TRACE_REASON_CT_REPLY', 'TRACE_REASON_CT_RELATED', 'TRACE_REASON_UNKNOWN']);
});

test('source files: unique 7-bit ids, and every datapath source file has one', () => {
  assert.equal(new Set(SOURCE_FILES.map((f) => f.id)).size, SOURCE_FILES.length, 'ids are unique');
  assert.ok(SOURCE_FILES.every((f) => f.id > 0 && f.id < 128), 'ids fit the 7 bits a drop verdict carries');
  const onDisk = [
    ...readdirSync(BPF).filter((f) => f.endsWith('.c')),
    ...readdirSync(`${BPF}lib`).filter((f) => f.endsWith('.h')),
  ].sort();
  assert.deepEqual(SOURCE_FILES.map((f) => f.name).sort(), onDisk, 'every bpf/*.c and bpf/lib/*.h has an id (a missing one reports file 0)');
  assert.equal(sourceFileName(2), 'bpf_lxc.c');
  assert.equal(sourceFileName(99), 'file-99');
  assert.equal(sourceFilePath(14), 'bpf/lib/local_delivery.h');
  assert.equal(sourceFilePath(1), 'bpf/bpf_host.c');
  assert.equal(sourceFilePath(99), undefined);
  assert.equal(formatSourceLocation(2, 77), 'bpf_lxc.c:77');
});

test('reserved identities and mark layout match identity.h', () => {
  const src = header('identity.h');
  const c = Object.fromEntries([...src.matchAll(/\b(IDENTITY_\w+) = (\d+),/g)].map((m) => [m[1], Number(m[2])]));
  for (const [name, value] of Object.entries(c)) {
    assert.equal((identities as unknown as Record<string, number>)[name], value, name);
  }
  assert.deepEqual([c.IDENTITY_HOST, c.IDENTITY_WORLD, c.IDENTITY_INIT, c.IDENTITY_REMOTE_NODE], [1, 2, 5, 6]);
  for (const name of ['MARK_MAGIC_HOST', 'MARK_MAGIC_IDENTITY', 'MARK_MAGIC_MASK']) {
    const m = new RegExp(`#define ${name}\\s+(0x[0-9A-Fa-f]+)`).exec(src);
    assert.ok(m, name);
    assert.equal((identities as unknown as Record<string, number>)[name], Number(m[1]), name);
  }
  assert.equal(identities.identityToMark(1234), 0x04d20f00);
  assert.equal(identities.identityToMark(0x12abcd), 0xabcd0f12);
  assert.equal(identities.identityFromMark(0xabcd0f12), 0x12abcd);
  assert.equal(identities.identityFromMark(0x0c00), identities.IDENTITY_HOST);
  assert.equal(identities.identityFromMark(0), undefined);
  assert.equal(identities.identityName(6), 'reserved:remote-node');
  assert.equal(identities.identityName(4321), '4321');
});

test('flag and size constants match the C #defines of the same name', () => {
  const defines = new Map<string, number>();
  for (const h of ['maps.h', 'events.h', 'common.h', 'tailcall.h']) {
    for (const m of header(h).matchAll(/^#define (\w+)\s+(0x[0-9a-fA-F]+|\d+)\b/gm)) defines.set(m[1], Number(m[2]));
  }
  const ts: Record<string, number> = {
    IPCACHE_F_SKIP_TUNNEL: ipcache.IPCACHE_F_SKIP_TUNNEL,
    IPCACHE_F_HAS_TUNNEL_EP: ipcache.IPCACHE_F_HAS_TUNNEL_EP,
    IPCACHE_FAMILY_IPV4: ipcache.IPCACHE_FAMILY_IPV4,
    IPCACHE_STATIC_PREFIX: ipcache.IPCACHE_STATIC_PREFIX_BITS,
    IPCACHE_MAP_SIZE: ipcache.IPCACHE_MAX_ENTRIES,
    ENDPOINT_F_HOST: endpoints.ENDPOINT_F_HOST,
    ENDPOINT_F_ATHOSTNS: endpoints.ENDPOINT_F_ATHOSTNS,
    ENDPOINT_KEY_IPV4: endpoints.ENDPOINT_KEY_IPV4,
    ENDPOINTS_MAP_SIZE: endpoints.ENDPOINTS_MAX_ENTRIES,
    NODE_F_ENDPOINT_ROUTES: nodeConfig.NODE_F_ENDPOINT_ROUTES,
    TRACE_LEVEL_OFF: nodeConfig.TRACE_LEVEL_OFF,
    TRACE_LEVEL_CONN: nodeConfig.TRACE_LEVEL_CONN,
    TRACE_LEVEL_ALL: nodeConfig.TRACE_LEVEL_ALL,
    EVENTS_LOST_TYPES: events.EVENTS_LOST_TYPES,
    METRICS_MAP_SIZE: metrics.METRICS_MAX_ENTRIES,
    EVENT_VERSION: events.EVENT_VERSION,
    EVENT_CAP_LEN: events.EVENT_CAP_LEN,
  };
  for (const [name, value] of Object.entries(ts)) assert.equal(defines.get(name), value, name);
  const enums = (h: string) => Object.fromEntries([...header(h).matchAll(/\b(\w+) = (\d+),/g)].map((m) => [m[1], Number(m[2])]));
  const ev = enums('events.h');
  assert.equal(ev.EVENT_TYPE_DROP, events.EVENT_TYPE_DROP);
  assert.equal(ev.EVENT_TYPE_TRACE, events.EVENT_TYPE_TRACE);
  assert.equal(ev.EVENT_TYPE_DEBUG, events.EVENT_TYPE_DEBUG);
  assert.equal(ev.EVENT_TYPE_POLICY_VERDICT, events.EVENT_TYPE_POLICY_VERDICT);
  for (const [name, value] of Object.entries(ev).filter(([n]) => n.startsWith('POLICY_MATCH_'))) {
    assert.equal((events as unknown as Record<string, number>)[name], value, name);
  }
  const common = enums('common.h');
  assert.equal(common.METRIC_INGRESS, metrics.METRIC_INGRESS);
  assert.equal(common.METRIC_EGRESS, metrics.METRIC_EGRESS);
});
