// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* The single exit of every program: ctx_finish(ctx, verdict, dir).
 *
 * A drop verdict (< 0, built with DROP()) is unpacked into reason, line and
 * file id, counted in cilium_metrics, reported to cilium_events (with the
 * src/dst labels and destination endpoint id left in skb->cb[]) and turned
 * into TC_ACT_SHOT. Any other verdict is counted as a forward (reason 0) at
 * the line of the ctx_finish() call, which tells the programs apart, and
 * returned unchanged. Each program calls ctx_finish() exactly once.
 */
#pragma once

#include "common.h"
#include "events.h"
#include "metrics.h"

static __always_inline int __ctx_finish(struct __sk_buff *ctx, int verdict, __u8 dir,
					__u16 line, __u8 file)
{
	if (IS_DROP(verdict)) {
		__u8 reason = DROP_REASON_OF(verdict);
		__u16 drop_line = DROP_LINE_OF(verdict);
		__u8 drop_file = DROP_FILE_OF(verdict);

		metrics_update(reason, dir, drop_line, drop_file, ctx->len);
		send_drop_notify(ctx, reason, drop_line, drop_file);
		return TC_ACT_SHOT;
	}
	metrics_update(METRIC_REASON_FORWARDED, dir, line, file, ctx->len);
	return verdict;
}

#define ctx_finish(ctx, verdict, dir) \
	__ctx_finish(ctx, verdict, dir, __LINE__, __FILE_ID__)
