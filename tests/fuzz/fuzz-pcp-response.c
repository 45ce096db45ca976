/* fuzz-pcp-response.c: every PCP answer the natpmp plugin parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Arbitrary bytes to the PCP response parser (RFC 6887: header, MAP data,
 * options), including the NAT-PMP version 0 answers a PCP client must
 * recognise; checks the invariants the plugin relies on.
 */
#include "config.h"

#include <glib.h>
#include "natkit-pcp-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  NatkitPcpResponse response;
  GError *error = NULL;

  if (natkit_pcp_parse_response (data, size, &response, &error))
    {
      g_assert_no_error (error);
      if (response.version == NATKIT_PCP_VERSION)
        {
          g_assert_cmpuint (size, >=, 24);
          g_assert_cmpuint (size, <=, NATKIT_PCP_MAX_MESSAGE);
          g_assert_cmpuint (size % 4, ==, 0);
          if (response.opcode == NATKIT_PCP_OP_MAP && response.result == NATKIT_PCP_SUCCESS)
            g_assert_cmpuint (size, >=, 60);
        }
      g_assert_nonnull (natkit_pcp_result_describe (response.result));
    }
  else
    {
      g_assert_nonnull (error);
      g_assert_nonnull (error->message);
      g_error_free (error);
    }
  return 0;
}
