/* fuzz-punch-tcp.c: what TCP hole punching parses from the network
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes to both parsers of the "tcp-holepunch" traversal
 * (docs/protocol.md 7.4): as a signaling offer (NUL-terminated, as the
 * signaling channel hands it over) to natkit_punch_tcp_offer_parse(), and
 * as the 38-byte hello read from a TCP connection to
 * natkit_punch_tcp_hello_parse() under one fixed key: the one the hello
 * seeds in corpus/punch-tcp are MACed with (session "fuzz-session",
 * initiator token 0..15, responder token 16..31). Checks what the plugin
 * relies on in what is accepted.
 */
#include "config.h"

#include <string.h>
#include <gio/gio.h>

#include "natkit-holepunch-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static void
check_offer (const guint8 *data,
             size_t        size)
{
  g_autofree char *text = g_malloc (size + 1);
  g_autofree char *session = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autoptr(GError) error = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];

  memcpy (text, data, size);
  text[size] = '\0';
  if (natkit_punch_tcp_offer_parse (text, &session, token, &candidates, &error))
    {
      g_autofree char *rebuilt = NULL;
      g_autofree char *session2 = NULL;
      g_autoptr(GArray) candidates2 = NULL;
      guint8 token2[NATKIT_PUNCH_TOKEN_SIZE];

      g_assert_no_error (error);
      g_assert_nonnull (strstr (text, "tcp-holepunch"));
      g_assert_cmpuint (strlen (session), >=, 1);
      g_assert_cmpuint (strlen (session), <=, 64);
      g_assert_cmpuint (candidates->len, <=, NATKIT_PUNCH_MAX_CANDIDATES);
      for (guint i = 0; i < candidates->len; i++)
        g_assert_true (natkit_punch_address_is_sendable (
          g_array_index (candidates, NatkitPunchCandidate, i).address));
      /* never taken for the UDP punch's offer */
      g_assert_false (natkit_punch_offer_parse (text, NULL, token2, NULL, NULL, NULL, NULL));

      rebuilt = natkit_punch_tcp_offer_build (session, token,
                                              (const NatkitPunchCandidate *) (gpointer) candidates->data,
                                              candidates->len);
      if (!natkit_punch_tcp_offer_parse (rebuilt, &session2, token2, &candidates2, &error))
        g_error ("%s, rebuilt from an accepted offer, is refused: %s", rebuilt, error->message);
      g_assert_cmpstr (session2, ==, session);
      g_assert_cmpmem (token2, sizeof token2, token, sizeof token);
      g_assert_cmpuint (candidates2->len, ==, candidates->len);
    }
  else
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_null (session);
      g_assert_null (candidates);
    }
}

static void
check_hello (const guint8 *data,
             size_t        size)
{
  static const guint8 initiator_token[NATKIT_PUNCH_TOKEN_SIZE] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
  };
  static const guint8 responder_token[NATKIT_PUNCH_TOKEN_SIZE] = {
    16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31
  };
  static NatkitPunchKey key;
  static gboolean have_key;
  NatkitPunch punch;
  GError *error = NULL;

  if (!have_key)
    {
      natkit_punch_tcp_key_derive (&key, "fuzz-session", initiator_token, responder_token);
      have_key = TRUE;
    }
  if (natkit_punch_tcp_hello_parse (&key, data, size, &punch, &error))
    {
      guint8 rebuilt[NATKIT_PUNCH_TCP_HELLO_SIZE];

      g_assert_no_error (error);
      g_assert_cmpuint (size, ==, NATKIT_PUNCH_TCP_HELLO_SIZE);
      g_assert_cmpint (punch.type, >=, NATKIT_PUNCH_PUNCH);
      g_assert_cmpint (punch.type, <=, NATKIT_PUNCH_CONFIRM);
      g_assert_cmpuint (punch.sender_role, <=, 1);
      /* what authenticates is what the sender built, byte for byte */
      natkit_punch_tcp_hello_build (&key, &punch, rebuilt);
      g_assert_cmpmem (rebuilt, sizeof rebuilt, data, size);
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_true (error->domain == G_IO_ERROR);
      g_error_free (error);
    }
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  check_offer (data, size);
  check_hello (data, size);
  return 0;
}
