/* natkit-identity.h: this node's Ed25519 key pair and peer ID
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-version-macros.h"

G_BEGIN_DECLS

/**
 * NATKIT_PEER_ID_MAX_LENGTH:
 *
 * The longest a peer ID can be, in characters.
 */
#define NATKIT_PEER_ID_MAX_LENGTH 44

#define NATKIT_TYPE_IDENTITY (natkit_identity_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitIdentity, natkit_identity, NATKIT, IDENTITY, GObject)

NATKIT_AVAILABLE_IN_ALL
NatkitIdentity *natkit_identity_load_or_create     (const char      *filename,
                                                    GError         **error);
NATKIT_AVAILABLE_IN_ALL
NatkitIdentity *natkit_identity_load               (const char      *filename,
                                                    GError         **error);
NATKIT_AVAILABLE_IN_ALL
NatkitIdentity *natkit_identity_new_ephemeral      (GError         **error);
NATKIT_AVAILABLE_IN_ALL
const char     *natkit_identity_get_peer_id        (NatkitIdentity  *self);
NATKIT_AVAILABLE_IN_ALL
const char     *natkit_identity_get_filename       (NatkitIdentity  *self);
NATKIT_AVAILABLE_IN_ALL
GBytes         *natkit_identity_get_public_key     (NatkitIdentity  *self);
NATKIT_AVAILABLE_IN_ALL
GBytes         *natkit_identity_sign               (NatkitIdentity  *self,
                                                    GBytes          *data,
                                                    GError         **error);

NATKIT_AVAILABLE_IN_ALL
gboolean        natkit_identity_verify             (GBytes          *public_key,
                                                    GBytes          *data,
                                                    GBytes          *signature,
                                                    GError         **error);
NATKIT_AVAILABLE_IN_ALL
char           *natkit_peer_id_from_public_key     (GBytes          *public_key);
NATKIT_AVAILABLE_IN_ALL
gboolean        natkit_peer_id_validate            (const char      *peer_id,
                                                    GError         **error);
NATKIT_AVAILABLE_IN_ALL
gboolean        natkit_peer_id_matches_public_key  (const char      *peer_id,
                                                    GBytes          *public_key);

G_END_DECLS
