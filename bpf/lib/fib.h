// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* BPF host routing out of the native device (Cilium's fib_redirect_v4).
 *
 * fib_redirect_v4() routes a pod's packet that would otherwise go up the host
 * stack (world, and other nodes' pods in native routing): a FIB lookup in
 * the node's routing table (BPF_FIB_LOOKUP_SKIP_NEIGH: the route and its
 * next hop only) and, when the route leaves through the native device,
 * bpf_redirect_neigh() to that device with the next hop, so the kernel
 * resolves the neighbour and transmits without the IP forwarding path. The
 * packet still passes the device's egress hook (cil_to_netdev: masquerade).
 * Returns 0 when the stack should route it instead (legacy host routing, no
 * native device, a route through another device, TTL about to expire: the
 * stack answers with ICMP), else the redirect.
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "ipv4.h"
#include "events.h"

#ifndef AF_INET
#define AF_INET 2
#endif

static __always_inline int fib_redirect_v4(struct __sk_buff *ctx, struct iphdr *ip,
					   const struct node_config *cfg, __u32 src_label,
					   __u32 dst_label)
{
	struct bpf_fib_lookup fib = {};
	struct bpf_redir_neigh nh = {};
	long ret;

	if ((cfg->flags & NODE_F_LEGACY_HOST_ROUTING) || !cfg->native_ifindex)
		return 0;
	fib.family = AF_INET;
	fib.ifindex = ctx->ifindex;
	fib.ipv4_src = ip->saddr;
	fib.ipv4_dst = ip->daddr;
	ret = bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex != cfg->native_ifindex)
		return 0;
	if (ip->ttl <= 1)
		return 0;
	ipv4_dec_ttl(ip);
	nh.nh_family = AF_INET;
	nh.ipv4_nh = fib.ipv4_dst;	/* the gateway, or the destination on link */
	ctx_store_meta(ctx, CB_DST_LABEL, dst_label);
	send_trace_notify(ctx, TRACE_TO_NETWORK, src_label, dst_label, 0, fib.ifindex);
	return bpf_redirect_neigh(fib.ifindex, &nh, sizeof(nh), 0);
}
