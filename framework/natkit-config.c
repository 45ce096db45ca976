/* natkit-config.c: settings from config.json
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include <json-glib/json-glib.h>

#include "natkit.h"

/**
 * NatkitConfig:
 *
 * natkit's settings: the STUN, TURN and rendezvous servers to use, plugin
 * switches and rank overrides, and timers.
 *
 * They are read from `$XDG_CONFIG_HOME/natkit/config.json`
 * ([func@Natkit.Config.load_default]); a missing file means the defaults. A
 * malformed file is an error that names the file and the line and column,
 * or the key, and says what was expected:
 *
 * ```json
 * {
 *   "stun": ["stun.example.org:3478"],
 *   "rendezvous": ["natkit.example.org:7000"],
 *   "turn": [
 *     { "uri": "turn:turn.example.org?transport=udp",
 *       "username": "alice", "password": "secret" },
 *     { "uri": "turns:turn.example.org", "secret": "shared-rest-secret" }
 *   ],
 *   "plugins": {
 *     "relay": { "rank": "primary+1" },
 *     "holepunch": { "settings": { "birthday-sockets": 128 } },
 *     "upnp": { "enabled": false }
 *   },
 *   "gateway": "192.168.1.1",
 *   "timers": { "keepalive": 25, "connect-timeout": 30, "stun-timeout": 3,
 *               "lifetime-probe-step": 5, "map-timeout": 4, "slow-rtt": 0.2,
 *               "stagger": 0.25 },
 *   "identity": "/home/alice/.config/natkit/identity.key"
 * }
 * ```
 *
 * `gateway` names the router that PCP and NAT-PMP talk to when it is not
 * the default route's gateway (`HOST` or `HOST:PORT`, port 5351 by
 * default). Timers are in seconds and may be fractional. The identity key lives
 * beside the configuration file unless `identity` says otherwise.
 */

typedef struct
{
  char *uri;
  char *username;
  char *password;
  char *secret;
} TurnServer;

typedef struct
{
  gboolean    enabled;
  gboolean    has_rank;
  int         rank;
  GHashTable *settings;   /* key → GVariant (b, x or s); NULL: none */
} PluginOverride;

static void
plugin_override_free (gpointer data)
{
  PluginOverride *o = data;

  g_clear_pointer (&o->settings, g_hash_table_unref);
  g_free (o);
}

struct _NatkitConfig
{
  GObject     parent_instance;

  char       *filename;
  char       *identity_filename;
  GStrv       stun_servers;
  GStrv       rendezvous_servers;
  GStrv       turn_uris;
  GPtrArray  *turn_servers;       /* TurnServer */
  GHashTable *plugins;            /* name → PluginOverride */
  guint       keepalive_ms;
  guint       connect_timeout_ms;
  guint       stun_timeout_ms;
  guint       lifetime_step_ms;
  guint       map_timeout_ms;
  guint       slow_rtt_ms;
  guint       stagger_ms;
  char       *gateway;
};

G_DEFINE_FINAL_TYPE (NatkitConfig, natkit_config, G_TYPE_OBJECT)

#define DEFAULT_KEEPALIVE_MS       25000
#define DEFAULT_CONNECT_TIMEOUT_MS 30000
#define DEFAULT_STUN_TIMEOUT_MS     3000
#define DEFAULT_LIFETIME_STEP_MS    5000
#define DEFAULT_MAP_TIMEOUT_MS      4000
#define DEFAULT_SLOW_RTT_MS         200
#define DEFAULT_STAGGER_MS          250

static void
turn_server_free (gpointer data)
{
  TurnServer *server = data;

  g_free (server->uri);
  g_free (server->username);
  g_free (server->password);
  g_free (server->secret);
  g_free (server);
}

static void
natkit_config_finalize (GObject *object)
{
  NatkitConfig *self = NATKIT_CONFIG (object);

  g_free (self->filename);
  g_free (self->identity_filename);
  g_free (self->gateway);
  g_strfreev (self->stun_servers);
  g_strfreev (self->rendezvous_servers);
  g_strfreev (self->turn_uris);
  g_ptr_array_unref (self->turn_servers);
  g_hash_table_unref (self->plugins);

  G_OBJECT_CLASS (natkit_config_parent_class)->finalize (object);
}

static void
natkit_config_class_init (NatkitConfigClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = natkit_config_finalize;
}

static void
natkit_config_init (NatkitConfig *self)
{
  self->stun_servers = g_new0 (char *, 1);
  self->rendezvous_servers = g_new0 (char *, 1);
  self->turn_uris = g_new0 (char *, 1);
  self->turn_servers = g_ptr_array_new_with_free_func (turn_server_free);
  self->plugins = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, plugin_override_free);
  self->keepalive_ms = DEFAULT_KEEPALIVE_MS;
  self->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
  self->stun_timeout_ms = DEFAULT_STUN_TIMEOUT_MS;
  self->lifetime_step_ms = DEFAULT_LIFETIME_STEP_MS;
  self->map_timeout_ms = DEFAULT_MAP_TIMEOUT_MS;
  self->slow_rtt_ms = DEFAULT_SLOW_RTT_MS;
  self->stagger_ms = DEFAULT_STAGGER_MS;
}

/* Parsing. Every error names the source and the key. */

typedef struct
{
  NatkitConfig *config;
  const char   *source;   /* the file name, or "configuration data" */
} Parser;

static const char *
node_kind (JsonNode *node)
{
  switch (JSON_NODE_TYPE (node))
    {
    case JSON_NODE_OBJECT:
      return "an object";
    case JSON_NODE_ARRAY:
      return "a list";
    case JSON_NODE_NULL:
      return "null";
    case JSON_NODE_VALUE:
    default:
      break;
    }
  switch (json_node_get_value_type (node))
    {
    case G_TYPE_STRING:
      return "a string";
    case G_TYPE_BOOLEAN:
      return "true or false";
    case G_TYPE_INT64:
    case G_TYPE_DOUBLE:
      return "a number";
    default:
      return "a value of another kind";
    }
}

static gboolean G_GNUC_PRINTF (4, 5)
parse_error (Parser      *parser,
             GError     **error,
             const char  *key,
             const char  *format,
             ...)
{
  g_autofree char *what = NULL;
  va_list args;

  va_start (args, format);
  what = g_strdup_vprintf (format, args);
  va_end (args);

  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG,
               "%s: “%s” %s. Fix the file or remove the key to use the default.",
               parser->source, key, what);
  return FALSE;
}

static gboolean
parse_server_list (Parser      *parser,
                   JsonNode    *node,
                   const char  *key,
                   guint16      default_port,
                   GStrv       *out,
                   GError     **error)
{
  g_autoptr(GStrvBuilder) builder = g_strv_builder_new ();
  JsonArray *array;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return parse_error (parser, error, key,
                        "must be a list of \"HOST:PORT\" strings, not %s",
                        node_kind (node));

  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *item = json_array_get_element (array, i);
      g_autofree char *item_key = g_strdup_printf ("%s[%u]", key, i);
      g_autoptr(GSocketConnectable) address = NULL;
      g_autoptr(GError) local_error = NULL;
      const char *text;

      if (!JSON_NODE_HOLDS_VALUE (item) ||
          json_node_get_value_type (item) != G_TYPE_STRING)
        return parse_error (parser, error, item_key,
                            "must be a \"HOST:PORT\" string, not %s",
                            node_kind (item));

      text = json_node_get_string (item);
      address = g_network_address_parse (text, default_port, &local_error);
      if (address == NULL)
        return parse_error (parser, error, item_key,
                            "is not a server address (%s); write HOST or "
                            "HOST:PORT, with IPv6 addresses in brackets",
                            local_error->message);
      g_strv_builder_add (builder, text);
    }

  g_strfreev (*out);
  *out = g_strv_builder_end (builder);
  return TRUE;
}

static gboolean
get_string_member (Parser      *parser,
                   JsonObject  *object,
                   const char  *key_prefix,
                   const char  *member,
                   char       **out,
                   GError     **error)
{
  JsonNode *node = json_object_get_member (object, member);

  if (node == NULL)
    return TRUE;

  if (!JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    {
      g_autofree char *key = g_strdup_printf ("%s.%s", key_prefix, member);
      return parse_error (parser, error, key, "must be a string, not %s",
                          node_kind (node));
    }

  g_free (*out);
  *out = g_strdup (json_node_get_string (node));
  return TRUE;
}

static gboolean
parse_turn (Parser    *parser,
            JsonNode  *node,
            GError   **error)
{
  g_autoptr(GStrvBuilder) uris = g_strv_builder_new ();
  JsonArray *array;

  if (!JSON_NODE_HOLDS_ARRAY (node))
    return parse_error (parser, error, "turn",
                        "must be a list of objects with \"uri\" and "
                        "\"username\"/\"password\" or \"secret\", not %s",
                        node_kind (node));

  g_ptr_array_set_size (parser->config->turn_servers, 0);
  array = json_node_get_array (node);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *item = json_array_get_element (array, i);
      g_autofree char *key = g_strdup_printf ("turn[%u]", i);
      TurnServer *server;
      JsonObject *object;

      if (!JSON_NODE_HOLDS_OBJECT (item))
        return parse_error (parser, error, key,
                            "must be an object with \"uri\", not %s",
                            node_kind (item));

      object = json_node_get_object (item);
      server = g_new0 (TurnServer, 1);
      g_ptr_array_add (parser->config->turn_servers, server);

      if (!get_string_member (parser, object, key, "uri", &server->uri, error) ||
          !get_string_member (parser, object, key, "username", &server->username, error) ||
          !get_string_member (parser, object, key, "password", &server->password, error) ||
          !get_string_member (parser, object, key, "secret", &server->secret, error))
        return FALSE;

      if (server->uri == NULL ||
          !(g_str_has_prefix (server->uri, "turn:") ||
            g_str_has_prefix (server->uri, "turns:")))
        return parse_error (parser, error, key,
                            "needs a \"uri\" such as "
                            "\"turn:turn.example.org?transport=udp\" or "
                            "\"turns:turn.example.org\" (RFC 7065)");

      if (server->secret == NULL &&
          (server->username == NULL || server->password == NULL))
        return parse_error (parser, error, key,
                            "needs credentials: \"username\" and \"password\", "
                            "or \"secret\" for TURN REST credentials");

      g_strv_builder_add (uris, server->uri);
    }

  g_strfreev (parser->config->turn_uris);
  parser->config->turn_uris = g_strv_builder_end (uris);
  return TRUE;
}

static gboolean
parse_plugins (Parser    *parser,
               JsonNode  *node,
               GError   **error)
{
  JsonObjectIter iter;
  const char *name;
  JsonNode *value;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return parse_error (parser, error, "plugins",
                        "must be an object mapping plugin names to "
                        "{\"enabled\": …, \"rank\": …}, not %s",
                        node_kind (node));

  json_object_iter_init (&iter, json_node_get_object (node));
  while (json_object_iter_next (&iter, &name, &value))
    {
      g_autofree char *key = g_strdup_printf ("plugins.%s", name);
      PluginOverride *override = g_new0 (PluginOverride, 1);
      JsonObjectIter inner;
      const char *member;
      JsonNode *member_value;

      override->enabled = TRUE;
      g_hash_table_replace (parser->config->plugins, g_strdup (name), override);

      if (!JSON_NODE_HOLDS_OBJECT (value))
        return parse_error (parser, error, key,
                            "must be an object such as {\"enabled\": false} "
                            "or {\"rank\": \"primary\"}, not %s",
                            node_kind (value));

      json_object_iter_init (&inner, json_node_get_object (value));
      while (json_object_iter_next (&inner, &member, &member_value))
        {
          g_autofree char *member_key = g_strdup_printf ("%s.%s", key, member);

          if (g_str_equal (member, "enabled"))
            {
              if (!JSON_NODE_HOLDS_VALUE (member_value) ||
                  json_node_get_value_type (member_value) != G_TYPE_BOOLEAN)
                return parse_error (parser, error, member_key,
                                    "must be true or false, not %s",
                                    node_kind (member_value));
              override->enabled = json_node_get_boolean (member_value);
            }
          else if (g_str_equal (member, "rank"))
            {
              g_autoptr(GError) local_error = NULL;

              if (JSON_NODE_HOLDS_VALUE (member_value) &&
                  json_node_get_value_type (member_value) == G_TYPE_INT64)
                {
                  gint64 rank = json_node_get_int (member_value);

                  if (rank < G_MININT || rank > G_MAXINT)
                    return parse_error (parser, error, member_key,
                                        "is out of range");
                  override->rank = (int) rank;
                }
              else if (JSON_NODE_HOLDS_VALUE (member_value) &&
                       json_node_get_value_type (member_value) == G_TYPE_STRING)
                {
                  if (!natkit_rank_parse (json_node_get_string (member_value),
                                          &override->rank, &local_error))
                    return parse_error (parser, error, member_key, "is wrong: %s",
                                        local_error->message);
                }
              else
                return parse_error (parser, error, member_key,
                                    "must be a rank name such as \"primary\" "
                                    "or a number, not %s",
                                    node_kind (member_value));
              override->has_rank = TRUE;
            }
          else if (g_str_equal (member, "settings"))
            {
              JsonObjectIter settings;
              const char *setting;
              JsonNode *setting_value;

              if (!JSON_NODE_HOLDS_OBJECT (member_value))
                return parse_error (parser, error, member_key,
                                    "must be an object of the plugin's own settings, "
                                    "such as {\"birthday-sockets\": 128}, not %s",
                                    node_kind (member_value));
              override->settings = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                          (GDestroyNotify) g_variant_unref);
              json_object_iter_init (&settings, json_node_get_object (member_value));
              while (json_object_iter_next (&settings, &setting, &setting_value))
                {
                  g_autofree char *setting_key = g_strdup_printf ("%s.%s", member_key, setting);
                  GVariant *v = NULL;

                  if (JSON_NODE_HOLDS_VALUE (setting_value))
                    switch (json_node_get_value_type (setting_value))
                      {
                      case G_TYPE_INT64:
                        v = g_variant_new_int64 (json_node_get_int (setting_value));
                        break;
                      case G_TYPE_BOOLEAN:
                        v = g_variant_new_boolean (json_node_get_boolean (setting_value));
                        break;
                      case G_TYPE_STRING:
                        v = g_variant_new_string (json_node_get_string (setting_value));
                        break;
                      default:
                        break;
                      }
                  if (v == NULL)
                    return parse_error (parser, error, setting_key,
                                        "must be a whole number, true or false, or a "
                                        "string, not %s", node_kind (setting_value));
                  g_hash_table_replace (override->settings, g_strdup (setting),
                                        g_variant_ref_sink (v));
                }
            }
          else
            g_warning ("%s: ignoring unknown key “%s” (a plugin takes "
                       "\"enabled\", \"rank\" and \"settings\")", parser->source,
                       member_key);
        }
    }

  return TRUE;
}

static gboolean
parse_timers (Parser    *parser,
              JsonNode  *node,
              GError   **error)
{
  static const struct {
    const char *name;
    gsize offset;
  } timers[] = {
    { "keepalive", G_STRUCT_OFFSET (NatkitConfig, keepalive_ms) },
    { "connect-timeout", G_STRUCT_OFFSET (NatkitConfig, connect_timeout_ms) },
    { "stun-timeout", G_STRUCT_OFFSET (NatkitConfig, stun_timeout_ms) },
    { "lifetime-probe-step", G_STRUCT_OFFSET (NatkitConfig, lifetime_step_ms) },
    { "map-timeout", G_STRUCT_OFFSET (NatkitConfig, map_timeout_ms) },
    { "slow-rtt", G_STRUCT_OFFSET (NatkitConfig, slow_rtt_ms) },
    { "stagger", G_STRUCT_OFFSET (NatkitConfig, stagger_ms) },
  };
  JsonObjectIter iter;
  const char *name;
  JsonNode *value;

  if (!JSON_NODE_HOLDS_OBJECT (node))
    return parse_error (parser, error, "timers",
                        "must be an object of durations in seconds, such as "
                        "{\"keepalive\": 25}, not %s", node_kind (node));

  json_object_iter_init (&iter, json_node_get_object (node));
  while (json_object_iter_next (&iter, &name, &value))
    {
      g_autofree char *key = g_strdup_printf ("timers.%s", name);
      gboolean known = FALSE;
      double seconds;

      for (guint i = 0; i < G_N_ELEMENTS (timers); i++)
        {
          if (!g_str_equal (name, timers[i].name))
            continue;

          known = TRUE;
          if (!JSON_NODE_HOLDS_VALUE (value) ||
              (json_node_get_value_type (value) != G_TYPE_INT64 &&
               json_node_get_value_type (value) != G_TYPE_DOUBLE))
            return parse_error (parser, error, key,
                                "must be a number of seconds, not %s",
                                node_kind (value));

          seconds = json_node_get_double (value);
          if (!(seconds > 0 && seconds <= 24 * 3600))
            return parse_error (parser, error, key,
                                "must be more than 0 and at most 86400 "
                                "seconds, not %g", seconds);

          G_STRUCT_MEMBER (guint, parser->config, timers[i].offset) =
            MAX (1, (guint) (seconds * 1000 + 0.5));
        }

      if (!known)
        g_warning ("%s: ignoring unknown timer “%s” (known timers: keepalive, "
                   "connect-timeout, stun-timeout, lifetime-probe-step, map-timeout, slow-rtt, "
                   "stagger)",
                   parser->source, key);
    }

  return TRUE;
}

static gboolean
parse_root (Parser    *parser,
            JsonNode  *root,
            GError   **error)
{
  JsonObjectIter iter;
  const char *name;
  JsonNode *value;

  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG,
                   "%s: the configuration must be a JSON object ({ … }), not %s. "
                   "Fix the file or move it away to use the defaults.",
                   parser->source, root ? node_kind (root) : "empty");
      return FALSE;
    }

  json_object_iter_init (&iter, json_node_get_object (root));
  while (json_object_iter_next (&iter, &name, &value))
    {
      gboolean ok = TRUE;

      if (g_str_equal (name, "stun"))
        ok = parse_server_list (parser, value, name, 3478,
                                &parser->config->stun_servers, error);
      else if (g_str_equal (name, "rendezvous"))
        ok = parse_server_list (parser, value, name, 7000,
                                &parser->config->rendezvous_servers, error);
      else if (g_str_equal (name, "turn"))
        ok = parse_turn (parser, value, error);
      else if (g_str_equal (name, "plugins"))
        ok = parse_plugins (parser, value, error);
      else if (g_str_equal (name, "timers"))
        ok = parse_timers (parser, value, error);
      else if (g_str_equal (name, "gateway"))
        {
          if (!JSON_NODE_HOLDS_VALUE (value) ||
              json_node_get_value_type (value) != G_TYPE_STRING ||
              *json_node_get_string (value) == '\0')
            ok = parse_error (parser, error, name,
                              "must be the gateway's address as \"HOST\" or "
                              "\"HOST:PORT\", not %s", node_kind (value));
          else
            natkit_config_set_gateway (parser->config, json_node_get_string (value));
        }
      else if (g_str_equal (name, "identity"))
        {
          if (!JSON_NODE_HOLDS_VALUE (value) ||
              json_node_get_value_type (value) != G_TYPE_STRING ||
              *json_node_get_string (value) == '\0')
            ok = parse_error (parser, error, name,
                              "must be the path of the identity key file, not %s",
                              node_kind (value));
          else
            natkit_config_set_identity_filename (parser->config,
                                                 json_node_get_string (value));
        }
      else
        g_warning ("%s: ignoring unknown key “%s” (known keys: stun, turn, "
                   "rendezvous, gateway, plugins, timers, identity)",
                   parser->source, name);

      if (!ok)
        return FALSE;
    }

  return TRUE;
}

static NatkitConfig *
config_from_data (const char  *source,
                  const char  *data,
                  gssize       length,
                  GError     **error)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(JsonParser) json = json_parser_new_immutable ();
  g_autoptr(GError) local_error = NULL;
  Parser parser = { config, source };

  if (!json_parser_load_from_data (json, data, length, &local_error))
    {
      /* json-glib says "<data>:LINE:COLUMN: Parse error: …". */
      const char *message = local_error->message;

      if (g_str_has_prefix (message, "<data>:"))
        message += strlen ("<data>:");
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG,
                   "%s:%s (line:column). The file is not valid JSON: fix it, "
                   "or move it away to use the defaults.", source, message);
      return NULL;
    }

  if (!parse_root (&parser, json_parser_get_root (json), error))
    return NULL;

  return g_steal_pointer (&config);
}

/**
 * natkit_config_new:
 *
 * Returns: (transfer full): the default settings, with no file behind them
 */
NatkitConfig *
natkit_config_new (void)
{
  return g_object_new (NATKIT_TYPE_CONFIG, NULL);
}

/**
 * natkit_config_new_from_data:
 * @data: JSON text
 * @length: its length, or -1 if nul-terminated
 * @error: return location for a #GError
 *
 * Reads settings from JSON text.
 *
 * Returns: (transfer full) (nullable): the settings, or %NULL with a
 *   %NATKIT_ERROR_INVALID_CONFIG error
 */
NatkitConfig *
natkit_config_new_from_data (const char  *data,
                             gssize       length,
                             GError     **error)
{
  g_return_val_if_fail (data != NULL, NULL);

  return config_from_data ("configuration data", data, length, error);
}

/**
 * natkit_config_new_from_file:
 * @filename: (type filename): a config.json
 * @error: return location for a #GError
 *
 * Reads settings from a file. The identity key is taken to live beside it
 * (`identity.key`) unless the file says otherwise.
 *
 * Returns: (transfer full) (nullable): the settings, or %NULL with an error
 *   naming the file and the line and column or the key
 */
NatkitConfig *
natkit_config_new_from_file (const char  *filename,
                             GError     **error)
{
  g_autofree char *contents = NULL;
  g_autofree char *dir = NULL;
  g_autoptr(GError) local_error = NULL;
  gsize length;
  NatkitConfig *config;

  g_return_val_if_fail (filename != NULL, NULL);

  if (!g_file_get_contents (filename, &contents, &length, &local_error))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG,
                   "Cannot read the configuration file: %s",
                   local_error->message);
      return NULL;
    }

  dir = g_path_get_dirname (filename);
  config = config_from_data (filename, contents, length, error);
  if (config == NULL)
    return NULL;

  config->filename = g_strdup (filename);
  if (config->identity_filename == NULL)
    config->identity_filename = g_build_filename (dir, "identity.key", NULL);
  return config;
}

/**
 * natkit_config_get_default_filename:
 *
 * Returns: (transfer full) (type filename): `$XDG_CONFIG_HOME/natkit/config.json`
 */
char *
natkit_config_get_default_filename (void)
{
  return g_build_filename (g_get_user_config_dir (), "natkit", "config.json",
                           NULL);
}

/**
 * natkit_config_load_default:
 * @error: return location for a #GError
 *
 * Reads `$XDG_CONFIG_HOME/natkit/config.json`, or returns the defaults when
 * there is no such file.
 *
 * Returns: (transfer full) (nullable): the settings, or %NULL when the file
 *   exists but is malformed or unreadable
 */
NatkitConfig *
natkit_config_load_default (GError **error)
{
  g_autofree char *filename = natkit_config_get_default_filename ();
  NatkitConfig *config;

  if (g_file_test (filename, G_FILE_TEST_EXISTS))
    return natkit_config_new_from_file (filename, error);

  config = natkit_config_new ();
  config->identity_filename = g_build_filename (g_get_user_config_dir (),
                                                "natkit", "identity.key", NULL);
  return config;
}

/**
 * natkit_config_get_filename:
 * @self: settings
 *
 * Returns: (nullable) (type filename): the file the settings came from
 */
const char *
natkit_config_get_filename (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);
  return self->filename;
}

/**
 * natkit_config_get_identity_filename:
 * @self: settings
 *
 * Returns: (type filename): where the identity key lives; by default
 *   `identity.key` beside the configuration file
 */
const char *
natkit_config_get_identity_filename (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);

  if (self->identity_filename == NULL)
    self->identity_filename = g_build_filename (g_get_user_config_dir (),
                                                "natkit", "identity.key", NULL);
  return self->identity_filename;
}

/**
 * natkit_config_set_identity_filename:
 * @self: settings
 * @filename: (type filename): where the identity key lives
 *
 * Sets where the identity key lives.
 */
void
natkit_config_set_identity_filename (NatkitConfig *self,
                                     const char   *filename)
{
  g_return_if_fail (NATKIT_IS_CONFIG (self));
  g_return_if_fail (filename != NULL);

  g_free (self->identity_filename);
  self->identity_filename = g_strdup (filename);
}

/**
 * natkit_config_get_stun_servers:
 * @self: settings
 *
 * Returns: (transfer none): the STUN servers, as `HOST[:PORT]`
 */
const char * const *
natkit_config_get_stun_servers (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);
  return (const char * const *) self->stun_servers;
}

/**
 * natkit_config_set_stun_servers:
 * @self: settings
 * @servers: the STUN servers, as `HOST[:PORT]`
 *
 * Sets the STUN servers.
 */
void
natkit_config_set_stun_servers (NatkitConfig       *self,
                                const char * const *servers)
{
  g_return_if_fail (NATKIT_IS_CONFIG (self));
  g_return_if_fail (servers != NULL);

  g_strfreev (self->stun_servers);
  self->stun_servers = g_strdupv ((char **) servers);
}

/**
 * natkit_config_get_rendezvous_servers:
 * @self: settings
 *
 * Returns: (transfer none): the rendezvous servers, as `HOST[:PORT]`
 */
const char * const *
natkit_config_get_rendezvous_servers (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);
  return (const char * const *) self->rendezvous_servers;
}

/**
 * natkit_config_set_rendezvous_servers:
 * @self: settings
 * @servers: the rendezvous servers, as `HOST[:PORT]`
 *
 * Sets the rendezvous servers.
 */
void
natkit_config_set_rendezvous_servers (NatkitConfig       *self,
                                      const char * const *servers)
{
  g_return_if_fail (NATKIT_IS_CONFIG (self));
  g_return_if_fail (servers != NULL);

  g_strfreev (self->rendezvous_servers);
  self->rendezvous_servers = g_strdupv ((char **) servers);
}

/**
 * natkit_config_get_turn_uris:
 * @self: settings
 *
 * Returns: (transfer none): the TURN servers' URIs (RFC 7065)
 */
const char * const *
natkit_config_get_turn_uris (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);
  return (const char * const *) self->turn_uris;
}

/**
 * natkit_config_get_turn_credentials:
 * @self: settings
 * @uri: a TURN URI from [method@Natkit.Config.get_turn_uris]
 * @username: (out) (optional) (nullable) (transfer full): the user name
 * @password: (out) (optional) (nullable) (transfer full): the password
 * @secret: (out) (optional) (nullable) (transfer full): the shared secret
 *   for TURN REST credentials
 *
 * Looks up the credentials configured for a TURN server.
 *
 * Returns: %TRUE if @uri is configured
 */
gboolean
natkit_config_get_turn_credentials (NatkitConfig  *self,
                                    const char    *uri,
                                    char         **username,
                                    char         **password,
                                    char         **secret)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), FALSE);
  g_return_val_if_fail (uri != NULL, FALSE);

  for (guint i = 0; i < self->turn_servers->len; i++)
    {
      TurnServer *server = g_ptr_array_index (self->turn_servers, i);

      if (!g_str_equal (server->uri, uri))
        continue;
      if (username)
        *username = g_strdup (server->username);
      if (password)
        *password = g_strdup (server->password);
      if (secret)
        *secret = g_strdup (server->secret);
      return TRUE;
    }
  return FALSE;
}

static void
turn_uris_update (NatkitConfig *self)
{
  g_autoptr(GStrvBuilder) uris = g_strv_builder_new ();

  for (guint i = 0; i < self->turn_servers->len; i++)
    g_strv_builder_add (uris, ((TurnServer *) g_ptr_array_index (self->turn_servers, i))->uri);
  g_strfreev (self->turn_uris);
  self->turn_uris = g_strv_builder_end (uris);
}

/**
 * natkit_config_add_turn_server:
 * @self: settings
 * @uri: a `turn:` or `turns:` URI (RFC 7065), such as
 *   `turn:turn.example.org:3478?transport=tcp`
 * @username: (nullable): the long-term credentials' user name
 * @password: (nullable): their password
 * @secret: (nullable): a shared secret for TURN REST credentials
 *   (coturn's `use-auth-secret`), instead of @username and @password
 * @error: return location for a #GError
 *
 * Adds a TURN server after the configured ones (replacing one with the
 * same URI), as a `turn` entry of config.json would.
 *
 * Returns: %TRUE, or %FALSE with @error set when the URI is not a TURN URI
 *   or the credentials are missing
 */
gboolean
natkit_config_add_turn_server (NatkitConfig  *self,
                               const char    *uri,
                               const char    *username,
                               const char    *password,
                               const char    *secret,
                               GError       **error)
{
  TurnServer *server;

  g_return_val_if_fail (NATKIT_IS_CONFIG (self), FALSE);
  g_return_val_if_fail (uri != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (!(g_str_has_prefix (uri, "turn:") || g_str_has_prefix (uri, "turns:")) ||
      uri[strcspn (uri, ":") + 1] == '\0')
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a TURN server URI: write it as "
                   "turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] "
                   "(RFC 7065)", uri);
      return FALSE;
    }
  if (secret == NULL && (username == NULL || password == NULL))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "TURN server %s needs credentials: a user name and a "
                   "password, or a shared secret for TURN REST credentials", uri);
      return FALSE;
    }

  for (guint i = 0; i < self->turn_servers->len; i++)
    if (g_str_equal (((TurnServer *) g_ptr_array_index (self->turn_servers, i))->uri, uri))
      {
        g_ptr_array_remove_index (self->turn_servers, i);
        break;
      }
  server = g_new0 (TurnServer, 1);
  server->uri = g_strdup (uri);
  server->username = g_strdup (username);
  server->password = g_strdup (password);
  server->secret = g_strdup (secret);
  g_ptr_array_add (self->turn_servers, server);
  turn_uris_update (self);
  return TRUE;
}

/**
 * natkit_turn_rest_credentials:
 * @secret: the secret shared with the TURN servers (coturn's
 *   `static-auth-secret`)
 * @user: (nullable): who the credentials are for (a peer ID), or %NULL
 * @expiry: when they stop working, in seconds since the Unix epoch
 * @username: (out) (transfer full): the user name, `EXPIRY:USER` (or
 *   `EXPIRY` without @user)
 * @password: (out) (transfer full): the password, the Base64 of the
 *   HMAC-SHA1 of the user name keyed with @secret
 *
 * Makes time-limited TURN credentials the way the TURN REST API
 * (draft-uberti-behave-turn-rest) and coturn's `use-auth-secret` check
 * them: any server that shares @secret accepts them until @expiry.
 */
void
natkit_turn_rest_credentials (const char  *secret,
                              const char  *user,
                              gint64       expiry,
                              char       **username,
                              char       **password)
{
  g_autoptr(GHmac) hmac = NULL;
  guint8 digest[20];
  gsize len = sizeof digest;
  char *name;

  g_return_if_fail (secret != NULL);
  g_return_if_fail (username != NULL && password != NULL);

  name = user && *user ? g_strdup_printf ("%" G_GINT64_FORMAT ":%s", expiry, user) :
                         g_strdup_printf ("%" G_GINT64_FORMAT, expiry);
  hmac = g_hmac_new (G_CHECKSUM_SHA1, (const guchar *) secret, strlen (secret));
  g_hmac_update (hmac, (const guchar *) name, strlen (name));
  g_hmac_get_digest (hmac, digest, &len);
  *username = name;
  *password = g_base64_encode (digest, len);
}

/**
 * natkit_config_clear_turn_servers:
 * @self: settings
 *
 * Forgets every TURN server (those of the file included), for a caller
 * that names its own with [method@Natkit.Config.add_turn_server].
 */
void
natkit_config_clear_turn_servers (NatkitConfig *self)
{
  g_return_if_fail (NATKIT_IS_CONFIG (self));

  g_ptr_array_set_size (self->turn_servers, 0);
  turn_uris_update (self);
}

/**
 * natkit_config_get_plugin_enabled:
 * @self: settings
 * @name: a plugin name
 *
 * Returns: %FALSE if the settings switch the plugin off
 */
gboolean
natkit_config_get_plugin_enabled (NatkitConfig *self,
                                  const char   *name)
{
  PluginOverride *override;

  g_return_val_if_fail (NATKIT_IS_CONFIG (self), TRUE);
  g_return_val_if_fail (name != NULL, TRUE);

  override = g_hash_table_lookup (self->plugins, name);
  return override == NULL || override->enabled;
}

/**
 * natkit_config_get_plugin_rank:
 * @self: settings
 * @name: a plugin name
 * @rank: (out) (optional): the rank the settings give it
 *
 * Returns: %TRUE if the settings override the plugin's rank
 */
gboolean
natkit_config_get_plugin_rank (NatkitConfig *self,
                               const char   *name,
                               int          *rank)
{
  PluginOverride *override;

  g_return_val_if_fail (NATKIT_IS_CONFIG (self), FALSE);
  g_return_val_if_fail (name != NULL, FALSE);

  override = g_hash_table_lookup (self->plugins, name);
  if (override == NULL || !override->has_rank)
    return FALSE;
  if (rank)
    *rank = override->rank;
  return TRUE;
}

static PluginOverride *
ensure_override (NatkitConfig *self,
                 const char   *name)
{
  PluginOverride *override = g_hash_table_lookup (self->plugins, name);

  if (override == NULL)
    {
      override = g_new0 (PluginOverride, 1);
      override->enabled = TRUE;
      g_hash_table_insert (self->plugins, g_strdup (name), override);
    }
  return override;
}

/**
 * natkit_config_set_plugin_rank:
 * @self: settings
 * @name: a plugin name
 * @rank: the rank to give it
 *
 * Overrides a plugin's rank. Takes effect for managers created afterwards.
 */
void
natkit_config_set_plugin_rank (NatkitConfig *self,
                               const char   *name,
                               int           rank)
{
  PluginOverride *override;

  g_return_if_fail (NATKIT_IS_CONFIG (self));
  g_return_if_fail (name != NULL);

  override = ensure_override (self, name);
  override->has_rank = TRUE;
  override->rank = rank;
}

/**
 * natkit_config_set_plugin_enabled:
 * @self: settings
 * @name: a plugin name
 * @enabled: whether the plugin may be used
 *
 * Switches a plugin on or off. Takes effect for managers created afterwards.
 */
void
natkit_config_set_plugin_enabled (NatkitConfig *self,
                                  const char   *name,
                                  gboolean      enabled)
{
  g_return_if_fail (NATKIT_IS_CONFIG (self));
  g_return_if_fail (name != NULL);

  ensure_override (self, name)->enabled = !!enabled;
}

/**
 * natkit_config_get_keepalive_interval:
 * @self: settings
 *
 * Returns: the keepalive interval in milliseconds (default 25 s)
 */
guint
natkit_config_get_keepalive_interval (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_KEEPALIVE_MS);
  return self->keepalive_ms;
}

/**
 * natkit_config_get_connect_timeout:
 * @self: settings
 *
 * Returns: how long a connection attempt may take, in milliseconds
 *   (default 30 s)
 */
guint
natkit_config_get_connect_timeout (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_CONNECT_TIMEOUT_MS);
  return self->connect_timeout_ms;
}

/**
 * natkit_config_get_stun_timeout:
 * @self: settings
 *
 * Returns: how long a STUN transaction may take, in milliseconds
 *   (default 3 s)
 */
guint
natkit_config_get_stun_timeout (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_STUN_TIMEOUT_MS);
  return self->stun_timeout_ms;
}

/**
 * natkit_config_get_lifetime_probe_step:
 * @self: settings
 *
 * Returns: the first idle wait of the binding lifetime probe, in
 *   milliseconds (default 5 s); it doubles after each binding that lived
 */
guint
natkit_config_get_lifetime_probe_step (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_LIFETIME_STEP_MS);
  return self->lifetime_step_ms;
}

/**
 * natkit_config_get_map_timeout:
 * @self: settings
 *
 * Returns: how long creating a port mapping may take, in milliseconds
 *   (default 4 s)
 */
guint
natkit_config_get_map_timeout (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_MAP_TIMEOUT_MS);
  return self->map_timeout_ms;
}

/**
 * natkit_config_get_gateway:
 * @self: settings
 *
 * Returns: (nullable): the gateway for PCP and NAT-PMP as `HOST[:PORT]`, or
 *   %NULL for the default route's gateway
 */
const char *
natkit_config_get_gateway (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);
  return self->gateway;
}

/**
 * natkit_config_set_gateway:
 * @self: settings
 * @gateway: (nullable): `HOST[:PORT]`, or %NULL for the default route's
 *   gateway
 *
 * Sets the gateway PCP and NAT-PMP talk to.
 */
void
natkit_config_set_gateway (NatkitConfig *self,
                           const char   *gateway)
{
  g_return_if_fail (NATKIT_IS_CONFIG (self));

  g_free (self->gateway);
  self->gateway = g_strdup (gateway);
}

/**
 * natkit_config_get_slow_rtt:
 * @self: a #NatkitConfig
 *
 * A connection whose round-trip time stays above this (three probes in a
 * row) looks for a faster path and moves there if one answers faster
 * (`timers.slow-rtt`, in seconds in the file).
 *
 * Returns: the threshold in milliseconds (default 200)
 */
guint
natkit_config_get_slow_rtt (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_SLOW_RTT_MS);
  return self->slow_rtt_ms;
}

/**
 * natkit_config_get_stagger:
 * @self: a #NatkitConfig
 *
 * How far apart a connect starts its methods (RFC 8305's "Connection
 * Attempt Delay"; `timers.stagger`, in seconds in the file). The relay,
 * the safety net, starts no later than the second slot.
 *
 * Returns: the delay in milliseconds (default 250)
 */
guint
natkit_config_get_stagger (NatkitConfig *self)
{
  g_return_val_if_fail (NATKIT_IS_CONFIG (self), DEFAULT_STAGGER_MS);
  return self->stagger_ms;
}

/**
 * natkit_config_get_plugin_setting:
 * @self: a #NatkitConfig
 * @plugin: a plugin name
 * @key: the setting's name
 *
 * One of a plugin's own settings: `"plugins": {"holepunch": {"settings":
 * {"birthday-sockets": 128}}}`. Each plugin documents the settings it
 * reads; unknown ones are left alone.
 *
 * Returns: (transfer none) (nullable): the value (type `x` for whole
 *   numbers, `b` for true and false, `s` for strings), or %NULL when it is
 *   not set
 */
GVariant *
natkit_config_get_plugin_setting (NatkitConfig *self,
                                  const char   *plugin,
                                  const char   *key)
{
  PluginOverride *override;

  g_return_val_if_fail (NATKIT_IS_CONFIG (self), NULL);
  g_return_val_if_fail (plugin != NULL && key != NULL, NULL);

  override = g_hash_table_lookup (self->plugins, plugin);
  if (override == NULL || override->settings == NULL)
    return NULL;
  return g_hash_table_lookup (override->settings, key);
}
