/* natkit-holepunch-tcp.c: direct TCP paths through NATs by simultaneous open
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * For networks that block UDP but let TCP out. Both peers bind one TCP
 * port (SO_REUSEADDR + SO_REUSEPORT), connect from it to natkit-server to
 * learn what their NAT maps it to (a STUN Binding over TCP, RFC 8489
 * §6.2.2, answered on the server's TLS port), listen on it, and send the
 * addresses with a random token over the signaling channel
 * ("tcp-holepunch", docs/protocol.md 7.4). Then both connect() from that
 * same port to every address of the other's at once: each SYN that leaves
 * creates the conntrack entry in its own NAT that lets the peer's SYN in,
 * and the kernels complete a simultaneous open (RFC 9293 §3.5), or the
 * listener accepts the peer's connect. A connect that fails (reset,
 * refused, unreachable) is tried again after a short pause, until the
 * budget runs out.
 *
 * No connection carries anything before it is authenticated: both ends
 * send the hole punch's PUNCH, answer with an ACK that echoes it and the
 * initiator fixes the connection with a CONFIRM — the UDP punch's packets
 * (docs/protocol.md 7.2), keyed from both tokens, as RFC 4571 frames. A
 * stray connection (a scanner, a third host) cannot produce them and is
 * closed. The chosen connection becomes a NatkitStreamPath (RFC 4571
 * framing), and the secure session runs on it.
 *
 * Where it works: both NATs map the port the same for every destination
 * (no fully-random / symmetric mapping) and track TCP simultaneous open
 * (Linux conntrack does). Rank just below "holepunch", cost DIRECT.
 */
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

#include <natkit/natkit.h>
#include <stun/stunagent.h>
#include <stun/usages/bind.h>

#include "natkit-holepunch-proto.h"

#define NATKIT_TYPE_TCP_HOLEPUNCH (natkit_tcp_holepunch_get_type ())
G_DECLARE_FINAL_TYPE (NatkitTcpHolepunch, natkit_tcp_holepunch, NATKIT, TCP_HOLEPUNCH, GObject)

/* Limits (docs/protocol.md 7.4) */
#define GATHER_MS          1500    /* the STUN-over-TCP answer, at most */
#define OFFER_WAIT_MS      10000   /* the peer's offer, at most */
#define PUNCH_BUDGET_MS    8000    /* connecting, after both offers are known */
#define RETRY_MS           250     /* after a connect that failed */
#define MAX_CONNECTS       32      /* per target */
#define MAX_TARGETS        16
#define MAX_ACCEPTED       16      /* accepted connections being authenticated */
#define LISTEN_BACKLOG     8

/* A TCP socket that shares @port with the attempt's other sockets
 * (@port 0: the kernel picks one). */
static GSocket *
shared_port_socket (guint16   port,
                    GError  **error)
{
  g_autoptr(GSocket) socket = NULL;
  g_autoptr(GInetAddress) any = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) bind_to = g_inet_socket_address_new (any, port);
  struct sockaddr_storage native;

  socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                         G_SOCKET_PROTOCOL_TCP, error);
  if (socket == NULL)
    return NULL;
  g_socket_set_blocking (socket, FALSE);
  if (!g_socket_set_option (socket, SOL_SOCKET, SO_REUSEADDR, 1, error) ||
      !g_socket_set_option (socket, SOL_SOCKET, SO_REUSEPORT, 1, error) ||
      !g_socket_address_to_native (bind_to, &native, sizeof native, error))
    return NULL;
  /* not g_socket_bind(): it sets SO_REUSEADDR and SO_REUSEPORT again, to
   * what it thinks a TCP socket wants (off) */
  if (bind (g_socket_get_fd (socket), (struct sockaddr *) &native,
            g_socket_address_get_native_size (bind_to)) != 0)
    {
      int saved_errno = errno;

      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (saved_errno),
                   "cannot bind TCP port %u: %s", port, g_strerror (saved_errno));
      return NULL;
    }
  return g_steal_pointer (&socket);
}

/* ---- one attempt -------------------------------------------------------- */

typedef struct _Attempt Attempt;
typedef struct _Target Target;

/* One TCP connection, being made or being authenticated. */
typedef struct
{
  Attempt        *a;
  Target         *target;        /* the connect's target; NULL if accepted */
  GSocket        *socket;
  GSocketAddress *remote;
  GSource        *io;
  gboolean        connected;
  gboolean        begun;         /* our PUNCH is out, reading */
  gboolean        got_punch;
  gboolean        validated;     /* the responder: an ACK echoed ours */
  gboolean        foreign;       /* what came did not authenticate */
  guint8          peer_nonce[NATKIT_PUNCH_NONCE_SIZE];
  guint8          buffer[NATKIT_PUNCH_TCP_HELLO_SIZE];
  gsize           have;
} Link;

struct _Target
{
  Attempt        *a;
  GSocketAddress *address;
  char           *origin;        /* "host", "srflx", "mapped" */
  Link           *link;          /* the connect under way, or NULL */
  GSource        *retry;
  guint           connects;
  char           *last_error;
};

struct _Attempt
{
  GTask            *task;         /* not a reference: the task owns us */
  NatkitSignaling  *signaling;
  gulong            message_id;
  char             *session_id;
  char             *peer_id;
  guint8            role;         /* 0 initiator, 1 responder */
  guint16           port;

  GSocket          *listener;
  GSource          *accept_io;

  /* what natkit-server sees of our port */
  GSocket          *stun_socket;
  GSource          *stun_io;
  GSocketAddress   *stun_server;
  StunAgent         stun_agent;
  StunMessage       stun_message;
  guint8            stun_request[STUN_MAX_MESSAGE_SIZE_IPV4];
  gsize             stun_request_len;
  guint8            stun_response[STUN_MAX_MESSAGE_SIZE_IPV4];
  gsize             stun_have;
  gboolean          stun_sent;
  GSource          *gather_timer;
  gboolean          gathered;

  GArray           *local;        /* NatkitPunchCandidate */
  guint8            token[NATKIT_PUNCH_TOKEN_SIZE];
  guint8            secret[NATKIT_PUNCH_SECRET_SIZE];
  gboolean          have_peer;
  gboolean          punching;
  NatkitPunchKey    key;
  GPtrArray        *targets;      /* Target */
  GPtrArray        *links;        /* Link */
  GSource          *offer_timer;
  GSource          *budget;
  GSource          *cancel;

  guint             connects;     /* connect() calls */
  guint             failed;       /* connects that failed */
  guint             formed;       /* TCP connections that formed */
  guint             rejected;     /* connections closed: no valid hello */
};

static void link_free (Link *link);

static void
target_free (gpointer data)
{
  Target *t = data;

  natkit_punch_drop_source (&t->retry);
  g_clear_object (&t->address);
  g_free (t->origin);
  g_free (t->last_error);
  g_free (t);
}

static void
attempt_stop (Attempt *a)
{
  natkit_punch_drop_source (&a->accept_io);
  natkit_punch_drop_source (&a->stun_io);
  natkit_punch_drop_source (&a->gather_timer);
  natkit_punch_drop_source (&a->offer_timer);
  natkit_punch_drop_source (&a->budget);
  natkit_punch_drop_source (&a->cancel);
  if (a->message_id != 0)
    {
      g_signal_handler_disconnect (a->signaling, a->message_id);
      a->message_id = 0;
    }
  for (guint i = 0; a->targets != NULL && i < a->targets->len; i++)
    natkit_punch_drop_source (&((Target *) g_ptr_array_index (a->targets, i))->retry);
  /* closes every connection that did not become the path */
  if (a->links != NULL)
    g_ptr_array_set_size (a->links, 0);
  if (a->listener != NULL)
    {
      g_socket_close (a->listener, NULL);
      g_clear_object (&a->listener);
    }
  if (a->stun_socket != NULL)
    {
      g_socket_close (a->stun_socket, NULL);
      g_clear_object (&a->stun_socket);
    }
}

static void
attempt_free (gpointer data)
{
  Attempt *a = data;

  attempt_stop (a);
  g_clear_object (&a->signaling);
  g_clear_object (&a->stun_server);
  g_free (a->session_id);
  g_free (a->peer_id);
  g_clear_pointer (&a->local, g_array_unref);
  g_clear_pointer (&a->links, g_ptr_array_unref);
  g_clear_pointer (&a->targets, g_ptr_array_unref);
  g_free (a);
}

static gboolean
attempt_done (Attempt *a)
{
  return a->task == NULL || g_task_get_completed (a->task);
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

static void
link_free (Link *link)
{
  natkit_punch_drop_source (&link->io);
  if (link->target != NULL && link->target->link == link)
    link->target->link = NULL;
  if (link->socket != NULL)
    {
      g_socket_close (link->socket, NULL);
      g_object_unref (link->socket);
    }
  g_clear_object (&link->remote);
  g_free (link);
}

static void
attempt_succeed (Attempt *a,
                 Link    *link)
{
  GTask *task = a->task;
  g_autoptr(GSocketConnection) connection = NULL;
  g_autoptr(GSocketAddress) bound = g_socket_get_local_address (link->socket, NULL);
  g_autofree char *remote_text = natkit_punch_describe (link->remote);
  g_autofree char *local_text = NULL;
  g_autofree char *remote = NULL;
  const char *origin = link->target != NULL ? link->target->origin : "accepted";
  NatkitPath *path;

  if (bound != NULL)
    {
      g_autofree char *text = natkit_punch_describe (bound);

      local_text = g_strdup_printf ("%s/tcp", text);
    }
  else
    local_text = g_strdup ("?");
  remote = g_strdup_printf ("%s/tcp (%s)", remote_text, origin);

  /* the link leaves the list without closing its socket */
  natkit_punch_drop_source (&link->io);
  g_socket_set_option (link->socket, IPPROTO_TCP, TCP_NODELAY, 1, NULL);
  connection = g_socket_connection_factory_create_connection (link->socket);
  g_clear_object (&link->socket);
  g_ptr_array_remove (a->links, link);

  path = natkit_stream_path_new (G_IO_STREAM (connection), "tcp-holepunch", "tcp",
                                 local_text, remote);
  g_debug ("TCP simultaneous open to %s: %s → %s after %u connects (%u connections "
           "formed)", a->peer_id, local_text, remote, a->connects, a->formed);
  attempt_stop (a);
  a->task = NULL;
  g_task_return_pointer (task, path, g_object_unref);
  g_object_unref (task);
}

static void
link_send (Link            *link,
           NatkitPunchType  type,
           const guint8    *echo)
{
  Attempt *a = link->a;
  NatkitPunch punch = { type, a->role, { 0 }, { 0 } };
  guint8 message[NATKIT_PUNCH_TCP_HELLO_SIZE];

  natkit_punch_nonce_for (a->secret, G_INET_SOCKET_ADDRESS (link->remote), punch.nonce);
  if (echo != NULL)
    memcpy (punch.echo, echo, NATKIT_PUNCH_NONCE_SIZE);
  natkit_punch_tcp_hello_build (&a->key, &punch, message);
  /* 38 bytes on a fresh connection fit its send buffer; a short or failed
   * send shows as the peer never answering, and the budget ends it */
  g_socket_send (link->socket, (const char *) message, sizeof message, NULL, NULL);
}

static void schedule_retry (Attempt *a, Target *t);

/* Drops @link; @why (may be NULL) is what the target remembers. */
static void
link_drop (Link       *link,
           const char *why)
{
  Attempt *a = link->a;
  Target *t = link->target;

  if (t != NULL && why != NULL)
    {
      g_free (t->last_error);
      t->last_error = g_strdup (why);
    }
  /* something else answers there (not the peer): not again */
  if (t != NULL && link->foreign)
    t->connects = MAX_CONNECTS;
  g_ptr_array_remove (a->links, link);   /* frees it */
  if (t != NULL && !attempt_done (a))
    schedule_retry (a, t);
}

/* Whether @punch echoes what we sent to @link's remote end. */
static gboolean
echoes_ours (Attempt           *a,
             Link              *link,
             const NatkitPunch *punch)
{
  guint8 expected[NATKIT_PUNCH_NONCE_SIZE];

  natkit_punch_nonce_for (a->secret, G_INET_SOCKET_ADDRESS (link->remote), expected);
  return memcmp (punch->echo, expected, NATKIT_PUNCH_NONCE_SIZE) == 0;
}

/* One complete message on @link. Returns FALSE when @link is gone. */
static gboolean
link_handle (Link *link)
{
  Attempt *a = link->a;
  NatkitPunch punch;
  g_autoptr(GError) error = NULL;

  if (!natkit_punch_tcp_hello_parse (&a->key, link->buffer, link->have, &punch, &error) ||
      punch.sender_role == a->role)
    {
      g_autofree char *from = natkit_punch_describe (link->remote);

      a->rejected++;
      link->foreign = TRUE;
      g_debug ("closing the TCP connection with %s: %s", from,
               error ? error->message : "our own hello, reflected");
      link_drop (link, "the connection did not authenticate");
      return FALSE;
    }
  link->have = 0;

  switch (punch.type)
    {
    case NATKIT_PUNCH_PUNCH:
      memcpy (link->peer_nonce, punch.nonce, NATKIT_PUNCH_NONCE_SIZE);
      link->got_punch = TRUE;
      link_send (link, NATKIT_PUNCH_ACK, punch.nonce);
      return TRUE;

    case NATKIT_PUNCH_ACK:
      if (!link->got_punch || !echoes_ours (a, link, &punch))
        break;
      if (a->role == 0)
        {
          /* the connection works both ways and is the peer's: the path */
          link_send (link, NATKIT_PUNCH_CONFIRM, link->peer_nonce);
          attempt_succeed (a, link);
          return FALSE;
        }
      link->validated = TRUE;
      return TRUE;

    case NATKIT_PUNCH_CONFIRM:
      if (a->role != 1 || !link->validated || !echoes_ours (a, link, &punch))
        break;
      attempt_succeed (a, link);
      return FALSE;
    }

  a->rejected++;
  link->foreign = TRUE;
  link_drop (link, "the peer's answer did not match what was sent on that connection");
  return FALSE;
}

static gboolean
link_readable_cb (GSocket      *socket,
                  GIOCondition  condition,
                  gpointer      user_data)
{
  Link *link = user_data;
  Attempt *a = link->a;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  for (;;)
    {
      g_autoptr(GError) error = NULL;
      gssize n = g_socket_receive (socket, (char *) link->buffer + link->have,
                                   sizeof link->buffer - link->have, NULL, &error);

      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return G_SOURCE_CONTINUE;
      if (n <= 0)
        {
          g_autofree char *why = g_strdup_printf ("the connection broke before its "
                                                  "hello completed: %s",
                                                  error ? error->message :
                                                  "closed by the other end");

          g_clear_pointer (&link->io, g_source_unref);
          link_drop (link, why);
          return G_SOURCE_REMOVE;
        }
      link->have += n;
      if (link->have < sizeof link->buffer)
        continue;
      if (!link_handle (link))
        return G_SOURCE_REMOVE;   /* gone, or the path: its source is dropped */
    }
}

/* The connection formed and the key is known: say hello, read. */
static void
link_begin (Link *link)
{
  if (link->begun || !link->a->have_peer)
    return;
  link->begun = TRUE;
  link_send (link, NATKIT_PUNCH_PUNCH, NULL);
  natkit_punch_drop_source (&link->io);
  link->io = natkit_punch_add_source (g_socket_create_source (link->socket, G_IO_IN, NULL),
                         G_SOURCE_FUNC (link_readable_cb), link,
                         "[natkit-tcp-holepunch] hello");
}

static gboolean
link_connected_cb (GSocket      *socket,
                   GIOCondition  condition,
                   gpointer      user_data)
{
  Link *link = user_data;
  Attempt *a = link->a;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */
  g_autoptr(GError) error = NULL;

  g_clear_pointer (&link->io, g_source_unref);
  if (!g_socket_check_connect_result (socket, &error))
    {
      a->failed++;
      link_drop (link, error->message);
      return G_SOURCE_REMOVE;
    }
  link->connected = TRUE;
  a->formed++;
  {
    g_autofree char *to = natkit_punch_describe (link->remote);

    g_debug ("TCP connection to %s (%s) formed", to, link->target->origin);
  }
  link_begin (link);
  return G_SOURCE_REMOVE;
}

static void
target_connect (Attempt *a,
                Target  *t)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) socket = NULL;
  Link *link;

  if (t->link != NULL || attempt_done (a))
    return;
  t->connects++;
  a->connects++;
  socket = shared_port_socket (a->port, &error);
  if (socket == NULL)
    {
      a->failed++;
      g_free (t->last_error);
      t->last_error = g_strdup_printf ("cannot open a TCP socket on port %u: %s",
                                       a->port, error->message);
      schedule_retry (a, t);
      return;
    }
  link = g_new0 (Link, 1);
  link->a = a;
  link->target = t;
  link->socket = g_steal_pointer (&socket);
  link->remote = g_object_ref (t->address);
  g_ptr_array_add (a->links, link);
  t->link = link;

  if (g_socket_connect (link->socket, t->address, NULL, &error))
    {
      link_connected_cb (link->socket, G_IO_OUT, link);
      return;
    }
  if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PENDING))
    {
      a->failed++;
      link_drop (link, error->message);
      return;
    }
  link->io = natkit_punch_add_source (g_socket_create_source (link->socket, G_IO_OUT, NULL),
                         G_SOURCE_FUNC (link_connected_cb), link,
                         "[natkit-tcp-holepunch] connect");
}

static gboolean
retry_cb (gpointer user_data)
{
  Target *t = user_data;
  Attempt *a = t->a;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  g_clear_pointer (&t->retry, g_source_unref);
  target_connect (a, t);
  return G_SOURCE_REMOVE;
}

static void
schedule_retry (Attempt *a,
                Target  *t)
{
  if (t->retry != NULL || t->link != NULL || !a->punching || attempt_done (a))
    return;
  if (t->connects >= MAX_CONNECTS)
    return;
  t->retry = natkit_punch_add_source (g_timeout_source_new (RETRY_MS), retry_cb, t,
                         "[natkit-tcp-holepunch] retry");
}

static gboolean
accept_cb (GSocket      *socket,
           GIOCondition  condition,
           gpointer      user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  for (guint n = 0; n < 8 && !attempt_done (a); n++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(GSocket) accepted = g_socket_accept (socket, NULL, &error);
      g_autoptr(GSocketAddress) remote = NULL;
      guint n_accepted;
      Link *link;

      if (accepted == NULL)
        break;   /* would block, or an aborted connection */
      remote = g_socket_get_remote_address (accepted, NULL);
      n_accepted = 0;
      for (guint i = 0; i < a->links->len; i++)
        if (((Link *) g_ptr_array_index (a->links, i))->target == NULL)
          n_accepted++;
      /* our own connects (one per target) are not held up by strangers
       * filling these */
      if (remote == NULL || !G_IS_INET_SOCKET_ADDRESS (remote) || n_accepted >= MAX_ACCEPTED)
        {
          a->rejected++;
          continue;   /* closed as it goes */
        }
      g_socket_set_blocking (accepted, FALSE);
      link = g_new0 (Link, 1);
      link->a = a;
      link->socket = g_steal_pointer (&accepted);
      link->remote = g_steal_pointer (&remote);
      link->connected = TRUE;
      g_ptr_array_add (a->links, link);
      a->formed++;
      {
        g_autofree char *from = natkit_punch_describe (link->remote);

        g_debug ("accepted a TCP connection from %s", from);
      }
      /* before the peer's offer it waits: nothing to authenticate with */
      link_begin (link);
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
  const char *last = NULL;

  g_clear_pointer (&a->budget, g_source_unref);
  for (guint i = 0; i < a->targets->len; i++)
    {
      Target *t = g_ptr_array_index (a->targets, i);

      if (t->last_error != NULL && g_strcmp0 (t->origin, "host") != 0)
        last = t->last_error;
    }
  if (a->formed == 0)
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                  "the peer's NAT refused or dropped every TCP connection "
                                  "attempt to %s in %.1f s (%u connects%s%s): the NATs on "
                                  "the way do not let a TCP simultaneous open through "
                                  "(one maps each destination to a new port, or answers "
                                  "with a reset); the relay carries the connection if "
                                  "it is available",
                                  tried, PUNCH_BUDGET_MS / 1000.0, a->connects,
                                  last ? "; last: " : "", last ? last : ""));
  else
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                  "%u TCP connections formed with %s in %.1f s, but none "
                                  "completed the authenticated hello (%u closed for not "
                                  "authenticating); the relay carries the connection if "
                                  "it is available",
                                  a->formed, tried, PUNCH_BUDGET_MS / 1000.0, a->rejected));
  return G_SOURCE_REMOVE;
}

static gboolean
offer_timer_cb (gpointer user_data)
{
  Attempt *a = user_data;

  g_clear_pointer (&a->offer_timer, g_source_unref);
  attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                "the peer %s sent no TCP hole punching offer within "
                                "%.0f s; it may not run tcp-holepunch",
                                a->peer_id, OFFER_WAIT_MS / 1000.0));
  return G_SOURCE_REMOVE;
}

/* Both offers known: connect everywhere, and authenticate what formed. */
static void
start_punching (Attempt *a)
{
  if (!a->gathered || !a->have_peer || a->punching || attempt_done (a))
    return;
  a->punching = TRUE;
  natkit_punch_drop_source (&a->offer_timer);
  {
    g_autofree char *tried = list_targets (a);

    g_debug ("connecting from port %u towards %s: %s", a->port, a->peer_id, tried);
  }
  if (a->targets->len == 0)
    {
      attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                                    "the peer %s offered no address this side can "
                                    "connect to over TCP", a->peer_id));
      return;
    }
  a->budget = natkit_punch_add_source (g_timeout_source_new (PUNCH_BUDGET_MS), budget_cb, a,
                          "[natkit-tcp-holepunch] budget");
  for (guint i = 0; i < a->links->len; i++)
    link_begin (g_ptr_array_index (a->links, i));
  for (guint i = 0; i < a->targets->len && !attempt_done (a); i++)
    target_connect (a, g_ptr_array_index (a->targets, i));
}

/* ---- gathering: our addresses, the mapped one from natkit-server -------- */

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
  g_debug ("could not send the TCP hole punching offer: %s", error->message);
  /* the peer cannot connect to candidates it never got */
  if (a->task == task && !attempt_done (a))
    attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                  "could not send our TCP candidates to the peer: %s",
                                  error->message));
}

static void
gather_done (Attempt *a)
{
  g_autofree char *offer = NULL;

  if (a->gathered || attempt_done (a))
    return;
  a->gathered = TRUE;
  natkit_punch_drop_source (&a->gather_timer);
  natkit_punch_drop_source (&a->stun_io);
  if (a->stun_socket != NULL)
    {
      g_socket_close (a->stun_socket, NULL);
      g_clear_object (&a->stun_socket);
    }

  offer = natkit_punch_tcp_offer_build (a->session_id, a->token,
                                        (NatkitPunchCandidate *) (gpointer) a->local->data,
                                        a->local->len);
  g_debug ("sending %u TCP candidates to %s", a->local->len, a->peer_id);
  natkit_signaling_send_async (a->signaling, a->peer_id, offer, NULL, offer_sent_cb,
                               g_object_ref (a->task));
  start_punching (a);
}

static gboolean
gather_timer_cb (gpointer user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */

  g_clear_pointer (&a->gather_timer, g_source_unref);
  g_debug ("no STUN-over-TCP answer within %d ms: offering the local addresses only",
           GATHER_MS);
  gather_done (a);
  return G_SOURCE_REMOVE;
}

static void
stun_process (Attempt *a)
{
  StunMessage response;
  struct sockaddr_storage mapped, alternate;
  socklen_t mapped_len = sizeof mapped, alternate_len = sizeof alternate;
  g_autoptr(GSocketAddress) address = NULL;

  if (stun_agent_validate (&a->stun_agent, &response, a->stun_response, a->stun_have,
                           NULL, NULL) != STUN_VALIDATION_SUCCESS ||
      stun_usage_bind_process (&response, (struct sockaddr *) &mapped, &mapped_len,
                               (struct sockaddr *) &alternate, &alternate_len) !=
      STUN_USAGE_BIND_RETURN_SUCCESS)
    {
      g_debug ("natkit-server's STUN-over-TCP answer does not validate");
      return;
    }
  address = g_socket_address_new_from_native (&mapped, mapped_len);
  if (address == NULL || !G_IS_INET_SOCKET_ADDRESS (address) ||
      g_socket_address_get_family (address) != G_SOCKET_FAMILY_IPV4)
    return;
  {
    g_autofree char *text = natkit_punch_describe (address);

    g_debug ("natkit-server sees our TCP port %u as %s", a->port, text);
  }
  add_local (a, NATKIT_PUNCH_CANDIDATE_SRFLX, G_INET_SOCKET_ADDRESS (address));
}

static gboolean
stun_io_cb (GSocket      *socket,
            GIOCondition  condition,
            gpointer      user_data)
{
  Attempt *a = user_data;
  G_GNUC_UNUSED g_autoptr(GTask) guard = g_object_ref (a->task);   /* keeps @a alive */
  g_autoptr(GError) error = NULL;

  if (!a->stun_sent)
    {
      natkit_punch_drop_source (&a->stun_io);
      if (!g_socket_check_connect_result (socket, &error) ||
          g_socket_send (socket, (const char *) a->stun_request, a->stun_request_len,
                         NULL, &error) != (gssize) a->stun_request_len)
        {
          g_debug ("cannot ask natkit-server for our TCP address: %s",
                   error ? error->message : "short write");
          gather_done (a);
          return G_SOURCE_REMOVE;
        }
      a->stun_sent = TRUE;
      a->stun_io = natkit_punch_add_source (g_socket_create_source (socket, G_IO_IN, NULL),
                               G_SOURCE_FUNC (stun_io_cb), a,
                               "[natkit-tcp-holepunch] STUN");
      return G_SOURCE_REMOVE;
    }

  for (;;)
    {
      gsize want = 20;
      gssize n;

      if (a->stun_have >= 4)
        want = 20 + (((gsize) a->stun_response[2] << 8) | a->stun_response[3]);
      if (want > sizeof a->stun_response)
        {
          g_debug ("natkit-server's STUN-over-TCP answer is too long");
          gather_done (a);
          return G_SOURCE_REMOVE;
        }
      if (a->stun_have == want)
        {
          stun_process (a);
          gather_done (a);
          return G_SOURCE_REMOVE;
        }
      n = g_socket_receive (socket, (char *) a->stun_response + a->stun_have,
                            want - a->stun_have, NULL, &error);
      if (n < 0 && g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        return G_SOURCE_CONTINUE;
      if (n <= 0)
        {
          g_debug ("natkit-server closed the STUN-over-TCP connection: %s",
                   error ? error->message : "no answer");
          gather_done (a);
          return G_SOURCE_REMOVE;
        }
      a->stun_have += n;
    }
}

static void
stun_start (Attempt        *a,
            GSocketAddress *server)
{
  static const uint16_t known[] = {
    STUN_ATTRIBUTE_MAPPED_ADDRESS, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
    STUN_ATTRIBUTE_FINGERPRINT, STUN_ATTRIBUTE_SOFTWARE, 0
  };
  g_autoptr(GError) error = NULL;

  g_set_object (&a->stun_server, server);
  stun_agent_init (&a->stun_agent, known, STUN_COMPATIBILITY_RFC5389,
                   STUN_AGENT_USAGE_USE_FINGERPRINT);
  a->stun_request_len = stun_usage_bind_create (&a->stun_agent, &a->stun_message,
                                                a->stun_request, sizeof a->stun_request);
  if (a->stun_request_len == 0 ||
      (!g_socket_connect (a->stun_socket, server, NULL, &error) &&
       !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_PENDING)))
    {
      g_autofree char *to = natkit_punch_describe (server);

      g_debug ("cannot connect to %s to learn our TCP address: %s", to,
               error ? error->message : "no STUN request");
      gather_done (a);
      return;
    }
  a->stun_io = natkit_punch_add_source (g_socket_create_source (a->stun_socket, G_IO_OUT, NULL),
                           G_SOURCE_FUNC (stun_io_cb), a, "[natkit-tcp-holepunch] STUN");
  a->gather_timer = natkit_punch_add_source (g_timeout_source_new (GATHER_MS), gather_timer_cb, a,
                                "[natkit-tcp-holepunch] gather");
}

static void
stun_resolved_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  Attempt *a = g_task_get_task_data (task);
  g_autoptr(GError) error = NULL;
  GList *addresses = g_resolver_lookup_by_name_with_flags_finish (G_RESOLVER (source),
                                                                  result, &error);

  if (attempt_done (a) || a->gathered)
    ;
  else if (addresses == NULL)
    {
      g_debug ("cannot resolve natkit-server's name: %s", error->message);
      gather_done (a);
    }
  else
    {
      guint16 port = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (task), "port"));
      g_autoptr(GSocketAddress) server = g_inet_socket_address_new (addresses->data, port);

      stun_start (a, server);
    }
  g_resolver_free_addresses (addresses);
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

/* ---- the traversal ------------------------------------------------------ */

struct _NatkitTcpHolepunch
{
  GObject parent_instance;
};

static void natkit_tcp_holepunch_traversal_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitTcpHolepunch, natkit_tcp_holepunch, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      natkit_tcp_holepunch_traversal_init))

static NatkitCost
natkit_tcp_holepunch_get_cost (NatkitTraversal *traversal)
{
  return NATKIT_COST_DIRECT;
}

static gboolean
natkit_tcp_holepunch_applies (NatkitTraversal         *traversal,
                              NatkitTraversalRequest  *request,
                              GError                 **error)
{
  if (natkit_traversal_request_get_signaling (request) == NULL ||
      natkit_traversal_request_get_session_id (request) == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "TCP hole punching needs a signaling channel to the peer "
                           "to exchange addresses over");
      return FALSE;
    }
  return TRUE;
}

static void
add_target (Attempt        *a,
            GSocketAddress *address,
            const char     *origin)
{
  Target *t;

  for (guint i = 0; i < a->targets->len; i++)
    if (natkit_punch_same_address (((Target *) g_ptr_array_index (a->targets, i))->address, address))
      return;
  /* never through a virtual network of ours (the path would carry the
   * tunnel it runs in) */
  if (a->targets->len >= MAX_TARGETS ||
      g_socket_address_get_family (address) != G_SOCKET_FAMILY_IPV4 ||
      natkit_address_is_virtual (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address))))
    return;
  t = g_new0 (Target, 1);
  t->a = a;
  t->address = g_object_ref (address);
  t->origin = g_strdup (origin);
  g_ptr_array_add (a->targets, t);
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

  if (g_strcmp0 (from, a->peer_id) != 0 || strstr (text, "\"tcp-holepunch\"") == NULL)
    return;
  if (!natkit_punch_tcp_offer_parse (text, &session, token, &candidates, &error))
    {
      g_debug ("ignoring a TCP hole punching offer from %s: %s", from, error->message);
      return;
    }
  if (g_strcmp0 (session, a->session_id) != 0)
    return;
  if (a->have_peer)
    {
      g_debug ("ignoring a second TCP hole punching offer from %s", from);
      return;
    }

  a->have_peer = TRUE;
  if (a->role == 0)
    natkit_punch_tcp_key_derive (&a->key, a->session_id, a->token, token);
  else
    natkit_punch_tcp_key_derive (&a->key, a->session_id, token, a->token);
  for (guint i = 0; i < candidates->len; i++)
    {
      NatkitPunchCandidate *c = &g_array_index (candidates, NatkitPunchCandidate, i);

      add_target (a, G_SOCKET_ADDRESS (c->address),
                  natkit_punch_candidate_type_to_string (c->type));
    }
  g_debug ("%s offered %u TCP candidates", from, candidates->len);
  start_punching (a);
}

static gboolean
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  Attempt *a = user_data;

  g_clear_pointer (&a->cancel, g_source_unref);
  if (!attempt_done (a))
    attempt_fail (a, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "TCP hole punching was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
link_free_cb (gpointer data)
{
  link_free (data);
}

static void
natkit_tcp_holepunch_open_path_async (NatkitTraversal        *traversal,
                                      NatkitTraversalRequest *request,
                                      GCancellable           *cancellable,
                                      GAsyncReadyCallback     callback,
                                      gpointer                user_data)
{
  GTask *task = g_task_new (traversal, cancellable, callback, user_data);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketAddress) bound = NULL;
  NatkitSignaling *signaling = natkit_traversal_request_get_signaling (request);
  const char *server_host = NULL;
  guint16 server_port = 0;
  Attempt *a;

  g_task_set_source_tag (task, natkit_tcp_holepunch_open_path_async);
  a = g_new0 (Attempt, 1);
  a->task = task;
  g_task_set_task_data (task, a, attempt_free);
  a->signaling = g_object_ref (signaling);
  a->session_id = g_strdup (natkit_traversal_request_get_session_id (request));
  a->peer_id = g_strdup (natkit_traversal_request_get_remote_peer_id (request));
  a->role = natkit_traversal_request_get_role (request) == NATKIT_ROLE_INITIATOR ? 0 : 1;
  a->local = g_array_new (FALSE, TRUE, sizeof (NatkitPunchCandidate));
  g_array_set_clear_func (a->local, (GDestroyNotify) natkit_punch_candidate_clear);
  a->targets = g_ptr_array_new_with_free_func (target_free);
  a->links = g_ptr_array_new_with_free_func (link_free_cb);
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

  /* one port for everything. Linux does not share a port it picked
   * itself (bind to port 0) even with SO_REUSEPORT: a plain socket finds a
   * free one, then every socket of ours binds it by number */
  for (guint tries = 0; tries < 8 && a->listener == NULL; tries++)
    {
      g_autoptr(GSocket) probe = NULL;
      g_autoptr(GInetAddress) any = g_inet_address_new_any (G_SOCKET_FAMILY_IPV4);
      g_autoptr(GSocketAddress) zero = g_inet_socket_address_new (any, 0);

      g_clear_error (&error);
      g_clear_object (&bound);
      g_clear_object (&a->stun_socket);
      probe = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_STREAM,
                            G_SOCKET_PROTOCOL_TCP, &error);
      if (probe == NULL || !g_socket_bind (probe, zero, FALSE, &error) ||
          (bound = g_socket_get_local_address (probe, &error)) == NULL)
        break;
      a->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
      g_socket_close (probe, NULL);
      a->stun_socket = shared_port_socket (a->port, &error);
      if (a->stun_socket != NULL)
        a->listener = shared_port_socket (a->port, &error);
      if (a->listener != NULL)
        {
          g_socket_set_listen_backlog (a->listener, LISTEN_BACKLOG);
          if (!g_socket_listen (a->listener, &error))
            g_clear_object (&a->listener);
        }
    }
  if (a->listener == NULL)
    {
      attempt_fail (a, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                    "Could not open a TCP port for TCP hole punching "
                                    "(SO_REUSEPORT is needed): %s", error->message));
      return;
    }
  a->accept_io = natkit_punch_add_source (g_socket_create_source (a->listener, G_IO_IN, NULL),
                             G_SOURCE_FUNC (accept_cb), a, "[natkit-tcp-holepunch] accept");
  if (cancellable != NULL)
    a->cancel = natkit_punch_add_source (g_cancellable_source_new (cancellable),
                            G_SOURCE_FUNC (cancelled_cb), a, "[natkit-tcp-holepunch] cancel");
  a->offer_timer = natkit_punch_add_source (g_timeout_source_new (OFFER_WAIT_MS), offer_timer_cb, a,
                               "[natkit-tcp-holepunch] offer");

  /* listen before anything goes out: the peer's offer may come quickly */
  a->message_id = g_signal_connect (a->signaling, "message-received",
                                    G_CALLBACK (message_cb), a);
  host_candidates (a);

  /* natkit-server answers a STUN Binding over TCP on its TLS port
   * (docs/protocol.md 7.4); another signaling channel: the first STUN
   * server given, over TCP on its port */
  if (NATKIT_IS_RENDEZVOUS (signaling))
    {
      server_host = natkit_rendezvous_get_host (NATKIT_RENDEZVOUS (signaling));
      server_port = natkit_rendezvous_get_port (NATKIT_RENDEZVOUS (signaling));
    }
  else
    {
      const char * const *servers = natkit_traversal_request_get_stun_servers (request);
      g_autoptr(GSocketConnectable) c = NULL;

      if (servers != NULL && servers[0] != NULL)
        c = g_network_address_parse (servers[0], 3478, NULL);
      if (c != NULL)
        {
          g_object_set_data_full (G_OBJECT (task), "stun-host",
                                  g_strdup (g_network_address_get_hostname (G_NETWORK_ADDRESS (c))),
                                  g_free);
          server_host = g_object_get_data (G_OBJECT (task), "stun-host");
          server_port = g_network_address_get_port (G_NETWORK_ADDRESS (c));
        }
    }
  if (server_host == NULL || server_port == 0)
    {
      g_debug ("no server to learn our TCP address from: offering the local ones");
      gather_done (a);
      return;
    }
  {
    g_autoptr(GInetAddress) ip = g_inet_address_new_from_string (server_host);

    if (ip != NULL)
      {
        g_autoptr(GSocketAddress) server = g_inet_socket_address_new (ip, server_port);

        if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV4)
          stun_start (a, server);
        else
          gather_done (a);
      }
    else
      {
        GResolver *resolver = g_resolver_get_default ();

        g_object_set_data (G_OBJECT (task), "port", GUINT_TO_POINTER (server_port));
        g_resolver_lookup_by_name_with_flags_async (resolver, server_host,
                                                    G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY,
                                                    cancellable, stun_resolved_cb,
                                                    g_object_ref (task));
        g_object_unref (resolver);
        a->gather_timer = natkit_punch_add_source (g_timeout_source_new (GATHER_MS), gather_timer_cb, a,
                                      "[natkit-tcp-holepunch] gather");
      }
  }
}

static NatkitPath *
natkit_tcp_holepunch_open_path_finish (NatkitTraversal  *traversal,
                                       GAsyncResult     *result,
                                       GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
natkit_tcp_holepunch_traversal_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = natkit_tcp_holepunch_get_cost;
  iface->applies = natkit_tcp_holepunch_applies;
  iface->open_path_async = natkit_tcp_holepunch_open_path_async;
  iface->open_path_finish = natkit_tcp_holepunch_open_path_finish;
}

static void
natkit_tcp_holepunch_class_init (NatkitTcpHolepunchClass *klass)
{
}

static void
natkit_tcp_holepunch_init (NatkitTcpHolepunch *self)
{
}

static gboolean
tcp_holepunch_plugin_init (NatkitPlugin  *plugin,
                           GError       **error)
{
  /* just below "holepunch": where UDP gets through, it is the better path
   * (no head-of-line blocking under the session's own reliability) */
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               NATKIT_TYPE_TCP_HOLEPUNCH, NATKIT_RANK_PRIMARY - 1);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("tcp-holepunch",
                      "Direct TCP paths through NATs by simultaneous open, for networks "
                      "that block UDP",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      tcp_holepunch_plugin_init)
