/* fuzz-server-udp.c: every datagram natkit-server's UDP port receives
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * A server that is created but not started (no sockets: forwarding must
 * be a no-op, not a crash) with one circuit (number 1; token 0 is 16 bytes
 * of 0x00, token 1 of 0x11). The input is a sequence of records
 * [source][length, 16 bits big-endian][datagram], the source (byte mod 3)
 * one of two IPv4 addresses and one IPv6 address; then the whole input is
 * one more datagram from the first source. Every answer obeys the
 * no-amplification rule of docs/protocol.md: a STUN Binding response at
 * most 12 (IPv4) / 24 (IPv6) bytes over the request, an 8-byte BOUND or
 * CLOSED, or nothing. The whole input is also the start of a STUN message
 * over TCP (the TLS port, docs/protocol.md 7.4): the size the server
 * reads for it is bounded, and the message it answers is the same as a
 * datagram.
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-wire-private.h"
#include "natkit-server-core.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

#define ANSWER_SIZE 128  /* as the server's socket loop */

static void
feed (NatkitServer   *server,
      GSocketAddress *from,
      const guint8   *data,
      gsize           len)
{
  guint8 *answer = g_malloc (ANSWER_SIZE);  /* heap: ASan sees overruns */
  gsize n = _natkit_server_handle_udp (server, data, len, from, answer, ANSWER_SIZE);
  gboolean ipv6 = g_socket_address_get_family (from) == G_SOCKET_FAMILY_IPV6;

  g_assert_cmpuint (n, <=, ANSWER_SIZE);
  if (n > 0)
    {
      if (len >= 1 && (data[0] & 0xc0) == 0)
        {
          /* STUN: a Binding success response, bounded by the request */
          g_assert_cmpuint (len, >=, 20);
          g_assert_cmpuint (n, >=, 20);
          g_assert_cmpuint (n, <=, len + (ipv6 ? 24 : 12));
          g_assert_cmpint (answer[0], ==, 0x01);
          g_assert_cmpint (answer[1], ==, 0x01);
          g_assert_true (memcmp (answer + 4, data + 4, 16) == 0);  /* cookie, id */
        }
      else
        {
          NatkitWireUdpType type;
          guint32 circuit;

          g_assert_cmpuint (n, ==, NATKIT_WIRE_UDP_HEADER);
          g_assert_true (_natkit_wire_udp_parse (answer, n, &type, &circuit, NULL, NULL));
          g_assert_true (type == NATKIT_WIRE_UDP_BOUND || type == NATKIT_WIRE_UDP_CLOSED);
          g_assert_cmpuint (len, >=, NATKIT_WIRE_UDP_HEADER);
          g_assert_cmpuint (circuit, ==, ((guint32) data[4] << 24) | ((guint32) data[5] << 16) |
                                         ((guint32) data[6] << 8) | data[7]);
        }
    }
  g_free (answer);
}

static void
check_stun_over_tcp (const guint8 *data,
                     gsize         size)
{
  gsize need = _natkit_server_stun_tcp_need (data, size);

  if (size < 4)
    {
      g_assert_cmpuint (need, ==, 20);
      return;
    }
  if (need == 0)
    return;   /* the server closes the connection */
  g_assert_cmpuint (need, >=, 20);
  g_assert_cmpuint (need, <=, 548);
  g_assert_cmpuint (need % 4, ==, 0);
  g_assert_cmpuint (need, ==, 20 + (((gsize) data[2] << 8) | data[3]));
}

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  static GSocketAddress *sources[3];
  static const guint8 token0[NATKIT_WIRE_TOKEN_SIZE] = { 0, };
  static guint8 token1[NATKIT_WIRE_TOKEN_SIZE];
  g_autoptr(NatkitServer) server = NULL;
  NatkitServerLimits limits;
  gsize at = 0;

  if (!sources[0])
    {
      sources[0] = g_inet_socket_address_new_from_string ("192.0.2.1", 40000);
      sources[1] = g_inet_socket_address_new_from_string ("198.51.100.2", 50000);
      sources[2] = g_inet_socket_address_new_from_string ("2001:db8::3", 60000);
      memset (token1, 0x11, sizeof token1);
    }

  natkit_server_limits_init (&limits);
  limits.circuit_bytes = 4000;  /* so inputs can reach the byte limit */
  server = natkit_server_new ("127.0.0.1", 0, 0, NULL, &limits);
  _natkit_server_add_test_circuit (server, 1, token0, token1);

  while (size - at >= 3)
    {
      GSocketAddress *from = sources[data[at] % 3];
      gsize len = MIN (((gsize) data[at + 1] << 8) | data[at + 2], size - at - 3);

      feed (server, from, data + at + 3, len);
      at += 3 + len;
    }
  feed (server, sources[0], data, size);
  check_stun_over_tcp (data, size);
  return 0;
}
