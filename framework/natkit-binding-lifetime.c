/* natkit-binding-lifetime.c: how long the NAT keeps an idle UDP binding
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * RFC 5780 section 4.6, with doubling waits: socket X gets a binding to the
 * server; after X has been idle for T, socket Y asks the server to answer
 * to X's public port (RESPONSE-PORT). If X hears the answer, the binding
 * lived T; T doubles, until an answer no longer arrives or time runs out.
 * A first check at T≈0 proves that the server honours RESPONSE-PORT and the
 * path lets the answer in; without it no conclusion is drawn. Slow by
 * nature (about twice the lifetime), so detection only runs it on request.
 */
#include "config.h"

#include "natkit-binding-lifetime-private.h"
#include "natkit-stun-client-private.h"

#define CHECK_SENDS     3
#define CHECK_GAP_MS    100
#define CHECK_WINDOW_MS 600

typedef struct
{
  GInetSocketAddress *server;
  NatkitStunClient   *x;
  NatkitStunClient   *y;
  guint16             x_port;
  guint               step_ms;
  guint               alive_ms;
  gint64              deadline;
  guint8              txids[CHECK_SENDS][16];
  guint               sends;
  GSource            *timer;
  gulong              probe_id;
  gulong              cancel_id;
  gboolean            checking;
  gboolean            done;
  guint               first_step_ms;
} Lifetime;

static void
lifetime_free (gpointer data)
{
  Lifetime *l = data;

  if (l->timer)
    {
      g_source_destroy (l->timer);
      g_source_unref (l->timer);
    }
  if (l->probe_id)
    g_signal_handler_disconnect (l->x, l->probe_id);
  g_clear_object (&l->server);
  g_clear_object (&l->x);
  g_clear_object (&l->y);
  g_free (l);
}

static void
set_timer (GTask       *task,
           guint        ms,
           GSourceFunc  func)
{
  Lifetime *l = g_task_get_task_data (task);

  if (l->timer)
    {
      g_source_destroy (l->timer);
      g_source_unref (l->timer);
    }
  l->timer = g_timeout_source_new (ms);
  g_source_set_callback (l->timer, func, task, NULL);
  g_source_attach (l->timer, g_main_context_get_thread_default ());
}

static void
finish (GTask  *task,
        GError *error)
{
  Lifetime *l = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  l->done = TRUE;
  if (l->cancel_id)
    g_cancellable_disconnect (cancellable, l->cancel_id);
  l->cancel_id = 0;
  if (l->probe_id)
    g_signal_handler_disconnect (l->x, l->probe_id);
  l->probe_id = 0;
  if (l->timer)
    {
      g_source_destroy (l->timer);
      g_clear_pointer (&l->timer, g_source_unref);
    }
  if (error)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static gboolean check_done_cb (gpointer user_data);
static gboolean idle_done_cb (gpointer user_data);

static gboolean
seen (Lifetime *l)
{
  for (guint i = 0; i < l->sends; i++)
    if (natkit_stun_client_saw_probe (l->x, l->txids[i]))
      return TRUE;
  return FALSE;
}

static gboolean
send_check_cb (gpointer user_data)
{
  GTask *task = user_data;
  Lifetime *l = g_task_get_task_data (task);

  if (l->sends < CHECK_SENDS)
    natkit_stun_client_send_probe (l->y, l->server, l->x_port, l->txids[l->sends++]);
  if (l->sends < CHECK_SENDS)
    return G_SOURCE_CONTINUE;
  set_timer (task, CHECK_WINDOW_MS - CHECK_GAP_MS * (CHECK_SENDS - 1), check_done_cb);
  return G_SOURCE_REMOVE;
}

static void
start_check (GTask *task)
{
  Lifetime *l = g_task_get_task_data (task);

  l->checking = TRUE;
  l->sends = 0;
  send_check_cb (task);
  set_timer (task, CHECK_GAP_MS, send_check_cb);
}

static void
next_wait (GTask *task)
{
  Lifetime *l = g_task_get_task_data (task);
  gint64 now = g_get_monotonic_time ();

  l->checking = FALSE;
  if (now + (gint64) (l->step_ms + CHECK_WINDOW_MS) * 1000 > l->deadline)
    {
      finish (task, NULL);   /* out of time: the binding lives at least alive_ms */
      return;
    }
  set_timer (task, l->step_ms, idle_done_cb);
}

static void
probe_cb (NatkitStunClient *client,
          gpointer          user_data)
{
  GTask *task = user_data;
  Lifetime *l = g_task_get_task_data (task);

  if (l->done || !l->checking || !seen (l))
    return;

  /* The answer came back through X's binding: it was alive. */
  g_debug ("binding alive after %u ms idle", l->step_ms);
  if (l->step_ms > 0)
    {
      l->alive_ms = l->step_ms;
      l->step_ms *= 2;
    }
  else
    l->step_ms = l->first_step_ms;
  next_wait (task);
}

static gboolean
idle_done_cb (gpointer user_data)
{
  GTask *task = user_data;
  Lifetime *l = g_task_get_task_data (task);

  g_clear_pointer (&l->timer, g_source_unref);
  start_check (task);
  return G_SOURCE_REMOVE;
}

static gboolean
check_done_cb (gpointer user_data)
{
  GTask *task = user_data;
  Lifetime *l = g_task_get_task_data (task);

  g_clear_pointer (&l->timer, g_source_unref);
  if (l->step_ms == 0)
    finish (task, g_error_new_literal (NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                                       "the server did not answer to our public port "
                                       "(it may not support RESPONSE-PORT, RFC 5780)"));
  else
    finish (task, NULL);   /* lifetime in [alive_ms, step_ms) */
  return G_SOURCE_REMOVE;
}

static void
first_binding_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Lifetime *l = g_task_get_task_data (task);
  g_auto(NatkitStunResponse) response = { 0, };
  GError *error = NULL;

  if (!natkit_stun_client_binding_finish (NATKIT_STUN_CLIENT (source), result,
                                          &response, &error))
    {
      if (!l->done)
        finish (task, error);
      else
        g_error_free (error);
      return;
    }
  if (l->done)
    return;
  l->x_port = g_inet_socket_address_get_port (response.mapped);
  l->probe_id = g_signal_connect (l->x, "probe", G_CALLBACK (probe_cb), task);
  start_check (task);   /* T≈0: does it work at all? */
}

static gboolean
cancelled_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  Lifetime *l = g_task_get_task_data (task);

  if (!l->done)
    finish (task, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                       "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  GTask *task = user_data;
  GSource *idle = g_idle_source_new ();

  /* Finish from the task's main loop, not inside the cancellable's handler
   * (which may run in another thread). */
  g_source_set_callback (idle, cancelled_idle_cb, g_object_ref (task), g_object_unref);
  g_source_attach (idle, g_task_get_context (task));
  g_source_unref (idle);
}

void
_natkit_probe_binding_lifetime_async (GInetSocketAddress  *server,
                                      guint                first_step_ms,
                                      guint                timeout_ms,
                                      GCancellable        *cancellable,
                                      GAsyncReadyCallback  callback,
                                      gpointer             user_data)
{
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Lifetime *l = g_new0 (Lifetime, 1);
  GSocketFamily family = g_inet_address_get_family (g_inet_socket_address_get_address (server));
  GError *error = NULL;

  g_task_set_source_tag (task, _natkit_probe_binding_lifetime_async);
  g_task_set_task_data (task, l, lifetime_free);
  l->server = g_object_ref (server);
  l->first_step_ms = MAX (1, first_step_ms);
  l->deadline = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  l->x = natkit_stun_client_new (family, &error);
  if (l->x)
    l->y = natkit_stun_client_new (family, &error);
  if (l->y == NULL)
    {
      finish (task, error);
      return;
    }

  if (cancellable)
    l->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (cancelled_cb), task, NULL);

  natkit_stun_client_binding_async (l->x, server, 0, 500, MIN (timeout_ms, 3000),
                                    NULL, first_binding_cb, g_object_ref (task));
}

gboolean
_natkit_probe_binding_lifetime_finish (GAsyncResult  *result,
                                       guint         *at_least_ms,
                                       guint         *less_than_ms,
                                       guint         *packets_sent,
                                       GError       **error)
{
  Lifetime *l = g_task_get_task_data (G_TASK (result));

  *packets_sent = (l->x ? natkit_stun_client_get_packets_sent (l->x) : 0) +
                  (l->y ? natkit_stun_client_get_packets_sent (l->y) : 0);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  *at_least_ms = l->alive_ms;
  /* Stopped by the clock while still alive: no upper bound. */
  *less_than_ms = l->checking ? l->step_ms : 0;
  return TRUE;
}
