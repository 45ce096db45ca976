/* natkit-stun-client.c: STUN Binding transactions (RFC 8489, RFC 5780)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Messages are built and read with libnice's libstun; FINGERPRINT is checked
 * with zlib's CRC-32 (libstun does not export its own). One client owns one
 * UDP socket and runs any number of transactions on it at once, which is
 * what RFC 5780 needs: the mapping and filtering tests must all use the
 * same local port. Retransmissions follow RFC 8489 section 6.2.1 (libstun's
 * timer: RTO doubling from the initial value); each transaction also has a
 * hard deadline.
 */
#include "config.h"

#include <string.h>
#include <zlib.h>

#include <stun/stunagent.h>
#include <stun/stunmessage.h>
#include <stun/usages/timer.h>

#include "natkit.h"
#include "natkit-stun-client-private.h"

#define ATTR_RESPONSE_ORIGIN 0x802B   /* RFC 5780 */
#define ATTR_OTHER_ADDRESS   0x802C   /* RFC 5780 */
#define ATTR_RESPONSE_PORT   0x0027   /* RFC 5780 */
#define FINGERPRINT_XOR      0x5354554e
#define MAX_MESSAGE          1500
#define TXID_LEN             16   /* libstun: magic cookie + transaction ID */
#define MAX_RETRANSMISSIONS  7         /* Rc = 7 sends (RFC 8489): libstun counts the first */

void
natkit_stun_response_clear (NatkitStunResponse *response)
{
  g_clear_object (&response->mapped);
  g_clear_object (&response->other);
  g_clear_object (&response->response_origin);
  g_clear_object (&response->source);
}

static GInetSocketAddress *
address_from_sockaddr (const struct sockaddr_storage *storage,
                       socklen_t                      len)
{
  GSocketAddress *address = g_socket_address_new_from_native ((gpointer) storage, len);

  if (address != NULL && !G_IS_INET_SOCKET_ADDRESS (address))
    g_clear_object (&address);
  return (GInetSocketAddress *) address;
}

static gboolean
check_fingerprint (const guint8 *data,
                   gsize         length)
{
  /* FINGERPRINT, when present, is the last attribute: 4-byte header + CRC. */
  guint32 expected, crc;

  if (length < 20 + 8)
    return FALSE;
  if (data[length - 8] != 0x80 || data[length - 7] != 0x28 ||
      data[length - 6] != 0x00 || data[length - 5] != 0x04)
    return FALSE;

  memcpy (&expected, data + length - 4, 4);
  expected = GUINT32_FROM_BE (expected);
  crc = crc32 (0L, data, length - 8) ^ FINGERPRINT_XOR;
  return crc == expected;
}

gboolean
_natkit_stun_parse_binding_response (const guint8        *data,
                                     gsize                length,
                                     const guint8        *txid,
                                     NatkitStunResponse  *response,
                                     GError             **error)
{
  StunMessage msg = { 0, };
  StunTransactionId id;
  struct sockaddr_storage storage;
  socklen_t addrlen;
  uint16_t attr_len;
  int code = 0;

  if (length < 20 || length > G_MAXINT ||
      stun_message_validate_buffer_length (data, length, TRUE) != (int) length)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "not a STUN message (%" G_GSIZE_FORMAT " bytes)", length);
      return FALSE;
    }

  msg.buffer = (uint8_t *) data;
  msg.buffer_len = length;

  if (!stun_message_has_cookie (&msg))
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "not an RFC 8489 STUN message (no magic cookie)");
      return FALSE;
    }

  stun_message_id (&msg, id);
  if (txid != NULL && memcmp (id, txid, TXID_LEN) != 0)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "answer to a transaction we did not start");
      return FALSE;
    }

  if (stun_message_get_method (&msg) != STUN_BINDING ||
      (stun_message_get_class (&msg) != STUN_RESPONSE &&
       stun_message_get_class (&msg) != STUN_ERROR))
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "not a Binding response");
      return FALSE;
    }

  if (stun_message_find (&msg, STUN_ATTRIBUTE_FINGERPRINT, &attr_len) != NULL &&
      !check_fingerprint (data, length))
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "the FINGERPRINT does not match: damaged or forged answer");
      return FALSE;
    }

  if (stun_message_get_class (&msg) == STUN_ERROR)
    {
      if (stun_message_find_error (&msg, &code) != STUN_MESSAGE_RETURN_SUCCESS)
        code = 0;
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "the server refused the request (STUN error %d)", code);
      return FALSE;
    }

  memset (response, 0, sizeof *response);

  addrlen = sizeof storage;
  if (stun_message_find_xor_addr (&msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
                                  (struct sockaddr_storage *) &storage, &addrlen) ==
      STUN_MESSAGE_RETURN_SUCCESS)
    response->mapped = address_from_sockaddr (&storage, addrlen);
  else
    {
      addrlen = sizeof storage;
      if (stun_message_find_addr (&msg, STUN_ATTRIBUTE_MAPPED_ADDRESS,
                                  (struct sockaddr_storage *) &storage, &addrlen) ==
          STUN_MESSAGE_RETURN_SUCCESS)
        response->mapped = address_from_sockaddr (&storage, addrlen);
    }

  if (response->mapped == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "the answer has no (XOR-)MAPPED-ADDRESS");
      return FALSE;
    }

  addrlen = sizeof storage;
  if (stun_message_find_addr (&msg, ATTR_OTHER_ADDRESS,
                              (struct sockaddr_storage *) &storage, &addrlen) ==
      STUN_MESSAGE_RETURN_SUCCESS)
    response->other = address_from_sockaddr (&storage, addrlen);

  addrlen = sizeof storage;
  if (stun_message_find_addr (&msg, ATTR_RESPONSE_ORIGIN,
                              (struct sockaddr_storage *) &storage, &addrlen) ==
      STUN_MESSAGE_RETURN_SUCCESS)
    response->response_origin = address_from_sockaddr (&storage, addrlen);

  return TRUE;
}

static gsize build_request (guint8 *buffer, gsize size, guint8 *txid,
                           guint32 change_flags, guint16 response_port);

static const uint16_t known_attributes[] = {
  STUN_ATTRIBUTE_MAPPED_ADDRESS,
  STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
  STUN_ATTRIBUTE_CHANGE_REQUEST,
  STUN_ATTRIBUTE_ERROR_CODE,
  STUN_ATTRIBUTE_FINGERPRINT,
  STUN_ATTRIBUTE_SOFTWARE,
  0
};

gsize
_natkit_stun_build_binding_request (guint8  *buffer,
                                    gsize    size,
                                    guint8  *txid,
                                    guint32  change_flags)
{
  return build_request (buffer, size, txid, change_flags, 0);
}

static gsize
build_request (guint8  *buffer,
               gsize    size,
               guint8  *txid,
               guint32  change_flags,
               guint16  response_port)
{
  StunAgent agent;
  StunMessage msg;
  gsize length;

  /* A fresh agent each time: its table of sent transactions is bounded and
   * we match answers ourselves. */
  stun_agent_init (&agent, known_attributes, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_USE_FINGERPRINT);
  if (!stun_agent_init_request (&agent, &msg, buffer, size, STUN_BINDING))
    return 0;
  if (change_flags != 0 &&
      stun_message_append32 (&msg, STUN_ATTRIBUTE_CHANGE_REQUEST, change_flags) !=
      STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  /* RESPONSE-PORT (RFC 5780 section 7.5): a port and two bytes of padding. */
  if (response_port != 0 &&
      stun_message_append32 (&msg, ATTR_RESPONSE_PORT, (guint32) response_port << 16) !=
      STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  length = stun_agent_finish_message (&agent, &msg, NULL, 0);
  if (length > 0)
    stun_message_id (&msg, txid);
  return length;
}

/* The client. */

typedef struct
{
  NatkitStunClient   *client;       /* unowned: the client owns us */
  GTask              *task;
  guint8              txid[TXID_LEN];
  guint8              request[MAX_MESSAGE];
  gsize               request_len;
  GInetSocketAddress *server;
  guint32             change_flags;
  StunTimer           timer;
  GSource            *retransmit;
  GSource            *deadline;
  gulong              cancelled_id;
  gint64              first_send;
  guint               sends;
  char               *last_rejection;
} Transaction;

struct _NatkitStunClient
{
  GObject     parent_instance;

  GSocket    *socket;
  GSource    *source;
  GHashTable *transactions;   /* txid (GBytes) → Transaction */
  GHashTable *probes_seen;    /* txid (GBytes) set */
  guint       packets_sent;
};

G_DEFINE_FINAL_TYPE (NatkitStunClient, natkit_stun_client, G_TYPE_OBJECT)

enum {
  SIGNAL_PROBE,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void transaction_finish (Transaction *t, GError *error, NatkitStunResponse *response);

static void
transaction_free (gpointer data)
{
  Transaction *t = data;

  if (t->retransmit)
    {
      g_source_destroy (t->retransmit);
      g_source_unref (t->retransmit);
    }
  if (t->deadline)
    {
      g_source_destroy (t->deadline);
      g_source_unref (t->deadline);
    }
  g_clear_object (&t->server);
  g_free (t->last_rejection);
  g_clear_object (&t->task);
  g_free (t);
}

/* Is @source a plausible origin for an answer to @t? A Binding answer must
 * come from where we sent it; a success answer to CHANGE-REQUEST, from the
 * changed IP and/or port (RFC 5780 section 7.2). An error answer (say 420,
 * CHANGE-REQUEST not supported) comes from where we sent the request.
 * Anything else is forged or lost. */
static gboolean
source_is_plausible (Transaction        *t,
                     GInetSocketAddress *source,
                     gboolean            is_error)
{
  gboolean same_ip = g_inet_address_equal (g_inet_socket_address_get_address (source),
                                           g_inet_socket_address_get_address (t->server));
  gboolean same_port = g_inet_socket_address_get_port (source) ==
                       g_inet_socket_address_get_port (t->server);

  if (t->change_flags == 0 || is_error)
    return same_ip && same_port;
  if ((t->change_flags & NATKIT_STUN_CHANGE_IP) && same_ip)
    return FALSE;
  if ((t->change_flags & NATKIT_STUN_CHANGE_PORT) && same_port)
    return FALSE;
  if (!(t->change_flags & NATKIT_STUN_CHANGE_IP) && !same_ip)
    return FALSE;
  if (!(t->change_flags & NATKIT_STUN_CHANGE_PORT) && !same_port)
    return FALSE;
  return TRUE;
}

static void
handle_datagram (NatkitStunClient   *self,
                 const guint8       *data,
                 gsize               length,
                 GInetSocketAddress *source)
{
  g_autoptr(GBytes) key = NULL;
  g_autoptr(GError) error = NULL;
  g_auto(NatkitStunResponse) response = { 0, };
  StunMessage msg = { 0, };
  Transaction *t;

  if (length < 20 || length > G_MAXINT ||
      stun_message_validate_buffer_length (data, length, TRUE) != (int) length)
    return;

  key = g_bytes_new (data + 4, TXID_LEN);
  msg.buffer = (uint8_t *) data;
  msg.buffer_len = length;

  /* A Binding request to us: a hairpinning probe from our own side. */
  if (stun_message_get_class (&msg) == STUN_REQUEST &&
      stun_message_get_method (&msg) == STUN_BINDING)
    {
      if (g_hash_table_size (self->probes_seen) < 64)
        g_hash_table_add (self->probes_seen, g_steal_pointer (&key));
      g_signal_emit (self, signals[SIGNAL_PROBE], 0);
      return;
    }

  t = g_hash_table_lookup (self->transactions, key);
  if (t == NULL)
    {
      /* An answer to another socket's request, sent here with
       * RESPONSE-PORT (binding lifetime discovery): note it, use nothing
       * from it. */
      if (stun_message_get_class (&msg) == STUN_RESPONSE &&
          stun_message_get_method (&msg) == STUN_BINDING &&
          g_hash_table_size (self->probes_seen) < 64)
        {
          g_hash_table_add (self->probes_seen, g_steal_pointer (&key));
          g_signal_emit (self, signals[SIGNAL_PROBE], 0);
        }
      else
        g_debug ("ignoring a STUN message for no transaction of ours");
      return;
    }

  if (!source_is_plausible (t, source, stun_message_get_class (&msg) == STUN_ERROR))
    {
      g_autofree char *from = g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (source));
      g_debug ("ignoring an answer from %s: not where the request went", from);
      g_free (t->last_rejection);
      t->last_rejection = g_strdup_printf ("an answer came from the wrong address (%s)", from);
      return;
    }

  if (!_natkit_stun_parse_binding_response (data, length, t->txid, &response, &error))
    {
      g_debug ("ignoring a bad answer: %s", error->message);
      g_free (t->last_rejection);
      t->last_rejection = g_strdup (error->message);
      /* An explicit STUN error from the right address ends the transaction. */
      if (stun_message_get_class (&msg) == STUN_ERROR)
        transaction_finish (t, g_steal_pointer (&error), NULL);
      return;
    }

  response.source = g_object_ref (source);
  response.rtt_us = g_get_monotonic_time () - t->first_send;
  response.sends = t->sends;
  transaction_finish (t, NULL, &response);
}

static gboolean
socket_readable_cb (GSocket      *socket,
                    GIOCondition  condition,
                    gpointer      user_data)
{
  NatkitStunClient *self = user_data;
  guint8 buffer[MAX_MESSAGE];

  g_object_ref (self);
  for (guint i = 0; i < 64; i++)
    {
      g_autoptr(GSocketAddress) source = NULL;
      g_autoptr(GError) error = NULL;
      gssize n;

      n = g_socket_receive_from (socket, &source, (char *) buffer, sizeof buffer,
                                 NULL, &error);
      if (n < 0)
        {
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            g_debug ("STUN socket: %s", error->message);
          break;
        }
      if (source != NULL && G_IS_INET_SOCKET_ADDRESS (source))
        handle_datagram (self, buffer, n, G_INET_SOCKET_ADDRESS (source));
    }
  g_object_unref (self);
  return G_SOURCE_CONTINUE;
}

static void
natkit_stun_client_dispose (GObject *object)
{
  NatkitStunClient *self = NATKIT_STUN_CLIENT (object);

  if (self->source)
    {
      g_source_destroy (self->source);
      g_clear_pointer (&self->source, g_source_unref);
    }
  if (self->socket)
    g_socket_close (self->socket, NULL);
  g_clear_object (&self->socket);
  g_clear_pointer (&self->transactions, g_hash_table_unref);
  g_clear_pointer (&self->probes_seen, g_hash_table_unref);

  G_OBJECT_CLASS (natkit_stun_client_parent_class)->dispose (object);
}

static void
natkit_stun_client_class_init (NatkitStunClientClass *klass)
{
  G_OBJECT_CLASS (klass)->dispose = natkit_stun_client_dispose;

  signals[SIGNAL_PROBE] =
    g_signal_new ("probe", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 0);
}

static void
natkit_stun_client_init (NatkitStunClient *self)
{
  self->transactions = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                              (GDestroyNotify) g_bytes_unref, NULL);
  self->probes_seen = g_hash_table_new_full (g_bytes_hash, g_bytes_equal,
                                             (GDestroyNotify) g_bytes_unref, NULL);
}

NatkitStunClient *
natkit_stun_client_new (GSocketFamily   family,
                        GError        **error)
{
  g_autoptr(NatkitStunClient) self = g_object_new (NATKIT_TYPE_STUN_CLIENT, NULL);
  g_autoptr(GInetAddress) any = g_inet_address_new_any (family);
  g_autoptr(GSocketAddress) local = g_inet_socket_address_new (any, 0);

  self->socket = g_socket_new (family, G_SOCKET_TYPE_DATAGRAM,
                               G_SOCKET_PROTOCOL_UDP, error);
  if (self->socket == NULL)
    return NULL;
  g_socket_set_blocking (self->socket, FALSE);
  if (!g_socket_bind (self->socket, local, FALSE, error))
    return NULL;

  self->source = g_socket_create_source (self->socket, G_IO_IN, NULL);
  g_source_set_callback (self->source, (GSourceFunc) (void (*) (void)) socket_readable_cb,
                         self, NULL);
  g_source_set_static_name (self->source, "[natkit] STUN socket");
  g_source_attach (self->source, g_main_context_get_thread_default ());
  return g_steal_pointer (&self);
}

GInetSocketAddress *
natkit_stun_client_get_local_address (NatkitStunClient *self)
{
  return (GInetSocketAddress *) g_socket_get_local_address (self->socket, NULL);
}

static void
response_free (gpointer data)
{
  natkit_stun_response_clear (data);
  g_free (data);
}

static void
transaction_finish (Transaction        *t,
                    GError             *error,
                    NatkitStunResponse *response)
{
  NatkitStunClient *self = t->client;
  g_autoptr(GBytes) key = g_bytes_new (t->txid, TXID_LEN);
  GTask *task = g_steal_pointer (&t->task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (t->cancelled_id)
    g_cancellable_disconnect (cancellable, t->cancelled_id);
  t->cancelled_id = 0;
  g_hash_table_remove (self->transactions, key);
  g_task_set_task_data (task, NULL, NULL);
  transaction_free (t);

  if (error != NULL)
    g_task_return_error (task, error);
  else
    {
      NatkitStunResponse *copy = g_new0 (NatkitStunResponse, 1);

      *copy = *response;
      memset (response, 0, sizeof *response);
      g_task_return_pointer (task, copy, response_free);
    }
  g_object_unref (task);
}

static gboolean
send_request (Transaction *t)
{
  g_autoptr(GError) error = NULL;

  if (g_socket_send_to (t->client->socket, G_SOCKET_ADDRESS (t->server),
                        (const char *) t->request, t->request_len, NULL, &error) < 0 &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    {
      g_autofree char *to = g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (t->server));
      GError *e = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "cannot send to %s: %s", to, error->message);
      transaction_finish (t, e, NULL);
      return FALSE;
    }
  t->sends++;
  t->client->packets_sent++;
  return TRUE;
}

static gboolean retransmit_cb (gpointer user_data);

static void
schedule_retransmit (Transaction *t)
{
  if (t->retransmit)
    {
      g_source_destroy (t->retransmit);
      g_source_unref (t->retransmit);
    }
  t->retransmit = g_timeout_source_new (MAX (1, stun_timer_remainder (&t->timer)));
  g_source_set_callback (t->retransmit, retransmit_cb, t, NULL);
  g_source_set_static_name (t->retransmit, "[natkit] STUN retransmit");
  g_source_attach (t->retransmit, g_main_context_get_thread_default ());
}

static GError *
timeout_error (Transaction *t)
{
  g_autofree char *to = g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (t->server));

  if (t->last_rejection)
    return g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                        "no valid answer from %s after %u requests (%s)",
                        to, t->sends, t->last_rejection);
  return g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                      "no answer from %s after %u requests", to, t->sends);
}

static gboolean
retransmit_cb (gpointer user_data)
{
  Transaction *t = user_data;

  g_clear_pointer (&t->retransmit, g_source_unref);
  switch (stun_timer_refresh (&t->timer))
    {
    case STUN_USAGE_TIMER_RETURN_TIMEOUT:
      transaction_finish (t, timeout_error (t), NULL);
      return G_SOURCE_REMOVE;
    case STUN_USAGE_TIMER_RETURN_RETRANSMIT:
      if (!send_request (t))
        return G_SOURCE_REMOVE;
      G_GNUC_FALLTHROUGH;
    case STUN_USAGE_TIMER_RETURN_SUCCESS:
    default:
      schedule_retransmit (t);
      return G_SOURCE_REMOVE;
    }
}

static gboolean
deadline_cb (gpointer user_data)
{
  Transaction *t = user_data;

  g_clear_pointer (&t->deadline, g_source_unref);
  transaction_finish (t, timeout_error (t), NULL);
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  Transaction *t = g_task_get_task_data (task);

  /* Still running? */
  if (t != NULL && t->task == task)
    transaction_finish (t, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                "Operation was cancelled"), NULL);
  return G_SOURCE_REMOVE;
}

static void
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  GTask *task = user_data;
  GSource *idle = g_idle_source_new ();

  /* Possibly in another thread: finish in the task's context. */
  g_source_set_callback (idle, cancelled_idle_cb, g_object_ref (task), g_object_unref);
  g_source_attach (idle, g_task_get_context (task));
  g_source_unref (idle);
}

/*
 * natkit_stun_client_binding_async:
 * @change_flags: CHANGE-REQUEST flags, or 0
 * @initial_rto_ms: the first retransmission timeout (RFC 8489: 500 ms
 *   when the RTT is unknown); it doubles after each retransmission
 * @timeout_ms: the hard deadline of the whole transaction
 */
void
natkit_stun_client_binding_async (NatkitStunClient    *self,
                                  GInetSocketAddress  *server,
                                  guint32              change_flags,
                                  guint                initial_rto_ms,
                                  guint                timeout_ms,
                                  GCancellable        *cancellable,
                                  GAsyncReadyCallback  callback,
                                  gpointer             user_data)
{
  Transaction *t = g_new0 (Transaction, 1);
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, natkit_stun_client_binding_async);
  g_task_set_name (task, "[natkit] STUN binding");

  t->client = self;
  t->task = task;
  t->server = g_object_ref (server);
  t->change_flags = change_flags;
  t->request_len = _natkit_stun_build_binding_request (t->request, sizeof t->request,
                                                       t->txid, change_flags);
  /* The task points at the transaction only while it runs. */
  g_task_set_task_data (task, t, NULL);

  if (t->request_len == 0)
    {
      transaction_finish (t, g_error_new_literal (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                                  "cannot build a STUN request"), NULL);
      return;
    }

  g_hash_table_insert (self->transactions, g_bytes_new (t->txid, TXID_LEN), t);
  stun_timer_start (&t->timer, MAX (1, initial_rto_ms), MAX_RETRANSMISSIONS);
  t->deadline = g_timeout_source_new (MAX (1, timeout_ms));
  g_source_set_callback (t->deadline, deadline_cb, t, NULL);
  g_source_set_static_name (t->deadline, "[natkit] STUN deadline");
  g_source_attach (t->deadline, g_main_context_get_thread_default ());
  if (cancellable != NULL)
    t->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (cancelled_cb),
                                             task, NULL);

  t->first_send = g_get_monotonic_time ();
  if (send_request (t))
    schedule_retransmit (t);
}

gboolean
natkit_stun_client_binding_finish (NatkitStunClient    *self,
                                   GAsyncResult        *result,
                                   NatkitStunResponse  *response,
                                   GError             **error)
{
  NatkitStunResponse *r;

  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);

  r = g_task_propagate_pointer (G_TASK (result), error);
  if (r == NULL)
    return FALSE;
  *response = *r;
  g_free (r);
  return TRUE;
}

/* Sends one Binding request that nobody waits an answer for: the
 * hairpinning probe, aimed at another client's mapped address; or, with
 * @response_port, a request whose answer the server sends to that port of
 * our public address (binding lifetime discovery). */
void
natkit_stun_client_send_probe (NatkitStunClient   *self,
                               GInetSocketAddress *target,
                               guint16             response_port,
                               guint8             *txid)
{
  guint8 request[MAX_MESSAGE];
  gsize length = build_request (request, sizeof request, txid, 0, response_port);

  if (length > 0 &&
      g_socket_send_to (self->socket, G_SOCKET_ADDRESS (target), (const char *) request,
                        length, NULL, NULL) > 0)
    self->packets_sent++;
}

gboolean
natkit_stun_client_saw_probe (NatkitStunClient *self,
                              const guint8     *txid)
{
  g_autoptr(GBytes) key = g_bytes_new (txid, TXID_LEN);

  return g_hash_table_contains (self->probes_seen, key);
}

guint
natkit_stun_client_get_packets_sent (NatkitStunClient *self)
{
  return self->packets_sent;
}
