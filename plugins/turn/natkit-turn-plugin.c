/* natkit-turn-plugin.c: traversal through standard TURN servers (RFC 8656)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Who allocates: both sides, always (docs/turn.md). Each peer allocates on
 * the first configured TURN server it can reach — over UDP, or over TCP or
 * TLS where UDP is blocked — and sends its relayed address to the other
 * over signaling ("turn" body). Each then binds a channel on its own
 * allocation to the other's relayed address, which installs the
 * permission for that address's IP. Data goes relay to relay:
 *
 *   A ──(UDP/TCP/TLS)── relay A ──UDP── relay B ──(UDP/TCP/TLS)── B
 *
 * A single allocation would save a hop but needs the other side to send
 * UDP to the relayed address from a mapping whose IP is known in advance
 * and whose NAT lets the relay's answers back in: that fails when that
 * side is UDP-blocked, and its server-reflexive IP may differ from the one
 * its packets to the relay leave with (multi-homed NATs). Two allocations
 * depend on nothing but each side reaching a TURN server, which is the
 * promise of TURN; the permission is exact (the peer's relay IP, told by
 * the peer's server), never guessed.
 *
 * Cost RELAYED, rank SECONDARY: a TURN server is one the user configured
 * on purpose, tried before natkit-server's relay (MARGINAL).
 */
#include <string.h>

#include <natkit/natkit.h>

#include "natkit-turn-client.h"
#include "natkit-turn-proto.h"

#define NATKIT_TYPE_TURN (natkit_turn_get_type ())
G_DECLARE_FINAL_TYPE (NatkitTurn, natkit_turn, NATKIT, TURN, GObject)

/* a UDP attempt gets this long before TCP/TLS is tried (RFC 8489
 * retransmissions at 0, 0.5, 1.5 s) */
#define UDP_BUDGET_MS   2500
#define REST_TTL_S      86400
#define TURN_MTU        1396     /* 1400 less the ChannelData header */

/* ---- the path ----------------------------------------------------------- */

#define NATKIT_TYPE_TURN_PATH (natkit_turn_path_get_type ())
G_DECLARE_FINAL_TYPE (NatkitTurnPath, natkit_turn_path, NATKIT, TURN_PATH, NatkitPath)

struct _NatkitTurnPath
{
  NatkitPath        parent_instance;
  NatkitTurnClient *client;
  GSource          *fail_idle;
  GError           *failure;
};

G_DEFINE_FINAL_TYPE (NatkitTurnPath, natkit_turn_path, NATKIT_TYPE_PATH)

static gboolean
natkit_turn_path_send (NatkitPath  *path,
                       GBytes      *datagram,
                       GError     **error)
{
  NatkitTurnPath *self = NATKIT_TURN_PATH (path);
  gsize size;
  const guint8 *data = g_bytes_get_data (datagram, &size);

  return natkit_turn_client_send (self->client, data, size, error);
}

static void
natkit_turn_path_close (NatkitPath *path)
{
  NatkitTurnPath *self = NATKIT_TURN_PATH (path);

  natkit_turn_drop_source (&self->fail_idle);
  natkit_turn_client_set_handlers (self->client, NULL, NULL, NULL);
  natkit_turn_client_close (self->client);
}

static void
natkit_turn_path_finalize (GObject *object)
{
  NatkitTurnPath *self = NATKIT_TURN_PATH (object);

  natkit_turn_drop_source (&self->fail_idle);
  if (self->client != NULL)
    {
      natkit_turn_client_set_handlers (self->client, NULL, NULL, NULL);
      natkit_turn_client_close (self->client);
      g_object_unref (self->client);
    }
  g_clear_error (&self->failure);
  G_OBJECT_CLASS (natkit_turn_path_parent_class)->finalize (object);
}

static void
natkit_turn_path_class_init (NatkitTurnPathClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_turn_path_finalize;
  NATKIT_PATH_CLASS (klass)->send = natkit_turn_path_send;
  NATKIT_PATH_CLASS (klass)->close = natkit_turn_path_close;
}

static void
natkit_turn_path_init (NatkitTurnPath *self)
{
}

static void
path_data_cb (const guint8 *data,
              gsize         length,
              gpointer      user_data)
{
  NatkitTurnPath *self = user_data;
  g_autoptr(GBytes) datagram = g_bytes_new (data, length);

  if (!natkit_path_is_closed (NATKIT_PATH (self)))
    natkit_path_deliver (NATKIT_PATH (self), datagram);
}

static gboolean
path_fail_idle_cb (gpointer user_data)
{
  NatkitTurnPath *self = user_data;
  g_autoptr(GError) failure = g_steal_pointer (&self->failure);

  g_clear_pointer (&self->fail_idle, g_source_unref);
  natkit_path_fail (NATKIT_PATH (self), failure);
  return G_SOURCE_REMOVE;
}

/* may come from inside send(): the path fails from the main loop */
static void
path_fail_cb (const GError *error,
              gpointer      user_data)
{
  NatkitTurnPath *self = user_data;

  if (self->fail_idle != NULL || natkit_path_is_closed (NATKIT_PATH (self)))
    return;
  g_debug ("the TURN path fails: %s", error->message);
  self->failure = g_error_copy (error);
  self->fail_idle = natkit_turn_add_source (g_idle_source_new (), path_fail_idle_cb, self,
                                "[natkit-turn] fail");
}

static NatkitPath *
path_new (NatkitTurnClient   *client,
          GInetSocketAddress *peer)
{
  g_autofree char *local = natkit_turn_describe (natkit_turn_client_get_relayed (client));
  g_autofree char *remote = natkit_turn_describe (peer);
  g_autofree char *local_text = g_strdup_printf ("%s (relayed by %s)", local,
                                                 natkit_turn_client_get_server (client));
  NatkitTurnPath *self;

  self = g_object_new (NATKIT_TYPE_TURN_PATH,
                       "method", "turn",
                       "transport",
                       natkit_turn_transport_to_string (natkit_turn_client_get_transport (client)),
                       "local-address", local_text,
                       "remote-address", remote,
                       "mtu", TURN_MTU,
                       NULL);
  self->client = g_object_ref (client);
  natkit_turn_client_set_handlers (client, path_data_cb, path_fail_cb, self);
  return NATKIT_PATH (self);
}

/* ---- servers to try ----------------------------------------------------- */

typedef struct
{
  NatkitTurnUri        uri;
  NatkitTurnTransport  transport;
  char                *username;
  char                *password;
} Server;

static void
server_free (gpointer data)
{
  Server *server = data;

  natkit_turn_uri_clear (&server->uri);
  g_free (server->username);
  if (server->password != NULL)
    memset (server->password, 0, strlen (server->password));
  g_free (server->password);
  g_free (server);
}

/* The servers of @config in order; a turn: URI without ?transport= is
 * tried over UDP, then over TCP (RFC 7065 leaves the choice to the
 * client). */
static GPtrArray *
servers_from_config (NatkitConfig *config,
                     const char   *local_peer_id,
                     GError      **error)
{
  g_autoptr(GPtrArray) servers = g_ptr_array_new_with_free_func (server_free);
  const char * const *uris = config ? natkit_config_get_turn_uris (config) : NULL;
  g_autoptr(GError) first = NULL;

  for (guint i = 0; uris != NULL && uris[i] != NULL; i++)
    {
      g_autofree char *username = NULL;
      g_autofree char *password = NULL;
      g_autofree char *secret = NULL;
      g_autoptr(GError) local = NULL;
      NatkitTurnUri uri;

      if (!natkit_turn_uri_parse (uris[i], &uri, &local))
        {
          g_debug ("skipping a TURN server: %s", local->message);
          if (first == NULL)
            first = g_steal_pointer (&local);
          continue;
        }
      natkit_config_get_turn_credentials (config, uris[i], &username, &password, &secret);
      if (secret != NULL && *secret != '\0')
        {
          g_clear_pointer (&username, g_free);
          g_clear_pointer (&password, g_free);
          natkit_turn_rest_credentials (secret, local_peer_id,
                                        g_get_real_time () / G_USEC_PER_SEC + REST_TTL_S,
                                        &username, &password);
        }
      if (username == NULL || password == NULL)
        {
          g_debug ("skipping the TURN server %s: no credentials", uris[i]);
          natkit_turn_uri_clear (&uri);
          continue;
        }

      for (guint t = 0; t < 2; t++)
        {
          Server *server;

          if (t == 1 && (uri.transport_given || uri.secure))
            break;
          server = g_new0 (Server, 1);
          server->uri = uri;
          server->uri.host = g_strdup (uri.host);
          server->transport = t == 0 ? uri.transport : NATKIT_TURN_TRANSPORT_TCP;
          server->username = g_strdup (username);
          server->password = g_strdup (password);
          g_ptr_array_add (servers, server);
        }
      natkit_turn_uri_clear (&uri);
    }
  if (servers->len == 0)
    {
      if (first != NULL)
        g_propagate_error (error, g_steal_pointer (&first));
      else
        g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                             "no TURN server is configured (\"turn\" in config.json, "
                             "or nat-tool --turn URI --turn-user USER --turn-password "
                             "PASSWORD)");
      return NULL;
    }
  return g_steal_pointer (&servers);
}

/* ---- one attempt -------------------------------------------------------- */

typedef struct
{
  GTask              *task;          /* not a reference until done */
  NatkitSignaling    *signaling;
  gulong              message_id;
  char               *peer_id;
  char               *session_id;
  guint               timeout_ms;
  gint64              deadline;      /* monotonic µs */
  GCancellable       *cancellable;   /* ours */
  GSource            *timer;
  GSource            *cancel;

  GPtrArray          *servers;
  guint               next;
  guint               channel_refresh_s;  /* 0: the client's default */
  NatkitTurnClient   *client;
  GError             *best_error;    /* what went furthest, for the message */
  gboolean            allocated;

  GInetSocketAddress *peer_relayed;
  gboolean            peer_saw_ours;
  gboolean            sent_seen;
  gboolean            binding;
  gboolean            done;
} Attempt;

static void
attempt_free (gpointer data)
{
  Attempt *a = data;

  g_assert (a->timer == NULL && a->cancel == NULL && a->message_id == 0);
  g_clear_object (&a->signaling);
  g_free (a->peer_id);
  g_free (a->session_id);
  g_clear_object (&a->cancellable);
  g_clear_pointer (&a->servers, g_ptr_array_unref);
  if (a->client != NULL)
    {
      natkit_turn_client_close (a->client);
      g_object_unref (a->client);
    }
  g_clear_error (&a->best_error);
  g_clear_object (&a->peer_relayed);
  g_free (a);
}

static void
attempt_complete (Attempt    *a,
                  NatkitPath *path,
                  GError     *error)
{
  GTask *task = a->task;

  if (a->done)
    {
      g_clear_object (&path);
      g_clear_error (&error);
      return;
    }
  a->done = TRUE;
  natkit_turn_drop_source (&a->timer);
  natkit_turn_drop_source (&a->cancel);
  g_cancellable_cancel (a->cancellable);
  if (a->message_id != 0)
    {
      g_signal_handler_disconnect (a->signaling, a->message_id);
      a->message_id = 0;
    }
  if (path != NULL)
    {
      g_debug ("TURN path to %s: %s → %s over %s", a->peer_id,
               natkit_path_get_local_address (path), natkit_path_get_remote_address (path),
               natkit_path_get_transport (path));
      g_task_return_pointer (task, path, g_object_unref);
    }
  else
    {
      /* the allocation goes with the attempt (Refresh LIFETIME 0) */
      if (a->client != NULL)
        natkit_turn_client_close (a->client);
      g_task_return_error (task, error);
    }
  g_object_unref (task);
}

static void
keep_error (Attempt *a,
            GError  *error)
{
  /* an answer from a server (refused credentials, quota…) says more than
   * silence; the first of each kind wins */
  gboolean answered = !g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT) &&
                      !g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE);
  gboolean best_answered = a->best_error != NULL &&
                           !g_error_matches (a->best_error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT) &&
                           !g_error_matches (a->best_error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE);

  if (a->best_error == NULL || (answered && !best_answered))
    {
      g_clear_error (&a->best_error);
      a->best_error = error;
    }
  else
    g_error_free (error);
}

static guint
time_left (Attempt *a)
{
  gint64 left = (a->deadline - g_get_monotonic_time ()) / 1000;

  return left > 1 ? (guint) left : 1;
}

static void try_next_server (Attempt *a);
static void maybe_bind (Attempt *a);

static void
offer_sent_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Attempt *a = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  if (natkit_signaling_send_finish (NATKIT_SIGNALING (source), result, &error) || a->done)
    return;
  attempt_complete (a, NULL, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                          "Could not send our TURN relayed address to %s: %s",
                                          a->peer_id, error->message));
}

static void
send_offer (Attempt *a)
{
  g_autofree char *offer = natkit_turn_offer_build (a->session_id,
                                                    natkit_turn_client_get_relayed (a->client),
                                                    a->peer_relayed != NULL);

  a->sent_seen = a->peer_relayed != NULL;
  natkit_signaling_send_async (a->signaling, a->peer_id, offer, a->cancellable,
                               offer_sent_cb, g_object_ref (a->task));
}

static void
bound_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Attempt *a = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  if (!natkit_turn_client_bind_finish (NATKIT_TURN_CLIENT (source), result, &error))
    {
      if (!a->done)
        attempt_complete (a, NULL, g_steal_pointer (&error));
      return;
    }
  if (a->done)
    return;
  {
    NatkitPath *path = path_new (a->client, a->peer_relayed);

    /* the path owns the allocation now */
    g_clear_object (&a->client);
    attempt_complete (a, path, NULL);
  }
}

static void
maybe_bind (Attempt *a)
{
  g_autofree char *peer = NULL;

  if (a->done || !a->allocated || a->peer_relayed == NULL || a->binding)
    return;
  a->binding = TRUE;
  peer = natkit_turn_describe (a->peer_relayed);
  g_debug ("binding a channel on %s to %s's relayed address %s",
           natkit_turn_client_get_server (a->client), a->peer_id, peer);
  natkit_turn_client_bind_async (a->client, a->peer_relayed, time_left (a), a->cancellable,
                                 bound_cb, g_object_ref (a->task));
}

static void
message_cb (NatkitSignaling *signaling,
            const char      *from,
            const char      *text,
            gpointer         user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);
  g_autofree char *session = NULL;
  g_autoptr(GInetSocketAddress) relayed = NULL;
  g_autoptr(GError) error = NULL;
  gboolean seen = FALSE;

  if (a->done || g_strcmp0 (from, a->peer_id) != 0 || strstr (text, "\"turn\"") == NULL)
    return;
  if (!natkit_turn_offer_parse (text, &session, &relayed, &seen, &error))
    {
      g_debug ("ignoring a TURN offer from %s: %s", from, error->message);
      return;
    }
  if (g_strcmp0 (session, a->session_id) != 0)
    return;
  if (seen)
    a->peer_saw_ours = TRUE;
  if (a->peer_relayed == NULL)
    {
      g_autofree char *text_address = natkit_turn_describe (relayed);

      g_debug ("%s is relayed at %s", from, text_address);
      a->peer_relayed = g_steal_pointer (&relayed);
    }
  /* the peer may have sent its offer before our attempt listened, and
   * ours before its attempt did: whoever learns that the other has not
   * seen its address yet sends it again */
  if (a->allocated && !seen && !a->sent_seen)
    send_offer (a);
  maybe_bind (a);
}

static void
allocated_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Attempt *a = g_task_get_task_data (task);
  NatkitTurnClient *client = NATKIT_TURN_CLIENT (source);
  GError *error = NULL;

  if (!natkit_turn_client_allocate_finish (client, result, &error))
    {
      if (a->done)
        {
          g_error_free (error);
          return;
        }
      g_debug ("no allocation on %s over %s: %s", natkit_turn_client_get_server (client),
               natkit_turn_transport_to_string (natkit_turn_client_get_transport (client)),
               error->message);
      natkit_turn_client_close (client);
      g_clear_object (&a->client);
      keep_error (a, error);
      try_next_server (a);
      return;
    }
  if (a->done)
    return;
  a->allocated = TRUE;
  send_offer (a);
  maybe_bind (a);
}

static void
try_next_server (Attempt *a)
{
  Server *server;
  guint budget;

  if (a->done)
    return;
  if (a->next >= a->servers->len)
    {
      attempt_complete (a, NULL, g_steal_pointer (&a->best_error));
      return;
    }
  server = g_ptr_array_index (a->servers, a->next++);
  budget = time_left (a);
  /* the server's own time limit ends first, so its reason is the one told */
  if (budget > 1000)
    budget -= 250;
  if (server->transport == NATKIT_TURN_TRANSPORT_UDP && a->next < a->servers->len)
    budget = MIN (budget, UDP_BUDGET_MS);
  a->client = natkit_turn_client_new (&server->uri, server->transport, server->username,
                                      server->password);
  natkit_turn_client_set_channel_refresh (a->client, a->channel_refresh_s);
  natkit_turn_client_allocate_async (a->client, budget, a->cancellable, allocated_cb,
                                     g_object_ref (a->task));
}

static gboolean
attempt_timeout_cb (gpointer user_data)
{
  Attempt *a = user_data;
  GError *error;

  g_clear_pointer (&a->timer, g_source_unref);
  if (!a->allocated)
    error = a->best_error ? g_error_copy (a->best_error) :
            g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                         "No TURN server gave an allocation within %u ms", a->timeout_ms);
  else if (a->peer_relayed == NULL)
    error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                         "%s did not send its TURN relayed address within %u ms: does it "
                         "have a TURN server configured?", a->peer_id, a->timeout_ms);
  else
    error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                         "The TURN server %s did not bind a channel to %s within %u ms",
                         natkit_turn_client_get_server (a->client), a->peer_id, a->timeout_ms);
  attempt_complete (a, NULL, error);
  return G_SOURCE_REMOVE;
}

static gboolean
attempt_cancelled_cb (GCancellable *cancellable,
                      gpointer      user_data)
{
  Attempt *a = user_data;

  g_clear_pointer (&a->cancel, g_source_unref);
  attempt_complete (a, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                  "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

/* plugins.turn.settings."channel-refresh": seconds between renewals of
 * the channel (and the permission), for a server whose permissions or
 * channels last less than RFC 8656's 300 and 600 s; 0 or absent: 240 s */
static guint
channel_refresh_from_config (NatkitConfig *config)
{
  GVariant *v = config ? natkit_config_get_plugin_setting (config, "turn", "channel-refresh") :
                NULL;

  if (v == NULL)
    return 0;
  if (!g_variant_is_of_type (v, G_VARIANT_TYPE_INT64) ||
      g_variant_get_int64 (v) < 1 || g_variant_get_int64 (v) > 240)
    {
      g_warning ("plugins.turn.settings.channel-refresh must be a whole number of seconds "
                 "from 1 to 240; using 240");
      return 0;
    }
  return (guint) g_variant_get_int64 (v);
}

/* ---- the traversal ------------------------------------------------------ */

struct _NatkitTurn
{
  GObject parent_instance;
};

static void natkit_turn_traversal_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitTurn, natkit_turn, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      natkit_turn_traversal_init))

static NatkitCost
natkit_turn_get_cost (NatkitTraversal *traversal)
{
  return NATKIT_COST_RELAYED;
}

static gboolean
natkit_turn_applies (NatkitTraversal         *traversal,
                     NatkitTraversalRequest  *request,
                     GError                 **error)
{
  NatkitConfig *config = natkit_traversal_request_get_config (request);
  const char * const *uris = config ? natkit_config_get_turn_uris (config) : NULL;

  if (uris == NULL || uris[0] == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "no TURN server is configured (\"turn\" in config.json, or "
                           "nat-tool --turn URI --turn-user USER --turn-password PASSWORD)");
      return FALSE;
    }
  if (natkit_traversal_request_get_signaling (request) == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "TURN needs a signaling channel to the peer to exchange relayed "
                           "addresses");
      return FALSE;
    }
  return TRUE;
}

static void
natkit_turn_open_path_async (NatkitTraversal        *traversal,
                             NatkitTraversalRequest *request,
                             GCancellable           *cancellable,
                             GAsyncReadyCallback     callback,
                             gpointer                user_data)
{
  GTask *task = g_task_new (traversal, cancellable, callback, user_data);
  const char *session_id = natkit_traversal_request_get_session_id (request);
  g_autoptr(GError) error = NULL;
  GPtrArray *servers;
  Attempt *a;

  g_task_set_source_tag (task, natkit_turn_open_path_async);
  g_task_set_name (task, "[natkit-turn] open path");

  if (!natkit_turn_applies (traversal, request, &error) ||
      (servers = servers_from_config (natkit_traversal_request_get_config (request),
                                      natkit_traversal_request_get_local_peer_id (request),
                                      &error)) == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      g_object_unref (task);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_ptr_array_unref (servers);
      g_object_unref (task);
      return;
    }

  a = g_new0 (Attempt, 1);
  a->task = task;     /* holds itself until attempt_complete() */
  a->signaling = g_object_ref (natkit_traversal_request_get_signaling (request));
  a->peer_id = g_strdup (natkit_traversal_request_get_remote_peer_id (request));
  a->session_id = g_strdup (session_id != NULL ? session_id : "");
  /* the request's time limit: the manager waits a moment past it for the
   * reason we give ("the TURN server … did not answer") */
  a->timeout_ms = MAX (natkit_traversal_request_get_timeout (request), 1);
  a->deadline = g_get_monotonic_time () + (gint64) a->timeout_ms * 1000;
  a->cancellable = g_cancellable_new ();
  a->servers = servers;
  a->channel_refresh_s = channel_refresh_from_config (natkit_traversal_request_get_config (request));
  g_task_set_task_data (task, a, attempt_free);

  a->timer = natkit_turn_add_source (g_timeout_source_new (a->timeout_ms), attempt_timeout_cb, a,
                         "[natkit-turn] attempt timeout");
  if (cancellable != NULL)
    a->cancel = natkit_turn_add_source (g_cancellable_source_new (cancellable),
                            G_SOURCE_FUNC (attempt_cancelled_cb), a,
                            "[natkit-turn] attempt cancelled");
  /* listen before anything goes out */
  a->message_id = g_signal_connect (a->signaling, "message-received",
                                    G_CALLBACK (message_cb), a);
  try_next_server (a);
}

static NatkitPath *
natkit_turn_open_path_finish (NatkitTraversal  *traversal,
                              GAsyncResult     *result,
                              GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, natkit_turn_open_path_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
natkit_turn_traversal_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = natkit_turn_get_cost;
  iface->applies = natkit_turn_applies;
  iface->open_path_async = natkit_turn_open_path_async;
  iface->open_path_finish = natkit_turn_open_path_finish;
}

static void
natkit_turn_class_init (NatkitTurnClass *klass)
{
}

static void
natkit_turn_init (NatkitTurn *self)
{
}

static gboolean
turn_plugin_init (NatkitPlugin  *plugin,
                  GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               NATKIT_TYPE_TURN, NATKIT_RANK_SECONDARY);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("turn",
                      "Relays the connection through standard TURN servers (UDP, TCP or TLS)",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      turn_plugin_init)
