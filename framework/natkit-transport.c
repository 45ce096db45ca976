/* natkit-transport.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"

/**
 * NatkitTransport:
 *
 * What runs on top of an established [class@Natkit.Path]: the secure
 * datagram and stream transports, a WireGuard tunnel.
 *
 * A transport outlives the paths under it. When the manager replaces a path
 * (the direct path broke, or a relayed connection found a direct one) it
 * calls [method@Natkit.Transport.attach] again with the new path, and the
 * transport carries on over it. [property@Natkit.Transport:path] always
 * names the path in use.
 */

G_DEFINE_INTERFACE (NatkitTransport, natkit_transport, G_TYPE_OBJECT)

static void
natkit_transport_default_init (NatkitTransportInterface *iface)
{
  /**
   * NatkitTransport:path:
   *
   * The path the transport runs on, or %NULL when detached.
   */
  g_object_interface_install_property (iface,
    g_param_spec_object ("path", NULL, NULL, NATKIT_TYPE_PATH,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
}

/**
 * natkit_transport_attach:
 * @self: a transport
 * @path: the path to run on
 * @error: return location for a #GError
 *
 * Starts running the transport on @path, replacing the path it ran on.
 *
 * Returns: %TRUE on success
 */
gboolean
natkit_transport_attach (NatkitTransport  *self,
                         NatkitPath       *path,
                         GError          **error)
{
  g_return_val_if_fail (NATKIT_IS_TRANSPORT (self), FALSE);
  g_return_val_if_fail (NATKIT_IS_PATH (path), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (natkit_path_is_closed (path))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "Cannot run %s on the %s path: it is already closed",
                   G_OBJECT_TYPE_NAME (self),
                   natkit_path_get_method (path));
      return FALSE;
    }

  return NATKIT_TRANSPORT_GET_IFACE (self)->attach (self, path, error);
}

/**
 * natkit_transport_detach:
 * @self: a transport
 *
 * Stops using the current path, leaving it open.
 */
void
natkit_transport_detach (NatkitTransport *self)
{
  g_return_if_fail (NATKIT_IS_TRANSPORT (self));

  NATKIT_TRANSPORT_GET_IFACE (self)->detach (self);
}

/**
 * natkit_transport_get_path:
 * @self: a transport
 *
 * Returns: (transfer none) (nullable): the path in use
 */
NatkitPath *
natkit_transport_get_path (NatkitTransport *self)
{
  NatkitPath *path = NULL;

  g_return_val_if_fail (NATKIT_IS_TRANSPORT (self), NULL);

  g_object_get (self, "path", &path, NULL);
  /* The transport keeps its own reference. */
  if (path != NULL)
    g_object_unref (path);
  return path;
}
