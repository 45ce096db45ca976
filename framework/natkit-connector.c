/* natkit-connector.c: how two managers agree on a connection
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The initiator sends "connect" (the methods it can run) over signaling;
 * the responder answers "accept" (the ones it will run) or "reject". Then
 * the initiator walks the agreed methods in its rank order: it announces
 * each with "attempt", both sides run that traversal, and on the path it
 * produces both run the secure session's handshake. The first method whose
 * handshake completes carries the connection. docs/protocol.md, section 6.
 */
#include "config.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include "natkit.h"
#include "natkit-connector-private.h"
#include "natkit-nat-info-private.h"
#include "natkit-rendezvous-private.h"
#include "natkit-traversal-request-private.h"
#include "natkit-session-private.h"
#include "natkit-wire-private.h"

#define ACCEPT_TIMEOUT_MS     10000
#define HANDSHAKE_TIMEOUT_MS  10000
#define METHOD_TIMEOUT_MS     15000
/* how long an attempt past its deadline may still take to say why it
 * failed (or to hand over a path) before it is cancelled: a plugin's own
 * time limit is the request's, and its reason ("the TURN server … did not
 * answer") says more than "no path within …" */
#define LATE_REASON_GRACE_MS  1000
#define SESSION_ID_BYTES      16

struct _NatkitConnector
{
  GObject        parent_instance;

  NatkitManager *manager;     /* weak: the manager owns us */
  GHashTable    *rendezvous;  /* server → NatkitRendezvous */
  GHashTable    *channels;    /* NatkitSignaling → Channel */
  GHashTable    *entries;     /* session id → Entry */
  GHashTable    *breakers;    /* "METHOD@SERVER" → Breaker */
  gboolean       shut_down;
};

/* A circuit breaker per method and server: a method that failed
 * BREAKER_FAILURES times in a row, with any peer, starts after the relay
 * and is not retried in the background for BREAKER_OPEN_S. */
#define BREAKER_FAILURES 5
#define BREAKER_OPEN_S   60

typedef struct
{
  guint  failures;
  gint64 open_until;   /* monotonic µs */
} Breaker;

G_DEFINE_FINAL_TYPE (NatkitConnector, _natkit_connector, G_TYPE_OBJECT)

typedef struct
{
  NatkitSignaling *signaling;
  gulong           handler;
  gboolean         listening;
} Channel;

typedef struct
{
  NatkitConnector  *connector;
  char             *session_id;
  char             *peer_id;
  NatkitRole        role;
  NatkitSignaling  *signaling;
  NatkitConnectFlags flags;
  GStrv             methods;     /* agreed */
  NatkitConnection *connection;  /* weak */
  GTask            *accept_task; /* initiator, waiting for accept */
  GSource          *expiry;      /* responder: forget when nothing happens */
  GCancellable     *attempt;     /* responder: the running attempts */
  GCancellable     *race_cancel; /* initiator: the connect race */
  NatkitSession    *session;     /* responder: the one secure session */
  gboolean          handshaking; /* responder */
  GPtrArray        *paths;       /* responder: the paths opened, NatkitPath */
  NatkitNatInfo    *local_nat;   /* what we know of our network, or NULL */
  NatkitNatInfo    *remote_nat;  /* what the peer said of its, or NULL */
  char             *pair;        /* "OURS/THEIRS" NAT types, or NULL */
} Entry;

/* Cancels and drops @cancellable (may be NULL). */
static void
cancel_and_clear (GCancellable **cancellable)
{
  if (*cancellable)
    {
      g_cancellable_cancel (*cancellable);
      g_clear_object (cancellable);
    }
}

/* Closes every path of @paths and drops the array (may be NULL). */
static void
close_paths (GPtrArray **paths)
{
  for (guint i = 0; *paths && i < (*paths)->len; i++)
    natkit_path_close (g_ptr_array_index (*paths, i));
  g_clear_pointer (paths, g_ptr_array_unref);
}

static void clear_source (GSource **source);

static void
channel_free (gpointer data)
{
  Channel *c = data;

  g_clear_signal_handler (&c->handler, c->signaling);
  g_clear_object (&c->signaling);
  g_free (c);
}

static void
entry_free (gpointer data)
{
  Entry *e = data;

  if (e->expiry)
    {
      g_source_destroy (e->expiry);
      g_source_unref (e->expiry);
    }
  cancel_and_clear (&e->attempt);
  cancel_and_clear (&e->race_cancel);
  close_paths (&e->paths);
  g_clear_object (&e->local_nat);
  g_clear_object (&e->remote_nat);
  g_free (e->pair);
  g_clear_object (&e->session);
  g_clear_weak_pointer (&e->connection);
  g_clear_object (&e->accept_task);
  g_clear_object (&e->signaling);
  g_strfreev (e->methods);
  g_free (e->session_id);
  g_free (e->peer_id);
  g_free (e);
}

static void
natkit_connector_finalize (GObject *object)
{
  NatkitConnector *self = NATKIT_CONNECTOR (object);

  g_clear_pointer (&self->breakers, g_hash_table_unref);
  _natkit_connector_shutdown (self);
  g_hash_table_unref (self->entries);
  g_hash_table_unref (self->channels);
  g_hash_table_unref (self->rendezvous);

  G_OBJECT_CLASS (_natkit_connector_parent_class)->finalize (object);
}

static void
_natkit_connector_class_init (NatkitConnectorClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_connector_finalize;
}

static void
_natkit_connector_init (NatkitConnector *self)
{
  self->breakers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->rendezvous = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            g_object_unref);
  self->channels = g_hash_table_new_full (NULL, NULL, NULL, channel_free);
  self->entries = g_hash_table_new_full (g_str_hash, g_str_equal, NULL,
                                         entry_free);
}

NatkitConnector *
_natkit_connector_new (NatkitManager *manager)
{
  NatkitConnector *self = g_object_new (NATKIT_TYPE_CONNECTOR, NULL);

  self->manager = manager;
  return self;
}

void
_natkit_connector_shutdown (NatkitConnector *self)
{
  GHashTableIter iter;
  gpointer value;
  g_autoptr(GPtrArray) connections = g_ptr_array_new_with_free_func (g_object_unref);

  if (self->shut_down)
    return;
  self->shut_down = TRUE;

  g_hash_table_iter_init (&iter, self->entries);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Entry *e = value;

      if (e->connection)
        g_ptr_array_add (connections, g_object_ref (e->connection));
    }
  for (guint i = 0; i < connections->len; i++)
    natkit_connection_close (g_ptr_array_index (connections, i));

  g_hash_table_remove_all (self->entries);
  g_hash_table_remove_all (self->channels);

  g_hash_table_iter_init (&iter, self->rendezvous);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    natkit_rendezvous_close (value);
  g_hash_table_remove_all (self->rendezvous);
}

/* natkit-server shares a TURN deployment: its servers join the settings
 * the TURN and ICE plugins read (fresh credentials replace the old) */
static void
turn_credentials_cb (NatkitRendezvous *rendezvous,
                     const char       *uri,
                     const char       *username,
                     const char       *password,
                     guint             ttl,
                     NatkitConnector  *self)
{
  g_autoptr(GError) error = NULL;

  if (!natkit_config_add_turn_server (natkit_manager_get_config (self->manager), uri,
                                      username, password, NULL, &error))
    g_debug ("ignoring TURN server %s from natkit-server: %s", uri, error->message);
}

NatkitRendezvous *
_natkit_connector_get_rendezvous (NatkitConnector  *self,
                                  const char       *server,
                                  GError          **error)
{
  NatkitRendezvous *rendezvous = g_hash_table_lookup (self->rendezvous, server);
  NatkitIdentity *identity;

  if (rendezvous)
    return rendezvous;

  identity = natkit_manager_get_identity (self->manager, error);
  if (!identity)
    return NULL;
  rendezvous = natkit_rendezvous_new (identity, server, error);
  if (!rendezvous)
    return NULL;
  g_signal_connect_object (rendezvous, "turn-credentials",
                           G_CALLBACK (turn_credentials_cb), self, 0);
  g_hash_table_insert (self->rendezvous, g_strdup (server), rendezvous);
  return rendezvous;
}

/* ---- signaling messages ------------------------------------------------- */

static void
send_done_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!natkit_signaling_send_finish (NATKIT_SIGNALING (source), res, &error))
    g_debug ("signaling message not delivered: %s", error->message);
}

static void
send_body (NatkitSignaling *signaling,
           const char      *peer_id,
           JsonObject      *body)
{
  g_autoptr(JsonNode) node = json_node_init_object (json_node_alloc (), body);
  g_autofree char *text = json_to_string (node, FALSE);

  natkit_signaling_send_async (signaling, peer_id, text, NULL, send_done_cb, NULL);
}

static JsonObject *
new_body (const char *session_id,
          const char *op)
{
  JsonObject *body = json_object_new ();

  json_object_set_int_member (body, "natkit", 1);
  json_object_set_string_member (body, "op", op);
  json_object_set_string_member (body, "session", session_id);
  return body;
}

void
_natkit_connector_send_op (NatkitConnector *self,
                           NatkitSignaling *signaling,
                           const char      *peer_id,
                           const char      *session_id,
                           const char      *op,
                           const char      *member,
                           const char      *value)
{
  g_autoptr(JsonObject) body = new_body (session_id, op);

  if (member)
    json_object_set_string_member (body, member, value);
  send_body (signaling, peer_id, body);
}

static JsonArray *
strv_to_array (const char * const *strv)
{
  JsonArray *array = json_array_new ();

  for (guint i = 0; strv && strv[i]; i++)
    json_array_add_string_element (array, strv[i]);
  return array;
}

static GStrv
array_to_strv (JsonObject *body,
               const char *member)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  JsonNode *node = json_object_get_member (body, member);
  JsonArray *array;

  if (node && JSON_NODE_HOLDS_ARRAY (node))
    {
      array = json_node_get_array (node);
      for (guint i = 0; i < json_array_get_length (array) && i < 32; i++)
        {
          JsonNode *el = json_array_get_element (array, i);

          if (JSON_NODE_HOLDS_VALUE (el) &&
              json_node_get_value_type (el) == G_TYPE_STRING &&
              strlen (json_node_get_string (el)) <= 64)
            g_strv_builder_add (builder, json_node_get_string (el));
        }
    }
  return g_strv_builder_end (builder);
}

static void
forget_entry (NatkitConnector *self,
              Entry           *e)
{
  g_hash_table_remove (self->entries, e->session_id);
}

void
_natkit_connector_forget (NatkitConnector *self,
                          const char      *session_id)
{
  g_hash_table_remove (self->entries, session_id);
}

/* Members of a peer's message, of the expected type or the default:
 * json-glib's getters fail an assertion on a member of another type. */
static const char *
member_string (JsonObject *body,
               const char *name,
               const char *fallback)
{
  JsonNode *node = json_object_get_member (body, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return fallback;
  return json_node_get_string (node);
}

static gint64
member_int (JsonObject *body,
            const char *name,
            gint64      fallback)
{
  JsonNode *node = json_object_get_member (body, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return fallback;
  return json_node_get_int (node);
}

/* The "nat" member of a connect or accept: what the peer says of its
 * network (NULL when absent or saying nothing we know). */
static NatkitNatInfo *
member_nat (JsonObject *body)
{
  JsonNode *node = json_object_get_member (body, "nat");

  if (!node || !JSON_NODE_HOLDS_OBJECT (node))
    return NULL;
  return _natkit_nat_info_from_summary (json_node_get_object (node));
}

static void
set_member_nat (JsonObject    *body,
                NatkitNatInfo *info)
{
  if (info)
    json_object_set_object_member (body, "nat", _natkit_nat_info_to_summary (info));
}

/* The history's key for this pair of networks, once both are known. */
static void
entry_set_remote_nat (Entry         *e,
                      NatkitNatInfo *remote)
{
  g_set_object (&e->remote_nat, remote);
  g_clear_pointer (&e->pair, g_free);
  if (e->local_nat && e->remote_nat &&
      natkit_nat_info_get_nat_type (e->local_nat) != NATKIT_NAT_TYPE_UNKNOWN &&
      natkit_nat_info_get_nat_type (e->remote_nat) != NATKIT_NAT_TYPE_UNKNOWN)
    e->pair = g_strdup_printf ("%s/%s",
                               _natkit_nat_type_nick (natkit_nat_info_get_nat_type (e->local_nat)),
                               _natkit_nat_type_nick (natkit_nat_info_get_nat_type (e->remote_nat)));
}

static const char *
session_pair (NatkitConnector *self,
              const char      *session_id)
{
  Entry *e = g_hash_table_lookup (self->entries, session_id);

  return e ? e->pair : NULL;
}

#define MAX_DECLINED_REASON 200

/* "declined": {"METHOD": "why it cannot work here"}, from the failures
 * usable_methods() wrote as "METHOD: why" */
static JsonObject *
declined_object (GPtrArray *failures)
{
  JsonObject *o = json_object_new ();

  for (guint i = 0; i < failures->len && i < 16; i++)
    {
      const char *f = g_ptr_array_index (failures, i);
      const char *colon = strstr (f, ": ");
      g_autofree char *method = NULL;
      g_autofree char *why = NULL;

      if (!colon)
        continue;
      method = g_strndup (f, colon - f);
      why = g_strdup (colon + 2);
      if (g_utf8_strlen (why, -1) > MAX_DECLINED_REASON)
        *g_utf8_offset_to_pointer (why, MAX_DECLINED_REASON) = '\0';
      json_object_set_string_member (o, method, why);
    }
  return o;
}

/* ---- the methods -------------------------------------------------------- */

static NatkitTraversalRequest *
make_request (NatkitConnector  *self,
              Entry            *e,
              NatkitRole        role)
{
  NatkitIdentity *identity = natkit_manager_get_identity (self->manager, NULL);
  NatkitTraversalRequest *request;

  /* the ID this node has on the channel (its identity's, unless the
   * application's channel says otherwise: the secure session decides) */
  request = natkit_traversal_request_new (natkit_signaling_get_local_peer_id (e->signaling),
                                          e->peer_id, role);
  natkit_traversal_request_set_session_id (request, e->session_id);
  natkit_traversal_request_set_signaling (request, e->signaling);
  if (NATKIT_IS_RENDEZVOUS (e->signaling))
    natkit_traversal_request_set_rendezvous (request, NATKIT_RENDEZVOUS (e->signaling));
  natkit_traversal_request_set_identity (request, identity);
  natkit_traversal_request_set_timeout (request, METHOD_TIMEOUT_MS);
  natkit_traversal_request_set_local_nat_info (request, e->local_nat);
  natkit_traversal_request_set_remote_nat_info (request, e->remote_nat);
  _natkit_traversal_request_set_manager (request, self->manager);
  natkit_traversal_request_set_config (request, natkit_manager_get_config (self->manager));

  /* STUN: natkit-server answers on its UDP port, then the configured ones */
  {
    g_autoptr(GStrvBuilder) stun = g_strv_builder_new ();
    g_auto(GStrv) servers = NULL;
    const char * const *configured =
      natkit_config_get_stun_servers (natkit_manager_get_config (self->manager));

    if (NATKIT_IS_RENDEZVOUS (e->signaling) &&
        natkit_rendezvous_get_udp_port (NATKIT_RENDEZVOUS (e->signaling)) != 0)
      {
        NatkitRendezvous *r = NATKIT_RENDEZVOUS (e->signaling);
        const char *host = natkit_rendezvous_get_host (r);

        /* and its second STUN port: two destinations tell how our NAT maps */
        guint16 ports[] = { natkit_rendezvous_get_udp_port (r),
                            _natkit_rendezvous_get_stun_port2 (r) };

        for (guint i = 0; i < G_N_ELEMENTS (ports) && ports[i] != 0; i++)
          {
            g_autofree char *server = strchr (host, ':') ?
              g_strdup_printf ("[%s]:%u", host, ports[i]) :
              g_strdup_printf ("%s:%u", host, ports[i]);

            g_strv_builder_add (stun, server);
          }
      }
    if (configured)
      g_strv_builder_addv (stun, (const char **) configured);
    servers = g_strv_builder_end (stun);
    natkit_traversal_request_set_stun_servers (request, (const char * const *) servers);
  }
  return request;
}

/* The traversal plugins that apply, in rank order; reasons for the rest
 * appended to @failures. */
static GPtrArray *
usable_methods (NatkitConnector     *self,
                Entry               *e,
                const char * const  *methods,
                NatkitRole           role,
                GPtrArray           *failures,
                GError             **error)
{
  g_autoptr(GPtrArray) infos = NULL;
  g_autoptr(NatkitTraversalRequest) request = NULL;
  g_autoptr(GStrvBuilder) known = g_strv_builder_new ();
  g_auto(GStrv) filtered = NULL;
  GPtrArray *names;

  /* the responder runs what the initiator offers and it has; names it does
   * not know are not an error */
  if (role == NATKIT_ROLE_RESPONDER && methods)
    {
      for (guint i = 0; methods[i]; i++)
        {
          NatkitPluginInfo *info = natkit_manager_get_plugin (self->manager, methods[i]);

          if (info && natkit_plugin_info_get_state (info) == NATKIT_PLUGIN_STATE_LOADED &&
              g_type_is_a (natkit_plugin_info_get_gtype (info), NATKIT_TYPE_TRAVERSAL))
            g_strv_builder_add (known, methods[i]);
        }
      filtered = g_strv_builder_end (known);
      methods = (const char * const *) filtered;
    }

  infos = _natkit_manager_list_traversals (self->manager, methods, error);
  if (!infos)
    return NULL;
  request = make_request (self, e, role);
  names = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < infos->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (infos, i);
      g_autoptr(NatkitTraversal) traversal =
        g_object_new (natkit_plugin_info_get_gtype (info), NULL);
      g_autoptr(GError) local_error = NULL;

      if (natkit_traversal_applies (traversal, request, &local_error))
        g_ptr_array_add (names, g_strdup (natkit_plugin_info_get_name (info)));
      else
        {
          g_debug ("%s does not apply: %s", natkit_plugin_info_get_name (info),
                   local_error->message);
          if (failures)
            g_ptr_array_add (failures, g_strdup_printf ("%s: %s",
                                                        natkit_plugin_info_get_name (info),
                                                        local_error->message));
        }
    }
  g_ptr_array_add (names, NULL);
  return names;
}

/* One traversal + (optionally) handshake: the unit both sides run. */

typedef struct
{
  NatkitConnector        *connector;
  NatkitTraversalRequest *request;
  NatkitPath             *path;
  char                   *method;
  GCancellable           *cancellable;
  gulong                  cancelled_id;
  GCancellable           *parent;
  GSource                *timeout;
  gboolean                timed_out;
} AttemptData;

static void
attempt_data_free (gpointer data)
{
  AttemptData *d = data;

  if (d->timeout)
    {
      g_source_destroy (d->timeout);
      g_source_unref (d->timeout);
    }
  if (d->parent)
    g_cancellable_disconnect (d->parent, d->cancelled_id);
  g_clear_object (&d->parent);
  g_clear_object (&d->cancellable);
  g_clear_object (&d->request);
  if (d->path)
    {
      natkit_path_close (d->path);
      g_object_unref (d->path);
    }
  g_clear_object (&d->connector);
  g_free (d->method);
  g_free (d);
}

static void
attempt_cancelled_cb (GCancellable *parent,
                      gpointer      user_data)
{
  g_cancellable_cancel (user_data);
}

static gboolean
attempt_grace_cb (gpointer user_data)
{
  AttemptData *d = user_data;

  g_debug ("%s gave no reason within %u ms of its deadline: cancelling it", d->method,
           LATE_REASON_GRACE_MS);
  g_cancellable_cancel (d->cancellable);
  return G_SOURCE_REMOVE;
}

/* The deadline: the attempt gets LATE_REASON_GRACE_MS more to report its
 * own error (its time limit is the same as ours, its timer may fire a
 * little later), then it is cancelled and told as "no path within …" */
static gboolean
attempt_timeout_cb (gpointer user_data)
{
  AttemptData *d = user_data;

  d->timed_out = TRUE;
  g_source_unref (d->timeout);
  d->timeout = g_timeout_source_new (LATE_REASON_GRACE_MS);
  g_source_set_callback (d->timeout, attempt_grace_cb, d, NULL);
  g_source_set_static_name (d->timeout, "[natkit] connect attempt grace");
  g_source_attach (d->timeout, g_main_context_get_thread_default ());
  return G_SOURCE_REMOVE;
}

static void
attempt_fail (GTask  *task,
              GError *error)
{
  AttemptData *d = g_task_get_task_data (task);

  /* cancelled by our deadline: no reason of its own; anything else that
   * came within the grace is the attempt's own, and says more */
  if (d->timed_out && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                               "no path within %u s",
                               natkit_traversal_request_get_timeout (d->request) / 1000);
      g_error_free (error);
      return;
    }
  g_task_return_error (task, error);
}

static void
attempt_path_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  AttemptData *d = g_task_get_task_data (task);
  GError *error = NULL;

  d->path = natkit_traversal_open_path_finish (NATKIT_TRAVERSAL (source), res, &error);
  if (!d->path)
    {
      attempt_fail (task, error);
      return;
    }
  g_debug ("%s opened a path to %s (%s → %s over %s)", d->method,
           natkit_traversal_request_get_remote_peer_id (d->request),
           natkit_path_get_local_address (d->path),
           natkit_path_get_remote_address (d->path),
           natkit_path_get_transport (d->path));
  g_task_return_pointer (task, g_steal_pointer (&d->path), g_object_unref);
}

/* Runs @method's traversal (the secure handshake on the path is the
 * caller's: one session per connection). Returns the path. */
static void
run_attempt (NatkitConnector        *self,
             NatkitTraversalRequest *request,
             const char             *method,
             GCancellable           *cancellable,
             GAsyncReadyCallback     callback,
             gpointer                user_data)
{
  g_autoptr(GTask) task = g_task_new (self, NULL, callback, user_data);
  g_autoptr(NatkitTraversal) traversal = NULL;
  g_autoptr(GError) error = NULL;
  NatkitPluginInfo *info;
  AttemptData *d;

  g_task_set_source_tag (task, run_attempt);
  d = g_new0 (AttemptData, 1);
  d->connector = g_object_ref (self);
  d->request = g_object_ref (request);
  d->method = g_strdup (method);
  d->cancellable = g_cancellable_new ();
  if (cancellable)
    {
      d->parent = g_object_ref (cancellable);
      d->cancelled_id = g_cancellable_connect (cancellable,
                                               G_CALLBACK (attempt_cancelled_cb),
                                               d->cancellable, NULL);
    }
  g_task_set_task_data (task, d, attempt_data_free);

  info = natkit_manager_get_plugin (self->manager, method);
  if (!info || natkit_plugin_info_get_state (info) != NATKIT_PLUGIN_STATE_LOADED ||
      !g_type_is_a (natkit_plugin_info_get_gtype (info), NATKIT_TYPE_TRAVERSAL))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                               "the traversal method “%s” is not available here",
                               method);
      return;
    }
  traversal = g_object_new (natkit_plugin_info_get_gtype (info), NULL);
  if (!natkit_traversal_applies (traversal, request, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  d->timeout = g_timeout_source_new (natkit_traversal_request_get_timeout (request));
  g_source_set_callback (d->timeout, attempt_timeout_cb, d, NULL);
  g_source_set_static_name (d->timeout, "[natkit] connect attempt timeout");
  g_source_attach (d->timeout, g_main_context_get_thread_default ());

  g_debug ("trying %s with %s (%s)", method,
           natkit_traversal_request_get_remote_peer_id (request),
           natkit_traversal_request_get_role (request) == NATKIT_ROLE_INITIATOR ?
             "initiator" : "responder");
  natkit_traversal_open_path_async (traversal, request, d->cancellable,
                                    attempt_path_cb, g_steal_pointer (&task));
}

static NatkitPath *
run_attempt_finish (NatkitConnector  *self,
                    GAsyncResult     *result,
                    GError          **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- the initiator ------------------------------------------------------ */

typedef struct
{
  NatkitConnector  *connector;   /* the task's source object */
  char             *session_id;  /* to look the entry up again */
  char             *peer_address;
  GStrv             requested;
  GPtrArray        *failures;    /* "METHOD: REASON" */
  char             *joined;
  GStrv             order;       /* reopen: the methods in the order to try */
  gint64            started;
  guint             next;
  gboolean          reopen;
  GSource          *accept_timeout;
} ConnectData;

static void
connect_data_free (gpointer data)
{
  ConnectData *d = data;

  if (d->accept_timeout)
    {
      g_source_destroy (d->accept_timeout);
      g_source_unref (d->accept_timeout);
    }
  g_free (d->session_id);
  g_free (d->peer_address);
  g_strfreev (d->requested);
  g_ptr_array_unref (d->failures);
  g_free (d->joined);
  g_strfreev (d->order);
  g_free (d);
}

/* "a: why; b: why", for messages; lives as long as @d */
static const char *
join_failures (ConnectData *d)
{
  g_free (d->joined);
  g_ptr_array_add (d->failures, NULL);
  d->joined = g_strjoinv ("; ", (char **) d->failures->pdata);
  g_ptr_array_remove_index (d->failures, d->failures->len - 1);
  return d->joined;
}

static Entry *
lookup_entry (NatkitConnector *self,
              const char      *session_id)
{
  return g_hash_table_lookup (self->entries, session_id);
}

static void try_next_method (GTask *task);
static NatkitCost method_cost (NatkitConnector *self, const char *method);
static NatkitCost path_cost (NatkitConnector *self, NatkitPath *path);
static void upgrade_later (NatkitConnector *self, Entry *e, NatkitCost cost);

static void
connect_fail (GTask  *task,
              GError *error)
{
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  Entry *e = lookup_entry (self, d->session_id);

  if (e && !d->reopen && !e->connection)
    forget_entry (self, e);
  g_task_return_error (task, error);
}

static void
method_done_cb (GObject      *source,
                GAsyncResult *res,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPath) path = run_attempt_finish (self, res, &error);
  Entry *e = lookup_entry (self, d->session_id);
  const char *method;

  if (!e)
    {
      if (path)
        natkit_path_close (path);
      connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                       "the connection attempt was abandoned"));
      return;
    }
  method = (d->order ? d->order : e->methods)[d->next - 1];

  if (!path)
    {
      if (g_task_return_error_if_cancelled (task))
        {
          if (!d->reopen && !e->connection)
            forget_entry (self, e);
          return;
        }
      g_debug ("%s to %s failed: %s", method, e->peer_id, error->message);
      _natkit_manager_emit_progress (self->manager, e->session_id, e->peer_id,
                                     "attempt-failed", method, error->message);
      g_ptr_array_add (d->failures, g_strdup_printf ("%s: %s", method, error->message));
          try_next_method (g_steal_pointer (&task));
      return;
    }

  /* only a reopen (recovery) walks the methods one by one; a fresh
   * connect races them (race_start) */
  g_assert (d->reopen);
  /* recovered onto a costlier path (the relay): the cheaper methods are
   * tried again later, as after a relayed connect */
  if (e->connection)
    upgrade_later (self, e, path_cost (self, path));
  g_task_return_pointer (task, g_steal_pointer (&path), g_object_unref);
}

static void
try_next_method (GTask *task)
{
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  Entry *e = lookup_entry (self, d->session_id);
  g_autoptr(NatkitTraversalRequest) request = NULL;
  const char *method;

  if (!e)
    {
      connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                       "the connection attempt was abandoned"));
      g_object_unref (task);
      return;
    }

  if (!e->methods || !(d->order ? d->order : e->methods)[d->next])
    {
      connect_fail (task,
                    g_error_new (NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                                 "could not reach %s by any method: %s",
                                 e->peer_id,
                                 d->failures->len ? join_failures (d) :
                                   "no method both peers can run"));
      g_object_unref (task);
      return;
    }

  method = (d->order ? d->order : e->methods)[d->next++];
  _natkit_connector_send_op (self, e->signaling, e->peer_id, e->session_id,
                             "attempt", "method", method);
  _natkit_manager_emit_progress (self->manager, e->session_id, e->peer_id, "attempt",
                                 method, NULL);
  request = make_request (self, e, NATKIT_ROLE_INITIATOR);
  run_attempt (self, request, method, g_task_get_cancellable (task),
               method_done_cb, task);
}


static char *
breaker_key (Entry      *e,
             const char *method)
{
  const char *server = NATKIT_IS_RENDEZVOUS (e->signaling) ?
    natkit_rendezvous_get_server (NATKIT_RENDEZVOUS (e->signaling)) : "";

  return g_strdup_printf ("%s@%s", method, server);
}

static void
breaker_record (NatkitConnector *self,
                Entry           *e,
                const char      *method,
                gboolean         success)
{
  g_autofree char *key = NULL;
  Breaker *b;

  if (!e)
    return;
  key = breaker_key (e, method);
  b = g_hash_table_lookup (self->breakers, key);
  if (!b)
    {
      b = g_new0 (Breaker, 1);
      g_hash_table_insert (self->breakers, g_strdup (key), b);
    }
  if (success)
    {
      b->failures = 0;
      b->open_until = 0;
      return;
    }
  if (++b->failures >= BREAKER_FAILURES && b->open_until == 0)
    {
      b->open_until = g_get_monotonic_time () + BREAKER_OPEN_S * G_USEC_PER_SEC;
      g_debug ("%s failed %u times in a row: it starts after the relay and is "
               "not retried for %d s", key, b->failures, BREAKER_OPEN_S);
    }
}

/* Whether @method's breaker is open (it keeps failing, with every peer). */
static gboolean
breaker_open (NatkitConnector *self,
              Entry           *e,
              const char      *method)
{
  g_autofree char *key = NULL;
  Breaker *b;

  if (!e)
    return FALSE;
  key = breaker_key (e, method);
  b = g_hash_table_lookup (self->breakers, key);
  if (!b || b->open_until == 0)
    return FALSE;
  if (g_get_monotonic_time () >= b->open_until)
    {
      /* half open: one more try decides */
      b->open_until = 0;
      b->failures = BREAKER_FAILURES - 1;
      return FALSE;
    }
  return TRUE;
}

/* ---- the race ----------------------------------------------------------- */

/* A connect runs the agreed methods at once, Happy Eyeballs style (RFC
 * 8305): the first at once, the next ones timers.stagger apart, a relay no
 * later than the second slot (the safety net). Every method only opens a
 * path; the one secure session runs its handshake on the first path that
 * opens (others that open meanwhile wait). Once connected, the attempts
 * that could only give a path as costly as the winner's are cancelled;
 * cheaper ones (direct while the relay won) go on, and the first that
 * opens takes over the live connection (an upgrade), the session
 * unbroken. docs/connections.md. */

typedef struct _Race Race;

typedef struct
{
  Race         *race;
  char         *method;
  NatkitCost    cost;
  GCancellable *cancellable;
} RaceAttempt;

struct _Race
{
  gint              refs;
  NatkitConnector  *connector;
  char             *session_id;
  GTask            *task;            /* until connected or failed */
  NatkitSession    *session;
  GStrv             methods;         /* in launch order */
  guint             next;
  GSource          *stagger;
  GPtrArray        *attempts;        /* RaceAttempt, running */
  GPtrArray        *standby;         /* NatkitPath, opened during the handshake */
  NatkitPath       *handshake_path;
  char             *handshake_method;
  GCancellable     *cancellable;     /* everything of this race */
  NatkitConnection *connection;      /* weak, once connected */
  NatkitCost        winner_cost;
  GSource          *upgrade_timer;   /* retries the cheaper methods */
  guint             upgrade_ms;
};

/* a relayed connection retries the direct methods this often, doubling */
#define UPGRADE_FIRST_MS  1000
#define UPGRADE_MAX_MS    60000

static Race *
race_ref (Race *race)
{
  race->refs++;
  return race;
}

static void
race_unref (Race *race)
{
  if (--race->refs > 0)
    return;
  clear_source (&race->stagger);
  clear_source (&race->upgrade_timer);
  close_paths (&race->standby);
  g_clear_pointer (&race->attempts, g_ptr_array_unref);
  g_clear_object (&race->handshake_path);
  g_free (race->handshake_method);
  g_clear_object (&race->session);
  g_clear_object (&race->cancellable);
  g_clear_object (&race->task);
  g_clear_weak_pointer (&race->connection);
  g_strfreev (race->methods);
  g_free (race->session_id);
  g_object_unref (race->connector);
  g_free (race);
}

static NatkitCost
method_cost (NatkitConnector *self,
             const char      *method)
{
  NatkitPluginInfo *info = natkit_manager_get_plugin (self->manager, method);
  g_autoptr(NatkitTraversal) traversal = NULL;

  if (!info || natkit_plugin_info_get_state (info) != NATKIT_PLUGIN_STATE_LOADED)
    return NATKIT_COST_RELAYED;
  traversal = g_object_new (natkit_plugin_info_get_gtype (info), NULL);
  return natkit_traversal_get_cost (traversal);
}

/* What a path that opened costs: its method's cost, unless the path says
 * it went through a relay after all (ICE on a TURN candidate) */
static NatkitCost
path_cost (NatkitConnector *self,
           NatkitPath      *path)
{
  if (natkit_path_get_relayed (path))
    return NATKIT_COST_RELAYED;
  return natkit_path_get_method (path) ? method_cost (self, natkit_path_get_method (path))
                                       : NATKIT_COST_RELAYED;
}

static const char *
cost_words (NatkitCost cost)
{
  switch (cost)
    {
    case NATKIT_COST_DIRECT:
      return "direct";
    case NATKIT_COST_MAPPED:
      return "direct through a mapped port";
    default:
      return "relayed";
    }
}

/* Whether the race is over for good (its connection ended, or the manager
 * went away: then nothing may touch the manager any more). */
NatkitCost
_natkit_connector_method_cost (NatkitConnector *self,
                               const char      *method)
{
  return method_cost (self, method);
}

NatkitCost
_natkit_connector_path_cost (NatkitConnector *self,
                             NatkitPath      *path)
{
  return path_cost (self, path);
}

static gboolean
race_ended (Race *race)
{
  return race->connector->shut_down || g_cancellable_is_cancelled (race->cancellable);
}

static void race_launch_next (Race *race);
static void race_handshake (Race *race, NatkitPath *path);
static void race_schedule_upgrade (Race *race);

/* Fails the connect if nothing is left that could still succeed. */
static void
race_check_exhausted (Race *race)
{
  ConnectData *d;
  GTask *task;

  if (!race->task || race->attempts->len > 0 || race->handshake_path ||
      race->standby->len > 0 || race->methods[race->next] != NULL)
    return;
  task = g_steal_pointer (&race->task);
  d = g_task_get_task_data (task);
  g_cancellable_cancel (race->cancellable);
  connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                                   "could not reach %s by any method: %s",
                                   _natkit_session_get_peer_id (race->session),
                                   d->failures->len ? join_failures (d) :
                                     "no method both peers can run"));
  g_object_unref (task);
}

static void
race_add_failure (Race       *race,
                  const char *method,
                  const char *why)
{
  ConnectData *d;

  if (!race->task)
    {
      g_debug ("%s (a possible upgrade) did not work: %s", method, why);
      return;
    }
  d = g_task_get_task_data (race->task);
  g_ptr_array_add (d->failures, g_strdup_printf ("%s: %s", method, why));
}

/* Cancels the attempts that cannot beat @cost. */
static void
race_prune (Race       *race,
            NatkitCost  cost)
{
  for (guint i = 0; i < race->attempts->len; i++)
    {
      RaceAttempt *ra = g_ptr_array_index (race->attempts, i);

      if (ra->cost >= cost)
        g_cancellable_cancel (ra->cancellable);
    }
}

static void
race_connected (Race       *race,
                NatkitPath *path,
                const char *method)
{
  NatkitConnector *self = race->connector;
  g_autoptr(GTask) task = g_steal_pointer (&race->task);
  ConnectData *d = g_task_get_task_data (task);
  Entry *e = lookup_entry (self, race->session_id);
  NatkitConfig *config = natkit_manager_get_config (self->manager);
  NatkitConnection *connection;
  NatkitPath *better = NULL;
  NatkitCost better_cost;

  if (!e || self->shut_down)
    {
      natkit_path_close (path);
      connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                       "the connection attempt was abandoned"));
      return;
    }
  race->winner_cost = path_cost (self, path);
  race_prune (race, race->winner_cost);

  if (!e)
    {
      natkit_path_close (path);
      connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                       "the connection attempt was abandoned"));
      return;
    }
  connection = _natkit_connection_new (self, e->signaling, race->session, path,
                                       e->peer_id, d->peer_address, e->session_id,
                                       NATKIT_ROLE_INITIATOR, e->flags,
                                       natkit_config_get_keepalive_interval (config),
                                       natkit_config_get_connect_timeout (config) * 2,
                                       g_get_monotonic_time () - d->started);
  g_set_weak_pointer (&e->connection, connection);
  g_set_weak_pointer (&race->connection, connection);
  g_ptr_array_add (d->failures, NULL);
  _natkit_connection_set_failures (connection, (const char * const *) d->failures->pdata);
  _natkit_connection_set_nat_info (connection, e->local_nat, e->remote_nat);
  g_ptr_array_remove_index (d->failures, d->failures->len - 1);
  g_debug ("connected to %s via %s in %" G_GINT64_FORMAT " ms", e->peer_id, method,
           (g_get_monotonic_time () - d->started) / 1000);
  _natkit_history_record (_natkit_manager_get_history (self->manager), e->peer_id,
                          e->pair, method, TRUE, g_get_monotonic_time () - d->started, NULL);
  _natkit_manager_record_outcome (self->manager, method, TRUE,
                                  natkit_connection_get_connect_time (connection), NULL);
  breaker_record (self, e, method, TRUE);

  /* a cheaper path that opened during the handshake takes over at once */
  better_cost = race->winner_cost;
  for (guint i = 0; i < race->standby->len; i++)
    {
      NatkitPath *p = g_ptr_array_index (race->standby, i);
      NatkitCost c = path_cost (self, p);

      if (c < better_cost)
        {
          better = p;
          better_cost = c;
        }
    }
  if (better)
    g_object_ref (better);
  for (guint i = 0; i < race->standby->len; i++)
    if (g_ptr_array_index (race->standby, i) != better)
      natkit_path_close (g_ptr_array_index (race->standby, i));
  g_ptr_array_set_size (race->standby, 0);

  g_task_return_pointer (task, connection, g_object_unref);
  if (!better)
    race_schedule_upgrade (race);

  if (better)
    {
      g_autofree char *reason = g_strdup_printf ("a %s path (%s) works",
                                                 cost_words (better_cost),
                                                 natkit_path_get_method (better));

      race->winner_cost = better_cost;
      race_prune (race, better_cost);
      if (race->connection)
        _natkit_connection_upgrade_path (race->connection, better, reason);
      else
        natkit_path_close (better);
      g_object_unref (better);
    }
}

static void
race_handshake_cb (GObject      *source,
                   GAsyncResult *res,
                   gpointer      user_data)
{
  Race *race = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPath) path = g_steal_pointer (&race->handshake_path);
  g_autofree char *method = g_steal_pointer (&race->handshake_method);

  if (!race->task)
    {
      if (path)
        natkit_path_close (path);
      race_unref (race);
      return;
    }
  if (!_natkit_session_handshake_finish (NATKIT_SESSION (source), res, &error))
    {
      GTask *task;

      if (path)
        natkit_path_close (path);
      /* a peer that is not who it claims ends the connect: no other
       * method can make it the right peer */
      task = g_steal_pointer (&race->task);
      g_cancellable_cancel (race->cancellable);
      if (g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY) ||
          g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        connect_fail (task, g_steal_pointer (&error));
      else
        {
          ConnectData *d = g_task_get_task_data (task);

          g_ptr_array_add (d->failures, g_strdup_printf ("%s: %s", method, error->message));
          connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                                           "could not reach %s: %s",
                                           _natkit_session_get_peer_id (race->session),
                                           join_failures (d)));
        }
      g_object_unref (task);
      race_unref (race);
      return;
    }
  race_connected (race, path, method);
  race_unref (race);
}

static void
race_handshake (Race       *race,
                NatkitPath *path)
{
  race->handshake_path = g_object_ref (path);
  race->handshake_method = g_strdup (natkit_path_get_method (path));
  _natkit_session_handshake_async (race->session, path, HANDSHAKE_TIMEOUT_MS,
                                   race->cancellable, race_handshake_cb,
                                   race_ref (race));
}

static void race_launch (Race *race, const char *method);

static gboolean
race_upgrade_cb (gpointer user_data)
{
  Race *race = user_data;

  g_clear_pointer (&race->upgrade_timer, g_source_unref);
  if (!race->connection ||
      natkit_connection_get_state (race->connection) == NATKIT_CONNECTION_STATE_CLOSED ||
      natkit_connection_get_state (race->connection) == NATKIT_CONNECTION_STATE_FAILED ||
      race_ended (race))
    return G_SOURCE_REMOVE;
  for (guint i = 0; race->methods[i]; i++)
    if (method_cost (race->connector, race->methods[i]) < race->winner_cost &&
        !breaker_open (race->connector, lookup_entry (race->connector, race->session_id),
                       race->methods[i]))
      race_launch (race, race->methods[i]);
  race_schedule_upgrade (race);
  return G_SOURCE_REMOVE;
}

/* Connected over a costlier path and every cheaper attempt failed: try
 * them again later, backing off, for as long as the connection lives. */
static void
race_schedule_upgrade (Race *race)
{
  if (!race->connection || race->upgrade_timer || race_ended (race))
    return;
  for (guint i = 0; i < race->attempts->len; i++)
    if (((RaceAttempt *) g_ptr_array_index (race->attempts, i))->cost < race->winner_cost)
      return;   /* one is still running */
  for (guint i = 0; race->methods[i]; i++)
    if (method_cost (race->connector, race->methods[i]) < race->winner_cost)
      {
        race->upgrade_ms = race->upgrade_ms ? MIN (race->upgrade_ms * 2, UPGRADE_MAX_MS)
                                            : UPGRADE_FIRST_MS;
        g_debug ("trying the direct methods to %s again in %u ms",
                 _natkit_session_get_peer_id (race->session), race->upgrade_ms);
        race->upgrade_timer = g_timeout_source_new (race->upgrade_ms);
        g_source_set_callback (race->upgrade_timer, race_upgrade_cb, race_ref (race),
                               (GDestroyNotify) race_unref);
        g_source_set_static_name (race->upgrade_timer, "[natkit] upgrade retry");
        g_source_attach (race->upgrade_timer, g_main_context_get_thread_default ());
        return;
      }
}

static void
race_attempt_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  RaceAttempt *ra = user_data;
  Race *race = ra->race;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPath) path = run_attempt_finish (race->connector, res, &error);

  g_ptr_array_remove (race->attempts, ra);   /* frees @ra's cancellable */
  /* what the path that opened costs (ICE may have landed on a relay) */
  if (path && !race->connector->shut_down)
    ra->cost = path_cost (race->connector, path);

  if (race->connector->shut_down)
    {
      if (path)
        natkit_path_close (path);
    }
  else if (!path)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_debug ("%s to %s failed: %s", ra->method, race->session_id, error->message);
          race_add_failure (race, ra->method, error->message);
          _natkit_manager_emit_progress (race->connector->manager, race->session_id,
                                         _natkit_session_get_peer_id (race->session),
                                         "attempt-failed", ra->method, error->message);
          _natkit_history_record (_natkit_manager_get_history (race->connector->manager),
                                  _natkit_session_get_peer_id (race->session),
                                  session_pair (race->connector, race->session_id),
                                  ra->method, FALSE, 0, error->message);
          _natkit_manager_record_outcome (race->connector->manager, ra->method, FALSE, -1,
                                          error->message);
          breaker_record (race->connector, lookup_entry (race->connector, race->session_id),
                          ra->method, FALSE);
        }
      race_check_exhausted (race);
      if (!race->task && ra->cost < race->winner_cost &&
          !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        race_schedule_upgrade (race);
    }
  else if (race->task)
    {
      /* not connected yet */
      if (!race->handshake_path && !_natkit_session_is_established (race->session))
        race_handshake (race, path);
      else if (race->handshake_path && !_natkit_session_is_established (race->session) &&
               ra->cost < path_cost (race->connector, race->handshake_path))
        {
          /* a cheaper path while the handshake still runs (on a relay whose
           * far end may still be attaching): the handshake's next flights
           * go there; the costlier path stands by */
          g_debug ("the handshake with %s moves from %s to %s",
                   _natkit_session_get_peer_id (race->session), race->handshake_method,
                   ra->method);
          g_ptr_array_add (race->standby, g_steal_pointer (&race->handshake_path));
          race->handshake_path = g_object_ref (path);
          g_free (race->handshake_method);
          race->handshake_method = g_strdup (ra->method);
          _natkit_session_set_path (race->session, path);
        }
      else
        g_ptr_array_add (race->standby, g_object_ref (path));
    }
  else if (race->connection && ra->cost < race->winner_cost)
    {
      g_autofree char *reason = g_strdup_printf ("a %s path (%s) works",
                                                 cost_words (ra->cost), ra->method);

      race->winner_cost = ra->cost;
      race_prune (race, ra->cost);
      _natkit_history_record (_natkit_manager_get_history (race->connector->manager),
                              _natkit_session_get_peer_id (race->session),
                              session_pair (race->connector, race->session_id),
                              ra->method, TRUE, 0, NULL);
      _natkit_manager_record_outcome (race->connector->manager, ra->method, TRUE, -1, NULL);
      breaker_record (race->connector, lookup_entry (race->connector, race->session_id),
                      ra->method, TRUE);
      _natkit_connection_upgrade_path (race->connection, path, reason);
    }
  else
    natkit_path_close (path);

  g_free (ra->method);
  g_free (ra);
  race_unref (race);
}

static void
race_attempt_free_cancellable (gpointer data)
{
  RaceAttempt *ra = data;

  g_clear_object (&ra->cancellable);
}

static void
race_launch (Race       *race,
             const char *method)
{
  NatkitConnector *self = race->connector;
  Entry *e = lookup_entry (self, race->session_id);
  g_autoptr(NatkitTraversalRequest) request = NULL;
  RaceAttempt *ra;

  if (!e)
    return;
  ra = g_new0 (RaceAttempt, 1);
  ra->race = race_ref (race);
  ra->method = g_strdup (method);
  ra->cost = method_cost (self, method);
  ra->cancellable = g_cancellable_new ();
  g_ptr_array_add (race->attempts, ra);
  g_signal_connect_object (race->cancellable, "cancelled",
                           G_CALLBACK (g_cancellable_cancel), ra->cancellable,
                           G_CONNECT_SWAPPED);
  _natkit_connector_send_op (self, e->signaling, e->peer_id, e->session_id,
                             "attempt", "method", method);
  request = make_request (self, e, NATKIT_ROLE_INITIATOR);
  g_debug ("racing %s to %s", method, e->peer_id);
  _natkit_manager_record_attempt (self->manager, method);
  _natkit_manager_emit_progress (self->manager, e->session_id, e->peer_id, "attempt",
                                 method, NULL);
  run_attempt (self, request, method, ra->cancellable, race_attempt_cb, ra);
}

static gboolean
race_stagger_cb (gpointer user_data)
{
  Race *race = user_data;

  if (race_ended (race))
    {
      g_clear_pointer (&race->stagger, g_source_unref);
      return G_SOURCE_REMOVE;
    }

  race_launch_next (race);
  if (race->methods[race->next] == NULL)
    {
      g_clear_pointer (&race->stagger, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static void
race_launch_next (Race *race)
{
  const char *method;

  if (race_ended (race))
    return;
  while ((method = race->methods[race->next]) != NULL)
    {
      race->next++;
      /* once connected, only what could beat the winner is worth it */
      if (!race->task && method_cost (race->connector, method) >= race->winner_cost)
        continue;
      race_launch (race, method);
      return;
    }
  race_check_exhausted (race);
}

static void
race_start (GTask *task)
{
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  Entry *e = lookup_entry (self, d->session_id);
  g_autoptr(GPtrArray) order = g_ptr_array_new ();
  Race *race;
  gint relay = -1;

  if (!e->methods || !e->methods[0])
    {
      connect_fail (task,
                    g_error_new (NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                                 "could not reach %s by any method: %s",
                                 e->peer_id,
                                 d->failures->len ? join_failures (d) :
                                   "no method both peers can run"));
      g_object_unref (task);
      return;
    }

  /* rank order, but the first relayed method no later than second */
  for (guint i = 0; e->methods[i]; i++)
    {
      if (relay < 0 && i > 1 && method_cost (self, e->methods[i]) == NATKIT_COST_RELAYED)
        {
          relay = i;
          g_ptr_array_insert (order, 1, e->methods[i]);
        }
      else
        g_ptr_array_add (order, e->methods[i]);
    }

  /* then the history with this peer: a method that keeps failing goes
   * after the first relayed one; the one that worked last goes first */
  {
    NatkitHistory *history = _natkit_manager_get_history (self->manager);
    const char *last = _natkit_history_last_method (history, e->peer_id, e->pair);
    g_autoptr(GPtrArray) failing = g_ptr_array_new ();
    guint relay_at = 0;

    for (guint i = 0; i < order->len; )
      if (_natkit_history_keeps_failing (history, e->peer_id, e->pair,
                                         g_ptr_array_index (order, i)) ||
          breaker_open (self, e, g_ptr_array_index (order, i)))
        g_ptr_array_add (failing, g_ptr_array_steal_index (order, i));
      else
        i++;
    while (relay_at < order->len &&
           method_cost (self, g_ptr_array_index (order, relay_at)) != NATKIT_COST_RELAYED)
      relay_at++;
    for (guint i = 0; i < failing->len; i++)
      g_ptr_array_insert (order, MIN (relay_at + 1 + i, order->len),
                          g_ptr_array_index (failing, i));
    for (guint i = 0; last && i < order->len; i++)
      if (g_str_equal (g_ptr_array_index (order, i), last) && i > 0 &&
          !_natkit_history_keeps_failing (history, e->peer_id, e->pair, last))
        {
          gpointer m = g_ptr_array_steal_index (order, i);

          g_ptr_array_insert (order, 0, m);
          break;
        }
    if (failing->len > 0 || last)
      g_debug ("history with %s: last worked %s; %u method(s) keep failing",
               e->peer_id, last ? last : "(none)", failing->len);
  }
  g_ptr_array_add (order, NULL);

  race = g_new0 (Race, 1);
  race->refs = 1;
  race->connector = g_object_ref (self);
  race->session_id = g_strdup (d->session_id);
  race->task = task;   /* takes the caller's reference */
  race->methods = g_strdupv ((char **) order->pdata);
  race->attempts = g_ptr_array_new_with_free_func (race_attempt_free_cancellable);
  race->standby = g_ptr_array_new_with_free_func (g_object_unref);
  race->cancellable = g_cancellable_new ();
  race->winner_cost = NATKIT_COST_RELAYED + 1;
  race->session = _natkit_session_new (natkit_manager_get_identity (self->manager, NULL),
                                       e->peer_id, NATKIT_ROLE_INITIATOR);
  if (g_task_get_cancellable (task))
    g_signal_connect_object (g_task_get_cancellable (task), "cancelled",
                             G_CALLBACK (g_cancellable_cancel), race->cancellable,
                             G_CONNECT_SWAPPED);
  /* the entry ends the race when the connection goes */
  g_set_object (&e->race_cancel, race->cancellable);

  race_launch_next (race);
  if (race->methods[race->next] != NULL)
    {
      race->stagger = g_timeout_source_new (natkit_config_get_stagger (natkit_manager_get_config (self->manager)));
      g_source_set_callback (race->stagger, race_stagger_cb, race,
                             (GDestroyNotify) race_unref);
      race_ref (race);
      g_source_set_static_name (race->stagger, "[natkit] connect race");
      g_source_attach (race->stagger, g_main_context_get_thread_default ());
    }
  race_unref (race);
}

/* A live connection on a path of @cost: retry the cheaper methods in the
 * background (with backoff) and move onto the first that works. */
static void
upgrade_later (NatkitConnector *self,
               Entry           *e,
               NatkitCost       cost)
{
  Race *race;

  if (!e->connection || !e->methods)
    return;
  race = g_new0 (Race, 1);
  race->refs = 1;
  race->connector = g_object_ref (self);
  race->session_id = g_strdup (e->session_id);
  race->methods = g_strdupv (e->methods);
  race->next = g_strv_length (e->methods);   /* nothing left to launch now */
  race->attempts = g_ptr_array_new_with_free_func (race_attempt_free_cancellable);
  race->standby = g_ptr_array_new_with_free_func (g_object_unref);
  race->cancellable = g_cancellable_new ();
  race->winner_cost = cost;
  race->session = g_object_ref (_natkit_connection_get_session (e->connection));
  g_set_weak_pointer (&race->connection, e->connection);
  /* one upgrade loop per connection: the newest */
  if (e->race_cancel)
    g_cancellable_cancel (e->race_cancel);
  g_set_object (&e->race_cancel, race->cancellable);
  race_schedule_upgrade (race);
  race_unref (race);
}

static void
accepted (GTask      *task,
          JsonObject *body)
{
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  Entry *e = lookup_entry (self, d->session_id);
  g_auto(GStrv) theirs = array_to_strv (body, "methods");
  g_autoptr(GStrvBuilder) agreed = g_strv_builder_new ();
  g_auto(GStrv) agreed_methods = NULL;
  g_autoptr(GPtrArray) names = NULL;
  JsonNode *declined = json_object_get_member (body, "declined");

  clear_source (&d->accept_timeout);
  {
    g_autoptr(NatkitNatInfo) remote = member_nat (body);

    entry_set_remote_nat (e, remote);
  }
  for (guint i = 0; e->methods && e->methods[i]; i++)
    if (g_strv_contains ((const char * const *) theirs, e->methods[i]))
      g_strv_builder_add (agreed, e->methods[i]);
    else
      {
        const char *why = NULL;

        if (declined && JSON_NODE_HOLDS_OBJECT (declined))
          why = member_string (json_node_get_object (declined), e->methods[i], NULL);
        if (why)
          g_ptr_array_add (d->failures, g_strdup_printf ("%s: the peer says %.*s",
                                                         e->methods[i],
                                                         MAX_DECLINED_REASON, why));
        else
          g_ptr_array_add (d->failures, g_strdup_printf ("%s: the peer cannot run it",
                                                         e->methods[i]));
      }
  agreed_methods = g_strv_builder_end (agreed);
  /* now that both networks are known, ask the plugins again */
  names = usable_methods (self, e, (const char * const *) agreed_methods,
                          NATKIT_ROLE_INITIATOR, d->failures, NULL);
  g_strfreev (e->methods);
  e->methods = names ? g_strdupv ((char **) names->pdata) : g_steal_pointer (&agreed_methods);
  g_debug ("%s accepted; methods to try: %s", e->peer_id,
           e->methods[0] ? e->methods[0] : "(none)");
  race_start (task);
}

static void
clear_source (GSource **source)
{
  if (*source)
    {
      g_source_destroy (*source);
      g_source_unref (*source);
      *source = NULL;
    }
}

static gboolean
accept_timeout_cb (gpointer user_data)
{
  ConnectData *d = user_data;
  Entry *e = lookup_entry (d->connector, d->session_id);
  g_autoptr(GTask) task = NULL;

  if (!e || !e->accept_task)
    return G_SOURCE_REMOVE;
  task = g_steal_pointer (&e->accept_task);
  connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                   "peer %s did not answer within %d s: is it "
                                   "running and listening (nat-tool listen)?",
                                   e->peer_id, ACCEPT_TIMEOUT_MS / 1000));
  return G_SOURCE_REMOVE;
}

static void
connect_sent_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  Entry *e;

  if (natkit_signaling_send_finish (NATKIT_SIGNALING (source), res, &error))
    return;  /* now wait for accept */

  e = lookup_entry (self, d->session_id);
  if (!e || !e->accept_task)
    return;
  g_clear_object (&e->accept_task);
  if (g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND))
    connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                                     "peer %s is not online: %s", e->peer_id,
                                     error->message));
  else
    connect_fail (task, g_error_new (NATKIT_ERROR,
                                     error->domain == NATKIT_ERROR ? error->code :
                                       NATKIT_ERROR_FAILED,
                                     "cannot signal to peer %s: %s", e->peer_id,
                                     error->message));
}

static void ensure_channel (NatkitConnector *self,
                            NatkitSignaling *signaling);

static void
start_connect (GTask           *task,
               NatkitSignaling *signaling,
               const char      *peer_id,
               NatkitConnectFlags flags)
{
  NatkitConnector *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(JsonObject) body = NULL;
  guint8 raw[SESSION_ID_BYTES];
  GString *sid = g_string_new (NULL);
  Entry *e;

  for (guint i = 0; i < SESSION_ID_BYTES; i++)
    {
      raw[i] = g_random_int_range (0, 256);
      g_string_append_printf (sid, "%02x", raw[i]);
    }
  d->session_id = g_string_free (sid, FALSE);

  e = g_new0 (Entry, 1);
  e->paths = g_ptr_array_new_with_free_func (g_object_unref);
  e->connector = self;
  e->session_id = g_strdup (d->session_id);
  e->peer_id = g_strdup (peer_id);
  e->role = NATKIT_ROLE_INITIATOR;
  e->signaling = g_object_ref (signaling);
  e->flags = flags;
  g_set_object (&e->local_nat, natkit_manager_get_nat_info (self->manager));
  g_hash_table_insert (self->entries, e->session_id, e);
  ensure_channel (self, signaling);

  names = usable_methods (self, e, (const char * const *) d->requested,
                          NATKIT_ROLE_INITIATOR, d->failures, &error);
  if (!names)
    {
      connect_fail (task, g_steal_pointer (&error));
      return;
    }
  e->methods = g_strdupv ((char **) names->pdata);
  if (!e->methods[0])
    {
      connect_fail (task,
                    g_error_new (NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                                 "no traversal method can reach %s: %s", peer_id,
                                 d->failures->len ? join_failures (d) :
                                   "no traversal plugin is loaded (run "
                                   "“nat-tool plugins” to see why)"));
      return;
    }

  body = new_body (e->session_id, "connect");
  json_object_set_string_member (body, "mode",
                                 (flags & NATKIT_CONNECT_DATAGRAM) ? "datagram" : "stream");
  json_object_set_array_member (body, "methods",
                                strv_to_array ((const char * const *) e->methods));
  set_member_nat (body, e->local_nat);
  e->accept_task = g_object_ref (task);
  d->accept_timeout = g_timeout_source_new (ACCEPT_TIMEOUT_MS);
  g_source_set_callback (d->accept_timeout, accept_timeout_cb, d, NULL);
  g_source_attach (d->accept_timeout, g_main_context_get_thread_default ());

  {
    g_autoptr(JsonNode) node = json_node_init_object (json_node_alloc (), body);
    g_autofree char *text = json_to_string (node, FALSE);

    g_debug ("asking %s to connect (session %s)", peer_id, e->session_id);
    natkit_signaling_send_async (signaling, peer_id, text,
                                 g_task_get_cancellable (task), connect_sent_cb,
                                 g_object_ref (task));
  }
}

typedef struct
{
  char               *peer_id;
  NatkitConnectFlags  flags;
} RegisterData;

static void
registered_cb (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  RegisterData *r = g_object_get_data (G_OBJECT (task), "natkit-register");

  if (!natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), res, &error))
    {
      connect_fail (task, g_steal_pointer (&error));
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;
  start_connect (task, NATKIT_SIGNALING (source), r->peer_id, r->flags);
}

static void
register_data_free (gpointer data)
{
  RegisterData *r = data;

  g_free (r->peer_id);
  g_free (r);
}

void
_natkit_connector_connect_async (NatkitConnector     *self,
                                 NatkitSignaling     *signaling,
                                 const char          *peer_id,
                                 const char          *peer_address,
                                 const char * const  *methods,
                                 NatkitConnectFlags   flags,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(GError) error = NULL;
  ConnectData *d;

  g_task_set_source_tag (task, _natkit_connector_connect_async);
  g_task_set_name (task, "[natkit] connect");
  d = g_new0 (ConnectData, 1);
  d->connector = self;
  d->failures = g_ptr_array_new_with_free_func (g_free);
  d->started = g_get_monotonic_time ();
  d->requested = g_strdupv ((char **) methods);
  d->peer_address = g_strdup (peer_address);
  g_task_set_task_data (task, d, connect_data_free);

  if (!natkit_manager_get_identity (self->manager, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  if (!signaling)
    {
      g_autofree char *id = NULL;
      g_autofree char *host = NULL;
      g_autofree char *server = NULL;
      guint16 port;
      NatkitRendezvous *rendezvous;
      RegisterData *r;

      if (!natkit_peer_address_parse (peer_address, &id, &host, &port, &error))
        {
          g_task_return_error (task, g_steal_pointer (&error));
          return;
        }
      server = strchr (host, ':') ? g_strdup_printf ("[%s]:%u", host, port)
                                  : g_strdup_printf ("%s:%u", host, port);
      rendezvous = _natkit_connector_get_rendezvous (self, server, &error);
      if (!rendezvous)
        {
          g_task_return_error (task, g_steal_pointer (&error));
          return;
        }
      r = g_new0 (RegisterData, 1);
      r->peer_id = g_steal_pointer (&id);
      r->flags = flags;
      g_object_set_data_full (G_OBJECT (task), "natkit-register", r, register_data_free);
      natkit_rendezvous_connect_async (rendezvous, cancellable, registered_cb,
                                       g_steal_pointer (&task));
      return;
    }

  start_connect (task, signaling, peer_id, flags);
}

NatkitConnection *
_natkit_connector_connect_finish (NatkitConnector  *self,
                                  GAsyncResult     *result,
                                  GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
reopen_start (NatkitConnector     *self,
              NatkitConnection    *connection,
              const char * const  *exclude,
              GCancellable        *cancellable,
              GAsyncReadyCallback  callback,
              gpointer             user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  ConnectData *d;
  Entry *e = lookup_entry (self, natkit_connection_get_session_id (connection));

  g_task_set_source_tag (task, _natkit_connector_reopen_async);
  d = g_new0 (ConnectData, 1);
  d->connector = self;
  d->failures = g_ptr_array_new_with_free_func (g_free);
  d->started = g_get_monotonic_time ();
  d->reopen = TRUE;
  d->session_id = g_strdup (natkit_connection_get_session_id (connection));
  g_task_set_task_data (task, d, connect_data_free);

  if (!e)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "the connection is closed");
      g_object_unref (task);
      return;
    }

  /* the method whose path was just lost is tried last: what cut it is
   * likely still there (the upgrade brings it back when it works again).
   * A lost direct path puts the relayed methods first: the methods walk
   * one by one here, and another direct one (tcp-holepunch after
   * holepunch) can take seconds to fail when the cut is not UDP only;
   * the upgrade then moves onto a direct path that works. A search for a
   * faster path leaves out the current method. */
  {
    g_autoptr(GStrvBuilder) order = g_strv_builder_new ();
    const char *lost = exclude ? NULL : _natkit_connection_get_lost_method (connection);
    gboolean relay_first = !exclude && lost && method_cost (self, lost) < NATKIT_COST_RELAYED;

    for (guint i = 0; relay_first && e->methods && e->methods[i]; i++)
      if (method_cost (self, e->methods[i]) == NATKIT_COST_RELAYED)
        g_strv_builder_add (order, e->methods[i]);
    for (guint i = 0; e->methods && e->methods[i]; i++)
      if (g_strcmp0 (e->methods[i], lost) != 0 &&
          !(exclude && g_strv_contains (exclude, e->methods[i])) &&
          !(relay_first && method_cost (self, e->methods[i]) == NATKIT_COST_RELAYED))
        g_strv_builder_add (order, e->methods[i]);
    if (!exclude && lost && e->methods &&
        g_strv_contains ((const char * const *) e->methods, lost))
      g_strv_builder_add (order, lost);
    d->order = g_strv_builder_end (order);
  }
  try_next_method (task);
}

void
_natkit_connector_reopen_async (NatkitConnector     *self,
                                NatkitConnection    *connection,
                                GCancellable        *cancellable,
                                GAsyncReadyCallback  callback,
                                gpointer             user_data)
{
  reopen_start (self, connection, NULL, cancellable, callback, user_data);
}

/* A path by any agreed method but those of @exclude (the current, slow
 * one, and those found no faster), for the connection to try; finish with
 * _natkit_connector_reopen_finish(). */
void
_natkit_connector_find_other_async (NatkitConnector     *self,
                                    NatkitConnection    *connection,
                                    const char * const  *exclude,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  reopen_start (self, connection, exclude, cancellable, callback, user_data);
}

guint
_natkit_connector_get_slow_rtt (NatkitConnector *self)
{
  return natkit_config_get_slow_rtt (natkit_manager_get_config (self->manager));
}

NatkitPath *
_natkit_connector_reopen_finish (NatkitConnector  *self,
                                 GAsyncResult     *result,
                                 GError          **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- the responder ------------------------------------------------------ */

static gboolean
expiry_cb (gpointer user_data)
{
  Entry *e = user_data;

  g_clear_pointer (&e->expiry, g_source_unref);
  if (!e->connection)
    {
      g_debug ("forgetting session %s with %s: no connection came of it",
               e->session_id, e->peer_id);
      forget_entry (e->connector, e);
    }
  return G_SOURCE_REMOVE;
}

static void
arm_expiry (Entry *e,
            guint  ms)
{
  if (e->expiry)
    {
      g_source_destroy (e->expiry);
      g_source_unref (e->expiry);
    }
  e->expiry = g_timeout_source_new (ms);
  g_source_set_callback (e->expiry, expiry_cb, e, NULL);
  g_source_attach (e->expiry, g_main_context_get_thread_default ());
}

typedef struct
{
  NatkitConnector *connector;
  char            *session_id;
  char            *method;
} ResponderData;

static void
responder_data_free (ResponderData *r)
{
  g_clear_object (&r->connector);
  g_free (r->session_id);
  g_free (r->method);
  g_free (r);
}

static void
responder_handshake_cb (GObject      *source,
                        GAsyncResult *res,
                        gpointer      user_data)
{
  ResponderData *r = user_data;
  NatkitConnector *self = r->connector;
  g_autoptr(GError) error = NULL;
  Entry *e = lookup_entry (self, r->session_id);
  NatkitConfig *config;
  NatkitConnection *connection;
  NatkitSession *session = NATKIT_SESSION (source);

  if (!_natkit_session_handshake_finish (session, res, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_debug ("the secure handshake with %s failed: %s",
                 e ? e->peer_id : "?", error->message);
      if (e && !e->connection)
        forget_entry (self, e);
      responder_data_free (r);
      return;
    }
  if (!e || self->shut_down || e->session != session)
    {
      responder_data_free (r);
      return;
    }

  /* the path the initiator's handshake came over (the session followed) */
  config = natkit_manager_get_config (self->manager);
  connection = _natkit_connection_new (self, e->signaling, session,
                                       _natkit_session_get_path (session),
                                       e->peer_id, NULL, e->session_id,
                                       NATKIT_ROLE_RESPONDER, e->flags,
                                       natkit_config_get_keepalive_interval (config),
                                       natkit_config_get_connect_timeout (config) * 2,
                                       0);
  g_set_weak_pointer (&e->connection, connection);
  _natkit_connection_set_nat_info (connection, e->local_nat, e->remote_nat);
  if (e->expiry)
    {
      g_source_destroy (e->expiry);
      g_clear_pointer (&e->expiry, g_source_unref);
    }
  g_debug ("incoming connection from %s via %s", e->peer_id,
           natkit_connection_get_method (connection));
  responder_data_free (r);
  _natkit_manager_emit_incoming (self->manager, connection);
  g_object_unref (connection);
}

static void
responder_done_cb (GObject      *source,
                   GAsyncResult *res,
                   gpointer      user_data)
{
  ResponderData *r = user_data;
  NatkitConnector *self = r->connector;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPath) path = run_attempt_finish (self, res, &error);
  Entry *e = lookup_entry (self, r->session_id);

  if (!path)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_debug ("%s from %s failed on this side: %s", r->method,
                   e ? e->peer_id : "?", error->message);
          if (e)
            _natkit_manager_emit_progress (self->manager, e->session_id, e->peer_id,
                                           "attempt-failed", r->method, error->message);
        }
      responder_data_free (r);
      return;
    }
  if (!e || self->shut_down)
    {
      natkit_path_close (path);
      responder_data_free (r);
      return;
    }

  if (e->connection &&
      natkit_connection_get_state (e->connection) != NATKIT_CONNECTION_STATE_CONNECTED)
    {
      /* the initiator found a path for a connection that lost its own */
      g_debug ("session %s with %s continues over %s", e->session_id,
               e->peer_id, r->method);
      _natkit_connection_replace_path (e->connection, path);
      responder_data_free (r);
      return;
    }

  /* every path the initiator may use: the session answers on the one
   * it speaks on (during the handshake, and when it moves later) */
  g_ptr_array_add (e->paths, g_object_ref (path));
  if (e->connection || e->handshaking)
    {
      g_debug ("%s also reaches %s (session %s)", r->method, e->peer_id, e->session_id);
      _natkit_session_add_path (e->session, path);
      responder_data_free (r);
      return;
    }
  e->handshaking = TRUE;
  _natkit_session_handshake_async (e->session, path, HANDSHAKE_TIMEOUT_MS, e->attempt,
                                   responder_handshake_cb, r);
}

static void
handle_attempt (NatkitConnector *self,
                Entry           *e,
                JsonObject      *body)
{
  const char *method = member_string (body, "method", NULL);
  g_autoptr(NatkitTraversalRequest) request = NULL;
  ResponderData *r;

  if (!method || !e->methods || !g_strv_contains ((const char * const *) e->methods, method))
    {
      g_debug ("ignoring an attempt with method %s from %s: not agreed",
               method ? method : "(none)", e->peer_id);
      return;
    }

  /* the initiator races its methods: they all run, under one cancellable
   * that ends with the entry */
  if (!e->attempt)
    e->attempt = g_cancellable_new ();
  if (!e->session)
    e->session = _natkit_session_new (natkit_manager_get_identity (self->manager, NULL),
                                      e->peer_id, NATKIT_ROLE_RESPONDER);
  if (!e->connection)
    arm_expiry (e, ACCEPT_TIMEOUT_MS + METHOD_TIMEOUT_MS + LATE_REASON_GRACE_MS +
                  HANDSHAKE_TIMEOUT_MS);

  r = g_new0 (ResponderData, 1);
  r->connector = g_object_ref (self);
  r->session_id = g_strdup (e->session_id);
  r->method = g_strdup (method);
  request = make_request (self, e, NATKIT_ROLE_RESPONDER);
  _natkit_manager_emit_progress (self->manager, e->session_id, e->peer_id, "attempt",
                                 method, NULL);
  run_attempt (self, request, method, e->attempt, responder_done_cb, r);
}

static void
handle_connect (NatkitConnector *self,
                Channel         *channel,
                const char      *from,
                const char      *session_id,
                JsonObject      *body)
{
  g_auto(GStrv) offered = array_to_strv (body, "methods");
  g_autoptr(GPtrArray) names = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) reply = NULL;
  g_autoptr(GPtrArray) declined = g_ptr_array_new_with_free_func (g_free);
  const char *mode = member_string (body, "mode", "stream");
  Entry *e;

  if (lookup_entry (self, session_id))
    return;  /* a duplicate */

  if (!channel->listening)
    {
      _natkit_connector_send_op (self, channel->signaling, from, session_id,
                                 "reject", "reason",
                                 "the peer is not accepting connections");
      return;
    }
  if (!natkit_manager_get_identity (self->manager, NULL))
    return;

  e = g_new0 (Entry, 1);
  e->paths = g_ptr_array_new_with_free_func (g_object_unref);
  e->connector = self;
  e->session_id = g_strdup (session_id);
  e->peer_id = g_strdup (from);
  e->role = NATKIT_ROLE_RESPONDER;
  e->signaling = g_object_ref (channel->signaling);
  e->flags = g_strcmp0 (mode, "datagram") == 0 ? NATKIT_CONNECT_DATAGRAM : 0;
  g_set_object (&e->local_nat, natkit_manager_get_nat_info (self->manager));
  {
    g_autoptr(NatkitNatInfo) remote = member_nat (body);

    entry_set_remote_nat (e, remote);
  }
  g_hash_table_insert (self->entries, e->session_id, e);
  arm_expiry (e, ACCEPT_TIMEOUT_MS + METHOD_TIMEOUT_MS + LATE_REASON_GRACE_MS +
                  HANDSHAKE_TIMEOUT_MS);

  names = usable_methods (self, e, (const char * const *) offered,
                          NATKIT_ROLE_RESPONDER, declined, &error);
  if (!names || !g_ptr_array_index (names, 0))
    {
      g_autofree char *list = g_strjoinv (", ", offered);

      g_debug ("rejecting %s: no common method (offered: %s)", from, list);
      _natkit_connector_send_op (self, channel->signaling, from, session_id,
                                 "reject", "reason",
                                 "no traversal method in common");
      forget_entry (self, e);
      return;
    }
  e->methods = g_strdupv ((char **) names->pdata);

  reply = new_body (session_id, "accept");
  json_object_set_array_member (reply, "methods",
                                strv_to_array ((const char * const *) e->methods));
  set_member_nat (reply, e->local_nat);
  if (declined->len > 0)
    json_object_set_object_member (reply, "declined", declined_object (declined));
  g_debug ("accepting %s (session %s)", from, session_id);
  send_body (channel->signaling, from, reply);
}

static void
message_received_cb (NatkitSignaling *signaling,
                     const char      *from,
                     const char      *text,
                     gpointer         user_data)
{
  NatkitConnector *self = user_data;
  Channel *channel = g_hash_table_lookup (self->channels, signaling);
  g_autoptr(JsonObject) body = NULL;
  const char *op, *session_id;
  Entry *e;

  if (!channel || self->shut_down || !text || strlen (text) > 65536)
    return;

  body = _natkit_wire_json_object (text, strlen (text), NULL);
  if (!body)
    return;
  if (member_int (body, "natkit", 0) != 1)
    return;
  op = member_string (body, "op", NULL);
  session_id = member_string (body, "session", NULL);
  if (!op || !session_id || strlen (session_id) == 0 || strlen (session_id) > 64)
    {
      g_debug ("ignoring a malformed signaling message from %s", from);
      return;
    }

  if (g_str_equal (op, "connect"))
    {
      handle_connect (self, channel, from, session_id, body);
      return;
    }

  e = lookup_entry (self, session_id);
  if (!e || g_strcmp0 (e->peer_id, from) != 0 || e->signaling != signaling)
    {
      g_debug ("ignoring “%s” from %s for an unknown session", op, from);
      return;
    }

  if (g_str_equal (op, "accept") && e->role == NATKIT_ROLE_INITIATOR && e->accept_task)
    {
      g_autoptr(GTask) task = g_steal_pointer (&e->accept_task);

      accepted (g_steal_pointer (&task), body);
    }
  else if (g_str_equal (op, "reject") && e->role == NATKIT_ROLE_INITIATOR &&
           e->accept_task)
    {
      g_autoptr(GTask) task = g_steal_pointer (&e->accept_task);
      const char *reason = member_string (body, "reason",
                                                                       "no reason given");
      ConnectData *d = g_task_get_task_data (task);

      clear_source (&d->accept_timeout);
      connect_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                       "peer %s refused the connection: %s",
                                       from, reason));
    }
  else if (g_str_equal (op, "attempt") && e->role == NATKIT_ROLE_RESPONDER)
    handle_attempt (self, e, body);
  else if (g_str_equal (op, "close"))
    {
      const char *reason = member_string (body, "reason",
                                                                       "closed by the peer");
      if (e->connection)
        _natkit_connection_peer_closed (e->connection, reason);
      else
        forget_entry (self, e);
    }
  else
    g_debug ("ignoring “%s” from %s", op, from);
}

static void
ensure_channel (NatkitConnector *self,
                NatkitSignaling *signaling)
{
  Channel *c;

  if (g_hash_table_contains (self->channels, signaling))
    return;
  c = g_new0 (Channel, 1);
  c->signaling = g_object_ref (signaling);
  c->handler = g_signal_connect (signaling, "message-received",
                                 G_CALLBACK (message_received_cb), self);
  g_hash_table_insert (self->channels, signaling, c);
}

gboolean
_natkit_connector_listen (NatkitConnector  *self,
                          NatkitSignaling  *signaling,
                          GError          **error)
{
  Channel *c;

  if (!natkit_manager_get_identity (self->manager, error))
    return FALSE;
  ensure_channel (self, signaling);
  c = g_hash_table_lookup (self->channels, signaling);
  c->listening = TRUE;
  if (NATKIT_IS_RENDEZVOUS (signaling))
    natkit_rendezvous_set_reserve_relay (NATKIT_RENDEZVOUS (signaling), TRUE);
  return TRUE;
}

void
_natkit_connector_stop_listening (NatkitConnector *self,
                                  NatkitSignaling *signaling)
{
  Channel *c = g_hash_table_lookup (self->channels, signaling);

  if (!c)
    return;
  c->listening = FALSE;
  if (NATKIT_IS_RENDEZVOUS (signaling))
    natkit_rendezvous_set_reserve_relay (NATKIT_RENDEZVOUS (signaling), FALSE);
}
