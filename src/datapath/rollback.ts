// An undo stack for multi-step kernel changes: each step that changes
// something registers how to undo it; on failure the steps are undone in
// reverse order, on success the stack is dropped. Undo failures are collected
// into the error, never thrown over the original cause.

export class Rollback {
  private steps: { what: string; undo: () => void }[] = [];
  readonly undoErrors: string[] = [];

  /** Registers how to undo a change that has just succeeded. */
  push(what: string, undo: () => void): void {
    this.steps.push({ what, undo });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Undoes every registered change, newest first. */
  run(): void {
    while (this.steps.length > 0) {
      const s = this.steps.pop()!;
      try {
        s.undo();
      } catch (e) {
        this.undoErrors.push(`undo ${s.what}: ${(e as Error).message}`);
      }
    }
  }

  /** Keeps every change: called once all steps succeeded. */
  commit(): void {
    this.steps = [];
  }

  /** Runs `fn`; if it throws, undoes what it registered and rethrows. */
  static guard<T>(fn: (rb: Rollback) => T): T {
    const rb = new Rollback();
    try {
      const v = fn(rb);
      rb.commit();
      return v;
    } catch (e) {
      rb.run();
      if (rb.undoErrors.length > 0 && e instanceof Error) {
        e.message += ` (rollback incomplete: ${rb.undoErrors.join('; ')})`;
      }
      throw e;
    }
  }
}
