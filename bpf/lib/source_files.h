// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Source file ids: the one list of every C source and header that can contain
 * a drop or forward site. Events and metrics carry the id (u8) instead of the
 * name; scripts/gen-bpf-tables.ts expands this list into
 * src/datapath/maps/generated/bpf-tables.ts (make -C bpf tables) for
 * source-files.ts, and a unit test fails if a .c in bpf/ or a .h in bpf/lib/ is
 * missing here. Ids are stable: never reuse one.
 *
 * __FILE_ID__ maps __FILE_NAME__ (the basename of the file being compiled or
 * of the header a macro is expanded in) to its id; clang folds the
 * __builtin_strcmp chain to a constant at -O2, so no string reaches the object.
 */
#pragma once

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* SOURCE_FILE(id, "basename") */
#define SOURCE_FILES(SOURCE_FILE)		\
	SOURCE_FILE(1, "bpf_host.c")		\
	SOURCE_FILE(2, "bpf_lxc.c")		\
	SOURCE_FILE(3, "bpf_overlay.c")		\
	SOURCE_FILE(4, "bpf_alignchecker.c")	\
	SOURCE_FILE(10, "common.h")		\
	SOURCE_FILE(11, "arp.h")		\
	SOURCE_FILE(12, "eth.h")		\
	SOURCE_FILE(13, "ipv4.h")		\
	SOURCE_FILE(14, "local_delivery.h")	\
	SOURCE_FILE(15, "encap.h")		\
	SOURCE_FILE(16, "lookup.h")		\
	SOURCE_FILE(17, "tailcall.h")		\
	SOURCE_FILE(18, "drop.h")		\
	SOURCE_FILE(19, "events.h")		\
	SOURCE_FILE(20, "metrics.h")		\
	SOURCE_FILE(21, "identity.h")		\
	SOURCE_FILE(22, "maps.h")		\
	SOURCE_FILE(23, "source_files.h")	\
	SOURCE_FILE(24, "drop_reasons.h")	\
	SOURCE_FILE(25, "trace_points.h")	\
	SOURCE_FILE(26, "conntrack.h")		\
	SOURCE_FILE(27, "policy.h")		\
	SOURCE_FILE(40, "nat.h")		\
	SOURCE_FILE(41, "fib.h")

static __always_inline __attribute__((unused)) int
__source_file_id(const char *const name)
{
#define __SOURCE_FILE_CASE(id, file)			\
	if (!__builtin_strcmp(name, file))		\
		return id;
	SOURCE_FILES(__SOURCE_FILE_CASE)
#undef __SOURCE_FILE_CASE
	return 0;	/* unlisted file: the unit test rejects this */
}

#define __FILE_ID__ __source_file_id(__FILE_NAME__)
