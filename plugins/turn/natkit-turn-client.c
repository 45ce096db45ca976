/* natkit-turn-client.c: one allocation on one TURN server (RFC 8656)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Over UDP: one connected socket (an ICMP error says at once that nothing
 * listens), requests retransmitted RFC 8489 style (RTO 500 ms, doubling)
 * until the caller's time limit. Over TCP and TLS: one stream, STUN and
 * ChannelData framed as RFC 8656 12.5 says (ChannelData padded to 4), no
 * retransmission. Requests carry long-term credentials once the server's
 * first 401 gave the realm and nonce; a 438 (stale nonce) is retried once
 * with the new nonce; a second 401 means the credentials are wrong.
 *
 * The allocation is refreshed at half the lifetime the server granted (not
 * the one we asked for), the channel (and with it the permission) every 4
 * minutes, or as often as set for a server configured with shorter
 * permission or channel lifetimes than RFC 8656's 300 and 600 s. Closing
 * sends a Refresh with LIFETIME 0, and over TCP/TLS closes the stream,
 * which ends the allocation on the server too.
 */
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "natkit-turn-client.h"

#define RTO_MS             500
#define CHANNEL_REFRESH_S  240     /* permissions last 300 s, channels 600 s */
#define DEFAULT_LIFETIME   600
#define MAX_QUEUED         (4 * 1024 * 1024)
#define PEER_CHANNEL       NATKIT_TURN_CHANNEL_MIN
#define SOCKET_BUFFER      (4 * 1024 * 1024)

typedef void (*TxnFunc) (NatkitTurnClient  *self,
                         NatkitTurnMessage *answer,  /* NULL on error */
                         GError            *error,   /* transfer full, or NULL */
                         gpointer           data);

typedef struct
{
  guint16             method;
  gint64              lifetime;
  GInetSocketAddress *peer;
  guint16             channel;
  guint8              txid[12];
  GBytes             *request;
  gboolean            authenticated;   /* sent with credentials */
  gboolean            retried_nonce;
  guint               rto;
  GSource            *resend;
  GSource            *deadline;
  guint               timeout_ms;
  TxnFunc             func;
  gpointer            data;
} Txn;

struct _NatkitTurnClient
{
  GObject              parent_instance;

  NatkitTurnUri        uri;
  NatkitTurnTransport  transport;
  char                *server;          /* "HOST:PORT", for messages */
  char                *password;
  NatkitTurnAuth       auth;
  GTlsCertificateFlags tls_errors;      /* what was wrong with its certificate */

  /* UDP */
  GSocket             *socket;
  GSource             *io;
  /* TCP / TLS */
  GIOStream           *stream;
  GCancellable        *io_cancel;
  GByteArray          *in;
  guint8              *read_buffer;
  GByteArray          *out;             /* waiting for the write in flight */
  gboolean             writing;

  GList               *txns;            /* Txn */
  gboolean             answered;        /* the server said anything at all */
  guint                garbage;         /* datagrams from it that were not TURN */

  GInetSocketAddress  *relayed;
  GInetSocketAddress  *mapped;
  guint                lifetime;
  guint                refresh_s;       /* 0: half the lifetime */
  guint                refreshes;
  GSource             *refresh;

  GInetSocketAddress  *peer;
  gboolean             bound;
  guint                channel_refresh_s;  /* 0: CHANNEL_REFRESH_S */
  GSource             *channel_refresh;

  GTask               *allocate_task;   /* not a reference: the task holds us */
  gboolean             followed_alternate;

  NatkitTurnDataFunc   data_func;
  NatkitTurnFailFunc   fail_func;
  gpointer             handler_data;
  gboolean             closed;
};

G_DEFINE_FINAL_TYPE (NatkitTurnClient, natkit_turn_client, G_TYPE_OBJECT)

/* GSource helpers, shared with the plugin (natkit-turn-client.h) */
void
natkit_turn_drop_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

GSource *
natkit_turn_add_source (GSource     *source,
                        GSourceFunc  func,
                        gpointer     data,
                        const char  *name)
{
  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, name);
  g_source_attach (source, g_main_context_get_thread_default ());
  return source;
}

static void
txn_free (Txn *txn)
{
  natkit_turn_drop_source (&txn->resend);
  natkit_turn_drop_source (&txn->deadline);
  g_clear_pointer (&txn->request, g_bytes_unref);
  g_clear_object (&txn->peer);
  g_free (txn);
}

/* ---- the transport ------------------------------------------------------ */

static void stream_write_next (NatkitTurnClient *self);

static void
write_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(NatkitTurnClient) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    {
      /* a stream we left (300 Try Alternate) */
      if (self->stream == NULL ||
          G_OUTPUT_STREAM (source) != g_io_stream_get_output_stream (self->stream))
        return;
      self->writing = FALSE;
      if (!self->closed && self->fail_func != NULL)
        {
          g_autoptr(GError) lost =
            g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                         "Lost the connection to the TURN server %s: %s",
                         self->server, error->message);

          self->fail_func (lost, self->handler_data);
        }
      return;
    }
  self->writing = FALSE;
  if (!self->closed)
    stream_write_next (self);
}

static void
stream_write_next (NatkitTurnClient *self)
{
  g_autoptr(GBytes) bytes = NULL;
  gsize size;
  gconstpointer data;

  if (self->writing || self->out->len == 0 || self->stream == NULL)
    return;
  bytes = g_byte_array_free_to_bytes (self->out);
  self->out = g_byte_array_new ();
  self->writing = TRUE;
  data = g_bytes_get_data (bytes, &size);
  /* the bytes live as long as the write: the task data holds them */
  g_object_set_data_full (G_OBJECT (self), "natkit-turn-writing",
                          g_bytes_ref (bytes), (GDestroyNotify) g_bytes_unref);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (self->stream), data, size,
                                   G_PRIORITY_DEFAULT, self->io_cancel, write_done_cb,
                                   g_object_ref (self));
}

/* Sends one frame (STUN or ChannelData, with its padding for a stream) */
static gboolean
transmit (NatkitTurnClient *self,
          const guint8     *header,
          gsize             header_length,
          const guint8     *data,
          gsize             length,
          guint             padding,
          GError          **error)
{
  static const guint8 zeros[4] = { 0 };

  if (self->closed)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "The allocation on the TURN server %s is closed", self->server);
      return FALSE;
    }
  if (self->socket != NULL)
    {
      GOutputVector v[2] = { { header, header_length }, { data, length } };
      g_autoptr(GError) local = NULL;

      if (g_socket_send_message (self->socket, NULL, v, data != NULL ? 2 : 1, NULL, 0, 0,
                                 NULL, &local) >= 0 ||
          g_error_matches (local, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
          g_error_matches (local, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        return TRUE;    /* like UDP: lost; a refusal shows on receive */
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "Could not send to the TURN server %s: %s", self->server, local->message);
      return FALSE;
    }
  if (self->stream == NULL)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "Not connected to the TURN server %s", self->server);
      return FALSE;
    }
  if (self->out->len + header_length + length > MAX_QUEUED)
    return TRUE;        /* a full buffer drops the datagram, as UDP would */
  g_byte_array_append (self->out, header, header_length);
  if (data != NULL)
    g_byte_array_append (self->out, data, length);
  if (padding > 0)
    g_byte_array_append (self->out, zeros, padding);
  stream_write_next (self);
  return TRUE;
}

/* ---- transactions ------------------------------------------------------- */

static void txn_send (NatkitTurnClient *self, Txn *txn);

static void
txn_finish (NatkitTurnClient  *self,
            Txn               *txn,
            NatkitTurnMessage *answer,
            GError            *error)
{
  self->txns = g_list_remove (self->txns, txn);
  natkit_turn_drop_source (&txn->resend);
  natkit_turn_drop_source (&txn->deadline);
  txn->func (self, answer, error, txn->data);
  txn_free (txn);
}

typedef struct
{
  NatkitTurnClient *self;
  Txn              *txn;
} TxnRef;

static gboolean
txn_resend_cb (gpointer user_data)
{
  TxnRef *ref = user_data;
  Txn *txn = ref->txn;
  gsize size;
  const guint8 *data = g_bytes_get_data (txn->request, &size);

  g_clear_pointer (&txn->resend, g_source_unref);
  transmit (ref->self, data, size, NULL, 0, 0, NULL);
  txn->rto *= 2;
  txn->resend = g_timeout_source_new (txn->rto);
  g_source_set_callback (txn->resend, txn_resend_cb,
                         g_memdup2 (ref, sizeof *ref), g_free);
  g_source_set_static_name (txn->resend, "[natkit-turn] retransmit");
  g_source_attach (txn->resend, g_main_context_get_thread_default ());
  return G_SOURCE_REMOVE;
}

static gboolean
txn_deadline_cb (gpointer user_data)
{
  TxnRef *ref = user_data;
  g_autoptr(NatkitTurnClient) self = g_object_ref (ref->self);
  Txn *txn = ref->txn;

  g_clear_pointer (&txn->deadline, g_source_unref);
  if (!self->answered && self->garbage > 0)
    txn_finish (self, txn, NULL,
                g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                             "The TURN server %s did not answer within %u ms (over %s): "
                             "it sent %u datagrams that were not TURN answers; is it a "
                             "TURN server?", self->server, txn->timeout_ms,
                             natkit_turn_transport_to_string (self->transport),
                             self->garbage));
  else
    txn_finish (self, txn, NULL,
                g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                             "The TURN server %s did not answer within %u ms (over %s)%s",
                             self->server, txn->timeout_ms,
                             natkit_turn_transport_to_string (self->transport),
                             self->answered ? "" :
                             self->transport == NATKIT_TURN_TRANSPORT_UDP ?
                             ": is UDP blocked on this network, or the server down?" :
                             ": is the server down?"));
  return G_SOURCE_REMOVE;
}

static void
txn_send (NatkitTurnClient *self,
          Txn              *txn)
{
  guint8 buffer[1500];
  gsize size;
  TxnRef ref = { self, txn };

  txn->authenticated = self->auth.realm != NULL;
  size = natkit_turn_build_request (txn->method, &self->auth, txn->lifetime, txn->peer,
                                    txn->channel, buffer, sizeof buffer, txn->txid);
  g_clear_pointer (&txn->request, g_bytes_unref);
  if (size == 0)
    {
      /* a realm or nonce too long for one packet */
      txn_finish (self, txn, NULL,
                  g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "The TURN server %s sent a realm or nonce too long "
                               "to fit a request", self->server));
      return;
    }
  txn->request = g_bytes_new (buffer, size);
  transmit (self, buffer, size, NULL, 0, 0, NULL);
  natkit_turn_drop_source (&txn->resend);
  if (self->transport == NATKIT_TURN_TRANSPORT_UDP)
    {
      txn->rto = RTO_MS;
      txn->resend = g_timeout_source_new (txn->rto);
      g_source_set_callback (txn->resend, txn_resend_cb, g_memdup2 (&ref, sizeof ref), g_free);
      g_source_set_static_name (txn->resend, "[natkit-turn] retransmit");
      g_source_attach (txn->resend, g_main_context_get_thread_default ());
    }
  if (txn->deadline == NULL)
    {
      txn->deadline = g_timeout_source_new (txn->timeout_ms);
      g_source_set_callback (txn->deadline, txn_deadline_cb, g_memdup2 (&ref, sizeof ref),
                             g_free);
      g_source_set_static_name (txn->deadline, "[natkit-turn] transaction timeout");
      g_source_attach (txn->deadline, g_main_context_get_thread_default ());
    }
}

static void
request (NatkitTurnClient   *self,
         guint16             method,
         gint64              lifetime,
         GInetSocketAddress *peer,
         guint16             channel,
         guint               timeout_ms,
         TxnFunc             func,
         gpointer            data)
{
  Txn *txn = g_new0 (Txn, 1);

  txn->method = method;
  txn->lifetime = lifetime;
  txn->peer = peer ? g_object_ref (peer) : NULL;
  txn->channel = channel;
  txn->timeout_ms = MAX (timeout_ms, 1);
  txn->func = func;
  txn->data = data;
  self->txns = g_list_prepend (self->txns, txn);
  txn_send (self, txn);
}

static const char *
method_name (guint16 method)
{
  switch (method)
    {
    case NATKIT_TURN_METHOD_ALLOCATE:
      return "Allocate";
    case NATKIT_TURN_METHOD_REFRESH:
      return "Refresh";
    case NATKIT_TURN_METHOD_CREATE_PERMISSION:
      return "CreatePermission";
    case NATKIT_TURN_METHOD_CHANNEL_BIND:
      return "ChannelBind";
    default:
      return "request";
    }
}

static void
handle_answer (NatkitTurnClient  *self,
               NatkitTurnMessage *message)
{
  Txn *txn = NULL;

  for (GList *l = self->txns; l != NULL; l = l->next)
    {
      Txn *t = l->data;

      if (t->method == message->method && memcmp (t->txid, message->txid, 12) == 0)
        {
          txn = t;
          break;
        }
    }
  if (txn == NULL)
    {
      g_debug ("%s: ignoring an answer to no request of ours", self->server);
      return;
    }

  /* an answer to an authenticated request must prove it knows the key;
   * 401 and 438 carry no MESSAGE-INTEGRITY */
  if (txn->authenticated && message->has_integrity && !message->integrity_ok)
    {
      g_debug ("%s: ignoring an answer to %s with a wrong MESSAGE-INTEGRITY",
               self->server, method_name (txn->method));
      return;
    }
  if (txn->authenticated && !message->has_integrity &&
      message->kind == NATKIT_TURN_MESSAGE_SUCCESS)
    {
      g_debug ("%s: ignoring an answer to %s without MESSAGE-INTEGRITY",
               self->server, method_name (txn->method));
      return;
    }

  if (message->kind == NATKIT_TURN_MESSAGE_ERROR &&
      ((message->error_code == 401 && !txn->authenticated) ||
       (message->error_code == 438 && !txn->retried_nonce)))
    {
      if (message->realm == NULL || message->nonce == NULL)
        {
          txn_finish (self, txn, NULL,
                      g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                   "The TURN server %s asked for credentials (%u) without "
                                   "a realm and nonce: is it a TURN server?",
                                   self->server, message->error_code));
          return;
        }
      if (message->error_code == 438)
        txn->retried_nonce = TRUE;
      g_free (self->auth.nonce);
      self->auth.nonce = g_strdup (message->nonce);
      if (g_strcmp0 (self->auth.realm, message->realm) != 0)
        natkit_turn_auth_set_realm (&self->auth, message->realm, self->password);
      g_debug ("%s: %u for %s: again with realm “%s” and the new nonce", self->server,
               message->error_code, method_name (txn->method), message->realm);
      txn_send (self, txn);
      return;
    }
  txn_finish (self, txn, message, NULL);
}

static void
fail (NatkitTurnClient *self,
      GError           *error)
{
  g_autoptr(GError) owned = error;

  if (self->closed)
    return;
  if (self->fail_func != NULL)
    self->fail_func (owned, self->handler_data);
}

static void
handle_frame (NatkitTurnClient *self,
              const guint8     *data,
              gsize             length)
{
  g_autoptr(GError) error = NULL;

  if (length > 0 && (data[0] & 0xC0) == 0x40)
    {
      guint16 channel;
      const guint8 *payload;
      gsize payload_length;

      if (!natkit_turn_channel_parse (data, length, &channel, &payload, &payload_length,
                                      &error))
        {
          g_debug ("%s: ignoring %s", self->server, error->message);
          self->garbage++;
          return;
        }
      self->answered = TRUE;
      if (channel != PEER_CHANNEL || !self->bound || payload_length == 0)
        return;
      if (self->data_func != NULL)
        self->data_func (payload, payload_length, self->handler_data);
      return;
    }

  {
    NatkitTurnMessage message;

    if (!natkit_turn_message_parse (data, length, self->auth.realm ? self->auth.key : NULL,
                                    &message, &error))
      {
        g_debug ("%s: ignoring %" G_GSIZE_FORMAT " bytes: %s", self->server, length,
                 error->message);
        self->garbage++;
        return;
      }
    self->answered = TRUE;
    switch (message.kind)
      {
      case NATKIT_TURN_MESSAGE_SUCCESS:
      case NATKIT_TURN_MESSAGE_ERROR:
        handle_answer (self, &message);
        break;
      case NATKIT_TURN_MESSAGE_DATA:
        /* only from the peer we gave a permission to */
        if (self->peer != NULL && message.peer != NULL && message.data_length > 0 &&
            g_inet_address_equal (g_inet_socket_address_get_address (message.peer),
                                  g_inet_socket_address_get_address (self->peer)) &&
            self->data_func != NULL)
          self->data_func (message.data, message.data_length, self->handler_data);
        break;
      default:
        break;
      }
    natkit_turn_message_clear (&message);
  }
}

static gboolean
udp_receive_cb (GSocket      *socket,
                GIOCondition  condition,
                gpointer      user_data)
{
  g_autoptr(NatkitTurnClient) self = g_object_ref (user_data);
  guint budget = 256;   /* then let the rest of the main loop run */

  while (!self->closed && self->socket != NULL && budget-- > 0)
    {
      guint8 buffer[65536];
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_receive (socket, (char *) buffer, sizeof buffer, NULL, &error);

      if (n >= 0)
        {
          handle_frame (self, buffer, n);
          continue;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        {
          /* nothing listens: let the waiting requests end now */
          GList *txns = g_list_copy (self->txns);

          for (GList *l = txns; l != NULL; l = l->next)
            if (g_list_find (self->txns, l->data))
              txn_finish (self, l->data, NULL,
                          g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                       "The TURN server %s refused UDP (ICMP port "
                                       "unreachable): is it a TURN server on that port?",
                                       self->server));
          g_list_free (txns);
          if (self->relayed != NULL && !self->closed)
            fail (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                     "The TURN server %s stopped answering over UDP "
                                     "(ICMP port unreachable)", self->server));
          continue;
        }
      g_debug ("%s: receive: %s", self->server, error->message);
      break;
    }
  return G_SOURCE_CONTINUE;
}

static void stream_read (NatkitTurnClient *self);

static void
stream_lost (NatkitTurnClient *self,
             const char       *why)
{
  GList *txns = g_list_copy (self->txns);

  for (GList *l = txns; l != NULL; l = l->next)
    if (g_list_find (self->txns, l->data))
      txn_finish (self, l->data, NULL,
                  g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "The TURN server %s %s", self->server, why));
  g_list_free (txns);
  fail (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED, "The TURN server %s %s",
                           self->server, why));
}

static void
read_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  g_autoptr(NatkitTurnClient) self = user_data;
  g_autoptr(GError) error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  gsize offset = 0;

  /* closed, or a stream we left (300 Try Alternate) */
  if (self->closed || self->stream == NULL ||
      G_INPUT_STREAM (source) != g_io_stream_get_input_stream (self->stream))
    return;
  if (n < 0)
    {
      g_autofree char *why = g_strdup_printf ("connection broke: %s", error->message);

      stream_lost (self, why);
      return;
    }
  if (n == 0)
    {
      stream_lost (self, "closed the connection");
      return;
    }
  g_byte_array_append (self->in, self->read_buffer, n);
  while (!self->closed)
    {
      gssize size = natkit_turn_stream_frame_size (self->in->data + offset,
                                                   self->in->len - offset);

      if (size < 0)
        {
          stream_lost (self, "sent bytes that are neither STUN nor ChannelData");
          return;
        }
      if (size == 0 || (gsize) size > self->in->len - offset)
        break;
      if ((self->in->data[offset] & 0xC0) == 0x40)
        {
          /* the padding is not part of the message */
          gsize len = NATKIT_TURN_CHANNEL_HEADER +
                      ((self->in->data[offset + 2] << 8) | self->in->data[offset + 3]);

          handle_frame (self, self->in->data + offset, len);
        }
      else
        handle_frame (self, self->in->data + offset, size);
      offset += size;
    }
  if (self->closed)
    return;
  g_byte_array_remove_range (self->in, 0, offset);
  stream_read (self);
}

static void
stream_read (NatkitTurnClient *self)
{
  g_input_stream_read_async (g_io_stream_get_input_stream (self->stream), self->read_buffer,
                             65536, G_PRIORITY_DEFAULT, self->io_cancel, read_cb,
                             g_object_ref (self));
}

/* ---- allocation --------------------------------------------------------- */

static void allocate_send (NatkitTurnClient *self);
static void connect_start (NatkitTurnClient *self);

static guint
allocate_time_left (GTask *task)
{
  gint64 deadline = task != NULL ? *(gint64 *) g_task_get_task_data (task) : 0;
  gint64 left = (deadline - g_get_monotonic_time ()) / 1000;

  return left > 0 ? (guint) left : 1;
}

static void
allocate_done (NatkitTurnClient *self,
               GError           *error)
{
  GTask *task = g_steal_pointer (&self->allocate_task);

  if (task == NULL)
    {
      g_clear_error (&error);
      return;
    }
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static void refresh_schedule (NatkitTurnClient *self);

static void
refresh_answered (NatkitTurnClient  *self,
                  NatkitTurnMessage *answer,
                  GError            *error,
                  gpointer           data)
{
  if (self->closed)
    {
      g_clear_error (&error);
      return;
    }
  if (error != NULL)
    {
      fail (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "Lost the allocation on the TURN server %s: %s",
                               self->server, error->message));
      g_error_free (error);
      return;
    }
  if (answer->kind == NATKIT_TURN_MESSAGE_ERROR)
    {
      fail (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "The TURN server %s dropped the allocation (%u %s)",
                               self->server, answer->error_code,
                               answer->reason ? answer->reason : ""));
      return;
    }
  self->refreshes++;
  if (answer->lifetime > 0)
    self->lifetime = (guint) MIN (answer->lifetime, 3600);
  g_debug ("%s: allocation refreshed for %u s", self->server, self->lifetime);
  refresh_schedule (self);
}

static gboolean
refresh_cb (gpointer user_data)
{
  NatkitTurnClient *self = user_data;

  g_clear_pointer (&self->refresh, g_source_unref);
  request (self, NATKIT_TURN_METHOD_REFRESH, DEFAULT_LIFETIME, NULL, 0,
           MAX (self->lifetime / 4, 5) * 1000, refresh_answered, NULL);
  return G_SOURCE_REMOVE;
}

static void
refresh_schedule (NatkitTurnClient *self)
{
  guint seconds = self->refresh_s ? self->refresh_s : MAX (self->lifetime / 2, 1);

  natkit_turn_drop_source (&self->refresh);
  self->refresh = natkit_turn_add_source (g_timeout_source_new_seconds (seconds), refresh_cb, self,
                              "[natkit-turn] allocation refresh");
}

static gboolean
follow_alternate (NatkitTurnClient   *self,
                  GInetSocketAddress *alternate)
{
  GInetAddress *ip;
  GSocketFamily family;

  if (self->followed_alternate || alternate == NULL ||
      !natkit_turn_address_is_sendable (alternate))
    return FALSE;
  ip = g_inet_socket_address_get_address (alternate);
  family = g_inet_address_get_family (ip);
  if (self->socket != NULL && g_socket_get_family (self->socket) != family)
    return FALSE;
  self->followed_alternate = TRUE;
  g_free (self->uri.host);
  self->uri.host = g_inet_address_to_string (ip);
  self->uri.port = g_inet_socket_address_get_port (alternate);
  g_debug ("%s: 300 Try Alternate: following it once, to %s:%u", self->server,
           self->uri.host, self->uri.port);
  g_free (self->server);
  self->server = natkit_turn_uri_describe (&self->uri);
  /* a fresh start: new connection, no credentials state */
  natkit_turn_drop_source (&self->io);
  if (self->socket != NULL)
    g_socket_close (self->socket, NULL);
  g_clear_object (&self->socket);
  if (self->stream != NULL)
    {
      g_cancellable_cancel (self->io_cancel);
      g_clear_object (&self->io_cancel);
      self->io_cancel = g_cancellable_new ();
      g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
      g_clear_object (&self->stream);
      g_byte_array_set_size (self->in, 0);
      g_byte_array_set_size (self->out, 0);
      self->writing = FALSE;
    }
  g_clear_pointer (&self->auth.realm, g_free);
  g_clear_pointer (&self->auth.nonce, g_free);
  self->answered = FALSE;
  connect_start (self);
  return TRUE;
}

static void
allocate_answered (NatkitTurnClient  *self,
                   NatkitTurnMessage *answer,
                   GError            *error,
                   gpointer           data)
{
  if (error != NULL)
    {
      allocate_done (self, error);
      return;
    }
  if (answer->kind == NATKIT_TURN_MESSAGE_ERROR)
    {
      const char *reason = answer->reason ? answer->reason : "";

      switch (answer->error_code)
        {
        case 300:
          if (follow_alternate (self, answer->alternate))
            return;
          allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                            "The TURN server %s sent us to another server "
                                            "(300 Try Alternate) a second time or to an "
                                            "unusable address: list the server it names "
                                            "in the configuration", self->server));
          return;
        case 401:
          allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                            "TURN server %s refused the credentials of user "
                                            "“%s” (401 %s): check turn.username and "
                                            "turn.password (or turn.secret) in config.json",
                                            self->server, self->auth.username,
                                            *reason ? reason : "Unauthorized"));
          return;
        case 441:
          allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                            "TURN server %s refused the credentials of user "
                                            "“%s” (441 %s): check turn.username and "
                                            "turn.password in config.json",
                                            self->server, self->auth.username,
                                            *reason ? reason : "Wrong Credentials"));
          return;
        case 486:
          allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                            "TURN server %s refused another allocation for "
                                            "user “%s” (486 %s): the user's quota is used "
                                            "up; close other connections or raise the quota "
                                            "(coturn: --user-quota)", self->server,
                                            self->auth.username,
                                            *reason ? reason : "Allocation Quota Reached"));
          return;
        case 508:
          allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                            "TURN server %s has no capacity for another "
                                            "allocation (508 %s): try again later or another "
                                            "server", self->server,
                                            *reason ? reason : "Insufficient Capacity"));
          return;
        default:
          allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                            "TURN server %s refused the allocation (%u %s)",
                                            self->server, answer->error_code, reason));
          return;
        }
    }

  if (answer->relayed == NULL || !natkit_turn_address_is_sendable (answer->relayed))
    {
      g_autofree char *what = answer->relayed ? natkit_turn_describe (answer->relayed) :
                              g_strdup ("none");

      allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                        "TURN server %s gave an unusable relayed address "
                                        "(%s): it is misconfigured (coturn: --relay-ip, "
                                        "--external-ip)", self->server, what));
      return;
    }
  g_set_object (&self->relayed, answer->relayed);
  g_set_object (&self->mapped, answer->mapped);
  self->lifetime = answer->lifetime > 0 ? (guint) MIN (answer->lifetime, 3600) :
                   DEFAULT_LIFETIME;
  {
    g_autofree char *relayed = natkit_turn_describe (self->relayed);

    g_debug ("%s: allocated %s over %s for %u s", self->server, relayed,
             natkit_turn_transport_to_string (self->transport), self->lifetime);
  }
  refresh_schedule (self);
  allocate_done (self, NULL);
}

static void
allocate_send (NatkitTurnClient *self)
{
  request (self, NATKIT_TURN_METHOD_ALLOCATE, DEFAULT_LIFETIME, NULL, 0,
           allocate_time_left (self->allocate_task), allocate_answered, NULL);
}

static gboolean
pin_matches (NatkitTurnClient *self,
             GTlsCertificate  *certificate)
{
  g_autoptr(GByteArray) der = NULL;
  g_autoptr(GChecksum) sum = NULL;
  guint8 digest[32];
  gsize len = sizeof digest;

  if (certificate == NULL)
    return FALSE;
  g_object_get (certificate, "certificate", &der, NULL);
  if (der == NULL)
    return FALSE;
  sum = g_checksum_new (G_CHECKSUM_SHA256);
  g_checksum_update (sum, der->data, der->len);
  g_checksum_get_digest (sum, digest, &len);
  return memcmp (digest, self->uri.pin, 32) == 0;
}

static gboolean
accept_certificate_cb (GTlsConnection       *connection,
                       GTlsCertificate      *certificate,
                       GTlsCertificateFlags  errors,
                       gpointer              user_data)
{
  NatkitTurnClient *self = user_data;

  self->tls_errors = errors;
  return self->uri.has_pin && pin_matches (self, certificate);
}

/* What to tell about a certificate the system's CA store refused */
static const char *
certificate_advice (GTlsCertificateFlags errors)
{
  if (errors & G_TLS_CERTIFICATE_BAD_IDENTITY)
    return " (its certificate is not for that name: use the name it was issued for, "
           "or pin it: turns:HOST:PORT#sha256:FINGERPRINT)";
  if (errors & (G_TLS_CERTIFICATE_EXPIRED | G_TLS_CERTIFICATE_NOT_ACTIVATED))
    return " (its certificate has expired or is not valid yet: check the server's "
           "certificate and this machine's clock)";
  if (errors & G_TLS_CERTIFICATE_UNKNOWN_CA)
    return " (its certificate is not signed by a CA this system trusts; for a "
           "self-signed server, pin its certificate: turns:HOST:PORT#sha256:FINGERPRINT)";
  return " (for a self-signed server, pin its certificate: "
         "turns:HOST:PORT#sha256:FINGERPRINT)";
}

static void
stream_ready (NatkitTurnClient *self,
              GIOStream        *stream)
{
  self->stream = g_object_ref (stream);
  stream_read (self);
  allocate_send (self);
}

static void
handshake_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(NatkitTurnClient) self = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_tls_connection_handshake_finish (G_TLS_CONNECTION (source), result, &error))
    {
      if (self->allocate_task != NULL)
        allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                          "TLS with the TURN server %s failed: %s%s",
                                          self->server, error->message,
                                          g_error_matches (error, G_TLS_ERROR,
                                                           G_TLS_ERROR_BAD_CERTIFICATE) ?
                                          certificate_advice (self->tls_errors) : ""));
      return;
    }
  if (self->uri.has_pin &&
      !pin_matches (self, g_tls_connection_get_peer_certificate (G_TLS_CONNECTION (source))))
    {
      allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                        "The TURN server %s presented a certificate whose "
                                        "SHA-256 is not the one pinned in its URI",
                                        self->server));
      return;
    }
  if (self->allocate_task == NULL)
    return;
  stream_ready (self, G_IO_STREAM (source));
}

static void
tcp_connected_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(NatkitTurnClient) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketConnection) connection =
    g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);
  g_autoptr(GIOStream) tls = NULL;
  g_autoptr(GSocketConnectable) identity = NULL;

  if (self->allocate_task == NULL)
    return;
  if (connection == NULL)
    {
      allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                        "Could not connect to the TURN server %s over %s: %s",
                                        self->server,
                                        natkit_turn_transport_to_string (self->transport),
                                        error->message));
      return;
    }
  g_socket_set_option (g_socket_connection_get_socket (connection), IPPROTO_TCP, TCP_NODELAY,
                       1, NULL);
  if (self->transport != NATKIT_TURN_TRANSPORT_TLS)
    {
      stream_ready (self, G_IO_STREAM (connection));
      return;
    }
  identity = g_network_address_new (self->uri.host, self->uri.port);
  tls = g_tls_client_connection_new (G_IO_STREAM (connection), identity, &error);
  if (tls == NULL)
    {
      allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                        "Cannot speak TLS to the TURN server %s: %s",
                                        self->server, error->message));
      return;
    }
  g_signal_connect_object (tls, "accept-certificate", G_CALLBACK (accept_certificate_cb),
                           self, 0);
  g_tls_connection_handshake_async (G_TLS_CONNECTION (tls), G_PRIORITY_DEFAULT,
                                    self->io_cancel, handshake_cb, g_object_ref (self));
}

static void
udp_start (NatkitTurnClient *self,
           GInetAddress     *ip)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (ip, self->uri.port);

  self->socket = g_socket_new (g_inet_address_get_family (ip), G_SOCKET_TYPE_DATAGRAM,
                               G_SOCKET_PROTOCOL_UDP, &error);
  if (self->socket == NULL || !g_socket_connect (self->socket, address, NULL, &error))
    {
      allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                        "Could not open a UDP socket to the TURN server %s: %s",
                                        self->server, error->message));
      return;
    }
  g_socket_set_blocking (self->socket, FALSE);
  /* room for bursts: a datagram lost here costs the stream a
   * retransmission timeout (as the relay plugin does) */
  g_socket_set_option (self->socket, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER, NULL);
  g_socket_set_option (self->socket, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER, NULL);
  self->io = g_socket_create_source (self->socket, G_IO_IN, NULL);
  g_source_set_callback (self->io, G_SOURCE_FUNC (udp_receive_cb), self, NULL);
  g_source_set_static_name (self->io, "[natkit-turn] receive");
  g_source_attach (self->io, g_main_context_get_thread_default ());
  allocate_send (self);
}

static void
resolved_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(NatkitTurnClient) self = user_data;
  g_autoptr(GError) error = NULL;
  GList *addresses = g_resolver_lookup_by_name_finish (G_RESOLVER (source), result, &error);

  if (self->allocate_task == NULL)
    {
      g_resolver_free_addresses (addresses);
      return;
    }
  if (addresses == NULL)
    {
      allocate_done (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                        "Could not resolve the TURN server %s: %s",
                                        self->server, error->message));
      return;
    }
  udp_start (self, addresses->data);
  g_resolver_free_addresses (addresses);
}

static void
connect_start (NatkitTurnClient *self)
{
  if (self->transport == NATKIT_TURN_TRANSPORT_UDP)
    {
      g_autoptr(GInetAddress) ip = g_inet_address_new_from_string (self->uri.host);

      if (ip != NULL)
        {
          udp_start (self, ip);
          return;
        }
      g_resolver_lookup_by_name_async (g_resolver_get_default (), self->uri.host,
                                       self->io_cancel, resolved_cb, g_object_ref (self));
      return;
    }
  {
    g_autoptr(GSocketClient) client = g_socket_client_new ();
    g_autoptr(GSocketConnectable) address = g_network_address_new (self->uri.host,
                                                                   self->uri.port);

    g_socket_client_set_timeout (client, (allocate_time_left (self->allocate_task) + 999) / 1000);
    g_socket_client_connect_async (client, address, self->io_cancel, tcp_connected_cb,
                                   g_object_ref (self));
  }
}

void
natkit_turn_client_allocate_async (NatkitTurnClient    *self,
                                   guint                timeout_ms,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  gint64 *deadline = g_new (gint64, 1);

  g_task_set_source_tag (task, natkit_turn_client_allocate_async);
  g_task_set_name (task, "[natkit-turn] allocate");
  *deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  g_task_set_task_data (task, deadline, g_free);
  g_return_if_fail (self->allocate_task == NULL && self->relayed == NULL);
  self->allocate_task = task;
  g_debug ("allocating on %s over %s", self->server,
           natkit_turn_transport_to_string (self->transport));
  connect_start (self);
}

gboolean
natkit_turn_client_allocate_finish (NatkitTurnClient  *self,
                                    GAsyncResult      *result,
                                    GError           **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- the channel -------------------------------------------------------- */

static void channel_refresh_answered (NatkitTurnClient *self, NatkitTurnMessage *answer,
                                      GError *error, gpointer data);

static gboolean
channel_refresh_cb (gpointer user_data)
{
  NatkitTurnClient *self = user_data;

  g_clear_pointer (&self->channel_refresh, g_source_unref);
  request (self, NATKIT_TURN_METHOD_CHANNEL_BIND, -1, self->peer, PEER_CHANNEL, 30000,
           channel_refresh_answered, NULL);
  return G_SOURCE_REMOVE;
}

static void
channel_schedule (NatkitTurnClient *self)
{
  natkit_turn_drop_source (&self->channel_refresh);
  self->channel_refresh = natkit_turn_add_source (g_timeout_source_new_seconds (
                                        self->refresh_s ? self->refresh_s :
                                        self->channel_refresh_s ? self->channel_refresh_s :
                                        CHANNEL_REFRESH_S),
                                      channel_refresh_cb, self,
                                      "[natkit-turn] channel refresh");
}

static void
channel_refresh_answered (NatkitTurnClient  *self,
                          NatkitTurnMessage *answer,
                          GError            *error,
                          gpointer           data)
{
  if (self->closed)
    {
      g_clear_error (&error);
      return;
    }
  if (error != NULL || answer->kind != NATKIT_TURN_MESSAGE_SUCCESS)
    {
      fail (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "The TURN server %s did not renew the channel to the peer: %s",
                               self->server, error ? error->message :
                               answer->reason ? answer->reason : "refused"));
      g_clear_error (&error);
      return;
    }
  self->refreshes++;
  channel_schedule (self);
}

static void
bind_answered (NatkitTurnClient  *self,
               NatkitTurnMessage *answer,
               GError            *error,
               gpointer           data)
{
  GTask *task = data;

  if (error != NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  if (answer->kind == NATKIT_TURN_MESSAGE_ERROR)
    {
      g_autofree char *peer = natkit_turn_describe (self->peer);

      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                               "TURN server %s refused a channel to the peer's relayed "
                               "address %s (%u %s)", self->server, peer,
                               answer->error_code, answer->reason ? answer->reason : "");
      g_object_unref (task);
      return;
    }
  self->bound = TRUE;
  channel_schedule (self);
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

void
natkit_turn_client_bind_async (NatkitTurnClient    *self,
                               GInetSocketAddress  *peer,
                               guint                timeout_ms,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, natkit_turn_client_bind_async);
  g_set_object (&self->peer, peer);
  request (self, NATKIT_TURN_METHOD_CHANNEL_BIND, -1, peer, PEER_CHANNEL, timeout_ms,
           bind_answered, task);
}

gboolean
natkit_turn_client_bind_finish (NatkitTurnClient  *self,
                                GAsyncResult      *result,
                                GError           **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- data --------------------------------------------------------------- */

gboolean
natkit_turn_client_send (NatkitTurnClient  *self,
                         const guint8      *data,
                         gsize              length,
                         GError           **error)
{
  guint8 header[NATKIT_TURN_CHANNEL_HEADER];
  guint padding;

  if (!self->bound)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "No channel to the peer on the TURN server %s", self->server);
      return FALSE;
    }
  if (length == 0 || length > 65535 - NATKIT_TURN_CHANNEL_HEADER)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE,
                   "A datagram of %" G_GSIZE_FORMAT " bytes cannot go through the TURN "
                   "server %s", length, self->server);
      return FALSE;
    }
  padding = natkit_turn_channel_header (header, PEER_CHANNEL, length);
  return transmit (self, header, sizeof header, data, length,
                   self->socket != NULL ? 0 : padding, error);
}

/* ---- life --------------------------------------------------------------- */

void
natkit_turn_client_close (NatkitTurnClient *self)
{
  GList *txns;

  if (self->closed)
    return;
  /* deallocate: a Refresh with LIFETIME 0, no answer awaited */
  if (self->relayed != NULL)
    {
      guint8 buffer[1500];
      guint8 txid[12];
      gsize size = natkit_turn_build_request (NATKIT_TURN_METHOD_REFRESH, &self->auth, 0,
                                              NULL, 0, buffer, sizeof buffer, txid);

      if (size > 0 && self->socket != NULL)
        transmit (self, buffer, size, NULL, 0, 0, NULL);
      else if (size > 0 && self->stream != NULL)
        {
          GOutputStream *out = g_io_stream_get_output_stream (self->stream);

          /* best effort, without blocking; closing the stream frees the
           * allocation as well (RFC 8656 9.1: TCP allocations end with the
           * connection) */
          if (!self->writing && self->out->len == 0 && G_IS_POLLABLE_OUTPUT_STREAM (out))
            g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (out),
                                                        buffer, size, NULL, NULL);
        }
      g_debug ("%s: deallocating", self->server);
    }
  self->closed = TRUE;

  txns = g_list_copy (self->txns);
  for (GList *l = txns; l != NULL; l = l->next)
    if (g_list_find (self->txns, l->data))
      txn_finish (self, l->data, NULL,
                  g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "The allocation on %s was closed", self->server));
  g_list_free (txns);

  natkit_turn_drop_source (&self->refresh);
  natkit_turn_drop_source (&self->channel_refresh);
  natkit_turn_drop_source (&self->io);
  if (self->socket != NULL)
    g_socket_close (self->socket, NULL);
  g_cancellable_cancel (self->io_cancel);
  if (self->stream != NULL)
    g_io_stream_close_async (self->stream, G_PRIORITY_DEFAULT, NULL, NULL, NULL);
  if (self->allocate_task != NULL)
    allocate_done (self, g_error_new (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                      "Operation was cancelled"));
}

void
natkit_turn_client_set_handlers (NatkitTurnClient   *self,
                                 NatkitTurnDataFunc  data_func,
                                 NatkitTurnFailFunc  fail_func,
                                 gpointer            user_data)
{
  self->data_func = data_func;
  self->fail_func = fail_func;
  self->handler_data = user_data;
}

void
natkit_turn_client_set_refresh (NatkitTurnClient *self,
                                guint             seconds)
{
  self->refresh_s = seconds;
  if (self->refresh != NULL)
    refresh_schedule (self);
  if (self->channel_refresh != NULL)
    channel_schedule (self);
}

void
natkit_turn_client_set_channel_refresh (NatkitTurnClient *self,
                                        guint             seconds)
{
  self->channel_refresh_s = seconds;
  if (self->channel_refresh != NULL)
    channel_schedule (self);
}

guint
natkit_turn_client_get_refreshes (NatkitTurnClient *self)
{
  return self->refreshes;
}

const char *
natkit_turn_client_get_server (NatkitTurnClient *self)
{
  return self->server;
}

NatkitTurnTransport
natkit_turn_client_get_transport (NatkitTurnClient *self)
{
  return self->transport;
}

GInetSocketAddress *
natkit_turn_client_get_relayed (NatkitTurnClient *self)
{
  return self->relayed;
}

GInetSocketAddress *
natkit_turn_client_get_mapped (NatkitTurnClient *self)
{
  return self->mapped;
}

gboolean
natkit_turn_client_is_answered (NatkitTurnClient *self)
{
  return self->answered;
}

static void
natkit_turn_client_dispose (GObject *object)
{
  NatkitTurnClient *self = NATKIT_TURN_CLIENT (object);

  natkit_turn_client_close (self);
  G_OBJECT_CLASS (natkit_turn_client_parent_class)->dispose (object);
}

static void
natkit_turn_client_finalize (GObject *object)
{
  NatkitTurnClient *self = NATKIT_TURN_CLIENT (object);

  g_assert (self->txns == NULL);
  natkit_turn_uri_clear (&self->uri);
  natkit_turn_auth_clear (&self->auth);
  g_free (self->server);
  if (self->password != NULL)
    memset (self->password, 0, strlen (self->password));
  g_free (self->password);
  g_clear_object (&self->socket);
  g_clear_object (&self->stream);
  g_clear_object (&self->io_cancel);
  g_byte_array_unref (self->in);
  g_byte_array_unref (self->out);
  g_free (self->read_buffer);
  g_clear_object (&self->relayed);
  g_clear_object (&self->mapped);
  g_clear_object (&self->peer);
  G_OBJECT_CLASS (natkit_turn_client_parent_class)->finalize (object);
}

static void
natkit_turn_client_class_init (NatkitTurnClientClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = natkit_turn_client_dispose;
  G_OBJECT_CLASS (klass)->finalize = natkit_turn_client_finalize;
}

static void
natkit_turn_client_init (NatkitTurnClient *self)
{
  self->io_cancel = g_cancellable_new ();
  self->in = g_byte_array_new ();
  self->out = g_byte_array_new ();
  self->read_buffer = g_malloc (65536);
}

NatkitTurnClient *
natkit_turn_client_new (const NatkitTurnUri *uri,
                        NatkitTurnTransport  transport,
                        const char          *username,
                        const char          *password)
{
  NatkitTurnClient *self = g_object_new (NATKIT_TYPE_TURN_CLIENT, NULL);

  self->uri = *uri;
  self->uri.host = g_strdup (uri->host);
  self->transport = transport;
  self->server = natkit_turn_uri_describe (uri);
  self->auth.username = g_strdup (username);
  self->password = g_strdup (password);
  return self;
}
