/* natkit-transport.h: the transport plugin interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-path.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_TRANSPORT (natkit_transport_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (NatkitTransport, natkit_transport, NATKIT, TRANSPORT, GObject)

/**
 * NatkitTransportInterface:
 * @g_iface: the parent interface
 * @attach: starts using a path; called again with the new path when the
 *   manager swaps paths under a live connection (failover, upgrade)
 * @detach: stops using the current path without closing it
 *
 * The virtual functions of a transport.
 */
struct _NatkitTransportInterface
{
  GTypeInterface g_iface;

  gboolean (*attach) (NatkitTransport  *self,
                      NatkitPath       *path,
                      GError          **error);
  void     (*detach) (NatkitTransport  *self);

  /*< private >*/
  gpointer padding[8];
};

NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_transport_attach   (NatkitTransport  *self,
                                       NatkitPath       *path,
                                       GError          **error);
NATKIT_AVAILABLE_IN_ALL
void        natkit_transport_detach   (NatkitTransport  *self);
NATKIT_AVAILABLE_IN_ALL
NatkitPath *natkit_transport_get_path (NatkitTransport  *self);

G_END_DECLS
