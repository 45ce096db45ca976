/* natkit-relay-plugin.c: the traversal of last resort, through natkit-server's relay
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The initiator asks the server for a circuit to the peer, tagged with the
 * connection's session ID; the server offers it to the peer, whose attempt
 * claims it by that tag. Each end then attaches its own data channel
 * (docs/protocol.md section 4): UDP first (BIND until BOUND, for at most
 * 1.5 s), and a TLS connection to the server when UDP gets no answer. The
 * path works whatever the NATs do, at the price of a third host in the
 * middle: rank MARGINAL, cost RELAYED. The session on top of it is
 * end-to-end encrypted; the server only sees ciphertext.
 *
 * The control plane (the circuit, its limits, its end) belongs to
 * NatkitRendezvous; this plugin only speaks the data plane.
 */
#include <string.h>

#include <natkit/natkit.h>

#include "natkit-relay-udp.h"

#define NATKIT_TYPE_RELAY (natkit_relay_get_type ())
G_DECLARE_FINAL_TYPE (NatkitRelay, natkit_relay, NATKIT, RELAY, GObject)

/* an offered circuit nobody claims is closed after this long */
#define OFFER_TTL_S      30
#define OFFERS_KEY       "natkit-relay-offers"
#define TIE_KEY          "natkit-relay-circuit"

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

static void
disconnect (gpointer  instance,
            gulong   *handler_id)
{
  if (*handler_id != 0 && g_signal_handler_is_connected (instance, *handler_id))
    g_signal_handler_disconnect (instance, *handler_id);
  *handler_id = 0;
}

static void
close_circuit (NatkitRelayCircuit *circuit,
               const char         *why)
{
  if (natkit_relay_circuit_is_closed (circuit))
    return;
  g_debug ("closing circuit %u to %s: %s", natkit_relay_circuit_get_id (circuit),
           natkit_relay_circuit_get_peer_id (circuit), why);
  natkit_relay_circuit_close (circuit);
}

/* ---- a circuit tied to the path that carries it ------------------------- */

/* Owned by the path (object data): the circuit lives as long as the path
 * is open; the circuit's end fails the path. */
typedef struct
{
  NatkitRelayCircuit *circuit;
  gulong              closed_id;
} Tie;

static void
tie_free (gpointer data)
{
  Tie *tie = data;

  disconnect (tie->circuit, &tie->closed_id);
  close_circuit (tie->circuit, "its path closed");
  g_object_unref (tie->circuit);
  g_free (tie);
}

static void
tie_circuit_closed_cb (NatkitRelayCircuit *circuit,
                       const char         *reason,
                       gpointer            user_data)
{
  NatkitPath *path = user_data;
  g_autoptr(GError) error =
    g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                 "The relay server closed the circuit to %s: %s",
                 natkit_relay_circuit_get_peer_id (circuit),
                 reason != NULL && *reason != '\0' ? reason : "no reason given");

  natkit_path_fail (path, error);
}

static void
tie_path_closed_cb (NatkitPath   *path,
                    const GError *error,
                    gpointer      user_data)
{
  /* frees the tie: closes the circuit */
  g_object_set_data (G_OBJECT (path), TIE_KEY, NULL);
}

static void
tie (NatkitPath         *path,
     NatkitRelayCircuit *circuit)
{
  Tie *t = g_new0 (Tie, 1);

  t->circuit = g_object_ref (circuit);
  t->closed_id = g_signal_connect (circuit, "closed",
                                   G_CALLBACK (tie_circuit_closed_cb), path);
  g_object_set_data_full (G_OBJECT (path), TIE_KEY, t, tie_free);
  g_signal_connect (path, "closed", G_CALLBACK (tie_path_closed_cb), NULL);
}

/* ---- circuits offered to us, until an attempt claims them --------------- */

/* The server announces a circuit as soon as the initiator opened it, which
 * may be before this side's attempt started: offers wait here (per
 * rendezvous client, as its object data) for OFFER_TTL_S. */
typedef struct
{
  NatkitRelayCircuit *circuit;
  gint64              expires;     /* monotonic µs */
  gulong              closed_id;
} Offer;

typedef struct
{
  NatkitRendezvous *rendezvous;    /* not a reference: it owns us */
  gulong            offered_id;
  GQueue            offers;        /* Offer */
  GQueue            waiting;       /* GTask: responder attempts */
  GSource          *expiry;
} Offers;

static void op_got_circuit (GTask              *task,
                            NatkitRelayCircuit *circuit);

static void
offer_free (Offer *offer)
{
  disconnect (offer->circuit, &offer->closed_id);
  g_object_unref (offer->circuit);
  g_free (offer);
}

static void
offers_free (gpointer data)
{
  Offers *offers = data;
  Offer *offer;

  disconnect (offers->rendezvous, &offers->offered_id);
  drop_source (&offers->expiry);
  while ((offer = g_queue_pop_head (&offers->offers)) != NULL)
    offer_free (offer);
  /* attempts hold a reference on the rendezvous: none can be waiting */
  g_warn_if_fail (offers->waiting.length == 0);
  g_free (offers);
}

static gboolean
offer_matches (NatkitRelayCircuit *circuit,
               const char         *peer_id,
               const char         *tag)
{
  return g_strcmp0 (natkit_relay_circuit_get_peer_id (circuit), peer_id) == 0 &&
         g_strcmp0 (natkit_relay_circuit_get_tag (circuit), tag) == 0;
}

static gboolean
expiry_cb (gpointer user_data)
{
  Offers *offers = user_data;
  gint64 now = g_get_monotonic_time ();
  GList *l = offers->offers.head;

  while (l != NULL)
    {
      GList *next = l->next;
      Offer *offer = l->data;

      if (offer->expires <= now)
        {
          g_queue_delete_link (&offers->offers, l);
          close_circuit (offer->circuit, "no connection attempt claimed it within 30 s");
          offer_free (offer);
        }
      l = next;
    }
  if (offers->offers.length > 0)
    return G_SOURCE_CONTINUE;
  g_clear_pointer (&offers->expiry, g_source_unref);
  return G_SOURCE_REMOVE;
}

static void
offer_closed_cb (NatkitRelayCircuit *circuit,
                 const char         *reason,
                 gpointer            user_data)
{
  Offers *offers = user_data;

  for (GList *l = offers->offers.head; l != NULL; l = l->next)
    {
      Offer *offer = l->data;

      if (offer->circuit == circuit)
        {
          g_debug ("offered circuit %u from %s closed before an attempt claimed it: %s",
                   natkit_relay_circuit_get_id (circuit),
                   natkit_relay_circuit_get_peer_id (circuit), reason);
          g_queue_delete_link (&offers->offers, l);
          offer_free (offer);
          return;
        }
    }
}

typedef struct
{
  NatkitRendezvous   *rendezvous;
  char               *peer_id;
  char               *tag;
  NatkitRole          role;
  guint               timeout_ms;
  const char         *step;          /* what the attempt is doing, for messages */
  NatkitRelayCircuit *circuit;
  gulong              circuit_closed_id;
  GCancellable       *cancellable;   /* ours: stops the step in flight */
  GSource            *deadline;
  GSource            *cancel;
  gboolean            waiting;       /* in Offers.waiting */
  char               *udp_error;
  gboolean            udp_blocked;   /* our NAT detection got no UDP answer */
  gboolean            done;
} OpenOp;

static void
circuit_offered_cb (NatkitRendezvous   *rendezvous,
                    NatkitRelayCircuit *circuit,
                    gpointer            user_data)
{
  Offers *offers = user_data;
  const char *peer_id = natkit_relay_circuit_get_peer_id (circuit);
  const char *tag = natkit_relay_circuit_get_tag (circuit);
  Offer *offer;

  for (GList *l = offers->waiting.head; l != NULL; l = l->next)
    {
      GTask *task = l->data;
      OpenOp *op = g_task_get_task_data (task);

      if (g_strcmp0 (op->peer_id, peer_id) == 0 && g_strcmp0 (op->tag, tag) == 0)
        {
          g_queue_delete_link (&offers->waiting, l);
          op->waiting = FALSE;
          op_got_circuit (task, g_object_ref (circuit));
          return;
        }
    }

  g_debug ("circuit %u offered by %s (tag %s): kept %u s for the attempt that claims it",
           natkit_relay_circuit_get_id (circuit), peer_id, tag, OFFER_TTL_S);
  offer = g_new0 (Offer, 1);
  offer->circuit = g_object_ref (circuit);
  offer->expires = g_get_monotonic_time () + OFFER_TTL_S * G_USEC_PER_SEC;
  offer->closed_id = g_signal_connect (circuit, "closed", G_CALLBACK (offer_closed_cb), offers);
  g_queue_push_tail (&offers->offers, offer);
  if (offers->expiry == NULL)
    offers->expiry = add_source (g_timeout_source_new_seconds (5), expiry_cb, offers,
                                 "[natkit-relay] offer expiry");
}

/* Starts keeping what the server offers @rendezvous, if not yet. */
static Offers *
offers_get (NatkitRendezvous *rendezvous)
{
  Offers *offers = g_object_get_data (G_OBJECT (rendezvous), OFFERS_KEY);

  if (offers != NULL)
    return offers;

  offers = g_new0 (Offers, 1);
  offers->rendezvous = rendezvous;
  g_queue_init (&offers->offers);
  g_queue_init (&offers->waiting);
  offers->offered_id = g_signal_connect (rendezvous, "circuit-offered",
                                         G_CALLBACK (circuit_offered_cb), offers);
  g_object_set_data_full (G_OBJECT (rendezvous), OFFERS_KEY, offers, offers_free);
  return offers;
}

/* (transfer full) (nullable) */
static NatkitRelayCircuit *
offers_take (Offers     *offers,
             const char *peer_id,
             const char *tag)
{
  for (GList *l = offers->offers.head; l != NULL; l = l->next)
    {
      Offer *offer = l->data;

      if (offer_matches (offer->circuit, peer_id, tag))
        {
          NatkitRelayCircuit *circuit = g_object_ref (offer->circuit);

          g_queue_delete_link (&offers->offers, l);
          offer_free (offer);
          return circuit;
        }
    }
  return NULL;
}

/* ---- one attempt -------------------------------------------------------- */

static void
open_op_free (gpointer data)
{
  OpenOp *op = data;

  g_assert (op->deadline == NULL && op->cancel == NULL && !op->waiting);
  if (op->circuit != NULL)
    {
      disconnect (op->circuit, &op->circuit_closed_id);
      g_object_unref (op->circuit);
    }
  g_clear_object (&op->cancellable);
  g_clear_object (&op->rendezvous);
  g_free (op->peer_id);
  g_free (op->tag);
  g_free (op->udp_error);
  g_free (op);
}

/* Ends the attempt once, with @path (transfer full) or @error (transfer
 * full), and drops the reference the running attempt held on @task. */
static void
op_complete (GTask      *task,
             NatkitPath *path,
             GError     *error)
{
  OpenOp *op = g_task_get_task_data (task);

  if (op->done)
    {
      g_clear_object (&path);
      g_clear_error (&error);
      return;
    }
  op->done = TRUE;

  drop_source (&op->deadline);
  drop_source (&op->cancel);
  g_cancellable_cancel (op->cancellable);
  if (op->waiting)
    {
      Offers *offers = g_object_get_data (G_OBJECT (op->rendezvous), OFFERS_KEY);

      g_queue_remove (&offers->waiting, task);
      op->waiting = FALSE;
    }
  if (op->circuit != NULL)
    disconnect (op->circuit, &op->circuit_closed_id);

  if (path != NULL && natkit_relay_circuit_is_closed (op->circuit))
    {
      const char *reason = natkit_relay_circuit_get_close_reason (op->circuit);

      g_clear_object (&path);
      error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                           "The relay server closed the circuit to %s: %s", op->peer_id,
                           reason != NULL ? reason : "no reason given");
    }

  if (path != NULL)
    {
      g_debug ("relayed path to %s: %s → %s", op->peer_id,
               natkit_path_get_local_address (path), natkit_path_get_remote_address (path));
      tie (path, op->circuit);
      g_task_return_pointer (task, path, g_object_unref);
    }
  else
    {
      if (op->circuit != NULL)
        close_circuit (op->circuit, error->message);
      g_task_return_error (task, error);
    }
  g_object_unref (task);
}

static gboolean
deadline_cb (gpointer user_data)
{
  GTask *task = user_data;
  OpenOp *op = g_task_get_task_data (task);

  g_clear_pointer (&op->deadline, g_source_unref);
  op_complete (task, NULL,
               g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                            "The relay through %s could not reach %s within %u ms "
                            "(still %s)", natkit_rendezvous_get_server (op->rendezvous),
                            op->peer_id, op->timeout_ms, op->step));
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  GTask *task = user_data;
  OpenOp *op = g_task_get_task_data (task);

  g_clear_pointer (&op->cancel, g_source_unref);
  op_complete (task, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
op_circuit_closed_cb (NatkitRelayCircuit *circuit,
                      const char         *reason,
                      gpointer            user_data)
{
  GTask *task = user_data;
  OpenOp *op = g_task_get_task_data (task);

  op_complete (task, NULL,
               g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                            "The relay server closed the circuit to %s while %s: %s",
                            op->peer_id, op->step,
                            reason != NULL && *reason != '\0' ? reason : "no reason given"));
}

static char *
describe_stream_end (GIOStream  *stream,
                     gboolean    local,
                     const char *suffix)
{
  g_autoptr(GIOStream) base = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  GInetSocketAddress *inet;
  g_autofree char *ip = NULL;

  if (G_IS_TLS_CONNECTION (stream))
    g_object_get (stream, "base-io-stream", &base, NULL);
  else
    base = g_object_ref (stream);
  if (!G_IS_SOCKET_CONNECTION (base))
    return NULL;

  address = local ?
            g_socket_connection_get_local_address (G_SOCKET_CONNECTION (base), NULL) :
            g_socket_connection_get_remote_address (G_SOCKET_CONNECTION (base), NULL);
  if (!G_IS_INET_SOCKET_ADDRESS (address))
    return NULL;
  inet = G_INET_SOCKET_ADDRESS (address);
  ip = g_inet_address_to_string (g_inet_socket_address_get_address (inet));
  return strchr (ip, ':') != NULL ?
         g_strdup_printf ("[%s]:%u%s", ip, g_inet_socket_address_get_port (inet), suffix) :
         g_strdup_printf ("%s:%u%s", ip, g_inet_socket_address_get_port (inet), suffix);
}

static void
tls_cb (GObject      *source,
        GAsyncResult *result,
        gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenOp *op = g_task_get_task_data (task);
  g_autoptr(GIOStream) stream = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *local = NULL;
  g_autofree char *remote = NULL;
  g_autofree char *server = NULL;
  guint32 id;

  stream = natkit_relay_circuit_open_tls_finish (NATKIT_RELAY_CIRCUIT (source), result, &error);
  if (op->done)
    return;     /* a stream that came too late is closed when dropped */

  id = natkit_relay_circuit_get_id (op->circuit);
  server = g_strdup_printf ("%s:%u", natkit_relay_circuit_get_server_host (op->circuit),
                            natkit_relay_circuit_get_server_port (op->circuit));
  if (stream == NULL)
    {
      op_complete (task, NULL,
                   g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                "Could not reach the relay server %s for the circuit "
                                "to %s: over UDP: %s; over TLS: %s", server, op->peer_id,
                                op->udp_error ? op->udp_error : "not offered",
                                error->message));
      return;
    }

  g_debug ("circuit %u: attached over TLS to %s", id, server);
  local = describe_stream_end (stream, TRUE, "/tls");
  remote = describe_stream_end (stream, FALSE, "");
  if (remote == NULL)
    remote = g_strdup (server);
  {
    g_autofree char *remote_text = g_strdup_printf ("%s/tls (relay circuit %u)", remote, id);

    op_complete (task, natkit_stream_path_new (stream, "relay", "tls", local, remote_text),
                 NULL);
  }
}

static void
start_tls (GTask *task)
{
  OpenOp *op = g_task_get_task_data (task);

  op->step = "attaching to the circuit over TLS";
  g_debug ("circuit %u: %s (%s)", natkit_relay_circuit_get_id (op->circuit), op->step,
           op->udp_error ? op->udp_error : "no UDP port");
  natkit_relay_circuit_open_tls_async (op->circuit, op->cancellable, tls_cb,
                                       g_object_ref (task));
}

static void
udp_bound_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenOp *op = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  NatkitPath *path;

  path = natkit_relay_udp_bind_finish (result, &error);
  if (op->done)
    {
      g_clear_object (&path);
      return;
    }
  if (path != NULL)
    {
      op_complete (task, path, NULL);
      return;
    }
  op->udp_error = g_strdup (error->message);
  start_tls (task);
}

static void
op_got_circuit (GTask              *task,
                NatkitRelayCircuit *circuit)
{
  OpenOp *op = g_task_get_task_data (task);
  GBytes *token = natkit_relay_circuit_get_token (circuit);
  guint16 udp_port = natkit_relay_circuit_get_udp_port (circuit);
  guint32 id = natkit_relay_circuit_get_id (circuit);

  op->circuit = circuit;
  if (natkit_relay_circuit_is_closed (circuit))
    {
      op_complete (task, NULL,
                   g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                "The relay server closed the circuit to %s at once: %s",
                                op->peer_id,
                                natkit_relay_circuit_get_close_reason (circuit) ?
                                natkit_relay_circuit_get_close_reason (circuit) :
                                "no reason given"));
      return;
    }
  op->circuit_closed_id = g_signal_connect (circuit, "closed",
                                            G_CALLBACK (op_circuit_closed_cb), task);
  g_debug ("circuit %u to %s through %s:%u: up to %" G_GUINT64_FORMAT " bytes, %u s",
           id, op->peer_id, natkit_relay_circuit_get_server_host (circuit),
           natkit_relay_circuit_get_server_port (circuit),
           natkit_relay_circuit_get_byte_limit (circuit),
           natkit_relay_circuit_get_duration_limit (circuit));

  if (token == NULL || g_bytes_get_size (token) != NATKIT_RELAY_TOKEN_SIZE)
    {
      op_complete (task, NULL,
                   g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                "The relay server gave circuit %u a %" G_GSIZE_FORMAT
                                "-byte token (tokens have %u bytes): is it a natkit-server?",
                                id, token ? g_bytes_get_size (token) : 0,
                                NATKIT_RELAY_TOKEN_SIZE));
      return;
    }
  if (udp_port == 0)
    {
      start_tls (task);
      return;
    }
  if (op->udp_blocked)
    {
      /* no point waiting out the UDP budget on a network without UDP */
      op->udp_error = g_strdup ("this network blocks UDP (NAT detection)");
      start_tls (task);
      return;
    }

  op->step = "binding the circuit over UDP";
  natkit_relay_udp_bind_async (natkit_relay_circuit_get_server_host (circuit), udp_port, id,
                               g_bytes_get_data (token, NULL), NATKIT_RELAY_UDP_BUDGET_MS,
                               op->cancellable, udp_bound_cb, g_object_ref (task));
}

static void
circuit_opened_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenOp *op = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  NatkitRelayCircuit *circuit;

  circuit = natkit_rendezvous_open_circuit_finish (NATKIT_RENDEZVOUS (source), result, &error);
  if (op->done)
    {
      /* the server opened it after all: nobody will use it */
      if (circuit != NULL)
        {
          close_circuit (circuit, "the attempt ended before the server answered");
          g_object_unref (circuit);
        }
      return;
    }
  if (circuit == NULL)
    {
      op_complete (task, NULL, g_steal_pointer (&error));
      return;
    }
  op_got_circuit (task, circuit);
}

/* ---- the traversal ------------------------------------------------------ */

struct _NatkitRelay
{
  GObject parent_instance;
};

static void natkit_relay_traversal_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitRelay, natkit_relay, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      natkit_relay_traversal_init))

static NatkitCost
natkit_relay_get_cost (NatkitTraversal *traversal)
{
  return NATKIT_COST_RELAYED;
}

static gboolean
natkit_relay_applies (NatkitTraversal         *traversal,
                      NatkitTraversalRequest  *request,
                      GError                 **error)
{
  NatkitRendezvous *rendezvous = natkit_traversal_request_get_rendezvous (request);

  if (rendezvous == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "the relay needs a natkit-server: connect through a peer "
                           "address PEER@HOST:PORT or configure a rendezvous server");
      return FALSE;
    }
  /* the initiator may open the circuit before our attempt starts: keep
   * what the server offers from now on */
  if (natkit_traversal_request_get_role (request) == NATKIT_ROLE_RESPONDER)
    offers_get (rendezvous);
  return TRUE;
}

static void
natkit_relay_open_path_async (NatkitTraversal        *traversal,
                              NatkitTraversalRequest *request,
                              GCancellable           *cancellable,
                              GAsyncReadyCallback     callback,
                              gpointer                user_data)
{
  GTask *task = g_task_new (traversal, cancellable, callback, user_data);
  NatkitRendezvous *rendezvous = natkit_traversal_request_get_rendezvous (request);
  const char *session_id = natkit_traversal_request_get_session_id (request);
  g_autoptr(GError) error = NULL;
  OpenOp *op;

  g_task_set_source_tag (task, natkit_relay_open_path_async);
  g_task_set_name (task, "[natkit-relay] open path");

  if (!natkit_relay_applies (traversal, request, &error))
    {
      g_task_return_error (task, g_steal_pointer (&error));
      g_object_unref (task);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }

  op = g_new0 (OpenOp, 1);
  op->rendezvous = g_object_ref (rendezvous);
  op->peer_id = g_strdup (natkit_traversal_request_get_remote_peer_id (request));
  op->tag = g_strdup (session_id != NULL ? session_id : "");
  op->role = natkit_traversal_request_get_role (request);
  op->timeout_ms = natkit_traversal_request_get_timeout (request);
  {
    NatkitNatInfo *info = natkit_traversal_request_get_local_nat_info (request);

    op->udp_blocked = info != NULL &&
                      natkit_nat_info_get_nat_type (info) == NATKIT_NAT_TYPE_UDP_BLOCKED;
  }
  op->cancellable = g_cancellable_new ();
  g_task_set_task_data (task, op, open_op_free);

  /* the task holds itself until op_complete() */
  op->deadline = add_source (g_timeout_source_new (op->timeout_ms), deadline_cb, task,
                             "[natkit-relay] attempt timeout");
  if (cancellable != NULL)
    op->cancel = add_source (g_cancellable_source_new (cancellable),
                             G_SOURCE_FUNC (cancelled_cb), task,
                             "[natkit-relay] attempt cancelled");

  if (op->role == NATKIT_ROLE_INITIATOR)
    {
      op->step = "asking the server for a circuit";
      g_debug ("asking %s for a circuit to %s (tag %s)",
               natkit_rendezvous_get_server (rendezvous), op->peer_id, op->tag);
      natkit_rendezvous_open_circuit_async (rendezvous, op->peer_id, op->tag,
                                            op->cancellable, circuit_opened_cb,
                                            g_object_ref (task));
    }
  else
    {
      Offers *offers = offers_get (rendezvous);
      NatkitRelayCircuit *circuit = offers_take (offers, op->peer_id, op->tag);

      if (circuit != NULL)
        {
          g_debug ("claiming circuit %u, offered by %s before the attempt started",
                   natkit_relay_circuit_get_id (circuit), op->peer_id);
          op_got_circuit (task, circuit);
          return;
        }
      op->step = "waiting for the peer's circuit";
      g_debug ("waiting for %s to open a circuit through %s (tag %s)", op->peer_id,
               natkit_rendezvous_get_server (rendezvous), op->tag);
      op->waiting = TRUE;
      g_queue_push_tail (&offers->waiting, task);
    }
}

static NatkitPath *
natkit_relay_open_path_finish (NatkitTraversal  *traversal,
                               GAsyncResult     *result,
                               GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, natkit_relay_open_path_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
natkit_relay_traversal_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = natkit_relay_get_cost;
  iface->applies = natkit_relay_applies;
  iface->open_path_async = natkit_relay_open_path_async;
  iface->open_path_finish = natkit_relay_open_path_finish;
}

static void
natkit_relay_class_init (NatkitRelayClass *klass)
{
}

static void
natkit_relay_init (NatkitRelay *self)
{
}

static gboolean
relay_plugin_init (NatkitPlugin  *plugin,
                   GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               NATKIT_TYPE_RELAY, NATKIT_RANK_MARGINAL);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("relay",
                      "Relays the connection through natkit-server (UDP, or TLS where UDP is blocked)",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      relay_plugin_init)
