// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Maps shared by every object, pinned by name, and their key/value structs.
 *
 * Every object includes this one header, so the definitions (type, sizes,
 * flags, max_entries) are identical and libbpf reuses the pinned map instead of
 * failing with "map parameter mismatch". The structs are ABI with the agent:
 * the codecs in src/datapath/maps/ encode them and a unit test compares their sizes and
 * field offsets with the BTF of the compiled objects. Change both together,
 * and rename the map (like cilium_ipcache -> cilium_ipcache_v2) when a layout
 * changes, so an old pin is never reused with a new layout.
 *
 * The per-attachment tail-call map (cilium_calls) is in tailcall.h, not here:
 * it is deliberately not pinned by name.
 */
#pragma once

#include "common.h"

/* --- cilium_ipcache_v2: prefix -> identity + tunnel endpoint ------------- */

#define IPCACHE_MAP_SIZE	512000
#define IPCACHE_FAMILY_IPV4	1
#define IPCACHE_FAMILY_IPV6	2
/* prefixlen counts the 32 static bits (cluster_id, pad, family) before addr */
#define IPCACHE_STATIC_PREFIX	32
#define IPCACHE_PREFIX_LEN_V4(plen)	(IPCACHE_STATIC_PREFIX + (plen))

struct ipcache_key {
	__u32 prefixlen;	/* bpf_lpm_trie_key header */
	__u16 cluster_id;
	__u8 pad1;
	__u8 family;
	__u8 addr[16];		/* IPv4 in the first 4 bytes, network order */
};

#define IPCACHE_F_SKIP_TUNNEL	0x01	/* reachable without the tunnel */
#define IPCACHE_F_HAS_TUNNEL_EP	0x02	/* tunnel_endpoint is valid */

/* Who wrote an entry (the agent's bookkeeping, never read by a program): each
 * writer reconciles and deletes only its own entries, and a restarted agent
 * knows them without guessing from prefix and identity. 0 = written before
 * owners existed. src/datapath/ipcache.ts decides the values.
 */
struct remote_endpoint_info {
	__u32 sec_identity;
	__be32 tunnel_endpoint;	/* node IP hosting the prefix, network order */
	__u8 owner;		/* IPCACHE_OWNER_*, see above */
	__u8 pad;
	__u8 key;		/* IPsec key index (unused) */
	__u8 flags;		/* IPCACHE_F_* */
};

_Static_assert(sizeof(struct ipcache_key) == 24, "ipcache_key is ABI");
_Static_assert(sizeof(struct remote_endpoint_info) == 12, "remote_endpoint_info is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct remote_endpoint_info);
	__uint(max_entries, IPCACHE_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);	/* required for LPM tries */
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ipcache_v2 SEC(".maps");

/* --- cilium_lxc: local endpoint IPs and local host IPs ------------------- */

#define ENDPOINTS_MAP_SIZE	65535
#define ENDPOINT_KEY_IPV4	1
#define ENDPOINT_KEY_IPV6	2

struct endpoint_key {
	__u8 addr[16];		/* IPv4 in the first 4 bytes, network order */
	__u8 family;		/* ENDPOINT_KEY_IPV4 */
	__u8 key;		/* always 0 */
	__u16 cluster_id;	/* always 0 */
};

#define ENDPOINT_F_HOST		0x01	/* a local host IP (router IP, node IPs) */
#define ENDPOINT_F_ATHOSTNS	0x02	/* endpoint lives in the host netns */

struct endpoint_info {
	__u32 ifindex;		/* host-side lxc veth */
	__u16 unused;
	__u16 lxc_id;		/* endpoint id */
	__u32 flags;		/* ENDPOINT_F_* */
	__u32 rt_info;		/* 0 */
	__u8 mac[6];		/* pod-side MAC (L2 destination on delivery) */
	__u8 pad1[2];
	__u8 node_mac[6];	/* host-side lxc MAC (L2 source on delivery) */
	__u8 pad2[2];
	__u32 sec_id;		/* security identity */
	__u32 parent_ifindex;
	__u32 pad[2];
};

_Static_assert(sizeof(struct endpoint_key) == 20, "endpoint_key is ABI");
_Static_assert(sizeof(struct endpoint_info) == 48, "endpoint_info is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, ENDPOINTS_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_lxc SEC(".maps");

/* --- cilium_node_cfg: node-wide values the agent writes at runtime ------- */

/* Kept in a map rather than in .rodata so that, e.g., recreating cilium_vxlan
 * (new ifindex) or turning trace events on does not reload every endpoint.
 * Layout (64 bytes, 8-byte aligned, offsets in brackets):
 *   [0] host_ifindex  [4] net_ifindex  [8] encap_ifindex  [12] router_ip
 *  [16] node_ip      [20] flags       [24] host_mac[6]+pad [32] net_mac[6]+pad
 *  [40] encap_mac[6]+pad              [48] route_mtu       [52] reserved[3]
 */
#define NODE_F_ENDPOINT_ROUTES	0x01	/* local pods are reached via the stack */
#define NODE_F_TRACE_EVENTS	0x02	/* emit trace events (drops are always sent) */

struct node_config {
	__u32 host_ifindex;	/* cilium_host */
	__u32 net_ifindex;	/* cilium_net */
	__u32 encap_ifindex;	/* cilium_vxlan; 0 = no tunnel device */
	__be32 router_ip;	/* network order */
	__be32 node_ip;		/* network order */
	__u32 flags;		/* NODE_F_* */
	__u8 host_mac[6];
	__u8 pad1[2];
	__u8 net_mac[6];
	__u8 pad2[2];
	__u8 encap_mac[6];
	__u8 pad3[2];
	__u32 route_mtu;
	__u32 reserved[3];
};

_Static_assert(sizeof(struct node_config) == 64, "node_config is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct node_config);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_node_cfg SEC(".maps");

/* --- cilium_metrics: forwards and drops per reason/direction/site -------- */

#define METRICS_MAP_SIZE	1024

struct metrics_key {
	__u8 reason;		/* 0 = forwarded, else drop reason */
	__u8 dir;		/* METRIC_INGRESS / METRIC_EGRESS */
	__u16 line;		/* source line of the drop / forward site */
	__u8 file;		/* source file id (source_files.h) */
	__u8 reserved[3];
};

struct metrics_value {
	__u64 count;
	__u64 bytes;
};

_Static_assert(sizeof(struct metrics_key) == 8, "metrics_key is ABI");
_Static_assert(sizeof(struct metrics_value) == 16, "metrics_value is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, struct metrics_key);
	__type(value, struct metrics_value);
	__uint(max_entries, METRICS_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_metrics SEC(".maps");

/* --- cilium_events: drop and trace notifications (events.h) -------------- */

#define EVENTS_RINGBUF_SIZE	(1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_events SEC(".maps");

/* The node configuration. Never NULL in practice (an array always holds index
 * 0). The 6.18 verifier knows that for a constant in-range key and accepts the
 * code without a check, but older verifiers reject the dereference ("R0
 * invalid mem access 'map_value_or_null'"), so callers keep the NULL check.
 */
static __always_inline const struct node_config *node_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&cilium_node_cfg, &zero);
}
