/* natkit-identity.c: this node's Ed25519 key pair and peer ID
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib/gstdio.h>
#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "natkit.h"
#include "natkit-identity-private.h"
#include "natkit-util-private.h"

/**
 * NatkitIdentity:
 *
 * This node's identity: an Ed25519 key pair, and the peer ID derived from
 * its public key.
 *
 * A peer ID is the Base58 encoding (Bitcoin alphabet: no `0`, `O`, `I` or
 * `l`, no punctuation) of the SHA-256 hash of the raw 32-byte Ed25519
 * public key. It is safe to read aloud, double-click and paste. A peer
 * proves it owns an ID by signing with the matching private key; natkit
 * refuses a peer whose key does not hash to the ID it claims.
 *
 * The key is kept as a PKCS#8 PEM file that only its owner may read (mode
 * 0600). natkit refuses to use a key file that other users can read or that
 * belongs to someone else, and says how to fix it.
 */

#define ED25519_KEY_SIZE 32
#define ED25519_SIG_SIZE 64

struct _NatkitIdentity
{
  GObject           parent_instance;

  char             *filename;
  char             *peer_id;
  GBytes           *public_key;
  gnutls_privkey_t  privkey;
};

G_DEFINE_FINAL_TYPE (NatkitIdentity, natkit_identity, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PEER_ID,
  PROP_FILENAME,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

static void
natkit_identity_finalize (GObject *object)
{
  NatkitIdentity *self = NATKIT_IDENTITY (object);

  g_free (self->filename);
  g_free (self->peer_id);
  g_clear_pointer (&self->public_key, g_bytes_unref);
  if (self->privkey)
    gnutls_privkey_deinit (self->privkey);

  G_OBJECT_CLASS (natkit_identity_parent_class)->finalize (object);
}

static void
natkit_identity_get_property (GObject    *object,
                              guint       prop_id,
                              GValue     *value,
                              GParamSpec *pspec)
{
  NatkitIdentity *self = NATKIT_IDENTITY (object);

  switch (prop_id)
    {
    case PROP_PEER_ID:
      g_value_set_string (value, self->peer_id);
      break;
    case PROP_FILENAME:
      g_value_set_string (value, self->filename);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_identity_class_init (NatkitIdentityClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = natkit_identity_finalize;
  object_class->get_property = natkit_identity_get_property;

  /**
   * NatkitIdentity:peer-id:
   *
   * This node's peer ID.
   */
  properties[PROP_PEER_ID] =
    g_param_spec_string ("peer-id", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * NatkitIdentity:filename:
   *
   * The key file, or %NULL for an ephemeral identity.
   */
  properties[PROP_FILENAME] =
    g_param_spec_string ("filename", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
natkit_identity_init (NatkitIdentity *self)
{
}

static gboolean
set_gnutls_error (GError     **error,
                  int          code,
                  const char  *what)
{
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
               "%s: %s", what, gnutls_strerror (code));
  return FALSE;
}

/* Takes ownership of @x509 in every case. */
static NatkitIdentity *
identity_from_x509 (gnutls_x509_privkey_t   x509,
                    const char             *filename,
                    GError                **error)
{
  g_autoptr(NatkitIdentity) self = g_object_new (NATKIT_TYPE_IDENTITY, NULL);
  gnutls_pubkey_t pubkey = NULL;
  gnutls_datum_t x = { NULL, 0 };
  gnutls_ecc_curve_t curve;
  int ret;

  if (gnutls_x509_privkey_get_pk_algorithm (x509) != GNUTLS_PK_EDDSA_ED25519)
    {
      gnutls_x509_privkey_deinit (x509);
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The identity key %s is not an Ed25519 key. Move it away "
                   "and natkit will create a new identity (your peer ID will "
                   "change).", filename ? filename : "");
      return NULL;
    }

  ret = gnutls_privkey_init (&self->privkey);
  if (ret < 0)
    {
      gnutls_x509_privkey_deinit (x509);
      set_gnutls_error (error, ret, "Cannot set up the identity key");
      return NULL;
    }

  ret = gnutls_privkey_import_x509 (self->privkey, x509,
                                    GNUTLS_PRIVKEY_IMPORT_AUTO_RELEASE);
  if (ret < 0)
    {
      gnutls_x509_privkey_deinit (x509);
      set_gnutls_error (error, ret, "Cannot use the identity key");
      return NULL;
    }

  if ((ret = gnutls_pubkey_init (&pubkey)) < 0 ||
      (ret = gnutls_pubkey_import_privkey (pubkey, self->privkey, 0, 0)) < 0 ||
      (ret = gnutls_pubkey_export_ecc_raw2 (pubkey, &curve, &x, NULL,
                                            GNUTLS_EXPORT_FLAG_NO_LZ)) < 0)
    {
      if (pubkey)
        gnutls_pubkey_deinit (pubkey);
      set_gnutls_error (error, ret, "Cannot read the identity's public key");
      return NULL;
    }
  gnutls_pubkey_deinit (pubkey);

  if (x.size != ED25519_KEY_SIZE)
    {
      gnutls_free (x.data);
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The identity key %s holds a malformed public key. Move it "
                   "away and natkit will create a new identity.",
                   filename ? filename : "");
      return NULL;
    }

  self->public_key = g_bytes_new (x.data, x.size);
  gnutls_free (x.data);
  self->peer_id = natkit_peer_id_from_public_key (self->public_key);
  self->filename = g_strdup (filename);

  return g_steal_pointer (&self);
}

static gnutls_x509_privkey_t
generate_key (GError **error)
{
  gnutls_x509_privkey_t x509 = NULL;
  int ret;

  if ((ret = gnutls_x509_privkey_init (&x509)) < 0 ||
      (ret = gnutls_x509_privkey_generate (x509, GNUTLS_PK_EDDSA_ED25519,
                                           0, 0)) < 0)
    {
      if (x509)
        gnutls_x509_privkey_deinit (x509);
      set_gnutls_error (error, ret, "Cannot generate an Ed25519 key");
      return NULL;
    }
  return x509;
}

/**
 * natkit_identity_new_ephemeral:
 * @error: return location for a #GError
 *
 * Creates an identity that lives only in memory, for tests and one-off
 * tools. Its peer ID changes every time.
 *
 * Returns: (transfer full) (nullable): a new identity
 */
NatkitIdentity *
natkit_identity_new_ephemeral (GError **error)
{
  gnutls_x509_privkey_t x509 = generate_key (error);

  if (x509 == NULL)
    return NULL;
  return identity_from_x509 (x509, NULL, error);
}

static gboolean
check_key_file (const char  *filename,
                GError     **error)
{
  GStatBuf st;

  if (g_stat (filename, &st) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "Cannot read the identity key %s: %s",
                   filename, g_strerror (saved_errno));
      return FALSE;
    }

  if (!S_ISREG (st.st_mode))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The identity key %s is not a regular file. Remove it and "
                   "natkit will create a new identity.", filename);
      return FALSE;
    }

  if (st.st_uid != geteuid ())
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The identity key %s belongs to another user (uid %u). "
                   "natkit only uses a key that belongs to the user running it: "
                   "use your own configuration folder, or chown the file if "
                   "it is really yours.", filename, (guint) st.st_uid);
      return FALSE;
    }

  if ((st.st_mode & 077) != 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The identity key %s can be read or changed by other users "
                   "(mode %04o), so someone else may have a copy of it; natkit "
                   "refuses to use it. If you trust it, run “chmod 600 %s”; "
                   "otherwise delete it and natkit will create a new identity "
                   "(your peer ID will change).",
                   filename, (guint) (st.st_mode & 07777), filename);
      return FALSE;
    }

  return TRUE;
}

/**
 * natkit_identity_load:
 * @filename: (type filename): the key file
 * @error: return location for a #GError
 *
 * Reads an identity. Refuses a key file that other users can read or that
 * belongs to another user.
 *
 * Returns: (transfer full) (nullable): the identity, or %NULL with a
 *   %NATKIT_ERROR_IDENTITY error that says what to do
 */
NatkitIdentity *
natkit_identity_load (const char  *filename,
                      GError     **error)
{
  g_autofree char *contents = NULL;
  g_autoptr(GError) local_error = NULL;
  gnutls_x509_privkey_t x509 = NULL;
  gnutls_datum_t datum;
  gsize length;
  int ret;

  g_return_val_if_fail (filename != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (!check_key_file (filename, error))
    return NULL;

  if (!g_file_get_contents (filename, &contents, &length, &local_error))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "Cannot read the identity key: %s", local_error->message);
      return NULL;
    }

  datum.data = (unsigned char *) contents;
  datum.size = length;
  if ((ret = gnutls_x509_privkey_init (&x509)) < 0 ||
      (ret = gnutls_x509_privkey_import_pkcs8 (x509, &datum, GNUTLS_X509_FMT_PEM,
                                               NULL, GNUTLS_PKCS_PLAIN)) < 0)
    {
      if (x509)
        gnutls_x509_privkey_deinit (x509);
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The identity key %s is damaged (%s). Restore it from a "
                   "backup, or move it away and natkit will create a new "
                   "identity (your peer ID will change).",
                   filename, gnutls_strerror (ret));
      return NULL;
    }

  return identity_from_x509 (x509, filename, error);
}

static gboolean
save_key (gnutls_x509_privkey_t   x509,
          const char             *filename,
          GError                **error)
{
  g_autofree char *dir = g_path_get_dirname (filename);
  g_autoptr(GError) local_error = NULL;
  gnutls_datum_t pem = { NULL, 0 };
  gboolean ok;
  int ret;

  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "Cannot create the folder %s for the identity key: %s",
                   dir, g_strerror (saved_errno));
      return FALSE;
    }

  ret = gnutls_x509_privkey_export2_pkcs8 (x509, GNUTLS_X509_FMT_PEM, NULL,
                                           GNUTLS_PKCS_PLAIN, &pem);
  if (ret < 0)
    return set_gnutls_error (error, ret, "Cannot encode the new identity key");

  ok = g_file_set_contents_full (filename, (const char *) pem.data, pem.size,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                 &local_error);
  gnutls_memset (pem.data, 0, pem.size);
  gnutls_free (pem.data);

  if (!ok)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "Cannot save the new identity key: %s", local_error->message);
      return FALSE;
    }
  return TRUE;
}

/**
 * natkit_identity_load_or_create:
 * @filename: (type filename): the key file
 * @error: return location for a #GError
 *
 * Reads the identity in @filename, creating a new key pair there (mode
 * 0600, in a folder created with mode 0700) when the file does not exist.
 *
 * Returns: (transfer full) (nullable): the identity
 */
NatkitIdentity *
natkit_identity_load_or_create (const char  *filename,
                                GError     **error)
{
  gnutls_x509_privkey_t x509;

  g_return_val_if_fail (filename != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (g_file_test (filename, G_FILE_TEST_EXISTS) ||
      g_file_test (filename, G_FILE_TEST_IS_SYMLINK))
    return natkit_identity_load (filename, error);

  x509 = generate_key (error);
  if (x509 == NULL)
    return NULL;

  if (!save_key (x509, filename, error))
    {
      gnutls_x509_privkey_deinit (x509);
      return NULL;
    }

  g_debug ("created a new identity key in %s", filename);
  return identity_from_x509 (x509, filename, error);
}

/**
 * natkit_identity_get_peer_id:
 * @self: an identity
 *
 * Returns: this node's peer ID
 */
const char *
natkit_identity_get_peer_id (NatkitIdentity *self)
{
  g_return_val_if_fail (NATKIT_IS_IDENTITY (self), NULL);
  return self->peer_id;
}

/* For the secure session (natkit-session.c): the key it signs the DTLS
 * handshake with. Owned by @self. */
gnutls_privkey_t
_natkit_identity_get_privkey (NatkitIdentity *self)
{
  g_return_val_if_fail (NATKIT_IS_IDENTITY (self), NULL);
  return self->privkey;
}

/**
 * natkit_identity_get_filename:
 * @self: an identity
 *
 * Returns: (nullable) (type filename): the key file, or %NULL when ephemeral
 */
const char *
natkit_identity_get_filename (NatkitIdentity *self)
{
  g_return_val_if_fail (NATKIT_IS_IDENTITY (self), NULL);
  return self->filename;
}

/**
 * natkit_identity_get_public_key:
 * @self: an identity
 *
 * Returns: (transfer full): the raw 32-byte Ed25519 public key
 */
GBytes *
natkit_identity_get_public_key (NatkitIdentity *self)
{
  g_return_val_if_fail (NATKIT_IS_IDENTITY (self), NULL);
  return g_bytes_ref (self->public_key);
}

/**
 * natkit_identity_sign:
 * @self: an identity
 * @data: the data to sign
 * @error: return location for a #GError
 *
 * Signs @data with the private key (Ed25519, RFC 8032).
 *
 * Returns: (transfer full) (nullable): the 64-byte signature
 */
GBytes *
natkit_identity_sign (NatkitIdentity  *self,
                      GBytes          *data,
                      GError         **error)
{
  gnutls_datum_t in, sig = { NULL, 0 };
  GBytes *result;
  gsize size;
  int ret;

  g_return_val_if_fail (NATKIT_IS_IDENTITY (self), NULL);
  g_return_val_if_fail (data != NULL, NULL);

  in.data = (unsigned char *) g_bytes_get_data (data, &size);
  in.size = size;
  ret = gnutls_privkey_sign_data2 (self->privkey, GNUTLS_SIGN_EDDSA_ED25519,
                                   0, &in, &sig);
  if (ret < 0)
    {
      set_gnutls_error (error, ret, "Cannot sign with the identity key");
      return NULL;
    }

  result = g_bytes_new (sig.data, sig.size);
  gnutls_free (sig.data);
  return result;
}

/**
 * natkit_identity_verify:
 * @public_key: a raw 32-byte Ed25519 public key
 * @data: the signed data
 * @signature: the signature
 * @error: return location for a #GError
 *
 * Checks an Ed25519 signature.
 *
 * Returns: %TRUE if @signature is @public_key's signature of @data
 */
gboolean
natkit_identity_verify (GBytes  *public_key,
                        GBytes  *data,
                        GBytes  *signature,
                        GError **error)
{
  gnutls_pubkey_t pubkey = NULL;
  gnutls_datum_t x, in, sig;
  gsize size;
  int ret;

  g_return_val_if_fail (public_key != NULL, FALSE);
  g_return_val_if_fail (data != NULL, FALSE);
  g_return_val_if_fail (signature != NULL, FALSE);

  x.data = (unsigned char *) g_bytes_get_data (public_key, &size);
  x.size = size;
  if (size != ED25519_KEY_SIZE)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The peer's public key is %" G_GSIZE_FORMAT " bytes long; "
                   "an Ed25519 key is %d", size, ED25519_KEY_SIZE);
      return FALSE;
    }

  in.data = (unsigned char *) g_bytes_get_data (data, &size);
  in.size = size;
  sig.data = (unsigned char *) g_bytes_get_data (signature, &size);
  sig.size = size;

  if ((ret = gnutls_pubkey_init (&pubkey)) < 0 ||
      (ret = gnutls_pubkey_import_ecc_raw (pubkey, GNUTLS_ECC_CURVE_ED25519,
                                           &x, NULL)) < 0)
    {
      if (pubkey)
        gnutls_pubkey_deinit (pubkey);
      return set_gnutls_error (error, ret, "The peer's public key is unusable");
    }

  ret = gnutls_pubkey_verify_data2 (pubkey, GNUTLS_SIGN_EDDSA_ED25519, 0,
                                    &in, &sig);
  gnutls_pubkey_deinit (pubkey);
  if (ret < 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "The signature does not match the peer's key: %s",
                   gnutls_strerror (ret));
      return FALSE;
    }
  return TRUE;
}

/**
 * natkit_peer_id_from_public_key:
 * @public_key: a raw 32-byte Ed25519 public key
 *
 * Returns: (transfer full): the peer ID that belongs to @public_key
 */
char *
natkit_peer_id_from_public_key (GBytes *public_key)
{
  guint8 digest[32];
  gsize digest_len = sizeof digest;
  g_autoptr(GChecksum) checksum = g_checksum_new (G_CHECKSUM_SHA256);
  gsize size;
  const guint8 *data;

  g_return_val_if_fail (public_key != NULL, NULL);

  data = g_bytes_get_data (public_key, &size);
  g_checksum_update (checksum, data, size);
  g_checksum_get_digest (checksum, digest, &digest_len);
  return _natkit_base58_encode (digest, digest_len);
}

/**
 * natkit_peer_id_validate:
 * @peer_id: text that should be a peer ID
 * @error: return location for a #GError
 *
 * Checks that @peer_id is well formed (it says nothing about whether such
 * a peer exists).
 *
 * Returns: %TRUE if well formed, or %FALSE with a
 *   %NATKIT_ERROR_INVALID_ARGUMENT error that says what is wrong
 */
gboolean
natkit_peer_id_validate (const char  *peer_id,
                         GError     **error)
{
  g_autoptr(GBytes) decoded = NULL;
  gsize length;

  g_return_val_if_fail (peer_id != NULL, FALSE);

  length = strlen (peer_id);
  if (length == 0 || length > NATKIT_PEER_ID_MAX_LENGTH)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%.60s” is not a peer ID: a peer ID is 43 or 44 letters "
                   "and digits (run “nat-tool id” on the peer to see its ID)",
                   peer_id);
      return FALSE;
    }

  decoded = _natkit_base58_decode (peer_id);
  if (decoded == NULL)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a peer ID: it contains characters a peer ID "
                   "never has (it uses letters and digits except 0, O, I and "
                   "l); check that it was copied whole", peer_id);
      return FALSE;
    }

  if (g_bytes_get_size (decoded) != 32)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a peer ID: it is too %s; check that it was "
                   "copied whole", peer_id,
                   g_bytes_get_size (decoded) < 32 ? "short" : "long");
      return FALSE;
    }

  return TRUE;
}

/**
 * natkit_peer_id_matches_public_key:
 * @peer_id: a peer ID
 * @public_key: a raw 32-byte Ed25519 public key
 *
 * Returns: whether @public_key is the key @peer_id was made from
 */
gboolean
natkit_peer_id_matches_public_key (const char *peer_id,
                                   GBytes     *public_key)
{
  g_autofree char *expected = NULL;

  g_return_val_if_fail (peer_id != NULL, FALSE);
  g_return_val_if_fail (public_key != NULL, FALSE);

  expected = natkit_peer_id_from_public_key (public_key);
  return g_str_equal (expected, peer_id);
}
