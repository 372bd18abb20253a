// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* IPv4 header access and TTL handling.
 *
 * ipv4_headers() makes Ethernet + the fixed IPv4 header directly accessible
 * and returns pointers to both, or false for a truncated or malformed header.
 * ipv4_dec_ttl() decrements the TTL and fixes the header checksum in place.
 */
#pragma once

#include "common.h"

#define IPV4_HDR_OFF	sizeof(struct ethhdr)

static __always_inline bool ipv4_headers(struct __sk_buff *ctx, struct ethhdr **eth,
					 struct iphdr **ip)
{
	void *data, *data_end;
	struct iphdr *iph;

	if (!ctx_pull(ctx, IPV4_HDR_OFF + sizeof(struct iphdr)))
		return false;
	/* Reload after ctx_pull(): it may have called bpf_skb_pull_data. */
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	iph = data + IPV4_HDR_OFF;
	/* Every packet pointer needs a data_end comparison the verifier has
	 * seen ("invalid access to packet, off=14 size=1, R6(id=0,off=14,r=0)",
	 * "R6 offset is outside of the packet"). ctx_pull's comparison only
	 * covers these pointers if clang happens to reuse its loads of
	 * data/data_end, so compare again on the values used here.
	 */
	if ((void *)(iph + 1) > data_end)
		return false;
	if (iph->version != 4 || iph->ihl < 5)
		return false;
	*eth = data;
	*ip = iph;
	return true;
}

/* Decrements the TTL and updates the checksum incrementally (RFC 1624): the
 * TTL is the high byte of its 16-bit word, so the checksum gains 0x0100 in
 * network order, with the end-around carry folded back in.
 */
static __always_inline void ipv4_dec_ttl(struct iphdr *ip)
{
	__u32 check = (__u32)ip->check;

	check += (__u32)bpf_htons(0x0100);
	ip->check = (__sum16)(check + (check >= 0xFFFF));
	ip->ttl--;
}
