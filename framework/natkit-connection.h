/* natkit-connection.h: a secure, monitored connection to a peer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>

#include "natkit-enums.h"
#include "natkit-nat-info.h"
#include "natkit-path.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_CONNECTION (natkit_connection_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitConnection, natkit_connection, NATKIT, CONNECTION, GObject)

NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_peer_id      (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_peer_address (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_session_id   (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
NatkitRole             natkit_connection_get_role         (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
NatkitConnectFlags     natkit_connection_get_flags        (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_method       (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_transport    (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
NatkitConnectionState  natkit_connection_get_state        (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
gint64                 natkit_connection_get_rtt          (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
gint64                 natkit_connection_get_connect_time (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
const char * const    *natkit_connection_get_failures     (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
NatkitPath            *natkit_connection_get_path         (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
GIOStream             *natkit_connection_get_stream       (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
gsize                  natkit_connection_get_max_datagram (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
gboolean               natkit_connection_send_datagram    (NatkitConnection  *self,
                                                           GBytes            *datagram,
                                                           GError           **error);
NATKIT_AVAILABLE_IN_ALL
void                   natkit_connection_close            (NatkitConnection  *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_local_address  (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_connection_get_remote_address (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
double                 natkit_connection_get_loss           (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
guint64                natkit_connection_get_bytes_sent     (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
guint64                natkit_connection_get_bytes_received (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
gint64                 natkit_connection_get_connected_at   (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
GVariant              *natkit_connection_get_state_history  (NatkitConnection *self);

NATKIT_AVAILABLE_IN_ALL
NatkitNatInfo *natkit_connection_get_local_nat_info  (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
NatkitNatInfo *natkit_connection_get_remote_nat_info (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
char          *natkit_connection_dup_explanation     (NatkitConnection *self);
NATKIT_AVAILABLE_IN_ALL
gboolean       natkit_connection_is_relayed          (NatkitConnection *self);

G_END_DECLS
