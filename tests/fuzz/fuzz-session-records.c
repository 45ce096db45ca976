/* fuzz-session-records.c: what reaches an established secure session
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Keeps an established session pair over an in-memory path. The first
 * byte of each input picks what to do with the rest:
 *   odd:  deliver it as a raw datagram on the responder's path (forged or
 *         damaged DTLS records: they must be dropped, the session must stay
 *         up);
 *   even: have the initiator send it, authenticated, as one inner record
 *         (its first byte the type): what a buggy or hostile peer that
 *         holds the right key can make the responder parse, including
 *         PseudoTCP segments.
 * Nothing may crash or hang; a session the authenticated peer closed is
 * replaced.
 */
#include "config.h"

#include "natkit.h"
#include "natkit-session-private.h"
#include "test-memory-path.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

typedef struct
{
  NatkitIdentity *id_a, *id_b;
  TestMemoryPath *pa, *pb;
  NatkitSession  *a, *b;
} Pair;

static Pair pair;

static void
handshake_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  GError *error = NULL;

  if (!_natkit_session_handshake_finish (NATKIT_SESSION (source), res, &error))
    g_error ("fuzz-session-records: handshake failed: %s", error->message);
  (*(int *) user_data)++;
}

static void
pair_clear (void)
{
  g_clear_object (&pair.a);
  g_clear_object (&pair.b);
  g_clear_object (&pair.pa);
  g_clear_object (&pair.pb);
}

static void
pair_establish (void)
{
  int done = 0;

  if (pair.id_a == NULL)
    {
      pair.id_a = natkit_identity_new_ephemeral (NULL);
      pair.id_b = natkit_identity_new_ephemeral (NULL);
    }
  pair_clear ();
  test_memory_path_new_pair ("fuzz", 1200, &pair.pa, &pair.pb);
  pair.a = _natkit_session_new (pair.id_a, natkit_identity_get_peer_id (pair.id_b),
                                NATKIT_ROLE_INITIATOR);
  pair.b = _natkit_session_new (pair.id_b, natkit_identity_get_peer_id (pair.id_a),
                                NATKIT_ROLE_RESPONDER);
  _natkit_session_handshake_async (pair.b, NATKIT_PATH (pair.pb), 5000, NULL,
                                   handshake_cb, &done);
  _natkit_session_handshake_async (pair.a, NATKIT_PATH (pair.pa), 5000, NULL,
                                   handshake_cb, &done);
  while (done < 2)
    g_main_context_iteration (NULL, TRUE);
  /* let the stream open */
  for (int i = 0; i < 50 && g_main_context_iteration (NULL, FALSE); i++)
    ;
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  if (pair.a == NULL || !_natkit_session_is_established (pair.a) ||
      !_natkit_session_is_established (pair.b))
    pair_establish ();

  if (size < 1)
    return 0;

  if (data[0] & 1)
    {
      GBytes *datagram = g_bytes_new (data + 1, size - 1);

      test_memory_path_inject (pair.pb, datagram);
      g_bytes_unref (datagram);
      /* nobody can forge a record */
      g_assert_true (_natkit_session_is_established (pair.b));
    }
  else if (size >= 2 && size - 2 <= _natkit_session_get_max_datagram (pair.a))
    {
      _natkit_session_send_inner (pair.a, data[1], data + 2, size - 2, NULL);
    }

  for (int i = 0; i < 100 && g_main_context_iteration (NULL, FALSE); i++)
    ;
  return 0;
}
