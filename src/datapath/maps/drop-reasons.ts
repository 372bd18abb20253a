// Drop reasons (code, C name, text): the codes are Cilium's. The list is
// DROP_REASONS in bpf/lib/drop_reasons.h; generated/bpf-tables.ts carries it
// here (make -C bpf tables regenerates it).
import { DROP_REASON_TABLE } from './generated/bpf-tables.ts';

export interface DropReasonInfo {
  readonly code: number;
  /** The C enum name, e.g. "DROP_INVALID_SIP". */
  readonly name: string;
  /** What `membrane monitor` prints, e.g. "Invalid source ip". */
  readonly text: string;
}

export const DROP_REASONS: readonly DropReasonInfo[] = Object.freeze(
  DROP_REASON_TABLE.map(({ code, name, text }) => Object.freeze({ code, name, text })),
);

/** Metrics reason 0: the packet was forwarded, not dropped. */
export const REASON_FORWARDED = 0;

const byCode = new Map(DROP_REASONS.map((r) => [r.code, r]));

export function dropReason(code: number): DropReasonInfo | undefined {
  return byCode.get(code);
}

/** The user-facing text for a metrics/event reason: "Forwarded" for 0, "Unknown drop reason N" if unlisted. */
export function dropReasonText(code: number): string {
  if (code === REASON_FORWARDED) return 'Forwarded';
  return byCode.get(code)?.text ?? `Unknown drop reason ${code}`;
}
