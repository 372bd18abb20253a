// What the observe pipeline reads of a decoded datapath event
// (src/datapath/maps/events.ts), and the shapes it puts on the wire. Kept
// structural: the pipeline reads the fields every event kind has, and for
// the rest copies whatever the decoder gives, so a field the datapath adds
// reaches the API without a change here.
import { observationPoint } from '../../datapath/maps/observation-points.ts';

export type EventType = 'drop' | 'trace' | 'debug' | 'policy-verdict';
export const EVENT_TYPES: readonly EventType[] = ['drop', 'trace', 'debug', 'policy-verdict'];

/** The fields of a decoded event the pipeline uses; every other field is passed through. */
export interface ObservedEvent {
  type: string;
  /** CLOCK_MONOTONIC nanoseconds when the datapath emitted it. */
  timeNs?: bigint;
  source: number;
  hash: number;
  lenOrig: number;
  packet: Buffer;
  summary: string;
  ifindex?: number;
  srcLabel?: number;
  dstLabel?: number;
  dstId?: number;
  /** trace: observation point; drop: reason. */
  point?: number;
  reason?: number;
  [k: string]: unknown;
}

/** Hubble's spelling of an observation point ("to-overlay" -> "TO_OVERLAY"; to-endpoint is TO_ENDPOINT as in Hubble's API). */
export function hubblePoint(point: number): string {
  const p = observationPoint(point);
  if (!p) return 'UNKNOWN_POINT';
  return p.text.toUpperCase().replace(/-/g, '_');
}

/** One line of GET /v1/events: the decoded event, packet as base64, times as text, plus what the agent knows. */
export interface WireEvent {
  kind: 'event';
  node: string;
  type: EventType;
  /** Wall-clock time (ISO 8601), from timeNs and the agent's clock offset. */
  time: string;
  /** CLOCK_MONOTONIC ns as a decimal string. */
  timeNs: string;
  /** The captured frame (base64). */
  packet: string;
  summary: string;
  /** The device the event's ifindex names on its node. */
  ifname?: string;
  /** The pod of the endpoint that emitted it (its source endpoint id). */
  pod?: string;
  [k: string]: unknown;
}

/** A stream's first line: the node, its trace level now, and the clock offset to turn timeNs into wall time. */
export interface HelloLine {
  kind: 'hello';
  node: string;
  traceLevel: number;
  /** wall-clock ns - CLOCK_MONOTONIC ns, read once when the agent started. */
  clockOffsetNs: string;
  /** CLOCK_MONOTONIC ns when the stream began: events from then on are sent. */
  timeNs: string;
  lost: LostCounts;
}

/** Sent about every 100 ms to event streams: every event of `node` made before `timeNs` has been sent (in order). */
export interface MarkLine {
  kind: 'mark';
  node: string;
  timeNs: string;
}

export interface LostCounts {
  /** Events the datapath could not write: the ring buffer was full (EventReader.lost()). */
  ringBuffer: number;
  /** Events the agent could not decode. */
  undecodable: number;
  /** Lines this subscriber missed because it read too slowly. */
  subscriber: number;
}

/** Sent in a stream when any lost count moved (Hubble's LostEvent spelling in flow streams). */
export interface LostLine {
  kind: 'lost';
  node: string;
  /** What was lost since the previous lost line of this stream. */
  source: 'ring-buffer' | 'undecodable' | 'subscriber';
  count: number;
  /** The totals now. */
  lost: LostCounts;
}
