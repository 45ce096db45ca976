/* fuzz-punch-packet.c: every UDP packet the hole punching plugin parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes to natkit_punch_looks_like() and natkit_punch_parse()
 * (docs/protocol.md 7.2) under one fixed key: the one the seeds in
 * corpus/punch-packet are MACed with (session "fuzz-session", initiator
 * token 0..15, responder token 16..31), so that the fuzzer starts from
 * packets that authenticate. Checks the invariants the plugin relies on.
 */
#include "config.h"

#include <string.h>
#include <gio/gio.h>

#include "natkit-holepunch-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
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
  gboolean looks_like;

  if (!have_key)
    {
      natkit_punch_key_derive (&key, "fuzz-session", initiator_token, responder_token);
      have_key = TRUE;
    }

  looks_like = natkit_punch_looks_like (data, size);
  if (natkit_punch_parse (&key, data, size, &punch, &error))
    {
      guint8 rebuilt[NATKIT_PUNCH_SIZE];

      g_assert_no_error (error);
      g_assert_true (looks_like);
      g_assert_cmpuint (size, ==, NATKIT_PUNCH_SIZE);
      g_assert_cmpuint (data[2], ==, 1);
      g_assert_cmpint (punch.type, >=, NATKIT_PUNCH_PUNCH);
      g_assert_cmpint (punch.type, <=, NATKIT_PUNCH_CONFIRM);
      g_assert_cmpuint (punch.sender_role, <=, 1);
      g_assert_cmpmem (punch.nonce, sizeof punch.nonce, data + 4, NATKIT_PUNCH_NONCE_SIZE);
      g_assert_cmpmem (punch.echo, sizeof punch.echo, data + 12, NATKIT_PUNCH_NONCE_SIZE);
      /* what authenticates is what the sender built, byte for byte */
      natkit_punch_build (&key, &punch, rebuilt);
      g_assert_cmpmem (rebuilt, sizeof rebuilt, data, size);
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_true (error->domain == G_IO_ERROR);
      g_assert_nonnull (error->message);
      if (!looks_like)
        g_assert_true (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA));
      g_error_free (error);
    }
  return 0;
}
