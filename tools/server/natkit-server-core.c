/* natkit-server-core.c: rendezvous, relay and STUN on one GLib main loop
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The wire protocol is docs/protocol.md. One TLS port carries control
 * connections (register, signal, reserve, connect…) and data channels
 * (attach); one UDP port carries STUN Binding and relayed datagrams.
 *
 * Memory per connection is kept small: reads go through one buffer
 * shared by all connections (pollable streams, read when readable), and a
 * connection only holds the bytes of a frame it has not received in full
 * and what waits to be written.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <json-glib/json-glib.h>
#include <stun/stunagent.h>
#include <stun/stunmessage.h>

#include "natkit.h"
#include "natkit-wire-private.h"
#include "natkit-server-core.h"

#define READ_BUFFER_SIZE     (64 * 1024)
#define MAX_QUEUED           (4 * 1024 * 1024)
#define HELLO_DEADLINE_US    (10 * G_USEC_PER_SEC)
#define SILENCE_LIMIT_US     (90 * G_USEC_PER_SEC)
#define MAX_UNAUTH_PER_IP    32
#define CLOSED_MEMORY_US     (60 * G_USEC_PER_SEC)
#define UDP_BATCH            64

void
natkit_server_limits_init (NatkitServerLimits *limits)
{
  limits->max_circuits = 16;
  limits->circuit_bytes = G_GUINT64_CONSTANT (1) << 30;
  limits->circuit_duration = 3600;
  limits->circuit_rate = 64 * 1024 * 1024;
  limits->reservation_ttl = 600;
  limits->max_peers = 100000;
  limits->max_reservations = 100000;
  limits->max_control_rate = 50;
}

typedef struct _Conn Conn;
typedef struct _Circuit Circuit;

typedef enum {
  CONN_HANDSHAKE,
  CONN_HELLO,       /* hello sent, waiting for register or attach */
  CONN_REGISTERED,
  CONN_DATA,
  CONN_CLOSING,
} ConnState;

struct _Conn
{
  int                refs;
  NatkitServer      *server;
  guint             *live;    /* shared with the server: Conns not yet freed */
  GSocketConnection *base;
  GIOStream         *tls;
  GSource           *read_source;
  GCancellable      *cancellable;
  char              *remote;      /* "ADDR:PORT" */
  char              *remote_ip;
  ConnState          state;
  gboolean           counted_unauth;
  guint8             challenge[NATKIT_WIRE_CHALLENGE_SIZE];
  NatkitWireReader  *reader;
  GQueue             out;         /* GBytes frames */
  gsize              queued;
  gboolean           writing;
  gboolean           close_after_flush;
  gint64             last_activity;
  gint64             deadline;
  double             tokens;
  gint64             tokens_at;

  /* registered */
  char              *peer_id;
  gint64             reservation_expires;  /* 0: none */
  GPtrArray         *circuits;             /* Circuit*, not owned */
  GPtrArray         *claims;               /* "NETWORK ADDRESS" keys it holds */

  /* data mode */
  Circuit           *circuit;
  int                side;
  gboolean           paused;   /* reading stopped: the other end is behind */
};

struct _Circuit
{
  guint32                 id;
  char                   *peer[2];      /* 0 initiator, 1 target */
  Conn                   *control[2];   /* not owned */
  guint8                  token[2][NATKIT_WIRE_TOKEN_SIZE];
  gboolean                bound[2];
  struct sockaddr_storage udp[2];
  socklen_t               udp_len[2];
  Conn                   *data[2];      /* TLS data channel, not owned */
  guint64                 bytes;
  double                  rate_tokens;
  gint64                  rate_at;
  guint                   timer;
};

typedef struct
{
  struct sockaddr_storage addr;
  socklen_t               len;
  guint32                 circuit;
  gint64                  until;
} ClosedCircuit;

struct _NatkitServer
{
  GObject             parent_instance;

  char               *host;
  guint16             tls_port;
  guint16             udp_port;
  GTlsCertificate    *certificate;
  char               *fingerprint;
  NatkitServerLimits  limits;

  GSocketService     *service;
  GSocket            *udp;
  GSource            *udp_source;
  gboolean            stun2_enabled;   /* a second UDP port, STUN only */
  guint16             stun2_port;
  GStrv               turn_uris;      /* handed out with REST credentials */
  char               *turn_secret;
  guint               turn_ttl;       /* s */
  GSocket            *stun2;
  GSource            *stun2_source;
  guint               sweep_id;
  guint8             *read_buffer;

  GHashTable         *conns;          /* Conn* set */
  GHashTable         *peers;          /* peer id → Conn* */
  GHashTable         *circuits;       /* id → Circuit* */
  GHashTable         *claims;         /* "NETWORK ADDRESS" → Conn* (registered) */
  GHashTable         *unauth;         /* ip → count */
  GHashTable         *sniffs;         /* Sniff* set: TCP connections not yet TLS or STUN */
  GArray             *closed;         /* ClosedCircuit */
  guint               n_reservations;
  guint32             next_circuit;
  guint64             bytes_relayed;
  gboolean            stopping;
  GTask              *stop_task;
  guint              *live;           /* Conns not yet freed (g_rc_box) */
  gint64              stop_deadline;
};

G_DEFINE_FINAL_TYPE (NatkitServer, natkit_server, G_TYPE_OBJECT)

static void conn_close        (Conn        *conn,
                               const char  *why);
static void conn_abort        (Conn        *conn);
static void drop_claims       (Conn        *conn);
static void conn_send_frame   (Conn        *conn,
                               GBytes      *frame);
static void circuit_close     (NatkitServer *self,
                               Circuit     *circuit,
                               const char  *reason);

/* ---- connections -------------------------------------------------------- */

static Conn *
conn_ref (Conn *conn)
{
  conn->refs++;
  return conn;
}

static void
conn_unref (Conn *conn)
{
  if (--conn->refs > 0)
    return;
  g_clear_object (&conn->cancellable);
  g_clear_object (&conn->tls);
  g_clear_object (&conn->base);
  g_clear_pointer (&conn->reader, _natkit_wire_reader_free);
  g_queue_clear_full (&conn->out, (GDestroyNotify) g_bytes_unref);
  g_clear_pointer (&conn->circuits, g_ptr_array_unref);
  g_clear_pointer (&conn->claims, g_ptr_array_unref);
  g_free (conn->remote);
  g_free (conn->remote_ip);
  g_free (conn->peer_id);
  (*conn->live)--;
  g_rc_box_release (conn->live);
  g_free (conn);
}

static void
send_json (Conn       *conn,
           JsonObject *message)
{
  conn_send_frame (conn, _natkit_wire_control_frame (message));
}

static void
send_error (Conn       *conn,
            gint64      id,
            const char *code,
            const char *format,
            ...) G_GNUC_PRINTF (4, 5);

static void
send_error (Conn       *conn,
            gint64      id,
            const char *code,
            const char *format,
            ...)
{
  g_autoptr(JsonObject) message = json_object_new ();
  g_autofree char *text = NULL;
  va_list args;

  va_start (args, format);
  text = g_strdup_vprintf (format, args);
  va_end (args);

  json_object_set_string_member (message, "type", "error");
  if (id > 0)
    json_object_set_int_member (message, "id", id);
  json_object_set_string_member (message, "code", code);
  json_object_set_string_member (message, "message", text);
  send_json (conn, message);
}

static JsonObject *
result_for (gint64 id)
{
  JsonObject *message = json_object_new ();

  json_object_set_string_member (message, "type", "result");
  json_object_set_int_member (message, "id", id);
  return message;
}

static JsonObject *
limits_object (NatkitServer *self)
{
  JsonObject *o = json_object_new ();

  json_object_set_int_member (o, "max_circuits", self->limits.max_circuits);
  json_object_set_int_member (o, "circuit_bytes", self->limits.circuit_bytes);
  json_object_set_int_member (o, "circuit_duration", self->limits.circuit_duration);
  json_object_set_int_member (o, "circuit_rate", self->limits.circuit_rate);
  json_object_set_int_member (o, "reservation_ttl", self->limits.reservation_ttl);
  json_object_set_int_member (o, "max_control_rate", self->limits.max_control_rate);
  return o;
}

static gboolean conn_readable_cb (GObject  *stream,
                                  gpointer  user_data);
static void     start_reading    (Conn     *conn);

static gboolean
kick_read_cb (gpointer user_data)
{
  Conn *conn = user_data;

  if (conn->state == CONN_DATA && conn->tls && conn->paused)
    {
      conn->paused = FALSE;
      start_reading (conn);
      conn_readable_cb (G_OBJECT (g_io_stream_get_input_stream (conn->tls)), conn);
    }
  return G_SOURCE_REMOVE;
}

static void
conn_kick_read (Conn *conn)
{
  g_idle_add_full (G_PRIORITY_DEFAULT, kick_read_cb, conn_ref (conn),
                   (GDestroyNotify) conn_unref);
}

static void write_next (Conn *conn);

static void
write_cb (GObject      *source,
          GAsyncResult *res,
          gpointer      user_data)
{
  Conn *conn = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) done = g_object_steal_data (G_OBJECT (source), "natkit-writing");

  conn->writing = FALSE;
  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res, NULL, &error))
    {
      if (conn->state != CONN_CLOSING)
        {
          g_debug ("write to %s failed: %s", conn->remote, error->message);
          conn_close (conn, NULL);
        }
      else if (conn->close_after_flush)
        conn_abort (conn);  /* the goodbye cannot go out: close now */
      conn_unref (conn);
      return;
    }
  if (done)
    conn->queued -= MIN (conn->queued, g_bytes_get_size (done));
  write_next (conn);
  /* the other end of a TLS-to-TLS circuit may have stopped reading for
   * us: let it go on */
  if (conn->state == CONN_DATA && conn->circuit && conn->queued <= MAX_QUEUED / 2)
    {
      Conn *other = conn->circuit->data[1 - conn->side];

      if (other && other->state == CONN_DATA && other->tls)
        conn_kick_read (other);
    }
  conn_unref (conn);
}

static void
tls_closed_cb (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  g_io_stream_close_finish (G_IO_STREAM (source), res, NULL);
  conn_unref (user_data);
}

static void
conn_finish_close (Conn *conn)
{
  g_hash_table_remove (conn->server->conns, conn);
  /* the Conn lives until its close_notify is out, so that a stopping
   * server knows when every connection is really gone */
  if (conn->tls)
    g_io_stream_close_async (conn->tls, G_PRIORITY_DEFAULT, NULL,
                             tls_closed_cb, conn_ref (conn));
  conn_unref (conn);  /* the table's */
}

static void
write_next (Conn *conn)
{
  GOutputStream *out;
  GByteArray *batch;
  GBytes *bytes;

  if (conn->writing || !conn->tls)
    return;
  if (g_queue_is_empty (&conn->out))
    {
      if (conn->close_after_flush && conn->state == CONN_CLOSING)
        {
          conn->close_after_flush = FALSE;
          conn_finish_close (conn);
        }
      return;
    }

  /* coalesce queued frames into one write of up to 64 KiB */
  batch = g_byte_array_new ();
  while (!g_queue_is_empty (&conn->out))
    {
      GBytes *frame = g_queue_peek_head (&conn->out);

      if (batch->len > 0 && batch->len + g_bytes_get_size (frame) > 65536)
        break;
      g_queue_pop_head (&conn->out);
      g_byte_array_append (batch, g_bytes_get_data (frame, NULL),
                           g_bytes_get_size (frame));
      g_bytes_unref (frame);
    }
  bytes = g_byte_array_free_to_bytes (batch);
  out = g_io_stream_get_output_stream (conn->tls);
  g_object_set_data_full (G_OBJECT (out), "natkit-writing", bytes,
                          (GDestroyNotify) g_bytes_unref);
  conn->writing = TRUE;
  g_output_stream_write_all_async (out, g_bytes_get_data (bytes, NULL),
                                   g_bytes_get_size (bytes), G_PRIORITY_DEFAULT,
                                   conn->cancellable, write_cb, conn_ref (conn));
}

static void
conn_send_frame (Conn   *conn,
                 GBytes *frame)
{
  if (!frame)
    return;
  if (!conn->tls ||
      (conn->state == CONN_CLOSING && !conn->close_after_flush))
    {
      g_bytes_unref (frame);
      return;
    }
  conn->queued += g_bytes_get_size (frame);
  g_queue_push_tail (&conn->out, frame);
  write_next (conn);
}

/* The connection authenticated (or ended): it no longer counts against
 * its address's limit of unauthenticated connections. */
static void
conn_uncount_unauth (Conn *conn)
{
  GHashTable *unauth = conn->server->unauth;
  guint n;

  if (!conn->counted_unauth)
    return;
  conn->counted_unauth = FALSE;
  n = GPOINTER_TO_UINT (g_hash_table_lookup (unauth, conn->remote_ip));
  if (n <= 1)
    g_hash_table_remove (unauth, conn->remote_ip);
  else
    g_hash_table_insert (unauth, g_strdup (conn->remote_ip), GUINT_TO_POINTER (n - 1));
}

static void
drop_reservation (Conn *conn)
{
  if (conn->reservation_expires)
    {
      conn->reservation_expires = 0;
      conn->server->n_reservations--;
    }
}

/* Ends @conn: with @why (an error code) it is told first, else closed
 * at once. */
static void
conn_close (Conn       *conn,
            const char *why)
{
  NatkitServer *self = conn->server;

  if (conn->state == CONN_CLOSING)
    return;

  conn_uncount_unauth (conn);

  if (conn->state == CONN_REGISTERED)
    {
      if (g_hash_table_lookup (self->peers, conn->peer_id) == conn)
        g_hash_table_remove (self->peers, conn->peer_id);
      drop_reservation (conn);
      drop_claims (conn);
      while (conn->circuits && conn->circuits->len > 0)
        circuit_close (self, g_ptr_array_index (conn->circuits, 0),
                       "the other end disconnected");
    }
  if (conn->state == CONN_DATA && conn->circuit)
    {
      if (conn->circuit->data[conn->side] == conn)
        conn->circuit->data[conn->side] = NULL;
      conn->circuit = NULL;
    }

  conn->state = CONN_CLOSING;
  if (conn->read_source)
    {
      g_source_destroy (conn->read_source);
      g_clear_pointer (&conn->read_source, g_source_unref);
    }
  if (why && conn->tls)
    {
      /* let the error go out, then close */
      conn->close_after_flush = TRUE;
      if (!conn->writing && g_queue_is_empty (&conn->out))
        conn_finish_close (conn);
      return;
    }
  conn_abort (conn);
}

/* Drops what @conn still had to send and closes it now. */
static void
conn_abort (Conn *conn)
{
  conn->close_after_flush = FALSE;
  g_cancellable_cancel (conn->cancellable);
  g_queue_clear_full (&conn->out, (GDestroyNotify) g_bytes_unref);
  conn_finish_close (conn);
}

static void
refuse (Conn       *conn,
        gint64      id,
        const char *code,
        const char *message)
{
  g_info ("dropping %s%s%s: %s (%s)", conn->peer_id ? "peer " : "",
          conn->peer_id ? conn->peer_id : "connection from ",
          conn->peer_id ? "" : conn->remote, message, code);
  send_error (conn, id, code, "%s", message);
  conn_close (conn, code);
}

/* ---- circuits ----------------------------------------------------------- */

static void
remember_closed (NatkitServer *self,
                 Circuit      *circuit)
{
  for (int side = 0; side < 2; side++)
    if (circuit->bound[side])
      {
        ClosedCircuit c = { { 0, }, 0, 0, 0 };

        memcpy (&c.addr, &circuit->udp[side], circuit->udp_len[side]);
        c.len = circuit->udp_len[side];
        c.circuit = circuit->id;
        c.until = g_get_monotonic_time () + CLOSED_MEMORY_US;
        if (self->closed->len < 100000)
          g_array_append_val (self->closed, c);
      }
}

static void
circuit_close (NatkitServer *self,
               Circuit      *circuit,
               const char   *reason)
{
  g_debug ("circuit %u (%s ↔ %s) closed: %s", circuit->id, circuit->peer[0],
           circuit->peer[1], reason);
  g_hash_table_steal (self->circuits, GUINT_TO_POINTER (circuit->id));
  g_clear_handle_id (&circuit->timer, g_source_remove);
  remember_closed (self, circuit);

  for (int side = 0; side < 2; side++)
    {
      Conn *control = circuit->control[side];
      Conn *data = circuit->data[side];

      if (control)
        {
          g_autoptr(JsonObject) message = json_object_new ();

          g_ptr_array_remove (control->circuits, circuit);
          json_object_set_string_member (message, "type", "circuit-closed");
          json_object_set_int_member (message, "circuit", circuit->id);
          json_object_set_string_member (message, "reason", reason);
          send_json (control, message);
        }
      if (data)
        {
          data->circuit = NULL;
          conn_close (data, NULL);
        }
      g_free (circuit->peer[side]);
    }
  g_free (circuit);
}

typedef struct
{
  NatkitServer *server;
  guint32       id;
} CircuitTimer;

static gboolean
circuit_expire_cb (gpointer user_data)
{
  CircuitTimer *t = user_data;
  Circuit *circuit = g_hash_table_lookup (t->server->circuits, GUINT_TO_POINTER (t->id));

  if (circuit)
    {
      circuit->timer = 0;
      circuit_close (t->server, circuit, "time limit reached");
    }
  return G_SOURCE_REMOVE;
}

/* Counts @len bytes against the circuit's limits; FALSE: drop the
 * datagram (rate) — the circuit may have been closed (bytes), check
 * *closed. */
static gboolean
circuit_account (NatkitServer *self,
                 Circuit      *circuit,
                 gsize         len,
                 gboolean     *closed)
{
  gint64 now = g_get_monotonic_time ();
  double rate = self->limits.circuit_rate;

  *closed = FALSE;
  if (rate > 0)
    {
      circuit->rate_tokens = MIN (rate, circuit->rate_tokens +
                                        (now - circuit->rate_at) * rate / G_USEC_PER_SEC);
      circuit->rate_at = now;
      if (circuit->rate_tokens < len)
        return FALSE;
      circuit->rate_tokens -= len;
    }
  circuit->bytes += len;
  self->bytes_relayed += len;
  if (self->limits.circuit_bytes && circuit->bytes > self->limits.circuit_bytes)
    {
      circuit_close (self, circuit, "byte limit reached");
      *closed = TRUE;
      return FALSE;
    }
  return TRUE;
}

static void
udp_send (NatkitServer          *self,
          const struct sockaddr *to,
          socklen_t              to_len,
          const guint8          *header,
          const guint8          *payload,
          gsize                  payload_len)
{
  struct iovec iov[2];
  struct msghdr msg = { 0, };
  int fd;

  if (!self->udp)
    return;
  fd = g_socket_get_fd (self->udp);
  iov[0].iov_base = (void *) header;
  iov[0].iov_len = header ? NATKIT_WIRE_UDP_HEADER : 0;
  iov[1].iov_base = (void *) payload;
  iov[1].iov_len = payload_len;
  msg.msg_name = (void *) to;
  msg.msg_namelen = to_len;
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  if (sendmsg (fd, &msg, MSG_DONTWAIT) < 0 && errno != EAGAIN)
    g_debug ("relay send failed: %s", g_strerror (errno));
}

/* Forwards one datagram from @side to the other end. */
static void
circuit_forward (NatkitServer *self,
                 Circuit      *circuit,
                 int           side,
                 const guint8 *payload,
                 gsize         len)
{
  int other = 1 - side;
  gboolean closed;

  if (!circuit_account (self, circuit, len, &closed))
    return;

  if (circuit->data[other])
    {
      Conn *data = circuit->data[other];

      if (data->queued + len + 2 > MAX_QUEUED)
        return;  /* a datagram relay: drop rather than buffer without bound */
      conn_send_frame (data, _natkit_wire_frame (payload, len));
    }
  else if (circuit->bound[other])
    {
      guint8 header[NATKIT_WIRE_UDP_HEADER];

      _natkit_wire_udp_header (header, NATKIT_WIRE_UDP_DATA, circuit->id);
      udp_send (self, (struct sockaddr *) &circuit->udp[other],
                circuit->udp_len[other], header, payload, len);
    }
}

/* ---- control messages --------------------------------------------------- */

static gboolean
rate_ok (Conn *conn)
{
  NatkitServer *self = conn->server;
  gint64 now = g_get_monotonic_time ();
  double rate = self->limits.max_control_rate;

  if (rate <= 0)
    return TRUE;
  conn->tokens = MIN (2 * rate, conn->tokens + (now - conn->tokens_at) * rate / G_USEC_PER_SEC);
  conn->tokens_at = now;
  if (conn->tokens < 1)
    return FALSE;
  conn->tokens -= 1;
  return TRUE;
}


/* TURN REST credentials for @peer_id on every TURN server this server
 * shares a secret with (docs/deployment.md): coturn's use-auth-secret
 * checks them, nothing is stored here. */
static JsonArray *
turn_servers_for (NatkitServer *self,
                  const char   *peer_id)
{
  JsonArray *array = json_array_new ();
  g_autofree char *username = NULL;
  g_autofree char *password = NULL;

  natkit_turn_rest_credentials (self->turn_secret, peer_id,
                                g_get_real_time () / G_USEC_PER_SEC + self->turn_ttl,
                                &username, &password);
  for (guint i = 0; self->turn_uris[i]; i++)
    {
      JsonObject *server = json_object_new ();

      json_object_set_string_member (server, "uri", self->turn_uris[i]);
      json_object_set_string_member (server, "username", username);
      json_object_set_string_member (server, "password", password);
      json_object_set_int_member (server, "ttl", self->turn_ttl);
      json_array_add_object_element (array, server);
    }
  return array;
}

static void
handle_register (Conn       *conn,
                 gint64      id,
                 JsonObject *message)
{
  NatkitServer *self = conn->server;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) key = NULL;
  g_autoptr(GBytes) signature = NULL;
  g_autoptr(GBytes) data = NULL;
  g_autoptr(JsonObject) reply = NULL;
  const char *peer_id = NULL;
  gint64 version = 0;
  Conn *old;

  if (!_natkit_wire_get_int (message, "version", 0, G_MAXINT32, &version, &error))
    {
      refuse (conn, id, "bad-request", error->message);
      return;
    }
  if (version != NATKIT_WIRE_VERSION)
    {
      g_autofree char *text =
        g_strdup_printf ("this server speaks protocol version %d only, not %" G_GINT64_FORMAT,
                         NATKIT_WIRE_VERSION, version);
      refuse (conn, id, "unsupported-version", text);
      return;
    }
  if (!_natkit_wire_get_string (message, "peer_id", &peer_id, &error) ||
      !(key = _natkit_wire_get_base64 (message, "public_key", 32, &error)) ||
      !(signature = _natkit_wire_get_base64 (message, "signature", 64, &error)))
    {
      refuse (conn, id, "bad-request", error->message);
      return;
    }
  if (!natkit_peer_id_validate (peer_id, NULL) ||
      !natkit_peer_id_matches_public_key (peer_id, key))
    {
      refuse (conn, id, "bad-signature",
              "the public key does not match the peer ID");
      return;
    }
  data = _natkit_wire_register_data (conn->challenge, peer_id);
  if (!natkit_identity_verify (key, data, signature, NULL))
    {
      refuse (conn, id, "bad-signature",
              "the signature over the challenge does not verify");
      return;
    }

  old = g_hash_table_lookup (self->peers, peer_id);
  if (!old && g_hash_table_size (self->peers) >= self->limits.max_peers)
    {
      refuse (conn, id, "limit", "this server holds as many peers as it may");
      return;
    }
  if (old)
    {
      send_error (old, 0, "replaced", "peer %s registered again from %s", peer_id,
                  conn->remote);
      conn_close (old, "replaced");
    }

  conn_uncount_unauth (conn);
  conn->peer_id = g_strdup (peer_id);
  conn->state = CONN_REGISTERED;
  conn->circuits = g_ptr_array_new ();
  g_hash_table_insert (self->peers, conn->peer_id, conn);
  g_info ("peer %s registered from %s", peer_id, conn->remote);

  reply = result_for (id);
  json_object_set_string_member (reply, "peer_id", peer_id);
  json_object_set_string_member (reply, "observed_address", conn->remote);
  json_object_set_int_member (reply, "udp_port", self->udp_port);
  if (self->stun2)
    json_object_set_int_member (reply, "stun_port2", self->stun2_port);
  if (self->turn_uris)
    json_object_set_array_member (reply, "turn", turn_servers_for (self, peer_id));
  json_object_set_object_member (reply, "limits", limits_object (self));
  send_json (conn, reply);
}

static Conn *
registered_peer (NatkitServer *self,
                 const char   *peer_id)
{
  return peer_id ? g_hash_table_lookup (self->peers, peer_id) : NULL;
}

static gboolean
has_reservation (Conn *conn)
{
  if (!conn->reservation_expires)
    return FALSE;
  if (conn->reservation_expires < g_get_monotonic_time ())
    {
      drop_reservation (conn);
      return FALSE;
    }
  return TRUE;
}

static void
handle_connect (Conn       *conn,
                gint64      id,
                JsonObject *message)
{
  NatkitServer *self = conn->server;
  const char *target_id = NULL, *tag = "";
  g_autoptr(JsonObject) reply = NULL;
  g_autoptr(JsonObject) offer = NULL;
  g_autofree char *token0 = NULL;
  g_autofree char *token1 = NULL;
  Circuit *circuit;
  CircuitTimer *t;
  Conn *target;

  if (!_natkit_wire_get_string (message, "peer_id", &target_id, NULL))
    {
      send_error (conn, id, "bad-request", "connect needs a peer_id");
      return;
    }
  _natkit_wire_get_string (message, "tag", &tag, NULL);
  if (strlen (tag) > 64)
    {
      send_error (conn, id, "bad-request", "a circuit tag has at most 64 characters");
      return;
    }
  target = registered_peer (self, target_id);
  if (!target)
    {
      send_error (conn, id, "not-found", "peer %s is not registered here", target_id);
      return;
    }
  if (target == conn)
    {
      send_error (conn, id, "bad-request", "a circuit needs two different peers");
      return;
    }
  if (!has_reservation (target))
    {
      send_error (conn, id, "no-reservation",
                  "peer %s holds no relay reservation here: it does not accept "
                  "relayed connections", target_id);
      return;
    }
  if (conn->circuits->len >= self->limits.max_circuits ||
      target->circuits->len >= self->limits.max_circuits)
    {
      send_error (conn, id, "limit", "a peer may have at most %u circuits at a time",
                  self->limits.max_circuits);
      return;
    }

  circuit = g_new0 (Circuit, 1);
  do
    circuit->id = ++self->next_circuit;
  while (circuit->id == 0 ||
         g_hash_table_contains (self->circuits, GUINT_TO_POINTER (circuit->id)));
  circuit->peer[0] = g_strdup (conn->peer_id);
  circuit->peer[1] = g_strdup (target->peer_id);
  circuit->control[0] = conn;
  circuit->control[1] = target;
  gnutls_rnd (GNUTLS_RND_NONCE, circuit->token, sizeof circuit->token);
  circuit->rate_tokens = self->limits.circuit_rate;
  circuit->rate_at = g_get_monotonic_time ();
  g_hash_table_insert (self->circuits, GUINT_TO_POINTER (circuit->id), circuit);
  g_ptr_array_add (conn->circuits, circuit);
  g_ptr_array_add (target->circuits, circuit);
  if (self->limits.circuit_duration)
    {
      t = g_new0 (CircuitTimer, 1);
      t->server = self;
      t->id = circuit->id;
      circuit->timer = g_timeout_add_seconds_full (G_PRIORITY_DEFAULT,
                                                   self->limits.circuit_duration,
                                                   circuit_expire_cb, t, g_free);
    }
  g_debug ("circuit %u: %s → %s", circuit->id, conn->peer_id, target->peer_id);

  token0 = g_base64_encode (circuit->token[0], NATKIT_WIRE_TOKEN_SIZE);
  token1 = g_base64_encode (circuit->token[1], NATKIT_WIRE_TOKEN_SIZE);
  reply = result_for (id);
  json_object_set_int_member (reply, "circuit", circuit->id);
  json_object_set_string_member (reply, "token", token0);
  json_object_set_object_member (reply, "limits", limits_object (self));
  send_json (conn, reply);

  offer = json_object_new ();
  json_object_set_string_member (offer, "type", "circuit");
  json_object_set_int_member (offer, "circuit", circuit->id);
  json_object_set_string_member (offer, "from", conn->peer_id);
  json_object_set_string_member (offer, "tag", tag);
  json_object_set_string_member (offer, "token", token1);
  json_object_set_object_member (offer, "limits", limits_object (self));
  send_json (target, offer);
}

static void
handle_attach (Conn       *conn,
               gint64      id,
               JsonObject *message)
{
  NatkitServer *self = conn->server;
  g_autoptr(GBytes) token = NULL;
  g_autoptr(JsonObject) reply = NULL;
  gint64 version = 0, cid = 0;
  Circuit *circuit;
  int side;

  if (!_natkit_wire_get_int (message, "version", 0, G_MAXINT32, &version, NULL) ||
      version != NATKIT_WIRE_VERSION)
    {
      refuse (conn, id, "unsupported-version", "this server speaks protocol version 1 only");
      return;
    }
  if (!_natkit_wire_get_int (message, "circuit", 1, G_MAXUINT32, &cid, NULL) ||
      !(token = _natkit_wire_get_base64 (message, "token", NATKIT_WIRE_TOKEN_SIZE, NULL)))
    {
      refuse (conn, id, "bad-request", "attach needs a circuit and a token");
      return;
    }
  circuit = g_hash_table_lookup (self->circuits, GUINT_TO_POINTER ((guint32) cid));
  side = -1;
  if (circuit)
    for (int s = 0; s < 2; s++)
      if (memcmp (g_bytes_get_data (token, NULL), circuit->token[s], NATKIT_WIRE_TOKEN_SIZE) == 0)
        side = s;
  if (side < 0)
    {
      refuse (conn, id, "not-found", "no such circuit, or a wrong token");
      return;
    }

  if (circuit->data[side])
    {
      Conn *old = circuit->data[side];

      old->circuit = NULL;
      conn_close (old, NULL);
    }
  conn_uncount_unauth (conn);
  circuit->data[side] = conn;
  circuit->bound[side] = FALSE;  /* the newer data channel replaces UDP */
  conn->circuit = circuit;
  conn->side = side;
  conn->state = CONN_DATA;
  _natkit_wire_reader_set_max_frame (conn->reader, NATKIT_WIRE_MAX_DATA);
  g_debug ("circuit %u: %s attached a TLS data channel from %s", circuit->id,
           circuit->peer[side], conn->remote);

  reply = result_for (id);
  json_object_set_int_member (reply, "circuit", circuit->id);
  send_json (conn, reply);
}

/* Virtual network addresses (docs/protocol.md 3.9): held while the peer's
 * registration lives. */
#define MAX_CLAIMS_PER_PEER 8

static void
drop_claims (Conn *conn)
{
  NatkitServer *self = conn->server;

  for (guint i = 0; conn->claims && i < conn->claims->len; i++)
    {
      const char *key = g_ptr_array_index (conn->claims, i);

      if (g_hash_table_lookup (self->claims, key) == conn)
        g_hash_table_remove (self->claims, key);
    }
  if (conn->claims)
    g_ptr_array_set_size (conn->claims, 0);
}

static void
handle_claim (Conn       *conn,
              gint64      id,
              JsonObject *message)
{
  NatkitServer *self = conn->server;
  const char *network = NULL, *address = NULL;
  g_autoptr(GInetAddress) ip = NULL;
  g_autoptr(JsonObject) reply = NULL;
  g_autofree char *key = NULL;
  g_autofree char *prefix = NULL;
  const char *slash;
  Conn *holder;

  if (!_natkit_wire_get_string (message, "network", &network, NULL) ||
      !_natkit_wire_get_string (message, "address", &address, NULL) ||
      strlen (network) > 18 || (slash = strchr (network, '/')) == NULL ||
      (ip = g_inet_address_new_from_string (address)) == NULL ||
      g_inet_address_get_family (ip) != G_SOCKET_FAMILY_IPV4)
    {
      send_error (conn, id, "bad-request",
                  "claim needs “network” (A.B.C.D/N) and an IPv4 “address”");
      return;
    }
  {
    g_autofree char *base = g_strndup (network, slash - network);
    g_autoptr(GInetAddress) net = g_inet_address_new_from_string (base);

    if (net == NULL || g_inet_address_get_family (net) != G_SOCKET_FAMILY_IPV4)
      {
        send_error (conn, id, "bad-request", "“network” must be A.B.C.D/N");
        return;
      }
  }
  key = g_strdup_printf ("%s %s", network, address);
  holder = g_hash_table_lookup (self->claims, key);
  reply = result_for (id);
  if (holder && holder != conn && g_strcmp0 (holder->peer_id, conn->peer_id) != 0)
    {
      json_object_set_boolean_member (reply, "granted", FALSE);
      json_object_set_string_member (reply, "holder", holder->peer_id);
      send_json (conn, reply);
      return;
    }
  /* one address per network and peer: a new claim replaces the old one */
  prefix = g_strdup_printf ("%s ", network);
  if (conn->claims == NULL)
    conn->claims = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < conn->claims->len; i++)
    if (g_str_has_prefix (g_ptr_array_index (conn->claims, i), prefix))
      {
        const char *old = g_ptr_array_index (conn->claims, i);

        if (g_hash_table_lookup (self->claims, old) == conn)
          g_hash_table_remove (self->claims, old);
        g_ptr_array_remove_index_fast (conn->claims, i);
        break;
      }
  if (conn->claims->len >= MAX_CLAIMS_PER_PEER)
    {
      send_error (conn, id, "limit", "a peer holds at most %d addresses",
                  MAX_CLAIMS_PER_PEER);
      return;
    }
  g_hash_table_replace (self->claims, g_strdup (key), conn);
  g_ptr_array_add (conn->claims, g_steal_pointer (&key));
  json_object_set_boolean_member (reply, "granted", TRUE);
  send_json (conn, reply);
}

static void
handle_control (Conn         *conn,
                const guint8 *body,
                gsize         len)
{
  NatkitServer *self = conn->server;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) message = NULL;
  const char *type = NULL;
  gint64 id = 0;

  if (!rate_ok (conn))
    {
      g_autofree char *text =
        g_strdup_printf ("more than %u control messages a second",
                         self->limits.max_control_rate);
      refuse (conn, 0, "flood", text);
      return;
    }
  message = _natkit_wire_control_parse (body, len, &type, &error);
  if (!message)
    {
      refuse (conn, 0, "bad-request", error->message);
      return;
    }
  if (json_object_has_member (message, "id") &&
      !_natkit_wire_get_int (message, "id", 1, G_MAXINT32, &id, NULL))
    {
      refuse (conn, 0, "bad-request", "“id” must be an integer from 1 to 2^31-1");
      return;
    }

  if (conn->state == CONN_HELLO)
    {
      if (g_str_equal (type, "register"))
        handle_register (conn, id, message);
      else if (g_str_equal (type, "attach"))
        handle_attach (conn, id, message);
      else
        refuse (conn, id, "unauthenticated", "register first");
      return;
    }

  if (id == 0)
    {
      send_error (conn, 0, "bad-request", "requests need an “id”");
      return;
    }

  if (g_str_equal (type, "ping"))
    {
      g_autoptr(JsonObject) reply = result_for (id);
      send_json (conn, reply);
    }
  else if (g_str_equal (type, "lookup"))
    {
      const char *peer_id = NULL;
      g_autoptr(JsonObject) reply = result_for (id);
      Conn *peer;

      _natkit_wire_get_string (message, "peer_id", &peer_id, NULL);
      peer = registered_peer (self, peer_id);
      json_object_set_boolean_member (reply, "online", peer != NULL);
      json_object_set_boolean_member (reply, "reservation", peer && has_reservation (peer));
      send_json (conn, reply);
    }
  else if (g_str_equal (type, "signal"))
    {
      const char *to = NULL;
      JsonNode *body_node = json_object_get_member (message, "body");
      g_autoptr(JsonObject) forward = NULL;
      g_autoptr(JsonObject) reply = NULL;
      g_autofree char *text = NULL;
      Conn *peer;

      if (!_natkit_wire_get_string (message, "to", &to, NULL) || !body_node ||
          !JSON_NODE_HOLDS_OBJECT (body_node))
        {
          send_error (conn, id, "bad-request", "signal needs “to” and an object “body”");
          return;
        }
      text = json_to_string (body_node, FALSE);
      if (strlen (text) > NATKIT_WIRE_MAX_SIGNAL_BODY)
        {
          send_error (conn, id, "too-large", "a signal body is at most %d bytes",
                      NATKIT_WIRE_MAX_SIGNAL_BODY);
          return;
        }
      peer = registered_peer (self, to);
      if (!peer)
        {
          send_error (conn, id, "not-found", "peer %s is not registered here", to);
          return;
        }
      forward = json_object_new ();
      json_object_set_string_member (forward, "type", "signal");
      json_object_set_string_member (forward, "from", conn->peer_id);
      json_object_set_member (forward, "body", json_node_copy (body_node));
      send_json (peer, forward);
      reply = result_for (id);
      send_json (conn, reply);
    }
  else if (g_str_equal (type, "reserve"))
    {
      g_autoptr(JsonObject) reply = NULL;

      if (!conn->reservation_expires &&
          self->n_reservations >= self->limits.max_reservations)
        {
          send_error (conn, id, "limit", "this server holds as many reservations as it may");
          return;
        }
      if (!conn->reservation_expires)
        self->n_reservations++;
      conn->reservation_expires = g_get_monotonic_time () +
                                  (gint64) self->limits.reservation_ttl * G_USEC_PER_SEC;
      reply = result_for (id);
      json_object_set_int_member (reply, "expires_in", self->limits.reservation_ttl);
      json_object_set_object_member (reply, "limits", limits_object (self));
      send_json (conn, reply);
    }
  else if (g_str_equal (type, "turn"))
    {
      g_autoptr(JsonObject) reply = result_for (id);

      /* fresh credentials before the last ones expire */
      json_object_set_array_member (reply, "turn",
                                    self->turn_uris ? turn_servers_for (self, conn->peer_id) :
                                                      json_array_new ());
      send_json (conn, reply);
    }
  else if (g_str_equal (type, "unreserve"))
    {
      g_autoptr(JsonObject) reply = result_for (id);

      drop_reservation (conn);
      send_json (conn, reply);
    }
  else if (g_str_equal (type, "connect"))
    handle_connect (conn, id, message);
  else if (g_str_equal (type, "claim"))
    handle_claim (conn, id, message);
  else if (g_str_equal (type, "close-circuit"))
    {
      gint64 cid = 0;
      Circuit *circuit = NULL;
      g_autoptr(JsonObject) reply = result_for (id);

      if (_natkit_wire_get_int (message, "circuit", 1, G_MAXUINT32, &cid, NULL))
        circuit = g_hash_table_lookup (self->circuits, GUINT_TO_POINTER ((guint32) cid));
      if (circuit && (circuit->control[0] == conn || circuit->control[1] == conn))
        circuit_close (self, circuit, "closed by one end");
      send_json (conn, reply);
    }
  else
    send_error (conn, id, "bad-request", "unknown message type “%s”", type);
}

static void
handle_frame (Conn   *conn,
              GBytes *frame)
{
  gsize len;
  const guint8 *body = g_bytes_get_data (frame, &len);

  if (conn->state == CONN_DATA)
    {
      if (conn->circuit)
        circuit_forward (conn->server, conn->circuit, conn->side, body, len);
      return;
    }
  handle_control (conn, body, len);
}

/* Splits @data into frames and handles each, until @conn closes. */
static void
conn_handle_input (Conn         *conn,
                   const guint8 *data,
                   gsize         len)
{
  _natkit_wire_reader_push (conn->reader, data, len);
  for (;;)
    {
      g_autoptr(GBytes) frame = NULL;
      g_autoptr(GError) frame_error = NULL;

      if (conn->state == CONN_CLOSING)
        break;
      if (!_natkit_wire_reader_next (conn->reader, &frame, &frame_error))
        {
          if (frame_error)
            refuse (conn, 0,
                    g_error_matches (frame_error, NATKIT_ERROR,
                                     NATKIT_ERROR_MESSAGE_TOO_LARGE) ?
                      "too-large" : "bad-request",
                    frame_error->message);
          break;
        }
      handle_frame (conn, frame);
    }
}

static gboolean
conn_readable_cb (GObject  *stream,
                  gpointer  user_data)
{
  Conn *conn = user_data;
  NatkitServer *self = conn->server;
  g_autoptr(GError) error = NULL;

  /* read until the stream would block: TLS may hold decrypted records
   * that no socket readiness announces */
  conn_ref (conn);
  while (conn->state != CONN_CLOSING)
    {
      gssize n;

      /* data channels that cannot write fast enough: stop reading until
       * the other end drained (write_cb kicks us) */
      if (conn->state == CONN_DATA && conn->circuit &&
          conn->circuit->data[1 - conn->side] &&
          conn->circuit->data[1 - conn->side]->queued > MAX_QUEUED / 2)
        {
          if (conn->read_source)
            {
              g_source_destroy (conn->read_source);
              g_clear_pointer (&conn->read_source, g_source_unref);
            }
          conn->paused = TRUE;
          break;
        }

      g_clear_error (&error);
      n = g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (stream),
                                                    self->read_buffer,
                                                    READ_BUFFER_SIZE, NULL, &error);
      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      if (n <= 0)
        {
          g_debug ("%s closed the connection%s%s", conn->peer_id ? conn->peer_id : conn->remote,
                   error ? ": " : "", error ? error->message : "");
          conn_close (conn, NULL);
          break;
        }
      conn->last_activity = g_get_monotonic_time ();
      conn_handle_input (conn, self->read_buffer, n);
    }
  {
    gboolean keep = conn->state != CONN_CLOSING;

    conn_unref (conn);
    return keep ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
  }
}

static void
start_reading (Conn *conn)
{
  GInputStream *in = g_io_stream_get_input_stream (conn->tls);

  conn->read_source = g_pollable_input_stream_create_source (G_POLLABLE_INPUT_STREAM (in),
                                                             conn->cancellable);
  g_source_set_callback (conn->read_source, (GSourceFunc) (void (*)(void)) conn_readable_cb,
                         conn, NULL);
  g_source_attach (conn->read_source, g_main_context_get_thread_default ());
}

static void
handshake_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  Conn *conn = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) hello = NULL;
  g_autoptr(JsonArray) versions = NULL;
  g_autofree char *challenge = NULL;

  if (!g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), res, &error))
    {
      if (conn->state != CONN_CLOSING)
        {
          g_debug ("TLS handshake with %s failed: %s", conn->remote, error->message);
          conn_close (conn, NULL);
        }
      conn_unref (conn);
      return;
    }
  if (conn->state == CONN_CLOSING)
    {
      conn_unref (conn);
      return;
    }

  conn->state = CONN_HELLO;
  gnutls_rnd (GNUTLS_RND_NONCE, conn->challenge, sizeof conn->challenge);
  challenge = g_base64_encode (conn->challenge, sizeof conn->challenge);
  versions = json_array_new ();
  json_array_add_int_element (versions, NATKIT_WIRE_VERSION);
  hello = json_object_new ();
  json_object_set_string_member (hello, "type", "hello");
  json_object_set_int_member (hello, "version", NATKIT_WIRE_VERSION);
  json_object_set_array_member (hello, "versions", g_steal_pointer (&versions));
  json_object_set_string_member (hello, "server", "natkit-server " PACKAGE_VERSION);
  json_object_set_string_member (hello, "challenge", challenge);
  json_object_set_int_member (hello, "udp_port", conn->server->udp_port);
  if (conn->server->stun2)
    json_object_set_int_member (hello, "stun_port2", conn->server->stun2_port);
  send_json (conn, hello);
  start_reading (conn);
  conn_unref (conn);
}

/* A new connection from @ip (taken), in the conns table, counted as
 * unauthenticated; the caller sets its streams. */
static Conn *
conn_new (NatkitServer *self,
          char         *ip,
          guint16       port)
{
  Conn *conn = g_new0 (Conn, 1);
  guint n = GPOINTER_TO_UINT (g_hash_table_lookup (self->unauth, ip));

  conn->refs = 1;  /* the conns table's */
  conn->server = self;
  conn->live = g_rc_box_acquire (self->live);
  (*conn->live)++;
  conn->cancellable = g_cancellable_new ();
  conn->remote_ip = ip;
  conn->remote = strchr (conn->remote_ip, ':') ?
    g_strdup_printf ("[%s]:%u", conn->remote_ip, port) :
    g_strdup_printf ("%s:%u", conn->remote_ip, port);
  conn->reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
  g_queue_init (&conn->out);
  conn->state = CONN_HANDSHAKE;
  conn->last_activity = g_get_monotonic_time ();
  conn->deadline = conn->last_activity + HELLO_DEADLINE_US;
  conn->tokens = 2.0 * self->limits.max_control_rate;
  conn->tokens_at = conn->last_activity;
  conn->counted_unauth = TRUE;
  g_hash_table_insert (self->unauth, g_strdup (conn->remote_ip), GUINT_TO_POINTER (n + 1));
  g_hash_table_add (self->conns, conn);
  return conn;
}

static gsize stun_answer (const guint8          *data,
                          gsize                  len,
                          const struct sockaddr *from,
                          socklen_t              from_len,
                          guint8                *answer,
                          gsize                  answer_size);

/* Starts TLS on a connection whose first byte says it is TLS. */
static void
conn_start_tls (NatkitServer      *self,
                GSocketConnection *connection,
                char              *ip,        /* taken */
                guint16            port)
{
  g_autoptr(GError) error = NULL;
  GIOStream *tls;
  Conn *conn;

  tls = g_tls_server_connection_new (G_IO_STREAM (connection), self->certificate, &error);
  if (!tls)
    {
      g_warning ("cannot set up TLS: %s", error->message);
      g_free (ip);
      return;
    }
  g_socket_set_option (g_socket_connection_get_socket (connection), IPPROTO_TCP,
                       TCP_NODELAY, 1, NULL);
  /* peers are authenticated by their keys, not certificates: no CA
   * database per connection */
  g_tls_connection_set_database (G_TLS_CONNECTION (tls), NULL);

  conn = conn_new (self, ip, port);
  conn->base = g_object_ref (connection);
  conn->tls = tls;

  g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT,
                                    conn->cancellable, handshake_cb, conn_ref (conn));
}

/* ---- STUN over TCP on the TLS port (docs/protocol.md 7.4) --------------- */

/* A new TCP connection until its first byte arrives: 0x00 or 0x01 starts
 * a STUN message (RFC 8489 §6.2.2, no framing: the header says the
 * length), 20..23 a TLS record. One Binding request is answered, then
 * the connection closes. */
#define STUN_TCP_MAX      548
#define MAX_SNIFFS        1024
#define SNIFF_DEADLINE_MS 10000

typedef struct
{
  NatkitServer      *self;
  GSocketConnection *connection;
  char              *ip;
  guint16            port;
  GSource           *readable;
  GSource           *deadline;
  guint8             buffer[STUN_TCP_MAX];
  gsize              have;
  gboolean           stun;
} Sniff;

static void
sniff_free (gpointer data)
{
  Sniff *sniff = data;

  if (sniff->readable)
    {
      g_source_destroy (sniff->readable);
      g_source_unref (sniff->readable);
    }
  if (sniff->deadline)
    {
      g_source_destroy (sniff->deadline);
      g_source_unref (sniff->deadline);
    }
  if (sniff->connection)
    {
      g_io_stream_close (G_IO_STREAM (sniff->connection), NULL, NULL);
      g_object_unref (sniff->connection);
    }
  g_free (sniff->ip);
  g_free (sniff);
}

gsize
_natkit_server_stun_tcp_need (const guint8 *data,
                              gsize         len)
{
  gsize want;

  if (len < 4)
    return 20;
  want = 20 + (((gsize) data[2] << 8) | data[3]);
  return want > STUN_TCP_MAX || (want & 3) != 0 ? 0 : want;
}

static gboolean
sniff_readable_cb (GSocket      *socket,
                   GIOCondition  condition,
                   gpointer      user_data)
{
  Sniff *sniff = user_data;
  NatkitServer *self = sniff->self;
  g_autoptr(GError) error = NULL;

  if (!sniff->stun)
    {
      guint8 first;
      gssize n = g_socket_receive_message (socket, NULL,
                                           &(GInputVector) { &first, 1 }, 1,
                                           NULL, NULL, &(int) { MSG_PEEK }, NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return G_SOURCE_CONTINUE;
      if (n <= 0)
        {
          g_hash_table_remove (self->sniffs, sniff);
          return G_SOURCE_REMOVE;
        }
      if (first > 0x01)
        {
          /* TLS (or garbage the handshake will refuse): the usual way */
          GSocketConnection *connection = g_steal_pointer (&sniff->connection);
          char *ip = g_steal_pointer (&sniff->ip);
          guint16 port = sniff->port;

          g_hash_table_remove (self->sniffs, sniff);
          g_socket_set_blocking (socket, TRUE);   /* as the service gave it */
          conn_start_tls (self, connection, ip, port);
          g_object_unref (connection);
          return G_SOURCE_REMOVE;
        }
      sniff->stun = TRUE;
    }

  for (;;)
    {
      gsize want = _natkit_server_stun_tcp_need (sniff->buffer, sniff->have);
      gssize n;

      if (want == 0)
        {
          g_info ("closing a STUN-over-TCP connection from %s: not a STUN message",
                  sniff->ip);
          g_hash_table_remove (self->sniffs, sniff);
          return G_SOURCE_REMOVE;
        }
      if (sniff->have == want)
        {
          guint8 answer[STUN_TCP_MAX];
          g_autoptr(GSocketAddress) remote = g_socket_get_remote_address (socket, NULL);
          struct sockaddr_storage native;
          gsize answer_len = 0;

          if (remote != NULL &&
              g_socket_address_to_native (remote, &native, sizeof native, NULL))
            answer_len = stun_answer (sniff->buffer, sniff->have,
                                      (const struct sockaddr *) &native,
                                      (socklen_t) g_socket_address_get_native_size (remote),
                                      answer, sizeof answer);
          /* a few dozen bytes into an empty send buffer: never blocks */
          if (answer_len > 0)
            g_socket_send (socket, (const char *) answer, answer_len, NULL, NULL);
          g_hash_table_remove (self->sniffs, sniff);
          return G_SOURCE_REMOVE;
        }
      n = g_socket_receive (socket, (char *) sniff->buffer + sniff->have,
                            want - sniff->have, NULL, &error);
      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return G_SOURCE_CONTINUE;
      if (n <= 0)
        {
          g_hash_table_remove (self->sniffs, sniff);
          return G_SOURCE_REMOVE;
        }
      sniff->have += n;
    }
}

static gboolean
sniff_deadline_cb (gpointer user_data)
{
  Sniff *sniff = user_data;

  g_hash_table_remove (sniff->self->sniffs, sniff);
  return G_SOURCE_REMOVE;
}

static gboolean
incoming_cb (GSocketService    *service,
             GSocketConnection *connection,
             GObject           *source_object,
             gpointer           user_data)
{
  NatkitServer *self = user_data;
  g_autoptr(GSocketAddress) remote = g_socket_connection_get_remote_address (connection, NULL);
  g_autofree char *ip = NULL;
  GSocket *socket = g_socket_connection_get_socket (connection);
  GHashTableIter iter;
  gpointer key;
  Sniff *sniff;
  guint n;

  if (self->stopping || !G_IS_INET_SOCKET_ADDRESS (remote))
    return FALSE;

  ip = g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (remote)));
  n = GPOINTER_TO_UINT (g_hash_table_lookup (self->unauth, ip));
  /* those still silent count as unauthenticated too */
  g_hash_table_iter_init (&iter, self->sniffs);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    if (g_str_equal (((Sniff *) key)->ip, ip))
      n++;
  if (n >= MAX_UNAUTH_PER_IP)
    {
      g_info ("refusing a connection from %s: %u unauthenticated connections "
              "from that address already", ip, n);
      return FALSE;
    }
  if (g_hash_table_size (self->sniffs) >= MAX_SNIFFS)
    {
      g_info ("refusing a connection from %s: %u connections have not said "
              "yet whether they speak TLS or STUN", ip, MAX_SNIFFS);
      return FALSE;
    }

  /* TLS or STUN: the first byte says (the client speaks first in both) */
  g_socket_set_blocking (socket, FALSE);
  sniff = g_new0 (Sniff, 1);
  sniff->self = self;
  sniff->connection = g_object_ref (connection);
  sniff->ip = g_steal_pointer (&ip);
  sniff->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (remote));
  sniff->readable = g_socket_create_source (socket, G_IO_IN, NULL);
  g_source_set_callback (sniff->readable, (GSourceFunc) (void (*)(void)) sniff_readable_cb,
                         sniff, NULL);
  g_source_set_static_name (sniff->readable, "[natkit-server] first byte");
  g_source_attach (sniff->readable, g_main_context_get_thread_default ());
  sniff->deadline = g_timeout_source_new (SNIFF_DEADLINE_MS);
  g_source_set_callback (sniff->deadline, sniff_deadline_cb, sniff, NULL);
  g_source_set_static_name (sniff->deadline, "[natkit-server] first byte deadline");
  g_source_attach (sniff->deadline, g_main_context_get_thread_default ());
  g_hash_table_add (self->sniffs, sniff);
  return TRUE;
}

/* ---- UDP ---------------------------------------------------------------- */

static gboolean
same_address (const struct sockaddr_storage *a,
              socklen_t                      a_len,
              const struct sockaddr         *b,
              socklen_t                      b_len)
{
  if (a->ss_family != b->sa_family)
    return FALSE;
  if (a->ss_family == AF_INET)
    {
      const struct sockaddr_in *x = (const struct sockaddr_in *) a;
      const struct sockaddr_in *y = (const struct sockaddr_in *) b;

      return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
  if (a->ss_family == AF_INET6)
    {
      const struct sockaddr_in6 *x = (const struct sockaddr_in6 *) a;
      const struct sockaddr_in6 *y = (const struct sockaddr_in6 *) b;

      return x->sin6_port == y->sin6_port &&
             memcmp (&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
  return a_len == b_len && memcmp (a, b, a_len) == 0;
}

static gsize
stun_answer (const guint8          *data,
             gsize                  len,
             const struct sockaddr *from,
             socklen_t              from_len,
             guint8                *answer,
             gsize                  answer_size)
{
  static const uint16_t known[] = { 0 };
  StunAgent agent;
  StunMessage request, response;
  StunValidationStatus validation;
  size_t out_len;

  if (len < 20 || len > 548)
    return 0;
  /* A classic RFC 3489 Binding request (no magic cookie), as libnice's
   * server-reflexive discovery sends: answered with MAPPED-ADDRESS, the
   * 3489 way (IPv4 only; 32 bytes, 12 over the request) */
  if (!(data[4] == 0x21 && data[5] == 0x12 && data[6] == 0xa4 && data[7] == 0x42))
    {
      if (from->sa_family != AF_INET)
        return 0;
      stun_agent_init (&agent, known, STUN_COMPATIBILITY_RFC3489,
                       STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
      validation = stun_agent_validate (&agent, &request, data, len, NULL, NULL);
      if ((validation != STUN_VALIDATION_SUCCESS &&
           validation != STUN_VALIDATION_UNKNOWN_REQUEST_ATTRIBUTE) ||
          stun_message_get_class (&request) != STUN_REQUEST ||
          stun_message_get_method (&request) != STUN_BINDING ||
          !stun_agent_init_response (&agent, &response, answer, answer_size, &request) ||
          stun_message_append_addr (&response, STUN_ATTRIBUTE_MAPPED_ADDRESS,
                                    from, from_len) != STUN_MESSAGE_RETURN_SUCCESS)
        return 0;
      out_len = stun_agent_finish_message (&agent, &response, NULL, 0);
      return out_len <= len + 12 ? out_len : 0;
    }
  /* FINGERPRINT is optional in a Binding request (RFC 8489 §14.7): an
   * agent with USE_FINGERPRINT would drop requests without one */
  stun_agent_init (&agent, known, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
  validation = stun_agent_validate (&agent, &request, data, len, NULL, NULL);
  if (validation != STUN_VALIDATION_SUCCESS &&
      validation != STUN_VALIDATION_UNKNOWN_REQUEST_ATTRIBUTE)
    return 0;
  if (stun_message_get_class (&request) != STUN_REQUEST ||
      stun_message_get_method (&request) != STUN_BINDING)
    return 0;
  stun_agent_init (&agent, known, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_USE_FINGERPRINT | STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
  if (!stun_agent_init_response (&agent, &response, answer, answer_size, &request))
    return 0;
  if (stun_message_append_xor_addr (&response, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
                                    (const struct sockaddr_storage *) from, from_len) != STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  out_len = stun_agent_finish_message (&agent, &response, NULL, 0);
  /* no amplification: never more than 12 (IPv4) / 24 (IPv6) bytes over the
   * request */
  if (out_len == 0 || out_len > len + (from->sa_family == AF_INET6 ? 24 : 12))
    {
      /* FINGERPRINT made it larger: answer without it */
      stun_agent_init (&agent, known, STUN_COMPATIBILITY_RFC5389,
                       STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
      if (!stun_agent_init_response (&agent, &response, answer, answer_size, &request) ||
          stun_message_append_xor_addr (&response, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
                                        (const struct sockaddr_storage *) from, from_len) != STUN_MESSAGE_RETURN_SUCCESS)
        return 0;
      out_len = stun_agent_finish_message (&agent, &response, NULL, 0);
      if (out_len > len + (from->sa_family == AF_INET6 ? 24 : 12))
        return 0;
    }
  return out_len;
}

static gsize
handle_udp (NatkitServer          *self,
            const guint8          *data,
            gsize                  len,
            const struct sockaddr *from,
            socklen_t              from_len,
            guint8                *answer,
            gsize                  answer_size)
{
  NatkitWireUdpType type;
  guint32 cid;
  const guint8 *payload;
  gsize payload_len;
  Circuit *circuit;

  if (len >= 1 && (data[0] & 0xc0) == 0)
    return stun_answer (data, len, from, from_len, answer, answer_size);

  if (!_natkit_wire_udp_parse (data, len, &type, &cid, &payload, &payload_len))
    return 0;
  circuit = g_hash_table_lookup (self->circuits, GUINT_TO_POINTER (cid));

  if (type == NATKIT_WIRE_UDP_BIND && circuit)
    {
      for (int side = 0; side < 2; side++)
        if (memcmp (payload, circuit->token[side], NATKIT_WIRE_TOKEN_SIZE) == 0)
          {
            if (!circuit->bound[side] || !same_address (&circuit->udp[side],
                                                       circuit->udp_len[side],
                                                       from, from_len))
              g_debug ("circuit %u: %s bound UDP", cid, circuit->peer[side]);
            memcpy (&circuit->udp[side], from, from_len);
            circuit->udp_len[side] = from_len;
            circuit->bound[side] = TRUE;
            if (circuit->data[side])
              {
                Conn *old = circuit->data[side];

                old->circuit = NULL;
                circuit->data[side] = NULL;
                conn_close (old, NULL);
              }
            _natkit_wire_udp_header (answer, NATKIT_WIRE_UDP_BOUND, cid);
            return NATKIT_WIRE_UDP_HEADER;
          }
      return 0;
    }

  if (type == NATKIT_WIRE_UDP_DATA)
    {
      if (circuit)
        {
          for (int side = 0; side < 2; side++)
            if (circuit->bound[side] &&
                same_address (&circuit->udp[side], circuit->udp_len[side], from, from_len))
              {
                circuit_forward (self, circuit, side, payload, payload_len);
                return 0;
              }
          return 0;
        }
      /* a circuit that ended: tell the address that was bound to it */
      for (guint i = 0; i < self->closed->len; i++)
        {
          ClosedCircuit *c = &g_array_index (self->closed, ClosedCircuit, i);

          if (c->circuit == cid && same_address (&c->addr, c->len, from, from_len) &&
              c->until > g_get_monotonic_time ())
            {
              _natkit_wire_udp_header (answer, NATKIT_WIRE_UDP_CLOSED, cid);
              return NATKIT_WIRE_UDP_HEADER;
            }
        }
    }
  return 0;
}

gsize
_natkit_server_handle_udp (NatkitServer   *self,
                           const guint8   *data,
                           gsize           len,
                           GSocketAddress *from,
                           guint8         *answer,
                           gsize           answer_size)
{
  struct sockaddr_storage addr;

  if (!g_socket_address_to_native (from, &addr, sizeof addr, NULL))
    return 0;
  return handle_udp (self, data, len, (struct sockaddr *) &addr,
                     g_socket_address_get_native_size (from), answer, answer_size);
}

/* ---- test hooks (fuzz targets, tests): no sockets ------------------------ */

/* A circuit between two peers without control connections, for feeding
 * _natkit_server_handle_udp(). */
void
_natkit_server_add_test_circuit (NatkitServer *self,
                                 guint32       id,
                                 const guint8 *token0,
                                 const guint8 *token1)
{
  Circuit *circuit;

  g_return_if_fail (id != 0);
  g_return_if_fail (!g_hash_table_contains (self->circuits, GUINT_TO_POINTER (id)));

  circuit = g_new0 (Circuit, 1);
  circuit->id = id;
  circuit->peer[0] = g_strdup ("test-initiator");
  circuit->peer[1] = g_strdup ("test-target");
  memcpy (circuit->token[0], token0, NATKIT_WIRE_TOKEN_SIZE);
  memcpy (circuit->token[1], token1, NATKIT_WIRE_TOKEN_SIZE);
  circuit->rate_tokens = self->limits.circuit_rate;
  circuit->rate_at = g_get_monotonic_time ();
  g_hash_table_insert (self->circuits, GUINT_TO_POINTER (id), circuit);
}

/* A control connection without a stream (what it would write is
 * dropped), past the TLS handshake, whose hello carried @challenge. */
NatkitServerTestConn *
_natkit_server_test_conn_new (NatkitServer *self,
                              const guint8 *challenge)
{
  Conn *conn = conn_new (self, g_strdup ("192.0.2.1"), 4000);

  conn->state = CONN_HELLO;
  memcpy (conn->challenge, challenge, NATKIT_WIRE_CHALLENGE_SIZE);
  return (NatkitServerTestConn *) conn_ref (conn);
}

/* Handles @data as bytes read from the connection; FALSE once it is
 * closed. */
gboolean
_natkit_server_test_conn_feed (NatkitServerTestConn *test_conn,
                               const guint8         *data,
                               gsize                 len)
{
  Conn *conn = (Conn *) test_conn;

  if (conn->state != CONN_CLOSING)
    conn_handle_input (conn, data, len);
  return conn->state != CONN_CLOSING;
}

void
_natkit_server_test_conn_free (NatkitServerTestConn *test_conn)
{
  Conn *conn = (Conn *) test_conn;

  conn_close (conn, NULL);
  conn_unref (conn);
}

void
_natkit_server_feed_control_for_fuzzing (NatkitServer *self,
                                         const guint8 *data,
                                         gsize         len)
{
  static const guint8 challenge[NATKIT_WIRE_CHALLENGE_SIZE] = { 0, };
  NatkitServerTestConn *conn = _natkit_server_test_conn_new (self, challenge);

  _natkit_server_test_conn_feed (conn, data, len);
  _natkit_server_test_conn_free (conn);
}

static gboolean
udp_readable_cb (GSocket      *socket,
                 GIOCondition  condition,
                 gpointer      user_data)
{
  NatkitServer *self = user_data;
  int fd = g_socket_get_fd (socket);
  guint8 answer[128];

  for (int i = 0; i < UDP_BATCH; i++)
    {
      struct sockaddr_storage from;
      socklen_t from_len = sizeof from;
      ssize_t n = recvfrom (fd, self->read_buffer, READ_BUFFER_SIZE, MSG_DONTWAIT,
                            (struct sockaddr *) &from, &from_len);
      gsize answer_len;

      if (n < 0)
        break;
      answer_len = handle_udp (self, self->read_buffer, n, (struct sockaddr *) &from,
                               from_len, answer, sizeof answer);
      if (answer_len > 0)
        udp_send (self, (struct sockaddr *) &from, from_len, NULL, answer, answer_len);
    }
  return G_SOURCE_CONTINUE;
}

/* The second STUN port: Binding requests only, answered from this port
 * (a client measures whether its NAT maps both destinations alike). The
 * same rule as on the main port: an answer is at most the request + 12
 * bytes. */
static gboolean
stun2_readable_cb (GSocket      *socket,
                   GIOCondition  condition,
                   gpointer      user_data)
{
  NatkitServer *self = user_data;
  int fd = g_socket_get_fd (socket);
  guint8 answer[128];

  for (int i = 0; i < UDP_BATCH; i++)
    {
      struct sockaddr_storage from;
      socklen_t from_len = sizeof from;
      ssize_t n = recvfrom (fd, self->read_buffer, READ_BUFFER_SIZE, MSG_DONTWAIT,
                            (struct sockaddr *) &from, &from_len);
      gsize answer_len;

      if (n < 0)
        break;
      answer_len = stun_answer (self->read_buffer, n, (struct sockaddr *) &from, from_len,
                                answer, sizeof answer);
      if (answer_len > 0)
        (void) sendto (fd, answer, answer_len, MSG_DONTWAIT, (struct sockaddr *) &from,
                       from_len);
    }
  return G_SOURCE_CONTINUE;
}

/* ---- housekeeping ------------------------------------------------------- */

static gboolean
sweep_cb (gpointer user_data)
{
  NatkitServer *self = user_data;
  gint64 now = g_get_monotonic_time ();
  g_autoptr(GPtrArray) stale = g_ptr_array_new ();
  GHashTableIter iter;
  gpointer key;
  guint kept = 0;

  g_hash_table_iter_init (&iter, self->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    {
      Conn *conn = key;

      if ((conn->state == CONN_HANDSHAKE || conn->state == CONN_HELLO) &&
          now > conn->deadline)
        g_ptr_array_add (stale, conn);
      else if (conn->state == CONN_REGISTERED && now - conn->last_activity > SILENCE_LIMIT_US)
        g_ptr_array_add (stale, conn);
      else if (conn->state == CONN_REGISTERED)
        has_reservation (conn);  /* expire */
    }
  for (guint i = 0; i < stale->len; i++)
    {
      Conn *conn = g_ptr_array_index (stale, i);

      g_info ("dropping %s: %s", conn->peer_id ? conn->peer_id : conn->remote,
              conn->state == CONN_REGISTERED ? "silent for 90 s" :
                "no registration within 10 s");
      conn_close (conn, NULL);
    }

  for (guint i = 0; i < self->closed->len; i++)
    {
      ClosedCircuit *c = &g_array_index (self->closed, ClosedCircuit, i);

      if (c->until > now)
        g_array_index (self->closed, ClosedCircuit, kept++) = *c;
    }
  g_array_set_size (self->closed, kept);
  return G_SOURCE_CONTINUE;
}

/* ---- the object --------------------------------------------------------- */

static void
natkit_server_dispose (GObject *object)
{
  NatkitServer *self = NATKIT_SERVER (object);
  GHashTableIter iter;
  gpointer key;
  g_autoptr(GPtrArray) conns = g_ptr_array_new ();

  self->stopping = TRUE;
  if (self->service)
    {
      g_socket_service_stop (self->service);
      g_socket_listener_close (G_SOCKET_LISTENER (self->service));
      g_clear_object (&self->service);
    }
  if (self->udp_source)
    {
      g_source_destroy (self->udp_source);
      g_clear_pointer (&self->udp_source, g_source_unref);
    }
  if (self->udp)
    {
      g_socket_close (self->udp, NULL);
      g_clear_object (&self->udp);
    }
  if (self->stun2_source)
    {
      g_source_destroy (self->stun2_source);
      g_clear_pointer (&self->stun2_source, g_source_unref);
    }
  if (self->stun2)
    {
      g_socket_close (self->stun2, NULL);
      g_clear_object (&self->stun2);
    }
  g_clear_handle_id (&self->sweep_id, g_source_remove);

  if (self->conns)
    {
      g_hash_table_iter_init (&iter, self->conns);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        g_ptr_array_add (conns, key);
      for (guint i = 0; i < conns->len; i++)
        conn_close (g_ptr_array_index (conns, i), NULL);
    }
  if (self->circuits)
    {
      g_autoptr(GList) left = g_hash_table_get_values (self->circuits);

      for (GList *l = left; l; l = l->next)
        circuit_close (self, l->data, "the server stopped");
    }

  G_OBJECT_CLASS (natkit_server_parent_class)->dispose (object);
}

static void
natkit_server_finalize (GObject *object)
{
  NatkitServer *self = NATKIT_SERVER (object);

  g_clear_pointer (&self->conns, g_hash_table_unref);
  g_clear_pointer (&self->live, g_rc_box_release);
  g_clear_pointer (&self->peers, g_hash_table_unref);
  g_clear_pointer (&self->claims, g_hash_table_unref);
  g_clear_pointer (&self->circuits, g_hash_table_unref);
  g_clear_pointer (&self->unauth, g_hash_table_unref);
  g_clear_pointer (&self->sniffs, g_hash_table_unref);
  g_clear_pointer (&self->closed, g_array_unref);
  g_clear_object (&self->certificate);
  g_free (self->fingerprint);
  g_strfreev (self->turn_uris);
  if (self->turn_secret)
    memset (self->turn_secret, 0, strlen (self->turn_secret));
  g_free (self->turn_secret);
  g_free (self->host);
  g_free (self->read_buffer);

  G_OBJECT_CLASS (natkit_server_parent_class)->finalize (object);
}

static void
natkit_server_class_init (NatkitServerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = natkit_server_dispose;
  object_class->finalize = natkit_server_finalize;
}

static void
natkit_server_init (NatkitServer *self)
{
  self->conns = g_hash_table_new (NULL, NULL);
  self->live = g_rc_box_new0 (guint);
  self->peers = g_hash_table_new (g_str_hash, g_str_equal);
  self->claims = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->circuits = g_hash_table_new (NULL, NULL);
  self->unauth = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  self->sniffs = g_hash_table_new_full (NULL, NULL, sniff_free, NULL);
  self->closed = g_array_new (FALSE, FALSE, sizeof (ClosedCircuit));
  self->read_buffer = g_malloc (READ_BUFFER_SIZE);
  natkit_server_limits_init (&self->limits);
  gnutls_rnd (GNUTLS_RND_NONCE, &self->next_circuit, sizeof self->next_circuit);
  self->next_circuit &= 0xffffff;
}

NatkitServer *
natkit_server_new (const char               *host,
                   guint16                   tls_port,
                   guint16                   udp_port,
                   GTlsCertificate          *certificate,
                   const NatkitServerLimits *limits)
{
  NatkitServer *self = g_object_new (NATKIT_TYPE_SERVER, NULL);

  self->host = g_strdup (host ? host : "0.0.0.0");
  self->tls_port = tls_port;
  self->udp_port = udp_port;
  self->certificate = certificate ? g_object_ref (certificate) : NULL;
  if (limits)
    self->limits = *limits;
  return self;
}

GTlsCertificate *
natkit_server_generate_certificate (GError **error)
{
  gnutls_x509_privkey_t key = NULL;
  gnutls_x509_crt_t crt = NULL;
  gnutls_datum_t key_pem = { NULL, 0 }, crt_pem = { NULL, 0 };
  g_autofree char *pem = NULL;
  guint8 serial[16];
  time_t now = time (NULL);
  int ret;

  gnutls_rnd (GNUTLS_RND_NONCE, serial, sizeof serial);
  serial[0] &= 0x7f;
  if ((ret = gnutls_x509_privkey_init (&key)) < 0 ||
      (ret = gnutls_x509_privkey_generate (key, GNUTLS_PK_ECDSA,
                                           GNUTLS_CURVE_TO_BITS (GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
      (ret = gnutls_x509_crt_init (&crt)) < 0 ||
      (ret = gnutls_x509_crt_set_version (crt, 3)) < 0 ||
      (ret = gnutls_x509_crt_set_serial (crt, serial, sizeof serial)) < 0 ||
      (ret = gnutls_x509_crt_set_activation_time (crt, now - 3600)) < 0 ||
      (ret = gnutls_x509_crt_set_expiration_time (crt, now + 10 * 365 * 24 * 3600L)) < 0 ||
      (ret = gnutls_x509_crt_set_dn_by_oid (crt, GNUTLS_OID_X520_COMMON_NAME, 0,
                                            "natkit-server", strlen ("natkit-server"))) < 0 ||
      (ret = gnutls_x509_crt_set_key (crt, key)) < 0 ||
      (ret = gnutls_x509_crt_set_key_usage (crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
      (ret = gnutls_x509_crt_sign2 (crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
      (ret = gnutls_x509_crt_export2 (crt, GNUTLS_X509_FMT_PEM, &crt_pem)) < 0 ||
      (ret = gnutls_x509_privkey_export2_pkcs8 (key, GNUTLS_X509_FMT_PEM, NULL,
                                                GNUTLS_PKCS_PLAIN, &key_pem)) < 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "cannot generate a TLS certificate: %s", gnutls_strerror (ret));
      if (crt)
        gnutls_x509_crt_deinit (crt);
      if (key)
        gnutls_x509_privkey_deinit (key);
      gnutls_free (crt_pem.data);
      gnutls_free (key_pem.data);
      return NULL;
    }
  pem = g_strdup_printf ("%.*s%.*s", (int) crt_pem.size, crt_pem.data,
                         (int) key_pem.size, key_pem.data);
  gnutls_memset (key_pem.data, 0, key_pem.size);
  gnutls_free (crt_pem.data);
  gnutls_free (key_pem.data);
  gnutls_x509_crt_deinit (crt);
  gnutls_x509_privkey_deinit (key);
  {
    GTlsCertificate *cert = g_tls_certificate_new_from_pem (pem, -1, error);

    memset (pem, 0, strlen (pem));
    return cert;
  }
}

char *
natkit_server_certificate_fingerprint (GTlsCertificate *certificate)
{
  char *fp = _natkit_wire_certificate_fingerprint (certificate);

  return fp ? fp : g_strdup ("?");
}

gboolean
natkit_server_start (NatkitServer  *self,
                     GError       **error)
{
  g_autoptr(GInetAddress) address = NULL;
  g_autoptr(GSocketAddress) tls_address = NULL;
  g_autoptr(GSocketAddress) udp_address = NULL;
  g_autoptr(GSocketAddress) effective = NULL;
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) local_error = NULL;
  gboolean pick_udp;

  g_return_val_if_fail (NATKIT_IS_SERVER (self), FALSE);

  address = g_inet_address_new_from_string (self->host);
  if (!address)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not an IP address to listen on (use 0.0.0.0 for all)",
                   self->host);
      return FALSE;
    }
  if (!self->certificate)
    {
      self->certificate = natkit_server_generate_certificate (error);
      if (!self->certificate)
        return FALSE;
    }
  self->fingerprint = natkit_server_certificate_fingerprint (self->certificate);

  /* only when both ports are left to the kernel may UDP end up on
   * another number than TLS */
  pick_udp = self->tls_port == 0 && self->udp_port == 0;
  self->service = g_socket_service_new ();
  tls_address = g_inet_socket_address_new (address, self->tls_port);
  if (!g_socket_listener_add_address (G_SOCKET_LISTENER (self->service), tls_address,
                                      G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_TCP,
                                      NULL, &effective, &local_error))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                   "cannot listen on %s:%u (TCP): %s — is another natkit-server "
                   "running? choose another port with --listen", self->host,
                   self->tls_port, local_error->message);
      return FALSE;
    }
  self->tls_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (effective));
  if (self->udp_port == 0)
    self->udp_port = self->tls_port;

  self->udp = g_socket_new (g_inet_address_get_family (address), G_SOCKET_TYPE_DATAGRAM,
                            G_SOCKET_PROTOCOL_UDP, &local_error);
  udp_address = g_inet_socket_address_new (address, self->udp_port);
  if (!self->udp || !g_socket_bind (self->udp, udp_address, FALSE, &local_error))
    {
      /* ephemeral TLS port taken on UDP: let the kernel pick */
      if (self->udp && pick_udp)
        {
          g_clear_error (&local_error);
          g_clear_object (&udp_address);
          udp_address = g_inet_socket_address_new (address, 0);
        }
      if (!self->udp || !pick_udp ||
          !g_socket_bind (self->udp, udp_address, FALSE, &local_error))
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                       "cannot listen on %s:%u (UDP): %s — choose another port "
                       "with --udp-port", self->host, self->udp_port,
                       local_error ? local_error->message : "address in use");
          return FALSE;
        }
    }
  bound = g_socket_get_local_address (self->udp, NULL);
  if (bound)
    self->udp_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  {
    int size = 4 * 1024 * 1024;

    setsockopt (g_socket_get_fd (self->udp), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    setsockopt (g_socket_get_fd (self->udp), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  }
  g_socket_set_blocking (self->udp, FALSE);
  self->udp_source = g_socket_create_source (self->udp, G_IO_IN, NULL);
  g_source_set_callback (self->udp_source, (GSourceFunc) (void (*)(void)) udp_readable_cb,
                         self, NULL);
  g_source_attach (self->udp_source, g_main_context_get_thread_default ());

  if (self->stun2_enabled)
    {
      g_autoptr(GSocketAddress) stun2_address = g_inet_socket_address_new (address,
                                                                            self->stun2_port);
      g_autoptr(GSocketAddress) stun2_bound = NULL;

      self->stun2 = g_socket_new (g_inet_address_get_family (address), G_SOCKET_TYPE_DATAGRAM,
                                  G_SOCKET_PROTOCOL_UDP, &local_error);
      if (!self->stun2 || !g_socket_bind (self->stun2, stun2_address, FALSE, &local_error))
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                       "cannot listen on %s:%u (UDP, second STUN port): %s — choose "
                       "another with --stun-port2, or 0 for none", self->host,
                       self->stun2_port, local_error->message);
          return FALSE;
        }
      stun2_bound = g_socket_get_local_address (self->stun2, NULL);
      if (stun2_bound)
        self->stun2_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (stun2_bound));
      g_socket_set_blocking (self->stun2, FALSE);
      self->stun2_source = g_socket_create_source (self->stun2, G_IO_IN, NULL);
      g_source_set_callback (self->stun2_source,
                             (GSourceFunc) (void (*)(void)) stun2_readable_cb, self, NULL);
      g_source_attach (self->stun2_source, g_main_context_get_thread_default ());
    }

  g_signal_connect (self->service, "incoming", G_CALLBACK (incoming_cb), self);
  g_socket_service_start (self->service);
  self->sweep_id = g_timeout_add_seconds (5, sweep_cb, self);
  g_message ("natkit-server %s listening on %s:%u (TLS, STUN over TCP) and %s:%u (UDP: relay, STUN)",
             PACKAGE_VERSION, self->host, self->tls_port, self->host, self->udp_port);
  return TRUE;
}

/* Stopping is done when every connection is freed: the goodbyes have
 * left, the close_notify alerts are out, and nothing of the server is
 * still pending on the main context. A peer that does not read at all
 * cannot hold the stop for more than STOP_GRACE_US. */
#define STOP_GRACE_US (2 * G_USEC_PER_SEC)

static gboolean
stop_done_cb (gpointer user_data)
{
  GTask *task = user_data;
  NatkitServer *self = g_task_get_source_object (task);

  if (*self->live > 0 && g_get_monotonic_time () < self->stop_deadline)
    return G_SOURCE_CONTINUE;
  if (*self->live > 0)
    {
      g_autoptr(GPtrArray) conns = g_ptr_array_new ();
      GHashTableIter iter;
      gpointer key;

      g_message ("%u connection(s) still open after %d s; closing them now",
                 *self->live, (int) (STOP_GRACE_US / G_USEC_PER_SEC));
      g_hash_table_iter_init (&iter, self->conns);
      while (g_hash_table_iter_next (&iter, &key, NULL))
        g_ptr_array_add (conns, key);
      for (guint i = 0; i < conns->len; i++)
        conn_abort (g_ptr_array_index (conns, i));
    }
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

/* Graceful stop: every peer hears "shutdown", circuits end with a reason,
 * then the sockets close. */
void
natkit_server_stop_async (NatkitServer        *self,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  GTask *task = g_task_new (self, NULL, callback, user_data);
  g_autoptr(GPtrArray) conns = g_ptr_array_new ();
  g_autoptr(GList) circuits = g_hash_table_get_values (self->circuits);
  GHashTableIter iter;
  gpointer key;

  g_task_set_source_tag (task, natkit_server_stop_async);
  self->stopping = TRUE;
  if (self->service)
    g_socket_service_stop (self->service);
  g_hash_table_remove_all (self->sniffs);

  for (GList *l = circuits; l; l = l->next)
    circuit_close (self, l->data, "the server is shutting down");

  g_hash_table_iter_init (&iter, self->conns);
  while (g_hash_table_iter_next (&iter, &key, NULL))
    g_ptr_array_add (conns, key);
  for (guint i = 0; i < conns->len; i++)
    {
      Conn *conn = g_ptr_array_index (conns, i);

      if (conn->state == CONN_HELLO || conn->state == CONN_REGISTERED)
        {
          send_error (conn, 0, "shutdown", "the server is shutting down; "
                      "reconnect in a moment");
          conn_close (conn, "shutdown");
        }
      else
        conn_close (conn, NULL);
    }
  self->stop_deadline = g_get_monotonic_time () + STOP_GRACE_US;
  g_timeout_add (10, stop_done_cb, task);
}

gboolean
natkit_server_stop_finish (NatkitServer  *self,
                           GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

guint16
natkit_server_get_tls_port (NatkitServer *self)
{
  return self->tls_port;
}

guint16
natkit_server_get_udp_port (NatkitServer *self)
{
  return self->udp_port;
}

/* A second UDP port that answers STUN Binding requests only (0: the
 * kernel picks one); before natkit_server_start(). */
void
natkit_server_set_stun_port2 (NatkitServer *self,
                              guint16       port)
{
  self->stun2_enabled = TRUE;
  self->stun2_port = port;
}

/* 0 when there is none */
guint16
natkit_server_get_stun_port2 (NatkitServer *self)
{
  return self->stun2 ? self->stun2_port : 0;
}

/* Hands TURN REST credentials (valid @ttl seconds) for @uris to every
 * registered peer; %NULL @uris stops. */
void
natkit_server_set_turn (NatkitServer       *self,
                        const char * const *uris,
                        const char         *secret,
                        guint               ttl)
{
  g_return_if_fail (uris == NULL || secret != NULL);

  g_clear_pointer (&self->turn_uris, g_strfreev);
  g_clear_pointer (&self->turn_secret, g_free);
  if (uris && uris[0])
    {
      self->turn_uris = g_strdupv ((char **) uris);
      self->turn_secret = g_strdup (secret);
      self->turn_ttl = MAX (ttl, 60);
    }
}

const char *
natkit_server_get_fingerprint (NatkitServer *self)
{
  return self->fingerprint;
}

guint
natkit_server_get_n_peers (NatkitServer *self)
{
  return g_hash_table_size (self->peers);
}

guint
natkit_server_get_n_circuits (NatkitServer *self)
{
  return g_hash_table_size (self->circuits);
}

guint64
natkit_server_get_bytes_relayed (NatkitServer *self)
{
  return self->bytes_relayed;
}
