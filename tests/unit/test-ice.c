/* test-ice.c: the ice plugin between two managers in one process
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Real libnice agents on loopback (the plugin's "local-addresses"
 * setting), the production connect protocol, secure session and stream,
 * over natkit_signaling_new_pair(). Also: what a peer may put in the
 * "ice" bodies (malformed, duplicated, forbidden candidates) is dropped
 * while the connection still forms, and a peer that never answers makes
 * the attempt fail with a reason at the request's time limit, within the
 * grace the manager gives before it cancels.
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "natkit.h"
#include "test-pair.h"
#include "natkit-ice-proto.h"

static const char * const ice_only[] = { "ice", NULL };
static const char loopback_config[] =
  "{\"plugins\": {\"ice\": {\"settings\": {\"local-addresses\": \"127.0.0.1\"}}}}";

typedef struct
{
  TestPair          pair;

  /* the bad-input test: A's first "ice" body as B received it */
  char             *session;
  char             *ufrag;
  char             *pwd;
  gboolean          injected;
} Fixture;

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = natkit_config_new_from_data (loopback_config, -1, &error);

  g_assert_no_error (error);
  test_pair_init (&f->pair, config);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  test_pair_clear (&f->pair);
  g_free (f->session);
  g_free (f->ufrag);
  g_free (f->pwd);
  /* let the agents close */
  for (int i = 0; i < 100; i++)
    g_main_context_iteration (NULL, FALSE);
}

static void
connect_pair (Fixture            *f,
              NatkitConnectFlags  flags)
{
  test_pair_connect (&f->pair, ice_only, flags);
  g_assert_no_error (f->pair.error);
  g_assert_nonnull (f->pair.outgoing);
  g_assert_nonnull (f->pair.incoming);
  g_assert_cmpstr (natkit_connection_get_method (f->pair.outgoing), ==, "ice");
  g_assert_cmpstr (natkit_connection_get_transport (f->pair.outgoing), ==, "udp");
  g_assert_true (g_str_has_prefix (natkit_connection_get_local_address (f->pair.outgoing), "127.0.0.1:"));
  g_assert_true (g_str_has_suffix (natkit_connection_get_local_address (f->pair.outgoing), "(ice host)"));
  g_assert_true (g_str_has_prefix (natkit_connection_get_remote_address (f->pair.outgoing), "127.0.0.1:"));
}

static void
datagram_cb (NatkitConnection *connection,
             GBytes           *datagram,
             gpointer          user_data)
{
  g_ptr_array_add (user_data, g_bytes_ref (datagram));
}

static void
exchange_datagrams (Fixture *f)
{
  g_autoptr(GPtrArray) at_a = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GPtrArray) at_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) ping = g_bytes_new_static ("ping over ice", 13);
  g_autoptr(GBytes) pong = g_bytes_new_static ("pong", 4);

  g_signal_connect (f->pair.outgoing, "datagram-received", G_CALLBACK (datagram_cb), at_a);
  g_signal_connect (f->pair.incoming, "datagram-received", G_CALLBACK (datagram_cb), at_b);
  /* loopback loses nothing, but the test should not hang if it did */
  for (guint round = 0; round < 50 && (at_a->len == 0 || at_b->len == 0); round++)
    {
      g_assert_true (natkit_connection_send_datagram (f->pair.outgoing, ping, &error));
      g_assert_no_error (error);
      g_assert_true (natkit_connection_send_datagram (f->pair.incoming, pong, &error));
      g_assert_no_error (error);
      for (guint i = 0; i < 20; i++)
        g_main_context_iteration (NULL, FALSE);
    }
  g_assert_cmpuint (at_b->len, >, 0);
  g_assert_cmpuint (at_a->len, >, 0);
  g_assert_true (g_bytes_equal (g_ptr_array_index (at_b, 0), ping));
  g_assert_true (g_bytes_equal (g_ptr_array_index (at_a, 0), pong));
  g_signal_handlers_disconnect_by_data (f->pair.outgoing, at_a);
  g_signal_handlers_disconnect_by_data (f->pair.incoming, at_b);
}

static void
wrote_cb (GObject      *source,
          GAsyncResult *res,
          gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res,
                                                   NULL, &error));
  g_assert_no_error (error);
  *(gboolean *) user_data = TRUE;
}

static void
exchange_stream (Fixture *f,
                 gsize    size)
{
  g_autofree guint8 *raw = g_malloc (size);
  g_autofree guint8 *buf = g_malloc (size + 1);
  g_autoptr(GError) error = NULL;
  GIOStream *sa = natkit_connection_get_stream (f->pair.outgoing);
  GIOStream *sb = natkit_connection_get_stream (f->pair.incoming);
  gboolean wrote = FALSE;
  gsize got = 0;

  g_assert_nonnull (sa);
  g_assert_nonnull (sb);
  for (gsize i = 0; i < size; i++)
    raw[i] = (i * 13 + i / 253) & 0xff;
  g_output_stream_write_all_async (g_io_stream_get_output_stream (sa), raw, size,
                                   G_PRIORITY_DEFAULT, NULL, wrote_cb, &wrote);
  while (got < size)
    {
      GPollableInputStream *in = G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (sb));
      gssize n = g_pollable_input_stream_read_nonblocking (in, buf + got, size + 1 - got,
                                                          NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          g_clear_error (&error);
          g_main_context_iteration (NULL, TRUE);
          continue;
        }
      g_assert_no_error (error);
      g_assert_cmpint (n, >, 0);
      got += n;
    }
  while (!wrote)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (got, ==, size);
  g_assert_true (memcmp (buf, raw, size) == 0);
}

static void
test_ice_connect (Fixture       *f,
                  gconstpointer  data)
{
  connect_pair (f, NATKIT_CONNECT_NONE);
  exchange_stream (f, 256 * 1024);
}

static void
test_ice_datagram (Fixture       *f,
                   gconstpointer  data)
{
  connect_pair (f, NATKIT_CONNECT_DATAGRAM);
  exchange_datagrams (f);
}

/* ---- bad input ---------------------------------------------------------- */

static char *
body (const Fixture *f,
      const char    *ufrag,
      const char    *candidates)
{
  return g_strdup_printf ("{\"natkit\":1,\"op\":\"ice\",\"session\":\"%s\",\"ufrag\":\"%s\","
                          "\"pwd\":\"%s\",\"candidates\":[%s]}",
                          f->session, ufrag, f->pwd, candidates);
}

static void
inject (Fixture    *f,
        const char *text)
{
  natkit_signaling_emit_message (f->pair.sig_b, natkit_identity_get_peer_id (f->pair.id_a), text);
}

static gboolean
inject_bad_cb (gpointer user_data)
{
  Fixture *f = user_data;
  g_autofree char *text = NULL;
  g_autoptr(GString) many = g_string_new (NULL);
  static const struct { const char *candidate; const char *why; } forbidden[] = {
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"host\",\"ip\":\"0.0.0.0\",\"port\":9}",
      "*0.0.0.0:9 (host)*the unspecified address*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"host\",\"ip\":\"224.0.0.1\",\"port\":9}",
      "*224.0.0.1:9 (host)*multicast*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"host\",\"ip\":\"255.255.255.255\",\"port\":9}",
      "*broadcast*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"host\",\"ip\":\"127.0.0.1\",\"port\":0}",
      "*127.0.0.1:0 (host)*port 0*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"relay\",\"ip\":\"240.1.2.3\",\"port\":9}",
      "*reserved*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"srflx\",\"ip\":\"192.0.2.7\",\"port\":9}",
      "*192.0.2.7:9 (srflx)*not a loopback address*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"bogus\",\"ip\":\"127.0.0.1\",\"port\":9}",
      "*without a known type*" },
    { "{\"foundation\":\"a b\",\"priority\":1,\"type\":\"host\",\"ip\":\"127.0.0.1\",\"port\":9}",
      "*foundation*" },
    { "{\"foundation\":\"9\",\"priority\":0,\"type\":\"host\",\"ip\":\"127.0.0.1\",\"port\":9}",
      "*priority*" },
    { "{\"foundation\":\"9\",\"priority\":1,\"type\":\"host\",\"ip\":\"not-an-ip\",\"port\":9}",
      "*not an IPv4 or IPv6 address*" },
    { "\"a string\"", "*not an object*" },
  };
  static const char *malformed[] = {
    "\"",                                                   /* cut */
    "\",\"ufrag\":\"ab\",\"pwd\":\"x\"}",                        /* too short */
    "\",\"ufrag\":5,\"pwd\":[]}",                              /* wrong types */
    "\"} {\"x\":1}",                                          /* two objects */
    "\",'ufrag':'abcd'}",                                   /* not JSON */
  };

  /* every forbidden candidate, one message each, with the peer's real
   * credentials: each dropped with its reason */
  for (guint i = 0; i < G_N_ELEMENTS (forbidden); i++)
    {
      g_autofree char *pattern = g_strconcat ("dropped*", forbidden[i].why, NULL);
      g_autofree char *msg = body (f, f->ufrag, forbidden[i].candidate);

      g_test_expect_message ("natkit-ice", G_LOG_LEVEL_DEBUG, pattern);
      inject (f, msg);
      g_test_assert_expected_messages ();
    }

  /* a valid candidate twice: the second is a duplicate */
  text = body (f, f->ufrag,
               "{\"foundation\":\"7\",\"priority\":5,\"type\":\"host\",\"ip\":\"127.0.0.1\",\"port\":9},"
               "{\"foundation\":\"7\",\"priority\":5,\"type\":\"host\",\"ip\":\"127.0.0.1\",\"port\":9}");
  g_test_expect_message ("natkit-ice", G_LOG_LEVEL_DEBUG, "*127.0.0.1:9 (host)*a duplicate");
  inject (f, text);
  g_test_assert_expected_messages ();
  g_clear_pointer (&text, g_free);

  /* another generation during the attempt: ignored as a whole */
  text = body (f, "0therUfrag",
               "{\"foundation\":\"7\",\"priority\":5,\"type\":\"host\",\"ip\":\"127.0.0.3\",\"port\":9}");
  g_test_expect_message ("natkit-ice", G_LOG_LEVEL_DEBUG, "*another generation*");
  inject (f, text);
  g_test_assert_expected_messages ();
  g_clear_pointer (&text, g_free);

  /* malformed bodies: ignored with the reason */
  for (guint i = 0; i < G_N_ELEMENTS (malformed); i++)
    {
      g_autofree char *msg = g_strconcat ("{\"natkit\":1,\"op\":\"ice\",\"session\":\"",
                                          f->session, malformed[i], NULL);

      g_test_expect_message ("natkit-ice", G_LOG_LEVEL_DEBUG, "ignoring an ICE message from*");
      inject (f, msg);
      g_test_assert_expected_messages ();
    }
  /* more than the attempt takes: 40 loopback candidates (127.0.1.N),
   * those past 32 in all are dropped */
  for (guint i = 0; i < 28; i++)
    g_string_append_printf (many, "%s{\"foundation\":\"8\",\"priority\":3,\"type\":\"host\","
                            "\"ip\":\"127.0.1.%u\",\"port\":9}", i ? "," : "", i + 1);
  text = body (f, f->ufrag, many->str);
  inject (f, text);
  g_clear_pointer (&text, g_free);
  g_string_truncate (many, 0);
  for (guint i = 0; i < 12; i++)
    g_string_append_printf (many, "%s{\"foundation\":\"8\",\"priority\":3,\"type\":\"host\","
                            "\"ip\":\"127.0.2.%u\",\"port\":9}", i ? "," : "", i + 1);
  text = body (f, f->ufrag, many->str);
  g_test_expect_message ("natkit-ice", G_LOG_LEVEL_DEBUG, "*127.0.2.*more candidates than the 32*");
  inject (f, text);
  g_test_assert_expected_messages ();
  return G_SOURCE_REMOVE;
}

/* B sees A's first "ice" body: inject the bad ones (with A's real
 * credentials, or they would all be ignored as another generation) */
static void
b_message_cb (NatkitSignaling *signaling,
              const char      *from,
              const char      *text,
              gpointer         user_data)
{
  Fixture *f = user_data;
  g_autoptr(NatkitIceMessage) m = NULL;

  if (f->session != NULL || strstr (text, "\"op\":\"ice\"") == NULL)
    return;
  m = natkit_ice_message_parse (text, NULL);
  if (m == NULL)
    return;
  f->session = g_strdup (m->session);
  f->ufrag = g_strdup (m->ufrag);
  f->pwd = g_strdup (m->pwd);
  /* after this emission: the plugin's handler saw A's body first */
  if (!f->injected)
    {
      f->injected = TRUE;
      g_idle_add (inject_bad_cb, f);
    }
}

static void
test_ice_bad_candidates (Fixture       *f,
                         gconstpointer  data)
{
  g_signal_connect (f->pair.sig_b, "message-received", G_CALLBACK (b_message_cb), f);
  connect_pair (f, NATKIT_CONNECT_DATAGRAM);
  g_assert_true (f->injected);
  /* none of the injected candidates became the path: the real one did */
  g_assert_null (strstr (natkit_connection_get_remote_address (f->pair.incoming), ":9/"));
  exchange_datagrams (f);
}

/* Once the path is up, a body with other credentials is another attempt
 * in the same session (the manager runs ice again after losing a path):
 * the live path ignores it, unless it is marked as an ICE restart */
static void
test_ice_other_attempt (Fixture       *f,
                        gconstpointer  data)
{
  g_autofree char *text = NULL;

  connect_pair (f, NATKIT_CONNECT_DATAGRAM);
  g_assert_cmpstr (natkit_connection_get_method (f->pair.incoming), ==, "ice");
  text = g_strdup_printf ("{\"natkit\":1,\"op\":\"ice\",\"session\":\"%s\",\"ufrag\":\"N3wAttempt\","
                          "\"pwd\":\"0123456789012345678901\",\"candidates\":[{\"foundation\":\"1\","
                          "\"priority\":9,\"type\":\"host\",\"ip\":\"127.0.0.1\",\"port\":9}],"
                          "\"end\":true}", natkit_connection_get_session_id (f->pair.incoming));
  g_test_expect_message ("natkit-ice", G_LOG_LEVEL_DEBUG, "ignoring another ICE attempt's body*");
  natkit_signaling_emit_message (f->pair.sig_b, natkit_identity_get_peer_id (f->pair.id_a), text);
  g_test_assert_expected_messages ();
  /* the path is untouched */
  exchange_datagrams (f);
}

/* ---- a peer that never answers ----------------------------------------- */

static void
path_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  Fixture *f = user_data;
  g_autoptr(NatkitPath) path = natkit_traversal_open_path_finish (NATKIT_TRAVERSAL (source),
                                                                  res, &f->pair.error);

  g_assert_null (path);
  f->pair.done = TRUE;
}

static gboolean
manager_timeout_cb (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_ice_silent_peer (Fixture       *f,
                      gconstpointer  data)
{
  NatkitPluginInfo *info = natkit_manager_get_plugin (f->pair.a, "ice");
  g_autoptr(NatkitTraversal) traversal = NULL;
  g_autoptr(NatkitTraversalRequest) request = NULL;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  guint manager_timeout;

  g_assert_nonnull (info);
  g_assert_cmpint (natkit_plugin_info_get_state (info), ==, NATKIT_PLUGIN_STATE_LOADED);
  traversal = g_object_new (natkit_plugin_info_get_gtype (info), NULL);
  request = natkit_traversal_request_new (natkit_identity_get_peer_id (f->pair.id_a),
                                          natkit_identity_get_peer_id (f->pair.id_b),
                                          NATKIT_ROLE_INITIATOR);
  natkit_traversal_request_set_session_id (request, "0123456789abcdef");
  natkit_traversal_request_set_signaling (request, f->pair.sig_a);
  natkit_traversal_request_set_config (request, natkit_manager_get_config (f->pair.a));
  natkit_traversal_request_set_timeout (request, 3000);
  g_assert_true (natkit_traversal_applies (traversal, request, NULL));
  /* what the manager would do a second (its grace) after the request's
   * time limit: cancel */
  manager_timeout = g_timeout_add (3000 + 1000, manager_timeout_cb, cancellable);
  natkit_traversal_open_path_async (traversal, request, cancellable, path_cb, f);
  while (!f->pair.done)
    g_main_context_iteration (NULL, TRUE);
  /* the plugin ended it itself, within the grace, and says why */
  g_assert_false (g_cancellable_is_cancelled (cancellable));
  g_source_remove (manager_timeout);
  g_assert_error (f->pair.error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (f->pair.error->message, "no ICE answer from"));
  g_assert_nonnull (strstr (f->pair.error->message, natkit_identity_get_peer_id (f->pair.id_b)));
}

/* ---- the signaling body on its own ------------------------------------- */

static void
test_ice_message_roundtrip (void)
{
  g_autoptr(GInetAddress) ip = g_inet_address_new_from_string ("203.0.113.9");
  NatkitIceCandidate c = { NATKIT_ICE_CANDIDATE_SRFLX, NULL, 1694498815, "abc+/1" };
  g_autofree char *text = NULL;
  g_autoptr(NatkitIceMessage) m = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *back = NULL;
  g_autofree char *big = NULL;

  c.address = G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (ip, 40000));
  text = natkit_ice_message_build ("s1", "abcd", "0123456789012345678901", &c, 1, TRUE, TRUE);
  natkit_ice_candidate_clear (&c);
  m = natkit_ice_message_parse (text, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (m->session, ==, "s1");
  g_assert_cmpstr (m->ufrag, ==, "abcd");
  g_assert_true (m->end);
  g_assert_true (m->restart);
  g_assert_cmpuint (m->candidates->len, ==, 1);
  g_assert_cmpuint (m->dropped->len, ==, 0);
  g_assert_cmpint (g_array_index (m->candidates, NatkitIceCandidate, 0).type, ==,
                   NATKIT_ICE_CANDIDATE_SRFLX);
  g_assert_cmpuint (g_array_index (m->candidates, NatkitIceCandidate, 0).priority, ==, 1694498815);
  back = g_inet_address_to_string (g_inet_socket_address_get_address (
    g_array_index (m->candidates, NatkitIceCandidate, 0).address));
  g_assert_cmpstr (back, ==, "203.0.113.9");

  /* the end member must be a boolean, the credentials long enough */
  g_clear_pointer (&m, natkit_ice_message_free);
  m = natkit_ice_message_parse ("{\"natkit\":1,\"op\":\"ice\",\"session\":\"s\",\"ufrag\":\"abcd\","
                                "\"pwd\":\"0123456789012345678901\",\"end\":1}", &error);
  g_assert_null (m);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  m = natkit_ice_message_parse ("{\"natkit\":1,\"op\":\"ice\",\"session\":\"s\",\"ufrag\":\"abcd\","
                                "\"pwd\":\"short\"}", &error);
  g_assert_null (m);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);

  /* past 8 KiB: refused before json-glib sees it (the signaling channel
   * does not carry such bodies either) */
  big = g_strnfill (9000, 'x');
  g_free (text);
  text = g_strdup_printf ("{\"natkit\":1,\"op\":\"ice\",\"session\":\"s\",\"ufrag\":\"abcd\","
                          "\"pwd\":\"0123456789012345678901\",\"pad\":\"%s\"}", big);
  m = natkit_ice_message_parse (text, &error);
  g_assert_null (m);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, "8 KiB"));
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The ice plugin: two managers over loopback with libnice agents");

  g_test_add_func ("/natkit/ice/message/roundtrip", test_ice_message_roundtrip);
  g_test_add ("/natkit/ice/connect/stream", Fixture, NULL,
              fixture_set_up, test_ice_connect, fixture_tear_down);
  g_test_add ("/natkit/ice/connect/datagram", Fixture, NULL,
              fixture_set_up, test_ice_datagram, fixture_tear_down);
  g_test_add ("/natkit/ice/bad-candidates", Fixture, NULL,
              fixture_set_up, test_ice_bad_candidates, fixture_tear_down);
  g_test_add ("/natkit/ice/other-attempt", Fixture, NULL,
              fixture_set_up, test_ice_other_attempt, fixture_tear_down);
  g_test_add ("/natkit/ice/silent-peer", Fixture, NULL,
              fixture_set_up, test_ice_silent_peer, fixture_tear_down);
  return g_test_run ();
}
