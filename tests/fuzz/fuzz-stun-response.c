/* fuzz-stun-response.c: every STUN answer the client parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Feeds arbitrary bytes to the Binding response parser, once with the
 * transaction ID taken from the input (so the fuzzer reaches the attribute
 * parsing) and once with a fixed one (the mismatch path).
 */
#include "config.h"

#include "natkit.h"
#include "natkit-stun-client-private.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  static const guint8 fixed_txid[16] = { 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
  NatkitStunResponse response = { 0, };

  if (size >= 20 &&
      _natkit_stun_parse_binding_response (data, size, data + 4, &response, NULL))
    {
      g_assert_nonnull (response.mapped);
      natkit_stun_response_clear (&response);
    }
  if (_natkit_stun_parse_binding_response (data, size, fixed_txid, &response, NULL))
    natkit_stun_response_clear (&response);
  return 0;
}
