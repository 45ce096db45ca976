/* natkit-session.c: the secure session that runs on any NatkitPath
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * DTLS 1.2 (GnuTLS) over whatever path the manager hands us, both ends
 * authenticated by their Ed25519 identity keys, and inside it: application
 * datagrams, a reliable byte stream (libnice's PseudoTCP, one socket per
 * direction), pings and an orderly close. The wire format, the
 * authentication rule and the choices behind them are in docs/session.md.
 *
 * Everything runs on the thread-default main context of the thread that
 * created the session; nothing blocks it.
 */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/dtls.h>
#include <gnutls/x509.h>
#include <nice/pseudotcp.h>

#include "natkit.h"
#include "natkit-identity-private.h"
#include "natkit-session-private.h"

/* DTLS 1.2 only, ECDHE with an Ed25519 certificate on both sides (GnuTLS
 * files EdDSA under the ECDHE-ECDSA key exchange, RFC 8422), AEAD ciphers
 * only. ECDSA-SHA256 is listed only because GnuTLS 3.7 derives the
 * certificate types of its TLS 1.2 CertificateRequest from the enabled
 * signature algorithms and lists none for Ed25519 alone, so no client
 * could answer; verify_peer_cb() refuses every key but Ed25519. */
#define SESSION_PRIORITY \
  "NONE:+VERS-DTLS1.2:+ECDHE-ECDSA:" \
  "+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:+AEAD:" \
  "+SIGN-EDDSA-ED25519:+SIGN-ECDSA-SHA256:" \
  "+GROUP-X25519:+GROUP-SECP256R1:" \
  "+CTYPE-X509:+COMP-NULL:%SERVER_PRECEDENCE"

#define CREDENTIALS_KEY          "natkit-session-credentials"
#define DEFAULT_TIMEOUT_MS       10000
#define DEFAULT_STREAM_BUFFER    (1024 * 1024)
#define MIN_STREAM_BUFFER        (16 * 1024)
#define MAX_STREAM_BUFFER        (32 * 1024 * 1024)
#define MAX_RECORD               16384   /* DTLS plaintext limit */
#define MAX_INCOMING             4096    /* datagrams waiting for GnuTLS */
#define MAX_CLOSE_REASON         512
#define CLOSE_REPEAT             3
#define PING_SIZE                8
#define PSEUDO_TCP_HEADER        24
/* PseudoTCP subtracts IP, UDP and "Jingle" overhead (116 bytes) from the
 * MTU it is told, then adds its own 24-byte header: telling it the record
 * size + 92 makes each segment fill one record exactly. */
#define PSEUDO_TCP_MTU_SLACK     92
/* the largest stream segment, whatever the path (QUIC's 1200 bytes) */
#define STREAM_MAX_SEGMENT       1200
/* PseudoTCP delays an acknowledgement of in-order data by 100 ms unless a
 * second segment comes first. In its loss recovery (NewReno, no SACK) the
 * sender retransmits one segment per acknowledgement, and each one that
 * fills a hole is in-order data: after a burst of losses (a relay's full
 * socket buffer) every lost segment cost 100 ms, tens of seconds at the
 * end of a big transfer. A short delay keeps pairs of segments under one
 * acknowledgement at speed and makes recovery as fast as the round trip. */
#define STREAM_ACK_DELAY_MS      5
#define CONV_FROM_INITIATOR      1
#define CONV_FROM_RESPONDER      2
#define MIN_RETRANSMIT_MS        100
#define MAX_RETRANSMIT_MS        1000
/* PseudoTCP's header: where the fields this file reads are */
#define SEGMENT_SEQ              4
#define SEGMENT_ACK              8
#define SEGMENT_FLAGS            13
#define SEGMENT_TSVAL            16
#define SEGMENT_TSECR            20
/* After a move to another path the stream resends what the peer has not
 * acknowledged (see stream_resend_start ()): first this much, then, like
 * slow start, as much more as each acknowledgement covers, up to the
 * maximum. */
#define RESEND_INITIAL_WINDOW    (4 * (STREAM_MAX_SEGMENT + PSEUDO_TCP_HEADER))
#define RESEND_MAX_WINDOW        (256 * 1024)
/* a move resends only when the previous path was lost, or when nothing
 * was acknowledged for this long (the peer following us after an outage) */
#define RESEND_QUIET_US          (500 * G_TIME_SPAN_MILLISECOND)
/* The first resent segments may arrive before the peer has the new path
 * (both sides open it at once): without an acknowledgement for this long
 * the resending starts over from the acknowledgement, then waits twice as
 * long, and gives up (leaves it to PseudoTCP) after RESEND_RETRIES. */
#define RESEND_RETRY_MS          200
#define RESEND_RETRIES           10
/* Loss repair while the path works (see stream_repair ()): the reader
 * reports what arrived beyond a hole in SACK messages of at most this
 * many ranges, the writer resends the holes below the highest range. A
 * hole is resent again after a round trip plus this much. */
#define SACK_MAX_RANGES          16
#define SACK_SIZE(n)             (8 + 8 * (n))
#define REPAIR_SLACK_MS          10
/* at most this many holes resent for one SACK (a burst into a full queue
 * would only be lost again) */
#define REPAIR_BURST             64
#define REPAIR_MAX_BUDGET        (REPAIR_BURST * STREAM_MAX_SEGMENT)
/* With nothing acknowledged for 2 round trips (at least this long) the
 * writer resends its last segment (a tail loss probe): it either
 * completes the transfer or makes the reader report the holes before it. */
#define PROBE_MIN_MS             20
#define PROBE_MAX_MS             2000
/* sequence numbers and PseudoTCP's millisecond clock wrap */
#define SEQ_LT(a, b)             ((gint32) ((guint32) (a) - (guint32) (b)) < 0)
#define SEQ_LE(a, b)             ((gint32) ((guint32) (a) - (guint32) (b)) <= 0)

/* A data segment our outgoing stream sent, kept until acknowledged */
typedef struct
{
  GBytes   *bytes;
  guint32   seq, end;
  guint32   resent_ms;  /* PseudoTCP clock of our last resend, 0: none */
  gboolean  sacked;     /* the peer reported it in a SACK */
} Stored;

static void
stored_free (gpointer data)
{
  Stored *stored = data;

  g_bytes_unref (stored->bytes);
  g_free (stored);
}

/* A GSource that runs when its ready time comes (the stream's clocks) */
static gboolean
clock_source_dispatch (GSource     *source,
                       GSourceFunc  callback,
                       gpointer     user_data)
{
  g_source_set_ready_time (source, -1);
  return callback (user_data);
}

static GSourceFuncs clock_source_funcs = {
  NULL, NULL, clock_source_dispatch, NULL, NULL, NULL,
};

typedef enum {
  STATE_NEW,
  STATE_HANDSHAKING,
  STATE_ESTABLISHED,
  STATE_CLOSED,
  STATE_FAILED,
} SessionState;

/* One PseudoTCP socket: the stream has one per direction, so that either
 * side can half-close (PseudoTCP refuses to send in CLOSE-WAIT). */
typedef struct
{
  NatkitSession   *session;
  PseudoTcpSocket *tcp;
  GSource         *clock;
  guint32          conv;
  gboolean         outgoing;
  gboolean         opened;
  gboolean         fin_seen;
  /* libnice does not export its buffer levels: readiness as its callbacks
   * and return values tell it */
  gboolean         readable;
  gboolean         writable;
  guint32          error;           /* errno from PseudoTcpClosed, or 0 */
} Pipe;

/* A path the session receives on. The current path is also referenced. */
typedef struct
{
  NatkitSession *session;
  NatkitPath    *path;              /* NULL once finalized */
  gulong         received_id;
  gulong         closed_id;
  gboolean       strong;
} PathLink;

/* The private GIOStream. */
#define NATKIT_TYPE_SESSION_STREAM (_natkit_session_stream_get_type ())
G_DECLARE_FINAL_TYPE (NatkitSessionStream, _natkit_session_stream,
                      NATKIT, SESSION_STREAM, GIOStream)
#define NATKIT_TYPE_SESSION_INPUT_STREAM (_natkit_session_input_stream_get_type ())
G_DECLARE_FINAL_TYPE (NatkitSessionInputStream, _natkit_session_input_stream,
                      NATKIT, SESSION_INPUT_STREAM, GInputStream)
#define NATKIT_TYPE_SESSION_OUTPUT_STREAM (_natkit_session_output_stream_get_type ())
G_DECLARE_FINAL_TYPE (NatkitSessionOutputStream, _natkit_session_output_stream,
                      NATKIT, SESSION_OUTPUT_STREAM, GOutputStream)

struct _NatkitSession
{
  GObject           parent_instance;

  NatkitIdentity   *identity;
  char             *peer_id;
  char             *short_peer_id;
  NatkitRole        role;
  gsize             stream_buffer;
  GMainContext     *context;

  SessionState      state;
  gnutls_session_t  tls;
  GQueue            incoming;       /* GBytes, for the pull function */
  guint8           *record;         /* receive buffer, MAX_RECORD bytes */
  guint8           *outgoing;       /* send buffer, MAX_RECORD bytes */
  guint             busy;           /* inside GnuTLS or its callers */
  GSource          *process_idle;

  NatkitPath       *path;           /* the current path */
  guint64           records_in;     /* authenticated records received */
  guint64           records_on_path; /* … of them, over the current path */
  GPtrArray        *links;          /* PathLink */

  /* the handshake */
  GTask            *task;
  GSource          *retransmit;
  GSource          *deadline;
  GSource          *cancel_source;
  guint             timeout_ms;
  gboolean          heard_peer;
  GError           *identity_error;

  gsize             max_datagram;
  guint             ignored;

  /* the stream */
  Pipe              out;
  Pipe              in;
  guint64           stream_sent;     /* application bytes the stream took */
  guint64           stream_received; /* application bytes the stream gave */
  gboolean          output_closed;
  gboolean          input_closed;
  gboolean          out_connect_pending;
  GPtrArray        *close_waiters;  /* GTask: output close, until FIN acked */
  GSource          *close_timeout;
  guint64           close_progress;       /* see close_progress () */
  guint             close_idle_s;
  NatkitSessionStream *stream;
  GList            *sources;        /* StreamSource */

  /* What our outgoing stream sent and the peer has not acknowledged yet,
   * as sent (GBytes, PseudoTCP segments in sequence order), to resend it
   * after a move to another path: see stream_resend_start (). */
  GQueue            unacked;        /* Stored */
  guint32           unacked_end;    /* just past the last stored segment */
  guint32           acked;          /* the peer's latest acknowledgement */
  gint64            acked_at;       /* when it last moved on */
  gboolean          resending;
  guint32           resend_next;    /* resent up to here */
  guint32           resend_end;     /* resend up to here */
  guint32           resend_window;  /* bytes past the acknowledgement */
  GSource          *resend_timer;
  guint             resend_retries; /* without an acknowledgement */
  /* Round-trip samples from segments sent before the last move measure
   * the outage (or the old path), not the path: PseudoTCP does not take
   * them while this is set (see stream_segment ()). */
  gboolean          rtt_fence;
  guint32           rtt_fence_ms;

  /* loss repair, writing side: see stream_repair () */
  guint32           srtt_ms;        /* smoothed, from acknowledgements; 0: none */
  GSource          *probe;          /* tail loss probe */
  guint             probes;         /* sent since the last acknowledgement */
  guint64           repaired;       /* segments resent for a SACK or probe */
  gsize             repair_budget;  /* bytes: what the peer got since */
  gboolean          no_repair;      /* for benchmarks: PseudoTCP alone */
  /* reading side: what arrived beyond the first hole */
  guint32           in_ack;         /* what our reading socket acknowledged */
  gboolean          in_ack_known;
  guint32           sack[SACK_MAX_RANGES][2];
  guint             n_sack;

  char             *close_reason;
};

G_DEFINE_FINAL_TYPE (NatkitSession, _natkit_session, G_TYPE_OBJECT)

enum {
  SIGNAL_DATAGRAM_RECEIVED,
  SIGNAL_PONG,
  SIGNAL_CLOSED,
  SIGNAL_PATH_LOST,
  SIGNAL_PATH_CHANGED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void process_incoming (NatkitSession *self);
static void stream_wake      (NatkitSession *self);
static void stream_sources_detach (NatkitSession *self);
static void pipe_clock_update (Pipe *pipe);
static void session_closed   (NatkitSession *self,
                              GError        *error,
                              const char    *reason);
static NatkitSessionStream *natkit_session_stream_new    (NatkitSession       *session);
static void                 natkit_session_stream_detach (NatkitSessionStream *stream);

/* Helpers for messages */

static char *
describe_path (NatkitPath *path)
{
  const char *method, *remote;

  if (path == NULL)
    return g_strdup ("no path");

  method = natkit_path_get_method (path);
  remote = natkit_path_get_remote_address (path);
  if (remote != NULL)
    return g_strdup_printf ("%s (to %s)", method ? method : "an unnamed path",
                            remote);
  return g_strdup (method ? method : "an unnamed path");
}

static char *
format_duration (guint ms)
{
  if (ms % 1000 == 0)
    return g_strdup_printf ("%u s", ms / 1000);
  return g_strdup_printf ("%.1f s", ms / 1000.0);
}

static char *
shorten_peer_id (const char *peer_id)
{
  if (g_utf8_strlen (peer_id, -1) <= 8)
    return g_strdup (peer_id);
  return g_strdup_printf ("%.6s…", peer_id);
}

/* Credentials: a self-signed certificate for the identity's key */

static gnutls_priority_t
get_priority (void)
{
  static gsize once = 0;
  static gnutls_priority_t priority = NULL;

  if (g_once_init_enter (&once))
    {
      const char *err_pos = NULL;
      int ret = gnutls_priority_init (&priority, SESSION_PRIORITY, &err_pos);

      if (ret < 0)
        {
          g_warning ("GnuTLS rejects natkit's DTLS profile at “%s”: %s; "
                     "the secure session cannot work with this GnuTLS",
                     err_pos ? err_pos : "?", gnutls_strerror (ret));
          priority = NULL;
        }
      g_once_init_leave (&once, 1);
    }
  return priority;
}

static void
free_credentials (gpointer data)
{
  gnutls_certificate_free_credentials (data);
}

static gboolean
identity_error (GError     **error,
                int          code,
                const char  *what)
{
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
               "%s: %s", what, gnutls_strerror (code));
  return FALSE;
}

/* One certificate per identity, made once and kept on the identity: its
 * dates, serial and issuer mean nothing (peers pin the key, not the
 * certificate), it only carries the public key into the handshake. */
static gnutls_certificate_credentials_t
get_credentials (NatkitIdentity  *identity,
                 GError         **error)
{
  gnutls_certificate_credentials_t creds;
  gnutls_privkey_t privkey;
  gnutls_x509_privkey_t x509key = NULL;
  gnutls_x509_crt_t crt = NULL;
  g_autofree char *dn = NULL;
  guint8 serial[16];
  int ret;

  creds = g_object_get_data (G_OBJECT (identity), CREDENTIALS_KEY);
  if (creds != NULL)
    return creds;

  privkey = _natkit_identity_get_privkey (identity);
  dn = g_strdup_printf ("CN=%s", natkit_identity_get_peer_id (identity));

  if ((ret = gnutls_privkey_export_x509 (privkey, &x509key)) < 0)
    {
      identity_error (error, ret, "Cannot use the identity key for DTLS");
      return NULL;
    }

  if ((ret = gnutls_rnd (GNUTLS_RND_NONCE, serial, sizeof serial)) < 0)
    {
      gnutls_x509_privkey_deinit (x509key);
      identity_error (error, ret, "Cannot make a certificate for the identity key");
      return NULL;
    }
  serial[0] = (serial[0] & 0x7f) | 0x40;   /* positive, no leading zero */

  if ((ret = gnutls_x509_crt_init (&crt)) < 0 ||
      (ret = gnutls_x509_crt_set_version (crt, 3)) < 0 ||
      (ret = gnutls_x509_crt_set_serial (crt, serial, sizeof serial)) < 0 ||
      (ret = gnutls_x509_crt_set_dn (crt, dn, NULL)) < 0 ||
      (ret = gnutls_x509_crt_set_activation_time (crt, time (NULL) - 24 * 3600)) < 0 ||
      (ret = gnutls_x509_crt_set_expiration_time (crt, GNUTLS_X509_NO_WELL_DEFINED_EXPIRATION)) < 0 ||
      (ret = gnutls_x509_crt_set_key (crt, x509key)) < 0 ||
      (ret = gnutls_x509_crt_set_key_usage (crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
      (ret = gnutls_x509_crt_set_basic_constraints (crt, 0, -1)) < 0 ||
      (ret = gnutls_x509_crt_privkey_sign (crt, crt, privkey, 0, 0)) < 0)
    {
      if (crt != NULL)
        gnutls_x509_crt_deinit (crt);
      gnutls_x509_privkey_deinit (x509key);
      identity_error (error, ret, "Cannot make a certificate for the identity key");
      return NULL;
    }

  if ((ret = gnutls_certificate_allocate_credentials (&creds)) < 0)
    {
      gnutls_x509_crt_deinit (crt);
      gnutls_x509_privkey_deinit (x509key);
      identity_error (error, ret, "Cannot set up DTLS credentials");
      return NULL;
    }

  /* copies both */
  ret = gnutls_certificate_set_x509_key (creds, &crt, 1, x509key);
  gnutls_x509_crt_deinit (crt);
  gnutls_x509_privkey_deinit (x509key);
  if (ret < 0)
    {
      gnutls_certificate_free_credentials (creds);
      identity_error (error, ret, "Cannot set up DTLS credentials");
      return NULL;
    }

  g_debug ("made the DTLS certificate for identity %s",
           natkit_identity_get_peer_id (identity));
  g_object_set_data_full (G_OBJECT (identity), CREDENTIALS_KEY, creds,
                          free_credentials);
  return creds;
}

/* Parsing */

/* PseudoTCP headers and SACKs: big-endian 32-bit fields */

static guint32
segment_get_u32 (const guint8 *segment,
                 gsize         offset)
{
  guint32 value;

  memcpy (&value, segment + offset, sizeof value);
  return GUINT32_FROM_BE (value);
}

static void
segment_set_u32 (guint8  *segment,
                 gsize    offset,
                 guint32  value)
{
  value = GUINT32_TO_BE (value);
  memcpy (segment + offset, &value, sizeof value);
}

/*
 * _natkit_session_parse_inner:
 * @data: one decrypted DTLS record
 * @len: its length
 * @out_type: (out): the message type (the first byte)
 * @out_payload: (out): where the payload starts, inside @data
 * @out_payload_len: (out): the payload length
 * @error: return location for a #GError
 *
 * Checks the framing of an inner message. Messages of a type this version
 * does not know pass (the session ignores them, so later versions can add
 * types); known types must be well formed.
 *
 * Returns: %TRUE if the record is a well-formed inner message
 */
gboolean
_natkit_session_parse_inner (const guint8        *data,
                             gsize                len,
                             NatkitSessionMsg    *out_type,
                             const guint8       **out_payload,
                             gsize               *out_payload_len,
                             GError             **error)
{
  const guint8 *payload;
  gsize payload_len;
  guint8 type;

  if (data == NULL || len == 0)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "empty inner record");
      return FALSE;
    }

  type = data[0];
  payload = data + 1;
  payload_len = len - 1;

  switch (type)
    {
    case NATKIT_SESSION_MSG_DATAGRAM:
      break;

    case NATKIT_SESSION_MSG_STREAM:
      if (payload_len < PSEUDO_TCP_HEADER)
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                       "stream segment of %" G_GSIZE_FORMAT " bytes is "
                       "shorter than a PseudoTCP header", payload_len);
          return FALSE;
        }
      break;

    case NATKIT_SESSION_MSG_PING:
    case NATKIT_SESSION_MSG_PONG:
      if (payload_len != PING_SIZE)
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                       "%s of %" G_GSIZE_FORMAT " bytes (must be %d)",
                       type == NATKIT_SESSION_MSG_PING ? "ping" : "pong",
                       payload_len, PING_SIZE);
          return FALSE;
        }
      break;

    case NATKIT_SESSION_MSG_SACK:
      {
        guint32 prev;

        if (payload_len < SACK_SIZE (1) || payload_len > SACK_SIZE (SACK_MAX_RANGES) ||
            (payload_len - 8) % 8 != 0)
          {
            g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                         "SACK of %" G_GSIZE_FORMAT " bytes (must be 8 + 8 × 1…%d)",
                         payload_len, SACK_MAX_RANGES);
            return FALSE;
          }
        /* ranges in order, each after the acknowledgement and the previous
         * one, not empty */
        prev = segment_get_u32 (payload, 4);
        for (gsize off = 8; off < payload_len; off += 8)
          {
            guint32 start = segment_get_u32 (payload, off);
            guint32 end = segment_get_u32 (payload, off + 4);

            if (!SEQ_LT (prev, start) || !SEQ_LT (start, end) ||
                end - start > MAX_STREAM_BUFFER)
              {
                g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                     "SACK ranges out of order");
                return FALSE;
              }
            prev = end;
          }
      }
      break;

    case NATKIT_SESSION_MSG_CLOSE:
      if (payload_len > MAX_CLOSE_REASON ||
          memchr (payload, 0, payload_len) != NULL ||
          !g_utf8_validate ((const char *) payload, payload_len, NULL))
        {
          g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "close reason is not short UTF-8 text");
          return FALSE;
        }
      break;

    default:
      break;
    }

  if (out_type != NULL)
    *out_type = type;
  if (out_payload != NULL)
    *out_payload = payload;
  if (out_payload_len != NULL)
    *out_payload_len = payload_len;
  return TRUE;
}

/* The GnuTLS transport */

static ssize_t
push_cb (gnutls_transport_ptr_t  ptr,
         const void             *data,
         size_t                  size)
{
  NatkitSession *self = ptr;
  g_autoptr(GBytes) datagram = NULL;
  g_autoptr(GError) error = NULL;

  /* Like a network that loses the datagram: DTLS copes, the stream
   * retransmits once a working path is set. */
  if (self->path == NULL || natkit_path_is_closed (self->path))
    return size;

  datagram = g_bytes_new (data, size);
  if (!natkit_path_send (self->path, datagram, &error))
    g_debug ("session with %s: a %" G_GSIZE_FORMAT "-byte record was lost: %s",
             self->short_peer_id, size, error->message);
  return size;
}

static ssize_t
pull_cb (gnutls_transport_ptr_t  ptr,
         void                   *data,
         size_t                  size)
{
  NatkitSession *self = ptr;
  g_autoptr(GBytes) datagram = g_queue_pop_head (&self->incoming);
  const guint8 *bytes;
  gsize length;

  if (datagram == NULL)
    {
      gnutls_transport_set_errno (self->tls, EAGAIN);
      return -1;
    }

  bytes = g_bytes_get_data (datagram, &length);
  length = MIN (length, size);
  memcpy (data, bytes, length);
  return length;
}

static int
pull_timeout_cb (gnutls_transport_ptr_t ptr,
                 unsigned int           ms)
{
  NatkitSession *self = ptr;

  return self->incoming.length > 0 ? 1 : 0;
}

/* Sends one inner message as one DTLS record. Returns a GnuTLS code. */
static int
send_record (NatkitSession *self,
             guint8         type,
             const guint8  *payload,
             gsize          len)
{
  int ret;

  g_assert (len < MAX_RECORD);

  self->outgoing[0] = type;
  if (len > 0)
    memcpy (self->outgoing + 1, payload, len);
  self->busy++;
  ret = gnutls_record_send (self->tls, self->outgoing, len + 1);
  self->busy--;
  return ret;
}

/* Paths */

typedef struct
{
  GWeakRef    session;
  NatkitPath *path;
  GError     *error;
} PathLost;

static void
path_lost_free (gpointer data)
{
  PathLost *lost = data;

  g_weak_ref_clear (&lost->session);
  g_object_unref (lost->path);
  g_clear_error (&lost->error);
  g_free (lost);
}

static void
emit_path_lost (NatkitSession *self,
                NatkitPath    *path,
                const GError  *error)
{
  if (self->state != STATE_CLOSED && self->state != STATE_FAILED &&
      self->path == path)
    g_signal_emit (self, signals[SIGNAL_PATH_LOST], 0, path, error);
}

static gboolean
path_lost_cb (gpointer data)
{
  PathLost *lost = data;
  g_autoptr(NatkitSession) self = g_weak_ref_get (&lost->session);

  if (self != NULL)
    emit_path_lost (self, lost->path, lost->error);
  return G_SOURCE_REMOVE;
}

static void
unlink_path (NatkitSession *self,
             PathLink      *link);
static PathLink *link_path (NatkitSession *self,
                            NatkitPath    *path);

static void
follow_path (NatkitSession *self,
             NatkitPath    *path)
{
  g_object_ref (path);
  _natkit_session_set_path (self, path);
  g_signal_emit (self, signals[SIGNAL_PATH_CHANGED], 0, path);
  g_object_unref (path);
}

static void
path_received_cb (NatkitPath *path,
                  GBytes     *datagram,
                  gpointer    user_data)
{
  PathLink *link = user_data;
  NatkitSession *self = link->session;

  if (self->state != STATE_HANDSHAKING && self->state != STATE_ESTABLISHED)
    return;

  /* A pull function that returns 0 tells GnuTLS the transport ended: it
   * would invalidate the whole session for one empty datagram. */
  if (g_bytes_get_size (datagram) == 0)
    {
      self->ignored++;
      return;
    }

  if (self->incoming.length >= MAX_INCOMING)
    {
      g_debug ("session with %s: receive queue full, dropping a datagram",
               self->short_peer_id);
      return;
    }

  self->heard_peer = TRUE;
  g_queue_push_tail (&self->incoming, g_bytes_ref (datagram));

  /* The responder answers where the initiator speaks: during the
   * handshake, on the path its flight came over; afterwards, once a
   * record from there authenticates (the initiator moved the session,
   * say from a relay to a direct path). */
  if (self->role == NATKIT_ROLE_RESPONDER && link->path != self->path &&
      !natkit_path_is_closed (link->path))
    {
      NatkitPath *from = link->path;
      guint64 before = self->records_in;

      if (self->state == STATE_HANDSHAKING)
        {
          follow_path (self, from);
          process_incoming (self);
          return;
        }
      g_object_ref (from);
      process_incoming (self);
      if (self->records_in > before && self->state == STATE_ESTABLISHED &&
          self->path != from && !natkit_path_is_closed (from))
        follow_path (self, from);
      g_object_unref (from);
      return;
    }
  {
    gboolean on_path = link->path == self->path;
    guint64 before = self->records_in;

    g_object_ref (self);
    process_incoming (self);
    if (on_path)
      self->records_on_path += self->records_in - before;
    g_object_unref (self);
  }
}

static void
path_closed_cb (NatkitPath   *path,
                const GError *error,
                gpointer      user_data)
{
  PathLink *link = user_data;
  NatkitSession *self = link->session;

  if (path == self->path)
    {
      PathLost *lost;
      GSource *idle;

      g_debug ("session with %s lost its path %s: %s; waiting for a new one",
               self->short_peer_id, natkit_path_get_method (path),
               error ? error->message : "closed");

      if (self->busy == 0)
        {
          g_object_ref (self);
          emit_path_lost (self, path, error);
          g_object_unref (self);
          return;
        }

      /* The path closed inside one of our sends: not from in there. */
      lost = g_new0 (PathLost, 1);
      g_weak_ref_init (&lost->session, self);
      lost->path = g_object_ref (path);
      lost->error = error ? g_error_copy (error) : NULL;
      idle = g_idle_source_new ();
      g_source_set_callback (idle, path_lost_cb, lost, path_lost_free);
      g_source_set_static_name (idle, "[natkit] session path lost");
      g_source_attach (idle, self->context);
      g_source_unref (idle);
    }
  else
    {
      g_debug ("session with %s: previous path %s closed",
               self->short_peer_id, natkit_path_get_method (path));
      unlink_path (self, link);
    }
}

static void
link_weak_notify_cb (gpointer  data,
                     GObject  *where_the_object_was)
{
  PathLink *link = data;

  link->path = NULL;
  g_ptr_array_remove_fast (link->session->links, link);
  g_free (link);
}

static PathLink *
find_link (NatkitSession *self,
           NatkitPath    *path)
{
  for (guint i = 0; i < self->links->len; i++)
    {
      PathLink *link = g_ptr_array_index (self->links, i);

      if (link->path == path)
        return link;
    }
  return NULL;
}

static PathLink *
link_path (NatkitSession *self,
           NatkitPath    *path)
{
  PathLink *link = find_link (self, path);

  if (link != NULL)
    return link;

  link = g_new0 (PathLink, 1);
  link->session = self;
  link->path = path;
  g_object_weak_ref (G_OBJECT (path), link_weak_notify_cb, link);
  link->received_id = g_signal_connect (path, "received",
                                        G_CALLBACK (path_received_cb), link);
  link->closed_id = g_signal_connect (path, "closed",
                                      G_CALLBACK (path_closed_cb), link);
  g_ptr_array_add (self->links, link);
  return link;
}

static void
unlink_path (NatkitSession *self,
             PathLink      *link)
{
  NatkitPath *path = link->path;

  g_ptr_array_remove_fast (self->links, link);
  if (path != NULL)
    {
      g_signal_handler_disconnect (path, link->received_id);
      g_signal_handler_disconnect (path, link->closed_id);
      g_object_weak_unref (G_OBJECT (path), link_weak_notify_cb, link);
      if (link->strong)
        g_object_unref (path);
    }
  g_free (link);
}

/* The largest inner message, and the stream's segment size, from the
 * current path's MTU. */
static void
update_mtu (NatkitSession *self)
{
  guint data_mtu, advise;

  if (self->tls == NULL || self->path == NULL)
    return;

  gnutls_dtls_set_mtu (self->tls, natkit_path_get_mtu (self->path));
  if (self->state != STATE_ESTABLISHED)
    return;

  data_mtu = MIN (gnutls_dtls_get_data_mtu (self->tls), MAX_RECORD);
  self->max_datagram = data_mtu > 1 ? data_mtu - 1 : 0;

  /* The stream's segments fit every path the session may move to: libnice's
   * PseudoTCP cannot shrink segments already sent, so a move to a path
   * with a smaller MTU (a direct path's 1400 to a relay's 1392) would stall
   * the stream for good on their retransmissions. */
  advise = MIN (MIN (self->max_datagram, STREAM_MAX_SEGMENT) + PSEUDO_TCP_MTU_SLACK,
                G_MAXUINT16);
  if (self->out.tcp != NULL)
    pseudo_tcp_socket_notify_mtu (self->out.tcp, advise);
  if (self->in.tcp != NULL)
    pseudo_tcp_socket_notify_mtu (self->in.tcp, advise);
}

/* The stream's resending after a move.
 *
 * libnice's PseudoTCP has no SACK and no go-back-N: after an outage that
 * swallowed a whole window, it retransmits one segment per timeout, and
 * its timeout has backed off during the outage and then grows from
 * round-trip samples that span the outage (the peer echoes timestamps of
 * segments sent before it). A 1 MB window then took minutes, often more
 * than its 15 retransmissions allow. So the session keeps what the
 * outgoing stream sent until the peer acknowledges it and, when the
 * session moves to another path after the old one went quiet, resends it
 * there itself, with fresh timestamps, paced by the peer's
 * acknowledgements; and it hides round-trip samples from before the move
 * from PseudoTCP. The peer's PseudoTCP takes the resent segments like any
 * retransmission (DTLS gives each record a fresh sequence number). */

/* PseudoTCP's clock: the monotonic clock in ms, in 32 bits */
static guint32
pseudo_tcp_now (void)
{
  return (guint32) (g_get_monotonic_time () / 1000);
}

static void stream_probe_arm (NatkitSession *self);

/* Keeps a data segment the outgoing stream just sent. */
static void
stream_remember (NatkitSession *self,
                 const guint8  *segment,
                 gsize          len)
{
  Stored *stored;
  guint32 seq;

  /* data only: no control (connect), FIN or RST segment */
  if (len <= PSEUDO_TCP_HEADER || segment[SEGMENT_FLAGS] != 0)
    return;
  seq = segment_get_u32 (segment, SEGMENT_SEQ);
  /* a retransmission of what is stored already */
  if (self->unacked.length > 0 && SEQ_LT (seq, self->unacked_end))
    return;
  stored = g_new0 (Stored, 1);
  stored->bytes = g_bytes_new (segment, len);
  stored->seq = seq;
  stored->end = seq + (guint32) (len - PSEUDO_TCP_HEADER);
  g_queue_push_tail (&self->unacked, stored);
  self->unacked_end = stored->end;
  if (self->unacked.length == 1)
    stream_probe_arm (self);
}

/* Sends a stored segment again, with a fresh timestamp. */
static void
stream_send_stored (NatkitSession *self,
                    Stored        *stored)
{
  guint8 copy[MAX_RECORD];
  gsize size;
  const guint8 *segment = g_bytes_get_data (stored->bytes, &size);

  memcpy (copy, segment, size);
  segment_set_u32 (copy, SEGMENT_TSVAL, pseudo_tcp_now ());
  send_record (self, NATKIT_SESSION_MSG_STREAM, copy, size);
}

static void
stream_resend_stop (NatkitSession *self)
{
  if (self->resend_timer != NULL)
    {
      g_source_destroy (self->resend_timer);
      g_clear_pointer (&self->resend_timer, g_source_unref);
    }
  if (!self->resending)
    return;
  self->resending = FALSE;
  g_debug ("session with %s: resent the unacknowledged stream up to %u",
           self->short_peer_id, self->resend_next);
}

static void stream_resend_pump (NatkitSession *self);
static void stream_resend_arm  (NatkitSession *self);

static gboolean
stream_resend_timeout_cb (gpointer user_data)
{
  NatkitSession *self = user_data;

  g_clear_pointer (&self->resend_timer, g_source_unref);
  if (!self->resending || self->state != STATE_ESTABLISHED)
    return G_SOURCE_REMOVE;
  if (++self->resend_retries > RESEND_RETRIES)
    {
      g_debug ("session with %s: no acknowledgement for the resent stream; "
               "leaving it to the stream's retransmissions", self->short_peer_id);
      stream_resend_stop (self);
      return G_SOURCE_REMOVE;
    }
  /* start over from what the peer has */
  self->resend_next = self->acked;
  self->resend_window = RESEND_INITIAL_WINDOW;
  stream_resend_arm (self);
  stream_resend_pump (self);
  return G_SOURCE_REMOVE;
}

/* (Re)starts the wait for the next acknowledgement. */
static void
stream_resend_arm (NatkitSession *self)
{
  if (self->resend_timer != NULL)
    {
      g_source_destroy (self->resend_timer);
      g_clear_pointer (&self->resend_timer, g_source_unref);
    }
  self->resend_timer = g_timeout_source_new (RESEND_RETRY_MS <<
                                            MIN (self->resend_retries, 4));
  g_source_set_callback (self->resend_timer, stream_resend_timeout_cb, self, NULL);
  g_source_set_static_name (self->resend_timer, "[natkit] session stream resend");
  g_source_attach (self->resend_timer, self->context);
}

/* Resends stored segments, as far as the window allows. */
static void
stream_resend_pump (NatkitSession *self)
{
  for (GList *l = self->unacked.head; l != NULL && self->resending; l = l->next)
    {
      Stored *stored = l->data;

      if (SEQ_LE (stored->end, self->resend_next))
        continue;
      if (!SEQ_LT (stored->seq, self->resend_end))
        break;
      if (stored->end - self->acked > self->resend_window)
        return;   /* the next acknowledgement opens the window */

      stream_send_stored (self, stored);
      self->resend_next = stored->end;
      if (self->state != STATE_ESTABLISHED)
        return;
    }
  /* all resent once: done when the peer acknowledges it (stream_acked ()),
   * or started over by the timer */
}

/* The peer acknowledged our outgoing stream up to @ack. */
static void
stream_acked (NatkitSession *self,
              guint32        ack)
{
  guint32 advance;

  if (self->acked_at != 0 && !SEQ_LT (self->acked, ack))
    return;
  advance = self->acked_at != 0 ? ack - self->acked : 0;
  self->acked = ack;
  self->acked_at = g_get_monotonic_time ();

  while (self->unacked.length > 0)
    {
      Stored *stored = g_queue_peek_head (&self->unacked);

      if (!SEQ_LE (stored->end, ack))
        break;
      stored_free (g_queue_pop_head (&self->unacked));
    }
  self->probes = 0;
  self->repair_budget = MIN (self->repair_budget + advance, REPAIR_MAX_BUDGET);
  stream_probe_arm (self);

  if (self->resending)
    {
      if (SEQ_LE (self->resend_end, ack))
        {
          stream_resend_stop (self);
          return;
        }
      if (SEQ_LT (self->resend_next, ack))
        self->resend_next = ack;
      self->resend_window = MIN (self->resend_window + advance, RESEND_MAX_WINDOW);
      self->resend_retries = 0;
      stream_resend_arm (self);
      stream_resend_pump (self);
    }
}

/* The session moved to another path: @lost says the previous one was
 * lost (or there was none). */
static void
stream_resend_start (NatkitSession *self,
                     gboolean       lost)
{
  Stored *head;

  self->rtt_fence = TRUE;
  self->rtt_fence_ms = pseudo_tcp_now ();

  if (self->state != STATE_ESTABLISHED || self->unacked.length == 0)
    return;
  /* the old path still delivers (an upgrade): PseudoTCP copes */
  if (!lost && g_get_monotonic_time () - self->acked_at < RESEND_QUIET_US)
    return;

  head = g_queue_peek_head (&self->unacked);
  self->resending = TRUE;
  self->resend_next = head->seq;
  self->resend_end = self->unacked_end;
  self->resend_window = RESEND_INITIAL_WINDOW;
  self->resend_retries = 0;
  stream_resend_arm (self);
  g_debug ("session with %s: resending %u unacknowledged bytes of the stream "
           "on the new path", self->short_peer_id,
           self->resend_end - self->resend_next);
  stream_resend_pump (self);
}

/* Loss repair while the path works.
 *
 * PseudoTCP has no SACK: after a burst of losses (a relay's full socket
 * buffer) its NewReno recovery resends one segment per round trip, and
 * whatever fast retransmit misses waits for its timeout, at least 1 s and
 * doubling, one hole at a time; a lost tail of a transfer waits the same
 * way. So the session adds SACK beside it, in its own messages: the
 * reading side tracks what arrived beyond the first hole and reports up to
 * SACK_MAX_RANGES ranges (a SACK message) whenever a segment lands beyond
 * a hole or fills one while others remain; the writing side marks what
 * the peer holds and resends, from its copies, every hole below the
 * highest reported byte that it has not resent within a round trip. When
 * nothing is acknowledged for two round trips, the writer resends its
 * last segment (a tail loss probe, RFC 8985): it either completes the
 * transfer or makes the reader report the holes. The peer's PseudoTCP
 * takes the resent segments like its own retransmissions; a version
 * without SACK ignores the messages (unknown type) and never sends any. */

static void
stream_probe_stop (NatkitSession *self)
{
  if (self->probe != NULL)
    g_source_set_ready_time (self->probe, -1);
}

static guint32
stream_srtt (NatkitSession *self)
{
  return self->srtt_ms != 0 ? self->srtt_ms : 100;
}

/* Resends the holes below @highest that the peer did not report. */
static void
stream_repair (NatkitSession *self,
               guint32        highest)
{
  guint32 now = pseudo_tcp_now ();
  guint32 again = stream_srtt (self) + REPAIR_SLACK_MS;
  guint count = 0;

  if (self->resending || self->no_repair)
    return;   /* resending everything after a move already */

  for (GList *l = self->unacked.head; l != NULL; l = l->next)
    {
      Stored *stored = l->data;

      if (!SEQ_LT (stored->seq, highest))
        break;
      if (stored->sacked)
        continue;
      if (stored->resent_ms != 0 && now - stored->resent_ms < again)
        continue;
      /* packet conservation: resend as much as left the path */
      if (self->repair_budget < stored->end - stored->seq)
        return;
      self->repair_budget -= stored->end - stored->seq;
      stream_send_stored (self, stored);
      stored->resent_ms = now != 0 ? now : 1;
      self->repaired++;
      if (self->state != STATE_ESTABLISHED || ++count >= REPAIR_BURST)
        return;
    }
}

/* The peer's SACK for our outgoing stream. */
static void
stream_sack_received (NatkitSession *self,
                      const guint8  *payload,
                      gsize          len)
{
  gsize n = (len - 8) / 8, r = 0;
  guint32 highest;

  if (self->out.tcp == NULL || segment_get_u32 (payload, 0) != self->out.conv)
    {
      self->ignored++;
      return;
    }
  highest = segment_get_u32 (payload, 8 + 8 * (n - 1) + 4);

  /* both in sequence order: one walk */
  for (GList *l = self->unacked.head; l != NULL && r < n; l = l->next)
    {
      Stored *stored = l->data;

      while (r < n && SEQ_LE (segment_get_u32 (payload, 8 + 8 * r + 4), stored->seq))
        r++;
      if (!stored->sacked && r < n &&
          SEQ_LE (segment_get_u32 (payload, 8 + 8 * r), stored->seq) &&
          SEQ_LE (stored->end, segment_get_u32 (payload, 8 + 8 * r + 4)))
        {
          stored->sacked = TRUE;
          self->repair_budget += stored->end - stored->seq;
        }
    }
  stream_repair (self, highest);
}

static gboolean
stream_probe_cb (gpointer user_data)
{
  NatkitSession *self = user_data;
  Stored *stored;

  if (self->state != STATE_ESTABLISHED || self->unacked.length == 0)
    return G_SOURCE_CONTINUE;
  if (!self->resending && !self->no_repair)
    {
      /* the last segment the peer does not hold */
      for (GList *l = self->unacked.tail; l != NULL; l = l->prev)
        {
          stored = l->data;
          if (stored->sacked)
            continue;
          g_debug ("session with %s: nothing acknowledged for a while; "
                   "resending stream bytes %u…%u", self->short_peer_id,
                   stored->seq, stored->end);
          stream_send_stored (self, stored);
          stored->resent_ms = pseudo_tcp_now () | 1;
          self->repaired++;
          break;
        }
    }
  self->probes++;
  stream_probe_arm (self);
  return G_SOURCE_CONTINUE;
}

/* (Re)starts the wait for an acknowledgement before a tail loss probe. */
static void
stream_probe_arm (NatkitSession *self)
{
  guint64 wait_ms;

  if (self->unacked.length == 0 || self->state != STATE_ESTABLISHED)
    {
      stream_probe_stop (self);
      return;
    }
  if (self->probe == NULL)
    {
      self->probe = g_source_new (&clock_source_funcs, sizeof (GSource));
      g_source_set_callback (self->probe, stream_probe_cb, self, NULL);
      g_source_set_static_name (self->probe, "[natkit] session stream probe");
      g_source_attach (self->probe, self->context);
    }
  /* two round trips and the peer's delayed acknowledgement, doubling for
   * every probe that goes unanswered */
  wait_ms = MAX (2 * stream_srtt (self) + STREAM_ACK_DELAY_MS, PROBE_MIN_MS);
  wait_ms = MIN (wait_ms << MIN (self->probes, 8), PROBE_MAX_MS);
  g_source_set_ready_time (self->probe, g_get_monotonic_time () +
                           (gint64) wait_ms * G_TIME_SPAN_MILLISECOND);
}

/* Reading side: the ranges beyond in_ack, merged, in order */
static void
sack_absorb (NatkitSession *self)
{
  guint i = 0;

  while (i < self->n_sack && SEQ_LE (self->sack[i][0], self->in_ack))
    {
      if (SEQ_LT (self->in_ack, self->sack[i][1]))
        self->in_ack = self->sack[i][1];
      i++;
    }
  if (i > 0)
    {
      memmove (self->sack, self->sack + i, (self->n_sack - i) * sizeof self->sack[0]);
      self->n_sack -= i;
    }
}

static void
sack_add (NatkitSession *self,
          guint32        start,
          guint32        end)
{
  guint i = 0;

  while (i < self->n_sack && SEQ_LT (self->sack[i][1], start))
    i++;
  if (i < self->n_sack && SEQ_LE (self->sack[i][0], end))
    {
      /* overlaps or touches range i, maybe the ones after it too */
      guint j = i;

      if (SEQ_LT (start, self->sack[i][0]))
        self->sack[i][0] = start;
      while (j + 1 < self->n_sack && SEQ_LE (self->sack[j + 1][0], end))
        j++;
      if (SEQ_LT (self->sack[j][1], end))
        self->sack[i][1] = end;
      else
        self->sack[i][1] = self->sack[j][1];
      if (j > i)
        {
          memmove (self->sack + i + 1, self->sack + j + 1,
                   (self->n_sack - j - 1) * sizeof self->sack[0]);
          self->n_sack -= j - i;
        }
      return;
    }
  if (i == SACK_MAX_RANGES)
    return;   /* the highest ones are the least useful */
  if (self->n_sack == SACK_MAX_RANGES)
    self->n_sack--;
  memmove (self->sack + i + 1, self->sack + i, (self->n_sack - i) * sizeof self->sack[0]);
  self->sack[i][0] = start;
  self->sack[i][1] = end;
  self->n_sack++;
}

static void
sack_send (NatkitSession *self)
{
  guint8 msg[SACK_SIZE (SACK_MAX_RANGES)];

  segment_set_u32 (msg, 0, self->in.conv);
  segment_set_u32 (msg, 4, self->in_ack);
  for (guint i = 0; i < self->n_sack; i++)
    {
      segment_set_u32 (msg, 8 + 8 * i, self->sack[i][0]);
      segment_set_u32 (msg, 8 + 8 * i + 4, self->sack[i][1]);
    }
  send_record (self, NATKIT_SESSION_MSG_SACK, msg, SACK_SIZE (self->n_sack));
}

/* Reading side: a data segment of the incoming stream arrived. */
static void
sack_segment_arrived (NatkitSession *self,
                      guint32        seq,
                      guint32        end)
{
  if (!self->in_ack_known || seq == end || self->no_repair)
    return;
  if (SEQ_LE (seq, self->in_ack))
    {
      if (!SEQ_LT (self->in_ack, end))
        return;   /* a duplicate */
      self->in_ack = end;
      if (self->n_sack == 0)
        return;   /* in order, nothing missing */
      sack_absorb (self);
      /* a hole filled: tell where the next ones are */
      if (self->n_sack > 0)
        sack_send (self);
      return;
    }
  sack_add (self, seq, end);
  sack_send (self);
}

/* Reading side: our reading socket acknowledged up to @ack. */
static void
sack_acknowledged (NatkitSession *self,
                   guint32        ack)
{
  if (!self->in_ack_known || SEQ_LT (self->in_ack, ack))
    {
      self->in_ack = ack;
      self->in_ack_known = TRUE;
      sack_absorb (self);
    }
}

/*
 * _natkit_session_set_path:
 * @self: a session
 * @path: the path to use from now on
 *
 * Sends every later record over @path. Records keep being accepted from
 * the previous paths for as long as they exist and are open (the session
 * holds a reference only on the current one), so nothing in flight is
 * lost; DTLS's replay window drops duplicates. An open stream keeps
 * flowing; its segment size follows the new path's MTU. When the previous
 * path was lost (or had gone quiet), what the stream sent and the peer has
 * not acknowledged is resent over @path at once (stream_resend_start ()).
 */
void
_natkit_session_set_path (NatkitSession *self,
                          NatkitPath    *path)
{
  PathLink *old_link = NULL, *link;
  gboolean lost;

  g_return_if_fail (NATKIT_IS_SESSION (self));
  g_return_if_fail (NATKIT_IS_PATH (path));

  if (self->path == path)
    return;
  lost = self->path == NULL || natkit_path_is_closed (self->path);

  if (self->path != NULL)
    {
      g_autofree char *from = describe_path (self->path);
      g_autofree char *to = describe_path (path);

      g_debug ("session with %s moves from %s to %s", self->short_peer_id,
               from, to);
      old_link = find_link (self, self->path);
    }

  link = link_path (self, path);
  if (!link->strong)
    {
      link->strong = TRUE;
      g_object_ref (path);
    }
  self->path = path;

  if (old_link != NULL)
    {
      NatkitPath *old_path = old_link->path;

      old_link->strong = FALSE;
      if (natkit_path_is_closed (old_path))
        {
          old_link->strong = TRUE;
          unlink_path (self, old_link);
        }
      else
        g_object_unref (old_path);   /* may free old_link */
    }

  update_mtu (self);
  stream_resend_start (self, lost);
}

/*
 * _natkit_session_add_path:
 * @self: a session
 * @path: another path to the same peer
 *
 * Receives on @path too, without sending there (the caller keeps it
 * open). A responder moves to it when the initiator does.
 */
void
_natkit_session_add_path (NatkitSession *self,
                          NatkitPath    *path)
{
  g_return_if_fail (NATKIT_IS_SESSION (self));
  g_return_if_fail (NATKIT_IS_PATH (path));

  if (natkit_path_is_closed (path))
    return;
  link_path (self, path);
}

/*
 * _natkit_session_get_path:
 * @self: a session
 *
 * Returns: (transfer none) (nullable): the path records are sent on
 */
/* Records that authenticated after arriving over the current path (the
 * path it was when they came): proof the peer still answers there, which
 * path bytes alone are not (anyone can send to a UDP port). */
guint64
_natkit_session_get_records_on_path (NatkitSession *self)
{
  return self->records_on_path;
}

NatkitPath *
_natkit_session_get_path (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), NULL);
  return self->path;
}

/* The stream's PseudoTCP sockets */

static PseudoTcpWriteResult
pipe_write_packet_cb (PseudoTcpSocket *tcp,
                      const gchar     *buffer,
                      guint32          len,
                      gpointer         user_data)
{
  Pipe *pipe = user_data;
  NatkitSession *self = pipe->session;
  int ret;

  if (self->state != STATE_ESTABLISHED)
    return WR_FAIL;
  if (len > self->max_datagram)
    return WR_TOO_LARGE;

  ret = send_record (self, NATKIT_SESSION_MSG_STREAM, (const guint8 *) buffer, len);
  if (ret == GNUTLS_E_LARGE_PACKET)
    return WR_TOO_LARGE;
  if (ret < 0)
    {
      g_debug ("session with %s: cannot send a stream segment: %s",
               self->short_peer_id, gnutls_strerror (ret));
      if (gnutls_error_is_fatal (ret))
        return WR_FAIL;
    }
  if (pipe->outgoing)
    stream_remember (self, (const guint8 *) buffer, len);
  else if (len >= PSEUDO_TCP_HEADER)
    sack_acknowledged (self, segment_get_u32 ((const guint8 *) buffer, SEGMENT_ACK));
  return WR_SUCCESS;
}

static void
pipe_opened_cb (PseudoTcpSocket *tcp,
                gpointer         user_data)
{
  Pipe *pipe = user_data;
  NatkitSession *self = pipe->session;

  g_debug ("session with %s: stream %s is open", self->short_peer_id,
           pipe->outgoing ? "out" : "in");
  pipe->opened = TRUE;
  pipe->writable = pipe->outgoing;
  if (pipe->outgoing && self->output_closed)
    pseudo_tcp_socket_shutdown (tcp, PSEUDO_TCP_SHUTDOWN_WR);
  stream_wake (self);
}

static void
pipe_readable_cb (PseudoTcpSocket *tcp,
                  gpointer         user_data)
{
  Pipe *pipe = user_data;

  pipe->readable = TRUE;
  stream_wake (pipe->session);
}

static void
pipe_writable_cb (PseudoTcpSocket *tcp,
                  gpointer         user_data)
{
  Pipe *pipe = user_data;

  pipe->writable = TRUE;
  stream_wake (pipe->session);
}

static void
pipe_closed_cb (PseudoTcpSocket *tcp,
                guint32          error,
                gpointer         user_data)
{
  Pipe *pipe = user_data;

  g_debug ("session with %s: stream %s closed: %s", pipe->session->short_peer_id,
           pipe->outgoing ? "out" : "in", error ? g_strerror (error) : "done");
  if (pipe->error == 0)
    pipe->error = error;
  if (pipe->outgoing)
    {
      /* nothing of it is sent again */
      stream_resend_stop (pipe->session);
      g_queue_clear_full (&pipe->session->unacked, stored_free);
      stream_probe_stop (pipe->session);
    }
  stream_wake (pipe->session);
}


/* An output close waits for the peer's acknowledgement of everything up
 * to our FIN (a TCP socket's linger), checked every CLOSE_TICK_S. It gives
 * up after CLOSE_LINGER_S without hearing anything from the peer (libnice
 * does not always retransmit a lost FIN or its ACK, and does not export
 * its send buffer's level; a big send buffer over a slow path may take
 * longer than that to drain, and then the peer's ACKs show it is going). */
#define CLOSE_TICK_S    2
#define CLOSE_LINGER_S  20

/* The output stream's close completes once the peer acknowledged our end
 * of stream (all data delivered): PseudoTCP state FIN_WAIT_2 or later. */
static gboolean
output_delivered (NatkitSession *self)
{
  int state = PSEUDO_TCP_CLOSED;

  if (self->out.tcp == NULL || !self->out.opened)
    return TRUE;
  g_object_get (self->out.tcp, "state", &state, NULL);
  return state == PSEUDO_TCP_FIN_WAIT_2 || state == PSEUDO_TCP_TIME_WAIT ||
         state == PSEUDO_TCP_CLOSED;
}

/* Close waiters are told from an idle, never from inside the session's
 * own code: their callbacks may drop the last reference to the session
 * (or to the connection that owns it) while that code still runs. */
typedef struct
{
  GPtrArray *tasks;
  GError    *error;
} CloseWaiters;

static void
close_waiters_free (gpointer data)
{
  CloseWaiters *w = data;

  g_ptr_array_unref (w->tasks);
  g_clear_error (&w->error);
  g_free (w);
}

static gboolean
close_waiters_cb (gpointer user_data)
{
  CloseWaiters *w = user_data;

  for (guint i = 0; i < w->tasks->len; i++)
    {
      GTask *task = g_ptr_array_index (w->tasks, i);

      if (w->error)
        g_task_return_error (task, g_error_copy (w->error));
      else
        g_task_return_boolean (task, TRUE);
    }
  return G_SOURCE_REMOVE;
}

static void
return_close_waiters (NatkitSession *self,
                      const GError  *error)
{
  CloseWaiters *w;
  GSource *idle;

  if (self->close_waiters == NULL || self->close_waiters->len == 0)
    return;
  w = g_new0 (CloseWaiters, 1);
  w->tasks = g_steal_pointer (&self->close_waiters);
  w->error = error ? g_error_copy (error) : NULL;
  self->close_waiters = g_ptr_array_new_with_free_func (g_object_unref);
  if (self->close_timeout)
    {
      g_source_destroy (self->close_timeout);
      g_clear_pointer (&self->close_timeout, g_source_unref);
    }
  idle = g_idle_source_new ();
  g_source_set_priority (idle, G_PRIORITY_DEFAULT);
  g_source_set_callback (idle, close_waiters_cb, w, close_waiters_free);
  g_source_set_static_name (idle, "[natkit] session close waiters");
  g_source_attach (idle, self->context);
  g_source_unref (idle);
}

static void
complete_close_waiters (NatkitSession *self,
                        const GError  *error)
{
  if (self->close_waiters == NULL || self->close_waiters->len == 0)
    return;
  if (!error && !output_delivered (self) &&
      self->state != STATE_CLOSED && self->state != STATE_FAILED)
    return;
  return_close_waiters (self, error);
}

static guint64
close_progress (NatkitSession *self)
{
  guint64 progress = 0;

  if (self->path != NULL)
    progress += natkit_path_get_bytes_received (self->path);
  return progress;
}

static gboolean
close_timeout_cb (gpointer user_data)
{
  NatkitSession *self = user_data;
  guint64 progress = close_progress (self);

  if (progress != self->close_progress)
    {
      self->close_progress = progress;
      self->close_idle_s = 0;
      return G_SOURCE_CONTINUE;
    }
  self->close_idle_s += CLOSE_TICK_S;
  if (self->close_idle_s < CLOSE_LINGER_S)
    return G_SOURCE_CONTINUE;

  g_debug ("session with %s: the end of our stream was not acknowledged "
           "and nothing happened for %u s; closing anyway", self->short_peer_id,
           self->close_idle_s);
  /* this source is done: return_close_waiters must not destroy it */
  g_clear_pointer (&self->close_timeout, g_source_unref);
  return_close_waiters (self, NULL);
  return G_SOURCE_REMOVE;
}

static gboolean
pipe_clock_cb (gpointer user_data)
{
  Pipe *pipe = user_data;

  pseudo_tcp_socket_notify_clock (pipe->tcp);
  pipe_clock_update (pipe);
  if (pipe->outgoing)
    complete_close_waiters (pipe->session, NULL);
  return G_SOURCE_CONTINUE;
}

static void
pipe_clock_update (Pipe *pipe)
{
  guint64 timeout = 0;
  guint32 now_ms;
  gint32 delta;

  if (pipe->clock == NULL)
    return;

  if (!pseudo_tcp_socket_get_next_clock (pipe->tcp, &timeout))
    {
      g_source_set_ready_time (pipe->clock, -1);
      return;
    }

  /* PseudoTCP's clock is the monotonic clock in ms, in 32 bits */
  now_ms = (guint32) (g_get_monotonic_time () / 1000);
  delta = (gint32) ((guint32) timeout - now_ms);
  if (delta < 0)
    delta = 0;
  g_source_set_ready_time (pipe->clock, g_get_monotonic_time () + (gint64) delta * 1000);
}

static void
pipe_init (NatkitSession *self,
           Pipe          *pipe,
           guint32        conv,
           gboolean       outgoing)
{
  PseudoTcpCallbacks callbacks = {
    pipe,
    pipe_opened_cb,
    pipe_readable_cb,
    pipe_writable_cb,
    pipe_closed_cb,
    pipe_write_packet_cb,
  };

  pipe->session = self;
  pipe->conv = conv;
  pipe->outgoing = outgoing;
  pipe->tcp = g_object_new (PSEUDO_TCP_SOCKET_TYPE,
                            "conversation", conv,
                            "callbacks", &callbacks,
                            "support-fin-ack", TRUE,
                            "no-delay", TRUE,
                            "ack-delay", STREAM_ACK_DELAY_MS,
                            NULL);
  /* Only the buffer in the direction the data flows matters. */
  g_object_set (pipe->tcp, outgoing ? "snd-buf" : "rcv-buf",
                (guint) self->stream_buffer, NULL);

  pipe->clock = g_source_new (&clock_source_funcs, sizeof (GSource));
  g_source_set_callback (pipe->clock, pipe_clock_cb, pipe, NULL);
  g_source_set_static_name (pipe->clock, "[natkit] session stream clock");
  g_source_attach (pipe->clock, self->context);
}

static void
pipe_stop (Pipe *pipe)
{
  if (pipe->clock != NULL)
    {
      g_source_destroy (pipe->clock);
      g_clear_pointer (&pipe->clock, g_source_unref);
    }
}

static void
pipe_clear (Pipe *pipe)
{
  pipe_stop (pipe);
  g_clear_object (&pipe->tcp);
}

static void
pipes_start (NatkitSession *self)
{
  gboolean initiator = self->role == NATKIT_ROLE_INITIATOR;

  pipe_init (self, &self->out,
             initiator ? CONV_FROM_INITIATOR : CONV_FROM_RESPONDER, TRUE);
  pipe_init (self, &self->in,
             initiator ? CONV_FROM_RESPONDER : CONV_FROM_INITIATOR, FALSE);
  update_mtu (self);

  /* Each side opens its own sending direction; the receiving one
   * listens, and is established by the peer's first segment (data is
   * retransmitted by its sender, so nothing hangs on a lost final ACK).
   * The responder finishes the handshake first: it opens its direction
   * once a record from the initiator shows the initiator is ready too. */
  if (initiator)
    pseudo_tcp_socket_connect (self->out.tcp);
  else
    self->out_connect_pending = TRUE;
  pipe_clock_update (&self->out);
  pipe_clock_update (&self->in);

  if (self->input_closed)
    pseudo_tcp_socket_close (self->in.tcp, TRUE);
}

static void
stream_segment (NatkitSession *self,
                const guint8  *segment,
                gsize          len)
{
  Pipe *pipe;
  guint32 conv, tsecr;
  guint8 fenced[MAX_RECORD];

  memcpy (&conv, segment, sizeof conv);
  conv = GUINT32_FROM_BE (conv);
  if (self->in.tcp != NULL && conv == self->in.conv)
    pipe = &self->in;
  else if (self->out.tcp != NULL && conv == self->out.conv)
    pipe = &self->out;
  else
    {
      self->ignored++;
      g_debug ("session with %s: dropping a segment for unknown stream %u",
               self->short_peer_id, conv);
      return;
    }

  /* the parser checked the length: a whole header is there */
  tsecr = segment_get_u32 (segment, SEGMENT_TSECR);
  if (self->rtt_fence && tsecr != 0)
    {
      if (SEQ_LT (tsecr, self->rtt_fence_ms))
        {
          /* echoes a segment sent before the move: no round-trip sample */
          memcpy (fenced, segment, len);
          segment_set_u32 (fenced, SEGMENT_TSECR, 0);
          segment = fenced;
        }
      else
        self->rtt_fence = FALSE;
    }
  if (pipe->outgoing)
    {
      guint32 ack = segment_get_u32 (segment, SEGMENT_ACK);

      tsecr = segment_get_u32 (segment, SEGMENT_TSECR);
      /* a round-trip sample from an acknowledgement that moves on */
      if (tsecr != 0 && (self->acked_at == 0 || SEQ_LT (self->acked, ack)))
        {
          guint32 sample = pseudo_tcp_now () - tsecr;

          if (sample < 60000)
            self->srtt_ms = self->srtt_ms == 0 ? MAX (sample, 1) :
                            MAX ((7 * self->srtt_ms + sample) / 8, 1);
        }
      stream_acked (self, ack);
    }
  else if (len > PSEUDO_TCP_HEADER && segment[SEGMENT_FLAGS] == 0)
    {
      guint32 seq = segment_get_u32 (segment, SEGMENT_SEQ);

      sack_segment_arrived (self, seq, seq + (guint32) (len - PSEUDO_TCP_HEADER));
    }

  pseudo_tcp_socket_notify_packet (pipe->tcp, (const gchar *) segment, len);
  pipe_clock_update (pipe);
  if (pipe->outgoing)
    complete_close_waiters (self, NULL);

  /* A FIN carries no data, so PseudoTCP says nothing: look. */
  if (!pipe->outgoing && !pipe->fin_seen &&
      pseudo_tcp_socket_is_closed_remotely (pipe->tcp))
    {
      g_debug ("session with %s: the peer finished its stream",
               self->short_peer_id);
      pipe->fin_seen = TRUE;
      stream_wake (self);
    }
}

/* Inner messages */

static void
handle_pong (NatkitSession *self,
             const guint8  *payload)
{
  gint64 now = g_get_monotonic_time ();
  guint64 sent = 0;
  gint64 rtt;

  for (guint i = 0; i < PING_SIZE; i++)
    sent = (sent << 8) | payload[i];

  /* the peer chose these bytes: compare before subtracting */
  if (now < 0 || sent > (guint64) now ||
      (rtt = now - (gint64) sent) > 600 * G_USEC_PER_SEC)
    {
      g_debug ("session with %s: ignoring a pong for a ping we did not send",
               self->short_peer_id);
      return;
    }

  if (self->path != NULL)
    natkit_path_set_rtt (self->path, rtt);
  g_signal_emit (self, signals[SIGNAL_PONG], 0, rtt);
}

static void
handle_inner (NatkitSession *self,
              const guint8  *data,
              gsize          len)
{
  g_autoptr(GError) error = NULL;
  NatkitSessionMsg type;
  const guint8 *payload;
  gsize payload_len;

  if (!_natkit_session_parse_inner (data, len, &type, &payload, &payload_len,
                                    &error))
    {
      self->ignored++;
      g_debug ("session with %s: ignoring a malformed message: %s",
               self->short_peer_id, error->message);
      return;
    }

  if (self->out_connect_pending && self->out.tcp != NULL)
    {
      self->out_connect_pending = FALSE;
      pseudo_tcp_socket_connect (self->out.tcp);
      pipe_clock_update (&self->out);
    }

  switch (type)
    {
    case NATKIT_SESSION_MSG_DATAGRAM:
      {
        g_autoptr(GBytes) datagram = g_bytes_new (payload, payload_len);

        g_signal_emit (self, signals[SIGNAL_DATAGRAM_RECEIVED], 0, datagram);
      }
      break;

    case NATKIT_SESSION_MSG_STREAM:
      stream_segment (self, payload, payload_len);
      break;

    case NATKIT_SESSION_MSG_SACK:
      stream_sack_received (self, payload, payload_len);
      break;

    case NATKIT_SESSION_MSG_PING:
      send_record (self, NATKIT_SESSION_MSG_PONG, payload, payload_len);
      break;

    case NATKIT_SESSION_MSG_PONG:
      handle_pong (self, payload);
      break;

    case NATKIT_SESSION_MSG_CLOSE:
      {
        g_autofree char *reason = g_strndup ((const char *) payload, payload_len);
        GError *closed;

        if (*reason != '\0')
          closed = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                "%s closed the session: %s",
                                self->short_peer_id, reason);
        else
          closed = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                "%s closed the session", self->short_peer_id);
        g_debug ("%s", closed->message);
        session_closed (self, closed, reason);
      }
      break;

    default:
      self->ignored++;
      g_debug ("session with %s: ignoring a message of unknown type %u "
               "(%" G_GSIZE_FORMAT " bytes)", self->short_peer_id,
               (guint) type, payload_len);
      break;
    }
}

/* Decrypts every queued datagram. */
static void
read_records (NatkitSession *self)
{
  guint budget = self->incoming.length + 64;

  while (self->state == STATE_ESTABLISHED && budget-- > 0)
    {
      guint8 seq[8];
      ssize_t ret;

      self->busy++;
      ret = gnutls_record_recv_seq (self->tls, self->record, MAX_RECORD, seq);
      self->busy--;

      if (ret > 0)
        {
          self->records_in++;
          handle_inner (self, self->record, ret);
        }
      else if (ret == 0)
        {
          GError *closed = g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                        "%s closed the session",
                                        self->short_peer_id);
          session_closed (self, closed, NULL);
        }
      else if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED)
        {
          if (self->incoming.length == 0)
            break;
        }
      else if (ret == GNUTLS_E_REHANDSHAKE)
        {
          g_debug ("session with %s: refusing a renegotiation",
                   self->short_peer_id);
          gnutls_alert_send (self->tls, GNUTLS_AL_WARNING,
                             GNUTLS_A_NO_RENEGOTIATION);
        }
      else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED)
        {
          GError *failed = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                        "%s ended the secure session with the "
                                        "alert “%s”", self->short_peer_id,
                                        gnutls_alert_get_name (gnutls_alert_get (self->tls)));
          g_debug ("%s", failed->message);
          session_closed (self, failed, NULL);
        }
      else if (ret == GNUTLS_E_INVALID_SESSION)
        {
          GError *failed = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                        "The secure session with %s broke: %s",
                                        self->short_peer_id,
                                        gnutls_strerror (ret));
          g_debug ("%s", failed->message);
          session_closed (self, failed, NULL);
        }
      else
        {
          /* DTLS drops what it cannot authenticate: a forged or damaged
           * datagram must not end the session. */
          self->ignored++;
          g_debug ("session with %s: dropped a datagram: %s",
                   self->short_peer_id, gnutls_strerror (ret));
        }
    }
}

/* The handshake */

static void
handshake_clear_sources (NatkitSession *self)
{
  if (self->retransmit != NULL)
    {
      g_source_destroy (self->retransmit);
      g_clear_pointer (&self->retransmit, g_source_unref);
    }
  if (self->deadline != NULL)
    {
      g_source_destroy (self->deadline);
      g_clear_pointer (&self->deadline, g_source_unref);
    }
  if (self->cancel_source != NULL)
    {
      g_source_destroy (self->cancel_source);
      g_clear_pointer (&self->cancel_source, g_source_unref);
    }
}

static void
handshake_fail (NatkitSession *self,
                GError        *error)
{
  GTask *task = g_steal_pointer (&self->task);

  g_debug ("secure handshake with %s failed: %s", self->short_peer_id,
           error->message);
  self->state = STATE_FAILED;
  handshake_clear_sources (self);
  g_queue_clear_full (&self->incoming, (GDestroyNotify) g_bytes_unref);
  g_clear_pointer (&self->tls, gnutls_deinit);
  g_clear_error (&self->identity_error);

  if (task != NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
    }
  else
    g_error_free (error);
}

static GError *
timeout_error (NatkitSession *self)
{
  g_autofree char *within = format_duration (self->timeout_ms);
  g_autofree char *over = describe_path (self->path);

  return g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                      "No secure handshake with %s within %s over %s: %s",
                      self->short_peer_id, within, over,
                      self->heard_peer ?
                      "datagrams came back, but the handshake did not finish "
                      "(is the path losing most datagrams?)" :
                      "nothing came back from the peer (is it running, and "
                      "does the path carry datagrams both ways?)");
}

static GError *
handshake_error (NatkitSession *self,
                 int            ret)
{
  if (self->identity_error != NULL)
    return g_steal_pointer (&self->identity_error);

  switch (ret)
    {
    case GNUTLS_E_FATAL_ALERT_RECEIVED:
      {
        gnutls_alert_description_t alert = gnutls_alert_get (self->tls);
        const char *name = gnutls_alert_get_name (alert);

        switch (alert)
          {
          case GNUTLS_A_BAD_CERTIFICATE:
          case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
          case GNUTLS_A_CERTIFICATE_UNKNOWN:
          case GNUTLS_A_ACCESS_DENIED:
            return g_error_new (NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                                "%s refused our identity (it was expecting "
                                "another peer ID than %s, or another kind of "
                                "key): it answered with the alert “%s”",
                                self->short_peer_id,
                                natkit_identity_get_peer_id (self->identity),
                                name);
          case GNUTLS_A_HANDSHAKE_FAILURE:
          case GNUTLS_A_INSUFFICIENT_SECURITY:
          case GNUTLS_A_PROTOCOL_VERSION:
            return g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                "%s does not speak natkit's DTLS profile "
                                "(DTLS 1.2, Ed25519 keys, AEAD ciphers): it "
                                "answered with the alert “%s”",
                                self->short_peer_id, name);
          default:
            return g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                "%s ended the secure handshake with the "
                                "alert “%s”", self->short_peer_id, name);
          }
      }

    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
      return g_error_new (NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                          "%s did not present an identity certificate: "
                          "refusing the connection", self->short_peer_id);

    case GNUTLS_E_NO_CIPHER_SUITES:
    case GNUTLS_E_UNKNOWN_CIPHER_SUITE:
    case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
    case GNUTLS_E_UNWANTED_ALGORITHM:
    case GNUTLS_E_NO_COMMON_KEY_SHARE:
    case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
    case GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM:
      return g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                          "%s does not speak natkit's DTLS profile (DTLS 1.2, "
                          "Ed25519 keys, AEAD ciphers): %s",
                          self->short_peer_id, gnutls_strerror (ret));

    case GNUTLS_E_TIMEDOUT:
      return timeout_error (self);

    default:
      return g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                          "The secure handshake with %s failed: %s",
                          self->short_peer_id, gnutls_strerror (ret));
    }
}

static void
handshake_done (NatkitSession *self)
{
  GTask *task = g_steal_pointer (&self->task);
  g_autofree char *desc = gnutls_session_get_desc (self->tls);
  g_autofree char *over = describe_path (self->path);

  self->state = STATE_ESTABLISHED;
  handshake_clear_sources (self);
  update_mtu (self);
  g_debug ("secure session with %s established over %s as DTLS %s: %s; "
           "datagrams up to %" G_GSIZE_FORMAT " bytes", self->short_peer_id,
           over, self->role == NATKIT_ROLE_INITIATOR ? "client" : "server",
           desc, self->max_datagram);

  pipes_start (self);

  if (task != NULL)
    {
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
    }
}

static gboolean retransmit_cb (gpointer user_data);

static void
handshake_step (NatkitSession *self)
{
  guint tries = 0;
  int ret;

  self->busy++;
  do
    ret = gnutls_handshake (self->tls);
  while (ret < 0 && ret != GNUTLS_E_AGAIN && ret != GNUTLS_E_INTERRUPTED &&
         !gnutls_error_is_fatal (ret) && ++tries < 64);
  self->busy--;

  if (ret == 0)
    {
      handshake_done (self);
      return;
    }

  if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED ||
      !gnutls_error_is_fatal (ret))
    {
      guint ms = gnutls_dtls_get_timeout (self->tls);

      if (self->retransmit != NULL)
        {
          g_source_destroy (self->retransmit);
          g_source_unref (self->retransmit);
        }
      self->retransmit = g_timeout_source_new (MAX (ms, 1));
      g_source_set_callback (self->retransmit, retransmit_cb, self, NULL);
      g_source_set_static_name (self->retransmit, "[natkit] DTLS retransmit");
      g_source_attach (self->retransmit, self->context);
      return;
    }

  /* Tell the peer why, when it is our decision (an alert we received
   * needs no answer). */
  if (ret != GNUTLS_E_FATAL_ALERT_RECEIVED)
    {
      self->busy++;
      if (self->identity_error != NULL)
        gnutls_alert_send (self->tls, GNUTLS_AL_FATAL, GNUTLS_A_BAD_CERTIFICATE);
      else
        gnutls_alert_send_appropriate (self->tls, ret);
      self->busy--;
    }
  handshake_fail (self, handshake_error (self, ret));
}

static gboolean
retransmit_cb (gpointer user_data)
{
  NatkitSession *self = user_data;

  g_clear_pointer (&self->retransmit, g_source_unref);
  process_incoming (self);
  return G_SOURCE_REMOVE;
}

static gboolean
deadline_cb (gpointer user_data)
{
  NatkitSession *self = user_data;

  g_clear_pointer (&self->deadline, g_source_unref);
  g_object_ref (self);
  handshake_fail (self, timeout_error (self));
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  NatkitSession *self = user_data;
  GError *error = NULL;

  g_clear_pointer (&self->cancel_source, g_source_unref);
  g_cancellable_set_error_if_cancelled (cancellable, &error);
  g_object_ref (self);
  handshake_fail (self, error);
  g_object_unref (self);
  return G_SOURCE_REMOVE;
}

static gboolean
process_idle_cb (gpointer user_data)
{
  NatkitSession *self = user_data;

  g_clear_pointer (&self->process_idle, g_source_unref);
  process_incoming (self);
  return G_SOURCE_REMOVE;
}

/* Feeds what arrived (or a due retransmission) to GnuTLS, never from
 * inside GnuTLS. */
static void
process_incoming (NatkitSession *self)
{
  if (self->busy > 0)
    {
      if (self->process_idle == NULL)
        {
          self->process_idle = g_idle_source_new ();
          g_source_set_callback (self->process_idle, process_idle_cb, self, NULL);
          g_source_set_static_name (self->process_idle, "[natkit] session input");
          g_source_attach (self->process_idle, self->context);
        }
      return;
    }

  g_object_ref (self);
  if (self->state == STATE_HANDSHAKING)
    handshake_step (self);
  if (self->state == STATE_ESTABLISHED)
    read_records (self);
  g_object_unref (self);
}

/* Verification: pinning by key */

static int
refuse_peer (NatkitSession *self,
             const char    *format,
             ...) G_GNUC_PRINTF (2, 3);

static int
refuse_peer (NatkitSession *self,
             const char    *format,
             ...)
{
  va_list args;

  g_clear_error (&self->identity_error);
  va_start (args, format);
  self->identity_error = g_error_new_valist (NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                                             format, args);
  va_end (args);
  return -1;
}

static int
verify_peer_cb (gnutls_session_t tls)
{
  NatkitSession *self = gnutls_session_get_ptr (tls);
  const gnutls_datum_t *certs;
  unsigned int n_certs = 0;
  gnutls_pubkey_t pubkey = NULL;
  gnutls_datum_t x = { NULL, 0 };
  gnutls_ecc_curve_t curve;
  g_autoptr(GBytes) key = NULL;
  g_autofree char *presented = NULL;
  int pk, ret;

  if (gnutls_certificate_type_get2 (tls, GNUTLS_CTYPE_PEERS) != GNUTLS_CRT_X509)
    return refuse_peer (self, "%s presented a certificate that is not X.509: "
                        "refusing the connection", self->short_peer_id);

  certs = gnutls_certificate_get_peers (tls, &n_certs);
  if (certs == NULL || n_certs == 0)
    return refuse_peer (self, "%s did not present an identity certificate: "
                        "refusing the connection", self->short_peer_id);

  if ((ret = gnutls_pubkey_init (&pubkey)) < 0 ||
      (ret = gnutls_pubkey_import_x509_raw (pubkey, &certs[0],
                                            GNUTLS_X509_FMT_DER, 0)) < 0)
    {
      if (pubkey != NULL)
        gnutls_pubkey_deinit (pubkey);
      return refuse_peer (self, "%s presented a certificate natkit cannot "
                          "read (%s): refusing the connection",
                          self->short_peer_id, gnutls_strerror (ret));
    }

  pk = gnutls_pubkey_get_pk_algorithm (pubkey, NULL);
  if (pk != GNUTLS_PK_EDDSA_ED25519)
    {
      gnutls_pubkey_deinit (pubkey);
      return refuse_peer (self, "%s presented a %s key, not an Ed25519 "
                          "identity key: refusing the connection",
                          self->short_peer_id,
                          gnutls_pk_get_name ((gnutls_pk_algorithm_t) pk) ?
                          gnutls_pk_get_name ((gnutls_pk_algorithm_t) pk) : "unknown");
    }

  ret = gnutls_pubkey_export_ecc_raw2 (pubkey, &curve, &x, NULL,
                                       GNUTLS_EXPORT_FLAG_NO_LZ);
  gnutls_pubkey_deinit (pubkey);
  if (ret < 0 || x.size != 32)
    {
      gnutls_free (x.data);
      return refuse_peer (self, "%s presented a malformed Ed25519 key: "
                          "refusing the connection", self->short_peer_id);
    }
  key = g_bytes_new (x.data, x.size);
  gnutls_free (x.data);

  if (!natkit_peer_id_matches_public_key (self->peer_id, key))
    {
      presented = natkit_peer_id_from_public_key (key);
      return refuse_peer (self, "The peer presented the key of %s but we were "
                          "connecting to %s: refusing the connection (someone "
                          "may be impersonating the peer, or the path leads "
                          "to another node)", presented, self->peer_id);
    }

  g_debug ("session: the peer proved it is %s", self->short_peer_id);
  return 0;
}

/*
 * _natkit_session_handshake_async:
 * @self: a new session
 * @path: the path to run it on
 * @timeout_ms: the time limit, or 0 for 10 s
 * @cancellable: (nullable): a #GCancellable
 * @callback: called when the session is established or failed
 * @user_data: data for @callback
 *
 * Runs the DTLS handshake over @path: as the DTLS client when the session's
 * role is %NATKIT_ROLE_INITIATOR, as the server otherwise. The peer must
 * prove that it holds the key of the peer ID given to
 * _natkit_session_new(). Can only be called once.
 */
void
_natkit_session_handshake_async (NatkitSession       *self,
                                 NatkitPath          *path,
                                 guint                timeout_ms,
                                 GCancellable        *cancellable,
                                 GAsyncReadyCallback  callback,
                                 gpointer             user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(GError) error = NULL;
  gnutls_certificate_credentials_t creds;
  gnutls_priority_t priority;
  gboolean client;
  gint64 rtt;
  guint retransmit_ms;
  int ret;

  g_return_if_fail (NATKIT_IS_SESSION (self));
  g_return_if_fail (NATKIT_IS_PATH (path));
  g_return_if_fail (cancellable == NULL || G_IS_CANCELLABLE (cancellable));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, _natkit_session_handshake_async);
  g_task_set_name (task, "[natkit] secure handshake");

  if (self->state != STATE_NEW)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "The session with %s already ran its handshake",
                               self->short_peer_id);
      return;
    }

  if (g_task_return_error_if_cancelled (task))
    return;

  priority = get_priority ();
  if (priority == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "This GnuTLS (%s) does not support natkit's "
                               "DTLS profile (DTLS 1.2 with Ed25519 keys)",
                               gnutls_check_version (NULL));
      return;
    }

  creds = get_credentials (self->identity, &error);
  if (creds == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }

  _natkit_session_set_path (self, path);

  client = self->role == NATKIT_ROLE_INITIATOR;
  ret = gnutls_init (&self->tls, GNUTLS_DATAGRAM | GNUTLS_NONBLOCK |
                     GNUTLS_NO_TICKETS | (client ? GNUTLS_CLIENT : GNUTLS_SERVER));
  if (ret < 0)
    {
      self->tls = NULL;
      self->state = STATE_FAILED;
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "Cannot start a DTLS session: %s",
                               gnutls_strerror (ret));
      return;
    }

  if ((ret = gnutls_priority_set (self->tls, priority)) < 0 ||
      (ret = gnutls_credentials_set (self->tls, GNUTLS_CRD_CERTIFICATE, creds)) < 0)
    {
      g_clear_pointer (&self->tls, gnutls_deinit);
      self->state = STATE_FAILED;
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "Cannot set up a DTLS session: %s",
                               gnutls_strerror (ret));
      return;
    }

  if (!client)
    gnutls_certificate_server_set_request (self->tls, GNUTLS_CERT_REQUIRE);
  gnutls_session_set_verify_function (self->tls, verify_peer_cb);
  gnutls_session_set_ptr (self->tls, self);
  gnutls_transport_set_ptr (self->tls, self);
  gnutls_transport_set_push_function (self->tls, push_cb);
  gnutls_transport_set_pull_function (self->tls, pull_cb);
  gnutls_transport_set_pull_timeout_function (self->tls, pull_timeout_cb);

  self->timeout_ms = timeout_ms > 0 ? timeout_ms : DEFAULT_TIMEOUT_MS;
  /* RFC 6347 starts at 1 s; a path that knows its RTT lets us go faster. */
  rtt = natkit_path_get_rtt (path);
  retransmit_ms = rtt > 0 ? CLAMP (3 * rtt / 1000, MIN_RETRANSMIT_MS,
                                   MAX_RETRANSMIT_MS) : MAX_RETRANSMIT_MS;
  /* our deadline fires first and says more than GnuTLS's own */
  gnutls_dtls_set_timeouts (self->tls, retransmit_ms, self->timeout_ms + 1000);
  update_mtu (self);

  self->state = STATE_HANDSHAKING;
  self->task = g_steal_pointer (&task);

  self->deadline = g_timeout_source_new (self->timeout_ms);
  g_source_set_callback (self->deadline, deadline_cb, self, NULL);
  g_source_set_static_name (self->deadline, "[natkit] DTLS handshake deadline");
  g_source_attach (self->deadline, self->context);

  if (cancellable != NULL)
    {
      self->cancel_source = g_cancellable_source_new (cancellable);
      g_source_set_callback (self->cancel_source, G_SOURCE_FUNC (cancelled_cb),
                             self, NULL);
      g_source_set_static_name (self->cancel_source, "[natkit] DTLS handshake cancelled");
      g_source_attach (self->cancel_source, self->context);
    }

  {
    g_autofree char *over = describe_path (path);

    g_debug ("starting the secure handshake with %s over %s as DTLS %s "
             "(first retransmission after %u ms, giving up after %u ms)",
             self->short_peer_id, over, client ? "client" : "server",
             retransmit_ms, self->timeout_ms);
  }

  process_incoming (self);
}

/*
 * _natkit_session_handshake_finish:
 * @self: a session
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Returns: %TRUE when the session is established; %FALSE with
 *   %NATKIT_ERROR_IDENTITY when the peer's key does not match its peer ID
 *   (or the peer refused ours), %NATKIT_ERROR_TIMED_OUT, or another error
 */
gboolean
_natkit_session_handshake_finish (NatkitSession  *self,
                                  GAsyncResult   *result,
                                  GError        **error)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), FALSE);
  g_return_val_if_fail (g_task_is_valid (result, self), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) ==
                        _natkit_session_handshake_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

/* Closing */

static void
session_closed (NatkitSession *self,
                GError        *error,
                const char    *reason)
{
  if (self->state == STATE_CLOSED || self->state == STATE_FAILED)
    {
      g_clear_error (&error);
      return;
    }

  self->state = STATE_CLOSED;
  g_free (self->close_reason);
  self->close_reason = g_strdup (reason);
  complete_close_waiters (self, NULL);
  pipe_stop (&self->out);
  pipe_stop (&self->in);
  g_queue_clear_full (&self->incoming, (GDestroyNotify) g_bytes_unref);
  stream_wake (self);

  g_object_ref (self);
  g_signal_emit (self, signals[SIGNAL_CLOSED], 0, error);
  g_object_unref (self);
  g_clear_error (&error);
}

/*
 * _natkit_session_close:
 * @self: a session
 * @reason: (nullable): why, in a few words, for the peer
 *
 * Tells the peer the session is over (a CLOSE message, then a DTLS
 * close_notify) and stops. Emits ::closed with no error. Stream data not
 * yet delivered is lost: close the stream's output and wait for the peer's
 * end of stream first when it matters. Closing during the handshake fails
 * the handshake.
 */
void
_natkit_session_close (NatkitSession *self,
                       const char    *reason)
{
  g_autofree char *text = NULL;
  gsize len;

  g_return_if_fail (NATKIT_IS_SESSION (self));

  if (self->state == STATE_HANDSHAKING)
    {
      g_object_ref (self);
      handshake_fail (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                         "The session with %s was closed "
                                         "before the secure handshake finished",
                                         self->short_peer_id));
      g_object_unref (self);
      return;
    }

  if (self->state != STATE_ESTABLISHED)
    return;

  /* the reason, cut at a character boundary to fit */
  text = g_utf8_make_valid (reason ? reason : "", -1);
  len = strlen (text);
  len = MIN (len, MIN (MAX_CLOSE_REASON, self->max_datagram));
  while (len > 0 && (text[len] & 0xc0) == 0x80)
    len--;
  text[len] = '\0';

  g_debug ("closing the session with %s: %s", self->short_peer_id,
           *text ? text : "(no reason)");

  /* Datagrams get lost: say it a few times, the first that arrives wins. */
  for (guint i = 0; i < CLOSE_REPEAT; i++)
    send_record (self, NATKIT_SESSION_MSG_CLOSE, (const guint8 *) text, len);
  self->busy++;
  gnutls_bye (self->tls, GNUTLS_SHUT_WR);
  self->busy--;

  session_closed (self, NULL, text);
}

/* Datagrams, pings */

/*
 * _natkit_session_send_inner:
 * @self: an established session
 * @type: the message type, known or not (tests send unknown ones)
 * @payload: (array length=len): the payload
 * @len: its length, at most _natkit_session_get_max_datagram()
 * @error: return location for a #GError
 *
 * Sends one inner message as one DTLS record.
 *
 * Returns: %TRUE if the record was handed to the path
 */
gboolean
_natkit_session_send_inner (NatkitSession  *self,
                            guint8          type,
                            const guint8   *payload,
                            gsize           len,
                            GError        **error)
{
  int ret;

  g_return_val_if_fail (NATKIT_IS_SESSION (self), FALSE);
  g_return_val_if_fail (payload != NULL || len == 0, FALSE);

  if (self->state == STATE_CLOSED || self->state == STATE_FAILED)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "The secure session with %s is closed%s%s",
                   self->short_peer_id,
                   self->close_reason && *self->close_reason ? ": " : "",
                   self->close_reason ? self->close_reason : "");
      return FALSE;
    }

  if (self->state != STATE_ESTABLISHED)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "Cannot send to %s yet: the secure handshake has not "
                   "finished", self->short_peer_id);
      return FALSE;
    }

  if (len > self->max_datagram)
    {
      g_autofree char *over = describe_path (self->path);

      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE,
                   "A %" G_GSIZE_FORMAT "-byte datagram does not fit the "
                   "secure session with %s: at most %" G_GSIZE_FORMAT
                   " bytes over %s (MTU %u)", len, self->short_peer_id,
                   self->max_datagram, over,
                   self->path ? natkit_path_get_mtu (self->path) : 0);
      return FALSE;
    }

  ret = send_record (self, type, payload, len);
  if (ret < 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                   "Cannot send to %s: %s", self->short_peer_id,
                   gnutls_strerror (ret));
      return FALSE;
    }
  return TRUE;
}

/*
 * _natkit_session_send_datagram:
 * @self: an established session
 * @datagram: the datagram
 * @error: return location for a #GError
 *
 * Sends one datagram, encrypted; like UDP it may be lost, duplicated or
 * reordered (DTLS drops replays). The peer gets it with
 * ::datagram-received. While the path is lost, datagrams are dropped as if
 * the network had lost them.
 *
 * Returns: %TRUE if the datagram was handed to the path; %FALSE with
 *   %NATKIT_ERROR_MESSAGE_TOO_LARGE when it is larger than
 *   _natkit_session_get_max_datagram(), %NATKIT_ERROR_CLOSED after the
 *   session closed
 */
gboolean
_natkit_session_send_datagram (NatkitSession  *self,
                               GBytes         *datagram,
                               GError        **error)
{
  const guint8 *data;
  gsize len;

  g_return_val_if_fail (NATKIT_IS_SESSION (self), FALSE);
  g_return_val_if_fail (datagram != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  data = g_bytes_get_data (datagram, &len);
  return _natkit_session_send_inner (self, NATKIT_SESSION_MSG_DATAGRAM,
                                     data, len, error);
}

/*
 * _natkit_session_ping:
 * @self: an established session
 *
 * Sends a ping; the peer's pong emits ::pong with the round-trip time and
 * updates the current path's [property@Natkit.Path:rtt]. Does nothing when
 * the session is not established.
 */
/* Application bytes written to and read from the stream so far. */
void
_natkit_session_get_stream_bytes (NatkitSession *self,
                                  guint64       *sent,
                                  guint64       *received)
{
  *sent = self->stream_sent;
  *received = self->stream_received;
}

void
_natkit_session_ping (NatkitSession *self)
{
  guint8 payload[PING_SIZE];
  guint64 now;

  g_return_if_fail (NATKIT_IS_SESSION (self));

  if (self->state != STATE_ESTABLISHED)
    {
      g_debug ("session with %s: not pinging, not established",
               self->short_peer_id);
      return;
    }

  now = g_get_monotonic_time ();
  for (guint i = 0; i < PING_SIZE; i++)
    payload[i] = (now >> (8 * (PING_SIZE - 1 - i))) & 0xff;
  send_record (self, NATKIT_SESSION_MSG_PING, payload, sizeof payload);
}

/* Getters */

/*
 * _natkit_session_get_peer_id:
 * @self: a session
 *
 * Returns: the peer ID the peer must prove
 */
const char *
_natkit_session_get_peer_id (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), NULL);
  return self->peer_id;
}

/*
 * _natkit_session_is_established:
 * @self: a session
 *
 * Returns: whether the handshake finished and the session is not closed
 */
gboolean
_natkit_session_is_established (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), FALSE);
  return self->state == STATE_ESTABLISHED;
}

/*
 * _natkit_session_get_max_datagram:
 * @self: a session
 *
 * Returns: the largest datagram _natkit_session_send_datagram() accepts on
 *   the current path (DTLS data MTU − 1), or 0 before the handshake
 */
gsize
_natkit_session_get_max_datagram (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), 0);
  return self->state == STATE_ESTABLISHED ? self->max_datagram : 0;
}

/*
 * _natkit_session_get_close_reason:
 * @self: a session
 *
 * Returns: (nullable): the reason given with the close, by either side
 */
const char *
_natkit_session_get_close_reason (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), NULL);
  return self->close_reason;
}

/*
 * _natkit_session_set_loss_repair:
 * @self: a session
 * @enabled: whether the session repairs the stream's losses itself
 *
 * On by default. Off, the stream recovers from losses with PseudoTCP's own
 * retransmissions only, and sends no SACKs: for benchmarks that compare.
 */
void
_natkit_session_set_loss_repair (NatkitSession *self,
                                 gboolean       enabled)
{
  g_return_if_fail (NATKIT_IS_SESSION (self));
  self->no_repair = !enabled;
}

/*
 * _natkit_session_get_repaired_count:
 * @self: a session
 *
 * Returns: how many stream segments the session itself resent because a
 *   SACK reported a hole or nothing was acknowledged (loss repair)
 */
guint64
_natkit_session_get_repaired_count (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), 0);
  return self->repaired;
}

/*
 * _natkit_session_get_ignored_count:
 * @self: a session
 *
 * Returns: how many records and segments were dropped: undecryptable
 *   datagrams, malformed or unknown inner messages
 */
guint
_natkit_session_get_ignored_count (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), 0);
  return self->ignored;
}

/*
 * _natkit_session_set_stream_buffer:
 * @self: a session
 * @bytes: the size of the stream's send buffer and of its receive buffer
 *
 * Sizes the stream's buffers (1 MiB each by default, clamped to 16 KiB …
 * 32 MiB). Throughput is at most buffer / RTT. Only takes effect before the
 * handshake.
 */
void
_natkit_session_set_stream_buffer (NatkitSession *self,
                                   gsize          bytes)
{
  g_return_if_fail (NATKIT_IS_SESSION (self));

  if (self->out.tcp != NULL)
    {
      g_debug ("session with %s: the stream is already open; its buffers "
               "stay as they are", self->short_peer_id);
      return;
    }
  self->stream_buffer = CLAMP (bytes, MIN_STREAM_BUFFER, MAX_STREAM_BUFFER);
}

/*
 * _natkit_session_get_stream:
 * @self: a session
 *
 * The session's reliable byte stream. Reads and writes wait until the
 * handshake is done and the stream is open. Closing its output stream
 * half-closes (the peer reads end of stream after the last byte); closing
 * the #GIOStream closes both directions. The stream's pollable and _async
 * functions never block the main context; the blocking ones only work on
 * the thread that runs the session's main context (they iterate it).
 *
 * Returns: (transfer none): the stream, owned by the session
 */
GIOStream *
_natkit_session_get_stream (NatkitSession *self)
{
  g_return_val_if_fail (NATKIT_IS_SESSION (self), NULL);

  if (self->stream == NULL)
    self->stream = natkit_session_stream_new (self);
  return G_IO_STREAM (self->stream);
}

/* GObject */

static void
_natkit_session_dispose (GObject *object)
{
  NatkitSession *self = NATKIT_SESSION (object);

  handshake_clear_sources (self);
  if (self->close_waiters != NULL)
    {
      g_autoptr(GError) error = g_error_new (G_IO_ERROR, G_IO_ERROR_CLOSED,
                                             "the secure session is gone");
      complete_close_waiters (self, error);
      g_clear_pointer (&self->close_waiters, g_ptr_array_unref);
    }
  if (self->process_idle != NULL)
    {
      g_source_destroy (self->process_idle);
      g_clear_pointer (&self->process_idle, g_source_unref);
    }

  /* Whoever still holds the stream or waits on it gets an error from now
   * on. */
  if (self->stream != NULL)
    natkit_session_stream_detach (self->stream);
  stream_sources_detach (self);
  g_clear_pointer (&self->sources, g_list_free);
  g_clear_object (&self->stream);

  pipe_clear (&self->out);
  pipe_clear (&self->in);
  stream_resend_stop (self);
  g_queue_clear_full (&self->unacked, stored_free);
  stream_probe_stop (self);
  if (self->probe != NULL)
    {
      g_source_destroy (self->probe);
      g_clear_pointer (&self->probe, g_source_unref);
    }

  while (self->links->len > 0)
    unlink_path (self, g_ptr_array_index (self->links, self->links->len - 1));
  self->path = NULL;

  g_queue_clear_full (&self->incoming, (GDestroyNotify) g_bytes_unref);
  g_clear_pointer (&self->tls, gnutls_deinit);

  G_OBJECT_CLASS (_natkit_session_parent_class)->dispose (object);
}

static void
_natkit_session_finalize (GObject *object)
{
  NatkitSession *self = NATKIT_SESSION (object);

  g_clear_object (&self->identity);
  g_free (self->peer_id);
  g_free (self->short_peer_id);
  g_free (self->record);
  g_free (self->outgoing);
  g_free (self->close_reason);
  g_clear_error (&self->identity_error);
  g_ptr_array_unref (self->links);
  g_main_context_unref (self->context);

  G_OBJECT_CLASS (_natkit_session_parent_class)->finalize (object);
}

static void
_natkit_session_class_init (NatkitSessionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = _natkit_session_dispose;
  object_class->finalize = _natkit_session_finalize;

  /*
   * NatkitSession::datagram-received:
   * @self: the session
   * @datagram: the datagram the peer sent
   *
   * Emitted for every authenticated datagram from the peer.
   */
  signals[SIGNAL_DATAGRAM_RECEIVED] =
    g_signal_new ("datagram-received", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_BYTES | G_SIGNAL_TYPE_STATIC_SCOPE);

  /*
   * NatkitSession::pong:
   * @self: the session
   * @rtt_us: the round-trip time, in microseconds
   *
   * Emitted when the peer answers a ping.
   */
  signals[SIGNAL_PONG] =
    g_signal_new ("pong", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_INT64);

  /*
   * NatkitSession::closed:
   * @self: the session
   * @error: (nullable): %NULL when closed with _natkit_session_close();
   *   %NATKIT_ERROR_CLOSED when the peer closed it (the message carries the
   *   peer's reason), %NATKIT_ERROR_FAILED when DTLS failed
   *
   * Emitted once, when an established session ends.
   */
  signals[SIGNAL_CLOSED] =
    g_signal_new ("closed", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_ERROR);

  /*
   * NatkitSession::path-lost:
   * @self: the session
   * @path: the current path, which closed
   * @error: (nullable): why, as the path said
   *
   * Emitted when the current path closes. The session stays up: set
   * another path with _natkit_session_set_path() and everything resumes.
   */
  signals[SIGNAL_PATH_LOST] =
    g_signal_new ("path-lost", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, NATKIT_TYPE_PATH, G_TYPE_ERROR);

  /*
   * NatkitSession::path-changed:
   * @session: the session
   * @path: the new current path
   *
   * Emitted when the responder follows the initiator onto another of its
   * paths: an authenticated record arrived there (or, during the
   * handshake, the initiator's flight did). Not emitted for
   * _natkit_session_set_path().
   */
  signals[SIGNAL_PATH_CHANGED] =
    g_signal_new ("path-changed", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, NATKIT_TYPE_PATH);
}

static void
_natkit_session_init (NatkitSession *self)
{
  self->context = g_main_context_ref_thread_default ();
  self->links = g_ptr_array_new ();
  g_queue_init (&self->incoming);
  g_queue_init (&self->unacked);
  self->record = g_malloc (MAX_RECORD);
  self->outgoing = g_malloc (MAX_RECORD);
  self->stream_buffer = DEFAULT_STREAM_BUFFER;
  self->close_waiters = g_ptr_array_new_with_free_func (g_object_unref);
}

/*
 * _natkit_session_new:
 * @identity: this node's identity
 * @peer_id: the peer ID the other side must prove
 * @role: %NATKIT_ROLE_INITIATOR for the DTLS client
 *
 * Returns: (transfer full): a new session; run
 *   _natkit_session_handshake_async() next
 */
NatkitSession *
_natkit_session_new (NatkitIdentity *identity,
                     const char     *peer_id,
                     NatkitRole      role)
{
  NatkitSession *self;

  g_return_val_if_fail (NATKIT_IS_IDENTITY (identity), NULL);
  g_return_val_if_fail (peer_id != NULL, NULL);

  self = g_object_new (NATKIT_TYPE_SESSION, NULL);
  self->identity = g_object_ref (identity);
  self->peer_id = g_strdup (peer_id);
  self->short_peer_id = shorten_peer_id (peer_id);
  self->role = role;
  return self;
}

/* The stream: readiness, sources, reads and writes */

typedef struct
{
  GSource        source;
  NatkitSession *session;   /* cleared when the session goes */
  GObject       *stream;
  GIOCondition   condition;
} StreamSource;

static gboolean
stream_is_readable (NatkitSession *self)
{
  if (self == NULL || self->state == STATE_CLOSED || self->state == STATE_FAILED ||
      self->in.error != 0)
    return TRUE;
  return self->in.tcp != NULL &&
         (self->in.readable || pseudo_tcp_socket_is_closed_remotely (self->in.tcp));
}

static gboolean
stream_is_writable (NatkitSession *self)
{
  if (self == NULL || self->state == STATE_CLOSED || self->state == STATE_FAILED ||
      self->out.error != 0)
    return TRUE;
  return self->out.tcp != NULL && self->out.opened && self->out.writable;
}

static gboolean
stream_is_ready (NatkitSession *self,
                 GIOCondition   condition)
{
  if (condition & G_IO_IN)
    return stream_is_readable (self);
  return stream_is_writable (self);
}

static void
stream_wake (NatkitSession *self)
{
  for (GList *l = self->sources; l != NULL; l = l->next)
    {
      StreamSource *source = l->data;

      if (stream_is_ready (self, source->condition))
        g_source_set_ready_time (l->data, 0);
    }
}

static gboolean
stream_source_prepare (GSource *source,
                       gint    *timeout)
{
  StreamSource *s = (StreamSource *) source;

  *timeout = -1;
  return stream_is_ready (s->session, s->condition);
}

static gboolean
stream_source_check (GSource *source)
{
  StreamSource *s = (StreamSource *) source;

  return stream_is_ready (s->session, s->condition);
}

static gboolean
stream_source_dispatch (GSource     *source,
                        GSourceFunc  callback,
                        gpointer     user_data)
{
  StreamSource *s = (StreamSource *) source;

  g_source_set_ready_time (source, -1);
  if (callback == NULL)
    return G_SOURCE_CONTINUE;
  return ((GPollableSourceFunc) (void (*) (void)) callback) (s->stream, user_data);
}

static void
stream_source_finalize (GSource *source)
{
  StreamSource *s = (StreamSource *) source;

  if (s->session != NULL)
    s->session->sources = g_list_remove (s->session->sources, s);
  g_object_unref (s->stream);
}

/* g_pollable_source_new_full() gives its child a dummy closure */
static gboolean
stream_source_closure_callback (GObject  *stream,
                                gpointer  data)
{
  GClosure *closure = data;
  GValue param = G_VALUE_INIT;
  GValue result_value = G_VALUE_INIT;
  gboolean result;

  g_value_init (&result_value, G_TYPE_BOOLEAN);
  g_value_init (&param, G_TYPE_OBJECT);
  g_value_set_object (&param, stream);
  g_closure_invoke (closure, &result_value, 1, &param, NULL);
  result = g_value_get_boolean (&result_value);
  g_value_unset (&result_value);
  g_value_unset (&param);
  return result;
}

static GSourceFuncs stream_source_funcs = {
  stream_source_prepare,
  stream_source_check,
  stream_source_dispatch,
  stream_source_finalize,
  (GSourceFunc) (void (*) (void)) stream_source_closure_callback,
  NULL,
};

static GSource *
stream_source_new (NatkitSession *session,
                   GObject       *stream,
                   GIOCondition   condition,
                   GCancellable  *cancellable)
{
  GSource *base, *pollable;
  StreamSource *s;

  base = g_source_new (&stream_source_funcs, sizeof (StreamSource));
  g_source_set_static_name (base, "[natkit] session stream");
  s = (StreamSource *) base;
  s->session = session;
  s->stream = g_object_ref (stream);
  s->condition = condition;
  if (session != NULL)
    session->sources = g_list_prepend (session->sources, s);

  pollable = g_pollable_source_new_full (stream, base, cancellable);
  g_source_unref (base);
  return pollable;
}

static void
stream_sources_detach (NatkitSession *self)
{
  for (GList *l = self->sources; l != NULL; l = l->next)
    {
      StreamSource *s = l->data;

      s->session = NULL;
      g_source_set_ready_time (l->data, 0);
    }
}

/* Waits on the session's main context for a blocking read or write. */
static gboolean
stream_wait (NatkitSession  *session,
             GIOCondition    condition,
             GCancellable   *cancellable,
             GError        **error)
{
  g_autoptr(NatkitSession) self = NULL;
  GSource *cancel = NULL;
  GMainContext *context;

  if (session == NULL)
    return TRUE;

  self = g_object_ref (session);
  context = self->context;
  if (!g_main_context_acquire (context))
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                           "Blocking I/O on a natkit session stream only works "
                           "on the thread that runs the session's main "
                           "context; use the _async functions");
      return FALSE;
    }

  if (cancellable != NULL)
    {
      cancel = g_cancellable_source_new (cancellable);
      g_source_set_dummy_callback (cancel);
      g_source_attach (cancel, context);
    }

  while (!stream_is_ready (self, condition) &&
         !g_cancellable_is_cancelled (cancellable))
    g_main_context_iteration (context, TRUE);

  if (cancel != NULL)
    {
      g_source_destroy (cancel);
      g_source_unref (cancel);
    }
  g_main_context_release (context);

  return !g_cancellable_set_error_if_cancelled (cancellable, error);
}

static void
set_pipe_error (NatkitSession  *self,
                Pipe           *pipe,
                GError        **error)
{
  switch (pipe->error)
    {
    case ECONNRESET:
      if (pipe->outgoing)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                     "%s stopped reading the stream", self->short_peer_id);
      else
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                     "%s abandoned the stream before finishing it",
                     self->short_peer_id);
      break;
    case ETIMEDOUT:
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                   "The stream with %s stalled: nothing was acknowledged "
                   "after many retransmissions (is the path down?)",
                   self->short_peer_id);
      break;
    default:
      /* G_IO_ERROR_CONNECTION_CLOSED is G_IO_ERROR_BROKEN_PIPE */
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
                   "The stream with %s broke: %s", self->short_peer_id,
                   g_strerror (pipe->error));
      break;
    }
}

static void
set_session_closed_error (NatkitSession  *self,
                          gint            code,
                          const char     *what,
                          GError        **error)
{
  if (self == NULL)
    g_set_error (error, G_IO_ERROR, code, "%s: the secure session is gone", what);
  else
    g_set_error (error, G_IO_ERROR, code,
                 "%s: the secure session with %s is %s%s%s", what,
                 self->short_peer_id,
                 self->state == STATE_FAILED ? "broken" : "closed",
                 self->close_reason && *self->close_reason ? " — " : "",
                 self->close_reason ? self->close_reason : "");
}

static gssize
stream_read (NatkitSession  *self,
             void           *buffer,
             gsize           count,
             GError        **error)
{
  Pipe *pipe;
  gint n;

  if (self == NULL)
    {
      set_session_closed_error (NULL, G_IO_ERROR_CONNECTION_CLOSED,
                                "Cannot read", error);
      return -1;
    }

  pipe = &self->in;
  if (pipe->tcp != NULL)
    {
      if (count == 0)
        return 0;
      n = pseudo_tcp_socket_recv (pipe->tcp, buffer, MIN (count, G_MAXINT32));
      if (n > 0)
        {
          self->stream_received += n;
          pipe_clock_update (pipe);
          return n;
        }
      if (n == 0 && pipe->error == 0)
        return 0;   /* the peer's FIN: end of stream */
      pipe->readable = FALSE;
    }

  if (pipe->error != 0)
    {
      set_pipe_error (self, pipe, error);
      return -1;
    }
  if (self->state == STATE_CLOSED || self->state == STATE_FAILED)
    {
      set_session_closed_error (self, G_IO_ERROR_CONNECTION_CLOSED,
                                "The stream ended early", error);
      return -1;
    }

  g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                       "Nothing to read yet");
  return -1;
}

static gssize
stream_write (NatkitSession  *self,
              const void     *buffer,
              gsize           count,
              GError        **error)
{
  Pipe *pipe;
  gint n;

  if (self == NULL || self->state == STATE_CLOSED || self->state == STATE_FAILED)
    {
      set_session_closed_error (self, G_IO_ERROR_BROKEN_PIPE, "Cannot write",
                                error);
      return -1;
    }

  pipe = &self->out;
  if (pipe->error != 0)
    {
      set_pipe_error (self, pipe, error);
      return -1;
    }

  if (pipe->tcp == NULL || !pipe->opened)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                           "The stream is not open yet");
      return -1;
    }

  if (count == 0)
    return 0;

  n = pseudo_tcp_socket_send (pipe->tcp, buffer, MIN (count, G_MAXINT32));
  pipe_clock_update (pipe);
  if (n >= 0)
    {
      self->stream_sent += n;
      /* a short write means the buffer is full: PseudoTCP calls back */
      if ((gsize) n < MIN (count, G_MAXINT32))
        pipe->writable = FALSE;
      return n;
    }

  if (pseudo_tcp_socket_get_error (pipe->tcp) == EWOULDBLOCK)
    {
      pipe->writable = FALSE;
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                           "The stream's send buffer is full");
      return -1;
    }

  g_set_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE,
               "Cannot write to the stream to %s: %s", self->short_peer_id,
               g_strerror (pseudo_tcp_socket_get_error (pipe->tcp)));
  return -1;
}

static void
stream_close_output (NatkitSession *self)
{
  if (self == NULL || self->output_closed)
    return;

  self->output_closed = TRUE;
  if (self->out.tcp != NULL && self->out.opened && self->out.clock != NULL)
    {
      g_debug ("session with %s: finishing our stream", self->short_peer_id);
      pseudo_tcp_socket_shutdown (self->out.tcp, PSEUDO_TCP_SHUTDOWN_WR);
      pipe_clock_update (&self->out);
    }
}

static void
stream_close_input (NatkitSession *self)
{
  if (self == NULL || self->input_closed)
    return;

  self->input_closed = TRUE;
  if (self->in.tcp == NULL || self->in.clock == NULL)
    return;

  if (pseudo_tcp_socket_is_closed_remotely (self->in.tcp))
    {
      /* read to the end: finish the connection politely */
      pseudo_tcp_socket_shutdown (self->in.tcp, PSEUDO_TCP_SHUTDOWN_RDWR);
    }
  else
    {
      /* stopped reading early: reset, so the peer's writes fail */
      g_debug ("session with %s: closing the stream before its end",
               self->short_peer_id);
      pseudo_tcp_socket_close (self->in.tcp, TRUE);
    }
  pipe_clock_update (&self->in);
}

/* NatkitSessionInputStream */

struct _NatkitSessionInputStream
{
  GInputStream   parent_instance;
  NatkitSession *session;
};

static void natkit_session_input_stream_pollable_init (GPollableInputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitSessionInputStream, _natkit_session_input_stream,
                               G_TYPE_INPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_INPUT_STREAM,
                                                      natkit_session_input_stream_pollable_init))

static gssize
natkit_session_input_stream_read (GInputStream  *stream,
                                  void          *buffer,
                                  gsize          count,
                                  GCancellable  *cancellable,
                                  GError       **error)
{
  NatkitSessionInputStream *self = NATKIT_SESSION_INPUT_STREAM (stream);

  while (TRUE)
    {
      GError *local_error = NULL;
      gssize n = stream_read (self->session, buffer, count, &local_error);

      if (n >= 0 || !g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          if (local_error != NULL)
            g_propagate_error (error, local_error);
          return n;
        }
      g_error_free (local_error);
      if (!stream_wait (self->session, G_IO_IN, cancellable, error))
        return -1;
    }
}

static gboolean
natkit_session_input_stream_close (GInputStream  *stream,
                                   GCancellable  *cancellable,
                                   GError       **error)
{
  stream_close_input (NATKIT_SESSION_INPUT_STREAM (stream)->session);
  return TRUE;
}

static void
natkit_session_input_stream_close_async (GInputStream        *stream,
                                         int                  io_priority,
                                         GCancellable        *cancellable,
                                         GAsyncReadyCallback  callback,
                                         gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (stream, cancellable, callback, user_data);

  g_task_set_source_tag (task, natkit_session_input_stream_close_async);
  stream_close_input (NATKIT_SESSION_INPUT_STREAM (stream)->session);
  g_task_return_boolean (task, TRUE);
}

static gboolean
natkit_session_input_stream_close_finish (GInputStream  *stream,
                                          GAsyncResult  *result,
                                          GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static gboolean
natkit_session_input_stream_can_poll (GPollableInputStream *stream)
{
  return TRUE;
}

static gboolean
natkit_session_input_stream_is_readable (GPollableInputStream *stream)
{
  return stream_is_readable (NATKIT_SESSION_INPUT_STREAM (stream)->session);
}

static GSource *
natkit_session_input_stream_create_source (GPollableInputStream *stream,
                                           GCancellable         *cancellable)
{
  return stream_source_new (NATKIT_SESSION_INPUT_STREAM (stream)->session,
                            G_OBJECT (stream), G_IO_IN, cancellable);
}

static gssize
natkit_session_input_stream_read_nonblocking (GPollableInputStream  *stream,
                                              void                  *buffer,
                                              gsize                  count,
                                              GError               **error)
{
  return stream_read (NATKIT_SESSION_INPUT_STREAM (stream)->session,
                      buffer, count, error);
}

static void
natkit_session_input_stream_pollable_init (GPollableInputStreamInterface *iface)
{
  iface->can_poll = natkit_session_input_stream_can_poll;
  iface->is_readable = natkit_session_input_stream_is_readable;
  iface->create_source = natkit_session_input_stream_create_source;
  iface->read_nonblocking = natkit_session_input_stream_read_nonblocking;
}

static void
_natkit_session_input_stream_class_init (NatkitSessionInputStreamClass *klass)
{
  GInputStreamClass *input_class = G_INPUT_STREAM_CLASS (klass);

  input_class->read_fn = natkit_session_input_stream_read;
  input_class->close_fn = natkit_session_input_stream_close;
  input_class->close_async = natkit_session_input_stream_close_async;
  input_class->close_finish = natkit_session_input_stream_close_finish;
}

static void
_natkit_session_input_stream_init (NatkitSessionInputStream *self)
{
}

/* NatkitSessionOutputStream */

struct _NatkitSessionOutputStream
{
  GOutputStream  parent_instance;
  NatkitSession *session;
};

static void natkit_session_output_stream_pollable_init (GPollableOutputStreamInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitSessionOutputStream, _natkit_session_output_stream,
                               G_TYPE_OUTPUT_STREAM,
                               G_IMPLEMENT_INTERFACE (G_TYPE_POLLABLE_OUTPUT_STREAM,
                                                      natkit_session_output_stream_pollable_init))

static gssize
natkit_session_output_stream_write (GOutputStream  *stream,
                                    const void     *buffer,
                                    gsize           count,
                                    GCancellable   *cancellable,
                                    GError        **error)
{
  NatkitSessionOutputStream *self = NATKIT_SESSION_OUTPUT_STREAM (stream);

  while (TRUE)
    {
      GError *local_error = NULL;
      gssize n = stream_write (self->session, buffer, count, &local_error);

      if (n >= 0 || !g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        {
          if (local_error != NULL)
            g_propagate_error (error, local_error);
          return n;
        }
      g_error_free (local_error);
      if (!stream_wait (self->session, G_IO_OUT, cancellable, error))
        return -1;
    }
}

static gboolean
natkit_session_output_stream_close (GOutputStream  *stream,
                                    GCancellable   *cancellable,
                                    GError        **error)
{
  stream_close_output (NATKIT_SESSION_OUTPUT_STREAM (stream)->session);
  return TRUE;
}

static void
natkit_session_output_stream_close_async (GOutputStream       *stream,
                                          int                  io_priority,
                                          GCancellable        *cancellable,
                                          GAsyncReadyCallback  callback,
                                          gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (stream, cancellable, callback, user_data);

  NatkitSession *session = NATKIT_SESSION_OUTPUT_STREAM (stream)->session;

  g_task_set_source_tag (task, natkit_session_output_stream_close_async);
  stream_close_output (session);
  if (session == NULL || session->state == STATE_CLOSED ||
      session->state == STATE_FAILED || output_delivered (session))
    {
      g_task_return_boolean (task, TRUE);
      return;
    }
  /* like a TCP socket's linger: done when the peer has it all */
  g_ptr_array_add (session->close_waiters, g_steal_pointer (&task));
  if (!session->close_timeout)
    {
      session->close_progress = close_progress (session);
      session->close_idle_s = 0;
      session->close_timeout = g_timeout_source_new_seconds (CLOSE_TICK_S);
      g_source_set_callback (session->close_timeout, close_timeout_cb, session, NULL);
      g_source_attach (session->close_timeout, session->context);
    }
}

static gboolean
natkit_session_output_stream_close_finish (GOutputStream  *stream,
                                           GAsyncResult   *result,
                                           GError        **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static gboolean
natkit_session_output_stream_can_poll (GPollableOutputStream *stream)
{
  return TRUE;
}

static gboolean
natkit_session_output_stream_is_writable (GPollableOutputStream *stream)
{
  return stream_is_writable (NATKIT_SESSION_OUTPUT_STREAM (stream)->session);
}

static GSource *
natkit_session_output_stream_create_source (GPollableOutputStream *stream,
                                            GCancellable          *cancellable)
{
  return stream_source_new (NATKIT_SESSION_OUTPUT_STREAM (stream)->session,
                            G_OBJECT (stream), G_IO_OUT, cancellable);
}

static gssize
natkit_session_output_stream_write_nonblocking (GPollableOutputStream  *stream,
                                                const void             *buffer,
                                                gsize                   count,
                                                GError                **error)
{
  return stream_write (NATKIT_SESSION_OUTPUT_STREAM (stream)->session,
                       buffer, count, error);
}

static void
natkit_session_output_stream_pollable_init (GPollableOutputStreamInterface *iface)
{
  iface->can_poll = natkit_session_output_stream_can_poll;
  iface->is_writable = natkit_session_output_stream_is_writable;
  iface->create_source = natkit_session_output_stream_create_source;
  iface->write_nonblocking = natkit_session_output_stream_write_nonblocking;
}

static void
_natkit_session_output_stream_class_init (NatkitSessionOutputStreamClass *klass)
{
  GOutputStreamClass *output_class = G_OUTPUT_STREAM_CLASS (klass);

  output_class->write_fn = natkit_session_output_stream_write;
  output_class->close_fn = natkit_session_output_stream_close;
  output_class->close_async = natkit_session_output_stream_close_async;
  output_class->close_finish = natkit_session_output_stream_close_finish;
}

static void
_natkit_session_output_stream_init (NatkitSessionOutputStream *self)
{
}

/* NatkitSessionStream */

struct _NatkitSessionStream
{
  GIOStream                  parent_instance;
  NatkitSession             *session;   /* owns us */
  NatkitSessionInputStream  *input;
  NatkitSessionOutputStream *output;
};

G_DEFINE_FINAL_TYPE (NatkitSessionStream, _natkit_session_stream, G_TYPE_IO_STREAM)

static GInputStream *
natkit_session_stream_get_input_stream (GIOStream *stream)
{
  return G_INPUT_STREAM (NATKIT_SESSION_STREAM (stream)->input);
}

static GOutputStream *
natkit_session_stream_get_output_stream (GIOStream *stream)
{
  return G_OUTPUT_STREAM (NATKIT_SESSION_STREAM (stream)->output);
}

static gboolean
natkit_session_stream_close (GIOStream     *stream,
                             GCancellable  *cancellable,
                             GError       **error)
{
  NatkitSessionStream *self = NATKIT_SESSION_STREAM (stream);

  /* Both directions, even with a read still pending on the input. */
  stream_close_output (self->session);
  stream_close_input (self->session);
  g_output_stream_close (G_OUTPUT_STREAM (self->output), NULL, NULL);
  g_input_stream_close (G_INPUT_STREAM (self->input), NULL, NULL);
  return TRUE;
}

static void
natkit_session_stream_close_async (GIOStream           *stream,
                                   int                  io_priority,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  g_autoptr(GTask) task = g_task_new (stream, cancellable, callback, user_data);

  g_task_set_source_tag (task, natkit_session_stream_close_async);
  natkit_session_stream_close (stream, cancellable, NULL);
  g_task_return_boolean (task, TRUE);
}

static gboolean
natkit_session_stream_close_finish (GIOStream     *stream,
                                    GAsyncResult  *result,
                                    GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_session_stream_finalize (GObject *object)
{
  NatkitSessionStream *self = NATKIT_SESSION_STREAM (object);

  g_clear_object (&self->input);
  g_clear_object (&self->output);

  G_OBJECT_CLASS (_natkit_session_stream_parent_class)->finalize (object);
}

static void
_natkit_session_stream_class_init (NatkitSessionStreamClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GIOStreamClass *stream_class = G_IO_STREAM_CLASS (klass);

  object_class->finalize = natkit_session_stream_finalize;
  stream_class->get_input_stream = natkit_session_stream_get_input_stream;
  stream_class->get_output_stream = natkit_session_stream_get_output_stream;
  stream_class->close_fn = natkit_session_stream_close;
  stream_class->close_async = natkit_session_stream_close_async;
  stream_class->close_finish = natkit_session_stream_close_finish;
}

static void
_natkit_session_stream_init (NatkitSessionStream *self)
{
}

static NatkitSessionStream *
natkit_session_stream_new (NatkitSession *session)
{
  NatkitSessionStream *self = g_object_new (NATKIT_TYPE_SESSION_STREAM, NULL);

  self->session = session;
  self->input = g_object_new (NATKIT_TYPE_SESSION_INPUT_STREAM, NULL);
  self->input->session = session;
  self->output = g_object_new (NATKIT_TYPE_SESSION_OUTPUT_STREAM, NULL);
  self->output->session = session;
  return self;
}

/* The session is going away: every later operation fails cleanly. */
static void
natkit_session_stream_detach (NatkitSessionStream *self)
{
  self->session = NULL;
  self->input->session = NULL;
  self->output->session = NULL;
}
