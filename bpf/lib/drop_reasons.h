// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Drop reasons: code, C name and the text users see, in one list.
 *
 * Codes follow Cilium (bpf/lib/drop_reasons.h upstream, facts only) so that
 * anyone who knows `cilium-dbg monitor` reads the same numbers. They start at
 * 130 so they never collide with TC return codes. Metrics and events carry the
 * code as a u8; reason 0 in cilium_metrics means "forwarded".
 * This list is the only copy: scripts/gen-bpf-tables.ts expands it with the C
 * preprocessor into src/datapath/maps/generated/bpf-tables.ts
 * (make -C bpf tables), which drop-reasons.ts reads.
 */
#pragma once

/* DROP_REASON(code, NAME, "text") */
#define DROP_REASONS(DROP_REASON)						\
	DROP_REASON(132, DROP_INVALID_SIP, "Invalid source ip")			\
	DROP_REASON(133, DROP_POLICY, "Policy denied")				\
	DROP_REASON(134, DROP_INVALID, "Invalid packet")			\
	DROP_REASON(135, DROP_CT_INVALID_HDR, "CT: Truncated or invalid header") \
	DROP_REASON(136, DROP_FRAG_NEEDED, "Fragmentation needed")		\
	DROP_REASON(137, DROP_CT_UNKNOWN_PROTO, "CT: Unknown L4 protocol")	\
	DROP_REASON(139, DROP_UNKNOWN_L3, "Unsupported L3 protocol")		\
	DROP_REASON(140, DROP_MISSED_TAIL_CALL, "Missed tail call")		\
	DROP_REASON(141, DROP_WRITE_ERROR, "Error writing to packet")		\
	DROP_REASON(142, DROP_UNKNOWN_L4, "Unknown L4 protocol")		\
	DROP_REASON(147, DROP_NO_TUNNEL_KEY, "Error retrieving tunnel key")	\
	DROP_REASON(150, DROP_UNKNOWN_TARGET, "Unknown L3 target address")	\
	DROP_REASON(151, DROP_UNROUTABLE, "Stale or unroutable IP")		\
	DROP_REASON(153, DROP_CSUM_L3, "Error while correcting L3 checksum")	\
	DROP_REASON(154, DROP_CSUM_L4, "Error while correcting L4 checksum")	\
	DROP_REASON(155, DROP_CT_CREATE_FAILED, "CT: Map insertion failed")	\
	DROP_REASON(157, DROP_FRAG_NOSUPPORT, "IP fragmentation not supported")	\
	DROP_REASON(158, DROP_NO_SERVICE, "Service backend not found")		\
	DROP_REASON(160, DROP_NO_TUNNEL_ENDPOINT, "No tunnel/encapsulation endpoint (datapath BUG!)") \
	DROP_REASON(163, DROP_UNKNOWN_CT, "Unknown connection tracking state")	\
	DROP_REASON(166, DROP_UNSUPPORTED_L2, "Unsupported L2 protocol")	\
	DROP_REASON(167, DROP_NAT_NO_MAPPING, "No mapping for NAT masquerade")	\
	DROP_REASON(169, DROP_NO_FIB, "FIB lookup failed")			\
	DROP_REASON(171, DROP_INVALID_IDENTITY, "Invalid identity")		\
	DROP_REASON(181, DROP_POLICY_DENY, "Policy denied by denylist")		\
	DROP_REASON(184, DROP_INVALID_TC_BUFFER, "Failed to update or lookup TC buffer") \
	DROP_REASON(189, DROP_POLICY_AUTH_REQUIRED, "Authentication required")	\
	DROP_REASON(190, DROP_CT_NO_MAP_FOUND, "No conntrack map found")	\
	DROP_REASON(196, DROP_TTL_EXCEEDED, "TTL exceeded")			\
	DROP_REASON(202, DROP_HOST_NOT_READY, "Host datapath not ready")	\
	DROP_REASON(203, DROP_EP_NOT_READY, "Endpoint policy program not available")

enum drop_reason {
#define __DROP_REASON_ENUM(code, name, text) name = code,
	DROP_REASONS(__DROP_REASON_ENUM)
#undef __DROP_REASON_ENUM
};
