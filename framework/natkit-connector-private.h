/* natkit-connector-private.h: the manager's connect and listen logic
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "natkit.h"
#include "natkit-history-private.h"
#include "natkit-session-private.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_CONNECTOR (_natkit_connector_get_type ())
G_DECLARE_FINAL_TYPE (NatkitConnector, _natkit_connector, NATKIT, CONNECTOR, GObject)

NatkitConnector  *_natkit_connector_new               (NatkitManager       *manager);
void              _natkit_connector_shutdown          (NatkitConnector     *self);
NatkitRendezvous *_natkit_connector_get_rendezvous    (NatkitConnector     *self,
                                                       const char          *server,
                                                       GError             **error);
gboolean          _natkit_connector_listen            (NatkitConnector     *self,
                                                       NatkitSignaling     *signaling,
                                                       GError             **error);
void              _natkit_connector_stop_listening    (NatkitConnector     *self,
                                                       NatkitSignaling     *signaling);
void              _natkit_connector_connect_async     (NatkitConnector     *self,
                                                       NatkitSignaling     *signaling,
                                                       const char          *peer_id,
                                                       const char          *peer_address,
                                                       const char * const  *methods,
                                                       NatkitConnectFlags   flags,
                                                       GCancellable        *cancellable,
                                                       GAsyncReadyCallback  callback,
                                                       gpointer             user_data);
NatkitConnection *_natkit_connector_connect_finish    (NatkitConnector     *self,
                                                       GAsyncResult        *result,
                                                       GError             **error);
/* For a connection that lost its path (initiator side): a new path by the
 * methods agreed at connect time. */
void              _natkit_connector_reopen_async      (NatkitConnector     *self,
                                                       NatkitConnection    *connection,
                                                       GCancellable        *cancellable,
                                                       GAsyncReadyCallback  callback,
                                                       gpointer             user_data);
NatkitPath       *_natkit_connector_reopen_finish     (NatkitConnector     *self,
                                                       GAsyncResult        *result,
                                                       GError             **error);
void              _natkit_connector_send_op           (NatkitConnector     *self,
                                                       NatkitSignaling     *signaling,
                                                       const char          *peer_id,
                                                       const char          *session_id,
                                                       const char          *op,
                                                       const char          *member,
                                                       const char          *value);
void              _natkit_connector_forget            (NatkitConnector     *self,
                                                       const char          *session_id);
NatkitCost        _natkit_connector_method_cost       (NatkitConnector     *self,
                                                       const char          *method);
NatkitCost        _natkit_connector_path_cost         (NatkitConnector     *self,
                                                       NatkitPath          *path);
void              _natkit_connector_find_other_async  (NatkitConnector     *self,
                                                       NatkitConnection    *connection,
                                                       const char * const  *exclude,
                                                       GCancellable        *cancellable,
                                                       GAsyncReadyCallback  callback,
                                                       gpointer             user_data);
guint             _natkit_connector_get_slow_rtt      (NatkitConnector     *self);

/* natkit-connection.c */
NatkitConnection *_natkit_connection_new              (NatkitConnector     *connector,
                                                       NatkitSignaling     *signaling,
                                                       NatkitSession       *session,
                                                       NatkitPath          *path,
                                                       const char          *peer_id,
                                                       const char          *peer_address,
                                                       const char          *session_id,
                                                       NatkitRole           role,
                                                       NatkitConnectFlags   flags,
                                                       guint                keepalive_ms,
                                                       guint                reconnect_ms,
                                                       gint64               connect_time);
void              _natkit_connection_set_failures     (NatkitConnection    *self,
                                                       const char * const *failures);
void              _natkit_connection_set_nat_info     (NatkitConnection    *self,
                                                       NatkitNatInfo       *local,
                                                       NatkitNatInfo       *remote);
const char       *_natkit_connection_get_lost_method  (NatkitConnection    *self);
void              _natkit_connection_upgrade_path     (NatkitConnection    *self,
                                                       NatkitPath          *path,
                                                       const char          *reason);
void              _natkit_connection_replace_path     (NatkitConnection    *self,
                                                       NatkitPath          *path);
void              _natkit_connection_peer_closed      (NatkitConnection    *self,
                                                       const char          *reason);
NatkitSignaling  *_natkit_connection_get_signaling    (NatkitConnection    *self);
NatkitSession    *_natkit_connection_get_session      (NatkitConnection    *self);

/* natkit-manager.c */
GPtrArray        *_natkit_manager_list_traversals     (NatkitManager       *self,
                                                       const char * const  *methods,
                                                       GError             **error);
NatkitHistory    *_natkit_manager_get_history         (NatkitManager       *self);
void              _natkit_manager_emit_progress       (NatkitManager       *self,
                                                       const char          *session_id,
                                                       const char          *peer_id,
                                                       const char          *event,
                                                       const char          *method,
                                                       const char          *reason);
void              _natkit_manager_emit_incoming       (NatkitManager       *self,
                                                       NatkitConnection    *connection);
/* metrics: a method started; it carried a connection (@connect_us: the
 * time to connect, or -1 when a running connection moved to it) or failed */
void              _natkit_manager_record_attempt      (NatkitManager       *self,
                                                       const char          *method);
void              _natkit_manager_record_outcome      (NatkitManager       *self,
                                                       const char          *method,
                                                       gboolean             success,
                                                       gint64               connect_us,
                                                       const char          *reason);

G_END_DECLS
