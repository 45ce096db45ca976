/* natkit-turn-client.h: one allocation on one TURN server
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <natkit/natkit.h>

#include "natkit-turn-proto.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_TURN_CLIENT (natkit_turn_client_get_type ())
G_DECLARE_FINAL_TYPE (NatkitTurnClient, natkit_turn_client, NATKIT, TURN_CLIENT, GObject)

/* relayed data from the peer; a failure of the allocation once it exists */
typedef void (*NatkitTurnDataFunc) (const guint8 *data,
                                    gsize         length,
                                    gpointer      user_data);
typedef void (*NatkitTurnFailFunc) (const GError *error,
                                    gpointer      user_data);

/* @uri is parsed; @transport may differ from the URI's (turn: without
 * ?transport= is tried over UDP, then TCP) */
NatkitTurnClient   *natkit_turn_client_new             (const NatkitTurnUri *uri,
                                                        NatkitTurnTransport  transport,
                                                        const char          *username,
                                                        const char          *password);

const char         *natkit_turn_client_get_server      (NatkitTurnClient    *self);
NatkitTurnTransport natkit_turn_client_get_transport   (NatkitTurnClient    *self);
GInetSocketAddress *natkit_turn_client_get_relayed     (NatkitTurnClient    *self);
GInetSocketAddress *natkit_turn_client_get_mapped      (NatkitTurnClient    *self);
gboolean            natkit_turn_client_is_answered     (NatkitTurnClient    *self);

/* connects and allocates within @timeout_ms */
void                natkit_turn_client_allocate_async  (NatkitTurnClient    *self,
                                                        guint                timeout_ms,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
gboolean            natkit_turn_client_allocate_finish (NatkitTurnClient    *self,
                                                        GAsyncResult        *result,
                                                        GError             **error);

/* binds a channel to @peer (installing its permission), kept fresh */
void                natkit_turn_client_bind_async      (NatkitTurnClient    *self,
                                                        GInetSocketAddress  *peer,
                                                        guint                timeout_ms,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
gboolean            natkit_turn_client_bind_finish     (NatkitTurnClient    *self,
                                                        GAsyncResult        *result,
                                                        GError             **error);

void                natkit_turn_client_set_handlers    (NatkitTurnClient    *self,
                                                        NatkitTurnDataFunc   data_func,
                                                        NatkitTurnFailFunc   fail_func,
                                                        gpointer             user_data);

/* to the bound peer, as ChannelData; never blocks */
gboolean            natkit_turn_client_send            (NatkitTurnClient    *self,
                                                        const guint8        *data,
                                                        gsize                length,
                                                        GError             **error);

/* For the tests and the bench: refresh every @seconds instead of at half
 * the allocation's lifetime */
void                natkit_turn_client_set_refresh     (NatkitTurnClient    *self,
                                                        guint                seconds);
/* renew the channel (and the permission) every @seconds instead of every
 * 240 s: for servers whose permissions or channels last less than RFC
 * 8656's 300 and 600 s (coturn --permission-lifetime, --channel-lifetime);
 * 0 restores the default */
void                natkit_turn_client_set_channel_refresh (NatkitTurnClient *self,
                                                            guint             seconds);
guint               natkit_turn_client_get_refreshes   (NatkitTurnClient    *self);

/* deallocates (Refresh with LIFETIME 0) and closes; idempotent */
void                natkit_turn_client_close           (NatkitTurnClient    *self);

/* GSource helpers: attach with a name on the thread-default context;
 * destroy and clear */
GSource *natkit_turn_add_source  (GSource     *source,
                                  GSourceFunc  func,
                                  gpointer     data,
                                  const char  *name);
void     natkit_turn_drop_source (GSource    **source);

G_END_DECLS
