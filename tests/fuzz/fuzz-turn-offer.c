/* fuzz-turn-offer.c: the "turn" signaling body from the peer, and TURN URIs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The peer's body (docs/turn.md) is network input; URIs come from
 * config.json and the command line, and from natkit-server's TURN hand-out.
 */
#include "config.h"

#include <string.h>

#include <gio/gio.h>
#include "natkit-turn-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autofree char *text = g_strndup ((const char *) data, size);
  g_autofree char *session = NULL;
  GInetSocketAddress *relayed = NULL;
  GError *error = NULL;
  gboolean seen = FALSE;
  NatkitTurnUri uri;

  if (natkit_turn_offer_parse (text, &session, &relayed, &seen, &error))
    {
      g_assert_no_error (error);
      g_assert_nonnull (session);
      g_assert_cmpuint (strlen (session), >=, 1);
      g_assert_cmpuint (strlen (session), <=, 64);
      g_assert_true (natkit_turn_address_is_sendable (relayed));
      g_object_unref (relayed);
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_null (relayed);
      g_clear_error (&error);
    }

  if (natkit_turn_uri_parse (text, &uri, &error))
    {
      g_autofree char *described = natkit_turn_uri_describe (&uri);

      g_assert_nonnull (uri.host);
      g_assert_cmpuint (uri.port, >=, 1);
      g_assert_true (!uri.secure || uri.transport == NATKIT_TURN_TRANSPORT_TLS);
      g_assert_true (!uri.has_pin || uri.secure);
      g_assert_nonnull (described);
      natkit_turn_uri_clear (&uri);
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_null (uri.host);
      g_clear_error (&error);
    }
  return 0;
}
