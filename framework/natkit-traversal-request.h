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

G_END_DECLS
