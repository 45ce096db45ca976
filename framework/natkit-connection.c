/* natkit-connection.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"
#include "natkit-connector-private.h"
#include "natkit-session-private.h"
#include "natkit-nat-info-private.h"

#include <string.h>

/**
 * NatkitConnection:
 *
 * A secure connection to one peer, from [method@Natkit.Manager.connect_async]
 * or the manager's [signal@Natkit.Manager::incoming] signal.
 *
 * Everything on it is encrypted and authenticated end to end: the secure
 * session (DTLS) checked that the peer holds the key of its peer ID. The
 * application uses it as a reliable byte stream
 * ([method@Natkit.Connection.get_stream], a #GIOStream) or sends datagrams
 * ([method@Natkit.Connection.send_datagram], received through
 * [signal@Natkit.Connection::datagram-received]).
 *
 * natkit watches the path with keepalives (every
 * [method@Natkit.Config.get_keepalive_interval], 25 s by default). A path
 * that closes or stops answering makes the connection
 * %NATKIT_CONNECTION_STATE_DEGRADED while natkit finds another path — the
 * secure session and the stream carry on over it, nothing lost — and
 * %NATKIT_CONNECTION_STATE_FAILED when none comes within the reconnect
 * time.
 */

#define MISSED_PONGS_DEGRADED 1
#define MISSED_PONGS_LOST     3
/* While data flows the path is probed this often, so that a path that
 * stops answering is left within MISSED_PONGS_LOST probes; idle, every
 * keepalive interval. */
#define PROBE_ACTIVE_MS       500
#define RETRY_MIN_MS          500
#define RETRY_MAX_MS          8000
#define SLOW_SAMPLES          3      /* probes in a row above timers.slow-rtt */
#define FASTER_BACKOFF_MIN_S  30     /* after a search that found nothing faster */
#define FASTER_BACKOFF_MAX_S  600
#define FASTER_MARGIN         0.8    /* a new path must answer in 80 % of the time */
#define FASTER_NEXT_S         2      /* after a trial that was no faster: the next method */
/* loss is over the last LOSS_WINDOW probes */
#define LOSS_WINDOW           20
/* the state history keeps its first entry and the last ones */
#define HISTORY_MAX           64

typedef struct
{
  gint64                 real_time;
  gint64                 monotonic_time;
  NatkitConnectionState  state;
  char                  *reason;
} StateChange;

static void
state_change_clear (gpointer data)
{
  StateChange *change = data;

  g_free (change->reason);
}

struct _NatkitConnection
{
  GObject                parent_instance;

  NatkitConnector       *connector;
  NatkitSignaling       *signaling;
  NatkitSession         *session;
  NatkitPath            *path;
  char                  *peer_id;
  char                  *peer_address;
  char                  *session_id;
  NatkitRole             role;
  NatkitConnectFlags     flags;
  NatkitConnectionState  state;
  gint64                 rtt;
  gint64                 connect_time;
  GStrv                  failures;
  NatkitNatInfo         *local_nat;
  NatkitNatInfo         *remote_nat;

  /* a path slower than timers.slow-rtt (initiator): look for a faster
   * one, move there on trial, keep it if it answers faster */
  guint                  slow_samples;
  GCancellable          *faster;           /* the search under way */
  gint64                 faster_not_before;
  guint                  faster_backoff_s;
  NatkitPath            *trial_old;        /* the slow path, kept open */
  gint64                 trial_old_rtt;
  gint64                 trial_rtts[SLOW_SAMPLES];
  guint                  trial_samples;
  char                  *slow_method;      /* left for slowness: no upgrade back */
  GPtrArray             *no_faster;        /* methods tried on trial, no faster */
  gint64                 slow_until;
  gint64                 connected_at;     /* real time, µs */
  GArray                *history;          /* StateChange */

  /* probes answered (TRUE) or not, the last LOSS_WINDOW of them */
  gboolean               loss_window[LOSS_WINDOW];
  guint                  loss_next;
  guint                  loss_samples;
  double                 loss;

  /* application payload: datagrams here, the stream in the session */
  guint64                datagram_sent;
  guint64                datagram_received;
  guint64                notified_sent;
  guint64                notified_received;

  guint                  keepalive_ms;
  guint                  reconnect_ms;
  guint                  keepalive_id;
  guint                  missed;
  gboolean               ping_outstanding;
  gint64                 last_ping;
  guint64                probe_sent;
  guint64                probe_received;
  guint64                ping_records;     /* the session's records in over the path when the last ping left */
  char                  *lost;             /* the method of the path lost */
  char                  *lost_why;
  gulong                 path_closed_id;
  gulong                 pong_id;
  gulong                 datagram_id;
  gulong                 session_closed_id;
  gulong                 session_path_id;
  GPtrArray             *retired;          /* paths left, closed a moment later */
  guint                  retire_id;

  GCancellable          *recover;
  gulong                 registered_id;    /* waiting for the server again */
  guint                  retry_id;
  guint                  retry_ms;
  gint64                 recover_deadline;
  guint                  recover_timeout_id;
};

G_DEFINE_FINAL_TYPE (NatkitConnection, natkit_connection, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_PEER_ID,
  PROP_PEER_ADDRESS,
  PROP_METHOD,
  PROP_TRANSPORT,
  PROP_STATE,
  PROP_RTT,
  PROP_PATH,
  PROP_LOCAL_ADDRESS,
  PROP_REMOTE_ADDRESS,
  PROP_LOSS,
  PROP_BYTES_SENT,
  PROP_BYTES_RECEIVED,
  PROP_CONNECTED_AT,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

enum {
  SIGNAL_DATAGRAM_RECEIVED,
  SIGNAL_PATH_CHANGED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

static void start_recovery (NatkitConnection *self,
                            const char       *why);

static void
record_state (NatkitConnection      *self,
              NatkitConnectionState  state,
              const char            *reason)
{
  StateChange change = {
    .real_time = g_get_real_time (),
    .monotonic_time = g_get_monotonic_time (),
    .state = state,
    .reason = g_strdup (reason ? reason : ""),
  };

  /* a connection that flaps for days keeps how it began and how it went
   * lately */
  if (self->history->len >= HISTORY_MAX)
    g_array_remove_index (self->history, 1);
  g_array_append_val (self->history, change);
}

static void
set_state (NatkitConnection      *self,
           NatkitConnectionState  state,
           const char            *reason)
{
  if (self->state == state)
    return;
  g_debug ("connection to %s: state %d → %d (%s)", self->peer_id, self->state, state,
           reason);
  self->state = state;
  record_state (self, state, reason);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_STATE]);
}

static void
get_bytes (NatkitConnection *self,
           guint64          *sent,
           guint64          *received)
{
  guint64 stream_sent = 0, stream_received = 0;

  if (self->session)
    _natkit_session_get_stream_bytes (self->session, &stream_sent, &stream_received);
  *sent = self->datagram_sent + stream_sent;
  *received = self->datagram_received + stream_received;
}

/* At most once per keepalive tick (and at the end), never per packet. */
static void
notify_bytes (NatkitConnection *self)
{
  guint64 sent, received;

  get_bytes (self, &sent, &received);
  if (sent != self->notified_sent)
    {
      self->notified_sent = sent;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BYTES_SENT]);
    }
  if (received != self->notified_received)
    {
      self->notified_received = received;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_BYTES_RECEIVED]);
    }
}

static void
record_probe (NatkitConnection *self,
              gboolean          answered)
{
  guint lost = 0;
  double loss;

  self->loss_window[self->loss_next] = answered;
  self->loss_next = (self->loss_next + 1) % LOSS_WINDOW;
  self->loss_samples = MIN (self->loss_samples + 1, LOSS_WINDOW);
  for (guint i = 0; i < self->loss_samples; i++)
    if (!self->loss_window[i])
      lost++;
  loss = (double) lost / self->loss_samples;
  if (loss != self->loss)
    {
      self->loss = loss;
      g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOSS]);
    }
}

static void
detach_path (NatkitConnection *self)
{
  if (!self->path)
    return;
  g_clear_signal_handler (&self->path_closed_id, self->path);
  natkit_path_close (self->path);
  g_clear_object (&self->path);
}

/* Paths the connection moved away from stay open a moment: the peer
 * keeps sending there until it follows. */
#define RETIRE_MS 3000

static void
retire_now (NatkitConnection *self)
{
  g_clear_handle_id (&self->retire_id, g_source_remove);
  for (guint i = 0; self->retired && i < self->retired->len; i++)
    natkit_path_close (g_ptr_array_index (self->retired, i));
  if (self->retired)
    g_ptr_array_set_size (self->retired, 0);
}

static gboolean
retire_cb (gpointer user_data)
{
  NatkitConnection *self = user_data;

  self->retire_id = 0;
  retire_now (self);
  return G_SOURCE_REMOVE;
}

/* Leaves the current path open (closed in RETIRE_MS) instead of closing
 * it; returns its method (owned by the caller). */
static char *
retire_path (NatkitConnection *self)
{
  char *method;

  if (!self->path)
    return NULL;
  method = g_strdup (natkit_path_get_method (self->path));
  g_clear_signal_handler (&self->path_closed_id, self->path);
  g_ptr_array_add (self->retired, g_steal_pointer (&self->path));
  g_clear_handle_id (&self->retire_id, g_source_remove);
  self->retire_id = g_timeout_add (RETIRE_MS, retire_cb, self);
  return method;
}

static void end_trial (NatkitConnection *self);

static void
stop_everything (NatkitConnection *self)
{
  end_trial (self);
  if (self->faster)
    {
      g_cancellable_cancel (self->faster);
      g_clear_object (&self->faster);
    }
  g_clear_handle_id (&self->keepalive_id, g_source_remove);
  g_clear_handle_id (&self->retry_id, g_source_remove);
  g_clear_handle_id (&self->recover_timeout_id, g_source_remove);
  if (self->registered_id)
    g_clear_signal_handler (&self->registered_id, self->signaling);
  if (self->recover)
    {
      g_cancellable_cancel (self->recover);
      g_clear_object (&self->recover);
    }
}

static void
finish (NatkitConnection      *self,
        NatkitConnectionState  state,
        const char            *reason)
{
  if (self->state == NATKIT_CONNECTION_STATE_CLOSED ||
      self->state == NATKIT_CONNECTION_STATE_FAILED)
    return;
  g_debug ("connection to %s %s: %s", self->peer_id,
           state == NATKIT_CONNECTION_STATE_FAILED ? "failed" : "closed", reason);
  /* what closing sets off (signals, the connector forgetting us) may
   * drop the last reference held by someone else */
  g_object_ref (self);
  stop_everything (self);
  if (self->session)
    {
      g_clear_signal_handler (&self->session_closed_id, self->session);
      _natkit_session_close (self->session, reason);
    }
  detach_path (self);
  retire_now (self);
  if (self->connector)
    _natkit_connector_forget (self->connector, self->session_id);
  notify_bytes (self);
  set_state (self, state, reason);
  g_object_unref (self);
}

static void
natkit_connection_dispose (GObject *object)
{
  NatkitConnection *self = NATKIT_CONNECTION (object);

  if (self->state != NATKIT_CONNECTION_STATE_CLOSED &&
      self->state != NATKIT_CONNECTION_STATE_FAILED)
    natkit_connection_close (self);
  stop_everything (self);
  if (self->session)
    {
      g_clear_signal_handler (&self->pong_id, self->session);
      g_clear_signal_handler (&self->datagram_id, self->session);
      g_clear_signal_handler (&self->session_closed_id, self->session);
      g_clear_signal_handler (&self->session_path_id, self->session);
    }
  detach_path (self);
  retire_now (self);

  G_OBJECT_CLASS (natkit_connection_parent_class)->dispose (object);
}

static void
natkit_connection_finalize (GObject *object)
{
  NatkitConnection *self = NATKIT_CONNECTION (object);

  g_strfreev (self->failures);
  g_free (self->slow_method);
  g_clear_pointer (&self->no_faster, g_ptr_array_unref);
  g_clear_object (&self->local_nat);
  g_clear_object (&self->remote_nat);
  g_clear_pointer (&self->history, g_array_unref);
  g_clear_pointer (&self->retired, g_ptr_array_unref);
  g_free (self->lost);
  g_free (self->lost_why);
  g_clear_object (&self->session);
  g_clear_object (&self->signaling);
  g_clear_object (&self->connector);
  g_free (self->peer_id);
  g_free (self->peer_address);
  g_free (self->session_id);

  G_OBJECT_CLASS (natkit_connection_parent_class)->finalize (object);
}

static void
natkit_connection_get_property (GObject    *object,
                                guint       prop_id,
                                GValue     *value,
                                GParamSpec *pspec)
{
  NatkitConnection *self = NATKIT_CONNECTION (object);

  switch (prop_id)
    {
    case PROP_PEER_ID:
      g_value_set_string (value, self->peer_id);
      break;
    case PROP_PEER_ADDRESS:
      g_value_set_string (value, self->peer_address);
      break;
    case PROP_METHOD:
      g_value_set_string (value, natkit_connection_get_method (self));
      break;
    case PROP_TRANSPORT:
      g_value_set_string (value, natkit_connection_get_transport (self));
      break;
    case PROP_STATE:
      g_value_set_enum (value, self->state);
      break;
    case PROP_RTT:
      g_value_set_int64 (value, self->rtt);
      break;
    case PROP_PATH:
      g_value_set_object (value, self->path);
      break;
    case PROP_LOCAL_ADDRESS:
      g_value_set_string (value, natkit_connection_get_local_address (self));
      break;
    case PROP_REMOTE_ADDRESS:
      g_value_set_string (value, natkit_connection_get_remote_address (self));
      break;
    case PROP_LOSS:
      g_value_set_double (value, self->loss);
      break;
    case PROP_BYTES_SENT:
      g_value_set_uint64 (value, natkit_connection_get_bytes_sent (self));
      break;
    case PROP_BYTES_RECEIVED:
      g_value_set_uint64 (value, natkit_connection_get_bytes_received (self));
      break;
    case PROP_CONNECTED_AT:
      g_value_set_int64 (value, self->connected_at);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_connection_class_init (NatkitConnectionClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = natkit_connection_dispose;
  object_class->finalize = natkit_connection_finalize;
  object_class->get_property = natkit_connection_get_property;

  /**
   * NatkitConnection:peer-id:
   *
   * The peer's ID, as its key proved.
   */
  properties[PROP_PEER_ID] =
    g_param_spec_string ("peer-id", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:peer-address:
   *
   * The peer address this side connected to (`PEER-ID@HOST:PORT`), or
   * %NULL for incoming connections and connections over an application's
   * own signaling.
   */
  properties[PROP_PEER_ADDRESS] =
    g_param_spec_string ("peer-address", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:method:
   *
   * The traversal method of the current path (`"relay"`, …).
   */
  properties[PROP_METHOD] =
    g_param_spec_string ("method", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:transport:
   *
   * What carries the current path (`"udp"`, `"tcp"`, `"tls"`).
   */
  properties[PROP_TRANSPORT] =
    g_param_spec_string ("transport", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:state:
   *
   * The connection's state.
   */
  properties[PROP_STATE] =
    g_param_spec_enum ("state", NULL, NULL, NATKIT_TYPE_CONNECTION_STATE,
                       NATKIT_CONNECTION_STATE_CONNECTING,
                       G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                       G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:rtt:
   *
   * The round-trip time through the secure session, in microseconds, from
   * the last keepalive; -1 before the first.
   */
  properties[PROP_RTT] =
    g_param_spec_int64 ("rtt", NULL, NULL, -1, G_MAXINT64, -1,
                        G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                        G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:path:
   *
   * The path under the secure session right now; %NULL while natkit finds
   * a new one.
   */
  properties[PROP_PATH] =
    g_param_spec_object ("path", NULL, NULL, NATKIT_TYPE_PATH,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:local-address:
   *
   * This side's address of the current path (`HOST:PORT`, as the path
   * reports it); %NULL while natkit finds a new path.
   */
  properties[PROP_LOCAL_ADDRESS] =
    g_param_spec_string ("local-address", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:remote-address:
   *
   * The far end of the current path (`HOST:PORT`: the peer, or the relay
   * for a relayed path); %NULL while natkit finds a new path.
   */
  properties[PROP_REMOTE_ADDRESS] =
    g_param_spec_string ("remote-address", NULL, NULL, NULL,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:loss:
   *
   * The fraction (0 to 1) of the last 20 keepalive probes that went
   * unanswered; 0 before the first probe is decided. Notified when it
   * changes, at most once per probe.
   */
  properties[PROP_LOSS] =
    g_param_spec_double ("loss", NULL, NULL, 0.0, 1.0, 0.0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:bytes-sent:
   *
   * Application bytes sent so far: datagram payloads plus bytes written to
   * the stream (not headers, encryption, keepalives or retransmissions).
   * The getter is always exact; the notification comes at most once per
   * keepalive tick (every 250 ms, when the count changed) and when the
   * connection ends.
   */
  properties[PROP_BYTES_SENT] =
    g_param_spec_uint64 ("bytes-sent", NULL, NULL, 0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:bytes-received:
   *
   * Application bytes received so far: datagram payloads plus bytes read
   * from the stream. Notified like [property@Natkit.Connection:bytes-sent].
   */
  properties[PROP_BYTES_RECEIVED] =
    g_param_spec_uint64 ("bytes-received", NULL, NULL, 0, G_MAXUINT64, 0,
                         G_PARAM_READABLE | G_PARAM_EXPLICIT_NOTIFY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitConnection:connected-at:
   *
   * When the secure session came up, in microseconds since the epoch
   * (g_get_real_time()).
   */
  properties[PROP_CONNECTED_AT] =
    g_param_spec_int64 ("connected-at", NULL, NULL, 0, G_MAXINT64, 0,
                        G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * NatkitConnection::datagram-received:
   * @self: the connection
   * @datagram: the datagram
   *
   * Emitted for each datagram the peer sent with
   * [method@Natkit.Connection.send_datagram].
   */
  signals[SIGNAL_DATAGRAM_RECEIVED] =
    g_signal_new ("datagram-received", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_BYTES);

  /**
   * NatkitConnection::path-changed:
   * @self: the connection
   * @from: (nullable): the method of the path the connection left
   * @reason: why, in words
   *
   * Emitted when the live connection moved to another path without
   * breaking: a direct path replaced the relay (upgrade), or the peer
   * moved it. [property@Natkit.Connection:path] and
   * [property@Natkit.Connection:method] tell where it runs now.
   */
  signals[SIGNAL_PATH_CHANGED] =
    g_signal_new ("path-changed", G_TYPE_FROM_CLASS (klass),
                  G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 2, G_TYPE_STRING, G_TYPE_STRING);
}

static void
natkit_connection_init (NatkitConnection *self)
{
  self->rtt = -1;
  self->retired = g_ptr_array_new_with_free_func (g_object_unref);
  self->history = g_array_new (FALSE, TRUE, sizeof (StateChange));
  g_array_set_clear_func (self->history, state_change_clear);
}

/* keepalive */

static gboolean
keepalive_cb (gpointer user_data)
{
  NatkitConnection *self = user_data;
  gint64 now = g_get_monotonic_time ();
  guint64 sent, received;
  gboolean active;
  guint interval;

  if (self->state != NATKIT_CONNECTION_STATE_CONNECTED &&
      self->state != NATKIT_CONNECTION_STATE_DEGRADED)
    return G_SOURCE_CONTINUE;
  if (!self->path)
    return G_SOURCE_CONTINUE;

  /* data moving (or an answer outstanding): probe fast; else keep alive.
   * A cut path goes quiet at once (the stream waits for acknowledgements
   * that do not come): the probe sent while data moved must still be
   * followed up within PROBE_ACTIVE_MS, not a keepalive interval later. */
  sent = natkit_path_get_bytes_sent (self->path);
  received = natkit_path_get_bytes_received (self->path);
  active = sent != self->probe_sent || received != self->probe_received;
  self->probe_sent = sent;
  self->probe_received = received;
  interval = active || self->missed > 0 || self->ping_outstanding || self->trial_old ?
             PROBE_ACTIVE_MS : self->keepalive_ms;
  notify_bytes (self);
  if (now - self->last_ping < (gint64) interval * 1000)
    return G_SOURCE_CONTINUE;

  if (self->ping_outstanding &&
      _natkit_session_get_records_on_path (self->session) != self->ping_records)
    {
      /* no answer yet, but the peer's records keep coming over this path:
       * it lives, the answer waits behind data (a relay's queue under a
       * bulk transfer); counting it would move a busy connection off a
       * working path again and again. Only records that authenticate
       * count: bytes a third host sends to the path's port prove nothing. */
      self->missed = 0;
    }
  else if (self->ping_outstanding)
    {
      self->missed++;
      record_probe (self, FALSE);
    }
  if (self->missed >= MISSED_PONGS_LOST)
    {
      g_autofree char *why =
        g_strdup_printf ("%u probes unanswered (%u ms apart)", self->missed, interval);
      start_recovery (self, why);
      return G_SOURCE_CONTINUE;
    }
  if (self->missed >= MISSED_PONGS_DEGRADED)
    {
      g_autofree char *why =
        g_strdup_printf ("%u probe%s unanswered on the %s path", self->missed,
                         self->missed == 1 ? "" : "s", natkit_path_get_method (self->path));

      set_state (self, NATKIT_CONNECTION_STATE_DEGRADED, why);
    }
  self->last_ping = now;
  self->ping_records = _natkit_session_get_records_on_path (self->session);
  self->ping_outstanding = TRUE;
  _natkit_session_ping (self->session);
  return G_SOURCE_CONTINUE;
}

static void
start_probing (NatkitConnection *self)
{
  g_clear_handle_id (&self->keepalive_id, g_source_remove);
  self->missed = 0;
  self->ping_outstanding = TRUE;
  self->last_ping = g_get_monotonic_time ();
  self->probe_sent = self->path ? natkit_path_get_bytes_sent (self->path) : 0;
  self->probe_received = self->path ? natkit_path_get_bytes_received (self->path) : 0;
  self->ping_records = _natkit_session_get_records_on_path (self->session);
  _natkit_session_ping (self->session);
  self->keepalive_id = g_timeout_add (MIN (PROBE_ACTIVE_MS / 2, self->keepalive_ms),
                                      keepalive_cb, self);
}

static void attach_path (NatkitConnection *self,
                         NatkitPath       *path);

/* ---- a faster path ------------------------------------------------------
 *
 * The initiator watches the round-trip time: three probes in a row above
 * timers.slow-rtt make it look for a path by another method. The live
 * connection moves there on trial (the slow path stays open), is probed
 * fast, and stays if the new path answers in at most 80 % of the old
 * time; otherwise it moves back, and the next search waits (30 s,
 * doubling to 10 min). A method left for slowness is not upgraded back to
 * for as long. */

static void
end_trial (NatkitConnection *self)
{
  if (!self->trial_old)
    return;
  natkit_path_close (self->trial_old);
  g_clear_object (&self->trial_old);
  self->trial_samples = 0;
}

static void
back_off_faster (NatkitConnection *self)
{
  self->faster_backoff_s = self->faster_backoff_s == 0 ? FASTER_BACKOFF_MIN_S :
                           MIN (self->faster_backoff_s * 2, FASTER_BACKOFF_MAX_S);
  self->faster_not_before = g_get_monotonic_time () +
                            (gint64) self->faster_backoff_s * G_USEC_PER_SEC;
}

static gint
compare_int64 (gconstpointer a,
               gconstpointer b)
{
  gint64 x = *(const gint64 *) a, y = *(const gint64 *) b;

  return x < y ? -1 : x > y;
}

static void
faster_cb (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  g_autoptr(NatkitConnection) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPath) path = NULL;
  g_autofree char *from = NULL;
  g_autofree char *reason = NULL;

  path = _natkit_connector_reopen_finish (NATKIT_CONNECTOR (source), res, &error);
  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  g_clear_object (&self->faster);
  if (!path)
    {
      g_debug ("no other path to %s: %s", self->peer_id, error->message);
      back_off_faster (self);
      if (self->no_faster)
        g_ptr_array_set_size (self->no_faster, 0);
      return;
    }
  if (self->state != NATKIT_CONNECTION_STATE_CONNECTED || !self->path || self->recover ||
      self->trial_old)
    {
      natkit_path_close (path);
      return;
    }

  from = g_strdup (natkit_path_get_method (self->path));
  reason = g_strdup_printf ("the %s path answered in more than %u ms %u times in a row "
                            "(last %" G_GINT64_FORMAT " ms): trying %s",
                            from, _natkit_connector_get_slow_rtt (self->connector),
                            (guint) SLOW_SAMPLES, (self->rtt + 500) / 1000,
                            natkit_path_get_method (path));
  g_debug ("connection to %s: %s", self->peer_id, reason);
  /* the slow path stays open for the trial */
  g_clear_signal_handler (&self->path_closed_id, self->path);
  self->trial_old = g_steal_pointer (&self->path);
  self->trial_old_rtt = self->rtt;
  self->trial_samples = 0;
  attach_path (self, path);
  _natkit_session_set_path (self->session, path);
  start_probing (self);
  g_signal_emit (self, signals[SIGNAL_PATH_CHANGED], 0, from, reason);
}

static void
decide_trial (NatkitConnection *self)
{
  g_autofree char *from = g_strdup (natkit_path_get_method (self->path));
  g_autofree char *reason = NULL;
  gint64 median;

  qsort (self->trial_rtts, SLOW_SAMPLES, sizeof (gint64), compare_int64);
  median = self->trial_rtts[SLOW_SAMPLES / 2];
  if (median <= self->trial_old_rtt * FASTER_MARGIN)
    {
      g_debug ("connection to %s stays on %s: %" G_GINT64_FORMAT " ms instead of %"
               G_GINT64_FORMAT " ms", self->peer_id, from, (median + 500) / 1000,
               (self->trial_old_rtt + 500) / 1000);
      g_free (self->slow_method);
      self->slow_method = g_strdup (natkit_path_get_method (self->trial_old));
      back_off_faster (self);
      self->slow_until = self->faster_not_before;
      self->faster_backoff_s = 0;
      if (self->no_faster)
        g_ptr_array_set_size (self->no_faster, 0);
      end_trial (self);
      return;
    }

  /* no faster: back to the old path, if it is still there; the next
   * search leaves this method out and comes soon */
  if (!self->no_faster)
    self->no_faster = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (self->no_faster, g_strdup (from));
  self->faster_not_before = g_get_monotonic_time () + FASTER_NEXT_S * G_USEC_PER_SEC;
  if (natkit_path_is_closed (self->trial_old))
    {
      end_trial (self);
      return;
    }
  reason = g_strdup_printf ("%s answered in %" G_GINT64_FORMAT " ms, no faster than %s's %"
                            G_GINT64_FORMAT " ms: back to %s", from, (median + 500) / 1000,
                            natkit_path_get_method (self->trial_old),
                            (self->trial_old_rtt + 500) / 1000,
                            natkit_path_get_method (self->trial_old));
  {
    g_autoptr(NatkitPath) old = g_steal_pointer (&self->trial_old);

    self->trial_samples = 0;
    g_free (retire_path (self));
    attach_path (self, old);
    _natkit_session_set_path (self->session, old);
    self->rtt = self->trial_old_rtt;
    start_probing (self);
  }
  g_signal_emit (self, signals[SIGNAL_PATH_CHANGED], 0, from, reason);
}

static void
check_speed (NatkitConnection *self,
             gint64            rtt_us)
{
  gint64 slow_us = (gint64) _natkit_connector_get_slow_rtt (self->connector) * 1000;

  if (self->role != NATKIT_ROLE_INITIATOR || !self->path || self->recover ||
      self->state != NATKIT_CONNECTION_STATE_CONNECTED)
    return;
  if (self->trial_old)
    {
      self->trial_rtts[self->trial_samples++] = rtt_us;
      if (self->trial_samples >= SLOW_SAMPLES)
        decide_trial (self);
      return;
    }
  if (slow_us <= 0 || rtt_us <= slow_us)
    {
      self->slow_samples = 0;
      return;
    }
  if (++self->slow_samples < SLOW_SAMPLES || self->faster ||
      g_get_monotonic_time () < self->faster_not_before)
    return;
  self->slow_samples = 0;
  g_debug ("connection to %s: %s answers in %" G_GINT64_FORMAT " ms; looking for a faster path",
           self->peer_id, natkit_path_get_method (self->path), (rtt_us + 500) / 1000);
  self->faster = g_cancellable_new ();
  {
    g_autoptr(GStrvBuilder) exclude = g_strv_builder_new ();
    g_auto(GStrv) list = NULL;

    g_strv_builder_add (exclude, natkit_path_get_method (self->path));
    for (guint i = 0; self->no_faster && i < self->no_faster->len; i++)
      g_strv_builder_add (exclude, g_ptr_array_index (self->no_faster, i));
    list = g_strv_builder_end (exclude);
    _natkit_connector_find_other_async (self->connector, self, (const char * const *) list,
                                        self->faster, faster_cb, g_object_ref (self));
  }
}

/* Whether an upgrade to @method should be refused: it was left because
 * it was slow, a moment ago. */
static gboolean
left_for_slowness (NatkitConnection *self,
                   const char       *method)
{
  return self->slow_method && g_str_equal (self->slow_method, method) &&
         g_get_monotonic_time () < self->slow_until;
}

static void
pong_cb (NatkitSession *session,
         gint64         rtt_us,
         gpointer       user_data)
{
  NatkitConnection *self = user_data;

  if (self->ping_outstanding)
    record_probe (self, TRUE);
  self->missed = 0;
  self->ping_outstanding = FALSE;
  self->rtt = rtt_us;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_RTT]);
  check_speed (self, rtt_us);
  if (self->path && !self->recover &&
      self->state == NATKIT_CONNECTION_STATE_DEGRADED)
    set_state (self, NATKIT_CONNECTION_STATE_CONNECTED, "the path answers again");
}

static void
datagram_cb (NatkitSession *session,
             GBytes        *datagram,
             gpointer       user_data)
{
  NatkitConnection *self = user_data;

  self->datagram_received += g_bytes_get_size (datagram);
  g_signal_emit (self, signals[SIGNAL_DATAGRAM_RECEIVED], 0, datagram);
}

static void
session_closed_cb (NatkitSession *session,
                   const GError  *error,
                   gpointer       user_data)
{
  NatkitConnection *self = user_data;

  finish (self, NATKIT_CONNECTION_STATE_CLOSED,
          error ? error->message : "closed by the peer");
}

static void
path_closed_cb (NatkitPath   *path,
                const GError *error,
                gpointer      user_data)
{
  NatkitConnection *self = user_data;
  g_autofree char *why = g_strdup_printf ("the %s path closed%s%s",
                                          natkit_path_get_method (path),
                                          error ? ": " : "",
                                          error ? error->message : "");

  start_recovery (self, why);
}

static void
attach_path (NatkitConnection *self,
             NatkitPath       *path)
{
  detach_path (self);
  self->path = g_object_ref (path);
  /* a path left a moment ago and taken again (the peer's records came
   * over both for a while) is not closed with the retired ones */
  g_ptr_array_remove (self->retired, path);
  self->path_closed_id = g_signal_connect (path, "closed",
                                           G_CALLBACK (path_closed_cb), self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PATH]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_METHOD]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TRANSPORT]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOCAL_ADDRESS]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REMOTE_ADDRESS]);
}

/* recovery: find another path for the same secure session */

static void reopen_cb (GObject      *source,
                       GAsyncResult *res,
                       gpointer      user_data);

static gboolean
retry_cb (gpointer user_data)
{
  NatkitConnection *self = user_data;

  self->retry_id = 0;
  if (!self->recover)
    return G_SOURCE_REMOVE;
  _natkit_connector_reopen_async (self->connector, self, self->recover,
                                  reopen_cb, g_object_ref (self));
  return G_SOURCE_REMOVE;
}

static void
registered_again_cb (GObject    *object,
                     GParamSpec *pspec,
                     gpointer    user_data)
{
  NatkitConnection *self = user_data;

  if (!natkit_rendezvous_is_registered (NATKIT_RENDEZVOUS (object)))
    return;
  g_clear_signal_handler (&self->registered_id, object);
  if (self->recover && self->retry_id)
    {
      g_debug ("registered at the server again: looking for a path to %s now", self->peer_id);
      g_clear_handle_id (&self->retry_id, g_source_remove);
      self->retry_ms = RETRY_MIN_MS;
      retry_cb (self);
    }
}

static void
reopen_cb (GObject      *source,
           GAsyncResult *res,
           gpointer      user_data)
{
  g_autoptr(NatkitConnection) self = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPath) path = NULL;

  path = _natkit_connector_reopen_finish (NATKIT_CONNECTOR (source), res, &error);
  if (!path)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) || !self->recover)
        return;
      g_debug ("no new path to %s yet: %s; retrying in %u ms", self->peer_id,
               error->message, self->retry_ms);
      self->retry_id = g_timeout_add (self->retry_ms, retry_cb, self);
      self->retry_ms = MIN (self->retry_ms * 2, RETRY_MAX_MS);
      /* the signaling server is gone too (a router that lost its bindings
       * cuts that connection as well): try again the moment it is back */
      if (NATKIT_IS_RENDEZVOUS (self->signaling) && !self->registered_id &&
          !natkit_rendezvous_is_registered (NATKIT_RENDEZVOUS (self->signaling)))
        self->registered_id = g_signal_connect (self->signaling, "notify::registered",
                                                G_CALLBACK (registered_again_cb), self);
      return;
    }
  _natkit_connection_replace_path (self, path);
}

static gboolean
recover_timeout_cb (gpointer user_data)
{
  NatkitConnection *self = user_data;
  g_autofree char *why = NULL;

  self->recover_timeout_id = 0;
  why = g_strdup_printf ("no new path to %s within %u s", self->peer_id,
                         self->reconnect_ms / 1000);
  finish (self, NATKIT_CONNECTION_STATE_FAILED, why);
  return G_SOURCE_REMOVE;
}

static void
start_recovery (NatkitConnection *self,
                const char       *why)
{
  if (self->state == NATKIT_CONNECTION_STATE_CLOSED ||
      self->state == NATKIT_CONNECTION_STATE_FAILED || self->recover)
    return;

  g_debug ("connection to %s lost its path (%s); looking for another", self->peer_id,
           why);
  if (self->path)
    {
      g_free (self->lost);
      g_free (self->lost_why);
      self->lost = g_strdup (natkit_path_get_method (self->path));
      self->lost_why = g_strdup (why);
    }
  detach_path (self);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_PATH]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_METHOD]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TRANSPORT]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_LOCAL_ADDRESS]);
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_REMOTE_ADDRESS]);
  set_state (self, NATKIT_CONNECTION_STATE_DEGRADED, why);
  self->recover = g_cancellable_new ();
  self->retry_ms = RETRY_MIN_MS;
  self->recover_timeout_id = g_timeout_add (self->reconnect_ms, recover_timeout_cb, self);
  /* the initiator drives, at once; the responder waits for its attempts */
  if (self->role == NATKIT_ROLE_INITIATOR)
    self->retry_id = g_idle_add (retry_cb, self);
}

void
_natkit_connection_replace_path (NatkitConnection *self,
                                 NatkitPath       *path)
{
  if (self->state == NATKIT_CONNECTION_STATE_CLOSED ||
      self->state == NATKIT_CONNECTION_STATE_FAILED)
    {
      natkit_path_close (path);
      return;
    }

  g_debug ("connection to %s now runs over %s (%s)", self->peer_id,
           natkit_path_get_method (path), natkit_path_get_transport (path));
  stop_everything (self);
  attach_path (self, path);
  _natkit_session_set_path (self->session, path);
  start_probing (self);
  {
    g_autofree char *how = g_strdup_printf ("found a path again: %s (%s)",
                                            natkit_path_get_method (path),
                                            natkit_path_get_transport (path));

    set_state (self, NATKIT_CONNECTION_STATE_CONNECTED, how);
  }
  if (self->lost)
    {
      g_autofree char *from = g_steal_pointer (&self->lost);
      g_autofree char *why = g_steal_pointer (&self->lost_why);
      g_autofree char *reason = g_strdup_printf ("the %s path %s", from, why);

      g_signal_emit (self, signals[SIGNAL_PATH_CHANGED], 0, from, reason);
    }
}

/* Moves the live connection onto @path (a better one: direct instead of
 * relayed); the old path stays open a moment for the peer to follow. */
void
_natkit_connection_upgrade_path (NatkitConnection *self,
                                 NatkitPath       *path,
                                 const char       *reason)
{
  g_autofree char *from = NULL;

  if (self->state != NATKIT_CONNECTION_STATE_CONNECTED || self->path == path ||
      self->trial_old || left_for_slowness (self, natkit_path_get_method (path)))
    {
      if (self->path != path)
        natkit_path_close (path);
      return;
    }
  g_debug ("connection to %s moves from %s to %s: %s", self->peer_id,
           natkit_path_get_method (self->path), natkit_path_get_method (path), reason);
  from = retire_path (self);
  attach_path (self, path);
  _natkit_session_set_path (self->session, path);
  /* the first probe is an authenticated record on the new path: the peer
   * follows it */
  start_probing (self);
  g_signal_emit (self, signals[SIGNAL_PATH_CHANGED], 0, from, reason);
}

static void
session_path_changed_cb (NatkitSession *session,
                         NatkitPath    *path,
                         gpointer       user_data)
{
  NatkitConnection *self = user_data;
  g_autofree char *from = NULL;
  g_autofree char *reason = NULL;

  if (self->path == path || self->state == NATKIT_CONNECTION_STATE_CLOSED ||
      self->state == NATKIT_CONNECTION_STATE_FAILED)
    return;
  if (self->recover)
    {
      /* looking for a path, and the peer's records arrive on this one */
      _natkit_connection_replace_path (self, path);
      return;
    }
  reason = g_strdup_printf ("%s moved the connection to %s",
                            self->peer_id, natkit_path_get_method (path));
  from = retire_path (self);
  attach_path (self, path);
  start_probing (self);
  set_state (self, NATKIT_CONNECTION_STATE_CONNECTED, reason);
  g_signal_emit (self, signals[SIGNAL_PATH_CHANGED], 0, from, reason);
}

void
_natkit_connection_peer_closed (NatkitConnection *self,
                                const char       *reason)
{
  finish (self, NATKIT_CONNECTION_STATE_CLOSED, reason);
}

NatkitConnection *
_natkit_connection_new (NatkitConnector    *connector,
                        NatkitSignaling    *signaling,
                        NatkitSession      *session,
                        NatkitPath         *path,
                        const char         *peer_id,
                        const char         *peer_address,
                        const char         *session_id,
                        NatkitRole          role,
                        NatkitConnectFlags  flags,
                        guint               keepalive_ms,
                        guint               reconnect_ms,
                        gint64              connect_time)
{
  NatkitConnection *self = g_object_new (NATKIT_TYPE_CONNECTION, NULL);

  self->connector = g_object_ref (connector);
  self->signaling = g_object_ref (signaling);
  self->session = g_object_ref (session);
  self->peer_id = g_strdup (peer_id);
  self->peer_address = g_strdup (peer_address);
  self->session_id = g_strdup (session_id);
  self->role = role;
  self->flags = flags;
  self->connect_time = connect_time;
  self->keepalive_ms = MAX (keepalive_ms, 100);
  self->reconnect_ms = MAX (reconnect_ms, 1000);

  self->pong_id = g_signal_connect (session, "pong", G_CALLBACK (pong_cb), self);
  self->datagram_id = g_signal_connect (session, "datagram-received",
                                        G_CALLBACK (datagram_cb), self);
  self->session_closed_id = g_signal_connect (session, "closed",
                                              G_CALLBACK (session_closed_cb), self);
  self->session_path_id = g_signal_connect (session, "path-changed",
                                            G_CALLBACK (session_path_changed_cb), self);
  attach_path (self, path);
  self->rtt = natkit_path_get_rtt (path);
  self->state = NATKIT_CONNECTION_STATE_CONNECTED;
  {
    g_autofree char *how = g_strdup_printf ("%s via %s (%s)",
                                            role == NATKIT_ROLE_INITIATOR ?
                                              "connected" : "accepted",
                                            natkit_path_get_method (path),
                                            natkit_path_get_transport (path));

    record_state (self, NATKIT_CONNECTION_STATE_CONNECTED, how);
    self->connected_at = g_array_index (self->history, StateChange, 0).real_time;
  }
  start_probing (self);
  return self;
}

const char *
_natkit_connection_get_lost_method (NatkitConnection *self)
{
  return self->lost;
}

NatkitSignaling *
_natkit_connection_get_signaling (NatkitConnection *self)
{
  return self->signaling;
}

NatkitSession *
_natkit_connection_get_session (NatkitConnection *self)
{
  return self->session;
}

/**
 * natkit_connection_get_peer_id:
 * @self: a #NatkitConnection
 *
 * Returns: the peer's ID
 */
const char *
natkit_connection_get_peer_id (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->peer_id;
}

/**
 * natkit_connection_get_peer_address:
 * @self: a #NatkitConnection
 *
 * Returns: (nullable): the peer address connected to, or %NULL
 */
const char *
natkit_connection_get_peer_address (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->peer_address;
}

/**
 * natkit_connection_get_session_id:
 * @self: a #NatkitConnection
 *
 * Returns: the ID both peers know this connection by
 */
const char *
natkit_connection_get_session_id (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->session_id;
}

/**
 * natkit_connection_get_role:
 * @self: a #NatkitConnection
 *
 * Returns: whether this side connected (initiator) or accepted (responder)
 */
NatkitRole
natkit_connection_get_role (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NATKIT_ROLE_INITIATOR);
  return self->role;
}

/**
 * natkit_connection_get_flags:
 * @self: a #NatkitConnection
 *
 * Returns: how the connecting side said it would use the connection
 */
NatkitConnectFlags
natkit_connection_get_flags (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0);
  return self->flags;
}

/**
 * natkit_connection_get_method:
 * @self: a #NatkitConnection
 *
 * Returns: (nullable): the traversal method of the current path, or %NULL
 *   while there is none
 */
const char *
natkit_connection_get_method (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->path ? natkit_path_get_method (self->path) : NULL;
}

/**
 * natkit_connection_get_transport:
 * @self: a #NatkitConnection
 *
 * Returns: (nullable): what carries the current path, or %NULL while there
 *   is none
 */
const char *
natkit_connection_get_transport (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->path ? natkit_path_get_transport (self->path) : NULL;
}

/**
 * natkit_connection_get_state:
 * @self: a #NatkitConnection
 *
 * Returns: the connection's state
 */
NatkitConnectionState
natkit_connection_get_state (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NATKIT_CONNECTION_STATE_CLOSED);
  return self->state;
}

/**
 * natkit_connection_get_rtt:
 * @self: a #NatkitConnection
 *
 * Returns: the last measured round-trip time in microseconds, or -1
 */
gint64
natkit_connection_get_rtt (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), -1);
  return self->rtt;
}

/**
 * natkit_connection_get_failures:
 * @self: a #NatkitConnection
 *
 * Why the methods tried before the one that carries the connection did
 * not work, one entry per method, as `METHOD: REASON` (for example
 * `holepunch: no punch packet from the peer got through in 4.0 s …`). Empty
 * when the first method worked, and for incoming connections.
 *
 * Returns: (transfer none) (array zero-terminated=1): the reasons
 */
const char * const *
natkit_connection_get_failures (NatkitConnection *self)
{
  static const char * const none[] = { NULL };

  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->failures ? (const char * const *) self->failures : none;
}

void
_natkit_connection_set_failures (NatkitConnection   *self,
                                 const char * const *failures)
{
  g_strfreev (self->failures);
  self->failures = g_strdupv ((char **) failures);
}

/**
 * natkit_connection_get_connect_time:
 * @self: a #NatkitConnection
 *
 * Returns: how long connecting took, in microseconds, from the call to
 *   the completed secure handshake (0 for incoming connections)
 */
gint64
natkit_connection_get_connect_time (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0);
  return self->connect_time;
}

/**
 * natkit_connection_get_path:
 * @self: a #NatkitConnection
 *
 * Returns: (nullable) (transfer none): the current path
 */
NatkitPath *
natkit_connection_get_path (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->path;
}

/**
 * natkit_connection_get_stream:
 * @self: a #NatkitConnection
 *
 * The reliable, ordered byte stream to the peer. Closing its output
 * stream tells the peer that no more data follows (its reads return 0)
 * while data can still come back; closing the #GIOStream closes both
 * directions.
 *
 * Returns: (transfer none): the stream
 */
GIOStream *
natkit_connection_get_stream (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return _natkit_session_get_stream (self->session);
}

/**
 * natkit_connection_get_max_datagram:
 * @self: a #NatkitConnection
 *
 * Returns: the largest datagram [method@Natkit.Connection.send_datagram]
 *   takes on the current path
 */
gsize
natkit_connection_get_max_datagram (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0);
  return _natkit_session_get_max_datagram (self->session);
}

/**
 * natkit_connection_send_datagram:
 * @self: a #NatkitConnection
 * @datagram: the datagram
 * @error: return location for a #GError
 *
 * Sends one datagram, encrypted. Datagrams may be lost or reordered; they
 * are never altered.
 *
 * Returns: %TRUE when it was sent
 */
gboolean
natkit_connection_send_datagram (NatkitConnection  *self,
                                 GBytes            *datagram,
                                 GError           **error)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), FALSE);
  g_return_val_if_fail (datagram != NULL, FALSE);

  if (self->state == NATKIT_CONNECTION_STATE_CLOSED ||
      self->state == NATKIT_CONNECTION_STATE_FAILED)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "the connection to %s is %s", self->peer_id,
                   self->state == NATKIT_CONNECTION_STATE_CLOSED ? "closed" : "lost");
      return FALSE;
    }
  if (!_natkit_session_send_datagram (self->session, datagram, error))
    return FALSE;
  self->datagram_sent += g_bytes_get_size (datagram);
  return TRUE;
}

/**
 * natkit_connection_close:
 * @self: a #NatkitConnection
 *
 * Closes the connection: tells the peer, ends the secure session, releases
 * the path (relay circuits and the like). Does nothing when it is closed
 * already.
 */
void
natkit_connection_close (NatkitConnection *self)
{
  g_return_if_fail (NATKIT_IS_CONNECTION (self));

  if (self->state == NATKIT_CONNECTION_STATE_CLOSED ||
      self->state == NATKIT_CONNECTION_STATE_FAILED)
    return;
  if (self->connector)
    _natkit_connector_send_op (self->connector, self->signaling, self->peer_id,
                               self->session_id, "close", "reason",
                               "closed by the peer");
  finish (self, NATKIT_CONNECTION_STATE_CLOSED, "closed by this side");
}

void
_natkit_connection_set_nat_info (NatkitConnection *self,
                                 NatkitNatInfo    *local,
                                 NatkitNatInfo    *remote)
{
  g_set_object (&self->local_nat, local);
  g_set_object (&self->remote_nat, remote);
}

/**
 * natkit_connection_get_local_nat_info:
 * @self: a #NatkitConnection
 *
 * What this machine knew of its own network when the connection was made
 * ([method@Natkit.Manager.get_nat_info]).
 *
 * Returns: (transfer none) (nullable): the NAT information, or %NULL when
 *   it was not known
 */
NatkitNatInfo *
natkit_connection_get_local_nat_info (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->local_nat;
}

/**
 * natkit_connection_get_remote_nat_info:
 * @self: a #NatkitConnection
 *
 * What the peer said of its network when the connection was agreed: its
 * NAT type and behaviors (no addresses).
 *
 * Returns: (transfer none) (nullable): the peer's NAT information, or
 *   %NULL when the peer did not know or say
 */
NatkitNatInfo *
natkit_connection_get_remote_nat_info (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->remote_nat;
}

/* the methods by what they do, for sentences */
static const char *
method_words (const char *method)
{
  static const struct { const char *method, *words; } table[] = {
    { "holepunch", "hole punching" },
    { "tcp-holepunch", "TCP hole punching" },
    { "upnp", "a UPnP port mapping" },
    { "natpmp", "a NAT-PMP or PCP port mapping" },
    { "ice", "ICE" },
    { "turn", "a TURN relay" },
    { "relay", "natkit-server's relay" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    if (g_strcmp0 (method, table[i].method) == 0)
      return table[i].words;
  return method;
}

/**
 * natkit_connection_dup_explanation:
 * @self: a #NatkitConnection
 *
 * How the connection was made and, when it is relayed, why no direct path
 * works, in words a person understands, e.g. “you are behind a symmetric
 * NAT and the peer's network blocks UDP, so UDP hole punching cannot
 * work: relayed through 203.0.113.10:7000/udp (relay circuit 42)”. It uses what both sides
 * knew of their networks ([method@Natkit.Connection.get_local_nat_info],
 * [method@Natkit.Connection.get_remote_nat_info]) and why each method
 * tried first failed ([method@Natkit.Connection.get_failures]).
 *
 * Returns: (transfer full) (nullable): the explanation, or %NULL while the
 *   connection has no path
 */
char *
natkit_connection_dup_explanation (NatkitConnection *self)
{
  g_autofree char *pair = NULL;
  const char *method;
  GString *s;

  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  if (!self->path)
    return NULL;
  method = natkit_path_get_method (self->path);
  s = g_string_new (NULL);
  pair = _natkit_nat_pair_explain (self->local_nat, self->remote_nat);

  if (_natkit_connector_path_cost (self->connector, self->path) != NATKIT_COST_RELAYED)
    {
      g_string_append_printf (s, "direct: %s to %s", method_words (method),
                              natkit_path_get_remote_address (self->path));
      if (self->local_nat && self->remote_nat)
        g_string_append_printf (s, ", between %s (you) and %s (the peer)",
                                _natkit_nat_type_words (natkit_nat_info_get_nat_type (self->local_nat)),
                                _natkit_nat_type_words (natkit_nat_info_get_nat_type (self->remote_nat)));
      return g_string_free (s, FALSE);
    }

  if (pair)
    g_string_append (s, pair);
  else
    {
      /* the direct methods' own reasons */
      for (guint i = 0; self->failures && self->failures[i]; i++)
        {
          const char *colon = strstr (self->failures[i], ": ");
          g_autofree char *m = colon ? g_strndup (self->failures[i], colon - self->failures[i])
                                     : NULL;

          if (!m || _natkit_connector_method_cost (self->connector, m) == NATKIT_COST_RELAYED)
            continue;
          g_string_append_printf (s, "%s%s did not work (%s)", s->len ? "; " : "",
                                  method_words (m), colon + 2);
        }
      if (s->len == 0)
        g_string_append (s, "no direct method was tried");
    }
  g_string_append_printf (s, ": relayed through %s",
                          natkit_path_get_remote_address (self->path));
  return g_string_free (s, FALSE);
}

/**
 * natkit_connection_is_relayed:
 * @self: a #NatkitConnection
 *
 * Whether the current path goes through a relay (natkit-server's relay,
 * TURN) rather than straight to the peer, as the method's plugin says
 * (%NATKIT_COST_RELAYED) or the path itself
 * ([property@Natkit.Path:relayed]: ICE on a TURN candidate). It changes with the path: read it again on
 * [signal@Natkit.Connection::path-changed] or
 * #GObject::notify for [property@Natkit.Connection:method];
 * [method@Natkit.Connection.dup_explanation] says why in words.
 *
 * Returns: %TRUE when the data is relayed, %FALSE when the path is direct
 *   (or mapped) or while the connection has no path
 */
gboolean
natkit_connection_is_relayed (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), FALSE);
  if (!self->path || !self->connector)
    return FALSE;
  return _natkit_connector_path_cost (self->connector, self->path) == NATKIT_COST_RELAYED;
}

/**
 * natkit_connection_get_local_address:
 * @self: a #NatkitConnection
 *
 * Gets [property@Natkit.Connection:local-address].
 *
 * Returns: (nullable): this side's address of the current path
 *   (`HOST:PORT`), or %NULL while there is none
 */
const char *
natkit_connection_get_local_address (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->path ? natkit_path_get_local_address (self->path) : NULL;
}

/**
 * natkit_connection_get_remote_address:
 * @self: a #NatkitConnection
 *
 * Gets [property@Natkit.Connection:remote-address].
 *
 * Returns: (nullable): the far end of the current path (`HOST:PORT`: the
 *   peer, or the relay), or %NULL while there is none
 */
const char *
natkit_connection_get_remote_address (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);
  return self->path ? natkit_path_get_remote_address (self->path) : NULL;
}

/**
 * natkit_connection_get_loss:
 * @self: a #NatkitConnection
 *
 * Gets [property@Natkit.Connection:loss].
 *
 * Returns: the fraction of the last 20 keepalive probes that went
 *   unanswered, from 0 to 1
 */
double
natkit_connection_get_loss (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0.0);
  return self->loss;
}

/**
 * natkit_connection_get_bytes_sent:
 * @self: a #NatkitConnection
 *
 * Gets [property@Natkit.Connection:bytes-sent], exact at any time (the
 * property's notification comes at most every keepalive tick).
 *
 * Returns: the application bytes sent so far (datagram payloads and bytes
 *   written to the stream)
 */
guint64
natkit_connection_get_bytes_sent (NatkitConnection *self)
{
  guint64 sent, received;

  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0);
  get_bytes (self, &sent, &received);
  return sent;
}

/**
 * natkit_connection_get_bytes_received:
 * @self: a #NatkitConnection
 *
 * Gets [property@Natkit.Connection:bytes-received], exact at any time.
 *
 * Returns: the application bytes received so far (datagram payloads and
 *   bytes read from the stream)
 */
guint64
natkit_connection_get_bytes_received (NatkitConnection *self)
{
  guint64 sent, received;

  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0);
  get_bytes (self, &sent, &received);
  return received;
}

/**
 * natkit_connection_get_connected_at:
 * @self: a #NatkitConnection
 *
 * Gets [property@Natkit.Connection:connected-at].
 *
 * Returns: when the secure session came up, in microseconds since the
 *   epoch
 */
gint64
natkit_connection_get_connected_at (NatkitConnection *self)
{
  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), 0);
  return self->connected_at;
}

/**
 * natkit_connection_get_state_history:
 * @self: a #NatkitConnection
 *
 * How the connection's state went, oldest first: one entry when it came up
 * (%NATKIT_CONNECTION_STATE_CONNECTED), then one per change of
 * [property@Natkit.Connection:state]. Each entry is
 * `(real_time, monotonic_time, state, reason)`: microseconds since the
 * epoch (g_get_real_time()), the g_get_monotonic_time() of the change, the
 * state's nick (`connected`, `degraded`, `closed`, `failed`) and why, in
 * words. A connection that changes state very often keeps its first entry
 * and the last 63.
 *
 * Returns: (transfer full): the history, a #GVariant of type `a(xxss)`
 */
GVariant *
natkit_connection_get_state_history (NatkitConnection *self)
{
  GEnumClass *states;
  GVariantBuilder builder;

  g_return_val_if_fail (NATKIT_IS_CONNECTION (self), NULL);

  states = g_type_class_ref (NATKIT_TYPE_CONNECTION_STATE);
  g_variant_builder_init (&builder, G_VARIANT_TYPE ("a(xxss)"));
  for (guint i = 0; i < self->history->len; i++)
    {
      StateChange *change = &g_array_index (self->history, StateChange, i);
      GEnumValue *value = g_enum_get_value (states, change->state);

      g_variant_builder_add (&builder, "(xxss)", change->real_time,
                             change->monotonic_time,
                             value ? value->value_nick : "unknown", change->reason);
    }
  g_type_class_unref (states);
  return g_variant_ref_sink (g_variant_builder_end (&builder));
}
