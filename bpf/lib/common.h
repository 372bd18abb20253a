// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Basic types and conventions shared by every program.
 *
 * A program's verdict is an int: a TC action (TC_ACT_OK, TC_ACT_SHOT,
 * TC_ACT_REDIRECT from bpf_redirect) when >= 0, or a drop when < 0. A drop is
 * built with DROP(reason), which packs the drop reason, the source line and the
 * source file id of the drop *site* into the negative value, so a single drop
 * exit per program (ctx_finish() in drop.h) can report exactly where the packet
 * was dropped without threading extra state through every helper. Helpers
 * never return a raw negative errno; they translate it with DROP().
 *
 * State that must survive a tail call travels in skb->cb[] (CB_* slots below),
 * which every entry program clears first.
 */
#pragma once

#include <stdbool.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "source_files.h"
#include "drop_reasons.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* skb->cb[] slots carried across tail calls and read by the drop exit. */
enum {
	CB_SRC_LABEL = 0,	/* source security identity */
	CB_DST_LABEL = 1,	/* destination security identity, once known */
	CB_DST_ID = 2,		/* destination endpoint id, once known */
	CB_EXT_ERROR = 3,	/* extended error for the drop event (e.g. helper errno) */
	CB_CT_STATE = 4,	/* conntrack state + 1 once known (0: none), for traces */
};

/* Metric / event direction, as in Cilium's METRIC_INGRESS / METRIC_EGRESS. */
enum {
	METRIC_INGRESS = 1,
	METRIC_EGRESS = 2,
};

/* Packs reason (8 bits), line (16 bits) and file id (7 bits) into a negative
 * verdict. __LINE__ and __FILE_NAME__ expand where DROP() is written, so a drop
 * decided inside a lib/ header reports that header's line and file id.
 */
#define DROP(reason)							\
	(-(int)(((__u32)(reason) & 0xff) |				\
		(((__u32)__LINE__ & 0xffff) << 8) |			\
		(((__u32)__FILE_ID__ & 0x7f) << 24)))

/* Same, and records an extended error (e.g. the helper's errno) for the event. */
#define DROP_EXT(ctx, reason, ext)					\
	({ ctx_store_meta(ctx, CB_EXT_ERROR, (__u32)(ext)); DROP(reason); })

#define IS_DROP(verdict)	((verdict) < 0)
#define DROP_REASON_OF(v)	((__u8)((__u32)-(v) & 0xff))
#define DROP_LINE_OF(v)		((__u16)(((__u32)-(v) >> 8) & 0xffff))
#define DROP_FILE_OF(v)		((__u8)(((__u32)-(v) >> 24) & 0x7f))

/* skb->cb[] accessors. The empty asm makes ctx opaque to clang at each
 * access, so it cannot keep &ctx->cb[0] in a register and store through it
 * later: the verifier only accepts ctx accesses at a constant offset from the
 * unmodified ctx pointer ("dereference of modified ctx ptr R1 off=48
 * disallowed").
 */
static __always_inline void ctx_store_meta(struct __sk_buff *ctx, const __u32 slot,
					   __u32 value)
{
	asm volatile("" : "+r"(ctx));
	ctx->cb[slot] = value;
}

static __always_inline __u32 ctx_load_meta(struct __sk_buff *ctx, const __u32 slot)
{
	asm volatile("" : "+r"(ctx));
	return ctx->cb[slot];
}

/* Zeroes the cb[] slots: the qdisc layer may leave stale data there. */
static __always_inline void ctx_clear_meta(struct __sk_buff *ctx)
{
	ctx_store_meta(ctx, 0, 0);
	ctx_store_meta(ctx, 1, 0);
	ctx_store_meta(ctx, 2, 0);
	ctx_store_meta(ctx, 3, 0);
	ctx_store_meta(ctx, 4, 0);
}

/* Makes the first len bytes of the packet directly accessible, pulling them
 * into the linear area if they sit in page fragments (e.g. after VXLAN decap).
 * Returns true on success. Callers must (re)load ctx->data/ctx->data_end
 * *after* this call and bounds-check again: bpf_skb_pull_data invalidates all
 * packet pointers (verifier: "R9 invalid mem access 'scalar'" when an old
 * pointer is reused) and the verifier does not learn the length from the
 * return value.
 */
static __always_inline bool ctx_pull(struct __sk_buff *ctx, __u32 len)
{
	if ((void *)(long)ctx->data + len <= (void *)(long)ctx->data_end)
		return true;
	if (len > ctx->len)
		return false;
	bpf_skb_pull_data(ctx, len);
	return (void *)(long)ctx->data + len <= (void *)(long)ctx->data_end;
}
