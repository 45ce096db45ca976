/* test-registry.c: the live connection registry and the per-method metrics
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Two managers connect over the in-process signaling pair and the loopback
 * plugin (as in test-connect.c); the test plugins add "gamma", a method
 * whose attempts always fail.
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "natkit.h"
#include "test-pair.h"
#include "test-state.h"

static const char * const loopback_only[] = { "loopback", NULL };
static const char * const gamma_then_loopback[] = { "gamma", "loopback", NULL };
static const char * const gamma_only[] = { "gamma", NULL };

typedef struct
{
  guint added;
  guint removed;
} Changes;

typedef struct
{
  TestPair          pair;
  Changes           changes_a;   /* items-changed of a's model */
  Changes           changes_b;
} Fixture;

static void
items_changed_cb (GListModel *model,
                  guint       position,
                  guint       removed,
                  guint       added,
                  gpointer    user_data)
{
  Changes *changes = user_data;

  g_assert_cmpuint (position + added, <=, g_list_model_get_n_items (model));
  changes->added += added;
  changes->removed += removed;
}

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();

  test_pair_init (&f->pair, config);
  g_signal_connect (natkit_manager_get_connections (f->pair.a), "items-changed",
                    G_CALLBACK (items_changed_cb), &f->changes_a);
  g_signal_connect (natkit_manager_get_connections (f->pair.b), "items-changed",
                    G_CALLBACK (items_changed_cb), &f->changes_b);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  g_signal_handlers_disconnect_by_func (natkit_manager_get_connections (f->pair.a),
                                        items_changed_cb, &f->changes_a);
  g_signal_handlers_disconnect_by_func (natkit_manager_get_connections (f->pair.b),
                                        items_changed_cb, &f->changes_b);
  test_pair_clear (&f->pair);
  for (int i = 0; i < 50; i++)
    g_main_context_iteration (NULL, FALSE);
}

static void
connect_pair (Fixture            *f,
              const char * const *methods,
              NatkitConnectFlags  flags)
{
  test_pair_connect (&f->pair, methods, flags);
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

/* Sends @size bytes over the stream from @from to @to; returns when @to
 * has read them all. */
static void
transfer (NatkitConnection *from,
          NatkitConnection *to,
          gsize             size)
{
  g_autofree guint8 *data = g_malloc (size);
  g_autofree guint8 *buf = g_malloc (size);
  GPollableInputStream *in =
    G_POLLABLE_INPUT_STREAM (g_io_stream_get_input_stream (natkit_connection_get_stream (to)));
  gboolean wrote = FALSE;
  gsize got = 0;

  for (gsize i = 0; i < size; i++)
    data[i] = (i * 13) & 0xff;
  g_output_stream_write_all_async (g_io_stream_get_output_stream (natkit_connection_get_stream (from)),
                                   data, size, G_PRIORITY_DEFAULT, NULL, wrote_cb, &wrote);
  while (got < size)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_pollable_input_stream_read_nonblocking (in, buf + got, size - got,
                                                          NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          g_main_context_iteration (NULL, TRUE);
          continue;
        }
      g_assert_no_error (error);
      g_assert_cmpint (n, >, 0);
      got += n;
    }
  while (!wrote)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (memcmp (data, buf, size) == 0);
}

static void
datagram_cb (NatkitConnection *connection,
             GBytes           *datagram,
             gpointer          user_data)
{
  (*(guint *) user_data)++;
}

static void
count_cb (GObject    *object,
          GParamSpec *pspec,
          gpointer    user_data)
{
  (*(guint *) user_data)++;
}

static void
state_changed_cb (NatkitConnection *connection,
                  GParamSpec       *pspec,
                  gpointer          user_data)
{
  if (natkit_connection_get_state (connection) == NATKIT_CONNECTION_STATE_CLOSED)
    *(gboolean *) user_data = TRUE;
}

/* Checks @connection's state history begins connected (@how) and ends
 * closed (@why). In between the responder may see its path close a moment
 * before the close message (the loopback closes both ends at once). */
static void
assert_history (NatkitConnection *connection,
                const char       *how,
                const char       *why)
{
  g_autoptr(GVariant) history = natkit_connection_get_state_history (connection);
  gint64 real0, mono0, real1, mono1;
  const char *state0, *reason0, *state1, *reason1;

  g_assert_cmpstr (g_variant_get_type_string (history), ==, "a(xxss)");
  g_assert_cmpuint (g_variant_n_children (history), >=, 2);
  g_variant_get_child (history, 0, "(xx&s&s)", &real0, &mono0, &state0, &reason0);
  g_variant_get_child (history, g_variant_n_children (history) - 1, "(xx&s&s)",
                       &real1, &mono1, &state1, &reason1);
  g_assert_cmpstr (state0, ==, "connected");
  g_assert_true (g_str_has_prefix (reason0, how));
  g_assert_cmpint (real0, ==, natkit_connection_get_connected_at (connection));
  g_assert_cmpstr (state1, ==, "closed");
  g_assert_cmpstr (reason1, ==, why);
  g_assert_cmpint (mono1, >=, mono0);
  g_assert_cmpint (real1, >=, real0);
}

static void
test_registry_model (Fixture       *f,
                     gconstpointer  data)
{
  GListModel *model_a = natkit_manager_get_connections (f->pair.a);
  GListModel *model_b = natkit_manager_get_connections (f->pair.b);
  g_autoptr(NatkitConnection) item_a = NULL;
  g_autoptr(NatkitConnection) item_b = NULL;
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
  g_autoptr(GBytes) back = g_bytes_new_static ("back", 4);
  g_autoptr(GError) error = NULL;
  g_autofree char *peer = NULL;
  g_autofree char *method = NULL;
  gint64 before = g_get_real_time ();
  gsize size = 300 * 1000 + 7;
  guint got_a = 0, got_b = 0, notified = 0;
  gboolean closed = FALSE;
  guint64 sent = 0;

  g_assert_true (g_list_model_get_item_type (model_a) == NATKIT_TYPE_CONNECTION);
  g_assert_cmpuint (g_list_model_get_n_items (model_a), ==, 0);

  connect_pair (f, loopback_only, NATKIT_CONNECT_DATAGRAM);
  g_assert_no_error (f->pair.error);

  /* both sides list their end, once */
  g_assert_cmpuint (g_list_model_get_n_items (model_a), ==, 1);
  g_assert_cmpuint (g_list_model_get_n_items (model_b), ==, 1);
  g_assert_cmpuint (f->changes_a.added, ==, 1);
  g_assert_cmpuint (f->changes_b.added, ==, 1);
  g_assert_cmpuint (f->changes_a.removed, ==, 0);
  item_a = g_list_model_get_item (model_a, 0);
  item_b = g_list_model_get_item (model_b, 0);
  g_assert_true (item_a == f->pair.outgoing);
  g_assert_true (item_b == f->pair.incoming);
  g_assert_null (g_list_model_get_item (model_a, 1));

  /* properties */
  g_object_get (item_a, "peer-id", &peer, "method", &method, NULL);
  g_assert_cmpstr (peer, ==, natkit_identity_get_peer_id (f->pair.id_b));
  g_assert_cmpstr (method, ==, "loopback");
  g_assert_cmpstr (natkit_connection_get_method (item_b), ==, "loopback");
  g_assert_nonnull (natkit_connection_get_transport (item_a));
  /* loopback is a direct method (the relayed case: tests/desktop) */
  g_assert_false (natkit_connection_is_relayed (item_a));
  g_assert_false (natkit_connection_is_relayed (item_b));
  g_assert_nonnull (natkit_connection_get_remote_address (item_a));
  g_assert_cmpstr (natkit_connection_get_remote_address (item_a), ==,
                   natkit_path_get_remote_address (natkit_connection_get_path (item_a)));
  g_assert_cmpstr (natkit_connection_get_local_address (item_b), ==,
                   natkit_path_get_local_address (natkit_connection_get_path (item_b)));
  g_assert_cmpint (natkit_connection_get_connected_at (item_a), >=, before);
  g_assert_cmpint (natkit_connection_get_connected_at (item_a), <=, g_get_real_time ());
  g_assert_cmpfloat (natkit_connection_get_loss (item_a), >=, 0.0);
  g_assert_cmpfloat (natkit_connection_get_loss (item_a), <=, 1.0);
  g_assert_cmpuint (natkit_connection_get_bytes_sent (item_a), ==, 0);
  g_assert_cmpuint (natkit_connection_get_bytes_received (item_b), ==, 0);

  /* a known transfer is counted exactly: stream one way, datagrams both */
  transfer (item_a, item_b, size);
  g_signal_connect (item_b, "datagram-received", G_CALLBACK (datagram_cb), &got_b);
  g_signal_connect (item_a, "datagram-received", G_CALLBACK (datagram_cb), &got_a);
  g_assert_true (natkit_connection_send_datagram (item_a, hello, &error));
  g_assert_no_error (error);
  g_assert_true (natkit_connection_send_datagram (item_b, back, &error));
  g_assert_no_error (error);
  while (got_a < 1 || got_b < 1)
    g_main_context_iteration (NULL, TRUE);

  g_assert_cmpuint (natkit_connection_get_bytes_sent (item_a), ==, size + 5);
  g_assert_cmpuint (natkit_connection_get_bytes_received (item_b), ==, size + 5);
  g_assert_cmpuint (natkit_connection_get_bytes_sent (item_b), ==, 4);
  g_assert_cmpuint (natkit_connection_get_bytes_received (item_a), ==, 4);
  g_object_get (item_a, "bytes-sent", &sent, NULL);
  g_assert_cmpuint (sent, ==, size + 5);

  /* counted per packet, notified per keepalive tick */
  g_signal_connect (item_a, "notify::bytes-sent", G_CALLBACK (count_cb), &notified);
  for (guint i = 0; i < 50; i++)
    {
      g_assert_true (natkit_connection_send_datagram (item_a, hello, &error));
      g_assert_no_error (error);
    }
  g_assert_cmpuint (notified, ==, 0);
  g_assert_cmpuint (natkit_connection_get_bytes_sent (item_a), ==, size + 5 * 51);
  while (notified == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (notified, ==, 1);
  g_signal_handlers_disconnect_by_func (item_a, count_cb, &notified);

  /* the keepalive measured the path (in-memory: no loss) */
  while (natkit_connection_get_rtt (item_a) < 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpfloat (natkit_connection_get_loss (item_a), ==, 0.0);

  /* closing one end empties both models */
  g_signal_connect (item_b, "notify::state", G_CALLBACK (state_changed_cb), &closed);
  natkit_connection_close (item_a);
  g_assert_cmpuint (g_list_model_get_n_items (model_a), ==, 0);
  g_assert_cmpuint (f->changes_a.removed, ==, 1);
  while (!closed)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (g_list_model_get_n_items (model_b), ==, 0);
  g_assert_cmpuint (f->changes_b.removed, ==, 1);

  /* the counters outlive the connection */
  g_assert_cmpuint (natkit_connection_get_bytes_sent (item_a), ==, size + 5 * 51);
  assert_history (item_a, "connected via loopback", "closed by this side");
  {
    g_autoptr(GVariant) history = natkit_connection_get_state_history (item_a);

    g_assert_cmpuint (g_variant_n_children (history), ==, 2);
  }
  assert_history (item_b, "accepted via loopback", "closed by the peer");
}

static void
test_registry_weak (Fixture       *f,
                    gconstpointer  data)
{
  GListModel *model_a = natkit_manager_get_connections (f->pair.a);

  connect_pair (f, loopback_only, NATKIT_CONNECT_NONE);
  g_assert_no_error (f->pair.error);
  g_assert_cmpuint (g_list_model_get_n_items (model_a), ==, 1);

  /* the registry does not keep a connection alive: dropping the last
   * reference closes it, and it leaves the model */
  g_clear_object (&f->pair.outgoing);
  g_assert_cmpuint (g_list_model_get_n_items (model_a), ==, 0);
  g_assert_cmpuint (f->changes_a.added, ==, 1);
  g_assert_cmpuint (f->changes_a.removed, ==, 1);
}

static GVariant *
lookup_method (GVariant   *metrics,
               const char *method)
{
  GVariant *m = g_variant_lookup_value (metrics, method, G_VARIANT_TYPE_VARDICT);

  g_assert_nonnull (m);
  return m;
}

static guint64
lookup_count (GVariant   *method,
              const char *key)
{
  guint64 value = G_MAXUINT64;

  g_assert_true (g_variant_lookup (method, key, "t", &value));
  return value;
}

static void
test_registry_metrics (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GVariant) metrics = NULL;
  g_autoptr(GVariant) gamma = NULL;
  g_autoptr(GVariant) loopback = NULL;
  g_autoptr(GVariant) reasons = NULL;
  gint64 min = -1, median = -1, mean = -1, max = -1;
  guint64 count = 0;

  metrics = natkit_manager_dup_metrics (f->pair.a);
  g_assert_cmpstr (g_variant_get_type_string (metrics), ==, "a{sa{sv}}");
  g_assert_cmpuint (g_variant_n_children (metrics), ==, 0);
  g_clear_pointer (&metrics, g_variant_unref);

  /* gamma fails at once; loopback carries the connection */
  connect_pair (f, gamma_then_loopback, NATKIT_CONNECT_NONE);
  g_assert_no_error (f->pair.error);
  g_assert_cmpstr (natkit_connection_get_method (f->pair.outgoing), ==, "loopback");

  metrics = natkit_manager_dup_metrics (f->pair.a);
  loopback = lookup_method (metrics, "loopback");
  g_assert_cmpuint (lookup_count (loopback, "attempts"), ==, 1);
  g_assert_cmpuint (lookup_count (loopback, "successes"), ==, 1);
  g_assert_cmpuint (lookup_count (loopback, "failures"), ==, 0);
  g_assert_cmpuint (lookup_count (loopback, "connect-count"), ==, 1);
  g_assert_true (g_variant_lookup (loopback, "connect-min-us", "x", &min));
  g_assert_true (g_variant_lookup (loopback, "connect-median-us", "x", &median));
  g_assert_true (g_variant_lookup (loopback, "connect-mean-us", "x", &mean));
  g_assert_true (g_variant_lookup (loopback, "connect-max-us", "x", &max));
  g_assert_cmpint (min, >, 0);
  g_assert_cmpint (min, ==, max);
  g_assert_cmpint (median, ==, min);
  g_assert_cmpint (mean, ==, min);
  g_assert_cmpint (min, ==, natkit_connection_get_connect_time (f->pair.outgoing));

  gamma = lookup_method (metrics, "gamma");
  g_assert_cmpuint (lookup_count (gamma, "attempts"), ==, 1);
  g_assert_cmpuint (lookup_count (gamma, "successes"), ==, 0);
  g_assert_cmpuint (lookup_count (gamma, "failures"), ==, 1);
  reasons = g_variant_lookup_value (gamma, "failure-reasons", G_VARIANT_TYPE ("a{st}"));
  g_assert_nonnull (reasons);
  g_assert_cmpuint (g_variant_n_children (reasons), ==, 1);
  g_assert_true (g_variant_lookup (reasons, "gamma: simulated failure", "t", &count));
  g_assert_cmpuint (count, ==, 1);
  g_assert_false (g_variant_lookup (gamma, "connect-min-us", "x", &min));

  /* the responder does not count the initiator's connects */
  g_clear_pointer (&metrics, g_variant_unref);
  metrics = natkit_manager_dup_metrics (f->pair.b);
  g_assert_cmpuint (g_variant_n_children (metrics), ==, 0);
}

static void
test_registry_metrics_failed (Fixture       *f,
                              gconstpointer  data)
{
  GListModel *model_a = natkit_manager_get_connections (f->pair.a);
  g_autoptr(GVariant) metrics = NULL;
  g_autoptr(GVariant) gamma = NULL;
  g_autoptr(GVariant) reasons = NULL;
  guint64 count = 0;
  g_autoptr(GError) error = NULL;

  g_assert_true (natkit_manager_listen (f->pair.b, f->pair.sig_b, &error));
  g_assert_no_error (error);
  natkit_manager_connect_with_signaling_async (f->pair.a, f->pair.sig_a,
                                               natkit_identity_get_peer_id (f->pair.id_b),
                                               gamma_only, 0, NULL, test_pair_connect_cb, &f->pair);
  while (!f->pair.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (f->pair.error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
  g_assert_null (f->pair.outgoing);
  g_assert_cmpuint (g_list_model_get_n_items (model_a), ==, 0);
  g_assert_cmpuint (f->changes_a.added, ==, 0);

  metrics = natkit_manager_dup_metrics (f->pair.a);
  g_assert_cmpuint (g_variant_n_children (metrics), ==, 1);
  gamma = lookup_method (metrics, "gamma");
  g_assert_cmpuint (lookup_count (gamma, "attempts"), ==, 1);
  g_assert_cmpuint (lookup_count (gamma, "successes"), ==, 0);
  g_assert_cmpuint (lookup_count (gamma, "failures"), ==, 1);
  g_assert_cmpuint (lookup_count (gamma, "connect-count"), ==, 0);
  reasons = g_variant_lookup_value (gamma, "failure-reasons", G_VARIANT_TYPE ("a{st}"));
  g_assert_true (g_variant_lookup (reasons, "gamma: simulated failure", "t", &count));
  g_assert_cmpuint (count, ==, 1);
}

/* The circuit breaker: a method that failed five times in a row, with any
 * peer, starts after the others for a while; the first one to work then
 * carries the connection before the broken one is even tried. Five
 * different peers, so that no peer's own history is what reorders. */
static void
first_attempt_cb (NatkitManager *manager,
                  const char    *session_id,
                  const char    *peer_id,
                  const char    *event,
                  const char    *method,
                  const char    *reason,
                  gpointer       user_data)
{
  char **first = user_data;

  if (g_str_equal (event, "attempt") && *first == NULL)
    *first = g_strdup (method);
}

static void
keep_incoming_cb (NatkitManager    *manager,
                  NatkitConnection *connection,
                  gpointer          user_data)
{
  g_ptr_array_add (user_data, g_object_ref (connection));
}

static void
test_registry_breaker (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GPtrArray) kept = g_ptr_array_new_with_free_func (g_object_unref);
  char *first = NULL;
  gulong progress_id = g_signal_connect (f->pair.a, "connect-progress",
                                         G_CALLBACK (first_attempt_cb), &first);

  for (guint round = 0; round < 6; round++)
    {
      g_autoptr(NatkitIdentity) id = natkit_identity_new_ephemeral (NULL);
      g_autoptr(NatkitManager) b = natkit_manager_new_with_config (natkit_manager_get_config (f->pair.a));
      g_autoptr(NatkitSignaling) sig_a = NULL;
      g_autoptr(NatkitSignaling) sig_b = NULL;
      g_autoptr(GVariant) metrics = NULL;
      g_autoptr(GVariant) gamma = NULL;
      g_autoptr(GError) error = NULL;
      const char * const *failures;
      gboolean gamma_failed = FALSE;

      natkit_manager_set_identity (b, id);
      natkit_signaling_new_pair (natkit_identity_get_peer_id (f->pair.id_a),
                                 natkit_identity_get_peer_id (id), &sig_a, &sig_b);
      g_assert_true (natkit_manager_listen (b, sig_b, &error));
      g_assert_no_error (error);
      g_signal_connect (b, "incoming", G_CALLBACK (keep_incoming_cb), kept);
      f->pair.done = FALSE;
      g_clear_object (&f->pair.outgoing);
      natkit_manager_connect_with_signaling_async (f->pair.a, sig_a, natkit_identity_get_peer_id (id),
                                                   gamma_then_loopback, NATKIT_CONNECT_NONE,
                                                   NULL, test_pair_connect_cb, &f->pair);
      while (!f->pair.done)
        g_main_context_iteration (NULL, TRUE);
      g_assert_no_error (f->pair.error);
      g_assert_cmpstr (natkit_connection_get_method (f->pair.outgoing), ==, "loopback");
      failures = natkit_connection_get_failures (f->pair.outgoing);
      for (guint i = 0; failures[i]; i++)
        gamma_failed |= g_str_has_prefix (failures[i], "gamma:");

      metrics = natkit_manager_dup_metrics (f->pair.a);
      gamma = g_variant_lookup_value (metrics, "gamma", G_VARIANT_TYPE_VARDICT);
      g_assert_nonnull (gamma);
      if (round < 5)
        {
          /* tried first, failed: one more in a row */
          g_assert_cmpstr (first, ==, "gamma");
          g_assert_true (gamma_failed);
          g_assert_cmpuint (lookup_count (gamma, "failures"), ==, round + 1);
        }
      else
        {
          /* the breaker is open: gamma starts after loopback (which
           * usually carries the connection before gamma's turn) */
          g_assert_cmpstr (first, ==, "loopback");
        }
      g_clear_pointer (&first, g_free);
      natkit_connection_close (f->pair.outgoing);
      for (int i = 0; i < 50; i++)
        g_main_context_iteration (NULL, FALSE);
    }
  g_signal_handler_disconnect (f->pair.a, progress_id);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *state = test_state_private ();
  int ret;

  const char *plugins = g_getenv ("NATKIT_TEST_PLUGINS_DIR");
  const char *path = g_getenv ("NATKIT_PLUGIN_PATH");
  g_autofree char *with_tests = NULL;

  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The live connection registry (natkit_manager_get_connections()), "
                  "the connection's counters and state history, and the "
                  "per-method metrics (natkit_manager_dup_metrics())");

  /* the test plugins bring "gamma", a method that always fails */
  if (plugins == NULL)
    plugins = g_test_build_filename (G_TEST_BUILT, "..", "plugins", NULL);
  with_tests = path && *path ? g_strconcat (path, ":", plugins, NULL) : g_strdup (plugins);
  g_setenv ("NATKIT_PLUGIN_PATH", with_tests, TRUE);

  g_test_add ("/natkit/registry/model", Fixture, NULL,
              fixture_set_up, test_registry_model, fixture_tear_down);
  g_test_add ("/natkit/registry/weak", Fixture, NULL,
              fixture_set_up, test_registry_weak, fixture_tear_down);
  g_test_add ("/natkit/registry/breaker", Fixture, NULL,
              fixture_set_up, test_registry_breaker, fixture_tear_down);
  g_test_add ("/natkit/registry/metrics", Fixture, NULL,
              fixture_set_up, test_registry_metrics, fixture_tear_down);
  g_test_add ("/natkit/registry/metrics-failed", Fixture, NULL,
              fixture_set_up, test_registry_metrics_failed, fixture_tear_down);

  ret = g_test_run ();
  test_state_remove (state);
  return ret;
}
