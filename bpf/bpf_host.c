// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Host device programs: cilium_host and its veth peer cilium_net.
 *
 * cil_from_host (cilium_host tc egress = host stack -> BPF): packets the
 * kernel routed to a pod CIDR via cilium_host. Local pods are entered
 * directly, local host IPs are turned around to cilium_net as PACKET_HOST,
 * remote pods are encapsulated with identity REMOTE_NODE, and anything else is
 * dropped as unroutable so it cannot loop through cilium_host. The host
 * firewall's egress (policy.h; only while a host policy exists) applies to
 * what the host itself sends; a local pod's ingress policy to everything
 * delivered into it.
 * cil_to_host (cilium_host and cilium_net tc ingress = BPF -> host stack):
 * recovers the source identity from skb->mark, enforces the host firewall's
 * ingress for what comes from the overlay, traces and passes.
 */
#include <common.h>
#include <config/host.h>

#define EVENT_SOURCE_ID HOST_EP_ID

#include <maps.h>
#include <identity.h>
#include <eth.h>
#include <ipv4.h>
#include <lookup.h>
#include <local_delivery.h>
#include <encap.h>
#include <conntrack.h>
#include <policy.h>
#include <nat.h>
#include <tailcall.h>
#include <drop.h>

static __always_inline int from_host(struct __sk_buff *ctx)
{
	/* Host-originated packets carry no mark (HOST); packets a pod sent
	 * through the stack keep the identity bpf_lxc stamped.
	 */
	__u32 src_label = identity_from_mark(ctx->mark, IDENTITY_HOST);

	ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
	send_trace_notify(ctx, TRACE_FROM_HOST, src_label, 0, 0, ctx->ifindex);
	if (eth_proto(ctx) != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	return tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_HOST);
}

SEC("tc")
int cil_from_host(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, from_host(ctx), METRIC_EGRESS);
}

static __always_inline int ipv4_from_host(struct __sk_buff *ctx)
{
	const struct node_config *cfg = node_config();
	const struct remote_endpoint_info *info;
	const struct endpoint_info *ep;
	__u32 src_label = ctx_load_meta(ctx, CB_SRC_LABEL);
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	int ret;

	if (!cfg)
		return DROP(DROP_HOST_NOT_READY);
	if (!ipv4_headers(ctx, &eth, &ip))
		return DROP(DROP_INVALID);

	ep = lookup_endpoint(ip->daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST)) {
		ctx_store_meta(ctx, CB_DST_LABEL, ep->sec_id);
		ctx_store_meta(ctx, CB_DST_ID, ep->lxc_id);
		ret = ct_parse(ctx, ip, &pkt);
		if (ret < 0)
			return ret;
		/* A pod's packet routed back through cilium_host (its identity
		 * in the mark) is not the host's: its egress was checked.
		 */
		if (src_label == IDENTITY_HOST) {
			ret = host_policy_check(ctx, &pkt, ep->sec_id, CT_EGRESS);
			if (ret < 0)
				return ret;
		}
		return ipv4_local_delivery(ctx, eth, ip, ep, src_label, cfg, &pkt, false);
	}
	if (ep) {
		/* A local host IP: make the frame PACKET_HOST on cilium_net,
		 * whose MAC the kernel did not use (NOARP cilium_host puts its
		 * own MAC as destination). Handed to the host through the
		 * veth pair: to-host here, to-stack in cil_to_host on cilium_net.
		 */
		mac_copy(eth->h_dest, cfg->net_mac);
		ctx_store_meta(ctx, CB_DST_LABEL, IDENTITY_HOST);
		send_trace_notify(ctx, TRACE_TO_HOST, src_label, IDENTITY_HOST, 0,
				  cfg->net_ifindex);
		return TC_ACT_OK;
	}

	info = lookup_ipcache(ip->daddr);
	if (info)
		ctx_store_meta(ctx, CB_DST_LABEL, info->sec_identity);
	if (ipcache_wants_tunnel(info)) {
		if (src_label == IDENTITY_HOST) {
			ret = ct_parse(ctx, ip, &pkt);
			if (ret < 0)
				return ret;
			ret = host_policy_check(ctx, &pkt, info->sec_identity, CT_EGRESS);
			if (ret < 0)
				return ret;
		}
		return encap_and_redirect(ctx, cfg, info->tunnel_endpoint,
					  src_label == IDENTITY_HOST ?
					  IDENTITY_REMOTE_NODE : src_label,
					  info->sec_identity);
	}
	/* No pod behind this address: passing it on would send it back to
	 * cilium_host through the pod CIDR route.
	 */
	return DROP(DROP_UNROUTABLE);
}

__declare_tail(CILIUM_CALL_IPV4_FROM_HOST, ipv4_from_host)
{
	return ctx_finish(ctx, ipv4_from_host(ctx), METRIC_EGRESS);
}

/* Into the host stack: from the overlay (bpf_overlay redirects to
 * cilium_host's ingress with the sender's identity in the mark) or turned
 * around by cil_from_host (cilium_net's ingress). Pods' packets for host
 * addresses never come here (bpf_lxc checks them).
 */
static __always_inline int to_host(struct __sk_buff *ctx)
{
	__u32 src_label = identity_from_mark(ctx->mark, IDENTITY_WORLD);
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	int ret;

	ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
	ctx_store_meta(ctx, CB_DST_LABEL, IDENTITY_HOST);
	if (eth_proto(ctx) == bpf_htons(ETH_P_IP)) {
		if (!ipv4_headers(ctx, &eth, &ip))
			return DROP(DROP_INVALID);
		src_label = stack_source_identity(ctx->mark, ip->saddr);
		ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
		if (src_label != IDENTITY_HOST) {
			ret = ct_parse(ctx, ip, &pkt);
			if (ret < 0)
				return ret;
			ret = host_policy_check(ctx, &pkt, src_label, CT_INGRESS);
			if (ret < 0)
				return ret;
		}
	}
	send_trace_notify(ctx, TRACE_TO_STACK, src_label, IDENTITY_HOST, 0, ctx->ifindex);
	return TC_ACT_OK;
}

SEC("tc")
int cil_to_host(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, to_host(ctx), METRIC_INGRESS);
}

/* Identities CIDR rules allocate (src/policy/labels.ts CIDR_IDENTITY_BASE):
 * addresses outside the cluster, like world.
 */
#define CIDR_IDENTITY_BASE	(1U << 24)

/* Whether `daddr` is outside every pod CIDR and node IP: no local endpoint or
 * host address, and an ipcache entry that is world (or a CIDR rule's
 * identity) without a tunnel endpoint. Remote pod CIDRs are world with their
 * node as tunnel endpoint; remote node IPs are remote-node.
 */
static __always_inline bool outside_cluster(__be32 daddr)
{
	const struct remote_endpoint_info *info;

	if (lookup_endpoint(daddr))
		return false;
	info = lookup_ipcache(daddr);
	if (!info)
		return true;
	if (info->flags & IPCACHE_F_HAS_TUNNEL_EP)
		return false;
	return info->sec_identity == IDENTITY_WORLD || info->sec_identity >= CIDR_IDENTITY_BASE;
}

/* Native device ingress: replies of masqueraded connections are translated
 * back (nat.h) and, like everything else for a local pod arriving here
 * (native routing: other nodes' pods and nodes), delivered straight into the
 * pod after its ingress policy, with the source identity from the ipcache
 * (a host result is ignored: nothing from outside carries this host's
 * identity). Everything else, VXLAN included, goes to the stack untouched.
 */
static __always_inline int from_netdev(struct __sk_buff *ctx)
{
	const struct node_config *cfg = node_config();
	const struct remote_endpoint_info *info;
	const struct endpoint_info *ep;
	__u32 src_label = IDENTITY_WORLD;
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	bool parsed = false;
	int ret;

	ctx_store_meta(ctx, CB_SRC_LABEL, IDENTITY_WORLD);
	if (eth_proto(ctx) != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	/* Never cut the node off: without a config everything passes. */
	if (!cfg)
		return TC_ACT_OK;
	if (!ipv4_headers(ctx, &eth, &ip))
		return TC_ACT_OK;
	if (ip->daddr == cfg->node_ip) {
		if (!(cfg->flags & NODE_F_MASQUERADE) || !nat_maybe_reply(ctx, ip))
			return TC_ACT_OK;
		if (ct_parse(ctx, ip, &pkt) < 0)
			return TC_ACT_OK;
		ret = rev_snat_v4(ctx, ip, &pkt);
		if (ret <= 0)
			return ret < 0 ? ret : TC_ACT_OK;
		parsed = true;
		/* A fresh ctx for the verifier: clang would reuse &ctx->data
		 * from before the rewrite ("dereference of modified ctx ptr").
		 */
		asm volatile("" : "+r"(ctx));
		if (!ipv4_headers(ctx, &eth, &ip))
			return DROP(DROP_INVALID);
	}
	ep = lookup_endpoint(ip->daddr);
	if (!ep)
		return TC_ACT_OK;
	info = lookup_ipcache(ip->saddr);
	if (ep->flags & ENDPOINT_F_HOST) {
		/* Native routing: what would have come through the tunnel
		 * (other nodes' pods and router IPs) gets the host firewall's
		 * ingress here, as cil_to_host gives it in tunnel mode.
		 */
		if (!(cfg->flags & NODE_F_NATIVE_ROUTING) || parsed || !info ||
		    !(info->flags & IPCACHE_F_HAS_TUNNEL_EP))
			return TC_ACT_OK;
		src_label = info->sec_identity;
		ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
		ctx_store_meta(ctx, CB_DST_LABEL, IDENTITY_HOST);
		ret = ct_parse(ctx, ip, &pkt);
		if (ret < 0)
			return ret;
		ret = host_policy_check(ctx, &pkt, src_label, CT_INGRESS);
		if (ret < 0)
			return ret;
		set_identity_mark(ctx, src_label);
		return TC_ACT_OK;
	}
	if (info && info->sec_identity != IDENTITY_HOST)
		src_label = info->sec_identity;
	ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
	send_trace_notify(ctx, TRACE_FROM_NETWORK, src_label, 0, 0, ctx->ifindex);
	if (!parsed) {
		ret = ct_parse(ctx, ip, &pkt);
		if (ret < 0)
			return ret;
	}
	return ipv4_local_delivery(ctx, eth, ip, ep, src_label, cfg, &pkt, true);
}

SEC("tc")
int cil_from_netdev(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, from_netdev(ctx), METRIC_INGRESS);
}

/* The host firewall's egress for a host packet to another node's pod or
 * router IP leaving over the native device (native routing), so the replies
 * are CT_REPLY at cil_from_netdev's ingress check.
 */
static __always_inline int host_egress_native(struct __sk_buff *ctx, struct iphdr *ip)
{
	const struct remote_endpoint_info *info = lookup_ipcache(ip->daddr);
	struct ct_packet pkt;
	int ret;

	if (!info || !(info->flags & IPCACHE_F_HAS_TUNNEL_EP))
		return TC_ACT_OK;
	ctx_store_meta(ctx, CB_SRC_LABEL, IDENTITY_HOST);
	ctx_store_meta(ctx, CB_DST_LABEL, info->sec_identity);
	ret = ct_parse(ctx, ip, &pkt);
	if (ret < 0)
		return ret;
	ret = host_policy_check(ctx, &pkt, info->sec_identity, CT_EGRESS);
	if (ret < 0)
		return ret;
	return TC_ACT_OK;
}

/* Native device egress: a local pod's packet for an address outside the
 * cluster leaves with the node IP as its source (masquerade, nat.h). The
 * node's own packets (VXLAN included) pass at the first compare.
 */
static __always_inline int to_netdev(struct __sk_buff *ctx)
{
	const struct node_config *cfg = node_config();
	const struct endpoint_info *ep;
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 src_label;
	int ret;

	if (eth_proto(ctx) != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (!cfg || !cfg->node_ip)
		return TC_ACT_OK;
	if (!ipv4_headers(ctx, &eth, &ip))
		return TC_ACT_OK;
	if (ip->saddr == cfg->node_ip) {
		/* Native routing: the host's packets to other nodes' pods leave
		 * here, not through cil_from_host: the host firewall's egress.
		 */
		if (cfg->flags & NODE_F_NATIVE_ROUTING)
			return host_egress_native(ctx, ip);
		return TC_ACT_OK;
	}
	if (!(cfg->flags & NODE_F_MASQUERADE))
		return TC_ACT_OK;
	ep = lookup_endpoint(ip->saddr);
	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return TC_ACT_OK;
	if (!outside_cluster(ip->daddr))
		return TC_ACT_OK;
	src_label = ep->sec_id;
	ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
	ctx_store_meta(ctx, CB_DST_LABEL, IDENTITY_WORLD);
	ret = ct_parse(ctx, ip, &pkt);
	if (ret < 0)
		return ret;
	ret = snat_v4(ctx, ip, &pkt, cfg->node_ip);
	if (ret < 0)
		return ret;
	send_trace_notify(ctx, TRACE_TO_NETWORK, src_label, IDENTITY_WORLD, 0, ctx->ifindex);
	return TC_ACT_OK;
}

SEC("tc")
int cil_to_netdev(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, to_netdev(ctx), METRIC_EGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
