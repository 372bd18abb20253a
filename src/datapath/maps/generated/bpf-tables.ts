// GENERATED FILE, DO NOT EDIT. Source: the X-macro lists in bpf/lib/drop_reasons.h,
// bpf/lib/trace_points.h and bpf/lib/source_files.h, expanded by the C
// preprocessor in scripts/gen-bpf-tables.ts.
// Regenerate: make -C bpf tables (or: node --import tsx scripts/gen-bpf-tables.ts).
// test/unit/maps-codes.test.ts fails when this file is stale.

export interface GeneratedCode { readonly value: number; readonly name: string; readonly text: string }
export interface GeneratedDropReason { readonly code: number; readonly name: string; readonly text: string }
export interface GeneratedSourceFile { readonly id: number; readonly name: string }

/** DROP_REASONS(DROP_REASON): code, C name, text. */
export const DROP_REASON_TABLE: readonly GeneratedDropReason[] = [
  { code: 132, name: "DROP_INVALID_SIP", text: "Invalid source ip" },
  { code: 133, name: "DROP_POLICY", text: "Policy denied" },
  { code: 134, name: "DROP_INVALID", text: "Invalid packet" },
  { code: 135, name: "DROP_CT_INVALID_HDR", text: "CT: Truncated or invalid header" },
  { code: 136, name: "DROP_FRAG_NEEDED", text: "Fragmentation needed" },
  { code: 137, name: "DROP_CT_UNKNOWN_PROTO", text: "CT: Unknown L4 protocol" },
  { code: 139, name: "DROP_UNKNOWN_L3", text: "Unsupported L3 protocol" },
  { code: 140, name: "DROP_MISSED_TAIL_CALL", text: "Missed tail call" },
  { code: 141, name: "DROP_WRITE_ERROR", text: "Error writing to packet" },
  { code: 142, name: "DROP_UNKNOWN_L4", text: "Unknown L4 protocol" },
  { code: 147, name: "DROP_NO_TUNNEL_KEY", text: "Error retrieving tunnel key" },
  { code: 150, name: "DROP_UNKNOWN_TARGET", text: "Unknown L3 target address" },
  { code: 151, name: "DROP_UNROUTABLE", text: "Stale or unroutable IP" },
  { code: 153, name: "DROP_CSUM_L3", text: "Error while correcting L3 checksum" },
  { code: 154, name: "DROP_CSUM_L4", text: "Error while correcting L4 checksum" },
  { code: 155, name: "DROP_CT_CREATE_FAILED", text: "CT: Map insertion failed" },
  { code: 157, name: "DROP_FRAG_NOSUPPORT", text: "IP fragmentation not supported" },
  { code: 158, name: "DROP_NO_SERVICE", text: "Service backend not found" },
  { code: 160, name: "DROP_NO_TUNNEL_ENDPOINT", text: "No tunnel/encapsulation endpoint (datapath BUG!)" },
  { code: 163, name: "DROP_UNKNOWN_CT", text: "Unknown connection tracking state" },
  { code: 166, name: "DROP_UNSUPPORTED_L2", text: "Unsupported L2 protocol" },
  { code: 167, name: "DROP_NAT_NO_MAPPING", text: "No mapping for NAT masquerade" },
  { code: 169, name: "DROP_NO_FIB", text: "FIB lookup failed" },
  { code: 171, name: "DROP_INVALID_IDENTITY", text: "Invalid identity" },
  { code: 181, name: "DROP_POLICY_DENY", text: "Policy denied by denylist" },
  { code: 184, name: "DROP_INVALID_TC_BUFFER", text: "Failed to update or lookup TC buffer" },
  { code: 189, name: "DROP_POLICY_AUTH_REQUIRED", text: "Authentication required" },
  { code: 190, name: "DROP_CT_NO_MAP_FOUND", text: "No conntrack map found" },
  { code: 196, name: "DROP_TTL_EXCEEDED", text: "TTL exceeded" },
  { code: 202, name: "DROP_HOST_NOT_READY", text: "Host datapath not ready" },
  { code: 203, name: "DROP_EP_NOT_READY", text: "Endpoint policy program not available" },
];

/** TRACE_POINTS(TRACE_POINT): value, C name, CLI text. */
export const TRACE_POINT_TABLE: readonly GeneratedCode[] = [
  { value: 0, name: "TRACE_TO_LXC", text: "to-endpoint" },
  { value: 1, name: "TRACE_TO_PROXY", text: "to-proxy" },
  { value: 2, name: "TRACE_TO_HOST", text: "to-host" },
  { value: 3, name: "TRACE_TO_STACK", text: "to-stack" },
  { value: 4, name: "TRACE_TO_OVERLAY", text: "to-overlay" },
  { value: 5, name: "TRACE_FROM_LXC", text: "from-endpoint" },
  { value: 6, name: "TRACE_FROM_PROXY", text: "from-proxy" },
  { value: 7, name: "TRACE_FROM_HOST", text: "from-host" },
  { value: 8, name: "TRACE_FROM_STACK", text: "from-stack" },
  { value: 9, name: "TRACE_FROM_OVERLAY", text: "from-overlay" },
  { value: 10, name: "TRACE_FROM_NETWORK", text: "from-network" },
  { value: 11, name: "TRACE_TO_NETWORK", text: "to-network" },
];

/** TRACE_REASONS(TRACE_REASON): value of enum trace_reason, C name, CLI text. */
export const TRACE_REASON_TABLE: readonly GeneratedCode[] = [
  { value: 0, name: "TRACE_REASON_POLICY", text: "new" },
  { value: 1, name: "TRACE_REASON_CT_ESTABLISHED", text: "established" },
  { value: 2, name: "TRACE_REASON_CT_REPLY", text: "reply" },
  { value: 3, name: "TRACE_REASON_CT_RELATED", text: "related" },
  { value: 5, name: "TRACE_REASON_UNKNOWN", text: "unknown" },
];

/** SOURCE_FILES(SOURCE_FILE): id, basename. */
export const SOURCE_FILE_TABLE: readonly GeneratedSourceFile[] = [
  { id: 1, name: "bpf_host.c" },
  { id: 2, name: "bpf_lxc.c" },
  { id: 3, name: "bpf_overlay.c" },
  { id: 4, name: "bpf_alignchecker.c" },
  { id: 10, name: "common.h" },
  { id: 11, name: "arp.h" },
  { id: 12, name: "eth.h" },
  { id: 13, name: "ipv4.h" },
  { id: 14, name: "local_delivery.h" },
  { id: 15, name: "encap.h" },
  { id: 16, name: "lookup.h" },
  { id: 17, name: "tailcall.h" },
  { id: 18, name: "drop.h" },
  { id: 19, name: "events.h" },
  { id: 20, name: "metrics.h" },
  { id: 21, name: "identity.h" },
  { id: 22, name: "maps.h" },
  { id: 23, name: "source_files.h" },
  { id: 24, name: "drop_reasons.h" },
  { id: 25, name: "trace_points.h" },
  { id: 26, name: "conntrack.h" },
  { id: 27, name: "policy.h" },
  { id: 40, name: "nat.h" },
  { id: 41, name: "fib.h" },
];
