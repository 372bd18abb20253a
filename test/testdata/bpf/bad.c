// SPDX-License-Identifier: GPL-2.0
// Fixture: a program the verifier must reject (it dereferences a map value
// without the NULL check), to test VerifierError. A HASH map, because recent
// verifiers (seen on 6.18) know that an ARRAY lookup with a constant
// in-range key cannot return NULL and would accept the program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} values SEC(".maps");

SEC("tc")
int good_prog(struct __sk_buff *skb)
{
	return 0;
}

SEC("tc")
int bad_deref(struct __sk_buff *skb)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&values, &key);
	return *v == 42;
}

char _license[] SEC("license") = "GPL";
