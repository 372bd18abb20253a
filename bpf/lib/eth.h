// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Ethernet header access and MAC rewriting.
 *
 * eth_proto() returns the ethertype (network order) after bounds-checking the
 * header, or 0 for a frame too short or carrying an 802.3 length instead of an
 * ethertype. mac_copy() / mac_copy_volatile() write a 6-byte MAC into the
 * packet (the latter from a load-time constant in .rodata).
 */
#pragma once

#include "common.h"

/* The ethertype of the frame, network order; 0 if the frame is shorter than
 * an Ethernet header; a value < ETH_P_802_3_MIN is an 802.3 length field.
 */
static __always_inline __be16 eth_proto(struct __sk_buff *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
	return eth->h_proto;
}

static __always_inline bool eth_proto_is_l2_len(__be16 proto)
{
	return bpf_ntohs(proto) < ETH_P_802_3_MIN;
}

static __always_inline bool mac_equal(const __u8 *a, const __u8 *b)
{
	return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] &&
	       a[3] == b[3] && a[4] == b[4] && a[5] == b[5];
}

static __always_inline void mac_copy(__u8 *dst, const __u8 *src)
{
	/* Bytewise on purpose: packet and map value are not 4-byte aligned
	 * at these offsets, and byte stores need no alignment assumptions.
	 */
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	dst[5] = src[5];
}

/* Copies a MAC from a `volatile const` load-time constant: the volatile reads
 * stop clang from folding the default (all zero) value into the code, so the
 * value the loader patches into .rodata is what gets written.
 */
static __always_inline void mac_copy_volatile(__u8 *dst, const volatile __u8 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
	dst[4] = src[4];
	dst[5] = src[5];
}
