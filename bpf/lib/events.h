// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Drop, debug, trace and policy verdict records written to the cilium_events
 * ring buffer.
 *
 * Every record starts with struct event_hdr (type, subtype, source endpoint,
 * hash, original and captured length, version, CLOCK_MONOTONIC time in ns),
 * followed by 24 bytes of type-specific fields and EVENT_CAP_LEN bytes of
 * which the first hdr.len_cap are the start of the packet: all four records
 * are 176 bytes with the packet at offset 48. Records have a fixed size
 * because bpf_ringbuf_reserve needs a constant one. A full ring buffer loses
 * the record, never the packet, and the loss is counted per record type in
 * cilium_events_lost. src/datapath/maps/events.ts decodes these records.
 *
 * What is sent depends on node_config.trace_level (maps.h):
 *   drops, policy denials            always;
 *   traces                           level 1: at TO_* points of a packet a
 *                                    conntrack check of this program run
 *                                    marked for a report (CB_CT_REPORT; the
 *                                    FROM_* points come before any check, so
 *                                    they never qualify, as in Cilium's
 *                                    "medium" aggregation); level 2: all;
 *   policy allow verdicts            level >= 1, for new connections (policy.h);
 *   debug records                    level 2.
 * At level 0 a trace or debug site costs the node_config lookup, one load and
 * one branch.
 *
 * The time is bpf_ktime_get_ns(), read only for a record that is sent: the
 * clock Node's process.hrtime.bigint() reads, one clock for every node netns
 * of a machine, so the agent can order the records of several nodes.
 *
 * Debug records (as Cilium's DBG_* messages) report a decision whose result
 * cannot be seen in the packet itself, e.g. the tunnel key handed to the
 * VXLAN driver (DBG_ENCAP: arg1 = remote IPv4 in host order as in the
 * key, arg2 = VNI = source identity).
 *
 * The including object defines EVENT_SOURCE_ID (its endpoint id, 0 if none)
 * before including this header.
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "trace_points.h"

#ifndef EVENT_SOURCE_ID
#define EVENT_SOURCE_ID 0
#endif

/* Cilium's notification types (CILIUM_NOTIFY_*), so monitor output reads the
 * same; also the key of cilium_events_lost (< EVENTS_LOST_TYPES).
 */
enum {
	EVENT_TYPE_DROP = 1,
	EVENT_TYPE_DEBUG = 2,
	EVENT_TYPE_TRACE = 4,
	EVENT_TYPE_POLICY_VERDICT = 5,
};

/* Debug subtypes: Cilium's values (bpf/lib/dbg.h upstream), so monitor output
 * reads the same. Only the ones this datapath emits are listed.
 */
enum {
	DBG_ENCAP = 3,		/* arg1 = tunnel remote IPv4 (host order), arg2 = VNI */
};

/* Version 2: the header got ktime_ns and the records 24-byte bodies. */
#define EVENT_VERSION	2
#define EVENT_CAP_LEN	128

struct event_hdr {
	__u8 type;		/* EVENT_TYPE_* */
	__u8 subtype;		/* drop reason / DBG_* / trace observation point / 0 */
	__u16 source;		/* endpoint id of the emitting program */
	__u32 hash;		/* skb hash, groups the packets of a flow */
	__u32 len_orig;		/* packet length */
	__u16 len_cap;		/* valid bytes in data[] */
	__u8 version;		/* EVENT_VERSION */
	__u8 pad;
	__u64 ktime_ns;		/* CLOCK_MONOTONIC when the record was made */
};

struct drop_notify {
	struct event_hdr hdr;
	__u32 src_label;
	__u32 dst_label;
	__u32 dst_id;
	__u16 line;
	__u8 file;
	__u8 ext_error;
	__u32 ifindex;
	__u32 pad;
	__u8 data[EVENT_CAP_LEN];
};

struct trace_notify {
	struct event_hdr hdr;
	__u32 src_label;
	__u32 dst_label;
	__u16 dst_id;
	__u8 reason;		/* enum trace_reason */
	__u8 flags;
	__u32 ifindex;
	__be32 orig_ip;
	__u32 pad;
	__u8 data[EVENT_CAP_LEN];
};

struct debug_notify {
	struct event_hdr hdr;
	__u32 arg1;		/* meaning depends on the DBG_* subtype */
	__u32 arg2;
	__u32 arg3;
	__u32 ifindex;		/* device the packet goes to */
	__u32 pad[2];
	__u8 data[EVENT_CAP_LEN];
};

/* Policy verdict match: which kind of entry decided (Cilium's POLICY_MATCH_*
 * values): L3 = the remote identity itself, "any" = identity 0; L4 = a port.
 */
enum {
	POLICY_MATCH_NONE = 0,		/* no entry: the default deny */
	POLICY_MATCH_L3_ONLY = 1,	/* identity, any protocol */
	POLICY_MATCH_L3_L4 = 2,		/* identity, protocol and port (range) */
	POLICY_MATCH_L4_ONLY = 3,	/* any identity, protocol and port (range) */
	POLICY_MATCH_ALL = 4,		/* any identity, any protocol */
	POLICY_MATCH_L3_PROTO = 5,	/* identity, protocol, any port */
	POLICY_MATCH_PROTO_ONLY = 6,	/* any identity, protocol, any port */
};

/* dir: Cilium's POLICY_INGRESS / POLICY_EGRESS (= METRIC_INGRESS / _EGRESS). */
struct policy_verdict_notify {
	struct event_hdr hdr;
	__u32 remote_label;	/* the peer's identity */
	__u32 cookie;		/* the deciding policy entry's cookie (the agent's rule tag); 0: none */
	__u16 dst_port;		/* host order; ICMP: the type; 0 for other protocols */
	__u8 proto;		/* IPPROTO_* */
	__u8 dir;		/* 1 ingress, 2 egress: the endpoint's view */
	__u16 ep_id;		/* endpoint whose policy decided (1: the host firewall) */
	__u8 verdict;		/* 0 allowed, else the drop reason: DROP_POLICY (no entry), DROP_POLICY_DENY (a deny entry) */
	__u8 match_type;	/* POLICY_MATCH_* */
	__u32 ifindex;		/* device the program runs on */
	__u32 pad;
	__u8 data[EVENT_CAP_LEN];
};

_Static_assert(sizeof(struct event_hdr) == 24, "event_hdr is ABI");
_Static_assert(sizeof(struct drop_notify) == 48 + EVENT_CAP_LEN, "drop_notify is ABI");
_Static_assert(sizeof(struct trace_notify) == 48 + EVENT_CAP_LEN, "trace_notify is ABI");
_Static_assert(sizeof(struct debug_notify) == 48 + EVENT_CAP_LEN, "debug_notify is ABI");
_Static_assert(sizeof(struct policy_verdict_notify) == 48 + EVENT_CAP_LEN, "policy_verdict_notify is ABI");
_Static_assert(EVENT_TYPE_POLICY_VERDICT < EVENTS_LOST_TYPES, "every type has a lost counter");

/* The CB_CT_STATE slot of skb->cb holds the conntrack state + 1 in its low byte and this
 * bit when a check of this program run found the packet worth a trace at
 * trace level 1 (policy.h sets both with one store).
 */
#define CB_CT_REPORT	0x100

/* One more record of `type` that did not fit: counted on this CPU. */
static __always_inline void event_lost(__u8 type)
{
	__u32 key = type;
	__u64 *count = bpf_map_lookup_elem(&cilium_events_lost, &key);

	if (count)
		*count += 1;
}

/* Room for a record of `size` (a constant) in cilium_events, or NULL after
 * counting the loss.
 */
static __always_inline void *event_reserve(const __u32 size, __u8 type)
{
	void *n = bpf_ringbuf_reserve(&cilium_events, size, 0);

	if (!n)
		event_lost(type);
	return n;
}

/* Fills the header and copies the start of the packet into data[]. */
static __always_inline void event_fill(struct __sk_buff *ctx, struct event_hdr *hdr,
				       __u8 *data, __u8 type, __u8 subtype)
{
	__u32 len = ctx->len;
	__u32 cap = len;

	hdr->type = type;
	hdr->subtype = subtype;
	hdr->source = (__u16)EVENT_SOURCE_ID;
	hdr->hash = bpf_get_hash_recalc(ctx);
	hdr->len_orig = len;
	hdr->len_cap = 0;
	hdr->version = EVENT_VERSION;
	hdr->pad = 0;
	hdr->ktime_ns = bpf_ktime_get_ns();

	if (cap > EVENT_CAP_LEN)
		cap = EVENT_CAP_LEN;
	/* The size argument of bpf_skb_load_bytes must be bounded and non-zero:
	 * without the clamp above the verifier says "R4 unbounded memory
	 * access, use 'var &= const' or 'if (var < const)'", without this
	 * check "R4 invalid zero-sized read: u64=[0,127]".
	 */
	if (cap == 0)
		return;
	if (bpf_skb_load_bytes(ctx, 0, data, cap) == 0)
		hdr->len_cap = (__u16)cap;
}

static __always_inline void send_drop_notify(struct __sk_buff *ctx, __u8 reason,
					     __u16 line, __u8 file)
{
	struct drop_notify *n;

	n = event_reserve(sizeof(*n), EVENT_TYPE_DROP);
	if (!n)
		return;
	event_fill(ctx, &n->hdr, n->data, EVENT_TYPE_DROP, reason);
	n->src_label = ctx_load_meta(ctx, CB_SRC_LABEL);
	n->dst_label = ctx_load_meta(ctx, CB_DST_LABEL);
	n->dst_id = ctx_load_meta(ctx, CB_DST_ID);
	n->line = line;
	n->file = file;
	n->ext_error = (__u8)ctx_load_meta(ctx, CB_EXT_ERROR);
	n->ifindex = ctx->ifindex;
	n->pad = 0;
	bpf_ringbuf_submit(n, 0);
}

/* The node's trace level (TRACE_LEVEL_*). */
static __always_inline __u8 trace_level(void)
{
	const struct node_config *cfg = node_config();

	return cfg ? cfg->trace_level : TRACE_LEVEL_OFF;
}

/* Whether this packet gets a trace here (see the top of this file). Level 0
 * returns after one load and branch; level 1 adds a cb load.
 */
static __always_inline bool trace_wanted(struct __sk_buff *ctx)
{
	__u8 level = trace_level();

	if (level == TRACE_LEVEL_OFF)
		return false;
	if (level >= TRACE_LEVEL_ALL)
		return true;
	return ctx_load_meta(ctx, CB_CT_STATE) & CB_CT_REPORT;
}

/* The trace reason: the conntrack state of the packet, once a checkpoint
 * looked it up (policy.h stores it + 1 in the low byte of cb[CB_CT_STATE]),
 * else unknown. enum ct_status and the trace reasons share their values.
 */
static __always_inline __u8 trace_reason(struct __sk_buff *ctx)
{
	__u32 state = ctx_load_meta(ctx, CB_CT_STATE);

	return state ? (__u8)(state - 1) : TRACE_REASON_UNKNOWN;
}

/* Emits a trace event at observation point `point` if the trace level wants
 * one. `ifindex` is the device the packet goes to (or came from, for FROM_*
 * points).
 */
static __always_inline void send_trace_notify(struct __sk_buff *ctx, __u8 point,
					      __u32 src_label, __u32 dst_label,
					      __u16 dst_id, __u32 ifindex)
{
	struct trace_notify *n;

	if (!trace_wanted(ctx))
		return;
	n = event_reserve(sizeof(*n), EVENT_TYPE_TRACE);
	if (!n)
		return;
	event_fill(ctx, &n->hdr, n->data, EVENT_TYPE_TRACE, point);
	n->src_label = src_label;
	n->dst_label = dst_label;
	n->dst_id = dst_id;
	n->reason = trace_reason(ctx);
	n->flags = 0;
	n->ifindex = ifindex;
	n->orig_ip = 0;
	n->pad = 0;
	bpf_ringbuf_submit(n, 0);
}

/* Emits a debug record `subtype` with its arguments (see the DBG_* enum) at
 * trace level 2: one per packet, for `membrane trace` and verbose monitors.
 */
static __always_inline void send_debug_notify(struct __sk_buff *ctx, __u8 subtype,
					      __u32 arg1, __u32 arg2, __u32 arg3,
					      __u32 ifindex)
{
	struct debug_notify *n;

	if (trace_level() < TRACE_LEVEL_ALL)
		return;
	n = event_reserve(sizeof(*n), EVENT_TYPE_DEBUG);
	if (!n)
		return;
	event_fill(ctx, &n->hdr, n->data, EVENT_TYPE_DEBUG, subtype);
	n->arg1 = arg1;
	n->arg2 = arg2;
	n->arg3 = arg3;
	n->ifindex = ifindex;
	n->pad[0] = 0;
	n->pad[1] = 0;
	bpf_ringbuf_submit(n, 0);
}

/* Emits a policy verdict record: the caller (policy.h) decides when. */
static __always_inline void send_policy_verdict_notify(struct __sk_buff *ctx, __u32 remote_label,
						       __u32 cookie, __be16 dport, __u8 proto,
						       __u8 dir, __u16 ep_id, __u8 verdict,
						       __u8 match_type)
{
	struct policy_verdict_notify *n;

	n = event_reserve(sizeof(*n), EVENT_TYPE_POLICY_VERDICT);
	if (!n)
		return;
	event_fill(ctx, &n->hdr, n->data, EVENT_TYPE_POLICY_VERDICT, 0);
	n->remote_label = remote_label;
	n->cookie = cookie;
	n->dst_port = bpf_ntohs(dport);
	n->proto = proto;
	n->dir = dir;
	n->ep_id = ep_id;
	n->verdict = verdict;
	n->match_type = match_type;
	n->ifindex = ctx->ifindex;
	n->pad = 0;
	bpf_ringbuf_submit(n, 0);
}
