/* natkit-stun-client-private.h: STUN Binding transactions (RFC 8489, RFC 5780)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* CHANGE-REQUEST flags (RFC 5780 section 7.2). */
#define NATKIT_STUN_CHANGE_IP   0x4
#define NATKIT_STUN_CHANGE_PORT 0x2

typedef struct
{
  GInetSocketAddress *mapped;           /* XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS */
  GInetSocketAddress *other;            /* OTHER-ADDRESS, or NULL */
  GInetSocketAddress *response_origin;  /* RESPONSE-ORIGIN, or NULL */
  GInetSocketAddress *source;           /* where the answer came from */
  gint64              rtt_us;           /* first send to answer */
  guint               sends;            /* requests sent, retransmissions included */
} NatkitStunResponse;

void natkit_stun_response_clear (NatkitStunResponse *response);

/* Parsing, separate from the socket so the fuzzer and the RFC 5769 test
 * vectors reach it. @txid is the transaction we expect: 16 bytes, the
 * magic cookie and the 96-bit transaction ID (libstun's StunTransactionId). */
gboolean _natkit_stun_parse_binding_response (const guint8        *data,
                                              gsize                length,
                                              const guint8        *txid,
                                              NatkitStunResponse  *response,
                                              GError             **error);
gsize    _natkit_stun_build_binding_request  (guint8              *buffer,
                                              gsize                size,
                                              guint8              *txid,
                                              guint32              change_flags);

#define NATKIT_TYPE_STUN_CLIENT (natkit_stun_client_get_type ())
G_DECLARE_FINAL_TYPE (NatkitStunClient, natkit_stun_client, NATKIT, STUN_CLIENT, GObject)

NatkitStunClient *natkit_stun_client_new            (GSocketFamily        family,
                                                     GError             **error);
GInetSocketAddress *natkit_stun_client_get_local_address (NatkitStunClient *self);
void              natkit_stun_client_binding_async  (NatkitStunClient    *self,
                                                     GInetSocketAddress  *server,
                                                     guint32              change_flags,
                                                     guint                initial_rto_ms,
                                                     guint                timeout_ms,
                                                     GCancellable        *cancellable,
                                                     GAsyncReadyCallback  callback,
                                                     gpointer             user_data);
gboolean          natkit_stun_client_binding_finish (NatkitStunClient    *self,
                                                     GAsyncResult        *result,
                                                     NatkitStunResponse  *response,
                                                     GError             **error);
void              natkit_stun_client_send_probe     (NatkitStunClient    *self,
                                                     GInetSocketAddress  *target,
                                                     guint16              response_port,
                                                     guint8              *txid);
guint             natkit_stun_client_get_packets_sent (NatkitStunClient *self);
gboolean          natkit_stun_client_saw_probe      (NatkitStunClient    *self,
                                                     const guint8        *txid);

G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (NatkitStunResponse, natkit_stun_response_clear)

G_END_DECLS
