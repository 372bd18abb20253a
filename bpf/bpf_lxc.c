// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Pod endpoint programs, attached to the host-side lxc veth of every pod.
 *
 * cil_from_container (tc ingress = packets leaving the pod): ARP for the
 * gateway is answered in place (and the pod's MAC learned from its ARP); IPv4 is checked against the pod's own address
 * (anti-spoofing) and the pod's egress policy (policy.h, against the
 * destination's identity), and then delivered straight into a local peer pod
 * (whose ingress policy is enforced here, before the redirect), handed to
 * the host stack (a host address: the host firewall's ingress is enforced
 * here), or encapsulated towards the node hosting the destination.
 * cil_to_container (tc egress, only with endpoint routes): packets the kernel
 * routed to the pod, or redirected to it; the pod's ingress policy, then the
 * to-endpoint trace (the packet goes into the pod).
 * Per-endpoint values are load-time constants (include/config/lxc.h).
 */
#include <common.h>
#include <config/lxc.h>

#define EVENT_SOURCE_ID LXC_ID

#include <maps.h>
#include <identity.h>
#include <eth.h>
#include <ipv4.h>
#include <arp.h>
#include <lookup.h>
#include <local_delivery.h>
#include <encap.h>
#include <fib.h>
#include <conntrack.h>
#include <policy.h>
#include <tailcall.h>
#include <drop.h>

static __always_inline int from_container(struct __sk_buff *ctx)
{
	__be16 proto = eth_proto(ctx);

	send_trace_notify(ctx, TRACE_FROM_LXC, LXC_SECLABEL, 0, 0, ctx->ifindex);
	if (!proto)
		return DROP(DROP_INVALID);
	if (eth_proto_is_l2_len(proto))
		return DROP(DROP_UNSUPPORTED_L2);

	switch (proto) {
	case bpf_htons(ETH_P_IP):
		return tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_LXC);
	case bpf_htons(ETH_P_ARP):
		return tail_call_or_drop(ctx, CILIUM_CALL_ARP);
	default:
		/* IPv6 is disabled: everything else is an unsupported L3. */
		return DROP(DROP_UNKNOWN_L3);
	}
}

SEC("tc")
int cil_from_container(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	ctx_store_meta(ctx, CB_SRC_LABEL, LXC_SECLABEL);
	return ctx_finish(ctx, from_container(ctx), METRIC_EGRESS);
}

/* Delivery writes the destination MAC from this endpoint's cilium_lxc entry,
 * but a chained plugin (tuning) may change the pod's MAC after the ADD. The
 * pod says which MAC its address has in every ARP it sends (a gratuitous one
 * right after the change: the agent sets arp_notify on its interface; later
 * its requests for the gateway), so the entry follows that. Only the pod's
 * own address, in its own entry: a pod can redirect nothing but its own
 * traffic.
 */
static __always_inline void learn_pod_mac(struct __sk_buff *ctx)
{
	struct endpoint_key key = {};
	struct endpoint_info *ep;
	struct ethhdr *eth;
	struct arp_eth *arp;
	__be32 own = LXC_IPV4;

	arp = arp_header(ctx, &eth);
	if (!arp || arp->sip != own)
		return;
	__builtin_memcpy(key.addr, &own, sizeof(own));
	key.family = ENDPOINT_KEY_IPV4;
	ep = bpf_map_lookup_elem(&cilium_lxc, &key);
	if (!ep || ep->lxc_id != (__u16)LXC_ID || mac_equal(ep->mac, arp->sha))
		return;
	mac_copy(ep->mac, arp->sha);
}

__declare_tail(CILIUM_CALL_ARP, handle_arp)
{
	learn_pod_mac(ctx);
	return ctx_finish(ctx, arp_respond(ctx, LXC_IF_MAC, LXC_IPV4), METRIC_EGRESS);
}

static __always_inline int ipv4_from_lxc(struct __sk_buff *ctx)
{
	const struct node_config *cfg = node_config();
	const struct remote_endpoint_info *info;
	const struct endpoint_info *ep;
	__u32 src_label = LXC_SECLABEL;
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 dst_label;
	int ret;

	if (!cfg)
		return DROP(DROP_HOST_NOT_READY);
	if (!ipv4_headers(ctx, &eth, &ip))
		return DROP(DROP_INVALID);
	if (ip->saddr != LXC_IPV4)
		return DROP(DROP_INVALID_SIP);
	ret = ct_parse(ctx, ip, &pkt);
	if (ret < 0)
		return ret;

	ep = lookup_endpoint(ip->daddr);
	if (ep && (ep->flags & ENDPOINT_F_HOST)) {
		ctx_store_meta(ctx, CB_DST_LABEL, IDENTITY_HOST);
		ret = policy_check(ctx, &pkt, LXC_ID, src_label, IDENTITY_HOST, CT_EGRESS);
		if (ret < 0)
			return ret;
		/* Pods reach host addresses through the stack, never through
		 * cilium_host's cil_to_host: the host firewall's ingress is here.
		 */
		ret = host_policy_check(ctx, &pkt, src_label, CT_INGRESS);
		if (ret < 0)
			return ret;
		return pass_to_stack(ctx, src_label, IDENTITY_HOST);
	}
	if (ep) {
		ctx_store_meta(ctx, CB_DST_LABEL, ep->sec_id);
		ctx_store_meta(ctx, CB_DST_ID, ep->lxc_id);
		ret = policy_check(ctx, &pkt, LXC_ID, src_label, ep->sec_id, CT_EGRESS);
		if (ret < 0)
			return ret;
		/* With endpoint routes the kernel routes to the pod's own
		 * lxc device, where cil_to_container runs.
		 */
		if (cfg->flags & NODE_F_ENDPOINT_ROUTES)
			return pass_to_stack(ctx, src_label, ep->sec_id);
		return ipv4_local_delivery(ctx, eth, ip, ep, src_label, cfg, &pkt, true);
	}

	info = lookup_ipcache(ip->daddr);
	dst_label = info ? info->sec_identity : IDENTITY_WORLD;
	ctx_store_meta(ctx, CB_DST_LABEL, dst_label);
	ret = policy_check(ctx, &pkt, LXC_ID, src_label, dst_label, CT_EGRESS);
	if (ret < 0)
		return ret;
	if (ipcache_wants_tunnel(info))
		return encap_and_redirect(ctx, cfg, info->tunnel_endpoint, src_label,
					  dst_label);
	/* World, or a prefix reachable without the tunnel (native routing):
	 * out of the native device by BPF host routing, else the kernel routes.
	 */
	ret = fib_redirect_v4(ctx, ip, cfg, src_label, dst_label);
	if (ret)
		return ret;
	return pass_to_stack(ctx, src_label, dst_label);
}

__declare_tail(CILIUM_CALL_IPV4_FROM_LXC, ipv4_from_lxc)
{
	return ctx_finish(ctx, ipv4_from_lxc(ctx), METRIC_EGRESS);
}

static __always_inline int to_container(struct __sk_buff *ctx)
{
	__u32 src_label = identity_from_mark(ctx->mark, IDENTITY_WORLD);
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	int ret;

	ctx_store_meta(ctx, CB_DST_LABEL, LXC_SECLABEL);
	ctx_store_meta(ctx, CB_DST_ID, LXC_ID);
	if (eth_proto(ctx) != bpf_htons(ETH_P_IP)) {
		ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
		send_trace_notify(ctx, TRACE_FROM_STACK, src_label, LXC_SECLABEL,
				  (__u16)LXC_ID, ctx->ifindex);
		return TC_ACT_OK;
	}
	if (!ipv4_headers(ctx, &eth, &ip))
		return DROP(DROP_INVALID);
	src_label = stack_source_identity(ctx->mark, ip->saddr);
	ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
	send_trace_notify(ctx, TRACE_FROM_STACK, src_label, LXC_SECLABEL, (__u16)LXC_ID,
			  ctx->ifindex);
	ret = ct_parse(ctx, ip, &pkt);
	if (ret < 0)
		return ret;
	ret = policy_check(ctx, &pkt, LXC_ID, LXC_SECLABEL, src_label, CT_INGRESS);
	if (ret < 0)
		return ret;
	send_trace_notify(ctx, TRACE_TO_LXC, src_label, LXC_SECLABEL, (__u16)LXC_ID, ctx->ifindex);
	return TC_ACT_OK;
}

SEC("tc")
int cil_to_container(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, to_container(ctx), METRIC_INGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
