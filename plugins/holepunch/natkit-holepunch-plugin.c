/* natkit-holepunch-plugin.c: direct UDP paths through NATs by hole punching
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Both peers open one UDP socket, learn its addresses (the local
 * interfaces' and what the STUN servers see), and send them with a random
 * token over the signaling channel ("holepunch", docs/protocol.md 7.1).
 * Then both send authenticated PUNCH packets to every address of the
 * other's at once; the first packets open the sender's own NAT, later
 * ones get through the peer's. A PUNCH that arrives is answered with an
 * ACK (to where it came from, which may be a port the peer's NAT chose
 * for us alone); an ACK proves the pair works both ways, and the
 * initiator fixes it with a CONFIRM. The secure session then runs on that
 * pair. Packets are keyed from both tokens and the session ID, so a host
 * that is not one of the two peers can neither forge nor answer a punch
 * (docs/protocol.md 7.2).
 *
 * What works where is RFC 4787's arithmetic: the pair works unless one
 * side's NAT maps per destination (symmetric) while the other's filters by
 * address and port, or both map per destination; a UDP-blocked network
 * gets nothing. Rank PRIMARY, cost DIRECT.
 *
 * With two STUN destinations the socket also learns how its NAT maps
 * (docs/protocol.md 7.1): the same port for both (endpoint-independent),
 * ports a small step apart (sequential: the peer also punches the next
 * few ports in that step), or unrelated ports (random). Random against
 * endpoint-independent is the birthday punch (7.4): the random side opens
 * many sockets that all punch the other's public address, the other side
 * probes random ports of the random side's public address; with 256
 * sockets and 2048 probes over the 64512 ports a NAT hands out, one probe
 * lands on a socket's port with a probability of about 1 - e^-8. Random on
 * both sides: fail at once, the relay carries the connection.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <stdlib.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <natkit/natkit.h>
#include <stun/stunagent.h>
#include <stun/usages/bind.h>

#include "natkit-holepunch-proto.h"

#define NATKIT_TYPE_HOLEPUNCH (natkit_holepunch_get_type ())
G_DECLARE_FINAL_TYPE (NatkitHolepunch, natkit_holepunch, NATKIT, HOLEPUNCH, GObject)

#define NATKIT_TYPE_HOLEPUNCH_PATH (natkit_holepunch_path_get_type ())
G_DECLARE_FINAL_TYPE (NatkitHolepunchPath, natkit_holepunch_path,
                      NATKIT, HOLEPUNCH_PATH, NatkitPath)

/* Limits (docs/protocol.md 7.3) */
#define GATHER_MS          600     /* wait this long at most for STUN */
#define MAP_WAIT_MS        600     /* and for the gateway's port mapping */
#define STUN_RESEND_MS     150
#define PUNCH_BUDGET_MS    4000    /* punching, after both offers are known */
#define PUNCH_FAST_MS      20      /* the first rounds */
#define PUNCH_FAST_ROUNDS  10
#define PUNCH_SLOW_MS      100
#define MAX_EARLY          16      /* packets kept before the peer's offer */
#define MAX_TARGETS        48      /* candidates, predicted, peer-reflexive */
#define MAX_STUN_SERVERS   4
#define SECOND_STUN_MS     200     /* after the first STUN answer, for a second */
#define PREDICT_PORTS      8       /* a sequential peer: its next ports punched */

/* The birthday punch (docs/protocol.md 7.4): defaults, and the
 * environment variables that change them (the plugin has no settings of
 * its own in config.json) */
#define BIRTHDAY_SOCKETS   256     /* NATKIT_HOLEPUNCH_BIRTHDAY_SOCKETS */
#define BIRTHDAY_PROBES    2048    /* NATKIT_HOLEPUNCH_BIRTHDAY_PROBES */
#define BIRTHDAY_RATE      2000    /* NATKIT_HOLEPUNCH_BIRTHDAY_RATE, packets/s */
#define BIRTHDAY_MS        4000    /* NATKIT_HOLEPUNCH_BIRTHDAY_MS */
#define BIRTHDAY_TICK_MS   10      /* a burst this often */
#define BIRTHDAY_RESEND_MS 1000    /* the sockets punch again this often */
#define BIRTHDAY_PORT_MIN  1024    /* the ports NATs hand out */
#define PATH_MTU           1400
#define SOCKET_BUFFER      (4 * 1024 * 1024)

/* ---- the path ----------------------------------------------------------- */

struct _NatkitHolepunchPath
{
  NatkitPath      parent_instance;

  GSocket        *socket;
  GSocketAddress *remote;
  GSource        *io;
  NatkitPunchKey  key;
  guint8          role;                   /* ours: 0 initiator, 1 responder */
  guint8          secret[NATKIT_PUNCH_SECRET_SIZE];
  guint8         *buffer;
  guint           stray;                  /* packets from elsewhere, dropped */
};

G_DEFINE_FINAL_TYPE (NatkitHolepunchPath, natkit_holepunch_path, NATKIT_TYPE_PATH)

static void
send_punch (GSocket              *socket,
            GSocketAddress       *to,
            const NatkitPunchKey *key,
            NatkitPunchType       type,
            guint8                role,
            const guint8         *secret,
            const guint8         *echo)
{
  NatkitPunch punch = { type, role, { 0 }, { 0 } };
  guint8 packet[NATKIT_PUNCH_SIZE];

  natkit_punch_nonce_for (secret, G_INET_SOCKET_ADDRESS (to), punch.nonce);
  if (echo != NULL)
    memcpy (punch.echo, echo, NATKIT_PUNCH_NONCE_SIZE);
  natkit_punch_build (key, &punch, packet);
  /* like any UDP send: a full buffer or an unreachable port loses it */
  g_socket_send_to (socket, to, (const char *) packet, sizeof packet, NULL, NULL);
}

static gboolean
path_receive_cb (GSocket      *socket,
                 GIOCondition  condition,
                 gpointer      user_data)
{
  NatkitHolepunchPath *self = user_data;

  for (guint n = 0; n < 64; n++)
    {
      g_autoptr(GSocketAddress) from = NULL;
      g_autoptr(GError) error = NULL;
      gssize len = g_socket_receive_from (socket, &from, (char *) self->buffer,
                                          65536, NULL, &error);

      if (len < 0)
        {
          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            break;
          /* ICMP errors surface here on Linux: not a reason to give up a
           * path the peer may still answer on */
          continue;
        }
      if (from == NULL || !natkit_punch_same_address (from, self->remote))
        {
          self->stray++;
          continue;
        }
      if (natkit_punch_looks_like (self->buffer, len))
        {
          NatkitPunch punch;

          /* the peer still punching: our CONFIRM was lost, say it again */
          if (natkit_punch_parse (&self->key, self->buffer, len, &punch, NULL) &&
              punch.sender_role != self->role && self->role == 0 &&
              punch.type != NATKIT_PUNCH_CONFIRM)
            send_punch (socket, self->remote, &self->key, NATKIT_PUNCH_CONFIRM,
                        self->role, self->secret, punch.nonce);
          continue;
        }
      if (len == 0)
        continue;
      {
        g_autoptr(GBytes) datagram = g_bytes_new (self->buffer, len);

        g_object_ref (self);
        natkit_path_deliver (NATKIT_PATH (self), datagram);
        if (natkit_path_is_closed (NATKIT_PATH (self)))
          {
            g_object_unref (self);
            return G_SOURCE_REMOVE;
          }
        g_object_unref (self);
      }
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
natkit_holepunch_path_send (NatkitPath  *path,
                            GBytes      *datagram,
                            GError     **error)
{
  NatkitHolepunchPath *self = NATKIT_HOLEPUNCH_PATH (path);
  g_autoptr(GError) local_error = NULL;
  gsize size;
  const char *data = g_bytes_get_data (datagram, &size);

  if (g_socket_send_to (self->socket, self->remote, data, size, NULL, &local_error) >= 0)
    return TRUE;
  /* UDP semantics: a full buffer or an ICMP error loses this one datagram;
   * the keepalive notices a path that stays dead */
  if (g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK) ||
      g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED) ||
      g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_HOST_UNREACHABLE) ||
      g_error_matches (local_error, G_IO_ERROR, G_IO_ERROR_NETWORK_UNREACHABLE))
    return TRUE;
  {
    g_autofree char *to = natkit_punch_describe (self->remote);

    g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                 "Could not send to %s over the punched path: %s", to,
                 local_error->message);
  }
  return FALSE;
}

static void
natkit_holepunch_path_close (NatkitPath *path)
{
  NatkitHolepunchPath *self = NATKIT_HOLEPUNCH_PATH (path);

  natkit_punch_drop_source (&self->io);
  if (self->socket != NULL)
    g_socket_close (self->socket, NULL);
}

static void
natkit_holepunch_path_finalize (GObject *object)
{
  NatkitHolepunchPath *self = NATKIT_HOLEPUNCH_PATH (object);

  natkit_punch_drop_source (&self->io);
  g_clear_object (&self->socket);
  g_clear_object (&self->remote);
  g_free (self->buffer);
  G_OBJECT_CLASS (natkit_holepunch_path_parent_class)->finalize (object);
}

static void
natkit_holepunch_path_class_init (NatkitHolepunchPathClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_holepunch_path_finalize;
  NATKIT_PATH_CLASS (klass)->send = natkit_holepunch_path_send;
  NATKIT_PATH_CLASS (klass)->close = natkit_holepunch_path_close;
}

static void
natkit_holepunch_path_init (NatkitHolepunchPath *self)
{
}

/* ---- one attempt -------------------------------------------------------- */

typedef struct
{
  guint8          *data;
  gsize            len;
  GSocketAddress  *from;
} Early;

static void
early_free (gpointer data)
{
  Early *e = data;

  g_free (e->data);
  g_clear_object (&e->from);
  g_free (e);
}

typedef struct
{
  GSocketAddress *address;
  char           *origin;   /* "host", "srflx", "mapped", "predicted", "peer-reflexive" */
  gboolean        heard;    /* a valid packet came from there */
  GSocket        *via;      /* a birthday socket; NULL: the attempt's socket */
} Target;

static void
target_free (gpointer data)
{
  Target *t = data;

  g_clear_object (&t->via);
  g_clear_object (&t->address);
  g_free (t->origin);
  g_free (t);
}

typedef struct
{
  GSocketAddress *address;
  StunAgent       agent;
  StunMessage     message;
  guint8          request[STUN_MAX_MESSAGE_SIZE_IPV4];
  gsize           request_len;
  char           *name;
  guint           order;        /* 1, 2, …: when its first request left; 0 not yet */
  gboolean        answered;
  guint16         mapped_port;
  gboolean        duplicate;    /* the same address as another one: not asked */
} StunServer;

static void
stun_server_free (gpointer data)
{
  StunServer *s = data;

  g_clear_object (&s->address);
  g_free (s->name);
  g_free (s);
}

typedef struct
{
  guint  sockets;
  guint  probes;
  guint  rate;        /* packets per second */
  guint  ms;
} BirthdayLimits;

typedef struct _Attempt Attempt;

typedef struct
{
  Attempt  *attempt;
  GSocket  *socket;
  GSource  *io;
  gboolean  keep;     /* the winner: the path has it */
} BirthdaySocket;

struct _Attempt
{
  GTask            *task;         /* not a reference: the task owns us */
  NatkitSignaling  *signaling;
  gulong            message_id;
  char             *session_id;
  char             *peer_id;
  guint8            role;         /* 0 initiator, 1 responder */

  GSocket          *socket;
  GSource          *io;
  guint8           *buffer;
  guint16           port;

  /* gathering */
  GArray           *local;        /* NatkitPunchCandidate */
  GPtrArray        *stun;         /* StunServer */
  guint             stun_pending; /* resolutions and answers still awaited */
  GSource          *gather_timer;
  GSource          *stun_resend;
  gboolean          gathered;
  gboolean          offer_sent;
  /* a port mapping of our socket at the gateway (UPnP, NAT-PMP, PCP) */
  GCancellable     *map_cancel;   /* while it is asked for */
  NatkitPortMapping *port_mapping;
  gboolean          gather_waits; /* STUN done, the mapping not yet */
  GSource          *map_timer;

  /* punching */
  guint8            token[NATKIT_PUNCH_TOKEN_SIZE];
  guint8            secret[NATKIT_PUNCH_SECRET_SIZE];
  gboolean          have_peer;
  NatkitPunchKey    key;
  GPtrArray        *targets;      /* Target */
  char             *peer_nat;
  GQueue            early;        /* Early, until the peer's offer */
  GSource          *punch_timer;
  GSource          *budget;
  guint             rounds;
  guint             punches_sent;
  guint             rejected;     /* packets that did not authenticate */
  GSocketAddress   *validated;    /* the responder: a pair that answered */
  GSocket          *validated_via;
  GSource          *cancel;

  /* mapping behavior */
  guint             stun_sends;   /* servers asked so far */
  guint             stun_resolving; /* server names being looked up */
  NatkitPunchMapping mapping;
  NatkitPunchMapping peer_mapping;
  char             *mapping_ports; /* what the STUN servers saw, for the log */

  /* the birthday punch */
  BirthdayLimits    limits;
  NatkitPunchBirthdayRole birthday;
  GPtrArray        *bday_sockets; /* BirthdaySocket, the hard side */
  GSocketAddress   *bday_target;  /* the hard side: the peer's public address */
  GInetAddress     *bday_ip;      /* the easy side: the peer's public IP */
  guint32          *bday_tried;   /* the easy side: ports probed, a bit each */
  GSource          *bday_timer;
  gint64            bday_start;
  gint64            bday_deadline;
  gint64            bday_round_at;
  gint64            bday_stopped; /* when it stopped sending; 0 while it sends */
  guint             bday_next;
  guint             bday_packets; /* sent by the birthday: probes or sockets' punches */
  GSocket          *winner;
};

static void
birthday_socket_free (gpointer data)
{
  BirthdaySocket *b = data;

  natkit_punch_drop_source (&b->io);
  if (!b->keep)
    g_socket_close (b->socket, NULL);
  g_object_unref (b->socket);
  g_free (b);
}

/* All sockets of the birthday punch but the winner's, closed at once */
static void
birthday_close (Attempt *a)
{
  natkit_punch_drop_source (&a->bday_timer);
  for (guint i = 0; a->bday_sockets != NULL && i < a->bday_sockets->len; i++)
    {
      BirthdaySocket *b = g_ptr_array_index (a->bday_sockets, i);

      natkit_punch_drop_source (&b->io);
      if (b->socket != a->winner)
        g_socket_close (b->socket, NULL);
      else
        b->keep = TRUE;
    }
}

static void
attempt_stop (Attempt *a)
{
  birthday_close (a);
  natkit_punch_drop_source (&a->io);
  natkit_punch_drop_source (&a->gather_timer);
  natkit_punch_drop_source (&a->map_timer);
  natkit_punch_drop_source (&a->stun_resend);
  natkit_punch_drop_source (&a->punch_timer);
  natkit_punch_drop_source (&a->budget);
  natkit_punch_drop_source (&a->cancel);
  if (a->message_id != 0)
    {
      g_signal_handler_disconnect (a->signaling, a->message_id);
      a->message_id = 0;
    }
}

static void
mapping_released_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!natkit_port_mapping_release_finish (NATKIT_PORT_MAPPING (source), result, &error))
    g_debug ("could not release the port mapping of a hole punching socket: %s",
             error->message);
}

/* Gives @mapping back to the gateway (takes it). */
static void
release_mapping (gpointer mapping)
{
  if (mapping == NULL)
    return;
  natkit_port_mapping_release_async (mapping, NULL, mapping_released_cb, NULL);
  g_object_unref (mapping);
}

static void
path_closed_release_cb (NatkitPath   *path,
                        const GError *error,
                        gpointer      user_data)
{
  /* the data's destroy notify releases it */
  g_object_set_data (G_OBJECT (path), "natkit-holepunch-mapping", NULL);
}

static void
attempt_free (gpointer data)
{
  Attempt *a = data;

  attempt_stop (a);
  if (a->map_cancel)
    {
      g_cancellable_cancel (a->map_cancel);
      g_clear_object (&a->map_cancel);
    }
  release_mapping (g_steal_pointer (&a->port_mapping));
  if (a->socket != NULL)
    {
      g_socket_close (a->socket, NULL);
      g_object_unref (a->socket);
    }
  g_clear_object (&a->signaling);
  g_free (a->session_id);
  g_free (a->peer_id);
  g_free (a->buffer);
  g_clear_pointer (&a->local, g_array_unref);
  g_clear_pointer (&a->stun, g_ptr_array_unref);
  g_clear_pointer (&a->targets, g_ptr_array_unref);
  g_free (a->peer_nat);
  g_queue_clear_full (&a->early, early_free);
  g_clear_object (&a->validated);
  g_clear_object (&a->validated_via);
  g_free (a->mapping_ports);
  g_clear_pointer (&a->bday_sockets, g_ptr_array_unref);
  g_clear_object (&a->bday_target);
  g_clear_object (&a->bday_ip);
  g_free (a->bday_tried);
  g_free (a);
}

static gboolean
attempt_done (Attempt *a)
{
  return a->task == NULL || g_task_get_completed (a->task) || a->socket == NULL;
}

/* Ends the attempt with @error (taken). */
static void
attempt_fail (Attempt *a,
              GError  *error)
{
  GTask *task = a->task;

  attempt_stop (a);
  a->task = NULL;
  g_task_return_error (task, error);
  g_object_unref (task);
}

/* How long the birthday punch has been sending (or sent) */
static guint
birthday_ms (Attempt *a)
{
  gint64 end = a->bday_stopped > 0 ? a->bday_stopped : g_get_monotonic_time ();

  return a->bday_start > 0 ? (guint) ((end - a->bday_start) / 1000) : 0;
}

/* What the birthday punch did, for the log and for failure messages */
static char *
birthday_summary (Attempt *a)
{
  if (a->birthday == NATKIT_PUNCH_BIRTHDAY_HARD)
    {
      g_autofree char *to = natkit_punch_describe (a->bday_target);

      return g_strdup_printf ("the hard side (behind the random-port NAT): %u packets from "
                              "%u sockets to %s in %u ms", a->bday_packets,
                              a->bday_sockets ? a->bday_sockets->len : 0, to,
                              birthday_ms (a));
    }
  if (a->birthday == NATKIT_PUNCH_BIRTHDAY_EASY)
    {
      g_autofree char *ip = g_inet_address_to_string (a->bday_ip);

      return g_strdup_printf ("the easy side: %u probes to random ports of %s in %u ms",
                              a->bday_packets, ip, birthday_ms (a));
    }
  return NULL;
}

static gboolean
birthday_probed (Attempt *a,
                 guint16  port)
{
  return a->bday_tried != NULL && (a->bday_tried[port / 32] & (1u << (port % 32))) != 0;
}

/* Whether the path is the birthday punch's doing: a birthday socket's, or
 * a port the easy side probed */
static gboolean
birthday_won (Attempt        *a,
              GSocketAddress *remote,
              GSocket        *via)
{
  GInetSocketAddress *r = G_INET_SOCKET_ADDRESS (remote);

  if (via != NULL)
    return TRUE;
  return a->birthday == NATKIT_PUNCH_BIRTHDAY_EASY &&
         g_inet_address_equal (g_inet_socket_address_get_address (r), a->bday_ip) &&
         birthday_probed (a, g_inet_socket_address_get_port (r));
}

static void
attempt_succeed (Attempt        *a,
                 GSocketAddress *remote,
                 GSocket        *via)
{
  GTask *task = a->task;
  NatkitHolepunchPath *path;
  g_autofree char *local_text = NULL;
  g_autofree char *remote_text = natkit_punch_describe (remote);
  GSocket *socket = via != NULL ? via : a->socket;
  g_autoptr(GSocketAddress) bound = g_socket_get_local_address (socket, NULL);
  const char *origin = "candidate";

  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);

      if (natkit_punch_same_address (t->address, remote) && t->via == via)
        origin = t->origin;
    }
  if (birthday_won (a, remote, via))
    origin = "birthday";
  if (bound != NULL)
    {
      g_autofree char *text = natkit_punch_describe (bound);

      local_text = g_strdup_printf ("%s/udp", text);
    }
  else
    local_text = g_strdup ("?");
  {
    g_autofree char *r = g_strdup_printf ("%s/udp (%s)", remote_text, origin);

    path = g_object_new (NATKIT_TYPE_HOLEPUNCH_PATH,
                         "method", "holepunch",
                         "transport", "udp",
                         "local-address", local_text,
                         "remote-address", r,
                         "mtu", PATH_MTU,
                         NULL);
  }
  if (a->birthday != NATKIT_PUNCH_BIRTHDAY_NONE)
    {
      g_autofree char *summary = birthday_summary (a);

      /* the fixed prefix is for tests/bench/bench_direct.py */
      g_debug ("birthday punch: %s (%s); %s",
               birthday_won (a, remote, via) ? "won" : "not needed, the path came from a candidate",
               origin, summary);
    }
  a->winner = socket;
  attempt_stop (a);
  if (via != NULL)
    {
      /* a birthday socket won: the attempt's own socket goes too */
      path->socket = g_object_ref (via);
      g_socket_close (a->socket, NULL);
    }
  else
    {
      path->socket = g_steal_pointer (&a->socket);
      /* the mapping forwards to this socket: it goes when the path closes
       * (or, at the latest, with the path) */
      if (a->port_mapping)
        {
          g_object_set_data_full (G_OBJECT (path), "natkit-holepunch-mapping",
                                  g_steal_pointer (&a->port_mapping), release_mapping);
          g_signal_connect (path, "closed", G_CALLBACK (path_closed_release_cb), NULL);
        }
    }
  path->remote = g_object_ref (remote);
  path->key = a->key;
  path->role = a->role;
  memcpy (path->secret, a->secret, NATKIT_PUNCH_SECRET_SIZE);
  path->buffer = g_steal_pointer (&a->buffer);
  path->io = g_socket_create_source (path->socket, G_IO_IN, NULL);
  natkit_punch_add_source (path->io, G_SOURCE_FUNC (path_receive_cb), path, "[natkit-holepunch] receive");

  g_debug ("punched a path to %s: %s → %s after %u punch packets%s",
           a->peer_id, local_text, remote_text, a->punches_sent,
           via != NULL ? " (from a birthday socket)" : "");
  a->task = NULL;
  g_task_return_pointer (task, path, g_object_unref);
  g_object_unref (task);
}

/* Returns the new target, or NULL if it was known or there is no room */
static Target *
add_target (Attempt        *a,
            GSocketAddress *address,
            const char     *origin,
            GSocket        *via)
{
  Target *t;

  for (guint i = 0; i < a->targets->len; i++)
    {
      t = g_ptr_array_index (a->targets, i);
      if (natkit_punch_same_address (t->address, address) && t->via == via)
        return NULL;
    }
  if (a->targets->len >= MAX_TARGETS)
    return NULL;
  /* one address family: our socket's */
  if (g_socket_address_get_family (address) != G_SOCKET_FAMILY_IPV4)
    return NULL;
  /* never through a virtual network of ours: the path would carry the
   * tunnel it runs in */
  if (natkit_address_is_virtual (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address))))
    return NULL;
  t = g_new0 (Target, 1);
  t->address = g_object_ref (address);
  t->origin = g_strdup (origin);
  t->via = via != NULL ? g_object_ref (via) : NULL;
  g_ptr_array_add (a->targets, t);
  return t;
}

static void
punch_all (Attempt *a)
{
  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);

      send_punch (t->via != NULL ? t->via : a->socket, t->address, &a->key,
                  NATKIT_PUNCH_PUNCH, a->role, a->secret, NULL);
      a->punches_sent++;
    }
}

static gboolean
punch_timer_cb (gpointer user_data)
{
  Attempt *a = user_data;

  punch_all (a);
  if (++a->rounds == PUNCH_FAST_ROUNDS)
    {
      natkit_punch_drop_source (&a->punch_timer);
      a->punch_timer = natkit_punch_add_source (g_timeout_source_new (PUNCH_SLOW_MS), punch_timer_cb,
                                   a, "[natkit-holepunch] punch");
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static char *
list_targets (Attempt *a)
{
  GString *s = g_string_new (NULL);

  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);
      g_autofree char *text = natkit_punch_describe (t->address);

      g_string_append_printf (s, "%s%s (%s)", i ? ", " : "", text, t->origin);
    }
  return g_string_free (s, FALSE);
}

static gboolean
budget_cb (gpointer user_data)
{
  Attempt *a = user_data;
  g_autofree char *tried = list_targets (a);
  g_autofree char *dropped = NULL;
  g_autofree char *summary = birthday_summary (a);
  g_autofree char *birthday = NULL;
  gboolean heard = FALSE;
  double budget_s = (a->birthday != NATKIT_PUNCH_BIRTHDAY_NONE ?
                     MAX (PUNCH_BUDGET_MS, a->limits.ms) : PUNCH_BUDGET_MS) / 1000.0;

  for (guint i = 0; i < a->targets->len; i++)
    heard |= ((Target *) g_ptr_array_index (a->targets, i))->heard;
  if (a->rejected > 0)
    dropped = g_strdup_printf ("; %u packets that did not authenticate, or that "
                               "answered a punch sent to another address, were "
                               "dropped", a->rejected);
  if (summary != NULL)
    birthday = g_strdup_printf ("; the birthday punch (one NAT picks a random port per "
                                "destination) found no pair, this side being %s (a NAT that "
                                "hands out fewer ports, or drops or limits bursts of new "
                                "mappings, defeats it)", summary);

  g_clear_pointer (&a->budget, g_source_unref);
  if (a->targets->len == 0)
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                                  "the peer %s offered no address this side can "
                                  "send to", a->peer_id));
  else if (!heard)
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                  "no punch packet from the peer got through in %.1f s "
                                  "(%u sent to %s): the NATs on the way do not let "
                                  "the peer's packets in%s%s",
                                  budget_s, a->punches_sent, tried,
                                  dropped ? dropped : "", birthday ? birthday : ""));
  else
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                  "punch packets reached us from the peer but none of "
                                  "ours reached it in %.1f s (%u sent to %s)%s%s",
                                  budget_s, a->punches_sent, tried,
                                  dropped ? dropped : "", birthday ? birthday : ""));
  return G_SOURCE_REMOVE;
}

static void handle_packet (Attempt        *a,
                           GSocket        *via,
                           const guint8   *data,
                           gsize           len,
                           GSocketAddress *from);

/* ---- the birthday punch (docs/protocol.md 7.4) --------------------------- */

static gboolean
birthday_receive_cb (GSocket      *socket,
                     GIOCondition  condition,
                     gpointer      user_data)
{
  BirthdaySocket *b = user_data;
  Attempt *a = b->attempt;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */
  g_autoptr(GSocket) via = g_object_ref (b->socket);

  for (guint n = 0; n < 8 && !attempt_done (a); n++)
    {
      g_autoptr(GSocketAddress) from = NULL;
      g_autoptr(GError) error = NULL;
      gssize len = g_socket_receive_from (via, &from, (char *) a->buffer, 65536,
                                          NULL, &error);

      if (len < 0)
        {
          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            break;
          continue;   /* ICMP errors */
        }
      if (from == NULL || !G_IS_INET_SOCKET_ADDRESS (from))
        continue;
      handle_packet (a, via, a->buffer, len, from);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
birthday_tick_cb (gpointer user_data)
{
  Attempt *a = user_data;
  gint64 now = g_get_monotonic_time ();
  guint quota = MAX (1, a->limits.rate * BIRTHDAY_TICK_MS / 1000);

  if (now >= a->bday_deadline)
    {
      g_autofree char *summary = NULL;

      a->bday_stopped = now;
      summary = birthday_summary (a);
      g_debug ("birthday punch: out of time, %s", summary);
      g_clear_pointer (&a->bday_timer, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  if (a->birthday == NATKIT_PUNCH_BIRTHDAY_HARD)
    {
      /* every socket punches the peer's public address, then again
       * every BIRTHDAY_RESEND_MS in case the first was lost */
      while (quota > 0)
        {
          BirthdaySocket *b;

          if (a->bday_next >= a->bday_sockets->len)
            {
              if (now < a->bday_round_at)
                break;
              a->bday_next = 0;
              a->bday_round_at = now + BIRTHDAY_RESEND_MS * G_TIME_SPAN_MILLISECOND;
            }
          b = g_ptr_array_index (a->bday_sockets, a->bday_next++);
          send_punch (b->socket, a->bday_target, &a->key, NATKIT_PUNCH_PUNCH, a->role,
                      a->secret, NULL);
          a->bday_packets++;
          quota--;
        }
      return G_SOURCE_CONTINUE;
    }

  /* the easy side: each probe to a port not tried yet */
  for (; quota > 0 && a->bday_packets < a->limits.probes; quota--)
    {
      g_autoptr(GSocketAddress) to = NULL;
      guint16 port;

      do
        port = (guint16) g_random_int_range (BIRTHDAY_PORT_MIN, 65536);
      while (birthday_probed (a, port));
      a->bday_tried[port / 32] |= 1u << (port % 32);
      to = g_inet_socket_address_new (a->bday_ip, port);
      send_punch (a->socket, to, &a->key, NATKIT_PUNCH_PUNCH, a->role, a->secret, NULL);
      a->bday_packets++;
    }
  if (a->bday_packets >= a->limits.probes)
    {
      g_autofree char *summary = NULL;

      a->bday_stopped = now;
      summary = birthday_summary (a);
      g_debug ("birthday punch: every probe sent, %s; answers still count", summary);
      g_clear_pointer (&a->bday_timer, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

/* How many sockets we may open without starving the rest of the process
 * of file descriptors */
static guint
birthday_socket_room (guint wanted)
{
  struct rlimit limit;

  if (getrlimit (RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
    return wanted;
  if (limit.rlim_cur <= 128)
    return 0;
  return MIN (wanted, (guint) MIN (limit.rlim_cur - 128, G_MAXUINT));
}

static GSocketAddress *
peer_srflx (Attempt *a)
{
  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);

      if (t->via == NULL && g_strcmp0 (t->origin, "srflx") == 0)
        return t->address;
    }
  return NULL;
}

static void
birthday_start (Attempt *a)
{
  GSocketAddress *srflx = peer_srflx (a);
  g_autofree char *to = NULL;
  gint64 now = g_get_monotonic_time ();

  if (a->birthday != NATKIT_PUNCH_BIRTHDAY_HARD && a->birthday != NATKIT_PUNCH_BIRTHDAY_EASY)
    return;
  if (a->limits.sockets == 0 || a->limits.probes == 0)
    {
      g_debug ("birthday punch: turned off (NATKIT_HOLEPUNCH_BIRTHDAY_SOCKETS or _PROBES is 0)");
      a->birthday = NATKIT_PUNCH_BIRTHDAY_NONE;
      return;
    }
  if (srflx == NULL)
    {
      g_debug ("birthday punch: the peer offered no STUN address to aim at");
      a->birthday = NATKIT_PUNCH_BIRTHDAY_NONE;
      return;
    }
  to = natkit_punch_describe (srflx);

  if (a->birthday == NATKIT_PUNCH_BIRTHDAY_HARD)
    {
      g_autoptr(GInetAddress) any = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
      g_autoptr(GSocketAddress) bind_to = g_inet_socket_address_new (any, 0);
      guint room = birthday_socket_room (a->limits.sockets);

      a->bday_sockets = g_ptr_array_new_with_free_func (birthday_socket_free);
      for (guint i = 0; i < room; i++)
        {
          g_autoptr(GError) error = NULL;
          g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                                                    G_SOCKET_PROTOCOL_UDP, &error);
          BirthdaySocket *b;

          if (socket == NULL || !g_socket_bind (socket, bind_to, FALSE, &error))
            {
              g_debug ("birthday punch: could open %u sockets of %u: %s",
                       a->bday_sockets->len, a->limits.sockets, error->message);
              if (socket != NULL)
                g_socket_close (socket, NULL);
              break;
            }
          g_socket_set_blocking (socket, FALSE);
          b = g_new0 (BirthdaySocket, 1);
          b->attempt = a;
          b->socket = g_steal_pointer (&socket);
          b->io = g_socket_create_source (b->socket, G_IO_IN, NULL);
          natkit_punch_add_source (b->io, G_SOURCE_FUNC (birthday_receive_cb), b,
                      "[natkit-holepunch] birthday receive");
          g_ptr_array_add (a->bday_sockets, b);
        }
      if (a->bday_sockets->len == 0)
        {
          a->birthday = NATKIT_PUNCH_BIRTHDAY_NONE;
          return;
        }
      a->bday_target = g_object_ref (srflx);
      g_debug ("birthday punch: our NAT picks a random port per destination, the peer's "
               "does not: %u sockets punch %s, %u packets/s at most, for %u ms",
               a->bday_sockets->len, to, a->limits.rate, a->limits.ms);
    }
  else
    {
      g_autofree char *ip = NULL;

      a->bday_ip = g_object_ref (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (srflx)));
      a->bday_tried = g_new0 (guint32, 65536 / 32);
      ip = g_inet_address_to_string (a->bday_ip);
      g_debug ("birthday punch: the peer's NAT picks a random port per destination, ours "
               "does not: up to %u probes to random ports of %s, %u/s, for %u ms",
               a->limits.probes, ip, a->limits.rate, a->limits.ms);
    }
  a->bday_start = now;
  a->bday_deadline = now + (gint64) a->limits.ms * G_TIME_SPAN_MILLISECOND;
  a->bday_round_at = now + BIRTHDAY_RESEND_MS * G_TIME_SPAN_MILLISECOND;
  a->bday_timer = natkit_punch_add_source (g_timeout_source_new (BIRTHDAY_TICK_MS), birthday_tick_cb, a,
                              "[natkit-holepunch] birthday");
  birthday_tick_cb (a);
}

/* Whether we, or the peer, offered a gateway's port mapping */
static gboolean
has_mapped_candidate (Attempt *a)
{
  if (a->port_mapping != NULL)
    return TRUE;
  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);

      if (g_strcmp0 (t->origin, "mapped") == 0)
        return TRUE;
    }
  return FALSE;
}

/* Both offers known: punch. */
static void
start_punching (Attempt *a)
{
  guint budget_ms = PUNCH_BUDGET_MS;

  if (!a->gathered || !a->have_peer || a->punch_timer != NULL || attempt_done (a))
    return;

  a->birthday = natkit_punch_birthday_role (&a->mapping, &a->peer_mapping);
  /* a gateway's port mapping on either side does not care how the NAT
   * picks ports for other flows: punch to it */
  if (a->birthday == NATKIT_PUNCH_BIRTHDAY_HOPELESS && has_mapped_candidate (a))
    {
      g_debug ("both NATs pick random ports, but a port mapping was offered: punching to it");
      a->birthday = NATKIT_PUNCH_BIRTHDAY_NONE;
    }
  if (a->birthday == NATKIT_PUNCH_BIRTHDAY_HOPELESS)
    {
      attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                                    "both peers are behind NATs that pick a new random "
                                    "port for every destination (symmetric: our one socket "
                                    "got %s; the peer's offer says the same of its NAT): "
                                    "hole punching cannot work; the relay carries the "
                                    "connection",
                                    a->mapping_ports ? a->mapping_ports : "different ports"));
      return;
    }

  {
    g_autofree char *tried = list_targets (a);

    g_debug ("punching towards %s: %s", a->peer_id, tried);
  }
  punch_all (a);
  a->rounds = 1;
  a->punch_timer = natkit_punch_add_source (g_timeout_source_new (PUNCH_FAST_MS), punch_timer_cb, a,
                               "[natkit-holepunch] punch");
  birthday_start (a);
  if (a->birthday != NATKIT_PUNCH_BIRTHDAY_NONE)
    budget_ms = MAX (budget_ms, a->limits.ms);
  a->budget = natkit_punch_add_source (g_timeout_source_new (budget_ms), budget_cb, a,
                          "[natkit-holepunch] budget");

  /* what came before the peer's offer could not be checked until now */
  while (!g_queue_is_empty (&a->early) && !attempt_done (a))
    {
      Early *e = g_queue_pop_head (&a->early);

      handle_packet (a, NULL, e->data, e->len, e->from);
      early_free (e);
    }
}

/* Whether @punch answers what we sent to @from (not a copy of an answer
 * to another address, replayed from there). */
static gboolean
echoes_ours (Attempt           *a,
             const NatkitPunch *punch,
             GSocketAddress    *from)
{
  guint8 expected[NATKIT_PUNCH_NONCE_SIZE];

  natkit_punch_nonce_for (a->secret, G_INET_SOCKET_ADDRESS (from), expected);
  return memcmp (punch->echo, expected, NATKIT_PUNCH_NONCE_SIZE) == 0;
}

static void
handle_packet (Attempt        *a,
               GSocket        *via,
               const guint8   *data,
               gsize           len,
               GSocketAddress *from)
{
  NatkitPunch punch;
  g_autoptr(GError) error = NULL;
  GSocket *socket = via != NULL ? via : a->socket;

  if (!a->have_peer)
    {
      Early *e;

      if (a->early.length >= MAX_EARLY || len > 64)
        return;
      e = g_new0 (Early, 1);
      e->data = g_memdup2 (data, len);
      e->len = len;
      e->from = g_object_ref (from);
      g_queue_push_tail (&a->early, e);
      return;
    }

  if (!natkit_punch_looks_like (data, len))
    {
      /* the responder: the initiator's secure handshake on a pair that
       * answered means our CONFIRM was lost; the pair is the path */
      if (a->role == 1 && a->validated != NULL && natkit_punch_same_address (from, a->validated) &&
          via == a->validated_via && len > 0 && data[0] >= 20 && data[0] <= 63)
        {
          g_autoptr(GSocketAddress) remote = g_object_ref (a->validated);

          g_debug ("a DTLS record from %s before its CONFIRM: taking the pair", a->peer_id);
          attempt_succeed (a, remote, via);
          /* the record is lost; DTLS resends its first flight */
        }
      return;
    }
  if (!natkit_punch_parse (&a->key, data, len, &punch, &error))
    {
      g_autofree char *text = natkit_punch_describe (from);

      a->rejected++;
      g_debug ("dropping a packet from %s: %s", text, error->message);
      return;
    }
  if (punch.sender_role == a->role)
    {
      a->rejected++;   /* our own packet, reflected */
      return;
    }

  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);

      if (natkit_punch_same_address (t->address, from))
        t->heard = TRUE;
    }

  switch (punch.type)
    {
    case NATKIT_PUNCH_PUNCH:
      /* answer where it came from: the peer's NAT may have given it a
       * port for us alone (peer-reflexive), then punch there too, at once
       * (the initiator needs an ACK to a punch of its own) */
      send_punch (socket, from, &a->key, NATKIT_PUNCH_ACK, a->role, a->secret,
                  punch.nonce);
      {
        Target *t = add_target (a, from, via != NULL ? "birthday" : "peer-reflexive", via);

        if (t != NULL)
          {
            t->heard = TRUE;
            send_punch (socket, from, &a->key, NATKIT_PUNCH_PUNCH, a->role, a->secret, NULL);
            a->punches_sent++;
          }
      }
      break;

    case NATKIT_PUNCH_ACK:
      if (!echoes_ours (a, &punch, from))
        {
          a->rejected++;
          return;
        }
      if (a->role == 0)
        {
          /* the pair works both ways: it is the path */
          send_punch (socket, from, &a->key, NATKIT_PUNCH_CONFIRM, a->role, a->secret,
                      punch.nonce);
          attempt_succeed (a, from, via);
        }
      else if (a->validated == NULL)
        {
          a->validated = g_object_ref (from);
          a->validated_via = via != NULL ? g_object_ref (via) : NULL;
        }
      break;

    case NATKIT_PUNCH_CONFIRM:
      if (a->role == 1 && echoes_ours (a, &punch, from))
        attempt_succeed (a, from, via);
      else
        a->rejected++;
      break;
    }
}

/* ---- STUN: what the world sees of our socket ---------------------------- */

static gboolean gather_timer_cb (gpointer user_data);

static void
add_local (Attempt                  *a,
           NatkitPunchCandidateType  type,
           GInetSocketAddress       *address)
{
  NatkitPunchCandidate c;

  for (guint i = 0; i < a->local->len; i++)
    if (natkit_punch_same_address (G_SOCKET_ADDRESS (g_array_index (a->local, NatkitPunchCandidate, i).address),
                      G_SOCKET_ADDRESS (address)))
      return;
  if (a->local->len >= NATKIT_PUNCH_MAX_CANDIDATES)
    return;
  c.type = type;
  c.address = g_object_ref (address);
  g_array_append_val (a->local, c);
}

static void
offer_sent_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  g_autoptr(GError) error = NULL;
  Attempt *a = g_task_get_task_data (task);

  if (natkit_signaling_send_finish (NATKIT_SIGNALING (source), result, &error))
    return;
  g_debug ("could not send the hole punching offer: %s", error->message);
  /* the peer cannot punch towards candidates it never got: no use
   * waiting for the time limit */
  if (a->task == task && !attempt_done (a))
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                  "could not send our candidates to the peer: %s",
                                  error->message));
}

static void gather_done (Attempt *a);

static void
mapped_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Attempt *a = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping =
    natkit_traversal_request_map_port_finish (NATKIT_TRAVERSAL_REQUEST (source), result, &error);

  if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    return;
  g_clear_object (&a->map_cancel);
  if (mapping == NULL)
    g_debug ("no port mapping for hole punching: %s", error->message);
  else if (a->task != task || attempt_done (a) || a->gathered)
    release_mapping (g_steal_pointer (&mapping));   /* too late */
  else
    {
      g_autoptr(GInetAddress) ip =
        g_inet_address_new_from_string (natkit_port_mapping_get_external_address (mapping) ?
                                        natkit_port_mapping_get_external_address (mapping) : "");
      g_autoptr(GSocketAddress) ext = ip ?
        g_inet_socket_address_new (ip, natkit_port_mapping_get_external_port (mapping)) : NULL;

      g_debug ("the gateway (%s) maps %s:%u to our port %u",
               natkit_port_mapping_get_method (mapping),
               natkit_port_mapping_get_external_address (mapping),
               natkit_port_mapping_get_external_port (mapping), a->port);
      if (ext)
        add_local (a, NATKIT_PUNCH_CANDIDATE_MAPPED, G_INET_SOCKET_ADDRESS (ext));
      a->port_mapping = g_steal_pointer (&mapping);
    }
  if (a->task == task && a->gather_waits)
    gather_done (a);
}

static gboolean
map_timer_cb (gpointer user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  g_clear_pointer (&a->map_timer, g_source_unref);
  if (a->map_cancel)
    {
      g_debug ("the gateway did not map a port within %u ms: offering without one",
               MAP_WAIT_MS);
      g_cancellable_cancel (a->map_cancel);
      g_clear_object (&a->map_cancel);
    }
  if (a->gather_waits)
    gather_done (a);
  return G_SOURCE_REMOVE;
}

/* Whether to ask the gateway for a mapping: only when this machine's NAT
 * detection found one that offers a port mapping protocol (asking a
 * gateway that does not answer would hold the offer back for nothing) */
static gboolean
worth_mapping (NatkitTraversalRequest *request)
{
  NatkitNatInfo *info = natkit_traversal_request_get_local_nat_info (request);
  const char * const *services = info ? natkit_nat_info_get_gateway_services (info) : NULL;

  return services != NULL && services[0] != NULL;
}

static void
gather_done (Attempt *a)
{
  g_autofree char *offer = NULL;

  guint16 ports[MAX_STUN_SERVERS];
  guint n_ports = 0;
  GString *seen = g_string_new (NULL);

  if (a->gathered || attempt_done (a))
    {
      g_string_free (seen, TRUE);
      return;
    }
  if (a->map_cancel != NULL)
    {
      /* the gateway's answer is worth waiting for, a little (map_timer) */
      a->gather_waits = TRUE;
      g_string_free (seen, TRUE);
      return;
    }
  a->gathered = TRUE;
  natkit_punch_drop_source (&a->map_timer);
  natkit_punch_drop_source (&a->gather_timer);
  natkit_punch_drop_source (&a->stun_resend);

  /* the mapped ports in the order the NAT handed them out: the order our
   * first requests left */
  for (guint order = 1; order <= a->stun_sends; order++)
    for (guint i = 0; i < a->stun->len; i++)
      {
        StunServer *s = g_ptr_array_index (a->stun, i);

        if (s->order == order && s->answered && n_ports < G_N_ELEMENTS (ports))
          {
            ports[n_ports++] = s->mapped_port;
            g_string_append_printf (seen, "%sport %u towards %s", seen->len ? ", " : "",
                                    s->mapped_port, s->name);
          }
      }
  natkit_punch_mapping_classify (ports, n_ports, &a->mapping);
  a->mapping_ports = g_string_free (seen, FALSE);
  if (a->mapping.kind == NATKIT_PUNCH_MAPPING_SEQUENTIAL)
    g_debug ("our NAT's mapping: sequential, step %d (%s)", a->mapping.step, a->mapping_ports);
  else if (n_ports >= 2)
    g_debug ("our NAT's mapping: %s (%s)",
             natkit_punch_mapping_to_string (a->mapping.kind), a->mapping_ports);
  else
    g_debug ("our NAT's mapping: unknown (%u STUN answers; it takes two servers)", n_ports);

  offer = natkit_punch_offer_build (a->session_id, a->token,
                                    (NatkitPunchCandidate *) a->local->data,
                                    a->local->len, NULL, &a->mapping);
  g_debug ("sending %u candidates to %s", a->local->len, a->peer_id);
  natkit_signaling_send_async (a->signaling, a->peer_id, offer, NULL, offer_sent_cb,
                               g_object_ref (a->task));
  a->offer_sent = TRUE;
  start_punching (a);
}

static void
handle_stun (Attempt        *a,
             const guint8   *data,
             gsize           len,
             GSocketAddress *from)
{
  for (guint i = 0; i < a->stun->len; i++)
    {
      StunServer *s = g_ptr_array_index (a->stun, i);
      StunMessage response;
      struct sockaddr_storage mapped, alternate;
      socklen_t mapped_len = sizeof mapped, alternate_len = sizeof alternate;
      g_autoptr(GSocketAddress) address = NULL;

      if (s->address == NULL || s->request_len == 0 || !natkit_punch_same_address (from, s->address))
        continue;
      if (stun_agent_validate (&s->agent, &response, data, len, NULL, NULL) !=
          STUN_VALIDATION_SUCCESS)
        return;
      if (stun_usage_bind_process (&response, (struct sockaddr *) &mapped, &mapped_len,
                                   (struct sockaddr *) &alternate, &alternate_len) !=
          STUN_USAGE_BIND_RETURN_SUCCESS)
        return;
      address = g_socket_address_new_from_native (&mapped, mapped_len);
      if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address))
        return;
      s->request_len = 0;   /* answered */
      s->answered = TRUE;
      s->mapped_port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (address));
      {
        g_autofree char *text = natkit_punch_describe (address);

        g_debug ("STUN server %s sees us as %s", s->name, text);
      }
      /* the first answer is the candidate: a second server could only add
       * a port a symmetric NAT would not reuse for the peer anyway; but
       * the second's port tells how the NAT maps */
      {
        guint answered = 0, expected = 0;

        for (guint j = 0; j < a->stun->len; j++)
          {
            StunServer *other = g_ptr_array_index (a->stun, j);

            answered += other->answered;
            expected += other->address != NULL && !other->duplicate;
          }
        expected += a->stun_resolving;
        if (answered == 1)
          add_local (a, NATKIT_PUNCH_CANDIDATE_SRFLX, G_INET_SOCKET_ADDRESS (address));
        if (answered >= 2 || answered >= expected)
          gather_done (a);
        else if (answered == 1)
          {
            natkit_punch_drop_source (&a->gather_timer);
            a->gather_timer = natkit_punch_add_source (g_timeout_source_new (SECOND_STUN_MS),
                                          gather_timer_cb, a, "[natkit-holepunch] gather");
          }
      }
      return;
    }
}

static gboolean
attempt_receive_cb (GSocket      *socket,
                    GIOCondition  condition,
                    gpointer      user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  for (guint n = 0; n < 32 && !attempt_done (a); n++)
    {
      g_autoptr(GSocketAddress) from = NULL;
      g_autoptr(GError) error = NULL;
      gssize len = g_socket_receive_from (socket, &from, (char *) a->buffer, 65536,
                                          NULL, &error);

      if (len < 0)
        {
          if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
            break;
          continue;   /* ICMP errors from punches to dead candidates */
        }
      if (from == NULL || !G_IS_INET_SOCKET_ADDRESS (from))
        continue;
      if (len >= 20 && a->buffer[0] < 2 && !a->gathered)
        handle_stun (a, a->buffer, len, from);
      else
        handle_packet (a, NULL, a->buffer, len, from);
    }
  return G_SOURCE_CONTINUE;
}

static void
send_stun (Attempt *a)
{
  for (guint i = 0; i < a->stun->len; i++)
    {
      StunServer *s = g_ptr_array_index (a->stun, i);

      if (s->address != NULL && s->request_len > 0)
        {
          if (s->order == 0)
            s->order = ++a->stun_sends;
          g_socket_send_to (a->socket, s->address, (const char *) s->request,
                            s->request_len, NULL, NULL);
        }
    }
}

static gboolean
stun_resend_cb (gpointer user_data)
{
  send_stun (user_data);
  return G_SOURCE_CONTINUE;
}

static gboolean
gather_timer_cb (gpointer user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  g_clear_pointer (&a->gather_timer, g_source_unref);
  g_debug ("not every STUN server answered in time: offering what we have");
  gather_done (a);
  return G_SOURCE_REMOVE;
}

static void
stun_prepare (Attempt        *a,
              StunServer     *s,
              GSocketAddress *address)
{
  static const uint16_t known[] = {
    STUN_ATTRIBUTE_MAPPED_ADDRESS, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
    STUN_ATTRIBUTE_FINGERPRINT, STUN_ATTRIBUTE_SOFTWARE, 0
  };

  /* the same server twice (natkit-server's port also in config.json)
   * would make any NAT look endpoint-independent */
  for (guint i = 0; i < a->stun->len; i++)
    {
      StunServer *other = g_ptr_array_index (a->stun, i);

      if (other != s && other->address != NULL && natkit_punch_same_address (other->address, address))
        {
          s->duplicate = TRUE;
          return;
        }
    }
  s->address = g_object_ref (address);
  stun_agent_init (&s->agent, known, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_USE_FINGERPRINT);
  s->request_len = stun_usage_bind_create (&s->agent, &s->message, s->request,
                                           sizeof s->request);
}

/* ---- the traversal ------------------------------------------------------ */

struct _NatkitHolepunch
{
  GObject        parent_instance;
  BirthdayLimits limits;
};

static void natkit_holepunch_traversal_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitHolepunch, natkit_holepunch, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      natkit_holepunch_traversal_init))

static NatkitCost
natkit_holepunch_get_cost (NatkitTraversal *traversal)
{
  return NATKIT_COST_DIRECT;
}

static gboolean
natkit_holepunch_applies (NatkitTraversal         *traversal,
                          NatkitTraversalRequest  *request,
                          GError                 **error)
{
  if (natkit_traversal_request_get_signaling (request) == NULL ||
      natkit_traversal_request_get_session_id (request) == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "hole punching needs a signaling channel to the peer "
                           "to exchange addresses over");
      return FALSE;
    }
  /* what the NAT detections on both sides found (docs/connections.md):
   * no UDP on either side, no UDP hole punching */
  for (guint i = 0; i < 2; i++)
    {
      NatkitNatInfo *info = i == 0 ? natkit_traversal_request_get_local_nat_info (request)
                                   : natkit_traversal_request_get_remote_nat_info (request);
      const char *who = i == 0 ? natkit_traversal_request_get_local_peer_id (request)
                               : natkit_traversal_request_get_remote_peer_id (request);

      if (info && natkit_nat_info_get_nat_type (info) == NATKIT_NAT_TYPE_UDP_BLOCKED)
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                       "the network of %.8s… blocks UDP (its NAT detection got no UDP "
                       "answer), so UDP hole punching cannot work there",
                       who ? who : "?");
          return FALSE;
        }
    }
  return TRUE;
}

/* A peer behind a sequential NAT: the next ports its NAT will most likely
 * hand out, at its public address, are punched too (the first of its own
 * punches to us leave from one of them) */
static void
predict_targets (Attempt *a)
{
  GSocketAddress *srflx = peer_srflx (a);
  guint16 ports[NATKIT_PUNCH_MAX_PREDICTED];
  guint n = natkit_punch_predict_ports (&a->peer_mapping, PREDICT_PORTS, ports);
  GInetAddress *ip;

  if (srflx == NULL || n == 0)
    return;
  ip = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (srflx));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GSocketAddress) address = g_inet_socket_address_new (ip, ports[i]);

      add_target (a, address, "predicted", NULL);
    }
  g_debug ("the peer's NAT maps sequentially (step %d after port %u): punching %u "
           "predicted ports too", a->peer_mapping.step, a->peer_mapping.last_port, n);
}

static void
message_cb (NatkitSignaling *signaling,
            const char      *from,
            const char      *text,
            gpointer         user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */
  g_autofree char *session = NULL;
  g_autoptr(GArray) candidates = NULL;
  g_autoptr(GError) error = NULL;
  guint8 token[NATKIT_PUNCH_TOKEN_SIZE];
  NatkitPunchMapping mapping;

  if (g_strcmp0 (from, a->peer_id) != 0 || strstr (text, "\"holepunch\"") == NULL)
    return;
  if (!natkit_punch_offer_parse (text, &session, token, &candidates, NULL, &mapping, &error))
    {
      g_debug ("ignoring a hole punching offer from %s: %s", from, error->message);
      return;
    }
  if (g_strcmp0 (session, a->session_id) != 0)
    return;
  if (a->have_peer)
    {
      g_debug ("ignoring a second hole punching offer from %s", from);
      return;
    }

  a->have_peer = TRUE;
  a->peer_mapping = mapping;
  if (a->role == 0)
    natkit_punch_key_derive (&a->key, a->session_id, a->token, token);
  else
    natkit_punch_key_derive (&a->key, a->session_id, token, a->token);
  for (guint i = 0; i < candidates->len; i++)
    {
      NatkitPunchCandidate *c = &g_array_index (candidates, NatkitPunchCandidate, i);

      add_target (a, G_SOCKET_ADDRESS (c->address),
                  natkit_punch_candidate_type_to_string (c->type), NULL);
    }
  g_debug ("%s offered %u candidates, its NAT's mapping %s", from, candidates->len,
           natkit_punch_mapping_to_string (mapping.kind));
  predict_targets (a);
  start_punching (a);
}

static void
host_candidates (Attempt *a)
{
  struct ifaddrs *list = NULL;

  if (getifaddrs (&list) != 0)
    return;
  for (struct ifaddrs *i = list; i != NULL; i = i->ifa_next)
    {
      g_autoptr(GInetAddress) ip = NULL;
      g_autoptr(GSocketAddress) address = NULL;

      if (i->ifa_addr == NULL || i->ifa_addr->sa_family != AF_INET ||
          !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
        continue;
      ip = g_inet_address_new_from_bytes ((const guint8 *) &((struct sockaddr_in *) i->ifa_addr)->sin_addr,
                                          G_SOCKET_FAMILY_IPV4);
      /* a virtual network's address would put the path inside the tunnel
       * it carries */
      if (g_inet_address_get_is_link_local (ip) || natkit_address_is_virtual (ip))
        continue;
      address = g_inet_socket_address_new (ip, a->port);
      add_local (a, NATKIT_PUNCH_CANDIDATE_HOST, G_INET_SOCKET_ADDRESS (address));
    }
  freeifaddrs (list);
}

static gboolean
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  Attempt *a = user_data;

  g_clear_pointer (&a->cancel, g_source_unref);
  if (!attempt_done (a))
    attempt_fail (a, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "hole punching was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
stun_resolved_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data);

/* "plugins": {"holepunch": {"settings": {"birthday-sockets": N, …}}}
 * override the defaults and the environment; a value out of range is
 * warned about and ignored */
static void
limit_from_config (NatkitConfig *config,
                   const char   *key,
                   guint        *limit,
                   guint         min,
                   guint         max)
{
  GVariant *v = config ? natkit_config_get_plugin_setting (config, "holepunch", key) : NULL;

  if (v == NULL)
    return;
  if (!g_variant_is_of_type (v, G_VARIANT_TYPE_INT64) ||
      g_variant_get_int64 (v) < min || g_variant_get_int64 (v) > max)
    {
      g_warning ("plugins.holepunch.settings.%s must be a whole number from %u to %u; "
                 "using %u", key, min, max, *limit);
      return;
    }
  *limit = (guint) g_variant_get_int64 (v);
}

static void
limits_from_config (BirthdayLimits        *limits,
                    NatkitConfig          *config)
{
  limit_from_config (config, "birthday-sockets", &limits->sockets, 0, 1024);
  limit_from_config (config, "birthday-probes", &limits->probes, 0,
                     (65536 - BIRTHDAY_PORT_MIN) / 2);
  limit_from_config (config, "birthday-rate", &limits->rate, 100, 100000);
  limit_from_config (config, "birthday-ms", &limits->ms, 100, 60000);
}

static void
natkit_holepunch_open_path_async (NatkitTraversal        *traversal,
                                  NatkitTraversalRequest *request,
                                  GCancellable           *cancellable,
                                  GAsyncReadyCallback     callback,
                                  gpointer                user_data)
{
  GTask *task = g_task_new (traversal, cancellable, callback, user_data);
  g_autoptr(GError) error = NULL;
  g_autoptr(GInetAddress) any = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) bind_to = g_inet_socket_address_new (any, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  const char * const *servers = natkit_traversal_request_get_stun_servers (request);
  Attempt *a;

  g_task_set_source_tag (task, natkit_holepunch_open_path_async);
  a = g_new0 (Attempt, 1);
  a->task = task;
  a->limits = NATKIT_HOLEPUNCH (traversal)->limits;
  limits_from_config (&a->limits, natkit_traversal_request_get_config (request));
  g_task_set_task_data (task, a, attempt_free);
  a->signaling = g_object_ref (natkit_traversal_request_get_signaling (request));
  a->session_id = g_strdup (natkit_traversal_request_get_session_id (request));
  a->peer_id = g_strdup (natkit_traversal_request_get_remote_peer_id (request));
  a->role = natkit_traversal_request_get_role (request) == NATKIT_ROLE_INITIATOR ? 0 : 1;
  a->buffer = g_malloc (65536);
  a->local = g_array_new (FALSE, TRUE, sizeof (NatkitPunchCandidate));
  g_array_set_clear_func (a->local, (GDestroyNotify) natkit_punch_candidate_clear);
  a->stun = g_ptr_array_new_with_free_func (stun_server_free);
  a->targets = g_ptr_array_new_with_free_func (target_free);
  g_queue_init (&a->early);
  g_random_set_seed (g_random_int ());
  for (guint i = 0; i < NATKIT_PUNCH_TOKEN_SIZE; i += 4)
    {
      guint32 r = g_random_int ();
      memcpy (a->token + i, &r, 4);
    }
  for (guint i = 0; i < NATKIT_PUNCH_SECRET_SIZE; i += 4)
    {
      guint32 r = g_random_int ();
      memcpy (a->secret + i, &r, 4);
    }

  a->socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                            G_SOCKET_PROTOCOL_UDP, &error);
  if (a->socket == NULL || !g_socket_bind (a->socket, bind_to, FALSE, &error) ||
      (bound = g_socket_get_local_address (a->socket, &error)) == NULL)
    {
      attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                    "Could not open a UDP socket for hole punching: %s",
                                    error->message));
      return;
    }
  g_socket_set_blocking (a->socket, FALSE);
  g_socket_set_option (a->socket, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER, NULL);
  g_socket_set_option (a->socket, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER, NULL);
  a->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  a->io = g_socket_create_source (a->socket, G_IO_IN, NULL);
  natkit_punch_add_source (a->io, G_SOURCE_FUNC (attempt_receive_cb), a, "[natkit-holepunch] receive");
  if (cancellable != NULL)
    a->cancel = natkit_punch_add_source (g_cancellable_source_new (cancellable),
                            G_SOURCE_FUNC (cancelled_cb), a, "[natkit-holepunch] cancel");

  /* listen before anything goes out: the peer's offer may come quickly */
  a->message_id = g_signal_connect (a->signaling, "message-received",
                                    G_CALLBACK (message_cb), a);

  host_candidates (a);
  if (worth_mapping (request))
    {
      a->map_cancel = g_cancellable_new ();
      natkit_traversal_request_map_port_async (request, NATKIT_IP_PROTOCOL_UDP, a->port,
                                               a->map_cancel, mapped_cb, g_object_ref (task));
      a->map_timer = natkit_punch_add_source (g_timeout_source_new (MAP_WAIT_MS), map_timer_cb, a,
                                 "[natkit-holepunch] mapping");
    }
  for (guint i = 0; servers != NULL && servers[i] != NULL && a->stun->len < MAX_STUN_SERVERS; i++)
    {
      g_autoptr(GSocketConnectable) connectable =
        g_network_address_parse (servers[i], 3478, NULL);
      StunServer *s;
      const char *host;
      g_autoptr(GInetAddress) ip = NULL;

      if (connectable == NULL)
        continue;
      s = g_new0 (StunServer, 1);
      s->name = g_strdup (servers[i]);
      g_ptr_array_add (a->stun, s);
      host = g_network_address_get_hostname (G_NETWORK_ADDRESS (connectable));
      ip = g_inet_address_new_from_string (host);
      if (ip != NULL)
        {
          g_autoptr(GSocketAddress) address =
            g_inet_socket_address_new (ip, g_network_address_get_port (G_NETWORK_ADDRESS (connectable)));

          if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV4)
            stun_prepare (a, s, address);
        }
      else
        {
          GResolver *resolver = g_resolver_get_default ();

          a->stun_resolving++;
          g_resolver_lookup_by_name_with_flags_async (resolver, host,
                                                      G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY,
                                                      cancellable, stun_resolved_cb,
                                                      g_object_ref (task));
          g_object_unref (resolver);
        }
    }

  if (a->stun->len == 0)
    {
      gather_done (a);
      return;
    }
  send_stun (a);
  a->stun_resend = natkit_punch_add_source (g_timeout_source_new (STUN_RESEND_MS), stun_resend_cb, a,
                               "[natkit-holepunch] STUN resend");
  a->gather_timer = natkit_punch_add_source (g_timeout_source_new (GATHER_MS), gather_timer_cb, a,
                                "[natkit-holepunch] gather");
}

static void
stun_resolved_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Attempt *a = g_task_get_task_data (task);
  GList *addresses = g_resolver_lookup_by_name_with_flags_finish (G_RESOLVER (source),
                                                                  result, NULL);

  a->stun_resolving--;

  if (addresses != NULL && !attempt_done (a) && !a->gathered)
    {
      for (guint i = 0; i < a->stun->len; i++)
        {
          StunServer *s = g_ptr_array_index (a->stun, i);
          g_autoptr(GSocketConnectable) c = NULL;

          if (s->address != NULL || s->duplicate)
            continue;
          c = g_network_address_parse (s->name, 3478, NULL);
          if (c == NULL)
            continue;
          {
            g_autoptr(GSocketAddress) address =
              g_inet_socket_address_new (addresses->data,
                                         g_network_address_get_port (G_NETWORK_ADDRESS (c)));

            stun_prepare (a, s, address);
            send_stun (a);
          }
          break;
        }
    }
  g_resolver_free_addresses (addresses);
}

static NatkitPath *
natkit_holepunch_open_path_finish (NatkitTraversal  *traversal,
                                   GAsyncResult     *result,
                                   GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
natkit_holepunch_traversal_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = natkit_holepunch_get_cost;
  iface->applies = natkit_holepunch_applies;
  iface->open_path_async = natkit_holepunch_open_path_async;
  iface->open_path_finish = natkit_holepunch_open_path_finish;
}

static void
natkit_holepunch_class_init (NatkitHolepunchClass *klass)
{
}

/* A limit from the environment, or its default (with a warning that says
 * what was wrong) */
static guint
limit_from_env (const char *name,
                guint       default_value,
                guint       min,
                guint       max)
{
  const char *text = g_getenv (name);
  guint64 value;

  if (text == NULL || *text == '\0')
    return default_value;
  if (!g_ascii_string_to_unsigned (text, 10, min, max, &value, NULL))
    {
      g_warning ("%s=%s is not a whole number from %u to %u: using %u instead. "
                 "Fix or unset the variable.", name, text, min, max, default_value);
      return default_value;
    }
  return (guint) value;
}

static void
natkit_holepunch_init (NatkitHolepunch *self)
{
  /* 0 sockets or 0 probes turns the birthday punch off; probes at most
   * half the ports, so that picking an untried one stays quick */
  self->limits.sockets = limit_from_env ("NATKIT_HOLEPUNCH_BIRTHDAY_SOCKETS",
                                         BIRTHDAY_SOCKETS, 0, 1024);
  self->limits.probes = limit_from_env ("NATKIT_HOLEPUNCH_BIRTHDAY_PROBES",
                                        BIRTHDAY_PROBES, 0, (65536 - BIRTHDAY_PORT_MIN) / 2);
  self->limits.rate = limit_from_env ("NATKIT_HOLEPUNCH_BIRTHDAY_RATE",
                                      BIRTHDAY_RATE, 100, 100000);
  self->limits.ms = limit_from_env ("NATKIT_HOLEPUNCH_BIRTHDAY_MS",
                                    BIRTHDAY_MS, 100, 60000);
}

static gboolean
holepunch_plugin_init (NatkitPlugin  *plugin,
                       GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               NATKIT_TYPE_HOLEPUNCH, NATKIT_RANK_PRIMARY);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("holepunch",
                      "Direct UDP paths through NATs by simultaneous hole punching",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      holepunch_plugin_init)
