/* fuzz-session-inner.c: the secure session's inner-message parser
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Every decrypted DTLS record goes through _natkit_session_parse_inner()
 * first: whatever it accepts must be framed as the session expects.
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-session-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  NatkitSessionMsg type;
  const guint8 *payload = NULL;
  gsize len = 0;
  GError *error = NULL;

  if (!_natkit_session_parse_inner (data, size, &type, &payload, &len, &error))
    {
      g_assert_nonnull (error);
      g_error_free (error);
      return 0;
    }

  g_assert_null (error);
  g_assert_cmpuint (size, >=, 1);
  g_assert_true (payload == data + 1);
  g_assert_cmpuint (len, ==, size - 1);
  g_assert_cmpuint (type, ==, data[0]);
  switch (type)
    {
    case NATKIT_SESSION_MSG_PING:
    case NATKIT_SESSION_MSG_PONG:
      g_assert_cmpuint (len, ==, 8);
      break;
    case NATKIT_SESSION_MSG_STREAM:
      g_assert_cmpuint (len, >=, 24);
      break;
    case NATKIT_SESSION_MSG_CLOSE:
      g_assert_true (g_utf8_validate ((const char *) payload, len, NULL));
      g_assert_null (memchr (payload, 0, len));
      break;
    default:
      break;
    }
  return 0;
}
