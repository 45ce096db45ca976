/* test-holepunch-proto.c: hole punching's packets and signaling offer
 * (plugins/holepunch/natkit-holepunch-proto.c)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <string.h>
#include <gio/gio.h>

#include "natkit-holepunch-proto.h"

static const guint8 initiator_token[NATKIT_PUNCH_TOKEN_SIZE] = {
  0xa0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xaf
};
static const guint8 responder_token[NATKIT_PUNCH_TOKEN_SIZE] = {
  0xb0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xbf
};
static const guint8 nonce_a[NATKIT_PUNCH_NONCE_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8 };
static const guint8 nonce_b[NATKIT_PUNCH_NONCE_SIZE] = { 9, 10, 11, 12, 13, 14, 15, 16 };

static void
derive (NatkitPunchKey *key,
        const char     *session_id)
{
  natkit_punch_key_derive (key, session_id, initiator_token, responder_token);
}

static void
make_punch (NatkitPunch     *punch,
            NatkitPunchType  type,
            guint8           sender_role)
{
  memset (punch, 0, sizeof *punch);
  punch->type = type;
  punch->sender_role = sender_role;
  memcpy (punch->nonce, nonce_a, sizeof nonce_a);
  if (type != NATKIT_PUNCH_PUNCH)
    memcpy (punch->echo, nonce_b, sizeof nonce_b);
}

/* The MAC as docs/protocol.md 7.2 describes it, written out here rather
 * than taken from the code under test: over bytes 0..19 and the role. */
static void
sign (const NatkitPunchKey *key,
      guint8                packet[NATKIT_PUNCH_SIZE],
      guint8                role)
{
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, key->key, sizeof key->key);
  guint8 digest[32];
  gsize len = sizeof digest;

  g_hmac_update (hmac, packet, 20);
  g_hmac_update (hmac, &role, 1);
  g_hmac_get_digest (hmac, digest, &len);
  memcpy (packet + 20, digest, NATKIT_PUNCH_MAC_SIZE);
}

static void
expect_refused (const NatkitPunchKey *key,
                const guint8         *data,
                gsize                 len,
                gint                  code,
                const char           *fragment)
{
  NatkitPunch out;
  g_autoptr(GError) error = NULL;

  g_assert_false (natkit_punch_parse (key, data, len, &out, &error));
  g_assert_error (error, G_IO_ERROR, code);
  if (fragment != NULL && strstr (error->message, fragment) == NULL)
    g_error ("expected \"%s\" in \"%s\"", fragment, error->message);
}

/* ---- punch packets ------------------------------------------------------ */

/* Computed independently (Python's hmac and hashlib) from the layout in
 * natkit-holepunch-proto.c: the key and the MAC may not change unnoticed,
 * peers of two versions must agree on them. */
static void
test_known_answer (void)
{
  static const guint8 expected_key[32] = {
    0x4d, 0xc8, 0x2d, 0xf6, 0x06, 0x25, 0x54, 0xaa, 0xfb, 0x38, 0xe9, 0x8c,
    0xa3, 0xdf, 0xdb, 0x52, 0x81, 0x0f, 0x50, 0x36, 0x2b, 0x1a, 0x18, 0xe9,
    0x53, 0xae, 0x35, 0x19, 0x36, 0x1d, 0x5b, 0xb3,
  };
  static const guint8 expected_ack[NATKIT_PUNCH_SIZE] = {
    0x4e, 0x48, 0x01, 0x02, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x92, 0x99, 0xa3, 0x14,
    0xa6, 0xfb, 0xed, 0x77, 0x19, 0x90, 0x96, 0x94, 0x07, 0x0e, 0xb3, 0xd1,
  };
  NatkitPunchKey key;
  NatkitPunch punch, out;
  guint8 packet[NATKIT_PUNCH_SIZE];
  g_autoptr(GError) error = NULL;

  derive (&key, "kat-session");
  g_assert_cmpmem (key.key, sizeof key.key, expected_key, sizeof expected_key);

  make_punch (&punch, NATKIT_PUNCH_ACK, 1);
  natkit_punch_build (&key, &punch, packet);
  g_assert_cmpmem (packet, sizeof packet, expected_ack, sizeof expected_ack);

  g_assert_true (natkit_punch_parse (&key, expected_ack, sizeof expected_ack, &out, &error));
  g_assert_no_error (error);
  g_assert_cmpint (out.type, ==, NATKIT_PUNCH_ACK);
  g_assert_cmpuint (out.sender_role, ==, 1);
}

static void
test_round_trip (void)
{
  static const NatkitPunchType types[] = {
    NATKIT_PUNCH_PUNCH, NATKIT_PUNCH_ACK, NATKIT_PUNCH_CONFIRM,
  };
  NatkitPunchKey key;

  derive (&key, "session-a");
  for (guint t = 0; t < G_N_ELEMENTS (types); t++)
    {
      guint8 by_role[2][NATKIT_PUNCH_SIZE];

      for (guint8 role = 0; role <= 1; role++)
        {
          NatkitPunch punch, out;
          guint8 *packet = by_role[role];
          guint8 check[NATKIT_PUNCH_SIZE];
          g_autoptr(GError) error = NULL;

          make_punch (&punch, types[t], role);
          natkit_punch_build (&key, &punch, packet);

          /* the layout */
          g_assert_cmpuint (packet[0], ==, 'N');
          g_assert_cmpuint (packet[1], ==, 'H');
          g_assert_cmpuint (packet[2], ==, 1);
          g_assert_cmpuint (packet[3], ==, types[t]);
          g_assert_cmpmem (packet + 4, 8, punch.nonce, 8);
          g_assert_cmpmem (packet + 12, 8, punch.echo, 8);
          memcpy (check, packet, sizeof check);
          sign (&key, check, role);
          g_assert_cmpmem (packet, NATKIT_PUNCH_SIZE, check, sizeof check);
          g_assert_true (natkit_punch_looks_like (packet, NATKIT_PUNCH_SIZE));

          memset (&out, 0xee, sizeof out);
          g_assert_true (natkit_punch_parse (&key, packet, NATKIT_PUNCH_SIZE, &out, &error));
          g_assert_no_error (error);
          g_assert_cmpint (out.type, ==, types[t]);
          g_assert_cmpuint (out.sender_role, ==, role);
          g_assert_cmpmem (out.nonce, sizeof out.nonce, punch.nonce, sizeof punch.nonce);
          g_assert_cmpmem (out.echo, sizeof out.echo, punch.echo, sizeof punch.echo);
        }

      /* the role is in the MAC: a packet reflected back at its sender
       * does not pass for the peer's */
      g_assert_cmpmem (by_role[0], 20, by_role[1], 20);
      g_assert_true (memcmp (by_role[0] + 20, by_role[1] + 20, NATKIT_PUNCH_MAC_SIZE) != 0);
    }
}

static void
test_wrong_key (void)
{
  NatkitPunchKey key, other;
  NatkitPunch punch;
  guint8 packet[NATKIT_PUNCH_SIZE];
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];

  derive (&key, "session-a");
  make_punch (&punch, NATKIT_PUNCH_PUNCH, 0);
  natkit_punch_build (&key, &punch, packet);

  /* another session */
  derive (&other, "session-b");
  expect_refused (&other, packet, sizeof packet, G_IO_ERROR_PERMISSION_DENIED,
                  "does not authenticate");
  derive (&other, "session-");
  expect_refused (&other, packet, sizeof packet, G_IO_ERROR_PERMISSION_DENIED, NULL);

  /* one bit of either token */
  memcpy (token, initiator_token, sizeof token);
  token[7] ^= 0x10;
  natkit_punch_key_derive (&other, "session-a", token, responder_token);
  expect_refused (&other, packet, sizeof packet, G_IO_ERROR_PERMISSION_DENIED, NULL);

  memcpy (token, responder_token, sizeof token);
  token[15] ^= 0x01;
  natkit_punch_key_derive (&other, "session-a", initiator_token, token);
  expect_refused (&other, packet, sizeof packet, G_IO_ERROR_PERMISSION_DENIED, NULL);

  /* the tokens the wrong way round */
  natkit_punch_key_derive (&other, "session-a", responder_token, initiator_token);
  expect_refused (&other, packet, sizeof packet, G_IO_ERROR_PERMISSION_DENIED, NULL);

  /* and the right key still takes it */
  {
    NatkitPunch out;

    g_assert_true (natkit_punch_parse (&key, packet, sizeof packet, &out, NULL));
  }
}

static void
test_bit_flips (void)
{
  NatkitPunchKey key;
  NatkitPunch punch;
  guint8 packet[NATKIT_PUNCH_SIZE];

  derive (&key, "session-a");
  for (guint8 role = 0; role <= 1; role++)
    {
      make_punch (&punch, NATKIT_PUNCH_ACK, role);
      natkit_punch_build (&key, &punch, packet);

      for (guint i = 0; i < NATKIT_PUNCH_SIZE; i++)
        for (guint bit = 0; bit < 8; bit++)
          {
            guint8 copy[NATKIT_PUNCH_SIZE];
            NatkitPunch out;
            g_autoptr(GError) error = NULL;

            memcpy (copy, packet, sizeof copy);
            copy[i] ^= 1u << bit;

            g_assert_false (natkit_punch_parse (&key, copy, sizeof copy, &out, &error));
            g_assert_nonnull (error);
            if (i < 2)
              {
                /* not the magic: not ours (DTLS and STUN share the port) */
                g_assert_false (natkit_punch_looks_like (copy, sizeof copy));
                g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
              }
            else
              {
                g_assert_true (natkit_punch_looks_like (copy, sizeof copy));
                if (i == 2)
                  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
                else if (i == 3 && (copy[3] < 1 || copy[3] > 3))
                  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
                else
                  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
              }
          }
    }
}

static void
test_lengths (void)
{
  NatkitPunchKey key;
  NatkitPunch punch;
  guint8 packet[NATKIT_PUNCH_SIZE + 1];

  derive (&key, "session-a");
  make_punch (&punch, NATKIT_PUNCH_PUNCH, 1);
  natkit_punch_build (&key, &punch, packet);
  packet[NATKIT_PUNCH_SIZE] = 0;

  g_assert_false (natkit_punch_looks_like (packet, 0));
  g_assert_false (natkit_punch_looks_like (packet, 1));
  g_assert_true (natkit_punch_looks_like (packet, 2));

  for (gsize len = 0; len < NATKIT_PUNCH_SIZE; len++)
    expect_refused (&key, packet, len, G_IO_ERROR_INVALID_DATA,
                    len < 2 ? "not a punch packet" : "expected 36");
  expect_refused (&key, packet, NATKIT_PUNCH_SIZE + 1, G_IO_ERROR_INVALID_DATA,
                  "a punch packet of 37 bytes");
  {
    NatkitPunch out;

    g_assert_true (natkit_punch_parse (&key, packet, NATKIT_PUNCH_SIZE, &out, NULL));
  }
}

static void
test_version_and_type (void)
{
  NatkitPunchKey key;
  NatkitPunch punch;
  guint8 packet[NATKIT_PUNCH_SIZE];
  static const guint8 versions[] = { 0, 2, 255 };
  static const guint8 types[] = { 0, 4, 255 };

  derive (&key, "session-a");
  make_punch (&punch, NATKIT_PUNCH_PUNCH, 0);

  /* with a valid MAC over the changed header: refused for what it says,
   * not for failing to authenticate */
  for (guint i = 0; i < G_N_ELEMENTS (versions); i++)
    {
      g_autofree char *fragment = g_strdup_printf ("version %u", versions[i]);

      natkit_punch_build (&key, &punch, packet);
      packet[2] = versions[i];
      sign (&key, packet, 0);
      expect_refused (&key, packet, sizeof packet, G_IO_ERROR_NOT_SUPPORTED, fragment);
    }
  for (guint i = 0; i < G_N_ELEMENTS (types); i++)
    {
      g_autofree char *fragment = g_strdup_printf ("unknown type %u", types[i]);

      natkit_punch_build (&key, &punch, packet);
      packet[3] = types[i];
      sign (&key, packet, 0);
      expect_refused (&key, packet, sizeof packet, G_IO_ERROR_INVALID_DATA, fragment);
    }

  /* a role other than the two is nobody's */
  natkit_punch_build (&key, &punch, packet);
  sign (&key, packet, 2);
  expect_refused (&key, packet, sizeof packet, G_IO_ERROR_PERMISSION_DENIED, NULL);
}

static void
test_key_derive (void)
{
  NatkitPunchKey a, again, swapped, other_session;

  derive (&a, "session-a");
  derive (&again, "session-a");
  g_assert_cmpmem (a.key, sizeof a.key, again.key, sizeof again.key);

  natkit_punch_key_derive (&swapped, "session-a", responder_token, initiator_token);
  g_assert_true (memcmp (a.key, swapped.key, sizeof a.key) != 0);

  derive (&other_session, "session-b");
  g_assert_true (memcmp (a.key, other_session.key, sizeof a.key) != 0);
}

static void
nonce_for (const guint8 *secret,
           const char   *ip,
           guint16       port,
           guint8        out[NATKIT_PUNCH_NONCE_SIZE])
{
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new_from_string (ip, port);

  g_assert_nonnull (address);
  natkit_punch_nonce_for (secret, G_INET_SOCKET_ADDRESS (address), out);
}

static void
test_nonce_for (void)
{
  static const guint8 secret[NATKIT_PUNCH_SECRET_SIZE] = {
    0x5e, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xc5
  };
  static const guint8 other_secret[NATKIT_PUNCH_SECRET_SIZE] = {
    0x5e, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xc6
  };
  static const struct { const char *ip; guint16 port; } to[] = {
    { "192.0.2.1", 40000 },
    { "192.0.2.1", 40001 },    /* another port of the same IP */
    { "192.0.2.2", 40000 },    /* the same port of another IP */
    { "2001:db8::1", 40000 },
    { "2001:db8::2", 40000 },
  };
  guint8 nonces[G_N_ELEMENTS (to)][NATKIT_PUNCH_NONCE_SIZE];
  guint8 again[NATKIT_PUNCH_NONCE_SIZE];

  for (guint i = 0; i < G_N_ELEMENTS (to); i++)
    {
      nonce_for (secret, to[i].ip, to[i].port, nonces[i]);
      /* stable: the same address (another object) gives the same nonce */
      nonce_for (secret, to[i].ip, to[i].port, again);
      g_assert_cmpmem (nonces[i], sizeof nonces[i], again, sizeof again);
      /* and it depends on the secret */
      nonce_for (other_secret, to[i].ip, to[i].port, again);
      g_assert_true (memcmp (nonces[i], again, sizeof again) != 0);
    }
  for (guint i = 0; i < G_N_ELEMENTS (to); i++)
    for (guint j = i + 1; j < G_N_ELEMENTS (to); j++)
      if (memcmp (nonces[i], nonces[j], NATKIT_PUNCH_NONCE_SIZE) == 0)
        g_error ("%s:%u and %s:%u have the same nonce",
                 to[i].ip, to[i].port, to[j].ip, to[j].port);

  /* GLib turns an IPv4-mapped IPv6 address (what a dual-stack socket
   * receives from) into the IPv4 one: the same destination, the same
   * nonce */
  {
    g_autoptr(GSocketAddress) mapped = g_inet_socket_address_new_from_string ("::ffff:192.0.2.1", 40000);

    g_assert_cmpint (g_socket_address_get_family (mapped), ==, G_SOCKET_FAMILY_IPV4);
    natkit_punch_nonce_for (secret, G_INET_SOCKET_ADDRESS (mapped), again);
    g_assert_cmpmem (nonces[0], sizeof nonces[0], again, sizeof again);
  }
}

/* ---- the signaling offer ----------------------------------------------- */

/* base64 of the bytes 0..15 (and of 15, 17 and 18 such bytes) */
#define TOKEN64     "AAECAwQFBgcICQoLDA0ODw=="
#define TOKEN64_15  "AAECAwQFBgcICQoLDA0O"
#define TOKEN64_17  "AAECAwQFBgcICQoLDA0ODxA="
#define TOKEN64_18  "AAECAwQFBgcICQoLDA0ODxAR"

#define NATKIT      "\"natkit\":1"
#define OP          "\"op\":\"holepunch\""
#define SESSION     "\"session\":\"s-1\""
#define TOKEN       "\"token\":\"" TOKEN64 "\""
#define CANDIDATES  "\"candidates\":[{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":9}]"
#define BODY        NATKIT "," OP "," SESSION "," TOKEN "," CANDIDATES
#define OFFER       "{" BODY "}"

static const guint8 token_0_15[NATKIT_PUNCH_TOKEN_SIZE] = {
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
};

static GArray *
expect_offer (const char  *text,
              const char  *session,
              const char  *nat)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *out_session = NULL;
  g_autofree char *out_nat = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];
  GArray *candidates = NULL;

  if (!natkit_punch_offer_parse (text, &out_session, token, &candidates, &out_nat, NULL, &error))
    g_error ("refused %s: %s", text, error->message);
  g_assert_no_error (error);
  g_assert_cmpstr (out_session, ==, session);
  g_assert_cmpmem (token, sizeof token, token_0_15, sizeof token_0_15);
  g_assert_cmpstr (out_nat, ==, nat);
  g_assert_nonnull (candidates);
  return candidates;
}

static void
expect_candidate (GArray                   *candidates,
                  guint                     index,
                  NatkitPunchCandidateType  type,
                  const char               *ip,
                  guint16                   port)
{
  NatkitPunchCandidate *c;
  g_autofree char *text = NULL;

  g_assert_cmpuint (index, <, candidates->len);
  c = &g_array_index (candidates, NatkitPunchCandidate, index);
  g_assert_cmpint (c->type, ==, type);
  g_assert_true (G_IS_INET_SOCKET_ADDRESS (c->address));
  text = g_inet_address_to_string (g_inet_socket_address_get_address (c->address));
  g_assert_cmpstr (text, ==, ip);
  g_assert_cmpuint (g_inet_socket_address_get_port (c->address), ==, port);
}

static void
expect_bad_offer (const char *text,
                  const char *fragment)
{
  g_autoptr(GError) error = NULL;
  char *session = NULL;
  char *nat = NULL;
  GArray *candidates = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];

  if (natkit_punch_offer_parse (text, &session, token, &candidates, &nat, NULL, &error))
    g_error ("accepted %s", text);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  if (strstr (error->message, fragment) == NULL)
    g_error ("expected \"%s\" in \"%s\" for %s", fragment, error->message, text);
  /* nothing handed out on failure */
  g_assert_null (session);
  g_assert_null (nat);
  g_assert_null (candidates);
}

static void
test_offer_round_trip (void)
{
  NatkitPunchCandidate in[4];
  static const struct { NatkitPunchCandidateType type; const char *ip; guint16 port; } want[] = {
    { NATKIT_PUNCH_CANDIDATE_HOST, "192.168.1.20", 40000 },
    { NATKIT_PUNCH_CANDIDATE_SRFLX, "203.0.113.7", 51234 },
    { NATKIT_PUNCH_CANDIDATE_MAPPED, "198.51.100.9", 65535 },
    { NATKIT_PUNCH_CANDIDATE_HOST, "2001:db8::20", 1 },
  };
  g_autofree char *text = NULL;
  g_autofree char *text_no_nat = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autoptr(GArray) none = NULL;
  const char *session = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

  g_assert_cmpuint (strlen (session), ==, 64);
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    {
      in[i].type = want[i].type;
      in[i].address = G_INET_SOCKET_ADDRESS (
        g_inet_socket_address_new_from_string (want[i].ip, want[i].port));
    }

  text = natkit_punch_offer_build (session, token_0_15, in, G_N_ELEMENTS (in), "port-restricted",
                                   NULL);
  g_assert_nonnull (strstr (text, "\"op\":\"holepunch\""));
  g_assert_nonnull (strstr (text, "\"token\":\"" TOKEN64 "\""));
  candidates = expect_offer (text, session, "port-restricted");
  g_assert_cmpuint (candidates->len, ==, G_N_ELEMENTS (want));
  for (guint i = 0; i < G_N_ELEMENTS (want); i++)
    expect_candidate (candidates, i, want[i].type, want[i].ip, want[i].port);

  /* no NAT type, no candidates */
  text_no_nat = natkit_punch_offer_build ("s", token_0_15, NULL, 0, NULL, NULL);
  g_assert_null (strstr (text_no_nat, "\"nat\""));
  none = expect_offer (text_no_nat, "s", NULL);
  g_assert_cmpuint (none->len, ==, 0);

  /* the outputs are optional (but the token) */
  {
    guint8 token[NATKIT_PUNCH_TOKEN_SIZE];

    g_assert_true (natkit_punch_offer_parse (text, NULL, token, NULL, NULL, NULL, NULL));
    g_assert_cmpmem (token, sizeof token, token_0_15, sizeof token_0_15);
  }

  for (guint i = 0; i < G_N_ELEMENTS (in); i++)
    natkit_punch_candidate_clear (&in[i]);
  g_assert_null (in[0].address);

  g_assert_cmpstr (natkit_punch_candidate_type_to_string (NATKIT_PUNCH_CANDIDATE_HOST), ==, "host");
  g_assert_cmpstr (natkit_punch_candidate_type_to_string (NATKIT_PUNCH_CANDIDATE_SRFLX), ==, "srflx");
  g_assert_cmpstr (natkit_punch_candidate_type_to_string (NATKIT_PUNCH_CANDIDATE_MAPPED), ==, "mapped");
  g_assert_cmpstr (natkit_punch_candidate_type_to_string (7), ==, "unknown");
}

/* what the strict reading still accepts: the limits themselves */
static void
test_offer_limits (void)
{
  g_autoptr(GString) big = g_string_new ("{" BODY ",\"pad\":\"");
  g_autofree char *session64 = g_strnfill (64, 's');
  g_autofree char *session65 = g_strnfill (65, 's');
  g_autofree char *text = NULL;
  g_autoptr(GArray) c1 = NULL;
  g_autoptr(GArray) c2 = NULL;
  g_autoptr(GArray) c3 = NULL;
  g_autoptr(GArray) c4 = NULL;
  g_autoptr(GArray) c5 = NULL;
  g_autoptr(GArray) c6 = NULL;

  c1 = expect_offer (" \t\r\n" OFFER "\n ", "s-1", NULL);
  expect_candidate (c1, 0, NATKIT_PUNCH_CANDIDATE_HOST, "10.0.0.1", 9);

  /* 8 KiB exactly, and a byte more */
  while (big->len < 8192 - 2)
    g_string_append_c (big, 'x');
  g_string_append (big, "\"}");
  g_assert_cmpuint (big->len, ==, 8192);
  c2 = expect_offer (big->str, "s-1", NULL);
  g_string_insert_c (big, big->len - 2, 'x');
  expect_bad_offer (big->str, "at most 8 KiB");
  g_string_assign (big, OFFER);
  while (big->len <= 8192)
    g_string_append_c (big, ' ');
  expect_bad_offer (big->str, "at most 8 KiB");

  /* a session of 64 bytes, not 65 */
  text = g_strdup_printf ("{" NATKIT "," OP ",\"session\":\"%s\"," TOKEN "," CANDIDATES "}", session64);
  c3 = expect_offer (text, session64, NULL);
  g_free (text);
  text = g_strdup_printf ("{" NATKIT "," OP ",\"session\":\"%s\"," TOKEN "," CANDIDATES "}", session65);
  expect_bad_offer (text, "lacks its session or token");
  g_clear_pointer (&text, g_free);

  /* nested 8 deep (the offer itself is the first), not 9 */
  c4 = expect_offer ("{" BODY ",\"deep\":[[[[[[[1]]]]]]]}", "s-1", NULL);
  expect_bad_offer ("{" BODY ",\"deep\":[[[[[[[[1]]]]]]]]}", "not one JSON object");
  expect_bad_offer ("{" NATKIT "," OP "," SESSION "," TOKEN ","
                    "\"candidates\":[{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":9,"
                    "\"x\":[[[[[[{}]]]]]]}]}", "not one JSON object");

  /* a NAT type of at most 32 bytes, and a string, or none */
  c5 = expect_offer ("{" BODY ",\"nat\":\"0123456789abcdef0123456789abcdef\"}", "s-1",
                     "0123456789abcdef0123456789abcdef");
  g_clear_pointer (&c5, g_array_unref);
  c5 = expect_offer ("{" BODY ",\"nat\":\"0123456789abcdef0123456789abcdefX\"}", "s-1", NULL);
  g_clear_pointer (&c5, g_array_unref);
  c5 = expect_offer ("{" BODY ",\"nat\":5}", "s-1", NULL);
  g_clear_pointer (&c5, g_array_unref);
  c5 = expect_offer ("{" BODY ",\"nat\":{\"type\":\"full-cone\"}}", "s-1", NULL);

  /* strings with what the object check must read past */
  c6 = expect_offer ("{" BODY ",\"x\":\"}{ ]\\\" \\\\\",\"y\":\"[[[[[[[[[\"}", "s-1", NULL);
}

static void
test_offer_malformed (void)
{
  static const struct { const char *text; const char *fragment; } cases[] = {
    /* not one JSON object */
    { "", "not one JSON object" },
    { "   ", "not one JSON object" },
    { "not json", "not one JSON object" },
    { "{", "not one JSON object" },
    { "{" BODY, "not one JSON object" },
    { "{" BODY "}}", "not one JSON object" },
    { "[" OFFER "]", "not one JSON object" },
    { "[]", "not one JSON object" },
    { "\"" TOKEN64 "\"", "not one JSON object" },
    { "42", "not one JSON object" },
    { "null", "not one JSON object" },
    { OFFER " x", "not one JSON object" },
    { OFFER "x", "not one JSON object" },
    { OFFER ",", "not one JSON object" },
    { OFFER "]", "not one JSON object" },
    { OFFER "{}", "not one JSON object" },
    { OFFER " " OFFER, "not one JSON object" },
    { "{}{}", "not one JSON object" },
    { OFFER "[1]", "not one JSON object" },
    { OFFER "\f", "not one JSON object" },
    /* what json-glib reads and JSON does not have: single quotes and
     * comments, where the parser's end of the object is not ours */
    { "{" BODY ",\"k\":'\"'}{\"z\":'\"'}", "not one JSON object" },
    { "{'natkit':1,'op':'holepunch','session':'s-1','token':'" TOKEN64 "','candidates':[]}",
      "not one JSON object" },
    { "{" BODY " /* \" */ }", "not one JSON object" },
    { "{" BODY " # \"\n}", "not one JSON object" },
    /* one object, but not JSON */
    { "{\"a\":}", "not valid JSON" },
    { "{\"a\":1,}", "not valid JSON" },
    { "{\"a\" 1}", "not valid JSON" },
    { "{" BODY "]", "not valid JSON" },
    /* not an offer */
    { "{}", "not a natkit hole punching offer" },
    { "{" OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":2," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":0," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":\"1\"," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":1.5," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":true," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":null," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":{}," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{\"natkit\":[1]," OP "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{" NATKIT "," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{" NATKIT ",\"op\":\"connect\"," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{" NATKIT ",\"op\":\"HOLEPUNCH\"," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{" NATKIT ",\"op\":1," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{" NATKIT ",\"op\":[\"holepunch\"]," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    { "{" NATKIT ",\"op\":{\"holepunch\":1}," SESSION "," TOKEN "," CANDIDATES "}", "not a natkit hole punching offer" },
    /* the session */
    { "{" NATKIT "," OP "," TOKEN "," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP ",\"session\":\"\"," TOKEN "," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP ",\"session\":7," TOKEN "," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP ",\"session\":null," TOKEN "," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP ",\"session\":{}," TOKEN "," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP ",\"session\":[\"s-1\"]," TOKEN "," CANDIDATES "}", "lacks its session or token" },
    /* the token */
    { "{" NATKIT "," OP "," SESSION "," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":\"\"," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":\"" TOKEN64_15 "\"," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":\"" TOKEN64 "A\"," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":16," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":[\"" TOKEN64 "\"]," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":{}," CANDIDATES "}", "lacks its session or token" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":\"" TOKEN64_17 "\"," CANDIDATES "}", "token is not 16 bytes" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":\"" TOKEN64_18 "\"," CANDIDATES "}", "token is not 16 bytes" },
    { "{" NATKIT "," OP "," SESSION ",\"token\":\"########################\"," CANDIDATES "}",
      "token is not 16 bytes" },
    /* the candidates */
    { "{" NATKIT "," OP "," SESSION "," TOKEN "}", "no list of candidates" },
    { "{" NATKIT "," OP "," SESSION "," TOKEN ",\"candidates\":null}", "no list of candidates" },
    { "{" NATKIT "," OP "," SESSION "," TOKEN ",\"candidates\":{}}", "no list of candidates" },
    { "{" NATKIT "," OP "," SESSION "," TOKEN ",\"candidates\":\"10.0.0.1:9\"}", "no list of candidates" },
  };

  g_assert_false (natkit_punch_offer_parse (NULL, NULL, (guint8[16]) { 0 }, NULL, NULL, NULL, NULL));
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    expect_bad_offer (cases[i].text, cases[i].fragment);
}

static void
test_offer_max_candidates (void)
{
  g_autoptr(GString) text = g_string_new ("{" NATKIT "," OP "," SESSION "," TOKEN ",\"candidates\":[");
  NatkitPunchCandidate in[20];
  g_autofree char *built = NULL;
  g_autoptr(GArray) parsed = NULL;
  g_autoptr(GArray) rebuilt = NULL;

  for (guint i = 0; i < 20; i++)
    g_string_append_printf (text, "%s{\"type\":\"srflx\",\"ip\":\"198.51.100.%u\",\"port\":%u}",
                            i ? "," : "", i + 1, 1000 + i);
  g_string_append (text, "]}");
  parsed = expect_offer (text->str, "s-1", NULL);
  g_assert_cmpuint (parsed->len, ==, NATKIT_PUNCH_MAX_CANDIDATES);
  for (guint i = 0; i < NATKIT_PUNCH_MAX_CANDIDATES; i++)
    {
      g_autofree char *ip = g_strdup_printf ("198.51.100.%u", i + 1);

      expect_candidate (parsed, i, NATKIT_PUNCH_CANDIDATE_SRFLX, ip, 1000 + i);
    }

  /* and the building side sends no more than that */
  for (guint i = 0; i < 20; i++)
    {
      g_autofree char *ip = g_strdup_printf ("192.0.2.%u", i + 1);

      in[i].type = NATKIT_PUNCH_CANDIDATE_HOST;
      in[i].address = G_INET_SOCKET_ADDRESS (g_inet_socket_address_new_from_string (ip, 2000 + i));
    }
  built = natkit_punch_offer_build ("s-1", token_0_15, in, 20, NULL, NULL);
  g_assert_null (strstr (built, "192.0.2.17\""));
  rebuilt = expect_offer (built, "s-1", NULL);
  g_assert_cmpuint (rebuilt->len, ==, NATKIT_PUNCH_MAX_CANDIDATES);
  expect_candidate (rebuilt, 15, NATKIT_PUNCH_CANDIDATE_HOST, "192.0.2.16", 2015);
  for (guint i = 0; i < 20; i++)
    natkit_punch_candidate_clear (&in[i]);
}

static void
test_offer_unsendable (void)
{
  static const char text[] =
    "{" NATKIT "," OP "," SESSION "," TOKEN ",\"candidates\":["
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":0},"
    "{\"type\":\"host\",\"ip\":\"0.0.0.0\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.2\",\"port\":9},"              /* kept */
    "{\"type\":\"srflx\",\"ip\":\"224.0.0.1\",\"port\":9},"
    "{\"type\":\"srflx\",\"ip\":\"239.255.255.250\",\"port\":1900},"
    "{\"type\":\"srflx\",\"ip\":\"255.255.255.255\",\"port\":9},"
    "{\"type\":\"srflx\",\"ip\":\"223.255.255.254\",\"port\":9},"       /* kept */
    "{\"type\":\"mapped\",\"ip\":\"0.1.2.3\",\"port\":9},"
    "{\"type\":\"mapped\",\"ip\":\"240.0.0.1\",\"port\":9},"
    "{\"type\":\"mapped\",\"ip\":\"1.0.0.1\",\"port\":9},"              /* kept */
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":70000},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":65536},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":-1},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":\"9\"},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":9.5},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":true},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":[9]},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":{}},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1\"},"
    "{\"type\":\"host\",\"ip\":167772161,\"port\":9},"
    "{\"type\":\"host\",\"ip\":true,\"port\":9},"
    "{\"type\":\"host\",\"ip\":null,\"port\":9},"
    "{\"type\":\"host\",\"ip\":[\"10.0.0.1\"],\"port\":9},"
    "{\"type\":\"host\",\"ip\":{\"v4\":\"10.0.0.1\"},\"port\":9},"
    "{\"type\":\"host\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"localhost\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"10.0.0.1:9\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"::\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"ff02::1\",\"port\":9},"
    "{\"type\":\"host\",\"ip\":\"2001:db8::7\",\"port\":65535},"      /* kept */
    "{\"type\":\"relay\",\"ip\":\"10.0.0.1\",\"port\":9},"
    "{\"type\":\"HOST\",\"ip\":\"10.0.0.1\",\"port\":9},"
    "{\"type\":0,\"ip\":\"10.0.0.1\",\"port\":9},"
    "{\"type\":[\"host\"],\"ip\":\"10.0.0.1\",\"port\":9},"
    "{\"ip\":\"10.0.0.1\",\"port\":9},"
    "\"10.0.0.1:9\",9,null,[],[{\"type\":\"host\",\"ip\":\"10.0.0.1\",\"port\":9}],"
    "{\"type\":\"srflx\",\"ip\":\"10.0.0.3\",\"port\":1}"              /* kept */
    "]}";
  g_autoptr(GArray) candidates = expect_offer (text, "s-1", NULL);

  g_assert_cmpuint (candidates->len, ==, 5);
  expect_candidate (candidates, 0, NATKIT_PUNCH_CANDIDATE_HOST, "10.0.0.2", 9);
  expect_candidate (candidates, 1, NATKIT_PUNCH_CANDIDATE_SRFLX, "223.255.255.254", 9);
  expect_candidate (candidates, 2, NATKIT_PUNCH_CANDIDATE_MAPPED, "1.0.0.1", 9);
  expect_candidate (candidates, 3, NATKIT_PUNCH_CANDIDATE_HOST, "2001:db8::7", 65535);
  expect_candidate (candidates, 4, NATKIT_PUNCH_CANDIDATE_SRFLX, "10.0.0.3", 1);
}

static gboolean
sendable (const char *ip,
          guint16     port)
{
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new_from_string (ip, port);

  g_assert_nonnull (address);
  return natkit_punch_address_is_sendable (G_INET_SOCKET_ADDRESS (address));
}

static void
test_address_is_sendable (void)
{
  g_assert_true (sendable ("10.0.0.1", 9));
  g_assert_true (sendable ("1.0.0.0", 1));
  g_assert_true (sendable ("223.255.255.255", 65535));
  g_assert_true (sendable ("127.0.0.1", 9));
  g_assert_true (sendable ("2001:db8::1", 9));
  g_assert_true (sendable ("::1", 9));

  g_assert_false (sendable ("10.0.0.1", 0));
  g_assert_false (sendable ("0.0.0.0", 9));
  g_assert_false (sendable ("0.255.255.255", 9));
  g_assert_false (sendable ("224.0.0.1", 9));
  g_assert_false (sendable ("239.255.255.255", 9));
  g_assert_false (sendable ("240.0.0.1", 9));
  g_assert_false (sendable ("255.255.255.254", 9));
  g_assert_false (sendable ("255.255.255.255", 9));
  g_assert_false (sendable ("::", 9));
  g_assert_false (sendable ("ff02::1", 9));
  g_assert_false (sendable ("2001:db8::1", 0));
}

/* ---- mapping behavior, port prediction, birthday roles ------------------ */

static void
expect_mapping (const guint16          *ports,
                guint                   n,
                NatkitPunchMappingKind  kind,
                gint                    step,
                guint16                 last)
{
  NatkitPunchMapping m = { 99, 99, 99 };

  natkit_punch_mapping_classify (ports, n, &m);
  g_assert_cmpstr (natkit_punch_mapping_to_string (m.kind), ==,
                   natkit_punch_mapping_to_string (kind));
  g_assert_cmpint (m.step, ==, step);
  g_assert_cmpuint (m.last_port, ==, last);
}

static void
test_mapping_classify (void)
{
  /* synthetic sequences of the ports one socket got towards successive
   * destinations, as NATs of each kind hand them out */
  static const guint16 same[] = { 40000, 40000, 40000 };
  static const guint16 next[] = { 50001, 50002 };
  static const guint16 next_other_hosts[] = { 50001, 50002, 50005, 50006 };  /* others took 3, 4 */
  static const guint16 by_two[] = { 1030, 1032, 1034 };
  static const guint16 downwards[] = { 60010, 60006 };
  static const guint16 edge[] = { 1000, 1016 };
  static const guint16 too_far[] = { 1000, 1017 };
  static const guint16 random_ports[] = { 64309, 4131 };
  static const guint16 back_and_forth[] = { 2000, 2001, 2000 };
  static const guint16 some_same[] = { 3000, 3000, 3001 };   /* neither kind */

  expect_mapping (same, 0, NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_mapping (same, 1, NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_mapping (same, 2, NATKIT_PUNCH_MAPPING_INDEPENDENT, 0, 0);
  expect_mapping (same, 3, NATKIT_PUNCH_MAPPING_INDEPENDENT, 0, 0);
  expect_mapping (next, 2, NATKIT_PUNCH_MAPPING_SEQUENTIAL, 1, 50002);
  expect_mapping (next_other_hosts, 4, NATKIT_PUNCH_MAPPING_SEQUENTIAL, 1, 50006);
  expect_mapping (by_two, 3, NATKIT_PUNCH_MAPPING_SEQUENTIAL, 2, 1034);
  expect_mapping (downwards, 2, NATKIT_PUNCH_MAPPING_SEQUENTIAL, -4, 60006);
  expect_mapping (edge, 2, NATKIT_PUNCH_MAPPING_SEQUENTIAL, 16, 1016);
  expect_mapping (too_far, 2, NATKIT_PUNCH_MAPPING_RANDOM, 0, 0);
  expect_mapping (random_ports, 2, NATKIT_PUNCH_MAPPING_RANDOM, 0, 0);
  expect_mapping (back_and_forth, 3, NATKIT_PUNCH_MAPPING_RANDOM, 0, 0);
  expect_mapping (some_same, 3, NATKIT_PUNCH_MAPPING_RANDOM, 0, 0);
}

static void
test_predict_ports (void)
{
  NatkitPunchMapping up = { NATKIT_PUNCH_MAPPING_SEQUENTIAL, 2, 50010 };
  NatkitPunchMapping down = { NATKIT_PUNCH_MAPPING_SEQUENTIAL, -1, 3 };
  NatkitPunchMapping top = { NATKIT_PUNCH_MAPPING_SEQUENTIAL, 16, 65500 };
  NatkitPunchMapping eim = { NATKIT_PUNCH_MAPPING_INDEPENDENT, 0, 0 };
  NatkitPunchMapping bad = { NATKIT_PUNCH_MAPPING_SEQUENTIAL, 17, 1000 };
  guint16 out[NATKIT_PUNCH_MAX_PREDICTED + 4];
  guint n;

  n = natkit_punch_predict_ports (&up, 4, out);
  g_assert_cmpuint (n, ==, 4);
  g_assert_cmpuint (out[0], ==, 50012);
  g_assert_cmpuint (out[1], ==, 50014);
  g_assert_cmpuint (out[3], ==, 50018);

  /* off either end of the port space: left out, never wrapped or 0 */
  n = natkit_punch_predict_ports (&down, 8, out);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpuint (out[0], ==, 2);
  g_assert_cmpuint (out[1], ==, 1);
  n = natkit_punch_predict_ports (&top, 8, out);
  g_assert_cmpuint (n, ==, 2);
  g_assert_cmpuint (out[0], ==, 65516);
  g_assert_cmpuint (out[1], ==, 65532);

  /* at most NATKIT_PUNCH_MAX_PREDICTED */
  n = natkit_punch_predict_ports (&up, 1000, out);
  g_assert_cmpuint (n, ==, NATKIT_PUNCH_MAX_PREDICTED);
  g_assert_cmpuint (out[n - 1], ==, 50010 + 2 * NATKIT_PUNCH_MAX_PREDICTED);

  /* nothing to predict */
  g_assert_cmpuint (natkit_punch_predict_ports (&eim, 8, out), ==, 0);
  g_assert_cmpuint (natkit_punch_predict_ports (&bad, 8, out), ==, 0);

  /* a sequence that goes on as classified is predicted: the NAT's next
   * mapping (the first punch towards the peer) is the first prediction */
  {
    static const guint16 seen[] = { 40100, 40103, 40106 };
    NatkitPunchMapping m;

    natkit_punch_mapping_classify (seen, G_N_ELEMENTS (seen), &m);
    n = natkit_punch_predict_ports (&m, 3, out);
    g_assert_cmpuint (n, ==, 3);
    g_assert_cmpuint (out[0], ==, 40109);
    g_assert_cmpuint (out[2], ==, 40115);
  }
}

static void
test_birthday_role (void)
{
  static const NatkitPunchMappingKind kinds[] = {
    NATKIT_PUNCH_MAPPING_UNKNOWN, NATKIT_PUNCH_MAPPING_INDEPENDENT,
    NATKIT_PUNCH_MAPPING_SEQUENTIAL, NATKIT_PUNCH_MAPPING_RANDOM,
  };

  for (guint i = 0; i < G_N_ELEMENTS (kinds); i++)
    for (guint j = 0; j < G_N_ELEMENTS (kinds); j++)
      {
        NatkitPunchMapping ours = { kinds[i], 0, 0 };
        NatkitPunchMapping theirs = { kinds[j], 0, 0 };
        NatkitPunchBirthdayRole mine = natkit_punch_birthday_role (&ours, &theirs);
        NatkitPunchBirthdayRole peer = natkit_punch_birthday_role (&theirs, &ours);
        NatkitPunchBirthdayRole want = NATKIT_PUNCH_BIRTHDAY_NONE;

        if (kinds[i] == NATKIT_PUNCH_MAPPING_RANDOM && kinds[j] == NATKIT_PUNCH_MAPPING_RANDOM)
          want = NATKIT_PUNCH_BIRTHDAY_HOPELESS;
        else if (kinds[i] == NATKIT_PUNCH_MAPPING_RANDOM &&
                 kinds[j] == NATKIT_PUNCH_MAPPING_INDEPENDENT)
          want = NATKIT_PUNCH_BIRTHDAY_HARD;
        else if (kinds[i] == NATKIT_PUNCH_MAPPING_INDEPENDENT &&
                 kinds[j] == NATKIT_PUNCH_MAPPING_RANDOM)
          want = NATKIT_PUNCH_BIRTHDAY_EASY;
        g_assert_cmpint (mine, ==, want);
        /* both sides agree from the same two offers */
        if (mine == NATKIT_PUNCH_BIRTHDAY_HARD)
          g_assert_cmpint (peer, ==, NATKIT_PUNCH_BIRTHDAY_EASY);
        else if (mine == NATKIT_PUNCH_BIRTHDAY_EASY)
          g_assert_cmpint (peer, ==, NATKIT_PUNCH_BIRTHDAY_HARD);
        else
          g_assert_cmpint (peer, ==, mine);
      }
}

static void
expect_offer_mapping (const char             *text,
                      NatkitPunchMappingKind  kind,
                      gint                    step,
                      guint16                 last)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autofree char *session = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];
  NatkitPunchMapping m = { 99, 99, 99 };

  if (!natkit_punch_offer_parse (text, &session, token, &candidates, NULL, &m, &error))
    g_error ("refused %s: %s", text, error->message);
  g_assert_cmpstr (natkit_punch_mapping_to_string (m.kind), ==,
                   natkit_punch_mapping_to_string (kind));
  g_assert_cmpint (m.step, ==, step);
  g_assert_cmpuint (m.last_port, ==, last);
}

#define OFFER_HEAD "{\"natkit\":1,\"op\":\"holepunch\",\"session\":\"s\",\"token\":\"" TOKEN64 "\","
#define OFFER_TAIL "\"candidates\":[]}"

static void
test_offer_mapping (void)
{
  static const NatkitPunchMapping in[] = {
    { NATKIT_PUNCH_MAPPING_INDEPENDENT, 0, 0 },
    { NATKIT_PUNCH_MAPPING_SEQUENTIAL, -16, 1 },
    { NATKIT_PUNCH_MAPPING_SEQUENTIAL, 3, 65535 },
    { NATKIT_PUNCH_MAPPING_RANDOM, 0, 0 },
  };
  NatkitPunchMapping unknown = { NATKIT_PUNCH_MAPPING_UNKNOWN, 5, 5 };

  for (guint i = 0; i < G_N_ELEMENTS (in); i++)
    {
      g_autofree char *text = natkit_punch_offer_build ("s", token_0_15, NULL, 0, "symmetric", &in[i]);

      g_assert_nonnull (strstr (text, "\"nat\":\"symmetric\""));   /* "nat" as before */
      expect_offer_mapping (text, in[i].kind, in[i].step, in[i].last_port);
      g_assert_true ((strstr (text, "\"step\"") != NULL) ==
                     (in[i].kind == NATKIT_PUNCH_MAPPING_SEQUENTIAL));
    }
  {
    /* unknown: not said at all, as by a peer that predates it */
    g_autofree char *text = natkit_punch_offer_build ("s", token_0_15, NULL, 0, NULL, &unknown);
    g_autofree char *text2 = natkit_punch_offer_build ("s", token_0_15, NULL, 0, NULL, NULL);

    g_assert_null (strstr (text, "\"mapping\""));
    g_assert_cmpstr (text, ==, text2);
    expect_offer_mapping (text, NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  }

  /* strict: anything off makes the mapping unknown, the offer stands */
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"random\",\"step\":4,\"last\":9," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_RANDOM, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":1,\"last\":2," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_SEQUENTIAL, 1, 2);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":0,\"last\":2," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":17,\"last\":2," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":-17,\"last\":2," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":2,\"last\":0," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":2,\"last\":65536," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":2," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":2.5,\"last\":9," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"sequential\",\"step\":\"2\",\"last\":9," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":\"Random\"," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":[\"random\"]," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
  expect_offer_mapping (OFFER_HEAD "\"mapping\":true," OFFER_TAIL,
                        NATKIT_PUNCH_MAPPING_UNKNOWN, 0, 0);
}

/* ---- TCP simultaneous open ("tcp-holepunch") ---------------------------- */

static void
test_tcp_offer (void)
{
  NatkitPunchCandidate in[2];
  g_autofree char *text = NULL;
  g_autofree char *udp_text = NULL;
  g_autofree char *session = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autoptr(GError) error = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];

  in[0].type = NATKIT_PUNCH_CANDIDATE_HOST;
  in[0].address = G_INET_SOCKET_ADDRESS (g_inet_socket_address_new_from_string ("10.0.1.2", 40000));
  in[1].type = NATKIT_PUNCH_CANDIDATE_SRFLX;
  in[1].address = G_INET_SOCKET_ADDRESS (g_inet_socket_address_new_from_string ("203.0.113.10", 40000));

  text = natkit_punch_tcp_offer_build ("tcp-session", token_0_15, in, G_N_ELEMENTS (in));
  g_assert_nonnull (strstr (text, "\"op\":\"tcp-holepunch\""));
  g_assert_null (strstr (text, "\"nat\""));
  g_assert_true (natkit_punch_tcp_offer_parse (text, &session, token, &candidates, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (session, ==, "tcp-session");
  g_assert_cmpmem (token, sizeof token, token_0_15, sizeof token_0_15);
  g_assert_cmpuint (candidates->len, ==, 2);
  expect_candidate (candidates, 0, NATKIT_PUNCH_CANDIDATE_HOST, "10.0.1.2", 40000);
  expect_candidate (candidates, 1, NATKIT_PUNCH_CANDIDATE_SRFLX, "203.0.113.10", 40000);

  /* one op is not the other: neither parser takes the other's offer */
  g_assert_false (natkit_punch_offer_parse (text, NULL, token, NULL, NULL, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  udp_text = natkit_punch_offer_build ("tcp-session", token_0_15, in, G_N_ELEMENTS (in), NULL, NULL);
  g_assert_false (natkit_punch_tcp_offer_parse (udp_text, NULL, token, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);

  /* the same strict reading as the UDP offer's */
  g_assert_false (natkit_punch_tcp_offer_parse ("{\"natkit\":1,\"op\":\"tcp-holepunch\"}"
                                                "{\"x\":1}", NULL, token, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  g_assert_false (natkit_punch_tcp_offer_parse ("{\"natkit\":1,\"op\":\"tcp-holepunch\","
                                                "\"session\":\"s\",\"token\":\"" TOKEN64 "\"}",
                                                NULL, token, NULL, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);   /* no candidates list */

  for (guint i = 0; i < G_N_ELEMENTS (in); i++)
    natkit_punch_candidate_clear (&in[i]);
}

static void
test_tcp_hello (void)
{
  NatkitPunchKey key, other;
  NatkitPunch punch, out;
  guint8 hello[NATKIT_PUNCH_TCP_HELLO_SIZE];
  guint8 longer[NATKIT_PUNCH_TCP_HELLO_SIZE + 1];
  g_autoptr(GError) error = NULL;

  natkit_punch_tcp_key_derive (&key, "tcp-session", initiator_token, responder_token);
  for (int type = NATKIT_PUNCH_PUNCH; type <= NATKIT_PUNCH_CONFIRM; type++)
    for (guint8 role = 0; role <= 1; role++)
      {
        make_punch (&punch, type, role);
        natkit_punch_tcp_hello_build (&key, &punch, hello);
        /* an RFC 4571 frame of one punch packet */
        g_assert_cmpuint (hello[0], ==, 0);
        g_assert_cmpuint (hello[1], ==, NATKIT_PUNCH_SIZE);
        g_assert_cmpuint (hello[2], ==, 'N');
        g_assert_true (natkit_punch_tcp_hello_parse (&key, hello, sizeof hello, &out, &error));
        g_assert_no_error (error);
        g_assert_cmpint (out.type, ==, type);
        g_assert_cmpuint (out.sender_role, ==, role);
        g_assert_cmpmem (out.nonce, sizeof out.nonce, punch.nonce, sizeof punch.nonce);
        g_assert_cmpmem (out.echo, sizeof out.echo, punch.echo, sizeof punch.echo);
      }

  /* every bit matters */
  for (guint i = 0; i < sizeof hello; i++)
    for (guint bit = 0; bit < 8; bit++)
      {
        hello[i] ^= 1 << bit;
        g_assert_false (natkit_punch_tcp_hello_parse (&key, hello, sizeof hello, &out, NULL));
        hello[i] ^= 1 << bit;
      }
  g_assert_true (natkit_punch_tcp_hello_parse (&key, hello, sizeof hello, &out, NULL));

  /* other lengths */
  g_assert_false (natkit_punch_tcp_hello_parse (&key, hello, sizeof hello - 1, &out, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  memcpy (longer, hello, sizeof hello);
  longer[sizeof hello] = 0;
  g_assert_false (natkit_punch_tcp_hello_parse (&key, longer, sizeof longer, &out, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  g_assert_false (natkit_punch_tcp_hello_parse (&key, hello, 0, &out, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);

  /* another session, or the UDP punch's key for the same tokens: refused */
  natkit_punch_tcp_key_derive (&other, "tcp-session-2", initiator_token, responder_token);
  g_assert_false (natkit_punch_tcp_hello_parse (&other, hello, sizeof hello, &out, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_clear_error (&error);
  natkit_punch_key_derive (&other, "tcp-session", initiator_token, responder_token);
  g_assert_cmpint (memcmp (other.key, key.key, sizeof key.key), !=, 0);
  g_assert_false (natkit_punch_tcp_hello_parse (&other, hello, sizeof hello, &out, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED);
  g_clear_error (&error);

  /* a UDP punch packet, framed, does not pass for a TCP hello */
  make_punch (&punch, NATKIT_PUNCH_PUNCH, 0);
  hello[0] = 0;
  hello[1] = NATKIT_PUNCH_SIZE;
  natkit_punch_build (&other, &punch, hello + 2);
  g_assert_false (natkit_punch_tcp_hello_parse (&key, hello, sizeof hello, &out, NULL));
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("Hole punching's packets and signaling offer: build and parse");

  g_test_add_func ("/natkit/holepunch/proto/known-answer", test_known_answer);
  g_test_add_func ("/natkit/holepunch/proto/round-trip", test_round_trip);
  g_test_add_func ("/natkit/holepunch/proto/wrong-key", test_wrong_key);
  g_test_add_func ("/natkit/holepunch/proto/bit-flips", test_bit_flips);
  g_test_add_func ("/natkit/holepunch/proto/lengths", test_lengths);
  g_test_add_func ("/natkit/holepunch/proto/version-and-type", test_version_and_type);
  g_test_add_func ("/natkit/holepunch/proto/key-derive", test_key_derive);
  g_test_add_func ("/natkit/holepunch/proto/nonce-for", test_nonce_for);
  g_test_add_func ("/natkit/holepunch/proto/offer/round-trip", test_offer_round_trip);
  g_test_add_func ("/natkit/holepunch/proto/offer/limits", test_offer_limits);
  g_test_add_func ("/natkit/holepunch/proto/offer/malformed", test_offer_malformed);
  g_test_add_func ("/natkit/holepunch/proto/offer/mapping", test_offer_mapping);
  g_test_add_func ("/natkit/holepunch/proto/mapping/classify", test_mapping_classify);
  g_test_add_func ("/natkit/holepunch/proto/mapping/predict", test_predict_ports);
  g_test_add_func ("/natkit/holepunch/proto/mapping/birthday-role", test_birthday_role);
  g_test_add_func ("/natkit/holepunch/proto/offer/max-candidates", test_offer_max_candidates);
  g_test_add_func ("/natkit/holepunch/proto/offer/unsendable", test_offer_unsendable);
  g_test_add_func ("/natkit/holepunch/proto/address-is-sendable", test_address_is_sendable);
  g_test_add_func ("/natkit/holepunch/proto/tcp/offer", test_tcp_offer);
  g_test_add_func ("/natkit/holepunch/proto/tcp/hello", test_tcp_hello);

  return g_test_run ();
}
