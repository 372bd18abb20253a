// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Delivery to a local pod and hand-over to the host stack.
 *
 * ipv4_local_delivery() routes a packet straight into a pod on this node:
 * enforce the pod's ingress policy (policy.h; with endpoint routes the
 * pod's cil_to_container does, which the redirect below passes through),
 * decrement the TTL (dropping at TTL <= 1), rewrite L2 (source = the pod's
 * host-side lxc MAC, destination = the pod's MAC), stamp the source identity
 * into skb->mark, trace TO_LXC and redirect into the pod without touching the
 * host stack (redirect_to_pod: bpf_redirect_peer or bpf_redirect).
 * pass_to_stack() stamps the identity, traces TO_STACK and returns TC_ACT_OK.
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "identity.h"
#include "ipv4.h"
#include "eth.h"
#include "events.h"
#include "policy.h"

/* Into the pod: BPF host routing (from a tc ingress hook, without endpoint
 * routes or legacy host routing) moves the packet straight to the ingress of
 * the pod's eth0 with bpf_redirect_peer: no second pass through the host-side
 * veth and the CPU backlog. The pod's stack must see it as for itself
 * (PACKET_HOST; a decapsulated packet's type was set for cilium_vxlan's MAC).
 * Otherwise (cilium_host's egress, where the helper does not work, or
 * cil_to_container must run on the lxc's egress) bpf_redirect to the lxc's
 * egress, which hands it to the peer.
 */
static __always_inline int redirect_to_pod(struct __sk_buff *ctx, const struct node_config *cfg,
					   __u32 ifindex, bool from_ingress)
{
	if (from_ingress && !(cfg->flags & (NODE_F_LEGACY_HOST_ROUTING | NODE_F_ENDPOINT_ROUTES))) {
		bpf_skb_change_type(ctx, 0 /* PACKET_HOST */);
		return bpf_redirect_peer(ifindex, 0);
	}
	return bpf_redirect(ifindex, 0);
}

/* `from_ingress`: the calling program runs at a tc ingress hook (lxc,
 * cilium_vxlan, the native device), where bpf_redirect_peer is allowed.
 */
static __always_inline int ipv4_local_delivery(struct __sk_buff *ctx, struct ethhdr *eth,
					       struct iphdr *ip,
					       const struct endpoint_info *ep,
					       __u32 src_label,
					       const struct node_config *cfg,
					       const struct ct_packet *p, bool from_ingress)
{
	__u32 ifindex = ep->ifindex;
	int ret;

	ctx_store_meta(ctx, CB_DST_LABEL, ep->sec_id);
	ctx_store_meta(ctx, CB_DST_ID, ep->lxc_id);
	if (!(cfg->flags & NODE_F_ENDPOINT_ROUTES)) {
		ret = policy_check(ctx, p, ep->lxc_id, ep->sec_id, src_label, CT_INGRESS);
		if (ret < 0)
			return ret;
	}
	if (ip->ttl <= 1)
		return DROP(DROP_TTL_EXCEEDED);
	ipv4_dec_ttl(ip);
	mac_copy(eth->h_source, ep->node_mac);
	mac_copy(eth->h_dest, ep->mac);
	set_identity_mark(ctx, src_label);
	send_trace_notify(ctx, TRACE_TO_LXC, src_label, ep->sec_id, ep->lxc_id, ifindex);
	return redirect_to_pod(ctx, cfg, ifindex, from_ingress);
}

static __always_inline int pass_to_stack(struct __sk_buff *ctx, __u32 src_label,
					 __u32 dst_label)
{
	ctx_store_meta(ctx, CB_DST_LABEL, dst_label);
	set_identity_mark(ctx, src_label);
	send_trace_notify(ctx, TRACE_TO_STACK, src_label, dst_label, 0, ctx->ifindex);
	return TC_ACT_OK;
}
