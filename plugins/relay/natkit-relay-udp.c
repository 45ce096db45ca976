/* natkit-relay-udp.c: a relay circuit's UDP data channel (docs/protocol.md 4.1, 4.2)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One connected UDP socket per circuit: the kernel drops what does not come
 * from the server, and an ICMP port unreachable comes back as
 * G_IO_ERROR_CONNECTION_REFUSED, so a server that does not serve UDP is
 * known at once instead of after the whole budget.
 */
#include <string.h>

#include "natkit-relay-udp.h"
#include <sys/socket.h>

#define RELAY_SOCKET_BUFFER (4 * 1024 * 1024)

/* BIND at 0, 250, 500, 1000, 2000 ms…: the gaps between them */
static const guint bind_gaps_ms[] = { 250, 250, 500, 1000 };
/* DATA that arrives before BOUND proves the binding; kept for delivery */
#define MAX_EARLY 32

struct _NatkitRelayUdpPath
{
  NatkitPath   parent_instance;

  GSocket     *socket;
  char        *server;         /* "HOST:PORT", for messages */
  guint32      circuit;
  guint8       bind[NATKIT_RELAY_BIND_SIZE];

  GSource     *io;
  GSource     *timer;          /* BIND resends, then keepalives */
  guint        n_binds;

  /* while binding */
  GTask       *bind_task;      /* not a reference: the task holds the path */
  GSource     *budget;
  GSource     *cancel;
  guint        budget_ms;
  GQueue       early;          /* GBytes */
  GSource     *early_idle;

  /* once bound */
  gboolean     bound;
  guint        keepalive_ms;
  guint        max_missed;
  guint        missed;
  gboolean     awaiting_bound;
  GSource     *fail_idle;
  GError      *failure;
};

G_DEFINE_FINAL_TYPE (NatkitRelayUdpPath, natkit_relay_udp_path, NATKIT_TYPE_PATH)

static void
drop_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static GSource *
add_source (GSource     *source,
            GSourceFunc  func,
            gpointer     data,
            const char  *name)
{
  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, name);
  g_source_attach (source, g_main_context_get_thread_default ());
  return source;
}

/* ---- the path ----------------------------------------------------------- */

static void
natkit_relay_udp_path_close (NatkitPath *path)
{
  NatkitRelayUdpPath *self = NATKIT_RELAY_UDP_PATH (path);

  drop_source (&self->io);
  drop_source (&self->timer);
  drop_source (&self->budget);
  drop_source (&self->cancel);
  drop_source (&self->early_idle);
  drop_source (&self->fail_idle);
  g_queue_clear_full (&self->early, (GDestroyNotify) g_bytes_unref);
  if (self->socket != NULL)
    {
      g_debug ("circuit %u: closing the UDP channel to %s", self->circuit, self->server);
      g_socket_close (self->socket, NULL);
    }
}

static gboolean
fail_idle_cb (gpointer user_data)
{
  NatkitRelayUdpPath *self = user_data;
  g_autoptr(GError) failure = g_steal_pointer (&self->failure);

  g_clear_pointer (&self->fail_idle, g_source_unref);
  natkit_path_fail (NATKIT_PATH (self), failure);
  return G_SOURCE_REMOVE;
}

/* Fails the path from the main loop, never from inside send(). */
static void
fail_later (NatkitRelayUdpPath *self,
            GError             *error)
{
  if (self->fail_idle != NULL || natkit_path_is_closed (NATKIT_PATH (self)))
    {
      g_error_free (error);
      return;
    }
  self->failure = error;
  self->fail_idle = add_source (g_idle_source_new (), fail_idle_cb, self,
                                "[natkit-relay] fail");
}

static GError *
refused_error (NatkitRelayUdpPath *self)
{
  return g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                      "The relay server %s refused UDP (ICMP port unreachable): "
                      "it does not serve relay circuits over UDP on that port",
                      self->server);
}

static gboolean
natkit_relay_udp_path_send (NatkitPath  *path,
                            GBytes      *datagram,
                            GError     **error)
{
  NatkitRelayUdpPath *self = NATKIT_RELAY_UDP_PATH (path);
  guint8 header[NATKIT_RELAY_HEADER_SIZE];
  GOutputVector vectors[2];
  g_autoptr(GError) local_error = NULL;
  gsize size;

  vectors[1].buffer = g_bytes_get_data (datagram, &size);
  vectors[1].size = size;
  if (size == 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "An empty datagram cannot be relayed (circuit %u through %s)",
                   self->circuit, self->server);
      return FALSE;
    }
  natkit_relay_build_header (header, NATKIT_RELAY_DATA, self->circuit);
  vectors[0].buffer = header;
  vectors[0].size = sizeof header;

  if (g_socket_send_message (self->socket, NULL, vectors, 2, NULL, 0, 0,
                             NULL, &local_error) >= 0)
    return TRUE;

  /* like UDP: a full socket buffer drops the datagram */
  if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return TRUE;
  if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
    {
      fail_later (self, refused_error (self));
      return TRUE;
    }
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
               "Could not send to the relay server %s: %s",
               self->server, local_error->message);
  return FALSE;
}

static void
natkit_relay_udp_path_finalize (GObject *object)
{
  NatkitRelayUdpPath *self = NATKIT_RELAY_UDP_PATH (object);

  g_clear_object (&self->socket);
  g_clear_error (&self->failure);
  g_free (self->server);

  G_OBJECT_CLASS (natkit_relay_udp_path_parent_class)->finalize (object);
}

static void
natkit_relay_udp_path_class_init (NatkitRelayUdpPathClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_relay_udp_path_finalize;
  NATKIT_PATH_CLASS (klass)->send = natkit_relay_udp_path_send;
  NATKIT_PATH_CLASS (klass)->close = natkit_relay_udp_path_close;
}

static void
natkit_relay_udp_path_init (NatkitRelayUdpPath *self)
{
  g_queue_init (&self->early);
  self->keepalive_ms = NATKIT_RELAY_KEEPALIVE_MS;
  self->max_missed = NATKIT_RELAY_MAX_MISSED;
}

guint32
natkit_relay_udp_path_get_circuit (NatkitRelayUdpPath *self)
{
  g_return_val_if_fail (NATKIT_IS_RELAY_UDP_PATH (self), 0);
  return self->circuit;
}

static void send_bind (NatkitRelayUdpPath *self);
static gboolean keepalive_cb (gpointer user_data);

/* For the tests: keepalives faster than every 25 s. Takes effect at the
 * next keepalive. */
void
natkit_relay_udp_path_set_keepalive (NatkitRelayUdpPath *self,
                                     guint               interval_ms,
                                     guint               max_missed)
{
  g_return_if_fail (NATKIT_IS_RELAY_UDP_PATH (self));
  g_return_if_fail (interval_ms > 0 && max_missed > 0);

  self->keepalive_ms = interval_ms;
  self->max_missed = max_missed;
  if (self->bound && self->timer != NULL)
    {
      drop_source (&self->timer);
      self->timer = add_source (g_timeout_source_new (self->keepalive_ms),
                                keepalive_cb, self, "[natkit-relay] keepalive");
    }
}

/* ---- binding and the data plane ---------------------------------------- */

static void
send_bind (NatkitRelayUdpPath *self)
{
  g_autoptr(GError) error = NULL;

  self->n_binds++;
  if (g_socket_send (self->socket, (const char *) self->bind, sizeof self->bind,
                     NULL, &error) >= 0 ||
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return;
  /* a refusal shows up on the next receive as well */
  g_debug ("circuit %u: sending BIND to %s: %s", self->circuit, self->server, error->message);
}

static void
bind_complete (NatkitRelayUdpPath *self,
               GError             *error)
{
  GTask *task = g_steal_pointer (&self->bind_task);

  if (task == NULL)
    {
      g_clear_error (&error);
      return;
    }

  drop_source (&self->budget);
  drop_source (&self->cancel);
  drop_source (&self->timer);

  if (error != NULL)
    {
      g_debug ("circuit %u: no UDP channel through %s: %s",
               self->circuit, self->server, error->message);
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }

  g_debug ("circuit %u: UDP channel bound at %s after %u BIND(s)",
           self->circuit, self->server, self->n_binds);
  self->bound = TRUE;
  self->timer = add_source (g_timeout_source_new (self->keepalive_ms),
                            keepalive_cb, self, "[natkit-relay] keepalive");
  g_task_return_pointer (task, g_object_ref (self), g_object_unref);
  g_object_unref (task);
}

static gboolean
early_idle_cb (gpointer user_data)
{
  NatkitRelayUdpPath *self = user_data;
  g_autoptr(NatkitPath) path = g_object_ref (NATKIT_PATH (self));
  GBytes *datagram;

  g_clear_pointer (&self->early_idle, g_source_unref);
  while ((datagram = g_queue_pop_head (&self->early)) != NULL)
    {
      natkit_path_deliver (path, datagram);
      g_bytes_unref (datagram);
    }
  return G_SOURCE_REMOVE;
}

static void
handle_packet (NatkitRelayUdpPath *self,
               const guint8       *data,
               gsize               length)
{
  NatkitRelayPacket packet;
  g_autoptr(GError) error = NULL;

  if (!natkit_relay_parse (data, length, &packet, &error))
    {
      g_debug ("circuit %u: ignoring a packet from %s: %s",
               self->circuit, self->server, error->message);
      return;
    }
  if (packet.circuit != self->circuit)
    {
      g_debug ("circuit %u: ignoring %s for circuit %u",
               self->circuit, natkit_relay_type_name (packet.type), packet.circuit);
      return;
    }

  switch (packet.type)
    {
    case NATKIT_RELAY_BOUND:
      self->missed = 0;
      self->awaiting_bound = FALSE;
      if (!self->bound)
        bind_complete (self, NULL);
      break;

    case NATKIT_RELAY_DATA:
      {
        g_autoptr(GBytes) datagram = g_bytes_new (packet.payload, packet.payload_length);

        if (self->bound)
          {
            natkit_path_deliver (NATKIT_PATH (self), datagram);
            break;
          }
        /* the server forwards DATA only to a bound endpoint: we are bound,
         * and BOUND was lost or is behind */
        if (self->early.length < MAX_EARLY)
          g_queue_push_tail (&self->early, g_steal_pointer (&datagram));
        bind_complete (self, NULL);
        /* delivered after the owner had a chance to connect to ::received */
        if (self->early_idle == NULL && !natkit_path_is_closed (NATKIT_PATH (self)))
          {
            self->early_idle = g_idle_source_new ();
            g_source_set_priority (self->early_idle, G_PRIORITY_DEFAULT_IDLE);
            add_source (self->early_idle, early_idle_cb, self, "[natkit-relay] early data");
          }
      }
      break;

    case NATKIT_RELAY_CLOSED:
      {
        g_autoptr(GError) closed =
          g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                       "The relay closed the circuit (circuit %u at %s)",
                       self->circuit, self->server);

        if (!self->bound)
          bind_complete (self, g_steal_pointer (&closed));
        else
          natkit_path_fail (NATKIT_PATH (self), closed);
      }
      break;

    default:
      g_debug ("circuit %u: ignoring %s from %s", self->circuit,
               natkit_relay_type_name (packet.type), self->server);
      break;
    }
}

static gboolean
receive_cb (GSocket      *socket,
            GIOCondition  condition,
            gpointer      user_data)
{
  /* a handler may drop the last reference: hold one while we look */
  g_autoptr(NatkitRelayUdpPath) self = g_object_ref (user_data);

  /* stop once the path closed, or once binding failed */
  while (self->io != NULL && !natkit_path_is_closed (NATKIT_PATH (self)) &&
         (self->bound || self->bind_task != NULL))
    {
      guint8 buffer[65536];
      g_autoptr(GError) error = NULL;
      GError *failure;
      gssize n;

      n = g_socket_receive (socket, (char *) buffer, sizeof buffer, NULL, &error);
      if (n >= 0)
        {
          handle_packet (self, buffer, n);
          continue;
        }
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
        failure = refused_error (self);
      else
        failure = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "Could not receive from the relay server %s: %s",
                               self->server, error->message);
      if (!self->bound)
        bind_complete (self, failure);
      else
        {
          natkit_path_fail (NATKIT_PATH (self), failure);
          g_error_free (failure);
        }
      break;
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
resend_cb (gpointer user_data)
{
  NatkitRelayUdpPath *self = user_data;
  guint gap;

  g_clear_pointer (&self->timer, g_source_unref);
  send_bind (self);
  gap = bind_gaps_ms[MIN (self->n_binds, G_N_ELEMENTS (bind_gaps_ms)) - 1];
  self->timer = add_source (g_timeout_source_new (gap), resend_cb, self,
                            "[natkit-relay] BIND resend");
  return G_SOURCE_REMOVE;
}

static gboolean
keepalive_cb (gpointer user_data)
{
  NatkitRelayUdpPath *self = user_data;

  if (self->awaiting_bound && ++self->missed >= self->max_missed)
    {
      g_autoptr(GError) error =
        g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                     "The relay server %s stopped answering: no BOUND for circuit %u "
                     "in %u keepalives (%.1f s)", self->server, self->circuit,
                     self->missed, self->missed * self->keepalive_ms / 1000.0);

      g_clear_pointer (&self->timer, g_source_unref);
      natkit_path_fail (NATKIT_PATH (self), error);
      return G_SOURCE_REMOVE;
    }
  if (self->missed > 0)
    g_debug ("circuit %u: %u keepalive(s) without BOUND from %s",
             self->circuit, self->missed, self->server);
  self->awaiting_bound = TRUE;
  send_bind (self);
  return G_SOURCE_CONTINUE;
}

static gboolean
budget_cb (gpointer user_data)
{
  NatkitRelayUdpPath *self = user_data;

  g_clear_pointer (&self->budget, g_source_unref);
  bind_complete (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                    "The relay server %s did not answer BIND over UDP "
                                    "within %u ms (%u BINDs sent): UDP to it may be blocked",
                                    self->server, self->budget_ms, self->n_binds));
  return G_SOURCE_REMOVE;
}

static gboolean
bind_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  NatkitRelayUdpPath *self = user_data;

  g_clear_pointer (&self->cancel, g_source_unref);
  bind_complete (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                            "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

typedef struct
{
  char    *host;
  guint16  port;
  guint32  circuit;
  guint8   token[NATKIT_RELAY_TOKEN_SIZE];
  guint    budget_ms;
} BindData;

static void
bind_data_free (gpointer data)
{
  BindData *b = data;

  g_free (b->host);
  g_free (b);
}

static char *
describe_socket_address (GSocketAddress *address,
                         const char     *suffix)
{
  GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (address);
  g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (inet));

  return strchr (ip, ':') != NULL ?
         g_strdup_printf ("[%s]:%u%s", ip, g_inet_socket_address_get_port (inet), suffix) :
         g_strdup_printf ("%s:%u%s", ip, g_inet_socket_address_get_port (inet), suffix);
}

/* The address is known: open the socket, make the path, start binding. */
static void
bind_start (GTask        *task,
            GInetAddress *address)
{
  BindData *b = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);
  GSocketFamily family = g_inet_address_get_family (address);
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GInetAddress) any = g_inet_address_new_any (family);
  g_autoptr(GSocketAddress) local = g_inet_socket_address_new (any, 0);
  g_autoptr(GSocketAddress) server = g_inet_socket_address_new (address, b->port);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autofree char *where = describe_socket_address (server, "");
  g_autofree char *local_text = NULL;
  g_autofree char *remote_text = NULL;
  g_autoptr(GError) error = NULL;
  NatkitRelayUdpPath *self;

  socket = g_socket_new (family, G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, &error);
  if (socket != NULL)
    {
      g_socket_set_blocking (socket, FALSE);
      /* a window of stream data arrives in bursts: room for it (the
       * kernel caps this at net.core.rmem_max / wmem_max) */
      g_socket_set_option (socket, SOL_SOCKET, SO_RCVBUF, RELAY_SOCKET_BUFFER, NULL);
      g_socket_set_option (socket, SOL_SOCKET, SO_SNDBUF, RELAY_SOCKET_BUFFER, NULL);
      if (g_socket_bind (socket, local, FALSE, &error) &&
          g_socket_connect (socket, server, NULL, &error))
        bound = g_socket_get_local_address (socket, &error);
    }
  if (bound == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "Cannot open a UDP socket to the relay server %s: %s",
                               where, error->message);
      g_object_unref (task);
      return;
    }

  local_text = describe_socket_address (bound, "/udp");
  remote_text = g_strdup_printf ("%s/udp (relay circuit %u)", where, b->circuit);
  self = g_object_new (NATKIT_TYPE_RELAY_UDP_PATH,
                       "method", "relay",
                       "transport", "udp",
                       "local-address", local_text,
                       "remote-address", remote_text,
                       "mtu", NATKIT_RELAY_UDP_MTU,
                       NULL);
  self->socket = g_steal_pointer (&socket);
  self->server = g_steal_pointer (&where);
  self->circuit = b->circuit;
  self->budget_ms = b->budget_ms;
  natkit_relay_build_bind (self->bind, b->circuit, b->token);

  /* the task holds the path until it returns; the path points back */
  g_task_set_task_data (task, self, g_object_unref);
  self->bind_task = task;

  g_debug ("circuit %u: binding %s to %s over UDP (budget %u ms)",
           self->circuit, local_text, self->server, self->budget_ms);
  self->io = g_socket_create_source (self->socket, G_IO_IN, NULL);
  add_source (self->io, G_SOURCE_FUNC (receive_cb), self, "[natkit-relay] receive");
  self->budget = add_source (g_timeout_source_new (self->budget_ms), budget_cb, self,
                             "[natkit-relay] UDP budget");
  if (cancellable != NULL)
    self->cancel = add_source (g_cancellable_source_new (cancellable),
                               G_SOURCE_FUNC (bind_cancelled_cb), self,
                               "[natkit-relay] bind cancelled");
  self->timer = add_source (g_timeout_source_new (0), resend_cb, self,
                            "[natkit-relay] BIND resend");
}

static void
resolved_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;
  BindData *b = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  GList *addresses;

  addresses = g_resolver_lookup_by_name_finish (G_RESOLVER (source), result, &error);
  if (addresses == NULL)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_task_return_error (task, g_steal_pointer (&error));
      else
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                 "Cannot resolve the relay server %s: %s",
                                 b->host, error->message);
      g_object_unref (task);
      return;
    }
  bind_start (task, addresses->data);
  g_resolver_free_addresses (addresses);
}

/*
 * Binds a UDP endpoint to @circuit at HOST:@port (the server's UDP port):
 * BIND with @token at 0, 250, 500, 1000 ms… until BOUND, for at most
 * @budget_ms (a refusal ends it sooner). The result is a bound path that
 * keeps the binding alive.
 */
void
natkit_relay_udp_bind_async (const char          *host,
                             guint16              port,
                             guint32              circuit,
                             const guint8         token[NATKIT_RELAY_TOKEN_SIZE],
                             guint                budget_ms,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  g_autoptr(GInetAddress) address = NULL;
  g_autoptr(GResolver) resolver = NULL;
  BindData *b;

  g_task_set_source_tag (task, natkit_relay_udp_bind_async);
  g_task_set_name (task, "[natkit-relay] UDP bind");

  b = g_new0 (BindData, 1);
  b->host = g_strdup (host);
  b->port = port;
  b->circuit = circuit;
  memcpy (b->token, token, NATKIT_RELAY_TOKEN_SIZE);
  b->budget_ms = budget_ms;
  g_task_set_task_data (task, b, bind_data_free);

  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }

  address = g_inet_address_new_from_string (host);
  if (address != NULL)
    {
      bind_start (task, address);
      return;
    }
  resolver = g_resolver_get_default ();
  g_resolver_lookup_by_name_async (resolver, host, cancellable, resolved_cb, task);
}

NatkitPath *
natkit_relay_udp_bind_finish (GAsyncResult  *result,
                              GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, natkit_relay_udp_bind_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
