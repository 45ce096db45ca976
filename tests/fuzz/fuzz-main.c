/* fuzz-main.c: runs a libFuzzer target without libFuzzer (gcc builds)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Usage: fuzz-TARGET CORPUS_DIR [ITERATIONS]
 * Feeds every corpus file, then ITERATIONS deterministic mutations of them
 * (bit flips, truncations, extensions, byte splices). The clang sanitizer
 * build links the real libFuzzer instead.
 */
#include <glib.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
main (int    argc,
      char **argv)
{
  g_autoptr(GPtrArray) seeds = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GRand) rand = g_rand_new_with_seed (5769);
  guint iterations = argc > 2 ? (guint) atoi (argv[2]) : 20000;
  const char *name;

  if (argc < 2 || (dir = g_dir_open (argv[1], 0, NULL)) == NULL)
    {
      g_printerr ("usage: %s CORPUS_DIR [ITERATIONS]\n", argv[0]);
      return 2;
    }
  while ((name = g_dir_read_name (dir)) != NULL)
    {
      g_autofree char *path = g_build_filename (argv[1], name, NULL);
      char *contents;
      gsize length;

      if (g_file_get_contents (path, &contents, &length, NULL))
        g_ptr_array_add (seeds, g_bytes_new_take (contents, length));
    }
  g_ptr_array_add (seeds, g_bytes_new_static ("", 0));

  for (guint i = 0; i < seeds->len; i++)
    {
      gsize length;
      const guint8 *data = g_bytes_get_data (g_ptr_array_index (seeds, i), &length);
      LLVMFuzzerTestOneInput (data, length);
    }

  for (guint i = 0; i < iterations; i++)
    {
      GBytes *seed = g_ptr_array_index (seeds, g_rand_int_range (rand, 0, seeds->len));
      gsize length;
      const guint8 *data = g_bytes_get_data (seed, &length);
      gsize size = length + g_rand_int_range (rand, 0, 64);
      g_autofree guint8 *buffer = g_malloc0 (size + 1);
      guint flips = g_rand_int_range (rand, 1, 8);

      memcpy (buffer, data, length);
      for (guint f = 0; f < flips && size > 0; f++)
        {
          gsize at = g_rand_int_range (rand, 0, size);
          switch (g_rand_int_range (rand, 0, 3))
            {
            case 0: buffer[at] ^= 1u << g_rand_int_range (rand, 0, 8); break;
            case 1: buffer[at] = g_rand_int_range (rand, 0, 256); break;
            default: size = at; break;   /* truncate */
            }
        }
      LLVMFuzzerTestOneInput (buffer, size);
    }

  g_print ("1..1\nok 1 - %u seeds and %u mutations, no crash\n", seeds->len, iterations);
  return 0;
}
