/* natkit-port-mapping.h: a port forwarded by a gateway
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-enums.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_PORT_MAPPING (natkit_port_mapping_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_DERIVABLE_TYPE (NatkitPortMapping, natkit_port_mapping, NATKIT, PORT_MAPPING, GObject)

/**
 * NatkitPortMappingClass:
 * @parent_class: the parent class
 * @renew_async: asks the gateway again for the same mapping (which also
 *   re-creates it after a gateway restart) and reports the result with
 *   natkit_port_mapping_update(). %NULL when the plugin's library renews
 *   leases itself
 * @renew_finish: finishes @renew_async
 * @release_async: deletes the mapping on the gateway
 * @release_finish: finishes @release_async
 * @add_to_record: adds what the plugin needs to delete the mapping later
 *   (a PCP nonce, say) to the record natkit keeps in its state folder
 * @renewed: class handler of [signal@Natkit.PortMapping::renewed]
 * @changed: class handler of [signal@Natkit.PortMapping::changed]
 * @lost: class handler of [signal@Natkit.PortMapping::lost]
 *
 * What a port mapper plugin implements for its mappings.
 */
struct _NatkitPortMappingClass
{
  GObjectClass parent_class;

  void     (*renew_async)    (NatkitPortMapping    *self,
                              GCancellable         *cancellable,
                              GAsyncReadyCallback   callback,
                              gpointer              user_data);
  gboolean (*renew_finish)   (NatkitPortMapping    *self,
                              GAsyncResult         *result,
                              GError              **error);
  void     (*release_async)  (NatkitPortMapping    *self,
                              GCancellable         *cancellable,
                              GAsyncReadyCallback   callback,
                              gpointer              user_data);
  gboolean (*release_finish) (NatkitPortMapping    *self,
                              GAsyncResult         *result,
                              GError              **error);
  void     (*add_to_record)  (NatkitPortMapping    *self,
                              GVariantDict         *record);

  void     (*renewed)        (NatkitPortMapping    *self);
  void     (*changed)        (NatkitPortMapping    *self);
  void     (*lost)           (NatkitPortMapping    *self,
                              const GError         *error);

  /*< private >*/
  gpointer padding[8];
};

NATKIT_AVAILABLE_IN_ALL
const char            *natkit_port_mapping_get_method           (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
NatkitIpProtocol       natkit_port_mapping_get_protocol         (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_port_mapping_get_internal_address (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
guint16                natkit_port_mapping_get_internal_port    (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_port_mapping_get_external_address (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
guint16                natkit_port_mapping_get_external_port    (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
guint32                natkit_port_mapping_get_lifetime         (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
const char            *natkit_port_mapping_get_gateway          (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
NatkitPortMappingState natkit_port_mapping_get_state            (NatkitPortMapping *self);
NATKIT_AVAILABLE_IN_ALL
guint                  natkit_port_mapping_get_renewals         (NatkitPortMapping *self);

NATKIT_AVAILABLE_IN_ALL
void                   natkit_port_mapping_renew_async          (NatkitPortMapping    *self,
                                                                 GCancellable         *cancellable,
                                                                 GAsyncReadyCallback   callback,
                                                                 gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean               natkit_port_mapping_renew_finish         (NatkitPortMapping    *self,
                                                                 GAsyncResult         *result,
                                                                 GError              **error);
NATKIT_AVAILABLE_IN_ALL
void                   natkit_port_mapping_release_async        (NatkitPortMapping    *self,
                                                                 GCancellable         *cancellable,
                                                                 GAsyncReadyCallback   callback,
                                                                 gpointer              user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean               natkit_port_mapping_release_finish       (NatkitPortMapping    *self,
                                                                 GAsyncResult         *result,
                                                                 GError              **error);
NATKIT_AVAILABLE_IN_ALL
GVariant              *natkit_port_mapping_to_record            (NatkitPortMapping    *self);

/* for plugins */
NATKIT_AVAILABLE_IN_ALL
void                   natkit_port_mapping_update               (NatkitPortMapping    *self,
                                                                 const char           *external_address,
                                                                 guint16               external_port,
                                                                 guint32               lifetime);
NATKIT_AVAILABLE_IN_ALL
void                   natkit_port_mapping_set_lost             (NatkitPortMapping    *self,
                                                                 const GError         *error);

G_END_DECLS
