/* test-pair.h: two managers, each with its own identity, over the
 * in-process signaling pair (natkit_signaling_new_pair()): B listens, A
 * connects. Shared by the tests that connect them (test-connect,
 * test-registry, test-ice).
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

typedef struct
{
  NatkitIdentity   *id_a;
  NatkitIdentity   *id_b;
  NatkitManager    *a;          /* connects */
  NatkitManager    *b;          /* listens */
  NatkitSignaling  *sig_a;
  NatkitSignaling  *sig_b;
  NatkitConnection *incoming;   /* at B */
  NatkitConnection *outgoing;   /* at A */
  GError           *error;      /* of A's connect */
  gboolean          done;       /* A's connect finished */
} TestPair;

static inline void
test_pair_init (TestPair     *p,
                NatkitConfig *config)
{
  g_autoptr(GError) error = NULL;

  p->id_a = natkit_identity_new_ephemeral (&error);
  g_assert_no_error (error);
  p->id_b = natkit_identity_new_ephemeral (&error);
  g_assert_no_error (error);
  p->a = natkit_manager_new_with_config (config);
  p->b = natkit_manager_new_with_config (config);
  natkit_manager_set_identity (p->a, p->id_a);
  natkit_manager_set_identity (p->b, p->id_b);
  natkit_signaling_new_pair (natkit_identity_get_peer_id (p->id_a),
                             natkit_identity_get_peer_id (p->id_b),
                             &p->sig_a, &p->sig_b);
}

/* Then let closes and idles run out: iterate the main context. */
static inline void
test_pair_clear (TestPair *p)
{
  g_clear_object (&p->incoming);
  g_clear_object (&p->outgoing);
  g_clear_object (&p->a);
  g_clear_object (&p->b);
  g_clear_object (&p->sig_a);
  g_clear_object (&p->sig_b);
  g_clear_object (&p->id_a);
  g_clear_object (&p->id_b);
  g_clear_error (&p->error);
}

static inline void
test_pair_incoming_cb (NatkitManager    *manager,
                       NatkitConnection *connection,
                       gpointer          user_data)
{
  TestPair *p = user_data;

  g_assert_null (p->incoming);
  p->incoming = g_object_ref (connection);
}

/* For natkit_manager_connect_*_async() with the pair as user data */
static inline void
test_pair_connect_cb (GObject      *source,
                      GAsyncResult *res,
                      gpointer      user_data)
{
  TestPair *p = user_data;

  p->outgoing = natkit_manager_connect_finish (NATKIT_MANAGER (source), res, &p->error);
  p->done = TRUE;
}

/* B listens, A connects with @methods; returns when A's connect failed,
 * or when it succeeded and B has the incoming connection. */
static inline void
test_pair_connect (TestPair           *p,
                   const char * const *methods,
                   NatkitConnectFlags  flags)
{
  g_autoptr(GError) error = NULL;

  g_assert_true (natkit_manager_listen (p->b, p->sig_b, &error));
  g_assert_no_error (error);
  g_signal_connect (p->b, "incoming", G_CALLBACK (test_pair_incoming_cb), p);
  natkit_manager_connect_with_signaling_async (p->a, p->sig_a,
                                               natkit_identity_get_peer_id (p->id_b),
                                               methods, flags, NULL,
                                               test_pair_connect_cb, p);
  while (!p->done || (!p->error && !p->incoming))
    g_main_context_iteration (NULL, TRUE);
}
