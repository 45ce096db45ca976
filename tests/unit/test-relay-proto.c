/* test-relay-proto.c: natkit-server's UDP relay header (docs/protocol.md 4.1)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <string.h>
#include <gio/gio.h>

#include "natkit-relay-proto.h"

static const guint8 token[16] = { 0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xaf };

static void
test_build (void)
{
  guint8 header[NATKIT_RELAY_HEADER_SIZE];
  guint8 bind[NATKIT_RELAY_BIND_SIZE];
  static const guint8 expected_header[] = { 0x4e, 1, 3, 0, 0x12, 0x34, 0x56, 0x78 };
  static const guint8 expected_bind[] = { 0x4e, 1, 1, 0, 0, 0, 0, 7 };

  g_assert_cmpuint (natkit_relay_build_header (header, NATKIT_RELAY_DATA, 0x12345678), ==, 8);
  g_assert_cmpmem (header, sizeof header, expected_header, sizeof expected_header);

  g_assert_cmpuint (natkit_relay_build_bind (bind, 7, token), ==, 24);
  g_assert_cmpmem (bind, 8, expected_bind, sizeof expected_bind);
  g_assert_cmpmem (bind + 8, 16, token, sizeof token);
}

static void
test_parse_valid (void)
{
  guint8 packet[8 + 1200];
  NatkitRelayPacket p;
  g_autoptr(GError) error = NULL;

  /* BOUND, CLOSED: the header alone */
  natkit_relay_build_header (packet, NATKIT_RELAY_BOUND, 0xfffffffe);
  g_assert_true (natkit_relay_parse (packet, 8, &p, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (p.type, ==, NATKIT_RELAY_BOUND);
  g_assert_cmpuint (p.circuit, ==, 0xfffffffe);
  g_assert_cmpuint (p.payload_length, ==, 0);

  natkit_relay_build_header (packet, NATKIT_RELAY_CLOSED, 1);
  g_assert_true (natkit_relay_parse (packet, 8, &p, &error));
  g_assert_cmpuint (p.type, ==, NATKIT_RELAY_CLOSED);
  g_assert_cmpuint (p.circuit, ==, 1);

  /* the reserved byte is ignored */
  packet[3] = 0x5a;
  g_assert_true (natkit_relay_parse (packet, 8, &p, &error));

  /* DATA */
  natkit_relay_build_header (packet, NATKIT_RELAY_DATA, 42);
  memset (packet + 8, 'x', 1200);
  g_assert_true (natkit_relay_parse (packet, sizeof packet, &p, &error));
  g_assert_cmpuint (p.type, ==, NATKIT_RELAY_DATA);
  g_assert_cmpuint (p.circuit, ==, 42);
  g_assert_true (p.payload == packet + 8);
  g_assert_cmpuint (p.payload_length, ==, 1200);

  /* BIND (what the server parses) */
  natkit_relay_build_bind (packet, 42, token);
  g_assert_true (natkit_relay_parse (packet, NATKIT_RELAY_BIND_SIZE, &p, &error));
  g_assert_cmpuint (p.type, ==, NATKIT_RELAY_BIND);
  g_assert_cmpmem (p.payload, p.payload_length, token, sizeof token);

  g_assert_cmpstr (natkit_relay_type_name (NATKIT_RELAY_BOUND), ==, "BOUND");
  g_assert_cmpstr (natkit_relay_type_name (9), ==, "unknown");
}

static void
expect_invalid (const guint8 *data,
                gsize         length,
                const char   *fragment)
{
  NatkitRelayPacket p;
  g_autoptr(GError) error = NULL;

  g_assert_false (natkit_relay_parse (data, length, &p, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  if (strstr (error->message, fragment) == NULL)
    g_error ("expected \"%s\" in \"%s\"", fragment, error->message);
}

static void
test_parse_invalid (void)
{
  guint8 packet[65536];
  static const guint8 stun[20] = { 0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42 };

  memset (packet, 0, sizeof packet);
  expect_invalid (packet, 0, "shorter than the 8-byte relay header");

  natkit_relay_build_header (packet, NATKIT_RELAY_BOUND, 5);
  expect_invalid (packet, 7, "7-byte packet is shorter");

  packet[0] = 0x4f;
  expect_invalid (packet, 8, "not a natkit relay packet");
  packet[0] = NATKIT_RELAY_MAGIC;

  packet[1] = 2;
  expect_invalid (packet, 8, "version 2");
  packet[1] = NATKIT_RELAY_VERSION;

  packet[2] = 0;
  expect_invalid (packet, 8, "unknown relay packet type 0");
  packet[2] = 5;
  expect_invalid (packet, 8, "unknown relay packet type 5");

  natkit_relay_build_header (packet, NATKIT_RELAY_BOUND, 0);
  expect_invalid (packet, 8, "circuit 0");

  natkit_relay_build_header (packet, NATKIT_RELAY_BIND, 5);
  expect_invalid (packet, 8 + 15, "15-byte token");
  expect_invalid (packet, 8 + 17, "17-byte token");

  natkit_relay_build_header (packet, NATKIT_RELAY_DATA, 5);
  expect_invalid (packet, 8, "empty DATA");
  expect_invalid (packet, 8 + NATKIT_RELAY_MAX_DATA + 1, "at most 65499");
  {
    NatkitRelayPacket p;

    g_assert_true (natkit_relay_parse (packet, 8 + NATKIT_RELAY_MAX_DATA, &p, NULL));
  }

  g_assert_true (natkit_relay_is_stun (stun, sizeof stun));
  g_assert_false (natkit_relay_is_stun (stun, 19));
  expect_invalid (stun, sizeof stun, "STUN");
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The relay plugin's UDP packet header: build and parse");

  g_test_add_func ("/natkit/relay/proto/build", test_build);
  g_test_add_func ("/natkit/relay/proto/parse-valid", test_parse_valid);
  g_test_add_func ("/natkit/relay/proto/parse-invalid", test_parse_invalid);

  return g_test_run ();
}
