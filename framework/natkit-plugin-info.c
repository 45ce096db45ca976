/* natkit-plugin-info.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "natkit-plugin-info-private.h"

/**
 * NatkitPluginInfo:
 *
 * What the manager found out about one plugin file: its name, what it
 * provides, its rank, and whether it loaded — with the reason when it did
 * not. [method@Natkit.Manager.list_plugins] returns one per plugin file.
 */

G_DEFINE_FINAL_TYPE (NatkitPluginInfo, natkit_plugin_info, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_NAME,
  PROP_DESCRIPTION,
  PROP_VERSION,
  PROP_KIND,
  PROP_RANK,
  PROP_DEFAULT_RANK,
  PROP_STATE,
  PROP_REASON,
  PROP_FILENAME,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

static void
natkit_plugin_info_finalize (GObject *object)
{
  NatkitPluginInfo *self = NATKIT_PLUGIN_INFO (object);

  g_free (self->name);
  g_free (self->description);
  g_free (self->version);
  g_free (self->filename);
  g_free (self->reason);

  G_OBJECT_CLASS (natkit_plugin_info_parent_class)->finalize (object);
}

static void
natkit_plugin_info_get_property (GObject    *object,
                                 guint       prop_id,
                                 GValue     *value,
                                 GParamSpec *pspec)
{
  NatkitPluginInfo *self = NATKIT_PLUGIN_INFO (object);

  switch (prop_id)
    {
    case PROP_NAME:
      g_value_set_string (value, self->name);
      break;
    case PROP_DESCRIPTION:
      g_value_set_string (value, self->description);
      break;
    case PROP_VERSION:
      g_value_set_string (value, self->version);
      break;
    case PROP_KIND:
      g_value_set_enum (value, self->kind);
      break;
    case PROP_RANK:
      g_value_set_int (value, self->rank);
      break;
    case PROP_DEFAULT_RANK:
      g_value_set_int (value, self->default_rank);
      break;
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_REASON:
      g_value_set_string (value, self->reason);
      break;
    case PROP_FILENAME:
      g_value_set_string (value, self->filename);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_plugin_info_class_init (NatkitPluginInfoClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

  object_class->finalize = natkit_plugin_info_finalize;
  object_class->get_property = natkit_plugin_info_get_property;

  /**
   * NatkitPluginInfo:name:
   *
   * The plugin's name, from its file name (`libnatkit-NAME.so`).
   */
  properties[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL, flags);
  /**
   * NatkitPluginInfo:description:
   *
   * What the plugin does, or %NULL if it could not be loaded.
   */
  properties[PROP_DESCRIPTION] = g_param_spec_string ("description", NULL, NULL, NULL, flags);
  /**
   * NatkitPluginInfo:version:
   *
   * The plugin's version, or %NULL if it could not be loaded.
   */
  properties[PROP_VERSION] = g_param_spec_string ("version", NULL, NULL, NULL, flags);
  /**
   * NatkitPluginInfo:kind:
   *
   * What the plugin provides (meaningless when it failed to load).
   */
  properties[PROP_KIND] = g_param_spec_enum ("kind", NULL, NULL,
                                             NATKIT_TYPE_PLUGIN_KIND,
                                             NATKIT_PLUGIN_KIND_TRAVERSAL, flags);
  /**
   * NatkitPluginInfo:rank:
   *
   * The rank in effect, after configuration and environment overrides.
   */
  properties[PROP_RANK] = g_param_spec_int ("rank", NULL, NULL,
                                            G_MININT, G_MAXINT, 0, flags);
  /**
   * NatkitPluginInfo:default-rank:
   *
   * The rank the plugin registered itself with.
   */
  properties[PROP_DEFAULT_RANK] = g_param_spec_int ("default-rank", NULL, NULL,
                                                    G_MININT, G_MAXINT, 0, flags);
  /**
   * NatkitPluginInfo:state:
   *
   * Whether the plugin is loaded, disabled or failed.
   */
  properties[PROP_STATE] = g_param_spec_enum ("state", NULL, NULL,
                                              NATKIT_TYPE_PLUGIN_STATE,
                                              NATKIT_PLUGIN_STATE_LOADED, flags);
  /**
   * NatkitPluginInfo:reason:
   *
   * Why the plugin is disabled or failed, in words a person can act on;
   * %NULL when it is loaded.
   */
  properties[PROP_REASON] = g_param_spec_string ("reason", NULL, NULL, NULL, flags);
  /**
   * NatkitPluginInfo:filename:
   *
   * The plugin file.
   */
  properties[PROP_FILENAME] = g_param_spec_string ("filename", NULL, NULL, NULL, flags);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
natkit_plugin_info_init (NatkitPluginInfo *self)
{
  self->state = NATKIT_PLUGIN_STATE_FAILED;
  self->gtype = G_TYPE_INVALID;
}

NatkitPluginInfo *
_natkit_plugin_info_new (const char *name,
                         const char *filename)
{
  NatkitPluginInfo *self = g_object_new (NATKIT_TYPE_PLUGIN_INFO, NULL);

  self->name = g_strdup (name);
  self->filename = g_strdup (filename);
  return self;
}

/**
 * natkit_plugin_info_get_name:
 * @self: a plugin info
 *
 * Returns: the plugin's name
 */
const char *
natkit_plugin_info_get_name (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NULL);
  return self->name;
}

/**
 * natkit_plugin_info_get_description:
 * @self: a plugin info
 *
 * Returns: (nullable): what the plugin does
 */
const char *
natkit_plugin_info_get_description (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NULL);
  return self->description;
}

/**
 * natkit_plugin_info_get_version:
 * @self: a plugin info
 *
 * Returns: (nullable): the plugin's version
 */
const char *
natkit_plugin_info_get_version (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NULL);
  return self->version;
}

/**
 * natkit_plugin_info_get_kind:
 * @self: a plugin info
 *
 * Returns: what the plugin provides
 */
NatkitPluginKind
natkit_plugin_info_get_kind (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NATKIT_PLUGIN_KIND_TRAVERSAL);
  return self->kind;
}

/**
 * natkit_plugin_info_get_rank:
 * @self: a plugin info
 *
 * Returns: the rank in effect
 */
int
natkit_plugin_info_get_rank (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), 0);
  return self->rank;
}

/**
 * natkit_plugin_info_get_default_rank:
 * @self: a plugin info
 *
 * Returns: the rank the plugin registered itself with
 */
int
natkit_plugin_info_get_default_rank (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), 0);
  return self->default_rank;
}

/**
 * natkit_plugin_info_get_state:
 * @self: a plugin info
 *
 * Returns: whether the plugin is loaded, disabled or failed
 */
NatkitPluginState
natkit_plugin_info_get_state (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NATKIT_PLUGIN_STATE_FAILED);
  return self->state;
}

/**
 * natkit_plugin_info_get_reason:
 * @self: a plugin info
 *
 * Returns: (nullable): why the plugin is disabled or failed
 */
const char *
natkit_plugin_info_get_reason (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NULL);
  return self->reason;
}

/**
 * natkit_plugin_info_get_filename:
 * @self: a plugin info
 *
 * Returns: the plugin file
 */
const char *
natkit_plugin_info_get_filename (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), NULL);
  return self->filename;
}

/**
 * natkit_plugin_info_get_gtype:
 * @self: a plugin info
 *
 * Returns: the type the plugin registered, or %G_TYPE_INVALID when it did
 *   not load
 */
GType
natkit_plugin_info_get_gtype (NatkitPluginInfo *self)
{
  g_return_val_if_fail (NATKIT_IS_PLUGIN_INFO (self), G_TYPE_INVALID);
  return self->gtype;
}

static const struct {
  const char *name;
  int rank;
} rank_names[] = {
  { "none", NATKIT_RANK_NONE },
  { "marginal", NATKIT_RANK_MARGINAL },
  { "secondary", NATKIT_RANK_SECONDARY },
  { "primary", NATKIT_RANK_PRIMARY },
};

/**
 * natkit_rank_to_string:
 * @rank: a rank
 *
 * Returns: (transfer full): the rank's name (`primary`), or the name of the
 *   nearest named rank with an offset (`primary+1`, `secondary-8`)
 */
char *
natkit_rank_to_string (int rank)
{
  int best = 0;

  for (guint i = 0; i < G_N_ELEMENTS (rank_names); i++)
    {
      if (rank_names[i].rank == rank)
        return g_strdup (rank_names[i].name);
      if (ABS (rank - rank_names[i].rank) < ABS (rank - rank_names[best].rank))
        best = i;
    }
  return g_strdup_printf ("%s%+d", rank_names[best].name,
                          rank - rank_names[best].rank);
}

/**
 * natkit_rank_parse:
 * @text: a rank: a name (`none`, `marginal`, `secondary`, `primary`, in any
 *   case), a name with an offset (`primary+1`), or an integer
 * @rank: (out): the rank
 * @error: return location for a #GError
 *
 * Parses a rank as written in the configuration or `NATKIT_PLUGIN_RANKS`.
 *
 * Returns: %TRUE on success, or %FALSE with a %NATKIT_ERROR_INVALID_ARGUMENT
 *   error
 */
gboolean
natkit_rank_parse (const char  *text,
                   int         *rank,
                   GError     **error)
{
  g_autofree char *lower = NULL;
  const char *rest = NULL;
  int base = 0;
  char *end = NULL;
  gint64 value;

  g_return_val_if_fail (text != NULL, FALSE);
  g_return_val_if_fail (rank != NULL, FALSE);

  lower = g_strstrip (g_ascii_strdown (text, -1));

  for (guint i = 0; i < G_N_ELEMENTS (rank_names); i++)
    {
      if (g_str_has_prefix (lower, rank_names[i].name))
        {
          base = rank_names[i].rank;
          rest = lower + strlen (rank_names[i].name);
          break;
        }
    }

  if (rest != NULL && *rest == '\0')
    {
      *rank = base;
      return TRUE;
    }

  errno = 0;
  value = g_ascii_strtoll (rest != NULL ? rest : lower, &end, 10);
  if (end != NULL && *end == '\0' && errno == 0 &&
      end != (rest != NULL ? rest : lower) &&
      (rest == NULL || *rest == '+' || *rest == '-') &&
      base + value >= G_MININT && base + value <= G_MAXINT)
    {
      *rank = (int) (base + value);
      return TRUE;
    }

  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
               "“%s” is not a rank: use none, marginal, secondary or primary, "
               "optionally with an offset such as primary+1, or a number",
               text);
  return FALSE;
}
