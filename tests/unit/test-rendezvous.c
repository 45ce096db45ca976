/* test-rendezvous.c: NatkitRendezvous and the relay plugin against a real
 * natkit-server running in this process on loopback
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <locale.h>
#include <string.h>

#include <natkit/natkit.h>

#include "natkit-server-core.h"
#include "test-state.h"

typedef struct
{
  NatkitServer *server;
  char         *address;   /* 127.0.0.1:PORT */
  GError       *error;
  gboolean      done;
} Fixture;

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  f->server = natkit_server_new ("127.0.0.1", 0, 0, NULL, NULL);
  g_assert_true (natkit_server_start (f->server, &error));
  g_assert_no_error (error);
  f->address = g_strdup_printf ("127.0.0.1:%u", natkit_server_get_tls_port (f->server));
}

static void
stopped_cb (GObject      *source,
            GAsyncResult *res,
            gpointer      user_data)
{
  *(gboolean *) user_data = natkit_server_stop_finish (NATKIT_SERVER (source), res, NULL);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  gboolean stopped = FALSE;

  natkit_server_stop_async (f->server, stopped_cb, &stopped);
  while (!stopped)
    g_main_context_iteration (NULL, TRUE);
  g_clear_object (&f->server);
  g_free (f->address);
  g_clear_error (&f->error);
}

static void
registered_cb (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  Fixture *f = user_data;

  natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), res, &f->error);
  f->done = TRUE;
}

static void
register_at (Fixture          *f,
             NatkitRendezvous *rendezvous)
{
  f->done = FALSE;
  g_clear_error (&f->error);
  natkit_rendezvous_connect_async (rendezvous, NULL, registered_cb, f);
  while (!f->done)
    g_main_context_iteration (NULL, TRUE);
}

static void
test_register_and_pin (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) id = natkit_identity_new_ephemeral (&error);
  g_autoptr(NatkitRendezvous) plain = NULL;
  g_autoptr(NatkitRendezvous) pinned = NULL;
  g_autoptr(NatkitRendezvous) wrong = NULL;
  g_autofree char *good = NULL;
  g_autofree char *bad = NULL;
  g_autofree char *expected = NULL;

  plain = natkit_rendezvous_new (id, f->address, &error);
  g_assert_no_error (error);
  register_at (f, plain);
  g_assert_no_error (f->error);
  g_assert_true (natkit_rendezvous_is_registered (plain));
  g_assert_cmpuint (natkit_rendezvous_get_udp_port (plain), ==,
                    natkit_server_get_udp_port (f->server));
  g_assert_true (g_str_has_prefix (natkit_rendezvous_get_observed_address (plain), "127.0.0.1:"));
  expected = g_strdup_printf ("%s@%s", natkit_identity_get_peer_id (id), f->address);
  g_assert_cmpstr (natkit_signaling_get_local_address (NATKIT_SIGNALING (plain)), ==, expected);
  natkit_rendezvous_close (plain);

  /* the server's fingerprint pinned: accepted */
  good = g_strdup_printf ("%s#%s", f->address, natkit_server_get_fingerprint (f->server));
  pinned = natkit_rendezvous_new (id, good, &error);
  g_assert_no_error (error);
  register_at (f, pinned);
  g_assert_no_error (f->error);
  natkit_rendezvous_close (pinned);

  /* another fingerprint pinned: refused, with the reason */
  bad = g_strdup_printf ("%s#sha256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:"
                         "00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF", f->address);
  wrong = natkit_rendezvous_new (id, bad, &error);
  g_assert_no_error (error);
  register_at (f, wrong);
  g_assert_error (f->error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (f->error->message, f->address));
  g_assert_false (natkit_rendezvous_is_registered (wrong));
}

static void
test_unreachable (Fixture       *f,
                  gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) id = natkit_identity_new_ephemeral (&error);
  g_autoptr(NatkitRendezvous) r = NULL;

  /* the port of a server that just stopped: connection refused */
  r = natkit_rendezvous_new (id, "127.0.0.1:1", &error);
  register_at (f, r);
  g_assert_error (f->error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (f->error->message, "cannot reach natkit-server 127.0.0.1:1"));

  g_assert_null (natkit_rendezvous_new (id, "no-port-here", &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
}

typedef struct
{
  NatkitConnection *incoming;
  NatkitConnection *outgoing;
  GError           *error;
  gboolean          done;
} Pair;

static void
incoming_cb (NatkitManager    *manager,
             NatkitConnection *connection,
             gpointer          user_data)
{
  Pair *p = user_data;

  p->incoming = g_object_ref (connection);
}

static void
connected_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  Pair *p = user_data;

  p->outgoing = natkit_manager_connect_finish (NATKIT_MANAGER (source), res, &p->error);
  p->done = TRUE;
}

static void
datagram_cb (NatkitConnection *connection,
             GBytes           *datagram,
             gpointer          user_data)
{
  *(GBytes **) user_data = g_bytes_ref (datagram);
}

/* Two managers registered at the server in this process; A connects to B
 * with @methods (all when %NULL) and sends a datagram each way. */
static void
connect_and_exchange (Fixture            *f,
                      const char * const *methods,
                      const char         *expect_method,
                      guint               expect_circuits)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) a = natkit_manager_new_with_config (config);
  g_autoptr(NatkitManager) b = natkit_manager_new_with_config (config);
  g_autoptr(NatkitIdentity) id_a = natkit_identity_new_ephemeral (&error);
  g_autoptr(NatkitIdentity) id_b = natkit_identity_new_ephemeral (&error);
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello, peer", 11);
  g_autoptr(GBytes) got = NULL;
  g_autoptr(GBytes) back = NULL;
  NatkitRendezvous *rb;
  Pair p = { NULL, NULL, NULL, FALSE };

  natkit_manager_set_identity (a, id_a);
  natkit_manager_set_identity (b, id_b);
  rb = natkit_manager_get_rendezvous (b, f->address, &error);
  g_assert_no_error (error);
  register_at (f, rb);
  g_assert_no_error (f->error);
  g_assert_true (natkit_manager_listen (b, NATKIT_SIGNALING (rb), &error));
  g_signal_connect (b, "incoming", G_CALLBACK (incoming_cb), &p);

  natkit_manager_connect_async (a, natkit_signaling_get_local_address (NATKIT_SIGNALING (rb)),
                                methods, NATKIT_CONNECT_DATAGRAM, NULL, connected_cb, &p);
  while (!p.done || (!p.error && !p.incoming))
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (p.error);
  g_assert_cmpstr (natkit_connection_get_method (p.outgoing), ==, expect_method);
  g_assert_cmpstr (natkit_connection_get_method (p.incoming), ==, expect_method);
  g_assert_cmpstr (natkit_connection_get_transport (p.outgoing), ==, "udp");
  g_assert_cmpuint (natkit_server_get_n_circuits (f->server), ==, expect_circuits);

  g_signal_connect (p.incoming, "datagram-received", G_CALLBACK (datagram_cb), &got);
  g_signal_connect (p.outgoing, "datagram-received", G_CALLBACK (datagram_cb), &back);
  g_assert_true (natkit_connection_send_datagram (p.outgoing, hello, &error));
  while (!got)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_bytes_equal (got, hello));
  g_assert_true (natkit_connection_send_datagram (p.incoming, hello, &error));
  while (!back)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_bytes_equal (back, hello));
  if (expect_circuits > 0)
    g_assert_cmpuint (natkit_server_get_bytes_relayed (f->server), >, 0);
  else
    g_assert_cmpuint (natkit_server_get_bytes_relayed (f->server), ==, 0);

  /* closing releases what the path held (the circuit at the server) */
  natkit_connection_close (p.outgoing);
  while (natkit_server_get_n_circuits (f->server) > 0)
    g_main_context_iteration (NULL, TRUE);
  g_clear_object (&p.outgoing);
  g_clear_object (&p.incoming);
}

static void
test_connect_through_relay (Fixture       *f,
                            gconstpointer  data)
{
  static const char * const relay[] = { "relay", NULL };

  connect_and_exchange (f, relay, "relay", 1);
}

/* Hole punching with the server's STUN answer (127.0.0.1:PORT): direct,
 * nothing relayed */
static void
test_connect_holepunch (Fixture       *f,
                        gconstpointer  data)
{
  static const char * const holepunch[] = { "holepunch", NULL };

  connect_and_exchange (f, holepunch, "holepunch", 0);
}

/* Every method allowed: the direct one wins over the relay */
static void
test_connect_prefers_direct (Fixture       *f,
                             gconstpointer  data)
{
  connect_and_exchange (f, NULL, "holepunch", 0);
}

static void
progress_cb (NatkitManager *manager,
             const char    *session_id,
             const char    *peer_id,
             const char    *event,
             const char    *method,
             const char    *reason,
             gpointer       user_data)
{
  if (g_str_equal (event, "attempt"))
    g_ptr_array_add (user_data, g_strdup (method));
}

static gboolean
give_up_cb (gpointer user_data)
{
  g_error ("timed out waiting: %s", (const char *) user_data);
  return G_SOURCE_REMOVE;
}

/* A history that says hole punching keeps failing with this peer: the
 * relay starts first and carries the connection; hole punching, started
 * next, works after all and takes the live connection over (an upgrade),
 * and the history then says it works. */
static void
test_history_ranks (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  /* hole punching starts 3 s after the relay (not 250 ms): on a loaded
   * machine it could otherwise open its path first and win outright */
  g_autoptr(NatkitConfig) config = natkit_config_new_from_data ("{\"timers\": {\"stagger\": 3}}",
                                                                -1, NULL);
  g_autoptr(NatkitManager) a = NULL;
  g_autoptr(NatkitManager) b = natkit_manager_new_with_config (config);
  g_autoptr(NatkitIdentity) id_a = natkit_identity_new_ephemeral (&error);
  g_autoptr(NatkitIdentity) id_b = natkit_identity_new_ephemeral (&error);
  g_autoptr(GPtrArray) attempts = g_ptr_array_new_with_free_func (g_free);
  g_autofree char *filename = g_build_filename (g_get_user_state_dir (), "natkit",
                                                "history.json", NULL);
  g_autofree char *dir = g_path_get_dirname (filename);
  g_autofree char *text = NULL;
  g_autofree char *history = NULL;
  NatkitRendezvous *rb;
  Pair p = { NULL, NULL, NULL, FALSE };
  guint give_up;

  text = g_strdup_printf ("{\"version\": 1, \"peers\": {\"%s\": {\"methods\": "
                          "{\"holepunch\": {\"attempts\": 3, \"failures\": 3, "
                          "\"failures_in_a_row\": 3}}}}}",
                          natkit_identity_get_peer_id (id_b));
  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (filename, text, -1, &error));
  a = natkit_manager_new_with_config (config);
  natkit_manager_set_identity (a, id_a);
  natkit_manager_set_identity (b, id_b);
  g_signal_connect (a, "connect-progress", G_CALLBACK (progress_cb), attempts);

  rb = natkit_manager_get_rendezvous (b, f->address, &error);
  g_assert_no_error (error);
  register_at (f, rb);
  g_assert_no_error (f->error);
  g_assert_true (natkit_manager_listen (b, NATKIT_SIGNALING (rb), &error));
  g_signal_connect (b, "incoming", G_CALLBACK (incoming_cb), &p);

  give_up = g_timeout_add_seconds (30, give_up_cb, "the connection and its upgrade");
  natkit_manager_connect_async (a, natkit_signaling_get_local_address (NATKIT_SIGNALING (rb)),
                                NULL, NATKIT_CONNECT_NONE, NULL, connected_cb, &p);
  while (!p.done || (!p.error && !p.incoming))
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (p.error);
  g_assert_cmpuint (attempts->len, >=, 1);
  g_assert_cmpstr (g_ptr_array_index (attempts, 0), ==, "relay");
  g_assert_cmpstr (natkit_connection_get_method (p.outgoing), ==, "relay");

  /* hole punching, started second, takes over; the peer follows */
  while (g_strcmp0 (natkit_connection_get_method (p.outgoing), "holepunch") != 0 ||
         g_strcmp0 (natkit_connection_get_method (p.incoming), "holepunch") != 0)
    g_main_context_iteration (NULL, TRUE);
  g_source_remove (give_up);

  history = natkit_manager_dup_history (a);
  g_assert_nonnull (strstr (history, natkit_identity_get_peer_id (id_b)));
  g_assert_nonnull (strstr (history, "\"last_method\" : \"holepunch\""));
  g_assert_nonnull (strstr (history, "\"failures_in_a_row\" : 0"));

  natkit_connection_close (p.outgoing);
  g_clear_object (&p.outgoing);
  g_clear_object (&p.incoming);
}

/* natkit-server hands out TURN REST credentials; the manager's settings
 * gain the server with them (what the TURN and ICE plugins read) */
static void
test_turn_credentials (Fixture       *f,
                       gconstpointer  data)
{
  static const char * const uris[] = { "turn:127.0.0.1:3478?transport=tcp",
                                       "turns:127.0.0.1:5349", NULL };
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) manager = natkit_manager_new_with_config (config);
  g_autoptr(NatkitIdentity) id = natkit_identity_new_ephemeral (&error);
  g_autofree char *user = NULL, *password = NULL, *secret = NULL;
  g_autofree char *expected_user = NULL, *expected_password = NULL;
  g_auto(GStrv) parts = NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC, expiry;
  NatkitRendezvous *rendezvous;

  natkit_server_set_turn (f->server, uris, "lab-secret", 7200);
  natkit_manager_set_identity (manager, id);
  rendezvous = natkit_manager_get_rendezvous (manager, f->address, &error);
  g_assert_no_error (error);
  register_at (f, rendezvous);
  g_assert_no_error (f->error);

  g_assert_cmpstrv (natkit_config_get_turn_uris (config), uris);
  g_assert_true (natkit_config_get_turn_credentials (config, uris[1], &user, &password,
                                                     &secret));
  g_assert_null (secret);
  /* EXPIRY:PEER-ID, valid for the TTL, keyed with the shared secret */
  parts = g_strsplit (user, ":", 2);
  g_assert_cmpstr (parts[1], ==, natkit_identity_get_peer_id (id));
  expiry = g_ascii_strtoll (parts[0], NULL, 10);
  g_assert_cmpint (expiry, >=, now + 7200);
  g_assert_cmpint (expiry, <=, now + 7200 + 5);
  natkit_turn_rest_credentials ("lab-secret", parts[1], expiry, &expected_user,
                                &expected_password);
  g_assert_cmpstr (user, ==, expected_user);
  g_assert_cmpstr (password, ==, expected_password);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *state = test_state_private ();
  int ret;

  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);

  g_test_add ("/natkit/rendezvous/register-and-pin", Fixture, NULL,
              fixture_set_up, test_register_and_pin, fixture_tear_down);
  g_test_add ("/natkit/rendezvous/unreachable", Fixture, NULL,
              fixture_set_up, test_unreachable, fixture_tear_down);
  g_test_add ("/natkit/rendezvous/connect-through-relay", Fixture, NULL,
              fixture_set_up, test_connect_through_relay, fixture_tear_down);
  g_test_add ("/natkit/rendezvous/connect-holepunch", Fixture, NULL,
              fixture_set_up, test_connect_holepunch, fixture_tear_down);
  g_test_add ("/natkit/rendezvous/connect-prefers-direct", Fixture, NULL,
              fixture_set_up, test_connect_prefers_direct, fixture_tear_down);
  g_test_add ("/natkit/rendezvous/turn-credentials", Fixture, NULL,
              fixture_set_up, test_turn_credentials, fixture_tear_down);
  g_test_add ("/natkit/rendezvous/history-ranks", Fixture, NULL,
              fixture_set_up, test_history_ranks, fixture_tear_down);

  ret = g_test_run ();
  test_state_remove (state);
  return ret;
}
