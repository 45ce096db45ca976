/* natkit-network-private.h: the network's pure parts, for tests and fuzzing
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* the key-exchange message's limit */
#define NATKIT_NETWORK_HELLO_MAX 1024

gboolean _natkit_network_parse_cidr    (const char  *cidr,
                                        guint32     *network,
                                        guint       *prefix,
                                        GError     **error);
guint32  _natkit_network_address_for   (guint32      network,
                                        guint        prefix,
                                        const char  *peer_id,
                                        guint        attempt);
char    *_natkit_network_format_hello  (const char  *peer_id,
                                        const char  *public_key,
                                        guint32      address);
gboolean _natkit_network_parse_hello   (const char  *data,
                                        gsize        len,
                                        const char  *expected_peer_id,
                                        guint32      network,
                                        guint        prefix,
                                        char       **public_key,
                                        guint32     *address,
                                        GError     **error);

G_END_DECLS
