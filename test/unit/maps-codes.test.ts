// The TypeScript mirrors of the datapath's code lists (drop reasons,
// observation points, source file ids, reserved identities, flag constants)
// are compared with the C headers they mirror, so a code added on one side
// only fails here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DROP_REASONS, dropReasonText } from '../../src/datapath/maps/drop-reasons.ts';
import { OBSERVATION_POINTS, observationPointText } from '../../src/datapath/maps/observation-points.ts';
import { SOURCE_FILES, sourceFileName, sourceFilePath } from '../../src/datapath/maps/source-files.ts';
import * as identities from '../../src/datapath/maps/identities.ts';
import * as ipcache from '../../src/datapath/maps/ipcache.ts';
import * as endpoints from '../../src/datapath/maps/endpoints.ts';
import * as nodeConfig from '../../src/datapath/maps/node-config.ts';
import * as metrics from '../../src/datapath/maps/metrics.ts';
import * as events from '../../src/datapath/maps/events.ts';

const BPF = fileURLToPath(new URL('../../bpf/', import.meta.url));
const header = (name: string): string => readFileSync(`${BPF}lib/${name}`, 'utf8');

test('drop_reasons.h and drop-reasons.ts list the same codes, names and texts', () => {
  const c = [...header('drop_reasons.h').matchAll(/DROP_REASON\((\d+), (\w+), "([^"]*)"\)/g)]
    .map((m) => ({ code: Number(m[1]), name: m[2], text: m[3] }));
  assert.ok(c.length >= 15, `parsed ${c.length} drop reasons from the header`);
  assert.deepEqual(DROP_REASONS.map((r) => ({ ...r })), c);
  assert.equal(new Set(c.map((r) => r.code)).size, c.length, 'codes are unique');
  assert.ok(c.every((r) => r.code >= 130 && r.code <= 255), 'codes fit a u8 and stay clear of TC return codes');
  for (const [code, text] of [[132, 'Invalid source ip'], [134, 'Invalid packet'], [139, 'Unsupported L3 protocol'], [140, 'Missed tail call'],
    [141, 'Error writing to packet'], [147, 'Error retrieving tunnel key'], [151, 'Stale or unroutable IP'],
    [160, 'No tunnel/encapsulation endpoint (datapath BUG!)'], [166, 'Unsupported L2 protocol'], [171, 'Invalid identity'],
    [196, 'TTL exceeded'], [133, 'Policy denied']] as const) {
    assert.equal(dropReasonText(code), text, `Cilium's code ${code}`);
  }
  assert.equal(dropReasonText(0), 'Forwarded');
  assert.equal(dropReasonText(250), 'Unknown drop reason 250');
});

test('trace_points.h and observation-points.ts agree, with Cilium values', () => {
  const c = [...header('trace_points.h').matchAll(/TRACE_POINT\((\d+), (\w+), "([^"]*)"\)/g)]
    .map((m) => ({ value: Number(m[1]), name: m[2], text: m[3] }));
  assert.deepEqual(OBSERVATION_POINTS.map((p) => ({ ...p })), c);
  const byName = Object.fromEntries(c.map((p) => [p.name, p.value]));
  assert.deepEqual(
    [byName.TRACE_TO_LXC, byName.TRACE_TO_STACK, byName.TRACE_TO_OVERLAY, byName.TRACE_FROM_LXC, byName.TRACE_FROM_HOST, byName.TRACE_FROM_STACK, byName.TRACE_FROM_OVERLAY],
    [0, 3, 4, 5, 7, 8, 9],
  );
  assert.equal(observationPointText(9), 'from-overlay');
  assert.equal(observationPointText(99), 'point-99');
});

test('source_files.h and source-files.ts agree and list every datapath source file', () => {
  const c = [...header('source_files.h').matchAll(/SOURCE_FILE\((\d+), "([^"]+)"\)/g)].map((m) => ({ id: Number(m[1]), name: m[2] }));
  assert.deepEqual(SOURCE_FILES.map((f) => ({ ...f })), c);
  assert.equal(new Set(c.map((f) => f.id)).size, c.length, 'ids are unique');
  assert.ok(c.every((f) => f.id > 0 && f.id < 128), 'ids fit the 7 bits a drop verdict carries');
  const onDisk = [
    ...readdirSync(BPF).filter((f) => f.endsWith('.c')),
    ...readdirSync(`${BPF}lib`).filter((f) => f.endsWith('.h')),
  ].sort();
  assert.deepEqual(c.map((f) => f.name).sort(), onDisk, 'every bpf/*.c and bpf/lib/*.h has an id (a missing one reports file 0)');
  assert.equal(sourceFileName(2), 'bpf_lxc.c');
  assert.equal(sourceFilePath(14), 'bpf/lib/local_delivery.h');
  assert.equal(sourceFilePath(1), 'bpf/bpf_host.c');
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
    NODE_F_TRACE_EVENTS: nodeConfig.NODE_F_TRACE_EVENTS,
    METRICS_MAP_SIZE: metrics.METRICS_MAX_ENTRIES,
    EVENT_VERSION: events.EVENT_VERSION,
    EVENT_CAP_LEN: events.EVENT_CAP_LEN,
  };
  for (const [name, value] of Object.entries(ts)) assert.equal(defines.get(name), value, name);
  const enums = (h: string) => Object.fromEntries([...header(h).matchAll(/\b(\w+) = (\d+),/g)].map((m) => [m[1], Number(m[2])]));
  const ev = enums('events.h');
  assert.equal(ev.EVENT_TYPE_DROP, events.EVENT_TYPE_DROP);
  assert.equal(ev.EVENT_TYPE_TRACE, events.EVENT_TYPE_TRACE);
  const common = enums('common.h');
  assert.equal(common.METRIC_INGRESS, metrics.METRIC_INGRESS);
  assert.equal(common.METRIC_EGRESS, metrics.METRIC_EGRESS);
});
