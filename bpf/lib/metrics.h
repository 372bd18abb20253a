// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Per-CPU packet and byte counters in cilium_metrics.
 *
 * metrics_update(reason, dir, line, file, bytes) adds one packet to the
 * counter for that key: reason 0 counts a forward, any other value a drop with
 * that reason. The map is per-CPU, so plain increments are race-free; the
 * agent sums the per-CPU values when it reads them.
 */
#pragma once

#include "common.h"
#include "maps.h"

#define METRIC_REASON_FORWARDED	0

static __always_inline void metrics_update(__u8 reason, __u8 dir, __u16 line,
					   __u8 file, __u32 bytes)
{
	/* Every byte of the key is a named member, so this initialiser leaves no
	 * uninitialised stack bytes: holes would split one counter into many
	 * keys (and, without CAP_PERFMON, fail verification with "invalid
	 * indirect read from stack").
	 */
	struct metrics_key key = {
		.reason = reason,
		.dir = dir,
		.line = line,
		.file = file,
	};
	struct metrics_value *val;

	val = bpf_map_lookup_elem(&cilium_metrics, &key);
	if (val) {
		val->count += 1;
		val->bytes += bytes;
	} else {
		struct metrics_value init = { .count = 1, .bytes = bytes };

		/* BPF_NOEXIST: if another CPU's entry raced us in, our packet is
		 * lost from the count rather than overwriting theirs.
		 */
		bpf_map_update_elem(&cilium_metrics, &key, &init, BPF_NOEXIST);
	}
}
