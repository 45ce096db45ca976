/* natkit-turn-proto.h: what the TURN plugin parses and builds itself
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * libstun (libnice) encodes and decodes STUN attributes; this file adds
 * what it lacks for a TURN client (RFC 8656): turn:/turns: URIs (RFC 7065),
 * long-term-credential MESSAGE-INTEGRITY computed and checked here,
 * ChannelData framing, the framing of STUN and ChannelData on a TCP or TLS
 * stream, the answers of a server taken apart into one struct, and the
 * "turn" signaling body. Pure code, no I/O: unit-tested and fuzzed.
 */
#pragma once

#include <gio/gio.h>
#include <stun/stunagent.h>
#include <stun/stunmessage.h>

G_BEGIN_DECLS

typedef enum
{
  NATKIT_TURN_TRANSPORT_UDP,
  NATKIT_TURN_TRANSPORT_TCP,
  NATKIT_TURN_TRANSPORT_TLS,
} NatkitTurnTransport;

const char *natkit_turn_transport_to_string (NatkitTurnTransport transport);

/* turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT][?transport=tcp];
 * an optional fragment #sha256:HEX pins the TLS server's certificate
 * (natkit's own extension, as the relay pins natkit-server) */
typedef struct
{
  gboolean             secure;           /* turns: */
  gboolean             transport_given;  /* ?transport= was there */
  NatkitTurnTransport  transport;
  char                *host;             /* without brackets */
  guint16              port;
  guint8               pin[32];          /* SHA-256 of the DER certificate */
  gboolean             has_pin;
} NatkitTurnUri;

gboolean natkit_turn_uri_parse (const char     *text,
                                NatkitTurnUri  *out,
                                GError        **error);
void     natkit_turn_uri_clear (NatkitTurnUri  *uri);

/* "HOST:PORT" ("[HOST]:PORT" for IPv6) */
char    *natkit_turn_uri_describe (const NatkitTurnUri *uri);

/* STUN methods and attributes libstun names for older drafts */
#define NATKIT_TURN_METHOD_ALLOCATE          0x003
#define NATKIT_TURN_METHOD_REFRESH           0x004
#define NATKIT_TURN_METHOD_SEND              0x006
#define NATKIT_TURN_METHOD_DATA              0x007
#define NATKIT_TURN_METHOD_CREATE_PERMISSION 0x008
#define NATKIT_TURN_METHOD_CHANNEL_BIND      0x009

#define NATKIT_TURN_CHANNEL_MIN  0x4000
#define NATKIT_TURN_CHANNEL_MAX  0x4FFF
#define NATKIT_TURN_MAX_REALM    763
#define NATKIT_TURN_MAX_NONCE    763
#define NATKIT_TURN_MAX_REASON   763

/* what a request carries to prove who sends it (RFC 8489 9.2) */
typedef struct
{
  char   *username;
  char   *realm;       /* NULL until the server's first 401 */
  char   *nonce;
  guint8  key[16];     /* MD5 (username ":" realm ":" password) */
} NatkitTurnAuth;

void     natkit_turn_auth_set_realm (NatkitTurnAuth *auth,
                                     const char     *realm,
                                     const char     *password);
void     natkit_turn_auth_clear     (NatkitTurnAuth *auth);

/* Builds a request of @method (one of the NATKIT_TURN_METHOD_*) in @buffer
 * with a fresh transaction ID (copied to @txid): @lifetime if >= 0,
 * @peer (XOR-PEER-ADDRESS) if not NULL, @channel if not 0,
 * REQUESTED-TRANSPORT UDP for an Allocate, and — once @auth has a realm —
 * USERNAME, REALM, NONCE and MESSAGE-INTEGRITY. Returns its length, 0 if
 * @buffer is too small. */
gsize    natkit_turn_build_request  (guint16                  method,
                                     const NatkitTurnAuth    *auth,
                                     gint64                   lifetime,
                                     GInetSocketAddress      *peer,
                                     guint16                  channel,
                                     guint8                  *buffer,
                                     gsize                    size,
                                     guint8                   txid[12]);

/* A Send indication carrying @data to @peer. Returns its length, 0 if it
 * does not fit. */
gsize    natkit_turn_build_send     (GInetSocketAddress      *peer,
                                     const guint8            *data,
                                     gsize                    length,
                                     guint8                  *buffer,
                                     gsize                    size);

/* One STUN message from the server, taken apart */
typedef enum
{
  NATKIT_TURN_MESSAGE_SUCCESS,
  NATKIT_TURN_MESSAGE_ERROR,
  NATKIT_TURN_MESSAGE_DATA,        /* a Data indication */
  NATKIT_TURN_MESSAGE_OTHER,       /* anything else: ignored */
} NatkitTurnMessageKind;

typedef struct
{
  NatkitTurnMessageKind  kind;
  guint16                method;
  guint8                 txid[12];
  guint                  error_code;          /* 300..699 for an error */
  char                  *reason;              /* error reason phrase, UTF-8 */
  char                  *realm;
  char                  *nonce;
  GInetSocketAddress    *relayed;             /* XOR-RELAYED-ADDRESS */
  GInetSocketAddress    *mapped;              /* XOR-MAPPED-ADDRESS */
  GInetSocketAddress    *alternate;           /* ALTERNATE-SERVER */
  GInetSocketAddress    *peer;                /* XOR-PEER-ADDRESS */
  gint64                 lifetime;            /* -1 when absent */
  const guint8          *data;                /* DATA, points into the input */
  gsize                  data_length;
  gboolean               has_integrity;
  gboolean               integrity_ok;        /* checked with the key given */
} NatkitTurnMessage;

/* Parses one whole STUN message (@length is exactly its size). @key (16
 * bytes) checks MESSAGE-INTEGRITY when not NULL. FALSE with an error for
 * what is not a well-formed STUN message. */
gboolean natkit_turn_message_parse (const guint8       *data,
                                    gsize               length,
                                    const guint8       *key,
                                    NatkitTurnMessage  *out,
                                    GError            **error);
void     natkit_turn_message_clear (NatkitTurnMessage  *message);

/* ChannelData (RFC 8656 12.4) */
#define NATKIT_TURN_CHANNEL_HEADER 4

/* Writes the 4-byte header for @length bytes on @channel; returns the
 * padding a stream needs after the payload (0..3) */
guint    natkit_turn_channel_header (guint8   header[NATKIT_TURN_CHANNEL_HEADER],
                                     guint16  channel,
                                     gsize    length);

gboolean natkit_turn_channel_parse  (const guint8  *data,
                                     gsize          length,
                                     guint16       *channel,
                                     const guint8 **payload,
                                     gsize         *payload_length,
                                     GError       **error);

/* On a TCP/TLS stream, how many bytes the frame at @data takes (STUN:
 * 20 + its length; ChannelData: 4 + its length, padded to 4): > 0 when
 * known, 0 when more bytes are needed to tell, -1 when the bytes are
 * neither (the stream is lost). */
gssize   natkit_turn_stream_frame_size (const guint8 *data,
                                        gsize         available);

/* A unicast address a peer may ask us to send to: not unspecified,
 * multicast, broadcast or loopback, and a port */
gboolean natkit_turn_address_is_sendable (GInetSocketAddress *address);

/* The "turn" signaling body (docs/turn.md):
 * {"natkit":1,"op":"turn","session":S,"relay":{"ip":I,"port":P},"seen":B} */
char    *natkit_turn_offer_build (const char          *session_id,
                                  GInetSocketAddress  *relayed,
                                  gboolean             seen);
gboolean natkit_turn_offer_parse (const char          *text,
                                  char               **out_session_id,
                                  GInetSocketAddress **out_relayed,
                                  gboolean            *out_seen,
                                  GError             **error);

/* "IP:PORT" ("[IP]:PORT") */
char    *natkit_turn_describe (GInetSocketAddress *address);

G_END_DECLS
