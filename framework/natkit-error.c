/* natkit-error.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"

G_DEFINE_QUARK (natkit-error-quark, natkit_error)
