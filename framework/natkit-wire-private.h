/* natkit-wire-private.h: natkit-server's wire format (docs/protocol.md)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once
#include <json-glib/json-glib.h>
#include "natkit.h"
G_BEGIN_DECLS
#define NATKIT_WIRE_VERSION 1
#define NATKIT_WIRE_MAX_CONTROL 16384
#define NATKIT_WIRE_MAX_SIGNAL_BODY 8192
#define NATKIT_WIRE_MAX_DATA 65535
#define NATKIT_WIRE_UDP_HEADER 8
#define NATKIT_WIRE_UDP_MAGIC 0x4E
#define NATKIT_WIRE_TOKEN_SIZE 16
#define NATKIT_WIRE_CHALLENGE_SIZE 32
typedef enum { NATKIT_WIRE_UDP_BIND = 1, NATKIT_WIRE_UDP_BOUND = 2, NATKIT_WIRE_UDP_DATA = 3, NATKIT_WIRE_UDP_CLOSED = 4 } NatkitWireUdpType;
typedef struct _NatkitWireReader NatkitWireReader;
NatkitWireReader *_natkit_wire_reader_new (gsize max_frame);
void     _natkit_wire_reader_free (NatkitWireReader *reader);
void     _natkit_wire_reader_set_max_frame (NatkitWireReader *reader, gsize max_frame);
void     _natkit_wire_reader_push (NatkitWireReader *reader, const guint8 *data, gsize len);
gboolean _natkit_wire_reader_next (NatkitWireReader *reader, GBytes **out_body, GError **error);
GBytes     *_natkit_wire_frame (const guint8 *body, gsize len);
GBytes     *_natkit_wire_control_frame (JsonObject *message);
JsonObject *_natkit_wire_json_object (const char *text, gsize len, GError **error);
JsonObject *_natkit_wire_control_parse (const guint8 *body, gsize len, const char **out_type, GError **error);
gboolean    _natkit_wire_udp_parse (const guint8 *data, gsize len, NatkitWireUdpType *out_type, guint32 *out_circuit, const guint8 **out_payload, gsize *out_payload_len);
void        _natkit_wire_udp_header (guint8 out[NATKIT_WIRE_UDP_HEADER], NatkitWireUdpType type, guint32 circuit);
GBytes     *_natkit_wire_register_data (const guint8 *challenge, const char *peer_id);
gboolean    _natkit_wire_get_string (JsonObject *o, const char *member, const char **out, GError **error);
gboolean    _natkit_wire_get_int (JsonObject *o, const char *member, gint64 min, gint64 max, gint64 *out, GError **error);
GBytes     *_natkit_wire_get_base64 (JsonObject *o, const char *member, gsize expected_len, GError **error);
char       *_natkit_wire_certificate_fingerprint (GTlsCertificate *certificate);
G_END_DECLS
