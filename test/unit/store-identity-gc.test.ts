// Issue 8, fault 13: identities were never garbage-collected (359 master
// keys after ~350 label sets). The allocator's GC frees masters no node
// references any more (no slave key of their labels, no slave key or pod IP
// entry with their number) once it has seen them unreferenced for the grace
// period, and never hands a freed ID to other labels before its quarantine
// ends. Also: an ID a node recorded is re-created for the same labels when
// the store lost it (fault 12), and a release during a store outage is
// retried instead of leaving the reference behind. Against SQLite files.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { IdentityAllocator } from '../../src/store/identity-allocator.ts';
import {
  IDENTITY_FREED_PREFIX, IDENTITY_ID_PREFIX, encodeIpIdentity, formatLabelKey, identityIdKey, identityValueKey, ipKey, ipMetadata,
} from '../../src/store/keys.ts';
import { openStore, type KVStore } from '../../src/store/store.ts';
import { waitFor } from './store-contract.ts';

const dir = mkdtempSync(join(tmpdir(), 'membrane-idgc-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const GRACE = 60_000;
const QUARANTINE = 600_000;

async function setup(t: { after: (fn: () => Promise<void>) => void }): Promise<{ path: string; store: KVStore; alloc: (node: string) => Promise<IdentityAllocator> }> {
  const path = join(dir, `s${++n}.db`);
  const store = await openStore({ backend: 'sqlite', path });
  const allocs: IdentityAllocator[] = [];
  t.after(async () => {
    for (const a of allocs) await a.close().catch(() => undefined);
    await store.close();
  });
  return {
    path, store,
    alloc: async (node) => {
      const a = await IdentityAllocator.create(store, { node, leaseTtlSeconds: 30, gc: { graceMs: GRACE, quarantineMs: QUARANTINE } });
      allocs.push(a);
      return a;
    },
  };
}

const labels = (i: number) => ({ app: `app${i}`, 'k8s:io.kubernetes.pod.namespace': 'default' });
const masters = async (s: KVStore) => (await s.list(IDENTITY_ID_PREFIX)).entries.length;

test('gc frees unreferenced masters after the grace period, keeps referenced ones, and quarantines freed ids', async (t) => {
  const { store, alloc } = await setup(t);
  const a = await alloc('node-a');
  const b = await alloc('node-b');
  // 50 label sets come and go on node a, as pods with ever new labels would.
  const ids: number[] = [];
  for (let i = 0; i < 50; i++) ids.push(await a.allocate(labels(i)));
  assert.deepEqual(ids, Array.from({ length: 50 }, (_, i) => 256 + i));
  for (let i = 5; i < 50; i++) assert.equal(await a.release(labels(i)), true);
  // Node b still uses app10; a pod IP entry still carries app11's id (its slave key is gone).
  assert.equal(await b.allocate(labels(10)), ids[10]);
  await store.put(ipKey('10.244.9.9'), encodeIpIdentity({ IP: '10.244.9.9', Mask: null, HostIP: '10.13.0.19', ID: ids[11]!, Metadata: ipMetadata('node-c', 3) }));
  assert.equal(await masters(store), 50);

  const t0 = Date.now();
  assert.deepEqual((await a.gc(t0)).freed, [], 'the first pass only marks');
  assert.deepEqual((await a.gc(t0 + GRACE - 1)).freed, [], 'not before the grace period');
  const { freed } = await a.gc(t0 + GRACE);
  assert.deepEqual(freed, ids.slice(5).filter((id) => id !== ids[10] && id !== ids[11]));
  assert.equal(await masters(store), 7, 'in use by a (5), referenced by b (1), named by a pod IP (1)');
  for (const id of [...ids.slice(0, 5), ids[10]!, ids[11]!]) assert.ok(await store.get(identityIdKey(id)), `master ${id} kept`);
  assert.equal((await store.list(IDENTITY_FREED_PREFIX)).entries.length, 43, 'each freed id is quarantined');

  // New labels never get a quarantined id; labels that had one get it back.
  const fresh = await a.allocate({ app: 'fresh' });
  assert.equal(fresh, 256 + 50, 'the lowest id neither in use nor quarantined');
  assert.equal(await b.allocate(labels(20)), ids[20], 'labels whose id is quarantined get the same id again');

  // Once the quarantine is over the records go and the ids are free again.
  const later = await a.gc(t0 + GRACE + QUARANTINE);
  assert.equal(later.unquarantined, 43);
  assert.equal(await a.allocate({ app: 'after-quarantine' }), ids[5]);
});

test('gc never frees an id while a node allocates it, also from another allocator running gc at the same time', async (t) => {
  const { store, alloc } = await setup(t);
  const a = await alloc('node-a');
  const b = await alloc('node-b');
  const id = await a.allocate(labels(1));
  await a.release(labels(1));
  const t0 = Date.now();
  await a.gc(t0);
  await b.gc(t0);
  // b takes the labels again while both collectors decide: whoever gets the lock first wins, and either way the id stays.
  const [again] = await Promise.all([b.allocate(labels(1)), a.gc(t0 + GRACE), b.gc(t0 + GRACE)]);
  const master = await store.get(identityIdKey(again));
  assert.equal(master?.value, formatLabelKey(labels(1)), 'the id b holds has its master');
  assert.equal(again, id, 'a quarantined id goes back to the same labels');
  assert.deepEqual((await a.gc(t0 + 2 * GRACE)).freed, [], 'held by b: not freed');
});

test('an id recorded by a node is re-created for its labels when the store lost it; others take the lowest free one', async (t) => {
  const { alloc } = await setup(t);
  const a = await alloc('node-a');
  a.prefer([{ labels: labels(7), id: 300 }, { labels: labels(8), id: 256 }]);
  assert.equal(await a.allocate(labels(7)), 300);
  assert.equal(await a.allocate(labels(9)), 256, 'no preference: the lowest free id');
  assert.equal(await a.allocate(labels(8)), 257, 'the preferred id is taken by other labels: another one');
});

test('a release while the store is unreachable is retried until the reference is gone', async (t) => {
  const { path, store, alloc } = await setup(t);
  const a = await alloc('node-a');
  await a.allocate(labels(1));
  // Another connection holds the write lock: writes wait busy_timeout (5 s), then fail as unavailable.
  const blocker = new Database(path);
  blocker.exec('BEGIN EXCLUSIVE');
  let held = true;
  t.after(() => { if (held) blocker.exec('ROLLBACK'); blocker.close(); });
  assert.equal(await a.release(labels(1)), true, 'the release does not fail');
  assert.equal(a.pending, 1, 'its slave-key delete is pending');
  blocker.exec('ROLLBACK');
  held = false;
  await waitFor('the pending delete', async () => a.pending === 0 && (await store.get(identityValueKey(formatLabelKey(labels(1)), 'node-a'))) === undefined, 10_000);
});
