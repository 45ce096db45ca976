/* natkit-relay-proto.c: natkit-server's UDP relay packets (docs/protocol.md 4.1)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <gio/gio.h>
#include <string.h>

#include "natkit-relay-proto.h"

#define STUN_MAGIC_COOKIE 0x2112A442u

gsize
natkit_relay_build_header (guint8  buffer[NATKIT_RELAY_HEADER_SIZE],
                           guint8  type,
                           guint32 circuit)
{
  buffer[0] = NATKIT_RELAY_MAGIC;
  buffer[1] = NATKIT_RELAY_VERSION;
  buffer[2] = type;
  buffer[3] = 0;
  buffer[4] = circuit >> 24;
  buffer[5] = (circuit >> 16) & 0xff;
  buffer[6] = (circuit >> 8) & 0xff;
  buffer[7] = circuit & 0xff;
  return NATKIT_RELAY_HEADER_SIZE;
}

gsize
natkit_relay_build_bind (guint8        buffer[NATKIT_RELAY_BIND_SIZE],
                         guint32       circuit,
                         const guint8  token[NATKIT_RELAY_TOKEN_SIZE])
{
  natkit_relay_build_header (buffer, NATKIT_RELAY_BIND, circuit);
  memcpy (buffer + NATKIT_RELAY_HEADER_SIZE, token, NATKIT_RELAY_TOKEN_SIZE);
  return NATKIT_RELAY_BIND_SIZE;
}

/* RFC 8489 section 5: the two top bits 00 and the magic cookie */
gboolean
natkit_relay_is_stun (const guint8 *data,
                      gsize         length)
{
  return length >= 20 && (data[0] & 0xc0) == 0 &&
         (((guint32) data[4] << 24) | ((guint32) data[5] << 16) |
          ((guint32) data[6] << 8) | data[7]) == STUN_MAGIC_COOKIE;
}

const char *
natkit_relay_type_name (guint8 type)
{
  switch (type)
    {
    case NATKIT_RELAY_BIND: return "BIND";
    case NATKIT_RELAY_BOUND: return "BOUND";
    case NATKIT_RELAY_DATA: return "DATA";
    case NATKIT_RELAY_CLOSED: return "CLOSED";
    default: return "unknown";
    }
}

static gboolean
invalid (GError     **error,
         const char  *format,
         ...) G_GNUC_PRINTF (2, 3);

static gboolean
invalid (GError     **error,
         const char  *format,
         ...)
{
  va_list args;

  va_start (args, format);
  if (error != NULL)
    *error = g_error_new_valist (G_IO_ERROR, G_IO_ERROR_INVALID_DATA, format, args);
  va_end (args);
  return FALSE;
}

gboolean
natkit_relay_parse (const guint8       *data,
                    gsize               length,
                    NatkitRelayPacket  *packet,
                    GError            **error)
{
  gsize payload_length;

  if (natkit_relay_is_stun (data, length))
    return invalid (error, "a STUN message, not a relay packet");
  if (length < NATKIT_RELAY_HEADER_SIZE)
    return invalid (error, "a %" G_GSIZE_FORMAT "-byte packet is shorter than "
                    "the %u-byte relay header", length, NATKIT_RELAY_HEADER_SIZE);
  if (data[0] != NATKIT_RELAY_MAGIC)
    return invalid (error, "not a natkit relay packet (it starts with 0x%02x, "
                    "not 0x%02x)", data[0], NATKIT_RELAY_MAGIC);
  if (data[1] != NATKIT_RELAY_VERSION)
    return invalid (error, "relay protocol version %u (natkit speaks %u)",
                    data[1], NATKIT_RELAY_VERSION);

  memset (packet, 0, sizeof *packet);
  packet->type = data[2];
  /* data[3] is reserved: ignored, so that it can be given a meaning later */
  packet->circuit = ((guint32) data[4] << 24) | ((guint32) data[5] << 16) |
                    ((guint32) data[6] << 8) | data[7];
  payload_length = length - NATKIT_RELAY_HEADER_SIZE;

  if (packet->circuit == 0)
    return invalid (error, "a %s packet for circuit 0, which never exists",
                    natkit_relay_type_name (packet->type));

  switch (packet->type)
    {
    case NATKIT_RELAY_BIND:
      if (payload_length != NATKIT_RELAY_TOKEN_SIZE)
        return invalid (error, "a BIND packet with a %" G_GSIZE_FORMAT "-byte token "
                        "(tokens have %u bytes)", payload_length, NATKIT_RELAY_TOKEN_SIZE);
      break;
    case NATKIT_RELAY_BOUND:
    case NATKIT_RELAY_CLOSED:
      /* no payload; trailing bytes are ignored */
      break;
    case NATKIT_RELAY_DATA:
      if (payload_length == 0)
        return invalid (error, "an empty DATA packet");
      if (payload_length > NATKIT_RELAY_MAX_DATA)
        return invalid (error, "a DATA packet with %" G_GSIZE_FORMAT " bytes (at most %u)",
                        payload_length, NATKIT_RELAY_MAX_DATA);
      break;
    default:
      return invalid (error, "unknown relay packet type %u", packet->type);
    }

  packet->payload = data + NATKIT_RELAY_HEADER_SIZE;
  packet->payload_length = payload_length;
  return TRUE;
}
