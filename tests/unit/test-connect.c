/* test-connect.c: two managers connect over the in-process signaling pair
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Everything real except the carrier: the loopback traversal plugin moves
 * datagrams in memory; signaling, the connect protocol, the DTLS session
 * with identity pinning and the PseudoTCP stream are the production code.
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "natkit.h"
#include "test-pair.h"
#include "test-state.h"

static const char * const loopback_only[] = { "loopback", NULL };

typedef struct
{
  TestPair          pair;
} Fixture;

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();

  test_pair_init (&f->pair, config);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  test_pair_clear (&f->pair);
  /* let closes and idles run out */
  for (int i = 0; i < 50; i++)
    g_main_context_iteration (NULL, FALSE);
}

static void
connect_pair (Fixture            *f,
              NatkitConnectFlags  flags)
{
  test_pair_connect (&f->pair, loopback_only, flags);
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
test_connect_stream (Fixture       *f,
                     gconstpointer  data)
{
  GIOStream *sa, *sb;
  g_autoptr(GBytes) payload = NULL;
  g_autofree guint8 *buf = NULL;
  g_autoptr(GError) error = NULL;
  gsize size = 1024 * 1024, got = 0;
  gboolean wrote = FALSE;
  guint8 *raw;

  connect_pair (f, NATKIT_CONNECT_NONE);
  g_assert_no_error (f->pair.error);
  g_assert_nonnull (f->pair.outgoing);
  g_assert_nonnull (f->pair.incoming);

  g_assert_cmpstr (natkit_connection_get_peer_id (f->pair.outgoing), ==,
                   natkit_identity_get_peer_id (f->pair.id_b));
  g_assert_cmpstr (natkit_connection_get_peer_id (f->pair.incoming), ==,
                   natkit_identity_get_peer_id (f->pair.id_a));
  g_assert_cmpstr (natkit_connection_get_method (f->pair.outgoing), ==, "loopback");
  g_assert_cmpint (natkit_connection_get_state (f->pair.outgoing), ==,
                   NATKIT_CONNECTION_STATE_CONNECTED);
  g_assert_cmpstr (natkit_connection_get_session_id (f->pair.outgoing), ==,
                   natkit_connection_get_session_id (f->pair.incoming));
  g_assert_cmpint (natkit_connection_get_role (f->pair.incoming), ==, NATKIT_ROLE_RESPONDER);

  raw = g_malloc (size);
  for (gsize i = 0; i < size; i++)
    raw[i] = (i * 7 + i / 251) & 0xff;
  payload = g_bytes_new_take (raw, size);

  sa = natkit_connection_get_stream (f->pair.outgoing);
  sb = natkit_connection_get_stream (f->pair.incoming);
  g_assert_nonnull (sa);
  g_assert_nonnull (sb);

  /* write everything, half-close; read until EOF on the other side */
  g_output_stream_write_all_async (g_io_stream_get_output_stream (sa),
                                   g_bytes_get_data (payload, NULL), size,
                                   G_PRIORITY_DEFAULT, NULL, wrote_cb, &wrote);
  buf = g_malloc (size + 1);
  while (got < size)
    {
      GPollableInputStream *in =
        G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (sb));
      gssize n = g_pollable_input_stream_read_nonblocking (in, buf + got,
                                                          size + 1 - got,
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
  g_assert_true (memcmp (buf, g_bytes_get_data (payload, NULL), size) == 0);
}

static void
datagram_cb (NatkitConnection *connection,
             GBytes           *datagram,
             gpointer          user_data)
{
  g_ptr_array_add (user_data, g_bytes_ref (datagram));
}

static void
test_connect_datagram (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GPtrArray) got_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GPtrArray) got_a = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
  g_autoptr(GBytes) back = g_bytes_new_static ("back", 4);
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *big = NULL;
  g_autoptr(GBytes) too_large = NULL;
  gsize max;

  connect_pair (f, NATKIT_CONNECT_DATAGRAM);
  g_assert_no_error (f->pair.error);
  g_assert_true (natkit_connection_get_flags (f->pair.incoming) & NATKIT_CONNECT_DATAGRAM);

  g_signal_connect (f->pair.incoming, "datagram-received", G_CALLBACK (datagram_cb), got_b);
  g_signal_connect (f->pair.outgoing, "datagram-received", G_CALLBACK (datagram_cb), got_a);
  g_assert_true (natkit_connection_send_datagram (f->pair.outgoing, hello, &error));
  g_assert_no_error (error);
  g_assert_true (natkit_connection_send_datagram (f->pair.incoming, back, &error));
  g_assert_no_error (error);
  while (got_b->len < 1 || got_a->len < 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_bytes_equal (g_ptr_array_index (got_b, 0), hello));
  g_assert_true (g_bytes_equal (g_ptr_array_index (got_a, 0), back));

  max = natkit_connection_get_max_datagram (f->pair.outgoing);
  g_assert_cmpuint (max, >, 1000);
  big = g_malloc0 (max + 1);
  too_large = g_bytes_new (big, max + 1);
  g_assert_false (natkit_connection_send_datagram (f->pair.outgoing, too_large, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
}

static void
state_changed_cb (NatkitConnection *connection,
                  GParamSpec       *pspec,
                  gpointer          user_data)
{
  if (natkit_connection_get_state (connection) == NATKIT_CONNECTION_STATE_CLOSED)
    *(gboolean *) user_data = TRUE;
}

static void
test_connect_close (Fixture       *f,
                    gconstpointer  data)
{
  gboolean closed = FALSE;

  connect_pair (f, NATKIT_CONNECT_NONE);
  g_assert_no_error (f->pair.error);
  g_signal_connect (f->pair.incoming, "notify::state", G_CALLBACK (state_changed_cb), &closed);
  natkit_connection_close (f->pair.outgoing);
  g_assert_cmpint (natkit_connection_get_state (f->pair.outgoing), ==,
                   NATKIT_CONNECTION_STATE_CLOSED);
  while (!closed)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (natkit_connection_get_state (f->pair.incoming), ==,
                   NATKIT_CONNECTION_STATE_CLOSED);
}

static void
test_connect_not_listening (Fixture       *f,
                            gconstpointer  data)
{
  /* b never calls listen(): a is refused at once, with the reason */
  natkit_manager_connect_with_signaling_async (f->pair.a, f->pair.sig_a,
                                               natkit_identity_get_peer_id (f->pair.id_b),
                                               loopback_only, 0, NULL, test_pair_connect_cb, &f->pair);
  /* b's manager must see the message to refuse it: it has to know the
   * channel, which listen() or a connect would give it */
  {
    g_autoptr(GError) error = NULL;

    g_assert_true (natkit_manager_listen (f->pair.b, f->pair.sig_b, &error));
    natkit_manager_stop_listening (f->pair.b, f->pair.sig_b);
  }
  while (!f->pair.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (f->pair.error, NATKIT_ERROR, NATKIT_ERROR_REFUSED);
  g_assert_nonnull (strstr (f->pair.error->message, "not accepting"));
}

static void
test_connect_impostor (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) mallory = natkit_identity_new_ephemeral (&error);

  /* b's manager holds a key that is not the one of the ID a connects to */
  g_assert_no_error (error);
  natkit_manager_set_identity (f->pair.b, mallory);

  connect_pair (f, NATKIT_CONNECT_NONE);
  g_assert_error (f->pair.error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
  g_assert_nonnull (strstr (f->pair.error->message, "key"));
  g_assert_null (f->pair.outgoing);
  g_assert_null (f->pair.incoming);
}

static void
test_peer_address (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) id = natkit_identity_new_ephemeral (&error);
  g_autofree char *address = NULL;
  g_autofree char *peer = NULL;
  g_autofree char *host = NULL;
  guint16 port = 0;
  /* "" = no peer ID in front; "*" = a valid peer ID in front */
  const char *bad[][2] = {
    { "", "" }, { "", "@" }, { "", "nobody" }, { "", "x@host:1" },
    { "", "@host:7000" }, { "*", "@" }, { "*", "@host" }, { "*", "@host:0" },
    { "*", "@:7000" }, { "*", "@2001:db8::1" }, { "*", "@host:70000" },
    { "*", "@host:port" },
  };

  g_assert_no_error (error);
  address = g_strdup_printf ("%s@198.51.100.9:7000", natkit_identity_get_peer_id (id));
  g_assert_true (natkit_peer_address_parse (address, &peer, &host, &port, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (peer, ==, natkit_identity_get_peer_id (id));
  g_assert_cmpstr (host, ==, "198.51.100.9");
  g_assert_cmpuint (port, ==, 7000);

  g_clear_pointer (&address, g_free);
  g_clear_pointer (&host, g_free);
  address = g_strdup_printf ("%s@[2001:db8::1]:7001", natkit_identity_get_peer_id (id));
  g_assert_true (natkit_peer_address_parse (address, NULL, &host, &port, &error));
  g_assert_cmpstr (host, ==, "2001:db8::1");
  g_assert_cmpuint (port, ==, 7001);

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *text = NULL;

      text = g_strconcat (*bad[i][0] ? natkit_identity_get_peer_id (id) : "",
                          bad[i][1], NULL);
      g_assert_false (natkit_peer_address_parse (text, NULL, NULL, NULL, &error));
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "is not a peer address"));
      g_clear_error (&error);
    }
}

static void
message_cb (NatkitSignaling *signaling,
            const char      *from,
            const char      *message,
            gpointer         user_data)
{
  GPtrArray *got = user_data;

  g_ptr_array_add (got, g_strdup_printf ("%s:%s", from, message));
}

static void
send_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  GError **error = user_data;

  natkit_signaling_send_finish (NATKIT_SIGNALING (source), res, error);
}

static void
test_signaling_pair (void)
{
  g_autoptr(NatkitSignaling) a = NULL;
  g_autoptr(NatkitSignaling) b = NULL;
  g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func (g_free);
  GError *error = NULL;
  g_autofree char *huge = NULL;

  natkit_signaling_new_pair ("alice", "bob", &a, &b);
  g_assert_cmpstr (natkit_signaling_get_local_peer_id (a), ==, "alice");
  g_assert_null (natkit_signaling_get_local_address (a));
  g_signal_connect (b, "message-received", G_CALLBACK (message_cb), got);

  natkit_signaling_send_async (a, "bob", "{\"n\":1}", NULL, send_cb, &error);
  natkit_signaling_send_async (a, "bob", "{\"n\":2}", NULL, send_cb, &error);
  /* delivered from the main loop, not re-entrantly */
  g_assert_cmpuint (got->len, ==, 0);
  while (got->len < 2)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (error);
  g_assert_cmpstr (g_ptr_array_index (got, 0), ==, "alice:{\"n\":1}");
  g_assert_cmpstr (g_ptr_array_index (got, 1), ==, "alice:{\"n\":2}");

  natkit_signaling_send_async (a, "carol", "{}", NULL, send_cb, &error);
  while (!error)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
  g_clear_error (&error);

  huge = g_strnfill (NATKIT_SIGNALING_MAX_MESSAGE + 1, 'x');
  natkit_signaling_send_async (a, "bob", huge, NULL, send_cb, &error);
  while (!error)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
  g_clear_error (&error);
}

/* The test plugins "late" (fails with its own reason 300 ms after the
 * request's time limit, the manager's deadline for the attempt) and
 * "slow" (never finishes until cancelled) race: the connect fails with
 * late's own reason, given within the manager's grace, and "no path
 * within 15 s" for slow, which gave none. Takes the method time limit
 * (15 s) and the grace (1 s). */
static void
test_connect_late_reason (Fixture       *f,
                          gconstpointer  data)
{
  static const char * const late_and_slow[] = { "late", "slow", NULL };
  gint64 started = g_get_monotonic_time ();
  gint64 took;

  if (natkit_manager_get_plugin (f->pair.a, "late") == NULL ||
      natkit_manager_get_plugin (f->pair.a, "slow") == NULL)
    {
      g_test_skip ("the test plugins late and slow are not built");
      return;
    }
  test_pair_connect (&f->pair, late_and_slow, NATKIT_CONNECT_NONE);
  took = (g_get_monotonic_time () - started) / 1000;
  g_assert_nonnull (f->pair.error);
  g_test_message ("failed after %" G_GINT64_FORMAT " ms: %s", took, f->pair.error->message);
  g_assert_null (f->pair.outgoing);
  g_assert_nonnull (strstr (f->pair.error->message,
                            "late: late: the simulated server did not answer within 15000 ms"));
  g_assert_nonnull (strstr (f->pair.error->message, "slow: no path within 15 s"));
  /* the grace is bounded: slow was cancelled a second past its deadline */
  g_assert_cmpint (took, <, 15000 + 1000 + 5000);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *state = test_state_private ();
  const char *plugins = g_getenv ("NATKIT_TEST_PLUGINS_DIR");
  const char *path = g_getenv ("NATKIT_PLUGIN_PATH");
  g_autofree char *with_tests = NULL;
  int ret;

  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  /* the test plugins bring "late" and "slow" (the other tests name
   * loopback only) */
  if (plugins == NULL)
    plugins = g_test_build_filename (G_TEST_BUILT, "..", "plugins", NULL);
  with_tests = path && *path ? g_strconcat (path, ":", plugins, NULL) : g_strdup (plugins);
  g_setenv ("NATKIT_PLUGIN_PATH", with_tests, TRUE);

  g_test_add_func ("/natkit/signaling/pair", test_signaling_pair);
  g_test_add_func ("/natkit/signaling/peer-address", test_peer_address);
  g_test_add ("/natkit/connect/stream", Fixture, NULL,
              fixture_set_up, test_connect_stream, fixture_tear_down);
  g_test_add ("/natkit/connect/datagram", Fixture, NULL,
              fixture_set_up, test_connect_datagram, fixture_tear_down);
  g_test_add ("/natkit/connect/close", Fixture, NULL,
              fixture_set_up, test_connect_close, fixture_tear_down);
  g_test_add ("/natkit/connect/not-listening", Fixture, NULL,
              fixture_set_up, test_connect_not_listening, fixture_tear_down);
  g_test_add ("/natkit/connect/impostor", Fixture, NULL,
              fixture_set_up, test_connect_impostor, fixture_tear_down);
  g_test_add ("/natkit/connect/late-reason", Fixture, NULL,
              fixture_set_up, test_connect_late_reason, fixture_tear_down);

  ret = g_test_run ();
  test_state_remove (state);
  return ret;
}
