/* natkit-version-macros.h: symbol visibility and availability
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <glib.h>

/* The library is built with -fvisibility=hidden: only symbols marked with
 * one of these macros are exported. */
#if defined(NATKIT_COMPILATION)
#define _NATKIT_EXTERN __attribute__((visibility ("default"))) extern
#else
#define _NATKIT_EXTERN extern
#endif

#define NATKIT_AVAILABLE_IN_ALL _NATKIT_EXTERN
#define NATKIT_AVAILABLE_IN_0_1 _NATKIT_EXTERN
