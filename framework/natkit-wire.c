/* natkit-wire.c: natkit-server's wire format (docs/protocol.md)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit-wire-private.h"

struct _NatkitWireReader
{
  GByteArray *buffer;
  gsize       offset;    /* consumed bytes at the front of buffer */
  gsize       max_frame;
  gboolean    broken;
};

NatkitWireReader *
_natkit_wire_reader_new (gsize max_frame)
{
  NatkitWireReader *reader = g_new0 (NatkitWireReader, 1);

  reader->buffer = g_byte_array_new ();
  reader->max_frame = MIN (max_frame, NATKIT_WIRE_MAX_DATA);
  return reader;
}

void
_natkit_wire_reader_free (NatkitWireReader *reader)
{
  if (!reader)
    return;
  g_byte_array_unref (reader->buffer);
  g_free (reader);
}

void
_natkit_wire_reader_set_max_frame (NatkitWireReader *reader,
                                   gsize             max_frame)
{
  reader->max_frame = MIN (max_frame, NATKIT_WIRE_MAX_DATA);
}

void
_natkit_wire_reader_push (NatkitWireReader *reader,
                          const guint8     *data,
                          gsize             len)
{
  if (reader->broken || len == 0)
    return;
  /* drop what was consumed before growing */
  if (reader->offset > 0 && reader->offset >= reader->buffer->len / 2)
    {
      g_byte_array_remove_range (reader->buffer, 0, reader->offset);
      reader->offset = 0;
    }
  g_byte_array_append (reader->buffer, data, len);
}

gboolean
_natkit_wire_reader_next (NatkitWireReader  *reader,
                          GBytes           **out_body,
                          GError           **error)
{
  gsize avail, len;
  const guint8 *p;

  *out_body = NULL;
  if (reader->broken)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "the stream had a framing error earlier");
      return FALSE;
    }

  avail = reader->buffer->len - reader->offset;
  if (avail < 2)
    return FALSE;
  p = reader->buffer->data + reader->offset;
  len = ((gsize) p[0] << 8) | p[1];
  if (len == 0)
    {
      reader->broken = TRUE;
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "zero-length frame (a framing error)");
      return FALSE;
    }
  if (len > reader->max_frame)
    {
      reader->broken = TRUE;
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE,
                   "frame of %zu bytes is larger than the limit of %zu",
                   len, reader->max_frame);
      return FALSE;
    }
  if (avail < 2 + len)
    return FALSE;

  *out_body = g_bytes_new (p + 2, len);
  reader->offset += 2 + len;
  if (reader->offset == reader->buffer->len)
    {
      g_byte_array_set_size (reader->buffer, 0);
      reader->offset = 0;
    }
  return TRUE;
}

GBytes *
_natkit_wire_frame (const guint8 *body,
                    gsize         len)
{
  guint8 *out;

  g_return_val_if_fail (len >= 1 && len <= NATKIT_WIRE_MAX_DATA, NULL);

  out = g_malloc (len + 2);
  out[0] = len >> 8;
  out[1] = len & 0xff;
  memcpy (out + 2, body, len);
  return g_bytes_new_take (out, len + 2);
}

GBytes *
_natkit_wire_control_frame (JsonObject *message)
{
  g_autoptr(JsonNode) node = json_node_init_object (json_node_alloc (), message);
  gsize len = 0;
  g_autofree char *text = json_to_string (node, FALSE);

  len = strlen (text);
  g_return_val_if_fail (len <= NATKIT_WIRE_MAX_DATA, NULL);
  return _natkit_wire_frame ((const guint8 *) text, len);
}

/* A strict RFC 8259 syntax check, iterative, with a nesting limit, run
 * before json-glib sees the text: json-glib 1.6 leaks the tree it has built
 * when a document is followed by trailing bytes, recurses once per nesting
 * level, and turns \u0000 into a truncated string. Only text that passes
 * reaches the parser. */
#define JSON_MAX_DEPTH 64

static gboolean
skip_hex4 (const char **p,
           const char  *end,
           guint       *out)
{
  guint value = 0;

  if (end - *p < 4)
    return FALSE;
  for (int i = 0; i < 4; i++)
    {
      int digit = g_ascii_xdigit_value ((*p)[i]);

      if (digit < 0)
        return FALSE;
      value = value << 4 | digit;
    }
  *p += 4;
  *out = value;
  return TRUE;
}

static gboolean
skip_string (const char **pp,
             const char  *end)
{
  const char *p = *pp + 1;   /* past the opening quote */

  while (p < end)
    {
      guchar c = *p++;

      if (c == '"')
        {
          *pp = p;
          return TRUE;
        }
      if (c < 0x20)
        return FALSE;
      if (c != '\\')
        continue;
      if (p >= end)
        return FALSE;
      c = *p++;
      if (c == 'u')
        {
          guint unit, low;

          if (!skip_hex4 (&p, end, &unit) || unit == 0 || (unit >= 0xDC00 && unit <= 0xDFFF))
            return FALSE;
          if (unit >= 0xD800 && unit <= 0xDBFF &&
              (end - p < 2 || p[0] != '\\' || p[1] != 'u' ||
               (p += 2, !skip_hex4 (&p, end, &low)) || low < 0xDC00 || low > 0xDFFF))
            return FALSE;
        }
      else if (strchr ("\"\\/bfnrt", c) == NULL || c == '\0')
        return FALSE;
    }
  return FALSE;
}

static gboolean
skip_digits (const char **p,
             const char  *end)
{
  const char *start = *p;

  while (*p < end && g_ascii_isdigit (**p))
    (*p)++;
  return *p > start;
}

static gboolean
skip_number (const char **p,
             const char  *end)
{
  if (*p < end && **p == '-')
    (*p)++;
  if (*p < end && **p == '0')
    (*p)++;
  else if (*p >= end || **p < '1' || **p > '9' || !skip_digits (p, end))
    return FALSE;
  if (*p < end && **p == '.')
    {
      (*p)++;
      if (!skip_digits (p, end))
        return FALSE;
    }
  if (*p < end && (**p == 'e' || **p == 'E'))
    {
      (*p)++;
      if (*p < end && (**p == '+' || **p == '-'))
        (*p)++;
      if (!skip_digits (p, end))
        return FALSE;
    }
  return TRUE;
}

static gboolean
skip_literal (const char **p,
              const char  *end,
              const char  *word)
{
  gsize n = strlen (word);

  if ((gsize) (end - *p) < n || memcmp (*p, word, n) != 0)
    return FALSE;
  *p += n;
  return TRUE;
}

static void
skip_space (const char **p,
            const char  *end)
{
  while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
    (*p)++;
}

static gboolean
json_syntax_ok (const char *p,
                gsize       len)
{
  const char *end = p + len;
  char stack[JSON_MAX_DEPTH];
  guint depth = 0;
  enum { VALUE, AFTER_VALUE, OBJECT_FIRST, OBJECT_KEY, ARRAY_FIRST } state = VALUE;

  for (;;)
    {
      skip_space (&p, end);
      switch (state)
        {
        case VALUE:
          if (p >= end)
            return FALSE;
          if (*p == '{' || *p == '[')
            {
              if (depth == JSON_MAX_DEPTH)
                return FALSE;
              stack[depth++] = *p;
              state = *p == '{' ? OBJECT_FIRST : ARRAY_FIRST;
              p++;
              continue;
            }
          if (!(*p == '"' ? skip_string (&p, end) :
                *p == 't' ? skip_literal (&p, end, "true") :
                *p == 'f' ? skip_literal (&p, end, "false") :
                *p == 'n' ? skip_literal (&p, end, "null") :
                skip_number (&p, end)))
            return FALSE;
          state = AFTER_VALUE;
          break;

        case OBJECT_FIRST:
        case ARRAY_FIRST:
          if (p < end && *p == (state == OBJECT_FIRST ? '}' : ']'))
            {
              p++;
              depth--;
              state = AFTER_VALUE;
            }
          else
            state = state == OBJECT_FIRST ? OBJECT_KEY : VALUE;
          break;

        case OBJECT_KEY:
          if (p >= end || *p != '"' || !skip_string (&p, end))
            return FALSE;
          skip_space (&p, end);
          if (p >= end || *p != ':')
            return FALSE;
          p++;
          state = VALUE;
          break;

        case AFTER_VALUE:
        default:
          if (depth == 0)
            return p == end;
          if (p >= end)
            return FALSE;
          if (*p == ',')
            state = stack[depth - 1] == '{' ? OBJECT_KEY : VALUE;
          else if (*p == (stack[depth - 1] == '{' ? '}' : ']'))
            depth--;
          else
            return FALSE;
          p++;
          break;
        }
    }
}

/* One JSON object from a peer's text, checked before json-glib sees it
 * (see json_syntax_ok ()); %NULL with @error otherwise. */
JsonObject *
_natkit_wire_json_object (const char  *text,
                          gsize        len,
                          GError     **error)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local_error = NULL;
  JsonNode *root;

  if (!g_utf8_validate (text, len, NULL) || memchr (text, '\0', len) != NULL ||
      !json_syntax_ok (text, len))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "not one well-formed JSON value in UTF-8");
      return NULL;
    }
  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, text, len, &local_error))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "not JSON: %s", local_error->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED, "not a JSON object");
      return NULL;
    }
  return json_object_ref (json_node_get_object (root));
}

JsonObject *
_natkit_wire_control_parse (const guint8  *body,
                            gsize          len,
                            const char   **out_type,
                            GError       **error)
{
  g_autoptr(JsonParser) parser = NULL;
  g_autoptr(GError) local_error = NULL;
  JsonNode *root;
  JsonObject *object;
  JsonNode *type;

  if (len == 0 || len > NATKIT_WIRE_MAX_CONTROL)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE,
                   "control message of %zu bytes (the limit is %d)", len,
                   NATKIT_WIRE_MAX_CONTROL);
      return NULL;
    }
  if (!g_utf8_validate ((const char *) body, len, NULL) ||
      memchr (body, '\0', len) != NULL)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "control message is not UTF-8 text");
      return NULL;
    }

  /* json-glib 1.6 leaks the partial tree of an object followed by more
   * bytes (a slow remote leak): only well-formed text reaches it */
  if (!json_syntax_ok ((const char *) body, len))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "control message is not one well-formed JSON value");
      return NULL;
    }

  parser = json_parser_new_immutable ();
  if (!json_parser_load_from_data (parser, (const char *) body, len, &local_error))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "control message is not JSON: %s", local_error->message);
      return NULL;
    }
  root = json_parser_get_root (parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "control message is not a JSON object");
      return NULL;
    }
  object = json_node_get_object (root);
  type = json_object_get_member (object, "type");
  if (!type || !JSON_NODE_HOLDS_VALUE (type) ||
      json_node_get_value_type (type) != G_TYPE_STRING)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "control message has no string member “type”");
      return NULL;
    }
  json_object_ref (object);
  if (out_type)
    *out_type = json_node_get_string (type);
  return object;
}

gboolean
_natkit_wire_udp_parse (const guint8       *data,
                        gsize               len,
                        NatkitWireUdpType  *out_type,
                        guint32            *out_circuit,
                        const guint8      **out_payload,
                        gsize              *out_payload_len)
{
  guint8 type;

  if (len < NATKIT_WIRE_UDP_HEADER || data[0] != NATKIT_WIRE_UDP_MAGIC ||
      data[1] != NATKIT_WIRE_VERSION || data[3] != 0)
    return FALSE;
  type = data[2];
  if (type < NATKIT_WIRE_UDP_BIND || type > NATKIT_WIRE_UDP_CLOSED)
    return FALSE;
  if (type == NATKIT_WIRE_UDP_BIND && len != NATKIT_WIRE_UDP_HEADER + NATKIT_WIRE_TOKEN_SIZE)
    return FALSE;
  if ((type == NATKIT_WIRE_UDP_BOUND || type == NATKIT_WIRE_UDP_CLOSED) &&
      len != NATKIT_WIRE_UDP_HEADER)
    return FALSE;
  if (type == NATKIT_WIRE_UDP_DATA && len == NATKIT_WIRE_UDP_HEADER)
    return FALSE;

  *out_type = type;
  *out_circuit = ((guint32) data[4] << 24) | ((guint32) data[5] << 16) |
                 ((guint32) data[6] << 8) | data[7];
  if (*out_circuit == 0)
    return FALSE;
  if (out_payload)
    *out_payload = data + NATKIT_WIRE_UDP_HEADER;
  if (out_payload_len)
    *out_payload_len = len - NATKIT_WIRE_UDP_HEADER;
  return TRUE;
}

void
_natkit_wire_udp_header (guint8            out[NATKIT_WIRE_UDP_HEADER],
                         NatkitWireUdpType type,
                         guint32           circuit)
{
  out[0] = NATKIT_WIRE_UDP_MAGIC;
  out[1] = NATKIT_WIRE_VERSION;
  out[2] = type;
  out[3] = 0;
  out[4] = circuit >> 24;
  out[5] = (circuit >> 16) & 0xff;
  out[6] = (circuit >> 8) & 0xff;
  out[7] = circuit & 0xff;
}

GBytes *
_natkit_wire_register_data (const guint8 *challenge,
                            const char   *peer_id)
{
  static const char prefix[] = "natkit-register-v1";
  GByteArray *data = g_byte_array_new ();
  guint8 zero = 0;

  g_byte_array_append (data, (const guint8 *) prefix, sizeof prefix - 1);
  g_byte_array_append (data, &zero, 1);
  g_byte_array_append (data, challenge, NATKIT_WIRE_CHALLENGE_SIZE);
  g_byte_array_append (data, (const guint8 *) peer_id, strlen (peer_id));
  return g_byte_array_free_to_bytes (data);
}

gboolean
_natkit_wire_get_string (JsonObject  *o,
                         const char  *member,
                         const char **out,
                         GError     **error)
{
  JsonNode *node = json_object_get_member (o, member);

  if (!node || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "member “%s” is missing or not a string", member);
      return FALSE;
    }
  *out = json_node_get_string (node);
  return TRUE;
}

gboolean
_natkit_wire_get_int (JsonObject  *o,
                      const char  *member,
                      gint64       min,
                      gint64       max,
                      gint64      *out,
                      GError     **error)
{
  JsonNode *node = json_object_get_member (o, member);
  gint64 value;

  if (!node || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "member “%s” is missing or not an integer", member);
      return FALSE;
    }
  value = json_node_get_int (node);
  if (value < min || value > max)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "member “%s” is %" G_GINT64_FORMAT ", outside %"
                   G_GINT64_FORMAT "…%" G_GINT64_FORMAT, member, value, min, max);
      return FALSE;
    }
  *out = value;
  return TRUE;
}

GBytes *
_natkit_wire_get_base64 (JsonObject  *o,
                         const char  *member,
                         gsize        expected_len,
                         GError     **error)
{
  const char *text;
  guchar *data;
  gsize len = 0, text_len;

  if (!_natkit_wire_get_string (o, member, &text, error))
    return NULL;
  text_len = strlen (text);
  /* only canonical base64 of a sane size */
  if (text_len == 0 || text_len % 4 != 0 || text_len > 4096 ||
      strspn (text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789+/=") != text_len)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "member “%s” is not base64", member);
      return NULL;
    }
  data = g_base64_decode (text, &len);
  if (expected_len && len != expected_len)
    {
      g_free (data);
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "member “%s” holds %zu bytes, expected %zu", member, len,
                   expected_len);
      return NULL;
    }
  return g_bytes_new_take (data, len);
}

/* "sha256:AB:CD:…" over the certificate's DER: how natkit-server prints
 * its certificate and how clients pin it. */
char *
_natkit_wire_certificate_fingerprint (GTlsCertificate *certificate)
{
  g_autoptr(GByteArray) der = NULL;
  g_autofree char *hex = NULL;
  GString *fp;

  g_object_get (certificate, "certificate", &der, NULL);
  if (!der)
    return NULL;
  hex = g_compute_checksum_for_data (G_CHECKSUM_SHA256, der->data, der->len);
  fp = g_string_new ("sha256:");
  for (gsize i = 0; hex[i] && hex[i + 1]; i += 2)
    g_string_append_printf (fp, "%s%c%c", i ? ":" : "",
                            g_ascii_toupper (hex[i]), g_ascii_toupper (hex[i + 1]));
  return g_string_free (fp, FALSE);
}
