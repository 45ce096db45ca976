/* fuzz-turn-server.c: everything a TURN server sends the TURN plugin
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The bytes as one UDP datagram (a STUN answer or indication, or
 * ChannelData) and as a TCP/TLS stream cut into frames the way the client
 * cuts it; checks the invariants the client relies on.
 */
#include "config.h"

#include <string.h>

#include <glib.h>
#include "natkit-turn-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static const guint8 key[16] = "0123456789abcdef";

static void
one_datagram (const guint8 *data,
              gsize         size)
{
  GError *error = NULL;

  if (size > 0 && (data[0] & 0xC0) == 0x40)
    {
      guint16 channel;
      const guint8 *payload;
      gsize length;

      if (natkit_turn_channel_parse (data, size, &channel, &payload, &length, &error))
        {
          g_assert_cmpuint (channel, >=, NATKIT_TURN_CHANNEL_MIN);
          g_assert_cmpuint (channel, <=, NATKIT_TURN_CHANNEL_MAX);
          g_assert_true (payload == data + NATKIT_TURN_CHANNEL_HEADER);
          g_assert_cmpuint (length + NATKIT_TURN_CHANNEL_HEADER, <=, size);
        }
      else
        {
          g_assert_nonnull (error);
          g_clear_error (&error);
        }
      return;
    }

  {
    NatkitTurnMessage m;

    if (natkit_turn_message_parse (data, size, key, &m, &error))
      {
        g_assert_no_error (error);
        if (m.kind == NATKIT_TURN_MESSAGE_ERROR)
          g_assert_true (m.error_code >= 300 && m.error_code <= 699);
        if (m.reason)
          g_assert_true (g_utf8_validate (m.reason, -1, NULL));
        if (m.realm)
          g_assert_cmpuint (strlen (m.realm), <=, NATKIT_TURN_MAX_REALM);
        if (m.nonce)
          g_assert_cmpuint (strlen (m.nonce), <=, NATKIT_TURN_MAX_NONCE);
        if (m.data != NULL)
          {
            guint sum = 0;

            g_assert_true (m.data >= data && m.data + m.data_length <= data + size);
            for (gsize i = 0; i < m.data_length; i++)
              sum += m.data[i];
            (void) sum;
          }
        if (m.relayed)
          (void) natkit_turn_address_is_sendable (m.relayed);
        if (m.integrity_ok)
          g_assert_true (m.has_integrity);
        natkit_turn_message_clear (&m);
      }
    else
      {
        g_assert_nonnull (error);
        g_clear_error (&error);
        natkit_turn_message_clear (&m);
      }
  }
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  gsize offset = 0;

  one_datagram (data, size);

  /* as a stream: frame after frame while the sizes hold */
  while (offset < size)
    {
      gssize frame = natkit_turn_stream_frame_size (data + offset, size - offset);

      if (frame <= 0 || (gsize) frame > size - offset)
        break;
      g_assert_cmpint (frame, >=, 4);
      if ((data[offset] & 0xC0) == 0x40)
        {
          gsize len = NATKIT_TURN_CHANNEL_HEADER +
                      ((data[offset + 2] << 8) | data[offset + 3]);

          g_assert_cmpuint (len, <=, (gsize) frame);
          one_datagram (data + offset, len);
        }
      else
        one_datagram (data + offset, frame);
      offset += frame;
    }
  return 0;
}
