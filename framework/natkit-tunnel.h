/* natkit-tunnel.h: the tunnel backend interface (a virtual network device)
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

#define NATKIT_TYPE_TUNNEL (natkit_tunnel_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (NatkitTunnel, natkit_tunnel, NATKIT, TUNNEL, GObject)

/**
 * NatkitTunnelInterface:
 * @g_iface: the parent interface
 * @load_key: loads the node's key pair from a file, creating it (mode
 *   0600) when it does not exist
 * @get_public_key: the public key, base64, after @load_key
 * @get_implementation: what runs the tunnel, in words ("wireguard-go
 *   (userspace)", "kernel")
 * @get_interface_name: the network interface, after @up_async
 * @get_listen_port: the UDP port on 127.0.0.1 that the tunnel receives its
 *   peers' packets on, after @up_async
 * @up_async: creates the interface, gives it an address, brings it up
 * @up_finish: finishes @up_async
 * @set_peer_async: adds or updates a peer: its public key, the UDP endpoint
 *   (on 127.0.0.1) its packets go to, and the address routed to it
 * @set_peer_finish: finishes @set_peer_async
 * @remove_peer_async: removes a peer
 * @remove_peer_finish: finishes @remove_peer_async
 * @get_peers_async: the peers' counters
 * @get_peers_finish: finishes @get_peers_async: a `a{s(ttx)}` #GVariant,
 *   public key → (bytes received, bytes sent, last handshake in Unix
 *   seconds or 0)
 * @down: deletes the interface and its routes and stops whatever ran it;
 *   synchronous, safe to call more than once
 * @set_mtu_async: changes the interface's MTU (the paths under the tunnel
 *   changed)
 * @set_mtu_finish: finishes @set_mtu_async
 *
 * A tunnel backend is a plugin type (registered as a
 * %NATKIT_PLUGIN_KIND_TRANSPORT that also implements this interface) that
 * [class@Natkit.Network] drives: the wireguard plugin implements it with
 * `wireguard-go`. Its packets leave and arrive on 127.0.0.1; the network
 * carries them over each peer's [class@Natkit.Connection].
 */
struct _NatkitTunnelInterface
{
  GTypeInterface g_iface;

  gboolean     (*load_key)           (NatkitTunnel         *self,
                                      const char           *filename,
                                      GError              **error);
  const char  *(*get_public_key)     (NatkitTunnel         *self);
  const char  *(*get_implementation) (NatkitTunnel         *self);
  const char  *(*get_interface_name) (NatkitTunnel         *self);
  guint16      (*get_listen_port)    (NatkitTunnel         *self);
  void         (*up_async)           (NatkitTunnel         *self,
                                      const char           *interface_name,
                                      const char           *address,
                                      guint                 prefix,
                                      guint                 mtu,
                                      GCancellable         *cancellable,
                                      GAsyncReadyCallback   callback,
                                      gpointer              user_data);
  gboolean     (*up_finish)          (NatkitTunnel         *self,
                                      GAsyncResult         *result,
                                      GError              **error);
  void         (*set_peer_async)     (NatkitTunnel         *self,
                                      const char           *public_key,
                                      const char           *endpoint,
                                      const char           *allowed_ip,
                                      GCancellable         *cancellable,
                                      GAsyncReadyCallback   callback,
                                      gpointer              user_data);
  gboolean     (*set_peer_finish)    (NatkitTunnel         *self,
                                      GAsyncResult         *result,
                                      GError              **error);
  void         (*remove_peer_async)  (NatkitTunnel         *self,
                                      const char           *public_key,
                                      GCancellable         *cancellable,
                                      GAsyncReadyCallback   callback,
                                      gpointer              user_data);
  gboolean     (*remove_peer_finish) (NatkitTunnel         *self,
                                      GAsyncResult         *result,
                                      GError              **error);
  void         (*get_peers_async)    (NatkitTunnel         *self,
                                      GCancellable         *cancellable,
                                      GAsyncReadyCallback   callback,
                                      gpointer              user_data);
  GVariant    *(*get_peers_finish)   (NatkitTunnel         *self,
                                      GAsyncResult         *result,
                                      GError              **error);
  void         (*down)               (NatkitTunnel         *self);
  void         (*set_mtu_async)      (NatkitTunnel         *self,
                                      guint                 mtu,
                                      GCancellable         *cancellable,
                                      GAsyncReadyCallback   callback,
                                      gpointer              user_data);
  gboolean     (*set_mtu_finish)     (NatkitTunnel         *self,
                                      GAsyncResult         *result,
                                      GError              **error);

  /*< private >*/
  gpointer padding[6];
};

NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_tunnel_load_key           (NatkitTunnel         *self,
                                              const char           *filename,
                                              GError              **error);
NATKIT_AVAILABLE_IN_ALL
const char *natkit_tunnel_get_public_key     (NatkitTunnel         *self);
NATKIT_AVAILABLE_IN_ALL
const char *natkit_tunnel_get_implementation (NatkitTunnel         *self);
NATKIT_AVAILABLE_IN_ALL
const char *natkit_tunnel_get_interface_name (NatkitTunnel         *self);
NATKIT_AVAILABLE_IN_ALL
guint16     natkit_tunnel_get_listen_port    (NatkitTunnel         *self);
NATKIT_AVAILABLE_IN_ALL
void        natkit_tunnel_up_async           (NatkitTunnel         *self,
                                              const char           *interface_name,
                                              const char           *address,
                                              guint                 prefix,
                                              guint                 mtu,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_tunnel_up_finish          (NatkitTunnel         *self,
                                              GAsyncResult         *result,
                                              GError              **error);
NATKIT_AVAILABLE_IN_ALL
void        natkit_tunnel_set_peer_async     (NatkitTunnel         *self,
                                              const char           *public_key,
                                              const char           *endpoint,
                                              const char           *allowed_ip,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_tunnel_set_peer_finish    (NatkitTunnel         *self,
                                              GAsyncResult         *result,
                                              GError              **error);
NATKIT_AVAILABLE_IN_ALL
void        natkit_tunnel_remove_peer_async  (NatkitTunnel         *self,
                                              const char           *public_key,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_tunnel_remove_peer_finish (NatkitTunnel         *self,
                                              GAsyncResult         *result,
                                              GError              **error);
NATKIT_AVAILABLE_IN_ALL
void        natkit_tunnel_get_peers_async    (NatkitTunnel         *self,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
GVariant   *natkit_tunnel_get_peers_finish   (NatkitTunnel         *self,
                                              GAsyncResult         *result,
                                              GError              **error);
NATKIT_AVAILABLE_IN_ALL
void        natkit_tunnel_down               (NatkitTunnel         *self);
NATKIT_AVAILABLE_IN_ALL
void        natkit_tunnel_set_mtu_async      (NatkitTunnel         *self,
                                              guint                 mtu,
                                              GCancellable         *cancellable,
                                              GAsyncReadyCallback   callback,
                                              gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_tunnel_set_mtu_finish     (NatkitTunnel         *self,
                                              GAsyncResult         *result,
                                              GError              **error);

G_END_DECLS
