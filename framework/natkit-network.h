/* natkit-network.h: a virtual network (WireGuard) between peers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>

#include "natkit-connection.h"
#include "natkit-manager.h"
#include "natkit-signaling.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

/**
 * NATKIT_NETWORK_DEFAULT:
 *
 * The default virtual network: the shared address space of RFC 6598, which
 * does not clash with home networks in 10/8 and 192.168/16.
 */
#define NATKIT_NETWORK_DEFAULT "100.66.0.0/16"

#define NATKIT_TYPE_NETWORK_PEER (natkit_network_peer_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitNetworkPeer, natkit_network_peer, NATKIT, NETWORK_PEER, GObject)

NATKIT_AVAILABLE_IN_ALL
const char       *natkit_network_peer_get_peer_id        (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_network_peer_get_peer_address   (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_network_peer_get_address        (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_network_peer_get_public_key     (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_network_peer_get_method         (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
gint64            natkit_network_peer_get_rtt            (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
guint64           natkit_network_peer_get_bytes_sent     (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
guint64           natkit_network_peer_get_bytes_received (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
gint64            natkit_network_peer_get_last_handshake (NatkitNetworkPeer *self);
NATKIT_AVAILABLE_IN_ALL
NatkitConnection *natkit_network_peer_get_connection     (NatkitNetworkPeer *self);

#define NATKIT_TYPE_NETWORK (natkit_network_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitNetwork, natkit_network, NATKIT, NETWORK, GObject)

NATKIT_AVAILABLE_IN_ALL
gboolean           natkit_address_is_virtual          (GInetAddress         *address);

NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_join_network_async  (NatkitManager        *self,
                                                       NatkitSignaling      *signaling,
                                                       const char           *network,
                                                       const char           *interface_name,
                                                       GCancellable         *cancellable,
                                                       GAsyncReadyCallback   callback,
                                                       gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitNetwork     *natkit_manager_join_network_finish (NatkitManager        *self,
                                                       GAsyncResult         *result,
                                                       GError              **error);

NATKIT_AVAILABLE_IN_ALL
const char        *natkit_network_get_interface_name  (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_network_get_address         (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_network_get_network         (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_network_get_implementation  (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_network_get_public_key      (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_network_get_peer_address    (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
GListModel        *natkit_network_get_peers           (NatkitNetwork        *self);
NATKIT_AVAILABLE_IN_ALL
void               natkit_network_add_peer_async      (NatkitNetwork        *self,
                                                       const char           *peer_address,
                                                       GCancellable         *cancellable,
                                                       GAsyncReadyCallback   callback,
                                                       gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitNetworkPeer *natkit_network_add_peer_finish     (NatkitNetwork        *self,
                                                       GAsyncResult         *result,
                                                       GError              **error);
NATKIT_AVAILABLE_IN_ALL
void               natkit_network_add_connection_async  (NatkitNetwork      *self,
                                                         NatkitConnection   *connection,
                                                         GCancellable       *cancellable,
                                                         GAsyncReadyCallback callback,
                                                         gpointer            user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitNetworkPeer *natkit_network_add_connection_finish (NatkitNetwork      *self,
                                                         GAsyncResult       *result,
                                                         GError            **error);
NATKIT_AVAILABLE_IN_ALL
void               natkit_network_leave               (NatkitNetwork        *self);

G_END_DECLS
