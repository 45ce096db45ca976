/* natkit-util.c: small helpers shared inside libnatkit
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit-util-private.h"

/* Base58 with the Bitcoin alphabet: no 0, O, I or l to confuse, no
 * punctuation, so a peer ID survives being read aloud, double-clicked and
 * pasted into a chat. Inputs here are short (32-byte hashes), so the
 * quadratic base conversion is fine. */
static const char base58_alphabet[] =
  "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/* Multiplies the big-endian number in @digits (base @from) by @from and adds
 * @carry, keeping it in base @to. @used is how many low digits are in use. */
static gboolean
base_convert_step (guint8 *digits,
                   gsize   size,
                   gsize  *used,
                   guint   carry,
                   guint   from,
                   guint   to)
{
  gsize k = 0;

  for (gsize j = size; j > 0 && (carry != 0 || k < *used); j--, k++)
    {
      carry += from * digits[j - 1];
      digits[j - 1] = carry % to;
      carry /= to;
    }
  *used = k;
  return carry == 0;
}

char *
_natkit_base58_encode (const guint8 *data,
                       gsize         length)
{
  gsize zeros = 0, size, used = 0, i;
  g_autofree guint8 *digits = NULL;
  GString *out;

  while (zeros < length && data[zeros] == 0)
    zeros++;

  /* log(256) / log(58) ≈ 1.366 digits per byte. */
  size = (length - zeros) * 138 / 100 + 1;
  digits = g_malloc0 (size);

  for (i = zeros; i < length; i++)
    base_convert_step (digits, size, &used, data[i], 256, 58);

  out = g_string_sized_new (zeros + size + 1);
  for (i = 0; i < zeros; i++)
    g_string_append_c (out, '1');
  for (i = size - used; i < size; i++)
    g_string_append_c (out, base58_alphabet[digits[i]]);

  return g_string_free (out, FALSE);
}

GBytes *
_natkit_base58_decode (const char *text)
{
  gsize length = strlen (text), zeros = 0, size, used = 0, i;
  g_autofree guint8 *bytes = NULL;
  GByteArray *out;

  while (zeros < length && text[zeros] == '1')
    zeros++;

  size = (length - zeros) * 733 / 1000 + 1;   /* log(58) / log(256) */
  bytes = g_malloc0 (size);

  for (i = zeros; i < length; i++)
    {
      const char *p = strchr (base58_alphabet, text[i]);

      if (p == NULL)
        return NULL;
      if (!base_convert_step (bytes, size, &used, p - base58_alphabet, 58, 256))
        return NULL;
    }

  out = g_byte_array_sized_new (zeros + used);
  for (i = 0; i < zeros; i++)
    g_byte_array_append (out, (const guint8 *) "\0", 1);
  g_byte_array_append (out, bytes + size - used, used);

  return g_byte_array_free_to_bytes (out);
}

/* The start time of a process (clock ticks since boot, field 22 of
 * /proc/PID/stat), so a record naming a PID can tell a live owner from a
 * new process that reused the number.  0 when the process does not exist. */
guint64
_natkit_process_start_time (int pid)
{
  g_autofree char *path = g_strdup_printf ("/proc/%d/stat", pid);
  g_autofree char *text = NULL;
  g_auto(GStrv) fields = NULL;
  const char *p;

  if (pid <= 0 || !g_file_get_contents (path, &text, NULL, NULL))
    return 0;
  /* the command name (field 2) is in parentheses and may hold spaces */
  p = strrchr (text, ')');
  if (p == NULL)
    return 0;
  fields = g_strsplit (p + 1, " ", 0);
  /* fields[0] is empty (the space after ')'), [1] is field 3, so field 22
   * is at index 20 */
  if (g_strv_length (fields) < 21)
    return 0;
  return g_ascii_strtoull (fields[20], NULL, 10);
}
