/* natkit-error.h: the NATKIT_ERROR domain
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <glib.h>
#include "natkit-version-macros.h"

G_BEGIN_DECLS

/**
 * NATKIT_ERROR:
 *
 * The error domain of natkit; codes are [enum@Natkit.Error].
 */
#define NATKIT_ERROR (natkit_error_quark ())

NATKIT_AVAILABLE_IN_ALL
GQuark natkit_error_quark (void);

G_END_DECLS
