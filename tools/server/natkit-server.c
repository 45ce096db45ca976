/* natkit-server: rendezvous, relay and STUN for natkit peers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failure (the message says
 * why), 2 usage error.
 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib-unix.h>
#include <glib/gstdio.h>

#include "natkit.h"
#include "natkit-server-core.h"

static char *opt_listen = NULL;
static int opt_udp_port = -1;
static int opt_stun_port2 = -1;
static char *opt_cert = NULL;
static char *opt_key = NULL;
static char *opt_state_dir = NULL;
static gboolean opt_json = FALSE;
static gboolean opt_version = FALSE;
static int opt_max_circuits = -1;
static gint64 opt_circuit_bytes = -1;
static int opt_circuit_duration = -1;
static gint64 opt_circuit_rate = -1;
static int opt_reservation_ttl = -1;
static int opt_max_peers = -1;
static int opt_max_reservations = -1;
static int opt_max_control_rate = -1;
static char **opt_turn_uris = NULL;
static char *opt_turn_secret_file = NULL;
static int opt_turn_ttl = 86400;

static const GOptionEntry entries[] = {
  { "listen", 'l', 0, G_OPTION_ARG_STRING, &opt_listen,
    "Address and TLS port to listen on (default 0.0.0.0:7000; port 0 picks one)", "HOST:PORT" },
  { "udp-port", 'u', 0, G_OPTION_ARG_INT, &opt_udp_port,
    "UDP port for the relay and STUN (default: the TLS port)", "PORT" },
  { "stun-port2", 0, 0, G_OPTION_ARG_INT, &opt_stun_port2,
    "A second UDP port that answers STUN only, so clients can tell how their NAT maps "
    "(default: the UDP port + 1; 0: none)", "PORT" },
  { "tls-certificate", 0, 0, G_OPTION_ARG_FILENAME, &opt_cert,
    "TLS certificate (PEM); without it a self-signed one is generated", "FILE" },
  { "tls-key", 0, 0, G_OPTION_ARG_FILENAME, &opt_key,
    "The certificate's private key (PEM)", "FILE" },
  { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &opt_state_dir,
    "Keep the generated certificate here, so its fingerprint stays the same", "DIR" },
  { "max-circuits", 0, 0, G_OPTION_ARG_INT, &opt_max_circuits,
    "Relay circuits a peer may have at once (default 16)", "N" },
  { "circuit-bytes", 0, 0, G_OPTION_ARG_INT64, &opt_circuit_bytes,
    "Bytes a circuit may carry, both directions (default 1073741824; 0: no limit)", "N" },
  { "circuit-duration", 0, 0, G_OPTION_ARG_INT, &opt_circuit_duration,
    "Seconds a circuit may last (default 3600; 0: no limit)", "S" },
  { "circuit-rate", 0, 0, G_OPTION_ARG_INT64, &opt_circuit_rate,
    "Bytes per second a circuit may carry (default 67108864; 0: no limit)", "N" },
  { "reservation-ttl", 0, 0, G_OPTION_ARG_INT, &opt_reservation_ttl,
    "Seconds a relay reservation lasts unless renewed (default 600)", "S" },
  { "max-peers", 0, 0, G_OPTION_ARG_INT, &opt_max_peers,
    "Registered peers at most (default 100000)", "N" },
  { "max-reservations", 0, 0, G_OPTION_ARG_INT, &opt_max_reservations,
    "Relay reservations at most (default 100000)", "N" },
  { "max-control-rate", 0, 0, G_OPTION_ARG_INT, &opt_max_control_rate,
    "Control messages per second per connection (default 50, bursts of 100)", "N" },
  { "turn-uri", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_turn_uris,
    "A TURN server (repeatable) that shares --turn-secret-file: registered peers get "
    "time-limited credentials for it (TURN REST API, coturn's use-auth-secret)", "URI" },
  { "turn-secret-file", 0, 0, G_OPTION_ARG_FILENAME, &opt_turn_secret_file,
    "The file holding the secret shared with the TURN servers (coturn's static-auth-secret)",
    "FILE" },
  { "turn-ttl", 0, 0, G_OPTION_ARG_INT, &opt_turn_ttl,
    "Seconds the TURN credentials stay valid (default 86400; peers ask again before)", "S" },
  { "json", 0, 0, G_OPTION_ARG_NONE, &opt_json,
    "Print one JSON line on stdout when ready", NULL },
  { "version", 0, 0, G_OPTION_ARG_NONE, &opt_version, "Show the version", NULL },
  G_OPTION_ENTRY_NULL
};

typedef struct
{
  GMainLoop    *loop;
  NatkitServer *server;
  gboolean      stopping;
} Run;

static void
stopped_cb (GObject      *source,
            GAsyncResult *res,
            gpointer      user_data)
{
  Run *run = user_data;

  natkit_server_stop_finish (NATKIT_SERVER (source), res, NULL);
  g_main_loop_quit (run->loop);
}

static gboolean
signal_cb (gpointer user_data)
{
  Run *run = user_data;

  if (run->stopping)
    {
      g_main_loop_quit (run->loop);
      return G_SOURCE_CONTINUE;
    }
  run->stopping = TRUE;
  g_message ("stopping: telling peers, closing circuits");
  natkit_server_stop_async (run->server, stopped_cb, run);
  return G_SOURCE_CONTINUE;
}

static GTlsCertificate *
load_or_generate_certificate (GError **error)
{
  g_autofree char *path = NULL;
  GTlsCertificate *cert;

  if (opt_cert || opt_key)
    {
      if (!opt_cert || !opt_key)
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                       "give both --tls-certificate and --tls-key, or neither "
                       "(for a generated self-signed certificate)");
          return NULL;
        }
      return g_tls_certificate_new_from_files (opt_cert, opt_key, error);
    }
  if (!opt_state_dir)
    return natkit_server_generate_certificate (error);

  path = g_build_filename (opt_state_dir, "natkit-server.pem", NULL);
  if (g_file_test (path, G_FILE_TEST_EXISTS))
    return g_tls_certificate_new_from_file (path, error);

  cert = natkit_server_generate_certificate (error);
  if (cert)
    {
      g_autofree char *cert_pem = NULL;
      g_autofree char *key_pem = NULL;
      g_autofree char *both = NULL;
      g_autoptr(GError) local_error = NULL;

      g_object_get (cert, "certificate-pem", &cert_pem, "private-key-pem", &key_pem, NULL);
      both = g_strconcat (cert_pem, key_pem, NULL);
      if (g_mkdir_with_parents (opt_state_dir, 0700) != 0 ||
          !g_file_set_contents_full (path, both, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                     0600, &local_error))
        g_warning ("cannot keep the certificate in %s: %s", path,
                   local_error ? local_error->message : g_strerror (errno));
      memset (both, 0, strlen (both));
      memset (key_pem, 0, strlen (key_pem));
    }
  return cert;
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(GOptionContext) context = g_option_context_new ("— rendezvous, relay and STUN for natkit peers");
  g_autoptr(GError) error = NULL;
  g_autoptr(GTlsCertificate) certificate = NULL;
  g_autoptr(GMainLoop) loop = NULL;
  g_autoptr(NatkitServer) server = NULL;
  g_autofree char *host = NULL;
  g_autofree char *turn_secret = NULL;
  NatkitServerLimits limits;
  guint16 port = 7000;
  Run run = { NULL, NULL, FALSE };

  setlocale (LC_ALL, "");
  g_option_context_add_main_entries (context, entries, NULL);
  g_option_context_set_description (context,
    "Peers register under their peer ID (proving they hold its key), exchange\n"
    "signaling messages, and relay datagrams to each other through circuits\n"
    "they reserve. The protocol is in natkit's docs/protocol.md.\n\n"
    "Exit status: 0 stopped by SIGTERM or SIGINT, 1 failure, 2 usage error.");
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("natkit-server: %s\nRun “natkit-server --help” for usage.\n", error->message);
      return 2;
    }
  if (opt_version)
    {
      g_print ("natkit-server %s\n", PACKAGE_VERSION);
      return 0;
    }
  if (argc > 1)
    {
      g_printerr ("natkit-server: unexpected argument “%s”\n", argv[1]);
      return 2;
    }

  if (opt_listen)
    {
      g_autoptr(GSocketConnectable) parsed = g_network_address_parse (opt_listen, 7000, &error);

      if (!parsed)
        {
          g_printerr ("natkit-server: --listen %s: %s (expected HOST:PORT, e.g. 0.0.0.0:7000)\n",
                      opt_listen, error->message);
          return 2;
        }
      host = g_strdup (g_network_address_get_hostname (G_NETWORK_ADDRESS (parsed)));
      port = g_network_address_get_port (G_NETWORK_ADDRESS (parsed));
      if (strchr (opt_listen, ':') == NULL)
        port = 7000;
      else if (g_str_has_suffix (opt_listen, ":0"))
        port = 0;
    }
  else
    host = g_strdup ("0.0.0.0");
  if (opt_udp_port < -1 || opt_udp_port > 65535)
    {
      g_printerr ("natkit-server: --udp-port must be 0 to 65535\n");
      return 2;
    }
  if (opt_stun_port2 < -1 || opt_stun_port2 > 65535)
    {
      g_printerr ("natkit-server: --stun-port2 must be 0 (none) to 65535\n");
      return 2;
    }

  natkit_server_limits_init (&limits);
#define SET_LIMIT(opt, field) if ((opt) >= 0) limits.field = (opt)
  SET_LIMIT (opt_max_circuits, max_circuits);
  SET_LIMIT (opt_circuit_bytes, circuit_bytes);
  SET_LIMIT (opt_circuit_duration, circuit_duration);
  SET_LIMIT (opt_circuit_rate, circuit_rate);
  SET_LIMIT (opt_reservation_ttl, reservation_ttl);
  SET_LIMIT (opt_max_peers, max_peers);
  SET_LIMIT (opt_max_reservations, max_reservations);
  SET_LIMIT (opt_max_control_rate, max_control_rate);
#undef SET_LIMIT
  if (limits.reservation_ttl == 0)
    {
      g_printerr ("natkit-server: --reservation-ttl must be at least 1\n");
      return 2;
    }

  if ((opt_turn_uris != NULL) != (opt_turn_secret_file != NULL))
    {
      g_printerr ("natkit-server: --turn-uri and --turn-secret-file go together "
                  "(the TURN servers and the secret they share)\n");
      return 2;
    }
  if (opt_turn_ttl < 60 || opt_turn_ttl > 30 * 86400)
    {
      g_printerr ("natkit-server: --turn-ttl must be 60 to 2592000 seconds\n");
      return 2;
    }
  for (guint i = 0; opt_turn_uris && opt_turn_uris[i]; i++)
    if (!g_str_has_prefix (opt_turn_uris[i], "turn:") &&
        !g_str_has_prefix (opt_turn_uris[i], "turns:"))
      {
        g_printerr ("natkit-server: --turn-uri “%s” is not a TURN URI: write "
                    "turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]\n",
                    opt_turn_uris[i]);
        return 2;
      }
  if (opt_turn_secret_file)
    {
      if (!g_file_get_contents (opt_turn_secret_file, &turn_secret, NULL, &error))
        {
          g_printerr ("natkit-server: cannot read the TURN secret: %s\n", error->message);
          return 1;
        }
      g_strstrip (turn_secret);
      if (*turn_secret == '\0')
        {
          g_printerr ("natkit-server: the TURN secret file %s is empty\n",
                      opt_turn_secret_file);
          return 1;
        }
    }

  certificate = load_or_generate_certificate (&error);
  if (!certificate)
    {
      g_printerr ("natkit-server: %s\n", error->message);
      return 1;
    }

  server = natkit_server_new (host, port, opt_udp_port < 0 ? 0 : opt_udp_port,
                              certificate, &limits);
  if (opt_udp_port < 0 && port != 0)
    server = (g_object_unref (server),
              natkit_server_new (host, port, port, certificate, &limits));
  if (opt_stun_port2 != 0)
    {
      guint udp = opt_udp_port >= 0 ? (guint) opt_udp_port : port;

      /* the UDP port + 1, or one the kernel picks when that is picked too */
      natkit_server_set_stun_port2 (server, opt_stun_port2 > 0 ? (guint16) opt_stun_port2 :
                                            udp > 0 && udp < 65535 ? (guint16) (udp + 1) : 0);
    }
  if (opt_turn_uris)
    natkit_server_set_turn (server, (const char * const *) opt_turn_uris, turn_secret,
                            (guint) opt_turn_ttl);
  if (!natkit_server_start (server, &error))
    {
      g_printerr ("natkit-server: %s\n", error->message);
      return 1;
    }

  /* before saying so: a SIGTERM right after "ready" must stop it cleanly */
  loop = g_main_loop_new (NULL, FALSE);
  run.loop = loop;
  run.server = server;
  g_unix_signal_add (SIGTERM, signal_cb, &run);
  g_unix_signal_add (SIGINT, signal_cb, &run);

  if (opt_json)
    {
      g_print ("{\"event\":\"ready\",\"tls_port\":%u,\"udp_port\":%u,\"stun_port2\":%u,"
               "\"fingerprint\":\"%s\"}\n",
               natkit_server_get_tls_port (server), natkit_server_get_udp_port (server),
               natkit_server_get_stun_port2 (server), natkit_server_get_fingerprint (server));
    }
  else
    g_print ("natkit-server listening on %s:%u (TLS) and UDP port %u\n"
             "certificate fingerprint %s\n", host, natkit_server_get_tls_port (server),
             natkit_server_get_udp_port (server), natkit_server_get_fingerprint (server));
  fflush (stdout);

  g_main_loop_run (loop);
  g_message ("stopped");
  return 0;
}
