/* natkit-nat-info.c: what NAT behavior detection found
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

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
