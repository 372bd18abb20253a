// Cluster-wide security identities on the state store, following Cilium's
// kvstore allocator (pkg/allocator, pkg/kvstore/allocator):
//   id/<N> = labelKey               master key, no lease: the cluster-wide fact "N means these labels"
//   value/<labelKey>/<node> = N     slave key, under the node's lease: "this node uses N"
//   locks/<labelKey>                lock serialising allocation and GC of one label set (short lease)
//   freed/<N> = {labelKey, freedAt} Membrane's own: N was freed by the GC and is quarantined
//
// Why it is safe:
//  - different label sets never share an ID: a master key is only ever written
//    with create() (compare-and-swap on absence), so exactly one writer wins N;
//  - one label set gets one ID: allocation for a label set runs under its lock,
//    and under the lock an existing master (found through the slave keys or by
//    scanning id/) is always reused before a new one is created;
//  - an ID is never handed to other labels while anyone may still use it: the
//    GC deletes a master only after it has seen it unreferenced (no slave key
//    of its labels, no slave key or pod IP entry with its number) for a grace
//    period, re-checks under the label set's lock, and writes a freed/<N>
//    record before deleting id/<N>; new masters skip quarantined IDs (those
//    freed less than the quarantine ago) unless they go back to the same labels.
//
// Two leases: references (slave keys) live as long as the node's other store
// entries (the agent passes its leaseTTL, minutes by default, so a restarting
// or stopped agent keeps its identities); locks get a short lease of their own,
// so a holder that dies blocks other nodes' allocations for seconds, not minutes.
import { randomUUID } from 'node:crypto';
import { MembraneError, type ErrorCode } from '../shared/errors.ts';
import type { KVStore, Lease } from './store.ts';
import {
  IDENTITY_FREED_PREFIX, IDENTITY_ID_PREFIX, IDENTITY_VALUE_PREFIX, MAX_GLOBAL_IDENTITY, MIN_GLOBAL_IDENTITY, ipPrefix,
  decodeFreedIdentity, decodeIdentityId, decodeIpIdentity, encodeFreedIdentity, encodeIdentityId, formatLabelKey,
  identityFreedKey, identityIdKey, identityLockKey, identityValueKey, identityValuePrefix, parseIdentityFreedKey,
  parseIdentityIdKey, parseIdentityValueKey, parseLabelKey, type FreedIdentity, type Labels,
} from './keys.ts';

export interface IdentityGcOptions {
  /** How often gc runs when started with startGc() (default 5 min; each run is jittered by up to 10 %). */
  intervalMs?: number;
  /** A master must be seen unreferenced this long before it is freed (default 15 min). */
  graceMs?: number;
  /** A freed ID is not given to other labels for this long (default 1 h). */
  quarantineMs?: number;
}

export interface IdentityAllocatorOptions {
  /** This node's suffix in slave keys (Cilium uses the node IP). Must not contain '/'. */
  node: string;
  /** TTL of the lease behind this node's slave keys: how long its references outlive it (default 15 s). */
  leaseTtlSeconds?: number;
  /** TTL of the lease behind allocation locks (default 15 s). */
  lockLeaseTtlSeconds?: number;
  /** ID range (default 256..65535, the global range of cluster 0). */
  minId?: number;
  maxId?: number;
  /** How long to wait for another node's allocation lock (default: lock lease TTL + 5 s). */
  lockTimeoutMs?: number;
  gc?: IdentityGcOptions;
  /** Hears about background failures (renewing a lost lease, retried deletes, gc); the allocator keeps working. */
  onError?: (err: Error) => void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof MembraneError && err.code === code;
}

/** A lease that is replaced when lost; `renewed` puts back what lived under the old one. */
class RenewingLease {
  private renewing: Promise<Lease> | undefined;
  closed = false;

  constructor(
    private readonly store: KVStore,
    private lease: Lease,
    private readonly renewed: (lease: Lease) => Promise<void>,
    private readonly onError: (err: Error) => void,
  ) {
    this.watch(lease);
  }

  /** Runs fn with the current lease; if the lease turned out to be gone, renews it and tries once more. */
  async with<T>(fn: (lease: Lease) => Promise<T>): Promise<T> {
    const lease = this.renewing ? await this.renewing : this.lease;
    try {
      return await fn(lease);
    } catch (err) {
      if (!isCode(err, 'E_STORE_LEASE_NOT_FOUND')) throw err;
      return fn(await this.renew(lease));
    }
  }

  revoke(): Promise<void> {
    this.closed = true;
    return this.lease.revoke();
  }

  private watch(lease: Lease): void {
    lease.onLost(() => {
      if (this.closed) return;
      this.renew(lease).catch((err) => this.onError(err));
    });
  }

  private renew(lost: Lease): Promise<Lease> {
    if (this.lease !== lost) return Promise.resolve(this.lease);
    if (this.renewing) return this.renewing;
    this.renewing = (async () => {
      const lease = await this.store.grantLease(this.lease.ttlSeconds);
      this.lease = lease;
      this.watch(lease);
      await this.renewed(lease);
      return lease;
    })().finally(() => { this.renewing = undefined; });
    return this.renewing;
  }
}

/**
 * Allocates numeric identities for label sets. Create with `IdentityAllocator.create`;
 * the caller owns it and must `close()` it. Methods throw MembraneError: E_STORE_* from
 * the store, E_STORE_KEY for unusable labels, E_IDENTITY_EXHAUSTED, E_IDENTITY_LOCK_TIMEOUT.
 */
export class IdentityAllocator {
  private readonly held = new Map<string, { id: number; refs: number }>();
  private readonly queues = new Map<string, Promise<unknown>>();
  /** IDs a label set had before (the agent's state file): reused when the store has none for it. */
  private readonly preferred = new Map<string, number>();
  /** Label sets whose slave key must go (a release while the store was unreachable). */
  private readonly pendingReleases = new Set<string>();
  /** Master ID -> when this process first saw it unreferenced (Cilium's GC marks first, deletes on a later run). */
  private readonly unreferencedSince = new Map<number, number>();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 500;
  private gcTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly minId: number;
  private readonly maxId: number;
  private readonly lockTimeoutMs: number;
  private readonly gcOpts: Required<IdentityGcOptions>;
  private readonly refs: RenewingLease;
  private readonly locks: RenewingLease;

  private constructor(private readonly store: KVStore, refLease: Lease, lockLease: Lease, private readonly opts: IdentityAllocatorOptions) {
    this.minId = opts.minId ?? MIN_GLOBAL_IDENTITY;
    this.maxId = opts.maxId ?? MAX_GLOBAL_IDENTITY;
    this.lockTimeoutMs = opts.lockTimeoutMs ?? lockLease.ttlSeconds * 1000 + 5_000;
    this.gcOpts = { intervalMs: 5 * 60_000, graceMs: 15 * 60_000, quarantineMs: 60 * 60_000, ...opts.gc };
    const onError = (err: Error) => this.opts.onError?.(err);
    // A lost reference lease: the slave keys went with it; put them back under the new one (the IDs are unchanged).
    this.refs = new RenewingLease(store, refLease, async (lease) => {
      for (const [labelKey, h] of this.held) await this.store.put(identityValueKey(labelKey, this.opts.node), encodeIdentityId(h.id), { lease });
    }, onError);
    this.locks = new RenewingLease(store, lockLease, async () => undefined, onError);
  }

  static async create(store: KVStore, opts: IdentityAllocatorOptions): Promise<IdentityAllocator> {
    identityValueKey('x;', opts.node); // validates the node suffix up front
    const refLease = await store.grantLease(opts.leaseTtlSeconds ?? 15);
    let lockLease: Lease;
    try {
      lockLease = await store.grantLease(opts.lockLeaseTtlSeconds ?? 15);
    } catch (err) {
      await refLease.revoke().catch(() => undefined);
      throw err;
    }
    return new IdentityAllocator(store, refLease, lockLease, opts);
  }

  /**
   * The cluster-wide ID of a label set, allocating one if the cluster has none.
   * Each call takes a reference this node holds until a matching `release`.
   */
  async allocate(labels: Labels): Promise<number> {
    const labelKey = formatLabelKey(labels);
    return this.serial(labelKey, async () => {
      this.checkOpen('allocate identity');
      // A reference again: a slave-key delete still pending from an earlier release must not run.
      this.pendingReleases.delete(labelKey);
      const held = this.held.get(labelKey);
      if (held) {
        held.refs++;
        return held.id;
      }
      const id = await this.allocateLocked(labelKey);
      this.held.set(labelKey, { id, refs: 1 });
      return id;
    }).catch((err) => {
      throw new MembraneError(`allocate identity for ${labelKey}`, { cause: err });
    });
  }

  /**
   * Drops one reference; at zero this node's slave key is deleted (true). If the
   * store cannot be reached then, the delete is retried in the background until
   * done, so a release never fails for an outage and never leaves a reference behind.
   */
  async release(labels: Labels): Promise<boolean> {
    const labelKey = formatLabelKey(labels);
    return this.serial(labelKey, async () => {
      const held = this.held.get(labelKey);
      if (!held) return false;
      if (--held.refs > 0) return false;
      this.held.delete(labelKey);
      try {
        await this.store.delete(identityValueKey(labelKey, this.opts.node));
      } catch (err) {
        if (isCode(err, 'E_STORE_CLOSED')) throw err;
        this.pendingReleases.add(labelKey);
        this.scheduleRetry();
      }
      return true;
    });
  }

  /**
   * IDs label sets had before (from the agent's own records): when the cluster has
   * no ID for such a label set (its store lost its data), allocation re-creates the
   * old one if no other labels have it, instead of taking the lowest free ID.
   */
  prefer(entries: Iterable<{ labels: Labels; id: number }>): void {
    for (const e of entries) {
      try {
        this.preferred.set(formatLabelKey(e.labels), e.id);
      } catch { /* labels the allocator would refuse anyway */ }
    }
  }

  /** The labels (keys as `source:key`) of an ID, or undefined if no master key exists for it. */
  async lookup(id: number): Promise<Labels | undefined> {
    const e = await this.store.get(identityIdKey(id));
    return e && parseLabelKey(e.value);
  }

  /** Slave-key deletes still waiting for the store. */
  get pending(): number {
    return this.pendingReleases.size;
  }

  /**
   * Deletes this node's slave keys for label sets it holds no reference to (left
   * by an earlier run of this node, under a lease nobody renews now). Run after
   * the agent has restored its endpoints. Returns how many went.
   */
  async sweepReferences(): Promise<number> {
    const all = await this.store.list(IDENTITY_VALUE_PREFIX);
    let n = 0;
    for (const e of all.entries) {
      const k = parseIdentityValueKey(e.key);
      if (!k || k.node !== this.opts.node) continue;
      n += await this.serial(k.labelKey, async () => (!this.held.has(k.labelKey) && (await this.store.delete(e.key)) ? 1 : 0));
    }
    return n;
  }

  /** Runs gc every gc.intervalMs (jittered) until close(); failures go to onError. */
  startGc(): void {
    if (this.gcTimer || this.closed) return;
    const next = () => {
      const ms = this.gcOpts.intervalMs * (0.9 + Math.random() * 0.2);
      this.gcTimer = setTimeout(() => {
        this.gc().catch((err) => this.opts.onError?.(new MembraneError('identity gc', { cause: err }))).finally(() => { if (!this.closed) next(); });
      }, ms);
      this.gcTimer.unref();
    };
    next();
  }

  /**
   * One garbage-collection pass (any node may run it, concurrently with others):
   * frees masters unreferenced for the grace period, and ends quarantines that
   * are over. Returns the IDs freed and the number of quarantine records dropped.
   */
  async gc(now = Date.now()): Promise<{ freed: number[]; unquarantined: number }> {
    this.checkOpen('identity gc');
    const [masters, slaves, ips, freed] = await Promise.all([
      this.store.list(IDENTITY_ID_PREFIX), this.store.list(IDENTITY_VALUE_PREFIX), this.store.list(ipPrefix()), this.store.list(IDENTITY_FREED_PREFIX),
    ]);
    const usedIds = new Set<number>();
    const usedLabels = new Set<string>(this.held.keys());
    for (const e of slaves.entries) {
      const k = parseIdentityValueKey(e.key);
      if (k) usedLabels.add(k.labelKey);
      const id = decodeIdentityId(e.value);
      if (id !== undefined) usedIds.add(id);
    }
    // A pod IP published with an ID is a use of it too, whatever the slave keys say.
    for (const e of ips.entries) {
      try { usedIds.add(decodeIpIdentity(e.value, e.key).ID); } catch { /* not ours to judge */ }
    }
    const out: number[] = [];
    const seen = new Set<number>();
    for (const e of masters.entries) {
      const id = parseIdentityIdKey(e.key);
      if (id === undefined) continue;
      seen.add(id);
      if (usedIds.has(id) || usedLabels.has(e.value)) {
        this.unreferencedSince.delete(id);
        continue;
      }
      const since = this.unreferencedSince.get(id);
      if (since === undefined) this.unreferencedSince.set(id, now);
      else if (now - since >= this.gcOpts.graceMs && (await this.free(id, e.value, now))) out.push(id);
    }
    for (const id of [...this.unreferencedSince.keys()]) if (!seen.has(id)) this.unreferencedSince.delete(id);
    let unquarantined = 0;
    for (const e of freed.entries) {
      const rec = decodeFreedIdentity(e.value);
      if (rec && now - rec.freedAt >= this.gcOpts.quarantineMs && (await this.store.delete(e.key))) unquarantined++;
    }
    return { freed: out, unquarantined };
  }

  /**
   * Stops the allocator. With `revoke` (the default: the node leaves) its leases are
   * revoked, so this node's slave keys go now; without (a restart), they stay until
   * the lease expires, for the next agent to take over. Master keys stay either way.
   */
  async close(opts: { revoke?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearTimeout(this.gcTimer);
    this.held.clear();
    this.refs.closed = true;
    this.locks.closed = true;
    if (opts.revoke ?? true) {
      await Promise.all([this.refs.revoke(), this.locks.revoke().catch(() => undefined)]);
    }
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

  /** Retries pending slave-key deletes, backing off from 0.5 s to 10 s while the store stays away. */
  private scheduleRetry(): void {
    if (this.retryTimer || this.closed) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.retryReleases();
    }, this.retryDelay);
    this.retryTimer.unref();
  }

  private async retryReleases(): Promise<void> {
    let failed = false;
    for (const labelKey of [...this.pendingReleases]) {
      await this.serial(labelKey, async () => {
        if (!this.pendingReleases.has(labelKey) || this.held.has(labelKey)) return void this.pendingReleases.delete(labelKey);
        await this.store.delete(identityValueKey(labelKey, this.opts.node));
        this.pendingReleases.delete(labelKey);
      }).catch(() => { failed = true; });
    }
    this.retryDelay = failed ? Math.min(this.retryDelay * 2, 10_000) : 500;
    if (this.pendingReleases.size) this.scheduleRetry();
  }

  private async allocateLocked(labelKey: string): Promise<number> {
    const unlock = await this.lock(labelKey);
    try {
      const found = await this.findExisting(labelKey);
      const id = found.id ?? (await this.createMaster(labelKey, found.used));
      await this.refs.with((lease) => this.store.put(identityValueKey(labelKey, this.opts.node), encodeIdentityId(id), { lease }));
      return id;
    } finally {
      await unlock().catch(() => undefined); // the lock's lease bounds how long a leftover lock can block
    }
  }

  /** The quarantine records, by ID. */
  private async quarantined(): Promise<Map<number, FreedIdentity | undefined>> {
    const out = new Map<number, FreedIdentity | undefined>();
    for (const e of (await this.store.list(IDENTITY_FREED_PREFIX)).entries) {
      const id = parseIdentityFreedKey(e.key);
      if (id !== undefined) out.set(id, decodeFreedIdentity(e.value));
    }
    return out;
  }

  /** An ID the cluster already uses for this label set (via its slave keys, else by scanning masters). */
  private async findExisting(labelKey: string): Promise<{ id?: number; used: Set<number> }> {
    const slaves = await this.store.list(identityValuePrefix(labelKey));
    const candidates = [...new Set(slaves.entries.map((e) => decodeIdentityId(e.value)).filter((n): n is number => n !== undefined))].sort((a, b) => a - b);
    for (const id of candidates) {
      const master = await this.store.get(identityIdKey(id));
      if (master?.value === labelKey) return { id, used: new Set() };
      // A slave key whose master was garbage-collected: put the master back if the ID is free for these labels.
      if (!master && id >= this.minId && id <= this.maxId) {
        const q = (await this.quarantined()).get(id);
        if ((q === undefined || q.labelKey === labelKey) && (await this.store.create(identityIdKey(id), labelKey))) return { id, used: new Set() };
      }
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

  /**
   * A new master for the label set: the ID these labels had before (a quarantine
   * record of the same labels, or the preferred ID) if it is free, else the lowest
   * ID that has no master, no quarantine and no slave key naming it. Losing a
   * create() race to another label set just moves on.
   */
  private async createMaster(labelKey: string, used: Set<number>): Promise<number> {
    const quarantine = await this.quarantined();
    const named = new Set<number>();
    for (const e of (await this.store.list(IDENTITY_VALUE_PREFIX)).entries) {
      const id = decodeIdentityId(e.value);
      if (id !== undefined && parseIdentityValueKey(e.key)?.labelKey !== labelKey) named.add(id);
    }
    const free = (id: number, sameLabelsOk: boolean) =>
      id >= this.minId && id <= this.maxId && !used.has(id) && !named.has(id)
      && (!quarantine.has(id) || (sameLabelsOk && quarantine.get(id)?.labelKey === labelKey));
    const before = [...quarantine].filter(([, q]) => q?.labelKey === labelKey).map(([id]) => id);
    const preferred = this.preferred.get(labelKey);
    for (const id of [...(preferred !== undefined ? [preferred] : []), ...before]) {
      if (free(id, true) && (await this.store.create(identityIdKey(id), labelKey))) return id;
    }
    for (let id = this.minId; id <= this.maxId; id++) {
      if (!free(id, false)) continue;
      if (await this.store.create(identityIdKey(id), labelKey)) return id;
    }
    throw new MembraneError(`no free identity in ${this.minId}..${this.maxId}`, { code: 'E_IDENTITY_EXHAUSTED' });
  }

  /**
   * Frees one master, under its label set's lock (no allocation of those labels runs
   * meanwhile, here or on another node), if it is still unreferenced there.
   */
  private free(id: number, labelKey: string, now: number): Promise<boolean> {
    return this.serial(labelKey, async () => {
      if (this.held.has(labelKey)) return false;
      const unlock = await this.lock(labelKey);
      try {
        if ((await this.store.list(identityValuePrefix(labelKey))).entries.length > 0) return false;
        if ((await this.store.get(identityIdKey(id)))?.value !== labelKey) return false;
        // Quarantine first: at no moment is the ID neither in use nor quarantined.
        await this.store.put(identityFreedKey(id), encodeFreedIdentity({ labelKey, freedAt: now }));
        await this.store.delete(identityIdKey(id));
        this.unreferencedSince.delete(id);
        return true;
      } finally {
        await unlock().catch(() => undefined);
      }
    });
  }

  /** Takes the cluster-wide lock of a label set; the returned function releases it. */
  private async lock(labelKey: string): Promise<() => Promise<void>> {
    const key = identityLockKey(labelKey);
    const token = `${this.opts.node}:${randomUUID()}`;
    const deadline = Date.now() + this.lockTimeoutMs;
    let wait = 5;
    while (!(await this.locks.with((lease) => this.store.create(key, token, { lease })))) {
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
}
