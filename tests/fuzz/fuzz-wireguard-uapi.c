/* fuzz-wireguard-uapi.c: wireguard-go's replies on its UAPI socket
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes as a reply to get=1 and to set=1 (the plugin reads them
 * line by line up to the empty line; the parsers take the text). An
 * accepted get reply is a dictionary of base64 keys to counters.
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-wireguard-uapi.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) peers = NULL;
  guint16 port = 0;
  gboolean ok;

  ok = natkit_wireguard_uapi_check_errno ((const char *) data, size, &error);
  g_assert_true (ok == (error == NULL));
  g_clear_error (&error);
  peers = natkit_wireguard_uapi_parse_get ((const char *) data, size, &port, &error);
  if (peers == NULL)
    {
      g_assert_nonnull (error);
      return 0;
    }
  g_assert_true (ok);
  g_assert_true (g_variant_is_of_type (peers, G_VARIANT_TYPE ("a{s(ttx)}")));
  for (gsize i = 0; i < g_variant_n_children (peers); i++)
    {
      const char *key;
      guint64 rx, tx;
      gint64 handshake;
      guint8 raw[NATKIT_WIREGUARD_KEY_LEN];

      g_variant_get_child (peers, i, "{&s(ttx)}", &key, &rx, &tx, &handshake);
      g_assert_true (natkit_wireguard_key_from_base64 (key, raw));
      g_assert_cmpint (handshake, >=, 0);
    }
  return 0;
}
