/* natkit-traversal.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"

/**
 * NatkitTraversal:
 *
 * A way through NATs and firewalls to a peer: hole punching, ICE, TURN, a
 * relay, a port mapping.
 *
 * Traversal plugins implement this interface and register their type with
 * [method@Natkit.Plugin.register_type]. For each connection the manager asks
 * every enabled method whether it [method@Natkit.Traversal.applies], orders
 * them by rank and cost, and opens paths until one works. A method's path
 * is a [class@Natkit.Path]; the secure session runs on top of it.
 *
 * [method@Natkit.Traversal.open_path_async] must honour its cancellable
 * (the manager cancels the losers of a race) and the request's
 * [property@Natkit.TraversalRequest:timeout], and must release everything
 * it held when it fails or is cancelled.
 */

G_DEFINE_INTERFACE (NatkitTraversal, natkit_traversal, G_TYPE_OBJECT)

static NatkitCost
natkit_traversal_real_get_cost (NatkitTraversal *self)
{
  return NATKIT_COST_DIRECT;
}

static gboolean
natkit_traversal_real_applies (NatkitTraversal         *self,
                               NatkitTraversalRequest  *request,
                               GError                 **error)
{
  return TRUE;
}

static void
natkit_traversal_default_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = natkit_traversal_real_get_cost;
  iface->applies = natkit_traversal_real_applies;
}

/**
 * natkit_traversal_get_cost:
 * @self: a traversal method
 *
 * Returns: what a path from this method costs
 */
NatkitCost
natkit_traversal_get_cost (NatkitTraversal *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL (self), NATKIT_COST_RELAYED);

  return NATKIT_TRAVERSAL_GET_IFACE (self)->get_cost (self);
}

/**
 * natkit_traversal_applies:
 * @self: a traversal method
 * @request: the request
 * @error: return location for a #GError
 *
 * Asks whether the method can work for @request, without sending anything.
 *
 * Returns: %TRUE if it may work; %FALSE with a %NATKIT_ERROR_NOT_APPLICABLE
 *   error that says why not
 */
gboolean
natkit_traversal_applies (NatkitTraversal         *self,
                          NatkitTraversalRequest  *request,
                          GError                 **error)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL (self), FALSE);
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (request), FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return NATKIT_TRAVERSAL_GET_IFACE (self)->applies (self, request, error);
}

/**
 * natkit_traversal_open_path_async:
 * @self: a traversal method
 * @request: the request
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the path is open or the attempt
 *   failed
 * @user_data: data for @callback
 *
 * Starts opening a path to the peer named in @request.
 */
void
natkit_traversal_open_path_async (NatkitTraversal         *self,
                                  NatkitTraversalRequest  *request,
                                  GCancellable            *cancellable,
                                  GAsyncReadyCallback      callback,
                                  gpointer                 user_data)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL (self));
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (request));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  NATKIT_TRAVERSAL_GET_IFACE (self)->open_path_async (self, request,
                                                      cancellable, callback,
                                                      user_data);
}

/**
 * natkit_traversal_open_path_finish:
 * @self: a traversal method
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Natkit.Traversal.open_path_async].
 *
 * Returns: (transfer full): the open path, or %NULL with @error set
 */
NatkitPath *
natkit_traversal_open_path_finish (NatkitTraversal  *self,
                                   GAsyncResult     *result,
                                   GError          **error)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL (self), NULL);
  g_return_val_if_fail (G_IS_ASYNC_RESULT (result), NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  return NATKIT_TRAVERSAL_GET_IFACE (self)->open_path_finish (self, result,
                                                              error);
}
