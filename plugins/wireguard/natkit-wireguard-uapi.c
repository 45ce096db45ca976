/* natkit-wireguard-uapi.c: keys and replies of WireGuard's userspace API
 *
 * The protocol (https://www.wireguard.com/xplatform/): a request is
 * "set=1\n" or "get=1\n" followed by key=value lines and an empty line; the
 * reply is key=value lines ending with "errno=N" and an empty line. Keys
 * travel as 64 hex digits.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "natkit-wireguard-uapi.h"

#include <string.h>

#include <natkit/natkit.h>

char *
natkit_wireguard_key_to_hex (const guint8 key[NATKIT_WIREGUARD_KEY_LEN])
{
  static const char digits[] = "0123456789abcdef";
  char *hex = g_malloc (2 * NATKIT_WIREGUARD_KEY_LEN + 1);

  for (guint i = 0; i < NATKIT_WIREGUARD_KEY_LEN; i++)
    {
      hex[2 * i] = digits[key[i] >> 4];
      hex[2 * i + 1] = digits[key[i] & 15];
    }
  hex[2 * NATKIT_WIREGUARD_KEY_LEN] = '\0';
  return hex;
}

gboolean
natkit_wireguard_key_from_base64 (const char *text,
                                  guint8      key[NATKIT_WIREGUARD_KEY_LEN])
{
  g_autofree guchar *raw = NULL;
  gsize len = 0;

  if (text == NULL || strlen (text) != 44 || text[43] != '=')
    return FALSE;
  raw = g_base64_decode (text, &len);
  if (raw == NULL || len != NATKIT_WIREGUARD_KEY_LEN)
    return FALSE;
  memcpy (key, raw, NATKIT_WIREGUARD_KEY_LEN);
  return TRUE;
}

char *
natkit_wireguard_key_base64_to_hex (const char *text)
{
  guint8 key[NATKIT_WIREGUARD_KEY_LEN];

  if (!natkit_wireguard_key_from_base64 (text, key))
    return NULL;
  return natkit_wireguard_key_to_hex (key);
}

static gboolean
key_from_hex (const char *hex,
              guint8      key[NATKIT_WIREGUARD_KEY_LEN])
{
  if (strlen (hex) != 2 * NATKIT_WIREGUARD_KEY_LEN)
    return FALSE;
  for (guint i = 0; i < NATKIT_WIREGUARD_KEY_LEN; i++)
    {
      int hi = g_ascii_xdigit_value (hex[2 * i]);
      int lo = g_ascii_xdigit_value (hex[2 * i + 1]);

      if (hi < 0 || lo < 0)
        return FALSE;
      key[i] = (hi << 4) | lo;
    }
  return TRUE;
}

static gboolean
parse_number (const char *text,
              guint64     max,
              guint64    *out)
{
  guint64 value;
  char *end = NULL;

  if (!g_ascii_isdigit (text[0]))
    return FALSE;
  value = g_ascii_strtoull (text, &end, 10);
  if (*end != '\0' || value > max)
    return FALSE;
  *out = value;
  return TRUE;
}

static GPtrArray *
split_lines (const char  *reply,
             gsize        len,
             GError     **error)
{
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func (g_free);
  gsize start = 0;

  if (len > NATKIT_WIREGUARD_REPLY_MAX || memchr (reply, '\0', len) != NULL)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "wireguard-go's reply is malformed (too long, or binary)");
      return NULL;
    }
  for (gsize i = 0; i < len; i++)
    if (reply[i] == '\n')
      {
        g_ptr_array_add (lines, g_strndup (reply + start, i - start));
        start = i + 1;
      }
  if (start != len)
    g_ptr_array_add (lines, g_strndup (reply + start, len - start));
  return g_steal_pointer (&lines);
}

/* The errno line, which every reply ends with. */
gboolean
natkit_wireguard_uapi_check_errno (const char  *reply,
                                   gsize        len,
                                   GError     **error)
{
  g_autoptr(GPtrArray) lines = split_lines (reply, len, error);
  guint64 value;

  if (lines == NULL)
    return FALSE;
  for (guint i = 0; i < lines->len; i++)
    {
      const char *line = g_ptr_array_index (lines, i);

      if (!g_str_has_prefix (line, "errno="))
        continue;
      if (!parse_number (line + 6, G_MAXINT32, &value))
        break;
      if (value == 0)
        return TRUE;
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "wireguard-go refused the configuration: %s (errno %d)",
                   g_strerror ((int) value), (int) value);
      return FALSE;
    }
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
               "wireguard-go's reply has no valid errno line");
  return FALSE;
}

/* A get=1 reply: the listen port, and per peer (by base64 public key) the
 * bytes received and sent and the last handshake. */
GVariant *
natkit_wireguard_uapi_parse_get (const char  *reply,
                                 gsize        len,
                                 guint16     *listen_port,
                                 GError     **error)
{
  g_autoptr(GPtrArray) lines = NULL;
  g_auto(GVariantBuilder) peers = G_VARIANT_BUILDER_INIT (G_VARIANT_TYPE ("a{s(ttx)}"));
  g_autofree char *current = NULL;
  guint64 rx = 0, tx = 0, handshake = 0, value;

  if (!natkit_wireguard_uapi_check_errno (reply, len, error))
    return NULL;
  lines = split_lines (reply, len, error);
  *listen_port = 0;
  for (guint i = 0; i <= lines->len; i++)
    {
      const char *line = i < lines->len ? g_ptr_array_index (lines, i) : "public_key=";
      const char *eq = strchr (line, '=');
      g_autofree char *key = NULL;
      const char *val;

      if (eq == NULL)
        continue;
      key = g_strndup (line, eq - line);
      val = eq + 1;
      if (g_str_equal (key, "public_key") || g_str_equal (key, "errno"))
        {
          guint8 raw[NATKIT_WIREGUARD_KEY_LEN];

          if (current)
            g_variant_builder_add (&peers, "{s(ttx)}", current, rx, tx, (gint64) handshake);
          g_clear_pointer (&current, g_free);
          rx = tx = handshake = 0;
          if (g_str_equal (key, "public_key") && i < lines->len)
            {
              if (!key_from_hex (val, raw))
                {
                  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "wireguard-go's reply has a malformed public key");
                  return NULL;
                }
              current = g_base64_encode (raw, sizeof raw);
            }
        }
      else if (g_str_equal (key, "listen_port") && current == NULL)
        {
          if (!parse_number (val, G_MAXUINT16, &value))
            {
              g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "wireguard-go's reply has a malformed listen port");
              return NULL;
            }
          *listen_port = value;
        }
      else if (current && (g_str_equal (key, "rx_bytes") || g_str_equal (key, "tx_bytes") ||
                           g_str_equal (key, "last_handshake_time_sec")))
        {
          if (!parse_number (val, G_MAXINT64, &value))
            {
              g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "wireguard-go's reply has a malformed %s", key);
              return NULL;
            }
          if (key[0] == 'r')
            rx = value;
          else if (key[0] == 't')
            tx = value;
          else
            handshake = value;
        }
    }
  return g_variant_ref_sink (g_variant_builder_end (&peers));
}
