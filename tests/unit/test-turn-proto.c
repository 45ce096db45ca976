/* test-turn-proto.c: the TURN plugin's URIs, messages, framing and offer
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Messages the plugin builds are checked with libstun's own parser and
 * MESSAGE-INTEGRITY check; messages libstun builds (as a server would) are
 * checked with the plugin's parser. The REST credentials and the long-term
 * key are compared with vectors computed outside natkit (Python's hmac and
 * hashlib).
 */
#include "config.h"

#include <string.h>
#include <sys/socket.h>

#include <natkit/natkit.h>
#include "natkit-turn-proto.h"

static void
test_uri_valid (void)
{
  static const struct
  {
    const char          *text;
    gboolean             secure;
    gboolean             given;
    NatkitTurnTransport  transport;
    const char          *host;
    guint16              port;
  } cases[] = {
    /* RFC 7065 section 3's forms */
    { "turn:example.org", FALSE, FALSE, NATKIT_TURN_TRANSPORT_UDP, "example.org", 3478 },
    { "turns:example.org", TRUE, FALSE, NATKIT_TURN_TRANSPORT_TLS, "example.org", 5349 },
    { "turn:example.org?transport=udp", FALSE, TRUE, NATKIT_TURN_TRANSPORT_UDP, "example.org", 3478 },
    { "turn:example.org?transport=tcp", FALSE, TRUE, NATKIT_TURN_TRANSPORT_TCP, "example.org", 3478 },
    { "turns:example.org?transport=tcp", TRUE, TRUE, NATKIT_TURN_TRANSPORT_TLS, "example.org", 5349 },
    { "turn:example.org:1234", FALSE, FALSE, NATKIT_TURN_TRANSPORT_UDP, "example.org", 1234 },
    { "turn:198.51.100.1:3478?transport=tcp", FALSE, TRUE, NATKIT_TURN_TRANSPORT_TCP, "198.51.100.1", 3478 },
    { "turn:[2001:db8::1]", FALSE, FALSE, NATKIT_TURN_TRANSPORT_UDP, "2001:db8::1", 3478 },
    { "turns:[2001:db8::1]:443", TRUE, FALSE, NATKIT_TURN_TRANSPORT_TLS, "2001:db8::1", 443 },
    { "TURN:Example.ORG", FALSE, FALSE, NATKIT_TURN_TRANSPORT_UDP, "Example.ORG", 3478 },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      NatkitTurnUri uri;
      g_autoptr(GError) error = NULL;

      g_test_message ("%s", cases[i].text);
      g_assert_true (natkit_turn_uri_parse (cases[i].text, &uri, &error));
      g_assert_no_error (error);
      g_assert_cmpint (uri.secure, ==, cases[i].secure);
      g_assert_cmpint (uri.transport_given, ==, cases[i].given);
      g_assert_cmpint (uri.transport, ==, cases[i].transport);
      g_assert_cmpstr (uri.host, ==, cases[i].host);
      g_assert_cmpuint (uri.port, ==, cases[i].port);
      g_assert_false (uri.has_pin);
      natkit_turn_uri_clear (&uri);
    }
}

static void
test_uri_pin (void)
{
  const char *text = "turns:198.51.100.1:5349#sha256:"
                     "d5027fa942e3dbe2d26da87864574f9633b48b7c7055206b6e6b0ff03061c386";
  const char *colons = "turns:198.51.100.1#sha256:D5:02:7F:A9:42:E3:DB:E2:D2:6D:A8:78:64:"
                       "57:4F:96:33:B4:8B:7C:70:55:20:6B:6E:6B:0F:F0:30:61:C3:86";
  NatkitTurnUri a, b;
  g_autofree char *described = NULL;

  g_assert_true (natkit_turn_uri_parse (text, &a, NULL));
  g_assert_true (natkit_turn_uri_parse (colons, &b, NULL));
  g_assert_true (a.has_pin && b.has_pin);
  g_assert_cmpmem (a.pin, 32, b.pin, 32);
  g_assert_cmpuint (a.pin[0], ==, 0xd5);
  g_assert_cmpuint (a.pin[31], ==, 0x86);
  described = natkit_turn_uri_describe (&a);
  g_assert_cmpstr (described, ==, "198.51.100.1:5349");
  natkit_turn_uri_clear (&a);
  natkit_turn_uri_clear (&b);
}

static void
test_uri_invalid (void)
{
  static const char *cases[] = {
    "", "stun:example.org", "http://example.org", "turn:", "turn://example.org",
    "turn:example.org:0", "turn:example.org:65536", "turn:example.org:", "turn:example.org:x",
    "turn:alice@example.org", "turn:example.org?transport=sctp",
    "turns:example.org?transport=udp", "turn:example.org?foo=bar",
    "turn:[2001:db8::1", "turn:[example.org]", "turn:exa mple.org",
    "turn:example.org#sha256:00",                    /* a pin needs turns: */
    "turns:example.org#sha256:0011",                 /* too short */
    "turns:example.org#md5:00112233445566778899aabbccddeeff",
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      NatkitTurnUri uri;
      g_autoptr(GError) error = NULL;

      g_test_message ("%s", cases[i]);
      g_assert_false (natkit_turn_uri_parse (cases[i], &uri, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
      g_assert_nonnull (strstr (error->message, "RFC 7065"));
      g_assert_null (uri.host);
    }
}

static void
test_rest_credentials (void)
{
  g_autofree char *username = NULL;
  g_autofree char *password = NULL;

  /* python3: base64(hmac.new(b'natkit-lab-secret', b'1767225600:alice',
   * hashlib.sha1).digest()) */
  natkit_turn_rest_credentials ("natkit-lab-secret", "alice", 1767225600, &username, &password);
  g_assert_cmpstr (username, ==, "1767225600:alice");
  g_assert_cmpstr (password, ==, "mRdHDN7O7K8PeO551NWfFvcGYYs=");
}

static void
test_long_term_key (void)
{
  NatkitTurnAuth auth = { 0 };
  /* python3: hashlib.md5(b'alice:natkit.test:s3cret').hexdigest() */
  static const guint8 expected[16] = {
    0x2a, 0xec, 0x6c, 0xb9, 0x21, 0xec, 0x52, 0x91,
    0x79, 0xcc, 0x68, 0x23, 0x56, 0x09, 0xd6, 0xbf
  };

  auth.username = g_strdup ("alice");
  natkit_turn_auth_set_realm (&auth, "natkit.test", "s3cret");
  g_assert_cmpmem (auth.key, 16, expected, 16);
  natkit_turn_auth_clear (&auth);
}

static GInetSocketAddress *
address (const char *ip,
         guint16     port)
{
  return G_INET_SOCKET_ADDRESS (g_inet_socket_address_new_from_string (ip, port));
}

static const uint16_t all_attributes[] = {
  STUN_ATTRIBUTE_USERNAME, STUN_ATTRIBUTE_MESSAGE_INTEGRITY, STUN_ATTRIBUTE_ERROR_CODE,
  STUN_ATTRIBUTE_CHANNEL_NUMBER, STUN_ATTRIBUTE_LIFETIME, STUN_ATTRIBUTE_XOR_PEER_ADDRESS,
  STUN_ATTRIBUTE_DATA, STUN_ATTRIBUTE_REALM, STUN_ATTRIBUTE_NONCE,
  STUN_ATTRIBUTE_XOR_RELAYED_ADDRESS, STUN_ATTRIBUTE_REQUESTED_TRANSPORT,
  STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS, STUN_ATTRIBUTE_FINGERPRINT, STUN_ATTRIBUTE_SOFTWARE, 0
};

static bool
validater (StunAgent    *agent,
           StunMessage  *message,
           uint8_t      *username,
           uint16_t      username_len,
           uint8_t     **password,
           size_t       *password_len,
           void         *user_data)
{
  NatkitTurnAuth *auth = user_data;

  if (username_len != strlen (auth->username) ||
      memcmp (username, auth->username, username_len) != 0)
    return FALSE;
  /* the long-term key itself: libstun HMACs with what we give it */
  *password = auth->key;
  *password_len = sizeof auth->key;
  return TRUE;
}

static void
test_request_libstun (void)
{
  NatkitTurnAuth auth = { 0 };
  g_autoptr(GInetSocketAddress) peer = address ("203.0.113.7", 50000);
  guint8 buffer[1500], txid[12];
  struct sockaddr_storage ss;
  socklen_t sslen = sizeof ss;
  StunAgent agent;
  StunMessage msg;
  uint32_t value;
  gsize size;
  char text[64];

  auth.username = g_strdup ("alice");
  auth.nonce = g_strdup ("f00dcafe");
  natkit_turn_auth_set_realm (&auth, "natkit.test", "s3cret");

  /* ChannelBind with credentials: libstun agrees on every attribute and
   * on MESSAGE-INTEGRITY */
  size = natkit_turn_build_request (NATKIT_TURN_METHOD_CHANNEL_BIND, &auth, -1, peer, 0x4001,
                                    buffer, sizeof buffer, txid);
  g_assert_cmpuint (size, >, 20);
  g_assert_cmpmem (txid, 12, buffer + 8, 12);
  stun_agent_init (&agent, all_attributes, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_SHORT_TERM_CREDENTIALS);
  g_assert_cmpint (stun_agent_validate (&agent, &msg, buffer, size, validater, &auth), ==,
                   STUN_VALIDATION_SUCCESS);
  g_assert_cmpint (stun_message_get_class (&msg), ==, STUN_REQUEST);
  g_assert_cmpint (stun_message_get_method (&msg), ==, STUN_CHANNELBIND);
  g_assert_cmpint (stun_message_find32 (&msg, STUN_ATTRIBUTE_CHANNEL_NUMBER, &value), ==,
                   STUN_MESSAGE_RETURN_SUCCESS);
  g_assert_cmphex (value, ==, 0x40010000);
  g_assert_cmpint (stun_message_find_xor_addr (&msg, STUN_ATTRIBUTE_XOR_PEER_ADDRESS, &ss,
                                               &sslen), ==, STUN_MESSAGE_RETURN_SUCCESS);
  {
    g_autoptr(GSocketAddress) got = g_socket_address_new_from_native (&ss, sslen);
    g_autofree char *described = natkit_turn_describe (G_INET_SOCKET_ADDRESS (got));

    g_assert_cmpstr (described, ==, "203.0.113.7:50000");
  }
  g_assert_cmpint (stun_message_find_string (&msg, STUN_ATTRIBUTE_REALM, text, sizeof text),
                   ==, STUN_MESSAGE_RETURN_SUCCESS);
  g_assert_cmpstr (text, ==, "natkit.test");
  g_assert_cmpint (stun_message_find_string (&msg, STUN_ATTRIBUTE_NONCE, text, sizeof text),
                   ==, STUN_MESSAGE_RETURN_SUCCESS);
  g_assert_cmpstr (text, ==, "f00dcafe");

  /* one bit changed: the integrity check fails */
  buffer[size - 1] ^= 1;
  g_assert_cmpint (stun_agent_validate (&agent, &msg, buffer, size, validater, &auth), ==,
                   STUN_VALIDATION_UNAUTHORIZED);

  /* Allocate before the first 401: no credentials, REQUESTED-TRANSPORT UDP */
  g_clear_pointer (&auth.realm, g_free);
  size = natkit_turn_build_request (NATKIT_TURN_METHOD_ALLOCATE, &auth, 600, NULL, 0,
                                    buffer, sizeof buffer, txid);
  stun_agent_init (&agent, all_attributes, STUN_COMPATIBILITY_RFC5389, 0);
  g_assert_cmpint (stun_agent_validate (&agent, &msg, buffer, size, NULL, NULL), ==,
                   STUN_VALIDATION_SUCCESS);
  g_assert_cmpint (stun_message_get_method (&msg), ==, STUN_ALLOCATE);
  g_assert_cmpint (stun_message_find32 (&msg, STUN_ATTRIBUTE_REQUESTED_TRANSPORT, &value), ==,
                   STUN_MESSAGE_RETURN_SUCCESS);
  g_assert_cmphex (value, ==, 17u << 24);
  g_assert_cmpint (stun_message_find32 (&msg, STUN_ATTRIBUTE_LIFETIME, &value), ==,
                   STUN_MESSAGE_RETURN_SUCCESS);
  g_assert_cmpuint (value, ==, 600);
  g_assert_false (stun_message_has_attribute (&msg, STUN_ATTRIBUTE_MESSAGE_INTEGRITY));

  /* too small a buffer */
  g_assert_cmpuint (natkit_turn_build_request (NATKIT_TURN_METHOD_REFRESH, &auth, 0, NULL, 0,
                                               buffer, 16, txid), ==, 0);
  natkit_turn_auth_clear (&auth);
}

/* A response as a server builds it, with libstun */
static gsize
server_response (const guint8  request[],
                 gsize          request_size,
                 int            error_code,
                 const guint8  *key,
                 guint8        *out,
                 gsize          out_size)
{
  StunAgent agent;
  StunMessage req, msg;
  struct sockaddr_storage ss;
  socklen_t sslen;
  g_autoptr(GInetSocketAddress) relayed = address ("198.51.100.1", 49999);
  g_autoptr(GInetSocketAddress) mapped = address ("203.0.113.9", 40000);

  stun_agent_init (&agent, all_attributes, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
  g_assert_cmpint (stun_agent_validate (&agent, &req, request, request_size, NULL, NULL), ==,
                   STUN_VALIDATION_SUCCESS);
  /* answers carry a FINGERPRINT after MESSAGE-INTEGRITY */
  stun_agent_init (&agent, all_attributes, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_SHORT_TERM_CREDENTIALS | STUN_AGENT_USAGE_USE_FINGERPRINT);
  if (error_code != 0)
    {
      g_assert_true (stun_agent_init_error (&agent, &msg, out, out_size, &req, error_code));
      g_assert_cmpint (stun_message_append_string (&msg, STUN_ATTRIBUTE_REALM, "natkit.test"),
                       ==, STUN_MESSAGE_RETURN_SUCCESS);
      g_assert_cmpint (stun_message_append_string (&msg, STUN_ATTRIBUTE_NONCE, "n0nce"),
                       ==, STUN_MESSAGE_RETURN_SUCCESS);
    }
  else
    {
      g_assert_true (stun_agent_init_response (&agent, &msg, out, out_size, &req));
      sslen = g_socket_address_get_native_size (G_SOCKET_ADDRESS (relayed));
      g_socket_address_to_native (G_SOCKET_ADDRESS (relayed), &ss, sizeof ss, NULL);
      g_assert_cmpint (stun_message_append_xor_addr (&msg, STUN_ATTRIBUTE_XOR_RELAYED_ADDRESS,
                                                     &ss, sslen), ==,
                       STUN_MESSAGE_RETURN_SUCCESS);
      g_socket_address_to_native (G_SOCKET_ADDRESS (mapped), &ss, sizeof ss, NULL);
      g_assert_cmpint (stun_message_append_xor_addr (&msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
                                                     &ss, sslen), ==,
                       STUN_MESSAGE_RETURN_SUCCESS);
      g_assert_cmpint (stun_message_append32 (&msg, STUN_ATTRIBUTE_LIFETIME, 300), ==,
                       STUN_MESSAGE_RETURN_SUCCESS);
    }
  return stun_agent_finish_message (&agent, &msg, key, key ? 16 : 0);
}

static void
test_response_parse (void)
{
  NatkitTurnAuth auth = { 0 };
  guint8 request[1500], answer[1500], txid[12];
  guint8 wrong[16] = { 0 };
  NatkitTurnMessage m;
  gsize size, n;
  g_autofree char *relayed = NULL;
  g_autofree char *mapped = NULL;

  auth.username = g_strdup ("alice");
  size = natkit_turn_build_request (NATKIT_TURN_METHOD_ALLOCATE, &auth, 600, NULL, 0,
                                    request, sizeof request, txid);

  /* the first 401: realm and nonce, no integrity */
  n = server_response (request, size, 401, NULL, answer, sizeof answer);
  g_assert_true (natkit_turn_message_parse (answer, n, NULL, &m, NULL));
  g_assert_cmpint (m.kind, ==, NATKIT_TURN_MESSAGE_ERROR);
  g_assert_cmpuint (m.error_code, ==, 401);
  g_assert_cmpuint (m.method, ==, NATKIT_TURN_METHOD_ALLOCATE);
  g_assert_cmpmem (m.txid, 12, txid, 12);
  g_assert_cmpstr (m.realm, ==, "natkit.test");
  g_assert_cmpstr (m.nonce, ==, "n0nce");
  g_assert_nonnull (m.reason);
  g_assert_false (m.has_integrity);
  natkit_turn_message_clear (&m);

  /* the success, signed with the long-term key (and a FINGERPRINT after
   * MESSAGE-INTEGRITY, as coturn --fingerprint sends) */
  auth.nonce = g_strdup ("n0nce");
  natkit_turn_auth_set_realm (&auth, "natkit.test", "s3cret");
  size = natkit_turn_build_request (NATKIT_TURN_METHOD_ALLOCATE, &auth, 600, NULL, 0,
                                    request, sizeof request, txid);
  n = server_response (request, size, 0, auth.key, answer, sizeof answer);
  g_assert_true (natkit_turn_message_parse (answer, n, auth.key, &m, NULL));
  g_assert_cmpint (m.kind, ==, NATKIT_TURN_MESSAGE_SUCCESS);
  g_assert_true (m.has_integrity);
  g_assert_true (m.integrity_ok);
  g_assert_cmpint (m.lifetime, ==, 300);
  relayed = natkit_turn_describe (m.relayed);
  mapped = natkit_turn_describe (m.mapped);
  g_assert_cmpstr (relayed, ==, "198.51.100.1:49999");
  g_assert_cmpstr (mapped, ==, "203.0.113.9:40000");
  natkit_turn_message_clear (&m);

  /* the same with another key: parsed, but not trusted */
  g_assert_true (natkit_turn_message_parse (answer, n, wrong, &m, NULL));
  g_assert_true (m.has_integrity);
  g_assert_false (m.integrity_ok);
  natkit_turn_message_clear (&m);

  /* truncated, or not STUN at all */
  g_assert_false (natkit_turn_message_parse (answer, n - 4, auth.key, &m, NULL));
  natkit_turn_message_clear (&m);
  answer[4] ^= 0xff;
  g_assert_false (natkit_turn_message_parse (answer, n, auth.key, &m, NULL));
  natkit_turn_message_clear (&m);
  natkit_turn_auth_clear (&auth);
}

static void
test_send_and_data (void)
{
  g_autoptr(GInetSocketAddress) peer = address ("198.51.100.2", 51000);
  static const guint8 payload[] = "relayed bytes";
  guint8 buffer[256];
  NatkitTurnMessage m;
  gsize n;

  n = natkit_turn_build_send (peer, payload, sizeof payload, buffer, sizeof buffer);
  g_assert_cmpuint (n, >, 20);
  /* a Data indication has the same attributes: turn the Send into one */
  buffer[1] = (buffer[1] & ~0x0f) | NATKIT_TURN_METHOD_DATA;
  g_assert_true (natkit_turn_message_parse (buffer, n, NULL, &m, NULL));
  g_assert_cmpint (m.kind, ==, NATKIT_TURN_MESSAGE_DATA);
  g_assert_cmpmem (m.data, m.data_length, payload, sizeof payload);
  g_assert_nonnull (m.peer);
  g_assert_cmpuint (g_inet_socket_address_get_port (m.peer), ==, 51000);
  natkit_turn_message_clear (&m);
  g_assert_cmpuint (natkit_turn_build_send (peer, payload, sizeof payload, buffer, 30), ==, 0);
}

static void
test_channel_data (void)
{
  guint8 frame[16] = { 0 };
  const guint8 *payload;
  gsize length;
  guint16 channel;
  guint padding;
  g_autoptr(GError) error = NULL;

  padding = natkit_turn_channel_header (frame, 0x4000, 5);
  g_assert_cmpuint (padding, ==, 3);
  g_assert_cmphex (frame[0], ==, 0x40);
  g_assert_cmphex (frame[1], ==, 0x00);
  g_assert_cmphex (frame[3], ==, 5);
  memcpy (frame + 4, "hello", 5);
  g_assert_true (natkit_turn_channel_parse (frame, 9, &channel, &payload, &length, NULL));
  g_assert_cmphex (channel, ==, 0x4000);
  g_assert_cmpmem (payload, length, "hello", 5);
  /* on a stream: padded to 4 */
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 3), ==, 0);
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 4), ==, 12);
  g_assert_cmpuint (natkit_turn_channel_header (frame, 0x4fff, 8), ==, 0);
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 4), ==, 12);

  /* announcing more than it carries */
  natkit_turn_channel_header (frame, 0x4000, 13);
  g_assert_false (natkit_turn_channel_parse (frame, 16, &channel, &payload, &length, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  /* channels outside 0x4000..0x4fff */
  natkit_turn_channel_header (frame, 0x5000, 1);
  g_assert_false (natkit_turn_channel_parse (frame, 5, &channel, &payload, &length, &error));
  g_clear_error (&error);
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 5), ==, -1);
  /* STUN on a stream: 20 + its length; a length not a multiple of 4 is garbage */
  memset (frame, 0, sizeof frame);
  frame[3] = 8;
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 4), ==, 28);
  frame[3] = 7;
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 4), ==, -1);
  frame[0] = 0x80;
  g_assert_cmpint (natkit_turn_stream_frame_size (frame, 4), ==, -1);
}

static void
test_offer (void)
{
  g_autoptr(GInetSocketAddress) relayed = address ("198.51.100.1", 50123);
  g_autofree char *text = natkit_turn_offer_build ("0123abcd", relayed, TRUE);
  g_autofree char *session = NULL;
  g_autoptr(GInetSocketAddress) got = NULL;
  g_autofree char *described = NULL;
  gboolean seen = FALSE;
  static const char *bad[] = {
    "", "null", "[]", "{}", "not json",
    "{\"natkit\":2,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"198.51.100.1\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"holepunch\",\"session\":\"s\",\"relay\":{\"ip\":\"198.51.100.1\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"relay\":{\"ip\":\"198.51.100.1\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\"}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"0.0.0.0\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"224.0.0.1\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"255.255.255.255\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"127.0.0.1\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"::1\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"198.51.100.1\",\"port\":0}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"198.51.100.1\",\"port\":70000}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":\"example.org\",\"port\":1}}",
    "{\"natkit\":1,\"op\":\"turn\",\"session\":\"s\",\"relay\":{\"ip\":1,\"port\":\"1\"}}",
  };

  g_assert_true (natkit_turn_offer_parse (text, &session, &got, &seen, NULL));
  g_assert_cmpstr (session, ==, "0123abcd");
  g_assert_true (seen);
  described = natkit_turn_describe (got);
  g_assert_cmpstr (described, ==, "198.51.100.1:50123");

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      GInetSocketAddress *none = NULL;

      g_test_message ("%s", bad[i]);
      g_assert_false (natkit_turn_offer_parse (bad[i], NULL, &none, NULL, &error));
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_null (none);
    }
}

int
main (int   argc,
      char *argv[])
{
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The TURN plugin's own parsers and builders, checked against libstun");

  g_test_add_func ("/natkit/turn/uri/valid", test_uri_valid);
  g_test_add_func ("/natkit/turn/uri/pin", test_uri_pin);
  g_test_add_func ("/natkit/turn/uri/invalid", test_uri_invalid);
  g_test_add_func ("/natkit/turn/rest-credentials", test_rest_credentials);
  g_test_add_func ("/natkit/turn/long-term-key", test_long_term_key);
  g_test_add_func ("/natkit/turn/request/libstun", test_request_libstun);
  g_test_add_func ("/natkit/turn/response/parse", test_response_parse);
  g_test_add_func ("/natkit/turn/send-and-data", test_send_and_data);
  g_test_add_func ("/natkit/turn/channel-data", test_channel_data);
  g_test_add_func ("/natkit/turn/offer", test_offer);
  return g_test_run ();
}
