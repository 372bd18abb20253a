// Serialises async operations: endpoint changes run one at a time, so IPAM,
// endpoint IDs and the state file never see interleaved updates.
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
