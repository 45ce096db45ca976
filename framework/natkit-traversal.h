/* natkit-traversal.h: the traversal plugin interface
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-enums.h"
#include "natkit-path.h"
#include "natkit-traversal-request.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_TRAVERSAL (natkit_traversal_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_INTERFACE (NatkitTraversal, natkit_traversal, NATKIT, TRAVERSAL, GObject)

/**
 * NatkitTraversalInterface:
 * @g_iface: the parent interface
 * @get_cost: what a path from this method costs; the default is
 *   %NATKIT_COST_DIRECT
 * @applies: whether the method can work for this request; sets a
 *   %NATKIT_ERROR_NOT_APPLICABLE error saying why not. The default applies
 *   to every request
 * @open_path_async: starts producing a path for the request
 * @open_path_finish: finishes @open_path_async
 *
 * The virtual functions of a traversal method.
 */
struct _NatkitTraversalInterface
{
  GTypeInterface g_iface;

  NatkitCost  (*get_cost)         (NatkitTraversal         *self);
  gboolean    (*applies)          (NatkitTraversal         *self,
                                   NatkitTraversalRequest  *request,
                                   GError                 **error);
  void        (*open_path_async)  (NatkitTraversal         *self,
                                   NatkitTraversalRequest  *request,
                                   GCancellable            *cancellable,
                                   GAsyncReadyCallback      callback,
                                   gpointer                 user_data);
  NatkitPath *(*open_path_finish) (NatkitTraversal         *self,
                                   GAsyncResult            *result,
                                   GError                 **error);

  /*< private >*/
  gpointer padding[8];
};

NATKIT_AVAILABLE_IN_ALL
NatkitCost  natkit_traversal_get_cost         (NatkitTraversal         *self);
NATKIT_AVAILABLE_IN_ALL
gboolean    natkit_traversal_applies          (NatkitTraversal         *self,
                                               NatkitTraversalRequest  *request,
                                               GError                 **error);
NATKIT_AVAILABLE_IN_ALL
void        natkit_traversal_open_path_async  (NatkitTraversal         *self,
                                               NatkitTraversalRequest  *request,
                                               GCancellable            *cancellable,
                                               GAsyncReadyCallback      callback,
                                               gpointer                 user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitPath *natkit_traversal_open_path_finish (NatkitTraversal         *self,
                                               GAsyncResult            *result,
                                               GError                 **error);

G_END_DECLS
