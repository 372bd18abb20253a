// The agent's event pipeline: reads the node's datapath events continuously,
// enriches them with what the agent knows (pods, identities, devices), joins
// the events of each packet into a flow, keeps the newest flows in a bounded
// ring, fans events and flows out to the API's streams, and sets the
// datapath's trace level to what the listeners ask for (hub.ts).
//
// The ring buffer is polled every POLL_MS on a timer rather than waited on:
// a read with nothing new costs a few loads from shared memory, and a
// blocking wait would stall Node's event loop. One poll takes everything
// committed since the last one, so at 100k packets/s with every packet
// traced the ring (1 MiB) holds ~1/4 of a poll's worth: events are lost
// then, never packets, and every loss is counted (lost()).
import type { FlowContext, Flow } from './flows.ts';
import { FlowJoiner, FlowRing } from './flows.ts';
import { flowMatches, type EventFilter, type FlowFilter } from './filters.ts';
import { Subscriber, TraceLevels, type LineSink, type TraceLevel } from './hub.ts';
import type { EventType, HelloLine, LostCounts, LostLine, MarkLine, ObservedEvent, WireEvent } from './model.ts';
import { parsePacket } from './packet.ts';

export const POLL_MS = 25;
export const DEFAULT_FLOW_CAPACITY = 4096;
/** How often event streams get a mark line. */
export const MARK_EVERY_NS = 100_000_000n;
/** A record is written within microseconds of its timestamp; a mark stays this far behind the poll that sends it. */
export const MARK_MARGIN_NS = 1_000_000n;

/** The node's events as the datapath gives them (src/datapath/events-reader.ts). */
export interface EventSource {
  consume(): ObservedEvent[];
  /** Events lost so far: the ring buffer was full when the datapath wrote them. */
  lost(): number | bigint;
  /** Records skipped so far because they could not be decoded. */
  undecodable?(): number;
  close(): void;
}

export interface ObserverContext extends FlowContext {
  /** "namespace/name" of the pod behind a local endpoint id, if any. */
  podOfEndpoint(id: number): string | undefined;
}

export interface ObserverOptions {
  node: string;
  ctx: ObserverContext;
  /** Opens the node's event source; retried every second until it works (the datapath may still be coming up). */
  openSource: () => EventSource;
  setTraceLevel: (level: TraceLevel) => void;
  flowCapacity?: number;
  pollMs?: number;
  log?: (s: string) => void;
  /** CLOCK_MONOTONIC in ns (tests pass their own). */
  monotonicNs?: () => bigint;
}

export interface ObserverStatus {
  traceLevel: TraceLevel;
  subscribers: { events: number; flows: number; timedHolds: { id: number; level: TraceLevel; until: string }[] };
  flows: { buffered: number; capacity: number; total: number };
  events: Record<string, number>;
  lost: LostCounts;
  reading: boolean;
  lastError?: string;
}

interface EventSub { sub: Subscriber; filter: EventFilter }
interface FlowSub { sub: Subscriber; filter: FlowFilter }

const hrtimeNs = () => process.hrtime.bigint();

export class Observer {
  readonly node: string;
  /** wall-clock ns - CLOCK_MONOTONIC ns, read once: every event's wall time comes from its own timestamp and this. */
  readonly clockOffsetNs: bigint;
  readonly levels = new TraceLevels();
  private source?: EventSource;
  private joiner: FlowJoiner;
  private ring: FlowRing;
  private eventSubs = new Set<EventSub>();
  private flowSubs = new Set<FlowSub>();
  private timer?: NodeJS.Timeout;
  private level: TraceLevel = 0;
  private levelSetFailed = false;
  private lastOpenTry = 0;
  private ringLost = 0;
  private lostReading?: number;
  private undecodable = 0;
  private undecodableSeen = 0;
  private lastMarkNs = 0n;
  private lastFlowMarkNs = 0n;
  private subscriberLost = 0;
  private flowsTotal = 0;
  readonly eventCounts: Record<EventType, number> = { drop: 0, trace: 0, debug: 0, 'policy-verdict': 0 };
  readonly flowCounts = { FORWARDED: 0, DROPPED: 0 };
  lastError?: string;
  private stopped = false;
  private readonly mono: () => bigint;

  constructor(private readonly o: ObserverOptions) {
    this.node = o.node;
    this.mono = o.monotonicNs ?? hrtimeNs;
    this.clockOffsetNs = BigInt(Date.now()) * 1_000_000n - this.mono();
    this.joiner = new FlowJoiner(o.ctx);
    this.ring = new FlowRing(o.flowCapacity ?? DEFAULT_FLOW_CAPACITY);
  }

  start(): void {
    this.tryOpen();
    this.applyLevel(true);
    const tick = () => {
      if (this.stopped) return;
      try {
        this.poll();
      } catch (e) {
        this.error(`observe: ${(e as Error).message}`);
      }
      this.timer = setTimeout(tick, this.o.pollMs ?? POLL_MS);
    };
    this.timer = setTimeout(tick, this.o.pollMs ?? POLL_MS);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const s of this.eventSubs) s.sub.close();
    for (const s of this.flowSubs) s.sub.close();
    this.source?.close();
    this.source = undefined;
  }

  private error(msg: string): void {
    if (msg !== this.lastError) this.o.log?.(msg);
    this.lastError = msg;
  }

  private tryOpen(): void {
    if (this.source) return;
    const now = Date.now();
    if (now - this.lastOpenTry < 1000) return;
    this.lastOpenTry = now;
    try {
      this.source = this.o.openSource();
      this.lostReading = undefined;
      this.undecodableSeen = 0;
      this.lastError = undefined;
    } catch (e) {
      this.error(`observe: cannot read the node's events: ${(e as Error).message}`);
    }
  }

  /** One round: read, count, join, fan out, report losses, set the level. Exposed for tests. */
  poll(): void {
    this.tryOpen();
    const now = this.mono();
    let events: ObservedEvent[] = [];
    if (this.source) {
      events = this.source.consume();
      this.countLost();
      const skipped = this.source.undecodable?.() ?? 0;
      if (skipped > this.undecodableSeen) {
        this.countUndecodable(skipped - this.undecodableSeen);
        this.undecodableSeen = skipped;
      }
    }
    if (events.length) {
      const wantEvents = this.eventSubs.size > 0;
      for (const e of events) {
        if (e.type in this.eventCounts) this.eventCounts[e.type as EventType]++;
        if (wantEvents) this.publishEvent(e, now);
      }
    }
    this.mark(now);
    const done = events.length ? this.joiner.add(events, now) : [];
    if (this.joiner.pendingCount) done.push(...this.joiner.flush(now));
    for (const f of done) this.publishFlow(f);
    this.flowMark(now);
    this.applyLevel();
  }

  /**
   * Tells event streams, every MARK_EVERY_NS, that every event of this node
   * made before a time has been sent (the time this poll began, less a
   * margin for records still being written), so a client merging several
   * nodes can print in timestamp order without guessing how late a node is.
   */
  private mark(pollStartNs: bigint): void {
    if (!this.eventSubs.size || pollStartNs - this.lastMarkNs < MARK_EVERY_NS) return;
    this.lastMarkNs = pollStartNs;
    const line = JSON.stringify({ kind: 'mark', node: this.node, timeNs: String(pollStartNs - MARK_MARGIN_NS) } satisfies MarkLine) + '\n';
    for (const s of this.eventSubs) s.sub.send(line);
  }

  /**
   * The same for flow streams: every flow whose first event was made before
   * `time_ns` has been sent (the poll's start, or just before the oldest flow
   * still being joined). A flow stream's flows are not in time order even
   * for one node (a drop finishes its flow at once, a forward 10 ms later):
   * a client orders them up to the marks.
   */
  private flowMark(pollStartNs: bigint): void {
    if (!this.flowSubs.size || pollStartNs - this.lastFlowMarkNs < MARK_EVERY_NS) return;
    this.lastFlowMarkNs = pollStartNs;
    let t = pollStartNs - MARK_MARGIN_NS;
    const oldest = this.joiner.oldestPendingNs();
    if (oldest !== undefined && oldest - 1n < t) t = oldest - 1n;
    const line = JSON.stringify({ mark: { time_ns: String(t) }, node_name: this.node }) + '\n';
    for (const s of this.flowSubs) s.sub.send(line);
  }

  /** Counts decode failures the source reports (it skips such records). */
  countUndecodable(n: number): void {
    this.undecodable += n;
    if (n > 0) this.broadcastLost('undecodable', n);
  }

  private countLost(): void {
    const total = Number(this.source!.lost());
    // Deltas of this source's counter (a reopened source counts from its own start).
    const prev = this.lostReading ?? total;
    this.lostReading = total;
    if (total > prev) {
      const n = total - prev;
      this.ringLost += n;
      this.broadcastLost('ring-buffer', n);
    }
  }

  get lost(): LostCounts {
    return { ringBuffer: this.ringLost, undecodable: this.undecodable, subscriber: this.subscriberLost };
  }

  private broadcastLost(source: LostLine['source'], count: number): void {
    const lost = this.lost;
    const time = new Date().toISOString();
    if (this.eventSubs.size) {
      const line = JSON.stringify({ kind: 'lost', node: this.node, source, count, lost } satisfies LostLine) + '\n';
      for (const s of this.eventSubs) s.sub.send(line);
    }
    if (this.flowSubs.size) {
      const line = JSON.stringify({ lost_events: { source: source === 'ring-buffer' ? 'PERF_EVENT_RING_BUFFER' : 'OBSERVER_EVENTS_QUEUE', num_events_lost: count }, node_name: this.node, time, lost }) + '\n';
      for (const s of this.flowSubs) s.sub.send(line);
    }
  }

  wallTime(ns: bigint): Date {
    return new Date(Number((ns + this.clockOffsetNs) / 1_000_000n));
  }

  private publishEvent(e: ObservedEvent, receivedNs: bigint): void {
    const w = this.wire(e, receivedNs);
    let line: string | undefined;
    for (const s of this.eventSubs) {
      if (!eventMatches(w, s.filter)) continue;
      line ??= JSON.stringify(w) + '\n';
      s.sub.send(line);
    }
  }

  /** An event as GET /v1/events sends it. */
  wire(e: ObservedEvent, receivedNs: bigint): WireEvent {
    const out: Record<string, unknown> = { kind: 'event', node: this.node };
    for (const [k, v] of Object.entries(e)) out[k] = typeof v === 'bigint' ? String(v) : Buffer.isBuffer(v) ? v.toString('base64') : v;
    const ns = e.timeNs ?? receivedNs;
    out.timeNs = String(ns);
    out.time = this.wallTime(ns).toISOString();
    if (e.ifindex) out.ifname = this.o.ctx.ifname(e.ifindex);
    const pod = e.source ? this.o.ctx.podOfEndpoint(e.source) : undefined;
    if (pod) out.pod = pod;
    const ip = parsePacket(e.packet).ipv4;
    if (ip) out.ip = { source: ip.source, destination: ip.destination };
    return out as WireEvent;
  }

  private publishFlow(f: Flow): void {
    this.flowsTotal++;
    this.flowCounts[f.verdict]++;
    const json = JSON.stringify({ flow: f, node_name: this.node, time: f.time }) + '\n';
    this.ring.push(f, json);
    for (const s of this.flowSubs) if (flowMatches(f, s.filter)) s.sub.send(json);
  }

  /** The newest `n` flows matching `filter`, each as its NDJSON line. */
  lastFlows(n: number, filter: FlowFilter): string[] {
    return this.ring.last(n, (f) => flowMatches(f, filter)).map((x) => x.json);
  }

  private hello(kind: 'events' | 'flows'): string {
    if (kind === 'events') {
      return JSON.stringify({ kind: 'hello', node: this.node, traceLevel: this.level, clockOffsetNs: String(this.clockOffsetNs), timeNs: String(this.mono()), lost: this.lost } satisfies HelloLine) + '\n';
    }
    return JSON.stringify({
      node_status: { state_change: 'NODE_CONNECTED', node_names: [this.node], trace_level: this.level, clock_offset_ns: String(this.clockOffsetNs), lost: this.lost },
      node_name: this.node, time: new Date().toISOString(),
    }) + '\n';
  }

  private subscriber(sink: LineSink, level: TraceLevel, kind: 'events' | 'flows', queue?: number): Subscriber {
    const lostLine = (count: number, total: number) => {
      this.subscriberLost += count;
      return kind === 'events'
        ? JSON.stringify({ kind: 'lost', node: this.node, source: 'subscriber', count, lost: { ...this.lost, subscriber: total } } satisfies LostLine) + '\n'
        : JSON.stringify({ lost_events: { source: 'OBSERVER_EVENTS_QUEUE', num_events_lost: count }, node_name: this.node, time: new Date().toISOString() }) + '\n';
    };
    return new Subscriber(sink, level, lostLine, queue);
  }

  /**
   * A stream of events: a hello line (after the trace level is set, so a
   * client that waits for it knows the datapath traces), then events as they
   * come. Returns the function that ends it (call it when the connection closes).
   */
  subscribeEvents(sink: LineSink, filter: EventFilter, level: TraceLevel, queue?: number): () => void {
    const sub = this.subscriber(sink, level, 'events', queue);
    const entry = { sub, filter };
    this.eventSubs.add(entry);
    this.levels.addStream(sub);
    this.applyLevel();
    sub.send(this.hello('events'));
    return () => {
      sub.close();
      this.eventSubs.delete(entry);
      this.levels.removeStream(sub);
      this.applyLevel();
    };
  }

  /** A stream of flows: the hello line, the newest `last` matching ones from the ring, then new ones as they finish. */
  subscribeFlows(sink: LineSink, filter: FlowFilter, level: TraceLevel, last = 0, queue?: number): () => void {
    const sub = this.subscriber(sink, level, 'flows', queue);
    const entry = { sub, filter };
    // The level first, so the hello line says what the datapath traces from now on.
    this.levels.addStream(sub);
    this.applyLevel();
    sub.send(this.hello('flows'));
    for (const line of this.lastFlows(last, filter)) sub.send(line);
    this.flowSubs.add(entry);
    return () => {
      sub.close();
      this.flowSubs.delete(entry);
      this.levels.removeStream(sub);
      this.applyLevel();
    };
  }

  /** A timed request for a trace level (POST /v1/observe/level). */
  hold(level: TraceLevel, seconds: number): { id: number; until: string; traceLevel: TraceLevel } {
    const h = this.levels.hold(level, seconds);
    this.applyLevel();
    return { id: h.id, until: new Date(h.until).toISOString(), traceLevel: this.level };
  }

  release(id: number): { released: boolean; traceLevel: TraceLevel } {
    const released = this.levels.release(id);
    this.applyLevel();
    return { released, traceLevel: this.level };
  }

  get traceLevel(): TraceLevel {
    return this.level;
  }

  private applyLevel(force = false): void {
    const want = this.levels.effective();
    if (want === this.level && !force) return;
    try {
      this.o.setTraceLevel(want);
      this.level = want;
      this.levelSetFailed = false;
    } catch (e) {
      if (!this.levelSetFailed) this.o.log?.(`observe: cannot set trace level ${want}: ${(e as Error).message}`);
      this.levelSetFailed = true;
    }
  }

  status(): ObserverStatus {
    return {
      traceLevel: this.level,
      subscribers: { events: this.eventSubs.size, flows: this.flowSubs.size, timedHolds: this.levels.timedHolds },
      flows: { buffered: this.ring.size, capacity: this.ring.capacity, total: this.flowsTotal },
      events: { ...this.eventCounts },
      lost: this.lost,
      reading: this.source !== undefined,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }
}

export function eventMatches(w: WireEvent, f: EventFilter): boolean {
  if (f.types && !f.types.has(w.type)) return false;
  if (f.fromPod !== undefined || f.fromIP) {
    const src = (w.ip as { source?: string } | undefined)?.source;
    const byPod = f.fromPod !== undefined && w.pod !== undefined && (w.pod === f.fromPod || w.pod.endsWith(`/${f.fromPod}`));
    const byIP = f.fromIP !== undefined && src !== undefined && f.fromIP.includes(src);
    if (!byPod && !byIP) return false;
  }
  return true;
}
