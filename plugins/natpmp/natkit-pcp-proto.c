/* natkit-pcp-proto.c: PCP (RFC 6887) and NAT-PMP (RFC 6886) messages
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <gio/gio.h>
#include <string.h>

#include "natkit-pcp-proto.h"

#define PCP_HEADER_SIZE   24
#define PCP_MAP_SIZE      36
#define PCP_RESPONSE_BIT  0x80

static void
put16 (guint8 *p, guint16 v)
{
  p[0] = v >> 8;
  p[1] = v & 0xff;
}

static void
put32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = (v >> 16) & 0xff;
  p[2] = (v >> 8) & 0xff;
  p[3] = v & 0xff;
}

static guint16
get16 (const guint8 *p)
{
  return (guint16) ((p[0] << 8) | p[1]);
}

static guint32
get32 (const guint8 *p)
{
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

/* RFC 6887 section 7.1: the common request header */
static void
pcp_header (guint8       *buffer,
            guint8        opcode,
            guint32       lifetime,
            const guint8  client_address[16])
{
  memset (buffer, 0, PCP_HEADER_SIZE);
  buffer[0] = NATKIT_PCP_VERSION;
  buffer[1] = opcode & 0x7f;          /* R = 0: a request */
  put32 (buffer + 4, lifetime);
  memcpy (buffer + 8, client_address, 16);
}

gsize
natkit_pcp_build_map (guint8       *buffer,
                      guint32       lifetime,
                      const guint8  client_address[16],
                      const guint8  nonce[NATKIT_PCP_NONCE_SIZE],
                      guint8        protocol,
                      guint16       internal_port,
                      guint16       suggested_port,
                      const guint8  suggested_address[16])
{
  guint8 *map = buffer + PCP_HEADER_SIZE;

  pcp_header (buffer, NATKIT_PCP_OP_MAP, lifetime, client_address);
  /* RFC 6887 section 11.1 */
  memset (map, 0, PCP_MAP_SIZE);
  memcpy (map, nonce, NATKIT_PCP_NONCE_SIZE);
  map[12] = protocol;
  put16 (map + 16, internal_port);
  put16 (map + 18, suggested_port);
  memcpy (map + 20, suggested_address, 16);
  return PCP_HEADER_SIZE + PCP_MAP_SIZE;
}

gsize
natkit_pcp_build_announce (guint8       *buffer,
                           const guint8  client_address[16])
{
  pcp_header (buffer, NATKIT_PCP_OP_ANNOUNCE, 0, client_address);
  return PCP_HEADER_SIZE;
}

static gboolean
fail (GError     **error,
      const char  *format,
      ...) G_GNUC_PRINTF (2, 3);

static gboolean
fail (GError     **error,
      const char  *format,
      ...)
{
  va_list args;
  g_autofree char *message = NULL;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, message);
  return FALSE;
}

gboolean
natkit_pcp_parse_response (const guint8      *data,
                           gsize              length,
                           NatkitPcpResponse *response,
                           GError           **error)
{
  gsize offset;

  memset (response, 0, sizeof *response);

  /* A NAT-PMP gateway answers a PCP request with its own short error
   * (RFC 6887 section 9: version 0, result UNSUPP_VERSION). */
  if (length >= 4 && data[0] == NATKIT_NATPMP_VERSION)
    {
      if ((data[1] & PCP_RESPONSE_BIT) == 0)
        return fail (error, "a NAT-PMP request, not a response");
      response->version = NATKIT_NATPMP_VERSION;
      response->opcode = data[1] & 0x7f;
      response->result = MIN (get16 (data + 2), 255);
      return TRUE;
    }

  if (length < PCP_HEADER_SIZE)
    return fail (error, "truncated: %" G_GSIZE_FORMAT " bytes, a PCP response "
                 "has at least %d", length, PCP_HEADER_SIZE);
  if (length > NATKIT_PCP_MAX_MESSAGE)
    return fail (error, "too long: %" G_GSIZE_FORMAT " bytes, PCP allows %d",
                 length, NATKIT_PCP_MAX_MESSAGE);
  if (length % 4 != 0)
    return fail (error, "its length (%" G_GSIZE_FORMAT ") is not a multiple of 4",
                 length);
  if ((data[1] & PCP_RESPONSE_BIT) == 0)
    return fail (error, "a PCP request, not a response");

  response->version = data[0];
  response->opcode = data[1] & 0x7f;
  response->result = data[3];
  response->lifetime = get32 (data + 4);
  response->epoch = get32 (data + 8);

  /* a server of another version says so and nothing more */
  if (response->version != NATKIT_PCP_VERSION)
    {
      if (response->result != NATKIT_PCP_UNSUPP_VERSION)
        return fail (error, "PCP version %u", response->version);
      return TRUE;
    }

  offset = PCP_HEADER_SIZE;
  if (response->opcode == NATKIT_PCP_OP_MAP)
    {
      const guint8 *map = data + PCP_HEADER_SIZE;

      /* error answers may come without the opcode data (RFC 6887 7.2) */
      if (length < PCP_HEADER_SIZE + PCP_MAP_SIZE)
        {
          if (response->result == NATKIT_PCP_SUCCESS)
            return fail (error, "truncated MAP response (%" G_GSIZE_FORMAT " bytes)",
                         length);
          return TRUE;
        }
      memcpy (response->nonce, map, NATKIT_PCP_NONCE_SIZE);
      response->protocol = map[12];
      response->internal_port = get16 (map + 16);
      response->external_port = get16 (map + 18);
      memcpy (response->external_address, map + 20, 16);
      offset += PCP_MAP_SIZE;
    }
  else if (response->opcode != NATKIT_PCP_OP_ANNOUNCE)
    return TRUE;   /* PEER or unknown: the caller rejects the opcode */

  /* options: code, reserved, length, data padded to 4 (RFC 6887 7.3) */
  while (offset < length)
    {
      gsize option_length;

      if (length - offset < 4)
        return fail (error, "truncated option header at byte %" G_GSIZE_FORMAT, offset);
      option_length = get16 (data + offset + 2);
      if (option_length > length - offset - 4)
        return fail (error, "option %u at byte %" G_GSIZE_FORMAT " claims %"
                     G_GSIZE_FORMAT " bytes, only %" G_GSIZE_FORMAT " remain",
                     data[offset], offset, option_length, length - offset - 4);
      offset += 4 + ((option_length + 3) & ~(gsize) 3);
    }
  return TRUE;
}

gsize
natkit_natpmp_build_address (guint8 *buffer)
{
  buffer[0] = NATKIT_NATPMP_VERSION;
  buffer[1] = NATKIT_NATPMP_OP_ADDRESS;
  return 2;
}

gsize
natkit_natpmp_build_map (guint8  *buffer,
                         guint8   opcode,
                         guint16  internal_port,
                         guint16  suggested_port,
                         guint32  lifetime)
{
  buffer[0] = NATKIT_NATPMP_VERSION;
  buffer[1] = opcode;
  buffer[2] = buffer[3] = 0;
  put16 (buffer + 4, internal_port);
  put16 (buffer + 6, suggested_port);
  put32 (buffer + 8, lifetime);
  return 12;
}

gboolean
natkit_natpmp_parse_response (const guint8         *data,
                              gsize                 length,
                              NatkitNatpmpResponse *response,
                              GError              **error)
{
  memset (response, 0, sizeof *response);

  if (length < 4)
    return fail (error, "truncated: %" G_GSIZE_FORMAT " bytes", length);
  if (data[0] != NATKIT_NATPMP_VERSION)
    return fail (error, "version %u, NAT-PMP is version 0", data[0]);
  if ((data[1] & PCP_RESPONSE_BIT) == 0)
    return fail (error, "a NAT-PMP request, not a response");

  response->opcode = data[1] & 0x7f;
  response->result = get16 (data + 2);
  if (length >= 8)
    response->epoch = get32 (data + 4);
  if (response->result != NATKIT_NATPMP_SUCCESS)
    return TRUE;          /* error answers may be short (RFC 6886 3.5) */

  switch (response->opcode)
    {
    case NATKIT_NATPMP_OP_ADDRESS:
      if (length < 12)
        return fail (error, "truncated address response (%" G_GSIZE_FORMAT " bytes)",
                     length);
      memcpy (response->external_address, data + 8, 4);
      return TRUE;
    case NATKIT_NATPMP_OP_MAP_UDP:
    case NATKIT_NATPMP_OP_MAP_TCP:
      if (length < 16)
        return fail (error, "truncated mapping response (%" G_GSIZE_FORMAT " bytes)",
                     length);
      response->internal_port = get16 (data + 8);
      response->external_port = get16 (data + 10);
      response->lifetime = get32 (data + 12);
      return TRUE;
    default:
      return fail (error, "unknown opcode %u", response->opcode);
    }
}

const char *
natkit_pcp_result_describe (guint result)
{
  switch (result)
    {
    case NATKIT_PCP_SUCCESS: return "success";
    case NATKIT_PCP_UNSUPP_VERSION: return "it does not support this PCP version";
    case NATKIT_PCP_NOT_AUTHORIZED: return "not authorized: its policy forbids the mapping (check the router's PCP/UPnP settings)";
    case NATKIT_PCP_MALFORMED_REQUEST: return "it found the request malformed";
    case NATKIT_PCP_UNSUPP_OPCODE: return "it does not support the MAP operation";
    case NATKIT_PCP_UNSUPP_OPTION: return "it does not support a mandatory option";
    case NATKIT_PCP_MALFORMED_OPTION: return "it found an option malformed";
    case NATKIT_PCP_NETWORK_FAILURE: return "it has a network failure (it may have no public address yet); try again later";
    case NATKIT_PCP_NO_RESOURCES: return "it is out of resources (too many mappings); release some or try again later";
    case NATKIT_PCP_UNSUPP_PROTOCOL: return "it does not support this transport protocol";
    case NATKIT_PCP_USER_EX_QUOTA: return "this host exceeded its mapping quota; release some mappings";
    case NATKIT_PCP_CANNOT_PROVIDE_EXTERNAL: return "it cannot provide the suggested external port or address";
    case NATKIT_PCP_ADDRESS_MISMATCH: return "the request's source address differs from the client address: there is another NAT between this host and the gateway";
    case NATKIT_PCP_EXCESSIVE_REMOTE_PEERS: return "too many remote peers";
    default: return "an unknown result code";
    }
}

const char *
natkit_natpmp_result_describe (guint result)
{
  switch (result)
    {
    case NATKIT_NATPMP_SUCCESS: return "success";
    case NATKIT_NATPMP_UNSUPP_VERSION: return "it does not support this NAT-PMP version";
    case NATKIT_NATPMP_REFUSED: return "it refused (NAT-PMP is disabled or not allowed for this host)";
    case NATKIT_NATPMP_NETWORK_FAILURE: return "it has a network failure (it may have no public address yet); try again later";
    case NATKIT_NATPMP_NO_RESOURCES: return "it is out of resources (too many mappings); release some or try again later";
    case NATKIT_NATPMP_UNSUPP_OPCODE: return "it does not support this operation";
    default: return "an unknown result code";
    }
}

gboolean
natkit_pcp_epoch_lost_state (guint32 prev_epoch,
                             gint64  prev_local,
                             guint32 epoch,
                             gint64  local)
{
  gint64 client_delta = local - prev_local;
  gint64 server_delta = (gint64) epoch - (gint64) prev_epoch;

  /* RFC 6887 section 8.5 (the same rule as RFC 6886 section 3.6) */
  if ((gint64) epoch + 1 < (gint64) prev_epoch)
    return TRUE;
  if (client_delta + 2 < server_delta - server_delta / 16)
    return TRUE;
  if (server_delta + 2 < client_delta - client_delta / 16)
    return TRUE;
  return FALSE;
}
