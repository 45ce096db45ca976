/* test-identity.c: key creation, reload, permissions, signatures, peer IDs
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>

#include <sys/stat.h>

#include <glib/gstdio.h>

#include "natkit.h"
#include "natkit-util-private.h"

typedef struct
{
  char *dir;
  char *key;
} Fixture;

static void
setup (Fixture       *f,
       gconstpointer  data)
{
  f->dir = g_dir_make_tmp ("natkit-id-XXXXXX", NULL);
  f->key = g_build_filename (f->dir, "sub", "identity.key", NULL);
}

static void
teardown (Fixture       *f,
          gconstpointer  data)
{
  g_autofree char *sub = g_path_get_dirname (f->key);

  g_unlink (f->key);
  g_rmdir (sub);
  g_rmdir (f->dir);
  g_free (f->key);
  g_free (f->dir);
}

static void
test_create_reload (Fixture       *f,
                    gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) first = NULL;
  g_autoptr(NatkitIdentity) second = NULL;
  g_autoptr(GBytes) key1 = NULL, key2 = NULL;
  g_autofree char *sub = g_path_get_dirname (f->key);
  GStatBuf st;

  first = natkit_identity_load_or_create (f->key, &error);
  g_assert_no_error (error);
  g_assert_cmpint (g_stat (f->key, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0600);
  g_assert_cmpint (g_stat (sub, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  g_assert_cmpstr (natkit_identity_get_filename (first), ==, f->key);

  second = natkit_identity_load_or_create (f->key, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (natkit_identity_get_peer_id (first), ==,
                   natkit_identity_get_peer_id (second));
  key1 = natkit_identity_get_public_key (first);
  key2 = natkit_identity_get_public_key (second);
  g_assert_true (g_bytes_equal (key1, key2));
  g_assert_cmpuint (g_bytes_get_size (key1), ==, 32);
  g_assert_true (natkit_peer_id_validate (natkit_identity_get_peer_id (first), &error));
  g_assert_true (natkit_peer_id_matches_public_key (natkit_identity_get_peer_id (first), key1));
}

static void
test_refuse_readable (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) identity = natkit_identity_load_or_create (f->key, NULL);
  NatkitIdentity *again;

  g_assert_nonnull (identity);
  g_assert_cmpint (g_chmod (f->key, 0644), ==, 0);
  again = natkit_identity_load_or_create (f->key, &error);
  g_assert_null (again);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
  g_assert_nonnull (strstr (error->message, f->key));
  g_assert_nonnull (strstr (error->message, "mode 0644"));
  g_assert_nonnull (strstr (error->message, "chmod 600"));
  g_clear_error (&error);

  g_assert_cmpint (g_chmod (f->key, 0600), ==, 0);
  again = natkit_identity_load (f->key, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (natkit_identity_get_peer_id (again), ==,
                   natkit_identity_get_peer_id (identity));
  g_object_unref (again);
}

static void
test_corrupt (Fixture       *f,
              gconstpointer  data)
{
  const char *contents[] = {
    "",
    "garbage\n",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
  };
  g_autofree char *sub = g_path_get_dirname (f->key);

  g_assert_cmpint (g_mkdir_with_parents (sub, 0700), ==, 0);
  for (guint i = 0; i < G_N_ELEMENTS (contents); i++)
    {
      g_autoptr(GError) error = NULL;
      NatkitIdentity *identity;

      g_assert_true (g_file_set_contents_full (f->key, contents[i], -1,
                                               G_FILE_SET_CONTENTS_NONE, 0600, NULL));
      identity = natkit_identity_load_or_create (f->key, &error);
      g_assert_null (identity);
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
      g_assert_nonnull (strstr (error->message, "is damaged"));
      g_assert_nonnull (strstr (error->message, "move it away"));
    }

  /* A folder where the key should be. */
  g_unlink (f->key);
  g_assert_cmpint (g_mkdir (f->key, 0700), ==, 0);
  {
    g_autoptr(GError) error = NULL;
    g_assert_null (natkit_identity_load_or_create (f->key, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
    g_assert_nonnull (strstr (error->message, "not a regular file"));
  }
  g_rmdir (f->key);
}

static void
test_sign_verify (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) a = natkit_identity_new_ephemeral (&error);
  g_autoptr(NatkitIdentity) b = natkit_identity_new_ephemeral (&error);
  g_autoptr(GBytes) data = g_bytes_new_static ("challenge", 9);
  g_autoptr(GBytes) other = g_bytes_new_static ("challengf", 9);
  g_autoptr(GBytes) sig = NULL, key_a = NULL, key_b = NULL;

  g_assert_no_error (error);
  g_assert_cmpstr (natkit_identity_get_peer_id (a), !=, natkit_identity_get_peer_id (b));
  g_assert_null (natkit_identity_get_filename (a));

  sig = natkit_identity_sign (a, data, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (g_bytes_get_size (sig), ==, 64);
  key_a = natkit_identity_get_public_key (a);
  key_b = natkit_identity_get_public_key (b);

  g_assert_true (natkit_identity_verify (key_a, data, sig, &error));
  g_assert_no_error (error);
  g_assert_false (natkit_identity_verify (key_a, other, sig, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
  g_clear_error (&error);
  g_assert_false (natkit_identity_verify (key_b, data, sig, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
  g_clear_error (&error);

  /* A peer ID belongs to exactly one key. */
  g_assert_true (natkit_peer_id_matches_public_key (natkit_identity_get_peer_id (a), key_a));
  g_assert_false (natkit_peer_id_matches_public_key (natkit_identity_get_peer_id (a), key_b));
}

static void
test_peer_id_derivation (void)
{
  /* RFC 8032 section 7.1, TEST 1 public key. */
  static const guint8 pk[32] = {
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3,
    0xc9, 0x64, 0xe0, 0x7a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25,
    0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
  };
  g_autoptr(GBytes) key = g_bytes_new_static (pk, sizeof pk);
  g_autofree char *id = natkit_peer_id_from_public_key (key);
  g_autoptr(GBytes) decoded = _natkit_base58_decode (id);
  g_autoptr(GChecksum) sha = g_checksum_new (G_CHECKSUM_SHA256);
  guint8 digest[32];
  gsize len = sizeof digest;

  g_checksum_update (sha, pk, sizeof pk);
  g_checksum_get_digest (sha, digest, &len);
  g_assert_cmpmem (g_bytes_get_data (decoded, NULL), g_bytes_get_size (decoded),
                   digest, sizeof digest);
  g_assert_true (natkit_peer_id_validate (id, NULL));
}

static void
test_base58_vectors (void)
{
  /* From the Base58 draft (draft-msporny-base58) test vectors. */
  const struct { const char *hex; const char *b58; } vectors[] = {
    { "48656c6c6f20576f726c6421", "2NEpo7TZRRrLZSi2U" },
    { "54686520717569636b2062726f776e20666f78206a756d7073206f76657220746865206c617a7920646f672e",
      "USm3fpXnKG5EUBx2ndxBDMPVciP5hGey2Jh4NDv6gmeo1LkMeiKrLJUUBk6Z" },
    { "0000287fb4cd", "11233QC4" },
    { "", "" },
    { "00", "1" },
    { "ff", "5Q" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (vectors); i++)
    {
      gsize n = strlen (vectors[i].hex) / 2;
      g_autofree guint8 *raw = g_malloc0 (n + 1);
      g_autofree char *encoded = NULL;
      g_autoptr(GBytes) decoded = NULL;

      for (gsize j = 0; j < n; j++)
        raw[j] = g_ascii_xdigit_value (vectors[i].hex[2 * j]) * 16 +
                 g_ascii_xdigit_value (vectors[i].hex[2 * j + 1]);
      encoded = _natkit_base58_encode (raw, n);
      g_assert_cmpstr (encoded, ==, vectors[i].b58);
      decoded = _natkit_base58_decode (vectors[i].b58);
      g_assert_cmpmem (g_bytes_get_data (decoded, NULL), g_bytes_get_size (decoded), raw, n);
    }

  g_assert_null (_natkit_base58_decode ("0OIl"));
}

static void
test_peer_id_validate (void)
{
  const struct { const char *text; const char *pattern; } bad[] = {
    { "", "*is not a peer ID*43 or 44*" },
    { "EqpSzCVf4Hqc2S9SCQxey", "*too short*" },
    { "EqpSzCVf4Hqc2S9SCQxeyuSjYCBWLYbbVe9zhcHx7NJ0", "*characters a peer ID never has*" },
    { "EqpSzCVf4Hqc2S9SCQxeyuSjYCBWLYbbVe9zhcHx7NJm@198.51.100.1:7000", "*is not a peer ID*" },
    { "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", "*too long*" },
  };

  g_assert_true (natkit_peer_id_validate ("EqpSzCVf4Hqc2S9SCQxeyuSjYCBWLYbbVe9zhcHx7NJm", NULL));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;

      g_assert_false (natkit_peer_id_validate (bad[i].text, &error));
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
      if (!g_pattern_match_simple (bad[i].pattern, error->message))
        g_error ("“%s” does not match “%s”", error->message, bad[i].pattern);
    }
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("Ed25519 identities, peer IDs and the key file's safety checks");

  g_test_add ("/natkit/identity/create-reload", Fixture, NULL, setup, test_create_reload, teardown);
  g_test_add ("/natkit/identity/refuse-readable", Fixture, NULL, setup, test_refuse_readable, teardown);
  g_test_add ("/natkit/identity/corrupt", Fixture, NULL, setup, test_corrupt, teardown);
  g_test_add_func ("/natkit/identity/sign-verify", test_sign_verify);
  g_test_add_func ("/natkit/identity/peer-id-derivation", test_peer_id_derivation);
  g_test_add_func ("/natkit/identity/base58-vectors", test_base58_vectors);
  g_test_add_func ("/natkit/identity/peer-id-validate", test_peer_id_validate);

  return g_test_run ();
}
