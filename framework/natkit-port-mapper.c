/* natkit-port-mapper.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"

/**
 * NatkitPortMapper:
 *
 * A protocol that asks the gateway to forward a port: UPnP-IGD, NAT-PMP,
 * PCP.
 *
 * Port mapper plugins (kind %NATKIT_PLUGIN_KIND_PORT_MAPPER) implement
 * this interface. The manager keeps one instance of each for its lifetime,
 * so a plugin may share sockets and discovery between its mappings. It
 * tries them by rank, in parallel with a short stagger, and keeps the first
 * mapping that works ([method@Natkit.Manager.map_port_async]).
 *
 * [method@Natkit.PortMapper.map_async] must honour its cancellable and the
 * request's [property@Natkit.PortMappingRequest:timeout], must never claim
 * a mapping the gateway did not confirm, and must leave nothing behind on
 * the gateway when it fails or is cancelled.
 */

G_DEFINE_INTERFACE (NatkitPortMapper, natkit_port_mapper, G_TYPE_OBJECT)

static void
natkit_port_mapper_default_init (NatkitPortMapperInterface *iface)
{
}

/**
 * natkit_port_mapper_get_methods:
 * @self: a port mapper
 *
 * Returns: (transfer none) (array zero-terminated=1): the protocols the
 *   plugin speaks, most preferred first
 */
const char * const *
natkit_port_mapper_get_methods (NatkitPortMapper *self)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPER (self), NULL);

  return NATKIT_PORT_MAPPER_GET_IFACE (self)->get_methods (self);
}

/**
 * natkit_port_mapper_map_async:
 * @self: a port mapper
 * @request: what to map
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the gateway answered or the time
 *   limit passed
 * @user_data: data for @callback
 *
 * Asks the gateway for a mapping.
 */
void
natkit_port_mapper_map_async (NatkitPortMapper         *self,
                              NatkitPortMappingRequest *request,
                              GCancellable             *cancellable,
                              GAsyncReadyCallback       callback,
                              gpointer                  user_data)
{
  g_return_if_fail (NATKIT_IS_PORT_MAPPER (self));
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (request));

  NATKIT_PORT_MAPPER_GET_IFACE (self)->map_async (self, request, cancellable,
                                                  callback, user_data);
}

/**
 * natkit_port_mapper_map_finish:
 * @self: a port mapper
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: (transfer full): the active mapping, or %NULL with @error set
 */
NatkitPortMapping *
natkit_port_mapper_map_finish (NatkitPortMapper  *self,
                               GAsyncResult      *result,
                               GError           **error)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPER (self), NULL);

  return NATKIT_PORT_MAPPER_GET_IFACE (self)->map_finish (self, result, error);
}

/**
 * natkit_port_mapper_probe_async:
 * @self: a port mapper
 * @request: where to look: its gateway and time limit count
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the answer
 * @user_data: data for @callback
 *
 * Finds out which of the plugin's protocols the gateway offers, without
 * creating a mapping. Silence is an answer, not an error: when the
 * request's time limit passes, or @cancellable is cancelled, the plugin
 * returns the protocols that answered so far.
 */
void
natkit_port_mapper_probe_async (NatkitPortMapper         *self,
                                NatkitPortMappingRequest *request,
                                GCancellable             *cancellable,
                                GAsyncReadyCallback       callback,
                                gpointer                  user_data)
{
  g_return_if_fail (NATKIT_IS_PORT_MAPPER (self));
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (request));

  NATKIT_PORT_MAPPER_GET_IFACE (self)->probe_async (self, request, cancellable,
                                                    callback, user_data);
}

/**
 * natkit_port_mapper_probe_finish:
 * @self: a port mapper
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (array zero-terminated=1): the protocols the
 *   gateway answered (possibly none), or %NULL with @error set
 */
char **
natkit_port_mapper_probe_finish (NatkitPortMapper  *self,
                                 GAsyncResult      *result,
                                 GError           **error)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPER (self), NULL);

  return NATKIT_PORT_MAPPER_GET_IFACE (self)->probe_finish (self, result, error);
}

/**
 * natkit_port_mapper_remove_record_async:
 * @self: a port mapper
 * @record: a `a{sv}` record from [method@Natkit.PortMapping.to_record]
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the gateway answered
 * @user_data: data for @callback
 *
 * Deletes the mapping a record describes, for example one that a crashed
 * process left behind.
 */
void
natkit_port_mapper_remove_record_async (NatkitPortMapper    *self,
                                        GVariant            *record,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_PORT_MAPPER (self));
  g_return_if_fail (record != NULL &&
                    g_variant_is_of_type (record, G_VARIANT_TYPE_VARDICT));

  NATKIT_PORT_MAPPER_GET_IFACE (self)->remove_record_async (self, record, cancellable,
                                                            callback, user_data);
}

/**
 * natkit_port_mapper_remove_record_finish:
 * @self: a port mapper
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: whether the gateway deleted the mapping (or had none)
 */
gboolean
natkit_port_mapper_remove_record_finish (NatkitPortMapper  *self,
                                         GAsyncResult      *result,
                                         GError           **error)
{
  g_return_val_if_fail (NATKIT_IS_PORT_MAPPER (self), FALSE);

  return NATKIT_PORT_MAPPER_GET_IFACE (self)->remove_record_finish (self, result, error);
}
