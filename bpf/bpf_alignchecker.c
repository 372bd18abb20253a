// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Layout-only object: never loaded or attached.
 *
 * clang's BPF backend emits BTF only for types reachable from functions,
 * global variables and map definitions. The map key/value structs are already
 * in every program object through the map definitions, but the ring-buffer
 * records (struct drop_notify, trace_notify, debug_notify,
 * policy_verdict_notify) are only used inside inlined helpers and would be missing, and so would the policy map's key and value. Declaring one variable of every ABI struct here
 * puts them all in bpf_alignchecker.o's BTF, which the unit test
 * test/unit/maps-btf-layout.test.ts compares with the TypeScript codecs.
 */
#include <common.h>
#include <maps.h>
#include <events.h>
#include <metrics.h>

#define DECLARE_LAYOUT(type, name) type name __attribute__((used))

DECLARE_LAYOUT(struct ipcache_key, layout_ipcache_key);
DECLARE_LAYOUT(struct remote_endpoint_info, layout_remote_endpoint_info);
DECLARE_LAYOUT(struct endpoint_key, layout_endpoint_key);
DECLARE_LAYOUT(struct endpoint_info, layout_endpoint_info);
DECLARE_LAYOUT(struct node_config, layout_node_config);
DECLARE_LAYOUT(struct metrics_key, layout_metrics_key);
DECLARE_LAYOUT(struct metrics_value, layout_metrics_value);
/* The policy map's key and value reach the program objects only as sizes
 * (the inner map definition, maps.h): this is their BTF.
 */
DECLARE_LAYOUT(struct policy_key, layout_policy_key);
DECLARE_LAYOUT(struct policy_entry, layout_policy_entry);
DECLARE_LAYOUT(struct ct4_tuple, layout_ct4_tuple);
DECLARE_LAYOUT(struct ct_entry, layout_ct_entry);
DECLARE_LAYOUT(struct nat_entry, layout_nat_entry);
DECLARE_LAYOUT(struct ipv4_frag_id, layout_ipv4_frag_id);
DECLARE_LAYOUT(struct ipv4_frag_l4, layout_ipv4_frag_l4);
DECLARE_LAYOUT(struct event_hdr, layout_event_hdr);
DECLARE_LAYOUT(struct drop_notify, layout_drop_notify);
DECLARE_LAYOUT(struct trace_notify, layout_trace_notify);
DECLARE_LAYOUT(struct debug_notify, layout_debug_notify);
DECLARE_LAYOUT(struct policy_verdict_notify, layout_policy_verdict_notify);

char _license[] SEC("license") = "Dual BSD/GPL";
