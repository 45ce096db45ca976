/* natkit-manager.c: the entry point
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"
#include "natkit-connector-private.h"
#include "natkit-history-private.h"
#include "natkit-plugin-info-private.h"
#include "natkit-plugin-loader-private.h"
#include "natkit-nat-detector-private.h"
#include "natkit-nat-info-private.h"
#include "natkit-port-mapping-private.h"
#include "natkit-util-private.h"
#include "natkit-wire-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

/**
 * NatkitManager:
 *
 * The entry point of natkit: it reads the settings, loads the plugins, and
 * finds a way to a peer.
 *
 * A manager loads the plugins once, when it is created, from each folder
 * of `NATKIT_PLUGIN_PATH` and then from natkit's plugin folder. A plugin
 * that cannot be loaded is skipped, never fatal: [method@Natkit.Manager.list_plugins]
 * says why. Ranks come from the plugins, overridden by the configuration
 * file and then by the `NATKIT_PLUGIN_RANKS` environment variable.
 *
 * A manager never remembers a winner: every connection attempt asks every
 * enabled method again, in rank order, and falls through to the next one
 * when a method fails, collecting each failure for the final error.
 */

/* the registries of live connections and port mappings (below) */
#define NATKIT_TYPE_LIVE_LIST (natkit_live_list_get_type ())
G_DECLARE_FINAL_TYPE (NatkitLiveList, natkit_live_list, NATKIT, LIVE_LIST, GObject)

struct _NatkitManager
{
  GObject         parent_instance;

  NatkitConfig   *config;
  NatkitIdentity *identity;
  GPtrArray      *plugins;   /* NatkitPluginInfo, sorted */
  GHashTable     *mappers;   /* plugin name → its NatkitPortMapper */
  NatkitConnector *connector;
  NatkitHistory   *history;
  NatkitNatInfo   *nat_info;      /* the newest detection, or NULL */
  gint64           nat_detected;  /* when, Unix time */
  gboolean         nat_loaded;    /* nat.json was read */
  NatkitLiveList  *connections;   /* NatkitConnection */
  NatkitLiveList  *port_mappings; /* NatkitPortMapping */
  GHashTable      *metrics;      /* method → MethodMetrics */
};

G_DEFINE_FINAL_TYPE (NatkitManager, natkit_manager, G_TYPE_OBJECT)

/* The registries of live connections and of live port mappings: a
 * #GListModel that does not keep its items alive (a connection nobody
 * holds is closed, a mapping nobody holds is released, as before), and
 * drops each when its state says it ended (a connection closed or failed,
 * a mapping released) or it is finalized. */

typedef gboolean (*LiveListEndedFunc) (GObject *item);

struct _NatkitLiveList
{
  GObject            parent_instance;
  GType              item_type;
  LiveListEndedFunc  ended;
  GPtrArray         *items;   /* not owned: weak references */
};

static void natkit_live_list_model_init (GListModelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitLiveList, natkit_live_list, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (G_TYPE_LIST_MODEL,
                                                      natkit_live_list_model_init))

static GType
natkit_live_list_get_item_type (GListModel *model)
{
  return NATKIT_LIVE_LIST (model)->item_type;
}

static guint
natkit_live_list_get_n_items (GListModel *model)
{
  return NATKIT_LIVE_LIST (model)->items->len;
}

static gpointer
natkit_live_list_get_item (GListModel *model,
                           guint       position)
{
  NatkitLiveList *self = NATKIT_LIVE_LIST (model);

  if (position >= self->items->len)
    return NULL;
  return g_object_ref (g_ptr_array_index (self->items, position));
}

static void
natkit_live_list_model_init (GListModelInterface *iface)
{
  iface->get_item_type = natkit_live_list_get_item_type;
  iface->get_n_items = natkit_live_list_get_n_items;
  iface->get_item = natkit_live_list_get_item;
}

static void live_item_gone_cb (gpointer  user_data,
                               GObject  *where_the_object_was);

static void
natkit_live_list_dispose (GObject *object)
{
  NatkitLiveList *self = NATKIT_LIVE_LIST (object);

  for (guint i = 0; i < self->items->len; i++)
    {
      GObject *item = g_ptr_array_index (self->items, i);

      g_object_weak_unref (item, live_item_gone_cb, self);
      g_signal_handlers_disconnect_by_data (item, self);
    }
  g_ptr_array_set_size (self->items, 0);

  G_OBJECT_CLASS (natkit_live_list_parent_class)->dispose (object);
}

static void
natkit_live_list_finalize (GObject *object)
{
  g_ptr_array_unref (NATKIT_LIVE_LIST (object)->items);

  G_OBJECT_CLASS (natkit_live_list_parent_class)->finalize (object);
}

static void
natkit_live_list_class_init (NatkitLiveListClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = natkit_live_list_dispose;
  object_class->finalize = natkit_live_list_finalize;
}

static void
natkit_live_list_init (NatkitLiveList *self)
{
  self->items = g_ptr_array_new ();
}

static NatkitLiveList *
live_list_new (GType             item_type,
               LiveListEndedFunc ended)
{
  NatkitLiveList *self = g_object_new (NATKIT_TYPE_LIVE_LIST, NULL);

  self->item_type = item_type;
  self->ended = ended;
  return self;
}

static void
live_list_drop (NatkitLiveList *self,
                gpointer        item)
{
  guint position;

  if (!g_ptr_array_find (self->items, item, &position))
    return;
  g_ptr_array_remove_index (self->items, position);
  g_list_model_items_changed (G_LIST_MODEL (self), position, 1, 0);
}

static void
live_item_gone_cb (gpointer  user_data,
                   GObject  *where_the_object_was)
{
  live_list_drop (user_data, where_the_object_was);
}

static void
live_item_state_cb (GObject    *item,
                    GParamSpec *pspec,
                    gpointer    user_data)
{
  NatkitLiveList *self = user_data;

  if (!self->ended (item))
    return;
  g_signal_handlers_disconnect_by_data (item, self);
  g_object_weak_unref (item, live_item_gone_cb, self);
  live_list_drop (self, item);
}

static void
live_list_add (NatkitLiveList *self,
               gpointer        item)
{
  g_return_if_fail (G_TYPE_CHECK_INSTANCE_TYPE (item, self->item_type));

  if (self->ended (item) || g_ptr_array_find (self->items, item, NULL))
    return;
  g_object_weak_ref (G_OBJECT (item), live_item_gone_cb, self);
  g_signal_connect (item, "notify::state", G_CALLBACK (live_item_state_cb), self);
  g_ptr_array_add (self->items, item);
  g_list_model_items_changed (G_LIST_MODEL (self), self->items->len - 1, 0, 1);
}

static gboolean
connection_ended (GObject *item)
{
  NatkitConnectionState state = natkit_connection_get_state (NATKIT_CONNECTION (item));

  return state == NATKIT_CONNECTION_STATE_CLOSED || state == NATKIT_CONNECTION_STATE_FAILED;
}

static gboolean
port_mapping_ended (GObject *item)
{
  return natkit_port_mapping_get_state (NATKIT_PORT_MAPPING (item)) ==
         NATKIT_PORT_MAPPING_STATE_RELEASED;
}

/* Metrics: per method, since the manager was created. */

#define METRICS_MAX_REASONS     8      /* distinct failure reasons per method */
#define METRICS_REASON_CHARS    120
#define METRICS_OTHER_REASONS   "(other reasons)"
#define METRICS_MEDIAN_SAMPLES  101    /* the median is over the last ones */

typedef struct
{
  guint64     attempts;
  guint64     successes;
  guint64     failures;
  GHashTable *reasons;                 /* bucket → count (GUINT_TO_POINTER) */
  guint64     connect_count;
  gint64      connect_min;
  gint64      connect_max;
  gint64      connect_sum;
  gint64      samples[METRICS_MEDIAN_SAMPLES];
  guint       n_samples;
  guint       next_sample;
} MethodMetrics;

static void
method_metrics_free (gpointer data)
{
  MethodMetrics *m = data;

  g_hash_table_unref (m->reasons);
  g_free (m);
}

static MethodMetrics *
lookup_metrics (NatkitManager *self,
                const char    *method)
{
  MethodMetrics *m = g_hash_table_lookup (self->metrics, method);

  if (!m)
    {
      m = g_new0 (MethodMetrics, 1);
      m->reasons = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
      g_hash_table_insert (self->metrics, g_strdup (method), m);
    }
  return m;
}

/* One bucket for reasons that differ only in numbers (addresses, ports,
 * times), cut to a bounded length. */
static char *
reason_bucket (const char *reason)
{
  g_autofree char *cut = NULL;
  GString *bucket;

  if (!reason || !*reason || !g_utf8_validate (reason, -1, NULL))
    return g_strdup ("(no reason given)");
  cut = g_utf8_substring (reason, 0, MIN (g_utf8_strlen (reason, -1),
                                          METRICS_REASON_CHARS));
  bucket = g_string_new (NULL);
  for (const char *p = cut; *p; p++)
    {
      if (g_ascii_isdigit (*p))
        {
          g_string_append_c (bucket, 'N');
          while (g_ascii_isdigit (p[1]))
            p++;
        }
      else
        g_string_append_c (bucket, *p);
    }
  return g_string_free (bucket, FALSE);
}

void
_natkit_manager_record_attempt (NatkitManager *self,
                                const char    *method)
{
  lookup_metrics (self, method)->attempts++;
}

void
_natkit_manager_record_outcome (NatkitManager *self,
                                const char    *method,
                                gboolean       success,
                                gint64         connect_us,
                                const char    *reason)
{
  MethodMetrics *m = lookup_metrics (self, method);

  if (!success)
    {
      g_autofree char *bucket = reason_bucket (reason);
      gpointer count;

      m->failures++;
      if (!g_hash_table_contains (m->reasons, bucket) &&
          g_hash_table_size (m->reasons) >= METRICS_MAX_REASONS)
        {
          g_free (bucket);
          bucket = g_strdup (METRICS_OTHER_REASONS);
        }
      count = g_hash_table_lookup (m->reasons, bucket);
      g_hash_table_replace (m->reasons, g_steal_pointer (&bucket),
                            GUINT_TO_POINTER (GPOINTER_TO_UINT (count) + 1));
      return;
    }

  m->successes++;
  if (connect_us < 0)
    return;
  m->connect_min = m->connect_count ? MIN (m->connect_min, connect_us) : connect_us;
  m->connect_max = m->connect_count ? MAX (m->connect_max, connect_us) : connect_us;
  m->connect_count++;
  m->connect_sum += connect_us;
  m->samples[m->next_sample] = connect_us;
  m->next_sample = (m->next_sample + 1) % METRICS_MEDIAN_SAMPLES;
  m->n_samples = MIN (m->n_samples + 1, METRICS_MEDIAN_SAMPLES);
}

static int
compare_gint64 (gconstpointer a,
                gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

static int
compare_strings (const void *a,
                 const void *b)
{
  return strcmp (*(char * const *) a, *(char * const *) b);
}

static GVariant *
method_metrics_to_variant (MethodMetrics *m)
{
  GVariantDict dict;
  GVariantBuilder reasons;
  GHashTableIter iter;
  gpointer key, value;

  g_variant_dict_init (&dict, NULL);
  g_variant_dict_insert (&dict, "attempts", "t", m->attempts);
  g_variant_dict_insert (&dict, "successes", "t", m->successes);
  g_variant_dict_insert (&dict, "failures", "t", m->failures);
  g_variant_builder_init (&reasons, G_VARIANT_TYPE ("a{st}"));
  g_hash_table_iter_init (&iter, m->reasons);
  while (g_hash_table_iter_next (&iter, &key, &value))
    g_variant_builder_add (&reasons, "{st}", key, (guint64) GPOINTER_TO_UINT (value));
  g_variant_dict_insert_value (&dict, "failure-reasons", g_variant_builder_end (&reasons));
  g_variant_dict_insert (&dict, "connect-count", "t", m->connect_count);
  if (m->connect_count > 0)
    {
      gint64 sorted[METRICS_MEDIAN_SAMPLES];
      gint64 median;

      memcpy (sorted, m->samples, m->n_samples * sizeof (gint64));
      qsort (sorted, m->n_samples, sizeof (gint64), compare_gint64);
      median = m->n_samples % 2 ? sorted[m->n_samples / 2] :
        (sorted[m->n_samples / 2 - 1] + sorted[m->n_samples / 2]) / 2;
      g_variant_dict_insert (&dict, "connect-min-us", "x", m->connect_min);
      g_variant_dict_insert (&dict, "connect-median-us", "x", median);
      g_variant_dict_insert (&dict, "connect-mean-us", "x",
                             m->connect_sum / (gint64) m->connect_count);
      g_variant_dict_insert (&dict, "connect-max-us", "x", m->connect_max);
    }
  return g_variant_dict_end (&dict);
}

enum {
  PROP_0,
  PROP_CONFIG,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_DETECT_PROGRESS,
  SIGNAL_INCOMING,
  SIGNAL_CONNECT_PROGRESS,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void
natkit_manager_constructed (GObject *object)
{
  NatkitManager *self = NATKIT_MANAGER (object);

  G_OBJECT_CLASS (natkit_manager_parent_class)->constructed (object);

  if (self->config == NULL)
    self->config = natkit_config_new ();
  self->plugins = _natkit_plugin_loader_scan (self->config);
  self->mappers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         g_object_unref);
  self->connector = _natkit_connector_new (self);
}

static void
natkit_manager_dispose (GObject *object)
{
  NatkitManager *self = NATKIT_MANAGER (object);

  if (self->connector)
    _natkit_connector_shutdown (self->connector);
  g_clear_object (&self->connector);

  G_OBJECT_CLASS (natkit_manager_parent_class)->dispose (object);
}

static void
natkit_manager_finalize (GObject *object)
{
  NatkitManager *self = NATKIT_MANAGER (object);

  g_clear_object (&self->config);
  g_clear_object (&self->identity);
  g_clear_pointer (&self->plugins, g_ptr_array_unref);
  g_clear_pointer (&self->mappers, g_hash_table_unref);
  g_clear_object (&self->history);
  g_clear_object (&self->nat_info);
  g_clear_object (&self->connections);
  g_clear_object (&self->port_mappings);
  g_clear_pointer (&self->metrics, g_hash_table_unref);

  G_OBJECT_CLASS (natkit_manager_parent_class)->finalize (object);
}

static void
natkit_manager_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  NatkitManager *self = NATKIT_MANAGER (object);

  switch (prop_id)
    {
    case PROP_CONFIG:
      g_value_set_object (value, self->config);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_manager_set_property (GObject      *object,
                             guint         prop_id,
                             const GValue *value,
                             GParamSpec   *pspec)
{
  NatkitManager *self = NATKIT_MANAGER (object);

  switch (prop_id)
    {
    case PROP_CONFIG:
      self->config = g_value_dup_object (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_manager_class_init (NatkitManagerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->constructed = natkit_manager_constructed;
  object_class->dispose = natkit_manager_dispose;
  object_class->finalize = natkit_manager_finalize;
  object_class->get_property = natkit_manager_get_property;
  object_class->set_property = natkit_manager_set_property;

  /**
   * NatkitManager:config:
   *
   * The settings the manager runs with.
   */
  properties[PROP_CONFIG] =
    g_param_spec_object ("config", NULL, NULL, NATKIT_TYPE_CONFIG,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * NatkitManager::detect-progress:
   * @self: the manager
   * @message: what detection is doing or found, in words
   *
   * Emitted while [method@Natkit.Manager.detect_nat_async] runs, so a user
   * interface can show progress.
   */
  signals[SIGNAL_DETECT_PROGRESS] =
    g_signal_new ("detect-progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);

  /**
   * NatkitManager::incoming:
   * @self: the manager
   * @connection: the new connection
   *
   * Emitted for every connection a peer opened to this node through a
   * channel the manager listens on ([method@Natkit.Manager.listen]), once
   * its secure session is up. Keep a reference to @connection: a
   * connection nobody holds is closed.
   */
  signals[SIGNAL_INCOMING] =
    g_signal_new ("incoming", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, NATKIT_TYPE_CONNECTION);

  /**
   * NatkitManager::connect-progress:
   * @self: the manager
   * @session_id: the connection's session ID
   * @peer_id: the peer
   * @event: `attempt` (a method starts) or `attempt-failed`
   * @method: the traversal method
   * @reason: (nullable): why it failed, for `attempt-failed`
   *
   * Emitted as the methods of a connection are tried, on both sides
   * (before and after the connection is up: a relayed connection keeps
   * trying the direct methods). [signal@Natkit.Connection::path-changed]
   * tells when one of them takes over.
   */
  signals[SIGNAL_CONNECT_PROGRESS] =
    g_signal_new ("connect-progress", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 5, G_TYPE_STRING, G_TYPE_STRING,
                  G_TYPE_STRING, G_TYPE_STRING, G_TYPE_STRING);
}

static void
natkit_manager_init (NatkitManager *self)
{
  self->connections = live_list_new (NATKIT_TYPE_CONNECTION, connection_ended);
  self->port_mappings = live_list_new (NATKIT_TYPE_PORT_MAPPING, port_mapping_ended);
  self->metrics = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                         method_metrics_free);
}

/**
 * natkit_manager_new:
 * @error: return location for a #GError
 *
 * Creates a manager with the user's settings
 * (`$XDG_CONFIG_HOME/natkit/config.json`, or the defaults when there is no
 * such file).
 *
 * Returns: (transfer full) (nullable): a new manager, or %NULL when the
 *   settings file is malformed (the error names the file and the problem)
 */
NatkitManager *
natkit_manager_new (GError **error)
{
  g_autoptr(NatkitConfig) config = natkit_config_load_default (error);

  if (config == NULL)
    return NULL;
  return natkit_manager_new_with_config (config);
}

/**
 * natkit_manager_new_with_config:
 * @config: settings
 *
 * Creates a manager with the given settings.
 *
 * Returns: (transfer full): a new manager
 */
NatkitManager *
natkit_manager_new_with_config (NatkitConfig *config)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (config), NULL);

  return g_object_new (NATKIT_TYPE_MANAGER, "config", config, NULL);
}

/**
 * natkit_manager_get_config:
 * @self: a manager
 *
 * Returns: (transfer none): the settings
 */
NatkitConfig *
natkit_manager_get_config (NatkitManager *self)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  return self->config;
}

/**
 * natkit_manager_get_identity:
 * @self: a manager
 * @error: return location for a #GError
 *
 * Returns this node's identity, reading it from the key file named by the
 * settings — or creating it there on first use.
 *
 * Returns: (transfer none) (nullable): the identity, or %NULL with a
 *   %NATKIT_ERROR_IDENTITY error that says what to do
 */
NatkitIdentity *
natkit_manager_get_identity (NatkitManager  *self,
                             GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);

  if (self->identity == NULL)
    self->identity = natkit_identity_load_or_create (
      natkit_config_get_identity_filename (self->config), error);
  return self->identity;
}

/**
 * natkit_manager_set_identity:
 * @self: a manager
 * @identity: the identity to use
 *
 * Makes the manager use @identity instead of the key file named by the
 * settings (for example an ephemeral one in tests).
 */
void
natkit_manager_set_identity (NatkitManager  *self,
                             NatkitIdentity *identity)
{
  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (NATKIT_IS_IDENTITY (identity));

  g_set_object (&self->identity, identity);
}

/**
 * natkit_manager_list_plugins:
 * @self: a manager
 *
 * Lists every plugin file found: loaded ones first, by rank (highest first,
 * ties by name), then the disabled and failed ones with their reasons.
 *
 * Returns: (transfer container) (element-type NatkitPluginInfo): the plugins
 */
GPtrArray *
natkit_manager_list_plugins (NatkitManager *self)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);

  return g_ptr_array_copy (self->plugins, (GCopyFunc) (void (*) (void)) g_object_ref, NULL);
}

/**
 * natkit_manager_get_plugin:
 * @self: a manager
 * @name: a plugin name
 *
 * Returns: (transfer none) (nullable): the plugin called @name that the
 *   manager uses (or, if none loaded, the first file of that name), or %NULL
 */
NatkitPluginInfo *
natkit_manager_get_plugin (NatkitManager *self,
                           const char    *name)
{
  NatkitPluginInfo *found = NULL;

  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);

  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);

      if (!g_str_equal (info->name, name))
        continue;
      if (info->state == NATKIT_PLUGIN_STATE_LOADED)
        return info;
      if (found == NULL)
        found = info;
    }
  return found;
}

static char *
describe_plugins (NatkitManager    *self,
                  NatkitPluginKind  kind)
{
  GString *names = g_string_new (NULL);

  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);
      gboolean wanted = kind == NATKIT_PLUGIN_KIND_TRANSPORT ?
                        info->kind == NATKIT_PLUGIN_KIND_TRANSPORT :
                        info->kind != NATKIT_PLUGIN_KIND_TRANSPORT;

      if (info->state != NATKIT_PLUGIN_STATE_LOADED || !wanted)
        continue;
      if (names->len > 0)
        g_string_append (names, ", ");
      g_string_append (names, info->name);
    }
  if (names->len == 0)
    g_string_append (names, "none");
  return g_string_free (names, FALSE);
}

static NatkitPluginInfo *
lookup_usable (NatkitManager     *self,
               const char        *name,
               gboolean           transport,
               GError           **error)
{
  NatkitPluginInfo *info = natkit_manager_get_plugin (self, name);
  NatkitPluginKind kind = transport ? NATKIT_PLUGIN_KIND_TRANSPORT :
                                      NATKIT_PLUGIN_KIND_TRAVERSAL;
  g_autofree char *available = NULL;

  if (info != NULL && info->state == NATKIT_PLUGIN_STATE_LOADED &&
      (info->kind == NATKIT_PLUGIN_KIND_TRANSPORT) == transport)
    return info;

  available = describe_plugins (self, kind);
  if (info == NULL)
    g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                 "There is no %s plugin called “%s” (available: %s)",
                 transport ? "transport" : "traversal", name, available);
  else if (info->state != NATKIT_PLUGIN_STATE_LOADED)
    g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                 "The plugin “%s” cannot be used: it %s", name, info->reason);
  else
    g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                 "The plugin “%s” is not a %s (available: %s)", name,
                 transport ? "transport" : "traversal method", available);
  return NULL;
}

/**
 * natkit_manager_create_transport:
 * @self: a manager
 * @name: the name of a transport plugin
 * @error: return location for a #GError
 *
 * Creates an instance of a transport plugin, ready to be attached to a
 * path with [method@Natkit.Transport.attach].
 *
 * Returns: (transfer full) (nullable): a new transport, or %NULL with a
 *   %NATKIT_ERROR_NOT_FOUND error
 */
NatkitTransport *
natkit_manager_create_transport (NatkitManager  *self,
                                 const char     *name,
                                 GError        **error)
{
  NatkitPluginInfo *info;

  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (name != NULL, NULL);

  info = lookup_usable (self, name, TRUE, error);
  if (info == NULL)
    return NULL;
  return g_object_new (info->gtype, NULL);
}

/* Opening a path: try each method by rank, fall through on failure. */

/* past the request's time limit, how long a method may still take to give
 * its own reason before it is cancelled (as the connector's) */
#define OPEN_PATH_GRACE_MS 1000

typedef struct
{
  NatkitTraversalRequest *request;
  GPtrArray              *candidates;   /* NatkitPluginInfo */
  guint                   next;
  GString                *failures;
  NatkitPluginInfo       *current;
  GCancellable           *attempt_cancellable;
  gulong                  cancelled_id;
  GSource                *timeout;
  gboolean                timed_out;
  gint64                  started;
} OpenPathData;

static void
open_path_data_free (gpointer data)
{
  OpenPathData *d = data;

  g_clear_object (&d->request);
  g_clear_pointer (&d->candidates, g_ptr_array_unref);
  if (d->failures)
    g_string_free (d->failures, TRUE);
  g_clear_object (&d->attempt_cancellable);
  if (d->timeout)
    {
      g_source_destroy (d->timeout);
      g_source_unref (d->timeout);
    }
  g_free (d);
}

static void try_next_method (GTask *task);

static void
attempt_cleanup (GTask        *task,
                 OpenPathData *d)
{
  if (d->cancelled_id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (task), d->cancelled_id);
  d->cancelled_id = 0;
  g_clear_object (&d->attempt_cancellable);
  if (d->timeout)
    {
      g_source_destroy (d->timeout);
      g_clear_pointer (&d->timeout, g_source_unref);
    }
}

static void
open_path_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  OpenPathData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  NatkitPath *path;

  path = natkit_traversal_open_path_finish (NATKIT_TRAVERSAL (source), result,
                                            &error);
  attempt_cleanup (task, d);

  if (path != NULL)
    {
      g_debug ("selected %s (rank %d) after %" G_GINT64_FORMAT " ms",
               d->current->name, d->current->rank,
               (g_get_monotonic_time () - d->started) / 1000);
      g_task_return_pointer (task, path, g_object_unref);
      return;
    }

  if (g_task_return_error_if_cancelled (task))
    return;

  /* cancelled by our deadline: it gave no reason; one it gave within the
   * grace is its own, and says more */
  if (d->timed_out && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_clear_error (&error);
      g_set_error (&error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                   "no answer within %.1f s",
                   natkit_traversal_request_get_timeout (d->request) / 1000.0);
    }

  g_debug ("%s failed: %s", d->current->name, error->message);
  g_string_append_printf (d->failures, "%s%s: %s",
                          d->failures->len ? "; " : "",
                          d->current->name, error->message);
  try_next_method (task);
  g_steal_pointer (&task);
}

static gboolean
attempt_grace_cb (gpointer user_data)
{
  OpenPathData *d = user_data;

  g_cancellable_cancel (d->attempt_cancellable);
  g_clear_pointer (&d->timeout, g_source_unref);
  return G_SOURCE_REMOVE;
}

/* The request's time limit passed: the method gets a moment more to say
 * why it failed (its own limit is the same), then it is cancelled */
static gboolean
attempt_timeout_cb (gpointer user_data)
{
  OpenPathData *d = user_data;

  d->timed_out = TRUE;
  g_source_unref (d->timeout);
  d->timeout = g_timeout_source_new (OPEN_PATH_GRACE_MS);
  g_source_set_callback (d->timeout, attempt_grace_cb, d, NULL);
  g_source_set_static_name (d->timeout, "[natkit] traversal attempt grace");
  g_source_attach (d->timeout, g_main_context_get_thread_default ());
  return G_SOURCE_REMOVE;
}

static void
parent_cancelled_cb (GCancellable *cancellable,
                     gpointer      user_data)
{
  GCancellable *attempt = user_data;

  g_cancellable_cancel (attempt);
}

static void
try_next_method (GTask *task)
{
  OpenPathData *d = g_task_get_task_data (task);
  GCancellable *cancellable = g_task_get_cancellable (task);

  while (d->next < d->candidates->len)
    {
      NatkitPluginInfo *info = g_ptr_array_index (d->candidates, d->next++);
      g_autoptr(NatkitTraversal) traversal = g_object_new (info->gtype, NULL);
      g_autoptr(GError) error = NULL;

      if (!natkit_traversal_applies (traversal, d->request, &error))
        {
          g_debug ("skipping %s: %s", info->name, error->message);
          g_string_append_printf (d->failures, "%s%s: %s",
                                  d->failures->len ? "; " : "",
                                  info->name, error->message);
          continue;
        }

      g_debug ("trying %s (rank %d)", info->name, info->rank);
      d->current = info;
      d->timed_out = FALSE;
      d->attempt_cancellable = g_cancellable_new ();
      if (cancellable != NULL)
        d->cancelled_id = g_cancellable_connect (cancellable,
                                                 G_CALLBACK (parent_cancelled_cb),
                                                 g_object_ref (d->attempt_cancellable),
                                                 g_object_unref);
      d->timeout = g_timeout_source_new (natkit_traversal_request_get_timeout (d->request));
      g_source_set_callback (d->timeout, attempt_timeout_cb, d, NULL);
      g_source_set_static_name (d->timeout, "[natkit] traversal attempt timeout");
      g_source_attach (d->timeout, g_main_context_get_thread_default ());

      natkit_traversal_open_path_async (traversal, d->request,
                                        d->attempt_cancellable,
                                        open_path_cb, task);
      return;
    }

  if (d->candidates->len == 0)
    g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                             "No traversal method is available to reach %s: "
                             "no traversal plugin is loaded (run “nat-tool "
                             "plugins” to see why)",
                             natkit_traversal_request_get_remote_peer_id (d->request));
  else
    g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                             "Could not reach %s by any method. %s",
                             natkit_traversal_request_get_remote_peer_id (d->request),
                             d->failures->str);
  g_object_unref (task);
}

/**
 * natkit_manager_open_path_async:
 * @self: a manager
 * @request: who to reach
 * @methods: (nullable) (array zero-terminated=1): limit the attempt to the
 *   traversal plugins with these names, or %NULL for all of them
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when a path is open or every method
 *   failed
 * @user_data: data for @callback
 *
 * Finds a path to the peer: asks each enabled traversal method in rank
 * order (highest first, ties by name) whether it applies and tries it,
 * falling through to the next when it fails or runs past the request's
 * timeout. Methods of rank %NATKIT_RANK_NONE are only tried when named in
 * @methods.
 */
void
natkit_manager_open_path_async (NatkitManager          *self,
                                NatkitTraversalRequest *request,
                                const char * const     *methods,
                                GCancellable           *cancellable,
                                GAsyncReadyCallback     callback,
                                gpointer                user_data)
{
  g_autoptr(GTask) task = NULL;
  OpenPathData *d;

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (request));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_open_path_async);
  g_task_set_name (task, "[natkit] open path");

  d = g_new0 (OpenPathData, 1);
  d->request = g_object_ref (request);
  d->candidates = g_ptr_array_new_with_free_func (g_object_unref);
  d->failures = g_string_new (NULL);
  d->started = g_get_monotonic_time ();
  g_task_set_task_data (task, d, open_path_data_free);

  {
    g_autoptr(GError) error = NULL;
    GPtrArray *candidates = _natkit_manager_list_traversals (self, methods, &error);

    if (!candidates)
      {
        g_task_return_error (task, g_steal_pointer (&error));
        return;
      }
    g_ptr_array_unref (d->candidates);
    d->candidates = candidates;
  }

  try_next_method (g_steal_pointer (&task));
}

/* The enabled traversal plugins in rank order, or only those in @methods
 * (which may name plugins of rank NONE). */
GPtrArray *
_natkit_manager_list_traversals (NatkitManager       *self,
                                 const char * const  *methods,
                                 GError             **error)
{
  g_autoptr(GPtrArray) candidates = g_ptr_array_new_with_free_func (g_object_unref);

  if (methods != NULL)
    {
      for (guint i = 0; methods[i]; i++)
        if (lookup_usable (self, methods[i], FALSE, error) == NULL)
          return NULL;
    }

  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);

      if (info->state != NATKIT_PLUGIN_STATE_LOADED ||
          !g_type_is_a (info->gtype, NATKIT_TYPE_TRAVERSAL))
        continue;
      if (methods != NULL
          ? !g_strv_contains (methods, info->name)
          : info->rank <= NATKIT_RANK_NONE)
        continue;
      g_ptr_array_add (candidates, g_object_ref (info));
    }
  return g_steal_pointer (&candidates);
}

NatkitHistory *
_natkit_manager_get_history (NatkitManager *self)
{
  if (!self->history)
    {
      g_autofree char *filename = _natkit_history_default_filename ();

      self->history = _natkit_history_new (filename);
    }
  return self->history;
}

/**
 * natkit_manager_dup_history:
 * @self: a manager
 *
 * What natkit remembers of past connections, per peer and method: how
 * many attempts, successes and failures (and how many in a row), when the
 * last success and failure were, the last failure's reason, and the last
 * time to connect. It is kept in `$XDG_STATE_HOME/natkit/history.json`;
 * the next connect to a peer starts with the method that worked last and
 * starts a method that keeps failing after the relay. The format is in
 * `docs/connections.md`.
 *
 * Returns: (transfer full): the history, as JSON text
 */
char *
natkit_manager_dup_history (NatkitManager *self)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  return _natkit_history_to_json (_natkit_manager_get_history (self));
}

void
_natkit_manager_emit_progress (NatkitManager *self,
                               const char    *session_id,
                               const char    *peer_id,
                               const char    *event,
                               const char    *method,
                               const char    *reason)
{
  g_signal_emit (self, signals[SIGNAL_CONNECT_PROGRESS], 0, session_id, peer_id,
                 event, method, reason);
}

void
_natkit_manager_emit_incoming (NatkitManager    *self,
                               NatkitConnection *connection)
{
  live_list_add (self->connections, connection);
  g_signal_emit (self, signals[SIGNAL_INCOMING], 0, connection);
}

/**
 * natkit_manager_get_connections:
 * @self: a manager
 *
 * The live connections of this manager: every connection it made
 * ([method@Natkit.Manager.connect_async]) or accepted
 * ([signal@Natkit.Manager::incoming]) from the moment its secure session is
 * up until it closes or fails for good — a connection that is
 * %NATKIT_CONNECTION_STATE_DEGRADED while natkit looks for another path
 * stays. Each item is a [class@Natkit.Connection]: its properties
 * (method, addresses, RTT, loss, bytes) and
 * [method@Natkit.Connection.get_state_history] tell how it is doing. The
 * model emits #GListModel::items-changed as connections come and go.
 *
 * The model does not keep its connections alive: a connection that nobody
 * else holds is closed, as always, and leaves the model.
 *
 * Returns: (transfer none): a #GListModel of #NatkitConnection
 */
GListModel *
natkit_manager_get_connections (NatkitManager *self)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  return G_LIST_MODEL (self->connections);
}

/**
 * natkit_manager_get_port_mappings:
 * @self: a manager
 *
 * The live port mappings of this manager: every mapping that
 * [method@Natkit.Manager.map_port_async] made, from the moment it is
 * returned until it is released ([method@Natkit.PortMapping.release_async]).
 * A mapping that is %NATKIT_PORT_MAPPING_STATE_LOST while natkit tries to
 * create it again stays. Each item is a [class@Natkit.PortMapping] whose
 * properties (external address and port, lifetime, state) notify when they
 * change. The model emits #GListModel::items-changed as mappings come and go.
 *
 * The model does not keep its mappings alive: a mapping that nobody else
 * holds is released, as always, and leaves the model.
 *
 * Returns: (transfer none): a #GListModel of #NatkitPortMapping
 */
GListModel *
natkit_manager_get_port_mappings (NatkitManager *self)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  return G_LIST_MODEL (self->port_mappings);
}

/**
 * natkit_manager_dup_metrics:
 * @self: a manager
 *
 * How each traversal method did for this manager's outgoing connects since
 * the manager was created (unlike [method@Natkit.Manager.dup_history],
 * nothing is persisted). A #GVariant of type `a{sa{sv}}`: the method's name
 * maps to
 *
 * - `attempts` (`t`): times the method was started to connect (racing
 *   included, and the background tries of a cheaper method while a
 *   connection runs over the relay);
 * - `successes` (`t`): times it carried a connection: it won a connect, or
 *   a running connection moved to it;
 * - `failures` (`t`): times it failed with an error. Attempts that are
 *   neither were cancelled because another method won;
 * - `failure-reasons` (`a{st}`): failures by reason. Reasons that differ only
 *   in numbers (addresses, ports, times) share an entry, with each run of
 *   digits written `N`, cut to 120 characters; after 8 distinct reasons
 *   the rest count under `(other reasons)`;
 * - `connect-count` (`t`): connects this method won, from the call to the
 *   completed secure handshake;
 * - `connect-min-us`, `connect-median-us`, `connect-mean-us`,
 *   `connect-max-us` (`x`): their times in microseconds, when
 *   `connect-count` is not 0. The median is over the last 101 connects.
 *
 * Returns: (transfer full): the metrics
 */
GVariant *
natkit_manager_dup_metrics (NatkitManager *self)
{
  GVariantBuilder builder;
  g_autofree gpointer *methods = NULL;
  guint n;

  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);

  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a{sa{sv}}"));
  methods = g_hash_table_get_keys_as_array (self->metrics, &n);
  qsort (methods, n, sizeof (gpointer), compare_strings);
  for (guint i = 0; i < n; i++)
    g_variant_builder_add (&builder, "{s@a{sv}}", methods[i],
                           method_metrics_to_variant (g_hash_table_lookup (self->metrics,
                                                                           methods[i])));
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}

/**
 * natkit_manager_get_rendezvous:
 * @self: a manager
 * @server: a natkit-server, `HOST:PORT`
 * @error: return location for a #GError
 *
 * The manager's client of @server, created on first use with the
 * manager's identity and shared by everything the manager does there
 * (signaling, relay circuits). Call [method@Natkit.Rendezvous.connect_async]
 * to register.
 *
 * Returns: (transfer none): the client, or %NULL when @server is not
 *   `HOST:PORT` or there is no identity
 */
NatkitRendezvous *
natkit_manager_get_rendezvous (NatkitManager  *self,
                               const char     *server,
                               GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (server != NULL, NULL);

  return _natkit_connector_get_rendezvous (self->connector, server, error);
}

/**
 * natkit_manager_listen:
 * @self: a manager
 * @signaling: the channel to accept connections on: a
 *   [class@Natkit.Rendezvous] (see [method@Natkit.Manager.get_rendezvous])
 *   or an application's own [iface@Natkit.Signaling]
 * @error: return location for a #GError
 *
 * Accepts connections that peers open through @signaling: each one, once
 * its secure session is up, is announced by [signal@Natkit.Manager::incoming].
 * On a #NatkitRendezvous this also holds a relay reservation, so peers can
 * reach this node through the server's relay.
 *
 * Returns: %TRUE, or %FALSE when the manager has no identity
 */
gboolean
natkit_manager_listen (NatkitManager    *self,
                       NatkitSignaling  *signaling,
                       GError          **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), FALSE);
  g_return_val_if_fail (NATKIT_IS_SIGNALING (signaling), FALSE);

  return _natkit_connector_listen (self->connector, signaling, error);
}

/**
 * natkit_manager_stop_listening:
 * @self: a manager
 * @signaling: a channel passed to [method@Natkit.Manager.listen]
 *
 * Stops accepting new connections on @signaling; open ones stay.
 */
void
natkit_manager_stop_listening (NatkitManager   *self,
                               NatkitSignaling *signaling)
{
  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (NATKIT_IS_SIGNALING (signaling));

  _natkit_connector_stop_listening (self->connector, signaling);
}

static void
connect_done_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  NatkitManager *self = g_task_get_source_object (task);
  g_autoptr(GError) error = NULL;
  NatkitConnection *connection;

  connection = _natkit_connector_connect_finish (NATKIT_CONNECTOR (source), res, &error);
  if (connection)
    {
      live_list_add (self->connections, connection);
      g_task_return_pointer (task, connection, g_object_unref);
    }
  else
    g_task_return_error (task, g_steal_pointer (&error));
}

/**
 * natkit_manager_connect_async:
 * @self: a manager
 * @peer_address: the peer, `PEER-ID@HOST:PORT` (the natkit-server it is
 *   registered at)
 * @methods: (nullable) (array zero-terminated=1): only these traversal
 *   methods, or %NULL for every enabled one
 * @flags: how the connection will be used
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when connected, or when every method
 *   failed
 * @user_data: data for @callback
 *
 * Connects to a peer: registers at the peer's server (if this manager is
 * not yet), asks the peer over signaling, tries the traversal methods both
 * sides can run, and sets up the secure session on the first path that
 * works. The peer's key must match its peer ID, or the connection is
 * refused.
 */
void
natkit_manager_connect_async (NatkitManager       *self,
                              const char          *peer_address,
                              const char * const  *methods,
                              NatkitConnectFlags   flags,
                              GCancellable        *cancellable,
                              GAsyncReadyCallback  callback,
                              gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (peer_address != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_connect_async);
  _natkit_connector_connect_async (self->connector, NULL, NULL, peer_address,
                                   methods, flags, cancellable,
                                   connect_done_cb, task);
}

/**
 * natkit_manager_connect_with_signaling_async:
 * @self: a manager
 * @signaling: the channel to reach the peer through
 * @peer_id: the peer's ID
 * @methods: (nullable) (array zero-terminated=1): only these traversal
 *   methods, or %NULL for every enabled one
 * @flags: how the connection will be used
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when connected, or when every method
 *   failed
 * @user_data: data for @callback
 *
 * Like [method@Natkit.Manager.connect_async], over a signaling channel of
 * the application's own (or a #NatkitRendezvous already at hand). Finish
 * with [method@Natkit.Manager.connect_finish].
 */
void
natkit_manager_connect_with_signaling_async (NatkitManager       *self,
                                             NatkitSignaling     *signaling,
                                             const char          *peer_id,
                                             const char * const  *methods,
                                             NatkitConnectFlags   flags,
                                             GCancellable        *cancellable,
                                             GAsyncReadyCallback  callback,
                                             gpointer             user_data)
{
  GTask *task;

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (NATKIT_IS_SIGNALING (signaling));
  g_return_if_fail (peer_id != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_connect_async);
  _natkit_connector_connect_async (self->connector, signaling, peer_id, NULL,
                                   methods, flags, cancellable,
                                   connect_done_cb, task);
}

/**
 * natkit_manager_connect_finish:
 * @self: a manager
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Natkit.Manager.connect_async] and
 * [method@Natkit.Manager.connect_with_signaling_async].
 *
 * Returns: (transfer full): the connection, or %NULL with an error saying
 *   why each method failed
 */
NatkitConnection *
natkit_manager_connect_finish (NatkitManager  *self,
                               GAsyncResult   *result,
                               GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * natkit_manager_open_path_finish:
 * @self: a manager
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Natkit.Manager.open_path_async].
 *
 * Returns: (transfer full): the path, or %NULL with a
 *   %NATKIT_ERROR_NO_METHOD error listing why each method failed
 */
NatkitPath *
natkit_manager_open_path_finish (NatkitManager  *self,
                                 GAsyncResult   *result,
                                 GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, natkit_manager_open_path_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* a loaded port mapper plugin */
static gboolean
is_port_mapper (NatkitPluginInfo *info)
{
  return info->state == NATKIT_PLUGIN_STATE_LOADED &&
         g_type_is_a (info->gtype, NATKIT_TYPE_PORT_MAPPER);
}

/* whether a port mapper would take part in a gateway probe; without one the
 * gateway's services are "not probed", not "none" */
static gboolean
have_port_mappers (NatkitManager *self)
{
  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);

      if (is_port_mapper (info) && info->rank > NATKIT_RANK_NONE)
        return TRUE;
    }
  return FALSE;
}

static void
detect_progress_cb (const char *message,
                    gpointer    user_data)
{
  g_signal_emit (user_data, signals[SIGNAL_DETECT_PROGRESS], 0, message);
}

typedef struct
{
  guint          pending;
  NatkitNatInfo *info;
  GError        *error;
  GStrv          services;
  GCancellable  *probe_cancellable;
  GSource       *grace;
} DetectData;

/* how long the gateway probe may run on once detection is done: a gateway
 * on the LAN answers in milliseconds */
#define GATEWAY_GRACE_MS 150

static void
detect_data_free (gpointer data)
{
  DetectData *d = data;

  if (d->grace != NULL)
    {
      g_source_destroy (d->grace);
      g_source_unref (d->grace);
    }
  g_clear_object (&d->probe_cancellable);
  g_clear_object (&d->info);
  g_clear_error (&d->error);
  g_strfreev (d->services);
  g_free (d);
}

static void remember_nat_info (NatkitManager *self, NatkitNatInfo *info);

static void
detect_complete (GTask *task)
{
  DetectData *d = g_task_get_task_data (task);

  if (--d->pending > 0)
    return;
  if (d->info == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&d->error));
      return;
    }
  if (d->services != NULL)
    _natkit_nat_info_set_gateway_services (d->info, (const char * const *) d->services);
  remember_nat_info (g_task_get_source_object (task), d->info);
  g_task_return_pointer (task, g_steal_pointer (&d->info), g_object_unref);
}

static gboolean
gateway_grace_cb (gpointer user_data)
{
  DetectData *d = user_data;

  g_clear_pointer (&d->grace, g_source_unref);
  g_cancellable_cancel (d->probe_cancellable);
  return G_SOURCE_REMOVE;
}

static void
detect_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  DetectData *d = g_task_get_task_data (task);

  d->info = _natkit_detect_nat_finish (result, &d->error);
  if (d->pending > 1 && d->probe_cancellable != NULL)
    {
      /* the probe answers with what it heard so far when cancelled */
      if (d->info == NULL)
        g_cancellable_cancel (d->probe_cancellable);
      else
        {
          d->grace = g_timeout_source_new (GATEWAY_GRACE_MS);
          g_source_set_callback (d->grace, gateway_grace_cb, d, NULL);
          g_source_set_static_name (d->grace, "[natkit] gateway probe grace");
          g_source_attach (d->grace, g_task_get_context (task));
        }
    }
  detect_complete (task);
}

static void
detect_gateway_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  DetectData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;

  d->services = natkit_manager_probe_gateway_finish (NATKIT_MANAGER (source), result, &error);
  if (d->services == NULL)
    g_debug ("gateway probe failed: %s", error->message);
  detect_complete (task);
}

/**
 * natkit_manager_detect_nat_async:
 * @self: a manager
 * @servers: (nullable) (array zero-terminated=1): STUN servers as
 *   `HOST[:PORT]`, or %NULL for the configured ones
 * @timeout_ms: the longest detection may take, in milliseconds, or 0 for
 *   the default (5 s; 300 s with %NATKIT_DETECT_BINDING_LIFETIME)
 * @flags: what to measure beyond the RFC 5780 basics
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the result
 * @user_data: data for @callback
 *
 * Finds out what the network allows (RFC 5780 NAT behavior discovery):
 * the public address, the NAT's mapping and filtering behavior,
 * hairpinning and the classic NAT type. The servers are asked in parallel
 * and the first valid answer is used; the tests run in parallel and stop
 * as soon as the answer is known. Detection never runs past @timeout_ms.
 *
 * A network that blocks UDP is a result ([enum@Natkit.NatType] `udp-blocked`),
 * not an error; servers that cannot be resolved or reached are errors.
 *
 * Unless @flags has %NATKIT_DETECT_NO_GATEWAY, the gateway is asked at the
 * same time which port mapping protocols it offers
 * ([method@Natkit.NatInfo.get_gateway_services]).
 */
void
natkit_manager_detect_nat_async (NatkitManager       *self,
                                 const char * const  *servers,
                                 guint                timeout_ms,
                                 NatkitDetectFlags    flags,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  GTask *task;
  DetectData *d;

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_detect_nat_async);
  g_task_set_name (task, "[natkit] detect NAT");
  d = g_new0 (DetectData, 1);
  d->pending = 1;
  g_task_set_task_data (task, d, detect_data_free);

  if (servers == NULL)
    servers = natkit_config_get_stun_servers (self->config);
  if (!(flags & NATKIT_DETECT_NO_GATEWAY) && have_port_mappers (self))
    {
      guint probe_ms = natkit_config_get_map_timeout (self->config);

      /* never make detection slower than the caller allowed */
      if (timeout_ms > 0)
        probe_ms = MIN (probe_ms, timeout_ms);
      d->pending++;
      d->probe_cancellable = g_cancellable_new ();
      natkit_manager_probe_gateway_async (self, probe_ms, d->probe_cancellable,
                                          detect_gateway_cb, g_object_ref (task));
    }
  _natkit_detect_nat_async (servers, timeout_ms, flags,
                            natkit_config_get_lifetime_probe_step (self->config),
                            detect_progress_cb, self,
                            cancellable, detect_done_cb, task);
}

/**
 * natkit_manager_detect_nat_finish:
 * @self: a manager
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Natkit.Manager.detect_nat_async].
 *
 * Returns: (transfer full): what was found, or %NULL with an error saying
 *   why nothing could be measured
 */
NatkitNatInfo *
natkit_manager_detect_nat_finish (NatkitManager  *self,
                                  GAsyncResult   *result,
                                  GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- what the last detection found --------------------------------------
 *
 * Kept in memory and in `$XDG_STATE_HOME/natkit/nat.json`, so that a
 * short-lived process (nat-tool connect) knows its network from the last
 * `nat-tool detect` or connection. A result older than NAT_INFO_MAX_AGE_S,
 * or measured from a local address this machine no longer has, is not
 * used: the machine has probably moved to another network. */

#define NAT_INFO_MAX_AGE_S (60 * 60)

static char *
nat_info_filename (void)
{
  return g_build_filename (g_get_user_state_dir (), "natkit", "nat.json", NULL);
}

/* Whether @address is still one of this machine's: binding to it works. */
static gboolean
have_local_address (const char *address)
{
  g_autoptr(GInetAddress) inet = address ? g_inet_address_new_from_string (address) : NULL;
  g_autoptr(GSocketAddress) any = NULL;
  g_autoptr(GSocket) socket = NULL;

  if (!inet)
    return FALSE;
  socket = g_socket_new (g_inet_address_get_family (inet), G_SOCKET_TYPE_DATAGRAM,
                         G_SOCKET_PROTOCOL_UDP, NULL);
  any = g_inet_socket_address_new (inet, 0);
  return socket && g_socket_bind (socket, any, FALSE, NULL);
}

static void
remember_nat_info (NatkitManager *self,
                   NatkitNatInfo *info)
{
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr(GError) error = NULL;
  g_autofree char *filename = nat_info_filename ();
  g_autofree char *dir = g_path_get_dirname (filename);
  g_autofree char *text = NULL;

  self->nat_loaded = TRUE;
  self->nat_detected = g_get_real_time () / G_USEC_PER_SEC;
  g_set_object (&self->nat_info, info);
  json_node_take_object (node, _natkit_nat_info_to_json (info, self->nat_detected));
  text = json_to_string (node, TRUE);
  if (g_mkdir_with_parents (dir, 0700) != 0 ||
      !g_file_set_contents_full (filename, text, -1, G_FILE_SET_CONTENTS_CONSISTENT,
                                 0600, &error))
    g_debug ("cannot save the NAT behavior in %s: %s", filename,
             error ? error->message : g_strerror (errno));
}

static void
load_nat_info (NatkitManager *self)
{
  g_autofree char *filename = nat_info_filename ();
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) root = NULL;
  g_autoptr(NatkitNatInfo) info = NULL;
  gint64 detected = 0;
  gsize len;

  self->nat_loaded = TRUE;
  if (!g_file_get_contents (filename, &text, &len, NULL))
    return;
  root = _natkit_wire_json_object (text, len, &error);
  if (!root)
    {
      g_debug ("ignoring %s: %s", filename, error->message);
      return;
    }
  info = _natkit_nat_info_from_json (root, &detected);
  if (!info)
    return;
  self->nat_detected = detected;
  self->nat_info = g_steal_pointer (&info);
}

/**
 * natkit_manager_get_nat_info:
 * @self: a manager
 *
 * What the newest NAT detection ([method@Natkit.Manager.detect_nat_async],
 * by this process or, within the last hour, by another one such as
 * `nat-tool detect`) found about this machine's network. Connections tell
 * the peer this NAT type, so that both sides can tell which methods can
 * work and explain why others cannot; the history of what worked is also
 * kept per pair of NAT types.
 *
 * A result is forgotten after an hour, or when it was measured from a
 * local address the machine no longer has.
 *
 * Returns: (transfer none) (nullable): the NAT information, or %NULL when
 *   nothing recent is known
 */
NatkitNatInfo *
natkit_manager_get_nat_info (NatkitManager *self)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);

  if (!self->nat_loaded)
    load_nat_info (self);
  if (self->nat_info &&
      (now - self->nat_detected > NAT_INFO_MAX_AGE_S || now < self->nat_detected ||
       !have_local_address (natkit_nat_info_get_local_address (self->nat_info))))
    {
      g_debug ("forgetting the NAT behavior measured %" G_GINT64_FORMAT " s ago from %s",
               now - self->nat_detected,
               natkit_nat_info_get_local_address (self->nat_info));
      g_clear_object (&self->nat_info);
    }
  return self->nat_info;
}

/* ---- port mapping ------------------------------------------------------- */

#define MAP_STAGGER_MS 100   /* head start of a higher-ranked port mapper */

static NatkitPortMapper *
get_mapper (NatkitManager    *self,
            NatkitPluginInfo *info)
{
  NatkitPortMapper *mapper = g_hash_table_lookup (self->mappers, info->name);

  if (mapper == NULL)
    {
      mapper = g_object_new (info->gtype, NULL);
      g_hash_table_insert (self->mappers, g_strdup (info->name), mapper);
    }
  return mapper;
}

/* The port mappers to use, in rank order, each with the one method to ask
 * of it (NULL: its own order).  @methods names protocols (upnp, natpmp,
 * pcp) or plugins. */
static GPtrArray *
select_mappers (NatkitManager       *self,
                const char * const  *methods,
                GError             **error)
{
  g_autoptr(GPtrArray) chosen = g_ptr_array_new_with_free_func (g_object_unref);
  g_autoptr(GString) known = g_string_new (NULL);

  if (methods != NULL && methods[0] == NULL)
    methods = NULL;

  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);
      const char * const *offered;
      const char *only = NULL;
      guint wanted = 0;

      if (!is_port_mapper (info))
        continue;

      offered = natkit_port_mapper_get_methods (get_mapper (self, info));
      for (guint j = 0; offered != NULL && offered[j] != NULL; j++)
        {
          g_string_append_printf (known, "%s%s", known->len ? ", " : "", offered[j]);
          if (methods != NULL && g_strv_contains (methods, offered[j]))
            {
              wanted++;
              only = offered[j];
            }
        }

      if (methods == NULL)
        {
          if (info->rank <= NATKIT_RANK_NONE)
            continue;
        }
      else if (wanted == 0)
        {
          if (!g_strv_contains (methods, info->name))
            continue;
          only = NULL;               /* the plugin named: all its methods */
        }
      else if (wanted > 1)
        only = NULL;

      g_object_set_data_full (G_OBJECT (info), "natkit-map-method",
                              g_strdup (only), g_free);
      g_ptr_array_add (chosen, g_object_ref (info));
    }

  if (chosen->len == 0)
    {
      if (methods != NULL)
        {
          g_autofree char *asked = g_strjoinv (", ", (char **) methods);
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                       "No port mapper speaks %s (available: %s)", asked,
                       known->len ? known->str : "none; run “nat-tool plugins” to see why");
        }
      else
        g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                     "No port mapping plugin is loaded (run “nat-tool plugins” "
                     "to see why)");
      return NULL;
    }
  return g_steal_pointer (&chosen);
}

typedef struct
{
  int                       refs;
  GTask                    *task;       /* NULL once answered */
  NatkitManager            *manager;
  NatkitPortMappingRequest *request;
  GPtrArray                *mappers;    /* NatkitPluginInfo */
  guint                     next;
  guint                     running;
  GSource                  *stagger;
  GCancellable             *cancellable;
  GCancellable             *user_cancellable;
  gulong                    cancelled_id;
  GString                  *failures;
} MapRace;

static MapRace *
map_race_ref (MapRace *race)
{
  race->refs++;
  return race;
}

static void
map_race_unref (MapRace *race)
{
  if (--race->refs > 0)
    return;
  g_assert (race->task == NULL);
  if (race->stagger != NULL)
    {
      g_source_destroy (race->stagger);
      g_source_unref (race->stagger);
    }
  g_clear_object (&race->manager);
  g_clear_object (&race->request);
  g_ptr_array_unref (race->mappers);
  g_clear_object (&race->cancellable);
  g_clear_object (&race->user_cancellable);
  g_string_free (race->failures, TRUE);
  g_free (race);
}

static void
map_race_finish (MapRace           *race,
                 NatkitPortMapping *mapping,
                 GError            *error)
{
  GTask *task = g_steal_pointer (&race->task);

  if (task == NULL)
    return;
  /* the others lose: whatever they hold is released in map_attempt_cb */
  if (race->stagger != NULL)
    {
      g_source_destroy (race->stagger);
      g_clear_pointer (&race->stagger, g_source_unref);
    }
  if (race->cancelled_id != 0)
    g_cancellable_disconnect (race->user_cancellable, race->cancelled_id);
  race->cancelled_id = 0;
  g_cancellable_cancel (race->cancellable);

  if (mapping != NULL)
    g_task_return_pointer (task, mapping, g_object_unref);
  else
    g_task_return_error (task, error);
  g_object_unref (task);
}

static char *
mapping_record_file (NatkitPortMapping *mapping)
{
  g_autofree char *dir = g_build_filename (g_get_user_state_dir (), "natkit",
                                           "mappings", NULL);
  g_autofree char *name = NULL;

  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_warning ("Could not create %s to record port mappings: %s; "
                 "“nat-tool unmap --all” will not know about them",
                 dir, g_strerror (errno));
      return NULL;
    }
  name = g_strdup_printf ("%d-%s-%s-%u-%u.json", getpid (),
                          natkit_port_mapping_get_method (mapping),
                          natkit_port_mapping_get_protocol (mapping) == NATKIT_IP_PROTOCOL_TCP ?
                          "tcp" : "udp",
                          natkit_port_mapping_get_internal_port (mapping),
                          natkit_port_mapping_get_external_port (mapping));
  return g_build_filename (dir, name, NULL);
}

static void start_next_mapper (MapRace *race);

static void
map_attempt_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  MapRace *race = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping =
    natkit_port_mapper_map_finish (NATKIT_PORT_MAPPER (source), result, &error);
  const char *name = g_object_get_data (source, "natkit-plugin-name");

  race->running--;
  if (mapping != NULL)
    {
      if (race->task != NULL)
        {
          g_autofree char *file = mapping_record_file (mapping);

          if (file != NULL)
            _natkit_port_mapping_set_record_file (mapping, file);
          g_debug ("port mapping by %s won: %s:%u", name,
                   natkit_port_mapping_get_external_address (mapping),
                   natkit_port_mapping_get_external_port (mapping));
          live_list_add (race->manager->port_mappings, mapping);
          map_race_finish (race, g_steal_pointer (&mapping), NULL);
        }
      else
        {
          g_debug ("port mapping by %s came second; releasing it", name);
          natkit_port_mapping_release_async (mapping, NULL, NULL, NULL);
        }
    }
  else if (race->task != NULL)
    {
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        g_string_append_printf (race->failures, "%s%s: %s",
                                race->failures->len ? "; " : "", name,
                                error->message);
      if (g_cancellable_is_cancelled (race->user_cancellable))
        map_race_finish (race, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                                          "Operation was cancelled"));
      else if (race->next < race->mappers->len)
        start_next_mapper (race);     /* no need to wait out the stagger */
      else if (race->running == 0)
        map_race_finish (race, NULL,
                         g_error_new (NATKIT_ERROR, NATKIT_ERROR_NO_METHOD,
                                      "Could not map %s port %u: %s",
                                      natkit_port_mapping_request_get_protocol (race->request) ==
                                      NATKIT_IP_PROTOCOL_TCP ? "TCP" : "UDP",
                                      natkit_port_mapping_request_get_internal_port (race->request),
                                      race->failures->str));
    }
  map_race_unref (race);
}

static gboolean
stagger_cb (gpointer user_data)
{
  MapRace *race = user_data;

  g_clear_pointer (&race->stagger, g_source_unref);
  start_next_mapper (race);
  return G_SOURCE_REMOVE;
}

static void
start_next_mapper (MapRace *race)
{
  NatkitPluginInfo *info;
  NatkitPortMapper *mapper;
  g_autoptr(NatkitPortMappingRequest) request = NULL;

  if (race->stagger != NULL)
    {
      g_source_destroy (race->stagger);
      g_clear_pointer (&race->stagger, g_source_unref);
    }
  if (race->next >= race->mappers->len)
    return;

  info = g_ptr_array_index (race->mappers, race->next++);
  mapper = get_mapper (race->manager, info);
  g_object_set_data_full (G_OBJECT (mapper), "natkit-plugin-name",
                          g_strdup (info->name), g_free);
  request = natkit_port_mapping_request_copy (race->request);
  natkit_port_mapping_request_set_method (request,
                                          g_object_get_data (G_OBJECT (info),
                                                             "natkit-map-method"));
  g_debug ("port mapping: trying %s (rank %d)", info->name, info->rank);
  race->running++;
  natkit_port_mapper_map_async (mapper, request, race->cancellable,
                                map_attempt_cb, map_race_ref (race));

  if (race->next < race->mappers->len)
    {
      race->stagger = g_timeout_source_new (MAP_STAGGER_MS);
      g_source_set_callback (race->stagger, stagger_cb, race, NULL);
      g_source_set_static_name (race->stagger, "[natkit] port mapper stagger");
      g_source_attach (race->stagger, g_task_get_context (race->task));
    }
}

static void
map_user_cancelled_cb (GCancellable *cancellable,
                       gpointer      user_data)
{
  GCancellable *ours = user_data;

  g_cancellable_cancel (ours);
}

/**
 * natkit_manager_map_port_async:
 * @self: a manager
 * @request: the port to map
 * @methods: (nullable) (array zero-terminated=1): the protocols to use
 *   (`upnp`, `natpmp`, `pcp`) or port mapper plugins to use, or %NULL for
 *   all of them
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the mapping or the reasons every
 *   method failed
 * @user_data: data for @callback
 *
 * Asks the gateway to forward a port. The port mapper plugins are tried
 * in rank order, each starting a short moment after the one before (or at
 * once when it fails), so the preferred protocol wins when it works and a
 * slow or missing one costs nothing. The first mapping the gateway grants
 * is kept; a later one is released right away.
 *
 * When the request names no gateway, the configured one is used (see
 * [method@Natkit.Config.get_gateway]), else the default route's. The
 * mapping is recorded in natkit's state folder (`$XDG_STATE_HOME/natkit/
 * mappings/`) until it is released, so that
 * [method@Natkit.Manager.remove_stale_mappings_async] can clean up after
 * a process that crashed.
 */
void
natkit_manager_map_port_async (NatkitManager            *self,
                               NatkitPortMappingRequest *request,
                               const char * const       *methods,
                               GCancellable             *cancellable,
                               GAsyncReadyCallback       callback,
                               gpointer                  user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  GPtrArray *mappers;
  MapRace *race;

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (NATKIT_IS_PORT_MAPPING_REQUEST (request));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_map_port_async);
  g_task_set_name (task, "[natkit] map port");

  mappers = select_mappers (self, methods, &error);
  if (mappers == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    {
      g_ptr_array_unref (mappers);
      return;
    }

  race = g_new0 (MapRace, 1);
  race->refs = 1;
  race->task = g_steal_pointer (&task);
  race->manager = g_object_ref (self);
  race->request = natkit_port_mapping_request_copy (request);
  if (natkit_port_mapping_request_get_gateway (race->request) == NULL)
    natkit_port_mapping_request_set_gateway (race->request,
                                             natkit_config_get_gateway (self->config));
  race->mappers = mappers;
  race->failures = g_string_new (NULL);
  race->cancellable = g_cancellable_new ();
  if (cancellable != NULL)
    {
      race->user_cancellable = g_object_ref (cancellable);
      race->cancelled_id = g_cancellable_connect (cancellable,
                                                  G_CALLBACK (map_user_cancelled_cb),
                                                  g_object_ref (race->cancellable),
                                                  g_object_unref);
    }
  start_next_mapper (race);
  map_race_unref (race);
}

/**
 * natkit_manager_map_port_finish:
 * @self: a manager
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Natkit.Manager.map_port_async].
 *
 * Returns: (transfer full): the active mapping, or %NULL with an error:
 *   %NATKIT_ERROR_NO_METHOD listing why each protocol failed,
 *   %NATKIT_ERROR_NOT_FOUND when no plugin speaks the protocols asked for
 */
NatkitPortMapping *
natkit_manager_map_port_finish (NatkitManager  *self,
                                GAsyncResult   *result,
                                GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  g_return_val_if_fail (g_async_result_is_tagged (result, natkit_manager_map_port_async), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- which protocols the gateway offers -------------------------------- */

typedef struct
{
  guint      pending;
  GPtrArray *found;     /* char*, unordered */
} ProbeData;

static void
probe_data_free (gpointer data)
{
  ProbeData *d = data;

  g_ptr_array_unref (d->found);
  g_free (d);
}

static void
probe_one_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  ProbeData *d = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) offered = natkit_port_mapper_probe_finish (NATKIT_PORT_MAPPER (source),
                                                           result, &error);
  static const char * const order[] = { "pcp", "natpmp", "upnp" };
  GStrvBuilder *builder;
  g_auto(GStrv) services = NULL;

  if (offered == NULL)
    g_debug ("gateway probe by %s: %s",
             (const char *) g_object_get_data (source, "natkit-plugin-name"),
             error->message);
  for (guint i = 0; offered != NULL && offered[i] != NULL; i++)
    g_ptr_array_add (d->found, g_strdup (offered[i]));

  if (--d->pending > 0)
    return;

  /* a stable order: the known protocols first, then the rest */
  builder = g_strv_builder_new ();
  for (guint i = 0; i < G_N_ELEMENTS (order); i++)
    for (guint j = 0; j < d->found->len; j++)
      if (g_str_equal (order[i], g_ptr_array_index (d->found, j)))
        {
          g_strv_builder_add (builder, order[i]);
          break;
        }
  for (guint j = 0; j < d->found->len; j++)
    if (!g_strv_contains (order, g_ptr_array_index (d->found, j)))
      g_strv_builder_add (builder, g_ptr_array_index (d->found, j));
  services = g_strv_builder_end (builder);
  g_strv_builder_unref (builder);
  g_task_return_pointer (task, g_steal_pointer (&services), (GDestroyNotify) g_strfreev);
}

/**
 * natkit_manager_probe_gateway_async:
 * @self: a manager
 * @timeout_ms: the longest to wait for answers, or 0 for the configured
 *   mapping time limit
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the answer
 * @user_data: data for @callback
 *
 * Asks the gateway which port mapping protocols it offers (PCP, NAT-PMP,
 * UPnP-IGD), in parallel and without creating a mapping. A protocol that
 * does not answer within @timeout_ms is not offered; cancelling the probe
 * returns what answered so far.
 */
void
natkit_manager_probe_gateway_async (NatkitManager       *self,
                                    guint                timeout_ms,
                                    GCancellable        *cancellable,
                                    GAsyncReadyCallback  callback,
                                    gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(NatkitPortMappingRequest) request = NULL;
  ProbeData *d;

  g_return_if_fail (NATKIT_IS_MANAGER (self));

  task = g_task_new (self, cancellable, callback, user_data);
  /* cancelling means "answer with what you heard so far", not an error */
  g_task_set_check_cancellable (task, FALSE);
  g_task_set_source_tag (task, natkit_manager_probe_gateway_async);
  g_task_set_name (task, "[natkit] probe gateway");
  d = g_new0 (ProbeData, 1);
  d->found = g_ptr_array_new_with_free_func (g_free);
  g_task_set_task_data (task, d, probe_data_free);

  request = natkit_port_mapping_request_new (NATKIT_IP_PROTOCOL_UDP, 9);
  natkit_port_mapping_request_set_gateway (request, natkit_config_get_gateway (self->config));
  natkit_port_mapping_request_set_timeout (request, timeout_ms > 0 ? timeout_ms :
                                           natkit_config_get_map_timeout (self->config));

  d->pending = 1;     /* held until every probe started */
  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);
      NatkitPortMapper *mapper;

      if (!is_port_mapper (info) || info->rank <= NATKIT_RANK_NONE)
        continue;
      mapper = get_mapper (self, info);
      g_object_set_data_full (G_OBJECT (mapper), "natkit-plugin-name",
                              g_strdup (info->name), g_free);
      d->pending++;
      natkit_port_mapper_probe_async (mapper, request, cancellable,
                                      probe_one_cb, g_object_ref (task));
    }
  if (--d->pending == 0)
    g_task_return_pointer (task, g_new0 (char *, 1), (GDestroyNotify) g_strfreev);
}

/**
 * natkit_manager_probe_gateway_finish:
 * @self: a manager
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (array zero-terminated=1): the protocols the
 *   gateway answered, `pcp`, `natpmp` and `upnp` in that order (empty when
 *   none did)
 */
char **
natkit_manager_probe_gateway_finish (NatkitManager  *self,
                                     GAsyncResult   *result,
                                     GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), NULL);
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- mappings left behind by processes that died ------------------------ */

typedef struct
{
  guint      pending;
  guint      removed;
  guint      skipped;
  GString   *failures;
} StaleData;

static void
stale_data_free (gpointer data)
{
  StaleData *d = data;

  g_string_free (d->failures, TRUE);
  g_free (d);
}

static void
stale_complete (GTask *task)
{
  StaleData *d = g_task_get_task_data (task);

  if (--d->pending > 0)
    return;
  if (d->failures->len > 0)
    g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                             "Removed %u stale port mapping(s); could not remove: %s",
                             d->removed, d->failures->str);
  else
    g_task_return_int (task, d->removed);
}

typedef struct
{
  GTask *task;
  char  *file;
} RecordRemoval;

static void
record_removed_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  RecordRemoval *r = user_data;
  StaleData *d = g_task_get_task_data (r->task);
  g_autoptr(GError) error = NULL;

  if (!natkit_port_mapper_remove_record_finish (NATKIT_PORT_MAPPER (source), result, &error))
    g_string_append_printf (d->failures, "%s%s (record %s kept)",
                            d->failures->len ? "; " : "", error->message, r->file);
  else
    {
      d->removed++;
      g_unlink (r->file);
    }
  stale_complete (r->task);
  g_object_unref (r->task);
  g_free (r->file);
  g_free (r);
}

/* JSON numbers come back as int64: give the record's known keys the types
 * natkit_port_mapping_to_record() gave them; the rest as JSON says */
static GVariant *
record_from_json (JsonObject *object)
{
  GVariantDict dict;
  JsonObjectIter iter;
  const char *key;
  JsonNode *value;

  g_variant_dict_init (&dict, NULL);
  json_object_iter_init (&iter, object);
  while (json_object_iter_next (&iter, &key, &value))
    {
      if (!JSON_NODE_HOLDS_VALUE (value))
        continue;
      if (g_str_equal (key, "internal-port") || g_str_equal (key, "external-port"))
        g_variant_dict_insert (&dict, key, "q",
                               (guint16) CLAMP (json_node_get_int (value), 0, G_MAXUINT16));
      else if (g_str_equal (key, "lifetime"))
        g_variant_dict_insert (&dict, key, "u",
                               (guint32) CLAMP (json_node_get_int (value), 0, G_MAXUINT32));
      else
        {
          GVariant *v = json_gvariant_deserialize (value, NULL, NULL);

          /* floating: the dictionary takes it */
          if (v != NULL)
            g_variant_dict_insert_value (&dict, key, v);
        }
    }
  return g_variant_ref_sink (g_variant_dict_end (&dict));
}

/**
 * natkit_manager_remove_stale_mappings_async:
 * @self: a manager
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when every gateway answered
 * @user_data: data for @callback
 *
 * Deletes the port mappings that processes which are no longer running
 * left in natkit's state folder (after a crash or a kill), and their
 * records. Mappings of running processes are left alone.
 */
void
natkit_manager_remove_stale_mappings_async (NatkitManager       *self,
                                            GCancellable        *cancellable,
                                            GAsyncReadyCallback  callback,
                                            gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autofree char *dir_name = NULL;
  g_autoptr(GDir) dir = NULL;
  const char *name;
  StaleData *d;

  g_return_if_fail (NATKIT_IS_MANAGER (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_remove_stale_mappings_async);
  d = g_new0 (StaleData, 1);
  d->failures = g_string_new (NULL);
  d->pending = 1;
  g_task_set_task_data (task, d, stale_data_free);

  dir_name = g_build_filename (g_get_user_state_dir (), "natkit", "mappings", NULL);
  dir = g_dir_open (dir_name, 0, NULL);
  while (dir != NULL && (name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *file = g_build_filename (dir_name, name, NULL);
      g_autoptr(JsonParser) parser = json_parser_new ();
      g_autoptr(GError) error = NULL;
      g_autoptr(GVariant) record = NULL;
      JsonObject *object;
      const char *method;
      NatkitPortMapper *mapper = NULL;
      RecordRemoval *r;
      gint64 pid;

      if (!g_str_has_suffix (name, ".json"))
        continue;
      if (!json_parser_load_from_file (parser, file, &error) ||
          !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
        {
          g_string_append_printf (d->failures, "%s%s is not a mapping record%s%s",
                                  d->failures->len ? "; " : "", file,
                                  error ? ": " : "", error ? error->message : "");
          continue;
        }
      object = json_node_get_object (json_parser_get_root (parser));
      pid = json_object_get_int_member_with_default (object, "pid", 0);
      if (pid > 0 && pid <= G_MAXINT &&
          _natkit_process_start_time ((int) pid) != 0 &&
          _natkit_process_start_time ((int) pid) ==
          (guint64) json_object_get_int_member_with_default (object, "start-time", 0))
        {
          d->skipped++;
          g_debug ("%s belongs to running process %" G_GINT64_FORMAT, file, pid);
          continue;
        }
      json_object_remove_member (object, "pid");
      json_object_remove_member (object, "start-time");
      record = record_from_json (object);
      method = json_object_get_string_member_with_default (object, "method", "");
      for (guint i = 0; record != NULL && i < self->plugins->len && mapper == NULL; i++)
        {
          NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);
          NatkitPortMapper *candidate;

          if (!is_port_mapper (info))
            continue;
          candidate = get_mapper (self, info);
          if (g_strv_contains (natkit_port_mapper_get_methods (candidate), method))
            mapper = candidate;
        }
      if (mapper == NULL)
        {
          g_string_append_printf (d->failures, "%s%s: no loaded plugin speaks its "
                                  "method “%s”", d->failures->len ? "; " : "",
                                  file, method);
          continue;
        }
      d->pending++;
      r = g_new0 (RecordRemoval, 1);
      r->task = g_object_ref (task);
      r->file = g_steal_pointer (&file);
      natkit_port_mapper_remove_record_async (mapper, record, cancellable,
                                              record_removed_cb, r);
    }
  g_object_set_data (G_OBJECT (task), "natkit-skipped", GUINT_TO_POINTER (d->skipped));
  stale_complete (g_steal_pointer (&task));
}

/**
 * natkit_manager_remove_stale_mappings_finish:
 * @self: a manager
 * @result: the result passed to the callback
 * @n_skipped: (out) (optional): how many records belong to running
 *   processes and were left alone
 * @error: return location for a #GError
 *
 * Returns: how many mappings were removed, or -1 with @error naming the
 *   ones that could not be
 */
int
natkit_manager_remove_stale_mappings_finish (NatkitManager  *self,
                                             GAsyncResult   *result,
                                             guint          *n_skipped,
                                             GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_MANAGER (self), -1);
  g_return_val_if_fail (g_task_is_valid (result, self), -1);

  if (n_skipped != NULL)
    *n_skipped = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (result), "natkit-skipped"));
  return (int) g_task_propagate_int (G_TASK (result), error);
}
