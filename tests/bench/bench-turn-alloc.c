/* bench-turn-alloc.c: how many TURN allocations one process makes, holds
 * and refreshes (the TURN plugin's client, natkit-turn-client.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 *   bench-turn-alloc URI USER PASSWORD COUNT [WINDOW] [REFRESH_S] [HOLD_S]
 *
 * Allocates COUNT allocations on the TURN server at URI, at most WINDOW
 * (default 64) in flight; then refreshes every one of them (allocation and
 * nothing else) every REFRESH_S seconds (default 2) for HOLD_S seconds
 * (default 10); then deallocates them all. Prints one JSON line: the
 * allocations per second, the refreshes answered per second against the
 * number due before the end (the one due at HOLD_S itself races the end),
 * and the failures. Prints figures, asserts nothing.
 */

#include <stdio.h>
#include <sys/resource.h>

#include <natkit/natkit.h>
#include "natkit-turn-client.h"

typedef struct
{
  NatkitTurnUri      uri;
  const char        *user, *password;
  guint              count, window, started, done, ok, failed;
  NatkitTurnClient **clients;
  GMainLoop         *loop;
  char              *first_error;
} Bench;

static void start_next (Bench *b);

static void
allocated_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  Bench *b = user_data;
  g_autoptr(GError) error = NULL;

  if (natkit_turn_client_allocate_finish (NATKIT_TURN_CLIENT (source), result, &error))
    b->ok++;
  else
    {
      b->failed++;
      if (b->first_error == NULL)
        b->first_error = g_strdup (error->message);
    }
  b->done++;
  if (b->done == b->count)
    g_main_loop_quit (b->loop);
  else
    start_next (b);
}

static void
start_next (Bench *b)
{
  while (b->started < b->count && b->started - b->done < b->window)
    {
      NatkitTurnClient *c = natkit_turn_client_new (&b->uri, b->uri.transport, b->user,
                                                    b->password);

      b->clients[b->started++] = c;
      natkit_turn_client_allocate_async (c, 10000, NULL, allocated_cb, b);
    }
}

static gboolean
quit_cb (gpointer data)
{
  g_main_loop_quit (data);
  return G_SOURCE_REMOVE;
}

int
main (int   argc,
      char *argv[])
{
  Bench b = { 0 };
  g_autoptr(GError) error = NULL;
  guint refresh_s, hold_s;
  guint64 refreshes = 0;
  gint64 t0, t1;
  struct rlimit rl;

  if (argc < 5)
    {
      fprintf (stderr, "usage: %s URI USER PASSWORD COUNT [WINDOW] [REFRESH_S] [HOLD_S]\n",
               argv[0]);
      return 2;
    }
  if (!natkit_turn_uri_parse (argv[1], &b.uri, &error))
    {
      fprintf (stderr, "%s\n", error->message);
      return 2;
    }
  b.user = argv[2];
  b.password = argv[3];
  b.count = (guint) g_ascii_strtoull (argv[4], NULL, 10);
  b.window = argc > 5 ? (guint) g_ascii_strtoull (argv[5], NULL, 10) : 64;
  refresh_s = argc > 6 ? (guint) g_ascii_strtoull (argv[6], NULL, 10) : 2;
  hold_s = argc > 7 ? (guint) g_ascii_strtoull (argv[7], NULL, 10) : 10;
  if (b.count == 0 || b.window == 0 || refresh_s == 0)
    return 2;
  /* one socket per allocation */
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0)
    {
      rl.rlim_cur = rl.rlim_max;
      setrlimit (RLIMIT_NOFILE, &rl);
    }

  b.clients = g_new0 (NatkitTurnClient *, b.count);
  b.loop = g_main_loop_new (NULL, FALSE);
  t0 = g_get_monotonic_time ();
  start_next (&b);
  g_main_loop_run (b.loop);
  t1 = g_get_monotonic_time ();

  for (guint i = 0; i < b.count; i++)
    if (natkit_turn_client_get_relayed (b.clients[i]) != NULL)
      natkit_turn_client_set_refresh (b.clients[i], refresh_s);
  g_timeout_add_seconds (hold_s, quit_cb, b.loop);
  g_main_loop_run (b.loop);
  for (guint i = 0; i < b.count; i++)
    refreshes += natkit_turn_client_get_refreshes (b.clients[i]);

  printf ("{\"allocations\": %u, \"failed\": %u, \"allocate_s\": %.3f, "
          "\"allocations_per_s\": %.1f, \"held_s\": %u, \"refresh_every_s\": %u, "
          "\"refreshes\": %" G_GUINT64_FORMAT ", \"refreshes_asked\": %u, "
          "\"refreshes_per_s\": %.1f, \"first_error\": \"%s\"}\n",
          b.ok, b.failed, (t1 - t0) / 1e6, b.ok / ((t1 - t0) / 1e6), hold_s, refresh_s,
          refreshes, b.ok * ((hold_s - 1) / refresh_s), (double) refreshes / hold_s,
          b.first_error ? b.first_error : "");
  fflush (stdout);

  for (guint i = 0; i < b.count; i++)
    {
      natkit_turn_client_close (b.clients[i]);
      g_object_unref (b.clients[i]);
    }
  /* let the deallocations go out */
  g_timeout_add (500, quit_cb, b.loop);
  g_main_loop_run (b.loop);
  g_main_loop_unref (b.loop);
  g_free (b.clients);
  g_free (b.first_error);
  natkit_turn_uri_clear (&b.uri);
  return 0;
}
