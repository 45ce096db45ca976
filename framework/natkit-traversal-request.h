/* natkit-traversal-request.h: what a traversal method is asked to do
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-enums.h"
#include "natkit-config.h"
#include "natkit-identity.h"
#include "natkit-nat-info.h"
#include "natkit-port-mapping.h"
#include "natkit-rendezvous.h"
#include "natkit-signaling.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_TRAVERSAL_REQUEST (natkit_traversal_request_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitTraversalRequest, natkit_traversal_request,
                      NATKIT, TRAVERSAL_REQUEST, GObject)

NATKIT_AVAILABLE_IN_ALL
NatkitTraversalRequest *natkit_traversal_request_new (const char *local_peer_id,
                                                      const char *remote_peer_id,
                                                      NatkitRole  role);
NATKIT_AVAILABLE_IN_ALL
const char *natkit_traversal_request_get_local_peer_id  (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
const char *natkit_traversal_request_get_remote_peer_id (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
NatkitRole  natkit_traversal_request_get_role           (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
guint       natkit_traversal_request_get_timeout        (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void        natkit_traversal_request_set_timeout        (NatkitTraversalRequest *self,
                                                         guint                   timeout_ms);

NATKIT_AVAILABLE_IN_ALL
const char       *natkit_traversal_request_get_session_id (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_session_id (NatkitTraversalRequest *self,
                                                           const char             *session_id);
NATKIT_AVAILABLE_IN_ALL
NatkitSignaling  *natkit_traversal_request_get_signaling  (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_signaling  (NatkitTraversalRequest *self,
                                                           NatkitSignaling        *signaling);
NATKIT_AVAILABLE_IN_ALL
NatkitRendezvous *natkit_traversal_request_get_rendezvous (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_rendezvous (NatkitTraversalRequest *self,
                                                           NatkitRendezvous       *rendezvous);
NATKIT_AVAILABLE_IN_ALL
NatkitIdentity   *natkit_traversal_request_get_identity   (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_identity   (NatkitTraversalRequest *self,
                                                           NatkitIdentity         *identity);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_traversal_request_get_stun_servers (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_stun_servers (NatkitTraversalRequest *self,
                                                             const char * const     *servers);
NATKIT_AVAILABLE_IN_ALL
NatkitNatInfo    *natkit_traversal_request_get_local_nat_info  (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_local_nat_info  (NatkitTraversalRequest *self,
                                                                NatkitNatInfo          *info);
NATKIT_AVAILABLE_IN_ALL
NatkitNatInfo    *natkit_traversal_request_get_remote_nat_info (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_remote_nat_info (NatkitTraversalRequest *self,
                                                                NatkitNatInfo          *info);
NATKIT_AVAILABLE_IN_ALL
NatkitConfig     *natkit_traversal_request_get_config      (NatkitTraversalRequest *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_set_config      (NatkitTraversalRequest *self,
                                                            NatkitConfig           *config);
NATKIT_AVAILABLE_IN_ALL
void              natkit_traversal_request_map_port_async  (NatkitTraversalRequest *self,
                                                            NatkitIpProtocol        protocol,
                                                            guint16                 internal_port,
                                                            GCancellable           *cancellable,
                                                            GAsyncReadyCallback     callback,
                                                            gpointer                user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitPortMapping *natkit_traversal_request_map_port_finish (NatkitTraversalRequest *self,
                                                             GAsyncResult           *result,
                                                             GError                **error);

G_END_DECLS
