// The etcd store backend (npm etcd3 against etcd 3.4). Revisions are etcd's
// own: put returns the header revision, entries carry their mod_revision,
// watch events carry the revision of the write (all keys changed by one
// deletePrefix or one lease expiry share it, as in etcd).
//
// Fault handling is ours, not etcd3's defaults: its per-host circuit breaker
// would refuse every call for 5 s after an outage and its watch backoff grows
// to 30 s, both far too slow for an agent that must notice a node joining.
// So calls go straight through (failing fast with E_STORE_UNAVAILABLE, with a
// deadline so none hangs), gRPC reconnects within about a second, and each
// watch remembers the last revision it delivered and resumes from the one
// after it when the stream comes back.
import {
  Etcd3, isRecoverableError, EtcdLeaseInvalidError, ClientClosedError, EtcdWatchStreamEnded,
  type IOptions, type IWatchResponse, type Lease as EtcdLease, type Watcher,
} from 'etcd3';
import { MembraneError } from '../shared/errors.ts';
import {
  checkTtl, closedError, deliver,
  type EtcdStoreConfig, type KVEntry, type KVStore, type Lease, type Watch, type WatchEvent,
} from './store.ts';

const DEFAULT_TIMEOUT_MS = 5_000;
const WATCH_RETRY_MIN_MS = 100;
const WATCH_RETRY_MAX_MS = 1_000;
const CANCEL_WAIT_MS = 1_000;
/** Read by ping(); never written. */
const PING_KEY = 'cilium/.membrane-ping';

type FaultHandling = NonNullable<IOptions['faultHandling']>;

/** A policy that just runs the call: no retries, no circuit breaker (see the file comment). */
const passThrough = {
  execute: <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> =>
    Promise.resolve().then(() => fn({ signal: new AbortController().signal })),
  onSuccess: () => ({ dispose() { /* nothing registered */ } }),
  onFailure: () => ({ dispose() { /* nothing registered */ } }),
};

/** Watch stream reconnect delays: 100 ms doubling to 1 s (etcd3 resets it once a stream is up). */
class WatchBackoff {
  constructor(readonly duration: number) {}
  next(): WatchBackoff {
    return new WatchBackoff(Math.min(this.duration * 2, WATCH_RETRY_MAX_MS));
  }
}
const watchBackoff = { duration: WATCH_RETRY_MIN_MS, next: () => new WatchBackoff(WATCH_RETRY_MIN_MS) };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** True for errors that mean "etcd could not be reached or could not answer in time". */
function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (isRecoverableError(err) || err instanceof EtcdWatchStreamEnded) return true;
  return /etcdserver: (request timed out|no leader|leader changed|too many requests)|ECONNREFUSED|No connection established/i.test(err.message);
}

class EtcdLeaseHandle implements Lease {
  private lostCbs: ((err: Error) => void)[] = [];
  private lostErr: Error | undefined;

  constructor(private readonly store: EtcdStore, readonly inner: EtcdLease, readonly id: string, readonly ttlSeconds: number) {
    inner.on('lost', (cause) => {
      if (this.store.isClosed) return;
      this.lostErr = new MembraneError(`keep lease ${id} alive: lease lost (etcd at ${store.endpointNames} unreachable for longer than its ${ttlSeconds}s ttl, or it expired)`, { code: 'E_STORE_LEASE_LOST', cause });
      store.forgetLease(this);
      for (const cb of this.lostCbs.splice(0)) cb(this.lostErr);
    });
  }

  async revoke(): Promise<void> {
    this.store.forgetLease(this);
    await this.store.call('revoke lease', this.id, () => this.inner.revoke(), true);
  }

  onLost(cb: (err: Error) => void): void {
    if (this.lostErr) queueMicrotask(() => cb(this.lostErr!));
    else this.lostCbs.push(cb);
  }
}

/**
 * One prefix watch. etcd3's watch manager re-opens the stream after a failure;
 * before it does, we point the request at lastRevision + 1, because etcd3 itself
 * would resume from the newest header revision it saw, which can be past events
 * it never delivered (a create response, or a catch-up batch cut short).
 */
class EtcdWatch implements Watch {
  private watcher: Watcher | undefined;
  private lastRevision: number;
  private closed = false;
  private reported = false;
  private cancelled: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: EtcdStore,
    private readonly prefix: string,
    fromRevision: number,
    private readonly cb: (ev: WatchEvent) => void,
    private readonly onError: ((e: Error) => void) | undefined,
  ) {
    this.lastRevision = fromRevision;
    this.start();
  }

  close(): void {
    void this.closeAndWait();
  }

  /** Stops delivery now and detaches from etcd, waiting at most CANCEL_WAIT_MS (etcd may be down). */
  closeAndWait(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.store.forgetWatch(this);
    }
    const w = this.watcher;
    this.watcher = undefined;
    if (w) this.cancelled = Promise.race([w.cancel().catch(() => undefined), sleep(CANCEL_WAIT_MS)]);
    return this.cancelled;
  }

  private start(): void {
    const w = this.store.client.watch().prefix(this.prefix).startRevision(String(this.lastRevision + 1)).watcher();
    this.watcher = w;
    w.on('data', (res: IWatchResponse) => this.onData(res));
    w.on('connected', () => { this.reported = false; });
    w.on('disconnected', (err: Error) => {
      // etcd3 reconnects after its backoff; make it ask for exactly what we have not delivered.
      w.request.start_revision = String(this.lastRevision + 1);
      if (this.closed || this.reported) return;
      this.reported = true;
      this.onError?.(new MembraneError(`watch ${this.prefix}: etcd at ${this.store.endpointNames} unavailable, resuming from revision ${this.lastRevision + 1} when it is back`, { code: 'E_STORE_UNAVAILABLE', cause: err }));
    });
    // 'error' means etcd cancelled the watch: the start revision was compacted (etcd 3.4
    // gives no reason text then) or the request was refused. Neither fixes itself.
    w.on('error', (err: Error) => {
      if (this.closed) return;
      this.closed = true;
      this.watcher = undefined;
      this.store.forgetWatch(this);
      const compacted = /compact/i.test(err.message) || /canceled:\s*$/.test(err.message);
      const e = compacted
        ? new MembraneError(`watch ${this.prefix} from revision ${this.lastRevision}: etcd compacted the events after it; list again and watch from the new revision`, { code: 'E_STORE_COMPACTED', cause: err })
        : new MembraneError(`watch ${this.prefix}: etcd cancelled the watch`, { code: 'E_STORE', cause: err });
      if (this.onError) this.onError(e);
      else setImmediate(() => { throw e; });
    });
  }

  private onData(res: IWatchResponse): void {
    if (this.closed) return;
    if (res.events.length === 0) {
      // A progress notification: every event up to the header revision has been sent.
      const rev = Number(res.header?.revision ?? 0);
      if (rev > this.lastRevision) this.lastRevision = rev;
      return;
    }
    let upTo = this.lastRevision;
    for (const ev of res.events) {
      const kv = ev.kv;
      if (!kv) continue;
      const rev = Number(kv.mod_revision);
      // After a resume etcd replays from lastRevision + 1, so this only guards against
      // a response that overlaps what an earlier stream already delivered.
      if (rev <= this.lastRevision) continue;
      if (rev > upTo) upTo = rev;
      const key = kv.key.toString();
      const out: WatchEvent = String(ev.type).toLowerCase() === 'delete'
        ? { type: 'delete', key, revision: rev }
        : { type: 'put', key, value: kv.value.toString(), revision: rev };
      deliver(this.cb, out, this.onError);
      if (this.closed) return;
    }
    this.lastRevision = upTo;
  }
}

/** See the file comment. Create with `EtcdStore.open` (or `openStore`); the caller owns it and must close it. */
export class EtcdStore implements KVStore {
  readonly backend = 'etcd' as const;
  private closed = false;
  private readonly watches = new Set<EtcdWatch>();
  private readonly leases = new Set<EtcdLeaseHandle>();
  /** "127.0.0.1:2379,10.0.0.2:2379", for messages. */
  readonly endpointNames: string;

  private constructor(readonly client: Etcd3, endpoints: string[]) {
    this.endpointNames = endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',');
  }

  /**
   * Connects and checks that etcd answers. Throws MembraneError E_CONFIG for an empty
   * endpoint list, E_STORE_UNAVAILABLE (naming the endpoints) if etcd does not answer.
   */
  static async open(cfg: EtcdStoreConfig): Promise<EtcdStore> {
    if (cfg.endpoints.length === 0) throw new MembraneError('open etcd store: no endpoints configured', { code: 'E_CONFIG' });
    const hosts = cfg.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
    const timeout = cfg.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const client = new Etcd3({
      hosts,
      dialTimeout: timeout,
      // Streams (watch, keepalive) live on; every unary call gets a deadline.
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      grpcOptions: {
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1_000,
        // Notice a silently dead peer (cable pulled) within ~15 s; etcd allows pings every 5 s.
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
      },
      faultHandling: {
        host: () => passThrough as unknown as ReturnType<NonNullable<FaultHandling['host']>>,
        global: passThrough as unknown as FaultHandling['global'],
        watchBackoff: watchBackoff as unknown as FaultHandling['watchBackoff'],
      },
    });
    const store = new EtcdStore(client, hosts);
    try {
      await store.call('connect to', 'etcd', () => client.maintenance.status(), true);
    } catch (err) {
      store.closed = true;
      client.close();
      throw err;
    }
    return store;
  }

  get isClosed(): boolean { return this.closed; }

  async get(key: string): Promise<KVEntry | undefined> {
    const res = await this.call('get', key, () => this.client.get(key).exec(), true);
    const kv = res.kvs[0];
    return kv && toEntry(kv);
  }

  async put(key: string, value: string, opts: { lease?: Lease } = {}): Promise<number> {
    const res = await this.call('put', key, () => {
      const b = this.client.put(key).value(value);
      if (opts.lease) b.lease(opts.lease.id);
      return b.exec();
    }, true);
    return Number(res.header.revision);
  }

  async create(key: string, value: string, opts: { lease?: Lease } = {}): Promise<boolean> {
    // Not retried: a lost reply to a create that did commit would turn true into false.
    const res = await this.call('create', key, () => {
      const put = this.client.put(key).value(value);
      if (opts.lease) put.lease(opts.lease.id);
      return this.client.if(key, 'Create', '==', 0).then(put).commit();
    });
    return res.succeeded;
  }

  async delete(key: string): Promise<boolean> {
    const res = await this.call('delete', key, () => this.client.delete().key(key).exec());
    return Number(res.deleted) > 0;
  }

  async deletePrefix(prefix: string): Promise<number> {
    const res = await this.call('delete prefix', prefix, () => this.client.delete().prefix(prefix).exec());
    return Number(res.deleted);
  }

  async list(prefix: string): Promise<{ entries: KVEntry[]; revision: number }> {
    // One range request: etcd answers it from one snapshot, whose revision is in the header.
    const res = await this.call('list', prefix, () => this.client.getAll().prefix(prefix).exec(), true);
    return { entries: res.kvs.map(toEntry), revision: Number(res.header.revision) };
  }

  watch(prefix: string, fromRevision: number, cb: (ev: WatchEvent) => void, onError?: (e: Error) => void): Watch {
    if (this.closed) throw closedError(`watch ${prefix}`);
    const w = new EtcdWatch(this, prefix, fromRevision, cb, onError);
    this.watches.add(w);
    return w;
  }

  async ping(): Promise<void> {
    // A linearizable read: it needs a leader, as a write does (a member without quorum still answers status).
    await this.call('ping', 'etcd', () => this.client.get(PING_KEY).exec());
  }

  async grantLease(ttlSeconds: number): Promise<Lease> {
    checkTtl(ttlSeconds);
    return this.call('grant lease', `ttl ${ttlSeconds}s`, async () => {
      const inner = this.client.lease(ttlSeconds, { autoKeepAlive: true });
      try {
        const id = await inner.grant();
        const lease = new EtcdLeaseHandle(this, inner, id, ttlSeconds);
        this.leases.add(lease);
        return lease;
      } catch (err) {
        inner.release();
        throw err;
      }
    }, true); // a grant whose reply was lost just leaves a lease that expires unused
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Watches must be detached before the client closes, or etcd3 keeps trying to reconnect them.
    const ws = [...this.watches];
    this.watches.clear();
    await Promise.all(ws.map((w) => w.closeAndWait()));
    for (const l of this.leases) l.inner.release(); // stop keepalive; the lease runs out on its own
    this.leases.clear();
    this.client.close();
  }

  forgetWatch(w: EtcdWatch): void { this.watches.delete(w); }
  forgetLease(l: EtcdLeaseHandle): void { this.leases.delete(l); }

  /**
   * Runs one etcd call, mapping failures to MembraneErrors that name the op, the key
   * and (for outages) the endpoints. `idempotent` calls are retried twice on outages,
   * which rides over the first call after an etcd restart landing on a dead channel.
   */
  async call<T>(op: string, subject: string, fn: () => Promise<T>, idempotent = false): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw closedError(`${op} ${subject}`);
      try {
        return await fn();
      } catch (err) {
        if (this.closed || err instanceof ClientClosedError) throw closedError(`${op} ${subject}`);
        if (err instanceof EtcdLeaseInvalidError) {
          throw new MembraneError(`${op} ${subject}: lease not found (expired or revoked)`, { code: 'E_STORE_LEASE_NOT_FOUND', cause: err });
        }
        if (isUnavailable(err)) {
          if (idempotent && attempt < 2) {
            await sleep(100 * 3 ** attempt);
            continue;
          }
          throw new MembraneError(`${op} ${subject}: etcd at ${this.endpointNames} unavailable`, {
            code: 'E_STORE_UNAVAILABLE', cause: err,
            hint: `check that etcd is running: etcdctl --endpoints=${this.endpointNames} endpoint health`,
          });
        }
        throw new MembraneError(`${op} ${subject}: etcd`, { code: 'E_STORE', cause: err });
      }
    }
  }
}

function toEntry(kv: { key: Buffer; value: Buffer; mod_revision: string; lease: string }): KVEntry {
  const e: KVEntry = { key: kv.key.toString(), value: kv.value.toString(), modRevision: Number(kv.mod_revision) };
  if (kv.lease && kv.lease !== '0') e.lease = String(kv.lease);
  return e;
}
