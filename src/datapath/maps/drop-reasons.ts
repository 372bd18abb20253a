// Drop reasons, mirroring bpf/lib/drop_reasons.h (code, C name, text) — the
// codes are Cilium's. test/unit/maps-codes.test.ts parses the header and
// fails if the two lists differ.

export interface DropReasonInfo {
  readonly code: number;
  /** The C enum name, e.g. "DROP_INVALID_SIP". */
  readonly name: string;
  /** What `membrane monitor` prints, e.g. "Invalid source ip". */
  readonly text: string;
}

export const DROP_REASONS: readonly DropReasonInfo[] = Object.freeze([
  { code: 132, name: 'DROP_INVALID_SIP', text: 'Invalid source ip' },
  { code: 133, name: 'DROP_POLICY', text: 'Policy denied' },
  { code: 134, name: 'DROP_INVALID', text: 'Invalid packet' },
  { code: 135, name: 'DROP_CT_INVALID_HDR', text: 'CT: Truncated or invalid header' },
  { code: 136, name: 'DROP_FRAG_NEEDED', text: 'Fragmentation needed' },
  { code: 137, name: 'DROP_CT_UNKNOWN_PROTO', text: 'CT: Unknown L4 protocol' },
  { code: 139, name: 'DROP_UNKNOWN_L3', text: 'Unsupported L3 protocol' },
  { code: 140, name: 'DROP_MISSED_TAIL_CALL', text: 'Missed tail call' },
  { code: 141, name: 'DROP_WRITE_ERROR', text: 'Error writing to packet' },
  { code: 142, name: 'DROP_UNKNOWN_L4', text: 'Unknown L4 protocol' },
  { code: 147, name: 'DROP_NO_TUNNEL_KEY', text: 'Error retrieving tunnel key' },
  { code: 150, name: 'DROP_UNKNOWN_TARGET', text: 'Unknown L3 target address' },
  { code: 151, name: 'DROP_UNROUTABLE', text: 'Stale or unroutable IP' },
  { code: 155, name: 'DROP_CT_CREATE_FAILED', text: 'CT: Map insertion failed' },
  { code: 157, name: 'DROP_FRAG_NOSUPPORT', text: 'IP fragmentation not supported' },
  { code: 158, name: 'DROP_NO_SERVICE', text: 'Service backend not found' },
  { code: 160, name: 'DROP_NO_TUNNEL_ENDPOINT', text: 'No tunnel/encapsulation endpoint (datapath BUG!)' },
  { code: 163, name: 'DROP_UNKNOWN_CT', text: 'Unknown connection tracking state' },
  { code: 166, name: 'DROP_UNSUPPORTED_L2', text: 'Unsupported L2 protocol' },
  { code: 169, name: 'DROP_NO_FIB', text: 'FIB lookup failed' },
  { code: 171, name: 'DROP_INVALID_IDENTITY', text: 'Invalid identity' },
  { code: 181, name: 'DROP_POLICY_DENY', text: 'Policy denied by denylist' },
  { code: 184, name: 'DROP_INVALID_TC_BUFFER', text: 'Failed to update or lookup TC buffer' },
  { code: 189, name: 'DROP_POLICY_AUTH_REQUIRED', text: 'Authentication required' },
  { code: 190, name: 'DROP_CT_NO_MAP_FOUND', text: 'No conntrack map found' },
  { code: 196, name: 'DROP_TTL_EXCEEDED', text: 'TTL exceeded' },
  { code: 202, name: 'DROP_HOST_NOT_READY', text: 'Host datapath not ready' },
  { code: 203, name: 'DROP_EP_NOT_READY', text: 'Endpoint policy program not available' },
].map((r) => Object.freeze(r)));

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
