/* fuzz-natpmp-response.c: every NAT-PMP answer the natpmp plugin parses
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <glib.h>
#include "natkit-pcp-proto.h"

int LLVMFuzzerTestOneInput (const guint8 *data, size_t size);

int
LLVMFuzzerTestOneInput (const guint8 *data,
                        size_t        size)
{
  NatkitNatpmpResponse response;
  GError *error = NULL;

  if (natkit_natpmp_parse_response (data, size, &response, &error))
    {
      g_assert_no_error (error);
      g_assert_cmpuint (size, >=, 4);
      if (response.result == NATKIT_NATPMP_SUCCESS)
        g_assert_cmpuint (size, >=, response.opcode == NATKIT_NATPMP_OP_ADDRESS ? 12 : 16);
      g_assert_nonnull (natkit_natpmp_result_describe (response.result));
    }
  else
    {
      g_assert_nonnull (error);
      g_error_free (error);
    }
  return 0;
}
