/* natkit-traversal-request-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

/* the manager whose port mappers natkit_traversal_request_map_port_async()
 * asks (held weakly) */
void _natkit_traversal_request_set_manager (NatkitTraversalRequest *self,
                                            NatkitManager          *manager);

G_END_DECLS
