/* natkit-port-mapper.h: the port mapper plugin interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-enums.h"
#include "natkit-port-mapping.h"
#include "natkit-port-mapping-request.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_PORT_MAPPER (natkit_port_mapper_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (NatkitPortMapper, natkit_port_mapper, NATKIT, PORT_MAPPER, GObject)

/**
 * NatkitPortMapperInterface:
 * @g_iface: the parent interface
 * @get_methods: the protocols the plugin speaks, most preferred first
 *   (`pcp`, `natpmp`, `upnp`)
 * @map_async: asks the gateway for a mapping
 * @map_finish: finishes @map_async
 * @probe_async: finds out which of its protocols the gateway offers,
 *   without creating anything
 * @probe_finish: finishes @probe_async
 * @remove_record_async: deletes a mapping described by a record that
 *   [method@Natkit.PortMapping.to_record] made, possibly in another process
 * @remove_record_finish: finishes @remove_record_async
 *
 * The virtual functions of a port mapper.
 */
struct _NatkitPortMapperInterface
{
  GTypeInterface g_iface;

  const char * const *(*get_methods)          (NatkitPortMapper          *self);
  void                (*map_async)            (NatkitPortMapper          *self,
                                               NatkitPortMappingRequest  *request,
                                               GCancellable              *cancellable,
                                               GAsyncReadyCallback        callback,
                                               gpointer                   user_data);
  NatkitPortMapping  *(*map_finish)           (NatkitPortMapper          *self,
                                               GAsyncResult              *result,
                                               GError                   **error);
  void                (*probe_async)          (NatkitPortMapper          *self,
                                               NatkitPortMappingRequest  *request,
                                               GCancellable              *cancellable,
                                               GAsyncReadyCallback        callback,
                                               gpointer                   user_data);
  char              **(*probe_finish)         (NatkitPortMapper          *self,
                                               GAsyncResult              *result,
                                               GError                   **error);
  void                (*remove_record_async)  (NatkitPortMapper          *self,
                                               GVariant                  *record,
                                               GCancellable              *cancellable,
                                               GAsyncReadyCallback        callback,
                                               gpointer                   user_data);
  gboolean            (*remove_record_finish) (NatkitPortMapper          *self,
                                               GAsyncResult              *result,
                                               GError                   **error);

  /*< private >*/
  gpointer padding[8];
};

NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_port_mapper_get_methods          (NatkitPortMapper          *self);
NATKIT_AVAILABLE_IN_ALL
void                natkit_port_mapper_map_async            (NatkitPortMapper          *self,
                                                             NatkitPortMappingRequest  *request,
                                                             GCancellable              *cancellable,
                                                             GAsyncReadyCallback        callback,
                                                             gpointer                   user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitPortMapping  *natkit_port_mapper_map_finish           (NatkitPortMapper          *self,
                                                             GAsyncResult              *result,
                                                             GError                   **error);
NATKIT_AVAILABLE_IN_ALL
void                natkit_port_mapper_probe_async          (NatkitPortMapper          *self,
                                                             NatkitPortMappingRequest  *request,
                                                             GCancellable              *cancellable,
                                                             GAsyncReadyCallback        callback,
                                                             gpointer                   user_data);
NATKIT_AVAILABLE_IN_ALL
char              **natkit_port_mapper_probe_finish         (NatkitPortMapper          *self,
                                                             GAsyncResult              *result,
                                                             GError                   **error);
NATKIT_AVAILABLE_IN_ALL
void                natkit_port_mapper_remove_record_async  (NatkitPortMapper          *self,
                                                             GVariant                  *record,
                                                             GCancellable              *cancellable,
                                                             GAsyncReadyCallback        callback,
                                                             gpointer                   user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean            natkit_port_mapper_remove_record_finish (NatkitPortMapper          *self,
                                                             GAsyncResult              *result,
                                                             GError                   **error);

G_END_DECLS
