/* fuzz-network-hello.c: the WireGuard key exchange message a peer sends
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes to _natkit_network_parse_hello() as NatkitNetwork hands
 * over what arrived on the connection's stream before the newline. An
 * accepted message has a 32-byte key in canonical base64 and a host
 * address of the network; formatting it again parses to the same.
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-network-private.h"

#define PEER_ID "7HkVq3cXo9mBq6z1n2yTtT3aUu4p5Q6r7S8t9U1v2W3x"
#define NETWORK 0x64420000u   /* 100.66.0.0/16 */

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  g_autofree char *key = NULL;
  g_autoptr(GError) error = NULL;
  guint32 address = 0;

  if (!_natkit_network_parse_hello ((const char *) data, size, PEER_ID, NETWORK, 16,
                                    &key, &address, &error))
    {
      g_assert_nonnull (error);
      g_assert_null (key);
      return 0;
    }
  g_assert_no_error (error);
  g_assert_cmpuint (strlen (key), ==, 44);
  g_assert_cmphex (address & 0xffff0000u, ==, NETWORK);
  g_assert_cmphex (address, !=, NETWORK);
  g_assert_cmphex (address, !=, NETWORK | 0xffff);
  {
    g_autofree char *again = _natkit_network_format_hello (PEER_ID, key, address);
    g_autofree char *key2 = NULL;
    guint32 address2 = 0;

    g_assert_true (_natkit_network_parse_hello (again, strlen (again) - 1, PEER_ID, NETWORK,
                                                16, &key2, &address2, NULL));
    g_assert_cmpstr (key2, ==, key);
    g_assert_cmphex (address2, ==, address);
  }
  return 0;
}
