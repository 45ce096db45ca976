/* natkit-rendezvous.c: the client of natkit-server
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include <ifaddrs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include "natkit.h"
#include "natkit-rendezvous-private.h"
#include "natkit-wire-private.h"

/**
 * NatkitRendezvous:
 *
 * The client of a `natkit-server`: it registers this node under its peer
 * ID (proving it holds the key), carries signaling messages to and from
 * other peers registered at the same server, and asks the server for relay
 * circuits.
 *
 * It implements [iface@Natkit.Signaling]. Once registered it stays
 * registered: when the connection to the server drops (the server
 * restarted, the network changed) it reconnects with backoff (1 s doubling
 * to 30 s), registers again and renews its relay reservation, until
 * [method@Natkit.Rendezvous.close].
 *
 * The wire protocol is in natkit's `docs/protocol.md`.
 */

/**
 * NatkitRelayCircuit:
 *
 * A relay circuit through natkit-server between this node and one peer:
 * the server forwards datagrams between the two ends and nothing else. The
 * relay plugin binds a data channel to it (UDP, or TLS where UDP is
 * blocked) with the circuit's token.
 */

#define PING_INTERVAL_S      25
#define REQUEST_TIMEOUT_S    10
#define RECONNECT_MIN_S      1
#define RECONNECT_MAX_S      30
#define READ_BUFFER_SIZE     65536

struct _NatkitRelayCircuit
{
  GObject           parent_instance;

  guint32           id;
  char             *peer_id;
  char             *tag;
  GBytes           *token;
  char             *server_host;
  guint16           server_port;
  guint16           udp_port;
  guint64           byte_limit;
  guint             duration_limit;
  gboolean          closed;
  char             *close_reason;
  NatkitRendezvous *rendezvous;  /* weak */
};

G_DEFINE_FINAL_TYPE (NatkitRelayCircuit, natkit_relay_circuit, G_TYPE_OBJECT)

enum {
  CIRCUIT_SIGNAL_CLOSED,
  N_CIRCUIT_SIGNALS
};
static guint circuit_signals[N_CIRCUIT_SIGNALS];

typedef struct
{
  NatkitRendezvous *self;
  guint      id;
  char      *type;
  GTask     *task;
  GSource   *timeout;
} Pending;

struct _NatkitRendezvous
{
  GObject            parent_instance;

  NatkitIdentity    *identity;
  char              *server;
  char              *host;
  guint16            port;
  char              *local_address;
  char              *fingerprint;  /* pinned server certificate, or NULL */

  GCancellable      *cancellable;  /* the current connection */
  GIOStream         *stream;
  NatkitWireReader  *reader;
  guint8            *read_buffer;
  GQueue             out_queue;
  gboolean           writing;

  gboolean           registered;
  gboolean           ever_registered;
  gboolean           closed;
  char              *observed_address;
  guint16            udp_port;
  guint16            stun_port2;
  GError            *last_error;

  guint              next_id;
  GHashTable        *pending;    /* id → Pending */
  GList             *waiters;    /* GTask of connect_async */
  GHashTable        *circuits;   /* id → NatkitRelayCircuit (weak) */

  gboolean           reserve;
  guint              reserve_id;
  guint              turn_id;    /* asks for fresh TURN credentials */
  guint              ping_id;
  guint              reconnect_id;
  guint              backoff_s;

  /* our end of the connection: when that address goes away (a new DHCP
   * lease, another network) the connection is dead, though TCP would take
   * minutes to say so */
  char              *local_ip;
  GNetworkMonitor   *monitor;
  gulong             network_id;
};

static void natkit_rendezvous_signaling_init (NatkitSignalingInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitRendezvous, natkit_rendezvous, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_SIGNALING,
                                                      natkit_rendezvous_signaling_init))

enum {
  PROP_0,
  PROP_SERVER,
  PROP_REGISTERED,
  PROP_OBSERVED_ADDRESS,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_CIRCUIT_OFFERED,
  SIGNAL_TURN_CREDENTIALS,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void start_connection (NatkitRendezvous *self);
static void drop_connection  (NatkitRendezvous *self,
                              const GError     *error);
static void send_request     (NatkitRendezvous *self,
                              const char       *type,
                              JsonObject       *message,
                              GTask            *task);

/* ---- circuits ---------------------------------------------------------- */

static void send_close_circuit (NatkitRelayCircuit *self);

static void
natkit_relay_circuit_dispose (GObject *object)
{
  NatkitRelayCircuit *self = NATKIT_RELAY_CIRCUIT (object);

  /* nobody holds the circuit any more: end it at the server (no signal:
   * nobody is listening) */
  if (!self->closed)
    {
      self->closed = TRUE;
      self->close_reason = g_strdup ("dropped by this end");
      send_close_circuit (self);
    }
  if (self->rendezvous)
    g_hash_table_remove (self->rendezvous->circuits, GUINT_TO_POINTER (self->id));
  g_clear_weak_pointer (&self->rendezvous);

  G_OBJECT_CLASS (natkit_relay_circuit_parent_class)->dispose (object);
}

static void
natkit_relay_circuit_finalize (GObject *object)
{
  NatkitRelayCircuit *self = NATKIT_RELAY_CIRCUIT (object);

  g_free (self->peer_id);
  g_free (self->tag);
  g_clear_pointer (&self->token, g_bytes_unref);
  g_free (self->server_host);
  g_free (self->close_reason);

  G_OBJECT_CLASS (natkit_relay_circuit_parent_class)->finalize (object);
}

static void
natkit_relay_circuit_class_init (NatkitRelayCircuitClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = natkit_relay_circuit_dispose;
  G_OBJECT_CLASS (klass)->finalize = natkit_relay_circuit_finalize;

  /**
   * NatkitRelayCircuit::closed:
   * @self: the circuit
   * @reason: why it ended
   *
   * Emitted once, when the circuit ended: closed by either end, a limit
   * reached, the server gone.
   */
  circuit_signals[CIRCUIT_SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
natkit_relay_circuit_init (NatkitRelayCircuit *self)
{
}

static void
circuit_mark_closed (NatkitRelayCircuit *self,
                     const char         *reason)
{
  if (self->closed)
    return;
  self->closed = TRUE;
  self->close_reason = g_strdup (reason);
  g_debug ("relay circuit %u with %s closed: %s", self->id, self->peer_id, reason);
  g_signal_emit (self, circuit_signals[CIRCUIT_SIGNAL_CLOSED], 0, reason);
}

static gboolean
parse_limits (JsonObject *message,
              guint64    *out_bytes,
              guint      *out_duration)
{
  JsonObject *limits;

  if (!json_object_has_member (message, "limits") ||
      !JSON_NODE_HOLDS_OBJECT (json_object_get_member (message, "limits")))
    return FALSE;
  limits = json_object_get_object_member (message, "limits");
  if (json_object_has_member (limits, "circuit_bytes") &&
      JSON_NODE_HOLDS_VALUE (json_object_get_member (limits, "circuit_bytes")))
    *out_bytes = MAX (0, json_object_get_int_member (limits, "circuit_bytes"));
  if (json_object_has_member (limits, "circuit_duration") &&
      JSON_NODE_HOLDS_VALUE (json_object_get_member (limits, "circuit_duration")))
    *out_duration = CLAMP (json_object_get_int_member (limits, "circuit_duration"),
                           0, G_MAXINT);
  return TRUE;
}

static NatkitRelayCircuit *
circuit_new (NatkitRendezvous *self,
             JsonObject       *message,
             const char       *peer_id,
             const char       *tag,
             GError          **error)
{
  NatkitRelayCircuit *circuit;
  gint64 id;
  GBytes *token;

  if (!_natkit_wire_get_int (message, "circuit", 1, G_MAXUINT32, &id, error))
    return NULL;
  token = _natkit_wire_get_base64 (message, "token", NATKIT_WIRE_TOKEN_SIZE, error);
  if (!token)
    return NULL;

  circuit = g_object_new (NATKIT_TYPE_RELAY_CIRCUIT, NULL);
  circuit->id = id;
  circuit->peer_id = g_strdup (peer_id);
  circuit->tag = g_strdup (tag ? tag : "");
  circuit->token = token;
  circuit->server_host = g_strdup (self->host);
  circuit->server_port = self->port;
  circuit->udp_port = self->udp_port;
  parse_limits (message, &circuit->byte_limit, &circuit->duration_limit);
  g_set_weak_pointer (&circuit->rendezvous, self);
  g_hash_table_insert (self->circuits, GUINT_TO_POINTER (circuit->id), circuit);
  return circuit;
}

/**
 * natkit_relay_circuit_get_id:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: the circuit's number at its server
 */
guint32
natkit_relay_circuit_get_id (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), 0);
  return self->id;
}

/**
 * natkit_relay_circuit_get_peer_id:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: the peer at the other end
 */
const char *
natkit_relay_circuit_get_peer_id (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), NULL);
  return self->peer_id;
}

/**
 * natkit_relay_circuit_get_tag:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: the tag the initiator gave the circuit (natkit uses the
 *   connection's session ID)
 */
const char *
natkit_relay_circuit_get_tag (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), NULL);
  return self->tag;
}

/**
 * natkit_relay_circuit_get_token:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: (transfer none): this end's secret token, which binds a data
 *   channel to the circuit
 */
GBytes *
natkit_relay_circuit_get_token (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), NULL);
  return self->token;
}

/**
 * natkit_relay_circuit_get_server_host:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: the relay server's host name or address
 */
const char *
natkit_relay_circuit_get_server_host (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), NULL);
  return self->server_host;
}

/**
 * natkit_relay_circuit_get_server_port:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: the relay server's TLS port
 */
guint16
natkit_relay_circuit_get_server_port (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), 0);
  return self->server_port;
}

/**
 * natkit_relay_circuit_get_udp_port:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: the relay server's UDP port
 */
guint16
natkit_relay_circuit_get_udp_port (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), 0);
  return self->udp_port;
}

/**
 * natkit_relay_circuit_get_byte_limit:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: how many bytes the server relays on this circuit (both
 *   directions), 0 when it did not say
 */
guint64
natkit_relay_circuit_get_byte_limit (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), 0);
  return self->byte_limit;
}

/**
 * natkit_relay_circuit_get_duration_limit:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: how long, in seconds, the server keeps this circuit, 0 when it
 *   did not say
 */
guint
natkit_relay_circuit_get_duration_limit (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), 0);
  return self->duration_limit;
}

/**
 * natkit_relay_circuit_is_closed:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: whether the circuit has ended
 */
gboolean
natkit_relay_circuit_is_closed (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), TRUE);
  return self->closed;
}

/**
 * natkit_relay_circuit_get_close_reason:
 * @self: a #NatkitRelayCircuit
 *
 * Returns: (nullable): why the circuit ended, or %NULL while it is open
 */
const char *
natkit_relay_circuit_get_close_reason (NatkitRelayCircuit *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_CIRCUIT (self), NULL);
  return self->close_reason;
}

static void
send_close_circuit (NatkitRelayCircuit *self)
{
  if (self->rendezvous && self->rendezvous->registered)
    {
      JsonObject *message = json_object_new ();

      json_object_set_int_member (message, "circuit", self->id);
      send_request (self->rendezvous, "close-circuit", message, NULL);
      json_object_unref (message);
    }
}

/**
 * natkit_relay_circuit_close:
 * @self: a #NatkitRelayCircuit
 *
 * Ends the circuit: tells the server (which tells the other end) and emits
 * #NatkitRelayCircuit::closed. Does nothing when it has ended already.
 */
void
natkit_relay_circuit_close (NatkitRelayCircuit *self)
{
  g_return_if_fail (NATKIT_IS_RELAY_CIRCUIT (self));

  if (self->closed)
    return;

  send_close_circuit (self);
  g_object_ref (self);
  circuit_mark_closed (self, "closed by this end");
  g_object_unref (self);
}

/* Opening a TLS data channel: connect, read hello, attach, read the
 * result, each frame read exactly so that no relayed byte is consumed. */

typedef struct
{
  NatkitRelayCircuit *circuit;
  GIOStream          *stream;
  guint8              header[2];
  guint8             *body;
  gsize               body_len;
  int                 step;  /* 0 hello, 1 result */
  GSource            *timeout;
} OpenTlsData;

static void
open_tls_data_free (gpointer data)
{
  OpenTlsData *d = data;

  if (d->timeout)
    {
      g_source_destroy (d->timeout);
      g_source_unref (d->timeout);
    }
  g_clear_object (&d->circuit);
  g_clear_object (&d->stream);
  g_free (d->body);
  g_free (d);
}

static gboolean
accept_certificate_cb (GTlsConnection       *conn,
                       GTlsCertificate      *peer_cert,
                       GTlsCertificateFlags  errors,
                       gpointer              user_data)
{
  const char *pinned = user_data;
  g_autofree char *fp = NULL;

  if (!pinned)
    return TRUE;  /* peers are authenticated end to end */

  fp = _natkit_wire_certificate_fingerprint (peer_cert);
  if (fp == NULL || g_ascii_strcasecmp (fp, pinned) != 0)
    {
      g_debug ("server certificate %s does not match the pinned %s",
               fp ? fp : "(none)", pinned);
      return FALSE;
    }
  return TRUE;
}

static void
socket_client_event_cb (GSocketClient      *client,
                        GSocketClientEvent  event,
                        GSocketConnectable *connectable,
                        GIOStream          *connection,
                        gpointer            user_data)
{
  if (event == G_SOCKET_CLIENT_CONNECTED && G_IS_SOCKET_CONNECTION (connection))
    {
      /* small control messages: do not wait for delayed ACKs */
      g_socket_set_option (g_socket_connection_get_socket (G_SOCKET_CONNECTION (connection)),
                           IPPROTO_TCP, TCP_NODELAY, 1, NULL);
    }
  else if (event == G_SOCKET_CLIENT_TLS_HANDSHAKING && G_IS_TLS_CONNECTION (connection))
    {
      /* peers are authenticated end to end, the server by its pinned
       * fingerprint if any: no CA lookups */
      g_tls_connection_set_database (G_TLS_CONNECTION (connection), NULL);
      g_signal_connect_data (connection, "accept-certificate",
                             G_CALLBACK (accept_certificate_cb),
                             g_strdup (user_data), (GClosureNotify) g_free, 0);
    }
}

static GSocketClient *
make_socket_client (const char *fingerprint)
{
  GSocketClient *client = g_socket_client_new ();

  g_socket_client_set_tls (client, TRUE);
  g_socket_client_set_timeout (client, REQUEST_TIMEOUT_S);
  g_signal_connect_data (client, "event", G_CALLBACK (socket_client_event_cb),
                         g_strdup (fingerprint), (GClosureNotify) g_free, 0);
  return client;
}

static void open_tls_read_header (GTask *task);

static void
open_tls_body_cb (GObject      *source,
                  GAsyncResult *res,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenTlsData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) message = NULL;
  const char *type = NULL;
  gsize n = 0;

  if (!g_input_stream_read_all_finish (G_INPUT_STREAM (source), res, &n, &error) ||
      n != d->body_len)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "relay %s:%u closed the data channel during "
                               "setup: %s", d->circuit->server_host,
                               d->circuit->server_port,
                               error ? error->message : "end of stream");
      return;
    }

  message = _natkit_wire_control_parse (d->body, d->body_len, &type, &error);
  if (!message)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "relay %s:%u sent an invalid message: %s",
                               d->circuit->server_host, d->circuit->server_port,
                               error->message);
      return;
    }

  if (d->step == 0)
    {
      g_autoptr(JsonObject) attach = json_object_new ();
      g_autoptr(GBytes) frame = NULL;
      g_autofree char *token = NULL;
      gsize len;
      const guint8 *data;

      if (g_strcmp0 (type, "hello") != 0)
        {
          g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                   "relay %s:%u did not greet with hello "
                                   "(got “%s”): is it a natkit-server?",
                                   d->circuit->server_host,
                                   d->circuit->server_port, type);
          return;
        }
      data = g_bytes_get_data (d->circuit->token, &len);
      token = g_base64_encode (data, len);
      json_object_set_string_member (attach, "type", "attach");
      json_object_set_int_member (attach, "id", 1);
      json_object_set_int_member (attach, "version", NATKIT_WIRE_VERSION);
      json_object_set_int_member (attach, "circuit", d->circuit->id);
      json_object_set_string_member (attach, "token", token);
      frame = _natkit_wire_control_frame (attach);
      data = g_bytes_get_data (frame, &len);
      /* small and the stream is idle: the write completes at once */
      if (!g_output_stream_write_all (g_io_stream_get_output_stream (d->stream),
                                      data, len, NULL,
                                      g_task_get_cancellable (task), &error))
        {
          g_task_return_error (task, g_steal_pointer (&error));
          return;
        }
      d->step = 1;
      open_tls_read_header (g_steal_pointer (&task));
      return;
    }

  if (g_strcmp0 (type, "error") == 0)
    {
      const char *msg = NULL;

      _natkit_wire_get_string (message, "message", &msg, NULL);
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                               "relay %s:%u refused the data channel: %s",
                               d->circuit->server_host, d->circuit->server_port,
                               msg ? msg : "no reason given");
      return;
    }
  if (g_strcmp0 (type, "result") != 0)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "relay %s:%u answered attach with “%s”",
                               d->circuit->server_host, d->circuit->server_port,
                               type);
      return;
    }
  g_task_return_pointer (task, g_steal_pointer (&d->stream), g_object_unref);
}

static void
open_tls_header_cb (GObject      *source,
                    GAsyncResult *res,
                    gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenTlsData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  gsize n = 0;

  if (!g_input_stream_read_all_finish (G_INPUT_STREAM (source), res, &n, &error) ||
      n != 2)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "relay %s:%u closed the data channel during "
                               "setup: %s", d->circuit->server_host,
                               d->circuit->server_port,
                               error ? error->message : "end of stream");
      return;
    }
  d->body_len = (d->header[0] << 8) | d->header[1];
  if (d->body_len == 0 || d->body_len > NATKIT_WIRE_MAX_CONTROL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "relay %s:%u sent a control frame of %zu bytes",
                               d->circuit->server_host, d->circuit->server_port,
                               d->body_len);
      return;
    }
  g_free (d->body);
  d->body = g_malloc (d->body_len);
  g_input_stream_read_all_async (g_io_stream_get_input_stream (d->stream),
                                 d->body, d->body_len, G_PRIORITY_DEFAULT,
                                 g_task_get_cancellable (task),
                                 open_tls_body_cb, g_steal_pointer (&task));
}

static void
open_tls_read_header (GTask *task)
{
  OpenTlsData *d = g_task_get_task_data (task);

  g_input_stream_read_all_async (g_io_stream_get_input_stream (d->stream),
                                 d->header, 2, G_PRIORITY_DEFAULT,
                                 g_task_get_cancellable (task),
                                 open_tls_header_cb, task);
}

static void
open_tls_connect_cb (GObject      *source,
                     GAsyncResult *res,
                     gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenTlsData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  GSocketConnection *conn;

  conn = g_socket_client_connect_to_host_finish (G_SOCKET_CLIENT (source), res, &error);
  if (!conn)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                 "cannot reach relay %s:%u over TLS: %s",
                                 d->circuit->server_host,
                                 d->circuit->server_port, error->message);
      else
        g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  g_socket_set_timeout (g_socket_connection_get_socket (conn), 0);
  d->stream = G_IO_STREAM (conn);
  open_tls_read_header (g_steal_pointer (&task));
}

static gboolean
open_tls_timeout_cb (gpointer user_data)
{
  GTask *task = user_data;
  OpenTlsData *d = g_task_get_task_data (task);

  g_cancellable_cancel (g_task_get_cancellable (task));
  g_clear_pointer (&d->timeout, g_source_unref);
  return G_SOURCE_REMOVE;
}

/**
 * natkit_relay_circuit_open_tls_async:
 * @self: a #NatkitRelayCircuit
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the channel is ready or failed
 * @user_data: data for @callback
 *
 * Opens a data channel for this end of the circuit over a new TLS
 * connection to the server (for networks that block UDP). On success the
 * stream carries relayed datagrams framed with a 2-byte length
 * (`docs/protocol.md`, section 4.3): hand it to
 * [ctor@Natkit.StreamPath.new].
 */
void
natkit_relay_circuit_open_tls_async (NatkitRelayCircuit  *self,
                                     GCancellable        *cancellable,
                                     GAsyncReadyCallback  callback,
                                     gpointer             user_data)
{
  g_autoptr(GCancellable) own = g_cancellable_new ();
  g_autoptr(GSocketClient) client = NULL;
  GTask *task;
  OpenTlsData *d;

  g_return_if_fail (NATKIT_IS_RELAY_CIRCUIT (self));

  /* our own cancellable, chained to the caller's, so the time limit can
   * cancel the connect */
  if (cancellable)
    g_cancellable_connect (cancellable, G_CALLBACK (g_cancellable_cancel),
                           g_object_ref (own), g_object_unref);

  task = g_task_new (self, own, callback, user_data);
  g_task_set_source_tag (task, natkit_relay_circuit_open_tls_async);
  g_task_set_check_cancellable (task, TRUE);
  d = g_new0 (OpenTlsData, 1);
  d->circuit = g_object_ref (self);
  g_task_set_task_data (task, d, open_tls_data_free);

  if (self->closed)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "relay circuit %u is closed: %s", self->id,
                               self->close_reason);
      g_object_unref (task);
      return;
    }

  d->timeout = g_timeout_source_new_seconds (REQUEST_TIMEOUT_S);
  g_source_set_callback (d->timeout, open_tls_timeout_cb, task, NULL);
  g_source_attach (d->timeout, g_main_context_get_thread_default ());

  client = make_socket_client (self->rendezvous ? self->rendezvous->fingerprint : NULL);
  g_socket_client_connect_to_host_async (client, self->server_host,
                                         self->server_port, own,
                                         open_tls_connect_cb, task);
}

/**
 * natkit_relay_circuit_open_tls_finish:
 * @self: a #NatkitRelayCircuit
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the data channel
 */
GIOStream *
natkit_relay_circuit_open_tls_finish (NatkitRelayCircuit  *self,
                                      GAsyncResult        *result,
                                      GError             **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- the client ------------------------------------------------------- */

static void
pending_free (gpointer data)
{
  Pending *p = data;

  if (p->timeout)
    {
      g_source_destroy (p->timeout);
      g_source_unref (p->timeout);
    }
  g_clear_object (&p->task);
  g_free (p->type);
  g_free (p);
}

static void
natkit_rendezvous_dispose (GObject *object)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (object);

  natkit_rendezvous_close (self);
  if (self->network_id != 0)
    g_signal_handler_disconnect (self->monitor, self->network_id);
  self->network_id = 0;
  g_clear_object (&self->monitor);

  G_OBJECT_CLASS (natkit_rendezvous_parent_class)->dispose (object);
}

static void
natkit_rendezvous_finalize (GObject *object)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (object);

  g_clear_object (&self->identity);
  g_free (self->server);
  g_free (self->host);
  g_free (self->local_address);
  g_free (self->fingerprint);
  g_free (self->observed_address);
  g_free (self->local_ip);
  g_clear_error (&self->last_error);
  g_hash_table_unref (self->pending);
  g_hash_table_unref (self->circuits);
  g_free (self->read_buffer);

  G_OBJECT_CLASS (natkit_rendezvous_parent_class)->finalize (object);
}

static void
natkit_rendezvous_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (object);

  switch (prop_id)
    {
    case PROP_SERVER:
      g_value_set_string (value, self->server);
      break;
    case PROP_REGISTERED:
      g_value_set_boolean (value, self->registered);
      break;
    case PROP_OBSERVED_ADDRESS:
      g_value_set_string (value, self->observed_address);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_rendezvous_class_init (NatkitRendezvousClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = natkit_rendezvous_dispose;
  object_class->finalize = natkit_rendezvous_finalize;
  object_class->get_property = natkit_rendezvous_get_property;

  /**
   * NatkitRendezvous:server:
   *
   * The server, as `HOST:PORT`.
   */
  properties[PROP_SERVER] =
    g_param_spec_string ("server", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * NatkitRendezvous:registered:
   *
   * Whether this node is registered at the server right now.
   */
  properties[PROP_REGISTERED] =
    g_param_spec_boolean ("registered", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                          G_PARAM_STATIC_STRINGS);

  /**
   * NatkitRendezvous:observed-address:
   *
   * This node's address as the server saw it (`ADDRESS:PORT`).
   */
  properties[PROP_OBSERVED_ADDRESS] =
    g_param_spec_string ("observed-address", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * NatkitRendezvous::circuit-offered:
   * @self: the client
   * @circuit: the new circuit
   *
   * Emitted when another peer opened a relay circuit to this node. The
   * relay plugin picks up the circuits of its connection attempts by the
   * circuit's tag; a circuit nobody takes is closed after a while.
   */
  signals[SIGNAL_CIRCUIT_OFFERED] =
    g_signal_new ("circuit-offered", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, NATKIT_TYPE_RELAY_CIRCUIT);

  /**
   * NatkitRendezvous::turn-credentials:
   * @self: the client
   * @uri: a TURN server (RFC 7065 URI)
   * @username: the user name for it
   * @password: the password
   * @ttl: seconds they stay valid
   *
   * Emitted when natkit-server hands out time-limited credentials for a
   * TURN server it shares a secret with (at registration, then again
   * before they expire; `docs/deployment.md`). The manager adds the
   * server to its settings, so the TURN and ICE plugins use it.
   */
  signals[SIGNAL_TURN_CREDENTIALS] =
    g_signal_new ("turn-credentials", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 4, G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING,
                  G_TYPE_UINT);
}

static void
natkit_rendezvous_init (NatkitRendezvous *self)
{
  self->pending = g_hash_table_new_full (NULL, NULL, NULL, pending_free);
  self->circuits = g_hash_table_new (NULL, NULL);
  self->next_id = 1;
  self->backoff_s = RECONNECT_MIN_S;
  g_queue_init (&self->out_queue);
}

/**
 * natkit_rendezvous_new:
 * @identity: this node's identity
 * @server: the server, `HOST:PORT`, optionally followed by
 *   `#sha256:AB:CD:…` to pin its certificate's fingerprint
 * @error: return location for a #GError
 *
 * Creates a client for @server. Nothing is sent until
 * [method@Natkit.Rendezvous.connect_async].
 *
 * Returns: (transfer full): the client, or %NULL when @server is not
 *   `HOST:PORT`
 */
NatkitRendezvous *
natkit_rendezvous_new (NatkitIdentity  *identity,
                       const char      *server,
                       GError         **error)
{
  g_autoptr(NatkitRendezvous) self = NULL;
  g_autoptr(GSocketConnectable) conn = NULL;
  g_autofree char *hostport = NULL;
  const char *hash;

  g_return_val_if_fail (NATKIT_IS_IDENTITY (identity), NULL);
  g_return_val_if_fail (server != NULL, NULL);

  self = g_object_new (NATKIT_TYPE_RENDEZVOUS, NULL);
  self->identity = g_object_ref (identity);

  hash = strchr (server, '#');
  hostport = hash ? g_strndup (server, hash - server) : g_strdup (server);
  if (hash)
    self->fingerprint = g_strdup (hash + 1);

  if (strrchr (hostport, ':') != NULL &&
      (hostport[0] == '[' || strchr (hostport, ':') == strrchr (hostport, ':')))
    conn = g_network_address_parse (hostport, 0, NULL);
  if (!conn || g_network_address_get_port (G_NETWORK_ADDRESS (conn)) == 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a natkit-server address: expected HOST:PORT, "
                   "e.g. natkit.example.org:7000", server);
      return NULL;
    }
  self->host = g_strdup (g_network_address_get_hostname (G_NETWORK_ADDRESS (conn)));
  self->port = g_network_address_get_port (G_NETWORK_ADDRESS (conn));
  self->server = g_steal_pointer (&hostport);
  if (strchr (self->host, ':'))
    self->local_address = g_strdup_printf ("%s@[%s]:%u",
                                           natkit_identity_get_peer_id (identity),
                                           self->host, self->port);
  else
    self->local_address = g_strdup_printf ("%s@%s:%u",
                                           natkit_identity_get_peer_id (identity),
                                           self->host, self->port);
  return g_steal_pointer (&self);
}

/**
 * natkit_rendezvous_get_server:
 * @self: a #NatkitRendezvous
 *
 * Returns: the server, `HOST:PORT`
 */
const char *
natkit_rendezvous_get_server (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), NULL);
  return self->server;
}

/**
 * natkit_rendezvous_get_host:
 * @self: a #NatkitRendezvous
 *
 * Returns: the server's host
 */
const char *
natkit_rendezvous_get_host (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), NULL);
  return self->host;
}

/**
 * natkit_rendezvous_get_port:
 * @self: a #NatkitRendezvous
 *
 * Returns: the server's TLS port
 */
guint16
natkit_rendezvous_get_port (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), 0);
  return self->port;
}

/**
 * natkit_rendezvous_get_identity:
 * @self: a #NatkitRendezvous
 *
 * Returns: (transfer none): the identity this client registers with
 */
NatkitIdentity *
natkit_rendezvous_get_identity (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), NULL);
  return self->identity;
}

/**
 * natkit_rendezvous_is_registered:
 * @self: a #NatkitRendezvous
 *
 * Returns: whether this node is registered at the server right now
 */
gboolean
natkit_rendezvous_is_registered (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), FALSE);
  return self->registered;
}

/**
 * natkit_rendezvous_get_observed_address:
 * @self: a #NatkitRendezvous
 *
 * Returns: (nullable): this node's address as the server saw it, or %NULL
 *   before the first registration
 */
const char *
natkit_rendezvous_get_observed_address (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), NULL);
  return self->observed_address;
}

/**
 * natkit_rendezvous_get_udp_port:
 * @self: a #NatkitRendezvous
 *
 * Returns: the server's UDP port (relay and STUN), or 0 before the first
 *   registration
 */
guint16
natkit_rendezvous_get_udp_port (NatkitRendezvous *self)
{
  g_return_val_if_fail (NATKIT_IS_RENDEZVOUS (self), 0);
  return self->udp_port;
}

/* Writing: one write at a time, frames queued. */

static void write_next (NatkitRendezvous *self);

static void
write_cb (GObject      *source,
          GAsyncResult *res,
          gpointer      user_data)
{
  g_autoptr(NatkitRendezvous) self = user_data;
  g_autoptr(GError) error = NULL;

  self->writing = FALSE;
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        drop_connection (self, error);
      return;
    }
  g_bytes_unref (g_queue_pop_head (&self->out_queue));
  write_next (self);
}

static void
write_next (NatkitRendezvous *self)
{
  GBytes *frame;

  if (self->writing || !self->stream)
    return;
  frame = g_queue_peek_head (&self->out_queue);
  if (!frame)
    return;
  self->writing = TRUE;
  g_output_stream_write_all_async (g_io_stream_get_output_stream (self->stream),
                                   g_bytes_get_data (frame, NULL),
                                   g_bytes_get_size (frame), G_PRIORITY_DEFAULT,
                                   self->cancellable, write_cb,
                                   g_object_ref (self));
}

static void
send_message (NatkitRendezvous *self,
              JsonObject       *message)
{
  g_queue_push_tail (&self->out_queue, _natkit_wire_control_frame (message));
  write_next (self);
}

static void drop_connection (NatkitRendezvous *self, const GError *error);

static gboolean
pending_timeout_cb (gpointer user_data)
{
  Pending *p = user_data;
  NatkitRendezvous *self = p->self;
  g_autoptr(GTask) task = g_steal_pointer (&p->task);
  g_autoptr(GError) lost = NULL;

  g_clear_pointer (&p->timeout, g_source_unref);
  if (task)
    g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                             "natkit-server %s did not answer “%s” within %d s",
                             self->server, p->type, REQUEST_TIMEOUT_S);
  lost = g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                      "it did not answer “%s” within %d s", p->type, REQUEST_TIMEOUT_S);
  g_hash_table_remove (self->pending, GUINT_TO_POINTER (p->id));
  /* a server that answers nothing for that long over its connection is
   * as good as gone (or the connection is, silently): connect again */
  if (self->stream != NULL)
    drop_connection (self, lost);
  return G_SOURCE_REMOVE;
}

/* Sends a request; @task (nullable) gets the reply's JsonObject or an
 * error. @message gets "type" and "id". */
static void
send_request (NatkitRendezvous *self,
              const char       *type,
              JsonObject       *message,
              GTask            *task)
{
  Pending *p;

  if (!self->stream)
    {
      if (task)
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                 "not connected to natkit-server %s%s%s",
                                 self->server,
                                 self->last_error ? ": " : "",
                                 self->last_error ? self->last_error->message : "");
      return;
    }

  p = g_new0 (Pending, 1);
  p->self = self;
  p->id = self->next_id++;
  if (self->next_id > G_MAXINT32)
    self->next_id = 1;
  p->type = g_strdup (type);
  p->task = task ? g_object_ref (task) : NULL;
  p->timeout = g_timeout_source_new_seconds (REQUEST_TIMEOUT_S);
  g_source_set_callback (p->timeout, pending_timeout_cb, p, NULL);
  g_source_attach (p->timeout, g_main_context_get_thread_default ());
  g_hash_table_insert (self->pending, GUINT_TO_POINTER (p->id), p);

  json_object_set_string_member (message, "type", type);
  json_object_set_int_member (message, "id", p->id);
  send_message (self, message);
}

static void
set_registered (NatkitRendezvous *self,
                gboolean          registered)
{
  if (self->registered == registered)
    return;
  self->registered = registered;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REGISTERED]);
}

static void
complete_waiters (NatkitRendezvous *self,
                  const GError     *error)
{
  GList *waiters = g_steal_pointer (&self->waiters);

  for (GList *l = waiters; l; l = l->next)
    {
      GTask *task = l->data;

      if (error)
        g_task_return_error (task, g_error_copy (error));
      else
        g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
  g_list_free (waiters);
}

static gboolean
reconnect_cb (gpointer user_data)
{
  NatkitRendezvous *self = user_data;

  self->reconnect_id = 0;
  start_connection (self);
  return G_SOURCE_REMOVE;
}

static void
drop_connection (NatkitRendezvous *self,
                 const GError     *error)
{
  GHashTableIter iter;
  gpointer value;
  GList *circuits;

  if (!self->stream && !self->cancellable)
    return;

  g_debug ("connection to natkit-server %s lost: %s", self->server,
           error ? error->message : "closed");
  if (error)
    {
      g_clear_error (&self->last_error);
      self->last_error = g_error_copy (error);
    }

  if (self->cancellable)
    {
      g_cancellable_cancel (self->cancellable);
      g_clear_object (&self->cancellable);
    }
  if (self->stream)
    {
      g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      g_clear_object (&self->stream);
    }
  g_clear_pointer (&self->reader, _natkit_wire_reader_free);
  g_queue_clear_full (&self->out_queue, (GDestroyNotify) g_bytes_unref);
  self->writing = FALSE;
  g_clear_handle_id (&self->ping_id, g_source_remove);
  g_clear_handle_id (&self->reserve_id, g_source_remove);
  g_clear_handle_id (&self->turn_id, g_source_remove);

  /* fail every pending request */
  g_hash_table_iter_init (&iter, self->pending);
  while (g_hash_table_iter_next (&iter, NULL, &value))
    {
      Pending *p = value;

      if (p->task)
        g_task_return_new_error (p->task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                 "lost the connection to natkit-server %s: %s",
                                 self->server,
                                 error ? error->message : "closed");
    }
  g_hash_table_remove_all (self->pending);

  /* circuits live on the server's side of this connection */
  circuits = g_hash_table_get_values (self->circuits);
  g_list_foreach (circuits, (GFunc) g_object_ref, NULL);
  for (GList *l = circuits; l; l = l->next)
    circuit_mark_closed (l->data, "lost the connection to the relay server");
  g_list_free_full (circuits, g_object_unref);

  set_registered (self, FALSE);

  if (self->waiters)
    {
      g_autoptr(GError) e = NULL;

      e = g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                       "cannot register at natkit-server %s: %s", self->server,
                       error ? error->message : "the connection closed");
      complete_waiters (self, e);
    }

  if (!self->closed && self->ever_registered && !self->reconnect_id)
    {
      g_debug ("reconnecting to %s in %u s", self->server, self->backoff_s);
      self->reconnect_id = g_timeout_add_seconds (self->backoff_s, reconnect_cb, self);
      self->backoff_s = MIN (self->backoff_s * 2, RECONNECT_MAX_S);
    }
}

static gboolean ping_cb (gpointer user_data);
static void send_reserve (NatkitRendezvous *self);

static gboolean
reserve_again_cb (gpointer user_data)
{
  send_reserve (user_data);
  return G_SOURCE_REMOVE;
}


static void
reserve_done_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (source);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) reply = g_task_propagate_pointer (G_TASK (res), &error);
  gint64 ttl = 600;

  if (!reply)
    {
      if (!g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE))
        g_warning ("natkit-server %s refused the relay reservation: %s",
                   self->server, error->message);
      return;
    }
  _natkit_wire_get_int (reply, "expires_in", 1, 86400 * 7, &ttl, NULL);
  g_debug ("relay reservation at %s for %" G_GINT64_FORMAT " s", self->server, ttl);
  g_clear_handle_id (&self->reserve_id, g_source_remove);
  if (self->reserve && self->registered)
    self->reserve_id = g_timeout_add_seconds (MAX (1, ttl / 2),
                                              reserve_again_cb, self);
}

static void
send_reserve (NatkitRendezvous *self)
{
  g_autoptr(GTask) task = g_task_new (self, NULL, reserve_done_cb, NULL);
  g_autoptr(JsonObject) message = json_object_new ();

  self->reserve_id = 0;
  send_request (self, "reserve", message, task);
}

static void
handle_hello (NatkitRendezvous *self,
              JsonObject       *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) challenge = NULL;
  g_autoptr(GBytes) data = NULL;
  g_autoptr(GBytes) signature = NULL;
  g_autoptr(JsonObject) reg = NULL;
  g_autofree char *sig64 = NULL;
  g_autofree char *key64 = NULL;
  GBytes *pubkey;
  gint64 version = 0, udp_port = 0;

  if (!_natkit_wire_get_int (message, "version", 0, G_MAXINT32, &version, &error) ||
      !(challenge = _natkit_wire_get_base64 (message, "challenge",
                                             NATKIT_WIRE_CHALLENGE_SIZE, &error)))
    {
      g_autoptr(GError) e = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                         "natkit-server %s sent an invalid "
                                         "hello: %s", self->server, error->message);
      drop_connection (self, e);
      return;
    }
  if (_natkit_wire_get_int (message, "udp_port", 1, 65535, &udp_port, NULL))
    self->udp_port = udp_port;
  self->stun_port2 = _natkit_wire_get_int (message, "stun_port2", 1, 65535, &udp_port, NULL)
                     ? udp_port : 0;
  if (version < NATKIT_WIRE_VERSION)
    {
      g_autoptr(GError) e =
        g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                     "natkit-server %s speaks protocol version %" G_GINT64_FORMAT
                     " only; this natkit needs version %d: upgrade the server",
                     self->server, version, NATKIT_WIRE_VERSION);
      drop_connection (self, e);
      return;
    }

  data = _natkit_wire_register_data (g_bytes_get_data (challenge, NULL),
                                     natkit_identity_get_peer_id (self->identity));
  signature = natkit_identity_sign (self->identity, data, &error);
  if (!signature)
    {
      drop_connection (self, error);
      return;
    }
  pubkey = natkit_identity_get_public_key (self->identity);
  key64 = g_base64_encode (g_bytes_get_data (pubkey, NULL), g_bytes_get_size (pubkey));
  sig64 = g_base64_encode (g_bytes_get_data (signature, NULL),
                           g_bytes_get_size (signature));

  reg = json_object_new ();
  json_object_set_int_member (reg, "version", NATKIT_WIRE_VERSION);
  json_object_set_string_member (reg, "peer_id",
                                 natkit_identity_get_peer_id (self->identity));
  json_object_set_string_member (reg, "public_key", key64);
  json_object_set_string_member (reg, "signature", sig64);
  send_request (self, "register", reg, NULL);  /* answered in handle_result */
}

static gboolean turn_again_cb (gpointer user_data);

/* "turn": [{"uri", "username", "password", "ttl"}] in the register reply
 * or a "turn" result (docs/protocol.md); anything malformed is skipped. */
static void
take_turn_credentials (NatkitRendezvous *self,
                       JsonObject       *reply)
{
  JsonNode *node = json_object_get_member (reply, "turn");
  JsonArray *array;
  gint64 shortest = 0;

  if (!node || !JSON_NODE_HOLDS_ARRAY (node))
    return;
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array) && i < 8; i++)
    {
      JsonNode *item = json_array_get_element (array, i);
      const char *uri = NULL, *username = NULL, *password = NULL;
      gint64 ttl = 0;

      if (!JSON_NODE_HOLDS_OBJECT (item))
        continue;
      if (!_natkit_wire_get_string (json_node_get_object (item), "uri", &uri, NULL) ||
          !_natkit_wire_get_string (json_node_get_object (item), "username", &username, NULL) ||
          !_natkit_wire_get_string (json_node_get_object (item), "password", &password, NULL) ||
          !_natkit_wire_get_int (json_node_get_object (item), "ttl", 60, 30 * 86400, &ttl, NULL) ||
          strlen (uri) > 512 || strlen (username) > 512 || strlen (password) > 512 ||
          !(g_str_has_prefix (uri, "turn:") || g_str_has_prefix (uri, "turns:")))
        {
          g_debug ("natkit-server %s: ignoring a malformed TURN server entry", self->server);
          continue;
        }
      g_debug ("natkit-server %s hands out credentials for TURN server %s (%" G_GINT64_FORMAT " s)",
               self->server, uri, ttl);
      g_signal_emit (self, signals[SIGNAL_TURN_CREDENTIALS], 0, uri, username, password,
                     (guint) ttl);
      shortest = shortest ? MIN (shortest, ttl) : ttl;
    }
  g_clear_handle_id (&self->turn_id, g_source_remove);
  if (shortest)
    self->turn_id = g_timeout_add_seconds (MAX (30, shortest / 2), turn_again_cb, self);
}

static void
turn_done_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (source);
  g_autoptr(JsonObject) reply = g_task_propagate_pointer (G_TASK (res), NULL);

  if (reply)
    take_turn_credentials (self, reply);
}

static gboolean
turn_again_cb (gpointer user_data)
{
  NatkitRendezvous *self = user_data;
  g_autoptr(GTask) task = g_task_new (self, NULL, turn_done_cb, NULL);
  g_autoptr(JsonObject) message = json_object_new ();

  self->turn_id = 0;
  send_request (self, "turn", message, task);
  return G_SOURCE_REMOVE;
}

static void
registered (NatkitRendezvous *self,
            JsonObject       *reply)
{
  const char *observed = NULL;
  gint64 udp_port = 0;

  if (_natkit_wire_get_string (reply, "observed_address", &observed, NULL) &&
      g_strcmp0 (observed, self->observed_address) != 0)
    {
      g_free (self->observed_address);
      self->observed_address = g_strdup (observed);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_OBSERVED_ADDRESS]);
    }
  if (_natkit_wire_get_int (reply, "udp_port", 1, 65535, &udp_port, NULL))
    self->udp_port = udp_port;
  if (_natkit_wire_get_int (reply, "stun_port2", 1, 65535, &udp_port, NULL))
    self->stun_port2 = udp_port;

  g_debug ("registered at natkit-server %s as %s (seen from %s)", self->server,
           natkit_identity_get_peer_id (self->identity),
           self->observed_address ? self->observed_address : "?");
  self->ever_registered = TRUE;
  self->backoff_s = RECONNECT_MIN_S;
  g_clear_error (&self->last_error);
  set_registered (self, TRUE);

  g_clear_handle_id (&self->ping_id, g_source_remove);
  self->ping_id = g_timeout_add_seconds (PING_INTERVAL_S, ping_cb, self);
  if (self->reserve)
    send_reserve (self);
  take_turn_credentials (self, reply);

  complete_waiters (self, NULL);
}

static void
handle_reply (NatkitRendezvous *self,
              const char       *type,
              JsonObject       *message)
{
  gint64 id = 0;
  Pending *p;
  g_autoptr(GTask) task = NULL;
  g_autofree char *ptype = NULL;

  if (!_natkit_wire_get_int (message, "id", 1, G_MAXINT32, &id, NULL))
    {
      const char *msg = NULL, *code = NULL;

      /* an error without id: the server is about to close */
      _natkit_wire_get_string (message, "message", &msg, NULL);
      _natkit_wire_get_string (message, "code", &code, NULL);
      if (g_strcmp0 (type, "error") == 0)
        {
          g_autoptr(GError) e =
            g_error_new (NATKIT_ERROR,
                         g_strcmp0 (code, "replaced") == 0 ?
                           NATKIT_ERROR_CLOSED : NATKIT_ERROR_UNAVAILABLE,
                         "natkit-server %s: %s", self->server,
                         msg ? msg : code ? code : "error");

          if (g_strcmp0 (code, "replaced") == 0)
            self->closed = TRUE;  /* another process took our ID: stop */
          drop_connection (self, e);
        }
      return;
    }

  p = g_hash_table_lookup (self->pending, GUINT_TO_POINTER ((guint) id));
  if (!p)
    {
      g_debug ("ignoring a reply to unknown request %" G_GINT64_FORMAT, id);
      return;
    }
  task = g_steal_pointer (&p->task);
  ptype = g_steal_pointer (&p->type);
  g_hash_table_remove (self->pending, GUINT_TO_POINTER ((guint) id));

  if (g_strcmp0 (type, "error") == 0)
    {
      const char *msg = NULL, *code = NULL;
      int errcode = NATKIT_ERROR_FAILED;

      _natkit_wire_get_string (message, "message", &msg, NULL);
      _natkit_wire_get_string (message, "code", &code, NULL);
      if (g_strcmp0 (code, "not-found") == 0)
        errcode = NATKIT_ERROR_NOT_FOUND;
      else if (g_strcmp0 (code, "no-reservation") == 0 ||
               g_strcmp0 (code, "limit") == 0 ||
               g_strcmp0 (code, "bad-signature") == 0)
        errcode = NATKIT_ERROR_REFUSED;
      else if (g_strcmp0 (code, "too-large") == 0)
        errcode = NATKIT_ERROR_MESSAGE_TOO_LARGE;

      if (g_strcmp0 (ptype, "register") == 0)
        {
          g_autoptr(GError) e =
            g_error_new (NATKIT_ERROR, errcode,
                         "natkit-server %s refused the registration: %s",
                         self->server, msg ? msg : code);
          self->closed = self->closed || g_strcmp0 (code, "bad-signature") == 0;
          drop_connection (self, e);
          return;
        }
      if (task)
        g_task_return_new_error (task, NATKIT_ERROR, errcode, "%s",
                                 msg ? msg : code ? code : "error");
      return;
    }

  if (g_strcmp0 (ptype, "register") == 0)
    {
      registered (self, message);
      return;
    }
  if (task)
    g_task_return_pointer (task, json_object_ref (message),
                           (GDestroyNotify) json_object_unref);
}

static void
handle_signal (NatkitRendezvous *self,
               JsonObject       *message)
{
  const char *from = NULL;
  JsonNode *body;
  g_autofree char *text = NULL;

  if (!_natkit_wire_get_string (message, "from", &from, NULL) ||
      !json_object_has_member (message, "body") ||
      !JSON_NODE_HOLDS_OBJECT ((body = json_object_get_member (message, "body"))))
    {
      g_debug ("ignoring a malformed signal from %s", self->server);
      return;
    }
  text = json_to_string (body, FALSE);
  natkit_signaling_emit_message (NATKIT_SIGNALING (self), from, text);
}

static void
handle_circuit (NatkitRendezvous *self,
                JsonObject       *message)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitRelayCircuit) circuit = NULL;
  const char *from = NULL, *tag = NULL;

  if (!_natkit_wire_get_string (message, "from", &from, &error))
    {
      g_debug ("ignoring a malformed circuit offer: %s", error->message);
      return;
    }
  _natkit_wire_get_string (message, "tag", &tag, NULL);
  circuit = circuit_new (self, message, from, tag, &error);
  if (!circuit)
    {
      g_debug ("ignoring a malformed circuit offer: %s", error->message);
      return;
    }
  g_debug ("peer %s opened relay circuit %u (tag %s)", from, circuit->id,
           circuit->tag);
  g_signal_emit (self, signals[SIGNAL_CIRCUIT_OFFERED], 0, circuit);
}

static void
handle_circuit_closed (NatkitRendezvous *self,
                       JsonObject       *message)
{
  gint64 id = 0;
  const char *reason = NULL;
  NatkitRelayCircuit *circuit;

  if (!_natkit_wire_get_int (message, "circuit", 1, G_MAXUINT32, &id, NULL))
    return;
  _natkit_wire_get_string (message, "reason", &reason, NULL);
  circuit = g_hash_table_lookup (self->circuits, GUINT_TO_POINTER ((guint32) id));
  if (circuit)
    {
      g_object_ref (circuit);
      circuit_mark_closed (circuit, reason ? reason : "closed by the server");
      g_object_unref (circuit);
    }
}

/* Handles one control frame; FALSE when the connection was dropped. */
gboolean
_natkit_rendezvous_handle_frame (NatkitRendezvous *self,
                                 const guint8     *body,
                                 gsize             len)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) message = NULL;
  const char *type = NULL;

  message = _natkit_wire_control_parse (body, len, &type, &error);
  if (!message)
    {
      g_autoptr(GError) e = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                         "natkit-server %s sent an invalid "
                                         "message: %s", self->server,
                                         error->message);
      drop_connection (self, e);
      return FALSE;
    }

  if (g_str_equal (type, "hello"))
    handle_hello (self, message);
  else if (g_str_equal (type, "result") || g_str_equal (type, "error"))
    handle_reply (self, type, message);
  else if (!self->registered)
    g_debug ("ignoring “%s” before registration", type);
  else if (g_str_equal (type, "signal"))
    handle_signal (self, message);
  else if (g_str_equal (type, "circuit"))
    handle_circuit (self, message);
  else if (g_str_equal (type, "circuit-closed"))
    handle_circuit_closed (self, message);
  else
    g_debug ("ignoring unknown message “%s” from %s", type, self->server);

  return self->stream != NULL;
}

static void
read_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  g_autoptr(NatkitRendezvous) self = user_data;
  g_autoptr(GError) error = NULL;
  gssize n;

  n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &error);
  if (n <= 0)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
      if (!error)
        error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                             "natkit-server %s closed the connection", self->server);
      drop_connection (self, error);
      return;
    }

  _natkit_wire_reader_push (self->reader, self->read_buffer, n);
  for (;;)
    {
      g_autoptr(GBytes) frame = NULL;
      gsize len;
      const guint8 *data;

      if (!_natkit_wire_reader_next (self->reader, &frame, &error))
        {
          if (error)
            {
              drop_connection (self, error);
              return;
            }
          break;
        }
      data = g_bytes_get_data (frame, &len);
      if (!_natkit_rendezvous_handle_frame (self, data, len))
        return;
    }

  g_input_stream_read_async (g_io_stream_get_input_stream (self->stream),
                             self->read_buffer, READ_BUFFER_SIZE,
                             G_PRIORITY_DEFAULT, self->cancellable, read_cb,
                             g_object_ref (self));
}

static void watch_local_address (NatkitRendezvous *self, GSocketConnection *conn);

static void
connect_cb (GObject      *source,
            GAsyncResult *res,
            gpointer      user_data)
{
  g_autoptr(NatkitRendezvous) self = user_data;
  g_autoptr(GError) error = NULL;
  GSocketConnection *conn;

  conn = g_socket_client_connect_to_host_finish (G_SOCKET_CLIENT (source), res, &error);
  if (!conn)
    {
      g_autoptr(GError) e = NULL;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        return;
      e = g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                       "cannot reach natkit-server %s: %s (is it running, and "
                       "is the port open?)", self->server, error->message);
      drop_connection (self, e);
      return;
    }

  /* the connect timeout must not outlive the connect: the control
   * connection is idle between pings */
  g_socket_set_timeout (g_socket_connection_get_socket (conn), 0);
  self->stream = G_IO_STREAM (conn);
  watch_local_address (self, conn);
  self->reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
  if (!self->read_buffer)
    self->read_buffer = g_malloc (READ_BUFFER_SIZE);
  g_input_stream_read_async (g_io_stream_get_input_stream (self->stream),
                             self->read_buffer, READ_BUFFER_SIZE,
                             G_PRIORITY_DEFAULT, self->cancellable, read_cb,
                             g_object_ref (self));
  write_next (self);
}

static gboolean
address_is_local (const char *ip)
{
  struct ifaddrs *list = NULL;
  gboolean found = FALSE;

  if (getifaddrs (&list) != 0)
    return TRUE;      /* cannot tell: assume it is */
  for (struct ifaddrs *i = list; i != NULL && !found; i = i->ifa_next)
    {
      g_autoptr(GSocketAddress) address = NULL;
      g_autofree char *text = NULL;
      gsize size;

      if (i->ifa_addr == NULL ||
          (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
        continue;
      size = i->ifa_addr->sa_family == AF_INET ? sizeof (struct sockaddr_in) :
             sizeof (struct sockaddr_in6);
      address = g_socket_address_new_from_native (i->ifa_addr, size);
      if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
        continue;
      text = g_inet_address_to_string (g_inet_socket_address_get_address (
                                         G_INET_SOCKET_ADDRESS (address)));
      found = g_strcmp0 (text, ip) == 0;
    }
  freeifaddrs (list);
  return found;
}

static void
network_changed_cb (GNetworkMonitor *monitor,
                    gboolean         available,
                    gpointer         user_data)
{
  NatkitRendezvous *self = user_data;
  g_autoptr(GError) error = NULL;

  if (self->stream == NULL || self->local_ip == NULL || address_is_local (self->local_ip))
    return;
  error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                       "this host's address %s, the connection's, went away",
                       self->local_ip);
  /* not a failure of the server's: no backoff, and the host has another
   * address already (or the connect fails and backs off as usual) */
  self->backoff_s = RECONNECT_MIN_S;
  drop_connection (self, error);
  if (self->reconnect_id != 0)
    {
      g_source_remove (self->reconnect_id);
      self->reconnect_id = g_idle_add (reconnect_cb, self);
    }
}

static void
watch_local_address (NatkitRendezvous  *self,
                     GSocketConnection *conn)
{
  g_autoptr(GSocketAddress) local = g_socket_connection_get_local_address (conn, NULL);

  g_clear_pointer (&self->local_ip, g_free);
  if (local != NULL && G_IS_INET_SOCKET_ADDRESS (local))
    self->local_ip = g_inet_address_to_string (g_inet_socket_address_get_address (
                                                 G_INET_SOCKET_ADDRESS (local)));
  if (self->network_id == 0 && self->local_ip != NULL)
    {
      self->monitor = g_object_ref (g_network_monitor_get_default ());
      self->network_id = g_signal_connect (self->monitor, "network-changed",
                                           G_CALLBACK (network_changed_cb), self);
    }
}

static void
start_connection (NatkitRendezvous *self)
{
  g_autoptr(GSocketClient) client = NULL;

  if (self->closed || self->cancellable)
    return;

  g_debug ("connecting to natkit-server %s", self->server);
  self->cancellable = g_cancellable_new ();
  client = make_socket_client (self->fingerprint);
  g_socket_client_connect_to_host_async (client, self->host, self->port,
                                         self->cancellable, connect_cb,
                                         g_object_ref (self));
}

static gboolean
ping_cb (gpointer user_data)
{
  NatkitRendezvous *self = user_data;
  g_autoptr(JsonObject) message = json_object_new ();

  send_request (self, "ping", message, NULL);
  return G_SOURCE_CONTINUE;
}

/**
 * natkit_rendezvous_connect_async:
 * @self: a #NatkitRendezvous
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when registered, or when it failed
 * @user_data: data for @callback
 *
 * Connects to the server and registers this node's peer ID. Completes at
 * once when registered already. After the first successful registration
 * the client keeps itself registered (reconnecting as needed) until
 * [method@Natkit.Rendezvous.close].
 */
void
natkit_rendezvous_connect_async (NatkitRendezvous    *self,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (NATKIT_IS_RENDEZVOUS (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_rendezvous_connect_async);

  if (self->closed)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "the client of %s was closed", self->server);
      return;
    }
  if (self->registered)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }

  self->waiters = g_list_append (self->waiters, g_steal_pointer (&task));
  g_clear_handle_id (&self->reconnect_id, g_source_remove);
  start_connection (self);
}

/**
 * natkit_rendezvous_connect_finish:
 * @self: a #NatkitRendezvous
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: %TRUE when registered
 */
gboolean
natkit_rendezvous_connect_finish (NatkitRendezvous  *self,
                                  GAsyncResult      *result,
                                  GError           **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/**
 * natkit_rendezvous_close:
 * @self: a #NatkitRendezvous
 *
 * Disconnects from the server for good: circuits end, pending requests
 * fail, no reconnection.
 */
void
natkit_rendezvous_close (NatkitRendezvous *self)
{
  g_return_if_fail (NATKIT_IS_RENDEZVOUS (self));

  if (self->closed && !self->stream && !self->cancellable)
    return;
  self->closed = TRUE;
  g_clear_handle_id (&self->reconnect_id, g_source_remove);
  {
    g_autoptr(GError) e = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                       "the client of %s was closed",
                                       self->server);
    drop_connection (self, e);
    complete_waiters (self, e);
  }
}

/**
 * natkit_rendezvous_set_reserve_relay:
 * @self: a #NatkitRendezvous
 * @reserve: whether to hold a relay reservation
 *
 * Holds (or drops) a relay reservation at the server, so that peers can
 * open relay circuits to this node. The client renews it and takes it up
 * again after reconnecting. [method@Natkit.Manager.listen] turns it on.
 */
void
natkit_rendezvous_set_reserve_relay (NatkitRendezvous *self,
                                     gboolean          reserve)
{
  g_return_if_fail (NATKIT_IS_RENDEZVOUS (self));

  reserve = !!reserve;
  if (self->reserve == reserve)
    return;
  self->reserve = reserve;
  g_clear_handle_id (&self->reserve_id, g_source_remove);
  if (!self->registered)
    return;
  /* at once, not from an idle: a peer told to connect right after
   * listen() must find the reservation already made */
  if (reserve)
    send_reserve (self);
  else
    {
      g_autoptr(JsonObject) message = json_object_new ();
      send_request (self, "unreserve", message, NULL);
    }
}

static void
lookup_cb (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) reply = g_task_propagate_pointer (G_TASK (res), &error);
  gboolean *out;

  if (!reply)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  out = g_new0 (gboolean, 2);
  out[0] = json_object_get_boolean_member_with_default (reply, "online", FALSE);
  out[1] = json_object_get_boolean_member_with_default (reply, "reservation", FALSE);
  g_task_return_pointer (task, out, g_free);
}

/**
 * natkit_rendezvous_lookup_async:
 * @self: a #NatkitRendezvous
 * @peer_id: the peer to look up
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the answer
 * @user_data: data for @callback
 *
 * Asks the server whether @peer_id is registered there.
 */
void
natkit_rendezvous_lookup_async (NatkitRendezvous    *self,
                                const char          *peer_id,
                                GCancellable        *cancellable,
                                GAsyncReadyCallback  callback,
                                gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GTask) inner = NULL;
  g_autoptr(JsonObject) message = json_object_new ();

  g_return_if_fail (NATKIT_IS_RENDEZVOUS (self));
  g_return_if_fail (peer_id != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_rendezvous_lookup_async);
  inner = g_task_new (self, cancellable, lookup_cb, g_object_ref (task));
  json_object_set_string_member (message, "peer_id", peer_id);
  send_request (self, "lookup", message, inner);
}

/**
 * natkit_rendezvous_lookup_finish:
 * @self: a #NatkitRendezvous
 * @result: the #GAsyncResult
 * @out_reservation: (out) (optional): whether the peer holds a relay
 *   reservation
 * @error: return location for a #GError
 *
 * Returns: whether the peer is registered; %FALSE with @error set when the
 *   server could not be asked
 */
gboolean
natkit_rendezvous_lookup_finish (NatkitRendezvous  *self,
                                 GAsyncResult      *result,
                                 gboolean          *out_reservation,
                                 GError           **error)
{
  g_autofree gboolean *out = NULL;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  out = g_task_propagate_pointer (G_TASK (result), error);
  if (!out)
    return FALSE;
  if (out_reservation)
    *out_reservation = out[1];
  return out[0];
}

static void
claim_cb (GObject      *source,
          GAsyncResult *res,
          gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) reply = g_task_propagate_pointer (G_TASK (res), &error);
  JsonNode *granted;
  const char *holder = NULL;

  if (!reply)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  granted = json_object_get_member (reply, "granted");
  if (granted == NULL || !JSON_NODE_HOLDS_VALUE (granted) ||
      json_node_get_value_type (granted) != G_TYPE_BOOLEAN)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "natkit-server answered the address claim without "
                               "“granted”");
      return;
    }
  if (json_node_get_boolean (granted))
    {
      g_task_return_pointer (task, g_strdup (""), g_free);
      return;
    }
  _natkit_wire_get_string (reply, "holder", &holder, NULL);
  if (holder == NULL || !natkit_peer_id_validate (holder, NULL))
    holder = "another peer";
  g_task_return_pointer (task, g_strdup (holder), g_free);
}

/**
 * natkit_rendezvous_claim_address_async:
 * @self: a registered #NatkitRendezvous
 * @network: a virtual network, "A.B.C.D/N"
 * @address: the IPv4 address in it this peer wants
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the answer
 * @user_data: data for @callback
 *
 * Claims @address in @network for this peer at the server, so that two
 * peers of a virtual network ([class@Natkit.Network]) never use the same
 * address. The claim holds while the registration lives; a new claim in
 * the same network replaces this peer's previous one.
 */
void
natkit_rendezvous_claim_address_async (NatkitRendezvous    *self,
                                       const char          *network,
                                       const char          *address,
                                       GCancellable        *cancellable,
                                       GAsyncReadyCallback  callback,
                                       gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GTask) inner = NULL;
  g_autoptr(JsonObject) message = json_object_new ();

  g_return_if_fail (NATKIT_IS_RENDEZVOUS (self));
  g_return_if_fail (network != NULL && address != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_rendezvous_claim_address_async);
  inner = g_task_new (self, cancellable, claim_cb, g_object_ref (task));
  json_object_set_string_member (message, "network", network);
  json_object_set_string_member (message, "address", address);
  send_request (self, "claim", message, inner);
}

/**
 * natkit_rendezvous_claim_address_finish:
 * @self: a #NatkitRendezvous
 * @result: the #GAsyncResult
 * @out_holder: (out) (optional) (transfer full) (nullable): the peer that
 *   holds the address when it was not granted
 * @error: return location for a #GError
 *
 * Returns: %TRUE when the address is this peer's; %FALSE when another peer
 *   holds it (@out_holder), or with @error set when the server could not be
 *   asked (a server older than the claim request answers `bad-request`)
 */
gboolean
natkit_rendezvous_claim_address_finish (NatkitRendezvous  *self,
                                        GAsyncResult      *result,
                                        char             **out_holder,
                                        GError           **error)
{
  g_autofree char *holder = NULL;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  if (out_holder)
    *out_holder = NULL;
  holder = g_task_propagate_pointer (G_TASK (result), error);
  if (holder == NULL)
    return FALSE;
  if (*holder == '\0')
    return TRUE;
  if (out_holder)
    *out_holder = g_steal_pointer (&holder);
  return FALSE;
}

typedef struct
{
  char *peer_id;
  char *tag;
} OpenCircuitData;

static void
open_circuit_data_free (gpointer data)
{
  OpenCircuitData *d = data;

  g_free (d->peer_id);
  g_free (d->tag);
  g_free (d);
}

static void
open_circuit_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (source);
  g_autoptr(GTask) task = user_data;
  OpenCircuitData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) reply = g_task_propagate_pointer (G_TASK (res), &error);
  NatkitRelayCircuit *circuit;

  if (!reply)
    {
      g_task_return_new_error (task, NATKIT_ERROR,
                               error->domain == NATKIT_ERROR ? error->code :
                                 NATKIT_ERROR_FAILED,
                               "relay %s cannot open a circuit to %s: %s",
                               self->server, d->peer_id, error->message);
      return;
    }
  circuit = circuit_new (self, reply, d->peer_id, d->tag, &error);
  if (!circuit)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "relay %s sent an invalid circuit: %s",
                               self->server, error->message);
      return;
    }
  g_debug ("opened relay circuit %u to %s at %s", circuit->id, d->peer_id,
           self->server);
  if (g_task_return_error_if_cancelled (task))
    {
      natkit_relay_circuit_close (circuit);
      g_object_unref (circuit);
      return;
    }
  g_task_return_pointer (task, circuit, g_object_unref);
}

/**
 * natkit_rendezvous_open_circuit_async:
 * @self: a #NatkitRendezvous
 * @peer_id: the peer at the other end, registered at this server with a
 *   relay reservation
 * @tag: (nullable): a tag (up to 64 characters) the peer receives with the
 *   circuit
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the circuit
 * @user_data: data for @callback
 *
 * Asks the server for a relay circuit to @peer_id. The peer's client emits
 * #NatkitRendezvous::circuit-offered.
 */
void
natkit_rendezvous_open_circuit_async (NatkitRendezvous    *self,
                                      const char          *peer_id,
                                      const char          *tag,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GTask) inner = NULL;
  g_autoptr(JsonObject) message = json_object_new ();
  OpenCircuitData *d;

  g_return_if_fail (NATKIT_IS_RENDEZVOUS (self));
  g_return_if_fail (peer_id != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_rendezvous_open_circuit_async);
  d = g_new0 (OpenCircuitData, 1);
  d->peer_id = g_strdup (peer_id);
  d->tag = g_strdup (tag ? tag : "");
  g_task_set_task_data (task, d, open_circuit_data_free);

  if (tag && strlen (tag) > 64)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "a circuit tag has at most 64 characters");
      return;
    }

  inner = g_task_new (self, NULL, open_circuit_cb, g_object_ref (task));
  json_object_set_string_member (message, "peer_id", peer_id);
  json_object_set_string_member (message, "tag", d->tag);
  send_request (self, "connect", message, inner);
}

/**
 * natkit_rendezvous_open_circuit_finish:
 * @self: a #NatkitRendezvous
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the circuit
 */
NatkitRelayCircuit *
natkit_rendezvous_open_circuit_finish (NatkitRendezvous  *self,
                                       GAsyncResult      *result,
                                       GError           **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* NatkitSignaling */

static const char *
natkit_rendezvous_get_local_peer_id (NatkitSignaling *signaling)
{
  return natkit_identity_get_peer_id (NATKIT_RENDEZVOUS (signaling)->identity);
}

static const char *
natkit_rendezvous_get_local_address (NatkitSignaling *signaling)
{
  return NATKIT_RENDEZVOUS (signaling)->local_address;
}

static void
signal_sent_cb (GObject      *source,
                GAsyncResult *res,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) reply = g_task_propagate_pointer (G_TASK (res), &error);

  if (!reply)
    g_task_return_error (task, g_steal_pointer (&error));
  else
    g_task_return_boolean (task, TRUE);
}

static void
natkit_rendezvous_send_async (NatkitSignaling     *signaling,
                              const char          *peer_id,
                              const char          *text,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  NatkitRendezvous *self = NATKIT_RENDEZVOUS (signaling);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(GTask) inner = NULL;
  g_autoptr(JsonObject) message = json_object_new ();
  g_autoptr(JsonNode) body = NULL;
  g_autoptr(GError) error = NULL;

  g_task_set_source_tag (task, natkit_rendezvous_send_async);

  if (strlen (text) > NATKIT_WIRE_MAX_SIGNAL_BODY)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE,
                               "signaling message of %zu bytes is larger than "
                               "natkit-server's limit of %d", strlen (text),
                               NATKIT_WIRE_MAX_SIGNAL_BODY);
      return;
    }
  body = json_from_string (text, &error);
  if (!body || !JSON_NODE_HOLDS_OBJECT (body))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "a signaling message must be a JSON object");
      return;
    }
  if (!self->registered)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "not registered at natkit-server %s%s%s",
                               self->server,
                               self->last_error ? ": " : "",
                               self->last_error ? self->last_error->message : "");
      return;
    }

  inner = g_task_new (self, NULL, signal_sent_cb, g_object_ref (task));
  json_object_set_string_member (message, "to", peer_id);
  json_object_set_member (message, "body", g_steal_pointer (&body));
  send_request (self, "signal", message, inner);
}

static gboolean
natkit_rendezvous_send_finish (NatkitSignaling  *signaling,
                               GAsyncResult     *result,
                               GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, signaling), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_rendezvous_signaling_init (NatkitSignalingInterface *iface)
{
  iface->get_local_peer_id = natkit_rendezvous_get_local_peer_id;
  iface->get_local_address = natkit_rendezvous_get_local_address;
  iface->send_async = natkit_rendezvous_send_async;
  iface->send_finish = natkit_rendezvous_send_finish;
}

void
_natkit_rendezvous_set_registered_for_testing (NatkitRendezvous *self)
{
  self->registered = TRUE;
  self->udp_port = self->port;
}

/* natkit-server's second STUN port (only STUN answers there), or 0 */
guint16
_natkit_rendezvous_get_stun_port2 (NatkitRendezvous *self)
{
  return self->stun_port2;
}
