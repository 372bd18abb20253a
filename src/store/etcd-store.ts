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
//
// Real clusters: TLS (a CA, and a client certificate for etcd's
// --client-cert-auth), etcd's username/password, several endpoints. Opening
// reads and checks those files first (naming the key and the file), then
// asks every endpoint on its own, so a misconfiguration is reported per
// endpoint in words (wrong CA, client certificate refused, authentication
// failed, unreachable) instead of gRPC's "14 UNAVAILABLE: No connection
// established". An endpoint that is merely down is tolerated while another
// answers; a TLS or authentication failure never is (it will not fix itself,
// and calls that happen to land there would fail).
import {
  Etcd3, isRecoverableError, EtcdLeaseInvalidError, ClientClosedError, EtcdWatchStreamEnded,
  type IOptions, type IWatchResponse, type Lease as EtcdLease, type Watcher,
} from 'etcd3';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { EtcdTlsConfig } from '../shared/config.ts';
import type { ErrorCode } from '../shared/error-codes.ts';
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

/**
 * With several endpoints: a host whose connection just failed is skipped for
 * a second (etcd3 then tries the next one), so calls do not keep drawing a
 * dead endpoint. Never skips when every host is marked: then the call goes
 * through and fails (or succeeds) for real. One instance per client.
 */
class SkipDeadHosts {
  private readonly downUntil = new Map<string, number>();
  constructor(private readonly hostCount: number) {}
  policy(host: string): typeof passThrough {
    return {
      ...passThrough,
      execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T): Promise<T> => {
        const now = Date.now();
        const down = [...this.downUntil.values()].filter((t) => t > now).length;
        // Thrown before the call: etcd3 moves on to the next host (it was never "called through").
        if ((this.downUntil.get(host) ?? 0) > now && down < this.hostCount) throw new Error(`No connection established: ${host} skipped after a failed connection`);
        try {
          const r = await fn({ signal: new AbortController().signal });
          this.downUntil.delete(host);
          return r;
        } catch (err) {
          if (notSent(err)) this.downUntil.set(host, Date.now() + 1_000);
          throw err;
        }
      },
    };
  }
}

/** Watch stream reconnect delays: 100 ms doubling to 1 s (etcd3 resets it once a stream is up). */
class WatchBackoff {
  constructor(readonly duration: number) {}
  next(): WatchBackoff {
    return new WatchBackoff(Math.min(this.duration * 2, WATCH_RETRY_MAX_MS));
  }
}
const watchBackoff = { duration: WATCH_RETRY_MIN_MS, next: () => new WatchBackoff(WATCH_RETRY_MIN_MS) };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Tries of a call that was never sent, with several endpoints: ~1.5 s of waits in all. */
const UNSENT_RETRIES = 5;

/** True for errors that mean "etcd could not be reached or could not answer in time". */
function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  if (isRecoverableError(err) || err instanceof EtcdWatchStreamEnded) return true;
  return /etcdserver: (request timed out|no leader|leader changed|too many requests)|ECONNREFUSED|No connection established/i.test(err.message);
}

/** A call that failed before anything was sent (no connection): safe to retry even when it is not idempotent. */
function notSent(err: unknown): boolean {
  return err instanceof Error && /No connection established|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH/.test(err.message);
}

/** What the client presents: read from the configured files once, at open. */
interface Credentials {
  tls?: { rootCertificate: Buffer; certChain?: Buffer; privateKey?: Buffer };
  auth?: { username: string; password: string };
  /** For messages: which files were used. */
  files: EtcdTlsConfig;
}

/** A failure classified for people: its code, the cause in words and what to do. */
interface Diagnosis { code: ErrorCode; cause: string; hint?: string }

/**
 * Says why `err` happened in words an operator acts on. gRPC reports every
 * TLS and connection failure as "14 UNAVAILABLE: No connection established.
 * Last error: ..."; the OpenSSL and etcd texts inside tell them apart.
 */
export function diagnose(err: unknown, endpoint: string, creds: Pick<Credentials, 'files' | 'auth'>, atOpen = true): Diagnosis {
  const msg = err instanceof Error ? err.message : String(err);
  const f = creds.files;
  if (/unable to verify|self[- ]signed certificate|unable to get (local )?issuer|certificate verify failed|CERT_SIGNATURE_FAILURE|UNABLE_TO_VERIFY/i.test(msg)) {
    return {
      code: 'E_STORE_TLS',
      cause: `its server certificate is not signed by ${f.ca ? `the CA in store.tls.ca (${f.ca})` : 'a CA this machine trusts (no store.tls.ca given)'}`,
      hint: f.ca ? `store.tls.ca must be the CA etcd's --cert-file was signed with: openssl verify -CAfile ${f.ca} <etcd's server certificate>` : 'set store.tls.ca to the CA that signed etcd\'s server certificate',
    };
  }
  if (/altnames|does not match certificate|ERR_TLS_CERT_ALTNAME/i.test(msg)) {
    return { code: 'E_STORE_TLS', cause: 'its server certificate does not name this address', hint: `etcd's certificate needs ${endpoint.replace(/^https:\/\/|:\d+$/g, '')} in its subjectAltName (IP: or DNS:), or use an endpoint address it names` };
  }
  if (/certificate has expired|CERT_HAS_EXPIRED|certificate is not yet valid/i.test(msg)) {
    return { code: 'E_STORE_TLS', cause: 'its server certificate has expired or is not valid yet', hint: 'renew etcd\'s server certificate (and check both clocks)' };
  }
  if (/alert bad certificate|alert certificate required|alert unknown ca|alert certificate unknown|alert number 4[2-9]|alert number 116/i.test(msg)) {
    return f.cert
      ? { code: 'E_STORE_TLS', cause: `it refused the client certificate in store.tls.cert (${f.cert}): not signed by a CA it trusts, or not for client authentication`, hint: 'sign the node\'s certificate with the CA of etcd\'s --trusted-ca-file, with extendedKeyUsage clientAuth' }
      : { code: 'E_STORE_TLS', cause: 'it requires a client certificate (etcd runs with --client-cert-auth) and none is configured', hint: 'set store.tls.cert and store.tls.key to this node\'s client certificate and key' };
  }
  if (/wrong version number|packet length too long|disconnected before secure TLS connection|unknown protocol|http2.*preface/i.test(msg)) {
    return { code: 'E_STORE_TLS', cause: 'it does not speak TLS there (a plain-text etcd behind an https:// endpoint?)', hint: 'use http:// for a plain-text etcd, or run etcd with --cert-file/--key-file' };
  }
  // Only when first connecting: during an outage gRPC can say the same.
  if (atOpen && /^http:/.test(endpoint) && /Failed to connect\b/.test(msg) && !/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT/.test(msg)) {
    return { code: 'E_STORE_TLS', cause: 'the connection failed at once (an etcd serving TLS behind an http:// endpoint?)', hint: 'for a TLS etcd use https:// endpoints and store.tls' };
  }
  if (/authentication failed|invalid user ID or password|invalid auth token|user name not found/i.test(msg)) {
    return { code: 'E_STORE_AUTH', cause: `authentication failed for user ${JSON.stringify(creds.auth?.username ?? '')}: invalid user name or password`, hint: 'check store.username and the password (etcdctl user get NAME shows the user)' };
  }
  if (/user name is empty/i.test(msg)) {
    return { code: 'E_STORE_AUTH', cause: 'etcd has authentication enabled and no user is configured', hint: 'set store.username and store.passwordFile (or a client certificate whose CN is an etcd user)' };
  }
  if (/permission denied/i.test(msg)) {
    return { code: 'E_STORE_AUTH', cause: `user ${JSON.stringify(creds.auth?.username ?? '(from the client certificate\'s CN)')} may not read and write the cilium/ prefix`, hint: 'etcdctl role grant-permission ROLE --prefix=true readwrite cilium/, and grant the role to the user' };
  }
  if (isUnavailable(err) || /ETIMEDOUT|deadline exceeded|DEADLINE_EXCEEDED/i.test(msg)) {
    const why = /ECONNREFUSED/.test(msg) ? 'connection refused' : /EHOSTUNREACH|ENETUNREACH/.test(msg) ? 'no route to it' : /deadline|ETIMEDOUT/i.test(msg) ? 'no answer in time' : 'not reachable';
    return { code: 'E_STORE_UNAVAILABLE', cause: `unreachable (${why})`, hint: `check that etcd runs and listens there: etcdctl --endpoints=${endpoint} endpoint health` };
  }
  return { code: 'E_STORE', cause: msg.split('\n')[0]! };
}

/** Reads a file the store config names; a problem names the key and the path. */
function readConfigured(key: string, path: string, secret: boolean): Buffer {
  let st;
  try {
    st = statSync(path);
  } catch (e) {
    throw new MembraneError(`open etcd store: read ${key} ${path}`, { code: 'E_CONFIG', cause: (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message });
  }
  // A key or password anyone on the machine can read is a leaked secret, whatever else is right.
  if (secret && (st.mode & 0o004)) {
    throw new MembraneError(`open etcd store: read ${key} ${path}`, { code: 'E_CONFIG', cause: `it is readable by every user (mode ${(st.mode & 0o777).toString(8)})`, hint: `chmod 600 ${path}` });
  }
  try {
    return readFileSync(path);
  } catch (e) {
    throw new MembraneError(`open etcd store: read ${key} ${path}`, { code: 'E_CONFIG', cause: (e as NodeJS.ErrnoException).code ?? (e as Error).message });
  }
}

function parseCert(key: string, path: string, pem: Buffer): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (e) {
    throw new MembraneError(`open etcd store: ${key} ${path}`, { code: 'E_CONFIG', cause: `not a PEM certificate (${(e as Error).message})` });
  }
}

/** Reads and checks the TLS files and the password (the files a node config names), before any connection. */
export function loadCredentials(cfg: EtcdStoreConfig): Credentials {
  const files: EtcdTlsConfig = { ...cfg.tls };
  const out: Credentials = { files };
  if (cfg.tls) {
    const t = cfg.tls;
    // No CA: gRPC falls back to the system's trusted CAs (createSsl without root certificates).
    const tls = { rootCertificate: undefined } as unknown as NonNullable<Credentials['tls']>;
    if (t.ca) {
      tls.rootCertificate = readConfigured('store.tls.ca', t.ca, false);
      const ca = parseCert('store.tls.ca', t.ca, tls.rootCertificate);
      if (!ca.ca) throw new MembraneError(`open etcd store: store.tls.ca ${t.ca}`, { code: 'E_CONFIG', cause: `the certificate (${ca.subject.replace(/\n/g, ', ')}) is not a CA certificate`, hint: 'store.tls.ca is the CA that signed etcd\'s certificate, not a server or client certificate' });
    }
    if (t.cert && t.key) {
      tls.certChain = readConfigured('store.tls.cert', t.cert, false);
      tls.privateKey = readConfigured('store.tls.key', t.key, true);
      const cert = parseCert('store.tls.cert', t.cert, tls.certChain);
      let key;
      try {
        key = createPrivateKey(tls.privateKey);
      } catch (e) {
        throw new MembraneError(`open etcd store: store.tls.key ${t.key}`, { code: 'E_CONFIG', cause: `not a PEM private key (${(e as Error).message})` });
      }
      if (!cert.checkPrivateKey(key)) throw new MembraneError(`open etcd store: store.tls.key ${t.key}`, { code: 'E_CONFIG', cause: `it is not the key of the certificate in store.tls.cert (${t.cert})` });
      if (Date.parse(cert.validTo) < Date.now()) throw new MembraneError(`open etcd store: store.tls.cert ${t.cert}`, { code: 'E_CONFIG', cause: `it expired on ${cert.validTo}` });
    }
    out.tls = tls;
  }
  if (cfg.username) {
    const password = cfg.passwordFile ? readConfigured('store.passwordFile', cfg.passwordFile, true).toString('utf8').split('\n')[0]!.trim() : cfg.password ?? '';
    if (!password) throw new MembraneError(`open etcd store: store.passwordFile ${cfg.passwordFile}`, { code: 'E_CONFIG', cause: 'the file is empty (the password is its first line)' });
    out.auth = { username: cfg.username, password };
  }
  return out;
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

/** The etcd3 client for `hosts`, with our fault handling (see the file comment) and the node's credentials. */
function newClient(hosts: string[], creds: Credentials, timeout: number): Etcd3 {
  const skip = hosts.length > 1 ? new SkipDeadHosts(hosts.length) : undefined;
  return new Etcd3({
    hosts,
    dialTimeout: timeout,
    ...(creds.tls ? { credentials: creds.tls } : {}),
    ...(creds.auth ? { auth: creds.auth } : {}),
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
      host: (h) => (skip ? skip.policy(h) : passThrough) as unknown as ReturnType<NonNullable<FaultHandling['host']>>,
      global: passThrough as unknown as FaultHandling['global'],
      watchBackoff: watchBackoff as unknown as FaultHandling['watchBackoff'],
    },
  });
}

/**
 * Asks one endpoint, alone, what the agent will need: a connection (TLS both
 * ways), then a linearizable read under the prefix the agent uses (which needs
 * a leader, and passes etcd's authentication and permission checks; status
 * alone needs neither). Undefined when it answers; else why not.
 */
async function probe(endpoint: string, creds: Credentials, timeout: number): Promise<Diagnosis | undefined> {
  const client = newClient([endpoint], creds, timeout);
  try {
    await client.maintenance.status();
    await client.get(PING_KEY).exec();
    return undefined;
  } catch (err) {
    return diagnose(err, endpoint, creds);
  } finally {
    client.close();
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

  /** Tries of a call that was never sent: more with several endpoints, where the next draw may find a live one. */
  private readonly unsentRetries: number;

  private constructor(readonly client: Etcd3, endpoints: string[], private readonly creds: Credentials) {
    this.endpointNames = endpoints.map((e) => e.replace(/^https?:\/\//, '')).join(',');
    this.unsentRetries = endpoints.length > 1 ? UNSENT_RETRIES : 2;
  }

  /**
   * Reads the TLS and password files, asks every endpoint on its own, then
   * connects to all of them. Throws E_CONFIG for an empty endpoint list or a
   * bad file (naming the key and the path); E_STORE_TLS or E_STORE_AUTH if
   * any endpoint refuses this client; E_STORE_UNAVAILABLE if none answers.
   * Each failure names its endpoint.
   */
  static async open(cfg: EtcdStoreConfig): Promise<EtcdStore> {
    if (cfg.endpoints.length === 0) throw new MembraneError('open etcd store: no endpoints configured', { code: 'E_CONFIG' });
    const hosts = cfg.endpoints.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
    const timeout = cfg.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    const creds = loadCredentials(cfg);
    const failed = (await Promise.all(hosts.map(async (h) => ({ endpoint: h, diagnosis: await probe(h, creds, timeout) }))))
      .filter((r): r is { endpoint: string; diagnosis: Diagnosis } => r.diagnosis !== undefined);
    const refused = failed.filter((f) => f.diagnosis.code !== 'E_STORE_UNAVAILABLE');
    if (refused.length > 0 || failed.length === hosts.length) {
      const shown = refused.length ? refused : failed;
      const what = hosts.length === 1 ? '' : ` (${failed.length} of ${hosts.length} endpoints failed)`;
      throw new MembraneError(`open etcd store${what}`, {
        code: shown[0]!.diagnosis.code,
        cause: shown.map((f) => `${f.endpoint}: ${f.diagnosis.cause}`).join('; '),
        hint: shown[0]!.diagnosis.hint,
      });
    }
    return new EtcdStore(newClient(hosts, creds, timeout), hosts, creds);
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
   * which rides over the first call after an etcd restart landing on a dead channel;
   * any call is retried when it was never sent (no connection to the endpoint it drew:
   * with several endpoints the retry draws again).
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
        // A certificate or a password that stopped working (expired, revoked, rotated on one side only) will not come back by retrying.
        const d = diagnose(err, this.endpointNames, this.creds, false);
        if (d.code === 'E_STORE_TLS' || d.code === 'E_STORE_AUTH') {
          throw new MembraneError(`${op} ${subject}: etcd at ${this.endpointNames}: ${d.cause}`, { code: d.code, cause: err, hint: d.hint });
        }
        if (isUnavailable(err)) {
          // Never sent: safe for any call, and with several endpoints the next
          // attempt may draw a live one (a member just lost can be drawn several
          // times before its channel is marked down), so it gets more, shorter tries.
          const unsent = notSent(err);
          if ((idempotent || unsent) && attempt < (unsent ? this.unsentRetries : 2)) {
            await sleep(unsent && this.unsentRetries > 2 ? 100 * (attempt + 1) : 100 * 3 ** attempt);
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
