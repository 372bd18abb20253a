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
 * (new ifindex) or changing the trace level does not reload every endpoint.
 * Layout (64 bytes, 8-byte aligned, offsets in brackets):
 *   [0] host_ifindex  [4] net_ifindex  [8] encap_ifindex  [12] router_ip
 *  [16] node_ip      [20] flags       [24] host_mac[6]+pad [32] net_mac[6]+pad
 *  [40] encap_mac[6]+pad              [48] route_mtu       [52] trace_level
 *  [53] pad4[3]      [56] native_ifindex   [60] reserved
 * Bit 0x02 of flags was NODE_F_TRACE_EVENTS (trace events on/off) before
 * trace_level replaced it; nothing sets or reads it any more.
 */
#define NODE_F_ENDPOINT_ROUTES	0x01	/* local pods are reached via the stack */
#define NODE_F_MASQUERADE	0x04	/* SNAT pod traffic leaving the cluster (nat.h) */
#define NODE_F_NATIVE_ROUTING	0x08	/* no tunnel: remote pods are routed over the native device */
#define NODE_F_LEGACY_HOST_ROUTING 0x10	/* no bpf_redirect_peer / bpf_redirect_neigh (local_delivery.h, fib.h) */

/* trace_level: which trace and debug events the programs send (drops and
 * policy denials are always sent; events.h decides per site):
 *   OFF   none: a trace site costs one load and one branch;
 *   CONN  per connection (Cilium's monitor aggregation "medium"): traces at
 *         the TO_* points of a packet a conntrack check found worth a report
 *         (a new connection, new TCP flags in its direction, or
 *         CT_REPORT_INTERVAL seconds since the direction's last report), and
 *         a policy verdict for each new connection;
 *   ALL   every packet at every point, and the debug records.
 */
#define TRACE_LEVEL_OFF		0
#define TRACE_LEVEL_CONN	1
#define TRACE_LEVEL_ALL		2

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
	__u8 trace_level;	/* TRACE_LEVEL_* */
	__u8 pad4[3];
	__u32 native_ifindex;	/* the underlay device (cil_from_netdev/cil_to_netdev); 0 = none */
	__u32 reserved;
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

/* --- cilium_policy_maps + cilium_policy_v2_<epID>: per-endpoint policy ---- */

/* One LPM trie per endpoint (Cilium's cilium_policy_v2_<epID>), created by the
 * agent, pinned as tc/globals/cilium_policy_v2_<epID 5 digits> and installed
 * in slot <epID> of the outer array cilium_policy_maps, so any program (the
 * sender's bpf_lxc, bpf_overlay, bpf_host) reaches the policy of the endpoint
 * it delivers to with one array lookup; Cilium tail-calls into the
 * destination's policy program instead, which costs a program per endpoint.
 * Slot HOST_ENDPOINT_ID (1) holds the host firewall's map, and only while a
 * host policy exists (policy.h).
 *
 * Key: prefixlen counts the bits after it. sec_label and egress (40 bits) are
 * always matched; protocol (8) and dport (16) follow, so a wildcard protocol
 * is prefixlen 40, a wildcard port 48, one port 64 and a port range a few
 * power-of-two blocks (48 + bits). "Any identity" is sec_label 0, found by a
 * second lookup. dport is the destination port for TCP/UDP/SCTP and the ICMP
 * type for ICMP, network order.
 */
#define POLICY_MAP_SIZE		16384
/* Endpoint ids run 1..4095 (src/datapath/constants.ts MAX_ENDPOINT_ID). */
#define POLICY_MAPS_SIZE	4096
#define POLICY_STATIC_PREFIX	40	/* sec_label + egress */
#define POLICY_PROTO_PREFIX	48	/* + protocol */
#define POLICY_FULL_PREFIX	64	/* + protocol + dport */

struct policy_key {
	__u32 prefixlen;	/* bpf_lpm_trie_key header */
	__u32 sec_label;	/* remote identity; 0 = any */
	__u8 egress;		/* 0 ingress, 1 egress (the endpoint's view) */
	__u8 protocol;		/* IPPROTO_*; 0 = any (prefixlen 40) */
	__be16 dport;		/* network order; ICMP: the type */
};

#define POLICY_F_DENY	0x01

/* cookie: the agent's tag for the rule the entry came from (listings); the
 * programs never read it.
 */
struct policy_entry {
	__u8 flags;		/* POLICY_F_* */
	__u8 pad[3];
	__u32 cookie;
};

_Static_assert(sizeof(struct policy_key) == 12, "policy_key is ABI");
_Static_assert(sizeof(struct policy_entry) == 8, "policy_entry is ABI");

/* The inner map template: the agent creates every endpoint's map with exactly
 * these parameters (the kernel refuses an inner map of another type, key or
 * value size, or flags). Sizes, not __type(): clang emits the key and value
 * structs of a definition reached only through __array() as BTF forward
 * declarations, and libbpf cannot size those ("can't determine key size").
 */
struct policy_map {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(key_size, sizeof(struct policy_key));
	__uint(value_size, sizeof(struct policy_entry));
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);	/* required for LPM tries */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__type(key, __u32);
	__uint(max_entries, POLICY_MAPS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct policy_map);
} cilium_policy_maps SEC(".maps");

/* Each endpoint's policy revision, by endpoint id: the agent increments it
 * after every change of the endpoint's policy map (and when it makes or
 * removes one). A conntrack entry remembers the revision and remote identity
 * its connection was last allowed at, so an established connection costs no
 * policy lookup until either changes (policy.h).
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, POLICY_MAPS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_policy_rev SEC(".maps");

/* --- cilium_ct4_global, cilium_ct_any4_global: connection tracking -------- */

/* Two global LRU tables as in Cilium: TCP in one, everything else in the
 * other, so a flood of UDP or ICMP flows evicts its own kind and never the TCP
 * connections whose replies depend on their entries. Entries are keyed by the
 * connection's original direction (initiator -> responder) plus the side that
 * made them: CT_F_OUT at the initiator's egress, CT_F_IN at the responder's
 * ingress (conntrack.h). Sizes are Cilium's smallest dynamic size for TCP and
 * half that for the rest (LRU maps are preallocated: ~140 bytes per entry).
 */
#define CT_MAP_SIZE_TCP		131072
#define CT_MAP_SIZE_ANY		65536

#define CT_F_OUT	0	/* made at the initiator's egress */
#define CT_F_IN		1	/* made at the responder's ingress */

struct ct4_tuple {
	__be32 saddr;		/* initiator */
	__be32 daddr;		/* responder */
	__be16 sport;		/* ICMP echo: 0 */
	__be16 dport;		/* ICMP echo: the echo id */
	__u8 proto;		/* IPPROTO_* */
	__u8 flags;		/* CT_F_OUT / CT_F_IN */
	__u16 pad;		/* 0 */
};

#define CT_ENTRY_F_RX_CLOSING	0x0001	/* FIN or RST from the responder */
#define CT_ENTRY_F_TX_CLOSING	0x0002	/* FIN or RST from the initiator */
#define CT_ENTRY_F_SEEN_NON_SYN	0x0004	/* the TCP handshake got past SYN */
#define CT_ENTRY_F_NAT		0x0008	/* masquerade (issue 9): nat_* are valid */

/* lifetime and created are seconds of CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns
 * / 1e9), the clock the agent's garbage collection reads too. Room kept for
 * masquerade: the address and port before and after translation and a flag;
 * and for accounting (packets, bytes: not maintained today, a per-packet write
 * to an entry two CPUs share costs more than it tells). policy_rev and
 * policy_remote cache the last policy verdict (cilium_policy_rev).
 * last_tx_report and last_rx_report (seconds, as Cilium's) rate-limit the
 * traces of a connection at trace level 1 to one per CT_REPORT_INTERVAL per
 * direction; written only when a report is due, so at most once per interval.
 */
struct ct_entry {
	__u64 packets;		/* reserved: accounting */
	__u64 bytes;		/* reserved: accounting */
	__u32 lifetime;		/* expires at this second */
	__u32 created;		/* made at this second */
	__u16 flags;		/* CT_ENTRY_F_* */
	__u8 tx_flags_seen;	/* TCP flags seen from the initiator */
	__u8 rx_flags_seen;	/* TCP flags seen from the responder */
	__u32 src_sec_id;	/* identity of the initiator */
	__be32 nat_orig_addr;	/* NAT: address before translation */
	__be32 nat_addr;	/* NAT: address after translation */
	__be16 nat_orig_port;	/* NAT: port before translation */
	__be16 nat_port;	/* NAT: port after translation */
	__u32 policy_rev;	/* the entry's endpoint's policy revision ... */
	__u32 policy_remote;	/* ... and the remote identity it was last allowed at */
	__u32 last_tx_report;	/* second a trace last reported the original direction ... */
	__u32 last_rx_report;	/* ... and the reply direction (trace level 1, conntrack.h) */
	__u32 reserved;		/* 0 */
};

_Static_assert(sizeof(struct ct4_tuple) == 16, "ct4_tuple is ABI");
_Static_assert(sizeof(struct ct_entry) == 64, "ct_entry is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct4_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAP_SIZE_TCP);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct4_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct4_tuple);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAP_SIZE_ANY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ct_any4_global SEC(".maps");

/* --- cilium_snat_v4_external: BPF masquerade (nat.h) --------------------- */

/* Two entries per translated connection, keyed by a conntrack tuple whose
 * flags say the direction (NAT_DIR_EGRESS 0: the pod's original tuple;
 * NAT_DIR_INGRESS 1: the reply tuple to the node IP). No lifetime of its own:
 * an entry lives as long as its connection's conntrack entry (the agent's GC
 * removes both). LRU so a full table evicts instead of failing.
 */
#define NAT_MAP_SIZE		65536

struct nat_entry {
	__u32 created;		/* seconds of CLOCK_MONOTONIC */
	__be32 to_addr;		/* egress: the node IP; ingress: the pod IP */
	__be16 to_port;		/* egress: the new port; ingress: the pod's port */
	__u16 pad;
	__u32 reserved;		/* 0 */
};

_Static_assert(sizeof(struct nat_entry) == 16, "nat_entry is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct4_tuple);
	__type(value, struct nat_entry);
	__uint(max_entries, NAT_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_snat_v4_external SEC(".maps");

/* --- cilium_ipv4_frag_datagrams: L4 ports of fragmented datagrams -------- */

/* Only the first fragment of a datagram carries its ports; conntrack and
 * policy need them for every fragment. The first fragment records them here,
 * the others look them up (as Cilium's fragment tracking).
 */
#define FRAG_MAP_SIZE		8192

struct ipv4_frag_id {
	__be32 daddr;
	__be32 saddr;
	__be16 id;		/* IPv4 identification */
	__u8 proto;
	__u8 pad;
};

struct ipv4_frag_l4 {
	__be16 sport;
	__be16 dport;
	__be16 policy_port;	/* what policy matches (ICMP: the type) */
	__u16 pad;
};

_Static_assert(sizeof(struct ipv4_frag_id) == 12, "ipv4_frag_id is ABI");
_Static_assert(sizeof(struct ipv4_frag_l4) == 8, "ipv4_frag_l4 is ABI");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ipv4_frag_id);
	__type(value, struct ipv4_frag_l4);
	__uint(max_entries, FRAG_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_ipv4_frag_datagrams SEC(".maps");

/* --- cilium_events: drop, trace, debug and policy verdict records -------- */

#define EVENTS_RINGBUF_SIZE	(1 << 20)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, EVENTS_RINGBUF_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_events SEC(".maps");

/* --- cilium_events_lost: records a full cilium_events could not take ------ */

/* Per event type (the record's type byte, EVENT_TYPE_* in events.h), per CPU:
 * a program only ever adds to its own CPU's slot, so the count is exact
 * without atomics; the agent sums the CPUs. A failed bpf_ringbuf_reserve is
 * the only way a record is lost (the ring never overwrites), so this counts
 * every lost record and nothing else.
 */
#define EVENTS_LOST_TYPES	8

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, EVENTS_LOST_TYPES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cilium_events_lost SEC(".maps");

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
