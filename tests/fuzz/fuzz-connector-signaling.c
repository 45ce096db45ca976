/* fuzz-connector-signaling.c: every signaling body the manager reads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A manager listens on one end of an in-process signaling pair; each input
 * arrives from the other end as one message (NUL-terminated, as channels
 * hand them over) and goes through the connector's strict JSON check,
 * typed members and dispatch (connect, accept, reject, attempt, close,
 * unknown ops and sessions). No traversal plugin is loaded, so a
 * "connect" is answered with a "reject" and nothing leaves the process.
 * The leak checker sees what a message leaves behind.
 */
#include "config.h"

#include <string.h>

#include "natkit.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static NatkitManager *manager;
static NatkitSignaling *ours;
static NatkitSignaling *theirs;
static guint replies;

static void
reply_cb (NatkitSignaling *signaling,
          const char      *from,
          const char      *text,
          gpointer         user_data)
{
  replies++;
  /* what the manager answers is well-formed */
  g_assert_nonnull (strstr (text, "\"natkit\""));
}

static void
set_up (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) identity = NULL;
  g_autoptr(NatkitConfig) config = NULL;

  if (manager)
    return;
  g_setenv ("NATKIT_PLUGIN_PATH", "", TRUE);
  g_setenv ("NATKIT_PLUGIN_SYSTEM_PATH", "", TRUE);
  identity = natkit_identity_new_ephemeral (&error);
  g_assert_no_error (error);
  config = natkit_config_new ();
  manager = natkit_manager_new_with_config (config);
  natkit_manager_set_identity (manager, identity);
  natkit_signaling_new_pair (natkit_identity_get_peer_id (identity), "FuzzPeer",
                             &ours, &theirs);
  g_assert_true (natkit_manager_listen (manager, ours, &error));
  g_signal_connect (theirs, "message-received", G_CALLBACK (reply_cb), NULL);
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autofree char *text = NULL;
  const char *nul;

  set_up ();
  /* a channel carries text: up to the first NUL, as a C string */
  nul = memchr (data, '\0', size);
  text = g_strndup ((const char *) data, nul ? (gsize) (nul - (const char *) data) : size);

  natkit_signaling_send_async (theirs, natkit_signaling_get_local_peer_id (ours), text,
                               NULL, NULL, NULL);
  for (guint i = 0; i < 100 && g_main_context_iteration (NULL, FALSE); i++)
    ;
  return 0;
}
