/* fuzz-stream-frames.c: the RFC 4571 framing of NatkitStreamPath
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes as a received byte stream: frames are taken off the front
 * until the parser wants more or reports a framing error, as the stream
 * path's read loop does; checks that every frame lies inside the input.
 */
#include "config.h"

#include <glib.h>
#include "natkit-stream-path-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  gsize offset = 0;

  for (;;)
    {
      const guint8 *body = NULL;
      gsize length = 0;
      GError *error = NULL;
      gssize used = _natkit_frame_parse (data + offset, size - offset, &body, &length, &error);

      if (used == 0)
        {
          g_assert_no_error (error);
          break;
        }
      if (used < 0)
        {
          g_assert_nonnull (error);
          g_error_free (error);
          break;
        }
      g_assert_no_error (error);
      g_assert_cmpuint (length, >=, 1);
      g_assert_cmpuint (length, <=, NATKIT_FRAME_MAX_BODY);
      g_assert_cmpint (used, ==, (gssize) (NATKIT_FRAME_HEADER_SIZE + length));
      g_assert_true (body == data + offset + NATKIT_FRAME_HEADER_SIZE);
      g_assert_cmpuint (offset + used, <=, size);
      offset += used;
    }
  return 0;
}
