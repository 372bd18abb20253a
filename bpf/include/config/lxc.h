// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Load-time constants of bpf_lxc.o, patched per endpoint by the loader. */
#pragma once

#include "declare.h"

DECLARE_CONFIG(__u32, LXC_ID, "endpoint id");
DECLARE_CONFIG(__u32, LXC_IPV4, "endpoint IPv4 address, network byte order");
DECLARE_CONFIG(__u32, LXC_SECLABEL, "endpoint security identity");
DECLARE_CONFIG(__u32, LXC_IFINDEX, "ifindex of the host-side lxc veth");
DECLARE_CONFIG_ARRAY(__u8, LXC_IF_MAC, 6, "MAC of the host-side lxc veth (ARP replies, L2 source)");
