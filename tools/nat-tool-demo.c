/* nat-tool-demo.c: nat-tool demo
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <gio/gio.h>

#include "nat-tool.h"
#include "natkit-server-core.h"

/* The embedded natkit-server. */
typedef NatkitServer DemoServer;

static DemoServer *
demo_server_start (GError **error)
{
  g_autoptr(NatkitServer) server = natkit_server_new ("127.0.0.1", 0, 0, NULL, NULL);

  if (!natkit_server_start (server, error))
    return NULL;
  return g_steal_pointer (&server);
}

static guint16
demo_server_get_port (DemoServer *server)
{
  return natkit_server_get_tls_port (server);
}

static const char *
demo_server_get_fingerprint (DemoServer *server)
{
  return natkit_server_get_fingerprint (server);
}

static void
demo_stopped_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  natkit_server_stop_finish (NATKIT_SERVER (source), res, NULL);
  *(gboolean *) user_data = TRUE;
}

static void
demo_server_stop (DemoServer *server)
{
  gboolean done = FALSE;

  natkit_server_stop_async (server, demo_stopped_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

/* ---- nat-tool demo ------------------------------------------------------ */

static int demo_size_kb = 4096;

const GOptionEntry demo_entries[] = {
  { "size", 0, 0, G_OPTION_ARG_INT, &demo_size_kb,
    "How many KiB the demo sends each way (default 4096)", "KIB" },
  G_OPTION_ENTRY_NULL
};

typedef struct
{
  CommonOptions    *common;
  GMainLoop        *loop;
  NatkitConnection *incoming;
  NatkitConnection *outgoing;
  GError           *error;
  gboolean          registered;
  gsize             size;
  gsize             echoed;
  gsize             received;
  gint64            started;
  gint64            transfer_started;
  guint8           *buffer;
  guint8           *payload;
  GChecksum        *sent_sum;
  GChecksum        *got_sum;
} Demo;

static void
demo_step (Demo       *demo,
           const char *event,
           const char *text)
{
  if (demo->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", event);
      add_string (builder, "message", text);
      add_int (builder, "elapsed_ms", (g_get_monotonic_time () - demo->started) / 1000);
      json_builder_end_object (builder);
      print_event (builder);
    }
  else
    g_print ("%s\n", text);
}

static void
demo_registered_cb (GObject      *source,
                    GAsyncResult *res,
                    gpointer      user_data)
{
  Demo *demo = user_data;

  demo->registered = natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), res,
                                                       &demo->error);
  g_main_loop_quit (demo->loop);
}

static void
demo_connected_cb (GObject      *source,
                   GAsyncResult *res,
                   gpointer      user_data)
{
  Demo *demo = user_data;

  demo->outgoing = natkit_manager_connect_finish (NATKIT_MANAGER (source), res,
                                                  &demo->error);
  g_main_loop_quit (demo->loop);
}

static void
demo_incoming_cb (NatkitManager    *manager,
                  NatkitConnection *connection,
                  gpointer          user_data)
{
  Demo *demo = user_data;

  g_clear_object (&demo->incoming);
  demo->incoming = g_object_ref (connection);
}

/* B echoes what it reads; A writes the payload and reads the echo back */

static void demo_echo_read (Demo *demo);

static void
demo_echo_written_cb (GObject      *source,
                      GAsyncResult *res,
                      gpointer      user_data)
{
  Demo *demo = user_data;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL,
                                         demo->error ? NULL : &demo->error))
    {
      g_main_loop_quit (demo->loop);
      return;
    }
  demo_echo_read (demo);
}

static void
demo_echo_read_cb (GObject      *source,
                   GAsyncResult *res,
                   gpointer      user_data)
{
  Demo *demo = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res,
                                         demo->error ? NULL : &demo->error);
  GIOStream *stream = natkit_connection_get_stream (demo->incoming);

  if (n <= 0)
    {
      /* A finished: finish our direction too */
      g_output_stream_close (g_io_stream_get_output_stream (stream), NULL, NULL);
      if (n < 0)
        g_main_loop_quit (demo->loop);
      return;
    }
  demo->echoed += n;
  g_output_stream_write_all_async (g_io_stream_get_output_stream (stream),
                                   demo->buffer, n, G_PRIORITY_DEFAULT, NULL,
                                   demo_echo_written_cb, demo);
}

static void
demo_echo_read (Demo *demo)
{
  GIOStream *stream = natkit_connection_get_stream (demo->incoming);

  g_input_stream_read_async (g_io_stream_get_input_stream (stream), demo->buffer,
                             65536, G_PRIORITY_DEFAULT, NULL, demo_echo_read_cb,
                             demo);
}

static void demo_read_back (Demo *demo);

static guint8 demo_back[65536];

static void
demo_read_back_cb (GObject      *source,
                   GAsyncResult *res,
                   gpointer      user_data)
{
  Demo *demo = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res,
                                         demo->error ? NULL : &demo->error);

  if (n <= 0)
    {
      g_main_loop_quit (demo->loop);
      return;
    }
  g_checksum_update (demo->got_sum, demo_back, n);
  demo->received += n;
  demo_read_back (demo);
}

static void
demo_read_back (Demo *demo)
{
  GIOStream *stream = natkit_connection_get_stream (demo->outgoing);

  g_input_stream_read_async (g_io_stream_get_input_stream (stream), demo_back,
                             sizeof demo_back, G_PRIORITY_DEFAULT, NULL,
                             demo_read_back_cb, demo);
}

static void
demo_written_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  Demo *demo = user_data;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL,
                                         demo->error ? NULL : &demo->error))
    {
      g_main_loop_quit (demo->loop);
      return;
    }
  /* all sent: half-close, the echo side then closes its direction */
  g_output_stream_close (G_OUTPUT_STREAM (source), NULL, NULL);
}

static gboolean
demo_timeout_cb (gpointer user_data)
{
  Demo *demo = user_data;

  if (!demo->error)
    demo->error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                               "the demo did not finish within 60 s");
  g_main_loop_quit (demo->loop);
  return G_SOURCE_REMOVE;
}

static int
demo_fail (Demo   *demo,
           GError *error)
{
  g_printerr ("nat-tool demo: %s\n", error->message);
  return EXIT_FAILURE;
}

int
cmd_demo (CommonOptions  *common,
          int             argc,
          char          **argv)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) a = NULL;
  g_autoptr(NatkitManager) b = NULL;
  g_autoptr(NatkitIdentity) id_a = NULL;
  g_autoptr(NatkitIdentity) id_b = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitServer) server = NULL;
  g_autofree char *server_address = NULL;
  g_autofree char *text = NULL;
  g_autofree char *sent = NULL;
  g_autofree char *got = NULL;
  static const char * const relay_only[] = { "relay", NULL };
  NatkitRendezvous *rendezvous;
  const char *address;
  Demo demo = { 0, };
  guint timeout_id;
  double seconds;
  int status = EXIT_SUCCESS;

  if (argc != 1 || demo_size_kb <= 0 || demo_size_kb > 1024 * 1024)
    {
      g_printerr ("nat-tool demo: takes no arguments; --size is 1 to 1048576 KiB\n");
      return EXIT_USAGE;
    }
  demo.common = common;
  demo.loop = loop;
  demo.started = g_get_monotonic_time ();
  demo.size = (gsize) demo_size_kb * 1024;

  /* 1. the server */
  server = demo_server_start (&error);
  if (!server)
    return demo_fail (&demo, error);
  server_address = g_strdup_printf ("127.0.0.1:%u", demo_server_get_port (server));
  text = g_strdup_printf ("natkit-server runs in this process on %s (TLS and UDP), "
                          "certificate %s", server_address,
                          demo_server_get_fingerprint (server));
  demo_step (&demo, "server", text);
  g_clear_pointer (&text, g_free);

  /* 2. peer B registers and listens */
  id_a = natkit_identity_new_ephemeral (&error);
  id_b = id_a ? natkit_identity_new_ephemeral (&error) : NULL;
  if (!id_b)
    return demo_fail (&demo, error);
  a = natkit_manager_new_with_config (config);
  b = natkit_manager_new_with_config (config);
  natkit_manager_set_identity (a, id_a);
  natkit_manager_set_identity (b, id_b);

  rendezvous = natkit_manager_get_rendezvous (b, server_address, &error);
  if (!rendezvous)
    return demo_fail (&demo, error);
  natkit_rendezvous_connect_async (rendezvous, NULL, demo_registered_cb, &demo);
  g_main_loop_run (loop);
  if (!demo.registered)
    return demo_fail (&demo, demo.error);
  natkit_manager_listen (b, NATKIT_SIGNALING (rendezvous), NULL);
  g_signal_connect (b, "incoming", G_CALLBACK (demo_incoming_cb), &demo);
  address = natkit_signaling_get_local_address (NATKIT_SIGNALING (rendezvous));
  text = g_strdup_printf ("peer B registered (signed challenge) and listens as %s", address);
  demo_step (&demo, "listening", text);
  g_clear_pointer (&text, g_free);

  /* 3. peer A connects to B's address */
  text = g_strdup_printf ("peer A (%s) connects to %s",
                          natkit_identity_get_peer_id (id_a), address);
  demo_step (&demo, "connecting", text);
  g_clear_pointer (&text, g_free);
  natkit_manager_connect_async (a, address, relay_only, NATKIT_CONNECT_NONE, NULL,
                                demo_connected_cb, &demo);
  g_main_loop_run (loop);
  if (!demo.outgoing)
    return demo_fail (&demo, demo.error);
  while (!demo.incoming)
    g_main_context_iteration (NULL, TRUE);

  text = g_strdup_printf ("connected to %s via %s (%s) in %" G_GINT64_FORMAT " ms; "
                          "the secure session (DTLS) checked B's key against its "
                          "peer ID, and B checked A's",
                          address, natkit_connection_get_method (demo.outgoing),
                          natkit_connection_get_transport (demo.outgoing),
                          natkit_connection_get_connect_time (demo.outgoing) / 1000);
  if (common->json)
    connection_event (common, "connected", demo.outgoing,
                      natkit_connection_get_connect_time (demo.outgoing), NULL);
  else
    demo_step (&demo, "connected", text);
  g_clear_pointer (&text, g_free);

  /* 4. a transfer: A sends, B echoes, A checks */
  demo.buffer = g_malloc (65536);
  demo.payload = g_malloc (demo.size);
  for (gsize i = 0; i < demo.size; i++)
    demo.payload[i] = g_random_int () & 0xff;
  demo.sent_sum = g_checksum_new (G_CHECKSUM_SHA256);
  demo.got_sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (demo.sent_sum, demo.payload, demo.size);
  demo.transfer_started = g_get_monotonic_time ();
  demo_echo_read (&demo);
  demo_read_back (&demo);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (
                                     natkit_connection_get_stream (demo.outgoing)),
                                   demo.payload, demo.size, G_PRIORITY_DEFAULT,
                                   NULL, demo_written_cb, &demo);
  timeout_id = g_timeout_add_seconds (60, demo_timeout_cb, &demo);
  g_main_loop_run (loop);
  g_clear_handle_id (&timeout_id, g_source_remove);

  seconds = (g_get_monotonic_time () - demo.transfer_started) / 1e6;
  sent = g_strdup (g_checksum_get_string (demo.sent_sum));
  got = g_strdup (g_checksum_get_string (demo.got_sum));
  if (demo.error || demo.received != demo.size || g_strcmp0 (sent, got) != 0)
    {
      g_printerr ("nat-tool demo: the echo did not come back intact: %s "
                  "(%zu of %zu bytes)\n", demo.error ? demo.error->message : "data differs",
                  demo.received, demo.size);
      status = EXIT_FAILURE;
    }
  else
    {
      text = g_strdup_printf ("%zu KiB sent A → B and echoed back B → A, byte-identical "
                              "(sha256 %.16s…), in %.2f s (%.1f MB/s each way, "
                              "encrypted end to end through the relay)",
                              demo.size / 1024, got, seconds,
                              demo.size / 1e6 / MAX (seconds, 1e-6));
      demo_step (&demo, "transferred", text);
      g_clear_pointer (&text, g_free);
    }

  /* 5. close and stop */
  natkit_connection_close (demo.outgoing);
  while (natkit_connection_get_state (demo.incoming) != NATKIT_CONNECTION_STATE_CLOSED &&
         g_main_context_iteration (NULL, TRUE))
    ;
  demo_step (&demo, "closed", "closed: both sides saw the connection end; the relay "
             "circuit is gone");
  g_clear_object (&demo.outgoing);
  g_clear_object (&demo.incoming);
  g_clear_object (&a);
  g_clear_object (&b);
  demo_server_stop (server);
  g_free (demo.buffer);
  g_free (demo.payload);
  g_checksum_free (demo.sent_sum);
  g_checksum_free (demo.got_sum);
  g_clear_error (&demo.error);
  return status;
}
