/* natkit-manager.c: the entry point
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"
#include "natkit-plugin-info-private.h"
#include "natkit-plugin-loader-private.h"
#include "natkit-nat-detector-private.h"

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

struct _NatkitManager
{
  GObject         parent_instance;

  NatkitConfig   *config;
  NatkitIdentity *identity;
  GPtrArray      *plugins;   /* NatkitPluginInfo, sorted */
};

G_DEFINE_FINAL_TYPE (NatkitManager, natkit_manager, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_CONFIG,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_DETECT_PROGRESS,
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
}

static void
natkit_manager_finalize (GObject *object)
{
  NatkitManager *self = NATKIT_MANAGER (object);

  g_clear_object (&self->config);
  g_clear_object (&self->identity);
  g_clear_pointer (&self->plugins, g_ptr_array_unref);

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
}

static void
natkit_manager_init (NatkitManager *self)
{
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

  if (d->timed_out)
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
attempt_timeout_cb (gpointer user_data)
{
  OpenPathData *d = user_data;

  d->timed_out = TRUE;
  g_cancellable_cancel (d->attempt_cancellable);
  g_clear_pointer (&d->timeout, g_source_unref);
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

  if (methods != NULL)
    {
      for (guint i = 0; methods[i]; i++)
        {
          g_autoptr(GError) error = NULL;

          if (lookup_usable (self, methods[i], FALSE, &error) == NULL)
            {
              g_task_return_error (task, g_steal_pointer (&error));
              return;
            }
        }
    }

  for (guint i = 0; i < self->plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (self->plugins, i);

      if (info->state != NATKIT_PLUGIN_STATE_LOADED ||
          info->kind == NATKIT_PLUGIN_KIND_TRANSPORT)
        continue;
      if (methods != NULL
          ? !g_strv_contains (methods, info->name)
          : info->rank <= NATKIT_RANK_NONE)
        continue;
      g_ptr_array_add (d->candidates, g_object_ref (info));
    }

  try_next_method (g_steal_pointer (&task));
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

static void
detect_progress_cb (const char *message,
                    gpointer    user_data)
{
  g_signal_emit (user_data, signals[SIGNAL_DETECT_PROGRESS], 0, message);
}

static void
detect_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;
  NatkitNatInfo *info = _natkit_detect_nat_finish (result, &error);

  if (info != NULL)
    g_task_return_pointer (task, info, g_object_unref);
  else
    g_task_return_error (task, error);
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

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_detect_nat_async);
  g_task_set_name (task, "[natkit] detect NAT");

  if (servers == NULL)
    servers = natkit_config_get_stun_servers (self->config);
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
