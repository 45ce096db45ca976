/* natkit-path.c: a datagram path to a peer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"

/**
 * NatkitPath:
 *
 * A datagram path to a peer: what every traversal method produces.
 *
 * Every method, whatever carries it (UDP through a punched hole, a TURN
 * allocation, a TCP relay that frames datagrams), hands the manager a
 * `NatkitPath`. The secure session and the reliable stream run on top of
 * it, so the manager can swap one path for another under a live connection.
 *
 * A path delivers each datagram it receives with the
 * [signal@Natkit.Path::received] signal, on the thread-default main context
 * of the thread that created it. Datagrams may be lost, duplicated or
 * reordered, as with UDP; they are never corrupted or truncated.
 *
 * Implementations subclass `NatkitPath`, implement
 * [vfunc@Natkit.Path.send] and [vfunc@Natkit.Path.close], and call
 * [method@Natkit.Path.deliver] for each datagram that arrives.
 */

typedef struct
{
  char    *method;
  char    *transport;
  char    *local_address;
  char    *remote_address;
  guint    mtu;
  gint64   rtt_us;
  guint64  bytes_sent;
  guint64  bytes_received;
  gboolean closed;
  gboolean relayed;
} NatkitPathPrivate;

G_DEFINE_ABSTRACT_TYPE_WITH_PRIVATE (NatkitPath, natkit_path, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_METHOD,
  PROP_TRANSPORT,
  PROP_LOCAL_ADDRESS,
  PROP_REMOTE_ADDRESS,
  PROP_MTU,
  PROP_RTT,
  PROP_CLOSED,
  PROP_RELAYED,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_RECEIVED,
  SIGNAL_CLOSED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

#define DEFAULT_MTU 1200

static void
natkit_path_finalize (GObject *object)
{
  NatkitPath *self = NATKIT_PATH (object);
  NatkitPathPrivate *priv = natkit_path_get_instance_private (self);

  g_free (priv->method);
  g_free (priv->transport);
  g_free (priv->local_address);
  g_free (priv->remote_address);

  G_OBJECT_CLASS (natkit_path_parent_class)->finalize (object);
}

static void
natkit_path_dispose (GObject *object)
{
  NatkitPath *self = NATKIT_PATH (object);
  NatkitPathPrivate *priv = natkit_path_get_instance_private (self);

  /* The last reference going away releases what the path holds, silently. */
  if (!priv->closed)
    {
      priv->closed = TRUE;
      NATKIT_PATH_GET_CLASS (self)->close (self);
    }

  G_OBJECT_CLASS (natkit_path_parent_class)->dispose (object);
}

static void
natkit_path_get_property (GObject    *object,
                          guint       prop_id,
                          GValue     *value,
                          GParamSpec *pspec)
{
  NatkitPath *self = NATKIT_PATH (object);
  NatkitPathPrivate *priv = natkit_path_get_instance_private (self);

  switch (prop_id)
    {
    case PROP_METHOD:
      g_value_set_string (value, priv->method);
      break;
    case PROP_TRANSPORT:
      g_value_set_string (value, priv->transport ? priv->transport : "udp");
      break;
    case PROP_LOCAL_ADDRESS:
      g_value_set_string (value, priv->local_address);
      break;
    case PROP_REMOTE_ADDRESS:
      g_value_set_string (value, priv->remote_address);
      break;
    case PROP_MTU:
      g_value_set_uint (value, priv->mtu);
      break;
    case PROP_RTT:
      g_value_set_int64 (value, priv->rtt_us);
      break;
    case PROP_CLOSED:
      g_value_set_boolean (value, priv->closed);
      break;
    case PROP_RELAYED:
      g_value_set_boolean (value, priv->relayed);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_path_set_property (GObject      *object,
                          guint         prop_id,
                          const GValue *value,
                          GParamSpec   *pspec)
{
  NatkitPath *self = NATKIT_PATH (object);
  NatkitPathPrivate *priv = natkit_path_get_instance_private (self);

  switch (prop_id)
    {
    case PROP_METHOD:
      priv->method = g_value_dup_string (value);
      break;
    case PROP_TRANSPORT:
      priv->transport = g_value_dup_string (value);
      break;
    case PROP_LOCAL_ADDRESS:
      priv->local_address = g_value_dup_string (value);
      break;
    case PROP_REMOTE_ADDRESS:
      priv->remote_address = g_value_dup_string (value);
      break;
    case PROP_MTU:
      priv->mtu = g_value_get_uint (value);
      break;
    case PROP_RELAYED:
      priv->relayed = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static gboolean
natkit_path_real_send (NatkitPath  *self,
                       GBytes      *datagram,
                       GError     **error)
{
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
               "%s does not implement sending; this is a bug in its plugin",
               G_OBJECT_TYPE_NAME (self));
  return FALSE;
}

static void
natkit_path_real_close (NatkitPath *self)
{
}

static void
natkit_path_class_init (NatkitPathClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = natkit_path_finalize;
  object_class->dispose = natkit_path_dispose;
  object_class->get_property = natkit_path_get_property;
  object_class->set_property = natkit_path_set_property;

  klass->send = natkit_path_real_send;
  klass->close = natkit_path_real_close;

  /**
   * NatkitPath:method:
   *
   * The name of the traversal plugin that made this path, such as
   * `holepunch` or `relay`.
   */
  properties[PROP_METHOD] =
    g_param_spec_string ("method", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:transport:
   *
   * What carries the path's datagrams underneath: `"udp"`, `"tcp"` or
   * `"tls"` (datagrams framed on a stream), or `"memory"`.
   */
  properties[PROP_TRANSPORT] =
    g_param_spec_string ("transport", NULL, NULL, "udp",
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:local-address:
   *
   * A human-readable description of this end, such as `192.0.2.1:4000/udp`.
   */
  properties[PROP_LOCAL_ADDRESS] =
    g_param_spec_string ("local-address", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:remote-address:
   *
   * A human-readable description of the far end, such as
   * `198.51.100.9:7000/udp (relay)`.
   */
  properties[PROP_REMOTE_ADDRESS] =
    g_param_spec_string ("remote-address", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:mtu:
   *
   * The largest datagram, in bytes, that [method@Natkit.Path.send] accepts:
   * at most 65507 on UDP, 65535 on a stream ([class@Natkit.StreamPath]).
   */
  properties[PROP_MTU] =
    g_param_spec_uint ("mtu", NULL, NULL, 64, 65535, DEFAULT_MTU,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:rtt:
   *
   * The last measured round-trip time in microseconds, or -1 when unknown.
   */
  properties[PROP_RTT] =
    g_param_spec_int64 ("rtt", NULL, NULL, -1, G_MAXINT64, -1,
                        G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                        G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:closed:
   *
   * Whether the path is closed, by [method@Natkit.Path.close] or because it
   * failed.
   */
  properties[PROP_CLOSED] =
    g_param_spec_boolean ("closed", NULL, NULL, FALSE,
                          G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                          G_PARAM_STATIC_STRINGS);

  /**
   * NatkitPath:relayed:
   *
   * Whether this path goes through a relay even though its method can
   * also make direct paths: ICE's selected pair may be a TURN relayed
   * candidate, say. The manager then treats it as relayed: it keeps
   * looking for a direct path, and explains the connection as relayed.
   * Methods that always relay say so with their cost
   * (%NATKIT_COST_RELAYED) and need not set it.
   */
  properties[PROP_RELAYED] =
    g_param_spec_boolean ("relayed", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                          G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * NatkitPath::received:
   * @self: the path
   * @datagram: the datagram
   *
   * Emitted for every datagram that arrives on the path.
   */
  signals[SIGNAL_RECEIVED] =
    g_signal_new ("received", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_BYTES | G_SIGNAL_TYPE_STATIC_SCOPE);

  /**
   * NatkitPath::closed:
   * @self: the path
   * @error: (nullable): why the path failed, or %NULL when it was closed
   *   with [method@Natkit.Path.close]
   *
   * Emitted once, when the path closes.
   */
  signals[SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
natkit_path_init (NatkitPath *self)
{
  NatkitPathPrivate *priv = natkit_path_get_instance_private (self);

  priv->mtu = DEFAULT_MTU;
  priv->rtt_us = -1;
}

/**
 * natkit_path_send:
 * @self: a path
 * @datagram: the datagram to send
 * @error: return location for a #GError
 *
 * Sends one datagram without blocking. Like UDP, a datagram that was
 * accepted may still be lost on the way.
 *
 * Returns: %TRUE if the datagram was handed to the network; %FALSE with
 *   %NATKIT_ERROR_CLOSED when the path is closed, with
 *   %NATKIT_ERROR_MESSAGE_TOO_LARGE when it is larger than
 *   [property@Natkit.Path:mtu], or with the error of the method
 */
gboolean
natkit_path_send (NatkitPath  *self,
                  GBytes      *datagram,
                  GError     **error)
{
  NatkitPathPrivate *priv;
  gsize size;

  g_return_val_if_fail (NATKIT_IS_PATH (self), FALSE);
  g_return_val_if_fail (datagram != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  priv = natkit_path_get_instance_private (self);
  size = g_bytes_get_size (datagram);

  if (priv->closed)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "The %s path to %s is closed",
                   priv->method ? priv->method : "unnamed",
                   priv->remote_address ? priv->remote_address : "the peer");
      return FALSE;
    }

  if (size > priv->mtu)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE,
                   "A %" G_GSIZE_FORMAT "-byte datagram does not fit the "
                   "%s path (at most %u bytes)",
                   size, priv->method ? priv->method : "unnamed", priv->mtu);
      return FALSE;
    }

  if (!NATKIT_PATH_GET_CLASS (self)->send (self, datagram, error))
    return FALSE;

  priv->bytes_sent += size;
  return TRUE;
}

/**
 * natkit_path_close:
 * @self: a path
 *
 * Closes the path and releases what it holds. Emits
 * [signal@Natkit.Path::closed] with no error. Closing a closed path does
 * nothing.
 */
void
natkit_path_close (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_if_fail (NATKIT_IS_PATH (self));

  priv = natkit_path_get_instance_private (self);
  if (priv->closed)
    return;

  g_object_ref (self);
  priv->closed = TRUE;
  NATKIT_PATH_GET_CLASS (self)->close (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSED]);
  g_signal_emit (self, signals[SIGNAL_CLOSED], 0, NULL);
  g_object_unref (self);
}

/**
 * natkit_path_fail:
 * @self: a path
 * @error: why the path failed
 *
 * For implementations: closes the path because it failed (the socket broke,
 * the relay dropped the allocation), emitting [signal@Natkit.Path::closed]
 * with @error.
 */
void
natkit_path_fail (NatkitPath   *self,
                  const GError *error)
{
  NatkitPathPrivate *priv;

  g_return_if_fail (NATKIT_IS_PATH (self));
  g_return_if_fail (error != NULL);

  priv = natkit_path_get_instance_private (self);
  if (priv->closed)
    return;

  g_debug ("%s path to %s failed: %s", priv->method,
           priv->remote_address, error->message);
  g_object_ref (self);
  priv->closed = TRUE;
  NATKIT_PATH_GET_CLASS (self)->close (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_CLOSED]);
  g_signal_emit (self, signals[SIGNAL_CLOSED], 0, error);
  g_object_unref (self);
}

/**
 * natkit_path_is_closed:
 * @self: a path
 *
 * Returns: whether the path is closed
 */
gboolean
natkit_path_is_closed (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), TRUE);

  priv = natkit_path_get_instance_private (self);
  return priv->closed;
}

/**
 * natkit_path_deliver:
 * @self: a path
 * @datagram: a datagram that arrived
 *
 * For implementations: hands a datagram that arrived to the path's users by
 * emitting [signal@Natkit.Path::received]. Datagrams that arrive after the
 * path closed are dropped.
 */
void
natkit_path_deliver (NatkitPath *self,
                     GBytes     *datagram)
{
  NatkitPathPrivate *priv;

  g_return_if_fail (NATKIT_IS_PATH (self));
  g_return_if_fail (datagram != NULL);

  priv = natkit_path_get_instance_private (self);
  if (priv->closed)
    return;

  priv->bytes_received += g_bytes_get_size (datagram);
  g_signal_emit (self, signals[SIGNAL_RECEIVED], 0, datagram);
}

/**
 * natkit_path_set_rtt:
 * @self: a path
 * @rtt_us: the measured round-trip time in microseconds, or -1
 *
 * For implementations and the keepalive: records a round-trip time.
 */
void
natkit_path_set_rtt (NatkitPath *self,
                     gint64      rtt_us)
{
  NatkitPathPrivate *priv;

  g_return_if_fail (NATKIT_IS_PATH (self));
  g_return_if_fail (rtt_us >= -1);

  priv = natkit_path_get_instance_private (self);
  if (priv->rtt_us == rtt_us)
    return;

  priv->rtt_us = rtt_us;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RTT]);
}

/**
 * natkit_path_get_method:
 * @self: a path
 *
 * Returns: (nullable): the name of the plugin that made the path
 */
const char *
natkit_path_get_method (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), NULL);

  priv = natkit_path_get_instance_private (self);
  return priv->method;
}

/**
 * natkit_path_get_transport:
 * @self: a #NatkitPath
 *
 * Returns: what carries the path: `"udp"`, `"tcp"`, `"tls"` or `"memory"`
 */
const char *
natkit_path_get_transport (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), NULL);

  priv = natkit_path_get_instance_private (self);
  return priv->transport ? priv->transport : "udp";
}

/**
 * natkit_path_get_local_address:
 * @self: a path
 *
 * Returns: (nullable): a description of this end
 */
const char *
natkit_path_get_local_address (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), NULL);

  priv = natkit_path_get_instance_private (self);
  return priv->local_address;
}

/**
 * natkit_path_get_remote_address:
 * @self: a path
 *
 * Returns: (nullable): a description of the far end
 */
const char *
natkit_path_get_remote_address (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), NULL);

  priv = natkit_path_get_instance_private (self);
  return priv->remote_address;
}

/**
 * natkit_path_get_relayed:
 * @self: a path
 *
 * Gets [property@Natkit.Path:relayed].
 *
 * Returns: %TRUE when the path is known to go through a relay
 */
gboolean
natkit_path_get_relayed (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), FALSE);

  priv = natkit_path_get_instance_private (self);
  return priv->relayed;
}

/**
 * natkit_path_get_mtu:
 * @self: a path
 *
 * Returns: the largest datagram the path carries, in bytes
 */
guint
natkit_path_get_mtu (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), 0);

  priv = natkit_path_get_instance_private (self);
  return priv->mtu;
}

/**
 * natkit_path_get_rtt:
 * @self: a path
 *
 * Returns: the last measured round-trip time in microseconds, or -1
 */
gint64
natkit_path_get_rtt (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), -1);

  priv = natkit_path_get_instance_private (self);
  return priv->rtt_us;
}

/**
 * natkit_path_get_bytes_sent:
 * @self: a path
 *
 * Returns: the bytes of all datagrams accepted by [method@Natkit.Path.send]
 */
guint64
natkit_path_get_bytes_sent (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), 0);

  priv = natkit_path_get_instance_private (self);
  return priv->bytes_sent;
}

/**
 * natkit_path_get_bytes_received:
 * @self: a path
 *
 * Returns: the bytes of all datagrams delivered
 */
guint64
natkit_path_get_bytes_received (NatkitPath *self)
{
  NatkitPathPrivate *priv;

  g_return_val_if_fail (NATKIT_IS_PATH (self), 0);

  priv = natkit_path_get_instance_private (self);
  return priv->bytes_received;
}
