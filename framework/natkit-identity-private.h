/* natkit-identity-private.h: what the secure session needs from an identity
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gnutls/abstract.h>

#include "natkit.h"

G_BEGIN_DECLS

/* The identity's private key, owned by the identity: never log it, never
 * free it. */
gnutls_privkey_t _natkit_identity_get_privkey (NatkitIdentity *self);

G_END_DECLS
