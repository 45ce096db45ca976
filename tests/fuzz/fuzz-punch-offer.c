/* fuzz-punch-offer.c: every "holepunch" signaling offer the plugin parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes, NUL-terminated as the signaling channel hands them
 * over, to natkit_punch_offer_parse() (the strict one-object check, then
 * json-glib, then the members); checks what the plugin relies on in an
 * accepted offer, and that building it again gives an offer that parses
 * to the same. Everything is freed: the leak checker sees the rest.
 */
#include "config.h"

#include <string.h>
#include <gio/gio.h>

#include "natkit-holepunch-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static void
check_candidates (GArray *candidates)
{
  g_assert_nonnull (candidates);
  g_assert_cmpuint (candidates->len, <=, NATKIT_PUNCH_MAX_CANDIDATES);
  for (guint i = 0; i < candidates->len; i++)
    {
      NatkitPunchCandidate *c = &g_array_index (candidates, NatkitPunchCandidate, i);

      g_assert_true (G_IS_INET_SOCKET_ADDRESS (c->address));
      g_assert_true (natkit_punch_address_is_sendable (c->address));
      g_assert_cmpstr (natkit_punch_candidate_type_to_string (c->type), !=, "unknown");
    }
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autofree char *text = g_malloc (size + 1);
  g_autofree char *session = NULL;
  g_autofree char *nat = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autoptr(GError) error = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];
  NatkitPunchMapping mapping;

  memcpy (text, data, size);
  text[size] = '\0';

  if (natkit_punch_offer_parse (text, &session, token, &candidates, &nat, &mapping, &error))
    {
      g_autofree char *rebuilt = NULL;
      g_autofree char *session2 = NULL;
      g_autofree char *nat2 = NULL;
      g_autoptr(GArray) candidates2 = NULL;
      guint8 token2[NATKIT_PUNCH_TOKEN_SIZE];
      NatkitPunchMapping mapping2;
      guint16 predicted[NATKIT_PUNCH_MAX_PREDICTED];
      guint n_predicted;

      g_assert_no_error (error);
      g_assert_cmpuint (strlen (text), <=, 8192);
      g_assert_nonnull (session);
      g_assert_cmpuint (strlen (session), >=, 1);
      g_assert_cmpuint (strlen (session), <=, 64);
      g_assert_true (nat == NULL || strlen (nat) <= 32);
      check_candidates (candidates);
      /* a mapping is one of the known kinds; a sequential one within its
       * limits, and what the plugin predicts from it stays in the port space */
      g_assert_cmpint (mapping.kind, >=, NATKIT_PUNCH_MAPPING_UNKNOWN);
      g_assert_cmpint (mapping.kind, <=, NATKIT_PUNCH_MAPPING_RANDOM);
      if (mapping.kind == NATKIT_PUNCH_MAPPING_SEQUENTIAL)
        {
          g_assert_cmpint (mapping.step, !=, 0);
          g_assert_cmpint (ABS (mapping.step), <=, NATKIT_PUNCH_MAX_STEP);
          g_assert_cmpuint (mapping.last_port, >=, 1);
        }
      else
        {
          g_assert_cmpint (mapping.step, ==, 0);
          g_assert_cmpuint (mapping.last_port, ==, 0);
        }
      n_predicted = natkit_punch_predict_ports (&mapping, G_MAXUINT, predicted);
      g_assert_cmpuint (n_predicted, <=, NATKIT_PUNCH_MAX_PREDICTED);
      for (guint i = 0; i < n_predicted; i++)
        g_assert_cmpuint (predicted[i], >=, 1);

      /* what we would send back parses to the same */
      rebuilt = natkit_punch_offer_build (session, token,
                                          (const NatkitPunchCandidate *) (gpointer) candidates->data,
                                          candidates->len, nat, &mapping);
      if (!natkit_punch_offer_parse (rebuilt, &session2, token2, &candidates2, &nat2, &mapping2, &error))
        g_error ("%s, rebuilt from an accepted offer, is refused: %s", rebuilt, error->message);
      g_assert_cmpstr (session2, ==, session);
      g_assert_cmpmem (token2, sizeof token2, token, sizeof token);
      g_assert_cmpstr (nat2, ==, nat);
      g_assert_cmpint (mapping2.kind, ==, mapping.kind);
      g_assert_cmpint (mapping2.step, ==, mapping.step);
      g_assert_cmpuint (mapping2.last_port, ==, mapping.last_port);
      g_assert_cmpuint (candidates2->len, ==, candidates->len);
      for (guint i = 0; i < candidates->len; i++)
        {
          NatkitPunchCandidate *a = &g_array_index (candidates, NatkitPunchCandidate, i);
          NatkitPunchCandidate *b = &g_array_index (candidates2, NatkitPunchCandidate, i);

          g_assert_cmpint (a->type, ==, b->type);
          g_assert_true (g_inet_address_equal (g_inet_socket_address_get_address (a->address),
                                               g_inet_socket_address_get_address (b->address)));
          g_assert_cmpuint (g_inet_socket_address_get_port (a->address), ==,
                            g_inet_socket_address_get_port (b->address));
        }
    }
  else
    {
      g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
      g_assert_null (session);
      g_assert_null (nat);
      g_assert_null (candidates);
    }
  return 0;
}
