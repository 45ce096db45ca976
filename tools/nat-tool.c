/* nat-tool: natkit from the command line
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Exit codes: 0 success, 1 failure (the message says why), 2 usage error.
 */
#include "config.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <natkit/natkit.h>

#include "nat-tool.h"

void
print_json (JsonBuilder *builder)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (builder);
  g_autofree char *text = NULL;

  json_generator_set_root (generator, root);
  json_generator_set_pretty (generator, TRUE);
  text = json_generator_to_data (generator, NULL);
  g_print ("%s\n", text);
}

/* One JSON event line on stderr. */
void
print_event (JsonBuilder *builder)
{
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (builder);
  g_autofree char *text = NULL;

  json_generator_set_root (generator, root);
  text = json_generator_to_data (generator, NULL);
  g_printerr ("%s\n", text);
}

/* One member of the JSON object being built. */
void
add_string (JsonBuilder *builder,
            const char  *name,
            const char  *value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_string_value (builder, value);
}

void
add_int (JsonBuilder *builder,
         const char  *name,
         gint64       value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_int_value (builder, value);
}

void
add_boolean (JsonBuilder *builder,
             const char  *name,
             gboolean     value)
{
  json_builder_set_member_name (builder, name);
  json_builder_add_boolean_value (builder, value);
}

/* Reports a failure: a line on stderr, and with --json an error object on
 * stdout so scripts always get JSON. Returns the failure exit code. */
int
fail (CommonOptions *common,
      const GError  *error)
{
  g_printerr ("nat-tool: %s\n", error->message);
  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "error");
      json_builder_begin_object (builder);
      add_string (builder, "domain", g_quark_to_string (error->domain));
      add_int (builder, "code", error->code);
      add_string (builder, "message", error->message);
      json_builder_end_object (builder);
      json_builder_end_object (builder);
      print_json (builder);
    }
  return EXIT_FAILURE;
}

NatkitManager *
make_manager (CommonOptions  *common,
              GError        **error)
{
  g_autoptr(NatkitConfig) config = NULL;

  if (common->config_file != NULL)
    config = natkit_config_new_from_file (common->config_file, error);
  else
    config = natkit_config_load_default (error);
  if (config == NULL)
    return NULL;
  /* servers named on the command line replace the configured ones */
  if (common->stun)
    natkit_config_set_stun_servers (config, (const char * const *) common->stun);
  if (common->turn)
    {
      natkit_config_clear_turn_servers (config);
      for (guint i = 0; common->turn[i]; i++)
        if (!natkit_config_add_turn_server (config, common->turn[i], common->turn_user,
                                            common->turn_password, NULL, error))
          return NULL;
    }
  return natkit_manager_new_with_config (config);
}

const char *
enum_nick (GType type,
           int   value)
{
  g_autoptr(GEnumClass) klass = g_type_class_ref (type);
  GEnumValue *v = g_enum_get_value (klass, value);

  return v ? v->value_nick : "unknown";
}

/* nat-tool plugins */

static int
cmd_plugins (CommonOptions  *common,
             int             argc,
             char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(GPtrArray) plugins = NULL;

  manager = make_manager (common, &error);
  if (manager == NULL)
    return fail (common, error);

  plugins = natkit_manager_list_plugins (manager);

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      json_builder_set_member_name (builder, "plugins");
      json_builder_begin_array (builder);
      for (guint i = 0; i < plugins->len; i++)
        {
          NatkitPluginInfo *info = g_ptr_array_index (plugins, i);
          gboolean loaded = natkit_plugin_info_get_state (info) == NATKIT_PLUGIN_STATE_LOADED ||
                            natkit_plugin_info_get_gtype (info) != G_TYPE_INVALID;

          json_builder_begin_object (builder);
          add_string (builder, "name", natkit_plugin_info_get_name (info));
          add_string (builder, "description", natkit_plugin_info_get_description (info));
          json_builder_set_member_name (builder, "kind");
          if (loaded)
            json_builder_add_string_value (builder,
              enum_nick (NATKIT_TYPE_PLUGIN_KIND, natkit_plugin_info_get_kind (info)));
          else
            json_builder_add_null_value (builder);
          json_builder_set_member_name (builder, "rank");
          if (loaded)
            json_builder_add_int_value (builder, natkit_plugin_info_get_rank (info));
          else
            json_builder_add_null_value (builder);
          json_builder_set_member_name (builder, "default_rank");
          if (loaded)
            json_builder_add_int_value (builder, natkit_plugin_info_get_default_rank (info));
          else
            json_builder_add_null_value (builder);
          json_builder_set_member_name (builder, "state");
          json_builder_add_string_value (builder,
            enum_nick (NATKIT_TYPE_PLUGIN_STATE, natkit_plugin_info_get_state (info)));
          add_string (builder, "reason", natkit_plugin_info_get_reason (info));
          add_string (builder, "version", natkit_plugin_info_get_version (info));
          add_string (builder, "file", natkit_plugin_info_get_filename (info));
          json_builder_end_object (builder);
        }
      json_builder_end_array (builder);
      json_builder_end_object (builder);
      print_json (builder);
      return EXIT_SUCCESS;
    }

  if (plugins->len == 0)
    {
      g_print ("No plugins found. natkit looks in the folders of "
               "NATKIT_PLUGIN_PATH and in %s.\n", NATKIT_PLUGINDIR);
      return EXIT_SUCCESS;
    }

  g_print ("%-14s %-12s %-12s %-9s %s\n", "NAME", "KIND", "RANK", "STATE", "DESCRIPTION");
  for (guint i = 0; i < plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (plugins, i);
      NatkitPluginState state = natkit_plugin_info_get_state (info);
      gboolean loaded = natkit_plugin_info_get_gtype (info) != G_TYPE_INVALID;
      g_autofree char *rank = loaded ?
        natkit_rank_to_string (natkit_plugin_info_get_rank (info)) : g_strdup ("-");

      g_print ("%-14s %-12s %-12s %-9s %s\n",
               natkit_plugin_info_get_name (info),
               loaded ? enum_nick (NATKIT_TYPE_PLUGIN_KIND,
                                   natkit_plugin_info_get_kind (info)) : "-",
               rank,
               enum_nick (NATKIT_TYPE_PLUGIN_STATE, state),
               natkit_plugin_info_get_description (info) ?
                 natkit_plugin_info_get_description (info) : "");
      if (state != NATKIT_PLUGIN_STATE_LOADED)
        g_print ("%13s%s %s\n", "", natkit_plugin_info_get_filename (info),
                 natkit_plugin_info_get_reason (info));
    }
  return EXIT_SUCCESS;
}

/* nat-tool id */

static int
cmd_id (CommonOptions  *common,
        int             argc,
        char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = NULL;
  g_autoptr(NatkitIdentity) identity = NULL;
  const char *filename;
  gboolean existed;

  if (common->config_file != NULL)
    config = natkit_config_new_from_file (common->config_file, &error);
  else
    config = natkit_config_load_default (&error);
  if (config == NULL)
    return fail (common, error);

  filename = natkit_config_get_identity_filename (config);
  existed = g_file_test (filename, G_FILE_TEST_EXISTS);
  identity = natkit_identity_load_or_create (filename, &error);
  if (identity == NULL)
    return fail (common, error);

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "peer_id", natkit_identity_get_peer_id (identity));
      add_string (builder, "identity_file", filename);
      add_boolean (builder, "created", !existed);
      json_builder_end_object (builder);
      print_json (builder);
    }
  else
    {
      if (!existed)
        g_printerr ("Created a new identity in %s\n", filename);
      g_print ("%s\n", natkit_identity_get_peer_id (identity));
    }
  return EXIT_SUCCESS;
}

/* nat-tool detect */

static double detect_timeout = 0;
static gboolean detect_lifetime;
static char *detect_gateway;

static const GOptionEntry detect_entries[] = {
  { "timeout", 0, 0, G_OPTION_ARG_DOUBLE, &detect_timeout,
    "Give up after SECONDS (default 5; 300 with --lifetime)", "SECONDS" },
  { "lifetime", 0, 0, G_OPTION_ARG_NONE, &detect_lifetime,
    "Also measure how long an idle UDP binding lives (slow: about twice that long)", NULL },
  { "gateway", 0, 0, G_OPTION_ARG_STRING, &detect_gateway,
    "Ask this gateway for PCP and NAT-PMP (default: the configured one, else the default route's)",
    "HOST[:PORT]" },
  G_OPTION_ENTRY_NULL
};

typedef struct
{
  GMainLoop     *loop;
  NatkitNatInfo *info;
  GError        *error;
} DetectRun;

static void
detect_done_cb (GObject      *source,
                GAsyncResult *result,
                gpointer      user_data)
{
  DetectRun *run = user_data;

  run->info = natkit_manager_detect_nat_finish (NATKIT_MANAGER (source), result, &run->error);
  g_main_loop_quit (run->loop);
}

static void
detect_progress_cb (NatkitManager *manager,
                    const char    *message,
                    gpointer       user_data)
{
  CommonOptions *common = user_data;

  if (!common->json)
    g_printerr ("… %s\n", message);
}

static void
add_strv (JsonBuilder        *builder,
          const char         *name,
          const char * const *values)
{
  json_builder_set_member_name (builder, name);
  json_builder_begin_array (builder);
  for (guint i = 0; values && values[i]; i++)
    json_builder_add_string_value (builder, values[i]);
  json_builder_end_array (builder);
}

static int
cmd_detect (CommonOptions  *common,
            int             argc,
            char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  DetectRun run = { loop, NULL, NULL };
  g_autoptr(NatkitNatInfo) info = NULL;
  guint at_least = 0, less_than = 0;
  g_autofree char *text = NULL;

  if (detect_timeout != 0 && !(detect_timeout > 0 && detect_timeout <= 3600))
    {
      g_printerr ("nat-tool detect: --timeout must be more than 0 and at most 3600 seconds\n");
      return EXIT_USAGE;
    }

  manager = make_manager (common, &error);
  if (manager == NULL)
    return fail (common, error);

  if (detect_gateway != NULL)
    natkit_config_set_gateway (natkit_manager_get_config (manager), detect_gateway);
  g_signal_connect (manager, "detect-progress", G_CALLBACK (detect_progress_cb), common);
  natkit_manager_detect_nat_async (manager, (const char * const *) common->stun,
                                   (guint) (detect_timeout * 1000),
                                   detect_lifetime ? NATKIT_DETECT_BINDING_LIFETIME :
                                                     NATKIT_DETECT_NONE,
                                   NULL, detect_done_cb, &run);
  g_main_loop_run (loop);
  if (run.info == NULL)
    {
      error = run.error;
      return fail (common, error);
    }
  info = run.info;

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "public_address", natkit_nat_info_get_public_address (info));
      json_builder_set_member_name (builder, "public_port");
      if (natkit_nat_info_get_public_port (info))
        json_builder_add_int_value (builder, natkit_nat_info_get_public_port (info));
      else
        json_builder_add_null_value (builder);
      add_string (builder, "local_address", natkit_nat_info_get_local_address (info));
      json_builder_set_member_name (builder, "mapping");
      json_builder_add_string_value (builder, enum_nick (NATKIT_TYPE_NAT_BEHAVIOR,
                                                         natkit_nat_info_get_mapping (info)));
      json_builder_set_member_name (builder, "filtering");
      json_builder_add_string_value (builder, enum_nick (NATKIT_TYPE_NAT_BEHAVIOR,
                                                         natkit_nat_info_get_filtering (info)));
      json_builder_set_member_name (builder, "nat_type");
      json_builder_add_string_value (builder, enum_nick (NATKIT_TYPE_NAT_TYPE,
                                                         natkit_nat_info_get_nat_type (info)));
      json_builder_set_member_name (builder, "hairpinning");
      switch (natkit_nat_info_get_hairpinning (info))
        {
        case NATKIT_HAIRPINNING_SUPPORTED:
          json_builder_add_boolean_value (builder, TRUE);
          break;
        case NATKIT_HAIRPINNING_UNSUPPORTED:
          json_builder_add_boolean_value (builder, FALSE);
          break;
        case NATKIT_HAIRPINNING_UNKNOWN:
        default:
          json_builder_add_null_value (builder);
        }
      add_strv (builder, "servers_used", natkit_nat_info_get_servers_used (info));
      add_strv (builder, "tests_skipped", natkit_nat_info_get_tests_skipped (info));
      json_builder_set_member_name (builder, "binding_lifetime");
      if (natkit_nat_info_get_binding_lifetime (info, &at_least, &less_than))
        {
          json_builder_begin_object (builder);
          add_int (builder, "at_least_ms", at_least);
          json_builder_set_member_name (builder, "less_than_ms");
          if (less_than)
            json_builder_add_int_value (builder, less_than);
          else
            json_builder_add_null_value (builder);
          json_builder_end_object (builder);
        }
      else
        json_builder_add_null_value (builder);
      if (natkit_nat_info_get_gateway_services (info) != NULL)
        add_strv (builder, "gateway_services", natkit_nat_info_get_gateway_services (info));
      else
        {
          json_builder_set_member_name (builder, "gateway_services");
          json_builder_add_null_value (builder);
        }
      add_int (builder, "elapsed_ms", natkit_nat_info_get_elapsed (info));
      add_int (builder, "packets_sent", natkit_nat_info_get_packets_sent (info));
      json_builder_end_object (builder);
      print_json (builder);
      return EXIT_SUCCESS;
    }

  text = natkit_nat_info_describe (info);
  g_print ("%s\n\n", text);
  if (natkit_nat_info_get_public_address (info))
    g_print ("  public address   %s:%u\n", natkit_nat_info_get_public_address (info),
             natkit_nat_info_get_public_port (info));
  g_print ("  NAT type         %s\n", enum_nick (NATKIT_TYPE_NAT_TYPE, natkit_nat_info_get_nat_type (info)));
  g_print ("  mapping          %s\n", enum_nick (NATKIT_TYPE_NAT_BEHAVIOR, natkit_nat_info_get_mapping (info)));
  g_print ("  filtering        %s\n", enum_nick (NATKIT_TYPE_NAT_BEHAVIOR, natkit_nat_info_get_filtering (info)));
  g_print ("  hairpinning      %s\n",
           natkit_nat_info_get_hairpinning (info) == NATKIT_HAIRPINNING_SUPPORTED ? "yes" :
           natkit_nat_info_get_hairpinning (info) == NATKIT_HAIRPINNING_UNSUPPORTED ? "no" : "unknown");
  if (natkit_nat_info_get_binding_lifetime (info, &at_least, &less_than))
    {
      if (less_than)
        g_print ("  idle binding     lives %.0f to %.0f s: keepalives every %.0f s keep it open\n",
                 at_least / 1000.0, less_than / 1000.0, MAX (1, at_least / 1000.0 * 0.8));
      else
        g_print ("  idle binding     lives at least %.0f s\n", at_least / 1000.0);
    }
  if (natkit_nat_info_get_gateway_services (info) == NULL)
    g_print ("  port mapping     not probed (no port mapping plugin is enabled)\n");
  else
    {
      g_autofree char *services =
        g_strjoinv (", ", (char **) natkit_nat_info_get_gateway_services (info));

      g_print ("  port mapping     %s\n", *services ? services :
               "none (the gateway answered neither UPnP, NAT-PMP nor PCP)");
    }
  g_print ("  measured in      %u ms, %u packets\n", natkit_nat_info_get_elapsed (info),
           natkit_nat_info_get_packets_sent (info));
  for (const char * const *s = natkit_nat_info_get_tests_skipped (info); *s; s++)
    g_print ("  not measured     %s\n", *s);
  return EXIT_SUCCESS;
}

/* nat-tool map / unmap */

static int map_external_port = 0;
static double map_lifetime = 0;
static char **map_methods;
static char *map_gateway;
static double map_timeout = 0;
static gboolean unmap_all;

static const GOptionEntry map_entries[] = {
  { "external-port", 0, 0, G_OPTION_ARG_INT, &map_external_port,
    "Ask for this public port (default: any; the gateway may give another)", "N" },
  { "lifetime", 0, 0, G_OPTION_ARG_DOUBLE, &map_lifetime,
    "Lease to ask for, renewed at half of it (default 7200)", "SECONDS" },
  { "method", 0, 0, G_OPTION_ARG_STRING_ARRAY, &map_methods,
    "Use only this protocol: upnp, natpmp or pcp (repeatable; default: all, by rank)", "NAME" },
  { "gateway", 0, 0, G_OPTION_ARG_STRING, &map_gateway,
    "Ask this gateway for PCP and NAT-PMP (default: the configured one, else the default route's)",
    "HOST[:PORT]" },
  { "timeout", 0, 0, G_OPTION_ARG_DOUBLE, &map_timeout,
    "Give up after SECONDS (default 4)", "SECONDS" },
  G_OPTION_ENTRY_NULL
};

static const GOptionEntry unmap_entries[] = {
  { "all", 0, 0, G_OPTION_ARG_NONE, &unmap_all,
    "Remove every mapping that a nat-tool or natkit application which is no "
    "longer running left behind", NULL },
  G_OPTION_ENTRY_NULL
};

typedef struct
{
  CommonOptions     *common;
  GMainLoop         *loop;
  NatkitPortMapping *mapping;
  GError            *error;
  int                status;
  gboolean           stopping;
} MapRun;

static void
map_event (MapRun     *run,
           const char *event,
           const char *detail)
{
  NatkitPortMapping *m = run->mapping;

  if (run->common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();
      g_autoptr(JsonGenerator) generator = json_generator_new ();
      g_autoptr(JsonNode) root = NULL;
      g_autofree char *text = NULL;

      json_builder_begin_object (builder);
      add_string (builder, "event", event);
      add_string (builder, "external_address", natkit_port_mapping_get_external_address (m));
      add_int (builder, "external_port", natkit_port_mapping_get_external_port (m));
      add_int (builder, "lifetime", natkit_port_mapping_get_lifetime (m));
      if (detail != NULL)
        {
          add_string (builder, "message", detail);
        }
      json_builder_end_object (builder);
      root = json_builder_get_root (builder);
      json_generator_set_root (generator, root);
      text = json_generator_to_data (generator, NULL);
      g_printerr ("%s\n", text);
    }
  else if (detail != NULL)
    g_printerr ("%s: %s\n", event, detail);
  else
    g_printerr ("%s: %s:%u for %u s\n", event,
                natkit_port_mapping_get_external_address (m),
                natkit_port_mapping_get_external_port (m),
                natkit_port_mapping_get_lifetime (m));
}

static void
mapping_renewed_cb (NatkitPortMapping *mapping,
                    gpointer           user_data)
{
  map_event (user_data, "renewed", NULL);
}

static void
mapping_changed_cb (NatkitPortMapping *mapping,
                    gpointer           user_data)
{
  map_event (user_data, "changed", NULL);
}

static void
mapping_lost_cb (NatkitPortMapping *mapping,
                 const GError      *error,
                 gpointer           user_data)
{
  map_event (user_data, "lost", error->message);
}

static void
map_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  MapRun *run = user_data;

  run->mapping = natkit_manager_map_port_finish (NATKIT_MANAGER (source), result, &run->error);
  g_main_loop_quit (run->loop);
}

static void
release_done_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  MapRun *run = user_data;
  g_autoptr(GError) error = NULL;

  if (!natkit_port_mapping_release_finish (NATKIT_PORT_MAPPING (source), result, &error))
    {
      g_printerr ("nat-tool: the mapping could not be removed: %s; it expires "
                  "by itself within %u s, or run “nat-tool unmap --all”\n",
                  error->message, natkit_port_mapping_get_lifetime (run->mapping));
      run->status = EXIT_FAILURE;
    }
  else if (!run->common->json)
    g_printerr ("removed the mapping\n");
  g_main_loop_quit (run->loop);
}

static gboolean
map_signal_cb (gpointer user_data)
{
  MapRun *run = user_data;

  if (run->stopping)
    {
      /* a second signal: do not wait for the gateway any longer */
      g_main_loop_quit (run->loop);
      run->status = EXIT_FAILURE;
      return G_SOURCE_CONTINUE;
    }
  run->stopping = TRUE;
  natkit_port_mapping_release_async (run->mapping, NULL, release_done_cb, run);
  return G_SOURCE_CONTINUE;
}

static int
cmd_map (CommonOptions  *common,
         int             argc,
         char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  g_autoptr(NatkitPortMappingRequest) request = NULL;
  g_autoptr(NatkitPortMapping) mapping = NULL;
  MapRun run = { common, loop, NULL, NULL, EXIT_SUCCESS, FALSE };
  NatkitIpProtocol protocol;
  guint64 port = 0;
  guint sigint, sigterm;

  if (argc != 3)
    {
      g_printerr ("nat-tool map: give the protocol and the port, e.g. "
                  "“nat-tool map udp 5000”\n");
      return EXIT_USAGE;
    }
  if (g_ascii_strcasecmp (argv[1], "udp") == 0)
    protocol = NATKIT_IP_PROTOCOL_UDP;
  else if (g_ascii_strcasecmp (argv[1], "tcp") == 0)
    protocol = NATKIT_IP_PROTOCOL_TCP;
  else
    {
      g_printerr ("nat-tool map: the protocol is udp or tcp, not “%s”\n", argv[1]);
      return EXIT_USAGE;
    }
  if (!g_ascii_string_to_unsigned (argv[2], 10, 1, 65535, &port, NULL))
    {
      g_printerr ("nat-tool map: the port is a number from 1 to 65535, not “%s”\n", argv[2]);
      return EXIT_USAGE;
    }
  if (map_external_port < 0 || map_external_port > 65535)
    {
      g_printerr ("nat-tool map: --external-port is a number from 1 to 65535 (or 0 for any)\n");
      return EXIT_USAGE;
    }
  if (map_lifetime != 0 && !(map_lifetime >= 1 && map_lifetime <= G_MAXUINT32))
    {
      g_printerr ("nat-tool map: --lifetime is a number of seconds, at least 1\n");
      return EXIT_USAGE;
    }
  if (map_timeout != 0 && !(map_timeout > 0 && map_timeout <= 3600))
    {
      g_printerr ("nat-tool map: --timeout must be more than 0 and at most 3600 seconds\n");
      return EXIT_USAGE;
    }

  manager = make_manager (common, &error);
  if (manager == NULL)
    return fail (common, error);

  request = natkit_port_mapping_request_new (protocol, (guint16) port);
  natkit_port_mapping_request_set_external_port (request, (guint16) map_external_port);
  if (map_lifetime != 0)
    natkit_port_mapping_request_set_lifetime (request, (guint32) map_lifetime);
  natkit_port_mapping_request_set_timeout (request, map_timeout != 0 ?
                                           (guint) (map_timeout * 1000) :
                                           natkit_config_get_map_timeout (natkit_manager_get_config (manager)));
  natkit_port_mapping_request_set_description (request, "natkit (nat-tool map)");
  if (map_gateway != NULL)
    natkit_port_mapping_request_set_gateway (request, map_gateway);

  natkit_manager_map_port_async (manager, request, (const char * const *) map_methods,
                                 NULL, map_done_cb, &run);
  g_main_loop_run (loop);
  if (run.mapping == NULL)
    {
      error = run.error;
      return fail (common, error);
    }
  mapping = run.mapping;

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "method", natkit_port_mapping_get_method (mapping));
      add_string (builder, "protocol", protocol == NATKIT_IP_PROTOCOL_TCP ? "tcp" : "udp");
      add_string (builder, "internal_address", natkit_port_mapping_get_internal_address (mapping));
      add_int (builder, "internal_port", natkit_port_mapping_get_internal_port (mapping));
      add_string (builder, "external_address", natkit_port_mapping_get_external_address (mapping));
      add_int (builder, "external_port", natkit_port_mapping_get_external_port (mapping));
      add_int (builder, "lifetime", natkit_port_mapping_get_lifetime (mapping));
      add_string (builder, "gateway", natkit_port_mapping_get_gateway (mapping));
      json_builder_end_object (builder);
      print_json (builder);
    }
  else
    {
      g_print ("%s %s:%u is reachable at %s:%u (via %s, gateway %s, lease %u s)\n",
               protocol == NATKIT_IP_PROTOCOL_TCP ? "TCP" : "UDP",
               natkit_port_mapping_get_internal_address (mapping),
               natkit_port_mapping_get_internal_port (mapping),
               natkit_port_mapping_get_external_address (mapping) ?
               natkit_port_mapping_get_external_address (mapping) : "(unknown address)",
               natkit_port_mapping_get_external_port (mapping),
               natkit_port_mapping_get_method (mapping),
               natkit_port_mapping_get_gateway (mapping),
               natkit_port_mapping_get_lifetime (mapping));
      g_print ("Keeping it renewed; press Ctrl+C to remove it.\n");
    }
  fflush (stdout);

  g_signal_connect (mapping, "renewed", G_CALLBACK (mapping_renewed_cb), &run);
  g_signal_connect (mapping, "changed", G_CALLBACK (mapping_changed_cb), &run);
  g_signal_connect (mapping, "lost", G_CALLBACK (mapping_lost_cb), &run);
  sigint = g_unix_signal_add (SIGINT, map_signal_cb, &run);
  sigterm = g_unix_signal_add (SIGTERM, map_signal_cb, &run);
  g_main_loop_run (loop);
  g_source_remove (sigint);
  g_source_remove (sigterm);
  g_signal_handlers_disconnect_by_data (mapping, &run);
  return run.status;
}

typedef struct
{
  GMainLoop *loop;
  int        removed;
  guint      skipped;
  GError    *error;
} UnmapRun;

static void
unmap_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  UnmapRun *run = user_data;

  run->removed = natkit_manager_remove_stale_mappings_finish (NATKIT_MANAGER (source), result,
                                                              &run->skipped, &run->error);
  g_main_loop_quit (run->loop);
}

static int
cmd_unmap (CommonOptions  *common,
           int             argc,
           char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(GMainLoop) loop = g_main_loop_new (NULL, FALSE);
  UnmapRun run = { loop, 0, 0, NULL };

  if (!unmap_all || argc != 1)
    {
      g_printerr ("nat-tool unmap: say --all to remove what stopped processes left "
                  "behind (a running “nat-tool map” removes its mapping when it stops)\n");
      return EXIT_USAGE;
    }
  manager = make_manager (common, &error);
  if (manager == NULL)
    return fail (common, error);
  natkit_manager_remove_stale_mappings_async (manager, NULL, unmap_done_cb, &run);
  g_main_loop_run (loop);
  if (run.error != NULL)
    {
      error = run.error;
      return fail (common, error);
    }
  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_int (builder, "removed", run.removed);
      add_int (builder, "skipped", run.skipped);
      json_builder_end_object (builder);
      print_json (builder);
    }
  else
    g_print ("removed %d stale mapping(s)%s\n", run.removed,
             run.skipped ? "; left alone the ones of running processes" : "");
  return EXIT_SUCCESS;
}

/* nat-tool version */

static int
cmd_version (CommonOptions  *common,
             int             argc,
             char          **argv)
{
  g_autofree char *abi = g_strdup_printf ("%d.%d", NATKIT_PLUGIN_ABI_MAJOR,
                                          NATKIT_PLUGIN_ABI_MINOR);

  if (common->json)
    {
      g_autoptr(JsonBuilder) builder = json_builder_new ();

      json_builder_begin_object (builder);
      add_string (builder, "version", PACKAGE_VERSION);
      add_string (builder, "plugin_abi", abi);
      add_string (builder, "plugin_dir", NATKIT_PLUGINDIR);
      json_builder_end_object (builder);
      print_json (builder);
    }
  else
    g_print ("nat-tool %s (plugin ABI %d.%d, plugins in %s)\n", PACKAGE_VERSION,
             NATKIT_PLUGIN_ABI_MAJOR, NATKIT_PLUGIN_ABI_MINOR, NATKIT_PLUGINDIR);
  return EXIT_SUCCESS;
}

static int
compare_int64 (gconstpointer a,
               gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

/* Per method, over every peer of the history: attempts, successes,
 * failures, peers, and the median of the last time to connect with each
 * peer. Methods sorted by name. */
static JsonObject *
history_summary (JsonObject *peers)
{
  g_autoptr(GHashTable) times = g_hash_table_new_full (g_str_hash, g_str_equal, g_free,
                                                       (GDestroyNotify) g_array_unref);
  g_autoptr(JsonObject) sums = json_object_new ();
  g_autoptr(GList) ids = json_object_get_members (peers);
  g_autoptr(GList) names = NULL;
  JsonObject *summary = json_object_new ();

  for (GList *l = ids; l; l = l->next)
    {
      JsonNode *peer = json_object_get_member (peers, l->data);
      JsonNode *methods_node;
      g_autoptr(GList) methods = NULL;

      if (!JSON_NODE_HOLDS_OBJECT (peer))
        continue;
      methods_node = json_object_get_member (json_node_get_object (peer), "methods");
      if (!methods_node || !JSON_NODE_HOLDS_OBJECT (methods_node))
        continue;
      methods = json_object_get_members (json_node_get_object (methods_node));
      for (GList *m = methods; m; m = m->next)
        {
          JsonNode *node = json_object_get_member (json_node_get_object (methods_node),
                                                   m->data);
          const char *fields[] = { "attempts", "successes", "failures" };
          JsonObject *o, *sum;
          GArray *t;

          if (!JSON_NODE_HOLDS_OBJECT (node))
            continue;
          o = json_node_get_object (node);
          if (!json_object_has_member (sums, m->data))
            {
              sum = json_object_new ();
              for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
                json_object_set_int_member (sum, fields[i], 0);
              json_object_set_int_member (sum, "peers", 0);
              json_object_set_object_member (sums, m->data, sum);
              g_hash_table_insert (times, g_strdup (m->data),
                                   g_array_new (FALSE, FALSE, sizeof (gint64)));
            }
          sum = json_object_get_object_member (sums, m->data);
          for (guint i = 0; i < G_N_ELEMENTS (fields); i++)
            json_object_set_int_member (sum, fields[i],
                                        json_object_get_int_member (sum, fields[i]) +
                                        json_object_get_int_member_with_default (o, fields[i], 0));
          json_object_set_int_member (sum, "peers", json_object_get_int_member (sum, "peers") + 1);
          if (json_object_has_member (o, "connect_ms"))
            {
              gint64 ms = json_object_get_int_member_with_default (o, "connect_ms", 0);

              t = g_hash_table_lookup (times, m->data);
              g_array_append_val (t, ms);
            }
        }
    }

  names = json_object_get_members (sums);
  names = g_list_sort (names, (GCompareFunc) g_strcmp0);
  for (GList *l = names; l; l = l->next)
    {
      JsonObject *sum = json_object_get_object_member (sums, l->data);
      GArray *t = g_hash_table_lookup (times, l->data);

      if (t->len > 0)
        {
          gint64 *v = (gint64 *) t->data;

          g_array_sort (t, compare_int64);
          json_object_set_int_member (sum, "median_connect_ms",
                                      t->len % 2 ? v[t->len / 2] :
                                        (v[t->len / 2 - 1] + v[t->len / 2]) / 2);
        }
      json_object_set_object_member (summary, l->data, json_object_ref (sum));
    }
  return summary;
}

static int
cmd_history (CommonOptions  *common,
             int             argc,
             char          **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitManager) manager = make_manager (common, &error);
  g_autofree char *text = NULL;
  g_autoptr(JsonNode) root = NULL;
  JsonNode *peers;
  g_autoptr(GList) ids = NULL;
  g_autoptr(JsonObject) summary = NULL;

  if (!manager)
    return fail (common, error);
  text = natkit_manager_dup_history (manager);
  root = json_from_string (text, NULL);
  peers = root && JSON_NODE_HOLDS_OBJECT (root) ?
    json_object_get_member (json_node_get_object (root), "peers") : NULL;
  summary = peers && JSON_NODE_HOLDS_OBJECT (peers) ?
    history_summary (json_node_get_object (peers)) : json_object_new ();
  if (common->json)
    {
      g_autofree char *with_summary = NULL;

      if (!root || !JSON_NODE_HOLDS_OBJECT (root))
        {
          g_print ("%s\n", text);
          return EXIT_SUCCESS;
        }
      json_object_set_object_member (json_node_get_object (root), "summary",
                                     json_object_ref (summary));
      with_summary = json_to_string (root, TRUE);
      g_print ("%s\n", with_summary);
      return EXIT_SUCCESS;
    }
  if (!peers || !JSON_NODE_HOLDS_OBJECT (peers) ||
      json_object_get_size (json_node_get_object (peers)) == 0)
    {
      g_print ("No connections yet: natkit remembers, per peer, which methods "
               "worked and which failed, once you connect.\n");
      return EXIT_SUCCESS;
    }
  g_print ("%-12s %-13s %8s %9s %8s %10s  %s\n", "PEER", "METHOD", "WORKED",
           "FAILED", "IN A ROW", "CONNECT", "LAST FAILURE");
  ids = json_object_get_members (json_node_get_object (peers));
  for (GList *l = ids; l; l = l->next)
    {
      JsonObject *peer = json_object_get_object_member (json_node_get_object (peers), l->data);
      JsonNode *methods_node = json_object_get_member (peer, "methods");
      g_autoptr(GList) methods = NULL;
      g_autofree char *short_id = g_strdup_printf ("%.8s…", (const char *) l->data);

      if (!methods_node || !JSON_NODE_HOLDS_OBJECT (methods_node))
        continue;
      methods = json_object_get_members (json_node_get_object (methods_node));
      for (GList *m = methods; m; m = m->next)
        {
          JsonObject *o = json_object_get_object_member (json_node_get_object (methods_node),
                                                         m->data);
          g_autofree char *connect = json_object_has_member (o, "connect_ms") ?
            g_strdup_printf ("%" G_GINT64_FORMAT " ms",
                             json_object_get_int_member (o, "connect_ms")) :
            g_strdup ("-");

          g_print ("%-12s %-13s %8" G_GINT64_FORMAT " %9" G_GINT64_FORMAT " %8"
                   G_GINT64_FORMAT " %10s  %s\n", short_id, (const char *) m->data,
                   json_object_get_int_member_with_default (o, "successes", 0),
                   json_object_get_int_member_with_default (o, "failures", 0),
                   json_object_get_int_member_with_default (o, "failures_in_a_row", 0),
                   connect,
                   json_object_get_string_member_with_default (o, "last_reason", ""));
        }
    }

  /* the same, per method over all peers */
  {
    g_autoptr(GList) methods = json_object_get_members (summary);

    methods = g_list_sort (methods, (GCompareFunc) g_strcmp0);
    g_print ("\n%-10s %8s %8s %9s %6s %15s\n", "METHOD", "ATTEMPTS", "WORKED", "FAILED",
             "PEERS", "MEDIAN CONNECT");
    for (GList *m = methods; m; m = m->next)
      {
        JsonObject *o = json_object_get_object_member (summary, m->data);
        g_autofree char *median = json_object_has_member (o, "median_connect_ms") ?
          g_strdup_printf ("%" G_GINT64_FORMAT " ms",
                           json_object_get_int_member (o, "median_connect_ms")) :
          g_strdup ("-");

        g_print ("%-10s %8" G_GINT64_FORMAT " %8" G_GINT64_FORMAT " %9" G_GINT64_FORMAT
                 " %6" G_GINT64_FORMAT " %15s\n", (const char *) m->data,
                 json_object_get_int_member (o, "attempts"),
                 json_object_get_int_member (o, "successes"),
                 json_object_get_int_member (o, "failures"),
                 json_object_get_int_member (o, "peers"), median);
      }
  }
  return EXIT_SUCCESS;
}

static const Command commands[] = {
  { "plugins", "", "List the plugins natkit found, their ranks and state",
    "Lists every plugin file found in the folders of NATKIT_PLUGIN_PATH and in\n"
    "natkit's plugin folder: loaded ones by rank (highest first), then the\n"
    "disabled and failed ones with the reason.",
    cmd_plugins, NULL, FALSE },
  { "id", "", "Show this node's peer ID (creating the identity on first use)",
    "Prints the peer ID other peers use to reach this node. The identity key is\n"
    "created on first use beside the configuration file, readable only by you.",
    cmd_id, NULL, FALSE },
  { "detect", "", "Find out what your network and NAT allow (RFC 5780)",
    "Asks STUN servers how your NAT maps and filters UDP, whether it hairpins,\n"
    "and what your public address is. Servers with two addresses (RFC 5780)\n"
    "give the full picture; with one, the tests that cannot run are listed.",
    cmd_detect, detect_entries, TRUE },
  { "map", "PROTOCOL PORT", "Make a local port reachable from outside (UPnP-IGD, NAT-PMP, PCP)",
    "Asks the gateway to forward PROTOCOL (udp or tcp) PORT of this host, prints\n"
    "the public address and port, keeps the mapping renewed, and removes it on\n"
    "Ctrl+C or SIGTERM. With --json, the mapping is a JSON object on stdout and\n"
    "later events (renewed, changed, lost) are JSON lines on stderr.",
    cmd_map, map_entries, FALSE },
  { "unmap", "--all", "Remove port mappings that stopped processes left behind",
    "Deletes, on their gateways, the mappings recorded in natkit's state folder\n"
    "by processes that are no longer running (after a crash or a kill).",
    cmd_unmap, unmap_entries, FALSE },
  { "listen", "--server HOST:PORT", "Accept connections from peers (through a natkit-server)",
    "Registers at the natkit-server, prints this node's peer address on stderr,\n"
    "and accepts connections: each incoming stream is copied to stdout, or with\n"
    "--exec connected to a command's stdin and stdout. Runs until Ctrl+C.",
    cmd_listen, listen_entries, TRUE },
  { "connect", "PEER-ADDRESS", "Connect to a peer: stdin → peer, peer → stdout",
    "Connects to PEER-ID@HOST:PORT (as “nat-tool listen” prints it) by the best\n"
    "method that works, securely (the peer's key must match its ID), and copies\n"
    "stdin to the peer and what the peer sends to stdout. How it connected goes\n"
    "to stderr (with --json as JSON events, one per line).",
    cmd_connect, connect_entries, TRUE },
  { "vpn", "up|status [PEER-ADDRESS…]", "A WireGuard network with peers: up, or its status",
    "“vpn up” brings up a WireGuard interface with a virtual IP derived from this\n"
    "node's peer ID (network 100.66.0.0/16 unless --network), registers at the\n"
    "natkit-server, prints its peer address and virtual IP, connects the named\n"
    "peers and accepts peers that connect to it; the tunnel runs over each\n"
    "peer's natkit connection, direct or relayed. Runs until Ctrl+C or SIGTERM,\n"
    "then removes the interface, its routes and wireguard-go. With --json, one\n"
    "event per line on stdout (up, peer-up, peer-down, peer-failed, down).\n"
    "“vpn status” shows the networks that are running. Needs root and\n"
    "wireguard-go.",
    cmd_vpn, vpn_entries, TRUE },
  { "history", "", "Show which methods worked with which peers",
    "Prints what natkit remembers of past connections, per peer and method:\n"
    "how often it worked and failed, how fast it connected, and the last\n"
    "failure's reason. The next connect to a peer starts with what worked last.",
    cmd_history, NULL, FALSE },
  { "demo", "", "Connect two peers across NATs and show how",
    "Starts a natkit-server and two peers in this process and connects them:\n"
    "through the NAT lab when run as root (namespaces behind real NATs), else\n"
    "over loopback. Shows each step and how the connection was made.",
    cmd_demo, demo_entries, FALSE },
  { "version", "", "Show the version",
    NULL, cmd_version, NULL, FALSE },
};

static void
print_usage (FILE *stream)
{
  fprintf (stream,
           "Usage: nat-tool COMMAND [OPTION…]\n\n"
           "Find out what the network allows and connect peers across NATs.\n\n"
           "Commands:\n");
  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    fprintf (stream, "  %-10s %s\n", commands[i].name, commands[i].summary);
  fprintf (stream,
           "  %-10s %s\n\n"
           "Options for every command:\n"
           "  --json         Machine-readable output (JSON)\n"
           "  --config FILE  Use FILE instead of $XDG_CONFIG_HOME/natkit/config.json\n"
           "  -h, --help     Show help for the command\n\n"
           "Run “nat-tool COMMAND --help” for a command's options.\n"
           "Exit status: 0 success, 1 failure, 2 usage error.\n",
           "help", "Show help for a command");
}

int
main (int    argc,
      char **argv)
{
  CommonOptions common = { FALSE, NULL, NULL, NULL, NULL, NULL };
  const GOptionEntry common_entries[] = {
    { "json", 0, 0, G_OPTION_ARG_NONE, &common.json,
      "Machine-readable output (JSON)", NULL },
    { "config", 0, 0, G_OPTION_ARG_FILENAME, &common.config_file,
      "Use FILE instead of $XDG_CONFIG_HOME/natkit/config.json", "FILE" },
    G_OPTION_ENTRY_NULL
  };
  const GOptionEntry server_entries[] = {
    { "stun", 0, 0, G_OPTION_ARG_STRING_ARRAY, &common.stun,
      "Use this STUN server (repeatable; instead of the configured ones)", "HOST[:PORT]" },
    { "turn", 0, 0, G_OPTION_ARG_STRING_ARRAY, &common.turn,
      "Use this TURN server (repeatable; instead of the configured ones), "
      "as turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT]", "URI" },
    { "turn-user", 0, 0, G_OPTION_ARG_STRING, &common.turn_user,
      "The user name for the --turn servers", "USER" },
    { "turn-password", 0, 0, G_OPTION_ARG_STRING, &common.turn_password,
      "The password for the --turn servers", "PASSWORD" },
    G_OPTION_ENTRY_NULL
  };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *parameter_string = NULL;
  const Command *command = NULL;
  const char *name;
  int status;

  /* stdout carries data (connect, listen): every log line goes to stderr */
  g_log_writer_default_set_use_stderr (TRUE);

  setlocale (LC_ALL, "");

  if (argc < 2)
    {
      print_usage (stderr);
      return EXIT_USAGE;
    }

  name = argv[1];
  if (g_str_equal (name, "--help") || g_str_equal (name, "-h") ||
      g_str_equal (name, "help"))
    {
      if (g_str_equal (name, "help") && argc > 2)
        {
          /* nat-tool help COMMAND → nat-tool COMMAND --help */
          argv[1] = argv[2];
          argv[2] = (char *) "--help";
          name = argv[1];
        }
      else
        {
          print_usage (stdout);
          return EXIT_SUCCESS;
        }
    }
  if (g_str_equal (name, "--version"))
    name = "version";

  for (guint i = 0; i < G_N_ELEMENTS (commands); i++)
    if (g_str_equal (commands[i].name, name))
      command = &commands[i];

  if (command == NULL)
    {
      g_printerr ("nat-tool: unknown command “%s”\n\n", name);
      print_usage (stderr);
      return EXIT_USAGE;
    }

  parameter_string = g_strdup_printf ("%s%s%s — %s", command->name,
                                      *command->parameters ? " " : "",
                                      command->parameters, command->summary);
  context = g_option_context_new (parameter_string);
  g_option_context_set_summary (context, command->description);
  g_option_context_set_description (context,
    "Exit status: 0 success, 1 failure, 2 usage error.");
  g_option_context_add_main_entries (context, common_entries, NULL);
  if (command->entries)
    g_option_context_add_main_entries (context, command->entries, NULL);
  if (command->servers)
    g_option_context_add_main_entries (context, server_entries, NULL);

  /* Drop the command name so the parser sees only its options. */
  argv[1] = argv[0];
  argc--;
  argv++;
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("nat-tool %s: %s\nRun “nat-tool %s --help” for usage.\n",
                  command->name, error->message, command->name);
      status = EXIT_USAGE;
    }
  else if ((common.turn_user || common.turn_password) && !common.turn)
    {
      g_printerr ("nat-tool %s: --turn-user and --turn-password go with --turn URI "
                  "(the TURN server they are for)\n", command->name);
      status = EXIT_USAGE;
    }
  else if (common.turn && (!common.turn_user || !common.turn_password))
    {
      g_printerr ("nat-tool %s: --turn needs --turn-user and --turn-password "
                  "(for REST credentials from a shared secret, put the server in "
                  "config.json with \"secret\")\n", command->name);
      status = EXIT_USAGE;
    }
  else
    status = command->func (&common, argc, argv);
  g_free (common.config_file);
  g_strfreev (common.stun);
  g_strfreev (common.turn);
  g_free (common.turn_user);
  g_free (common.turn_password);
  return status;
}
