// Serialises async operations: endpoint changes run one at a time, so IPAM,
// endpoint IDs and the state file never see interleaved updates.
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private lastBusy = 0;
  private idleWaiters: (() => void)[] = [];

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    this.queued++;
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined).finally(() => {
      this.lastBusy = performance.now();
      if (--this.queued === 0) for (const w of this.idleWaiters.splice(0)) w();
    });
    return next;
  }

  /**
   * Resolves when no operation has run or waited for `quietMs` (a burst of
   * requests is over), or, at the latest, at the first idle moment after
   * `maxWaitMs` (so a steady stream cannot postpone the caller forever).
   */
  async whenQuiet(quietMs: number, maxWaitMs: number): Promise<void> {
    const deadline = performance.now() + maxWaitMs;
    for (;;) {
      if (this.queued > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
      const now = performance.now();
      const wait = this.lastBusy + quietMs - now;
      if (this.queued === 0 && (wait <= 0 || now >= deadline)) return;
      await new Promise((r) => setTimeout(r, Math.max(Math.min(wait, deadline - now), 1)));
    }
  }
}
