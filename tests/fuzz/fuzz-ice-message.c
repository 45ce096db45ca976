/* fuzz-ice-message.c: every "ice" signaling body the ice plugin parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes, NUL-terminated as the signaling channel hands them
 * over, to natkit_ice_message_parse() (the one-object check, json-glib,
 * then the members and each candidate). Checks what the plugin relies on
 * in an accepted body — credentials of the allowed sizes, at most 32
 * candidates, each with a sendable address — and that building it again
 * gives a body that parses to the same. Everything is freed: the leak
 * checker sees the rest.
 */
#include "config.h"

#include <string.h>
#include <gio/gio.h>

#include "natkit-ice-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static void
check (NatkitIceMessage *m)
{
  g_assert_nonnull (m->session);
  g_assert_cmpuint (strlen (m->session), >=, 1);
  g_assert_cmpuint (strlen (m->session), <=, 64);
  g_assert_cmpuint (strlen (m->ufrag), >=, 4);
  g_assert_cmpuint (strlen (m->ufrag), <=, 256);
  g_assert_cmpuint (strlen (m->pwd), >=, 22);
  g_assert_cmpuint (strlen (m->pwd), <=, 256);
  g_assert_cmpuint (m->candidates->len, <=, NATKIT_ICE_MAX_CANDIDATES);
  for (guint i = 0; i < m->candidates->len; i++)
    {
      NatkitIceCandidate *c = &g_array_index (m->candidates, NatkitIceCandidate, i);

      g_assert_true (G_IS_INET_SOCKET_ADDRESS (c->address));
      g_assert_true (natkit_ice_address_is_sendable (c->address, NULL));
      g_assert_cmpuint (c->priority, >=, 1);
      g_assert_cmpuint (strlen (c->foundation), >=, 1);
      g_assert_cmpstr (natkit_ice_candidate_type_to_string (c->type), !=, "unknown");
    }
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autofree char *text = g_malloc (size + 1);
  g_autoptr(NatkitIceMessage) m = NULL;
  g_autoptr(GError) error = NULL;

  memcpy (text, data, size);
  text[size] = '\0';

  m = natkit_ice_message_parse (text, &error);
  if (m == NULL)
    {
      g_assert_nonnull (error);
      return 0;
    }
  g_assert_no_error (error);
  check (m);
  {
    g_autofree char *rebuilt = natkit_ice_message_build (m->session, m->ufrag, m->pwd,
                                                         (NatkitIceCandidate *) m->candidates->data,
                                                         m->candidates->len, m->end,
                                                         m->restart);
    g_autoptr(NatkitIceMessage) again = natkit_ice_message_parse (rebuilt, NULL);

    /* a session or credentials with characters JSON escapes may make the
     * rebuilt body longer than 8 KiB; otherwise it must read the same */
    if (strlen (rebuilt) <= NATKIT_ICE_MAX_MESSAGE)
      {
        g_assert_nonnull (again);
        check (again);
        g_assert_cmpstr (again->session, ==, m->session);
        g_assert_cmpstr (again->ufrag, ==, m->ufrag);
        g_assert_cmpstr (again->pwd, ==, m->pwd);
        g_assert_cmpint (again->end, ==, m->end);
        g_assert_cmpint (again->restart, ==, m->restart);
        g_assert_cmpuint (again->candidates->len, ==, m->candidates->len);
        g_assert_cmpuint (again->dropped->len, ==, 0);
        for (guint i = 0; i < m->candidates->len; i++)
          {
            NatkitIceCandidate *a = &g_array_index (m->candidates, NatkitIceCandidate, i);
            NatkitIceCandidate *b = &g_array_index (again->candidates, NatkitIceCandidate, i);

            g_assert_cmpint (a->type, ==, b->type);
            g_assert_cmpuint (a->priority, ==, b->priority);
            g_assert_cmpstr (a->foundation, ==, b->foundation);
            g_assert_true (g_inet_address_equal (g_inet_socket_address_get_address (a->address),
                                                 g_inet_socket_address_get_address (b->address)));
            g_assert_cmpuint (g_inet_socket_address_get_port (a->address), ==,
                              g_inet_socket_address_get_port (b->address));
          }
      }
  }
  return 0;
}
