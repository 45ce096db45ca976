/* natkit-loopback-plugin.c: an in-process traversal for application tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Two managers in one process reach each other through memory: each side's
 * open_path_async() waits until the other side asks for the mirror-image
 * pair (A→B meets B→A), then both get one end of a linked pair of paths.
 * Datagrams are delivered from an idle source on the receiver's main
 * context, never re-entrantly. Rank NONE: it is only used when asked for
 * by name (`--method loopback`), so it never shadows a real method.
 */
#include <natkit/natkit.h>

#define NATKIT_TYPE_LOOPBACK_PATH (natkit_loopback_path_get_type ())
G_DECLARE_FINAL_TYPE (NatkitLoopbackPath, natkit_loopback_path,
                      NATKIT, LOOPBACK_PATH, NatkitPath)

#define NATKIT_TYPE_LOOPBACK (natkit_loopback_get_type ())
G_DECLARE_FINAL_TYPE (NatkitLoopback, natkit_loopback, NATKIT, LOOPBACK, GObject)

/* The path. */

struct _NatkitLoopbackPath
{
  NatkitPath    parent_instance;

  NatkitLoopbackPath *peer;     /* weak */
  GMainContext *context;
  GQueue        queue;          /* GBytes waiting for delivery */
  GSource      *idle;
};

G_DEFINE_FINAL_TYPE (NatkitLoopbackPath, natkit_loopback_path, NATKIT_TYPE_PATH)

static gboolean
deliver_cb (gpointer user_data)
{
  NatkitLoopbackPath *self = user_data;
  GBytes *datagram;

  g_object_ref (self);
  g_clear_pointer (&self->idle, g_source_unref);
  while ((datagram = g_queue_pop_head (&self->queue)) != NULL)
    {
      natkit_path_deliver (NATKIT_PATH (self), datagram);
      g_bytes_unref (datagram);
    }
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

static gboolean
natkit_loopback_path_send (NatkitPath  *path,
                           GBytes      *datagram,
                           GError     **error)
{
  NatkitLoopbackPath *self = NATKIT_LOOPBACK_PATH (path);
  NatkitLoopbackPath *peer = self->peer;

  /* Like UDP: a datagram to a peer that is gone is lost, not an error. */
  if (peer == NULL || natkit_path_is_closed (NATKIT_PATH (peer)))
    return TRUE;

  g_queue_push_tail (&peer->queue, g_bytes_ref (datagram));
  if (peer->idle == NULL)
    {
      peer->idle = g_idle_source_new ();
      g_source_set_callback (peer->idle, deliver_cb, peer, NULL);
      g_source_set_static_name (peer->idle, "[natkit-loopback] deliver");
      g_source_attach (peer->idle, peer->context);
    }
  return TRUE;
}

static void
natkit_loopback_path_close (NatkitPath *path)
{
  NatkitLoopbackPath *self = NATKIT_LOOPBACK_PATH (path);
  NatkitLoopbackPath *peer = self->peer;

  if (self->idle)
    {
      g_source_destroy (self->idle);
      g_clear_pointer (&self->idle, g_source_unref);
    }
  g_queue_clear_full (&self->queue, (GDestroyNotify) g_bytes_unref);

  if (peer != NULL)
    {
      g_autoptr(GError) error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                             "the peer closed the loopback path");

      g_object_remove_weak_pointer (G_OBJECT (peer), (gpointer *) &self->peer);
      g_object_remove_weak_pointer (G_OBJECT (self), (gpointer *) &peer->peer);
      self->peer = NULL;
      peer->peer = NULL;
      natkit_path_fail (NATKIT_PATH (peer), error);
    }
}

static void
natkit_loopback_path_finalize (GObject *object)
{
  NatkitLoopbackPath *self = NATKIT_LOOPBACK_PATH (object);

  g_main_context_unref (self->context);
  G_OBJECT_CLASS (natkit_loopback_path_parent_class)->finalize (object);
}

static void
natkit_loopback_path_class_init (NatkitLoopbackPathClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_loopback_path_finalize;
  NATKIT_PATH_CLASS (klass)->send = natkit_loopback_path_send;
  NATKIT_PATH_CLASS (klass)->close = natkit_loopback_path_close;
}

static void
natkit_loopback_path_init (NatkitLoopbackPath *self)
{
  self->context = g_main_context_ref_thread_default ();
  g_queue_init (&self->queue);
}

static NatkitLoopbackPath *
loopback_path_new (const char *local,
                   const char *remote)
{
  g_autofree char *local_address = g_strdup_printf ("loopback:%s", local);
  g_autofree char *remote_address = g_strdup_printf ("loopback:%s", remote);

  return g_object_new (NATKIT_TYPE_LOOPBACK_PATH,
                       "method", "loopback",
                       "local-address", local_address,
                       "remote-address", remote_address,
                       "mtu", 65507,
                       NULL);
}

/* The traversal: a table of sides waiting for their mirror image. */

struct _NatkitLoopback
{
  GObject parent_instance;
};

static void natkit_loopback_traversal_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitLoopback, natkit_loopback, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      natkit_loopback_traversal_init))

static GHashTable *waiting;   /* "LOCAL>REMOTE" → GTask; main thread only */

typedef struct
{
  char   *key;
  gulong  cancelled_id;
} WaitData;

static void
wait_data_free (gpointer data)
{
  WaitData *w = data;

  g_free (w->key);
  g_free (w);
}

static void
stop_waiting (GTask *task)
{
  WaitData *w = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  if (w->cancelled_id != 0)
    g_cancellable_disconnect (cancellable, w->cancelled_id);
  w->cancelled_id = 0;
  g_hash_table_remove (waiting, w->key);
}

static gboolean
cancelled_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  WaitData *w = g_task_get_task_data (task);

  /* Still waiting? (A pairing may have won the race in between.) */
  if (g_hash_table_lookup (waiting, w->key) == task)
    {
      stop_waiting (task);
      g_task_return_error_if_cancelled (task);
      g_object_unref (task);   /* the table's reference */
    }
  return G_SOURCE_REMOVE;
}

static void
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  /* Not from inside the cancellable's handler: g_cancellable_disconnect
   * would deadlock. */
  g_idle_add_full (G_PRIORITY_DEFAULT, cancelled_idle_cb,
                   g_object_ref (user_data), g_object_unref);
}

static void
natkit_loopback_open_path_async (NatkitTraversal        *traversal,
                                 NatkitTraversalRequest *request,
                                 GCancellable           *cancellable,
                                 GAsyncReadyCallback     callback,
                                 gpointer                user_data)
{
  const char *local = natkit_traversal_request_get_local_peer_id (request);
  const char *remote = natkit_traversal_request_get_remote_peer_id (request);
  g_autofree char *mirror = g_strdup_printf ("%s>%s", remote, local);
  g_autoptr(GTask) task = g_task_new (traversal, cancellable, callback, user_data);
  WaitData *w;
  GTask *other;

  g_task_set_source_tag (task, natkit_loopback_open_path_async);
  g_task_set_name (task, "[natkit-loopback] open path");

  if (waiting == NULL)
    waiting = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, NULL);

  if (g_task_return_error_if_cancelled (task))
    return;

  other = g_hash_table_lookup (waiting, mirror);
  if (other != NULL)
    {
      NatkitLoopbackPath *mine = loopback_path_new (local, remote);
      NatkitLoopbackPath *theirs = loopback_path_new (remote, local);

      mine->peer = theirs;
      theirs->peer = mine;
      g_object_add_weak_pointer (G_OBJECT (theirs), (gpointer *) &mine->peer);
      g_object_add_weak_pointer (G_OBJECT (mine), (gpointer *) &theirs->peer);

      stop_waiting (other);
      g_debug ("paired %s with %s", local, remote);
      g_task_return_pointer (other, theirs, g_object_unref);
      g_object_unref (other);
      g_task_return_pointer (task, mine, g_object_unref);
      return;
    }

  w = g_new0 (WaitData, 1);
  w->key = g_strdup_printf ("%s>%s", local, remote);
  if (g_hash_table_contains (waiting, w->key))
    {
      wait_data_free (w);
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "%s is already waiting for %s on the loopback",
                               local, remote);
      return;
    }

  g_task_set_task_data (task, w, wait_data_free);
  g_hash_table_insert (waiting, w->key, g_object_ref (task));
  if (cancellable != NULL)
    w->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (cancelled_cb),
                                             task, NULL);
}

static NatkitPath *
natkit_loopback_open_path_finish (NatkitTraversal  *traversal,
                                  GAsyncResult     *result,
                                  GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
natkit_loopback_traversal_init (NatkitTraversalInterface *iface)
{
  iface->open_path_async = natkit_loopback_open_path_async;
  iface->open_path_finish = natkit_loopback_open_path_finish;
}

static void
natkit_loopback_class_init (NatkitLoopbackClass *klass)
{
}

static void
natkit_loopback_init (NatkitLoopback *self)
{
}

static gboolean
loopback_plugin_init (NatkitPlugin  *plugin,
                      GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               NATKIT_TYPE_LOOPBACK, NATKIT_RANK_NONE);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("loopback",
                      "Connects two managers in the same process, for application tests",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      loopback_plugin_init)
