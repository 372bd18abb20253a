// Fan-out of events and flows to the API's streaming subscribers, and the
// trace level they ask for.
//
// A subscriber is an NDJSON response. A slow one must never stall the agent
// or the others: each has a bounded queue of lines; when its socket pushes
// back (write() returns false) lines wait in the queue, and when the queue is
// full further lines are dropped and counted. Once it drains, the subscriber
// gets one "lost" line with the count, then the stream goes on.
//
// Trace level (what the datapath emits): 0 with nobody listening (drops and
// policy denies only), 1 while any stream follows, 2 while a stream or a
// timed request asks for every packet. A level-2 hold must not outlive its
// client: a stream's ends when its connection closes, a timed one when its
// time is up, and a stream that stopped reading (its queue has been full for
// STALL_MS: a stopped or wedged client) no longer counts for level 2.

/** Lines a subscriber may have waiting before further ones are dropped (and counted). */
export const DEFAULT_QUEUE_LINES = 4096;
/** A level-2 stream whose reader has not taken a line for this long counts for level 1 only. */
export const STALL_MS = 10_000;
/** Longest timed level-2 request (POST /v1/observe/level). */
export const MAX_HOLD_SECONDS = 600;

export type TraceLevel = 0 | 1 | 2;

/** The writable side of a response: node's ServerResponse fits. */
export interface LineSink {
  write(chunk: string): boolean;
  once(event: 'drain', fn: () => void): unknown;
  readonly destroyed?: boolean;
}

export class Subscriber {
  private queue: string[] = [];
  private blocked = false;
  /** Lines dropped since the last lost line was sent, and in all. */
  private unreported = 0;
  lost = 0;
  /** When the socket last pushed back without draining since (undefined: flowing). */
  blockedSince?: number;
  closed = false;

  constructor(
    private readonly sink: LineSink,
    readonly level: TraceLevel,
    private readonly lostLine: (count: number, total: number) => string,
    private readonly maxQueue = DEFAULT_QUEUE_LINES,
    private readonly now: () => number = Date.now,
  ) {}

  /** Queues or writes one line (it must end in \n). Never blocks. */
  send(line: string): void {
    if (this.closed || this.sink.destroyed) return;
    if (this.blocked) {
      if (this.queue.length < this.maxQueue) this.queue.push(line);
      else {
        this.lost++;
        this.unreported++;
      }
      return;
    }
    if (!this.sink.write(line)) this.block();
  }

  private block(): void {
    this.blocked = true;
    this.blockedSince ??= this.now();
    this.sink.once('drain', () => this.drain());
  }

  private drain(): void {
    this.blocked = false;
    this.blockedSince = undefined;
    if (this.closed || this.sink.destroyed) return;
    if (this.unreported > 0) {
      const n = this.unreported;
      this.unreported = 0;
      if (!this.sink.write(this.lostLine(n, this.lost))) return this.block();
    }
    while (this.queue.length) {
      if (!this.sink.write(this.queue.shift()!)) return this.block();
    }
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Whether the reader has stopped reading (for STALL_MS). */
  stalled(at = this.now()): boolean {
    return this.blockedSince !== undefined && at - this.blockedSince >= STALL_MS;
  }

  close(): void {
    this.closed = true;
    this.queue = [];
  }
}

interface TimedHold {
  level: TraceLevel;
  until: number;
}

/** Who asks for which trace level; effective() is the highest that still counts. */
export class TraceLevels {
  private streams = new Set<Subscriber>();
  private timed = new Map<number, TimedHold>();
  private nextId = 1;

  constructor(private readonly now: () => number = Date.now) {}

  addStream(s: Subscriber): void {
    this.streams.add(s);
  }

  removeStream(s: Subscriber): void {
    this.streams.delete(s);
  }

  /** A hold of `level` for `seconds` (capped at MAX_HOLD_SECONDS); returns its id and end. */
  hold(level: TraceLevel, seconds: number): { id: number; until: number } {
    const id = this.nextId++;
    const until = this.now() + Math.min(seconds, MAX_HOLD_SECONDS) * 1000;
    this.timed.set(id, { level, until });
    return { id, until };
  }

  release(id: number): boolean {
    return this.timed.delete(id);
  }

  effective(): TraceLevel {
    const at = this.now();
    let level: TraceLevel = 0;
    for (const [id, h] of this.timed) {
      if (h.until <= at) this.timed.delete(id);
      else if (h.level > level) level = h.level;
    }
    for (const s of this.streams) {
      const l: TraceLevel = s.level === 2 && s.stalled(at) ? 1 : s.level;
      if (l > level) level = l;
    }
    return level;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  get timedHolds(): { id: number; level: TraceLevel; until: string }[] {
    return [...this.timed].map(([id, h]) => ({ id, level: h.level, until: new Date(h.until).toISOString() }));
  }
}
