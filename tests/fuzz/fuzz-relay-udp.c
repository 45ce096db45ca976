/* fuzz-relay-udp.c: every UDP packet the relay plugin parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes to the relay packet parser (docs/protocol.md 4.1: the
 * 8-byte header, BIND, BOUND, DATA, CLOSED, and STUN on the same port);
 * checks the invariants the plugin relies on.
 */
#include "config.h"

#include <glib.h>
#include "natkit-relay-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  NatkitRelayPacket packet;
  GError *error = NULL;

  if (natkit_relay_parse (data, size, &packet, &error))
    {
      g_assert_no_error (error);
      g_assert_cmpuint (size, >=, NATKIT_RELAY_HEADER_SIZE);
      g_assert_cmpuint (data[0], ==, NATKIT_RELAY_MAGIC);
      g_assert_cmpuint (packet.circuit, !=, 0);
      g_assert_true (packet.payload == data + NATKIT_RELAY_HEADER_SIZE);
      g_assert_cmpuint (packet.payload_length, ==, size - NATKIT_RELAY_HEADER_SIZE);
      switch (packet.type)
        {
        case NATKIT_RELAY_BIND:
          g_assert_cmpuint (packet.payload_length, ==, NATKIT_RELAY_TOKEN_SIZE);
          break;
        case NATKIT_RELAY_DATA:
          g_assert_cmpuint (packet.payload_length, >=, 1);
          g_assert_cmpuint (packet.payload_length, <=, NATKIT_RELAY_MAX_DATA);
          break;
        case NATKIT_RELAY_BOUND:
        case NATKIT_RELAY_CLOSED:
          break;
        default:
          g_assert_not_reached ();
        }
      g_assert_cmpstr (natkit_relay_type_name (packet.type), !=, "unknown");
      /* touch every payload byte: a bad length would read out of bounds */
      {
        guint sum = 0;

        for (gsize i = 0; i < packet.payload_length; i++)
          sum += packet.payload[i];
        (void) sum;
      }
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_nonnull (error->message);
      g_error_free (error);
    }
  return 0;
}
