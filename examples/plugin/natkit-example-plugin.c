/* natkit-example-plugin.c: the smallest complete natkit traversal plugin
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A template to copy: a traversal whose path echoes every datagram back to
 * the sender. It shows the three things every plugin has — a NatkitPath
 * subclass, a type implementing NatkitTraversal, and the descriptor with
 * its init function — and nothing else. See docs/plugins.md.
 */
#include <natkit/natkit.h>

/* 1. The path: what the traversal produces. */

#define EXAMPLE_TYPE_PATH (example_path_get_type ())
G_DECLARE_FINAL_TYPE (ExamplePath, example_path, EXAMPLE, PATH, NatkitPath)

struct _ExamplePath
{
  NatkitPath  parent_instance;
  GQueue      pending;   /* GBytes */
  guint       idle_id;
};

G_DEFINE_FINAL_TYPE (ExamplePath, example_path, NATKIT_TYPE_PATH)

static gboolean
deliver_cb (gpointer user_data)
{
  ExamplePath *self = user_data;
  GBytes *datagram;

  self->idle_id = 0;
  while ((datagram = g_queue_pop_head (&self->pending)) != NULL)
    {
      /* Deliver from the main loop, never from inside send(). */
      natkit_path_deliver (NATKIT_PATH (self), datagram);
      g_bytes_unref (datagram);
    }
  return G_SOURCE_REMOVE;
}

static gboolean
example_path_send (NatkitPath  *path,
                   GBytes      *datagram,
                   GError     **error)
{
  ExamplePath *self = EXAMPLE_PATH (path);

  g_queue_push_tail (&self->pending, g_bytes_ref (datagram));
  if (self->idle_id == 0)
    self->idle_id = g_idle_add (deliver_cb, self);
  return TRUE;
}

static void
example_path_close (NatkitPath *path)
{
  ExamplePath *self = EXAMPLE_PATH (path);

  /* Release everything the path holds: here, the queue and the idle. */
  g_clear_handle_id (&self->idle_id, g_source_remove);
  g_queue_clear_full (&self->pending, (GDestroyNotify) g_bytes_unref);
}

static void
example_path_class_init (ExamplePathClass *klass)
{
  NATKIT_PATH_CLASS (klass)->send = example_path_send;
  NATKIT_PATH_CLASS (klass)->close = example_path_close;
}

static void
example_path_init (ExamplePath *self)
{
  g_queue_init (&self->pending);
}

/* 2. The traversal: turns a request into a path. */

#define EXAMPLE_TYPE_TRAVERSAL (example_traversal_get_type ())
G_DECLARE_FINAL_TYPE (ExampleTraversal, example_traversal, EXAMPLE, TRAVERSAL, GObject)

struct _ExampleTraversal
{
  GObject parent_instance;
};

static void example_traversal_iface_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (ExampleTraversal, example_traversal, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      example_traversal_iface_init))

static void
example_open_path_async (NatkitTraversal        *traversal,
                         NatkitTraversalRequest *request,
                         GCancellable           *cancellable,
                         GAsyncReadyCallback     callback,
                         gpointer                user_data)
{
  g_autoptr(GTask) task = g_task_new (traversal, cancellable, callback, user_data);
  g_autofree char *remote = g_strdup_printf ("echo:%s",
    natkit_traversal_request_get_remote_peer_id (request));

  g_task_set_source_tag (task, example_open_path_async);
  g_task_return_pointer (task,
                         g_object_new (EXAMPLE_TYPE_PATH,
                                       "method", "example",
                                       "local-address", "echo:local",
                                       "remote-address", remote,
                                       NULL),
                         g_object_unref);
}

static NatkitPath *
example_open_path_finish (NatkitTraversal  *traversal,
                          GAsyncResult     *result,
                          GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static NatkitCost
example_get_cost (NatkitTraversal *traversal)
{
  return NATKIT_COST_DIRECT;
}

static void
example_traversal_iface_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = example_get_cost;
  iface->open_path_async = example_open_path_async;
  iface->open_path_finish = example_open_path_finish;
}

static void
example_traversal_class_init (ExampleTraversalClass *klass)
{
}

static void
example_traversal_init (ExampleTraversal *self)
{
}

/* 3. The descriptor: the one exported symbol. */

static gboolean
example_plugin_init (NatkitPlugin  *plugin,
                     GError       **error)
{
  /* Check what the plugin needs here and fail with a clear error if it is
   * missing: the loader shows the message as the reason. */
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               EXAMPLE_TYPE_TRAVERSAL, NATKIT_RANK_MARGINAL);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("example",
                      "Example out-of-tree plugin: echoes datagrams back",
                      EXAMPLE_VERSION, "LGPL-2.1-or-later",
                      example_plugin_init)
