/* natkit-turn-proto.c: URIs, messages, framing and the signaling body of
 * the TURN plugin (see natkit-turn-proto.h)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <string.h>
#include <sys/socket.h>

#include <json-glib/json-glib.h>

#include "natkit-turn-proto.h"

#define STUN_COOKIE 0x2112A442u

const char *
natkit_turn_transport_to_string (NatkitTurnTransport transport)
{
  switch (transport)
    {
    case NATKIT_TURN_TRANSPORT_UDP:
      return "udp";
    case NATKIT_TURN_TRANSPORT_TCP:
      return "tcp";
    case NATKIT_TURN_TRANSPORT_TLS:
      return "tls";
    default:
      return "?";
    }
}

/* ---- URIs (RFC 7065) ----------------------------------------------------- */

static gboolean
uri_error (GError    **error,
           const char *text,
           const char *why)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
               "“%s” is not a TURN server URI: %s (expected "
               "turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT], RFC 7065)",
               text, why);
  return FALSE;
}

static gboolean
parse_pin (const char *hex,
           guint8      out[32])
{
  guint n = 0;

  for (const char *p = hex; *p != '\0';)
    {
      int hi, lo;

      if (*p == ':')
        {
          p++;
          continue;
        }
      hi = g_ascii_xdigit_value (p[0]);
      lo = p[1] != '\0' ? g_ascii_xdigit_value (p[1]) : -1;
      if (hi < 0 || lo < 0 || n >= 32)
        return FALSE;
      out[n++] = (guint8) (hi << 4 | lo);
      p += 2;
    }
  return n == 32;
}

gboolean
natkit_turn_uri_parse (const char     *text,
                       NatkitTurnUri  *out,
                       GError        **error)
{
  const char *rest, *query, *fragment, *end;
  g_autofree char *hostport = NULL;
  g_autofree char *host = NULL;
  const char *port_text = NULL;
  gint64 port = 0;

  memset (out, 0, sizeof *out);
  if (text == NULL)
    return uri_error (error, "", "empty");
  if (strlen (text) > 1024)
    return uri_error (error, "…", "longer than 1024 characters");
  if (g_ascii_strncasecmp (text, "turns:", 6) == 0)
    {
      out->secure = TRUE;
      rest = text + 6;
    }
  else if (g_ascii_strncasecmp (text, "turn:", 5) == 0)
    rest = text + 5;
  else
    return uri_error (error, text, "the scheme is not turn: or turns:");
  if (g_str_has_prefix (rest, "//"))
    return uri_error (error, text, "TURN URIs have no “//” (no authority part)");

  fragment = strchr (rest, '#');
  query = strchr (rest, '?');
  if (query != NULL && fragment != NULL && query > fragment)
    query = NULL;
  end = query ? query : fragment ? fragment : rest + strlen (rest);
  hostport = g_strndup (rest, end - rest);
  if (*hostport == '\0')
    return uri_error (error, text, "no host");
  if (strchr (hostport, '@') != NULL)
    return uri_error (error, text, "credentials do not belong in the URI");

  if (hostport[0] == '[')
    {
      char *close = strchr (hostport, ']');

      if (close == NULL)
        return uri_error (error, text, "an IPv6 address without its “]”");
      host = g_strndup (hostport + 1, close - hostport - 1);
      if (close[1] == ':')
        port_text = close + 2;
      else if (close[1] != '\0')
        return uri_error (error, text, "junk after the IPv6 address");
      if (!g_hostname_is_ip_address (host) || strchr (host, ':') == NULL)
        return uri_error (error, text, "not an IPv6 address between [ and ]");
    }
  else
    {
      char *colon = strchr (hostport, ':');

      if (colon != NULL)
        {
          host = g_strndup (hostport, colon - hostport);
          port_text = colon + 1;
        }
      else
        host = g_strdup (hostport);
      if (*host == '\0')
        return uri_error (error, text, "no host");
      for (const char *p = host; *p; p++)
        if (!(g_ascii_isalnum (*p) || *p == '-' || *p == '.' || *p == '_'))
          return uri_error (error, text, "the host has a character hosts do not have");
    }

  if (port_text != NULL)
    {
      char *endp = NULL;

      if (*port_text == '\0' || !g_ascii_isdigit (*port_text))
        return uri_error (error, text, "the port is not a number");
      port = g_ascii_strtoll (port_text, &endp, 10);
      if (*endp != '\0' || port < 1 || port > 65535)
        return uri_error (error, text, "the port is not within 1..65535");
    }
  else
    port = out->secure ? 5349 : 3478;

  out->transport = out->secure ? NATKIT_TURN_TRANSPORT_TLS : NATKIT_TURN_TRANSPORT_UDP;
  if (query != NULL)
    {
      g_autofree char *q = g_strndup (query + 1, (fragment ? fragment : query + strlen (query)) -
                                                 (query + 1));

      if (g_ascii_strcasecmp (q, "transport=udp") == 0)
        {
          if (out->secure)
            return uri_error (error, text, "turns: over UDP would be DTLS, which natkit "
                                           "does not speak to TURN servers: use "
                                           "turn:…?transport=udp or turns:…?transport=tcp");
          out->transport = NATKIT_TURN_TRANSPORT_UDP;
        }
      else if (g_ascii_strcasecmp (q, "transport=tcp") == 0)
        out->transport = out->secure ? NATKIT_TURN_TRANSPORT_TLS : NATKIT_TURN_TRANSPORT_TCP;
      else
        return uri_error (error, text, "the only query is transport=udp or transport=tcp");
      out->transport_given = TRUE;
    }

  if (fragment != NULL)
    {
      if (!g_str_has_prefix (fragment, "#sha256:") || !parse_pin (fragment + 8, out->pin))
        return uri_error (error, text, "the fragment must be #sha256: and the 64 hex "
                                       "digits of the server certificate's SHA-256");
      if (!out->secure)
        return uri_error (error, text, "a certificate fingerprint needs turns:");
      out->has_pin = TRUE;
    }

  out->host = g_steal_pointer (&host);
  out->port = (guint16) port;
  return TRUE;
}

void
natkit_turn_uri_clear (NatkitTurnUri *uri)
{
  g_clear_pointer (&uri->host, g_free);
}

char *
natkit_turn_uri_describe (const NatkitTurnUri *uri)
{
  if (strchr (uri->host, ':') != NULL)
    return g_strdup_printf ("[%s]:%u", uri->host, uri->port);
  return g_strdup_printf ("%s:%u", uri->host, uri->port);
}

/* ---- credentials and requests -------------------------------------------- */

void
natkit_turn_auth_set_realm (NatkitTurnAuth *auth,
                            const char     *realm,
                            const char     *password)
{
  g_autoptr(GChecksum) md5 = g_checksum_new (G_CHECKSUM_MD5);
  gsize len = sizeof auth->key;

  if (auth->realm != realm)
    {
      g_free (auth->realm);
      auth->realm = g_strdup (realm);
    }
  g_checksum_update (md5, (const guchar *) auth->username, strlen (auth->username));
  g_checksum_update (md5, (const guchar *) ":", 1);
  g_checksum_update (md5, (const guchar *) auth->realm, strlen (auth->realm));
  g_checksum_update (md5, (const guchar *) ":", 1);
  g_checksum_update (md5, (const guchar *) password, strlen (password));
  g_checksum_get_digest (md5, auth->key, &len);
}

void
natkit_turn_auth_clear (NatkitTurnAuth *auth)
{
  g_clear_pointer (&auth->username, g_free);
  g_clear_pointer (&auth->realm, g_free);
  g_clear_pointer (&auth->nonce, g_free);
  memset (auth->key, 0, sizeof auth->key);
}

static const uint16_t known_attributes[] = {
  STUN_ATTRIBUTE_MAPPED_ADDRESS, STUN_ATTRIBUTE_USERNAME,
  STUN_ATTRIBUTE_MESSAGE_INTEGRITY, STUN_ATTRIBUTE_ERROR_CODE,
  STUN_ATTRIBUTE_UNKNOWN_ATTRIBUTES, STUN_ATTRIBUTE_CHANNEL_NUMBER,
  STUN_ATTRIBUTE_LIFETIME, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, STUN_ATTRIBUTE_DATA,
  STUN_ATTRIBUTE_REALM, STUN_ATTRIBUTE_NONCE, STUN_ATTRIBUTE_XOR_RELAYED_ADDRESS,
  STUN_ATTRIBUTE_REQUESTED_TRANSPORT, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, 0
};

static void
agent_init (StunAgent *agent)
{
  stun_agent_init (agent, known_attributes, STUN_COMPATIBILITY_RFC5389, 0);
}

static gboolean
to_native (GInetSocketAddress      *address,
           struct sockaddr_storage *ss,
           socklen_t               *len)
{
  gssize size = g_socket_address_get_native_size (G_SOCKET_ADDRESS (address));

  memset (ss, 0, sizeof *ss);
  if (size <= 0 || (gsize) size > sizeof *ss ||
      !g_socket_address_to_native (G_SOCKET_ADDRESS (address), ss, sizeof *ss, NULL))
    return FALSE;
  *len = (socklen_t) size;
  return TRUE;
}

static void
hmac_sha1 (const guint8 key[16],
           const guint8 *data,
           gsize         length,
           guint8        out[20])
{
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA1, key, 16);
  gsize len = 20;

  g_hmac_update (hmac, data, length);
  g_hmac_get_digest (hmac, out, &len);
}

gsize
natkit_turn_build_request (guint16               method,
                           const NatkitTurnAuth *auth,
                           gint64                lifetime,
                           GInetSocketAddress   *peer,
                           guint16               channel,
                           guint8               *buffer,
                           gsize                 size,
                           guint8                txid[12])
{
  StunAgent agent;
  StunMessage msg;

  agent_init (&agent);
  if (!stun_agent_init_request (&agent, &msg, buffer, size, (StunMethod) method))
    return 0;
  if (method == NATKIT_TURN_METHOD_ALLOCATE &&
      stun_message_append32 (&msg, STUN_ATTRIBUTE_REQUESTED_TRANSPORT, 17u << 24) !=
      STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  if (channel != 0 &&
      stun_message_append32 (&msg, STUN_ATTRIBUTE_CHANNEL_NUMBER, (guint32) channel << 16) !=
      STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  if (peer != NULL)
    {
      struct sockaddr_storage ss;
      socklen_t len;

      if (!to_native (peer, &ss, &len) ||
          stun_message_append_xor_addr (&msg, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, &ss, len) !=
          STUN_MESSAGE_RETURN_SUCCESS)
        return 0;
    }
  if (lifetime >= 0 &&
      stun_message_append32 (&msg, STUN_ATTRIBUTE_LIFETIME,
                             (guint32) MIN (lifetime, G_MAXUINT32)) !=
      STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  if (auth != NULL && auth->realm != NULL)
    {
      guint8 *mi;
      gsize length;

      if (stun_message_append_string (&msg, STUN_ATTRIBUTE_USERNAME, auth->username) !=
          STUN_MESSAGE_RETURN_SUCCESS ||
          stun_message_append_string (&msg, STUN_ATTRIBUTE_REALM, auth->realm) !=
          STUN_MESSAGE_RETURN_SUCCESS ||
          (auth->nonce != NULL &&
           stun_message_append_string (&msg, STUN_ATTRIBUTE_NONCE, auth->nonce) !=
           STUN_MESSAGE_RETURN_SUCCESS))
        return 0;
      /* the length field already counts MESSAGE-INTEGRITY: the HMAC covers
       * everything before it (RFC 8489 14.5) */
      mi = stun_message_append (&msg, STUN_ATTRIBUTE_MESSAGE_INTEGRITY, 20);
      if (mi == NULL)
        return 0;
      length = stun_message_length (&msg);
      hmac_sha1 (auth->key, buffer, length - 24, mi);
    }
  memcpy (txid, buffer + 8, 12);
  return stun_message_length (&msg);
}

gsize
natkit_turn_build_send (GInetSocketAddress *peer,
                        const guint8       *data,
                        gsize               length,
                        guint8             *buffer,
                        gsize               size)
{
  StunAgent agent;
  StunMessage msg;
  struct sockaddr_storage ss;
  socklen_t len;

  agent_init (&agent);
  if (!stun_agent_init_indication (&agent, &msg, buffer, size,
                                   (StunMethod) NATKIT_TURN_METHOD_SEND) ||
      !to_native (peer, &ss, &len) ||
      stun_message_append_xor_addr (&msg, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, &ss, len) !=
      STUN_MESSAGE_RETURN_SUCCESS ||
      stun_message_append_bytes (&msg, STUN_ATTRIBUTE_DATA, data, length) !=
      STUN_MESSAGE_RETURN_SUCCESS)
    return 0;
  return stun_message_length (&msg);
}

/* ---- what the server says ----------------------------------------------- */

static char *
utf8_attribute (const StunMessage *msg,
                StunAttribute      type,
                gsize              max)
{
  uint16_t len = 0;
  const char *value = stun_message_find (msg, type, &len);

  if (value == NULL || len > max || !g_utf8_validate (value, len, NULL) ||
      memchr (value, '\0', len) != NULL)
    return NULL;
  return g_strndup (value, len);
}

static GInetSocketAddress *
address_attribute (const StunMessage *msg,
                   StunAttribute      type,
                   gboolean           xored)
{
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  GSocketAddress *address;

  memset (&ss, 0, sizeof ss);
  if ((xored ? stun_message_find_xor_addr (msg, type, &ss, &len) :
               stun_message_find_addr (msg, type, &ss, &len)) != STUN_MESSAGE_RETURN_SUCCESS)
    return NULL;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
    return NULL;
  address = g_socket_address_new_from_native (&ss, len);
  if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
    {
      g_clear_object (&address);
      return NULL;
    }
  return G_INET_SOCKET_ADDRESS (address);
}

gboolean
natkit_turn_message_parse (const guint8       *data,
                           gsize               length,
                           const guint8       *key,
                           NatkitTurnMessage  *out,
                           GError            **error)
{
  StunAgent agent;
  StunMessage msg;
  StunClass klass;
  uint16_t mi_len = 0;
  const guint8 *mi;
  uint32_t value;
  guint32 cookie = 0;
  int n;

  memset (out, 0, sizeof *out);
  out->lifetime = -1;
  if (length >= 8)
    memcpy (&cookie, data + 4, 4);
  if (length < 20 || length > STUN_MAX_MESSAGE_SIZE ||
      (data[0] & 0xC0) != 0 || GUINT32_FROM_BE (cookie) != STUN_COOKIE)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "not a STUN message (RFC 8489: no magic cookie)");
      return FALSE;
    }
  n = stun_message_validate_buffer_length (data, length, TRUE);
  if (n <= 0 || (gsize) n != length)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "a malformed STUN message (%" G_GSIZE_FORMAT " bytes, "
                   "its attributes do not add up)", length);
      return FALSE;
    }

  agent_init (&agent);
  memset (&msg, 0, sizeof msg);
  msg.buffer = (uint8_t *) data;
  msg.buffer_len = length;
  msg.agent = &agent;

  klass = stun_message_get_class (&msg);
  out->method = (guint16) stun_message_get_method (&msg);
  memcpy (out->txid, data + 8, 12);
  switch (klass)
    {
    case STUN_RESPONSE:
      out->kind = NATKIT_TURN_MESSAGE_SUCCESS;
      break;
    case STUN_ERROR:
      {
        int code = 0;
        uint16_t alen = 0;
        const guint8 *raw = stun_message_find (&msg, STUN_ATTRIBUTE_ERROR_CODE, &alen);

        if (stun_message_find_error (&msg, &code) != STUN_MESSAGE_RETURN_SUCCESS ||
            code < 300 || code > 699 || raw == NULL || alen < 4)
          {
            g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                                 "a STUN error response without a valid ERROR-CODE");
            return FALSE;
          }
        out->kind = NATKIT_TURN_MESSAGE_ERROR;
        out->error_code = (guint) code;
        if (alen > 4 && alen - 4 <= NATKIT_TURN_MAX_REASON &&
            g_utf8_validate ((const char *) raw + 4, alen - 4, NULL) &&
            memchr (raw + 4, '\0', alen - 4) == NULL)
          out->reason = g_strndup ((const char *) raw + 4, alen - 4);
      }
      break;
    case STUN_INDICATION:
      out->kind = out->method == NATKIT_TURN_METHOD_DATA ? NATKIT_TURN_MESSAGE_DATA :
                  NATKIT_TURN_MESSAGE_OTHER;
      break;
    case STUN_REQUEST:
    default:
      out->kind = NATKIT_TURN_MESSAGE_OTHER;
      break;
    }

  out->realm = utf8_attribute (&msg, STUN_ATTRIBUTE_REALM, NATKIT_TURN_MAX_REALM);
  out->nonce = utf8_attribute (&msg, STUN_ATTRIBUTE_NONCE, NATKIT_TURN_MAX_NONCE);
  out->relayed = address_attribute (&msg, STUN_ATTRIBUTE_XOR_RELAYED_ADDRESS, TRUE);
  out->mapped = address_attribute (&msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, TRUE);
  out->peer = address_attribute (&msg, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, TRUE);
  out->alternate = address_attribute (&msg, STUN_ATTRIBUTE_ALTERNATE_SERVER, FALSE);
  if (stun_message_find32 (&msg, STUN_ATTRIBUTE_LIFETIME, &value) == STUN_MESSAGE_RETURN_SUCCESS)
    out->lifetime = value;
  if (out->kind == NATKIT_TURN_MESSAGE_DATA)
    {
      uint16_t dlen = 0;

      out->data = stun_message_find (&msg, STUN_ATTRIBUTE_DATA, &dlen);
      out->data_length = out->data != NULL ? dlen : 0;
    }

  mi = stun_message_find (&msg, STUN_ATTRIBUTE_MESSAGE_INTEGRITY, &mi_len);
  if (mi != NULL && mi_len == 20 && mi - data >= 24)
    {
      out->has_integrity = TRUE;
      if (key != NULL)
        {
          gsize offset = (gsize) (mi - data) - 4;   /* the attribute's header */
          g_autofree guint8 *copy = g_memdup2 (data, offset);
          guint8 digest[20];
          guint16 fake = (guint16) (offset + 24 - 20);

          copy[2] = fake >> 8;
          copy[3] = fake & 0xff;
          hmac_sha1 (key, copy, offset, digest);
          out->integrity_ok = memcmp (digest, mi, 20) == 0;
        }
    }
  return TRUE;
}

void
natkit_turn_message_clear (NatkitTurnMessage *message)
{
  g_clear_pointer (&message->reason, g_free);
  g_clear_pointer (&message->realm, g_free);
  g_clear_pointer (&message->nonce, g_free);
  g_clear_object (&message->relayed);
  g_clear_object (&message->mapped);
  g_clear_object (&message->alternate);
  g_clear_object (&message->peer);
  message->data = NULL;
  message->data_length = 0;
}

/* ---- ChannelData and stream framing -------------------------------------- */

guint
natkit_turn_channel_header (guint8  header[NATKIT_TURN_CHANNEL_HEADER],
                            guint16 channel,
                            gsize   length)
{
  header[0] = channel >> 8;
  header[1] = channel & 0xff;
  header[2] = (length >> 8) & 0xff;
  header[3] = length & 0xff;
  return (4 - (length & 3)) & 3;
}

gboolean
natkit_turn_channel_parse (const guint8  *data,
                           gsize          length,
                           guint16       *channel,
                           const guint8 **payload,
                           gsize         *payload_length,
                           GError       **error)
{
  guint16 number, len;

  if (length < NATKIT_TURN_CHANNEL_HEADER)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "a ChannelData message of %" G_GSIZE_FORMAT " bytes (the header has 4)",
                   length);
      return FALSE;
    }
  number = (guint16) (data[0] << 8 | data[1]);
  len = (guint16) (data[2] << 8 | data[3]);
  if (number < NATKIT_TURN_CHANNEL_MIN || number > NATKIT_TURN_CHANNEL_MAX)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "ChannelData on channel 0x%04x (channels are 0x4000..0x4fff)", number);
      return FALSE;
    }
  if ((gsize) len > length - NATKIT_TURN_CHANNEL_HEADER)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "ChannelData announces %u bytes but carries %" G_GSIZE_FORMAT,
                   len, length - NATKIT_TURN_CHANNEL_HEADER);
      return FALSE;
    }
  *channel = number;
  *payload = data + NATKIT_TURN_CHANNEL_HEADER;
  *payload_length = len;
  return TRUE;
}

gssize
natkit_turn_stream_frame_size (const guint8 *data,
                               gsize         available)
{
  guint16 len;

  if (available < 4)
    return 0;
  len = (guint16) (data[2] << 8 | data[3]);
  if ((data[0] & 0xC0) == 0)
    return len % 4 == 0 ? 20 + (gssize) len : -1;
  if ((data[0] & 0xC0) == 0x40)
    {
      guint16 number = (guint16) (data[0] << 8 | data[1]);

      if (number < NATKIT_TURN_CHANNEL_MIN || number > NATKIT_TURN_CHANNEL_MAX)
        return -1;
      return NATKIT_TURN_CHANNEL_HEADER + (((gssize) len + 3) & ~(gssize) 3);
    }
  return -1;
}

gboolean
natkit_turn_address_is_sendable (GInetSocketAddress *address)
{
  GInetAddress *ip;

  if (address == NULL || g_inet_socket_address_get_port (address) == 0)
    return FALSE;
  ip = g_inet_socket_address_get_address (address);
  if (g_inet_address_get_is_any (ip) || g_inet_address_get_is_loopback (ip) ||
      g_inet_address_get_is_multicast (ip) || g_inet_address_get_is_link_local (ip))
    return FALSE;
  if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV4)
    {
      const guint8 *b = g_inet_address_to_bytes (ip);

      if (b[0] == 0 || (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) ||
          b[0] >= 240)
        return FALSE;
    }
  return TRUE;
}

char *
natkit_turn_describe (GInetSocketAddress *address)
{
  g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (address));

  if (strchr (ip, ':') != NULL)
    return g_strdup_printf ("[%s]:%u", ip, g_inet_socket_address_get_port (address));
  return g_strdup_printf ("%s:%u", ip, g_inet_socket_address_get_port (address));
}

/* ---- the signaling body -------------------------------------------------- */

char *
natkit_turn_offer_build (const char         *session_id,
                         GInetSocketAddress *relayed,
                         gboolean            seen)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (relayed));

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "natkit");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "op");
  json_builder_add_string_value (b, "turn");
  json_builder_set_member_name (b, "session");
  json_builder_add_string_value (b, session_id);
  json_builder_set_member_name (b, "relay");
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "ip");
  json_builder_add_string_value (b, ip);
  json_builder_set_member_name (b, "port");
  json_builder_add_int_value (b, g_inet_socket_address_get_port (relayed));
  json_builder_end_object (b);
  json_builder_set_member_name (b, "seen");
  json_builder_add_boolean_value (b, seen);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

static JsonNode *
member_of (JsonObject *object,
           const char *name,
           GType       type)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) || json_node_get_value_type (node) != type)
    return NULL;
  return node;
}

static gboolean
offer_error (GError    **error,
             const char *why)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "a malformed TURN offer: %s", why);
  return FALSE;
}

gboolean
natkit_turn_offer_parse (const char          *text,
                         char               **out_session_id,
                         GInetSocketAddress **out_relayed,
                         gboolean            *out_seen,
                         GError             **error)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GInetAddress) ip = NULL;
  JsonObject *body, *relay;
  JsonNode *root, *node;
  const char *session, *ip_text;
  gint64 port;
  GInetSocketAddress *relayed;

  if (text == NULL || strlen (text) > 4096)
    return offer_error (error, "missing or longer than 4 KiB");
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, -1, NULL))
    return offer_error (error, "not JSON");
  root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return offer_error (error, "not a JSON object");
  body = json_node_get_object (root);
  node = member_of (body, "natkit", G_TYPE_INT64);
  if (node == NULL || json_node_get_int (node) != 1)
    return offer_error (error, "not natkit version 1");
  node = member_of (body, "op", G_TYPE_STRING);
  if (node == NULL || g_strcmp0 (json_node_get_string (node), "turn") != 0)
    return offer_error (error, "not a \"turn\" body");
  node = member_of (body, "session", G_TYPE_STRING);
  session = node ? json_node_get_string (node) : NULL;
  if (session == NULL || *session == '\0' || strlen (session) > 64)
    return offer_error (error, "no session ID (or one longer than 64)");
  node = json_object_get_member (body, "relay");
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    return offer_error (error, "no relayed address");
  relay = json_node_get_object (node);
  node = member_of (relay, "ip", G_TYPE_STRING);
  ip_text = node ? json_node_get_string (node) : NULL;
  node = member_of (relay, "port", G_TYPE_INT64);
  port = node ? json_node_get_int (node) : 0;
  if (ip_text == NULL || strlen (ip_text) > 45 || port < 1 || port > 65535)
    return offer_error (error, "the relayed address needs an IP and a port in 1..65535");
  ip = g_inet_address_new_from_string (ip_text);
  if (ip == NULL)
    return offer_error (error, "the relayed address is not an IP address");
  relayed = G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (ip, (guint16) port));
  if (!natkit_turn_address_is_sendable (relayed))
    {
      g_object_unref (relayed);
      return offer_error (error, "the relayed address is not a unicast address we may "
                                 "send to");
    }
  node = member_of (body, "seen", G_TYPE_BOOLEAN);

  if (out_seen)
    *out_seen = node != NULL && json_node_get_boolean (node);
  if (out_session_id)
    *out_session_id = g_strdup (session);
  if (out_relayed)
    *out_relayed = relayed;
  else
    g_object_unref (relayed);
  return TRUE;
}
