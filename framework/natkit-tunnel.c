/* natkit-tunnel.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"

/**
 * NatkitTunnel:
 *
 * A virtual network device that a [class@Natkit.Network] drives: an
 * interface with an address, and peers — each a public key, an endpoint on
 * 127.0.0.1 and the address routed to it. The wireguard plugin implements
 * it; applications use [method@Natkit.Manager.join_network_async] instead.
 */

G_DEFINE_INTERFACE (NatkitTunnel, natkit_tunnel, G_TYPE_OBJECT)

static void
natkit_tunnel_default_init (NatkitTunnelInterface *iface)
{
  /**
   * NatkitTunnel::stopped:
   * @self: the tunnel
   * @reason: what happened, in words
   *
   * What ran the tunnel stopped by itself (wireguard-go exited or was
   * killed); the interface is gone. [class@Natkit.Network] leaves the
   * network and says why.
   */
  g_signal_new ("stopped", G_TYPE_FROM_INTERFACE (iface), G_SIGNAL_RUN_LAST,
                0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

/**
 * natkit_tunnel_load_key:
 * @self: a tunnel
 * @filename: (type filename): the key file
 * @error: return location for a #GError
 *
 * Loads the node's key pair, creating it (mode 0600) when the file does not
 * exist.
 *
 * Returns: %TRUE on success
 */
gboolean
natkit_tunnel_load_key (NatkitTunnel  *self,
                        const char    *filename,
                        GError       **error)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), FALSE);
  g_return_val_if_fail (filename != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);
  return NATKIT_TUNNEL_GET_IFACE (self)->load_key (self, filename, error);
}

/**
 * natkit_tunnel_get_public_key:
 * @self: a tunnel
 *
 * Returns: (nullable): the public key (base64), %NULL before
 *   [method@Natkit.Tunnel.load_key]
 */
const char *
natkit_tunnel_get_public_key (NatkitTunnel *self)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), NULL);
  return NATKIT_TUNNEL_GET_IFACE (self)->get_public_key (self);
}

/**
 * natkit_tunnel_get_implementation:
 * @self: a tunnel
 *
 * Returns: what runs the tunnel, in words (e.g. "wireguard-go (userspace)")
 */
const char *
natkit_tunnel_get_implementation (NatkitTunnel *self)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), NULL);
  return NATKIT_TUNNEL_GET_IFACE (self)->get_implementation (self);
}

/**
 * natkit_tunnel_get_interface_name:
 * @self: a tunnel
 *
 * Returns: (nullable): the network interface's name once it is up
 */
const char *
natkit_tunnel_get_interface_name (NatkitTunnel *self)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), NULL);
  return NATKIT_TUNNEL_GET_IFACE (self)->get_interface_name (self);
}

/**
 * natkit_tunnel_get_listen_port:
 * @self: a tunnel
 *
 * Returns: the UDP port on 127.0.0.1 the tunnel receives on, 0 before it
 *   is up
 */
guint16
natkit_tunnel_get_listen_port (NatkitTunnel *self)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), 0);
  return NATKIT_TUNNEL_GET_IFACE (self)->get_listen_port (self);
}

/**
 * natkit_tunnel_up_async:
 * @self: a tunnel
 * @interface_name: (nullable): the interface to create, or %NULL for the
 *   first free default name
 * @address: the interface's IPv4 address
 * @prefix: the network's prefix length (a route to the network goes with it)
 * @mtu: the interface's MTU
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Creates the interface and brings it up. On failure nothing is left
 * behind.
 */
void
natkit_tunnel_up_async (NatkitTunnel        *self,
                        const char          *interface_name,
                        const char          *address,
                        guint                prefix,
                        guint                mtu,
                        GCancellable        *cancellable,
                        GAsyncReadyCallback  callback,
                        gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_TUNNEL (self));
  g_return_if_fail (address != NULL);
  NATKIT_TUNNEL_GET_IFACE (self)->up_async (self, interface_name, address, prefix, mtu,
                                            cancellable, callback, user_data);
}

/**
 * natkit_tunnel_up_finish:
 * @self: a tunnel
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: %TRUE when the interface is up
 */
gboolean
natkit_tunnel_up_finish (NatkitTunnel  *self,
                         GAsyncResult  *result,
                         GError       **error)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), FALSE);
  return NATKIT_TUNNEL_GET_IFACE (self)->up_finish (self, result, error);
}

/**
 * natkit_tunnel_set_peer_async:
 * @self: a tunnel
 * @public_key: the peer's public key (base64)
 * @endpoint: where its packets go, "127.0.0.1:PORT"
 * @allowed_ip: the address routed to it, "A.B.C.D/32"
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Adds or updates a peer.
 */
void
natkit_tunnel_set_peer_async (NatkitTunnel        *self,
                              const char          *public_key,
                              const char          *endpoint,
                              const char          *allowed_ip,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_TUNNEL (self));
  g_return_if_fail (public_key != NULL && endpoint != NULL && allowed_ip != NULL);
  NATKIT_TUNNEL_GET_IFACE (self)->set_peer_async (self, public_key, endpoint, allowed_ip,
                                                  cancellable, callback, user_data);
}

/**
 * natkit_tunnel_set_peer_finish:
 * @self: a tunnel
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: %TRUE on success
 */
gboolean
natkit_tunnel_set_peer_finish (NatkitTunnel  *self,
                               GAsyncResult  *result,
                               GError       **error)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), FALSE);
  return NATKIT_TUNNEL_GET_IFACE (self)->set_peer_finish (self, result, error);
}

/**
 * natkit_tunnel_remove_peer_async:
 * @self: a tunnel
 * @public_key: the peer's public key (base64)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Removes a peer and its route.
 */
void
natkit_tunnel_remove_peer_async (NatkitTunnel        *self,
                                 const char          *public_key,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_TUNNEL (self));
  g_return_if_fail (public_key != NULL);
  NATKIT_TUNNEL_GET_IFACE (self)->remove_peer_async (self, public_key, cancellable,
                                                     callback, user_data);
}

/**
 * natkit_tunnel_remove_peer_finish:
 * @self: a tunnel
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: %TRUE on success
 */
gboolean
natkit_tunnel_remove_peer_finish (NatkitTunnel  *self,
                                  GAsyncResult  *result,
                                  GError       **error)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), FALSE);
  return NATKIT_TUNNEL_GET_IFACE (self)->remove_peer_finish (self, result, error);
}

/**
 * natkit_tunnel_get_peers_async:
 * @self: a tunnel
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Reads the peers' counters.
 */
void
natkit_tunnel_get_peers_async (NatkitTunnel        *self,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_TUNNEL (self));
  NATKIT_TUNNEL_GET_IFACE (self)->get_peers_async (self, cancellable, callback, user_data);
}

/**
 * natkit_tunnel_get_peers_finish:
 * @self: a tunnel
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (nullable): `a{s(ttx)}`: public key → (bytes
 *   received, bytes sent, last handshake in Unix seconds, 0 for none)
 */
GVariant *
natkit_tunnel_get_peers_finish (NatkitTunnel  *self,
                                GAsyncResult  *result,
                                GError       **error)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), NULL);
  return NATKIT_TUNNEL_GET_IFACE (self)->get_peers_finish (self, result, error);
}

/**
 * natkit_tunnel_down:
 * @self: a tunnel
 *
 * Deletes the interface and its routes and stops whatever ran the tunnel.
 * Safe to call more than once.
 */
void
natkit_tunnel_down (NatkitTunnel *self)
{
  g_return_if_fail (NATKIT_IS_TUNNEL (self));
  NATKIT_TUNNEL_GET_IFACE (self)->down (self);
}

/**
 * natkit_tunnel_set_mtu_async:
 * @self: a tunnel that is up
 * @mtu: the interface's new MTU
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when done
 * @user_data: data for @callback
 *
 * Changes the interface's MTU, e.g. because a path under the tunnel takes
 * smaller datagrams than the last one.
 */
void
natkit_tunnel_set_mtu_async (NatkitTunnel        *self,
                             guint                mtu,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_TUNNEL (self));
  NATKIT_TUNNEL_GET_IFACE (self)->set_mtu_async (self, mtu, cancellable, callback, user_data);
}

/**
 * natkit_tunnel_set_mtu_finish:
 * @self: a tunnel
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: %TRUE on success
 */
gboolean
natkit_tunnel_set_mtu_finish (NatkitTunnel  *self,
                              GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (NATKIT_IS_TUNNEL (self), FALSE);
  return NATKIT_TUNNEL_GET_IFACE (self)->set_mtu_finish (self, result, error);
}
