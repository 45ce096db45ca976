/* natkit-nat-detector-private.h: RFC 5780 NAT behavior discovery
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

typedef void (*NatkitDetectProgress) (const char *message,
                                      gpointer    user_data);

void           _natkit_detect_nat_async  (const char * const   *servers,
                                          guint                 timeout_ms,
                                          NatkitDetectFlags     flags,
                                          guint                 lifetime_step_ms,
                                          NatkitDetectProgress  progress,
                                          gpointer              progress_data,
                                          GCancellable         *cancellable,
                                          GAsyncReadyCallback   callback,
                                          gpointer              user_data);
NatkitNatInfo *_natkit_detect_nat_finish (GAsyncResult         *result,
                                          GError              **error);

G_END_DECLS
