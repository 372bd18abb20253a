// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Load-time constants of bpf_host.o, patched by the loader. */
#pragma once

#include "declare.h"

DECLARE_CONFIG(__u32, HOST_EP_ID, "host endpoint id");
