/* natkit-signaling.h: the channel two peers' managers talk over
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>

#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_SIGNALING (natkit_signaling_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (NatkitSignaling, natkit_signaling, NATKIT, SIGNALING, GObject)

/**
 * NATKIT_SIGNALING_MAX_MESSAGE:
 *
 * The largest signaling message, in bytes of UTF-8, that natkit sends and
 * that an implementation must carry.
 */
#define NATKIT_SIGNALING_MAX_MESSAGE 8192

/**
 * NatkitSignalingInterface:
 * @g_iface: the parent interface
 * @get_local_peer_id: returns the peer ID messages are sent from
 * @get_local_address: returns the address other peers reach this one at
 *   (`PEER-ID@HOST:PORT`), or %NULL when the channel has none
 * @send_async: sends one message (a JSON object as UTF-8 text) to a peer
 * @send_finish: finishes @send_async
 *
 * The interface an application implements to carry natkit's signaling over
 * its own channel (XMPP, Matrix, D-Bus…). Implementations emit
 * #NatkitSignaling::message-received for every message that arrives, with
 * the sender's peer ID as the channel authenticated it.
 */
struct _NatkitSignalingInterface
{
  GTypeInterface g_iface;

  const char *(*get_local_peer_id) (NatkitSignaling      *self);
  const char *(*get_local_address) (NatkitSignaling      *self);
  void        (*send_async)        (NatkitSignaling      *self,
                                    const char           *peer_id,
                                    const char           *message,
                                    GCancellable         *cancellable,
                                    GAsyncReadyCallback   callback,
                                    gpointer              user_data);
  gboolean    (*send_finish)       (NatkitSignaling      *self,
                                    GAsyncResult         *result,
                                    GError              **error);

  /*< private >*/
  gpointer padding[8];
};

NATKIT_AVAILABLE_IN_ALL
const char *natkit_signaling_get_local_peer_id (NatkitSignaling      *self);
NATKIT_AVAILABLE_IN_ALL
const char *natkit_signaling_get_local_address (NatkitSignaling      *self);
NATKIT_AVAILABLE_IN_ALL
void        natkit_signaling_send_async        (NatkitSignaling      *self,
                                                const char           *peer_id,
                                                const char           *message,
                                                GCancellable         *cancellable,
                                                GAsyncReadyCallback   callback,
                                                gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_signaling_send_finish       (NatkitSignaling      *self,
                                                GAsyncResult         *result,
                                                GError              **error);

/* For implementations. */
NATKIT_AVAILABLE_IN_ALL
void        natkit_signaling_emit_message      (NatkitSignaling      *self,
                                                const char           *peer_id,
                                                const char           *message);

NATKIT_AVAILABLE_IN_ALL
void        natkit_signaling_new_pair          (const char           *peer_id_a,
                                                const char           *peer_id_b,
                                                NatkitSignaling     **out_a,
                                                NatkitSignaling     **out_b);

NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_peer_address_parse          (const char           *address,
                                                char                **out_peer_id,
                                                char                **out_host,
                                                guint16              *out_port,
                                                GError              **error);

G_END_DECLS
