// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Policy enforcement: the per-endpoint policy maps (maps.h) and the
 * conntrack state (conntrack.h) at one checkpoint.
 *
 * policy_check(ctx, p, ep_id, self_id, remote_id, dir) is the whole
 * decision for packet `p` at endpoint `ep_id` going in `dir` (CT_EGRESS:
 * the endpoint sends it to identity `remote_id`; CT_INGRESS: it receives it
 * from `remote_id`):
 *   1. the endpoint's map from slot ep_id of cilium_policy_maps; none:
 *      DROP_EP_NOT_READY (the endpoint is being created or deleted);
 *   2. conntrack: CT_REPLY and CT_RELATED pass without policy;
 *   3. CT_NEW and CT_ESTABLISHED are looked up (a policy change that denies
 *      a flow also cuts its established connections): two LPM lookups, for
 *      remote_id and for "any identity" (0), each giving the most specific
 *      entry for (direction, protocol, port). A deny in either ->
 *      DROP_POLICY_DENY; an allow in either -> pass; no entry -> DROP_POLICY.
 *      An established connection whose entry was allowed at the endpoint's
 *      current policy revision (cilium_policy_rev) for the same remote
 *      identity skips the lookups: the verdict cannot have changed. The
 *      agent increments the revision after each change of the map;
 *   4. CT_NEW allowed: an entry is made (initiator = `self_id` at egress,
 *      `remote_id` at ingress), with the revision and remote identity;
 *      CT_ESTABLISHED allowed again: its entry takes them.
 * The agent keeps each map consistent for the LPM: no allow entry more
 * specific than a deny entry of the same identity and direction (it makes
 * such an allow a deny: deny wins), and an allow-all entry (any identity,
 * any protocol) for a direction no policy selects.
 *
 * host_policy_check() is the same for the host firewall, slot
 * HOST_ENDPOINT_ID: an empty slot means no host policy exists, and the packet
 * passes after conntrack (entries are still made, so turning the firewall on
 * keeps the replies of connections opened before). Traffic from the host to
 * itself is never checked.
 *
 * The conntrack state is kept in cb[CB_CT_STATE] for the traces, with
 * CB_CT_REPORT when the lookup found the packet worth a trace at level 1.
 *
 * Policy verdict records (events.h): every denial, and at trace level >= 1
 * every allowed new connection, with the deciding entry's cookie and its kind
 * (POLICY_MATCH_*). An LPM lookup returns the entry, not its prefix length,
 * so the kind is found only for a record: the same lookup again at the
 * protocol's prefix (48) and at the identity's (40) returns the same entry
 * (the same pointer: the trie's node) exactly when the entry is that general.
 * Comparing pointers needs CAP_PERFMON or CAP_SYS_ADMIN, which the agent has
 * (it needs CAP_SYS_ADMIN anyway); a denial costs the two lookups, an allow
 * at level 0 nothing.
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "identity.h"
#include "conntrack.h"
#include "events.h"

/* The host's slot in cilium_policy_maps (src/datapath/constants.ts
 * HOST_ENDPOINT_ID: never given to a pod).
 */
#define HOST_ENDPOINT_ID	1

static __always_inline void *policy_map_of(__u32 ep_id)
{
	__u32 key = ep_id;

	return bpf_map_lookup_elem(&cilium_policy_maps, &key);
}

static __always_inline __u32 policy_rev_of(__u32 ep_id)
{
	__u32 key = ep_id;
	const __u32 *rev = bpf_map_lookup_elem(&cilium_policy_rev, &key);

	return rev ? *rev : 0;
}

/* The entry that decided a lookup (NULL: none, the default deny) and
 * whether it was found for the remote identity itself (else for any).
 */
struct policy_match {
	const struct policy_entry *entry;
	bool l3;
};

/* 0 if `map` allows the packet, else the drop; *m says which entry decided:
 * a deny of either lookup (the identity's first), else the identity's allow,
 * else the allow for any identity.
 */
static __always_inline int policy_lookup(void *map, __u32 remote_id, enum ct_dir dir,
					 __u8 proto, __be16 dport, struct policy_match *m)
{
	struct policy_key key = {
		.prefixlen = POLICY_FULL_PREFIX,
		.sec_label = remote_id,
		.egress = dir == CT_EGRESS,
		.protocol = proto,
		.dport = dport,
	};
	const struct policy_entry *exact, *any, *e;
	bool l3 = remote_id != 0;

	exact = bpf_map_lookup_elem(map, &key);
	key.sec_label = 0;
	any = remote_id ? bpf_map_lookup_elem(map, &key) : NULL;
	e = exact;
	if (!e || (!(e->flags & POLICY_F_DENY) && any && (any->flags & POLICY_F_DENY))) {
		e = any;
		l3 = false;
	}
	m->entry = e;
	m->l3 = l3;
	if (!e)
		return DROP(DROP_POLICY);
	if (e->flags & POLICY_F_DENY)
		return DROP(DROP_POLICY_DENY);
	return 0;
}

/* The kind of entry that decided (POLICY_MATCH_*); see the top of this file. */
static __always_inline __u8 policy_match_type(void *map, __u32 remote_id, enum ct_dir dir,
					      __u8 proto, __be16 dport,
					      const struct policy_match *m)
{
	struct policy_key key = {
		.prefixlen = POLICY_PROTO_PREFIX,
		.sec_label = m->l3 ? remote_id : 0,
		.egress = dir == CT_EGRESS,
		.protocol = proto,
		.dport = dport,
	};

	if (!m->entry)
		return POLICY_MATCH_NONE;
	if (bpf_map_lookup_elem(map, &key) != m->entry)
		return m->l3 ? POLICY_MATCH_L3_L4 : POLICY_MATCH_L4_ONLY;
	key.prefixlen = POLICY_STATIC_PREFIX;
	if (bpf_map_lookup_elem(map, &key) != m->entry)
		return m->l3 ? POLICY_MATCH_L3_PROTO : POLICY_MATCH_PROTO_ONLY;
	return m->l3 ? POLICY_MATCH_L3_ONLY : POLICY_MATCH_ALL;
}

/* The policy verdict record of a decision `ret` (0 or a drop) of endpoint
 * `ep_id`'s map for packet `p`.
 */
static __always_inline void policy_verdict(struct __sk_buff *ctx, const struct ct_packet *p,
					   void *map, __u32 ep_id, __u32 remote_id,
					   enum ct_dir dir, const struct policy_match *m, int ret)
{
	__u8 proto = p->tuple.proto;
	__be16 dport = p->policy_port;

	send_policy_verdict_notify(ctx, remote_id, m->entry ? m->entry->cookie : 0, dport, proto,
				   dir == CT_EGRESS ? METRIC_EGRESS : METRIC_INGRESS, (__u16)ep_id,
				   IS_DROP(ret) ? DROP_REASON_OF(ret) : 0,
				   policy_match_type(map, remote_id, dir, proto, dport, m));
}

static __always_inline int __policy_check(struct __sk_buff *ctx, const struct ct_packet *p,
					  void *map, __u32 ep_id, __u32 self_id,
					  __u32 remote_id, enum ct_dir dir)
{
	__u32 now = p->now;
	struct policy_match match;
	struct ct_entry *own;
	enum ct_status state;
	__u32 verdict_for = 0;
	__u32 rev = 0;
	bool report;
	int ret;

	state = ct_lookup4(p, dir, now, &own, &report);
	ctx_store_meta(ctx, CB_CT_STATE, (state + 1) | (report ? CB_CT_REPORT : 0));
	if (state == CT_REPLY || state == CT_RELATED)
		return 0;
	/* Without a map (the host firewall off) no verdict is cached:
	 * remote 0 never matches, whatever revision the map gets later.
	 */
	if (map) {
		rev = policy_rev_of(ep_id);
		if (own && remote_id && own->policy_rev == rev && own->policy_remote == remote_id)
			return 0;
		ret = policy_lookup(map, remote_id, dir, p->tuple.proto, p->policy_port, &match);
		if (ret < 0 || (state == CT_NEW && trace_level() >= TRACE_LEVEL_CONN))
			policy_verdict(ctx, p, map, ep_id, remote_id, dir, &match, ret);
		if (ret < 0)
			return ret;
		verdict_for = remote_id;
	}
	if (state == CT_NEW)
		return ct_create4(p, dir, dir == CT_EGRESS ? self_id : remote_id, rev, verdict_for, now);
	if (own && (own->policy_rev != rev || own->policy_remote != verdict_for)) {
		own->policy_rev = rev;
		own->policy_remote = verdict_for;
	}
	return 0;
}

/* Endpoint `ep_id` (identity `self_id`) sends (CT_EGRESS) or receives
 * (CT_INGRESS) packet `p`, to or from identity `remote_id`. 0 or a drop.
 */
static __always_inline int policy_check(struct __sk_buff *ctx, const struct ct_packet *p,
					__u32 ep_id, __u32 self_id, __u32 remote_id,
					enum ct_dir dir)
{
	void *map = policy_map_of(ep_id);

	if (!map)
		return DROP(DROP_EP_NOT_READY);
	return __policy_check(ctx, p, map, ep_id, self_id, remote_id, dir);
}

/* The host sends or receives `p`; its firewall is on only while slot
 * HOST_ENDPOINT_ID holds a map.
 */
static __always_inline int host_policy_check(struct __sk_buff *ctx, const struct ct_packet *p,
					     __u32 remote_id, enum ct_dir dir)
{
	if (remote_id == IDENTITY_HOST)
		return 0;
	return __policy_check(ctx, p, policy_map_of(HOST_ENDPOINT_ID), HOST_ENDPOINT_ID,
			      IDENTITY_HOST, remote_id, dir);
}
