// The cluster state store: one key-value interface with revisions, prefix
// watches and leases, implemented by an embedded SQLite file (one machine, no
// server) and by etcd (clusters across machines). Agents use it the way
// Cilium uses its kvstore: list a prefix, then watch from the list's revision,
// and keep their own keys under a lease so they vanish when the agent dies.
import { MembraneError } from '../shared/errors.ts';
import type { StoreConfig } from '../shared/config.ts';

/** One key as stored. `modRevision` is the revision of the write that set the current value. */
export interface KVEntry {
  key: string;
  value: string;
  modRevision: number;
  /** Id of the lease the key is attached to, if any. */
  lease?: string;
}

/** A change under a watched prefix; `revision` is the revision of the write (or lease expiry) that made it. */
export type WatchEvent =
  | { type: 'put'; key: string; value: string; revision: number }
  | { type: 'delete'; key: string; revision: number };

/**
 * A lease: keys put with it are deleted when it is revoked or expires.
 * Keepalive runs automatically (every ttl/3) until `revoke()` or the store's `close()`;
 * closing the store does NOT revoke, so the keys stay until the TTL runs out
 * (an agent that restarts quickly re-puts them before anyone notices).
 */
export interface Lease {
  readonly id: string;
  readonly ttlSeconds: number;
  /** Deletes the lease and every key attached to it now. Resolves if the lease is already gone. */
  revoke(): Promise<void>;
  /** Called once if the lease expired anyway (keepalive could not reach the store in time); its keys are gone. */
  onLost(cb: (err: Error) => void): void;
}

/** A running watch; `close()` stops delivery (no callback runs after it returns). */
export interface Watch {
  close(): void;
}

export interface KVStore {
  readonly backend: 'sqlite' | 'etcd';
  get(key: string): Promise<KVEntry | undefined>;
  /** Sets the key (attaching it to `lease`, or detaching it from any lease) and returns the write's revision. */
  put(key: string, value: string, opts?: { lease?: Lease }): Promise<number>;
  /** Sets the key only if it does not exist (compare-and-swap); true if this call created it. */
  create(key: string, value: string, opts?: { lease?: Lease }): Promise<boolean>;
  /** True if the key existed. */
  delete(key: string): Promise<boolean>;
  /** Deletes every key starting with `prefix`; returns how many. */
  deletePrefix(prefix: string): Promise<number>;
  /** Every key starting with `prefix` (sorted by key) as one consistent snapshot, and the snapshot's revision. */
  list(prefix: string): Promise<{ entries: KVEntry[]; revision: number }>;
  /**
   * Calls `cb` for every change under `prefix` with revision > `fromRevision`, in revision
   * order, none missed, none twice — also across connection loss. Passing the revision
   * returned by `list()` gives a gap-free "list, then watch" pattern.
   * `onError` hears about trouble: transient (E_STORE_UNAVAILABLE, the watch keeps trying
   * and resumes where it stopped) or final (E_STORE_COMPACTED: the events after
   * `fromRevision` are gone, the watch has stopped; list again and watch from there).
   * An exception thrown by `cb` goes to `onError` (or is rethrown if there is none).
   */
  watch(prefix: string, fromRevision: number, cb: (ev: WatchEvent) => void, onError?: (e: Error) => void): Watch;
  /**
   * Resolves if the store could take a write now, else rejects with E_STORE_UNAVAILABLE;
   * bounded (a short lock wait on SQLite, one request on etcd) and writes nothing.
   */
  ping(): Promise<void>;
  /** A new lease with keepalive running. TTL: whole seconds, >= 1. */
  grantLease(ttlSeconds: number): Promise<Lease>;
  /** Stops watches and keepalives and releases the connection; leases are left to expire. */
  close(): Promise<void>;
}

// One StoreConfig type for the node config and the store: defined with the node config.
export type { EtcdStoreConfig, SqliteStoreConfig, StoreConfig } from '../shared/config.ts';

/**
 * Opens a store. The caller owns the result and must `close()` it.
 * Throws MembraneError E_STORE_UNAVAILABLE if the SQLite file cannot be opened or
 * etcd does not answer, E_CONFIG for a bad configuration.
 */
export async function openStore(cfg: StoreConfig): Promise<KVStore> {
  switch (cfg.backend) {
    case 'sqlite': {
      // Loaded on demand so each backend's native/grpc code is only paid for when used.
      const { SqliteStore } = await import('./sqlite-store.ts');
      return SqliteStore.open(cfg);
    }
    case 'etcd': {
      const { EtcdStore } = await import('./etcd-store.ts');
      return EtcdStore.open(cfg);
    }
    default:
      throw new MembraneError(`open store: unknown backend ${JSON.stringify((cfg as { backend: unknown }).backend)}`, { code: 'E_CONFIG' });
  }
}

/** Checks a TTL the same way on both backends (etcd accepts whole seconds >= 1 only). */
export function checkTtl(ttlSeconds: number): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) {
    throw new MembraneError(`grant lease: ttl must be a whole number of seconds >= 1 (got ${ttlSeconds})`, { code: 'E_CONFIG' });
  }
}

/** The error every operation on a closed store rejects with. */
export function closedError(op: string): MembraneError {
  return new MembraneError(`${op}: store is closed`, { code: 'E_STORE_CLOSED' });
}

/**
 * Runs a watch callback; an exception goes to onError, or is rethrown outside the
 * store's own loop (so a bug in a callback is not mistaken for a store failure).
 */
export function deliver<T>(cb: (v: T) => void, v: T, onError: ((e: Error) => void) | undefined): void {
  try {
    cb(v);
  } catch (err) {
    if (onError) onError(err instanceof Error ? err : new Error(String(err)));
    else setImmediate(() => { throw err; });
  }
}
