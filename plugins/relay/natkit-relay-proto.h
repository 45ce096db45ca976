/* natkit-relay-proto.h: natkit-server's UDP relay packets (docs/protocol.md 4.1)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Pure functions: build and parse the 8-byte relay header.  No I/O, so the
 * unit tests and the fuzz target reach them directly.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define NATKIT_RELAY_MAGIC        0x4E
#define NATKIT_RELAY_VERSION      1
#define NATKIT_RELAY_HEADER_SIZE  8
#define NATKIT_RELAY_TOKEN_SIZE   16
#define NATKIT_RELAY_BIND_SIZE    (NATKIT_RELAY_HEADER_SIZE + NATKIT_RELAY_TOKEN_SIZE)
/* the largest UDP payload (65507) less the header */
#define NATKIT_RELAY_MAX_DATA     (65507 - NATKIT_RELAY_HEADER_SIZE)

typedef enum {
  NATKIT_RELAY_BIND = 1,     /* client → server, token */
  NATKIT_RELAY_BOUND = 2,    /* server → client, empty */
  NATKIT_RELAY_DATA = 3,     /* both ways, one datagram */
  NATKIT_RELAY_CLOSED = 4,   /* server → client, empty */
} NatkitRelayType;

typedef struct
{
  guint8        type;        /* a NatkitRelayType */
  guint32       circuit;     /* never 0 */
  const guint8 *payload;     /* points into the parsed packet */
  gsize         payload_length;
} NatkitRelayPacket;

gsize       natkit_relay_build_header (guint8        buffer[NATKIT_RELAY_HEADER_SIZE],
                                       guint8        type,
                                       guint32       circuit);
gsize       natkit_relay_build_bind   (guint8        buffer[NATKIT_RELAY_BIND_SIZE],
                                       guint32       circuit,
                                       const guint8  token[NATKIT_RELAY_TOKEN_SIZE]);
gboolean    natkit_relay_parse        (const guint8       *data,
                                       gsize               length,
                                       NatkitRelayPacket  *packet,
                                       GError            **error);
gboolean    natkit_relay_is_stun      (const guint8       *data,
                                       gsize               length);
const char *natkit_relay_type_name    (guint8              type);

G_END_DECLS
