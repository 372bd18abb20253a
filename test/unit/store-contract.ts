// The behaviour every KVStore backend must show, written once and run by
// store-sqlite.test.ts and store-etcd.test.ts against their own backing store.
// Tests share one store, so each works under its own key prefix.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { KVStore, StoreConfig, WatchEvent } from '../../src/store/store.ts';
import { IdentityAllocator } from '../../src/store/identity-allocator.ts';
import { formatLabelKey, identityIdKey, identityValueKey, identityValuePrefix } from '../../src/store/keys.ts';

export interface StoreHarness {
  /** A new client of the shared backing store, in this process. */
  open(): Promise<KVStore>;
  /** What a peer process passes to openStore to reach the same backing store. */
  peerConfig: StoreConfig;
  /** Discards the event history up to the current revision. */
  compact(): Promise<void>;
}

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PEER = fileURLToPath(new URL('./store-peer.ts', import.meta.url));

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until `cond` holds; fails with `what` after `ms`. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Collects a watch's events and errors. */
export function collector() {
  const events: WatchEvent[] = [];
  const errors: Error[] = [];
  return { events, errors, cb: (ev: WatchEvent) => { events.push(ev); }, onError: (e: Error) => { errors.push(e); } };
}

/** Another client in a child process (see store-peer.ts). */
export class Peer {
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: any) => void }>();
  readonly events = new Map<number, WatchEvent[]>();
  readonly exited: Promise<void>;

  private constructor(private readonly proc: ChildProcess, ready: () => void) {
    this.exited = new Promise((r) => proc.once('exit', () => r()));
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line);
      if (msg.ready) return ready();
      if (msg.watch !== undefined) {
        if (msg.event) this.events.get(msg.watch)?.push(msg.event);
        return;
      }
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.ok) p?.resolve(msg.result);
      else p?.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
    });
    this.exited.then(() => {
      for (const p of this.pending.values()) p.reject(new Error('peer exited'));
      this.pending.clear();
    });
  }

  static async start(cfg: StoreConfig): Promise<Peer> {
    const proc = spawn(process.execPath, ['--import', 'tsx', PEER, JSON.stringify(cfg)], { cwd: REPO, stdio: ['pipe', 'pipe', 'inherit'] });
    let peer!: Peer;
    await new Promise<void>((resolve, reject) => {
      peer = new Peer(proc, resolve);
      peer.exited.then(() => reject(new Error('peer exited before it was ready')));
    });
    return peer;
  }

  request<T = any>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.proc.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n');
    });
  }

  async watch(prefix: string, from: number): Promise<WatchEvent[]> {
    const w = await this.request<number>('watch', { prefix, from });
    const list: WatchEvent[] = [];
    this.events.set(w, list);
    return list;
  }

  /** SIGKILL: no cleanup of any kind, like a crashed agent. */
  async kill(): Promise<void> {
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    await this.request('close').catch(() => undefined);
    await Promise.race([this.exited, sleep(2000).then(() => this.proc.kill('SIGKILL'))]);
  }
}

const strip = (evs: WatchEvent[]) => evs.map((e) => (e.type === 'put' ? `put ${e.key}=${e.value}` : `delete ${e.key}`));

/** Registers the contract tests; `setup` runs once before them (e.g. starting etcd). */
export function runStoreContract(name: string, setup: () => Promise<StoreHarness>, teardown: () => Promise<void> = async () => {}): void {
  describe(`KVStore contract: ${name}`, () => {
    let h: StoreHarness;
    let a: KVStore;
    let b: KVStore;
    let peer: Peer;
    let n = 0;
    const prefix = () => `contract/${name}/${++n}/`;

    before(async () => {
      h = await setup();
      [a, b, peer] = await Promise.all([h.open(), h.open(), Peer.start(h.peerConfig)]);
    });
    after(async () => {
      await peer?.close();
      await a?.close();
      await b?.close();
      await teardown();
    });

    it('gets, puts, deletes and lists by prefix with increasing revisions', async () => {
      const p = prefix();
      const r1 = await a.put(`${p}b`, 'one');
      const r2 = await a.put(`${p}a`, 'two');
      assert.ok(r2 > r1, `revision ${r2} after ${r1}`);
      assert.deepEqual(await a.get(`${p}b`), { key: `${p}b`, value: 'one', modRevision: r1 });
      const r3 = await b.put(`${p}b`, 'three');
      assert.ok(r3 > r2);
      assert.equal((await a.get(`${p}b`))?.modRevision, r3);
      assert.equal(await a.get(`${p}missing`), undefined);
      await a.put(`${p}x/deep`, 'd');
      await a.put(`${p.slice(0, -1)}-sibling`, 'not under the prefix');

      const l = await a.list(p);
      assert.deepEqual(l.entries.map((e) => [e.key, e.value]), [[`${p}a`, 'two'], [`${p}b`, 'three'], [`${p}x/deep`, 'd']]);
      assert.ok(l.revision >= r3, 'list revision covers the writes it shows');
      assert.equal(l.entries.find((e) => e.key === `${p}a`)?.modRevision, r2);

      assert.equal(await a.delete(`${p}a`), true);
      assert.equal(await a.delete(`${p}a`), false);
      assert.equal(await b.get(`${p}a`), undefined);
      assert.equal(await a.deletePrefix(p), 2);
      assert.deepEqual((await b.list(p)).entries, []);
      assert.equal((await a.get(`${p.slice(0, -1)}-sibling`))?.value, 'not under the prefix');
      const r4 = await a.put(`${p}c`, 'later');
      assert.ok(r4 > r3);
    });

    it('list then watch from its revision sees every later change in order, nothing earlier, no other prefix', async () => {
      const p = prefix();
      const other = `${p.slice(0, -1)}x/`; // shares the text before the last '/', not the prefix
      await a.put(`${p}a`, '1');
      await a.put(`${p}b`, '1');
      const { entries, revision } = await a.list(p);
      assert.equal(entries.length, 2);

      // Written after the list but before the watch starts: must still be delivered.
      const expectRevs: number[] = [];
      expectRevs.push(await b.put(`${p}c`, '1'));
      await b.delete(`${p}a`);
      const c = collector();
      const w = a.watch(p, revision, c.cb, c.onError);
      expectRevs.push(await b.put(`${p}b`, '2'));
      await b.put(`${other}z`, 'elsewhere');
      expectRevs.push(await a.put(`${p}d`, '1'));
      await b.delete(`${p}c`);

      const want = [`put ${p}c=1`, `delete ${p}a`, `put ${p}b=2`, `put ${p}d=1`, `delete ${p}c`];
      await waitFor('5 watch events', () => c.events.length >= want.length);
      await sleep(150); // nothing more may arrive
      assert.deepEqual(strip(c.events), want);
      assert.ok(c.events.every((e) => e.revision > revision), 'no event at or before the list revision');
      for (let i = 1; i < c.events.length; i++) assert.ok(c.events[i]!.revision > c.events[i - 1]!.revision, 'revisions increase');
      const puts = c.events.filter((e) => e.type === 'put').map((e) => e.revision);
      assert.deepEqual(puts, expectRevs, 'a put event carries the revision put() returned');
      assert.deepEqual(c.errors, []);
      w.close();
      await a.put(`${p}e`, 'after close');
      await sleep(150);
      assert.equal(c.events.length, want.length, 'no events after close()');
    });

    it('create() is compare-and-swap on absence', async () => {
      const p = prefix();
      assert.equal(await a.create(`${p}k`, 'first'), true);
      assert.equal(await b.create(`${p}k`, 'second'), false);
      assert.equal((await a.get(`${p}k`))?.value, 'first');
      await a.delete(`${p}k`);
      assert.equal(await b.create(`${p}k`, 'third'), true);
      // Racing creators on two clients and another process: exactly one wins.
      const results = await Promise.all([
        ...Array.from({ length: 5 }, (_, i) => a.create(`${p}race`, `a${i}`)),
        ...Array.from({ length: 5 }, (_, i) => b.create(`${p}race`, `b${i}`)),
        ...Array.from({ length: 5 }, (_, i) => peer.request<boolean>('create', { key: `${p}race`, value: `peer${i}` })),
      ]);
      assert.equal(results.filter(Boolean).length, 1, `winners: ${results}`);
    });

    it('revoke deletes the leased keys at once and watchers see the deletes', async () => {
      const p = prefix();
      const lease = await a.grantLease(30);
      await a.put(`${p}1`, 'x', { lease });
      await a.put(`${p}2`, 'y', { lease });
      await a.put(`${p}plain`, 'z');
      assert.equal((await b.get(`${p}1`))?.lease, lease.id);
      assert.equal((await b.get(`${p}plain`))?.lease, undefined);
      const { revision } = await b.list(p);
      const c = collector();
      const w = b.watch(p, revision, c.cb, c.onError);
      await lease.revoke();
      assert.equal(await b.get(`${p}1`), undefined);
      assert.deepEqual((await b.list(p)).entries.map((e) => e.key), [`${p}plain`]);
      await waitFor('2 delete events', () => c.events.length >= 2);
      assert.deepEqual(strip(c.events).sort(), [`delete ${p}1`, `delete ${p}2`]);
      w.close();
      await assert.rejects(a.put(`${p}3`, 'v', { lease }), (e: any) => e.code === 'E_STORE_LEASE_NOT_FOUND');
    });

    it('keepalive keeps leased keys past the TTL', async () => {
      const p = prefix();
      const lease = await a.grantLease(1);
      await a.put(`${p}k`, 'alive', { lease });
      await sleep(2600);
      assert.equal((await b.get(`${p}k`))?.value, 'alive');
      await lease.revoke();
    });

    it('the leased keys of a SIGKILLed process vanish after the TTL, with delete events', async () => {
      const p = prefix();
      const victim = await Peer.start(h.peerConfig);
      try {
        await victim.request('lease', { ttl: 1 });
        await victim.request('put', { key: `${p}node`, value: 'here', leased: true });
        const { entries, revision } = await a.list(p);
        assert.equal(entries.length, 1);
        const c = collector();
        const w = a.watch(p, revision, c.cb, c.onError);
        await victim.kill();
        assert.equal((await a.get(`${p}node`))?.value, 'here', 'still there right after the kill');
        const t0 = Date.now();
        await waitFor('the delete event', () => c.events.length >= 1, 4000);
        assert.deepEqual(strip(c.events), [`delete ${p}node`]);
        assert.equal(await b.get(`${p}node`), undefined);
        assert.ok(Date.now() - t0 < 3500, 'gone within about one TTL');
        w.close();
      } finally {
        await victim.kill();
      }
    });

    it('a second process sees our writes and watches, and we see its', async () => {
      const p = prefix();
      const { revision } = await a.list(p);
      const peerEvents = await peer.watch(p, revision);
      const c = collector();
      const w = a.watch(p, revision, c.cb, c.onError);
      const r1 = await a.put(`${p}from-us`, '1');
      const r2 = await peer.request<number>('put', { key: `${p}from-peer`, value: '2' });
      assert.ok(r2 > r1);
      assert.equal((await a.get(`${p}from-peer`))?.value, '2');
      assert.equal((await peer.request('get', { key: `${p}from-us` })).value, '1');
      await waitFor('peer sees both events', () => peerEvents.length >= 2);
      await waitFor('we see both events', () => c.events.length >= 2);
      assert.deepEqual(strip(peerEvents), [`put ${p}from-us=1`, `put ${p}from-peer=2`]);
      assert.deepEqual(strip(c.events), strip(peerEvents));
      assert.deepEqual(c.events.map((e) => e.revision), [r1, r2]);
      w.close();
    });

    it('ping resolves while the store can take writes', async () => {
      await a.ping();
      await b.ping();
    });

    it('watching from a compacted revision fails with E_STORE_COMPACTED', async () => {
      const p = prefix();
      const { revision } = await a.list(p);
      await a.put(`${p}gone`, '1');
      await a.put(`${p}gone`, '2');
      await h.compact();
      const c = collector();
      const w = a.watch(p, revision, c.cb, c.onError);
      await waitFor('an error', () => c.errors.length >= 1);
      assert.equal((c.errors[0] as any).code, 'E_STORE_COMPACTED', c.errors[0]!.message);
      assert.deepEqual(c.events, []);
      w.close();
      // Listing again and watching from there works.
      const again = await a.list(p);
      const c2 = collector();
      const w2 = a.watch(p, again.revision, c2.cb, c2.onError);
      await a.put(`${p}new`, '3');
      await waitFor('the new event', () => c2.events.length >= 1);
      assert.deepEqual(strip(c2.events), [`put ${p}new=3`]);
      w2.close();
    });

    it('identity allocation: same labels get the same id everywhere, different labels never share one', async () => {
      const allocA = await IdentityAllocator.create(a, { node: '10.0.0.1', leaseTtlSeconds: 5 });
      const allocB = await IdentityAllocator.create(b, { node: '10.0.0.2', leaseTtlSeconds: 5 });
      try {
        const run = `${name}-${process.pid}-${Date.now()}`;
        const sets = Array.from({ length: 8 }, (_, i) => ({ app: `web${i}`, run, 'k8s:io.kubernetes.pod.namespace': 'default' }));
        // Both clients allocate every set at once: 16 concurrent allocations, 8 label sets.
        // Another process joins in on two of them.
        const [idsA, idsB, peerIds] = await Promise.all([
          Promise.all(sets.map((l) => allocA.allocate(l))),
          Promise.all([...sets].reverse().map((l) => allocB.allocate(l))).then((ids) => ids.reverse()),
          Promise.all([6, 2].map((i) => peer.request<number>('allocate', { labels: sets[i], node: '10.0.0.3' }))),
        ]);
        assert.deepEqual(idsA, idsB, 'same labels, same id on both clients');
        assert.deepEqual(peerIds, [idsA[6], idsA[2]], 'and in the other process');
        assert.equal(new Set(idsA).size, sets.length, `distinct label sets got distinct ids: ${idsA}`);
        // The store is fresh, so the ids are the lowest of the global range.
        assert.deepEqual([...idsA].sort((x, y) => x - y), [256, 257, 258, 259, 260, 261, 262, 263]);

        const key0 = formatLabelKey(sets[0]!);
        assert.equal(key0, `k8s:app=web0;k8s:io.kubernetes.pod.namespace=default;k8s:run=${run};`);
        assert.equal((await a.get(identityIdKey(idsA[0]!)))?.value, key0, 'master key holds the label key');
        assert.equal((await a.get(identityIdKey(idsA[0]!)))?.lease, undefined, 'master key has no lease');
        const slaves = (await a.list(identityValuePrefix(key0))).entries;
        assert.deepEqual(slaves.map((e) => [e.key, e.value]), [
          [identityValueKey(key0, '10.0.0.1'), String(idsA[0])],
          [identityValueKey(key0, '10.0.0.2'), String(idsA[0])],
        ]);
        assert.ok(slaves.every((e) => e.lease !== undefined), 'slave keys are leased');
        assert.deepEqual(await allocB.lookup(idsA[3]!), { 'k8s:app': 'web3', 'k8s:run': run, 'k8s:io.kubernetes.pod.namespace': 'default' });
        assert.equal(await allocB.lookup(65535), undefined);

        // A process that starts allocating later agrees too.
        assert.equal(await peer.request<number>('allocate', { labels: sets[5], node: '10.0.0.3' }), idsA[5]);

        // Released by everyone, the id stays with its labels; a fresh set gets a new id.
        assert.equal(await allocA.allocate(sets[1]!), idsA[1], 'second reference');
        assert.equal(await allocA.release(sets[1]!), false, 'one reference left');
        assert.equal(await allocA.release(sets[1]!), true);
        assert.equal(await allocB.release(sets[1]!), true);
        assert.deepEqual((await a.list(identityValuePrefix(formatLabelKey(sets[1]!)))).entries, []);
        assert.equal(await allocB.allocate(sets[1]!), idsA[1], 'id reused from the master key');
        const fresh = await allocA.allocate({ app: 'fresh', run });
        assert.ok(!idsA.includes(fresh));
      } finally {
        await allocA.close();
        await allocB.close();
      }
    });
  });
}
