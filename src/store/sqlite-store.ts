// The embedded store backend: one SQLite file shared by every agent on the
// machine, with no server. Each process opens its own connection; WAL lets
// readers run beside the single writer, busy_timeout makes writers queue
// instead of failing, and every write is a BEGIN IMMEDIATE transaction (taking
// the write lock up front, so read-then-write sequences such as create()'s
// check never race another process).
//
// Revisions: one global counter in `meta`, bumped once per changed key; every
// change is also appended to `events` under its revision. Watchers in any
// process poll `events` for rows above the revision they have seen, so a
// watch is just "replay the log from N". Events older than the retention
// window are compacted; a watcher that somehow fell behind that far gets
// E_STORE_COMPACTED instead of a silent gap.
//
// Leases: rows with an expiry time. Keepalive pushes the expiry forward every
// ttl/3. Whoever notices an expired lease first (any process, on its poll or
// before any read or write) deletes its keys and logs the delete events, so
// the keys of a SIGKILLed agent vanish about one TTL after its last keepalive.
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { MembraneError } from '../shared/errors.ts';
import {
  checkTtl, closedError, deliver,
  type KVEntry, type KVStore, type Lease, type SqliteStoreConfig, type Watch, type WatchEvent,
} from './store.ts';

const SCHEMA_VERSION = 1;
const EV_PUT = 0;
const EV_DELETE = 1;
const DEFAULT_POLL_MS = 50;
const DEFAULT_RETENTION_MS = 10 * 60_000;
const COMPACT_EVERY_MS = 5_000;
const BUSY_TIMEOUT_MS = 5_000;
// ping() waits this long for the write lock: writers hold it for milliseconds, an outage for much longer.
const PING_BUSY_MS = 250;

/** Blocks the thread for `ms` (only at open, before the store serves anything). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
// Upper bound on events read per poll, so a watcher far behind catches up in slices.
const EVENT_BATCH = 5_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ${SCHEMA_VERSION}), ('revision', 0), ('compacted', 0);
CREATE TABLE IF NOT EXISTS kv (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  create_rev INTEGER NOT NULL,
  mod_rev INTEGER NOT NULL,
  lease INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_by_lease ON kv (lease) WHERE lease IS NOT NULL;
CREATE TABLE IF NOT EXISTS events (
  rev INTEGER PRIMARY KEY,
  type INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT,
  at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (at);
-- AUTOINCREMENT: a lease id is never reused, so a stale id cannot adopt someone else's lease.
CREATE TABLE IF NOT EXISTS leases (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ttl_ms INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at);
`;

interface KvRow { key: string; value: string; mod_rev: number; lease: number | null }
interface EventRow { rev: number; type: number; key: string; value: string | null }

/** Inside a write transaction: the time it started and a revision counter. */
interface WriteCtx { now: number; next(): number; log(type: number, key: string, value: string | null, rev: number): void }

interface SqliteWatcher {
  prefix: string;
  rev: number; // highest revision already handled
  cb: (ev: WatchEvent) => void;
  onError?: (e: Error) => void;
  closed: boolean;
  failing: boolean; // an E_STORE_UNAVAILABLE was reported and not yet cleared
}

/**
 * The smallest string greater than every string starting with `prefix`
 * (undefined: no upper bound). SQLite compares TEXT bytewise and UTF-8 keeps
 * code point order, so bumping the last code point is exact.
 */
function prefixEnd(prefix: string): string | undefined {
  if (prefix === '') return undefined;
  const cps = Array.from(prefix);
  let last = cps.pop()!.codePointAt(0)! + 1;
  if (last > 0x10ffff) return undefined;
  if (last >= 0xd800 && last <= 0xdfff) last = 0xe000;
  return cps.join('') + String.fromCodePoint(last);
}

function toEntry(r: KvRow): KVEntry {
  const e: KVEntry = { key: r.key, value: r.value, modRevision: r.mod_rev };
  if (r.lease !== null) e.lease = String(r.lease);
  return e;
}

function sqliteCode(err: unknown): string | undefined {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' ? (err as unknown as { code: string }).code : undefined;
}

class SqliteLease implements Lease {
  readonly id: string;
  readonly ttlSeconds: number;
  private timer: NodeJS.Timeout | undefined;
  private lostCbs: ((err: Error) => void)[] = [];
  private lostErr: Error | undefined;
  private lastOk = Date.now();

  constructor(private readonly store: SqliteStore, readonly rowId: number, ttlSeconds: number) {
    this.id = String(rowId);
    this.ttlSeconds = ttlSeconds;
    this.timer = setInterval(() => this.keepalive(), (ttlSeconds * 1000) / 3);
  }

  get active(): boolean { return this.timer !== undefined; }

  async revoke(): Promise<void> {
    this.stop();
    await this.store.revokeLease(this);
  }

  onLost(cb: (err: Error) => void): void {
    if (this.lostErr) queueMicrotask(() => cb(this.lostErr!));
    else this.lostCbs.push(cb);
  }

  /** Stops keepalive (revoke, store close, or loss). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.store.forgetLease(this);
  }

  private keepalive(): void {
    if (!this.active) return;
    let refreshed: boolean;
    try {
      refreshed = this.store.refreshLease(this.rowId);
    } catch {
      // Busy or I/O trouble: retry on the next tick unless the lease has certainly run out.
      if (Date.now() - this.lastOk < this.ttlSeconds * 1000) return;
      refreshed = false;
    }
    if (refreshed) {
      this.lastOk = Date.now();
      return;
    }
    this.lost(new MembraneError(`keep lease ${this.id} alive: lease expired (keepalive late by more than its ${this.ttlSeconds}s ttl); its keys were deleted`, { code: 'E_STORE_LEASE_LOST' }));
  }

  private lost(err: Error): void {
    this.stop();
    this.lostErr = err;
    this.store.sweepSoon();
    for (const cb of this.lostCbs.splice(0)) cb(err);
  }
}

/** See the file comment. Create with `SqliteStore.open` (or `openStore`); the caller owns it and must close it. */
export class SqliteStore implements KVStore {
  readonly backend = 'sqlite' as const;
  private closed = false;
  private readonly watchers = new Set<SqliteWatcher>();
  private readonly leases = new Set<SqliteLease>();
  private readonly timer: NodeJS.Timeout;
  private kicked = false;
  private dispatching = false;
  private lastCompact = 0;
  private readonly retentionMs: number;
  private readonly st: ReturnType<typeof prepare>;

  private constructor(private readonly db: Database.Database, readonly path: string, cfg: SqliteStoreConfig) {
    this.st = prepare(db);
    this.retentionMs = cfg.eventRetentionMs ?? DEFAULT_RETENTION_MS;
    this.timer = setInterval(() => this.poll(), cfg.pollIntervalMs ?? DEFAULT_POLL_MS);
    this.timer.unref();
  }

  /**
   * Opens (creating if needed) the store file. Throws MembraneError E_STORE_UNAVAILABLE
   * naming the path if it cannot be opened or is not a Membrane store.
   */
  static open(cfg: SqliteStoreConfig): SqliteStore {
    const deadline = Date.now() + BUSY_TIMEOUT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        return SqliteStore.tryOpen(cfg);
      } catch (err) {
        // Agents of a lab start together and open the file at the same moment. Switching a new
        // file to WAL can answer SQLITE_BUSY without consulting busy_timeout (the busy handler is
        // not called where waiting could deadlock), so a lost race is retried, not reported.
        const busy = (err as { cause?: { code?: string } }).cause?.code?.startsWith('SQLITE_BUSY');
        if (!busy || Date.now() > deadline) throw err;
        sleepSync(Math.min(5 * 2 ** attempt, 100));
      }
    }
  }

  private static tryOpen(cfg: SqliteStoreConfig): SqliteStore {
    let db: Database.Database | undefined;
    try {
      // The store holds the cluster's state: root only. SQLite creates files 0644 (less the umask) and
      // its -wal and -shm files with the database file's mode, so the file is made 0600 first.
      mkdirSync(dirname(cfg.path), { recursive: true, mode: 0o700 });
      if (!existsSync(cfg.path)) closeSync(openSync(cfg.path, 'a', 0o600));
      for (const f of [cfg.path, `${cfg.path}-wal`, `${cfg.path}-shm`]) {
        if (existsSync(f) && (statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600); // made by an older build
      }
      db = new Database(cfg.path);
      // busy_timeout first: switching to WAL and creating the schema may wait for another process.
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (String(mode).toLowerCase() !== 'wal') throw new Error(`cannot enable WAL (journal_mode is ${mode})`);
      // NORMAL is durable against process crashes in WAL mode; only a power cut may lose the last commits.
      db.pragma('synchronous = NORMAL');
      const d = db;
      d.transaction(() => d.exec(SCHEMA)).immediate();
      const version = d.prepare(`SELECT value FROM meta WHERE name = 'schema'`).pluck().get();
      if (version !== SCHEMA_VERSION) throw new Error(`unsupported schema version ${String(version)} (this build uses ${SCHEMA_VERSION})`);
      return new SqliteStore(d, cfg.path, cfg);
    } catch (err) {
      db?.close();
      throw new MembraneError(`open sqlite store ${cfg.path}`, { code: 'E_STORE_UNAVAILABLE', cause: err });
    }
  }

  async get(key: string): Promise<KVEntry | undefined> {
    return this.op('get', key, () => {
      this.maybeSweep();
      const r = this.st.get.get(key) as KvRow | undefined;
      return r && toEntry(r);
    });
  }

  async put(key: string, value: string, opts: { lease?: Lease } = {}): Promise<number> {
    return this.op('put', key, () => this.write((tx) => {
      const lease = this.leaseRow(opts.lease);
      const rev = tx.next();
      this.st.upsert.run(key, value, rev, rev, lease);
      tx.log(EV_PUT, key, value, rev);
      return rev;
    }));
  }

  async create(key: string, value: string, opts: { lease?: Lease } = {}): Promise<boolean> {
    return this.op('create', key, () => this.write((tx) => {
      const lease = this.leaseRow(opts.lease);
      if (this.st.exists.get(key) !== undefined) return false;
      const rev = tx.next();
      this.st.upsert.run(key, value, rev, rev, lease);
      tx.log(EV_PUT, key, value, rev);
      return true;
    }));
  }

  async delete(key: string): Promise<boolean> {
    return this.op('delete', key, () => this.write((tx) => {
      if (this.st.exists.get(key) === undefined) return false;
      const rev = tx.next();
      this.st.del.run(key);
      tx.log(EV_DELETE, key, null, rev);
      return true;
    }));
  }

  async deletePrefix(prefix: string): Promise<number> {
    return this.op('delete prefix', prefix, () => this.write((tx) => {
      const keys = this.rangeKeys(prefix);
      for (const key of keys) {
        const rev = tx.next();
        this.st.del.run(key);
        tx.log(EV_DELETE, key, null, rev);
      }
      return keys.length;
    }));
  }

  async list(prefix: string): Promise<{ entries: KVEntry[]; revision: number }> {
    return this.op('list', prefix, () => {
      this.maybeSweep();
      // One read transaction: the rows and the revision come from the same snapshot.
      return this.db.transaction(() => {
        const end = prefixEnd(prefix);
        const rows = (end === undefined ? this.st.listFrom.all(prefix) : this.st.listRange.all(prefix, end)) as KvRow[];
        const entries = rows.filter((r) => r.key.startsWith(prefix)).map(toEntry);
        return { entries, revision: this.revision() };
      }).deferred();
    });
  }

  watch(prefix: string, fromRevision: number, cb: (ev: WatchEvent) => void, onError?: (e: Error) => void): Watch {
    if (this.closed) throw closedError(`watch ${prefix}`);
    const w: SqliteWatcher = { prefix, rev: fromRevision, cb, onError, closed: false, failing: false };
    this.watchers.add(w);
    this.timer.ref(); // a live watch keeps the process alive, as an etcd watch stream does
    this.kick();
    return {
      close: () => {
        w.closed = true;
        this.watchers.delete(w);
        if (this.watchers.size === 0) this.timer.unref();
      },
    };
  }

  async ping(): Promise<void> {
    return this.op('ping', 'write lock', () => {
      // Takes the write lock and lets it go, writing nothing; waits PING_BUSY_MS at most, not busy_timeout.
      this.db.pragma(`busy_timeout = ${PING_BUSY_MS}`);
      try {
        this.db.exec('BEGIN IMMEDIATE');
        this.db.exec('ROLLBACK');
      } finally {
        this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      }
    });
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    return this.op('grant lease', `ttl ${ttlSeconds}s`, () => {
      const id = this.write((tx) => Number(this.st.leaseInsert.run(ttlSeconds * 1000, tx.now + ttlSeconds * 1000).lastInsertRowid));
      const lease = new SqliteLease(this, id, ttlSeconds);
      this.leases.add(lease);
      return lease;
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const w of this.watchers) w.closed = true;
    this.watchers.clear();
    for (const l of [...this.leases]) l.stop();
    this.db.close();
  }

  // ---- used by SqliteLease ----

  /** Deletes a lease and its keys now; a lease that is already gone is fine. */
  async revokeLease(lease: SqliteLease): Promise<void> {
    return this.op('revoke lease', lease.id, () => this.write((tx) => this.dropLease(tx, lease.rowId)));
  }

  /** Pushes the expiry forward; false if the lease expired or is gone (too late to save it). */
  refreshLease(rowId: number): boolean {
    if (this.closed) return true;
    const now = Date.now();
    return this.st.leaseRefresh.run(now, rowId, now).changes > 0;
  }

  forgetLease(lease: SqliteLease): void {
    this.leases.delete(lease);
  }

  sweepSoon(): void {
    this.kick();
  }

  // ---- internals ----

  /** Runs a synchronous store operation, mapping SQLite errors to MembraneErrors naming the op and the file. */
  private op<T>(op: string, subject: string, fn: () => T): T {
    if (this.closed) throw closedError(`${op} ${subject}`);
    try {
      return fn();
    } catch (err) {
      if (err instanceof MembraneError) throw err.code === 'E_STORE_CLOSED' ? err : new MembraneError(`${op} ${subject}`, { cause: err });
      const code = sqliteCode(err);
      const unavailable = code !== undefined && /^SQLITE_(BUSY|LOCKED|IOERR|CANTOPEN|FULL|READONLY|PROTOCOL|NOTADB|CORRUPT)/.test(code);
      throw new MembraneError(`${op} ${subject}: sqlite store ${this.path}`, { code: unavailable ? 'E_STORE_UNAVAILABLE' : 'E_STORE', cause: err });
    }
  }

  /**
   * One write transaction (BEGIN IMMEDIATE): sweeps expired leases first, so a
   * write never sees or keeps a key whose lease has run out, then runs `fn`.
   */
  private write<T>(fn: (tx: WriteCtx) => T): T {
    let changed = false;
    const out = this.db.transaction(() => {
      const start = this.revision();
      let rev = start;
      const tx: WriteCtx = {
        now: Date.now(),
        next: () => ++rev,
        log: (type, key, value, r) => { this.st.eventInsert.run(r, type, key, value, tx.now); },
      };
      this.sweepExpired(tx);
      const result = fn(tx);
      if (rev !== start) {
        this.st.setMeta.run(rev, 'revision');
        changed = true;
      }
      return result;
    }).immediate();
    if (changed) this.kick(); // local watchers need not wait for the next poll
    return out;
  }

  private sweepExpired(tx: WriteCtx): void {
    const expired = this.st.leasesExpired.all(tx.now) as number[];
    for (const id of expired) this.dropLease(tx, id);
  }

  private dropLease(tx: WriteCtx, id: number): void {
    const keys = this.st.keysOfLease.all(id) as string[];
    for (const key of keys) {
      const rev = tx.next();
      this.st.del.run(key);
      tx.log(EV_DELETE, key, null, rev);
    }
    this.st.leaseDelete.run(id);
  }

  /** Sweeps only if some lease has expired (a cheap indexed check), so reads stay read-only normally. */
  private maybeSweep(): void {
    if (this.st.anyExpired.get(Date.now()) !== undefined) this.write(() => undefined);
  }

  private leaseRow(lease: Lease | undefined): number | null {
    if (!lease) return null;
    const id = Number(lease.id);
    if (!Number.isSafeInteger(id) || this.st.leaseExists.get(id) === undefined) {
      throw new MembraneError(`lease ${lease.id} not found (expired or revoked)`, { code: 'E_STORE_LEASE_NOT_FOUND' });
    }
    return id;
  }

  private revision(): number {
    return this.st.getMeta.get('revision') as number;
  }

  private rangeKeys(prefix: string): string[] {
    const end = prefixEnd(prefix);
    const keys = (end === undefined ? this.st.keysFrom.all(prefix) : this.st.keysRange.all(prefix, end)) as string[];
    return keys.filter((k) => k.startsWith(prefix));
  }

  /** Schedules a poll on the next turn of the event loop (never synchronously inside a caller). */
  private kick(): void {
    if (this.kicked || this.closed) return;
    this.kicked = true;
    setImmediate(() => {
      this.kicked = false;
      this.poll();
    });
  }

  private poll(): void {
    if (this.closed || this.dispatching) return;
    this.dispatching = true;
    try {
      const now = Date.now();
      try {
        this.maybeSweep();
        if (now - this.lastCompact >= COMPACT_EVERY_MS) {
          this.lastCompact = now;
          this.compact(now);
        }
      } catch (err) {
        this.reportTransient(err);
      }
      if (this.watchers.size > 0 && !this.closed) this.dispatch();
    } finally {
      this.dispatching = false;
    }
  }

  private dispatch(): void {
    const ws = [...this.watchers];
    const from = Math.min(...ws.map((w) => w.rev));
    let snap: { rows: EventRow[]; revision: number; compacted: number };
    try {
      snap = this.db.transaction(() => ({
        rows: this.st.eventsAfter.all(from, EVENT_BATCH) as EventRow[],
        revision: this.revision(),
        compacted: this.st.getMeta.get('compacted') as number,
      })).deferred();
    } catch (err) {
      this.reportTransient(err);
      return;
    }
    const full = snap.rows.length === EVENT_BATCH;
    const upTo = full ? snap.rows[snap.rows.length - 1]!.rev : snap.revision;
    for (const w of ws) {
      if (w.closed || this.closed) continue;
      w.failing = false;
      if (w.rev < snap.compacted) {
        this.watchers.delete(w);
        w.closed = true;
        const err = new MembraneError(`watch ${w.prefix} from revision ${w.rev}: events up to revision ${snap.compacted} were compacted; list again and watch from the new revision`, { code: 'E_STORE_COMPACTED' });
        if (w.onError) w.onError(err);
        continue;
      }
      for (const r of snap.rows) {
        if (w.closed || this.closed) break;
        if (r.rev <= w.rev) continue;
        w.rev = r.rev;
        if (!r.key.startsWith(w.prefix)) continue;
        const ev: WatchEvent = r.type === EV_PUT
          ? { type: 'put', key: r.key, value: r.value ?? '', revision: r.rev }
          : { type: 'delete', key: r.key, revision: r.rev };
        deliver(w.cb, ev, w.onError);
      }
      if (!w.closed && upTo > w.rev) w.rev = upTo;
    }
    if (this.watchers.size === 0) this.timer.unref();
    if (full) this.kick();
  }

  private reportTransient(err: unknown): void {
    const e = new MembraneError(`watch sqlite store ${this.path}`, { code: 'E_STORE_UNAVAILABLE', cause: err });
    for (const w of this.watchers) {
      if (w.failing || !w.onError) continue;
      w.failing = true;
      w.onError(e);
    }
  }

  /**
   * Drops events older than the retention window, but never one a watcher of this
   * process still needs; watchers in other processes are protected by the window itself.
   */
  private compact(now: number): void {
    let keepFrom = Infinity;
    for (const w of this.watchers) keepFrom = Math.min(keepFrom, w.rev);
    this.db.transaction(() => {
      let upTo = this.st.lastEventBefore.get(now - this.retentionMs) as number | null | undefined;
      if (upTo === null || upTo === undefined) return;
      upTo = Math.min(upTo, keepFrom);
      const done = this.st.getMeta.get('compacted') as number;
      if (upTo <= done) return;
      this.st.eventsDeleteUpTo.run(upTo);
      this.st.setMeta.run(upTo, 'compacted');
    }).immediate();
  }
}

function prepare(db: Database.Database) {
  return {
    getMeta: db.prepare('SELECT value FROM meta WHERE name = ?').pluck(),
    setMeta: db.prepare('UPDATE meta SET value = ? WHERE name = ?'),
    get: db.prepare('SELECT key, value, mod_rev, lease FROM kv WHERE key = ?'),
    exists: db.prepare('SELECT 1 FROM kv WHERE key = ?'),
    upsert: db.prepare(`INSERT INTO kv (key, value, create_rev, mod_rev, lease) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_rev = excluded.mod_rev, lease = excluded.lease`),
    del: db.prepare('DELETE FROM kv WHERE key = ?'),
    listRange: db.prepare('SELECT key, value, mod_rev, lease FROM kv WHERE key >= ? AND key < ? ORDER BY key'),
    listFrom: db.prepare('SELECT key, value, mod_rev, lease FROM kv WHERE key >= ? ORDER BY key'),
    keysRange: db.prepare('SELECT key FROM kv WHERE key >= ? AND key < ? ORDER BY key').pluck(),
    keysFrom: db.prepare('SELECT key FROM kv WHERE key >= ? ORDER BY key').pluck(),
    eventInsert: db.prepare('INSERT INTO events (rev, type, key, value, at) VALUES (?, ?, ?, ?, ?)'),
    eventsAfter: db.prepare('SELECT rev, type, key, value FROM events WHERE rev > ? ORDER BY rev LIMIT ?'),
    lastEventBefore: db.prepare('SELECT max(rev) FROM events WHERE at < ?').pluck(),
    eventsDeleteUpTo: db.prepare('DELETE FROM events WHERE rev <= ?'),
    leaseInsert: db.prepare('INSERT INTO leases (ttl_ms, expires_at) VALUES (?, ?)'),
    leaseExists: db.prepare('SELECT 1 FROM leases WHERE id = ?'),
    leaseRefresh: db.prepare('UPDATE leases SET expires_at = ? + ttl_ms WHERE id = ? AND expires_at > ?'),
    leaseDelete: db.prepare('DELETE FROM leases WHERE id = ?'),
    leasesExpired: db.prepare('SELECT id FROM leases WHERE expires_at <= ? ORDER BY id').pluck(),
    anyExpired: db.prepare('SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1'),
    keysOfLease: db.prepare('SELECT key FROM kv WHERE lease = ? ORDER BY key').pluck(),
  };
}
