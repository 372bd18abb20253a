// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* VXLAN encapsulation through the flow-based (collect_md) cilium_vxlan.
 *
 * encap_and_redirect() attaches tunnel metadata to the skb (remote = the
 * node IP from the ipcache, VNI = the source identity, TTL 64, outer UDP
 * checksum 0) and redirects to the egress of cilium_vxlan; the kernel VXLAN
 * driver then builds the outer Ethernet/IPv4/UDP/VXLAN headers. Identity HOST
 * must never go on the wire: callers pass REMOTE_NODE instead.
 * The key leaves no trace in the packet (the driver consumes it), so with
 * trace events on a DBG_ENCAP debug record reports what was set: remote IPv4
 * and VNI, before the TO_OVERLAY trace.
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "identity.h"
#include "events.h"

#define IPDEFTTL_	64

static __always_inline int encap_and_redirect(struct __sk_buff *ctx,
					      const struct node_config *cfg,
					      __be32 tunnel_endpoint, __u32 src_label,
					      __u32 dst_label)
{
	struct bpf_tunnel_key key = {};
	__u32 encap_ifindex = cfg->encap_ifindex;
	long err;

	ctx_store_meta(ctx, CB_DST_LABEL, dst_label);
	/* Two sites, two lines: a missing tunnel device vs. an ipcache entry
	 * flagged has_tunnel_ep without an address.
	 */
	if (!encap_ifindex)
		return DROP(DROP_NO_TUNNEL_ENDPOINT);
	if (!tunnel_endpoint)
		return DROP(DROP_NO_TUNNEL_ENDPOINT);

	key.tunnel_id = src_label & IDENTITY_MASK;
	key.remote_ipv4 = bpf_ntohl(tunnel_endpoint);	/* host order */
	key.tunnel_ttl = IPDEFTTL_;
	err = bpf_skb_set_tunnel_key(ctx, &key, sizeof(key), BPF_F_ZERO_CSUM_TX);
	if (err < 0)
		return DROP_EXT(ctx, DROP_WRITE_ERROR, -err);

	send_debug_notify(ctx, DBG_ENCAP, key.remote_ipv4, key.tunnel_id, 0, encap_ifindex);
	send_trace_notify(ctx, TRACE_TO_OVERLAY, src_label, dst_label, 0, encap_ifindex);
	return bpf_redirect(encap_ifindex, 0);
}
