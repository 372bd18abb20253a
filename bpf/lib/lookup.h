// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Lookups of an IPv4 address in cilium_lxc and cilium_ipcache_v2.
 *
 * lookup_endpoint(ip) returns the local endpoint (or local host IP, flagged
 * ENDPOINT_F_HOST) owning `ip`, or NULL. lookup_ipcache(ip) returns the
 * longest-prefix ipcache entry covering `ip`/32, or NULL (callers treat a miss
 * as identity WORLD). Both take the address in network order.
 */
#pragma once

#include "common.h"
#include "maps.h"

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
