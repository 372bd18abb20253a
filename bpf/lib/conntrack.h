// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Connection tracking: the L4 tuple of a packet, lookup and creation of
 * entries in cilium_ct4_global (TCP) / cilium_ct_any4_global (the rest).
 *
 * An entry is keyed by the connection's original direction (saddr/sport =
 * the initiator) and by who made it: the initiator's egress (CT_F_OUT) or the
 * responder's ingress (CT_F_IN). Two sides on one node (same-node pods, a pod
 * and the host) so have two entries. ct_lookup4() at a checkpoint of one
 * endpoint, for a packet going in direction `dir` (CT_EGRESS: the endpoint
 * sends it, CT_INGRESS: it receives it):
 *   1. the packet's tuple with that side's flag (egress: OUT, ingress: IN):
 *      the endpoint's own entry for a connection in this direction ->
 *      CT_ESTABLISHED;
 *   2. the reversed tuple with the other flag: the entry the endpoint made
 *      when the connection came the other way -> CT_REPLY;
 *   3. otherwise CT_NEW.
 * An ICMP error (destination unreachable, time exceeded, parameter problem)
 * carries the start of the packet it answers; if that packet's connection is
 * known from this endpoint's side it is CT_RELATED.
 * Expired entries (lifetime passed, not yet removed by the agent's GC) count
 * as missing and are overwritten by the next creation.
 *
 * Lifetimes (seconds of CLOCK_MONOTONIC, refreshed by every packet; written
 * at most once a second per entry): TCP after SYN only 60, established 8000,
 * closing (RST, or FIN seen from both sides) 10; anything else 60. A lone
 * FIN leaves the connection established: the other side may keep sending.
 * A SYN on a closed entry (the ports reused) opens it again.
 *
 * ICMP echo: the echo id is the responder's port (dport) of the request, the
 * initiator's port (sport) of the reply. Fragments: the first fragment of a
 * datagram records its ports in cilium_ipv4_frag_datagrams, the others take
 * them from there (a fragment whose first fragment was not seen is dropped:
 * DROP_FRAG_NOSUPPORT).
 *
 * Trace aggregation (trace level 1, events.h): every lookup also says whether
 * the packet is worth a trace: the first packet of a connection, a related
 * ICMP error, a packet that adds TCP flags to what its direction has seen, or
 * the first one CT_REPORT_INTERVAL seconds after its direction was last
 * reported (last_tx_report / last_rx_report, Cilium's). This is kept at every
 * trace level: it costs a compare per packet and a write per interval, less
 * than reading the level would, and a monitor that starts gets the next
 * report of each connection within the interval.
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "ipv4.h"

enum ct_dir {
	CT_EGRESS = 0,
	CT_INGRESS = 1,
};

/* Values as Cilium's (and as TRACE_REASON_* minus nothing: see events.h). */
enum ct_status {
	CT_NEW = 0,
	CT_ESTABLISHED = 1,
	CT_REPLY = 2,
	CT_RELATED = 3,
};

#define CT_LIFETIME_TCP		8000
#define CT_LIFETIME_NONTCP	60
#define CT_SYN_TIMEOUT		60
#define CT_CLOSE_TIMEOUT	10
/* Seconds between two traces of one direction of a connection at trace level
 * 1 (Cilium's CT_REPORT_INTERVAL).
 */
#define CT_REPORT_INTERVAL	5

#define TCP_FLAG_FIN	0x01
#define TCP_FLAG_SYN	0x02
#define TCP_FLAG_RST	0x04
#define TCP_FLAG_ACK	0x10

#define IP_MF_		0x2000
#define IP_OFFSET_	0x1fff

#define ICMP_ECHOREPLY_		0
#define ICMP_DEST_UNREACH_	3
#define ICMP_ECHO_		8
#define ICMP_TIME_EXCEEDED_	11
#define ICMP_PARAMETERPROB_	12

#define CT_CLOSING	(CT_ENTRY_F_RX_CLOSING | CT_ENTRY_F_TX_CLOSING)

/* What conntrack and policy need of one packet, parsed once per program run. */
struct ct_packet {
	struct ct4_tuple tuple;	/* the packet's own direction; flags 0 */
	__be16 policy_port;	/* dport for policy (ICMP: the type) */
	__u8 tcp_flags;
	__u8 icmp_error;	/* 1: an ICMP error; 2: and `inner` could be read */
	struct ct4_tuple inner;	/* the packet an ICMP error answers, as it was sent */
	__u32 now;		/* ct_now() when parsed: one clock read per program run */
};

/* Seconds of CLOCK_MONOTONIC. The coarse clock (jiffies) is cheaper and
 * exact enough for whole seconds.
 */
static __always_inline __u32 ct_now(void)
{
	return (__u32)(bpf_ktime_get_coarse_ns() / 1000000000ULL);
}

static __always_inline void *ct_map(__u8 proto)
{
	if (proto == IPPROTO_TCP)
		return &cilium_ct4_global;
	return &cilium_ct_any4_global;
}

static __always_inline void ct4_reverse(struct ct4_tuple *dst, const struct ct4_tuple *src)
{
	dst->saddr = src->daddr;
	dst->daddr = src->saddr;
	dst->sport = src->dport;
	dst->dport = src->sport;
	dst->proto = src->proto;
	dst->flags = 0;
	dst->pad = 0;
}

/* Copies `len` (a constant) bytes at `off` of the packet into `to`: straight
 * from the linear area when they are there (the usual case: a helper call
 * costs more than the copy), else with bpf_skb_load_bytes (headers in page
 * fragments, e.g. after VXLAN decapsulation). `off` is bounded for the
 * verifier (an IPv4 header is at most 60 bytes; 8 more for an ICMP error's
 * quoted packet). Returns 0 or < 0.
 */
static __always_inline int ct_load(struct __sk_buff *ctx, __u32 off, void *to, const __u32 len)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *at;

	if (off > 2 * IPV4_HDR_OFF + 2 * 60 + 8)
		return -1;
	at = data + off;
	if (at + len <= data_end) {
		__builtin_memcpy(to, at, len);
		return 0;
	}
	return bpf_skb_load_bytes(ctx, off, to, len);
}

/* Ports of the L4 header at `off`; for ICMP echo the id placed as described
 * above, the type as the policy port. Returns 0, 1 for an ICMP error (the
 * caller parses the quoted packet) or a drop.
 */
static __always_inline int ct_l4_ports(struct __sk_buff *ctx, __u32 off, __u8 proto,
				       struct ct4_tuple *t, __be16 *policy_port,
				       __u8 *tcp_flags)
{
	__u8 l4[14];

	switch (proto) {
	case IPPROTO_TCP:
		/* Ports and, at byte 13, the flags. */
		if (ct_load(ctx, off, l4, 14) < 0)
			return DROP(DROP_CT_INVALID_HDR);
		*tcp_flags = l4[13];
		break;
	case IPPROTO_UDP:
	case IPPROTO_SCTP:
		if (ct_load(ctx, off, l4, 4) < 0)
			return DROP(DROP_CT_INVALID_HDR);
		break;
	case IPPROTO_ICMP:
		/* type, code, checksum, id, sequence */
		if (ct_load(ctx, off, l4, 8) < 0)
			return DROP(DROP_CT_INVALID_HDR);
		*policy_port = bpf_htons(l4[0]);
		switch (l4[0]) {
		case ICMP_ECHO_:
			t->sport = 0;
			__builtin_memcpy(&t->dport, &l4[4], 2);
			return 0;
		case ICMP_ECHOREPLY_:
			__builtin_memcpy(&t->sport, &l4[4], 2);
			t->dport = 0;
			return 0;
		case ICMP_DEST_UNREACH_:
		case ICMP_TIME_EXCEEDED_:
		case ICMP_PARAMETERPROB_:
			t->sport = 0;
			t->dport = 0;
			return 1;
		default:
			t->sport = 0;
			t->dport = 0;
			return 0;
		}
	default:
		/* No ports: the connection is the address pair and protocol. */
		t->sport = 0;
		t->dport = 0;
		return 0;
	}
	__builtin_memcpy(&t->sport, &l4[0], 2);
	__builtin_memcpy(&t->dport, &l4[2], 2);
	*policy_port = t->dport;
	return 0;
}

/* The tuple of the packet an ICMP error quotes (IPv4 header + 8 bytes) at
 * `off`. Returns true if it could be read.
 */
static __always_inline bool ct_icmp_inner(struct __sk_buff *ctx, __u32 off, struct ct4_tuple *t)
{
	struct iphdr ip;
	__be16 unused_port = 0;
	__u8 unused_flags = 0;
	__u32 ihl;

	if (ct_load(ctx, off, &ip, sizeof(ip)) < 0)
		return false;
	ihl = ip.ihl;
	if (ip.version != 4 || ihl < 5)
		return false;
	t->saddr = ip.saddr;
	t->daddr = ip.daddr;
	t->proto = ip.protocol;
	t->flags = 0;
	t->pad = 0;
	/* A quoted ICMP error has no connection of its own: 1 means unrelated. */
	return ct_l4_ports(ctx, off + ihl * 4, ip.protocol, t, &unused_port, &unused_flags) == 0;
}

/* Parses the packet behind `ip` (checked by ipv4_headers()) into `p`.
 * Returns 0 or a drop (truncated L4 header, an unknown fragment).
 */
static __always_inline int ct_parse(struct __sk_buff *ctx, const struct iphdr *ip,
				    struct ct_packet *p)
{
	struct ipv4_frag_id fid = {};
	struct ipv4_frag_l4 *known;
	__u32 off = IPV4_HDR_OFF + ip->ihl * 4;
	__u16 frag = bpf_ntohs(ip->frag_off);
	int ret;

	__builtin_memset(p, 0, sizeof(*p));
	p->now = ct_now();
	p->tuple.saddr = ip->saddr;
	p->tuple.daddr = ip->daddr;
	p->tuple.proto = ip->protocol;

	if (frag & (IP_MF_ | IP_OFFSET_)) {
		fid.daddr = ip->daddr;
		fid.saddr = ip->saddr;
		fid.id = ip->id;
		fid.proto = ip->protocol;
	}
	if (frag & IP_OFFSET_) {
		/* Not the first fragment: no L4 header here. */
		known = bpf_map_lookup_elem(&cilium_ipv4_frag_datagrams, &fid);
		if (!known)
			return DROP(DROP_FRAG_NOSUPPORT);
		p->tuple.sport = known->sport;
		p->tuple.dport = known->dport;
		p->policy_port = known->policy_port;
		return 0;
	}

	ret = ct_l4_ports(ctx, off, ip->protocol, &p->tuple, &p->policy_port, &p->tcp_flags);
	if (ret < 0)
		return ret;
	if (ret == 1)
		p->icmp_error = ct_icmp_inner(ctx, off + 8, &p->inner) ? 2 : 1;
	if (frag & IP_MF_) {
		struct ipv4_frag_l4 ports = {
			.sport = p->tuple.sport,
			.dport = p->tuple.dport,
			.policy_port = p->policy_port,
		};

		bpf_map_update_elem(&cilium_ipv4_frag_datagrams, &fid, &ports, BPF_ANY);
	}
	return 0;
}

/* Flags and lifetime of an entry after a packet (`reply`: from the
 * responder). Writes only what changed, so an established flow writes its
 * entry once a second, not once a packet. Returns whether the packet is worth
 * a trace at level 1 (new TCP flags in its direction, or the report interval
 * passed); the direction's report time is written only then.
 */
static __always_inline bool ct_refresh(struct ct_entry *e, bool tcp, bool reply,
				       __u8 tcp_flags, __u32 now)
{
	__u16 flags = e->flags;
	__u32 lifetime = CT_LIFETIME_NONTCP;
	__u32 *last_report = reply ? &e->last_rx_report : &e->last_tx_report;
	bool report = now - *last_report >= CT_REPORT_INTERVAL;

	if (tcp) {
		if (reply) {
			if ((e->rx_flags_seen | tcp_flags) != e->rx_flags_seen) {
				e->rx_flags_seen |= tcp_flags;
				report = true;
			}
		} else if ((e->tx_flags_seen | tcp_flags) != e->tx_flags_seen) {
			e->tx_flags_seen |= tcp_flags;
			report = true;
		}
		if ((tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN && !reply &&
		    (flags & CT_CLOSING) == CT_CLOSING)
			flags &= ~(CT_CLOSING | CT_ENTRY_F_SEEN_NON_SYN);	/* ports reused */
		if (tcp_flags & TCP_FLAG_RST)
			flags |= CT_CLOSING;
		else if (tcp_flags & TCP_FLAG_FIN)
			flags |= reply ? CT_ENTRY_F_RX_CLOSING : CT_ENTRY_F_TX_CLOSING;
		if (!(tcp_flags & TCP_FLAG_SYN))
			flags |= CT_ENTRY_F_SEEN_NON_SYN;
		if ((flags & CT_CLOSING) == CT_CLOSING)
			lifetime = CT_CLOSE_TIMEOUT;
		else if (flags & CT_ENTRY_F_SEEN_NON_SYN)
			lifetime = CT_LIFETIME_TCP;
		else
			lifetime = CT_SYN_TIMEOUT;
	}
	if (flags != e->flags)
		e->flags = flags;
	if (e->lifetime != now + lifetime)
		e->lifetime = now + lifetime;
	if (report)
		*last_report = now;
	return report;
}

static __always_inline bool ct_alive(const struct ct_entry *e, __u32 now)
{
	return e->lifetime > now;
}

/* Looks up a packet with tuple `t` going in direction `dir` at one endpoint
 * (see the top of this file); refreshes the entry found if `refresh`, and
 * then sets *report (worth a trace at level 1, see ct_refresh). *own is the
 * entry found: the endpoint's own for CT_ESTABLISHED, the one of the
 * connection's other direction for CT_REPLY.
 */
static __always_inline enum ct_status __ct_lookup4(void *map, const struct ct4_tuple *t,
						   enum ct_dir dir, bool refresh,
						   __u8 tcp_flags, __u32 now,
						   struct ct_entry **own, bool *report)
{
	bool tcp = t->proto == IPPROTO_TCP;
	struct ct4_tuple key = *t;
	struct ct_entry *e;

	key.flags = dir == CT_EGRESS ? CT_F_OUT : CT_F_IN;
	e = bpf_map_lookup_elem(map, &key);
	if (e && ct_alive(e, now)) {
		if (refresh)
			*report = ct_refresh(e, tcp, false, tcp_flags, now);
		*own = e;
		return CT_ESTABLISHED;
	}
	ct4_reverse(&key, t);
	key.flags = dir == CT_EGRESS ? CT_F_IN : CT_F_OUT;
	e = bpf_map_lookup_elem(map, &key);
	if (e && ct_alive(e, now)) {
		if (refresh)
			*report = ct_refresh(e, tcp, true, tcp_flags, now);
		*own = e;
		return CT_REPLY;
	}
	return CT_NEW;
}

/* The conntrack state of packet `p` at one endpoint, direction `dir`; *own
 * is the entry found (CT_ESTABLISHED: the endpoint's own, CT_REPLY: the other
 * direction's; else NULL) and *report whether the packet is worth a trace at
 * trace level 1 (always for CT_NEW and CT_RELATED).
 */
static __always_inline enum ct_status ct_lookup4(const struct ct_packet *p, enum ct_dir dir,
						 __u32 now, struct ct_entry **own, bool *report)
{
	*own = NULL;
	*report = true;
	if (p->icmp_error) {
		/* The quoted packet went the other way through this endpoint. */
		enum ct_dir back = dir == CT_EGRESS ? CT_INGRESS : CT_EGRESS;
		struct ct_entry *unused;
		bool unused_report;

		if (p->icmp_error == 2 &&
		    __ct_lookup4(ct_map(p->inner.proto), &p->inner, back, false, 0, now, &unused,
				 &unused_report) != CT_NEW)
			return CT_RELATED;
		return CT_NEW;
	}
	return __ct_lookup4(ct_map(p->tuple.proto), &p->tuple, dir, true, p->tcp_flags, now, own,
			    report);
}

/* Records a new connection of packet `p` (direction `dir` at this endpoint,
 * initiator identity `src_sec_id`), allowed at policy revision `rev` for
 * remote identity `remote`. An ICMP error is no connection and makes no
 * entry. Returns 0 or DROP_CT_CREATE_FAILED.
 */
static __always_inline int ct_create4(const struct ct_packet *p, enum ct_dir dir,
				      __u32 src_sec_id, __u32 rev, __u32 remote, __u32 now)
{
	struct ct4_tuple key = p->tuple;
	struct ct_entry e = {};

	if (p->icmp_error)
		return 0;
	key.flags = dir == CT_EGRESS ? CT_F_OUT : CT_F_IN;
	e.created = now;
	e.src_sec_id = src_sec_id;
	e.policy_rev = rev;
	e.policy_remote = remote;
	/* Also sets last_tx_report: the packet that opens it is reported. */
	ct_refresh(&e, p->tuple.proto == IPPROTO_TCP, false, p->tcp_flags, now);
	if (bpf_map_update_elem(ct_map(p->tuple.proto), &key, &e, BPF_ANY) < 0)
		return DROP(DROP_CT_CREATE_FAILED);
	return 0;
}
