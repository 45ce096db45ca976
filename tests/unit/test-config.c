/* test-config.c: reading config.json, and the errors a person sees
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include <glib/gstdio.h>

#include "natkit.h"

static void
test_defaults (void)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();

  g_assert_cmpuint (g_strv_length ((GStrv) natkit_config_get_stun_servers (config)), ==, 0);
  g_assert_cmpuint (natkit_config_get_keepalive_interval (config), ==, 25000);
  g_assert_cmpuint (natkit_config_get_connect_timeout (config), ==, 30000);
  g_assert_cmpuint (natkit_config_get_stun_timeout (config), ==, 3000);
  g_assert_true (natkit_config_get_plugin_enabled (config, "relay"));
  g_assert_false (natkit_config_get_plugin_rank (config, "relay", NULL));
  g_assert_null (natkit_config_get_filename (config));
}

static void
test_full (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = NULL;
  g_autofree char *user = NULL, *pass = NULL, *secret = NULL;
  const char *json =
    "{\n"
    "  \"stun\": [\"198.51.100.1\", \"[2001:db8::1]:3479\", \"stun.example.org:3478\"],\n"
    "  \"rendezvous\": [\"natkit.example.org:7000\"],\n"
    "  \"turn\": [\n"
    "    {\"uri\": \"turn:turn.example.org?transport=tcp\", \"username\": \"alice\", \"password\": \"pw\"},\n"
    "    {\"uri\": \"turns:turn.example.org\", \"secret\": \"s3cret\"}\n"
    "  ],\n"
    "  \"plugins\": {\"relay\": {\"rank\": \"primary+1\"}, \"upnp\": {\"enabled\": false},\n"
    "              \"ice\": {\"rank\": 7}},\n"
    "  \"timers\": {\"keepalive\": 10, \"connect-timeout\": 2.5, \"stun-timeout\": 0.5},\n"
    "  \"identity\": \"/tmp/natkit-test-identity.key\"\n"
    "}\n";
  int rank = 0;

  config = natkit_config_new_from_data (json, -1, &error);
  g_assert_no_error (error);

  g_assert_cmpstrv (natkit_config_get_stun_servers (config),
                    ((const char *[]) { "198.51.100.1", "[2001:db8::1]:3479",
                                        "stun.example.org:3478", NULL }));
  g_assert_cmpstrv (natkit_config_get_rendezvous_servers (config),
                    ((const char *[]) { "natkit.example.org:7000", NULL }));
  g_assert_cmpstrv (natkit_config_get_turn_uris (config),
                    ((const char *[]) { "turn:turn.example.org?transport=tcp",
                                        "turns:turn.example.org", NULL }));
  g_assert_true (natkit_config_get_turn_credentials (config, "turn:turn.example.org?transport=tcp",
                                                     &user, &pass, &secret));
  g_assert_cmpstr (user, ==, "alice");
  g_assert_cmpstr (pass, ==, "pw");
  g_assert_null (secret);
  g_clear_pointer (&user, g_free);
  g_clear_pointer (&pass, g_free);
  g_assert_true (natkit_config_get_turn_credentials (config, "turns:turn.example.org",
                                                     &user, &pass, &secret));
  g_assert_cmpstr (secret, ==, "s3cret");
  g_assert_false (natkit_config_get_turn_credentials (config, "turn:other", NULL, NULL, NULL));

  /* added in code (nat-tool --turn): after the file's, same URI replaced */
  g_clear_pointer (&user, g_free);
  g_clear_pointer (&pass, g_free);
  g_clear_pointer (&secret, g_free);
  g_assert_true (natkit_config_add_turn_server (config, "turns:turn.example.org", "bob",
                                                "pw2", NULL, &error));
  g_assert_no_error (error);
  g_assert_true (natkit_config_add_turn_server (config, "turn:203.0.113.5:3479", NULL,
                                                NULL, "s", &error));
  g_assert_cmpstrv (natkit_config_get_turn_uris (config),
                    ((const char *[]) { "turn:turn.example.org?transport=tcp",
                                        "turns:turn.example.org",
                                        "turn:203.0.113.5:3479", NULL }) );
  g_assert_true (natkit_config_get_turn_credentials (config, "turns:turn.example.org",
                                                     &user, &pass, &secret));
  g_assert_cmpstr (user, ==, "bob");
  g_assert_null (secret);
  g_assert_false (natkit_config_add_turn_server (config, "stun:x.example.org", "a", "b",
                                                 NULL, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "RFC 7065"));
  g_clear_error (&error);
  g_assert_false (natkit_config_add_turn_server (config, "turn:x.example.org", "a", NULL,
                                                 NULL, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  natkit_config_clear_turn_servers (config);
  g_assert_cmpstrv (natkit_config_get_turn_uris (config), ((const char *[]) { NULL }));

  /* TURN REST credentials (vector computed with Python's hmac module) */
  g_clear_pointer (&user, g_free);
  g_clear_pointer (&pass, g_free);
  natkit_turn_rest_credentials ("north", "alice", 1700000000, &user, &pass);
  g_assert_cmpstr (user, ==, "1700000000:alice");
  g_assert_cmpstr (pass, ==, "Cd/49soE35ICqcJF/bCTn8Z4OyE=");

  g_assert_true (natkit_config_get_plugin_rank (config, "relay", &rank));
  g_assert_cmpint (rank, ==, NATKIT_RANK_PRIMARY + 1);
  g_assert_true (natkit_config_get_plugin_rank (config, "ice", &rank));
  g_assert_cmpint (rank, ==, 7);
  g_assert_false (natkit_config_get_plugin_enabled (config, "upnp"));
  g_assert_true (natkit_config_get_plugin_enabled (config, "relay"));
  g_assert_cmpuint (natkit_config_get_keepalive_interval (config), ==, 10000);
  g_assert_cmpuint (natkit_config_get_connect_timeout (config), ==, 2500);
  g_assert_cmpuint (natkit_config_get_stun_timeout (config), ==, 500);
  g_assert_cmpstr (natkit_config_get_identity_filename (config), ==,
                   "/tmp/natkit-test-identity.key");
}

typedef struct
{
  const char *json;
  const char *pattern;
} BadCase;

static const BadCase bad_cases[] = {
  /* Syntax errors: file, line and column. */
  { "{\n  \"stun\": [\"a\",\n}\n", "*config.json:3:*not valid JSON*move it away*" },
  { "{ \"stun\": ", "*config.json:1:*not valid JSON*" },
  { "", "*config.json*" },
  { "[1, 2]", "*config.json: the configuration must be a JSON object*not a list*" },
  /* Wrong kinds: the key and what was expected. */
  { "{\"stun\": \"198.51.100.1\"}", "*config.json: “stun” must be a list of \"HOST:PORT\" strings, not a string*" },
  { "{\"stun\": [\"ok\", 5]}", "*“stun[1]” must be a \"HOST:PORT\" string, not a number*" },
  { "{\"stun\": [\"host:99999\"]}", "*“stun[0]” is not a server address*" },
  { "{\"rendezvous\": [\"[::1\"]}", "*“rendezvous[0]” is not a server address*" },
  { "{\"timers\": {\"keepalive\": \"25\"}}", "*“timers.keepalive” must be a number of seconds, not a string*" },
  { "{\"timers\": {\"keepalive\": -1}}", "*“timers.keepalive” must be more than 0*" },
  { "{\"timers\": []}", "*“timers” must be an object*" },
  { "{\"plugins\": {\"relay\": {\"rank\": \"best\"}}}", "*“plugins.relay.rank” is wrong: “best” is not a rank*" },
  { "{\"plugins\": {\"relay\": {\"enabled\": \"no\"}}}", "*“plugins.relay.enabled” must be true or false, not a string*" },
  { "{\"plugins\": {\"relay\": true}}", "*“plugins.relay” must be an object*" },
  { "{\"turn\": [{\"uri\": \"turn:t.example.org\"}]}", "*“turn[0]” needs credentials*" },
  { "{\"turn\": [{\"uri\": \"http://x\", \"secret\": \"s\"}]}", "*“turn[0]” needs a \"uri\"*RFC 7065*" },
  { "{\"turn\": [{\"uri\": 5}]}", "*“turn[0].uri” must be a string, not a number*" },
  { "{\"identity\": false}", "*“identity” must be the path of the identity key file*" },
};

static void
test_bad (gconstpointer data)
{
  const BadCase *c = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("natkit-config-XXXXXX", NULL);
  g_autofree char *file = g_build_filename (dir, "config.json", NULL);
  NatkitConfig *config;

  g_assert_true (g_file_set_contents (file, c->json, -1, NULL));
  config = natkit_config_new_from_file (file, &error);
  g_assert_null (config);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG);
  g_assert_nonnull (strstr (error->message, file));
  if (!g_pattern_match_simple (c->pattern, error->message))
    g_error ("“%s” does not match “%s”", error->message, c->pattern);

  g_unlink (file);
  g_rmdir (dir);
}

static void
test_missing_file (void)
{
  g_autoptr(GError) error = NULL;
  NatkitConfig *config;

  config = natkit_config_new_from_file ("/nonexistent/natkit/config.json", &error);
  g_assert_null (config);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG);
  g_assert_nonnull (strstr (error->message, "/nonexistent/natkit/config.json"));
}

static void
test_default_location (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp ("natkit-xdg-XXXXXX", NULL);
  g_autofree char *natkit_dir = g_build_filename (dir, "natkit", NULL);
  g_autofree char *file = g_build_filename (natkit_dir, "config.json", NULL);
  g_autofree char *key = g_build_filename (natkit_dir, "identity.key", NULL);
  g_autoptr(NatkitConfig) config = NULL;
  g_autoptr(NatkitManager) manager = NULL;

  if (!g_test_subprocess ())
    {
      g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
      g_test_trap_assert_passed ();
      g_rmdir (dir);
      return;
    }

  g_setenv ("XDG_CONFIG_HOME", dir, TRUE);
  g_setenv ("NATKIT_PLUGIN_SYSTEM_PATH", "", TRUE);
  g_unsetenv ("NATKIT_PLUGIN_PATH");
  g_unsetenv ("NATKIT_PLUGIN_RANKS");   /* no plugin is loaded here */

  /* No file: defaults, identity beside where the file would be. */
  config = natkit_config_load_default (&error);
  g_assert_no_error (error);
  g_assert_null (natkit_config_get_filename (config));
  g_assert_cmpstr (natkit_config_get_identity_filename (config), ==, key);
  g_clear_object (&config);

  /* A good file is read. */
  g_assert_cmpint (g_mkdir_with_parents (natkit_dir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (file, "{\"timers\": {\"keepalive\": 5}}", -1, NULL));
  manager = natkit_manager_new (&error);
  g_assert_no_error (error);
  g_assert_cmpuint (natkit_config_get_keepalive_interval (natkit_manager_get_config (manager)), ==, 5000);
  g_assert_cmpstr (natkit_config_get_filename (natkit_manager_get_config (manager)), ==, file);
  g_clear_object (&manager);

  /* A bad one stops the manager with the file's name. */
  g_assert_true (g_file_set_contents (file, "{\"timers\": 5}", -1, NULL));
  manager = natkit_manager_new (&error);
  g_assert_null (manager);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG);
  g_assert_nonnull (strstr (error->message, file));

  g_unlink (file);
  g_rmdir (natkit_dir);
}

static void
test_unknown_keys_warn (void)
{
  if (g_test_subprocess ())
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(NatkitConfig) config = NULL;

      g_log_set_always_fatal (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
      config = natkit_config_new_from_data ("{\"stunn\": [], \"timers\": {\"keeplive\": 3}}",
                                            -1, &error);
      g_assert_no_error (error);
      g_assert_nonnull (config);
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*ignoring unknown key “stunn” (known keys:*");
  g_test_trap_assert_stderr ("*ignoring unknown timer “timers.keeplive”*");
}

static void
test_shipped_example (void)
{
  g_autofree char *file = g_test_build_filename (G_TEST_DIST, "..", "data",
                                                 "config.json.example", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = natkit_config_new_from_file (file, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (g_strv_length ((GStrv) natkit_config_get_turn_uris (config)), ==, 2);
  g_assert_cmpstr (natkit_config_get_gateway (config), ==, "192.168.1.1");
  g_assert_cmpuint (natkit_config_get_map_timeout (config), ==, 4000);
  g_assert_cmpuint (natkit_config_get_slow_rtt (config), ==, 200);
  g_assert_cmpuint (natkit_config_get_stagger (config), ==, 250);
}

/* A plugin's own settings: whole numbers, booleans, strings; anything
 * else is an error naming the key */
static void
test_plugin_settings (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = NULL;
  GVariant *v;

  config = natkit_config_new_from_data ("{\"plugins\": {\"holepunch\": {\"rank\": \"primary\", "
                                        "\"settings\": {\"birthday-sockets\": 128, "
                                        "\"flag\": true, \"name\": \"x\"}}}}", -1, &error);
  g_assert_no_error (error);
  v = natkit_config_get_plugin_setting (config, "holepunch", "birthday-sockets");
  g_assert_nonnull (v);
  g_assert_true (g_variant_is_of_type (v, G_VARIANT_TYPE_INT64));
  g_assert_cmpint (g_variant_get_int64 (v), ==, 128);
  v = natkit_config_get_plugin_setting (config, "holepunch", "flag");
  g_assert_true (g_variant_is_of_type (v, G_VARIANT_TYPE_BOOLEAN) && g_variant_get_boolean (v));
  v = natkit_config_get_plugin_setting (config, "holepunch", "name");
  g_assert_cmpstr (g_variant_get_string (v, NULL), ==, "x");
  g_assert_null (natkit_config_get_plugin_setting (config, "holepunch", "other"));
  g_assert_null (natkit_config_get_plugin_setting (config, "relay", "birthday-sockets"));
  g_clear_object (&config);

  config = natkit_config_new_from_data ("{\"plugins\": {\"holepunch\": {\"settings\": "
                                        "{\"birthday-ms\": [1]}}}}", -1, &error);
  g_assert_null (config);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG);
  g_assert_nonnull (strstr (error->message, "plugins.holepunch.settings.birthday-ms"));
  g_clear_error (&error);

  config = natkit_config_new_from_data ("{\"plugins\": {\"holepunch\": {\"settings\": 5}}}",
                                        -1, &error);
  g_assert_null (config);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG);
  g_assert_nonnull (strstr (error->message, "plugins.holepunch.settings"));
}

static void
test_gateway (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = NULL;
  g_autoptr(GInetSocketAddress) address = NULL;

  config = natkit_config_new_from_data ("{\"gateway\": 5}", -1, &error);
  g_assert_null (config);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_CONFIG);
  g_assert_nonnull (strstr (error->message, "gateway"));
  g_clear_error (&error);

  config = natkit_config_new_from_data ("{\"gateway\": \"10.0.0.254:5400\", "
                                        "\"timers\": {\"map-timeout\": 1.5, \"slow-rtt\": 0.35, "
                                        "\"stagger\": 0.1}}",
                                        -1, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (natkit_config_get_map_timeout (config), ==, 1500);
  g_assert_cmpuint (natkit_config_get_slow_rtt (config), ==, 350);
  g_assert_cmpuint (natkit_config_get_stagger (config), ==, 100);
  address = natkit_resolve_gateway (natkit_config_get_gateway (config), 5351, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_inet_socket_address_get_port (address), ==, 5400);
  g_clear_object (&address);

  address = natkit_resolve_gateway ("10.0.0.254", 5351, &error);
  g_assert_cmpuint (g_inet_socket_address_get_port (address), ==, 5351);
  g_assert_null (natkit_resolve_gateway ("router.local", 5351, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  g_assert_null (natkit_resolve_gateway ("10.0.0.1:99999", 5351, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
}

static void
test_rank_parse (void)
{
  const struct { const char *text; int rank; } good[] = {
    { "none", 0 }, { "MARGINAL", 64 }, { "secondary", 128 }, { " primary ", 256 },
    { "primary+1", 257 }, { "secondary-8", 120 }, { "42", 42 }, { "-3", -3 },
  };
  const char *bad[] = { "", "best", "primary+", "primary1", "1x", "+" };

  for (guint i = 0; i < G_N_ELEMENTS (good); i++)
    {
      g_autoptr(GError) error = NULL;
      int rank = -999;

      g_assert_true (natkit_rank_parse (good[i].text, &rank, &error));
      g_assert_no_error (error);
      g_assert_cmpint (rank, ==, good[i].rank);
    }
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      int rank;

      g_assert_false (natkit_rank_parse (bad[i], &rank, &error));
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
    }

  {
    g_autofree char *a = natkit_rank_to_string (256);
    g_autofree char *b = natkit_rank_to_string (257);
    g_autofree char *c = natkit_rank_to_string (120);
    g_assert_cmpstr (a, ==, "primary");
    g_assert_cmpstr (b, ==, "primary+1");
    g_assert_cmpstr (c, ==, "secondary-8");
  }
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("config.json: values, defaults, and actionable errors");

  g_test_add_func ("/natkit/config/defaults", test_defaults);
  g_test_add_func ("/natkit/config/full", test_full);
  for (guint i = 0; i < G_N_ELEMENTS (bad_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/natkit/config/bad/%u", i);
      g_test_add_data_func (path, &bad_cases[i], test_bad);
    }
  g_test_add_func ("/natkit/config/missing-file", test_missing_file);
  g_test_add_func ("/natkit/config/default-location", test_default_location);
  g_test_add_func ("/natkit/config/unknown-keys-warn", test_unknown_keys_warn);
  g_test_add_func ("/natkit/config/rank-parse", test_rank_parse);
  g_test_add_func ("/natkit/config/shipped-example", test_shipped_example);
  g_test_add_func ("/natkit/config/gateway", test_gateway);
  g_test_add_func ("/natkit/config/plugin-settings", test_plugin_settings);

  return g_test_run ();
}
