/* test-wire.c: natkit-server's wire codec (docs/protocol.md)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "natkit.h"
#include "natkit-wire-private.h"

/* Three frames fed in every possible split come out whole and in order. */
static void
test_reader_splits (void)
{
  const char *bodies[] = { "{\"type\":\"ping\",\"id\":1}", "x", "{\"type\":\"hello\"}" };
  g_autoptr(GByteArray) stream = g_byte_array_new ();

  for (guint i = 0; i < G_N_ELEMENTS (bodies); i++)
    {
      g_autoptr(GBytes) frame = _natkit_wire_frame ((const guint8 *) bodies[i],
                                                    strlen (bodies[i]));
      g_byte_array_append (stream, g_bytes_get_data (frame, NULL),
                           g_bytes_get_size (frame));
    }

  for (guint cut = 0; cut <= stream->len; cut++)
    for (guint step = 1; step <= 3; step++)
      {
        NatkitWireReader *reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
        guint got = 0, pos = 0;

        while (pos < stream->len)
          {
            guint n = pos < cut ? MIN (cut - pos, step) : stream->len - pos;

            _natkit_wire_reader_push (reader, stream->data + pos, n);
            pos += n;
            for (;;)
              {
                g_autoptr(GBytes) body = NULL;
                g_autoptr(GError) error = NULL;

                if (!_natkit_wire_reader_next (reader, &body, &error))
                  {
                    g_assert_no_error (error);
                    break;
                  }
                g_assert_cmpuint (got, <, G_N_ELEMENTS (bodies));
                g_assert_cmpmem (g_bytes_get_data (body, NULL), g_bytes_get_size (body),
                                 bodies[got], strlen (bodies[got]));
                got++;
              }
          }
        g_assert_cmpuint (got, ==, G_N_ELEMENTS (bodies));
        _natkit_wire_reader_free (reader);
      }
}

static void
test_reader_errors (void)
{
  const guint8 zero[] = { 0, 0 };
  const guint8 huge[] = { 0x40, 0x01 };  /* 16385 > the control limit */
  NatkitWireReader *reader;
  g_autoptr(GBytes) body = NULL;
  g_autoptr(GError) error = NULL;

  reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
  _natkit_wire_reader_push (reader, zero, sizeof zero);
  g_assert_false (_natkit_wire_reader_next (reader, &body, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_clear_error (&error);
  /* broken for good */
  g_assert_false (_natkit_wire_reader_next (reader, &body, &error));
  g_assert_nonnull (error);
  g_clear_error (&error);
  _natkit_wire_reader_free (reader);

  reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
  _natkit_wire_reader_push (reader, huge, sizeof huge);
  g_assert_false (_natkit_wire_reader_next (reader, &body, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
  g_clear_error (&error);
  _natkit_wire_reader_free (reader);

  /* the same size is fine in data mode */
  reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
  _natkit_wire_reader_set_max_frame (reader, NATKIT_WIRE_MAX_DATA);
  _natkit_wire_reader_push (reader, huge, sizeof huge);
  g_assert_false (_natkit_wire_reader_next (reader, &body, &error));
  g_assert_no_error (error);  /* only waiting for the body */
  _natkit_wire_reader_free (reader);
}

static void
test_control_parse (void)
{
  const char *bad[] = { "", "[1,2]", "{\"type\":1}", "{\"id\":3}", "not json",
                        "{\"type\":\"x\"", "\"type\"" };
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ok = NULL;
  g_autofree char *big = NULL;
  const char *type = NULL;
  const guint8 nul[] = "{\"type\":\"a\0b\"}";
  gint64 id = 0;

  const char *text = "{\"type\":\"ping\",\"id\":7}";

  ok = _natkit_wire_control_parse ((const guint8 *) text, strlen (text), &type, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (type, ==, "ping");
  g_assert_true (_natkit_wire_get_int (ok, "id", 1, G_MAXINT32, &id, NULL));
  g_assert_cmpint (id, ==, 7);
  g_assert_false (_natkit_wire_get_int (ok, "id", 8, 9, &id, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_false (_natkit_wire_get_string (ok, "id", &type, &error));
  g_clear_error (&error);

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(JsonObject) o = _natkit_wire_control_parse ((const guint8 *) bad[i],
                                                            strlen (bad[i]), NULL, &error);
      g_assert_null (o);
      g_assert_nonnull (error);
      g_clear_error (&error);
    }
  g_assert_null (_natkit_wire_control_parse (nul, sizeof nul - 1, NULL, &error));
  g_clear_error (&error);

  big = g_strnfill (NATKIT_WIRE_MAX_CONTROL + 1, ' ');
  g_assert_null (_natkit_wire_control_parse ((const guint8 *) big, strlen (big), NULL, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
}

static void
test_base64 (void)
{
  g_autoptr(JsonObject) o = json_object_new ();
  g_autoptr(GBytes) got = NULL;
  g_autoptr(GError) error = NULL;

  json_object_set_string_member (o, "token", "AAECAwQFBgcICQoLDA0ODw==");
  json_object_set_string_member (o, "short", "AAEC");
  json_object_set_string_member (o, "junk", "AA!C");
  got = _natkit_wire_get_base64 (o, "token", NATKIT_WIRE_TOKEN_SIZE, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (got), ==, 16);
  g_assert_cmpuint (((const guint8 *) g_bytes_get_data (got, NULL))[15], ==, 15);
  g_assert_null (_natkit_wire_get_base64 (o, "short", NATKIT_WIRE_TOKEN_SIZE, &error));
  g_assert_nonnull (strstr (error->message, "expected 16"));
  g_clear_error (&error);
  g_assert_null (_natkit_wire_get_base64 (o, "junk", 0, &error));
  g_clear_error (&error);
  g_assert_null (_natkit_wire_get_base64 (o, "missing", 0, &error));
  g_clear_error (&error);
}

static void
test_udp (void)
{
  guint8 packet[NATKIT_WIRE_UDP_HEADER + NATKIT_WIRE_TOKEN_SIZE] = { 0, };
  NatkitWireUdpType type;
  guint32 circuit;
  const guint8 *payload;
  gsize len;

  _natkit_wire_udp_header (packet, NATKIT_WIRE_UDP_BIND, 0x01020304);
  g_assert_true (_natkit_wire_udp_parse (packet, sizeof packet, &type, &circuit,
                                         &payload, &len));
  g_assert_cmpint (type, ==, NATKIT_WIRE_UDP_BIND);
  g_assert_cmphex (circuit, ==, 0x01020304);
  g_assert_cmpuint (len, ==, NATKIT_WIRE_TOKEN_SIZE);
  /* a BIND without its whole token, a BOUND with a payload, DATA without
   * one, circuit 0, another version, an unknown type: not relay packets */
  g_assert_false (_natkit_wire_udp_parse (packet, sizeof packet - 1, &type, &circuit, NULL, NULL));
  _natkit_wire_udp_header (packet, NATKIT_WIRE_UDP_BOUND, 7);
  g_assert_false (_natkit_wire_udp_parse (packet, sizeof packet, &type, &circuit, NULL, NULL));
  g_assert_true (_natkit_wire_udp_parse (packet, NATKIT_WIRE_UDP_HEADER, &type, &circuit, NULL, NULL));
  _natkit_wire_udp_header (packet, NATKIT_WIRE_UDP_DATA, 7);
  g_assert_false (_natkit_wire_udp_parse (packet, NATKIT_WIRE_UDP_HEADER, &type, &circuit, NULL, NULL));
  _natkit_wire_udp_header (packet, NATKIT_WIRE_UDP_DATA, 0);
  g_assert_false (_natkit_wire_udp_parse (packet, sizeof packet, &type, &circuit, NULL, NULL));
  _natkit_wire_udp_header (packet, NATKIT_WIRE_UDP_DATA, 7);
  packet[1] = 2;
  g_assert_false (_natkit_wire_udp_parse (packet, sizeof packet, &type, &circuit, NULL, NULL));
  packet[1] = 1;
  packet[2] = 9;
  g_assert_false (_natkit_wire_udp_parse (packet, sizeof packet, &type, &circuit, NULL, NULL));
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/natkit/wire/reader/splits", test_reader_splits);
  g_test_add_func ("/natkit/wire/reader/errors", test_reader_errors);
  g_test_add_func ("/natkit/wire/control-parse", test_control_parse);
  g_test_add_func ("/natkit/wire/base64", test_base64);
  g_test_add_func ("/natkit/wire/udp", test_udp);

  return g_test_run ();
}
