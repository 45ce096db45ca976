/* lab-impostor.c: a peer that registers under one identity and presents
 * another one's key in the secure session — which its peers must refuse.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: lab-impostor HOST:PORT — prints the peer address it listens at,
 * then runs until SIGTERM.
 */
#include <stdio.h>
#include <stdlib.h>

#include <glib-unix.h>
#include <natkit/natkit.h>

static gboolean
quit_cb (gpointer user_data)
{
  g_main_loop_quit (user_data);
  return G_SOURCE_REMOVE;
}

static void
registered_cb (GObject      *source,
               GAsyncResult *res,
               gpointer      user_data)
{
  GError **error = user_data;

  if (!natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), res, error) && !*error)
    g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED, "not registered");
  if (!*error)
    *error = g_error_new_literal (G_IO_ERROR, G_IO_ERROR_EXISTS, "ok");
}

int
main (int    argc,
      char **argv)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(NatkitIdentity) claimed = NULL;
  g_autoptr(NatkitIdentity) presented = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(GError) error = NULL;
  NatkitRendezvous *rendezvous;

  if (argc != 2)
    {
      fprintf (stderr, "usage: lab-impostor HOST:PORT\n");
      return 2;
    }

  claimed = natkit_identity_new_ephemeral (&error);
  presented = natkit_identity_new_ephemeral (&error);
  g_assert_no_error (error);
  manager = natkit_manager_new_with_config (config);
  natkit_manager_set_identity (manager, claimed);
  rendezvous = natkit_manager_get_rendezvous (manager, argv[1], &error);
  g_assert_no_error (error);

  natkit_rendezvous_connect_async (rendezvous, NULL, registered_cb, &error);
  while (!error)
    g_main_context_iteration (NULL, TRUE);
  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_EXISTS))
    {
      fprintf (stderr, "lab-impostor: %s\n", error->message);
      return 1;
    }
  g_clear_error (&error);

  if (!natkit_manager_listen (manager, NATKIT_SIGNALING (rendezvous), &error))
    {
      fprintf (stderr, "lab-impostor: %s\n", error->message);
      return 1;
    }
  /* registered (and reserved) as "claimed"; from now on the secure
   * session presents "presented"'s key */
  natkit_manager_set_identity (manager, presented);

  printf ("%s\n", natkit_signaling_get_local_address (NATKIT_SIGNALING (rendezvous)));
  fflush (stdout);

  g_unix_signal_add (SIGTERM, quit_cb, loop);
  g_unix_signal_add (SIGINT, quit_cb, loop);
  g_main_loop_run (loop);
  return 0;
}
