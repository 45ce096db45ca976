/* nat-tool-connect.c: nat-tool listen and connect
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <gio/gio.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>
#include <glib-unix.h>

#include <string.h>

#include "nat-tool.h"

/* ---- shared ------------------------------------------------------------- */

static const char *
nat_type_nick (NatkitNatInfo *info)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (NATKIT_TYPE_NAT_TYPE);

  return g_enum_get_value (klass, natkit_nat_info_get_nat_type (info))->value_nick;
}

/* The connection forgets its method when its path goes (closed, or while
 * it finds another): the summary after close names the last one. */
static void
remember_method (NatkitConnection *connection)
{
  if (!natkit_connection_get_method (connection))
    return;
  g_object_set_data_full (G_OBJECT (connection), "nat-tool-method",
                          g_strdup_printf ("%s (%s)",
                                           natkit_connection_get_method (connection),
                                           natkit_connection_get_transport (connection)),
                          g_free);
}

static char *
format_bytes (guint64 bytes)
{
  if (bytes < 1000)
    return g_strdup_printf ("%" G_GUINT64_FORMAT " B", bytes);
  return g_format_size (bytes);
}

static gboolean
is_end (const char *event)
{
  return g_str_equal (event, "closed") || g_str_equal (event, "failed");
}

/* bytes and the state history, for closed and failed */
static void
add_summary (JsonBuilder      *builder,
             NatkitConnection *connection)
{
  g_autoptr(GVariant) history = natkit_connection_get_state_history (connection);
  gint64 first = -1;

  add_int (builder, "bytes_sent", natkit_connection_get_bytes_sent (connection));
  add_int (builder, "bytes_received", natkit_connection_get_bytes_received (connection));
  json_builder_set_member_name (builder, "state_history");
  json_builder_begin_array (builder);
  for (gsize i = 0; i < g_variant_n_children (history); i++)
    {
      gint64 real_time, monotonic_time;
      const char *state, *reason;
      g_autoptr(GDateTime) second = NULL;
      g_autoptr(GDateTime) when = NULL;
      g_autofree char *iso = NULL;

      g_variant_get_child (history, i, "(xx&s&s)", &real_time, &monotonic_time,
                           &state, &reason);
      if (first < 0)
        first = monotonic_time;
      /* GLib 2.74 has no g_date_time_new_from_unix_utc_usec() */
      second = g_date_time_new_from_unix_utc (real_time / G_USEC_PER_SEC);
      when = second ? g_date_time_add (second, real_time % G_USEC_PER_SEC) : NULL;
      iso = when ? g_date_time_format_iso8601 (when) : NULL;
      json_builder_begin_object (builder);
      add_string (builder, "state", state);
      add_string (builder, "reason", reason);
      add_int (builder, "at_ms", (monotonic_time - first) / 1000);
      if (iso)
        add_string (builder, "time", iso);
      json_builder_end_object (builder);
    }
  json_builder_end_array (builder);
}

/* one line after the end: how it went */
static void
print_summary (NatkitConnection *connection)
{
  const char *method = g_object_get_data (G_OBJECT (connection), "nat-tool-method");
  gint64 rtt = natkit_connection_get_rtt (connection);
  g_autofree char *sent = format_bytes (natkit_connection_get_bytes_sent (connection));
  g_autofree char *received = format_bytes (natkit_connection_get_bytes_received (connection));
  g_autofree char *rtt_text = rtt >= 0 ?
    g_strdup_printf ("%.1f ms", rtt / 1000.0) : g_strdup ("not measured");
  double up = (g_get_real_time () - natkit_connection_get_connected_at (connection)) /
              (double) G_USEC_PER_SEC;

  g_printerr ("summary: via %s, RTT %s, loss %.0f%%, sent %s, received %s, up %.1f s\n",
              method ? method : "no path", rtt_text,
              natkit_connection_get_loss (connection) * 100, sent, received, up);
}

typedef struct
{
  gboolean done;
  guint    timeout_id;
} RttWait;

static void
rtt_wait_notify_cb (GObject    *object,
                    GParamSpec *pspec,
                    gpointer    user_data)
{
  ((RttWait *) user_data)->done = TRUE;
}

static gboolean
rtt_wait_timeout_cb (gpointer user_data)
{
  RttWait *w = user_data;

  w->done = TRUE;
  w->timeout_id = 0;
  return G_SOURCE_REMOVE;
}

/* The connection probes its path at once; its first answer gives the RTT
 * for the connected event. It comes back in one round trip, while the
 * stream opens anyway: wait for it, a second at most. */
#define FIRST_RTT_WAIT_MS 1000

static void
wait_for_rtt (NatkitConnection *connection)
{
  RttWait w = { FALSE, 0 };
  gulong rtt_id, state_id;

  if (natkit_connection_get_rtt (connection) >= 0)
    return;
  rtt_id = g_signal_connect (connection, "notify::rtt", G_CALLBACK (rtt_wait_notify_cb), &w);
  state_id = g_signal_connect (connection, "notify::state", G_CALLBACK (rtt_wait_notify_cb), &w);
  w.timeout_id = g_timeout_add (FIRST_RTT_WAIT_MS, rtt_wait_timeout_cb, &w);
  while (!w.done)
    g_main_context_iteration (NULL, TRUE);
  g_signal_handler_disconnect (connection, rtt_id);
  g_signal_handler_disconnect (connection, state_id);
  g_clear_handle_id (&w.timeout_id, g_source_remove);
}

void
connection_event (CommonOptions    *common,
                  const char       *event,
                  NatkitConnection *connection,
                  gint64            elapsed_us,
                  const char       *message)
{
  const char *peer = natkit_connection_get_peer_address (connection);
  gint64 rtt = natkit_connection_get_rtt (connection);

  if (!peer)
    peer = natkit_connection_get_peer_id (connection);
  remember_method (connection);

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", event);
      add_string (builder, "peer", peer);
      if (natkit_connection_get_method (connection))
        {
          add_string (builder, "method", natkit_connection_get_method (connection));
          add_string (builder, "transport", natkit_connection_get_transport (connection));
        }
      if (natkit_connection_get_path (connection))
        {
          NatkitPath *path = natkit_connection_get_path (connection);

          add_string (builder, "local_address", natkit_path_get_local_address (path));
          add_string (builder, "remote_address", natkit_path_get_remote_address (path));
        }
      if (elapsed_us >= 0)
        add_int (builder, "elapsed_ms", elapsed_us / 1000);
      if (g_str_equal (event, "connected") && natkit_connection_get_failures (connection)[0])
        {
          const char * const *failures = natkit_connection_get_failures (connection);

          /* why the methods tried first did not work */
          json_builder_set_member_name (builder, "failed");
          json_builder_begin_array (builder);
          for (guint i = 0; failures[i]; i++)
            {
              const char *colon = strstr (failures[i], ": ");
              g_autofree char *method = colon ? g_strndup (failures[i], colon - failures[i])
                                              : g_strdup (failures[i]);

              json_builder_begin_object (builder);
              add_string (builder, "method", method);
              add_string (builder, "reason", colon ? colon + 2 : "");
              json_builder_end_object (builder);
            }
          json_builder_end_array (builder);
        }
      if (rtt >= 0)
        add_int (builder, "rtt_ms", (rtt + 500) / 1000);
      if (g_str_equal (event, "connected"))
        {
          g_autofree char *why = natkit_connection_dup_explanation (connection);
          NatkitNatInfo *local = natkit_connection_get_local_nat_info (connection);
          NatkitNatInfo *remote = natkit_connection_get_remote_nat_info (connection);

          if (why)
            add_string (builder, "explanation", why);
          if (local)
            add_string (builder, "local_nat", nat_type_nick (local));
          if (remote)
            add_string (builder, "remote_nat", nat_type_nick (remote));
        }
      if (is_end (event))
        {
          const char *method = g_object_get_data (G_OBJECT (connection), "nat-tool-method");

          /* the path is gone: the method that carried it last */
          if (method && !natkit_connection_get_method (connection))
            {
              g_autofree char *name = g_strndup (method, strcspn (method, " "));

              add_string (builder, "last_method", name);
            }
          add_summary (builder, connection);
        }
      add_string (builder, "session", natkit_connection_get_session_id (connection));
      if (message)
        add_string (builder, "message", message);
      json_builder_end_object (builder);
      print_event (builder);
      return;
    }

  if (g_str_equal (event, "connected") && elapsed_us >= 0)
    {
      g_autofree char *why = natkit_connection_dup_explanation (connection);

      g_printerr ("connected to %s via %s (%s) in %" G_GINT64_FORMAT " ms\n", peer,
                  natkit_connection_get_method (connection),
                  natkit_connection_get_transport (connection), elapsed_us / 1000);
      if (why)
        g_printerr ("  %s\n", why);
    }
  else if (g_str_equal (event, "connected"))
    g_printerr ("connection from %s via %s (%s)\n", peer,
                natkit_connection_get_method (connection),
                natkit_connection_get_transport (connection));
  else
    g_printerr ("%s: %s%s%s\n", event, peer, message ? ": " : "",
                message ? message : "");
  if (is_end (event))
    print_summary (connection);
}

static void
state_event (CommonOptions    *common,
             NatkitConnection *connection)
{
  switch (natkit_connection_get_state (connection))
    {
    case NATKIT_CONNECTION_STATE_CONNECTED:
      connection_event (common, "path-restored", connection, -1, NULL);
      break;
    case NATKIT_CONNECTION_STATE_DEGRADED:
      connection_event (common, "degraded", connection, -1,
                        "the path stopped working; looking for another");
      break;
    case NATKIT_CONNECTION_STATE_FAILED:
      connection_event (common, "failed", connection, -1,
                        "no path to the peer could be found again");
      break;
    case NATKIT_CONNECTION_STATE_CLOSED:
      connection_event (common, "closed", connection, -1, NULL);
      break;
    case NATKIT_CONNECTION_STATE_CONNECTING:
    default:
      break;
    }
}

/* Copies a connection to and from a pair of local streams: @in → peer,
 * peer → @out. Finishes when both directions are done, or the connection
 * ends. */
typedef struct
{
  CommonOptions    *common;
  NatkitConnection *connection;
  GInputStream     *in;
  GOutputStream    *out;
  GCancellable     *cancellable;
  int               pending;
  gboolean          failed;
  gulong            state_id;
  gulong            path_id;
  gulong            datagram_id;
  GSourceFunc       done;
  gpointer          done_data;
  guint8           *buffer;
  GSubprocess      *subprocess;
  gboolean          end_pending;   /* closed or failed: told when drained */
} Pipe;

static void
pipe_free (Pipe *p)
{
  /* the end event counts the bytes read after the peer closed, too */
  if (p->end_pending)
    state_event (p->common, p->connection);
  g_clear_signal_handler (&p->state_id, p->connection);
  g_clear_signal_handler (&p->path_id, p->connection);
  g_clear_signal_handler (&p->datagram_id, p->connection);
  g_clear_object (&p->connection);
  g_clear_object (&p->in);
  g_clear_object (&p->out);
  g_clear_object (&p->cancellable);
  if (p->subprocess)
    {
      g_subprocess_force_exit (p->subprocess);
      g_clear_object (&p->subprocess);
    }
  g_free (p->buffer);
  g_free (p);
}

static void
pipe_step_done (Pipe *p)
{
  if (p->pending == 0 || --p->pending > 0)
    return;
  natkit_connection_close (p->connection);
  p->done (p->done_data);
}

static gboolean
nothing_cb (gpointer user_data)
{
  return G_SOURCE_REMOVE;
}

/* Cancels what is still running, waits for it to unwind, frees. */
static void
pipe_stop (Pipe *p)
{
  p->done = nothing_cb;
  g_cancellable_cancel (p->cancellable);
  if ((natkit_connection_get_flags (p->connection) & NATKIT_CONNECT_DATAGRAM) && !p->in)
    p->pending = 0;
  while (p->pending > 0)
    g_main_context_iteration (NULL, TRUE);
  pipe_free (p);
}

static void
splice_cb (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  Pipe *p = user_data;
  g_autoptr(GError) error = NULL;

  if (g_output_stream_splice_finish (G_OUTPUT_STREAM (source), res, &error) < 0)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_printerr ("nat-tool: %s\n", error->message);
          p->failed = TRUE;
        }
      g_cancellable_cancel (p->cancellable);
    }
  pipe_step_done (p);
}

/* attempt / attempt-failed, with --json */
static void
progress_cb (NatkitManager *manager,
             const char    *session_id,
             const char    *peer_id,
             const char    *event,
             const char    *method,
             const char    *reason,
             gpointer       user_data)
{
  CommonOptions *common = user_data;
  g_autoptr(JsonBuilder) builder = NULL;

  if (!common->json)
    {
      /* in words: only what did not work (the connected line says what did) */
      if (g_str_equal (event, "attempt-failed"))
        g_printerr ("%s did not work with %.8s…: %s\n", method, peer_id,
                    reason ? reason : "no reason given");
      return;
    }
  builder = json_builder_new ();
  json_builder_begin_object (builder);
  add_string (builder, "event", event);
  add_string (builder, "method", method);
  add_string (builder, "peer", peer_id);
  if (reason)
    add_string (builder, "reason", reason);
  add_string (builder, "session", session_id);
  json_builder_end_object (builder);
  print_event (builder);
}

static void
pipe_path_changed_cb (NatkitConnection *connection,
                      const char       *from,
                      const char       *reason,
                      gpointer          user_data)
{
  Pipe *p = user_data;
  const char *to = natkit_connection_get_method (connection);

  remember_method (connection);
  if (p->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();
      NatkitPath *path = natkit_connection_get_path (connection);

      json_builder_begin_object (builder);
      add_string (builder, "event", "path-changed");
      add_string (builder, "from", from);
      add_string (builder, "to", to);
      add_string (builder, "transport", natkit_connection_get_transport (connection));
      if (path)
        add_string (builder, "remote_address", natkit_path_get_remote_address (path));
      add_string (builder, "reason", reason);
      add_string (builder, "session", natkit_connection_get_session_id (connection));
      json_builder_end_object (builder);
      print_event (builder);
      return;
    }
  g_printerr ("moved from %s to %s: %s\n", from ? from : "no path", to, reason);
}

static void
pipe_state_cb (NatkitConnection *connection,
               GParamSpec       *pspec,
               gpointer          user_data)
{
  Pipe *p = user_data;
  NatkitConnectionState state = natkit_connection_get_state (connection);

  if (state == NATKIT_CONNECTION_STATE_CLOSED || state == NATKIT_CONNECTION_STATE_FAILED)
    p->end_pending = TRUE;
  else
    state_event (p->common, connection);
  if (state == NATKIT_CONNECTION_STATE_FAILED)
    {
      p->failed = TRUE;
      g_cancellable_cancel (p->cancellable);
    }
  else if (state == NATKIT_CONNECTION_STATE_CLOSED &&
           (natkit_connection_get_flags (connection) & NATKIT_CONNECT_DATAGRAM))
    g_cancellable_cancel (p->cancellable);

  /* a datagram pipe without input ends with the connection */
  if ((state == NATKIT_CONNECTION_STATE_CLOSED ||
       state == NATKIT_CONNECTION_STATE_FAILED) &&
      (natkit_connection_get_flags (connection) & NATKIT_CONNECT_DATAGRAM) && !p->in)
    pipe_step_done (p);
}

/* datagram mode: each read from @in is one datagram; each datagram that
 * arrives is written to @out */

static void read_datagram (Pipe *p);

static void
datagram_read_cb (GObject      *source,
                  GAsyncResult *res,
                  gpointer      user_data)
{
  Pipe *p = user_data;
  g_autoptr(GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);

  if (n <= 0)
    {
      if (n < 0 && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_printerr ("nat-tool: %s\n", error->message);
          p->failed = TRUE;
        }
      pipe_step_done (p);
      return;
    }
  {
    g_autoptr(GBytes) datagram = g_bytes_new (p->buffer, n);

    if (!natkit_connection_send_datagram (p->connection, datagram, &error))
      g_printerr ("nat-tool: datagram not sent: %s\n", error->message);
  }
  read_datagram (p);
}

static void
read_datagram (Pipe *p)
{
  gsize max = natkit_connection_get_max_datagram (p->connection);

  g_input_stream_read_async (p->in, p->buffer, MIN (max, 65536),
                             G_PRIORITY_DEFAULT, p->cancellable,
                             datagram_read_cb, p);
}

static void
datagram_received_cb (NatkitConnection *connection,
                      GBytes           *datagram,
                      gpointer          user_data)
{
  Pipe *p = user_data;
  gsize len;
  const guint8 *data = g_bytes_get_data (datagram, &len);

  if (p->out)
    g_output_stream_write_all (p->out, data, len, NULL, NULL, NULL);
}

static Pipe *
pipe_start (CommonOptions    *common,
            NatkitConnection *connection,
            GInputStream     *in,
            GOutputStream    *out,
            GSourceFunc       done,
            gpointer          done_data)
{
  Pipe *p = g_new0 (Pipe, 1);
  GIOStream *stream;

  p->common = common;
  p->connection = g_object_ref (connection);
  p->in = in ? g_object_ref (in) : NULL;
  p->out = out ? g_object_ref (out) : NULL;
  p->cancellable = g_cancellable_new ();
  p->done = done;
  p->done_data = done_data;
  p->state_id = g_signal_connect (connection, "notify::state",
                                  G_CALLBACK (pipe_state_cb), p);
  p->path_id = g_signal_connect (connection, "path-changed",
                                 G_CALLBACK (pipe_path_changed_cb), p);

  if (natkit_connection_get_flags (connection) & NATKIT_CONNECT_DATAGRAM)
    {
      p->buffer = g_malloc (65536);
      p->datagram_id = g_signal_connect (connection, "datagram-received",
                                         G_CALLBACK (datagram_received_cb), p);
      p->pending = 1;
      if (p->in)
        read_datagram (p);
      return p;
    }

  stream = natkit_connection_get_stream (connection);
  p->pending = 0;
  if (p->in)
    {
      p->pending++;
      g_output_stream_splice_async (g_io_stream_get_output_stream (stream), p->in,
                                    G_OUTPUT_STREAM_SPLICE_CLOSE_SOURCE |
                                    G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                    G_PRIORITY_DEFAULT, p->cancellable,
                                    splice_cb, p);
    }
  else
    g_output_stream_close (g_io_stream_get_output_stream (stream), NULL, NULL);
  if (p->out)
    {
      p->pending++;
      /* the end of the peer's stream closes ours: a command (--exec) sees
       * end of input; stdout's stream does not own fd 1 */
      g_output_stream_splice_async (p->out, g_io_stream_get_input_stream (stream),
                                    G_OUTPUT_STREAM_SPLICE_CLOSE_TARGET,
                                    G_PRIORITY_DEFAULT, p->cancellable,
                                    splice_cb, p);
    }
  return p;
}

typedef struct
{
  GMainLoop *loop;
  gboolean   stopping;
} SignalData;

static gboolean
quit_signal_cb (gpointer user_data)
{
  SignalData *s = user_data;

  s->stopping = TRUE;
  g_main_loop_quit (s->loop);
  return G_SOURCE_CONTINUE;
}

/* ---- nat-tool connect --------------------------------------------------- */

static char **connect_methods;
static gboolean connect_datagram;

const GOptionEntry connect_entries[] = {
  { "method", 0, 0, G_OPTION_ARG_STRING_ARRAY, &connect_methods,
    "Only try this traversal method (repeatable; see “nat-tool plugins”)", "NAME" },
  { "datagram", 0, 0, G_OPTION_ARG_NONE, &connect_datagram,
    "Send datagrams (each read from stdin is one) instead of a byte stream", NULL },
  G_OPTION_ENTRY_NULL
};

typedef struct
{
  CommonOptions    *common;
  GMainLoop        *loop;
  NatkitConnection *connection;
  GError           *error;
  gint64            started;
} ConnectRun;

static void
connect_done_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  ConnectRun *run = user_data;

  run->connection = natkit_manager_connect_finish (NATKIT_MANAGER (source), res,
                                                   &run->error);
  g_main_loop_quit (run->loop);
}

static gboolean
quit_loop_cb (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

int
cmd_connect (CommonOptions  *common,
             int             argc,
             char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GInputStream) in = NULL;
  g_autoptr(GOutputStream) out = NULL;
  ConnectRun run = { common, loop, NULL, NULL, 0 };
  SignalData sig = { loop, FALSE };
  Pipe *pipe;
  int status;
  guint sigint, sigterm;

  if (argc != 2)
    {
      g_printerr ("nat-tool connect: give the peer address, e.g. "
                  "“nat-tool connect 7HkV…@natkit.example.org:7000”\n");
      return EXIT_USAGE;
    }
  if (!natkit_peer_address_parse (argv[1], NULL, NULL, NULL, &error))
    {
      g_printerr ("nat-tool connect: %s\n", error->message);
      return EXIT_USAGE;
    }

  manager = make_manager (common, &error);
  if (!manager)
    return fail (common, error);
  g_signal_connect (manager, "connect-progress", G_CALLBACK (progress_cb), common);

  sigint = g_unix_signal_add (SIGINT, quit_signal_cb, &sig);
  sigterm = g_unix_signal_add (SIGTERM, quit_signal_cb, &sig);

  run.started = g_get_monotonic_time ();
  natkit_manager_connect_async (manager, argv[1],
                                (const char * const *) connect_methods,
                                connect_datagram ? NATKIT_CONNECT_DATAGRAM : 0,
                                cancellable, connect_done_cb, &run);
  g_main_loop_run (loop);

  if (sig.stopping && !run.connection && !run.error)
    {
      /* interrupted while connecting: let the attempt unwind */
      g_cancellable_cancel (cancellable);
      while (!run.connection && !run.error)
        g_main_context_iteration (NULL, TRUE);
    }
  if (!run.connection)
    {
      g_source_remove (sigint);
      g_source_remove (sigterm);
      if (sig.stopping)
        return EXIT_FAILURE;
      if (common->json)
        {
          g_autoptr(JsonBuilder) builder = json_builder_new ();

          json_builder_begin_object (builder);
          add_string (builder, "event", "connect-failed");
          add_string (builder, "peer", argv[1]);
          add_int (builder, "elapsed_ms", (g_get_monotonic_time () - run.started) / 1000);
          add_string (builder, "reason", run.error->message);
          json_builder_end_object (builder);
          print_event (builder);
        }
      g_printerr ("nat-tool: %s\n", run.error->message);
      g_error_free (run.error);
      return EXIT_FAILURE;
    }

  wait_for_rtt (run.connection);
  connection_event (common, "connected", run.connection,
                    natkit_connection_get_connect_time (run.connection), NULL);

  in = g_unix_input_stream_new (STDIN_FILENO, FALSE);
  out = g_unix_output_stream_new (STDOUT_FILENO, FALSE);
  pipe = pipe_start (common, run.connection, in, out, quit_loop_cb, loop);
  g_main_loop_run (loop);

  status = pipe->failed ? EXIT_FAILURE : EXIT_SUCCESS;
  if (sig.stopping)
    status = EXIT_SUCCESS;
  pipe_stop (pipe);
  if (natkit_connection_get_state (run.connection) == NATKIT_CONNECTION_STATE_CONNECTED ||
      natkit_connection_get_state (run.connection) == NATKIT_CONNECTION_STATE_DEGRADED)
    {
      /* stopped by a signal: the pipe no longer reports, say it here */
      natkit_connection_close (run.connection);
      connection_event (common, "closed", run.connection, -1, NULL);
    }
  g_object_unref (run.connection);
  g_source_remove (sigint);
  g_source_remove (sigterm);

  /* let the close message go out */
  g_timeout_add (100, quit_loop_cb, loop);
  g_main_loop_run (loop);
  return status;
}

/* ---- nat-tool listen ---------------------------------------------------- */

static char *listen_server;
static char *listen_exec;
static gboolean listen_once;

const GOptionEntry listen_entries[] = {
  { "server", 0, 0, G_OPTION_ARG_STRING, &listen_server,
    "The natkit-server to register at (default: the first rendezvous server in "
    "the configuration)", "HOST:PORT" },
  { "exec", 0, 0, G_OPTION_ARG_STRING, &listen_exec,
    "Connect each incoming stream to this command's stdin and stdout", "CMD" },
  { "once", 0, 0, G_OPTION_ARG_NONE, &listen_once,
    "Exit after the first connection ends", NULL },
  G_OPTION_ENTRY_NULL
};

typedef struct
{
  CommonOptions    *common;
  GMainLoop        *loop;
  NatkitRendezvous *rendezvous;
  GError           *error;
  gboolean          registered;
  GPtrArray        *pipes;
  int               status;
} ListenRun;

typedef struct
{
  ListenRun *run;
  Pipe      *pipe;
} ListenPipe;

static gboolean
listen_pipe_done (gpointer user_data)
{
  ListenPipe *lp = user_data;
  ListenRun *run = lp->run;

  if (lp->pipe->failed)
    run->status = EXIT_FAILURE;
  g_ptr_array_remove (run->pipes, lp);
  if (listen_once)
    g_main_loop_quit (run->loop);
  return G_SOURCE_REMOVE;
}

static void
listen_pipe_free (gpointer data)
{
  ListenPipe *lp = data;

  pipe_stop (lp->pipe);
  g_free (lp);
}

static void
incoming_cb (NatkitManager    *manager,
             NatkitConnection *connection,
             gpointer          user_data)
{
  ListenRun *run = user_data;
  ListenPipe *lp = g_new0 (ListenPipe, 1);
  g_autoptr(GInputStream) in = NULL;
  g_autoptr(GOutputStream) out = NULL;
  g_autoptr(GSubprocess) subprocess = NULL;

  connection_event (run->common, "connected", connection, -1, NULL);
  lp->run = run;

  if (listen_exec)
    {
      g_autoptr(GError) error = NULL;
      g_auto(GStrv) args = NULL;

      if (!g_shell_parse_argv (listen_exec, NULL, &args, &error) ||
          !(subprocess = g_subprocess_newv ((const char * const *) args,
                                            G_SUBPROCESS_FLAGS_STDIN_PIPE |
                                            G_SUBPROCESS_FLAGS_STDOUT_PIPE,
                                            &error)))
        {
          g_printerr ("nat-tool: cannot run “%s”: %s\n", listen_exec, error->message);
          natkit_connection_close (connection);
          g_free (lp);
          return;
        }
      in = g_object_ref (g_subprocess_get_stdout_pipe (subprocess));
      out = g_object_ref (g_subprocess_get_stdin_pipe (subprocess));
      /* GSubprocess's pipes block: a write larger than the room in the
       * pipe would stall the main loop while the command waits for us to
       * read its output */
      g_unix_set_fd_nonblocking (g_unix_input_stream_get_fd (G_UNIX_INPUT_STREAM (in)),
                                 TRUE, NULL);
      g_unix_set_fd_nonblocking (g_unix_output_stream_get_fd (G_UNIX_OUTPUT_STREAM (out)),
                                 TRUE, NULL);
    }
  else
    out = g_unix_output_stream_new (STDOUT_FILENO, FALSE);

  lp->pipe = pipe_start (run->common, connection, in, out, listen_pipe_done, lp);
  lp->pipe->subprocess = g_steal_pointer (&subprocess);
  g_ptr_array_add (run->pipes, lp);
}

static void
listen_registered_cb (GObject      *source,
                      GAsyncResult *res,
                      gpointer      user_data)
{
  ListenRun *run = user_data;

  run->registered = natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source),
                                                      res, &run->error);
  g_main_loop_quit (run->loop);
}

static void
registered_changed_cb (NatkitRendezvous *rendezvous,
                       GParamSpec       *pspec,
                       gpointer          user_data)
{
  ListenRun *run = user_data;
  gboolean registered = natkit_rendezvous_is_registered (rendezvous);

  if (run->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", registered ? "registered" : "unregistered");
      add_string (builder, "server", natkit_rendezvous_get_server (rendezvous));
      json_builder_end_object (builder);
      print_event (builder);
    }
  else
    g_printerr ("%s natkit-server %s\n",
                registered ? "registered again at" : "lost the connection to",
                natkit_rendezvous_get_server (rendezvous));
}

int
cmd_listen (CommonOptions  *common,
            int             argc,
            char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GPtrArray) pipes = g_ptr_array_new_with_free_func (listen_pipe_free);
  ListenRun run = { common, loop, NULL, NULL, FALSE, pipes, EXIT_SUCCESS };
  SignalData sig = { loop, FALSE };
  const char *server = listen_server;
  const char *address;
  guint sigint, sigterm;
  gulong notify_id;

  if (argc != 1)
    {
      g_printerr ("nat-tool listen: unexpected argument “%s”\n", argv[1]);
      return EXIT_USAGE;
    }

  manager = make_manager (common, &error);
  if (!manager)
    return fail (common, error);
  g_signal_connect (manager, "connect-progress", G_CALLBACK (progress_cb), common);

  if (!server)
    {
      const char * const *servers =
        natkit_config_get_rendezvous_servers (natkit_manager_get_config (manager));

      server = servers && servers[0] ? servers[0] : NULL;
    }
  if (!server)
    {
      g_printerr ("nat-tool listen: name the natkit-server to register at with "
                  "--server HOST:PORT (or set \"rendezvous\" in the "
                  "configuration)\n");
      return EXIT_USAGE;
    }

  run.rendezvous = natkit_manager_get_rendezvous (manager, server, &error);
  if (!run.rendezvous)
    return fail (common, error);

  sigint = g_unix_signal_add (SIGINT, quit_signal_cb, &sig);
  sigterm = g_unix_signal_add (SIGTERM, quit_signal_cb, &sig);

  natkit_rendezvous_connect_async (run.rendezvous, NULL, listen_registered_cb, &run);
  g_main_loop_run (loop);
  if (!run.registered)
    {
      g_source_remove (sigint);
      g_source_remove (sigterm);
      if (sig.stopping)
        return EXIT_SUCCESS;
      return fail (common, run.error);
    }

  if (!natkit_manager_listen (manager, NATKIT_SIGNALING (run.rendezvous), &error))
    return fail (common, error);
  g_signal_connect (manager, "incoming", G_CALLBACK (incoming_cb), &run);
  notify_id = g_signal_connect (run.rendezvous, "notify::registered",
                                G_CALLBACK (registered_changed_cb), &run);

  address = natkit_signaling_get_local_address (NATKIT_SIGNALING (run.rendezvous));
  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", "listening");
      add_string (builder, "peer_address", address);
      add_string (builder, "peer_id",
                  natkit_signaling_get_local_peer_id (NATKIT_SIGNALING (run.rendezvous)));
      if (natkit_rendezvous_get_observed_address (run.rendezvous))
        add_string (builder, "observed_address",
                    natkit_rendezvous_get_observed_address (run.rendezvous));
      json_builder_end_object (builder);
      print_event (builder);
    }
  else
    g_printerr ("listening as %s\n(peers connect with: nat-tool connect %s)\n",
                address, address);

  g_main_loop_run (loop);

  g_signal_handlers_disconnect_by_func (manager, incoming_cb, &run);
  g_clear_signal_handler (&notify_id, run.rendezvous);
  g_ptr_array_set_size (pipes, 0);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  natkit_rendezvous_close (run.rendezvous);
  return run.status;
}

