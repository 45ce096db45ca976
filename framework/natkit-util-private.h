/* natkit-util-private.h: small helpers shared inside libnatkit
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

char    *_natkit_base58_encode (const guint8 *data,
                                gsize         length);
GBytes  *_natkit_base58_decode (const char   *text);

guint64  _natkit_process_start_time (int pid);

G_END_DECLS
