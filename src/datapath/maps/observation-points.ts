// Trace observation points (the subtype of a trace event) and trace reasons:
// Cilium's values and CLI names. The lists are TRACE_POINTS and TRACE_REASONS
// in bpf/lib/trace_points.h; generated/bpf-tables.ts carries them here
// (make -C bpf tables regenerates it).
import { TRACE_POINT_TABLE, TRACE_REASON_TABLE } from './generated/bpf-tables.ts';

export interface ObservationPointInfo {
  readonly value: number;
  /** The C name, e.g. "TRACE_TO_LXC". */
  readonly name: string;
  /** CLI text, e.g. "to-endpoint". */
  readonly text: string;
}

export const OBSERVATION_POINTS: readonly ObservationPointInfo[] = Object.freeze(
  TRACE_POINT_TABLE.map(({ value, name, text }) => Object.freeze({ value, name, text })),
);

const byValue = new Map(OBSERVATION_POINTS.map((p) => [p.value, p]));

export function observationPoint(value: number): ObservationPointInfo | undefined {
  return byValue.get(value);
}

/** CLI text for an observation point, "point-N" if unlisted. */
export function observationPointText(value: number): string {
  return byValue.get(value)?.text ?? `point-${value}`;
}

/**
 * Trace reason = conntrack state (enum trace_reason), value -> CLI text, e.g. 5 -> "unknown".
 * The datapath has no conntrack yet and always sends TRACE_REASON_UNKNOWN.
 */
export const TRACE_REASONS: Readonly<Record<number, string>> = Object.freeze(
  Object.fromEntries(TRACE_REASON_TABLE.map((r) => [r.value, r.text])),
);
