// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Overlay programs, attached to the flow-based VXLAN device cilium_vxlan.
 *
 * cil_from_overlay (tc ingress = decapsulated packets from other nodes): the
 * source identity is the VNI (tunnel_id); a remote claiming HOST is dropped.
 * Packets for a local pod are delivered straight into it, after its ingress
 * policy (policy.h) with the VNI as the source identity; everything else is
 * for this host and is redirected to the ingress of cilium_host (cil_to_host),
 * traced as to-host.
 * cil_to_overlay (tc egress): counted and passed to the VXLAN driver.
 */
#include <common.h>
#include <maps.h>
#include <identity.h>
#include <eth.h>
#include <ipv4.h>
#include <lookup.h>
#include <local_delivery.h>
#include <conntrack.h>
#include <policy.h>
#include <tailcall.h>
#include <drop.h>

static __always_inline int from_overlay(struct __sk_buff *ctx)
{
	struct bpf_tunnel_key key = {};
	__u32 src_label;
	long err;

	if (eth_proto(ctx) != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	err = bpf_skb_get_tunnel_key(ctx, &key, sizeof(key), 0);
	if (err < 0)
		return DROP_EXT(ctx, DROP_NO_TUNNEL_KEY, -err);
	src_label = key.tunnel_id & IDENTITY_MASK;
	ctx_store_meta(ctx, CB_SRC_LABEL, src_label);
	/* No remote node may claim to be this host. */
	if (src_label == IDENTITY_HOST)
		return DROP(DROP_INVALID_IDENTITY);
	send_trace_notify(ctx, TRACE_FROM_OVERLAY, src_label, 0, 0, ctx->ifindex);
	return tail_call_or_drop(ctx, CILIUM_CALL_IPV4_FROM_OVERLAY);
}

SEC("tc")
int cil_from_overlay(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, from_overlay(ctx), METRIC_INGRESS);
}

static __always_inline int ipv4_from_overlay(struct __sk_buff *ctx)
{
	const struct node_config *cfg = node_config();
	const struct endpoint_info *ep;
	__u32 src_label = ctx_load_meta(ctx, CB_SRC_LABEL);
	struct ct_packet pkt;
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 host_ifindex;
	int ret;

	/* Checked again after the tail call: this program trusts whatever
	 * cb[CB_SRC_LABEL] holds, and a HOST source would be delivered with
	 * the host's identity mark. Only cil_from_overlay enters here today and
	 * it already drops HOST; one compare guards the slot against a future
	 * caller that does not (and makes the drop reachable by a test run,
	 * which has no tunnel key for cil_from_overlay to read).
	 */
	if (src_label == IDENTITY_HOST)
		return DROP(DROP_INVALID_IDENTITY);
	if (!cfg)
		return DROP(DROP_HOST_NOT_READY);
	if (!ipv4_headers(ctx, &eth, &ip))
		return DROP(DROP_INVALID);

	ep = lookup_endpoint(ip->daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST)) {
		ret = ct_parse(ctx, ip, &pkt);
		if (ret < 0)
			return ret;
		return ipv4_local_delivery(ctx, eth, ip, ep, src_label, cfg, &pkt, true);
	}

	/* For this host: hand it to cilium_host's ingress as PACKET_HOST. */
	host_ifindex = cfg->host_ifindex;
	if (!host_ifindex)
		return DROP(DROP_HOST_NOT_READY);
	ctx_store_meta(ctx, CB_DST_LABEL, IDENTITY_HOST);
	mac_copy(eth->h_source, cfg->encap_mac);
	mac_copy(eth->h_dest, cfg->host_mac);
	set_identity_mark(ctx, src_label);
	send_trace_notify(ctx, TRACE_TO_HOST, src_label, IDENTITY_HOST, 0, host_ifindex);
	return bpf_redirect(host_ifindex, BPF_F_INGRESS);
}

__declare_tail(CILIUM_CALL_IPV4_FROM_OVERLAY, ipv4_from_overlay)
{
	return ctx_finish(ctx, ipv4_from_overlay(ctx), METRIC_INGRESS);
}

SEC("tc")
int cil_to_overlay(struct __sk_buff *ctx)
{
	ctx_clear_meta(ctx);
	return ctx_finish(ctx, TC_ACT_OK, METRIC_EGRESS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
