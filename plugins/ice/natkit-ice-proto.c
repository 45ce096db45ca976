/* natkit-ice-proto.c: the "ice" signaling body
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * {"natkit": 1, "op": "ice", "session": "…", "ufrag": "…", "pwd": "…",
 *  "candidates": [{"foundation": "1", "priority": 2130706431,
 *                  "type": "host", "ip": "10.0.1.2", "port": 40000}],
 *  "end": true, "restart": true}
 *
 * Read strictly: one JSON object of at most 8 KiB, members of the stated
 * types; a candidate that is malformed or names an address nobody may
 * send to is dropped with the reason, the rest of the body still counts.
 */
#include <string.h>

#include "natkit-ice-proto.h"

const char *
natkit_ice_candidate_type_to_string (NatkitIceCandidateType type)
{
  switch (type)
    {
    case NATKIT_ICE_CANDIDATE_HOST:
      return "host";
    case NATKIT_ICE_CANDIDATE_SRFLX:
      return "srflx";
    case NATKIT_ICE_CANDIDATE_PRFLX:
      return "prflx";
    case NATKIT_ICE_CANDIDATE_RELAY:
      return "relay";
    default:
      return "unknown";
    }
}

static gboolean
candidate_type_from_string (const char             *text,
                            NatkitIceCandidateType *out)
{
  for (NatkitIceCandidateType t = NATKIT_ICE_CANDIDATE_HOST; t <= NATKIT_ICE_CANDIDATE_RELAY; t++)
    if (g_strcmp0 (text, natkit_ice_candidate_type_to_string (t)) == 0)
      {
        *out = t;
        return TRUE;
      }
  return FALSE;
}

void
natkit_ice_candidate_clear (NatkitIceCandidate *candidate)
{
  g_clear_object (&candidate->address);
}

/* Where nobody may send: port 0, the unspecified address, multicast,
 * broadcast, "this network" (0/8), the reserved 240/4, and IPv6
 * link-local addresses (a peer's scope means nothing here). Loopback is
 * the caller's decision: it depends on where the local agent is. */
gboolean
natkit_ice_address_is_sendable (GInetSocketAddress  *address,
                                const char         **why)
{
  GInetAddress *ip = g_inet_socket_address_get_address (address);
  const char *reason = NULL;

  if (g_inet_socket_address_get_port (address) == 0)
    reason = "port 0";
  else if (g_inet_address_get_is_any (ip))
    reason = "the unspecified address";
  else if (g_inet_address_get_is_multicast (ip))
    reason = "a multicast address";
  else if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV4)
    {
      const guint8 *b = g_inet_address_to_bytes (ip);

      if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255)
        reason = "the broadcast address";
      else if (b[0] == 0)
        reason = "an address of \"this network\" (0.0.0.0/8)";
      else if (b[0] >= 240)
        reason = "a reserved address (240.0.0.0/4)";
    }
  else if (g_inet_address_get_is_link_local (ip))
    reason = "an IPv6 link-local address";

  if (why)
    *why = reason;
  return reason == NULL;
}

static gboolean
is_json_space (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Exactly one JSON object, nothing but white space around it, nesting at
 * most 4 deep, and outside strings only what JSON has a use for (json-glib
 * also takes 'strings' and comments, and keeps a partial tree when bytes
 * follow the root). */
static gboolean
is_one_object (const char *text)
{
  int depth = 0;
  gboolean in_string = FALSE;
  const char *p = text;

  while (is_json_space (*p))
    p++;
  if (*p != '{')
    return FALSE;
  for (; *p; p++)
    {
      if (in_string)
        {
          if (*p == '\\' && p[1] != '\0')
            p++;
          else if (*p == '"')
            in_string = FALSE;
          continue;
        }
      if (*p == '"')
        in_string = TRUE;
      else if (*p == '{' || *p == '[')
        {
          if (++depth > 4)
            return FALSE;
        }
      else if (*p == '}' || *p == ']')
        {
          if (--depth == 0)
            {
              p++;
              break;
            }
        }
      else if (!is_json_space (*p) && !g_ascii_isalnum (*p) &&
               strchr (":,-+.", *p) == NULL)
        return FALSE;
    }
  if (depth != 0 || in_string)
    return FALSE;
  while (is_json_space (*p))
    p++;
  return *p == '\0';
}

static const char *
member_string (JsonObject *object,
               const char *name)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

static gboolean
member_int (JsonObject *object,
            const char *name,
            gint64     *out)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  *out = json_node_get_int (node);
  return TRUE;
}

/* RFC 8445 ice-char: ALPHA / DIGIT / "+" / "/" */
static gboolean
is_ice_chars (const char *text,
              gsize       min,
              gsize       max)
{
  gsize len;

  if (text == NULL)
    return FALSE;
  len = strlen (text);
  if (len < min || len > max)
    return FALSE;
  for (const char *p = text; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '+' && *p != '/')
      return FALSE;
  return TRUE;
}

void
natkit_ice_message_free (NatkitIceMessage *message)
{
  if (message == NULL)
    return;
  g_free (message->session);
  g_free (message->ufrag);
  g_free (message->pwd);
  g_clear_pointer (&message->candidates, g_array_unref);
  g_clear_pointer (&message->dropped, g_ptr_array_unref);
  g_free (message);
}

static void
clear_candidate (gpointer data)
{
  natkit_ice_candidate_clear (data);
}

/* One candidate object, or NULL with the reason it was dropped */
static char *
parse_candidate (JsonNode           *item,
                 NatkitIceCandidate *out)
{
  g_autoptr(GInetAddress) ip = NULL;
  g_autoptr(GSocketAddress) address = NULL;
  JsonObject *c;
  const char *type, *foundation, *ip_text, *why;
  gint64 port, priority;

  if (!JSON_NODE_HOLDS_OBJECT (item))
    return g_strdup ("a candidate that is not an object");
  c = json_node_get_object (item);
  type = member_string (c, "type");
  if (!candidate_type_from_string (type, &out->type))
    return g_strdup ("a candidate without a known type (host, srflx, prflx, relay)");
  foundation = member_string (c, "foundation");
  if (!is_ice_chars (foundation, 1, NATKIT_ICE_MAX_FOUNDATION))
    return g_strdup ("a candidate whose foundation is not 1 to 32 letters, digits, + or /");
  if (!member_int (c, "priority", &priority) || priority < 1 || priority > G_MAXUINT32)
    return g_strdup ("a candidate whose priority is not a number from 1 to 2^32-1");
  ip_text = member_string (c, "ip");
  if (ip_text == NULL || strlen (ip_text) > 45 ||
      (ip = g_inet_address_new_from_string (ip_text)) == NULL)
    return g_strdup ("a candidate whose ip is not an IPv4 or IPv6 address");
  if (!member_int (c, "port", &port) || port < 0 || port > 65535)
    return g_strdup_printf ("candidate %s: its port is not a number from 1 to 65535", ip_text);
  address = g_inet_socket_address_new (ip, (guint16) port);
  if (!natkit_ice_address_is_sendable (G_INET_SOCKET_ADDRESS (address), &why))
    return g_strdup_printf ("candidate %s:%" G_GINT64_FORMAT " (%s): %s, nobody may send there",
                            ip_text, port, type, why);
  out->address = G_INET_SOCKET_ADDRESS (g_steal_pointer (&address));
  out->priority = (guint32) priority;
  g_strlcpy (out->foundation, foundation, sizeof out->foundation);
  return NULL;
}

NatkitIceMessage *
natkit_ice_message_parse (const char  *text,
                          GError     **error)
{
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(NatkitIceMessage) message = NULL;
  JsonObject *body;
  JsonNode *list, *end, *restart;
  const char *session, *ufrag, *pwd;
  gint64 version;

  if (text == NULL || strlen (text) > NATKIT_ICE_MAX_MESSAGE || !is_one_object (text))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message is not one JSON object of at most 8 KiB");
      return NULL;
    }
  node = json_from_string (text, NULL);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message is not valid JSON");
      return NULL;
    }
  body = json_node_get_object (node);
  if (!member_int (body, "natkit", &version) || version != 1 ||
      g_strcmp0 (member_string (body, "op"), "ice") != 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "not a natkit ICE message");
      return NULL;
    }
  session = member_string (body, "session");
  if (session == NULL || *session == '\0' || strlen (session) > 64)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message has no session (1 to 64 characters)");
      return NULL;
    }
  ufrag = member_string (body, "ufrag");
  pwd = member_string (body, "pwd");
  /* RFC 8445 5.3: ufrag at least 4, pwd at least 22 ice-chars; 256 at most */
  if (!is_ice_chars (ufrag, 4, 256) || !is_ice_chars (pwd, 22, 256))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message's ufrag or pwd is missing or malformed "
                           "(RFC 8445: 4 and 22 to 256 letters, digits, + or /)");
      return NULL;
    }
  end = json_object_get_member (body, "end");
  if (end != NULL && (!JSON_NODE_HOLDS_VALUE (end) ||
                      json_node_get_value_type (end) != G_TYPE_BOOLEAN))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message's end is not true or false");
      return NULL;
    }
  restart = json_object_get_member (body, "restart");
  if (restart != NULL && (!JSON_NODE_HOLDS_VALUE (restart) ||
                          json_node_get_value_type (restart) != G_TYPE_BOOLEAN))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message's restart is not true or false");
      return NULL;
    }
  list = json_object_get_member (body, "candidates");
  if (list != NULL && !JSON_NODE_HOLDS_ARRAY (list))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the ICE message's candidates are not a list");
      return NULL;
    }

  message = g_new0 (NatkitIceMessage, 1);
  message->session = g_strdup (session);
  message->ufrag = g_strdup (ufrag);
  message->pwd = g_strdup (pwd);
  message->end = end != NULL && json_node_get_boolean (end);
  message->restart = restart != NULL && json_node_get_boolean (restart);
  message->candidates = g_array_new (FALSE, TRUE, sizeof (NatkitIceCandidate));
  g_array_set_clear_func (message->candidates, clear_candidate);
  message->dropped = g_ptr_array_new_with_free_func (g_free);
  if (list != NULL)
    {
      JsonArray *array = json_node_get_array (list);
      guint n = json_array_get_length (array);

      for (guint i = 0; i < n; i++)
        {
          NatkitIceCandidate candidate = { 0 };
          char *why;

          if (message->candidates->len >= NATKIT_ICE_MAX_CANDIDATES)
            {
              g_ptr_array_add (message->dropped,
                               g_strdup_printf ("%u candidates past the first %d of one message",
                                                n - i, NATKIT_ICE_MAX_CANDIDATES));
              break;
            }
          why = parse_candidate (json_array_get_element (array, i), &candidate);
          if (why != NULL)
            {
              natkit_ice_candidate_clear (&candidate);
              g_ptr_array_add (message->dropped, why);
              continue;
            }
          g_array_append_val (message->candidates, candidate);
        }
    }
  return g_steal_pointer (&message);
}

char *
natkit_ice_message_build (const char               *session,
                          const char               *ufrag,
                          const char               *pwd,
                          const NatkitIceCandidate *candidates,
                          guint                     n_candidates,
                          gboolean                  end,
                          gboolean                  restart)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "natkit");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "op");
  json_builder_add_string_value (b, "ice");
  json_builder_set_member_name (b, "session");
  json_builder_add_string_value (b, session);
  json_builder_set_member_name (b, "ufrag");
  json_builder_add_string_value (b, ufrag);
  json_builder_set_member_name (b, "pwd");
  json_builder_add_string_value (b, pwd);
  json_builder_set_member_name (b, "candidates");
  json_builder_begin_array (b);
  for (guint i = 0; i < n_candidates; i++)
    {
      const NatkitIceCandidate *c = &candidates[i];
      g_autofree char *ip =
        g_inet_address_to_string (g_inet_socket_address_get_address (c->address));

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "foundation");
      json_builder_add_string_value (b, c->foundation);
      json_builder_set_member_name (b, "priority");
      json_builder_add_int_value (b, c->priority);
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, natkit_ice_candidate_type_to_string (c->type));
      json_builder_set_member_name (b, "ip");
      json_builder_add_string_value (b, ip);
      json_builder_set_member_name (b, "port");
      json_builder_add_int_value (b, g_inet_socket_address_get_port (c->address));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  if (end)
    {
      json_builder_set_member_name (b, "end");
      json_builder_add_boolean_value (b, TRUE);
    }
  if (restart)
    {
      json_builder_set_member_name (b, "restart");
      json_builder_add_boolean_value (b, TRUE);
    }
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}
