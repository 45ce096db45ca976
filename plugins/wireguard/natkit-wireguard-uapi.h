/* natkit-wireguard-uapi.h: WireGuard's cross-platform userspace API (the
 * text protocol on /var/run/wireguard/NAME.sock): keys and replies
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define NATKIT_WIREGUARD_KEY_LEN     32
#define NATKIT_WIREGUARD_REPLY_MAX   (1024 * 1024)

char     *natkit_wireguard_key_to_hex      (const guint8  key[NATKIT_WIREGUARD_KEY_LEN]);
gboolean  natkit_wireguard_key_from_base64 (const char   *text,
                                            guint8        key[NATKIT_WIREGUARD_KEY_LEN]);
char     *natkit_wireguard_key_base64_to_hex (const char *text);

gboolean  natkit_wireguard_uapi_check_errno  (const char  *reply,
                                              gsize        len,
                                              GError     **error);
GVariant *natkit_wireguard_uapi_parse_get    (const char  *reply,
                                              gsize        len,
                                              guint16     *listen_port,
                                              GError     **error);

G_END_DECLS
