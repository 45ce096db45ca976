/* natkit-port-mapping-request.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit.h"

/**
 * NatkitPortMappingRequest:
 *
 * What a [iface@Natkit.PortMapper] is asked to do: forward a UDP or TCP
 * port of this host from the gateway's public address.
 *
 * The manager fills it from the arguments of
 * [method@Natkit.Manager.map_port_async] and from the configuration (the
 * gateway address, the time limit); plugins read it.
 */
struct _NatkitPortMappingRequest
{
  GObject           parent_instance;

  NatkitIpProtocol  protocol;
  guint16           internal_port;
  guint16           external_port;
  guint32           lifetime;
  char             *method;
  char             *gateway;
  char             *internal_address;
  char             *description;
  guint             timeout_ms;
};

G_DEFINE_FINAL_TYPE (NatkitPortMappingRequest, natkit_port_mapping_request, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PROTOCOL,
  PROP_INTERNAL_PORT,
  PROP_EXTERNAL_PORT,
  PROP_LIFETIME,
  PROP_METHOD,
  PROP_GATEWAY,
  PROP_INTERNAL_ADDRESS,
  PROP_DESCRIPTION,
  PROP_TIMEOUT,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

#define DEFAULT_LIFETIME   7200    /* RFC 6886 section 3.3's recommendation */
#define DEFAULT_TIMEOUT_MS 4000

static void
natkit_port_mapping_request_finalize (GObject *object)
{
  NatkitPortMappingRequest *self = NATKIT_PORT_MAPPING_REQUEST (object);

  g_free (self->method);
  g_free (self->gateway);
  g_free (self->internal_address);
  g_free (self->description);

  G_OBJECT_CLASS (natkit_port_mapping_request_parent_class)->finalize (object);
}

static void
natkit_port_mapping_request_get_property (GObject    *object,
                                          guint       prop_id,
                                          GValue     *value,
                                          GParamSpec *pspec)
{
  NatkitPortMappingRequest *self = NATKIT_PORT_MAPPING_REQUEST (object);

  switch (prop_id)
    {
    case PROP_PROTOCOL:
      g_value_set_enum (value, self->protocol);
      break;
    case PROP_INTERNAL_PORT:
      g_value_set_uint (value, self->internal_port);
      break;
    case PROP_EXTERNAL_PORT:
      g_value_set_uint (value, self->external_port);
      break;
    case PROP_LIFETIME:
      g_value_set_uint (value, self->lifetime);
      break;
    case PROP_METHOD:
      g_value_set_string (value, self->method);
      break;
    case PROP_GATEWAY:
      g_value_set_string (value, self->gateway);
      break;
    case PROP_INTERNAL_ADDRESS:
      g_value_set_string (value, self->internal_address);
      break;
    case PROP_DESCRIPTION:
      g_value_set_string (value, self->description);
      break;
    case PROP_TIMEOUT:
      g_value_set_uint (value, self->timeout_ms);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_port_mapping_request_set_property (GObject      *object,
                                          guint         prop_id,
                                          const GValue *value,
                                          GParamSpec   *pspec)
{
  NatkitPortMappingRequest *self = NATKIT_PORT_MAPPING_REQUEST (object);

  switch (prop_id)
    {
    case PROP_PROTOCOL:
      self->protocol = g_value_get_enum (value);
      break;
    case PROP_INTERNAL_PORT:
      self->internal_port = g_value_get_uint (value);
      break;
    case PROP_EXTERNAL_PORT:
      natkit_port_mapping_request_set_external_port (self, g_value_get_uint (value));
      break;
    case PROP_LIFETIME:
      natkit_port_mapping_request_set_lifetime (self, g_value_get_uint (value));
      break;
    case PROP_METHOD:
      natkit_port_mapping_request_set_method (self, g_value_get_string (value));
      break;
    case PROP_GATEWAY:
      natkit_port_mapping_request_set_gateway (self, g_value_get_string (value));
      break;
    case PROP_INTERNAL_ADDRESS:
      natkit_port_mapping_request_set_internal_address (self, g_value_get_string (value));
      break;
    case PROP_DESCRIPTION:
      natkit_port_mapping_request_set_description (self, g_value_get_string (value));
      break;
    case PROP_TIMEOUT:
      natkit_port_mapping_request_set_timeout (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_port_mapping_request_class_init (NatkitPortMappingRequestClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags rw = G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS;
  GParamFlags co = G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY | G_PARAM_STATIC_STRINGS;

  object_class->finalize = natkit_port_mapping_request_finalize;
  object_class->get_property = natkit_port_mapping_request_get_property;
  object_class->set_property = natkit_port_mapping_request_set_property;

  /**
   * NatkitPortMappingRequest:protocol:
   *
   * The protocol to forward.
   */
  properties[PROP_PROTOCOL] =
    g_param_spec_enum ("protocol", NULL, NULL, NATKIT_TYPE_IP_PROTOCOL,
                       NATKIT_IP_PROTOCOL_UDP, co);
  /**
   * NatkitPortMappingRequest:internal-port:
   *
   * The port on this host that the gateway forwards to.
   */
  properties[PROP_INTERNAL_PORT] =
    g_param_spec_uint ("internal-port", NULL, NULL, 1, G_MAXUINT16, 1, co);
  /**
   * NatkitPortMappingRequest:external-port:
   *
   * The public port asked for, or 0 to let the gateway choose. It is a
   * suggestion: the gateway may give another one.
   */
  properties[PROP_EXTERNAL_PORT] =
    g_param_spec_uint ("external-port", NULL, NULL, 0, G_MAXUINT16, 0, rw);
  /**
   * NatkitPortMappingRequest:lifetime:
   *
   * The lease asked for, in seconds. The mapping is renewed at half its
   * granted lifetime for as long as it is held.
   */
  properties[PROP_LIFETIME] =
    g_param_spec_uint ("lifetime", NULL, NULL, 1, G_MAXUINT32, DEFAULT_LIFETIME, rw);
  /**
   * NatkitPortMappingRequest:method:
   *
   * The one protocol to use (`upnp`, `natpmp`, `pcp`), or %NULL for the
   * plugin's own order (the natpmp plugin tries PCP, then NAT-PMP).
   */
  properties[PROP_METHOD] =
    g_param_spec_string ("method", NULL, NULL, NULL, rw);
  /**
   * NatkitPortMappingRequest:gateway:
   *
   * The gateway's address (`HOST` or `HOST:PORT`) for PCP and NAT-PMP when
   * it is not the default route's gateway, or %NULL for the default route.
   */
  properties[PROP_GATEWAY] =
    g_param_spec_string ("gateway", NULL, NULL, NULL, rw);
  /**
   * NatkitPortMappingRequest:internal-address:
   *
   * The host address to forward to, or %NULL for this host's address on
   * the way to the gateway.
   */
  properties[PROP_INTERNAL_ADDRESS] =
    g_param_spec_string ("internal-address", NULL, NULL, NULL, rw);
  /**
   * NatkitPortMappingRequest:description:
   *
   * The label the gateway shows next to the mapping (UPnP only).
   */
  properties[PROP_DESCRIPTION] =
    g_param_spec_string ("description", NULL, NULL, "natkit", rw);
  /**
   * NatkitPortMappingRequest:timeout:
   *
   * How long, in milliseconds, the plugin may take to create the mapping.
   */
  properties[PROP_TIMEOUT] =
    g_param_spec_uint ("timeout", NULL, NULL, 1, G_MAXUINT, DEFAULT_TIMEOUT_MS, rw);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
natkit_port_mapping_request_init (NatkitPortMappingRequest *self)
{
  self->lifetime = DEFAULT_LIFETIME;
  self->timeout_ms = DEFAULT_TIMEOUT_MS;
  self->description = g_strdup ("natkit");
}

/**
 * natkit_port_mapping_request_new:
 * @protocol: the protocol to forward
 * @internal_port: the port on this host, not 0
 *
 * Returns: (transfer full): a new request with the default lifetime
 *   (7200 s) and time limit (4 s)
 */
NatkitPortMappingRequest *
natkit_port_mapping_request_new (NatkitIpProtocol protocol,
                                 guint16          internal_port)
{
  g_return_val_if_fail (internal_port != 0, NULL);

  return g_object_new (NATKIT_TYPE_PORT_MAPPING_REQUEST,
                       "protocol", protocol,
                       "internal-port", (guint) internal_port,
                       NULL);
}

/**
 * natkit_port_mapping_request_copy:
 * @self: a request
 *
 * Returns: (transfer full): a new request with the same values
 */
NatkitPortMappingRequest *
natkit_port_mapping_request_copy (NatkitPortMappingRequest *self)
{
  NatkitPortMappingRequest *copy;

  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), NULL);

  copy = natkit_port_mapping_request_new (self->protocol, self->internal_port);
  copy->external_port = self->external_port;
  copy->lifetime = self->lifetime;
  copy->method = g_strdup (self->method);
  copy->gateway = g_strdup (self->gateway);
  copy->internal_address = g_strdup (self->internal_address);
  g_free (copy->description);
  copy->description = g_strdup (self->description);
  copy->timeout_ms = self->timeout_ms;
  return copy;
}

/**
 * natkit_port_mapping_request_get_protocol:
 * @self: a request
 *
 * Returns: the protocol to forward
 */
NatkitIpProtocol
natkit_port_mapping_request_get_protocol (NatkitPortMappingRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), NATKIT_IP_PROTOCOL_UDP);
  return self->protocol;
}

/**
 * natkit_port_mapping_request_get_internal_port:
 * @self: a request
 *
 * Returns: the port on this host
 */
guint16
natkit_port_mapping_request_get_internal_port (NatkitPortMappingRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), 0);
  return self->internal_port;
}

/**
 * natkit_port_mapping_request_get_external_port:
 * @self: a request
 *
 * Returns: the suggested public port, or 0
 */
guint16
natkit_port_mapping_request_get_external_port (NatkitPortMappingRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), 0);
  return self->external_port;
}

/**
 * natkit_port_mapping_request_set_external_port:
 * @self: a request
 * @port: the suggested public port, or 0 to let the gateway choose
 *
 * Sets [property@Natkit.PortMappingRequest:external-port].
 */
void
natkit_port_mapping_request_set_external_port (NatkitPortMappingRequest *self,
                                               guint16                   port)
{
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self));
  if (self->external_port == port)
    return;
  self->external_port = port;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_EXTERNAL_PORT]);
}

/**
 * natkit_port_mapping_request_get_lifetime:
 * @self: a request
 *
 * Returns: the lease asked for, in seconds
 */
guint32
natkit_port_mapping_request_get_lifetime (NatkitPortMappingRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), DEFAULT_LIFETIME);
  return self->lifetime;
}

/**
 * natkit_port_mapping_request_set_lifetime:
 * @self: a request
 * @seconds: the lease to ask for, at least 1
 *
 * Sets [property@Natkit.PortMappingRequest:lifetime].
 */
void
natkit_port_mapping_request_set_lifetime (NatkitPortMappingRequest *self,
                                          guint32                   seconds)
{
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self));
  g_return_if_fail (seconds > 0);
  if (self->lifetime == seconds)
    return;
  self->lifetime = seconds;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LIFETIME]);
}

static gboolean
set_str (char       **field,
         const char  *value)
{
  if (g_strcmp0 (*field, value) == 0)
    return FALSE;
  g_free (*field);
  *field = g_strdup (value);
  return TRUE;
}

#define STRING_ACCESSORS(field, FIELD)                                          \
const char *                                                                    \
natkit_port_mapping_request_get_##field (NatkitPortMappingRequest *self)        \
{                                                                               \
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), NULL);           \
  return self->field;                                                           \
}                                                                               \
                                                                                \
void                                                                            \
natkit_port_mapping_request_set_##field (NatkitPortMappingRequest *self,        \
                                         const char               *value)       \
{                                                                               \
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self));                     \
  if (set_str (&self->field, value))                                            \
    g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_##FIELD]);       \
}

/**
 * natkit_port_mapping_request_get_method:
 * @self: a request
 *
 * Returns: (nullable): the one protocol to use, or %NULL for any
 */
/**
 * natkit_port_mapping_request_set_method:
 * @self: a request
 * @method: (nullable): `upnp`, `natpmp`, `pcp`, or %NULL for any
 *
 * Sets [property@Natkit.PortMappingRequest:method].
 */
STRING_ACCESSORS (method, METHOD)

/**
 * natkit_port_mapping_request_get_gateway:
 * @self: a request
 *
 * Returns: (nullable): the configured gateway, or %NULL for the default
 *   route's
 */
/**
 * natkit_port_mapping_request_set_gateway:
 * @self: a request
 * @gateway: (nullable): `HOST` or `HOST:PORT`, or %NULL
 *
 * Sets [property@Natkit.PortMappingRequest:gateway].
 */
STRING_ACCESSORS (gateway, GATEWAY)

/**
 * natkit_port_mapping_request_get_internal_address:
 * @self: a request
 *
 * Returns: (nullable): the host address to forward to, or %NULL for this
 *   host's
 */
/**
 * natkit_port_mapping_request_set_internal_address:
 * @self: a request
 * @address: (nullable): an IP address, or %NULL
 *
 * Sets [property@Natkit.PortMappingRequest:internal-address].
 */
STRING_ACCESSORS (internal_address, INTERNAL_ADDRESS)

/**
 * natkit_port_mapping_request_get_description:
 * @self: a request
 *
 * Returns: (nullable): the label for the gateway's table
 */
/**
 * natkit_port_mapping_request_set_description:
 * @self: a request
 * @description: (nullable): a label
 *
 * Sets [property@Natkit.PortMappingRequest:description].
 */
STRING_ACCESSORS (description, DESCRIPTION)

/**
 * natkit_port_mapping_request_get_timeout:
 * @self: a request
 *
 * Returns: the time limit in milliseconds
 */
guint
natkit_port_mapping_request_get_timeout (NatkitPortMappingRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self), DEFAULT_TIMEOUT_MS);
  return self->timeout_ms;
}

/**
 * natkit_port_mapping_request_set_timeout:
 * @self: a request
 * @timeout_ms: the time limit in milliseconds, at least 1
 *
 * Sets [property@Natkit.PortMappingRequest:timeout].
 */
void
natkit_port_mapping_request_set_timeout (NatkitPortMappingRequest *self,
                                         guint                     timeout_ms)
{
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (self));
  g_return_if_fail (timeout_ms > 0);
  if (self->timeout_ms == timeout_ms)
    return;
  self->timeout_ms = timeout_ms;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TIMEOUT]);
}

/* ---- the gateway -------------------------------------------------------- */

/* The default route's gateway from /proc/net/route (IPv4), or NULL. */
static GInetAddress *
default_gateway (void)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) lines = NULL;
  GInetAddress *best = NULL;

  /* Linux; elsewhere there is no default, only the configured gateway */
  guint64 best_metric = G_MAXUINT64;

  if (!g_file_get_contents ("/proc/net/route", &text, NULL, NULL))
    return NULL;
  lines = g_strsplit (text, "\n", 0);
  for (guint i = 1; lines[i] != NULL; i++)
    {
      g_auto(GStrv) f = g_strsplit_set (lines[i], " \t", 0);
      g_autoptr(GPtrArray) fields = g_ptr_array_new ();
      guint32 destination, gateway, flags;
      guint64 metric;

      for (guint j = 0; f[j] != NULL; j++)
        if (*f[j] != '\0')
          g_ptr_array_add (fields, f[j]);
      if (fields->len < 8)
        continue;
      destination = g_ascii_strtoull (g_ptr_array_index (fields, 1), NULL, 16);
      gateway = g_ascii_strtoull (g_ptr_array_index (fields, 2), NULL, 16);
      flags = g_ascii_strtoull (g_ptr_array_index (fields, 3), NULL, 16);
      metric = g_ascii_strtoull (g_ptr_array_index (fields, 6), NULL, 10);
      /* RTF_UP 0x1, RTF_GATEWAY 0x2; the file is in host byte order of
       * the network-order address, i.e. the bytes are already in order */
      if (destination != 0 || (flags & 0x3) != 0x3 || gateway == 0 ||
          metric >= best_metric)
        continue;
      g_clear_object (&best);
      best = g_inet_address_new_from_bytes ((const guint8 *) &gateway, G_SOCKET_FAMILY_IPV4);
      best_metric = metric;
    }
  return best;
}

/**
 * natkit_resolve_gateway:
 * @gateway: (nullable): `HOST` or `HOST:PORT` (an IPv4 address), or %NULL
 *   for the default route's gateway
 * @default_port: the port when @gateway names none
 * @error: return location for a #GError
 *
 * Finds the gateway a port mapper talks to: the one configured (see
 * [method@Natkit.Config.get_gateway] and
 * [method@Natkit.PortMappingRequest.get_gateway]), else the gateway of the
 * IPv4 default route with the lowest metric.
 *
 * Returns: (transfer full): the gateway's address and port, or %NULL with
 *   %NATKIT_ERROR_UNAVAILABLE (no default route) or
 *   %NATKIT_ERROR_INVALID_ARGUMENT (not an IPv4 address)
 */
GInetSocketAddress *
natkit_resolve_gateway (const char  *gateway,
                        guint16      default_port,
                        GError     **error)
{
  g_autoptr(GInetAddress) address = NULL;
  g_autofree char *host = NULL;
  guint port = default_port;

  if (gateway == NULL)
    {
      address = default_gateway ();
      if (address == NULL)
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                       "There is no IPv4 default route, so no gateway to ask for "
                       "a port mapping; set \"gateway\" in the configuration (or "
                       "--gateway) when the router is not the default route");
          return NULL;
        }
      return G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (address, port));
    }

  {
    const char *colon = strrchr (gateway, ':');
    char *end = NULL;

    if (colon != NULL && strchr (gateway, ':') == colon)
      {
        host = g_strndup (gateway, colon - gateway);
        port = g_ascii_strtoull (colon + 1, &end, 10);
        if (end == colon + 1 || *end != '\0' || port == 0 || port > 65535)
          port = 0;
      }
    else
      host = g_strdup (gateway);
  }
  address = g_inet_address_new_from_string (host);
  if (address == NULL || port == 0 ||
      g_inet_address_get_family (address) != G_SOCKET_FAMILY_IPV4)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "The gateway “%s” is not an IPv4 address with an optional "
                   "port (such as 192.168.1.1 or 192.168.1.1:5351)", gateway);
      return NULL;
    }
  return G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (address, port));
}

