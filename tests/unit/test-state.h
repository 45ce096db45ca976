/* test-state.h: a private $XDG_STATE_HOME per test program
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * natkit remembers what worked (history.json, per peer and per pair of
 * NAT types) and the last NAT detection (nat.json). Test programs that
 * connect must not rank their methods by what other tests, or earlier
 * runs, left there: each gets an empty state folder of its own, removed
 * at the end. Call before anything reads the user folders.
 */
#pragma once

#include <glib.h>
#include <glib/gstdio.h>

static inline void
test_state_remove (const char *dir)
{
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;

  while (d && (name = g_dir_read_name (d)))
    {
      g_autofree char *path = g_build_filename (dir, name, NULL);

      if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK))
        test_state_remove (path);
      else
        g_unlink (path);
    }
  g_rmdir (dir);
}

/* Returns the folder, to pass to test_state_remove() at the end. */
static inline char *
test_state_private (void)
{
  char *dir = g_dir_make_tmp ("natkit-test-state-XXXXXX", NULL);

  g_assert (dir != NULL);
  g_setenv ("XDG_STATE_HOME", dir, TRUE);
  return dir;
}
