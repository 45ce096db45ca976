/* natkit-session-private.h: the secure session that runs on any NatkitPath
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#include "natkit.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_SESSION (_natkit_session_get_type ())
G_DECLARE_FINAL_TYPE (NatkitSession, _natkit_session, NATKIT, SESSION, GObject)

/* Inner message types, the first byte of every DTLS application record
 * (docs/session.md). */
typedef enum {
  NATKIT_SESSION_MSG_DATAGRAM = 1,
  NATKIT_SESSION_MSG_STREAM   = 2,
  NATKIT_SESSION_MSG_PING     = 3,
  NATKIT_SESSION_MSG_PONG     = 4,
  NATKIT_SESSION_MSG_CLOSE    = 5,
  NATKIT_SESSION_MSG_SACK     = 6,
} NatkitSessionMsg;

NatkitSession *_natkit_session_new               (NatkitIdentity      *identity,
                                                  const char          *peer_id,
                                                  NatkitRole           role);
void           _natkit_session_set_stream_buffer (NatkitSession       *self,
                                                  gsize                bytes);
void           _natkit_session_handshake_async   (NatkitSession       *self,
                                                  NatkitPath          *path,
                                                  guint                timeout_ms,
                                                  GCancellable        *cancellable,
                                                  GAsyncReadyCallback  callback,
                                                  gpointer             user_data);
gboolean       _natkit_session_handshake_finish  (NatkitSession       *self,
                                                  GAsyncResult        *result,
                                                  GError             **error);
guint64        _natkit_session_get_records_on_path (NatkitSession *self);
NatkitPath    *_natkit_session_get_path          (NatkitSession       *self);
void           _natkit_session_set_path          (NatkitSession       *self,
                                                  NatkitPath          *path);
void           _natkit_session_add_path          (NatkitSession       *self,
                                                  NatkitPath          *path);
const char    *_natkit_session_get_peer_id       (NatkitSession       *self);
gboolean       _natkit_session_is_established    (NatkitSession       *self);
gsize          _natkit_session_get_max_datagram  (NatkitSession       *self);
gboolean       _natkit_session_send_datagram     (NatkitSession       *self,
                                                  GBytes              *datagram,
                                                  GError             **error);
GIOStream     *_natkit_session_get_stream        (NatkitSession       *self);
void           _natkit_session_get_stream_bytes  (NatkitSession       *self,
                                                  guint64             *sent,
                                                  guint64             *received);
void           _natkit_session_ping              (NatkitSession       *self);
void           _natkit_session_close             (NatkitSession       *self,
                                                  const char          *reason);

/* Added with the implementation (tests, fuzzing, diagnostics): */
gboolean       _natkit_session_send_inner        (NatkitSession       *self,
                                                  guint8               type,
                                                  const guint8        *payload,
                                                  gsize                len,
                                                  GError             **error);
const char    *_natkit_session_get_close_reason  (NatkitSession       *self);
guint          _natkit_session_get_ignored_count (NatkitSession       *self);
guint64        _natkit_session_get_repaired_count (NatkitSession      *self);
void           _natkit_session_set_loss_repair    (NatkitSession      *self,
                                                   gboolean            enabled);

/* Signals:
 *   datagram-received (NatkitSession *, GBytes *datagram)
 *   pong              (NatkitSession *, gint64 rtt_us)
 *   closed            (NatkitSession *, GError *error)   NULL when closed locally
 *   path-lost         (NatkitSession *, NatkitPath *path, GError *error)
 */

/* Parses one decrypted inner record; for the fuzz target and the tests. */
gboolean       _natkit_session_parse_inner       (const guint8        *data,
                                                  gsize                len,
                                                  NatkitSessionMsg    *out_type,
                                                  const guint8       **out_payload,
                                                  gsize               *out_payload_len,
                                                  GError             **error);

G_END_DECLS
