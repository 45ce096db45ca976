/* natkit-binding-lifetime-private.h: RFC 5780 binding lifetime discovery
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

void     _natkit_probe_binding_lifetime_async  (GInetSocketAddress  *server,
                                                guint                first_step_ms,
                                                guint                timeout_ms,
                                                GCancellable        *cancellable,
                                                GAsyncReadyCallback  callback,
                                                gpointer             user_data);
gboolean _natkit_probe_binding_lifetime_finish (GAsyncResult        *result,
                                                guint               *at_least_ms,
                                                guint               *less_than_ms,
                                                guint               *packets_sent,
                                                GError             **error);

G_END_DECLS
