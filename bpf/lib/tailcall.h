// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Tail calls through the object's own cilium_calls program array.
 *
 * cilium_calls is NOT pinned by name: the loader creates one per attachment,
 * pins it as cilium_calls_<epID>, cilium_calls_hostns_<id>,
 * cilium_calls_netdev_<ifindex> or cilium_calls_overlay_2, and fills slot N
 * with every program whose function name matches /^tail_(\d+)_/ before the
 * entry program is attached. __declare_tail(SLOT, name) produces that name.
 * tail_call_or_drop() jumps; if the slot is empty it falls through to a
 * DROP_MISSED_TAIL_CALL at the caller's line.
 */
#pragma once

#include "common.h"

#define CILIUM_CALL_SIZE		50
/* Slot numbers as in Cilium (bpf/lib/tailcall.h upstream). */
#define CILIUM_CALL_ARP			6
#define CILIUM_CALL_IPV4_FROM_LXC	7
#define CILIUM_CALL_IPV4_FROM_OVERLAY	7
#define CILIUM_CALL_IPV4_FROM_HOST	23

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
	__uint(max_entries, CILIUM_CALL_SIZE);
} cilium_calls SEC(".maps");

/* Two levels so that a macro slot (CILIUM_CALL_ARP) is expanded to its number
 * before ## pastes it: tail_6_handle_arp, not tail_CILIUM_CALL_ARP_handle_arp.
 */
#define __declare_tail(slot, name)	___declare_tail(slot, name)
#define ___declare_tail(slot, name)	\
	SEC("tc") int tail_##slot##_##name(struct __sk_buff *ctx)

/* bpf_tail_call_static keeps the slot an immediate so the JIT can patch a
 * direct jump; it only returns if the slot is empty.
 */
#define tail_call_or_drop(ctx, slot)					\
	({								\
		bpf_tail_call_static(ctx, &cilium_calls, slot);		\
		DROP(DROP_MISSED_TAIL_CALL);				\
	})
