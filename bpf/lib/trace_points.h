// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Trace observation points (the subtype of a trace event) and trace reasons.
 *
 * Values follow Cilium's enum trace_point so monitor output reads the same.
 * These lists are the only copy: scripts/gen-bpf-tables.ts expands them with
 * the C preprocessor into src/datapath/maps/generated/bpf-tables.ts
 * (make -C bpf tables), which observation-points.ts reads.
 */
#pragma once

/* TRACE_POINT(value, NAME, "cli text") */
#define TRACE_POINTS(TRACE_POINT)					\
	TRACE_POINT(0, TRACE_TO_LXC, "to-endpoint")			\
	TRACE_POINT(1, TRACE_TO_PROXY, "to-proxy")			\
	TRACE_POINT(2, TRACE_TO_HOST, "to-host")			\
	TRACE_POINT(3, TRACE_TO_STACK, "to-stack")			\
	TRACE_POINT(4, TRACE_TO_OVERLAY, "to-overlay")			\
	TRACE_POINT(5, TRACE_FROM_LXC, "from-endpoint")			\
	TRACE_POINT(6, TRACE_FROM_PROXY, "from-proxy")			\
	TRACE_POINT(7, TRACE_FROM_HOST, "from-host")			\
	TRACE_POINT(8, TRACE_FROM_STACK, "from-stack")			\
	TRACE_POINT(9, TRACE_FROM_OVERLAY, "from-overlay")		\
	TRACE_POINT(10, TRACE_FROM_NETWORK, "from-network")		\
	TRACE_POINT(11, TRACE_TO_NETWORK, "to-network")

enum trace_point {
#define __TRACE_POINT_ENUM(value, name, text) name = value,
	TRACE_POINTS(__TRACE_POINT_ENUM)
#undef __TRACE_POINT_ENUM
};

/* Trace reason = connection-tracking state of the packet (enum ct_status in
 * conntrack.h has the same values); UNKNOWN before any checkpoint looked it up.
 * TRACE_REASON(value, NAME, "cli text"); POLICY means a new connection.
 */
#define TRACE_REASONS(TRACE_REASON)					\
	TRACE_REASON(0, TRACE_REASON_POLICY, "new")			\
	TRACE_REASON(1, TRACE_REASON_CT_ESTABLISHED, "established")	\
	TRACE_REASON(2, TRACE_REASON_CT_REPLY, "reply")			\
	TRACE_REASON(3, TRACE_REASON_CT_RELATED, "related")		\
	TRACE_REASON(5, TRACE_REASON_UNKNOWN, "unknown")

enum trace_reason {
#define __TRACE_REASON_ENUM(value, name, text) name = value,
	TRACE_REASONS(__TRACE_REASON_ENUM)
#undef __TRACE_REASON_ENUM
};
