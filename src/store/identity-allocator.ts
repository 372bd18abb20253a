// Cluster-wide security identities on the state store, following Cilium's
// kvstore allocator (pkg/allocator, pkg/kvstore/allocator):
//   id/<N> = labelKey               master key, no lease: the cluster-wide fact "N means these labels"
//   value/<labelKey>/<node> = N     slave key, leased: "this node uses N" (gone when the node dies)
//   locks/<labelKey>                leased lock serialising allocation of one label set
//
// Why it is safe:
//  - different label sets never share an ID: a master key is only ever written
//    with create() (compare-and-swap on absence), so exactly one writer wins N;
//  - one label set gets one ID: allocation for a label set runs under its lock,
//    and under the lock an existing master (found through the slave keys or by
//    scanning id/) is always reused before a new one is created. Masters outlive
//    their users, so a label set keeps its ID across releases and restarts.
import { randomUUID } from 'node:crypto';
import { MembraneError, type ErrorCode } from '../shared/errors.ts';
import type { KVStore, Lease } from './store.ts';
import {
  IDENTITY_ID_PREFIX, MAX_GLOBAL_IDENTITY, MIN_GLOBAL_IDENTITY,
  decodeIdentityId, encodeIdentityId, formatLabelKey, identityIdKey, identityLockKey,
  identityValueKey, identityValuePrefix, parseIdentityIdKey, parseLabelKey, type Labels,
} from './keys.ts';

export interface IdentityAllocatorOptions {
  /** This node's suffix in slave keys (Cilium uses the node IP). Must not contain '/'. */
  node: string;
  /** TTL of the lease behind this node's slave keys and locks (default 15 s). */
  leaseTtlSeconds?: number;
  /** ID range (default 256..65535, the global range of cluster 0). */
  minId?: number;
  maxId?: number;
  /** How long to wait for another node's allocation lock (default: lease TTL + 5 s). */
  lockTimeoutMs?: number;
  /** Hears about background failures (renewing a lost lease); the allocator keeps working. */
  onError?: (err: Error) => void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof MembraneError && err.code === code;
}

/**
 * Allocates numeric identities for label sets. Create with `IdentityAllocator.create`;
 * the caller owns it and must `close()` it (which revokes its lease, deleting this
 * node's slave keys; master keys stay). Methods throw MembraneError: E_STORE_* from the
 * store, E_STORE_KEY for unusable labels, E_IDENTITY_EXHAUSTED, E_IDENTITY_LOCK_TIMEOUT.
 */
export class IdentityAllocator {
  private readonly held = new Map<string, { id: number; refs: number }>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private renewing: Promise<Lease> | undefined;
  private closed = false;
  private readonly minId: number;
  private readonly maxId: number;
  private readonly lockTimeoutMs: number;

  private constructor(private readonly store: KVStore, private lease: Lease, private readonly opts: IdentityAllocatorOptions) {
    this.minId = opts.minId ?? MIN_GLOBAL_IDENTITY;
    this.maxId = opts.maxId ?? MAX_GLOBAL_IDENTITY;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? lease.ttlSeconds * 1000 + 5_000;
    this.watchLease(lease);
  }

  static async create(store: KVStore, opts: IdentityAllocatorOptions): Promise<IdentityAllocator> {
    identityValueKey('x;', opts.node); // validates the node suffix up front
    const lease = await store.grantLease(opts.leaseTtlSeconds ?? 15);
    return new IdentityAllocator(store, lease, opts);
  }

  /**
   * The cluster-wide ID of a label set, allocating one if the cluster has none.
   * Each call takes a reference this node holds until a matching `release`.
   */
  async allocate(labels: Labels): Promise<number> {
    const labelKey = formatLabelKey(labels);
    return this.serial(labelKey, async () => {
      this.checkOpen('allocate identity');
      const held = this.held.get(labelKey);
      if (held) {
        held.refs++;
        return held.id;
      }
      const id = await this.withLease((lease) => this.allocateLocked(labelKey, lease));
      this.held.set(labelKey, { id, refs: 1 });
      return id;
    }).catch((err) => {
      throw new MembraneError(`allocate identity for ${labelKey}`, { cause: err });
    });
  }

  /** Drops one reference; at zero this node's slave key is deleted. True if that happened. */
  async release(labels: Labels): Promise<boolean> {
    const labelKey = formatLabelKey(labels);
    return this.serial(labelKey, async () => {
      const held = this.held.get(labelKey);
      if (!held) return false;
      if (--held.refs > 0) return false;
      this.held.delete(labelKey);
      await this.store.delete(identityValueKey(labelKey, this.opts.node));
      return true;
    });
  }

  /** The labels (keys as `source:key`) of an ID, or undefined if no master key exists for it. */
  async lookup(id: number): Promise<Labels | undefined> {
    const e = await this.store.get(identityIdKey(id));
    return e && parseLabelKey(e.value);
  }

  /** Stops the allocator and revokes its lease (this node's slave keys go; master keys stay). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.held.clear();
    await this.lease.revoke();
  }

  // ---- internals ----

  private checkOpen(op: string): void {
    if (this.closed) throw new MembraneError(`${op}: allocator is closed`, { code: 'E_STORE_CLOSED' });
  }

  /** Runs fn after every earlier call for the same label set in this process. */
  private serial<T>(labelKey: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(labelKey) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.queues.set(labelKey, tail);
    void tail.then(() => { if (this.queues.get(labelKey) === tail) this.queues.delete(labelKey); });
    return next;
  }

  private async allocateLocked(labelKey: string, lease: Lease): Promise<number> {
    const unlock = await this.lock(labelKey, lease);
    try {
      const found = await this.findExisting(labelKey);
      const id = found.id ?? (await this.createMaster(labelKey, found.used));
      await this.store.put(identityValueKey(labelKey, this.opts.node), encodeIdentityId(id), { lease });
      return id;
    } finally {
      await unlock().catch(() => undefined); // the lock's lease bounds how long a leftover lock can block
    }
  }

  /** An ID the cluster already uses for this label set (via its slave keys, else by scanning masters). */
  private async findExisting(labelKey: string): Promise<{ id?: number; used: Set<number> }> {
    const slaves = await this.store.list(identityValuePrefix(labelKey));
    const candidates = [...new Set(slaves.entries.map((e) => decodeIdentityId(e.value)).filter((n): n is number => n !== undefined))].sort((a, b) => a - b);
    for (const id of candidates) {
      const master = await this.store.get(identityIdKey(id));
      if (master?.value === labelKey) return { id, used: new Set() };
      // A slave key whose master was garbage-collected: put the master back if the ID is still free.
      if (!master && id >= this.minId && id <= this.maxId && (await this.store.create(identityIdKey(id), labelKey))) return { id, used: new Set() };
    }
    const masters = await this.store.list(IDENTITY_ID_PREFIX);
    const used = new Set<number>();
    let mine: number | undefined;
    for (const e of masters.entries) {
      const id = parseIdentityIdKey(e.key);
      if (id === undefined) continue;
      used.add(id);
      if (e.value === labelKey && (mine === undefined || id < mine)) mine = id;
    }
    return { id: mine, used };
  }

  /** Claims the lowest free ID with create(); losing a race to another label set just moves on. */
  private async createMaster(labelKey: string, used: Set<number>): Promise<number> {
    for (let id = this.minId; id <= this.maxId; id++) {
      if (used.has(id)) continue;
      if (await this.store.create(identityIdKey(id), labelKey)) return id;
    }
    throw new MembraneError(`no free identity in ${this.minId}..${this.maxId}`, { code: 'E_IDENTITY_EXHAUSTED' });
  }

  /** Takes the cluster-wide lock of a label set; the returned function releases it. */
  private async lock(labelKey: string, lease: Lease): Promise<() => Promise<void>> {
    const key = identityLockKey(labelKey);
    const token = `${this.opts.node}:${randomUUID()}`;
    const deadline = Date.now() + this.lockTimeoutMs;
    let wait = 5;
    while (!(await this.store.create(key, token, { lease }))) {
      if (Date.now() > deadline) {
        const holder = await this.store.get(key).catch(() => undefined);
        throw new MembraneError(`lock ${key}: still held by ${holder?.value ?? 'someone'} after ${this.lockTimeoutMs} ms`, { code: 'E_IDENTITY_LOCK_TIMEOUT' });
      }
      await sleep(wait + Math.random() * wait);
      wait = Math.min(wait * 2, 100);
    }
    return async () => {
      // Only delete it if it is still ours (our lease may have lapsed and someone else taken it).
      if ((await this.store.get(key))?.value === token) await this.store.delete(key);
    };
  }

  /** Runs fn with the current lease; if the lease turned out to be gone, renews it and tries once more. */
  private async withLease<T>(fn: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = this.renewing ? await this.renewing : this.lease;
    try {
      return await fn(lease);
    } catch (err) {
      if (!isCode(err, 'E_STORE_LEASE_NOT_FOUND')) throw err;
      return fn(await this.renewLease(lease));
    }
  }

  private watchLease(lease: Lease): void {
    lease.onLost(() => {
      if (this.closed) return;
      this.renewLease(lease).catch((err) => this.opts.onError?.(err));
    });
  }

  /**
   * Replaces a lost lease and re-publishes this node's slave keys under the new one
   * (their masters still exist, so the IDs are unchanged).
   */
  private renewLease(lost: Lease): Promise<Lease> {
    if (this.lease !== lost) return Promise.resolve(this.lease);
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      const lease = await this.store.grantLease(this.lease.ttlSeconds);
      this.lease = lease;
      this.watchLease(lease);
      for (const [labelKey, h] of this.held) {
        await this.store.put(identityValueKey(labelKey, this.opts.node), encodeIdentityId(h.id), { lease });
      }
      return lease;
    })().finally(() => { this.renewing = undefined; });
    return this.renewing;
  }
}
