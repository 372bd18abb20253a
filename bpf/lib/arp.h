// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* ARP responder for the pod's gateway.
 *
 * The pod routes everything via the router IP, so it ARPs for it. arp_respond()
 * answers a valid Ethernet/IPv4 ARP request for any target except the pod's
 * own IP (so duplicate-address detection keeps working) with `mac` as the
 * sender MAC, rewriting the request into a reply in place and sending it back
 * out of the device it came from (bpf_redirect(ctx->ifindex, 0) on the
 * host-side veth = straight back into the pod). Anything else is passed
 * (TC_ACT_OK). Answering every target, not just the current router IP, keeps
 * old pods working if the router IP changes.
 */
#pragma once

#include "common.h"
#include "eth.h"

#define ARPHRD_ETHER_	1
#define ARPOP_REQUEST_	1
#define ARPOP_REPLY_	2

/* ARP for Ethernet/IPv4 (RFC 826), all fields network order. */
struct arp_eth {
	__be16 hrd;		/* hardware type: 1 = Ethernet */
	__be16 pro;		/* protocol type: 0x0800 */
	__u8 hln;		/* 6 */
	__u8 pln;		/* 4 */
	__be16 op;		/* 1 request, 2 reply */
	__u8 sha[6];
	__be32 sip;
	__u8 tha[6];
	__be32 tip;
} __attribute__((packed));

_Static_assert(sizeof(struct arp_eth) == 28, "ARP for Ethernet/IPv4 is 28 bytes");

/* The ARP header behind the Ethernet header, pulled into the linear area and
 * bounds-checked, if the packet is Ethernet/IPv4 ARP; NULL otherwise.
 */
static __always_inline struct arp_eth *arp_header(struct __sk_buff *ctx, struct ethhdr **ethp)
{
	const __u32 len = sizeof(struct ethhdr) + sizeof(struct arp_eth);
	void *data, *data_end;
	struct arp_eth *arp;

	if (!ctx_pull(ctx, len))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	arp = data + sizeof(struct ethhdr);
	/* Compare the pointers used below with data_end here, not only in
	 * ctx_pull (verifier: "invalid access to packet, off=14 size=1, ...").
	 */
	if ((void *)(arp + 1) > data_end)
		return NULL;
	if (arp->hrd != bpf_htons(ARPHRD_ETHER_) || arp->pro != bpf_htons(ETH_P_IP) ||
	    arp->hln != ETH_ALEN || arp->pln != 4)
		return NULL;
	*ethp = data;
	return arp;
}

static __always_inline int arp_respond(struct __sk_buff *ctx,
				       const volatile __u8 *mac, __be32 own_ip)
{
	struct ethhdr *eth;
	struct arp_eth *arp;
	__be32 sip, tip;

	arp = arp_header(ctx, &eth);
	if (!arp || arp->op != bpf_htons(ARPOP_REQUEST_))
		return TC_ACT_OK;

	tip = arp->tip;
	if (tip == own_ip)
		return TC_ACT_OK;
	sip = arp->sip;

	/* Request -> reply, in place. */
	mac_copy(eth->h_dest, arp->sha);
	mac_copy_volatile(eth->h_source, mac);
	arp->op = bpf_htons(ARPOP_REPLY_);
	mac_copy(arp->tha, arp->sha);
	arp->tip = sip;
	mac_copy_volatile(arp->sha, mac);
	arp->sip = tip;

	return bpf_redirect(ctx->ifindex, 0);
}
