// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* DECLARE_CONFIG(type, name, "description"): a load-time constant.
 *
 * Expands to a `volatile const` global initialised to 0, which clang places in
 * .rodata; the loader patches it by symbol name before loading, so one
 * compiled object serves every endpoint. `volatile` stops clang from folding
 * the default into the code. The description is attached as a BTF decl tag
 * ("config:<description>") so tools reading the object's BTF can show it.
 * DECLARE_CONFIG_ARRAY(type, name, len, "description") declares an array.
 */
#pragma once

#define DECLARE_CONFIG(type, name, description)				\
	volatile const type name					\
	__attribute__((btf_decl_tag("config:" description))) = 0

#define DECLARE_CONFIG_ARRAY(type, name, len, description)		\
	volatile const type name[len]					\
	__attribute__((btf_decl_tag("config:" description))) = {}
