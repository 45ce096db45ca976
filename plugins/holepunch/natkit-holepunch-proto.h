/* natkit-holepunch-proto.h: hole punching's packets and signaling payload
 * (docs/protocol.md section 7)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Pure code, no sockets: the unit tests and the fuzz targets use it as is.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

#define NATKIT_PUNCH_SIZE           36
#define NATKIT_PUNCH_NONCE_SIZE     8
#define NATKIT_PUNCH_MAC_SIZE       16
#define NATKIT_PUNCH_TOKEN_SIZE     16
#define NATKIT_PUNCH_MAX_CANDIDATES 16

typedef enum {
  NATKIT_PUNCH_PUNCH   = 1,  /* "here I am", sent to every candidate */
  NATKIT_PUNCH_ACK     = 2,  /* "I heard your punch" (echoes its nonce) */
  NATKIT_PUNCH_CONFIRM = 3,  /* the initiator: "this pair is the path" */
} NatkitPunchType;

typedef enum {
  NATKIT_PUNCH_CANDIDATE_HOST,     /* an address of a local interface */
  NATKIT_PUNCH_CANDIDATE_SRFLX,    /* what a STUN server saw */
  NATKIT_PUNCH_CANDIDATE_MAPPED,   /* a gateway's port mapping */
} NatkitPunchCandidateType;

typedef struct
{
  NatkitPunchCandidateType  type;
  GInetSocketAddress       *address;
} NatkitPunchCandidate;

/* The keys both sides derive from the session ID and the two tokens that
 * travelled over the authenticated signaling channel. */
typedef struct
{
  guint8 key[32];
} NatkitPunchKey;

typedef struct
{
  NatkitPunchType type;
  guint8          sender_role;                     /* 0 initiator, 1 responder */
  guint8          nonce[NATKIT_PUNCH_NONCE_SIZE];
  guint8          echo[NATKIT_PUNCH_NONCE_SIZE];   /* zero in a PUNCH */
} NatkitPunch;

void      natkit_punch_key_derive  (NatkitPunchKey       *key,
                                    const char           *session_id,
                                    const guint8          initiator_token[NATKIT_PUNCH_TOKEN_SIZE],
                                    const guint8          responder_token[NATKIT_PUNCH_TOKEN_SIZE]);
#define NATKIT_PUNCH_SECRET_SIZE    16

/* The nonce a packet to @to carries: a different one per destination, so
 * that an answer replayed from another address does not match. */
void      natkit_punch_nonce_for   (const guint8          secret[NATKIT_PUNCH_SECRET_SIZE],
                                    GInetSocketAddress   *to,
                                    guint8                out[NATKIT_PUNCH_NONCE_SIZE]);
void      natkit_punch_build       (const NatkitPunchKey *key,
                                    const NatkitPunch    *punch,
                                    guint8                out[NATKIT_PUNCH_SIZE]);
gboolean  natkit_punch_looks_like  (const guint8         *data,
                                    gsize                 len);
gboolean  natkit_punch_parse       (const NatkitPunchKey *key,
                                    const guint8         *data,
                                    gsize                 len,
                                    NatkitPunch          *out,
                                    GError              **error);

void      natkit_punch_candidate_clear (NatkitPunchCandidate *candidate);
const char *natkit_punch_candidate_type_to_string (NatkitPunchCandidateType type);
gboolean  natkit_punch_address_is_sendable (GInetSocketAddress *address);

/* How the sender's NAT picks the public port of a new mapping, measured
 * from one socket towards two STUN destinations (docs/protocol.md 7.1). */
typedef enum {
  NATKIT_PUNCH_MAPPING_UNKNOWN,      /* fewer than two answers, or not said */
  NATKIT_PUNCH_MAPPING_INDEPENDENT,  /* the same port for every destination */
  NATKIT_PUNCH_MAPPING_SEQUENTIAL,   /* a new port per destination, step apart */
  NATKIT_PUNCH_MAPPING_RANDOM,       /* a new port per destination, unpredictable */
} NatkitPunchMappingKind;

#define NATKIT_PUNCH_MAX_STEP       16   /* |step| of a sequential mapping */
#define NATKIT_PUNCH_MAX_PREDICTED  16   /* ports predicted at most */

typedef struct
{
  NatkitPunchMappingKind kind;
  gint                   step;       /* SEQUENTIAL: port delta, 1 <= |step| <= 16 */
  guint16                last_port;  /* SEQUENTIAL: the last port it handed out */
} NatkitPunchMapping;

const char *natkit_punch_mapping_to_string (NatkitPunchMappingKind kind);
void      natkit_punch_mapping_classify (const guint16      *ports,
                                         guint               n_ports,
                                         NatkitPunchMapping *out);
guint     natkit_punch_predict_ports    (const NatkitPunchMapping *mapping,
                                         guint               count,
                                         guint16            *out);

/* Who does what in a birthday punch, from both sides' mappings; both
 * sides reach complementary answers from the same two offers. */
typedef enum {
  NATKIT_PUNCH_BIRTHDAY_NONE,        /* not needed, or cannot be planned */
  NATKIT_PUNCH_BIRTHDAY_HARD,        /* ours is random: many sockets */
  NATKIT_PUNCH_BIRTHDAY_EASY,        /* the peer's is random: probe its ports */
  NATKIT_PUNCH_BIRTHDAY_HOPELESS,    /* both random: hole punching cannot work */
} NatkitPunchBirthdayRole;

NatkitPunchBirthdayRole natkit_punch_birthday_role (const NatkitPunchMapping *ours,
                                                    const NatkitPunchMapping *theirs);

/* The "holepunch" signaling body. @mapping may be NULL (not said). */
char     *natkit_punch_offer_build (const char           *session_id,
                                    const guint8          token[NATKIT_PUNCH_TOKEN_SIZE],
                                    const NatkitPunchCandidate *candidates,
                                    guint                 n_candidates,
                                    const char           *nat_type,
                                    const NatkitPunchMapping *mapping);
gboolean  natkit_punch_offer_parse (const char           *text,
                                    char                **out_session_id,
                                    guint8                out_token[NATKIT_PUNCH_TOKEN_SIZE],
                                    GArray              **out_candidates,
                                    char                **out_nat_type,
                                    NatkitPunchMapping   *out_mapping,
                                    GError              **error);

/* TCP simultaneous open ("tcp-holepunch", docs/protocol.md 7.4): the same
 * offer under its own op (no "nat" member), keys under their own label,
 * and the punch packets as RFC 4571 frames: a 2-byte length (36) first. */
#define NATKIT_PUNCH_TCP_HELLO_SIZE (2 + NATKIT_PUNCH_SIZE)

char     *natkit_punch_tcp_offer_build (const char                 *session_id,
                                        const guint8                token[NATKIT_PUNCH_TOKEN_SIZE],
                                        const NatkitPunchCandidate *candidates,
                                        guint                       n_candidates);
gboolean  natkit_punch_tcp_offer_parse (const char           *text,
                                        char                **out_session_id,
                                        guint8                out_token[NATKIT_PUNCH_TOKEN_SIZE],
                                        GArray              **out_candidates,
                                        GError              **error);
void      natkit_punch_tcp_key_derive  (NatkitPunchKey       *key,
                                        const char           *session_id,
                                        const guint8          initiator_token[NATKIT_PUNCH_TOKEN_SIZE],
                                        const guint8          responder_token[NATKIT_PUNCH_TOKEN_SIZE]);
void      natkit_punch_tcp_hello_build (const NatkitPunchKey *key,
                                        const NatkitPunch    *punch,
                                        guint8                out[NATKIT_PUNCH_TCP_HELLO_SIZE]);
gboolean  natkit_punch_tcp_hello_parse (const NatkitPunchKey *key,
                                        const guint8         *data,
                                        gsize                 len,
                                        NatkitPunch          *out,
                                        GError              **error);

/* GLib plumbing both punches (UDP and TCP) use */
GSource  *natkit_punch_add_source   (GSource        *source,
                                     GSourceFunc     func,
                                     gpointer        data,
                                     const char     *name);
void      natkit_punch_drop_source  (GSource       **source);
char     *natkit_punch_describe     (GSocketAddress *address);
gboolean  natkit_punch_same_address (GSocketAddress *a,
                                     GSocketAddress *b);

G_END_DECLS
