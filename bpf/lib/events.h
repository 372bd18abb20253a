// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Drop, debug and trace notifications written to the cilium_events ring buffer.
 *
 * Every record starts with struct event_hdr (type, subtype, source endpoint,
 * hash, original and captured length, version), followed by 20 bytes of
 * type-specific fields and EVENT_CAP_LEN bytes of which the first hdr.len_cap
 * are the start of the packet: all three records are 164 bytes with the packet
 * at offset 36. Records have a fixed size because bpf_ringbuf_reserve needs a
 * constant one. Drops are always sent; traces and debug records only when
 * node_config.flags has NODE_F_TRACE_EVENTS. A full ring buffer loses the
 * event, never the packet. src/datapath/maps/events.ts decodes these records.
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

enum {
	EVENT_TYPE_DROP = 1,
	EVENT_TYPE_DEBUG = 2,
	EVENT_TYPE_TRACE = 4,
};

/* Debug subtypes: Cilium's values (bpf/lib/dbg.h upstream), so monitor output
 * reads the same. Only the ones this datapath emits are listed.
 */
enum {
	DBG_ENCAP = 3,		/* arg1 = tunnel remote IPv4 (host order), arg2 = VNI */
};

#define EVENT_VERSION	1
#define EVENT_CAP_LEN	128

struct event_hdr {
	__u8 type;		/* EVENT_TYPE_* */
	__u8 subtype;		/* drop reason / trace observation point */
	__u16 source;		/* endpoint id of the emitting program */
	__u32 hash;		/* skb hash, groups the packets of a flow */
	__u32 len_orig;		/* packet length */
	__u16 len_cap;		/* valid bytes in data[] */
	__u8 version;		/* EVENT_VERSION */
	__u8 pad;
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
	__u8 data[EVENT_CAP_LEN];
};

struct debug_notify {
	struct event_hdr hdr;
	__u32 arg1;		/* meaning depends on the DBG_* subtype */
	__u32 arg2;
	__u32 arg3;
	__u32 ifindex;		/* device the packet goes to */
	__u32 pad;
	__u8 data[EVENT_CAP_LEN];
};

_Static_assert(sizeof(struct event_hdr) == 16, "event_hdr is ABI");
_Static_assert(sizeof(struct drop_notify) == 36 + EVENT_CAP_LEN, "drop_notify is ABI");
_Static_assert(sizeof(struct trace_notify) == 36 + EVENT_CAP_LEN, "trace_notify is ABI");
_Static_assert(sizeof(struct debug_notify) == 36 + EVENT_CAP_LEN, "debug_notify is ABI");

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

	n = bpf_ringbuf_reserve(&cilium_events, sizeof(*n), 0);
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
	bpf_ringbuf_submit(n, 0);
}

/* True when the agent asked for trace events (node_config flag). */
static __always_inline bool trace_enabled(void)
{
	const struct node_config *cfg = node_config();

	return cfg && (cfg->flags & NODE_F_TRACE_EVENTS);
}

/* The trace reason: the conntrack state of the packet, once a checkpoint
 * looked it up (policy.h stores it + 1 in cb[CB_CT_STATE]), else unknown.
 * enum ct_status and the trace reasons share their values.
 */
static __always_inline __u8 trace_reason(struct __sk_buff *ctx)
{
	__u32 state = ctx_load_meta(ctx, CB_CT_STATE);

	return state ? (__u8)(state - 1) : TRACE_REASON_UNKNOWN;
}

/* Emits a trace event at observation point `point`. `ifindex` is the device
 * the packet goes to (or came from, for FROM_* points).
 */
static __always_inline void send_trace_notify(struct __sk_buff *ctx, __u8 point,
					      __u32 src_label, __u32 dst_label,
					      __u16 dst_id, __u32 ifindex)
{
	struct trace_notify *n;

	if (!trace_enabled())
		return;
	n = bpf_ringbuf_reserve(&cilium_events, sizeof(*n), 0);
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
	bpf_ringbuf_submit(n, 0);
}

/* Emits a debug record `subtype` with its arguments (see the DBG_* enum),
 * under the same switch as trace events.
 */
static __always_inline void send_debug_notify(struct __sk_buff *ctx, __u8 subtype,
					      __u32 arg1, __u32 arg2, __u32 arg3,
					      __u32 ifindex)
{
	struct debug_notify *n;

	if (!trace_enabled())
		return;
	n = bpf_ringbuf_reserve(&cilium_events, sizeof(*n), 0);
	if (!n)
		return;
	event_fill(ctx, &n->hdr, n->data, EVENT_TYPE_DEBUG, subtype);
	n->arg1 = arg1;
	n->arg2 = arg2;
	n->arg3 = arg3;
	n->ifindex = ifindex;
	n->pad = 0;
	bpf_ringbuf_submit(n, 0);
}
