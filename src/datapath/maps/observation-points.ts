// Trace observation points (the subtype of a trace event), mirroring
// TRACE_POINTS in bpf/lib/trace_points.h — Cilium's values and CLI names.
// test/unit/maps-codes.test.ts parses the header and fails if they differ.

export interface ObservationPointInfo {
  readonly value: number;
  /** The C name, e.g. "TRACE_TO_LXC". */
  readonly name: string;
  /** CLI text, e.g. "to-endpoint". */
  readonly text: string;
}

export const OBSERVATION_POINTS: readonly ObservationPointInfo[] = Object.freeze([
  { value: 0, name: 'TRACE_TO_LXC', text: 'to-endpoint' },
  { value: 1, name: 'TRACE_TO_PROXY', text: 'to-proxy' },
  { value: 2, name: 'TRACE_TO_HOST', text: 'to-host' },
  { value: 3, name: 'TRACE_TO_STACK', text: 'to-stack' },
  { value: 4, name: 'TRACE_TO_OVERLAY', text: 'to-overlay' },
  { value: 5, name: 'TRACE_FROM_LXC', text: 'from-endpoint' },
  { value: 6, name: 'TRACE_FROM_PROXY', text: 'from-proxy' },
  { value: 7, name: 'TRACE_FROM_HOST', text: 'from-host' },
  { value: 8, name: 'TRACE_FROM_STACK', text: 'from-stack' },
  { value: 9, name: 'TRACE_FROM_OVERLAY', text: 'from-overlay' },
  { value: 10, name: 'TRACE_FROM_NETWORK', text: 'from-network' },
  { value: 11, name: 'TRACE_TO_NETWORK', text: 'to-network' },
].map((p) => Object.freeze(p)));

const byValue = new Map(OBSERVATION_POINTS.map((p) => [p.value, p]));

export function observationPoint(value: number): ObservationPointInfo | undefined {
  return byValue.get(value);
}

/** CLI text for an observation point, "point-N" if unlisted. */
export function observationPointText(value: number): string {
  return byValue.get(value)?.text ?? `point-${value}`;
}

/** Trace reason = conntrack state; the datapath has no conntrack yet and always sends UNKNOWN. */
export const TRACE_REASONS: Readonly<Record<number, string>> = Object.freeze({
  0: 'new', 1: 'established', 2: 'reply', 3: 'related', 5: 'unknown',
});
