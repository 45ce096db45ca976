/* natkit-relay-udp.h: a relay circuit's UDP data channel (docs/protocol.md 4.1, 4.2)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Binds a UDP endpoint to a circuit of natkit-server's relay (BIND until
 * BOUND) and makes it a NatkitPath: DATA both ways, BIND every 25 s as a
 * keepalive of the NAT binding, failure on CLOSED or when the server stops
 * answering. Knows nothing of NatkitRendezvous: the plugin ties the path to
 * its circuit; the unit tests drive it against a relay of their own.
 */
#pragma once

#include <natkit/natkit.h>

#include "natkit-relay-proto.h"

G_BEGIN_DECLS

/* the datagram a relayed UDP path carries: 1400 bytes of IP payload less
 * the relay header, safe on every path natkit has met */
#define NATKIT_RELAY_UDP_MTU        (1400 - NATKIT_RELAY_HEADER_SIZE)
#define NATKIT_RELAY_UDP_BUDGET_MS  1500
#define NATKIT_RELAY_KEEPALIVE_MS   25000
#define NATKIT_RELAY_MAX_MISSED     3

#define NATKIT_TYPE_RELAY_UDP_PATH (natkit_relay_udp_path_get_type ())
G_DECLARE_FINAL_TYPE (NatkitRelayUdpPath, natkit_relay_udp_path,
                      NATKIT, RELAY_UDP_PATH, NatkitPath)

void        natkit_relay_udp_bind_async         (const char           *host,
                                                 guint16               port,
                                                 guint32               circuit,
                                                 const guint8          token[NATKIT_RELAY_TOKEN_SIZE],
                                                 guint                 budget_ms,
                                                 GCancellable         *cancellable,
                                                 GAsyncReadyCallback   callback,
                                                 gpointer              user_data);
NatkitPath *natkit_relay_udp_bind_finish        (GAsyncResult         *result,
                                                 GError              **error);

guint32     natkit_relay_udp_path_get_circuit   (NatkitRelayUdpPath   *self);
void        natkit_relay_udp_path_set_keepalive (NatkitRelayUdpPath   *self,
                                                 guint                 interval_ms,
                                                 guint                 max_missed);

G_END_DECLS
