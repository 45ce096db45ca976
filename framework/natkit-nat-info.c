/* natkit-nat-info.c: what NAT behavior detection found
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit-nat-info-private.h"

/**
 * NatkitNatInfo:
 *
 * The result of [method@Natkit.Manager.detect_nat_async]: the public
 * address, the NAT's mapping and filtering behavior in the terms of RFC 4787
 * (measured as RFC 5780 describes), hairpinning, and the classic name.
 *
 * Properties that could not be measured are `unknown`, and
 * [property@Natkit.NatInfo:tests-skipped] says which tests did not run and
 * why. [method@Natkit.NatInfo.describe] puts it all in words.
 */

G_DEFINE_FINAL_TYPE (NatkitNatInfo, natkit_nat_info, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PUBLIC_ADDRESS,
  PROP_PUBLIC_PORT,
  PROP_LOCAL_ADDRESS,
  PROP_MAPPING,
  PROP_FILTERING,
  PROP_NAT_TYPE,
  PROP_HAIRPINNING,
  PROP_SERVERS_USED,
  PROP_TESTS_SKIPPED,
  PROP_ELAPSED,
  PROP_PACKETS_SENT,
  PROP_GATEWAY_SERVICES,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

static void
natkit_nat_info_finalize (GObject *object)
{
  NatkitNatInfo *self = NATKIT_NAT_INFO (object);

  g_free (self->public_address);
  g_free (self->local_address);
  g_strfreev (self->servers_used);
  g_strfreev (self->tests_skipped);
  g_strfreev (self->gateway_services);

  G_OBJECT_CLASS (natkit_nat_info_parent_class)->finalize (object);
}

static void
natkit_nat_info_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  NatkitNatInfo *self = NATKIT_NAT_INFO (object);

  switch (prop_id)
    {
    case PROP_PUBLIC_ADDRESS: g_value_set_string (value, self->public_address); break;
    case PROP_PUBLIC_PORT: g_value_set_uint (value, self->public_port); break;
    case PROP_LOCAL_ADDRESS: g_value_set_string (value, self->local_address); break;
    case PROP_MAPPING: g_value_set_enum (value, self->mapping); break;
    case PROP_FILTERING: g_value_set_enum (value, self->filtering); break;
    case PROP_NAT_TYPE: g_value_set_enum (value, self->nat_type); break;
    case PROP_HAIRPINNING: g_value_set_enum (value, self->hairpinning); break;
    case PROP_SERVERS_USED: g_value_set_boxed (value, self->servers_used); break;
    case PROP_TESTS_SKIPPED: g_value_set_boxed (value, self->tests_skipped); break;
    case PROP_ELAPSED: g_value_set_uint (value, self->elapsed_ms); break;
    case PROP_PACKETS_SENT: g_value_set_uint (value, self->packets_sent); break;
    case PROP_GATEWAY_SERVICES: g_value_set_boxed (value, self->gateway_services); break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_nat_info_class_init (NatkitNatInfoClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

  object_class->finalize = natkit_nat_info_finalize;
  object_class->get_property = natkit_nat_info_get_property;

  /**
   * NatkitNatInfo:public-address:
   *
   * The public IP address the STUN server saw, or %NULL.
   */
  properties[PROP_PUBLIC_ADDRESS] = g_param_spec_string ("public-address", NULL, NULL, NULL, flags);
  /**
   * NatkitNatInfo:public-port:
   *
   * The public port of the first mapping, or 0.
   */
  properties[PROP_PUBLIC_PORT] = g_param_spec_uint ("public-port", NULL, NULL, 0, 65535, 0, flags);
  /**
   * NatkitNatInfo:local-address:
   *
   * The local address the tests ran from.
   */
  properties[PROP_LOCAL_ADDRESS] = g_param_spec_string ("local-address", NULL, NULL, NULL, flags);
  /**
   * NatkitNatInfo:mapping:
   *
   * The mapping behavior (RFC 4787 section 4.1).
   */
  properties[PROP_MAPPING] = g_param_spec_enum ("mapping", NULL, NULL, NATKIT_TYPE_NAT_BEHAVIOR,
                                                NATKIT_NAT_BEHAVIOR_UNKNOWN, flags);
  /**
   * NatkitNatInfo:filtering:
   *
   * The filtering behavior (RFC 4787 section 5).
   */
  properties[PROP_FILTERING] = g_param_spec_enum ("filtering", NULL, NULL, NATKIT_TYPE_NAT_BEHAVIOR,
                                                  NATKIT_NAT_BEHAVIOR_UNKNOWN, flags);
  /**
   * NatkitNatInfo:nat-type:
   *
   * The classic name of the behavior.
   */
  properties[PROP_NAT_TYPE] = g_param_spec_enum ("nat-type", NULL, NULL, NATKIT_TYPE_NAT_TYPE,
                                                 NATKIT_NAT_TYPE_UNKNOWN, flags);
  /**
   * NatkitNatInfo:hairpinning:
   *
   * Whether the NAT hairpins.
   */
  properties[PROP_HAIRPINNING] = g_param_spec_enum ("hairpinning", NULL, NULL, NATKIT_TYPE_HAIRPINNING,
                                                    NATKIT_HAIRPINNING_UNKNOWN, flags);
  /**
   * NatkitNatInfo:servers-used:
   *
   * The STUN servers whose answers the result rests on.
   */
  properties[PROP_SERVERS_USED] = g_param_spec_boxed ("servers-used", NULL, NULL, G_TYPE_STRV, flags);
  /**
   * NatkitNatInfo:tests-skipped:
   *
   * The tests that could not run, each with the reason.
   */
  properties[PROP_TESTS_SKIPPED] = g_param_spec_boxed ("tests-skipped", NULL, NULL, G_TYPE_STRV, flags);
  /**
   * NatkitNatInfo:elapsed:
   *
   * How long detection took, in milliseconds.
   */
  properties[PROP_ELAPSED] = g_param_spec_uint ("elapsed", NULL, NULL, 0, G_MAXUINT, 0, flags);
  /**
   * NatkitNatInfo:packets-sent:
   *
   * How many packets detection sent, retransmissions included.
   */
  properties[PROP_PACKETS_SENT] = g_param_spec_uint ("packets-sent", NULL, NULL, 0, G_MAXUINT, 0, flags);

  /**
   * NatkitNatInfo:gateway-services:
   *
   * The port mapping protocols the gateway answered (`pcp`, `natpmp`,
   * `upnp`), or %NULL when they were not probed.
   */
  properties[PROP_GATEWAY_SERVICES] = g_param_spec_boxed ("gateway-services", NULL, NULL, G_TYPE_STRV, flags);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
natkit_nat_info_init (NatkitNatInfo *self)
{
}

NatkitNatInfo *
_natkit_nat_info_new (void)
{
  NatkitNatInfo *self = g_object_new (NATKIT_TYPE_NAT_INFO, NULL);

  self->servers_used = g_new0 (char *, 1);
  self->tests_skipped = g_new0 (char *, 1);
  return self;
}

NatkitNatType
_natkit_nat_type_classify (gboolean          behind_nat,
                           NatkitNatBehavior mapping,
                           NatkitNatBehavior filtering)
{
  if (!behind_nat)
    return NATKIT_NAT_TYPE_OPEN;
  if (mapping == NATKIT_NAT_BEHAVIOR_ADDRESS_DEPENDENT ||
      mapping == NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT)
    return NATKIT_NAT_TYPE_SYMMETRIC;
  if (mapping != NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT)
    return NATKIT_NAT_TYPE_UNKNOWN;
  switch (filtering)
    {
    case NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT:
      return NATKIT_NAT_TYPE_FULL_CONE;
    case NATKIT_NAT_BEHAVIOR_ADDRESS_DEPENDENT:
      return NATKIT_NAT_TYPE_RESTRICTED_CONE;
    case NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT:
      return NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE;
    case NATKIT_NAT_BEHAVIOR_UNKNOWN:
    default:
      return NATKIT_NAT_TYPE_UNKNOWN;
    }
}

/**
 * natkit_nat_info_get_public_address:
 * @self: NAT information
 *
 * Returns: (nullable): the public IP address
 */
const char *
natkit_nat_info_get_public_address (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NULL);
  return self->public_address;
}

/**
 * natkit_nat_info_get_public_port:
 * @self: NAT information
 *
 * Returns: the public port of the first mapping, or 0
 */
guint
natkit_nat_info_get_public_port (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), 0);
  return self->public_port;
}

/**
 * natkit_nat_info_get_local_address:
 * @self: NAT information
 *
 * Returns: (nullable): the local address the tests ran from
 */
const char *
natkit_nat_info_get_local_address (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NULL);
  return self->local_address;
}

/**
 * natkit_nat_info_get_mapping:
 * @self: NAT information
 *
 * Returns: the mapping behavior
 */
NatkitNatBehavior
natkit_nat_info_get_mapping (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NATKIT_NAT_BEHAVIOR_UNKNOWN);
  return self->mapping;
}

/**
 * natkit_nat_info_get_filtering:
 * @self: NAT information
 *
 * Returns: the filtering behavior
 */
NatkitNatBehavior
natkit_nat_info_get_filtering (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NATKIT_NAT_BEHAVIOR_UNKNOWN);
  return self->filtering;
}

/**
 * natkit_nat_info_get_nat_type:
 * @self: NAT information
 *
 * Returns: the classic name of the behavior
 */
NatkitNatType
natkit_nat_info_get_nat_type (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NATKIT_NAT_TYPE_UNKNOWN);
  return self->nat_type;
}

/**
 * natkit_nat_info_get_hairpinning:
 * @self: NAT information
 *
 * Returns: whether the NAT hairpins
 */
NatkitHairpinning
natkit_nat_info_get_hairpinning (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NATKIT_HAIRPINNING_UNKNOWN);
  return self->hairpinning;
}

/**
 * natkit_nat_info_get_servers_used:
 * @self: NAT information
 *
 * Returns: (transfer none): the servers the result rests on
 */
const char * const *
natkit_nat_info_get_servers_used (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NULL);
  return (const char * const *) self->servers_used;
}

/**
 * natkit_nat_info_get_tests_skipped:
 * @self: NAT information
 *
 * Returns: (transfer none): the tests that could not run, with reasons
 */
const char * const *
natkit_nat_info_get_tests_skipped (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NULL);
  return (const char * const *) self->tests_skipped;
}

/**
 * natkit_nat_info_get_elapsed:
 * @self: NAT information
 *
 * Returns: how long detection took, in milliseconds
 */
guint
natkit_nat_info_get_elapsed (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), 0);
  return self->elapsed_ms;
}

/**
 * natkit_nat_info_get_packets_sent:
 * @self: NAT information
 *
 * Returns: how many packets detection sent
 */
guint
natkit_nat_info_get_packets_sent (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), 0);
  return self->packets_sent;
}

/**
 * natkit_nat_info_get_binding_lifetime:
 * @self: NAT information
 * @at_least_ms: (out) (optional): an idle binding lived at least this long
 * @less_than_ms: (out) (optional): and died before this, or 0 when
 *   detection ran out of time while it was still alive
 *
 * The binding lifetime found with %NATKIT_DETECT_BINDING_LIFETIME: how
 * long the NAT keeps an idle UDP binding, which bounds the keepalive
 * interval a connection needs.
 *
 * Returns: %TRUE if it was measured
 */
gboolean
natkit_nat_info_get_binding_lifetime (NatkitNatInfo *self,
                                      guint         *at_least_ms,
                                      guint         *less_than_ms)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), FALSE);

  if (at_least_ms)
    *at_least_ms = self->lifetime_at_least_ms;
  if (less_than_ms)
    *less_than_ms = self->lifetime_less_than_ms;
  return self->lifetime_at_least_ms > 0 || self->lifetime_less_than_ms > 0;
}

/**
 * natkit_nat_info_describe:
 * @self: NAT information
 *
 * Explains the result in a few sentences a person understands: what the
 * router does, and what that means for direct connections.
 *
 * Returns: (transfer full): the explanation
 */
char *
natkit_nat_info_describe (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NULL);

  switch (self->nat_type)
    {
    case NATKIT_NAT_TYPE_OPEN:
      if (self->filtering == NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT ||
          self->filtering == NATKIT_NAT_BEHAVIOR_UNKNOWN)
        return g_strdup ("You are not behind a NAT: your public address is your "
                         "own. Peers can connect to you directly.");
      return g_strdup ("You are not behind a NAT, but a firewall only lets in "
                       "replies to traffic you sent (open with a stateful "
                       "firewall). Direct connections will work with most peers.");
    case NATKIT_NAT_TYPE_FULL_CONE:
      return g_strdup ("Your router keeps the same public port for every "
                       "destination and lets anyone reach it once you have sent "
                       "a packet (full cone). Direct connections will work with "
                       "almost every peer.");
    case NATKIT_NAT_TYPE_RESTRICTED_CONE:
      return g_strdup ("Your router keeps the same public port for every "
                       "destination but only lets in packets from addresses you "
                       "wrote to (restricted cone). Direct connections will work "
                       "with most peers.");
    case NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE:
      return g_strdup ("Your router keeps the same public port for every "
                       "destination but only lets in replies from the exact "
                       "address and port you wrote to (port-restricted cone). "
                       "Direct connections will work with most peers.");
    case NATKIT_NAT_TYPE_SYMMETRIC:
      return g_strdup ("Your router picks a new public port for every "
                       "destination (symmetric NAT). Direct connections only work "
                       "with peers on open or full-cone networks, or with port "
                       "prediction; otherwise natkit relays the connection.");
    case NATKIT_NAT_TYPE_UDP_BLOCKED:
      return g_strdup ("Your network blocks UDP: the STUN server is reachable "
                       "over TCP, but no UDP answer came back. Only relays over "
                       "TCP or TLS can connect you.");
    case NATKIT_NAT_TYPE_UNKNOWN:
    default:
      return g_strdup ("natkit could not measure enough of your network to name "
                       "its behavior; see the tests that were skipped.");
    }
}

/**
 * natkit_nat_info_get_gateway_services:
 * @self: NAT information
 *
 * Returns: (transfer none) (nullable) (array zero-terminated=1): the port
 *   mapping protocols the gateway offers (`pcp`, `natpmp`, `upnp`; empty
 *   when it offers none), or %NULL when they were not probed
 */
const char * const *
natkit_nat_info_get_gateway_services (NatkitNatInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_NAT_INFO (self), NULL);
  return (const char * const *) self->gateway_services;
}

void
_natkit_nat_info_set_gateway_services (NatkitNatInfo      *self,
                                       const char * const *services)
{
  g_strfreev (self->gateway_services);
  self->gateway_services = g_strdupv ((char **) services);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_GATEWAY_SERVICES]);
}

/* ---- summaries: what peers tell each other, and what is persisted ----- */

static const char *
enum_nick (GType type,
           gint  value)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (type);
  GEnumValue *v = g_enum_get_value (klass, value);

  return v ? v->value_nick : NULL;
}

/* The value of @nick in @type, or -1 (an unknown nick is not an error: a
 * newer peer may know more) */
static gint
enum_value (GType       type,
            const char *nick)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (type);
  GEnumValue *v = nick ? g_enum_get_value_by_nick (klass, nick) : NULL;

  return v ? v->value : -1;
}

static const char *
string_member (JsonObject *o,
               const char *name)
{
  JsonNode *node = json_object_get_member (o, name);

  if (!node || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

const char *
_natkit_nat_type_nick (NatkitNatType type)
{
  return enum_nick (NATKIT_TYPE_NAT_TYPE, type);
}

/* "a symmetric NAT", for sentences about a peer's network */
const char *
_natkit_nat_type_words (NatkitNatType type)
{
  switch (type)
    {
    case NATKIT_NAT_TYPE_OPEN:
      return "no NAT";
    case NATKIT_NAT_TYPE_FULL_CONE:
      return "a full-cone NAT";
    case NATKIT_NAT_TYPE_RESTRICTED_CONE:
      return "a restricted-cone NAT";
    case NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE:
      return "a port-restricted NAT";
    case NATKIT_NAT_TYPE_SYMMETRIC:
      return "a symmetric NAT";
    case NATKIT_NAT_TYPE_UDP_BLOCKED:
      return "a network that blocks UDP";
    case NATKIT_NAT_TYPE_UNKNOWN:
    default:
      return "an unknown kind of NAT";
    }
}

JsonObject *
_natkit_nat_info_to_summary (NatkitNatInfo *self)
{
  JsonObject *o = json_object_new ();

  json_object_set_string_member (o, "type", enum_nick (NATKIT_TYPE_NAT_TYPE, self->nat_type));
  json_object_set_string_member (o, "mapping", enum_nick (NATKIT_TYPE_NAT_BEHAVIOR, self->mapping));
  json_object_set_string_member (o, "filtering",
                                 enum_nick (NATKIT_TYPE_NAT_BEHAVIOR, self->filtering));
  return o;
}

/* From a peer: every member optional; unknown values read as unknown.
 * Returns %NULL when nothing is known. */
NatkitNatInfo *
_natkit_nat_info_from_summary (JsonObject *summary)
{
  NatkitNatInfo *info;
  gint type, mapping, filtering;

  if (!summary)
    return NULL;
  type = enum_value (NATKIT_TYPE_NAT_TYPE, string_member (summary, "type"));
  mapping = enum_value (NATKIT_TYPE_NAT_BEHAVIOR, string_member (summary, "mapping"));
  filtering = enum_value (NATKIT_TYPE_NAT_BEHAVIOR, string_member (summary, "filtering"));
  if (type <= NATKIT_NAT_TYPE_UNKNOWN && mapping <= NATKIT_NAT_BEHAVIOR_UNKNOWN &&
      filtering <= NATKIT_NAT_BEHAVIOR_UNKNOWN)
    return NULL;
  info = _natkit_nat_info_new ();
  info->nat_type = MAX (type, NATKIT_NAT_TYPE_UNKNOWN);
  info->mapping = MAX (mapping, NATKIT_NAT_BEHAVIOR_UNKNOWN);
  info->filtering = MAX (filtering, NATKIT_NAT_BEHAVIOR_UNKNOWN);
  return info;
}

JsonObject *
_natkit_nat_info_to_json (NatkitNatInfo *self,
                          gint64         detected)
{
  JsonObject *o = _natkit_nat_info_to_summary (self);

  json_object_set_string_member (o, "hairpinning",
                                 enum_nick (NATKIT_TYPE_HAIRPINNING, self->hairpinning));
  if (self->public_address)
    json_object_set_string_member (o, "public_address", self->public_address);
  json_object_set_int_member (o, "public_port", self->public_port);
  if (self->local_address)
    json_object_set_string_member (o, "local_address", self->local_address);
  json_object_set_int_member (o, "detected", detected);
  if (self->gateway_services)
    {
      JsonArray *services = json_array_new ();

      for (guint i = 0; self->gateway_services[i]; i++)
        json_array_add_string_element (services, self->gateway_services[i]);
      json_object_set_array_member (o, "gateway_services", services);
    }
  return o;
}

NatkitNatInfo *
_natkit_nat_info_from_json (JsonObject *object,
                            gint64     *detected)
{
  NatkitNatInfo *info = _natkit_nat_info_from_summary (object);
  JsonNode *node;
  gint hairpinning;

  if (!info)
    return NULL;
  hairpinning = enum_value (NATKIT_TYPE_HAIRPINNING, string_member (object, "hairpinning"));
  info->hairpinning = MAX (hairpinning, NATKIT_HAIRPINNING_UNKNOWN);
  info->public_address = g_strdup (string_member (object, "public_address"));
  info->local_address = g_strdup (string_member (object, "local_address"));
  node = json_object_get_member (object, "public_port");
  if (node && JSON_NODE_HOLDS_VALUE (node) && json_node_get_value_type (node) == G_TYPE_INT64)
    info->public_port = CLAMP (json_node_get_int (node), 0, 65535);
  node = json_object_get_member (object, "gateway_services");
  if (node && JSON_NODE_HOLDS_ARRAY (node))
    {
      JsonArray *services = json_node_get_array (node);
      g_autoptr(GStrvBuilder) b = g_strv_builder_new ();

      for (guint i = 0; i < json_array_get_length (services) && i < 8; i++)
        {
          JsonNode *e = json_array_get_element (services, i);

          if (JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING &&
              strlen (json_node_get_string (e)) <= 16)
            g_strv_builder_add (b, json_node_get_string (e));
        }
      info->gateway_services = g_strv_builder_end (b);
    }
  node = json_object_get_member (object, "detected");
  *detected = node && JSON_NODE_HOLDS_VALUE (node) &&
              json_node_get_value_type (node) == G_TYPE_INT64 ? json_node_get_int (node) : 0;
  return info;
}

static gboolean
is_type (NatkitNatInfo *info,
         NatkitNatType  type)
{
  return info && info->nat_type == type;
}

/* A symmetric NAT: a new public port for every destination. */
static gboolean
maps_per_destination (NatkitNatInfo *info)
{
  return info && (info->nat_type == NATKIT_NAT_TYPE_SYMMETRIC ||
                  (info->mapping != NATKIT_NAT_BEHAVIOR_UNKNOWN &&
                   info->mapping != NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT));
}

/* Only lets in packets from the exact address and port it wrote to. */
static gboolean
filters_by_port (NatkitNatInfo *info)
{
  return info && (info->nat_type == NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE ||
                  info->filtering == NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT);
}

/* Why hole punching over UDP cannot work (or only by guessing ports)
 * between these two networks, in words; %NULL when nothing known rules it
 * out. */
char *
_natkit_nat_pair_explain (NatkitNatInfo *local,
                          NatkitNatInfo *remote)
{
  gboolean ub_local = is_type (local, NATKIT_NAT_TYPE_UDP_BLOCKED);
  gboolean ub_remote = is_type (remote, NATKIT_NAT_TYPE_UDP_BLOCKED);

  if (ub_local && ub_remote)
    return g_strdup ("both networks block UDP, so UDP hole punching cannot work");
  if (ub_local && remote && remote->nat_type != NATKIT_NAT_TYPE_UNKNOWN)
    return g_strdup_printf ("your network blocks UDP (the peer is behind %s), so UDP hole "
                            "punching cannot work", _natkit_nat_type_words (remote->nat_type));
  if (ub_local)
    return g_strdup ("your network blocks UDP, so UDP hole punching cannot work");
  if (ub_remote && local && local->nat_type != NATKIT_NAT_TYPE_UNKNOWN)
    return g_strdup_printf ("you are behind %s and the peer's network blocks UDP, so UDP "
                            "hole punching cannot work", _natkit_nat_type_words (local->nat_type));
  if (ub_remote)
    return g_strdup ("the peer's network blocks UDP, so UDP hole punching cannot work");
  if (maps_per_destination (local) && maps_per_destination (remote))
    return g_strdup ("you and the peer are both behind symmetric NATs, which pick a new "
                     "public port for every destination, so neither side can tell the "
                     "other which port to send to and hole punching cannot work");
  if (maps_per_destination (local) && filters_by_port (remote))
    return g_strdup ("you are behind a symmetric NAT (a new public port for every "
                     "destination) and the peer's NAT only lets in packets from the exact "
                     "address and port it wrote to, so hole punching has to guess your "
                     "port");
  if (maps_per_destination (remote) && filters_by_port (local))
    return g_strdup ("the peer is behind a symmetric NAT (a new public port for every "
                     "destination) and your NAT only lets in packets from the exact "
                     "address and port you wrote to, so hole punching has to guess the "
                     "peer's port");
  return NULL;
}
