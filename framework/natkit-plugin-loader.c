/* natkit-plugin-loader.c: finding and loading plugin modules
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The search path, in order: each folder of NATKIT_PLUGIN_PATH, then
 * NATKIT_PLUGIN_SYSTEM_PATH (which replaces the installed folder; tests set
 * it empty to stay hermetic), else $libdir/natkit-1/plugins. The first file
 * of a name wins; later ones are listed as disabled.
 *
 * Modules are loaded once per process (GTypes cannot be unregistered, so a
 * module that ran its init stays resident) and the result, good or bad, is
 * shared by every manager. Ranks and switches are applied per manager.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gmodule.h>

#include "natkit-plugin-info-private.h"
#include "natkit-plugin-loader-private.h"

#define PLUGIN_PREFIX "libnatkit-"
#define PLUGIN_SUFFIX "." G_MODULE_SUFFIX

struct _NatkitPlugin
{
  const NatkitPluginDesc *desc;
  guint                   n_registered;
  NatkitPluginKind        kind;
  GType                   type;
  int                     rank;
};

/* What loading one file gave; shared by all managers. */
typedef struct
{
  char                   *description;
  char                   *version;
  NatkitPluginKind        kind;
  GType                   type;
  int                     rank;
  char                   *error;     /* NULL when it loaded */
} LoadedModule;

G_LOCK_DEFINE_STATIC (loader);
static GHashTable *loaded_modules;   /* real path → LoadedModule */
static NatkitPrivilege privilege_override = NATKIT_PRIVILEGE_AUTO;

void
_natkit_plugin_loader_set_privilege (NatkitPrivilege privilege)
{
  privilege_override = privilege;
}

static NatkitPrivilege
get_privilege (void)
{
  if (privilege_override != NATKIT_PRIVILEGE_AUTO)
    return privilege_override;
  /* GLib's notion, as for GIO_MODULE_DIR: the environment belongs to a
   * less privileged user when the kernel says AT_SECURE. */
  if (getauxval (AT_SECURE) != 0)
    return NATKIT_PRIVILEGE_SECURE;
  if (geteuid () == 0)
    return NATKIT_PRIVILEGE_ROOT;
  return NATKIT_PRIVILEGE_NONE;
}

/**
 * natkit_plugin_register_type:
 * @plugin: the plugin handed to the init function
 * @kind: what the type provides
 * @type: a #GObject type implementing [iface@Natkit.Traversal] (for
 *   traversals and port mappers) or [iface@Natkit.Transport]
 * @rank: its default rank, usually a [enum@Natkit.Rank] value
 *
 * Registers the plugin's type. Call it exactly once from the plugin's init
 * function. The loader checks that @type implements the interface @kind
 * needs and marks the plugin failed if not.
 */
void
natkit_plugin_register_type (NatkitPlugin     *plugin,
                             NatkitPluginKind  kind,
                             GType             type,
                             int               rank)
{
  g_return_if_fail (plugin != NULL);

  plugin->n_registered++;
  plugin->kind = kind;
  plugin->type = type;
  plugin->rank = rank;
}

static void
loaded_module_free (gpointer data)
{
  LoadedModule *loaded = data;

  g_free (loaded->description);
  g_free (loaded->version);
  g_free (loaded->error);
  g_free (loaded);
}

static gboolean
name_is_valid (const char *name)
{
  if (*name == '\0')
    return FALSE;
  for (const char *p = name; *p; p++)
    if (!g_ascii_islower (*p) && !g_ascii_isdigit (*p) && *p != '-')
      return FALSE;
  return TRUE;
}

static char *
check_type (NatkitPluginKind kind,
            GType            type)
{
  GType iface = kind == NATKIT_PLUGIN_KIND_TRANSPORT ? NATKIT_TYPE_TRANSPORT :
                kind == NATKIT_PLUGIN_KIND_PORT_MAPPER ? NATKIT_TYPE_PORT_MAPPER :
                NATKIT_TYPE_TRAVERSAL;
  g_autoptr(GEnumClass) kinds = g_type_class_ref (NATKIT_TYPE_PLUGIN_KIND);
  GEnumValue *kind_value = g_enum_get_value (kinds, kind);

  if (kind_value == NULL)
    return g_strdup_printf ("it registered an unknown plugin kind (%d); it "
                            "may need a newer natkit", kind);
  if (!g_type_is_a (type, G_TYPE_OBJECT) || G_TYPE_IS_ABSTRACT (type))
    return g_strdup_printf ("it registered “%s”, which is not an "
                            "instantiable GObject type; this is a bug in the "
                            "plugin", g_type_name (type) ? g_type_name (type) : "?");
  if (!g_type_is_a (type, iface))
    return g_strdup_printf ("it registered “%s” as a %s, but that type does "
                            "not implement %s; this is a bug in the plugin",
                            g_type_name (type), kind_value->value_nick,
                            g_type_name (iface));
  return NULL;
}

/* Loads @path and runs its init; called with the lock held. */
static LoadedModule *
load_module (const char *path,
             const char *name)
{
  LoadedModule *loaded = g_new0 (LoadedModule, 1);
  const NatkitPluginDesc *desc = NULL;
  NatkitPlugin plugin = { NULL, 0, 0, G_TYPE_INVALID, 0 };
  g_autoptr(GError) init_error = NULL;
  GModule *module;

  module = g_module_open (path, G_MODULE_BIND_LOCAL);
  if (module == NULL)
    {
      loaded->error = g_strdup_printf ("cannot be loaded: %s. If a library "
                                       "it needs is missing, install it; "
                                       "otherwise reinstall the plugin",
                                       g_module_error ());
      return loaded;
    }

  if (!g_module_symbol (module, NATKIT_PLUGIN_DESC_SYMBOL, (gpointer *) &desc) ||
      desc == NULL)
    {
      loaded->error = g_strdup ("is not a natkit plugin: it has no "
                                NATKIT_PLUGIN_DESC_SYMBOL " symbol "
                                "(define one with NATKIT_PLUGIN_DEFINE)");
      g_module_close (module);
      return loaded;
    }

  if (desc->abi_major != NATKIT_PLUGIN_ABI_MAJOR ||
      desc->abi_minor > NATKIT_PLUGIN_ABI_MINOR)
    {
      loaded->error = g_strdup_printf ("was built for plugin ABI %u.%u, but "
                                       "this natkit (%s) has ABI %u.%u; "
                                       "rebuild the plugin against this "
                                       "natkit's headers",
                                       desc->abi_major, desc->abi_minor,
                                       PACKAGE_VERSION,
                                       NATKIT_PLUGIN_ABI_MAJOR,
                                       NATKIT_PLUGIN_ABI_MINOR);
      g_module_close (module);
      return loaded;
    }

  if (desc->name == NULL || !g_str_equal (desc->name, name))
    {
      loaded->error = g_strdup_printf ("calls itself “%s”, but its file name "
                                       "says “%s”; rename the file to "
                                       PLUGIN_PREFIX "%s" PLUGIN_SUFFIX,
                                       desc->name ? desc->name : "(nothing)",
                                       name, desc->name ? desc->name : "NAME");
      g_module_close (module);
      return loaded;
    }

  loaded->description = g_strdup (desc->description);
  loaded->version = g_strdup (desc->version);

  if (desc->init == NULL)
    {
      loaded->error = g_strdup ("has no init function; this is a bug in the plugin");
      g_module_close (module);
      return loaded;
    }

  /* From here on the module may have registered GTypes: keep it. */
  g_module_make_resident (module);
  plugin.desc = desc;

  if (!desc->init (&plugin, &init_error))
    {
      loaded->error = g_strdup_printf ("could not start: %s",
                                       init_error ? init_error->message :
                                       "its init function failed without "
                                       "saying why");
      return loaded;
    }

  if (plugin.n_registered != 1)
    {
      loaded->error = g_strdup_printf ("registered %u types; a plugin must "
                                       "register exactly one (this is a bug "
                                       "in the plugin)", plugin.n_registered);
      return loaded;
    }

  loaded->error = check_type (plugin.kind, plugin.type);
  if (loaded->error != NULL)
    return loaded;

  loaded->kind = plugin.kind;
  loaded->type = plugin.type;
  loaded->rank = plugin.rank;
  return loaded;
}

/* Whether a privileged process may load @path; sets @reason if not. */
static gboolean
file_is_trusted (const char  *path,
                 char       **reason)
{
  GStatBuf st;

  if (g_stat (path, &st) != 0)
    {
      int saved_errno = errno;
      *reason = g_strdup_printf ("cannot be checked: %s", g_strerror (saved_errno));
      return FALSE;
    }

  if (st.st_uid != 0)
    {
      *reason = g_strdup_printf ("is refused: it belongs to uid %u, and a "
                                 "privileged process only loads plugins owned "
                                 "by root (chown root %s if you trust it)",
                                 (guint) st.st_uid, path);
      return FALSE;
    }

  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
    {
      *reason = g_strdup_printf ("is refused: it is writable by group or "
                                 "others (mode %04o), and a privileged process "
                                 "only loads plugins only root can change "
                                 "(chmod go-w %s if you trust it)",
                                 (guint) (st.st_mode & 07777), path);
      return FALSE;
    }

  if ((st.st_mode & (S_ISUID | S_ISGID)) != 0)
    {
      *reason = g_strdup_printf ("is refused: it has the setuid or setgid bit "
                                 "(mode %04o), which a plugin never needs",
                                 (guint) (st.st_mode & 07777));
      return FALSE;
    }

  return TRUE;
}

/**
 * _natkit_plugin_loader_get_dirs:
 *
 * Returns: the plugin search path, in order
 */
char **
_natkit_plugin_loader_get_dirs (void)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  NatkitPrivilege privilege = get_privilege ();
  const char *env;

  if (privilege != NATKIT_PRIVILEGE_SECURE)
    {
      env = g_getenv ("NATKIT_PLUGIN_PATH");
      if (env != NULL)
        {
          g_auto(GStrv) dirs = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
          for (guint i = 0; dirs[i]; i++)
            if (*dirs[i] != '\0')
              g_strv_builder_add (builder, dirs[i]);
        }
    }
  else if (g_getenv ("NATKIT_PLUGIN_PATH") != NULL)
    g_debug ("ignoring NATKIT_PLUGIN_PATH: the process runs with privileges "
             "its environment's owner may not have (setuid or capabilities)");

  env = privilege != NATKIT_PRIVILEGE_SECURE ?
        g_getenv ("NATKIT_PLUGIN_SYSTEM_PATH") : NULL;
  if (env != NULL)
    {
      g_auto(GStrv) dirs = g_strsplit (env, G_SEARCHPATH_SEPARATOR_S, -1);
      for (guint i = 0; dirs[i]; i++)
        if (*dirs[i] != '\0')
          g_strv_builder_add (builder, dirs[i]);
    }
  else
    g_strv_builder_add (builder, NATKIT_PLUGINDIR);

  return g_strv_builder_end (builder);
}

static NatkitPluginInfo *
info_for_file (const char      *path,
               const char      *name,
               NatkitPrivilege  privilege)
{
  NatkitPluginInfo *info = _natkit_plugin_info_new (name, path);
  g_autofree char *real = NULL;
  LoadedModule *loaded;

  if (privilege != NATKIT_PRIVILEGE_NONE &&
      !file_is_trusted (path, &info->reason))
    return info;

  /* One load per file, however it is reached (symlinks, relative paths). */
  real = realpath (path, NULL);
  if (real == NULL)
    real = g_canonicalize_filename (path, NULL);

  G_LOCK (loader);
  if (loaded_modules == NULL)
    loaded_modules = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                            loaded_module_free);
  loaded = g_hash_table_lookup (loaded_modules, real);
  if (loaded == NULL)
    {
      loaded = load_module (path, name);
      g_hash_table_insert (loaded_modules, g_strdup (real), loaded);
    }

  info->description = g_strdup (loaded->description);
  info->version = g_strdup (loaded->version);
  if (loaded->error != NULL)
    info->reason = g_strdup (loaded->error);
  else
    {
      info->state = NATKIT_PLUGIN_STATE_LOADED;
      info->kind = loaded->kind;
      info->gtype = loaded->type;
      info->rank = info->default_rank = loaded->rank;
    }
  G_UNLOCK (loader);

  if (info->reason != NULL)
    g_debug ("plugin %s (%s) %s", name, path, info->reason);
  return info;
}

static int
compare_names (gconstpointer a,
               gconstpointer b)
{
  return strcmp (*(const char * const *) a, *(const char * const *) b);
}

static void
scan_dir (const char      *dir_path,
          GHashTable      *seen,
          GPtrArray       *infos,
          NatkitPrivilege  privilege)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func (g_free);
  const char *entry;

  dir = g_dir_open (dir_path, 0, &error);
  if (dir == NULL)
    {
      if (g_error_matches (error, G_FILE_ERROR, G_FILE_ERROR_NOENT))
        g_debug ("plugin folder %s does not exist", dir_path);
      else
        g_warning ("Cannot read the plugin folder %s (%s): the plugins in it "
                   "are not loaded. Fix its permissions, or remove it from "
                   "NATKIT_PLUGIN_PATH.", dir_path, error->message);
      return;
    }

  while ((entry = g_dir_read_name (dir)) != NULL)
    g_ptr_array_add (names, g_strdup (entry));
  g_ptr_array_sort (names, compare_names);

  for (guint i = 0; i < names->len; i++)
    {
      const char *file = g_ptr_array_index (names, i);
      g_autofree char *path = g_build_filename (dir_path, file, NULL);
      g_autofree char *name = NULL;
      NatkitPluginInfo *first;
      NatkitPluginInfo *info;

      if (!g_str_has_prefix (file, PLUGIN_PREFIX) ||
          !g_str_has_suffix (file, PLUGIN_SUFFIX) ||
          strlen (file) <= strlen (PLUGIN_PREFIX PLUGIN_SUFFIX))
        {
          g_debug ("skipping %s: plugin files are named "
                   PLUGIN_PREFIX "NAME" PLUGIN_SUFFIX, path);
          continue;
        }

      if (g_file_test (path, G_FILE_TEST_IS_DIR))
        continue;

      name = g_strndup (file + strlen (PLUGIN_PREFIX),
                        strlen (file) - strlen (PLUGIN_PREFIX PLUGIN_SUFFIX));
      if (!name_is_valid (name))
        {
          info = _natkit_plugin_info_new (name, path);
          info->reason = g_strdup ("has an invalid name: plugin names use "
                                   "lower-case letters, digits and '-'");
          g_ptr_array_add (infos, info);
          continue;
        }

      first = g_hash_table_lookup (seen, name);
      if (first != NULL)
        {
          info = _natkit_plugin_info_new (name, path);
          info->state = NATKIT_PLUGIN_STATE_DISABLED;
          info->reason = g_strdup_printf ("is not used: a plugin of the same "
                                          "name comes first in the search "
                                          "path (%s)", first->filename);
          g_ptr_array_add (infos, info);
          continue;
        }

      info = info_for_file (path, name, privilege);
      g_hash_table_insert (seen, g_strdup (name), info);
      g_ptr_array_add (infos, info);
    }
}

static void
print_ranks_help (GPtrArray *infos)
{
  g_printerr ("NATKIT_PLUGIN_RANKS re-ranks or disables plugins without "
              "recompiling:\n"
              "  NATKIT_PLUGIN_RANKS=NAME:RANK[,NAME:RANK…]\n"
              "RANK is none, marginal, secondary or primary (optionally with "
              "an offset: primary+1), a number, or 'disabled'.\n"
              "It overrides the configuration file's \"plugins\" section.\n\n"
              "Plugins found:\n");
  for (guint i = 0; i < infos->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (infos, i);
      g_autofree char *rank = natkit_rank_to_string (info->rank);

      g_printerr ("  %-12s %-10s %s\n", info->name, rank,
                  info->state == NATKIT_PLUGIN_STATE_LOADED ? "" :
                  info->reason);
    }
}

static void
apply_overrides (GPtrArray    *infos,
                 NatkitConfig *config)
{
  const char *env = g_getenv ("NATKIT_PLUGIN_RANKS");
  const char *source = config ? natkit_config_get_filename (config) : NULL;

  for (guint i = 0; config && i < infos->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (infos, i);
      int rank;

      if (info->state != NATKIT_PLUGIN_STATE_LOADED)
        continue;
      if (natkit_config_get_plugin_rank (config, info->name, &rank))
        info->rank = rank;
      if (!natkit_config_get_plugin_enabled (config, info->name))
        {
          info->state = NATKIT_PLUGIN_STATE_DISABLED;
          info->reason = g_strdup_printf ("is disabled in the configuration%s%s",
                                          source ? " " : "",
                                          source ? source : "");
        }
    }

  if (env == NULL || get_privilege () == NATKIT_PRIVILEGE_SECURE)
    return;

  if (g_str_equal (env, "help"))
    return;   /* listed once sorted */

  {
    g_auto(GStrv) items = g_strsplit (env, ",", -1);

    for (guint i = 0; items[i]; i++)
      {
        g_auto(GStrv) parts = NULL;
        g_autoptr(GError) error = NULL;
        NatkitPluginInfo *target = NULL;
        char *item = g_strstrip (items[i]);
        int rank;

        if (*item == '\0')
          continue;

        parts = g_strsplit (item, ":", 2);
        if (parts[1] == NULL)
          {
            g_warning ("NATKIT_PLUGIN_RANKS: “%s” is not NAME:RANK; run with "
                       "NATKIT_PLUGIN_RANKS=help for the syntax", item);
            continue;
          }
        g_strstrip (parts[0]);
        g_strstrip (parts[1]);

        for (guint j = 0; j < infos->len; j++)
          {
            NatkitPluginInfo *info = g_ptr_array_index (infos, j);
            if (g_str_equal (info->name, parts[0]) &&
                info->state != NATKIT_PLUGIN_STATE_FAILED &&
                (target == NULL || target->state != NATKIT_PLUGIN_STATE_LOADED))
              target = info;
          }

        if (target == NULL)
          {
            g_warning ("NATKIT_PLUGIN_RANKS names the plugin “%s”, but no such "
                       "plugin was loaded; run with NATKIT_PLUGIN_RANKS=help "
                       "to list them", parts[0]);
            continue;
          }

        if (g_ascii_strcasecmp (parts[1], "disabled") == 0)
          {
            if (target->state == NATKIT_PLUGIN_STATE_LOADED)
              {
                target->state = NATKIT_PLUGIN_STATE_DISABLED;
                g_free (target->reason);
                target->reason = g_strdup ("is disabled by NATKIT_PLUGIN_RANKS");
              }
            continue;
          }

        if (!natkit_rank_parse (parts[1], &rank, &error))
          {
            g_warning ("NATKIT_PLUGIN_RANKS, plugin “%s”: %s", parts[0],
                       error->message);
            continue;
          }
        target->rank = rank;
      }
  }
}

int
_natkit_plugin_info_compare (gconstpointer a,
                             gconstpointer b)
{
  const NatkitPluginInfo *ia = *(NatkitPluginInfo * const *) a;
  const NatkitPluginInfo *ib = *(NatkitPluginInfo * const *) b;

  /* Usable plugins first, by rank (highest first), ties by name. */
  if ((ia->state == NATKIT_PLUGIN_STATE_LOADED) !=
      (ib->state == NATKIT_PLUGIN_STATE_LOADED))
    return ia->state == NATKIT_PLUGIN_STATE_LOADED ? -1 : 1;
  if (ia->rank != ib->rank)
    return ia->rank > ib->rank ? -1 : 1;
  return g_strcmp0 (ia->name, ib->name);
}

/**
 * _natkit_plugin_loader_scan:
 * @config: (nullable): settings with rank overrides
 *
 * Returns: (transfer full) (element-type NatkitPluginInfo): one info per
 *   plugin file found, sorted
 */
GPtrArray *
_natkit_plugin_loader_scan (NatkitConfig *config)
{
  g_auto(GStrv) dirs = _natkit_plugin_loader_get_dirs ();
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal,
                                                      g_free, NULL);
  GPtrArray *infos = g_ptr_array_new_with_free_func (g_object_unref);
  NatkitPrivilege privilege = get_privilege ();

  if (!g_module_supported ())
    {
      g_warning ("This system cannot load modules: natkit runs without plugins");
      return infos;
    }

  for (guint i = 0; dirs[i]; i++)
    scan_dir (dirs[i], seen, infos, privilege);

  apply_overrides (infos, config);
  g_ptr_array_sort (infos, _natkit_plugin_info_compare);
  if (privilege != NATKIT_PRIVILEGE_SECURE &&
      g_strcmp0 (g_getenv ("NATKIT_PLUGIN_RANKS"), "help") == 0)
    print_ranks_help (infos);
  return infos;
}
