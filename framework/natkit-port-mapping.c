/* natkit-port-mapping.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "natkit.h"
#include "natkit-port-mapping-private.h"
#include "natkit-util-private.h"

/**
 * NatkitPortMapping:
 *
 * A port that a gateway forwards to this host: UPnP-IGD, NAT-PMP or PCP,
 * made by [method@Natkit.Manager.map_port_async].
 *
 * While it is held the mapping is renewed between 1/2 and 5/8 of its granted
 * lifetime (at random, as RFC 6887 section 11.2.1 suggests). A
 * renewal that finds the gateway restarted (a PCP or NAT-PMP epoch going
 * backwards, a UPnP device that came back) re-creates the mapping: the
 * result is [signal@Natkit.PortMapping::renewed] when the public address
 * and port stayed the same, [signal@Natkit.PortMapping::changed] when they
 * did not. When it cannot be renewed before it expires,
 * [signal@Natkit.PortMapping::lost] is emitted; natkit keeps trying with a
 * growing interval and the mapping becomes active again if the gateway
 * comes back.
 *
 * [method@Natkit.PortMapping.release_async] deletes the mapping. A mapping
 * that is dropped while still active is deleted too, on a best-effort
 * basis (the request is sent if the main context keeps running).
 *
 * Plugins subclass it: they fill the construct properties, call
 * [method@Natkit.PortMapping.update] each time the gateway grants the
 * mapping, and implement the renew and release virtual functions.
 * Subclasses must keep what their release needs until finalize.
 */

typedef struct
{
  char                   *method;
  NatkitIpProtocol        protocol;
  char                   *internal_address;
  guint16                 internal_port;
  char                   *external_address;
  guint16                 external_port;
  guint32                 lifetime;
  char                   *gateway;
  NatkitPortMappingState  state;

  gboolean                granted;
  guint                   renewals;
  gint64                  expires_at;       /* monotonic, µs */
  guint                   retry_ms;         /* after the mapping was lost */

  GMainContext           *context;
  GSource                *renew_source;
  GCancellable           *renew_cancellable;
  gboolean                renewing;
  gboolean                releasing;

  char                   *record_file;
} NatkitPortMappingPrivate;

G_DEFINE_TYPE_WITH_PRIVATE (NatkitPortMapping, natkit_port_mapping, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_METHOD,
  PROP_PROTOCOL,
  PROP_INTERNAL_ADDRESS,
  PROP_INTERNAL_PORT,
  PROP_EXTERNAL_ADDRESS,
  PROP_EXTERNAL_PORT,
  PROP_LIFETIME,
  PROP_GATEWAY,
  PROP_STATE,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_RENEWED,
  SIGNAL_CHANGED,
  SIGNAL_LOST,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

#define MIN_RENEW_MS     500
#define MIN_RETRY_MS     1000
#define MAX_RETRY_MS     60000

static void schedule_renewal (NatkitPortMapping *self,
                              guint              delay_ms);

static void
stop_renewal (NatkitPortMapping *self)
{
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  if (priv->renew_source != NULL)
    {
      g_source_destroy (priv->renew_source);
      g_clear_pointer (&priv->renew_source, g_source_unref);
    }
  g_cancellable_cancel (priv->renew_cancellable);
}

static void
natkit_port_mapping_dispose (GObject *object)
{
  NatkitPortMapping *self = NATKIT_PORT_MAPPING (object);
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  stop_renewal (self);

  /* best effort: the task keeps us alive until the gateway answered */
  if (priv->granted && !priv->releasing &&
      priv->state != NATKIT_PORT_MAPPING_STATE_RELEASED)
    natkit_port_mapping_release_async (self, NULL, NULL, NULL);

  G_OBJECT_CLASS (natkit_port_mapping_parent_class)->dispose (object);
}

static void
natkit_port_mapping_finalize (GObject *object)
{
  NatkitPortMapping *self = NATKIT_PORT_MAPPING (object);
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  g_free (priv->method);
  g_free (priv->internal_address);
  g_free (priv->external_address);
  g_free (priv->gateway);
  g_free (priv->record_file);
  g_clear_object (&priv->renew_cancellable);
  g_main_context_unref (priv->context);

  G_OBJECT_CLASS (natkit_port_mapping_parent_class)->finalize (object);
}

static void
natkit_port_mapping_get_property (GObject    *object,
                                  guint       prop_id,
                                  GValue     *value,
                                  GParamSpec *pspec)
{
  NatkitPortMapping *self = NATKIT_PORT_MAPPING (object);
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  switch (prop_id)
    {
    case PROP_METHOD:
      g_value_set_string (value, priv->method);
      break;
    case PROP_PROTOCOL:
      g_value_set_enum (value, priv->protocol);
      break;
    case PROP_INTERNAL_ADDRESS:
      g_value_set_string (value, priv->internal_address);
      break;
    case PROP_INTERNAL_PORT:
      g_value_set_uint (value, priv->internal_port);
      break;
    case PROP_EXTERNAL_ADDRESS:
      g_value_set_string (value, priv->external_address);
      break;
    case PROP_EXTERNAL_PORT:
      g_value_set_uint (value, priv->external_port);
      break;
    case PROP_LIFETIME:
      g_value_set_uint (value, priv->lifetime);
      break;
    case PROP_GATEWAY:
      g_value_set_string (value, priv->gateway);
      break;
    case PROP_STATE:
      g_value_set_enum (value, priv->state);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_port_mapping_set_property (GObject      *object,
                                  guint         prop_id,
                                  const GValue *value,
                                  GParamSpec   *pspec)
{
  NatkitPortMapping *self = NATKIT_PORT_MAPPING (object);
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  switch (prop_id)
    {
    case PROP_METHOD:
      priv->method = g_value_dup_string (value);
      break;
    case PROP_PROTOCOL:
      priv->protocol = g_value_get_enum (value);
      break;
    case PROP_INTERNAL_ADDRESS:
      priv->internal_address = g_value_dup_string (value);
      break;
    case PROP_INTERNAL_PORT:
      priv->internal_port = g_value_get_uint (value);
      break;
    case PROP_GATEWAY:
      priv->gateway = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_port_mapping_class_init (NatkitPortMappingClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags co = G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS;
  GParamFlags ro = G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;

  object_class->dispose = natkit_port_mapping_dispose;
  object_class->finalize = natkit_port_mapping_finalize;
  object_class->get_property = natkit_port_mapping_get_property;
  object_class->set_property = natkit_port_mapping_set_property;

  /**
   * NatkitPortMapping:method:
   *
   * The protocol that made the mapping: `upnp`, `natpmp` or `pcp`.
   */
  properties[PROP_METHOD] =
    g_param_spec_string ("method", NULL, NULL, NULL, co);
  /**
   * NatkitPortMapping:protocol:
   *
   * The forwarded protocol.
   */
  properties[PROP_PROTOCOL] =
    g_param_spec_enum ("protocol", NULL, NULL, NATKIT_TYPE_IP_PROTOCOL,
                       NATKIT_IP_PROTOCOL_UDP, co);
  /**
   * NatkitPortMapping:internal-address:
   *
   * The host address the gateway forwards to.
   */
  properties[PROP_INTERNAL_ADDRESS] =
    g_param_spec_string ("internal-address", NULL, NULL, NULL, co);
  /**
   * NatkitPortMapping:internal-port:
   *
   * The port the gateway forwards to.
   */
  properties[PROP_INTERNAL_PORT] =
    g_param_spec_uint ("internal-port", NULL, NULL, 0, G_MAXUINT16, 0, co);
  /**
   * NatkitPortMapping:external-address:
   *
   * The gateway's public address, as the gateway reports it.
   */
  properties[PROP_EXTERNAL_ADDRESS] =
    g_param_spec_string ("external-address", NULL, NULL, NULL, ro);
  /**
   * NatkitPortMapping:external-port:
   *
   * The public port the gateway gave.
   */
  properties[PROP_EXTERNAL_PORT] =
    g_param_spec_uint ("external-port", NULL, NULL, 0, G_MAXUINT16, 0, ro);
  /**
   * NatkitPortMapping:lifetime:
   *
   * The lease the gateway granted at the last renewal, in seconds; 0 for
   * a permanent lease (a UPnP gateway that only has those).
   */
  properties[PROP_LIFETIME] =
    g_param_spec_uint ("lifetime", NULL, NULL, 0, G_MAXUINT32, 0, ro);
  /**
   * NatkitPortMapping:gateway:
   *
   * The gateway holding the mapping (an address, or a UPnP control URL).
   */
  properties[PROP_GATEWAY] =
    g_param_spec_string ("gateway", NULL, NULL, NULL, co);
  /**
   * NatkitPortMapping:state:
   *
   * Whether the mapping is active, lost or released.
   */
  properties[PROP_STATE] =
    g_param_spec_enum ("state", NULL, NULL, NATKIT_TYPE_PORT_MAPPING_STATE,
                       NATKIT_PORT_MAPPING_STATE_ACTIVE, ro);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * NatkitPortMapping::renewed:
   * @self: the mapping
   *
   * The gateway renewed the mapping (or re-created it after a restart)
   * with the same public address and port.
   */
  signals[SIGNAL_RENEWED] =
    g_signal_new ("renewed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  G_STRUCT_OFFSET (NatkitPortMappingClass, renewed),
                  NULL, NULL, NULL, G_TYPE_NONE, 0);
  /**
   * NatkitPortMapping::changed:
   * @self: the mapping
   *
   * The public address or port changed: the gateway re-created the mapping
   * after a restart and gave another port, or its public address changed.
   * Tell your peers the new [property@Natkit.PortMapping:external-port].
   */
  signals[SIGNAL_CHANGED] =
    g_signal_new ("changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  G_STRUCT_OFFSET (NatkitPortMappingClass, changed),
                  NULL, NULL, NULL, G_TYPE_NONE, 0);
  /**
   * NatkitPortMapping::lost:
   * @self: the mapping
   * @error: why it could not be renewed
   *
   * The mapping expired before it could be renewed: the gateway stopped
   * answering or refused. natkit keeps trying; if the gateway comes back
   * the mapping becomes active again with ::renewed or ::changed.
   */
  signals[SIGNAL_LOST] =
    g_signal_new ("lost", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  G_STRUCT_OFFSET (NatkitPortMappingClass, lost),
                  NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
natkit_port_mapping_init (NatkitPortMapping *self)
{
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  priv->context = g_main_context_ref_thread_default ();
  priv->renew_cancellable = g_cancellable_new ();
  priv->expires_at = G_MAXINT64;
}

#define GETTER(type, name, field, fallback)                                   \
type                                                                          \
natkit_port_mapping_get_##name (NatkitPortMapping *self)                      \
{                                                                             \
  NatkitPortMappingPrivate *priv;                                             \
                                                                              \
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING (self), fallback);             \
  priv = natkit_port_mapping_get_instance_private (self);                     \
  return priv->field;                                                         \
}

/**
 * natkit_port_mapping_get_method:
 * @self: a mapping
 *
 * Returns: `upnp`, `natpmp` or `pcp`
 */
GETTER (const char *, method, method, NULL)
/**
 * natkit_port_mapping_get_protocol:
 * @self: a mapping
 *
 * Returns: the forwarded protocol
 */
GETTER (NatkitIpProtocol, protocol, protocol, NATKIT_IP_PROTOCOL_UDP)
/**
 * natkit_port_mapping_get_internal_address:
 * @self: a mapping
 *
 * Returns: (nullable): the host address the gateway forwards to
 */
GETTER (const char *, internal_address, internal_address, NULL)
/**
 * natkit_port_mapping_get_internal_port:
 * @self: a mapping
 *
 * Returns: the port the gateway forwards to
 */
GETTER (guint16, internal_port, internal_port, 0)
/**
 * natkit_port_mapping_get_external_address:
 * @self: a mapping
 *
 * Returns: (nullable): the gateway's public address
 */
GETTER (const char *, external_address, external_address, NULL)
/**
 * natkit_port_mapping_get_external_port:
 * @self: a mapping
 *
 * Returns: the public port
 */
GETTER (guint16, external_port, external_port, 0)
/**
 * natkit_port_mapping_get_lifetime:
 * @self: a mapping
 *
 * Returns: the granted lease in seconds, 0 for a permanent one
 */
GETTER (guint32, lifetime, lifetime, 0)
/**
 * natkit_port_mapping_get_gateway:
 * @self: a mapping
 *
 * Returns: (nullable): the gateway holding the mapping
 */
GETTER (const char *, gateway, gateway, NULL)
/**
 * natkit_port_mapping_get_state:
 * @self: a mapping
 *
 * Returns: whether the mapping is active, lost or released
 */
GETTER (NatkitPortMappingState, state, state, NATKIT_PORT_MAPPING_STATE_RELEASED)
/**
 * natkit_port_mapping_get_renewals:
 * @self: a mapping
 *
 * Returns: how many times the gateway renewed or re-created the mapping
 */
GETTER (guint, renewals, renewals, 0)

static void
set_state (NatkitPortMapping      *self,
           NatkitPortMappingState  state)
{
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  if (priv->state == state)
    return;
  priv->state = state;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
}

/* ---- the record in the state folder ------------------------------------ */

/**
 * natkit_port_mapping_to_record:
 * @self: a mapping
 *
 * Describes the mapping with everything needed to delete it later, from
 * another process: `method`, `protocol` (`udp` or `tcp`),
 * `internal-address`, `internal-port`, `external-address`,
 * `external-port`, `lifetime`, `gateway`, and the plugin's own keys.
 *
 * Returns: (transfer full): a `a{sv}` dictionary
 */
GVariant *
natkit_port_mapping_to_record (NatkitPortMapping *self)
{
  NatkitPortMappingPrivate *priv;
  NatkitPortMappingClass *klass;
  GVariantDict dict;

  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING (self), NULL);
  priv = natkit_port_mapping_get_instance_private (self);
  klass = NATKIT_PORT_MAPPING_GET_CLASS (self);

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "method", "s", priv->method ? priv->method : "");
  g_variant_dict_insert (&dict, "protocol", "s",
                         priv->protocol == NATKIT_IP_PROTOCOL_TCP ? "tcp" : "udp");
  g_variant_dict_insert (&dict, "internal-address", "s",
                         priv->internal_address ? priv->internal_address : "");
  g_variant_dict_insert (&dict, "internal-port", "q", priv->internal_port);
  g_variant_dict_insert (&dict, "external-address", "s",
                         priv->external_address ? priv->external_address : "");
  g_variant_dict_insert (&dict, "external-port", "q", priv->external_port);
  g_variant_dict_insert (&dict, "lifetime", "u", priv->lifetime);
  g_variant_dict_insert (&dict, "gateway", "s", priv->gateway ? priv->gateway : "");
  if (klass->add_to_record != NULL)
    klass->add_to_record (self, &dict);
  return g_variant_ref_sink (g_variant_dict_end (&dict));
}

static void
write_record (NatkitPortMapping *self)
{
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);
  g_autoptr(GVariant) record = NULL;
  g_autoptr(JsonNode) node = NULL;
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;

  if (priv->record_file == NULL || !priv->granted)
    return;

  record = natkit_port_mapping_to_record (self);
  node = json_gvariant_serialize (record);
  json_object_set_int_member (json_node_get_object (node), "pid", getpid ());
  json_object_set_int_member (json_node_get_object (node), "start-time",
                              _natkit_process_start_time (getpid ()));
  text = json_to_string (node, TRUE);
  if (!g_file_set_contents_full (priv->record_file, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_warning ("Could not record the port mapping in %s: %s; "
               "“nat-tool unmap --all” will not know about it",
               priv->record_file, error->message);
}

void
_natkit_port_mapping_set_record_file (NatkitPortMapping *self,
                                      const char        *filename)
{
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  g_free (priv->record_file);
  priv->record_file = g_strdup (filename);
  write_record (self);
}

/* ---- renewal ------------------------------------------------------------ */

static void
auto_renew_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  NatkitPortMapping *self = NATKIT_PORT_MAPPING (source);
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);
  NatkitPortMappingClass *klass = NATKIT_PORT_MAPPING_GET_CLASS (self);
  g_autoptr(GError) error = NULL;
  gint64 now;
  guint delay_ms;

  priv->renewing = FALSE;
  if (klass->renew_finish (self, result, &error))
    return;   /* natkit_port_mapping_update() scheduled the next one */
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || priv->releasing)
    return;

  now = g_get_monotonic_time ();
  if (now >= priv->expires_at || priv->state == NATKIT_PORT_MAPPING_STATE_LOST)
    {
      natkit_port_mapping_set_lost (self, error);
      priv->retry_ms = priv->retry_ms == 0 ? MIN_RETRY_MS :
                       MIN (priv->retry_ms * 2, MAX_RETRY_MS);
      delay_ms = priv->retry_ms;
    }
  else
    {
      /* try again at half the remaining time, so several tries fit in */
      delay_ms = MAX (MIN_RETRY_MS, (priv->expires_at - now) / 1000 / 2);
    }
  g_debug ("renewal of %s port %u failed (%s); next try in %u ms",
           priv->method, priv->internal_port, error->message, delay_ms);
  schedule_renewal (self, delay_ms);
}

static gboolean
renew_timeout_cb (gpointer user_data)
{
  NatkitPortMapping *self = user_data;
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);
  NatkitPortMappingClass *klass = NATKIT_PORT_MAPPING_GET_CLASS (self);

  g_clear_pointer (&priv->renew_source, g_source_unref);
  if (priv->renewing || priv->releasing)
    return G_SOURCE_REMOVE;

  priv->renewing = TRUE;
  g_clear_object (&priv->renew_cancellable);
  priv->renew_cancellable = g_cancellable_new ();
  klass->renew_async (self, priv->renew_cancellable, auto_renew_cb, NULL);
  return G_SOURCE_REMOVE;
}

static void
schedule_renewal (NatkitPortMapping *self,
                  guint              delay_ms)
{
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);

  if (priv->renew_source != NULL)
    {
      g_source_destroy (priv->renew_source);
      g_clear_pointer (&priv->renew_source, g_source_unref);
    }
  priv->renew_source = g_timeout_source_new (delay_ms);
  g_source_set_callback (priv->renew_source, renew_timeout_cb, self, NULL);
  g_source_set_name (priv->renew_source, "[natkit] port mapping renewal");
  g_source_attach (priv->renew_source, priv->context);
}

/**
 * natkit_port_mapping_update:
 * @self: a mapping
 * @external_address: (nullable): the gateway's public address
 * @external_port: the public port the gateway gave
 * @lifetime: the lease it granted in seconds, 0 for a permanent one
 *
 * For plugins: records that the gateway granted (or renewed, or
 * re-created) the mapping. The first call makes the mapping active; later
 * ones emit [signal@Natkit.PortMapping::renewed] or
 * [signal@Natkit.PortMapping::changed]. The next renewal is scheduled
 * between 1/2 and 5/8 of @lifetime when the class implements `renew_async`.
 */
void
natkit_port_mapping_update (NatkitPortMapping *self,
                            const char        *external_address,
                            guint16            external_port,
                            guint32            lifetime)
{
  NatkitPortMappingPrivate *priv;
  NatkitPortMappingClass *klass;
  gboolean first, changed;

  g_return_if_fail (NATKIT_IS_PORT_MAPPING (self));
  priv = natkit_port_mapping_get_instance_private (self);
  klass = NATKIT_PORT_MAPPING_GET_CLASS (self);

  if (priv->releasing || priv->state == NATKIT_PORT_MAPPING_STATE_RELEASED)
    return;

  g_object_freeze_notify (G_OBJECT (self));
  first = !priv->granted;
  changed = !first && (priv->external_port != external_port ||
                       g_strcmp0 (priv->external_address, external_address) != 0);
  priv->granted = TRUE;
  if (g_strcmp0 (priv->external_address, external_address) != 0)
    {
      g_free (priv->external_address);
      priv->external_address = g_strdup (external_address);
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EXTERNAL_ADDRESS]);
    }
  if (priv->external_port != external_port)
    {
      priv->external_port = external_port;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EXTERNAL_PORT]);
    }
  if (priv->lifetime != lifetime)
    {
      priv->lifetime = lifetime;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LIFETIME]);
    }
  priv->expires_at = lifetime > 0 ?
                     g_get_monotonic_time () + (gint64) lifetime * G_USEC_PER_SEC :
                     G_MAXINT64;
  priv->retry_ms = 0;
  if (!first)
    priv->renewals++;
  set_state (self, NATKIT_PORT_MAPPING_STATE_ACTIVE);
  g_object_thaw_notify (G_OBJECT (self));

  /* RFC 6887 section 11.2.1: renew between 1/2 and 5/8 of the lifetime,
   * at random, so mappings made together do not all renew together */
  if (klass->renew_async != NULL && lifetime > 0)
    schedule_renewal (self, MAX (MIN_RENEW_MS,
                                 (guint64) (lifetime * 1000.0 *
                                            g_random_double_range (0.5, 0.625))));
  /* the record only changes with the public port or address (a renewal
   * that keeps them costs no disk write) */
  if (first || changed)
    write_record (self);

  if (changed)
    g_signal_emit (self, signals[SIGNAL_CHANGED], 0);
  else if (!first)
    g_signal_emit (self, signals[SIGNAL_RENEWED], 0);
}

/**
 * natkit_port_mapping_set_lost:
 * @self: a mapping
 * @error: why the mapping is gone
 *
 * For plugins: the mapping is gone and could not be re-created (for now).
 * Emits [signal@Natkit.PortMapping::lost] once.
 */
void
natkit_port_mapping_set_lost (NatkitPortMapping *self,
                              const GError      *error)
{
  NatkitPortMappingPrivate *priv;

  g_return_if_fail (NATKIT_IS_PORT_MAPPING (self));
  g_return_if_fail (error != NULL);
  priv = natkit_port_mapping_get_instance_private (self);

  if (priv->releasing || priv->state != NATKIT_PORT_MAPPING_STATE_ACTIVE)
    return;
  set_state (self, NATKIT_PORT_MAPPING_STATE_LOST);
  g_signal_emit (self, signals[SIGNAL_LOST], 0, error);
}

/**
 * natkit_port_mapping_renew_async:
 * @self: a mapping
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the gateway answered
 * @user_data: data for @callback
 *
 * Renews the mapping now instead of at half its lifetime (after a network
 * change, say). Mappings whose plugin library renews them itself (UPnP
 * through gupnp-igd) fail with %NATKIT_ERROR_NOT_APPLICABLE.
 */
void
natkit_port_mapping_renew_async (NatkitPortMapping   *self,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  NatkitPortMappingClass *klass;
  NatkitPortMappingPrivate *priv;

  g_return_if_fail (NATKIT_IS_PORT_MAPPING (self));
  klass = NATKIT_PORT_MAPPING_GET_CLASS (self);
  priv = natkit_port_mapping_get_instance_private (self);

  if (klass->renew_async == NULL || priv->releasing ||
      priv->state == NATKIT_PORT_MAPPING_STATE_RELEASED)
    {
      g_autoptr(GTask) task = g_task_new (self, cancellable, callback, user_data);

      g_task_set_source_tag (task, natkit_port_mapping_renew_async);
      if (klass->renew_async == NULL)
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                                 "%s mappings are renewed by the plugin itself",
                                 priv->method);
      else
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                 "The %s mapping of port %u was released",
                                 priv->method, priv->internal_port);
      return;
    }
  klass->renew_async (self, cancellable, callback, user_data);
}

/**
 * natkit_port_mapping_renew_finish:
 * @self: a mapping
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: whether the gateway renewed the mapping
 */
gboolean
natkit_port_mapping_renew_finish (NatkitPortMapping  *self,
                                  GAsyncResult       *result,
                                  GError            **error)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING (self), FALSE);

  if (g_task_is_valid (result, self) &&
      g_task_get_source_tag (G_TASK (result)) == natkit_port_mapping_renew_async)
    return g_task_propagate_boolean (G_TASK (result), error);
  return NATKIT_PORT_MAPPING_GET_CLASS (self)->renew_finish (self, result, error);
}

/* ---- release ------------------------------------------------------------ */

static void
release_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  NatkitPortMapping *self = NATKIT_PORT_MAPPING (source);
  NatkitPortMappingPrivate *priv = natkit_port_mapping_get_instance_private (self);
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;

  set_state (self, NATKIT_PORT_MAPPING_STATE_RELEASED);
  if (!NATKIT_PORT_MAPPING_GET_CLASS (self)->release_finish (self, result, &error))
    {
      /* keep the record: “nat-tool unmap --all” can try again */
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (priv->record_file != NULL)
    g_unlink (priv->record_file);
  g_task_return_boolean (task, TRUE);
}

/**
 * natkit_port_mapping_release_async:
 * @self: a mapping
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async) (nullable): called when the gateway confirmed
 * @user_data: data for @callback
 *
 * Deletes the mapping on the gateway and stops renewing it. Releasing a
 * released mapping does nothing.
 */
void
natkit_port_mapping_release_async (NatkitPortMapping   *self,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  NatkitPortMappingPrivate *priv;
  g_autoptr(GTask) task = NULL;

  g_return_if_fail (NATKIT_IS_PORT_MAPPING (self));
  priv = natkit_port_mapping_get_instance_private (self);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_port_mapping_release_async);

  if (priv->releasing || priv->state == NATKIT_PORT_MAPPING_STATE_RELEASED)
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  priv->releasing = TRUE;
  stop_renewal (self);
  NATKIT_PORT_MAPPING_GET_CLASS (self)->release_async (self, cancellable, release_cb,
                                                        g_steal_pointer (&task));
}

/**
 * natkit_port_mapping_release_finish:
 * @self: a mapping
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: whether the gateway confirmed the deletion. When it did not,
 *   the mapping still expires after its lifetime.
 */
gboolean
natkit_port_mapping_release_finish (NatkitPortMapping  *self,
                                    GAsyncResult       *result,
                                    GError            **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  return g_task_propagate_boolean (G_TASK (result), error);
}
