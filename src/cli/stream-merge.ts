// Following several agents' streams at once (`monitor`, `observe --follow`):
// lines of different nodes are printed in the order of their CLOCK_MONOTONIC
// timestamps (one clock for every node of a machine). Each agent sends marks
// ("everything of mine before T is sent"); a line is printed once every
// node's mark has passed it, so none can still come before it, and at the
// latest after MAX_WAIT_MS (an agent that sends no marks).
import type { OpenStream } from '../api/stream.ts';

/** Longest a line waits for the other nodes' marks before it is printed anyway. */
const MAX_WAIT_MS = 2000;
/** How often waiting lines are looked at. */
const FLUSH_EVERY_MS = 25;

export class TimeMerge<T> {
  private readonly marks = new Map<string, bigint>();
  private readonly pending: { at: number; ns: bigint; v: T }[] = [];

  constructor(private readonly nodes: readonly string[], private readonly emit: (v: T) => void) {}

  /** Node `node` has sent everything before `ns`. */
  mark(node: string, ns: bigint): void {
    if (ns > (this.marks.get(node) ?? -1n)) this.marks.set(node, ns);
  }

  /** A line stamped `ns`, printed once every node's mark has passed it. */
  push(ns: bigint, v: T): void {
    this.pending.push({ at: Date.now(), ns, v });
  }

  /** Prints what no node can still come before; `all`: everything (the streams ended). */
  flush(all = false): void {
    if (!this.pending.length) return;
    let watermark: bigint | undefined;
    for (const n of this.nodes) {
      const m = this.marks.get(n) ?? -1n;
      if (watermark === undefined || m < watermark) watermark = m;
    }
    const late = Date.now() - MAX_WAIT_MS;
    this.pending.sort((x, y) => (x.ns < y.ns ? -1 : x.ns > y.ns ? 1 : 0));
    let k = 0;
    while (k < this.pending.length && (all || this.pending[k]!.ns <= (watermark ?? -1n) || this.pending[k]!.at <= late)) k++;
    for (const p of this.pending.splice(0, k)) this.emit(p.v);
  }
}

/**
 * Waits until every stream ends, or SIGINT/SIGTERM, or `seconds` pass (then
 * closes them all), flushing `merge` meanwhile and everything at the end. A
 * stream that fails closes the others and rejects with its error.
 */
export async function followStreams<T>(streams: readonly OpenStream[], merge: TimeMerge<T>, seconds?: number): Promise<void> {
  const stop = () => { for (const s of streams) s.close(); };
  const ticker = setInterval(() => merge.flush(), FLUSH_EVERY_MS);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const timer = seconds !== undefined ? setTimeout(stop, seconds * 1000) : undefined;
  try {
    await Promise.all(streams.map((s) => s.done.catch((e: unknown) => { stop(); throw e; })));
  } finally {
    clearTimeout(timer);
    clearInterval(ticker);
    merge.flush(true);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
