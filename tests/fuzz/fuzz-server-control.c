/* fuzz-server-control.c: every byte stream a natkit-server control
 * connection reads
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A server that is created but not started, with peer B (PEER_B below)
 * registered and holding a reservation, on a connection without a stream.
 * The input is what a second connection reads after its hello (whose
 * challenge is 32 zero bytes, so a seed can register with a valid
 * signature, and replace B with the 0xBB key's): frames run
 * through the server's own reader and handler, whatever they make
 * (register, signal to B, connect to B, attach, junk, framing errors),
 * then the connection closes (and with it A's circuits and registration).
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-wire-private.h"
#include "natkit-server-core.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

/* Peer B: the Ed25519 key whose seed is 32 bytes of 0xBB, registering on
 * a hello with a zero challenge (the seeds connect and signal to it). */
#define PEER_B "FPnyaRV3kufr2tuDztBpMi7aVYVVNLhMsxAKP1KenwVm"
static const char register_b[] =
  "{\"type\":\"register\",\"id\":1,\"version\":1,\"peer_id\":\"" PEER_B "\","
  "\"public_key\":\"fVnFYj3UCnSqTVoyrGRdOz+V2urkwiviVHbdakhvc4I=\","
  "\"signature\":\"zLMQIBKwE/tWZyJJkuWu3dvYKoY86MRc5R4prL0pyNr36em1/rcGZ9PsMIqe09MjLLD"
  "fWX09evsBskWND1n+Dg==\"}";
static const char reserve_b[] = "{\"type\":\"reserve\",\"id\":2}";

static void
feed_frame (NatkitServerTestConn *conn,
            const char           *json)
{
  g_autoptr(GBytes) frame = _natkit_wire_frame ((const guint8 *) json, strlen (json));

  g_assert_true (_natkit_server_test_conn_feed (conn, g_bytes_get_data (frame, NULL),
                                                g_bytes_get_size (frame)));
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  static const guint8 challenge[NATKIT_WIRE_CHALLENGE_SIZE] = { 0, };
  static NatkitServer *server;
  static NatkitServerTestConn *b;

  /* one server for all inputs (setting one up costs more than most
   * inputs): after each, only B is left */
  if (!server)
    server = natkit_server_new ("127.0.0.1", 0, 0, NULL, NULL);
  if (b && !_natkit_server_test_conn_feed (b, NULL, 0))
    g_clear_pointer (&b, _natkit_server_test_conn_free);  /* replaced by A */
  if (!b)
    {
      b = _natkit_server_test_conn_new (server, challenge);
      feed_frame (b, register_b);
      feed_frame (b, reserve_b);
    }
  g_assert_cmpuint (natkit_server_get_n_peers (server), ==, 1);
  g_assert_cmpuint (natkit_server_get_n_circuits (server), ==, 0);

  /* A: a fresh connection reads the input, then closes */
  _natkit_server_feed_control_for_fuzzing (server, data, size);

  g_assert_cmpuint (natkit_server_get_n_peers (server), <=, 1);
  g_assert_cmpuint (natkit_server_get_n_circuits (server), ==, 0);
  return 0;
}
