/* test-plugin-loader.c: plugin discovery, ranks, failures, the manager's walk
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The loader keeps a process-wide table of loaded modules and reads the
 * environment, so every case runs in a g_test_trap_subprocess() with its
 * own NATKIT_PLUGIN_PATH made of symlinks to the test plugins.
 */
#include "config.h"

#include <locale.h>

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "natkit.h"
#include "natkit-plugin-loader-private.h"

static char *plugins_dir;

typedef struct
{
  char *root;
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  g_autoptr(GError) error = NULL;

  f->root = g_dir_make_tmp ("natkit-loader-XXXXXX", &error);
  g_assert_no_error (error);
  g_setenv ("NATKIT_PLUGIN_SYSTEM_PATH", "", TRUE);
  g_unsetenv ("NATKIT_PLUGIN_RANKS");
  g_unsetenv ("NATKIT_PLUGIN_PATH");
}

static void
rm_rf (const char *path)
{
  GDir *dir = g_dir_open (path, 0, NULL);
  const char *name;

  if (dir != NULL)
    {
      while ((name = g_dir_read_name (dir)) != NULL)
        {
          g_autofree char *child = g_build_filename (path, name, NULL);
          if (g_file_test (child, G_FILE_TEST_IS_DIR) &&
              !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
            rm_rf (child);
          else
            g_unlink (child);
        }
      g_dir_close (dir);
    }
  g_chmod (path, 0700);
  g_rmdir (path);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  rm_rf (f->root);
  g_free (f->root);
}

/* Makes ROOT/DIR holding symlinks to the named test plugins. */
static char *
make_dir (Fixture    *f,
          const char *dir,
          ...)
{
  char *path = g_build_filename (f->root, dir, NULL);
  const char *name;
  va_list args;

  g_assert_cmpint (g_mkdir_with_parents (path, 0755), ==, 0);
  va_start (args, dir);
  while ((name = va_arg (args, const char *)) != NULL)
    {
      g_autofree char *file = g_strdup_printf ("libnatkit-%s.so", name);
      g_autofree char *target = g_build_filename (plugins_dir, file, NULL);
      g_autofree char *link = g_build_filename (path, file, NULL);

      g_assert_true (g_file_test (target, G_FILE_TEST_EXISTS));
      g_assert_cmpint (symlink (target, link), ==, 0);
    }
  va_end (args);
  return path;
}

static void
set_path (const char *first,
          ...)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  g_auto(GStrv) dirs = NULL;
  g_autofree char *joined = NULL;
  const char *dir;
  va_list args;

  va_start (args, first);
  for (dir = first; dir != NULL; dir = va_arg (args, const char *))
    g_strv_builder_add (builder, dir);
  va_end (args);
  dirs = g_strv_builder_end (builder);
  joined = g_strjoinv (":", dirs);
  g_setenv ("NATKIT_PLUGIN_PATH", joined, TRUE);
}

static NatkitManager *
new_manager (NatkitConfig *config)
{
  g_autoptr(NatkitConfig) defaults = NULL;

  if (config == NULL)
    config = defaults = natkit_config_new ();
  return natkit_manager_new_with_config (config);
}

/* "name:state:rank" for each plugin, in list order */
static char *
describe (NatkitManager *manager)
{
  g_autoptr(GPtrArray) plugins = natkit_manager_list_plugins (manager);
  GString *out = g_string_new (NULL);

  for (guint i = 0; i < plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (plugins, i);
      const char *state[] = { "loaded", "disabled", "failed" };

      g_string_append_printf (out, "%s%s:%s", i ? " " : "",
                              natkit_plugin_info_get_name (info),
                              state[natkit_plugin_info_get_state (info)]);
      if (natkit_plugin_info_get_state (info) == NATKIT_PLUGIN_STATE_LOADED)
        g_string_append_printf (out, ":%d", natkit_plugin_info_get_rank (info));
    }
  return g_string_free (out, FALSE);
}

#define IN_SUBPROCESS(...) \
  if (g_test_subprocess ()) { __VA_ARGS__; return; } \
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT); \
  g_test_trap_assert_passed ();

static void
test_discovery (Fixture       *f,
                gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *one = make_dir (f, "one", "alpha", NULL);
    g_autofree char *two = make_dir (f, "two", "beta", "gamma", "counter", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autofree char *text = NULL;
    NatkitPluginInfo *info;

    set_path (one, two, NULL);
    manager = new_manager (NULL);
    text = describe (manager);
    /* Rank order, ties by name. */
    g_assert_cmpstr (text, ==,
                     "counter:loaded:256 gamma:loaded:256 alpha:loaded:128 beta:loaded:128");

    info = natkit_manager_get_plugin (manager, "counter");
    g_assert_nonnull (info);
    g_assert_cmpint (natkit_plugin_info_get_kind (info), ==, NATKIT_PLUGIN_KIND_TRANSPORT);
    g_assert_cmpstr (natkit_plugin_info_get_description (info), ==, "test plugin counter");
    g_assert_null (natkit_plugin_info_get_reason (info));
    g_assert_true (g_str_has_prefix (natkit_plugin_info_get_filename (info), two));
    info = natkit_manager_get_plugin (manager, "alpha");
    g_assert_cmpint (natkit_plugin_info_get_kind (info), ==, NATKIT_PLUGIN_KIND_TRAVERSAL);
    g_assert_null (natkit_manager_get_plugin (manager, "nonexistent"));
  });
}

static void
test_rank_overrides (Fixture       *f,
                     gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "alpha", "beta", "gamma", NULL);
    g_autoptr(NatkitConfig) config = NULL;
    g_autoptr(NatkitManager) manager = NULL;
    g_autofree char *text = NULL;
    g_autoptr(GError) error = NULL;
    NatkitPluginInfo *info;

    set_path (dir, NULL);
    config = natkit_config_new_from_data (
      "{\"plugins\": {\"beta\": {\"rank\": \"primary+1\"},"
      "               \"gamma\": {\"rank\": 10}}}", -1, &error);
    g_assert_no_error (error);

    /* The configuration re-ranks… */
    manager = new_manager (config);
    text = describe (manager);
    g_assert_cmpstr (text, ==, "beta:loaded:257 alpha:loaded:128 gamma:loaded:10");
    info = natkit_manager_get_plugin (manager, "beta");
    g_assert_cmpint (natkit_plugin_info_get_default_rank (info), ==, NATKIT_RANK_SECONDARY);
    g_clear_object (&manager);
    g_clear_pointer (&text, g_free);

    /* …and the environment wins over it, and can disable. */
    g_setenv ("NATKIT_PLUGIN_RANKS", "beta:none, alpha:disabled,gamma:PRIMARY", TRUE);
    manager = new_manager (config);
    text = describe (manager);
    g_assert_cmpstr (text, ==, "gamma:loaded:256 beta:loaded:0 alpha:disabled");
    info = natkit_manager_get_plugin (manager, "alpha");
    g_assert_nonnull (strstr (natkit_plugin_info_get_reason (info), "NATKIT_PLUGIN_RANKS"));
    g_clear_object (&manager);
    g_clear_pointer (&text, g_free);

    /* The configuration can disable too. */
    g_unsetenv ("NATKIT_PLUGIN_RANKS");
    natkit_config_set_plugin_enabled (config, "gamma", FALSE);
    manager = new_manager (config);
    text = describe (manager);
    g_assert_cmpstr (text, ==, "beta:loaded:257 alpha:loaded:128 gamma:disabled");
    info = natkit_manager_get_plugin (manager, "gamma");
    g_assert_nonnull (strstr (natkit_plugin_info_get_reason (info), "configuration"));
  });
}

static void
test_rank_env_errors (Fixture       *f,
                      gconstpointer  data)
{
  if (g_test_subprocess ())
    {
      g_autofree char *dir = make_dir (f, "p", "alpha", NULL);
      g_autoptr(NatkitManager) manager = NULL;
      g_autofree char *text = NULL;

      g_log_set_always_fatal (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
      set_path (dir, NULL);
      g_setenv ("NATKIT_PLUGIN_RANKS", "alpha:bogus,ghost:primary,alpha", TRUE);
      manager = new_manager (NULL);
      text = describe (manager);
      /* Bad items are reported and ignored; the rest still works. */
      g_assert_cmpstr (text, ==, "alpha:loaded:128");
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*“bogus” is not a rank*");
  g_test_trap_assert_stderr ("*no such plugin was loaded*");
  g_test_trap_assert_stderr ("*“alpha” is not NAME:RANK*");
}

static void
test_rank_env_help (Fixture       *f,
                    gconstpointer  data)
{
  if (g_test_subprocess ())
    {
      g_autofree char *dir = make_dir (f, "p", "alpha", "gamma", NULL);
      g_autoptr(NatkitManager) manager = NULL;

      set_path (dir, NULL);
      g_setenv ("NATKIT_PLUGIN_RANKS", "help", TRUE);
      manager = new_manager (NULL);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*NAME:RANK*gamma*primary*alpha*secondary*");
}

static void
assert_failed (NatkitManager *manager,
               const char    *name,
               const char    *reason_pattern)
{
  NatkitPluginInfo *info = natkit_manager_get_plugin (manager, name);

  g_assert_nonnull (info);
  g_assert_cmpint (natkit_plugin_info_get_state (info), ==, NATKIT_PLUGIN_STATE_FAILED);
  if (!g_pattern_match_simple (reason_pattern, natkit_plugin_info_get_reason (info)))
    g_error ("reason for %s: “%s” does not match “%s”", name,
             natkit_plugin_info_get_reason (info), reason_pattern);
}

static void
test_broken_plugins (Fixture       *f,
                     gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "alpha", "wrongabi", "initfail",
                                     "notype", "badtype", NULL);
    g_autofree char *junk = g_build_filename (dir, "libnatkit-junk.so", NULL);
    g_autofree char *readme = g_build_filename (dir, "README.txt", NULL);
    g_autofree char *badname = g_build_filename (dir, "libnatkit-Bad_Name.so", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autofree char *text = NULL;

    g_assert_true (g_file_set_contents (junk, "this is not a library\n", -1, NULL));
    g_assert_true (g_file_set_contents (readme, "notes\n", -1, NULL));
    g_assert_true (g_file_set_contents (badname, "x", -1, NULL));
    set_path (dir, NULL);
    manager = new_manager (NULL);

    assert_failed (manager, "wrongabi", "*built for plugin ABI 2.0*has ABI 1.0*rebuild*");
    assert_failed (manager, "initfail", "could not start: the frobnicator device /dev/frob is missing");
    assert_failed (manager, "notype", "registered 0 types*");
    assert_failed (manager, "badtype", "*TestPlainObject_badtype*does not implement NatkitTraversal*");
    assert_failed (manager, "junk", "cannot be loaded: *");
    assert_failed (manager, "Bad_Name", "has an invalid name*");

    /* Everything else keeps working, and non-plugin files are not listed. */
    text = describe (manager);
    g_assert_true (g_str_has_prefix (text, "alpha:loaded:128 "));
    g_assert_null (strstr (text, "README"));
  });
}

static void
test_duplicates (Fixture       *f,
                 gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *one = make_dir (f, "one", "alpha", NULL);
    g_autofree char *two = make_dir (f, "two", "alpha", "beta", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autoptr(GPtrArray) plugins = NULL;
    g_autofree char *text = NULL;
    NatkitPluginInfo *used, *shadowed = NULL;

    set_path (one, two, NULL);
    manager = new_manager (NULL);
    text = describe (manager);
    g_assert_cmpstr (text, ==, "alpha:loaded:128 beta:loaded:128 alpha:disabled");

    used = natkit_manager_get_plugin (manager, "alpha");
    g_assert_true (g_str_has_prefix (natkit_plugin_info_get_filename (used), one));
    plugins = natkit_manager_list_plugins (manager);
    for (guint i = 0; i < plugins->len; i++)
      if (natkit_plugin_info_get_state (g_ptr_array_index (plugins, i)) ==
          NATKIT_PLUGIN_STATE_DISABLED)
        shadowed = g_ptr_array_index (plugins, i);
    g_assert_nonnull (shadowed);
    g_assert_true (g_str_has_prefix (natkit_plugin_info_get_filename (shadowed), two));
    g_assert_nonnull (strstr (natkit_plugin_info_get_reason (shadowed),
                              natkit_plugin_info_get_filename (used)));
  });
}

static void
test_unreadable_folder (Fixture       *f,
                        gconstpointer  data)
{
  if (g_test_subprocess ())
    {
      g_autofree char *good = make_dir (f, "good", "alpha", NULL);
      g_autofree char *file = g_build_filename (f->root, "a-file", NULL);
      g_autofree char *locked = make_dir (f, "locked", "beta", NULL);
      g_autofree char *missing = g_build_filename (f->root, "missing", NULL);
      g_autoptr(NatkitManager) manager = NULL;
      g_autofree char *text = NULL;

      g_log_set_always_fatal (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
      g_assert_true (g_file_set_contents (file, "", -1, NULL));
      g_assert_cmpint (g_chmod (locked, 0), ==, 0);
      set_path (file, missing, locked, good, NULL);
      manager = new_manager (NULL);
      text = describe (manager);
      if (geteuid () == 0)
        /* root reads the locked folder anyway */
        g_assert_cmpstr (text, ==, "alpha:loaded:128 beta:loaded:128");
      else
        g_assert_cmpstr (text, ==, "alpha:loaded:128");
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*Cannot read the plugin folder */a-file*Fix its permissions*");
  if (geteuid () != 0)
    g_test_trap_assert_stderr ("*Cannot read the plugin folder */locked*");
}

static char *
copy_plugin (Fixture    *f,
             const char *dir,
             const char *name,
             guint       mode)
{
  g_autofree char *file = g_strdup_printf ("libnatkit-%s.so", name);
  g_autofree char *source = g_build_filename (plugins_dir, file, NULL);
  char *path = g_build_filename (f->root, dir, NULL);
  g_autofree char *dest = g_build_filename (path, file, NULL);
  g_autofree char *contents = NULL;
  gsize length;

  g_assert_cmpint (g_mkdir_with_parents (path, 0755), ==, 0);
  g_assert_true (g_file_get_contents (source, &contents, &length, NULL));
  g_assert_true (g_file_set_contents (dest, contents, length, NULL));
  g_assert_cmpint (g_chmod (dest, mode), ==, 0);
  return path;
}

static void
test_privileged (Fixture       *f,
                 gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = copy_plugin (f, "p", "alpha", 0775);
    g_autoptr(NatkitManager) manager = NULL;
    g_autofree char *ok = NULL;

    g_free (copy_plugin (f, "p", "beta", 0755));
    set_path (dir, NULL);
    _natkit_plugin_loader_set_privilege (NATKIT_PRIVILEGE_ROOT);
    manager = new_manager (NULL);

    if (geteuid () == 0)
      {
        assert_failed (manager, "alpha", "is refused: it is writable by group or others (mode 0775)*chmod go-w*");
        ok = describe (manager);
        g_assert_true (g_str_has_prefix (ok, "beta:loaded:128"));
      }
    else
      {
        /* Files owned by an ordinary user are refused whatever the mode. */
        assert_failed (manager, "alpha", "is refused: it belongs to uid*");
        assert_failed (manager, "beta", "is refused: it belongs to uid*");
      }
  });
}

static void
test_secure_ignores_env (Fixture       *f,
                         gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "alpha", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autofree char *text = NULL;
    g_auto(GStrv) dirs = NULL;

    set_path (dir, NULL);
    g_setenv ("NATKIT_PLUGIN_RANKS", "alpha:disabled", TRUE);
    _natkit_plugin_loader_set_privilege (NATKIT_PRIVILEGE_SECURE);
    dirs = _natkit_plugin_loader_get_dirs ();
    /* Only the installed folder: NATKIT_PLUGIN_PATH and
     * NATKIT_PLUGIN_SYSTEM_PATH are ignored. */
    g_assert_cmpuint (g_strv_length (dirs), ==, 1);
    g_assert_cmpstr (dirs[0], ==, NATKIT_PLUGINDIR);
    manager = new_manager (NULL);
    text = describe (manager);
    g_assert_null (strstr (text, "alpha"));
  });
}

/* The manager's walk over traversal methods. */

typedef struct
{
  GMainLoop  *loop;
  NatkitPath *path;
  GError     *error;
} OpenResult;

static void
open_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  OpenResult *r = user_data;

  r->path = natkit_manager_open_path_finish (NATKIT_MANAGER (source), result,
                                             &r->error);
  g_main_loop_quit (r->loop);
}

static NatkitPath *
open_path (NatkitManager       *manager,
           const char * const  *methods,
           guint                timeout_ms,
           GCancellable        *cancellable,
           GError             **error)
{
  g_autoptr(NatkitTraversalRequest) request =
    natkit_traversal_request_new ("me", "you", NATKIT_ROLE_INITIATOR);
  OpenResult r = { g_main_loop_new (NULL, FALSE), NULL, NULL };

  if (timeout_ms)
    natkit_traversal_request_set_timeout (request, timeout_ms);
  natkit_manager_open_path_async (manager, request, methods, cancellable,
                                  open_cb, &r);
  g_main_loop_run (r.loop);
  g_main_loop_unref (r.loop);
  if (r.error)
    g_propagate_error (error, r.error);
  return r.path;
}

static void
test_open_path_fallthrough (Fixture       *f,
                            gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "gamma", "nope", "slow", "alpha",
                                     "beta", "counter", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autoptr(NatkitPath) path = NULL;
    g_autoptr(GError) error = NULL;

    set_path (dir, NULL);
    manager = new_manager (NULL);

    /* gamma fails, nope does not apply, slow times out, then alpha wins over
     * beta (same rank, name first). */
    path = open_path (manager, NULL, 100, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (natkit_path_get_method (path), ==, "alpha");
    g_clear_object (&path);

    /* Limiting the methods. */
    path = open_path (manager, (const char *[]) { "beta", NULL }, 0, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (natkit_path_get_method (path), ==, "beta");
    g_clear_object (&path);

    /* When everything fails, the error lists each method and why. */
    path = open_path (manager, (const char *[]) { "gamma", "nope", "slow", NULL },
                      100, NULL, &error);
    g_assert_null (path);
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
    g_assert_true (g_pattern_match_simple ("Could not reach you by any method. "
                                           "*gamma: gamma: simulated failure*"
                                           "*nope: nope never applies*"
                                           "*slow: no answer within 0.1 s*",
                                           error->message));
    g_clear_error (&error);

    /* Unknown and wrong-kind names are errors that list what exists. */
    path = open_path (manager, (const char *[]) { "ghost", NULL }, 0, NULL, &error);
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
    g_assert_nonnull (strstr (error->message, "available: gamma"));
    g_clear_error (&error);
    path = open_path (manager, (const char *[]) { "counter", NULL }, 0, NULL, &error);
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
    g_clear_error (&error);
  });
}

static gboolean
cancel_cb (gpointer user_data)
{
  g_cancellable_cancel (user_data);
  return G_SOURCE_REMOVE;
}

static void
test_open_path_cancel (Fixture       *f,
                       gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "slow", "alpha", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autoptr(GCancellable) cancellable = g_cancellable_new ();
    g_autoptr(NatkitPath) path = NULL;
    g_autoptr(GError) error = NULL;

    set_path (dir, NULL);
    manager = new_manager (NULL);
    g_timeout_add (50, cancel_cb, cancellable);
    path = open_path (manager, NULL, 60000, cancellable, &error);
    g_assert_null (path);
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  });
}

static void
test_open_path_none (Fixture       *f,
                     gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "counter", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autoptr(GError) error = NULL;
    NatkitPath *path;

    set_path (dir, NULL);
    manager = new_manager (NULL);
    path = open_path (manager, NULL, 0, NULL, &error);
    g_assert_null (path);
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
    g_assert_nonnull (strstr (error->message, "nat-tool plugins"));
  });
}

static void
received_cb (NatkitPath *path,
             GBytes     *datagram,
             gpointer    user_data)
{
  GBytes **out = user_data;

  g_clear_pointer (out, g_bytes_unref);
  *out = g_bytes_ref (datagram);
}

static void
test_path_and_transport (Fixture       *f,
                         gconstpointer  data)
{
  IN_SUBPROCESS ({
    g_autofree char *dir = make_dir (f, "p", "alpha", "counter", NULL);
    g_autoptr(NatkitManager) manager = NULL;
    g_autoptr(NatkitPath) path = NULL;
    g_autoptr(NatkitTransport) transport = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(GBytes) big = g_bytes_new_take (g_malloc0 (101), 101);
    g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
    GBytes *got = NULL;

    set_path (dir, NULL);
    manager = new_manager (NULL);
    path = open_path (manager, NULL, 0, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (natkit_path_get_mtu (path), ==, 100);
    g_assert_cmpint (natkit_path_get_rtt (path), ==, -1);

    transport = natkit_manager_create_transport (manager, "counter", &error);
    g_assert_no_error (error);
    g_assert_null (natkit_transport_get_path (transport));
    g_assert_true (natkit_transport_attach (transport, path, &error));
    g_assert_true (natkit_transport_get_path (transport) == path);

    g_signal_connect (path, "received", G_CALLBACK (received_cb), &got);
    g_assert_true (natkit_path_send (path, hello, &error));
    while (got == NULL)
      g_main_context_iteration (NULL, TRUE);
    g_assert_true (g_bytes_equal (got, hello));
    g_assert_cmpuint (GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (transport), "count")), ==, 1);
    g_assert_cmpuint (natkit_path_get_bytes_sent (path), ==, 5);
    g_assert_cmpuint (natkit_path_get_bytes_received (path), ==, 5);

    /* Too large for the MTU. */
    g_assert_false (natkit_path_send (path, big, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
    g_clear_error (&error);

    /* A closed path refuses, and a transport cannot attach to it. */
    natkit_transport_detach (transport);
    g_assert_null (natkit_transport_get_path (transport));
    natkit_path_close (path);
    g_assert_true (natkit_path_is_closed (path));
    g_assert_false (natkit_path_send (path, hello, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
    g_clear_error (&error);
    g_assert_false (natkit_transport_attach (transport, path, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
    g_clear_error (&error);

    /* Transports and traversals are not interchangeable. */
    g_assert_null (natkit_manager_create_transport (manager, "alpha", &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
    g_clear_pointer (&got, g_bytes_unref);
  });
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The plugin loader: discovery, ranks, failures, privilege; "
                  "the manager's walk over traversal methods");

  plugins_dir = g_strdup (g_getenv ("NATKIT_TEST_PLUGINS_DIR"));
  if (plugins_dir == NULL)
    plugins_dir = g_test_build_filename (G_TEST_BUILT, "..", "plugins", NULL);

#define ADD(path, func) \
  g_test_add ("/natkit/loader/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("discovery", test_discovery);
  ADD ("rank-overrides", test_rank_overrides);
  ADD ("rank-env-errors", test_rank_env_errors);
  ADD ("rank-env-help", test_rank_env_help);
  ADD ("broken-plugins", test_broken_plugins);
  ADD ("duplicates", test_duplicates);
  ADD ("unreadable-folder", test_unreadable_folder);
  ADD ("privileged", test_privileged);
  ADD ("secure-ignores-env", test_secure_ignores_env);
#undef ADD
#define ADD(path, func) \
  g_test_add ("/natkit/manager/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)
  ADD ("open-path-fallthrough", test_open_path_fallthrough);
  ADD ("open-path-cancel", test_open_path_cancel);
  ADD ("open-path-none", test_open_path_none);
  ADD ("path-and-transport", test_path_and_transport);
#undef ADD

  return g_test_run ();
}
