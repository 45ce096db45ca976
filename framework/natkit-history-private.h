/* natkit-history-private.h: what worked, per peer (natkit-history.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib-object.h>

G_BEGIN_DECLS

#define NATKIT_TYPE_HISTORY (_natkit_history_get_type ())
G_DECLARE_FINAL_TYPE (NatkitHistory, _natkit_history, NATKIT, HISTORY, GObject)

NatkitHistory *_natkit_history_new              (const char    *filename);
char          *_natkit_history_default_filename (void);
void           _natkit_history_record           (NatkitHistory *self,
                                                 const char    *peer_id,
                                                 const char    *pair,
                                                 const char    *method,
                                                 gboolean       success,
                                                 gint64         connect_us,
                                                 const char    *reason);
const char    *_natkit_history_last_method      (NatkitHistory *self,
                                                 const char    *peer_id,
                                                 const char    *pair);
gboolean       _natkit_history_keeps_failing    (NatkitHistory *self,
                                                 const char    *peer_id,
                                                 const char    *pair,
                                                 const char    *method);
char          *_natkit_history_to_json          (NatkitHistory *self);

G_END_DECLS
