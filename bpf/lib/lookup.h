// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Lookups of an IPv4 address in cilium_lxc and cilium_ipcache_v2.
 *
 * lookup_endpoint(ip) returns the local endpoint (or local host IP, flagged
 * ENDPOINT_F_HOST) owning `ip`, or NULL. lookup_ipcache(ip) returns the
 * longest-prefix ipcache entry covering `ip`/32, or NULL (callers treat a miss
 * as identity WORLD). Both take the address in network order.
 * stack_source_identity(mark, saddr) is the source identity of a packet the
 * host stack hands to a program (cil_to_host, cil_to_container).
 */
#pragma once

#include "common.h"
#include "maps.h"
#include "identity.h"

static __always_inline const struct endpoint_info *lookup_endpoint(__be32 ip)
{
	/* Zero-initialised: the whole 20-byte key is hashed, so stray stack
	 * bytes would make lookups miss. (A verifier without CAP_PERFMON also
	 * rejects uninitialised key bytes: "invalid indirect read from stack";
	 * with it, uninitialised stack reads are allowed and only the miss
	 * would show.)
	 */
	struct endpoint_key key = {};

	__builtin_memcpy(key.addr, &ip, sizeof(ip));
	key.family = ENDPOINT_KEY_IPV4;
	return bpf_map_lookup_elem(&cilium_lxc, &key);
}

static __always_inline const struct remote_endpoint_info *lookup_ipcache(__be32 ip)
{
	struct ipcache_key key = {};

	key.prefixlen = IPCACHE_PREFIX_LEN_V4(32);
	key.family = IPCACHE_FAMILY_IPV4;
	__builtin_memcpy(key.addr, &ip, sizeof(ip));
	return bpf_map_lookup_elem(&cilium_ipcache_v2, &key);
}

/* The ipcache entry names a tunnel endpoint that should be used. */
static __always_inline bool ipcache_wants_tunnel(const struct remote_endpoint_info *info)
{
	return info && (info->flags & IPCACHE_F_HAS_TUNNEL_EP) &&
	       !(info->flags & IPCACHE_F_SKIP_TUNNEL);
}

/* The source identity of a packet coming out of the host stack: what its
 * mark carries (bpf_lxc, bpf_host and bpf_overlay stamp it before the stack);
 * without a mark the host itself sent it, as nothing else reaches these
 * hooks unmarked in tunnel mode, but the host stack cannot stamp one: the
 * host if the source is a host address (ipcache), else world.
 */
static __always_inline __u32 stack_source_identity(__u32 mark, __be32 saddr)
{
	const struct remote_endpoint_info *info;
	__u32 id = identity_from_mark(mark, IDENTITY_UNKNOWN);

	if (id != IDENTITY_UNKNOWN)
		return id;
	info = lookup_ipcache(saddr);
	return info && info->sec_identity == IDENTITY_HOST ? IDENTITY_HOST : IDENTITY_WORLD;
}
