/* nat-tool-vpn.c: nat-tool vpn up / status
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>
#include <glib-unix.h>

#include "nat-tool.h"

static char *vpn_server;
static char *vpn_network;
static char *vpn_interface;

const GOptionEntry vpn_entries[] = {
  { "server", 0, 0, G_OPTION_ARG_STRING, &vpn_server,
    "The natkit-server to register at (default: the first rendezvous server in "
    "the configuration)", "HOST:PORT" },
  { "network", 0, 0, G_OPTION_ARG_STRING, &vpn_network,
    "The virtual network (default: " NATKIT_NETWORK_DEFAULT ", or the wireguard "
    "plugin's \"network\" setting)", "CIDR" },
  { "interface", 0, 0, G_OPTION_ARG_STRING, &vpn_interface,
    "The network interface to create (default: the first free natkitN)", "NAME" },
  G_OPTION_ENTRY_NULL
};

/* ---- the state file that "vpn status" reads ------------------------------ */

static char *
state_dir (void)
{
  return g_build_filename (g_get_user_runtime_dir (), "natkit", NULL);
}

/* One JSON line on stdout: vpn up has nothing else to say there. */
static void
print_line (JsonBuilder *builder)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (builder);
  g_autofree char *text = NULL;

  json_generator_set_root (generator, root);
  text = json_generator_to_data (generator, NULL);
  g_print ("%s\n", text);
  fflush (stdout);
}

static void
add_peer_members (JsonBuilder       *builder,
                  NatkitNetworkPeer *peer)
{
  NatkitConnection *connection = natkit_network_peer_get_connection (peer);
  const char *address = natkit_network_peer_get_peer_address (peer);
  gint64 rtt = natkit_network_peer_get_rtt (peer);

  add_string (builder, "peer", address ? address :
              (connection && natkit_connection_get_peer_address (connection)) ?
                natkit_connection_get_peer_address (connection) :
                natkit_network_peer_get_peer_id (peer));
  add_string (builder, "peer_id", natkit_network_peer_get_peer_id (peer));
  add_string (builder, "address", natkit_network_peer_get_address (peer));
  if (natkit_network_peer_get_method (peer))
    add_string (builder, "method", natkit_network_peer_get_method (peer));
  if (connection && natkit_connection_get_method (connection))
    add_string (builder, "transport", natkit_connection_get_transport (connection));
  if (rtt >= 0)
    add_int (builder, "rtt_ms", (rtt + 500) / 1000);
}

typedef struct
{
  CommonOptions    *common;
  GMainLoop        *loop;
  NatkitManager    *manager;
  NatkitRendezvous *rendezvous;
  NatkitNetwork    *network;
  GError           *error;
  gboolean          done;
  gboolean          stopping;
  char             *state_file;
  int               status;
  guint             state_id;
} VpnRun;

static void
write_state (VpnRun *run)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = NULL;
  g_autofree char *dir = state_dir ();
  g_autoptr(GError) error = NULL;
  GListModel *peers = natkit_network_get_peers (run->network);

  json_builder_begin_object (builder);
  add_int (builder, "pid", getpid ());
  add_string (builder, "interface", natkit_network_get_interface_name (run->network));
  add_string (builder, "address", natkit_network_get_address (run->network));
  add_string (builder, "network", natkit_network_get_network (run->network));
  add_string (builder, "peer_address", natkit_network_get_peer_address (run->network));
  add_string (builder, "implementation", natkit_network_get_implementation (run->network));
  add_string (builder, "public_key", natkit_network_get_public_key (run->network));
  json_builder_set_member_name (builder, "peers");
  json_builder_begin_array (builder);
  for (guint i = 0; i < g_list_model_get_n_items (peers); i++)
    {
      g_autoptr(NatkitNetworkPeer) peer = g_list_model_get_item (peers, i);
      NatkitConnection *connection = natkit_network_peer_get_connection (peer);

      json_builder_begin_object (builder);
      add_peer_members (builder, peer);
      add_string (builder, "public_key", natkit_network_peer_get_public_key (peer));
      add_int (builder, "bytes_sent", natkit_network_peer_get_bytes_sent (peer));
      add_int (builder, "bytes_received", natkit_network_peer_get_bytes_received (peer));
      add_int (builder, "last_handshake", natkit_network_peer_get_last_handshake (peer));
      if (connection)
        add_boolean (builder, "relayed", natkit_connection_is_relayed (connection));
      json_builder_end_object (builder);
    }
  json_builder_end_array (builder);
  add_int (builder, "updated", g_get_real_time () / G_USEC_PER_SEC);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  text = json_generator_to_data (generator, NULL);
  if (g_mkdir_with_parents (dir, 0700) != 0 ||
      !g_file_set_contents_full (run->state_file, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_debug ("cannot write %s: %s", run->state_file, error ? error->message : g_strerror (errno));
}

static gboolean
state_timeout_cb (gpointer user_data)
{
  write_state (user_data);
  return G_SOURCE_CONTINUE;
}

/* ---- vpn up ------------------------------------------------------------------ */

static void
peer_event (VpnRun            *run,
            const char        *event,
            NatkitNetworkPeer *peer,
            const char        *reason)
{
  if (run->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", event);
      add_peer_members (builder, peer);
      if (reason)
        add_string (builder, "reason", reason);
      json_builder_end_object (builder);
      print_line (builder);
    }
  else if (reason)
    g_print ("%s %s (%.8s…): %s\n", event, natkit_network_peer_get_address (peer),
             natkit_network_peer_get_peer_id (peer), reason);
  else
    g_print ("%s %s (%.8s…) via %s\n", event, natkit_network_peer_get_address (peer),
             natkit_network_peer_get_peer_id (peer),
             natkit_network_peer_get_method (peer) ? natkit_network_peer_get_method (peer)
                                                   : "no path yet");
  fflush (stdout);
  write_state (run);
}

static void
method_changed_cb (NatkitNetworkPeer *peer,
                   GParamSpec        *pspec,
                   gpointer           user_data)
{
  if (natkit_network_peer_get_method (peer))
    peer_event (user_data, "path-changed", peer, NULL);
}

static void
counters_changed_cb (NatkitNetworkPeer *peer,
                     GParamSpec        *pspec,
                     gpointer           user_data)
{
  write_state (user_data);
}

static void
peer_up_cb (NatkitNetwork     *network,
            NatkitNetworkPeer *peer,
            gpointer           user_data)
{
  peer_event (user_data, "peer-up", peer, NULL);
  g_signal_connect (peer, "notify::method", G_CALLBACK (method_changed_cb), user_data);
  /* vpn status shows the counters as soon as the network reads them */
  g_signal_connect (peer, "notify::bytes-received", G_CALLBACK (counters_changed_cb), user_data);
  g_signal_connect (peer, "notify::bytes-sent", G_CALLBACK (counters_changed_cb), user_data);
}

static void
peer_down_cb (NatkitNetwork     *network,
              NatkitNetworkPeer *peer,
              const char        *reason,
              gpointer           user_data)
{
  g_signal_handlers_disconnect_by_func (peer, method_changed_cb, user_data);
  g_signal_handlers_disconnect_by_func (peer, counters_changed_cb, user_data);
  peer_event (user_data, "peer-down", peer, reason);
}

static void
peer_failed_event (VpnRun       *run,
                   const char   *peer,
                   const GError *error)
{
  if (run->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", "peer-failed");
      add_string (builder, "peer", peer);
      add_string (builder, "reason", error->message);
      json_builder_end_object (builder);
      print_line (builder);
    }
  g_printerr ("nat-tool: %s: %s\n", peer, error->message);
}

static void
network_failed_cb (NatkitNetwork *network,
                   const char    *reason,
                   gpointer       user_data)
{
  VpnRun *run = user_data;

  if (run->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", "failed");
      add_string (builder, "reason", reason);
      json_builder_end_object (builder);
      print_line (builder);
    }
  g_printerr ("nat-tool: the network is down: %s\n", reason);
  run->status = EXIT_FAILURE;
  g_main_loop_quit (run->loop);
}

typedef struct
{
  VpnRun *run;
  char   *peer;
} AddPeer;

static void
added_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  AddPeer *a = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitNetworkPeer) peer = NULL;

  if (g_task_get_source_tag (G_TASK (result)) == natkit_network_add_peer_async)
    peer = natkit_network_add_peer_finish (NATKIT_NETWORK (source), result, &error);
  else
    peer = natkit_network_add_connection_finish (NATKIT_NETWORK (source), result, &error);
  if (peer == NULL && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) &&
      !g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED))
    peer_failed_event (a->run, a->peer, error);
  g_free (a->peer);
  g_free (a);
}

static void
incoming_cb (NatkitManager    *manager,
             NatkitConnection *connection,
             gpointer          user_data)
{
  VpnRun *run = user_data;
  AddPeer *a = g_new0 (AddPeer, 1);

  a->run = run;
  a->peer = g_strdup (natkit_connection_get_peer_address (connection) ?
                      natkit_connection_get_peer_address (connection) :
                      natkit_connection_get_peer_id (connection));
  natkit_network_add_connection_async (run->network, connection, NULL, added_cb, a);
}

static void
registered_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  VpnRun *run = user_data;

  natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), result, &run->error);
  run->done = TRUE;
  g_main_loop_quit (run->loop);
}

static void
joined_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  VpnRun *run = user_data;

  run->network = natkit_manager_join_network_finish (NATKIT_MANAGER (source), result,
                                                     &run->error);
  run->done = TRUE;
  g_main_loop_quit (run->loop);
}

static gboolean
quit_cb (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static gboolean
stop_cb (gpointer user_data)
{
  VpnRun *run = user_data;

  run->stopping = TRUE;
  g_main_loop_quit (run->loop);
  return G_SOURCE_CONTINUE;
}

static int
vpn_up (CommonOptions  *common,
        int             argc,
        char          **argv)
{
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  VpnRun run = { common, loop, NULL, NULL, NULL, NULL, FALSE, FALSE, NULL, EXIT_SUCCESS, 0 };
  const char *server = vpn_server;
  guint sigint, sigterm;

  for (int i = 2; i < argc; i++)
    if (!natkit_peer_address_parse (argv[i], NULL, NULL, NULL, &error))
      {
        g_printerr ("nat-tool vpn up: %s\n", error->message);
        return EXIT_USAGE;
      }
  manager = make_manager (common, &error);
  if (!manager)
    return fail (common, error);
  run.manager = manager;
  if (!server)
    {
      const char * const *servers =
        natkit_config_get_rendezvous_servers (natkit_manager_get_config (manager));

      server = servers && servers[0] ? servers[0] : NULL;
    }
  if (!server)
    {
      g_printerr ("nat-tool vpn up: name the natkit-server to register at with "
                  "--server HOST:PORT (or set \"rendezvous\" in the configuration)\n");
      return EXIT_USAGE;
    }
  run.rendezvous = natkit_manager_get_rendezvous (manager, server, &error);
  if (!run.rendezvous)
    return fail (common, error);

  sigint = g_unix_signal_add (SIGINT, stop_cb, &run);
  sigterm = g_unix_signal_add (SIGTERM, stop_cb, &run);

  natkit_rendezvous_connect_async (run.rendezvous, cancellable, registered_cb, &run);
  while (!run.done)
    {
      g_main_loop_run (loop);
      if (run.stopping && !run.done)
        g_cancellable_cancel (cancellable);
    }
  if (run.error == NULL && !run.stopping)
    {
      run.done = FALSE;
      natkit_manager_join_network_async (manager, NATKIT_SIGNALING (run.rendezvous),
                                         vpn_network, vpn_interface, cancellable,
                                         joined_cb, &run);
      while (!run.done)
        {
          g_main_loop_run (loop);
          if (run.stopping && !run.done)
            g_cancellable_cancel (cancellable);
        }
    }
  if (run.network == NULL)
    {
      int status = EXIT_SUCCESS;

      if (run.error && !g_error_matches (run.error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        status = fail (common, run.error);
      g_clear_error (&run.error);
      g_source_remove (sigint);
      g_source_remove (sigterm);
      natkit_rendezvous_close (run.rendezvous);
      return status;
    }

  {
    g_autofree char *dir = state_dir ();
    g_autofree char *name = g_strdup_printf ("vpn-%s.json",
                                             natkit_network_get_interface_name (run.network));

    run.state_file = g_build_filename (dir, name, NULL);
  }
  g_signal_connect (run.network, "peer-up", G_CALLBACK (peer_up_cb), &run);
  g_signal_connect (run.network, "peer-down", G_CALLBACK (peer_down_cb), &run);
  g_signal_connect (run.network, "failed", G_CALLBACK (network_failed_cb), &run);
  if (!natkit_manager_listen (manager, NATKIT_SIGNALING (run.rendezvous), &error))
    {
      natkit_network_leave (run.network);
      g_clear_object (&run.network);
      return fail (common, error);
    }
  g_signal_connect (manager, "incoming", G_CALLBACK (incoming_cb), &run);

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "event", "up");
      add_string (builder, "interface", natkit_network_get_interface_name (run.network));
      add_string (builder, "address", natkit_network_get_address (run.network));
      add_string (builder, "network", natkit_network_get_network (run.network));
      add_string (builder, "peer_address", natkit_network_get_peer_address (run.network));
      add_string (builder, "implementation", natkit_network_get_implementation (run.network));
      add_string (builder, "public_key", natkit_network_get_public_key (run.network));
      json_builder_end_object (builder);
      print_line (builder);
    }
  else
    {
      g_print ("%s is up: %s in %s (%s)\n", natkit_network_get_interface_name (run.network),
               natkit_network_get_address (run.network),
               natkit_network_get_network (run.network),
               natkit_network_get_implementation (run.network));
      g_print ("peer address: %s\n(peers join with: nat-tool vpn up --server %s %s)\n",
               natkit_network_get_peer_address (run.network), server,
               natkit_network_get_peer_address (run.network));
      fflush (stdout);
    }
  write_state (&run);
  run.state_id = g_timeout_add_seconds (5, state_timeout_cb, &run);

  for (int i = 2; i < argc; i++)
    {
      AddPeer *a = g_new0 (AddPeer, 1);

      a->run = &run;
      a->peer = g_strdup (argv[i]);
      natkit_network_add_peer_async (run.network, argv[i], cancellable, added_cb, a);
    }

  while (!run.stopping && run.status == EXIT_SUCCESS)
    g_main_loop_run (loop);

  /* tear down: peers, interface, wireguard-go, the state file */
  g_signal_handlers_disconnect_by_func (manager, incoming_cb, &run);
  g_cancellable_cancel (cancellable);
  g_clear_handle_id (&run.state_id, g_source_remove);
  g_signal_handlers_disconnect_by_func (run.network, peer_down_cb, &run);
  {
    g_autofree char *interface = g_strdup (natkit_network_get_interface_name (run.network));

    natkit_network_leave (run.network);
    g_unlink (run.state_file);
    if (common->json && interface)
      {
        g_autoptr(JsonBuilder) builder = json_builder_new ();

        json_builder_begin_object (builder);
        add_string (builder, "event", "down");
        add_string (builder, "interface", interface);
        json_builder_end_object (builder);
        print_line (builder);
      }
  }
  g_clear_object (&run.network);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  /* let the close messages go out */
  g_timeout_add (200, quit_cb, loop);
  g_main_loop_run (loop);
  natkit_rendezvous_close (run.rendezvous);
  g_free (run.state_file);
  return run.status;
}

/* ---- vpn status -------------------------------------------------------------- */

static gboolean
pid_alive (gint64 pid)
{
  return pid > 0 && (kill ((pid_t) pid, 0) == 0 || errno == EPERM);
}

static int
vpn_status (CommonOptions  *common,
            int             argc,
            char          **argv)
{
  g_autofree char *dir = state_dir ();
  g_autoptr(GDir) folder = g_dir_open (dir, 0, NULL);
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  const char *name;
  guint found = 0;

  if (argc > 2)
    {
      g_printerr ("nat-tool vpn status: unexpected argument “%s”\n", argv[2]);
      return EXIT_USAGE;
    }
  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "networks");
  json_builder_begin_array (builder);
  while (folder && (name = g_dir_read_name (folder)) != NULL)
    {
      g_autofree char *path = NULL;
      g_autoptr(JsonParser) parser = json_parser_new ();
      JsonObject *o;
      JsonArray *peers;

      if (!g_str_has_prefix (name, "vpn-") || !g_str_has_suffix (name, ".json"))
        continue;
      path = g_build_filename (dir, name, NULL);
      if (!json_parser_load_from_file (parser, path, NULL) ||
          !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        continue;
      o = json_node_get_object (json_parser_get_root (parser));
      /* a process that was killed left its file: not running */
      if (!pid_alive (json_object_get_int_member_with_default (o, "pid", 0)))
        {
          g_unlink (path);
          continue;
        }
      found++;
      if (common->json)
        {
          json_builder_add_value (builder, json_node_copy (json_parser_get_root (parser)));
          continue;
        }
      g_print ("%s: %s in %s (%s)\n  peer address %s\n",
               json_object_get_string_member_with_default (o, "interface", "?"),
               json_object_get_string_member_with_default (o, "address", "?"),
               json_object_get_string_member_with_default (o, "network", "?"),
               json_object_get_string_member_with_default (o, "implementation", "?"),
               json_object_get_string_member_with_default (o, "peer_address", "?"));
      peers = json_object_has_member (o, "peers") ?
              json_object_get_array_member (o, "peers") : NULL;
      if (peers == NULL || json_array_get_length (peers) == 0)
        g_print ("  no peers\n");
      for (guint i = 0; peers && i < json_array_get_length (peers); i++)
        {
          JsonObject *p = json_array_get_object_element (peers, i);
          gint64 handshake = p ? json_object_get_int_member_with_default (p, "last_handshake", 0) : 0;
          g_autofree char *ago = handshake > 0 ?
            g_strdup_printf ("%" G_GINT64_FORMAT " s ago",
                             g_get_real_time () / G_USEC_PER_SEC - handshake) :
            g_strdup ("none yet");
          g_autofree char *sent = NULL;
          g_autofree char *received = NULL;

          if (p == NULL)
            continue;
          sent = g_format_size (json_object_get_int_member_with_default (p, "bytes_sent", 0));
          received = g_format_size (json_object_get_int_member_with_default (p, "bytes_received", 0));
          g_print ("  peer %s (%.8s…) via %s, RTT %" G_GINT64_FORMAT " ms, sent %s, "
                   "received %s, handshake %s\n",
                   json_object_get_string_member_with_default (p, "address", "?"),
                   json_object_get_string_member_with_default (p, "peer_id", "?"),
                   json_object_get_string_member_with_default (p, "method", "no path"),
                   json_object_get_int_member_with_default (p, "rtt_ms", -1),
                   sent, received, ago);
        }
    }
  json_builder_end_array (builder);
  json_builder_end_object (builder);
  if (common->json)
    print_json (builder);
  else if (found == 0)
    g_print ("No natkit network is running (start one with “nat-tool vpn up”)\n");
  return EXIT_SUCCESS;
}

int
cmd_vpn (CommonOptions  *common,
         int             argc,
         char          **argv)
{
  if (argc >= 2 && g_str_equal (argv[1], "up"))
    return vpn_up (common, argc, argv);
  if (argc >= 2 && g_str_equal (argv[1], "status"))
    return vpn_status (common, argc, argv);
  g_printerr ("nat-tool vpn: say “up” or “status”, e.g. "
              "“nat-tool vpn up --server HOST:PORT [PEER-ADDRESS]…”\n");
  return EXIT_USAGE;
}
