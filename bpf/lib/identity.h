// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Reserved security identities and the skb->mark identity stamp.
 *
 * A packet handed to the host stack carries its source identity in skb->mark
 * so cil_to_host / cil_from_host / cil_to_container can recover it. Layout
 * (as Cilium): bits 0x0F00 hold a magic value; with MARK_MAGIC_IDENTITY the
 * identity's low 16 bits sit in the upper half of the mark and its bits 16-23
 * (the cluster id part) in the low byte:
 *   IIIIIIII IIIIIIII MMMM.... CCCCCCCC   (I = id & 0xffff, M = magic, C = id >> 16)
 * MARK_MAGIC_HOST marks host-originated packets (identity HOST).
 */
#pragma once

#include "common.h"

enum {
	IDENTITY_UNKNOWN = 0,
	IDENTITY_HOST = 1,
	IDENTITY_WORLD = 2,
	IDENTITY_UNMANAGED = 3,
	IDENTITY_HEALTH = 4,
	IDENTITY_INIT = 5,
	IDENTITY_REMOTE_NODE = 6,
	IDENTITY_KUBE_APISERVER = 7,
	IDENTITY_INGRESS = 8,
};

/* Identities are 24 bits (16-bit cluster-local part + 8-bit cluster id): the
 * same width as a VXLAN VNI, which is why the identity fits in tunnel_id.
 */
#define IDENTITY_MASK		0xffffff

#define MARK_MAGIC_MASK		0x0F00
#define MARK_MAGIC_HOST		0x0C00
#define MARK_MAGIC_IDENTITY	0x0F00

static __always_inline __u32 identity_to_mark(__u32 identity)
{
	return MARK_MAGIC_IDENTITY | ((identity & 0xffff) << 16) |
	       ((identity >> 16) & 0xff);
}

static __always_inline void set_identity_mark(struct __sk_buff *ctx, __u32 identity)
{
	ctx->mark = identity_to_mark(identity);
}

/* The source identity a mark carries; `fallback` when it carries none. */
static __always_inline __u32 identity_from_mark(__u32 mark, __u32 fallback)
{
	switch (mark & MARK_MAGIC_MASK) {
	case MARK_MAGIC_IDENTITY:
		return ((mark >> 16) & 0xffff) | ((mark & 0xff) << 16);
	case MARK_MAGIC_HOST:
		return IDENTITY_HOST;
	default:
		return fallback;
	}
}
