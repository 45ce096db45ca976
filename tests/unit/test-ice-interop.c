/* test-ice-interop.c: the ice plugin against a plain libnice agent
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One side is the plugin, driven directly as a traversal (no manager
 * race, no secure session: its NatkitPath itself); the other is a
 * NiceAgent written here, which speaks the plugin's "ice" signaling
 * bodies (docs/protocol.md section 8) over natkit_signaling_new_pair()
 * with its own JSON code. Both roles: the plugin controlling (initiator)
 * and controlled (responder). Datagrams flow both ways through the
 * plugin's path; when the plain agent goes away, consent freshness (RFC
 * 7675) makes the path fail with the reason.
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include <json-glib/json-glib.h>
#include <nice/agent.h>

#include "natkit.h"

#define SESSION "c0ffee0123456789"

static const char loopback_config[] =
  "{\"plugins\": {\"ice\": {\"settings\": {\"local-addresses\": \"127.0.0.1\"}}}}";

typedef struct
{
  NatkitManager   *manager;
  NatkitSignaling *sig_plugin;
  NatkitSignaling *sig_plain;
  NatkitPath      *path;
  GError          *error;
  gboolean         done;

  NiceAgent       *agent;       /* the plain one */
  guint            stream;
  GPtrArray       *candidates;  /* JSON objects of ours not sent yet */
  gboolean         gathered;
  gboolean         plain_ready;
  GPtrArray       *at_plain;    /* GBytes the plain agent received */
  GPtrArray       *at_plugin;   /* GBytes the plugin's path delivered */
  GError          *closed;      /* why the path closed */
  gboolean         path_closed;
} Fixture;

static void
fixture_set_up (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = natkit_config_new_from_data (loopback_config, -1, &error);

  g_assert_no_error (error);
  f->manager = natkit_manager_new_with_config (config);
  natkit_signaling_new_pair ("plugin-peer", "plain-peer", &f->sig_plugin, &f->sig_plain);
  f->candidates = g_ptr_array_new_with_free_func (g_free);
  f->at_plain = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  f->at_plugin = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
}

static void
fixture_tear_down (Fixture       *f,
                   gconstpointer  data)
{
  if (f->path)
    natkit_path_close (f->path);
  g_clear_object (&f->path);
  g_clear_object (&f->agent);
  g_clear_object (&f->manager);
  g_clear_object (&f->sig_plugin);
  g_clear_object (&f->sig_plain);
  g_clear_error (&f->error);
  g_clear_error (&f->closed);
  g_ptr_array_unref (f->candidates);
  g_ptr_array_unref (f->at_plain);
  g_ptr_array_unref (f->at_plugin);
  for (int i = 0; i < 100; i++)
    g_main_context_iteration (NULL, FALSE);
}

/* ---- the plain agent's signaling: its own JSON ------------------------- */

static void
plain_send (Fixture *f)
{
  g_autofree char *ufrag = NULL;
  g_autofree char *pwd = NULL;
  g_autofree char *list = NULL;
  g_autofree char *text = NULL;

  g_assert_true (nice_agent_get_local_credentials (f->agent, f->stream, &ufrag, &pwd));
  g_ptr_array_add (f->candidates, NULL);
  list = g_strjoinv (",", (char **) f->candidates->pdata);
  g_ptr_array_set_size (f->candidates, 0);
  text = g_strdup_printf ("{\"natkit\": 1, \"op\": \"ice\", \"session\": \"%s\", "
                          "\"ufrag\": \"%s\", \"pwd\": \"%s\", \"candidates\": [%s]%s}",
                          SESSION, ufrag, pwd, list, f->gathered ? ", \"end\": true" : "");
  natkit_signaling_send_async (f->sig_plain, "plugin-peer", text, NULL, NULL, NULL);
}

static void
plain_candidate_cb (NiceAgent     *agent,
                    NiceCandidate *c,
                    gpointer       user_data)
{
  Fixture *f = user_data;
  char ip[NICE_ADDRESS_STRING_LEN];
  static const char *types[] = { "host", "srflx", "prflx", "relay" };

  nice_address_to_string (&c->addr, ip);
  g_ptr_array_add (f->candidates,
                   g_strdup_printf ("{\"foundation\": \"%s\", \"priority\": %u, \"type\": \"%s\", "
                                    "\"ip\": \"%s\", \"port\": %u}", c->foundation, c->priority,
                                    types[c->type], ip, nice_address_get_port (&c->addr)));
  plain_send (f);
}

static void
plain_gathered_cb (NiceAgent *agent,
                   guint      stream,
                   gpointer   user_data)
{
  Fixture *f = user_data;

  f->gathered = TRUE;
  plain_send (f);
}

static void
plain_state_cb (NiceAgent *agent,
                guint      stream,
                guint      component,
                guint      state,
                gpointer   user_data)
{
  Fixture *f = user_data;

  if (state == NICE_COMPONENT_STATE_READY)
    f->plain_ready = TRUE;
}

static void
plain_recv_cb (NiceAgent *agent,
               guint      stream,
               guint      component,
               guint      len,
               gchar     *buf,
               gpointer   user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->at_plain, g_bytes_new (buf, len));
}

/* What the plugin sends: read with json-glib here, not with the plugin's
 * parser */
static void
plain_message_cb (NatkitSignaling *signaling,
                  const char      *from,
                  const char      *text,
                  gpointer         user_data)
{
  Fixture *f = user_data;
  g_autoptr(JsonNode) node = json_from_string (text, NULL);
  JsonObject *body;
  JsonArray *list;
  GSList *candidates = NULL;

  g_assert_cmpstr (from, ==, "plugin-peer");
  g_assert_nonnull (node);
  body = json_node_get_object (node);
  g_assert_cmpint (json_object_get_int_member (body, "natkit"), ==, 1);
  g_assert_cmpstr (json_object_get_string_member (body, "op"), ==, "ice");
  g_assert_cmpstr (json_object_get_string_member (body, "session"), ==, SESSION);
  nice_agent_set_remote_credentials (f->agent, f->stream,
                                     json_object_get_string_member (body, "ufrag"),
                                     json_object_get_string_member (body, "pwd"));
  list = json_object_get_array_member (body, "candidates");
  for (guint i = 0; list && i < json_array_get_length (list); i++)
    {
      JsonObject *c = json_array_get_object_element (list, i);
      const char *type = json_object_get_string_member (c, "type");
      NiceCandidate *nc = nice_candidate_new (g_str_equal (type, "host") ? NICE_CANDIDATE_TYPE_HOST :
                                              g_str_equal (type, "srflx") ? NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE :
                                              g_str_equal (type, "prflx") ? NICE_CANDIDATE_TYPE_PEER_REFLEXIVE :
                                              NICE_CANDIDATE_TYPE_RELAYED);

      nc->stream_id = f->stream;
      nc->component_id = 1;
      nc->transport = NICE_CANDIDATE_TRANSPORT_UDP;
      nc->priority = (guint32) json_object_get_int_member (c, "priority");
      g_strlcpy (nc->foundation, json_object_get_string_member (c, "foundation"),
                 NICE_CANDIDATE_MAX_FOUNDATION);
      g_assert_true (nice_address_set_from_string (&nc->addr, json_object_get_string_member (c, "ip")));
      nice_address_set_port (&nc->addr, (guint) json_object_get_int_member (c, "port"));
      candidates = g_slist_append (candidates, nc);
    }
  if (candidates)
    nice_agent_set_remote_candidates (f->agent, f->stream, 1, candidates);
  g_slist_free_full (candidates, (GDestroyNotify) nice_candidate_free);
  if (json_object_has_member (body, "end") && json_object_get_boolean_member (body, "end"))
    nice_agent_peer_candidate_gathering_done (f->agent, f->stream);
}

static void
plain_start (Fixture  *f,
             gboolean  controlling)
{
  NiceAddress local;

  f->agent = nice_agent_new_full (NULL, NICE_COMPATIBILITY_RFC5245,
                                  NICE_AGENT_OPTION_ICE_TRICKLE |
                                  NICE_AGENT_OPTION_REGULAR_NOMINATION);
  g_object_set (f->agent, "controlling-mode", controlling, "upnp", FALSE, "ice-tcp", FALSE, NULL);
  g_assert_true (nice_address_set_from_string (&local, "127.0.0.1"));
  g_assert_true (nice_agent_add_local_address (f->agent, &local));
  f->stream = nice_agent_add_stream (f->agent, 1);
  g_assert_cmpuint (f->stream, >, 0);
  g_signal_connect (f->agent, "new-candidate-full", G_CALLBACK (plain_candidate_cb), f);
  g_signal_connect (f->agent, "candidate-gathering-done", G_CALLBACK (plain_gathered_cb), f);
  g_signal_connect (f->agent, "component-state-changed", G_CALLBACK (plain_state_cb), f);
  nice_agent_attach_recv (f->agent, f->stream, 1, NULL, plain_recv_cb, f);
  g_signal_connect (f->sig_plain, "message-received", G_CALLBACK (plain_message_cb), f);
  g_assert_true (nice_agent_gather_candidates (f->agent, f->stream));
}

/* ---- the plugin, driven directly -------------------------------------- */

static void
path_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  Fixture *f = user_data;

  f->path = natkit_traversal_open_path_finish (NATKIT_TRAVERSAL (source), res, &f->error);
  f->done = TRUE;
}

static void
path_received_cb (NatkitPath *path,
                  GBytes     *datagram,
                  gpointer    user_data)
{
  Fixture *f = user_data;

  g_ptr_array_add (f->at_plugin, g_bytes_ref (datagram));
}

static void
path_closed_cb (NatkitPath   *path,
                const GError *error,
                gpointer      user_data)
{
  Fixture *f = user_data;

  f->path_closed = TRUE;
  if (error)
    f->closed = g_error_copy (error);
}

static gboolean
deadline_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
test_interop (Fixture       *f,
              gconstpointer  data)
{
  NatkitRole role = GPOINTER_TO_INT (data);
  NatkitPluginInfo *info = natkit_manager_get_plugin (f->manager, "ice");
  g_autoptr(NatkitTraversal) traversal = NULL;
  g_autoptr(NatkitTraversalRequest) request = NULL;
  g_autoptr(GBytes) ping = g_bytes_new_static ("from the plugin", 15);
  g_autoptr(GBytes) pong = g_bytes_new_static ("from plain libnice", 18);
  gboolean late = FALSE;
  guint deadline;

  g_assert_nonnull (info);
  g_assert_cmpint (natkit_plugin_info_get_state (info), ==, NATKIT_PLUGIN_STATE_LOADED);
  traversal = g_object_new (natkit_plugin_info_get_gtype (info), NULL);
  request = natkit_traversal_request_new ("plugin-peer", "plain-peer", role);
  natkit_traversal_request_set_session_id (request, SESSION);
  natkit_traversal_request_set_signaling (request, f->sig_plugin);
  natkit_traversal_request_set_config (request, natkit_manager_get_config (f->manager));
  natkit_traversal_request_set_timeout (request, 10000);

  /* the plain agent takes the other role */
  plain_start (f, role == NATKIT_ROLE_RESPONDER);
  natkit_traversal_open_path_async (traversal, request, NULL, path_cb, f);
  while (!f->done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (f->error);
  g_assert_nonnull (f->path);
  g_assert_cmpstr (natkit_path_get_method (f->path), ==, "ice");
  g_assert_cmpstr (natkit_path_get_transport (f->path), ==, "udp");
  g_assert_true (g_str_has_prefix (natkit_path_get_remote_address (f->path), "127.0.0.1:"));
  g_assert_true (g_str_has_suffix (natkit_path_get_remote_address (f->path), "(ice host)"));
  g_signal_connect (f->path, "received", G_CALLBACK (path_received_cb), f);
  g_signal_connect (f->path, "closed", G_CALLBACK (path_closed_cb), f);

  /* both ways: resend until each side has one (UDP), 5 s at most */
  deadline = g_timeout_add (5000, deadline_cb, &late);
  while (!late && (f->at_plain->len == 0 || f->at_plugin->len == 0))
    {
      g_autoptr(GError) error = NULL;

      g_assert_true (natkit_path_send (f->path, ping, &error));
      g_assert_no_error (error);
      if (f->plain_ready)
        nice_agent_send (f->agent, f->stream, 1, g_bytes_get_size (pong),
                         g_bytes_get_data (pong, NULL));
      for (guint i = 0; i < 20; i++)
        g_main_context_iteration (NULL, FALSE);
      g_usleep (10000);
    }
  g_assert_false (late);
  g_source_remove (deadline);
  g_assert_true (g_bytes_equal (g_ptr_array_index (f->at_plain, 0), ping));
  g_assert_true (g_bytes_equal (g_ptr_array_index (f->at_plugin, 0), pong));

  /* the plain agent goes away: consent freshness (RFC 7675) ends the
   * path, saying why (libnice declares consent lost after 30 s) */
  if (g_test_slow ())
    {
      g_clear_object (&f->agent);
      late = FALSE;
      deadline = g_timeout_add_seconds (60, deadline_cb, &late);
      while (!late && !f->path_closed)
        g_main_context_iteration (NULL, TRUE);
      g_assert_false (late);
      g_source_remove (deadline);
      g_assert_nonnull (f->closed);
      g_assert_nonnull (strstr (f->closed->message, "consent"));
      g_assert_nonnull (strstr (f->closed->message, "plain-peer"));
    }
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The ice plugin against a plain libnice agent, over loopback");

  g_test_add ("/natkit/ice/interop/plugin-controlling", Fixture,
              GINT_TO_POINTER (NATKIT_ROLE_INITIATOR),
              fixture_set_up, test_interop, fixture_tear_down);
  g_test_add ("/natkit/ice/interop/plugin-controlled", Fixture,
              GINT_TO_POINTER (NATKIT_ROLE_RESPONDER),
              fixture_set_up, test_interop, fixture_tear_down);
  return g_test_run ();
}
