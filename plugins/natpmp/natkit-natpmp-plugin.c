/* natkit-natpmp-plugin.c: port mapping with PCP (RFC 6887) and NAT-PMP
 * (RFC 6886)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One connected UDP socket per exchange with the gateway (port 5351): the
 * kernel then drops datagrams from anyone else and reports an ICMP port
 * unreachable as ECONNREFUSED, and the socket's local address is the
 * client address PCP wants in its header.  PCP is asked first; a gateway
 * that answers UNSUPP_VERSION (or with a NAT-PMP version 0 message) gets
 * NAT-PMP.  Requests are retransmitted at 250 ms, doubling (RFC 6886's
 * schedule; RFC 6887's 3 s first interval is tuned for far-away servers,
 * a gateway is one hop away), until the request's time limit.
 */
#include <natkit/natkit.h>
#include <string.h>

#include "natkit-pcp-proto.h"

#define FIRST_INTERVAL_MS 250    /* someone is waiting for the mapping */
#define RENEW_INTERVAL_MS 1000   /* a renewal has time: spare a busy gateway */
#define MAX_INTERVAL_MS   4000

/* ---- gateway and local addresses ---------------------------------------- */

static GInetSocketAddress *
resolve_gateway (const char  *configured,
                 GError     **error)
{
  return natkit_resolve_gateway (configured, NATKIT_PCP_PORT, error);
}

static char *
describe_address (GInetSocketAddress *address)
{
  g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (address));
  guint16 port = g_inet_socket_address_get_port (address);

  return port == NATKIT_PCP_PORT ? g_steal_pointer (&ip) :
         g_strdup_printf ("%s:%u", ip, port);
}

static GSocket *
open_socket (GInetSocketAddress  *gateway,
             GInetAddress       **local,
             GError             **error)
{
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GSocketAddress) any = NULL;
  g_autoptr(GInetAddress) any_address = NULL;
  g_autoptr(GSocketAddress) bound = NULL;
  g_autofree char *where = describe_address (gateway);

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                         G_SOCKET_PROTOCOL_UDP, error);
  if (socket == NULL)
    return NULL;
  g_socket_set_blocking (socket, FALSE);
  any_address = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
  any = g_inet_socket_address_new (any_address, 0);
  if (!g_socket_bind (socket, any, FALSE, error) ||
      !g_socket_connect (socket, G_SOCKET_ADDRESS (gateway), NULL, error))
    {
      g_prefix_error (error, "Cannot reach the gateway %s: ", where);
      return NULL;
    }
  bound = g_socket_get_local_address (socket, error);
  if (bound == NULL)
    return NULL;
  if (local != NULL)
    *local = g_object_ref (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (bound)));
  return g_steal_pointer (&socket);
}

static void
ipv4_mapped (GInetAddress *address,
             guint8        out[16])
{
  memset (out, 0, 16);
  out[10] = out[11] = 0xff;
  if (address != NULL)
    memcpy (out + 12, g_inet_address_to_bytes (address), 4);
}

static char *
mapped_to_string (const guint8 address[16])
{
  static const guint8 prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
  g_autoptr(GInetAddress) a = NULL;

  if (memcmp (address, prefix, 12) == 0)
    a = g_inet_address_new_from_bytes (address + 12, G_SOCKET_FAMILY_IPV4);
  else
    a = g_inet_address_new_from_bytes (address, G_SOCKET_FAMILY_IPV6);
  return g_inet_address_to_string (a);
}

/* ---- one request / response exchange ----------------------------------- */

typedef enum { PROTO_PCP, PROTO_NATPMP } Proto;

typedef struct
{
  Proto                 proto;
  GSocket              *socket;
  GInetSocketAddress   *gateway;
  guint8                request[64];
  gsize                 request_len;
  guint8                opcode;
  guint8                nonce[NATKIT_PCP_NONCE_SIZE];
  guint16               internal_port;    /* NAT-PMP / PCP MAP check */
  guint8                protocol;         /* PCP MAP check */
  guint                 interval_ms;
  guint                 timeout_ms;
  guint                 limit_ms;         /* the whole operation's, for messages */
  guint                 first_interval_ms;
  gboolean              done;
  GSource              *io;
  GSource              *resend;
  GSource              *deadline;
  GSource              *cancel;
  guint                 n_invalid;
  char                 *last_invalid;
  NatkitPcpResponse     pcp;
  NatkitNatpmpResponse  natpmp;
} Exchange;

static Exchange *
exchange_new (Proto               proto,
              GSocket            *socket,
              GInetSocketAddress *gateway,
              guint               timeout_ms)
{
  Exchange *x = g_new0 (Exchange, 1);

  x->proto = proto;
  x->socket = g_object_ref (socket);
  x->gateway = g_object_ref (gateway);
  x->timeout_ms = timeout_ms;
  x->limit_ms = timeout_ms;
  x->first_interval_ms = FIRST_INTERVAL_MS;
  return x;
}

static void
drop_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
exchange_free (gpointer data)
{
  Exchange *x = data;

  drop_source (&x->io);
  drop_source (&x->resend);
  drop_source (&x->deadline);
  drop_source (&x->cancel);
  g_clear_object (&x->socket);
  g_clear_object (&x->gateway);
  g_free (x->last_invalid);
  g_free (x);
}

/* Ends the exchange once: stops its sources and drops the running ref. */
static void
exchange_complete (GTask  *task,
                   GError *error)
{
  Exchange *x = g_task_get_task_data (task);

  if (x->done)
    {
      g_clear_error (&error);
      return;
    }
  x->done = TRUE;
  drop_source (&x->io);
  drop_source (&x->resend);
  drop_source (&x->deadline);
  drop_source (&x->cancel);
  if (error != NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static GError *
refused_error (Exchange *x)
{
  g_autofree char *where = describe_address (x->gateway);

  return g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                      "The gateway %s does not listen on port %u: it offers "
                      "neither PCP nor NAT-PMP", where,
                      g_inet_socket_address_get_port (x->gateway));
}

static void
exchange_send (GTask *task)
{
  Exchange *x = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autofree char *where = NULL;

  if (g_socket_send (x->socket, (const char *) x->request, x->request_len,
                     NULL, &error) >= 0 ||
      g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return;
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
    {
      exchange_complete (task, refused_error (x));
      return;
    }
  where = describe_address (x->gateway);
  exchange_complete (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                        "Could not send to the gateway %s: %s",
                                        where, error->message));
}

static gboolean
resend_cb (gpointer user_data)
{
  /* completing may drop the last reference: hold one while we look */
  g_autoptr(GTask) task = g_object_ref (user_data);
  Exchange *x = g_task_get_task_data (task);

  g_clear_pointer (&x->resend, g_source_unref);
  exchange_send (task);
  if (x->done)
    return G_SOURCE_REMOVE;
  x->resend = g_timeout_source_new (x->interval_ms);
  x->interval_ms = MIN (x->interval_ms * 2, MAX_INTERVAL_MS);
  g_source_set_callback (x->resend, resend_cb, task, NULL);
  g_source_attach (x->resend, g_task_get_context (task));
  return G_SOURCE_REMOVE;
}

static gboolean
deadline_cb (gpointer user_data)
{
  GTask *task = user_data;
  Exchange *x = g_task_get_task_data (task);
  g_autofree char *where = describe_address (x->gateway);
  const char *what = x->proto == PROTO_PCP ? "PCP" : "NAT-PMP";

  g_clear_pointer (&x->deadline, g_source_unref);
  if (x->n_invalid > 0)
    exchange_complete (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                          "The gateway %s gave no valid %s answer "
                                          "within %u ms (%u invalid; the last one: %s)",
                                          where, what, x->limit_ms,
                                          x->n_invalid, x->last_invalid));
  else
    exchange_complete (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                          "The gateway %s did not answer %s within %u ms",
                                          where, what, x->limit_ms));
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  GTask *task = user_data;
  Exchange *x = g_task_get_task_data (task);

  g_clear_pointer (&x->cancel, g_source_unref);
  exchange_complete (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
invalid (Exchange   *x,
         const char *why)
{
  x->n_invalid++;
  g_free (x->last_invalid);
  x->last_invalid = g_strdup (why);
  g_debug ("ignoring an answer from the gateway: %s", why);
}

/* TRUE when the datagram answers the request */
static gboolean
exchange_check (Exchange     *x,
                const guint8 *data,
                gsize         length)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *why = NULL;

  if (x->proto == PROTO_PCP)
    {
      NatkitPcpResponse *r = &x->pcp;

      if (!natkit_pcp_parse_response (data, length, r, &error))
        {
          invalid (x, error->message);
          return FALSE;
        }
      if (r->version != NATKIT_PCP_VERSION)
        return TRUE;          /* UNSUPP_VERSION, or a NAT-PMP gateway */
      if (r->opcode != x->opcode)
        {
          why = g_strdup_printf ("wrong opcode %u (asked %u)", r->opcode, x->opcode);
          invalid (x, why);
          return FALSE;
        }
      if (x->opcode != NATKIT_PCP_OP_MAP)
        return TRUE;
      if (length < 60)
        {
          if (r->result == NATKIT_PCP_SUCCESS)
            {
              invalid (x, "a success answer without the MAP data");
              return FALSE;
            }
          return TRUE;        /* an error answer may stop at the header */
        }
      if (memcmp (r->nonce, x->nonce, NATKIT_PCP_NONCE_SIZE) != 0)
        {
          invalid (x, "nonce mismatch (an answer to another request, or forged)");
          return FALSE;
        }
      if (r->protocol != x->protocol || r->internal_port != x->internal_port)
        {
          invalid (x, "it answers for another protocol or internal port");
          return FALSE;
        }
      return TRUE;
    }
  else
    {
      NatkitNatpmpResponse *r = &x->natpmp;

      if (!natkit_natpmp_parse_response (data, length, r, &error))
        {
          invalid (x, error->message);
          return FALSE;
        }
      if (r->opcode != x->opcode)
        {
          why = g_strdup_printf ("wrong opcode %u (asked %u)", r->opcode, x->opcode);
          invalid (x, why);
          return FALSE;
        }
      if (r->result == NATKIT_NATPMP_SUCCESS && x->opcode != NATKIT_NATPMP_OP_ADDRESS &&
          r->internal_port != x->internal_port)
        {
          invalid (x, "it answers for another internal port");
          return FALSE;
        }
      return TRUE;
    }
}

static gboolean
receive_cb (GSocket      *socket,
            GIOCondition  condition,
            gpointer      user_data)
{
  /* completing may drop the last reference: hold one while we look */
  g_autoptr(GTask) task = g_object_ref (user_data);
  Exchange *x = g_task_get_task_data (task);

  while (!x->done)
    {
      guint8 buffer[NATKIT_PCP_MAX_MESSAGE + 4];
      g_autoptr(GSocketAddress) from = NULL;
      g_autoptr(GError) error = NULL;
      GInetSocketAddress *inet;
      gssize n;

      n = g_socket_receive_from (socket, &from, (char *) buffer, sizeof buffer,
                                 NULL, &error);
      if (n < 0)
        {
          g_autofree char *where = NULL;

          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            return G_SOURCE_CONTINUE;
          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED))
            {
              exchange_complete (task, refused_error (x));
              return G_SOURCE_CONTINUE;   /* the source is already destroyed */
            }
          where = describe_address (x->gateway);
          exchange_complete (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                                "Could not receive from the gateway %s: %s",
                                                where, error->message));
          return G_SOURCE_CONTINUE;
        }

      /* the socket is connected, but check again: only the gateway counts */
      inet = G_IS_INET_SOCKET_ADDRESS (from) ? G_INET_SOCKET_ADDRESS (from) : NULL;
      if (inet == NULL ||
          g_inet_socket_address_get_port (inet) != g_inet_socket_address_get_port (x->gateway) ||
          !g_inet_address_equal (g_inet_socket_address_get_address (inet),
                                 g_inet_socket_address_get_address (x->gateway)))
        {
          invalid (x, "an answer from another address than the gateway");
          continue;
        }
      if (exchange_check (x, buffer, n))
        exchange_complete (task, NULL);
    }
  return G_SOURCE_CONTINUE;
}

/* Runs one exchange over @x's connected socket; takes @x. */
static void
exchange_run (Exchange            *x,
              GCancellable        *cancellable,
              GAsyncReadyCallback  callback,
              gpointer             user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);

  g_task_set_source_tag (task, exchange_run);
  g_task_set_task_data (task, x, exchange_free);
  if (g_task_return_error_if_cancelled (task))
    {
      x->done = TRUE;
      g_object_unref (task);
      return;
    }

  /* the task holds itself until exchange_complete() */
  x->interval_ms = x->first_interval_ms;
  x->io = g_socket_create_source (x->socket, G_IO_IN, NULL);
  g_source_set_callback (x->io, G_SOURCE_FUNC (receive_cb), task, NULL);
  g_source_attach (x->io, g_task_get_context (task));
  x->deadline = g_timeout_source_new (x->timeout_ms);
  g_source_set_callback (x->deadline, deadline_cb, task, NULL);
  g_source_attach (x->deadline, g_task_get_context (task));
  if (cancellable != NULL)
    {
      x->cancel = g_cancellable_source_new (cancellable);
      g_source_set_callback (x->cancel, G_SOURCE_FUNC (cancelled_cb), task, NULL);
      g_source_attach (x->cancel, g_task_get_context (task));
    }
  x->resend = g_timeout_source_new (0);
  g_source_set_callback (x->resend, resend_cb, task, NULL);
  g_source_attach (x->resend, g_task_get_context (task));
}

static Exchange *
exchange_finish (GAsyncResult  *result,
                 GError       **error)
{
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  return g_task_get_task_data (G_TASK (result));
}

/* ---- types -------------------------------------------------------------- */

#define NATKIT_TYPE_NATPMP_MAPPER (natkit_natpmp_mapper_get_type ())
G_DECLARE_FINAL_TYPE (NatkitNatpmpMapper, natkit_natpmp_mapper, NATKIT, NATPMP_MAPPER, GObject)

#define NATKIT_TYPE_NATPMP_MAPPING (natkit_natpmp_mapping_get_type ())
G_DECLARE_FINAL_TYPE (NatkitNatpmpMapping, natkit_natpmp_mapping, NATKIT, NATPMP_MAPPING,
                      NatkitPortMapping)

typedef struct
{
  guint32 epoch;
  gint64  local;     /* monotonic seconds */
} Epoch;

struct _NatkitNatpmpMapper
{
  GObject     parent_instance;

  GHashTable *epochs;     /* "ip:port/proto" → Epoch */
  GPtrArray  *mappings;   /* NatkitNatpmpMapping, not owned */
  GSocket    *announce;   /* 224.0.0.1:5350 while there are mappings */
  GSource    *announce_source;
};

#define ANNOUNCE_GROUP "224.0.0.1"
#define ANNOUNCE_PORT  5350

static void mapper_unwatch_announcements (NatkitNatpmpMapper *self);

struct _NatkitNatpmpMapping
{
  NatkitPortMapping   parent_instance;

  NatkitNatpmpMapper *mapper;
  GInetSocketAddress *gateway;
  GInetAddress       *client;
  Proto               proto;
  guint8              nonce[NATKIT_PCP_NONCE_SIZE];
  guint8              ipproto;
  guint16             internal_port;
  guint32             requested_lifetime;
  guint               timeout_ms;
};

static void natkit_natpmp_mapper_iface_init (NatkitPortMapperInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitNatpmpMapper, natkit_natpmp_mapper, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_PORT_MAPPER,
                                                      natkit_natpmp_mapper_iface_init))
G_DEFINE_FINAL_TYPE (NatkitNatpmpMapping, natkit_natpmp_mapping, NATKIT_TYPE_PORT_MAPPING)

/* ---- one MAP operation: create, renew or delete ------------------------- */

typedef struct
{
  NatkitNatpmpMapper *mapper;
  GInetSocketAddress *gateway;
  GInetAddress       *client;
  char               *only;            /* NULL, "pcp" or "natpmp" */
  Proto               proto;
  guint8              nonce[NATKIT_PCP_NONCE_SIZE];
  guint8              ipproto;
  guint16             internal_port;
  guint16             suggested_port;
  guint8              suggested_address[16];
  guint32             lifetime;
  gint64              deadline;        /* monotonic µs */
  guint               timeout_ms;
  guint               first_interval_ms;
  gboolean            retried_port;

  guint               pending;         /* NAT-PMP: address + map */
  GError             *map_error;
  gboolean            have_map;
  NatkitNatpmpResponse natpmp_map;

  Proto               used;
  char               *external_address;
  guint16             external_port;
  guint32             granted;
} MapOp;

static void
map_op_free (gpointer data)
{
  MapOp *op = data;

  g_clear_object (&op->mapper);
  g_clear_object (&op->gateway);
  g_clear_object (&op->client);
  g_free (op->only);
  g_clear_error (&op->map_error);
  g_free (op->external_address);
  g_free (op);
}

static const char *
ipproto_name (guint8 ipproto)
{
  return ipproto == NATKIT_IPPROTO_TCP ? "TCP" : "UDP";
}

static gboolean mapper_note_epoch (NatkitNatpmpMapper *self,
                                   GInetSocketAddress *gateway,
                                   Proto               proto,
                                   guint32             epoch);

static void map_op_step (GTask *task);

static guint
remaining_ms (MapOp *op)
{
  gint64 left = op->deadline - g_get_monotonic_time ();

  return left <= 0 ? 0 : MAX (1, left / 1000);
}

static gboolean
refuses_port_zero (guint result,
                   Proto proto)
{
  /* field pitfall: routers that answer an error to “any port” instead of
   * choosing one; asking for the internal port then works */
  if (proto == PROTO_PCP)
    return result == NATKIT_PCP_MALFORMED_REQUEST ||
           result == NATKIT_PCP_CANNOT_PROVIDE_EXTERNAL ||
           result == NATKIT_PCP_UNSUPP_OPTION;
  return result != NATKIT_NATPMP_UNSUPP_VERSION &&
         result != NATKIT_NATPMP_UNSUPP_OPCODE;
}

static void
pcp_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  MapOp *op = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autofree char *where = describe_address (op->gateway);
  Exchange *x = exchange_finish (result, &error);
  NatkitPcpResponse *r;

  if (x == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  r = &x->pcp;
  if (r->version != NATKIT_PCP_VERSION || r->result == NATKIT_PCP_UNSUPP_VERSION)
    {
      if (g_strcmp0 (op->only, "pcp") == 0)
        {
          g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                   "The gateway %s does not speak PCP (it answered "
                                   "as a %s server); use NAT-PMP", where,
                                   r->version == 0 ? "NAT-PMP" : "PCP version 1");
          return;
        }
      g_debug ("gateway %s answered PCP with version %u: falling back to NAT-PMP",
               where, r->version);
      op->proto = PROTO_NATPMP;
      map_op_step (g_steal_pointer (&task));
      return;
    }

  mapper_note_epoch (op->mapper, op->gateway, PROTO_PCP, r->epoch);

  if (r->result == NATKIT_PCP_SUCCESS)
    {
      op->used = PROTO_PCP;
      op->external_address = mapped_to_string (r->external_address);
      op->external_port = r->external_port;
      op->granted = r->lifetime;
      g_task_return_boolean (task, TRUE);
      return;
    }
  if (op->lifetime > 0 && op->suggested_port == 0 && !op->retried_port &&
      refuses_port_zero (r->result, PROTO_PCP))
    {
      g_debug ("gateway %s refused “any port” (%s); asking for port %u",
               where, natkit_pcp_result_describe (r->result), op->internal_port);
      op->retried_port = TRUE;
      op->suggested_port = op->internal_port;
      map_op_step (g_steal_pointer (&task));
      return;
    }
  g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                           "The gateway %s refused to %s the PCP mapping of %s "
                           "port %u: %s (result %u)", where,
                           op->lifetime > 0 ? "create" : "delete",
                           ipproto_name (op->ipproto), op->internal_port,
                           natkit_pcp_result_describe (r->result), r->result);
}

static void
natpmp_complete (GTask *task)
{
  MapOp *op = g_task_get_task_data (task);
  g_autofree char *where = describe_address (op->gateway);
  NatkitNatpmpResponse *r = &op->natpmp_map;

  if (--op->pending > 0)
    return;
  if (op->map_error != NULL)
    {
      g_task_return_error (task, g_steal_pointer (&op->map_error));
      g_object_unref (task);
      return;
    }
  mapper_note_epoch (op->mapper, op->gateway, PROTO_NATPMP, r->epoch);
  if (r->result == NATKIT_NATPMP_SUCCESS)
    {
      op->used = PROTO_NATPMP;
      op->external_port = r->external_port;
      op->granted = r->lifetime;
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      return;
    }
  if (op->lifetime > 0 && op->suggested_port == 0 && !op->retried_port &&
      refuses_port_zero (r->result, PROTO_NATPMP))
    {
      g_debug ("gateway %s refused “any port” (%s); asking for port %u",
               where, natkit_natpmp_result_describe (r->result), op->internal_port);
      op->retried_port = TRUE;
      op->suggested_port = op->internal_port;
      map_op_step (task);
      return;
    }
  g_task_return_new_error (task,
                           NATKIT_ERROR, r->result == NATKIT_NATPMP_UNSUPP_VERSION ||
                                         r->result == NATKIT_NATPMP_UNSUPP_OPCODE ?
                                         NATKIT_ERROR_UNAVAILABLE : NATKIT_ERROR_REFUSED,
                           "The gateway %s refused to %s the NAT-PMP mapping of %s "
                           "port %u: %s (result %u)", where,
                           op->lifetime > 0 ? "create" : "delete",
                           ipproto_name (op->ipproto), op->internal_port,
                           natkit_natpmp_result_describe (r->result), r->result);
  g_object_unref (task);
}

static void
natpmp_map_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  GTask *task = user_data;
  MapOp *op = g_task_get_task_data (task);
  Exchange *x = exchange_finish (result, &op->map_error);

  if (x != NULL)
    op->natpmp_map = x->natpmp;
  natpmp_complete (task);
}

static void
natpmp_address_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  GTask *task = user_data;
  MapOp *op = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  Exchange *x = exchange_finish (result, &error);

  if (x != NULL && x->natpmp.result == NATKIT_NATPMP_SUCCESS)
    {
      g_autoptr(GInetAddress) a =
        g_inet_address_new_from_bytes (x->natpmp.external_address, G_SOCKET_FAMILY_IPV4);

      g_free (op->external_address);
      op->external_address = g_inet_address_to_string (a);
    }
  else
    g_debug ("NAT-PMP external address: %s",
             x == NULL ? error->message : natkit_natpmp_result_describe (x->natpmp.result));
  natpmp_complete (task);
}

static void
map_op_step (GTask *task)
{
  MapOp *op = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GError) error = NULL;
  guint timeout_ms = remaining_ms (op);
  Exchange *x;

  if (timeout_ms == 0)
    {
      g_autofree char *where = describe_address (op->gateway);

      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                               "The gateway %s did not complete the mapping within %u ms",
                               where, op->timeout_ms);
      g_object_unref (task);
      return;
    }

  socket = open_socket (op->gateway, op->client == NULL ? &op->client : NULL, &error);
  if (socket == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      g_object_unref (task);
      return;
    }

  if (op->proto == PROTO_PCP)
    {
      guint8 client[16];

      x = exchange_new (PROTO_PCP, socket, op->gateway, timeout_ms);
      x->limit_ms = op->timeout_ms;
      x->first_interval_ms = op->first_interval_ms;
      ipv4_mapped (op->client, client);
      x->opcode = NATKIT_PCP_OP_MAP;
      memcpy (x->nonce, op->nonce, sizeof op->nonce);
      x->protocol = op->ipproto;
      x->internal_port = op->internal_port;
      x->request_len = natkit_pcp_build_map (x->request, op->lifetime, client, op->nonce,
                                             op->ipproto, op->internal_port,
                                             op->suggested_port, op->suggested_address);
      exchange_run (x, cancellable, pcp_done_cb, task);
      return;
    }

  op->pending = 1;
  g_clear_error (&op->map_error);
  x = exchange_new (PROTO_NATPMP, socket, op->gateway, timeout_ms);
  x->limit_ms = op->timeout_ms;
  x->first_interval_ms = op->first_interval_ms;
  x->opcode = op->ipproto == NATKIT_IPPROTO_TCP ? NATKIT_NATPMP_OP_MAP_TCP :
                                                  NATKIT_NATPMP_OP_MAP_UDP;
  x->internal_port = op->internal_port;
  /* RFC 6886 section 3.4: a deletion suggests port 0 */
  x->request_len = natkit_natpmp_build_map (x->request, x->opcode, op->internal_port,
                                            op->lifetime > 0 ? op->suggested_port : 0,
                                            op->lifetime);
  exchange_run (x, cancellable, natpmp_map_cb, task);

  if (op->lifetime > 0)
    {
      /* the public address comes from its own request: ask in parallel */
      g_autoptr(GSocket) second = open_socket (op->gateway, NULL, NULL);

      if (second != NULL)
        {
          op->pending++;
          x = exchange_new (PROTO_NATPMP, second, op->gateway, timeout_ms);
          x->opcode = NATKIT_NATPMP_OP_ADDRESS;
          x->request_len = natkit_natpmp_build_address (x->request);
          exchange_run (x, cancellable, natpmp_address_cb, task);
        }
    }
}

static MapOp *
map_op_new (NatkitNatpmpMapper *mapper,
            GInetSocketAddress *gateway,
            guint               timeout_ms)
{
  MapOp *op = g_new0 (MapOp, 1);

  op->mapper = g_object_ref (mapper);
  op->gateway = g_object_ref (gateway);
  op->timeout_ms = timeout_ms;
  op->deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  op->first_interval_ms = FIRST_INTERVAL_MS;
  ipv4_mapped (NULL, op->suggested_address);
  return op;
}

static void
map_op_run (MapOp               *op,
            gpointer             source,
            GCancellable        *cancellable,
            GAsyncReadyCallback  callback,
            gpointer             user_data)
{
  GTask *task = g_task_new (source, cancellable, callback, user_data);

  g_task_set_source_tag (task, map_op_run);
  g_task_set_task_data (task, op, map_op_free);
  map_op_step (task);
}

static MapOp *
map_op_finish (GAsyncResult  *result,
               GError       **error)
{
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  return g_task_get_task_data (G_TASK (result));
}

/* ---- the mapping -------------------------------------------------------- */

static void
natkit_natpmp_mapping_finalize (GObject *object)
{
  NatkitNatpmpMapping *self = NATKIT_NATPMP_MAPPING (object);

  if (self->mapper != NULL)
    {
      g_ptr_array_remove_fast (self->mapper->mappings, self);
      if (self->mapper->mappings->len == 0)
        mapper_unwatch_announcements (self->mapper);
    }
  g_clear_object (&self->mapper);
  g_clear_object (&self->gateway);
  g_clear_object (&self->client);

  G_OBJECT_CLASS (natkit_natpmp_mapping_parent_class)->finalize (object);
}

/* An operation on a mapping the gateway already granted (renew, delete):
 * the same protocol, client, nonce and port, no fallback, no port retry. */
static MapOp *
map_op_again (NatkitNatpmpMapper *mapper,
              GInetSocketAddress *gateway,
              guint               timeout_ms,
              GInetAddress       *client,
              Proto               proto,
              const guint8        nonce[NATKIT_PCP_NONCE_SIZE],
              guint8              ipproto,
              guint16             internal_port,
              guint32             lifetime)
{
  MapOp *op = map_op_new (mapper, gateway, timeout_ms);

  op->client = g_object_ref (client);
  op->proto = proto;
  op->only = g_strdup (proto == PROTO_PCP ? "pcp" : "natpmp");
  memcpy (op->nonce, nonce, sizeof op->nonce);
  op->ipproto = ipproto;
  op->internal_port = internal_port;
  op->lifetime = lifetime;
  op->retried_port = TRUE;
  return op;
}

static MapOp *
mapping_op (NatkitNatpmpMapping *self,
            guint32              lifetime)
{
  MapOp *op = map_op_again (self->mapper, self->gateway, self->timeout_ms, self->client,
                            self->proto, self->nonce, self->ipproto, self->internal_port,
                            lifetime);

  if (lifetime > 0)
    {
      g_autoptr(GInetAddress) external = NULL;
      const char *address = natkit_port_mapping_get_external_address (NATKIT_PORT_MAPPING (self));

      /* keep the same public port and address across renewals */
      op->suggested_port = natkit_port_mapping_get_external_port (NATKIT_PORT_MAPPING (self));
      external = address ? g_inet_address_new_from_string (address) : NULL;
      if (external != NULL && g_inet_address_get_family (external) == G_SOCKET_FAMILY_IPV4)
        ipv4_mapped (external, op->suggested_address);
    }
  return op;
}

static void
renew_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  NatkitNatpmpMapping *self = g_task_get_source_object (task);
  g_autoptr(GError) error = NULL;
  MapOp *op = map_op_finish (result, &error);

  if (op == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  natkit_port_mapping_update (NATKIT_PORT_MAPPING (self),
                              op->external_address ? op->external_address :
                              natkit_port_mapping_get_external_address (NATKIT_PORT_MAPPING (self)),
                              op->external_port, op->granted);
  g_task_return_boolean (task, TRUE);
}

static void
natkit_natpmp_mapping_renew_async (NatkitPortMapping   *mapping,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  NatkitNatpmpMapping *self = NATKIT_NATPMP_MAPPING (mapping);
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, natkit_natpmp_mapping_renew_async);
  MapOp *op = mapping_op (self, self->requested_lifetime);

  op->first_interval_ms = RENEW_INTERVAL_MS;
  map_op_run (op, NULL, cancellable, renew_cb, task);
}

static gboolean
natkit_natpmp_mapping_renew_finish (NatkitPortMapping  *mapping,
                                    GAsyncResult       *result,
                                    GError            **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
release_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;

  if (map_op_finish (result, &error) == NULL)
    g_task_return_error (task, g_steal_pointer (&error));
  else
    g_task_return_boolean (task, TRUE);
}

static void
natkit_natpmp_mapping_release_async (NatkitPortMapping   *mapping,
                                     GCancellable        *cancellable,
                                     GAsyncReadyCallback  callback,
                                     gpointer             user_data)
{
  NatkitNatpmpMapping *self = NATKIT_NATPMP_MAPPING (mapping);
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, natkit_natpmp_mapping_release_async);
  map_op_run (mapping_op (self, 0), NULL, cancellable, release_cb, task);
}

static gboolean
natkit_natpmp_mapping_release_finish (NatkitPortMapping  *mapping,
                                      GAsyncResult       *result,
                                      GError            **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_natpmp_mapping_add_to_record (NatkitPortMapping *mapping,
                                     GVariantDict      *record)
{
  NatkitNatpmpMapping *self = NATKIT_NATPMP_MAPPING (mapping);
  g_autofree char *nonce = NULL;
  g_autofree char *gateway = describe_address (self->gateway);
  GString *hex = g_string_new (NULL);

  for (guint i = 0; i < sizeof self->nonce; i++)
    g_string_append_printf (hex, "%02x", self->nonce[i]);
  nonce = g_string_free (hex, FALSE);
  g_variant_dict_insert (record, "nonce", "s", nonce);
  /* the full address: the record must work without the configuration */
  g_variant_dict_insert (record, "gateway", "s", gateway);
}

static void
natkit_natpmp_mapping_class_init (NatkitNatpmpMappingClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  NatkitPortMappingClass *mapping_class = NATKIT_PORT_MAPPING_CLASS (klass);

  object_class->finalize = natkit_natpmp_mapping_finalize;
  mapping_class->renew_async = natkit_natpmp_mapping_renew_async;
  mapping_class->renew_finish = natkit_natpmp_mapping_renew_finish;
  mapping_class->release_async = natkit_natpmp_mapping_release_async;
  mapping_class->release_finish = natkit_natpmp_mapping_release_finish;
  mapping_class->add_to_record = natkit_natpmp_mapping_add_to_record;
}

static void
natkit_natpmp_mapping_init (NatkitNatpmpMapping *self)
{
}

/* ---- the mapper --------------------------------------------------------- */

static char *
epoch_key (GInetSocketAddress *gateway,
           Proto               proto)
{
  g_autofree char *where = describe_address (gateway);

  return g_strdup_printf ("%s/%s", where, proto == PROTO_PCP ? "pcp" : "natpmp");
}

static void
renew_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!natkit_port_mapping_renew_finish (NATKIT_PORT_MAPPING (source), result, &error))
    g_debug ("re-creating a mapping after a gateway restart: %s", error->message);
}

static gboolean
recreate_cb (gpointer user_data)
{
  g_autoptr(GPtrArray) mappings = user_data;

  for (guint i = 0; i < mappings->len; i++)
    natkit_port_mapping_renew_async (g_ptr_array_index (mappings, i), NULL,
                                     renew_done_cb, NULL);
  return G_SOURCE_REMOVE;
}

/* Renews every mapping held on @gateway now (from an idle: never from
 * inside another exchange's callback). */
static void
mapper_renew_gateway (NatkitNatpmpMapper *self,
                      GInetSocketAddress *gateway)
{
  GPtrArray *affected = g_ptr_array_new_with_free_func (g_object_unref);
  GSource *idle;

  for (guint i = 0; i < self->mappings->len; i++)
    {
      NatkitNatpmpMapping *m = g_ptr_array_index (self->mappings, i);

      if (g_inet_address_equal (g_inet_socket_address_get_address (m->gateway),
                                g_inet_socket_address_get_address (gateway)) &&
          natkit_port_mapping_get_state (NATKIT_PORT_MAPPING (m)) !=
          NATKIT_PORT_MAPPING_STATE_RELEASED)
        g_ptr_array_add (affected, g_object_ref (m));
    }
  idle = g_idle_source_new ();
  g_source_set_callback (idle, recreate_cb, affected, NULL);
  g_source_attach (idle, g_main_context_get_thread_default ());
  g_source_unref (idle);
}

/* RFC 6887 section 8.5 / RFC 6886 section 3.6: an epoch that went backwards
 * (or drifted from our clock) means the gateway lost its mappings: every
 * mapping on it (PCP and NAT-PMP alike) is re-created at once instead of at
 * its next renewal.  Returns whether it did that. */
static gboolean
mapper_note_epoch (NatkitNatpmpMapper *self,
                   GInetSocketAddress *gateway,
                   Proto               proto,
                   guint32             epoch)
{
  g_autofree char *key = epoch_key (gateway, proto);
  Epoch *previous = g_hash_table_lookup (self->epochs, key);
  gint64 now = g_get_monotonic_time () / G_USEC_PER_SEC;
  gboolean lost;

  if (previous == NULL)
    {
      previous = g_new0 (Epoch, 1);
      previous->epoch = epoch;
      previous->local = now;
      g_hash_table_insert (self->epochs, g_steal_pointer (&key), previous);
      return FALSE;
    }
  lost = natkit_pcp_epoch_lost_state (previous->epoch, previous->local, epoch, now);
  previous->epoch = epoch;
  previous->local = now;
  if (!lost)
    return FALSE;

  g_debug ("gateway %s restarted (epoch %u): re-creating its mappings", key, epoch);
  mapper_renew_gateway (self, gateway);
  return TRUE;
}

/* A gateway that restarts tells its clients at once (RFC 6887 section
 * 14.1.3: an unsolicited ANNOUNCE to 224.0.0.1:5350; RFC 6886 section 3.2.1:
 * its public address): its epoch then starts again, and every mapping on it
 * is re-created now rather than at its next renewal. */
static gboolean
announce_cb (GSocket      *socket,
             GIOCondition  condition,
             gpointer      user_data)
{
  NatkitNatpmpMapper *self = user_data;

  for (;;)
    {
      guint8 buffer[NATKIT_PCP_MAX_MESSAGE + 4];
      g_autoptr(GSocketAddress) from = NULL;
      GInetSocketAddress *inet;
      NatkitNatpmpMapping *owner = NULL;
      gssize n = g_socket_receive_from (socket, &from, (char *) buffer, sizeof buffer,
                                        NULL, NULL);

      if (n < 0)
        return G_SOURCE_CONTINUE;
      inet = G_IS_INET_SOCKET_ADDRESS (from) ? G_INET_SOCKET_ADDRESS (from) : NULL;
      if (inet == NULL || g_inet_socket_address_get_port (inet) != NATKIT_PCP_PORT)
        continue;
      /* only the gateways we hold mappings on */
      for (guint i = 0; i < self->mappings->len && owner == NULL; i++)
        {
          NatkitNatpmpMapping *m = g_ptr_array_index (self->mappings, i);

          if (g_inet_address_equal (g_inet_socket_address_get_address (m->gateway),
                                    g_inet_socket_address_get_address (inet)))
            owner = m;
        }
      if (owner == NULL)
        continue;

      if (n >= 24 && buffer[0] == NATKIT_PCP_VERSION)
        {
          NatkitPcpResponse r;

          if (natkit_pcp_parse_response (buffer, n, &r, NULL) &&
              r.opcode == NATKIT_PCP_OP_ANNOUNCE && r.result == NATKIT_PCP_SUCCESS)
            {
              /* sent when it starts or lost its state: check every mapping
               * on it, whatever the epoch we knew */
              g_debug ("PCP ANNOUNCE from the gateway, epoch %u", r.epoch);
              if (!mapper_note_epoch (self, owner->gateway, PROTO_PCP, r.epoch))
                mapper_renew_gateway (self, owner->gateway);
            }
        }
      else if (n >= 12 && buffer[0] == NATKIT_NATPMP_VERSION)
        {
          NatkitNatpmpResponse r;

          if (natkit_natpmp_parse_response (buffer, n, &r, NULL) &&
              r.opcode == NATKIT_NATPMP_OP_ADDRESS && r.result == NATKIT_NATPMP_SUCCESS)
            {
              /* also sent when only the address changed: the epoch says
               * whether mappings were lost */
              g_debug ("NAT-PMP address announcement from the gateway, epoch %u", r.epoch);
              mapper_note_epoch (self, owner->gateway, PROTO_NATPMP, r.epoch);
            }
        }
    }
}

static void
mapper_watch_announcements (NatkitNatpmpMapper *self)
{
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GInetAddress) group = g_inet_address_new_from_string (ANNOUNCE_GROUP);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (group, ANNOUNCE_PORT);
  g_autoptr(GError) error = NULL;

  if (self->announce != NULL)
    return;
  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                         G_SOCKET_PROTOCOL_UDP, &error);
  /* shared with every other PCP client on this host */
  if (socket == NULL ||
      !g_socket_bind (socket, address, TRUE, &error) ||
      !g_socket_join_multicast_group (socket, group, FALSE, NULL, &error))
    {
      /* not fatal: restarts are then noticed at the next renewal */
      g_debug ("not listening for gateway announcements: %s", error->message);
      return;
    }
  g_socket_set_blocking (socket, FALSE);
  self->announce = g_steal_pointer (&socket);
  self->announce_source = g_socket_create_source (self->announce, G_IO_IN, NULL);
  g_source_set_callback (self->announce_source, G_SOURCE_FUNC (announce_cb), self, NULL);
  g_source_attach (self->announce_source, g_main_context_get_thread_default ());
}

static void
mapper_unwatch_announcements (NatkitNatpmpMapper *self)
{
  if (self->announce_source != NULL)
    {
      g_source_destroy (self->announce_source);
      g_clear_pointer (&self->announce_source, g_source_unref);
    }
  g_clear_object (&self->announce);
}

static const char * const *
natkit_natpmp_mapper_get_methods (NatkitPortMapper *mapper)
{
  static const char * const methods[] = { "pcp", "natpmp", NULL };

  return methods;
}

static void
map_cb (GObject      *source,
        GAsyncResult *result,
        gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  NatkitNatpmpMapper *self = g_task_get_source_object (task);
  NatkitPortMappingRequest *request = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autofree char *client = NULL;
  g_autofree char *where = NULL;
  NatkitNatpmpMapping *mapping;
  MapOp *op = map_op_finish (result, &error);

  if (op == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      /* granted, but nobody wants it any more: delete it again */
      map_op_run (map_op_again (self, op->gateway,
                                natkit_port_mapping_request_get_timeout (request),
                                op->client, op->used, op->nonce, op->ipproto,
                                op->internal_port, 0),
                  NULL, NULL, NULL, NULL);
      return;
    }

  client = g_inet_address_to_string (op->client);
  where = describe_address (op->gateway);
  mapping = g_object_new (NATKIT_TYPE_NATPMP_MAPPING,
                          "method", op->used == PROTO_PCP ? "pcp" : "natpmp",
                          "protocol", natkit_port_mapping_request_get_protocol (request),
                          "internal-address", client,
                          "internal-port", (guint) op->internal_port,
                          "gateway", where,
                          NULL);
  mapping->mapper = g_object_ref (self);
  mapping->gateway = g_object_ref (op->gateway);
  mapping->client = g_object_ref (op->client);
  mapping->proto = op->used;
  memcpy (mapping->nonce, op->nonce, sizeof op->nonce);
  mapping->ipproto = op->ipproto;
  mapping->internal_port = op->internal_port;
  mapping->requested_lifetime = op->lifetime;
  mapping->timeout_ms = natkit_port_mapping_request_get_timeout (request);
  g_ptr_array_add (self->mappings, mapping);
  mapper_watch_announcements (self);
  natkit_port_mapping_update (NATKIT_PORT_MAPPING (mapping), op->external_address,
                              op->external_port, op->granted);
  g_task_return_pointer (task, mapping, g_object_unref);
}

static void
natkit_natpmp_mapper_map_async (NatkitPortMapper         *mapper,
                                NatkitPortMappingRequest *request,
                                GCancellable             *cancellable,
                                GAsyncReadyCallback       callback,
                                gpointer                  user_data)
{
  NatkitNatpmpMapper *self = NATKIT_NATPMP_MAPPER (mapper);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(GInetSocketAddress) gateway = NULL;
  g_autoptr(GError) error = NULL;
  const char *method = natkit_port_mapping_request_get_method (request);
  const char *internal = natkit_port_mapping_request_get_internal_address (request);
  MapOp *op;

  g_task_set_source_tag (task, natkit_natpmp_mapper_map_async);
  g_task_set_task_data (task, g_object_ref (request), g_object_unref);

  if (method != NULL && !g_str_equal (method, "pcp") && !g_str_equal (method, "natpmp"))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                               "The natpmp plugin speaks pcp and natpmp, not “%s”", method);
      return;
    }
  gateway = resolve_gateway (natkit_port_mapping_request_get_gateway (request), &error);
  if (gateway == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  op = map_op_new (self, gateway, natkit_port_mapping_request_get_timeout (request));
  if (internal != NULL)
    {
      op->client = g_inet_address_new_from_string (internal);
      if (op->client == NULL || g_inet_address_get_family (op->client) != G_SOCKET_FAMILY_IPV4)
        {
          map_op_free (op);
          g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                                   "The internal address “%s” is not an IPv4 address",
                                   internal);
          return;
        }
    }
  op->only = g_strdup (method);
  op->proto = g_strcmp0 (method, "natpmp") == 0 ? PROTO_NATPMP : PROTO_PCP;
  for (guint i = 0; i < sizeof op->nonce; i += 4)
    {
      guint32 r = g_random_int ();
      memcpy (op->nonce + i, &r, 4);
    }
  op->ipproto = natkit_port_mapping_request_get_protocol (request) == NATKIT_IP_PROTOCOL_TCP ?
                NATKIT_IPPROTO_TCP : NATKIT_IPPROTO_UDP;
  op->internal_port = natkit_port_mapping_request_get_internal_port (request);
  op->suggested_port = natkit_port_mapping_request_get_external_port (request);
  op->lifetime = natkit_port_mapping_request_get_lifetime (request);
  map_op_run (op, NULL, cancellable, map_cb, g_steal_pointer (&task));
}

static NatkitPortMapping *
natkit_natpmp_mapper_map_finish (NatkitPortMapper  *mapper,
                                 GAsyncResult      *result,
                                 GError           **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* probe: a PCP ANNOUNCE and a NAT-PMP address request, side by side */

typedef struct
{
  guint     pending;
  gboolean  pcp;
  gboolean  natpmp;
} ProbeOp;

static void
probe_complete (GTask *task)
{
  ProbeOp *p = g_task_get_task_data (task);
  GStrvBuilder *builder;
  char **result;

  if (--p->pending > 0)
    return;
  builder = g_strv_builder_new ();
  if (p->pcp)
    g_strv_builder_add (builder, "pcp");
  if (p->natpmp)
    g_strv_builder_add (builder, "natpmp");
  result = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  g_task_return_pointer (task, result, (GDestroyNotify) g_strfreev);
  g_object_unref (task);
}

static void
probe_pcp_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  GTask *task = user_data;
  ProbeOp *p = g_task_get_task_data (task);
  Exchange *x = exchange_finish (result, NULL);

  if (x != NULL && x->pcp.version == NATKIT_PCP_VERSION &&
      x->pcp.result == NATKIT_PCP_SUCCESS)
    p->pcp = TRUE;
  probe_complete (task);
}

static void
probe_natpmp_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  GTask *task = user_data;
  ProbeOp *p = g_task_get_task_data (task);
  Exchange *x = exchange_finish (result, NULL);

  if (x != NULL && x->natpmp.result == NATKIT_NATPMP_SUCCESS)
    p->natpmp = TRUE;
  probe_complete (task);
}

static void
natkit_natpmp_mapper_probe_async (NatkitPortMapper         *mapper,
                                  NatkitPortMappingRequest *request,
                                  GCancellable             *cancellable,
                                  GAsyncReadyCallback       callback,
                                  gpointer                  user_data)
{
  GTask *task = g_task_new (mapper, NULL, callback, user_data);
  g_autoptr(GInetSocketAddress) gateway = NULL;
  g_autoptr(GInetAddress) local = NULL;
  g_autoptr(GSocket) pcp_socket = NULL;
  g_autoptr(GSocket) natpmp_socket = NULL;
  guint timeout_ms = natkit_port_mapping_request_get_timeout (request);
  ProbeOp *p = g_new0 (ProbeOp, 1);
  guint8 client[16];
  Exchange *x;

  /* never an error: no gateway, no answer, or cancelled = not offered */
  g_task_set_source_tag (task, natkit_natpmp_mapper_probe_async);
  g_task_set_task_data (task, p, g_free);
  p->pending = 1;
  gateway = resolve_gateway (natkit_port_mapping_request_get_gateway (request), NULL);
  if (gateway != NULL)
    pcp_socket = open_socket (gateway, &local, NULL);
  if (gateway != NULL)
    natpmp_socket = open_socket (gateway, NULL, NULL);
  if (pcp_socket != NULL)
    {
      p->pending++;
      x = exchange_new (PROTO_PCP, pcp_socket, gateway, timeout_ms);
      ipv4_mapped (local, client);
      x->opcode = NATKIT_PCP_OP_ANNOUNCE;
      x->request_len = natkit_pcp_build_announce (x->request, client);
      exchange_run (x, cancellable, probe_pcp_cb, task);
    }
  if (natpmp_socket != NULL)
    {
      p->pending++;
      x = exchange_new (PROTO_NATPMP, natpmp_socket, gateway, timeout_ms);
      x->opcode = NATKIT_NATPMP_OP_ADDRESS;
      x->request_len = natkit_natpmp_build_address (x->request);
      exchange_run (x, cancellable, probe_natpmp_cb, task);
    }
  probe_complete (task);
}

static char **
natkit_natpmp_mapper_probe_finish (NatkitPortMapper  *mapper,
                                   GAsyncResult      *result,
                                   GError           **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static gboolean
parse_nonce (const char *hex,
             guint8      nonce[NATKIT_PCP_NONCE_SIZE])
{
  if (hex == NULL || strlen (hex) != 2 * NATKIT_PCP_NONCE_SIZE)
    return FALSE;
  for (guint i = 0; i < NATKIT_PCP_NONCE_SIZE; i++)
    {
      int hi = g_ascii_xdigit_value (hex[2 * i]);
      int lo = g_ascii_xdigit_value (hex[2 * i + 1]);

      if (hi < 0 || lo < 0)
        return FALSE;
      nonce[i] = (guint8) (hi << 4 | lo);
    }
  return TRUE;
}

static void
natkit_natpmp_mapper_remove_record_async (NatkitPortMapper    *mapper,
                                          GVariant            *record,
                                          GCancellable        *cancellable,
                                          GAsyncReadyCallback  callback,
                                          gpointer             user_data)
{
  NatkitNatpmpMapper *self = NATKIT_NATPMP_MAPPER (mapper);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  g_autoptr(GInetSocketAddress) gateway = NULL;
  const char *method = NULL, *protocol = NULL, *gateway_text = NULL, *nonce = NULL;
  const char *client = NULL;
  g_autoptr(GInetAddress) address = NULL;
  guint8 nonce_bytes[NATKIT_PCP_NONCE_SIZE] = { 0, };
  guint16 internal_port = 0;
  MapOp *op;

  g_task_set_source_tag (task, natkit_natpmp_mapper_remove_record_async);
  g_variant_lookup (record, "method", "&s", &method);
  g_variant_lookup (record, "protocol", "&s", &protocol);
  g_variant_lookup (record, "gateway", "&s", &gateway_text);
  g_variant_lookup (record, "nonce", "&s", &nonce);
  g_variant_lookup (record, "internal-address", "&s", &client);
  g_variant_lookup (record, "internal-port", "q", &internal_port);

  gateway = gateway_text ? resolve_gateway (gateway_text, NULL) : NULL;
  address = client ? g_inet_address_new_from_string (client) : NULL;
  if (gateway == NULL || address == NULL || method == NULL || protocol == NULL ||
      internal_port == 0 || (g_str_equal (method, "pcp") && !parse_nonce (nonce, nonce_bytes)))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "The mapping record is incomplete (it needs method, "
                               "protocol, gateway, internal-address, internal-port "
                               "and, for PCP, nonce)");
      return;
    }
  op = map_op_again (self, gateway, 4000, address,
                     g_str_equal (method, "pcp") ? PROTO_PCP : PROTO_NATPMP, nonce_bytes,
                     g_str_equal (protocol, "tcp") ? NATKIT_IPPROTO_TCP : NATKIT_IPPROTO_UDP,
                     internal_port, 0);
  map_op_run (op, NULL, cancellable, release_cb, g_steal_pointer (&task));
}

static gboolean
natkit_natpmp_mapper_remove_record_finish (NatkitPortMapper  *mapper,
                                           GAsyncResult      *result,
                                           GError           **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_natpmp_mapper_finalize (GObject *object)
{
  NatkitNatpmpMapper *self = NATKIT_NATPMP_MAPPER (object);

  /* mappings hold a reference on us, so none is left */
  mapper_unwatch_announcements (self);
  g_ptr_array_unref (self->mappings);
  g_hash_table_unref (self->epochs);

  G_OBJECT_CLASS (natkit_natpmp_mapper_parent_class)->finalize (object);
}

static void
natkit_natpmp_mapper_class_init (NatkitNatpmpMapperClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_natpmp_mapper_finalize;
}

static void
natkit_natpmp_mapper_init (NatkitNatpmpMapper *self)
{
  self->epochs = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  self->mappings = g_ptr_array_new ();
}

static void
natkit_natpmp_mapper_iface_init (NatkitPortMapperInterface *iface)
{
  iface->get_methods = natkit_natpmp_mapper_get_methods;
  iface->map_async = natkit_natpmp_mapper_map_async;
  iface->map_finish = natkit_natpmp_mapper_map_finish;
  iface->probe_async = natkit_natpmp_mapper_probe_async;
  iface->probe_finish = natkit_natpmp_mapper_probe_finish;
  iface->remove_record_async = natkit_natpmp_mapper_remove_record_async;
  iface->remove_record_finish = natkit_natpmp_mapper_remove_record_finish;
}

static gboolean
natpmp_plugin_init (NatkitPlugin  *plugin,
                    GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_PORT_MAPPER,
                               NATKIT_TYPE_NATPMP_MAPPER, NATKIT_RANK_PRIMARY);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("natpmp",
                      "Port mapping with PCP (RFC 6887) and NAT-PMP (RFC 6886)",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      natpmp_plugin_init)
