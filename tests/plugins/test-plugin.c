/* test-plugin.c: one source, many tiny plugins for the loader tests
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Built once per variant with TEST_NAME (a string), TEST_RANK and TEST_MODE:
 *   MODE_ECHO       a traversal whose path echoes every datagram back
 *   MODE_FAIL       a traversal whose attempts fail
 *   MODE_HANG       a traversal whose attempts never finish (until cancelled)
 *   MODE_LATE       a traversal whose attempts fail with a reason of their
 *                   own LATE_MS after the request's time limit (the
 *                   manager's deadline), unless cancelled first
 *   MODE_NOT_APPLICABLE  a traversal that never applies
 *   MODE_TRANSPORT  a transport that counts the datagrams it receives
 *   MODE_WRONG_ABI, MODE_INIT_FAIL, MODE_NO_TYPE, MODE_BAD_TYPE: broken plugins
 */
#include <natkit/natkit.h>

/* Each variant uses only some of the helpers below. */
#pragma GCC diagnostic ignored "-Wunused-function"

#define MODE_ECHO            1
#define MODE_FAIL            2
#define MODE_HANG            3
#define MODE_NOT_APPLICABLE  4
#define MODE_TRANSPORT       5
#define MODE_WRONG_ABI       6
#define MODE_INIT_FAIL       7
#define MODE_NO_TYPE         8
#define MODE_BAD_TYPE        9
#define MODE_LATE           10

#define LATE_MS            300

/* An echo path: each datagram sent comes back, from an idle callback. */

typedef struct { NatkitPath parent_instance; } EchoPath;
typedef struct { NatkitPathClass parent_class; } EchoPathClass;

static GType echo_path_get_type (void);

static gboolean
echo_deliver_cb (gpointer user_data)
{
  gpointer *pair = user_data;

  natkit_path_deliver (pair[0], pair[1]);
  g_object_unref (pair[0]);
  g_bytes_unref (pair[1]);
  g_free (pair);
  return G_SOURCE_REMOVE;
}

static gboolean
echo_path_send (NatkitPath  *path,
                GBytes      *datagram,
                GError     **error)
{
  gpointer *pair = g_new (gpointer, 2);

  pair[0] = g_object_ref (path);
  pair[1] = g_bytes_ref (datagram);
  g_idle_add (echo_deliver_cb, pair);
  return TRUE;
}

static void
echo_path_class_init (gpointer klass,
                      gpointer data)
{
  NATKIT_PATH_CLASS (klass)->send = echo_path_send;
}

static GType
echo_path_get_type (void)
{
  static GType type;

  if (type == 0)
    type = g_type_register_static_simple (NATKIT_TYPE_PATH,
                                          "TestEchoPath_" TEST_NAME,
                                          sizeof (EchoPathClass),
                                          echo_path_class_init,
                                          sizeof (EchoPath), NULL, 0);
  return type;
}

/* The traversal. */

static gboolean
test_applies (NatkitTraversal         *self,
              NatkitTraversalRequest  *request,
              GError                 **error)
{
#if TEST_MODE == MODE_NOT_APPLICABLE
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
               "%s never applies", TEST_NAME);
  return FALSE;
#else
  return TRUE;
#endif
}

static gboolean
hang_cancelled_idle (gpointer user_data)
{
  GTask *task = user_data;

  g_cancellable_disconnect (g_task_get_cancellable (task),
                            GPOINTER_TO_SIZE (g_task_get_task_data (task)));
  g_task_return_error_if_cancelled (task);
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

static void
hang_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  g_idle_add (hang_cancelled_idle, user_data);
}

/* MODE_LATE: whichever comes first, the late failure or the cancellation */
typedef struct
{
  GTask   *task;
  GSource *timer;
  gulong   cancelled_id;
  guint    timeout_ms;
} Late;

static void
late_finish (Late    *late,
             GError  *error)
{
  GCancellable *cancellable = g_task_get_cancellable (late->task);

  if (late->timer != NULL)
    {
      g_source_destroy (late->timer);
      g_clear_pointer (&late->timer, g_source_unref);
    }
  if (cancellable != NULL && late->cancelled_id != 0)
    g_cancellable_disconnect (cancellable, late->cancelled_id);
  late->cancelled_id = 0;
  g_task_return_error (late->task, error);
  g_object_unref (late->task);
  g_free (late);
}

static gboolean
late_timer_cb (gpointer user_data)
{
  Late *late = user_data;

  late_finish (late, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                  "%s: the simulated server did not answer within %u ms",
                                  TEST_NAME, late->timeout_ms));
  return G_SOURCE_REMOVE;
}

static gboolean
late_cancelled_idle (gpointer user_data)
{
  Late *late = user_data;

  late_finish (late, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
late_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  Late *late = user_data;

  /* stop the timer now; finish from an idle (not inside the signal,
   * where disconnecting would deadlock) */
  if (late->timer != NULL)
    {
      g_source_destroy (late->timer);
      g_clear_pointer (&late->timer, g_source_unref);
      g_idle_add (late_cancelled_idle, late);
    }
}

static void
test_open_path_async (NatkitTraversal        *self,
                      NatkitTraversalRequest *request,
                      GCancellable           *cancellable,
                      GAsyncReadyCallback     callback,
                      gpointer                user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);

#if TEST_MODE == MODE_ECHO
  g_task_return_pointer (task,
                         g_object_new (echo_path_get_type (),
                                       "method", TEST_NAME,
                                       "remote-address", "echo",
                                       "mtu", 100, NULL),
                         g_object_unref);
#elif TEST_MODE == MODE_FAIL
  g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "%s: simulated failure", TEST_NAME);
#elif TEST_MODE == MODE_LATE
  {
    Late *late = g_new0 (Late, 1);

    late->task = g_object_ref (task);
    late->timeout_ms = natkit_traversal_request_get_timeout (request);
    late->timer = g_timeout_source_new (late->timeout_ms + LATE_MS);
    g_source_set_callback (late->timer, late_timer_cb, late, NULL);
    g_source_attach (late->timer, g_main_context_get_thread_default ());
    if (cancellable != NULL)
      late->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (late_cancelled_cb),
                                                  late, NULL);
  }
#elif TEST_MODE == MODE_HANG
  /* Finishes only when cancelled. */
  if (cancellable != NULL)
    {
      gulong id = g_cancellable_connect (cancellable, G_CALLBACK (hang_cancelled_cb),
                                         task, NULL);
      g_task_set_task_data (task, GSIZE_TO_POINTER (id), NULL);
      g_object_ref (task);   /* released when it returns */
    }
#else
  g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "%s should not have been tried", TEST_NAME);
#endif
  g_object_unref (task);
}

static NatkitPath *
test_open_path_finish (NatkitTraversal  *self,
                       GAsyncResult     *result,
                       GError          **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
test_traversal_iface_init (gpointer g_iface,
                           gpointer data)
{
  NatkitTraversalInterface *iface = g_iface;

  iface->applies = test_applies;
  iface->open_path_async = test_open_path_async;
  iface->open_path_finish = test_open_path_finish;
}

/* The transport: counts datagrams on the attached path. */

typedef struct
{
  GObject     parent_instance;
  NatkitPath *path;
  gulong      handler;
  guint       count;
} TestTransport;
typedef struct { GObjectClass parent_class; } TestTransportClass;

static void
counter_received_cb (NatkitPath *path,
                     GBytes     *datagram,
                     gpointer    user_data)
{
  TestTransport *self = user_data;

  self->count++;
  g_object_set_data (G_OBJECT (self), "count", GUINT_TO_POINTER (self->count));
}

static void
test_transport_detach (NatkitTransport *transport)
{
  TestTransport *self = (TestTransport *) transport;

  if (self->path)
    {
      g_signal_handler_disconnect (self->path, self->handler);
      g_clear_object (&self->path);
    }
}

static gboolean
test_transport_attach (NatkitTransport  *transport,
                       NatkitPath       *path,
                       GError          **error)
{
  TestTransport *self = (TestTransport *) transport;

  test_transport_detach (transport);
  self->path = g_object_ref (path);
  self->handler = g_signal_connect (path, "received",
                                    G_CALLBACK (counter_received_cb), self);
  g_object_notify (G_OBJECT (self), "path");
  return TRUE;
}

static void
test_transport_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  g_value_set_object (value, ((TestTransport *) object)->path);
}

static void
test_transport_dispose (GObject *object)
{
  test_transport_detach ((NatkitTransport *) object);
  G_OBJECT_CLASS (g_type_class_peek_parent (G_OBJECT_GET_CLASS (object)))->dispose (object);
}

static void
test_transport_class_init (gpointer klass,
                           gpointer data)
{
  G_OBJECT_CLASS (klass)->get_property = test_transport_get_property;
  G_OBJECT_CLASS (klass)->dispose = test_transport_dispose;
  g_object_class_override_property (G_OBJECT_CLASS (klass), 1, "path");
}

static void
test_transport_iface_init (gpointer g_iface,
                           gpointer data)
{
  NatkitTransportInterface *iface = g_iface;

  iface->attach = test_transport_attach;
  iface->detach = test_transport_detach;
}

static gboolean
test_plugin_init (NatkitPlugin  *plugin,
                  GError       **error)
{
  G_GNUC_UNUSED GType type;

#if TEST_MODE == MODE_INIT_FAIL
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_PLUGIN,
               "the frobnicator device /dev/frob is missing");
  return FALSE;
#elif TEST_MODE == MODE_NO_TYPE
  return TRUE;
#elif TEST_MODE == MODE_BAD_TYPE
  type = g_type_register_static_simple (G_TYPE_OBJECT, "TestPlainObject_" TEST_NAME,
                                        sizeof (GObjectClass), NULL,
                                        sizeof (GObject), NULL, 0);
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL, type, TEST_RANK);
  return TRUE;
#elif TEST_MODE == MODE_TRANSPORT
  const GInterfaceInfo info = { test_transport_iface_init, NULL, NULL };

  type = g_type_register_static_simple (G_TYPE_OBJECT, "TestTransport_" TEST_NAME,
                                        sizeof (TestTransportClass),
                                        test_transport_class_init,
                                        sizeof (TestTransport), NULL, 0);
  g_type_add_interface_static (type, NATKIT_TYPE_TRANSPORT, &info);
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRANSPORT, type, TEST_RANK);
  return TRUE;
#else
  const GInterfaceInfo info = { test_traversal_iface_init, NULL, NULL };

  type = g_type_register_static_simple (G_TYPE_OBJECT, "TestTraversal_" TEST_NAME,
                                        sizeof (GObjectClass), NULL,
                                        sizeof (GObject), NULL, 0);
  g_type_add_interface_static (type, NATKIT_TYPE_TRAVERSAL, &info);
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL, type, TEST_RANK);
  return TRUE;
#endif
}

#if TEST_MODE == MODE_WRONG_ABI
G_MODULE_EXPORT const NatkitPluginDesc natkit_plugin_desc = {
  NATKIT_PLUGIN_ABI_MAJOR + 1, 0, TEST_NAME, "built for a future natkit",
  "1.0", "LGPL-2.1-or-later", test_plugin_init, { NULL, }
};
#else
NATKIT_PLUGIN_DEFINE (TEST_NAME, "test plugin " TEST_NAME, "1.0",
                      "LGPL-2.1-or-later", test_plugin_init)
#endif
