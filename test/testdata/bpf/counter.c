// SPDX-License-Identifier: GPL-2.0
// Fixture for the src/bpf tests: a tc program that counts packets in an
// ARRAY map at a slot chosen by a load-time constant, classifies the IPv4
// destination through an LPM trie, keeps per-CPU protocol counters and tail
// calls into cilium_calls slot 1.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Load-time constants (.rodata), patched by name through BpfObject.open({ constants }).
volatile const __u32 COUNTER_SLOT = 0;
volatile const __u64 MAGIC = 0x1122334455667788ULL;
volatile const __u8 NODE_MAC[6] = { 0x02, 0, 0, 0, 0, 0x01 };
volatile const __u16 LPM_MISS_RET = 77;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

// Same shape as counters, but pinned by name under the object's pinRoot so it
// outlives the loading process.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pinned_counters SEC(".maps");

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 64);
	__type(key, struct lpm_v4_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} lpm SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 128);
	__type(key, __u32);
	__type(value, __u64);
} hash SEC(".maps");

// Per-CPU packet count keyed by IP protocol.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u32);
} proto_count SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 8);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} cilium_calls SEC(".maps");

static __always_inline void bump(void *map, __u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(map, &slot);
	if (v)
		__sync_fetch_and_add(v, 1);
}

// Counts every packet and jumps to tail_1_mark (if slot 1 is filled).
SEC("tc")
int count_pkts(struct __sk_buff *skb)
{
	bump(&counters, COUNTER_SLOT);
	bump(&pinned_counters, COUNTER_SLOT);
	bpf_tail_call(skb, &cilium_calls, 1);
	return TC_ACT_OK;
}

// Tail call 1: proves the loader filled cilium_calls[1].
SEC("tc")
int tail_1_mark(struct __sk_buff *skb)
{
	bump(&counters, 7);
	return TC_ACT_OK;
}

// For BPF_PROG_TEST_RUN: returns the LPM value for the IPv4 destination,
// LPM_MISS_RET on a miss, 1 if the packet is not IPv4; counts protocols per CPU.
SEC("tc")
int classify(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return 1;

	__u32 proto = ip->protocol;
	__u32 one = 1, *cnt = bpf_map_lookup_elem(&proto_count, &proto);
	if (cnt)
		*cnt += 1;
	else
		bpf_map_update_elem(&proto_count, &proto, &one, BPF_NOEXIST);

	struct lpm_v4_key key = { .prefixlen = 32 };
	__builtin_memcpy(key.addr, &ip->daddr, 4);
	__u32 *val = bpf_map_lookup_elem(&lpm, &key);
	if (!val)
		return LPM_MISS_RET;
	return *val;
}

char _license[] SEC("license") = "GPL";
