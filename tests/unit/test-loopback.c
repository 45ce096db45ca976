/* test-loopback.c: the in-tree loopback plugin, end to end through managers
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>

#include "natkit.h"

typedef struct
{
  NatkitPath *path;
  GError     *error;
  gboolean    done;
} Result;

static void
open_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  Result *r = user_data;

  r->path = natkit_manager_open_path_finish (NATKIT_MANAGER (source), res, &r->error);
  r->done = TRUE;
}

static const char * const loopback_only[] = { "loopback", NULL };

static void
open_pair (NatkitManager  *a,
           NatkitManager  *b,
           NatkitPath    **path_a,
           NatkitPath    **path_b)
{
  g_autoptr(NatkitTraversalRequest) ra =
    natkit_traversal_request_new ("alice", "bob", NATKIT_ROLE_INITIATOR);
  g_autoptr(NatkitTraversalRequest) rb =
    natkit_traversal_request_new ("bob", "alice", NATKIT_ROLE_RESPONDER);
  Result res_a = { NULL, NULL, FALSE }, res_b = { NULL, NULL, FALSE };

  natkit_manager_open_path_async (a, ra, loopback_only, NULL, open_cb, &res_a);
  /* alice waits for bob */
  g_main_context_iteration (NULL, FALSE);
  g_assert_false (res_a.done);
  natkit_manager_open_path_async (b, rb, loopback_only, NULL, open_cb, &res_b);
  while (!res_a.done || !res_b.done)
    g_main_context_iteration (NULL, TRUE);

  g_assert_no_error (res_a.error);
  g_assert_no_error (res_b.error);
  *path_a = res_a.path;
  *path_b = res_b.path;
}

static void
collect_cb (NatkitPath *path,
            GBytes     *datagram,
            gpointer    user_data)
{
  g_ptr_array_add (user_data, g_bytes_ref (datagram));
}

static void
closed_cb (NatkitPath   *path,
           const GError *error,
           gpointer      user_data)
{
  GError **out = user_data;

  g_assert_nonnull (error);
  *out = g_error_copy (error);
}

static void
test_exchange (void)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) a = natkit_manager_new_with_config (config);
  g_autoptr(NatkitManager) b = natkit_manager_new_with_config (config);
  g_autoptr(GPtrArray) at_a = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GPtrArray) at_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GError) error = NULL;
  g_autoptr(GError) closed_error = NULL;
  NatkitPath *pa, *pb;

  open_pair (a, b, &pa, &pb);
  g_assert_cmpstr (natkit_path_get_method (pa), ==, "loopback");
  g_assert_cmpstr (natkit_path_get_remote_address (pa), ==, "loopback:bob");
  g_assert_cmpstr (natkit_path_get_remote_address (pb), ==, "loopback:alice");

  g_signal_connect (pa, "received", G_CALLBACK (collect_cb), at_a);
  g_signal_connect (pb, "received", G_CALLBACK (collect_cb), at_b);

  for (guint i = 0; i < 100; i++)
    {
      g_autoptr(GBytes) d = g_bytes_new (&i, sizeof i);
      g_assert_true (natkit_path_send (pa, d, &error));
      g_assert_true (natkit_path_send (pb, d, &error));
    }
  /* Nothing is delivered re-entrantly from send(). */
  g_assert_cmpuint (at_b->len, ==, 0);
  while (at_a->len < 100 || at_b->len < 100)
    g_main_context_iteration (NULL, TRUE);
  for (guint i = 0; i < 100; i++)
    {
      g_assert_cmpmem (g_bytes_get_data (g_ptr_array_index (at_b, i), NULL), sizeof i, &i, sizeof i);
      g_assert_cmpmem (g_bytes_get_data (g_ptr_array_index (at_a, i), NULL), sizeof i, &i, sizeof i);
    }

  /* Closing one end fails the other, saying why. */
  g_signal_connect (pb, "closed", G_CALLBACK (closed_cb), &closed_error);
  natkit_path_close (pa);
  g_assert_true (natkit_path_is_closed (pb));
  g_assert_error (closed_error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
  g_assert_nonnull (strstr (closed_error->message, "peer closed"));

  g_object_unref (pa);
  g_object_unref (pb);
}

static void
test_not_automatic (void)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) a = natkit_manager_new_with_config (config);
  g_autoptr(NatkitTraversalRequest) ra =
    natkit_traversal_request_new ("alice", "carol", NATKIT_ROLE_INITIATOR);
  NatkitPluginInfo *info = natkit_manager_get_plugin (a, "loopback");
  Result res = { NULL, NULL, FALSE };

  g_assert_nonnull (info);
  g_assert_cmpint (natkit_plugin_info_get_rank (info), ==, NATKIT_RANK_NONE);

  /* Rank NONE: not tried unless named. */
  natkit_manager_open_path_async (a, ra, NULL, NULL, open_cb, &res);
  while (!res.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_null (res.path);
  g_assert_error (res.error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
  g_clear_error (&res.error);
}

static gboolean
cancel_cb (gpointer data)
{
  g_cancellable_cancel (data);
  return G_SOURCE_REMOVE;
}

static void
test_cancel_and_timeout (void)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) a = natkit_manager_new_with_config (config);
  g_autoptr(NatkitTraversalRequest) ra =
    natkit_traversal_request_new ("alice", "dave", NATKIT_ROLE_INITIATOR);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Result res = { NULL, NULL, FALSE };

  natkit_manager_open_path_async (a, ra, loopback_only, cancellable, open_cb, &res);
  g_timeout_add (20, cancel_cb, cancellable);
  while (!res.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (res.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&res.error);

  /* The side that gave up no longer waits: a new attempt is accepted. */
  res.done = FALSE;
  natkit_traversal_request_set_timeout (ra, 30);
  natkit_manager_open_path_async (a, ra, loopback_only, NULL, open_cb, &res);
  while (!res.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (res.error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
  g_assert_nonnull (strstr (res.error->message, "loopback: no answer within"));
  g_clear_error (&res.error);
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The loopback traversal plugin through two managers");

  g_test_add_func ("/natkit/loopback/exchange", test_exchange);
  g_test_add_func ("/natkit/loopback/not-automatic", test_not_automatic);
  g_test_add_func ("/natkit/loopback/cancel-and-timeout", test_cancel_and_timeout);

  return g_test_run ();
}
