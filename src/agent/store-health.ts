// Whether the cluster store can take a write now, as a recent result rather
// than a round trip per question: CNI STATUS asks it (a runtime polls STATUS
// and must hear "not available" while every ADD would fail for want of the
// store, instead of "available"), and `membrane status` shows it.
//
// A background probe (KVStore.ping: takes the write lock or needs a leader,
// writes nothing, bounded) runs every `intervalMs`; one failed probe is
// confirmed by a second one shortly after, so a writer that held SQLite's
// lock for a moment does not flip the answer. Watch errors count as failures
// too (they arrive as soon as etcd's stream breaks).
import { MembraneError } from '../shared/errors.ts';
import type { KVStore } from '../store/store.ts';

export interface StoreHealthStatus {
  healthy: boolean;
  /** ISO time of the failure that made it unhealthy (while it is). */
  since?: string;
  lastError?: string;
  lastCheck?: string;
}

export class StoreHealth {
  private okAt = Date.now();
  private failAt = 0;
  private failingSince = 0;
  private lastError?: string;
  private lastCheck?: number;
  private timer?: NodeJS.Timeout;
  private probing = false;

  constructor(
    private readonly store: KVStore,
    private readonly log: (s: string) => void = () => {},
    private readonly intervalMs = 2_000,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.probe(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  get healthy(): boolean {
    return this.okAt >= this.failAt;
  }

  get status(): StoreHealthStatus {
    return {
      healthy: this.healthy,
      ...(this.healthy ? {} : { since: new Date(this.failingSince).toISOString() }),
      ...(this.lastError ? { lastError: this.lastError } : {}),
      ...(this.lastCheck ? { lastCheck: new Date(this.lastCheck).toISOString() } : {}),
    };
  }

  /** Throws E_STORE_UNAVAILABLE naming the store and its last error while it is unhealthy. */
  check(op: string): void {
    if (this.healthy) return;
    throw new MembraneError(op, {
      code: 'E_STORE_UNAVAILABLE',
      cause: `the ${this.store.backend} cluster store cannot be written since ${new Date(this.failingSince).toISOString()} (${this.lastError ?? 'no answer'}); ADD needs it for identities`,
    });
  }

  /** Probes now: once, and once more 250 ms later if that failed. */
  async probe(): Promise<void> {
    if (this.probing) return;
    this.probing = true;
    try {
      let err: unknown;
      for (let i = 0; i < 2; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 250));
        try {
          await this.store.ping();
          this.ok();
          return;
        } catch (e) {
          err = e;
          if ((e as { code?: string }).code === 'E_STORE_CLOSED') return;
        }
      }
      this.failed(err);
    } finally {
      this.lastCheck = Date.now();
      this.probing = false;
    }
  }

  /** A store operation failed for want of the store (watch errors, say). */
  failed(e: unknown): void {
    const code = (e as { code?: string }).code;
    if (code !== 'E_STORE_UNAVAILABLE' && code !== 'E_STORE') return;
    if (this.healthy) {
      this.failingSince = Date.now();
      this.log(`store unavailable: ${(e as Error).message}`);
    }
    this.failAt = Date.now();
    this.lastError = (e as Error).message;
  }

  private ok(): void {
    if (!this.healthy) this.log(`store available again (down since ${new Date(this.failingSince).toISOString()})`);
    this.okAt = Date.now();
  }
}
