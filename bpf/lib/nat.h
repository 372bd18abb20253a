// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* BPF masquerade (SNAT to the node IP) on the native device, as Cilium's
 * BPF masquerade: cil_to_netdev translates pod traffic leaving the node for
 * an address outside every pod CIDR and node IP, cil_from_netdev translates
 * the replies back.
 *
 * cilium_snat_v4_external holds two entries per translated connection, keyed
 * by a conntrack tuple (conntrack.h's convention, so ICMP echo has the id in
 * dport of the request and in sport of the reply):
 *   NAT_DIR_EGRESS:  the original tuple (pod -> world)  -> {node IP, new port}
 *   NAT_DIR_INGRESS: the reply tuple (world -> node IP) -> {pod IP, old port}
 * The connection's state is the pod's conntrack entry (CT_F_OUT, made by
 * bpf_lxc's egress policy check) in cilium_ct4_global / cilium_ct_any4_global:
 * the translation is recorded there too (CT_ENTRY_F_NAT, nat_*), and the NAT
 * entries live exactly as long as that entry: the agent's conntrack GC
 * deletes every NAT entry whose connection is gone (src/datapath/conntrack.ts).
 *
 * "Our port" (what is translated) is the TCP/UDP source port or the ICMP echo
 * id of the pod's packets. New ports are taken from NAT_PORT_MIN..MAX, above
 * Linux's default ephemeral range (32768..60999), so a translated connection
 * never takes the port of one the node itself opened. Only TCP, UDP and ICMP
 * echo are translated; other protocols leave untranslated (their replies
 * cannot come back, as without masquerade).
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "conntrack.h"

#define NAT_DIR_EGRESS	0
#define NAT_DIR_INGRESS	1

#define NAT_PORT_MIN	61000
#define NAT_PORT_MAX	65535
#define NAT_PORT_RANGE	(NAT_PORT_MAX - NAT_PORT_MIN + 1)
#define NAT_TRIES	32

#define IP_CSUM_OFF	(IPV4_HDR_OFF + 10)
#define IP_SADDR_OFF	(IPV4_HDR_OFF + 12)
#define IP_DADDR_OFF	(IPV4_HDR_OFF + 16)

/* Whether `p` is a packet NAT can translate, and where its checksum and
 * translated port are: TCP/UDP ports at L4 offset 0 (source) / 2
 * (destination), checksum at 16 / 6; ICMP echo id at 4, checksum at 2.
 */
struct nat_l4 {
	__u32 csum_off;		/* from the start of L4 */
	__u32 port_off;		/* from the start of L4 */
	__u64 csum_flags;	/* for bpf_l4_csum_replace of the address */
	bool icmp;
};

static __always_inline bool nat_l4_of(const struct ct_packet *p, bool egress,
				      struct nat_l4 *l)
{
	switch (p->tuple.proto) {
	case IPPROTO_TCP:
		l->csum_off = 16;
		l->csum_flags = BPF_F_PSEUDO_HDR;
		break;
	case IPPROTO_UDP:
		l->csum_off = 6;
		/* A UDP checksum of 0 means none: leave it 0. */
		l->csum_flags = BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0;
		break;
	case IPPROTO_ICMP:
		if (p->icmp_error)
			return false;
		/* Echo request out (policy port = type 8), echo reply in (0). */
		if (p->policy_port != bpf_htons(egress ? ICMP_ECHO_ : ICMP_ECHOREPLY_))
			return false;
		l->csum_off = 2;
		l->csum_flags = 0;
		l->port_off = 4;
		l->icmp = true;
		return true;
	default:
		return false;
	}
	l->port_off = egress ? 0 : 2;
	l->icmp = false;
	return true;
}

/* The port of the pod's side in a tuple (ICMP echo: the id). */
static __always_inline __be16 nat_tuple_port(const struct ct4_tuple *t, bool egress)
{
	if (t->proto == IPPROTO_ICMP)
		return egress ? t->dport : t->sport;
	return egress ? t->sport : t->dport;
}

/* Rewrites the address at `addr_off` and (unless a later fragment, which has
 * no L4 header) the port, with incremental checksums.
 */
static __always_inline int nat_rewrite(struct __sk_buff *ctx, const struct iphdr *ip_in,
				       __u32 addr_off, __be32 old_addr, __be32 new_addr,
				       __be16 old_port, __be16 new_port,
				       const struct nat_l4 *l)
{
	__u32 l4 = IPV4_HDR_OFF + ip_in->ihl * 4;
	bool l4_there = !(bpf_ntohs(ip_in->frag_off) & IP_OFFSET_);

	if (l4_there) {
		if (!l->icmp && bpf_l4_csum_replace(ctx, l4 + l->csum_off, old_addr, new_addr,
						    l->csum_flags | 4) < 0)
			return DROP(DROP_CSUM_L4);
		if (old_port != new_port) {
			if (bpf_l4_csum_replace(ctx, l4 + l->csum_off, old_port, new_port,
						(l->csum_flags & BPF_F_MARK_MANGLED_0) | 2) < 0)
				return DROP(DROP_CSUM_L4);
			if (bpf_skb_store_bytes(ctx, l4 + l->port_off, &new_port, 2, 0) < 0)
				return DROP(DROP_WRITE_ERROR);
		}
	}
	if (bpf_l3_csum_replace(ctx, IP_CSUM_OFF, old_addr, new_addr, 4) < 0)
		return DROP(DROP_CSUM_L3);
	if (bpf_skb_store_bytes(ctx, addr_off, &new_addr, 4, 0) < 0)
		return DROP(DROP_WRITE_ERROR);
	return 0;
}

/* Records the translation in the connection's conntrack entry (the pod's
 * egress entry), once, when the mapping is made.
 */
static __always_inline void nat_mark_ct(const struct ct_packet *p, __be32 to_addr, __be16 to_port)
{
	struct ct4_tuple key = p->tuple;
	struct ct_entry *e;

	key.flags = CT_F_OUT;
	e = bpf_map_lookup_elem(ct_map(key.proto), &key);
	if (!e)
		return;
	e->nat_orig_addr = p->tuple.saddr;
	e->nat_orig_port = nat_tuple_port(&p->tuple, true);
	e->nat_addr = to_addr;
	e->nat_port = to_port;
	e->flags |= CT_ENTRY_F_NAT;
}

/* Makes the two entries of a new translation of `p` to `node_ip`. Returns the
 * new port (network order) or a drop when every port tried is taken.
 */
static __always_inline int nat_allocate(const struct ct_packet *p, __be32 node_ip,
					__be16 *port_out)
{
	struct ct4_tuple fwd = p->tuple;
	struct ct4_tuple rev = {};
	struct nat_entry out = {};
	struct nat_entry in = {};
	__u32 start = bpf_get_prandom_u32();
	__be16 port = 0;
	bool icmp = p->tuple.proto == IPPROTO_ICMP;
	int i;

	in.created = p->now;
	in.to_addr = p->tuple.saddr;
	in.to_port = nat_tuple_port(&p->tuple, true);
	/* The reply tuple: reverse of the translated packet. */
	rev.saddr = p->tuple.daddr;
	rev.daddr = node_ip;
	rev.proto = p->tuple.proto;
	rev.flags = NAT_DIR_INGRESS;
	for (i = 0; i < NAT_TRIES; i++) {
		port = bpf_htons((__u16)(NAT_PORT_MIN + (start + i) % NAT_PORT_RANGE));
		if (icmp) {
			rev.sport = port;
			rev.dport = 0;
		} else {
			rev.sport = p->tuple.dport;
			rev.dport = port;
		}
		if (!bpf_map_update_elem(&cilium_snat_v4_external, &rev, &in, BPF_NOEXIST))
			break;
	}
	if (i == NAT_TRIES)
		return DROP(DROP_NAT_NO_MAPPING);
	out.created = p->now;
	out.to_addr = node_ip;
	out.to_port = port;
	fwd.flags = NAT_DIR_EGRESS;
	if (bpf_map_update_elem(&cilium_snat_v4_external, &fwd, &out, BPF_ANY) < 0) {
		bpf_map_delete_elem(&cilium_snat_v4_external, &rev);
		return DROP(DROP_NAT_NO_MAPPING);
	}
	*port_out = port;
	return 0;
}

/* SNAT of a pod's packet leaving through the native device: its source
 * becomes the node IP and a port of the node. 0 when translated or not
 * translatable, else a drop.
 */
static __always_inline int snat_v4(struct __sk_buff *ctx, const struct iphdr *ip,
				   const struct ct_packet *p, __be32 node_ip)
{
	struct ct4_tuple key = p->tuple;
	const struct nat_entry *e;
	struct nat_l4 l = {};
	__be16 port;
	int ret;

	if (!nat_l4_of(p, true, &l))
		return 0;
	key.flags = NAT_DIR_EGRESS;
	e = bpf_map_lookup_elem(&cilium_snat_v4_external, &key);
	if (e) {
		port = e->to_port;
		node_ip = e->to_addr;
	} else {
		ret = nat_allocate(p, node_ip, &port);
		if (ret < 0)
			return ret;
		nat_mark_ct(p, node_ip, port);
	}
	return nat_rewrite(ctx, ip, IP_SADDR_OFF, p->tuple.saddr, node_ip,
			   nat_tuple_port(&p->tuple, true), port, &l);
}

/* Whether a packet for the node IP can be the reply of a translated
 * connection: a TCP/UDP destination port or an ICMP echo reply id NAT hands
 * out (a later fragment: maybe). Read straight from the header, so VXLAN and
 * the node's own traffic pass without the conntrack parse.
 */
static __always_inline bool nat_maybe_reply(struct __sk_buff *ctx, const struct iphdr *ip)
{
	void *data_end = (void *)(long)ctx->data_end;
	const __u8 *l4 = (const __u8 *)(ip + 1);

	/* Options or a later fragment: the full parse decides. */
	if (ip->ihl != 5 || (bpf_ntohs(ip->frag_off) & IP_OFFSET_))
		return true;
	if ((void *)(l4 + 6) > data_end)
		return true;
	switch (ip->protocol) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
		return ((__u16)l4[2] << 8 | l4[3]) >= NAT_PORT_MIN;
	case IPPROTO_ICMP:
		return l4[0] == ICMP_ECHOREPLY_ && ((__u16)l4[4] << 8 | l4[5]) >= NAT_PORT_MIN;
	default:
		return false;
	}
}

/* Reverse SNAT of a reply arriving on the native device for the node IP.
 * Returns 1 when translated (p->tuple then describes the packet as it is
 * now), 0 when it is no reply of a translated connection, or a drop.
 */
static __always_inline int rev_snat_v4(struct __sk_buff *ctx, const struct iphdr *ip,
				       struct ct_packet *p)
{
	struct ct4_tuple key = p->tuple;
	const struct nat_entry *e;
	struct nat_l4 l = {};
	__be32 to_addr;
	__be16 to_port;
	int ret;

	if (!nat_l4_of(p, false, &l))
		return 0;
	/* Only ports NAT hands out (VXLAN, the node's own connections: no lookup). */
	if (bpf_ntohs(nat_tuple_port(&p->tuple, false)) < NAT_PORT_MIN)
		return 0;
	key.flags = NAT_DIR_INGRESS;
	e = bpf_map_lookup_elem(&cilium_snat_v4_external, &key);
	if (!e)
		return 0;
	to_addr = e->to_addr;
	to_port = e->to_port;
	ret = nat_rewrite(ctx, ip, IP_DADDR_OFF, p->tuple.daddr, to_addr,
			  nat_tuple_port(&p->tuple, false), to_port, &l);
	if (ret < 0)
		return ret;
	p->tuple.daddr = to_addr;
	if (p->tuple.proto == IPPROTO_ICMP)
		p->tuple.sport = to_port;
	else
		p->tuple.dport = to_port;
	return 1;
}
