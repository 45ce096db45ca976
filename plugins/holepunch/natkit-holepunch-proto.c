/* natkit-holepunch-proto.c: hole punching's packets and signaling payload
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A punch packet (docs/protocol.md 7.2), 36 bytes:
 *
 *    0   'N' 'H' version(1) type
 *    4   nonce (8): the sender's, one per destination address
 *   12   echo (8): the nonce being answered (zero in a PUNCH)
 *   20   MAC (16): HMAC-SHA-256 over bytes 0..19 and the sender's role,
 *        keyed from the session ID and both sides' tokens, truncated
 *
 * Only the two peers know the tokens (they travelled over the signaling
 * channel, which authenticates both ends), so a third host can neither
 * forge a punch nor answer one; the role in the MAC stops a packet from
 * being reflected back at its sender as if the peer had sent it. The
 * nonce differs per destination and an answer must echo the one sent to
 * the address it comes from: a third host that captures a valid ACK and
 * replays it from its own address does not become the path.
 */
#include <string.h>

#include <json-glib/json-glib.h>

#include "natkit-holepunch-proto.h"

#define MAGIC0   'N'
#define MAGIC1   'H'
#define VERSION  1

static void
mac (const NatkitPunchKey *key,
     const guint8         *header,
     guint8                role,
     guint8                out[NATKIT_PUNCH_MAC_SIZE])
{
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, key->key, sizeof key->key);
  guint8 digest[32];
  gsize len = sizeof digest;

  g_hmac_update (hmac, header, 20);
  g_hmac_update (hmac, &role, 1);
  g_hmac_get_digest (hmac, digest, &len);
  memcpy (out, digest, NATKIT_PUNCH_MAC_SIZE);
}

void
natkit_punch_key_derive (NatkitPunchKey *key,
                         const char     *session_id,
                         const guint8    initiator_token[NATKIT_PUNCH_TOKEN_SIZE],
                         const guint8    responder_token[NATKIT_PUNCH_TOKEN_SIZE])
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  static const char label[] = "natkit-holepunch-v1";
  gsize len = sizeof key->key;

  g_checksum_update (sum, (const guchar *) label, sizeof label);  /* with its NUL */
  g_checksum_update (sum, (const guchar *) session_id, strlen (session_id) + 1);
  g_checksum_update (sum, initiator_token, NATKIT_PUNCH_TOKEN_SIZE);
  g_checksum_update (sum, responder_token, NATKIT_PUNCH_TOKEN_SIZE);
  g_checksum_get_digest (sum, key->key, &len);
}

void
natkit_punch_nonce_for (const guint8        secret[NATKIT_PUNCH_SECRET_SIZE],
                        GInetSocketAddress *to,
                        guint8              out[NATKIT_PUNCH_NONCE_SIZE])
{
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA256, secret, NATKIT_PUNCH_SECRET_SIZE);
  GInetAddress *ip = g_inet_socket_address_get_address (to);
  guint16 port = GUINT16_TO_BE (g_inet_socket_address_get_port (to));
  guint8 digest[32];
  gsize len = sizeof digest;

  g_hmac_update (hmac, g_inet_address_to_bytes (ip), g_inet_address_get_native_size (ip));
  g_hmac_update (hmac, (const guint8 *) &port, sizeof port);
  g_hmac_get_digest (hmac, digest, &len);
  memcpy (out, digest, NATKIT_PUNCH_NONCE_SIZE);
}

void
natkit_punch_build (const NatkitPunchKey *key,
                    const NatkitPunch    *punch,
                    guint8                out[NATKIT_PUNCH_SIZE])
{
  out[0] = MAGIC0;
  out[1] = MAGIC1;
  out[2] = VERSION;
  out[3] = punch->type;
  memcpy (out + 4, punch->nonce, NATKIT_PUNCH_NONCE_SIZE);
  memcpy (out + 12, punch->echo, NATKIT_PUNCH_NONCE_SIZE);
  mac (key, out, punch->sender_role, out + 20);
}

/* Whether @data is meant to be a punch packet at all (DTLS records start
 * with 20..63, STUN with 0 or 1). */
gboolean
natkit_punch_looks_like (const guint8 *data,
                         gsize         len)
{
  return len >= 2 && data[0] == MAGIC0 && data[1] == MAGIC1;
}

gboolean
natkit_punch_parse (const NatkitPunchKey *key,
                    const guint8         *data,
                    gsize                 len,
                    NatkitPunch          *out,
                    GError              **error)
{
  guint8 expected[NATKIT_PUNCH_MAC_SIZE];
  guint8 role;
  gboolean ok = FALSE;

  if (!natkit_punch_looks_like (data, len))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "not a punch packet");
      return FALSE;
    }
  if (len != NATKIT_PUNCH_SIZE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "a punch packet of %" G_GSIZE_FORMAT " bytes (expected %d)",
                   len, NATKIT_PUNCH_SIZE);
      return FALSE;
    }
  if (data[2] != VERSION)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                   "a punch packet of version %u (this side speaks %d)",
                   data[2], VERSION);
      return FALSE;
    }
  if (data[3] < NATKIT_PUNCH_PUNCH || data[3] > NATKIT_PUNCH_CONFIRM)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "a punch packet of unknown type %u", data[3]);
      return FALSE;
    }

  /* which role sent it is part of what the MAC proves */
  for (role = 0; role <= 1 && !ok; role++)
    {
      guint8 diff = 0;

      mac (key, data, role, expected);
      for (guint i = 0; i < NATKIT_PUNCH_MAC_SIZE; i++)
        diff |= expected[i] ^ data[20 + i];
      if (diff == 0)
        {
          ok = TRUE;
          out->sender_role = role;
        }
    }
  if (!ok)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                           "a punch packet that does not authenticate "
                           "(forged, or from another session)");
      return FALSE;
    }
  out->type = data[3];
  memcpy (out->nonce, data + 4, NATKIT_PUNCH_NONCE_SIZE);
  memcpy (out->echo, data + 12, NATKIT_PUNCH_NONCE_SIZE);
  return TRUE;
}

/* ---- candidates --------------------------------------------------------- */

void
natkit_punch_candidate_clear (NatkitPunchCandidate *candidate)
{
  g_clear_object (&candidate->address);
}

const char *
natkit_punch_candidate_type_to_string (NatkitPunchCandidateType type)
{
  switch (type)
    {
    case NATKIT_PUNCH_CANDIDATE_HOST:
      return "host";
    case NATKIT_PUNCH_CANDIDATE_SRFLX:
      return "srflx";
    case NATKIT_PUNCH_CANDIDATE_MAPPED:
      return "mapped";
    default:
      return "unknown";
    }
}

static gboolean
candidate_type_from_string (const char               *text,
                            NatkitPunchCandidateType *out)
{
  for (int t = NATKIT_PUNCH_CANDIDATE_HOST; t <= NATKIT_PUNCH_CANDIDATE_MAPPED; t++)
    if (g_strcmp0 (text, natkit_punch_candidate_type_to_string (t)) == 0)
      {
        *out = t;
        return TRUE;
      }
  return FALSE;
}

/* Addresses a candidate may never name: nothing to punch there, or a way
 * to make us send to many hosts (multicast, broadcast). */
gboolean
natkit_punch_address_is_sendable (GInetSocketAddress *address)
{
  GInetAddress *ip = g_inet_socket_address_get_address (address);

  if (g_inet_socket_address_get_port (address) == 0)
    return FALSE;
  if (g_inet_address_get_is_any (ip) || g_inet_address_get_is_multicast (ip))
    return FALSE;
  if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV4)
    {
      const guint8 *b = g_inet_address_to_bytes (ip);

      if (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255)
        return FALSE;
      if (b[0] == 0 || b[0] >= 240)   /* "this network", reserved, broadcast */
        return FALSE;
    }
  return TRUE;
}

static gboolean
is_json_space (char c)
{
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* json-glib keeps the partial tree of a document with bytes after its
 * root (a leak a peer could repeat): accept exactly one JSON object with
 * nothing but white space around it.
 *
 * Outside strings only what JSON allows there: json-glib's scanner also
 * takes 'single-quoted' strings and # and C comments, inside which this
 * count and the parser would disagree on where the object ends
 * ({"k":'"'}{"z":'"'} is one object here and two to json-glib, which
 * returns the first and ignores the rest). */
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
          if (++depth > 8)
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
        return FALSE;   /* ' # / and anything else JSON has no use for */
    }
  if (depth != 0)
    return FALSE;
  while (is_json_space (*p))
    p++;
  return *p == '\0';
}

/* A member of exactly the type asked for. json-glib's _with_default
 * getters fail a g_return_val_if_fail() on an object or an array member
 * and turn other mismatches into NULL (a string) or a number (an int from
 * 9.5 or true): none of that for what a peer wrote. */
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

static gint64
member_int (JsonObject *object,
            const char *name,
            gint64      default_value)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return default_value;
  return json_node_get_int (node);
}

/* ---- mapping behavior ---------------------------------------------------- */

const char *
natkit_punch_mapping_to_string (NatkitPunchMappingKind kind)
{
  switch (kind)
    {
    case NATKIT_PUNCH_MAPPING_INDEPENDENT:
      return "independent";
    case NATKIT_PUNCH_MAPPING_SEQUENTIAL:
      return "sequential";
    case NATKIT_PUNCH_MAPPING_RANDOM:
      return "random";
    case NATKIT_PUNCH_MAPPING_UNKNOWN:
    default:
      return "unknown";
    }
}

/* @ports: the public ports one socket got towards different destinations,
 * in the order the NAT handed them out (the order the first requests left).
 * All the same: endpoint-independent. All moving the same way by at most
 * NATKIT_PUNCH_MAX_STEP: sequential, the step being the smallest move
 * (other hosts behind the NAT take ports in between). Anything else:
 * random, or dependent in a way nobody can predict. */
void
natkit_punch_mapping_classify (const guint16      *ports,
                               guint               n_ports,
                               NatkitPunchMapping *out)
{
  gboolean same = TRUE, up = TRUE, down = TRUE;
  gint smallest = G_MAXINT;

  out->kind = NATKIT_PUNCH_MAPPING_UNKNOWN;
  out->step = 0;
  out->last_port = 0;
  if (n_ports < 2)
    return;
  for (guint i = 1; i < n_ports; i++)
    {
      gint delta = (gint) ports[i] - (gint) ports[i - 1];

      same &= delta == 0;
      up &= delta > 0 && delta <= NATKIT_PUNCH_MAX_STEP;
      down &= delta < 0 && delta >= -NATKIT_PUNCH_MAX_STEP;
      smallest = MIN (smallest, ABS (delta));
    }
  if (same)
    out->kind = NATKIT_PUNCH_MAPPING_INDEPENDENT;
  else if (up || down)
    {
      out->kind = NATKIT_PUNCH_MAPPING_SEQUENTIAL;
      out->step = up ? smallest : -smallest;
      out->last_port = ports[n_ports - 1];
    }
  else
    out->kind = NATKIT_PUNCH_MAPPING_RANDOM;
}

/* The ports a sequential NAT will most likely hand out next: the last one
 * plus 1..@count steps (at most NATKIT_PUNCH_MAX_PREDICTED), leaving out
 * what falls off either end of the port space. Nothing for any other
 * mapping. Returns how many were written to @out. */
guint
natkit_punch_predict_ports (const NatkitPunchMapping *mapping,
                            guint                     count,
                            guint16                  *out)
{
  guint n = 0;

  if (mapping->kind != NATKIT_PUNCH_MAPPING_SEQUENTIAL || mapping->step == 0 ||
      ABS (mapping->step) > NATKIT_PUNCH_MAX_STEP || mapping->last_port == 0)
    return 0;
  count = MIN (count, NATKIT_PUNCH_MAX_PREDICTED);
  for (guint k = 1; k <= count; k++)
    {
      gint port = (gint) mapping->last_port + (gint) k * mapping->step;

      if (port >= 1 && port <= 65535)
        out[n++] = (guint16) port;
    }
  return n;
}

/* Random ↔ endpoint-independent: the random side opens many sockets
 * (hard), the other probes its ports (easy). Random on both sides: no
 * port on either side can be known or guessed in time. */
NatkitPunchBirthdayRole
natkit_punch_birthday_role (const NatkitPunchMapping *ours,
                            const NatkitPunchMapping *theirs)
{
  if (ours->kind == NATKIT_PUNCH_MAPPING_RANDOM &&
      theirs->kind == NATKIT_PUNCH_MAPPING_RANDOM)
    return NATKIT_PUNCH_BIRTHDAY_HOPELESS;
  if (ours->kind == NATKIT_PUNCH_MAPPING_RANDOM &&
      theirs->kind == NATKIT_PUNCH_MAPPING_INDEPENDENT)
    return NATKIT_PUNCH_BIRTHDAY_HARD;
  if (ours->kind == NATKIT_PUNCH_MAPPING_INDEPENDENT &&
      theirs->kind == NATKIT_PUNCH_MAPPING_RANDOM)
    return NATKIT_PUNCH_BIRTHDAY_EASY;
  return NATKIT_PUNCH_BIRTHDAY_NONE;
}

static char *
offer_build (const char                 *op,
             const char                 *session_id,
             const guint8                token[NATKIT_PUNCH_TOKEN_SIZE],
             const NatkitPunchCandidate *candidates,
             guint                       n_candidates,
             const char                 *nat_type,
             const NatkitPunchMapping   *mapping)
{
  g_autoptr(JsonBuilder) b = json_builder_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *token64 = g_base64_encode (token, NATKIT_PUNCH_TOKEN_SIZE);

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "natkit");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "op");
  json_builder_add_string_value (b, op);
  json_builder_set_member_name (b, "session");
  json_builder_add_string_value (b, session_id);
  json_builder_set_member_name (b, "token");
  json_builder_add_string_value (b, token64);
  if (nat_type != NULL)
    {
      json_builder_set_member_name (b, "nat");
      json_builder_add_string_value (b, nat_type);
    }
  if (mapping != NULL && mapping->kind != NATKIT_PUNCH_MAPPING_UNKNOWN)
    {
      json_builder_set_member_name (b, "mapping");
      json_builder_add_string_value (b, natkit_punch_mapping_to_string (mapping->kind));
      if (mapping->kind == NATKIT_PUNCH_MAPPING_SEQUENTIAL)
        {
          json_builder_set_member_name (b, "step");
          json_builder_add_int_value (b, mapping->step);
          json_builder_set_member_name (b, "last");
          json_builder_add_int_value (b, mapping->last_port);
        }
    }
  json_builder_set_member_name (b, "candidates");
  json_builder_begin_array (b);
  for (guint i = 0; i < n_candidates && i < NATKIT_PUNCH_MAX_CANDIDATES; i++)
    {
      GInetSocketAddress *a = candidates[i].address;
      g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (a));

      json_builder_begin_object (b);
      json_builder_set_member_name (b, "type");
      json_builder_add_string_value (b, natkit_punch_candidate_type_to_string (candidates[i].type));
      json_builder_set_member_name (b, "ip");
      json_builder_add_string_value (b, ip);
      json_builder_set_member_name (b, "port");
      json_builder_add_int_value (b, g_inet_socket_address_get_port (a));
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_end_object (b);
  root = json_builder_get_root (b);
  return json_to_string (root, FALSE);
}

/* "mapping" (and for a sequential one "step" and "last"): a member that is
 * missing, of another type or out of its range makes the mapping unknown,
 * as from a peer that does not measure it; the offer itself stands. */
static void
parse_mapping (JsonObject         *body,
               NatkitPunchMapping *out)
{
  const char *kind = member_string (body, "mapping");

  out->kind = NATKIT_PUNCH_MAPPING_UNKNOWN;
  out->step = 0;
  out->last_port = 0;
  if (g_strcmp0 (kind, "independent") == 0)
    out->kind = NATKIT_PUNCH_MAPPING_INDEPENDENT;
  else if (g_strcmp0 (kind, "random") == 0)
    out->kind = NATKIT_PUNCH_MAPPING_RANDOM;
  else if (g_strcmp0 (kind, "sequential") == 0)
    {
      gint64 step = member_int (body, "step", 0);
      gint64 last = member_int (body, "last", 0);

      if (step != 0 && step >= -NATKIT_PUNCH_MAX_STEP && step <= NATKIT_PUNCH_MAX_STEP &&
          last >= 1 && last <= 65535)
        {
          out->kind = NATKIT_PUNCH_MAPPING_SEQUENTIAL;
          out->step = (gint) step;
          out->last_port = (guint16) last;
        }
    }
}

char *
natkit_punch_offer_build (const char                 *session_id,
                          const guint8                token[NATKIT_PUNCH_TOKEN_SIZE],
                          const NatkitPunchCandidate *candidates,
                          guint                       n_candidates,
                          const char                 *nat_type,
                          const NatkitPunchMapping   *mapping)
{
  return offer_build ("holepunch", session_id, token, candidates, n_candidates, nat_type,
                      mapping);
}

/* The "tcp-holepunch" body: the same members, another op. */
char *
natkit_punch_tcp_offer_build (const char                 *session_id,
                              const guint8                token[NATKIT_PUNCH_TOKEN_SIZE],
                              const NatkitPunchCandidate *candidates,
                              guint                       n_candidates)
{
  return offer_build ("tcp-holepunch", session_id, token, candidates, n_candidates, NULL,
                      NULL);
}

static void
clear_candidate (gpointer data)
{
  natkit_punch_candidate_clear (data);
}

static gboolean
offer_parse (const char          *op,
             const char          *text,
             char               **out_session_id,
             guint8               out_token[NATKIT_PUNCH_TOKEN_SIZE],
             GArray             **out_candidates,
             char               **out_nat_type,
             NatkitPunchMapping  *out_mapping,
             GError             **error)
{
  g_autoptr(JsonNode) node = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autofree guint8 *token = NULL;
  NatkitPunchMapping mapping;
  JsonObject *body;
  JsonNode *list;
  JsonArray *array;
  const char *session, *token64, *nat;
  gsize token_len = 0;

  if (text == NULL || strlen (text) > 8192 || !is_one_object (text))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the hole punching offer is not one JSON object "
                           "of at most 8 KiB");
      return FALSE;
    }
  node = json_from_string (text, NULL);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the hole punching offer is not valid JSON");
      return FALSE;
    }
  body = json_node_get_object (node);
  if (member_int (body, "natkit", 0) != 1 ||
      g_strcmp0 (member_string (body, "op"), op) != 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "not a natkit hole punching offer");
      return FALSE;
    }
  session = member_string (body, "session");
  token64 = member_string (body, "token");
  nat = member_string (body, "nat");
  if (session == NULL || *session == '\0' || strlen (session) > 64 ||
      token64 == NULL || strlen (token64) != 24)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the hole punching offer lacks its session or token");
      return FALSE;
    }
  token = g_base64_decode (token64, &token_len);
  if (token_len != NATKIT_PUNCH_TOKEN_SIZE)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the hole punching offer's token is not 16 bytes");
      return FALSE;
    }
  if (nat != NULL && strlen (nat) > 32)
    nat = NULL;
  parse_mapping (body, &mapping);

  list = json_object_get_member (body, "candidates");
  if (list == NULL || !JSON_NODE_HOLDS_ARRAY (list))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                           "the hole punching offer has no list of candidates");
      return FALSE;
    }
  array = json_node_get_array (list);
  candidates = g_array_new (FALSE, TRUE, sizeof (NatkitPunchCandidate));
  g_array_set_clear_func (candidates, clear_candidate);
  for (guint i = 0; i < json_array_get_length (array); i++)
    {
      JsonNode *item = json_array_get_element (array, i);
      JsonObject *c;
      NatkitPunchCandidate candidate = { 0, NULL };
      g_autoptr(GInetAddress) ip = NULL;
      const char *ip_text;
      gint64 port;

      if (candidates->len >= NATKIT_PUNCH_MAX_CANDIDATES)
        break;   /* the rest are ignored, not an error */
      if (!JSON_NODE_HOLDS_OBJECT (item))
        continue;
      c = json_node_get_object (item);
      if (!candidate_type_from_string (member_string (c, "type"), &candidate.type))
        continue;
      ip_text = member_string (c, "ip");
      port = member_int (c, "port", 0);
      if (ip_text == NULL || port <= 0 || port > 65535)
        continue;
      ip = g_inet_address_new_from_string (ip_text);
      if (ip == NULL)
        continue;
      candidate.address = G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (ip, (guint16) port));
      if (!natkit_punch_address_is_sendable (candidate.address))
        {
          natkit_punch_candidate_clear (&candidate);
          continue;
        }
      g_array_append_val (candidates, candidate);
    }

  if (out_session_id)
    *out_session_id = g_strdup (session);
  memcpy (out_token, token, NATKIT_PUNCH_TOKEN_SIZE);
  if (out_nat_type)
    *out_nat_type = g_strdup (nat);
  if (out_mapping)
    *out_mapping = mapping;
  if (out_candidates)
    *out_candidates = g_steal_pointer (&candidates);
  return TRUE;
}

gboolean
natkit_punch_offer_parse (const char          *text,
                          char               **out_session_id,
                          guint8               out_token[NATKIT_PUNCH_TOKEN_SIZE],
                          GArray             **out_candidates,
                          char               **out_nat_type,
                          NatkitPunchMapping  *out_mapping,
                          GError             **error)
{
  return offer_parse ("holepunch", text, out_session_id, out_token, out_candidates,
                      out_nat_type, out_mapping, error);
}

gboolean
natkit_punch_tcp_offer_parse (const char  *text,
                              char       **out_session_id,
                              guint8       out_token[NATKIT_PUNCH_TOKEN_SIZE],
                              GArray     **out_candidates,
                              GError     **error)
{
  return offer_parse ("tcp-holepunch", text, out_session_id, out_token, out_candidates,
                      NULL, NULL, error);
}

/* ---- TCP simultaneous open (docs/protocol.md 7.4) ----------------------- */

void
natkit_punch_tcp_key_derive (NatkitPunchKey *key,
                             const char     *session_id,
                             const guint8    initiator_token[NATKIT_PUNCH_TOKEN_SIZE],
                             const guint8    responder_token[NATKIT_PUNCH_TOKEN_SIZE])
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  static const char label[] = "natkit-tcp-holepunch-v1";
  gsize len = sizeof key->key;

  g_checksum_update (sum, (const guchar *) label, sizeof label);  /* with its NUL */
  g_checksum_update (sum, (const guchar *) session_id, strlen (session_id) + 1);
  g_checksum_update (sum, initiator_token, NATKIT_PUNCH_TOKEN_SIZE);
  g_checksum_update (sum, responder_token, NATKIT_PUNCH_TOKEN_SIZE);
  g_checksum_get_digest (sum, key->key, &len);
}

void
natkit_punch_tcp_hello_build (const NatkitPunchKey *key,
                              const NatkitPunch    *punch,
                              guint8                out[NATKIT_PUNCH_TCP_HELLO_SIZE])
{
  out[0] = 0;
  out[1] = NATKIT_PUNCH_SIZE;
  natkit_punch_build (key, punch, out + 2);
}

gboolean
natkit_punch_tcp_hello_parse (const NatkitPunchKey *key,
                              const guint8         *data,
                              gsize                 len,
                              NatkitPunch          *out,
                              GError              **error)
{
  if (len != NATKIT_PUNCH_TCP_HELLO_SIZE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "a TCP punch message of %" G_GSIZE_FORMAT " bytes (expected %d)",
                   len, NATKIT_PUNCH_TCP_HELLO_SIZE);
      return FALSE;
    }
  if (data[0] != 0 || data[1] != NATKIT_PUNCH_SIZE)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "not a TCP punch message: a frame of %u bytes (expected %d)",
                   ((guint) data[0] << 8) | data[1], NATKIT_PUNCH_SIZE);
      return FALSE;
    }
  return natkit_punch_parse (key, data + 2, NATKIT_PUNCH_SIZE, out, error);
}

/* ---- GLib plumbing shared by the UDP and TCP punch ---------------------- */

/* Attaches @source to the thread-default context with @func; returns it */
GSource *
natkit_punch_add_source (GSource     *source,
                         GSourceFunc  func,
                         gpointer     data,
                         const char  *name)
{
  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, name);
  g_source_attach (source, g_main_context_get_thread_default ());
  return source;
}

/* Destroys and drops *@source (may be NULL) */
void
natkit_punch_drop_source (GSource **source)
{
  if (*source != NULL)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

/* "IP:PORT" ("[IP]:PORT" for IPv6) */
char *
natkit_punch_describe (GSocketAddress *address)
{
  GInetSocketAddress *inet = G_INET_SOCKET_ADDRESS (address);
  g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (inet));

  if (g_socket_address_get_family (address) == G_SOCKET_FAMILY_IPV6)
    return g_strdup_printf ("[%s]:%u", ip, g_inet_socket_address_get_port (inet));
  return g_strdup_printf ("%s:%u", ip, g_inet_socket_address_get_port (inet));
}

gboolean
natkit_punch_same_address (GSocketAddress *a,
                           GSocketAddress *b)
{
  GInetSocketAddress *x = G_INET_SOCKET_ADDRESS (a);
  GInetSocketAddress *y = G_INET_SOCKET_ADDRESS (b);

  return g_inet_socket_address_get_port (x) == g_inet_socket_address_get_port (y) &&
         g_inet_address_equal (g_inet_socket_address_get_address (x),
                               g_inet_socket_address_get_address (y));
}
