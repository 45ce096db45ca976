/* natkit-signaling.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit.h"

/**
 * NatkitSignaling:
 *
 * The channel two peers' managers exchange their connection setup over.
 *
 * natkit brings one implementation, [class@Natkit.Rendezvous], the client
 * of `natkit-server`. Applications that already have a way to reach their
 * peers (XMPP, Matrix, D-Bus, a game server) implement this interface and
 * hand it to [method@Natkit.Manager.listen] and
 * [method@Natkit.Manager.connect_with_signaling_async]: natkit then never
 * needs a rendezvous server of its own for signaling.
 *
 * Messages are JSON objects as UTF-8 text, at most
 * %NATKIT_SIGNALING_MAX_MESSAGE bytes; the layout is in natkit's
 * `docs/protocol.md` (section 6) and implementations must not depend on
 * it. An implementation must tell the true sender: the peer ID it passes
 * to [method@Natkit.Signaling.emit_message] is the one its channel
 * authenticated. (natkit does not rely on that for security — every
 * connection's secure session checks the peer's key — but a channel that
 * lets anyone speak for anyone makes denial of service easy.)
 */

G_DEFINE_INTERFACE (NatkitSignaling, natkit_signaling, G_TYPE_OBJECT)

enum {
  SIGNAL_MESSAGE_RECEIVED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static const char *
natkit_signaling_real_get_local_address (NatkitSignaling *self)
{
  return NULL;
}

static void
natkit_signaling_default_init (NatkitSignalingInterface *iface)
{
  iface->get_local_address = natkit_signaling_real_get_local_address;

  /**
   * NatkitSignaling::message-received:
   * @self: the channel
   * @peer_id: the sender's peer ID
   * @message: the message (a JSON object as text)
   *
   * Emitted for every message a peer sent to this node.
   */
  signals[SIGNAL_MESSAGE_RECEIVED] =
    g_signal_new ("message-received", G_TYPE_FROM_INTERFACE (iface),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);
}

/**
 * natkit_signaling_get_local_peer_id:
 * @self: a #NatkitSignaling
 *
 * Returns: the peer ID messages are sent from
 */
const char *
natkit_signaling_get_local_peer_id (NatkitSignaling *self)
{
  g_return_val_if_fail (NATKIT_IS_SIGNALING (self), NULL);

  return NATKIT_SIGNALING_GET_IFACE (self)->get_local_peer_id (self);
}

/**
 * natkit_signaling_get_local_address:
 * @self: a #NatkitSignaling
 *
 * The address other peers reach this one at through this channel, as
 * `PEER-ID@HOST:PORT`.
 *
 * Returns: (nullable): the address, or %NULL when the channel has none
 */
const char *
natkit_signaling_get_local_address (NatkitSignaling *self)
{
  g_return_val_if_fail (NATKIT_IS_SIGNALING (self), NULL);

  return NATKIT_SIGNALING_GET_IFACE (self)->get_local_address (self);
}

/**
 * natkit_signaling_send_async:
 * @self: a #NatkitSignaling
 * @peer_id: the receiver
 * @message: a JSON object as UTF-8 text
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the channel accepted the message
 * @user_data: data for @callback
 *
 * Sends one message to @peer_id. Completion means the channel took the
 * message (for natkit-server: the server forwarded it), not that the peer
 * acted on it.
 */
void
natkit_signaling_send_async (NatkitSignaling     *self,
                             const char          *peer_id,
                             const char          *message,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_SIGNALING (self));
  g_return_if_fail (peer_id != NULL);
  g_return_if_fail (message != NULL);
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  NATKIT_SIGNALING_GET_IFACE (self)->send_async (self, peer_id, message,
                                                 cancellable, callback,
                                                 user_data);
}

/**
 * natkit_signaling_send_finish:
 * @self: a #NatkitSignaling
 * @result: the #GAsyncResult
 * @error: return location for a #GError
 *
 * Returns: %TRUE when the channel took the message
 */
gboolean
natkit_signaling_send_finish (NatkitSignaling  *self,
                              GAsyncResult     *result,
                              GError          **error)
{
  g_return_val_if_fail (NATKIT_IS_SIGNALING (self), FALSE);

  return NATKIT_SIGNALING_GET_IFACE (self)->send_finish (self, result, error);
}

/**
 * natkit_signaling_emit_message:
 * @self: a #NatkitSignaling
 * @peer_id: the sender, as the channel authenticated it
 * @message: the message
 *
 * For implementations: hands a message that arrived to natkit, by emitting
 * #NatkitSignaling::message-received. Messages that are not valid UTF-8 or
 * are larger than %NATKIT_SIGNALING_MAX_MESSAGE are dropped here.
 */
void
natkit_signaling_emit_message (NatkitSignaling *self,
                               const char      *peer_id,
                               const char      *message)
{
  g_return_if_fail (NATKIT_IS_SIGNALING (self));
  g_return_if_fail (peer_id != NULL);
  g_return_if_fail (message != NULL);

  if (strlen (message) > NATKIT_SIGNALING_MAX_MESSAGE ||
      !g_utf8_validate (message, -1, NULL))
    {
      g_debug ("dropping a signaling message from %s: too large or not UTF-8",
               peer_id);
      return;
    }

  g_signal_emit (self, signals[SIGNAL_MESSAGE_RECEIVED], 0, peer_id, message);
}

/* The in-process pair: two channels that deliver to each other from an
 * idle, in order, as a real channel would (never re-entrantly). */

#define NATKIT_TYPE_MEMORY_SIGNALING (natkit_memory_signaling_get_type ())
G_DECLARE_FINAL_TYPE (NatkitMemorySignaling, natkit_memory_signaling,
                      NATKIT, MEMORY_SIGNALING, GObject)

struct _NatkitMemorySignaling
{
  GObject                 parent_instance;

  char                   *peer_id;
  NatkitMemorySignaling  *other;  /* weak */
};

static void natkit_memory_signaling_iface_init (NatkitSignalingInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitMemorySignaling, natkit_memory_signaling,
                               G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_SIGNALING,
                                                      natkit_memory_signaling_iface_init))

typedef struct
{
  NatkitMemorySignaling *to;  /* weak */
  char                  *from;
  char                  *message;
} Delivery;

static void
delivery_free (gpointer data)
{
  Delivery *d = data;

  g_clear_weak_pointer (&d->to);
  g_free (d->from);
  g_free (d->message);
  g_free (d);
}

static gboolean
deliver_cb (gpointer user_data)
{
  Delivery *d = user_data;

  if (d->to)
    natkit_signaling_emit_message (NATKIT_SIGNALING (d->to), d->from, d->message);
  return G_SOURCE_REMOVE;
}

static const char *
natkit_memory_signaling_get_local_peer_id (NatkitSignaling *signaling)
{
  return NATKIT_MEMORY_SIGNALING (signaling)->peer_id;
}

static void
natkit_memory_signaling_send_async (NatkitSignaling     *signaling,
                                    const char          *peer_id,
                                    const char          *message,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  NatkitMemorySignaling *self = NATKIT_MEMORY_SIGNALING (signaling);
  g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);
  Delivery *d;

  g_task_set_source_tag (task, natkit_memory_signaling_send_async);

  if (!self->other || g_strcmp0 (self->other->peer_id, peer_id) != 0)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                               "peer %s is not on this in-process channel",
                               peer_id);
      return;
    }
  if (strlen (message) > NATKIT_SIGNALING_MAX_MESSAGE)
    {
      g_task_return_new_error (task, NATKIT_ERROR,
                               NATKIT_ERROR_MESSAGE_TOO_LARGE,
                               "signaling message of %zu bytes is larger "
                               "than the limit of %d",
                               strlen (message), NATKIT_SIGNALING_MAX_MESSAGE);
      return;
    }

  d = g_new0 (Delivery, 1);
  g_set_weak_pointer (&d->to, self->other);
  d->from = g_strdup (self->peer_id);
  d->message = g_strdup (message);
  g_idle_add_full (G_PRIORITY_DEFAULT, deliver_cb, d, delivery_free);

  g_task_return_boolean (task, TRUE);
}

static gboolean
natkit_memory_signaling_send_finish (NatkitSignaling  *signaling,
                                     GAsyncResult     *result,
                                     GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, signaling), FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_memory_signaling_iface_init (NatkitSignalingInterface *iface)
{
  iface->get_local_peer_id = natkit_memory_signaling_get_local_peer_id;
  iface->send_async = natkit_memory_signaling_send_async;
  iface->send_finish = natkit_memory_signaling_send_finish;
}

static void
natkit_memory_signaling_finalize (GObject *object)
{
  NatkitMemorySignaling *self = NATKIT_MEMORY_SIGNALING (object);

  g_clear_weak_pointer (&self->other);
  g_free (self->peer_id);

  G_OBJECT_CLASS (natkit_memory_signaling_parent_class)->finalize (object);
}

static void
natkit_memory_signaling_class_init (NatkitMemorySignalingClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_memory_signaling_finalize;
}

static void
natkit_memory_signaling_init (NatkitMemorySignaling *self)
{
}

/**
 * natkit_signaling_new_pair:
 * @peer_id_a: the first peer's ID
 * @peer_id_b: the second peer's ID
 * @out_a: (out) (transfer full): the channel of the first peer
 * @out_b: (out) (transfer full): the channel of the second peer
 *
 * Creates two signaling channels connected to each other inside this
 * process: what one sends, the other receives (from the main context, in
 * order). For tests, and for two managers in one program.
 */
void
natkit_signaling_new_pair (const char       *peer_id_a,
                           const char       *peer_id_b,
                           NatkitSignaling **out_a,
                           NatkitSignaling **out_b)
{
  NatkitMemorySignaling *a, *b;

  g_return_if_fail (peer_id_a != NULL && peer_id_b != NULL);
  g_return_if_fail (out_a != NULL && out_b != NULL);

  a = g_object_new (NATKIT_TYPE_MEMORY_SIGNALING, NULL);
  b = g_object_new (NATKIT_TYPE_MEMORY_SIGNALING, NULL);
  a->peer_id = g_strdup (peer_id_a);
  b->peer_id = g_strdup (peer_id_b);
  g_set_weak_pointer (&a->other, b);
  g_set_weak_pointer (&b->other, a);

  *out_a = NATKIT_SIGNALING (a);
  *out_b = NATKIT_SIGNALING (b);
}

/**
 * natkit_peer_address_parse:
 * @address: a peer address, `PEER-ID@HOST:PORT` (an IPv6 host in brackets)
 * @out_peer_id: (out) (optional) (transfer full): the peer ID
 * @out_host: (out) (optional) (transfer full): the server's host
 * @out_port: (out) (optional): the server's port
 * @error: return location for a #GError
 *
 * Splits a peer address into the peer ID and the natkit-server the peer is
 * registered at, checking each part.
 *
 * Returns: %TRUE when @address is valid
 */
gboolean
natkit_peer_address_parse (const char  *address,
                           char       **out_peer_id,
                           char       **out_host,
                           guint16     *out_port,
                           GError     **error)
{
  g_autofree char *peer_id = NULL;
  g_autofree char *host = NULL;
  g_autoptr(GError) local_error = NULL;
  const char *at;
  guint16 port = 0;

  g_return_val_if_fail (address != NULL, FALSE);

  at = strchr (address, '@');
  if (!at || at == address || at[1] == '\0')
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a peer address: expected PEER-ID@HOST:PORT, "
                   "as `nat-tool listen` prints it", address);
      return FALSE;
    }

  peer_id = g_strndup (address, at - address);
  if (!natkit_peer_id_validate (peer_id, &local_error))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a peer address: %s", address,
                   local_error->message);
      return FALSE;
    }

  {
    const char *hostport = at + 1;
    const char *colon = strrchr (hostport, ':');
    g_autoptr(GSocketConnectable) conn = NULL;

    /* a port is required; a bare IPv6 address would parse as host only */
    if (colon && (hostport[0] == '[' || strchr (hostport, ':') == colon))
      conn = g_network_address_parse (hostport, 0, NULL);
    if (conn)
      {
        host = g_strdup (g_network_address_get_hostname (G_NETWORK_ADDRESS (conn)));
        port = g_network_address_get_port (G_NETWORK_ADDRESS (conn));
      }
    if (!conn || port == 0 || host == NULL || *host == '\0')
      {
        g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                     "“%s” is not a peer address: “%s” is not HOST:PORT "
                     "with a port other than 0 (IPv6 hosts go in brackets: "
                     "[2001:db8::1]:7000)", address, hostport);
        return FALSE;
      }
  }

  if (out_peer_id)
    *out_peer_id = g_steal_pointer (&peer_id);
  if (out_host)
    *out_host = g_steal_pointer (&host);
  if (out_port)
    *out_port = port;
  return TRUE;
}
