/* natkit-rendezvous-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "natkit.h"

G_BEGIN_DECLS

/* Handles one control frame from the server, as the read loop does; for
 * the fuzz target. Returns FALSE when the frame dropped the connection. */
gboolean _natkit_rendezvous_handle_frame          (NatkitRendezvous *self,
                                                   const guint8     *body,
                                                   gsize             len);
/* Pretends registration succeeded (no socket): for the fuzz target. */
void     _natkit_rendezvous_set_registered_for_testing (NatkitRendezvous *self);
guint16  _natkit_rendezvous_get_stun_port2         (NatkitRendezvous *self);

G_END_DECLS
