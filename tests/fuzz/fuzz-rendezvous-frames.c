/* fuzz-rendezvous-frames.c: every frame natkit-server sends the client
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Splits arbitrary bytes into frames as the client's read loop does, and
 * hands each to the rendezvous client's message handler (registered, as
 * after a real registration): hello, result, error, signal, circuit,
 * circuit-closed and whatever else the bytes make.
 */
#include "config.h"

#include "natkit.h"
#include "natkit-rendezvous-private.h"
#include "natkit-wire-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

static void
circuit_offered_cb (NatkitRendezvous   *rendezvous,
                    NatkitRelayCircuit *circuit,
                    gpointer            user_data)
{
  g_assert_cmpuint (natkit_relay_circuit_get_id (circuit), !=, 0);
  g_assert_cmpuint (g_bytes_get_size (natkit_relay_circuit_get_token (circuit)), ==,
                    NATKIT_WIRE_TOKEN_SIZE);
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  static NatkitIdentity *identity;
  g_autoptr(NatkitRendezvous) rendezvous = NULL;
  NatkitWireReader *reader;
  g_autoptr(GError) error = NULL;

  if (!identity)
    identity = natkit_identity_new_ephemeral (NULL);

  rendezvous = natkit_rendezvous_new (identity, "127.0.0.1:9", NULL);
  g_signal_connect (rendezvous, "circuit-offered", G_CALLBACK (circuit_offered_cb), NULL);
  _natkit_rendezvous_set_registered_for_testing (rendezvous);

  reader = _natkit_wire_reader_new (NATKIT_WIRE_MAX_CONTROL);
  _natkit_wire_reader_push (reader, data, size);
  for (;;)
    {
      g_autoptr(GBytes) frame = NULL;
      gsize len;
      const guint8 *body;

      if (!_natkit_wire_reader_next (reader, &frame, &error))
        break;
      body = g_bytes_get_data (frame, &len);
      _natkit_rendezvous_handle_frame (rendezvous, body, len);
    }
  _natkit_wire_reader_free (reader);

  /* and the bytes as one frame body */
  _natkit_rendezvous_handle_frame (rendezvous, data, size);
  return 0;
}
