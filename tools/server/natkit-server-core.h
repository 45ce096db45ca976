/* natkit-server-core.h: natkit-server as an object, so nat-tool can embed it
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

typedef struct
{
  guint   max_circuits;       /* per peer, either end */
  guint64 circuit_bytes;      /* both directions */
  guint   circuit_duration;   /* s */
  guint64 circuit_rate;       /* bytes/s, both directions, 1 s burst */
  guint   reservation_ttl;    /* s */
  guint   max_peers;
  guint   max_reservations;
  guint   max_control_rate;   /* messages/s per connection, burst 2× */
} NatkitServerLimits;

void natkit_server_limits_init (NatkitServerLimits *limits);

#define NATKIT_TYPE_SERVER (natkit_server_get_type ())
G_DECLARE_FINAL_TYPE (NatkitServer, natkit_server, NATKIT, SERVER, GObject)

NatkitServer *natkit_server_new             (const char               *host,
                                             guint16                   tls_port,
                                             guint16                   udp_port,
                                             GTlsCertificate          *certificate,
                                             const NatkitServerLimits *limits);
gboolean      natkit_server_start           (NatkitServer             *self,
                                             GError                  **error);
void          natkit_server_stop_async      (NatkitServer             *self,
                                             GAsyncReadyCallback       callback,
                                             gpointer                  user_data);
gboolean      natkit_server_stop_finish     (NatkitServer             *self,
                                             GAsyncResult             *result,
                                             GError                  **error);
guint16       natkit_server_get_tls_port    (NatkitServer             *self);
guint16       natkit_server_get_udp_port    (NatkitServer             *self);
void          natkit_server_set_stun_port2  (NatkitServer             *self,
                                             guint16                   port);
guint16       natkit_server_get_stun_port2  (NatkitServer             *self);
void          natkit_server_set_turn        (NatkitServer             *self,
                                             const char * const       *uris,
                                             const char               *secret,
                                             guint                     ttl);
const char   *natkit_server_get_fingerprint (NatkitServer             *self);
guint         natkit_server_get_n_peers     (NatkitServer             *self);
guint         natkit_server_get_n_circuits  (NatkitServer             *self);
guint64       natkit_server_get_bytes_relayed (NatkitServer           *self);

/* A self-signed certificate (ECDSA P-256) for the server. */
GTlsCertificate *natkit_server_generate_certificate (GError          **error);
char            *natkit_server_certificate_fingerprint (GTlsCertificate *certificate);

/* Handles one UDP datagram from @from as the socket loop does, writing
 * the answer (if any) to @answer; returns its length. For the fuzz target
 * and the tests. */
gsize         _natkit_server_handle_udp     (NatkitServer             *self,
                                             const guint8             *data,
                                             gsize                     len,
                                             GSocketAddress           *from,
                                             guint8                   *answer,
                                             gsize                     answer_size);

/* STUN over TCP (on the TLS port): how many bytes the message that
 * starts with @data (@len bytes so far) takes in all; 0 when it cannot be
 * a STUN message this server answers (too long, a length not a multiple
 * of 4). */
gsize         _natkit_server_stun_tcp_need  (const guint8             *data,
                                             gsize                     len);

/* Test hooks (fuzz targets): no sockets needed. */
void          _natkit_server_add_test_circuit (NatkitServer           *self,
                                               guint32                 id,
                                               const guint8           *token0,
                                               const guint8           *token1);

typedef struct _NatkitServerTestConn NatkitServerTestConn;

NatkitServerTestConn *_natkit_server_test_conn_new  (NatkitServer         *self,
                                                     const guint8         *challenge);
gboolean              _natkit_server_test_conn_feed (NatkitServerTestConn *conn,
                                                     const guint8         *data,
                                                     gsize                 len);
void                  _natkit_server_test_conn_free (NatkitServerTestConn *conn);
/* A control connection (hello sent with a challenge of 32 zero bytes)
 * reads @data, then closes. */
void          _natkit_server_feed_control_for_fuzzing (NatkitServer     *self,
                                                       const guint8     *data,
                                                       gsize             len);

G_END_DECLS
