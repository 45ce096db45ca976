/* natkit-pcp-proto.h: PCP (RFC 6887) and NAT-PMP (RFC 6886) messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Pure functions: build requests, parse and validate responses.  No I/O,
 * so the unit tests and the fuzz targets reach them directly.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define NATKIT_PCP_PORT          5351
#define NATKIT_PCP_VERSION       2
#define NATKIT_NATPMP_VERSION    0
#define NATKIT_PCP_MAX_MESSAGE   1100
#define NATKIT_PCP_NONCE_SIZE    12

#define NATKIT_PCP_OP_ANNOUNCE   0
#define NATKIT_PCP_OP_MAP        1

#define NATKIT_NATPMP_OP_ADDRESS 0
#define NATKIT_NATPMP_OP_MAP_UDP 1
#define NATKIT_NATPMP_OP_MAP_TCP 2

#define NATKIT_IPPROTO_TCP       6
#define NATKIT_IPPROTO_UDP       17

/* RFC 6887 section 7.4 */
typedef enum {
  NATKIT_PCP_SUCCESS = 0,
  NATKIT_PCP_UNSUPP_VERSION = 1,
  NATKIT_PCP_NOT_AUTHORIZED = 2,
  NATKIT_PCP_MALFORMED_REQUEST = 3,
  NATKIT_PCP_UNSUPP_OPCODE = 4,
  NATKIT_PCP_UNSUPP_OPTION = 5,
  NATKIT_PCP_MALFORMED_OPTION = 6,
  NATKIT_PCP_NETWORK_FAILURE = 7,
  NATKIT_PCP_NO_RESOURCES = 8,
  NATKIT_PCP_UNSUPP_PROTOCOL = 9,
  NATKIT_PCP_USER_EX_QUOTA = 10,
  NATKIT_PCP_CANNOT_PROVIDE_EXTERNAL = 11,
  NATKIT_PCP_ADDRESS_MISMATCH = 12,
  NATKIT_PCP_EXCESSIVE_REMOTE_PEERS = 13,
} NatkitPcpResult;

/* RFC 6886 section 3.5 */
typedef enum {
  NATKIT_NATPMP_SUCCESS = 0,
  NATKIT_NATPMP_UNSUPP_VERSION = 1,
  NATKIT_NATPMP_REFUSED = 2,
  NATKIT_NATPMP_NETWORK_FAILURE = 3,
  NATKIT_NATPMP_NO_RESOURCES = 4,
  NATKIT_NATPMP_UNSUPP_OPCODE = 5,
} NatkitNatpmpResult;

typedef struct
{
  guint8  version;        /* 2 for PCP; 0 when a NAT-PMP gateway answered */
  guint8  opcode;         /* without the response bit */
  guint8  result;
  guint32 lifetime;
  guint32 epoch;
  /* MAP only */
  guint8  nonce[NATKIT_PCP_NONCE_SIZE];
  guint8  protocol;
  guint16 internal_port;
  guint16 external_port;
  guint8  external_address[16];   /* IPv4-mapped IPv6 for IPv4 */
} NatkitPcpResponse;

typedef struct
{
  guint8  opcode;         /* without the response bit */
  guint16 result;
  guint32 epoch;
  /* ADDRESS */
  guint8  external_address[4];
  /* MAP */
  guint16 internal_port;
  guint16 external_port;
  guint32 lifetime;
} NatkitNatpmpResponse;

gsize    natkit_pcp_build_map        (guint8       *buffer,
                                      guint32       lifetime,
                                      const guint8  client_address[16],
                                      const guint8  nonce[NATKIT_PCP_NONCE_SIZE],
                                      guint8        protocol,
                                      guint16       internal_port,
                                      guint16       suggested_port,
                                      const guint8  suggested_address[16]);
gsize    natkit_pcp_build_announce   (guint8       *buffer,
                                      const guint8  client_address[16]);
gboolean natkit_pcp_parse_response   (const guint8      *data,
                                      gsize              length,
                                      NatkitPcpResponse *response,
                                      GError           **error);

gsize    natkit_natpmp_build_address (guint8       *buffer);
gsize    natkit_natpmp_build_map     (guint8       *buffer,
                                      guint8        opcode,
                                      guint16       internal_port,
                                      guint16       suggested_port,
                                      guint32       lifetime);
gboolean natkit_natpmp_parse_response (const guint8         *data,
                                       gsize                 length,
                                       NatkitNatpmpResponse *response,
                                       GError              **error);

const char *natkit_pcp_result_describe    (guint result);
const char *natkit_natpmp_result_describe (guint result);

/* RFC 6887 section 8.5: did the server lose its state since the previous
 * answer?  Times in seconds; prev_* from the previous valid response. */
gboolean natkit_pcp_epoch_lost_state (guint32 prev_epoch,
                                      gint64  prev_local,
                                      guint32 epoch,
                                      gint64  local);

G_END_DECLS
