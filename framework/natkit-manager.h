/* natkit-manager.h: the entry point
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-config.h"
#include "natkit-connection.h"
#include "natkit-rendezvous.h"
#include "natkit-signaling.h"
#include "natkit-identity.h"
#include "natkit-nat-info.h"
#include "natkit-path.h"
#include "natkit-plugin-info.h"
#include "natkit-port-mapping.h"
#include "natkit-port-mapping-request.h"
#include "natkit-transport.h"
#include "natkit-traversal-request.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_MANAGER (natkit_manager_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitManager, natkit_manager, NATKIT, MANAGER, GObject)

NATKIT_AVAILABLE_IN_ALL
NatkitManager    *natkit_manager_new               (GError                 **error);
NATKIT_AVAILABLE_IN_ALL
NatkitManager    *natkit_manager_new_with_config   (NatkitConfig            *config);
NATKIT_AVAILABLE_IN_ALL
NatkitConfig     *natkit_manager_get_config        (NatkitManager           *self);
NATKIT_AVAILABLE_IN_ALL
NatkitIdentity   *natkit_manager_get_identity      (NatkitManager           *self,
                                                    GError                 **error);
NATKIT_AVAILABLE_IN_ALL
void              natkit_manager_set_identity      (NatkitManager           *self,
                                                    NatkitIdentity          *identity);
NATKIT_AVAILABLE_IN_ALL
GPtrArray        *natkit_manager_list_plugins      (NatkitManager           *self);
NATKIT_AVAILABLE_IN_ALL
NatkitPluginInfo *natkit_manager_get_plugin        (NatkitManager           *self,
                                                    const char              *name);
NATKIT_AVAILABLE_IN_ALL
NatkitTransport  *natkit_manager_create_transport  (NatkitManager           *self,
                                                    const char              *name,
                                                    GError                 **error);
NATKIT_AVAILABLE_IN_ALL
void              natkit_manager_open_path_async   (NatkitManager           *self,
                                                    NatkitTraversalRequest  *request,
                                                    const char * const      *methods,
                                                    GCancellable            *cancellable,
                                                    GAsyncReadyCallback      callback,
                                                    gpointer                 user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitPath       *natkit_manager_open_path_finish  (NatkitManager           *self,
                                                    GAsyncResult            *result,
                                                    GError                 **error);

NATKIT_AVAILABLE_IN_ALL
void              natkit_manager_detect_nat_async  (NatkitManager           *self,
                                                    const char * const      *servers,
                                                    guint                    timeout_ms,
                                                    NatkitDetectFlags        flags,
                                                    GCancellable            *cancellable,
                                                    GAsyncReadyCallback      callback,
                                                    gpointer                 user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitNatInfo    *natkit_manager_detect_nat_finish (NatkitManager           *self,
                                                    GAsyncResult            *result,
                                                    GError                 **error);

NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_map_port_async               (NatkitManager            *self,
                                                                NatkitPortMappingRequest *request,
                                                                const char * const       *methods,
                                                                GCancellable             *cancellable,
                                                                GAsyncReadyCallback       callback,
                                                                gpointer                  user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitPortMapping *natkit_manager_map_port_finish              (NatkitManager            *self,
                                                                GAsyncResult             *result,
                                                                GError                  **error);
NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_probe_gateway_async          (NatkitManager            *self,
                                                                guint                     timeout_ms,
                                                                GCancellable             *cancellable,
                                                                GAsyncReadyCallback       callback,
                                                                gpointer                  user_data);
NATKIT_AVAILABLE_IN_ALL
char             **natkit_manager_probe_gateway_finish         (NatkitManager            *self,
                                                                GAsyncResult             *result,
                                                                GError                  **error);
NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_remove_stale_mappings_async  (NatkitManager            *self,
                                                                GCancellable             *cancellable,
                                                                GAsyncReadyCallback       callback,
                                                                gpointer                  user_data);
NATKIT_AVAILABLE_IN_ALL
int                natkit_manager_remove_stale_mappings_finish (NatkitManager            *self,
                                                                GAsyncResult             *result,
                                                                guint                    *n_skipped,
                                                                GError                  **error);

NATKIT_AVAILABLE_IN_ALL
NatkitRendezvous  *natkit_manager_get_rendezvous              (NatkitManager            *self,
                                                               const char               *server,
                                                               GError                  **error);
NATKIT_AVAILABLE_IN_ALL
gboolean           natkit_manager_listen                      (NatkitManager            *self,
                                                               NatkitSignaling          *signaling,
                                                               GError                  **error);
NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_stop_listening              (NatkitManager            *self,
                                                               NatkitSignaling          *signaling);
NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_connect_async               (NatkitManager            *self,
                                                               const char               *peer_address,
                                                               const char * const       *methods,
                                                               NatkitConnectFlags        flags,
                                                               GCancellable             *cancellable,
                                                               GAsyncReadyCallback       callback,
                                                               gpointer                  user_data);
NATKIT_AVAILABLE_IN_ALL
void               natkit_manager_connect_with_signaling_async (NatkitManager           *self,
                                                               NatkitSignaling          *signaling,
                                                               const char               *peer_id,
                                                               const char * const       *methods,
                                                               NatkitConnectFlags        flags,
                                                               GCancellable             *cancellable,
                                                               GAsyncReadyCallback       callback,
                                                               gpointer                  user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitConnection  *natkit_manager_connect_finish              (NatkitManager            *self,
                                                               GAsyncResult             *result,
                                                               GError                  **error);

NATKIT_AVAILABLE_IN_ALL
char             *natkit_manager_dup_history     (NatkitManager        *self);
NATKIT_AVAILABLE_IN_ALL
NatkitNatInfo    *natkit_manager_get_nat_info    (NatkitManager        *self);
NATKIT_AVAILABLE_IN_ALL
GListModel       *natkit_manager_get_connections (NatkitManager        *self);
NATKIT_AVAILABLE_IN_ALL
GListModel       *natkit_manager_get_port_mappings (NatkitManager      *self);
NATKIT_AVAILABLE_IN_ALL
GVariant         *natkit_manager_dup_metrics     (NatkitManager        *self);

G_END_DECLS
