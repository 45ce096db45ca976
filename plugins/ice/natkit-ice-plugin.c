/* natkit-ice-plugin.c: ICE (RFC 8445) through libnice's NiceAgent
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One NiceAgent per attempt, one stream, one component, in the main
 * context. Both sides gather host, server-reflexive (from the first STUN
 * server of the request: natkit-server's own UDP port when there is one)
 * and relayed candidates (from the configured TURN servers: UDP, TCP or
 * TLS) and trickle them to the other over the signaling channel as they
 * come, with their credentials and end-of-candidates ("ice" bodies,
 * docs/protocol.md section 8). The initiator is the controlling agent.
 * When the component is READY, the selected pair becomes a NatkitPath:
 * datagrams go out with nice_agent_send() and come in through
 * nice_agent_attach_recv().
 *
 * While the path lives: consent freshness (RFC 7675) runs; when libnice
 * says consent was lost (the component FAILED after READY) the path fails
 * with the reason and the manager finds another. When the local addresses
 * change (GNetworkMonitor::network-changed, then a look at the interfaces)
 * the agent restarts ICE (new credentials over signaling, the peer
 * restarts too); a restart that does not reach READY again fails the path.
 *
 * What the peer sends is validated here, not by libnice: credentials,
 * candidates (no port 0, unspecified, multicast, broadcast, reserved;
 * loopback only when this agent is on loopback too), at most 32 per
 * attempt, duplicates dropped, each drop said in a debug message.
 */
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include <natkit/natkit.h>
#include <nice/agent.h>

#include "natkit-ice-proto.h"

#define NATKIT_TYPE_ICE (natkit_ice_get_type ())
G_DECLARE_FINAL_TYPE (NatkitIce, natkit_ice, NATKIT, ICE, GObject)

#define NATKIT_TYPE_ICE_PATH (natkit_ice_path_get_type ())
G_DECLARE_FINAL_TYPE (NatkitIcePath, natkit_ice_path, NATKIT, ICE_PATH, NatkitPath)

#define PATH_MTU          1300    /* room for TURN's ChannelData and TCP framing */
#define MAX_EARLY         16      /* datagrams kept until the path exists */
#define RESTART_MS        10000   /* an ICE restart must reach READY again in this */
#define NETWORK_SETTLE_MS 500     /* network-changed comes in bursts */
#define RESEND_MS         1000    /* a restart body signaling did not take */
#define REST_TTL_S        86400   /* TURN REST credentials made from a secret */

/* ---- the state of one agent -------------------------------------------- */

/* a STUN or TURN server of the attempt */
typedef struct
{
  char         *name;       /* as configured, for messages */
  char         *host;
  guint16       port;
  gboolean      turn;
  NiceRelayType relay_type;
  char         *username;
  char         *password;
  char         *ip;         /* resolved */
  char         *problem;    /* why it is not used, or NULL */
} Server;

static void
server_free (gpointer data)
{
  Server *s = data;

  g_free (s->name);
  g_free (s->host);
  g_free (s->username);
  g_free (s->password);
  g_free (s->ip);
  g_free (s->problem);
  g_free (s);
}

typedef struct _Ice Ice;

struct _Ice
{
  gint              refs;
  gboolean          dead;

  NiceAgent        *agent;
  guint             stream_id;
  gboolean          controlling;
  gboolean          loopback;       /* local addresses only on loopback */
  char             *relay_transport;/* "turn-udp"… when all relays share one */
  char             *server_problems;/* "TURN server …: could not resolve …", or NULL */
  GPtrArray        *servers;        /* Server, resolved: a renewed stream's relays */

  NatkitSignaling  *signaling;
  gulong            message_id;
  char             *session_id;
  char             *peer_id;

  /* what we send */
  GArray           *pending;        /* NatkitIceCandidate */
  guint             local_count;
  guint             local_types[4];
  gboolean          gathered;
  gboolean          end_sent;
  GSource          *flush;

  /* what the peer sent, this generation (its ufrag) */
  char             *remote_ufrag;
  GHashTable       *seen;           /* "type ip port" */
  guint             remote_count;
  guint             remote_types[4];
  guint             dropped;
  gboolean          remote_end;

  /* the attempt, then the path (neither owns the other's reference) */
  GTask            *task;
  NatkitIcePath    *path;
  GQueue            early;          /* GBytes, until the path exists */
  GSource          *early_idle;
  GSource          *timer;
  GSource          *cancel;
  guint             timeout_ms;
  NiceComponentState state;

  /* the path's life */
  GNetworkMonitor  *monitor;
  gulong            network_id;
  GSource          *settle;
  char             *addresses;      /* the local interfaces' addresses, sorted */
  char             *base;           /* the selected pair's local base address */
  gboolean          restarting;
  guint             generation;     /* our ICE restarts so far */
  GSource          *restart_timer;
};

static Ice *
ice_ref (Ice *ice)
{
  ice->refs++;
  return ice;
}

static void
clear_source (GSource **source)
{
  if (*source)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static GSource *
add_source (GSource     *source,
            GSourceFunc  func,
            gpointer     data,
            const char  *name)
{
  g_source_set_callback (source, func, data, NULL);
  g_source_set_static_name (source, name);
  g_source_attach (source, g_main_context_get_thread_default ());
  return source;
}

static void
agent_closed_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  /* TURN allocations are released (Refresh with lifetime 0): the agent
   * can go */
  g_object_unref (source);
}

/* What arrives while the agent closes (the peer's checks, the TURN
 * server's answers) is read and dropped: with no receive callback at all
 * libnice leaves it in the socket, whose source then fires without end,
 * a busy main loop until the close completes (seconds with TURN). */
static void
discard_recv_cb (NiceAgent *agent,
                 guint      stream_id,
                 guint      component_id,
                 guint      len,
                 gchar     *buf,
                 gpointer   user_data)
{
}

static void
ice_unref (Ice *ice)
{
  if (--ice->refs > 0)
    return;
  g_assert (ice->dead);
  if (ice->agent)
    {
      nice_agent_attach_recv (ice->agent, ice->stream_id, 1,
                              g_main_context_get_thread_default (),
                              discard_recv_cb, NULL);
      nice_agent_close_async (ice->agent, agent_closed_cb, NULL);
      ice->agent = NULL;
    }
  g_free (ice->relay_transport);
  g_free (ice->server_problems);
  g_clear_pointer (&ice->servers, g_ptr_array_unref);
  g_free (ice->session_id);
  g_free (ice->peer_id);
  g_array_unref (ice->pending);
  g_free (ice->remote_ufrag);
  g_hash_table_unref (ice->seen);
  g_queue_clear_full (&ice->early, (GDestroyNotify) g_bytes_unref);
  g_free (ice->addresses);
  g_free (ice->base);
  g_free (ice);
}

static gboolean
deferred_unref_cb (gpointer data)
{
  ice_unref (data);
  return G_SOURCE_REMOVE;
}

/* Stops everything that could call back into us; the agent itself is
 * closed from an idle (this may run inside one of its signals) */
static void
ice_shutdown (Ice *ice)
{
  GSource *idle;

  if (ice->dead)
    return;
  ice->dead = TRUE;
  /* the attempt's task was returned (it holds the Attempt that holds us) */
  g_warn_if_fail (ice->task == NULL);
  ice->path = NULL;
  if (ice->message_id)
    g_signal_handler_disconnect (ice->signaling, ice->message_id);
  ice->message_id = 0;
  g_clear_object (&ice->signaling);
  if (ice->network_id)
    g_signal_handler_disconnect (ice->monitor, ice->network_id);
  ice->network_id = 0;
  g_clear_object (&ice->monitor);
  if (ice->agent)
    g_signal_handlers_disconnect_by_data (ice->agent, ice);
  clear_source (&ice->flush);
  clear_source (&ice->early_idle);
  clear_source (&ice->timer);
  clear_source (&ice->cancel);
  clear_source (&ice->settle);
  clear_source (&ice->restart_timer);
  idle = g_idle_source_new ();
  add_source (idle, deferred_unref_cb, ice_ref (ice), "[natkit-ice] close agent");
  g_source_unref (idle);
}

static const char *
nice_type_word (NiceCandidateType type)
{
  switch (type)
    {
    case NICE_CANDIDATE_TYPE_HOST:
      return "host";
    case NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE:
      return "srflx";
    case NICE_CANDIDATE_TYPE_PEER_REFLEXIVE:
      return "prflx";
    default:
      return "relay";
    }
}

static char *
describe_nice (const NiceCandidate *c)
{
  char ip[NICE_ADDRESS_STRING_LEN];

  nice_address_to_string (&c->addr, ip);
  if (strchr (ip, ':'))
    return g_strdup_printf ("[%s]:%u/udp", ip, nice_address_get_port (&c->addr));
  return g_strdup_printf ("%s:%u/udp", ip, nice_address_get_port (&c->addr));
}

static char *
count_words (const guint types[4])
{
  GString *s = g_string_new (NULL);

  for (guint t = 0; t < 4; t++)
    if (types[t] > 0)
      g_string_append_printf (s, "%s%u %s", s->len ? ", " : "", types[t],
                              natkit_ice_candidate_type_to_string (t));
  if (s->len == 0)
    g_string_append (s, "none");
  return g_string_free (s, FALSE);
}

/* ---- the path ----------------------------------------------------------- */

struct _NatkitIcePath
{
  NatkitPath  parent_instance;
  Ice        *ice;
};

G_DEFINE_FINAL_TYPE (NatkitIcePath, natkit_ice_path, NATKIT_TYPE_PATH)

static gboolean
natkit_ice_path_send (NatkitPath  *path,
                      GBytes      *datagram,
                      GError     **error)
{
  NatkitIcePath *self = NATKIT_ICE_PATH (path);
  gsize size;
  const char *data = g_bytes_get_data (datagram, &size);

  if (self->ice->dead || self->ice->agent == NULL)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                   "the ICE path to %s is closed", self->ice->peer_id);
      return FALSE;
    }
  /* UDP semantics: a datagram the agent cannot take now (no selected
   * pair during a restart, a full buffer) is lost; the keepalive notices
   * a path that stays dead */
  nice_agent_send (self->ice->agent, self->ice->stream_id, 1, size, data);
  return TRUE;
}

static void
natkit_ice_path_close (NatkitPath *path)
{
  NatkitIcePath *self = NATKIT_ICE_PATH (path);

  if (self->ice)
    ice_shutdown (self->ice);
}

static void
natkit_ice_path_finalize (GObject *object)
{
  NatkitIcePath *self = NATKIT_ICE_PATH (object);

  if (self->ice)
    {
      ice_shutdown (self->ice);
      ice_unref (self->ice);
    }
  G_OBJECT_CLASS (natkit_ice_path_parent_class)->finalize (object);
}

static void
natkit_ice_path_class_init (NatkitIcePathClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_ice_path_finalize;
  NATKIT_PATH_CLASS (klass)->send = natkit_ice_path_send;
  NATKIT_PATH_CLASS (klass)->close = natkit_ice_path_close;
}

static void
natkit_ice_path_init (NatkitIcePath *self)
{
}

static void
path_fail (Ice        *ice,
           const char *format,
           ...) G_GNUC_PRINTF (2, 3);

static void
path_fail (Ice        *ice,
           const char *format,
           ...)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIcePath) path = NULL;
  va_list args;

  if (ice->path == NULL)
    return;
  path = g_object_ref (ice->path);
  va_start (args, format);
  error = g_error_new_valist (NATKIT_ERROR, NATKIT_ERROR_FAILED, format, args);
  va_end (args);
  natkit_path_fail (NATKIT_PATH (path), error);
}

/* ---- signaling ---------------------------------------------------------- */

/* A body sent during an ICE restart: the network just changed, and the
 * signaling channel may be reconnecting (its old connection went with the
 * old address), so a body it could not take is sent again every second
 * until the restart ends */
typedef struct
{
  Ice  *ice;
  char *text;
  guint generation;
} Sending;

static void sent_cb (GObject *source, GAsyncResult *result, gpointer user_data);

static void
sending_free (Sending *sending)
{
  if (sending->ice != NULL)
    ice_unref (sending->ice);
  g_free (sending->text);
  g_free (sending);
}

static gboolean
resend_cb (gpointer user_data)
{
  Sending *sending = user_data;
  Ice *ice = sending->ice;

  if (ice->dead || !ice->restarting || sending->generation != ice->generation)
    {
      sending_free (sending);
      return G_SOURCE_REMOVE;
    }
  g_debug ("sending the ICE restart body to %s again", ice->peer_id);
  natkit_signaling_send_async (ice->signaling, ice->peer_id, sending->text, NULL, sent_cb,
                               sending);
  return G_SOURCE_REMOVE;
}

static void
sent_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Sending *sending = user_data;
  g_autoptr(GError) error = NULL;
  Ice *ice = sending->ice;

  if (natkit_signaling_send_finish (NATKIT_SIGNALING (source), result, &error))
    {
      sending_free (sending);
      return;
    }
  g_debug ("could not send ICE candidates: %s", error->message);
  if (ice->dead || !ice->restarting || sending->generation != ice->generation)
    {
      sending_free (sending);
      return;
    }
  g_source_unref (add_source (g_timeout_source_new (RESEND_MS), resend_cb, sending,
                              "[natkit-ice] resend"));
}

static gboolean
flush_cb (gpointer user_data)
{
  Ice *ice = user_data;
  g_autofree char *ufrag = NULL;
  g_autofree char *pwd = NULL;
  g_autofree char *text = NULL;
  gboolean end;

  g_clear_pointer (&ice->flush, g_source_unref);
  if (ice->dead)
    return G_SOURCE_REMOVE;
  if (!nice_agent_get_local_credentials (ice->agent, ice->stream_id, &ufrag, &pwd))
    {
      g_debug ("libnice has no ICE credentials for the stream to %s", ice->peer_id);
      return G_SOURCE_REMOVE;
    }
  end = ice->gathered && !ice->end_sent;
  if (ice->pending->len == 0 && !end)
    return G_SOURCE_REMOVE;
  text = natkit_ice_message_build (ice->session_id, ufrag, pwd,
                                   (NatkitIceCandidate *) ice->pending->data,
                                   ice->pending->len, end, ice->generation > 0);
  g_debug ("sending %u ICE candidates%s to %s", ice->pending->len,
           end ? " and end-of-candidates" : "", ice->peer_id);
  g_array_set_size (ice->pending, 0);
  if (end)
    ice->end_sent = TRUE;
  {
    Sending *sending = g_new0 (Sending, 1);

    sending->ice = ice_ref (ice);
    sending->text = g_strdup (text);
    sending->generation = ice->generation;
    natkit_signaling_send_async (ice->signaling, ice->peer_id, text, NULL, sent_cb, sending);
  }
  return G_SOURCE_REMOVE;
}

static void
schedule_flush (Ice *ice)
{
  if (ice->flush == NULL && !ice->dead)
    {
      GSource *idle = g_idle_source_new ();

      g_source_set_priority (idle, G_PRIORITY_DEFAULT);
      ice->flush = add_source (idle, flush_cb, ice, "[natkit-ice] trickle");
    }
}

static void
queue_local (Ice                 *ice,
             const NiceCandidate *c)
{
  NatkitIceCandidate out = { 0 };
  struct sockaddr_storage native;

  if (c->transport != NICE_CANDIDATE_TRANSPORT_UDP || c->component_id != 1)
    return;
  if (ice->local_count >= NATKIT_ICE_MAX_CANDIDATES)
    {
      g_debug ("not sending a %s candidate: %d sent already", nice_type_word (c->type),
               NATKIT_ICE_MAX_CANDIDATES);
      return;
    }
  nice_address_copy_to_sockaddr (&c->addr, (struct sockaddr *) &native);
  out.address = G_INET_SOCKET_ADDRESS (g_socket_address_new_from_native (&native, sizeof native));
  if (out.address == NULL)
    return;
  out.type = c->type == NICE_CANDIDATE_TYPE_HOST ? NATKIT_ICE_CANDIDATE_HOST :
             c->type == NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE ? NATKIT_ICE_CANDIDATE_SRFLX :
             c->type == NICE_CANDIDATE_TYPE_PEER_REFLEXIVE ? NATKIT_ICE_CANDIDATE_PRFLX :
             NATKIT_ICE_CANDIDATE_RELAY;
  out.priority = c->priority ? c->priority : 1;
  g_strlcpy (out.foundation, c->foundation, sizeof out.foundation);
  for (char *p = out.foundation; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '+' && *p != '/')
      *p = '0';
  if (out.foundation[0] == '\0')
    g_strlcpy (out.foundation, "0", sizeof out.foundation);
  ice->local_count++;
  ice->local_types[out.type]++;
  g_array_append_val (ice->pending, out);
  schedule_flush (ice);
}

/* Private ranges: 10/8, 172.16/12, 192.168/16, 100.64/10 (carrier-grade
 * NAT), fc00::/7 */
static gboolean
is_private (GInetAddress *ip)
{
  const guint8 *b = g_inet_address_to_bytes (ip);

  if (g_inet_address_get_family (ip) == G_SOCKET_FAMILY_IPV4)
    return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
           (b[0] == 192 && b[1] == 168) || (b[0] == 100 && (b[1] & 0xc0) == 64);
  return (b[0] & 0xfe) == 0xfc;
}

/* Whether @ip is on the subnet of one of this host's interfaces */
static gboolean
is_on_link (GInetAddress *ip)
{
  struct ifaddrs *list = NULL;
  gboolean found = FALSE;
  GSocketFamily family = g_inet_address_get_family (ip);
  const guint8 *want = g_inet_address_to_bytes (ip);
  gsize len = g_inet_address_get_native_size (ip);

  if (getifaddrs (&list) != 0)
    return FALSE;
  for (struct ifaddrs *i = list; i != NULL && !found; i = i->ifa_next)
    {
      const guint8 *addr, *mask;

      if (i->ifa_addr == NULL || i->ifa_netmask == NULL || !(i->ifa_flags & IFF_UP))
        continue;
      if (family == G_SOCKET_FAMILY_IPV4 && i->ifa_addr->sa_family == AF_INET)
        {
          addr = (const guint8 *) &((struct sockaddr_in *) i->ifa_addr)->sin_addr;
          mask = (const guint8 *) &((struct sockaddr_in *) i->ifa_netmask)->sin_addr;
        }
      else if (family == G_SOCKET_FAMILY_IPV6 && i->ifa_addr->sa_family == AF_INET6)
        {
          addr = (const guint8 *) &((struct sockaddr_in6 *) i->ifa_addr)->sin6_addr;
          mask = (const guint8 *) &((struct sockaddr_in6 *) i->ifa_netmask)->sin6_addr;
        }
      else
        continue;
      found = TRUE;
      for (gsize k = 0; k < len && found; k++)
        found = (addr[k] & mask[k]) == (want[k] & mask[k]);
    }
  freeifaddrs (list);
  return found;
}

/* The peer's candidates that may be paired: the reason when not */
static const char *
remote_forbidden (Ice                      *ice,
                  const NatkitIceCandidate *c)
{
  GInetAddress *ip = g_inet_socket_address_get_address (c->address);

  /* a peer's private address that is not on one of our subnets is
   * another network's: no check could reach it, and sending there would
   * probe whatever has that address on ours (libnice 0.1.21 also stops
   * relaying through a TURN allocation once it made a permission for an
   * address the TURN server cannot reach) */
  if (!ice->loopback && is_private (ip) && !is_on_link (ip))
    return "a private address that is not on any of this host's subnets";
  if (g_inet_address_get_is_loopback (ip) && !ice->loopback)
    return "a loopback address, and this agent is not on loopback";
  if (!g_inet_address_get_is_loopback (ip) && ice->loopback)
    return "not a loopback address, and this agent is on loopback only";
  if (ice->remote_count >= NATKIT_ICE_MAX_CANDIDATES)
    return "more candidates than the 32 one attempt takes";
  return NULL;
}

static void start_restart (Ice *ice, gboolean ours);

static void
handle_message (Ice              *ice,
                NatkitIceMessage *m)
{
  GSList *list = NULL;
  guint added = 0;

  for (guint i = 0; i < m->dropped->len; i++)
    g_debug ("dropped an ICE candidate from %s: %s", ice->peer_id,
             (const char *) g_ptr_array_index (m->dropped, i));
  ice->dropped += m->dropped->len;

  /* a body of a path that restarted belongs to that path, never to an
   * attempt; an attempt's body (the manager runs ice again in the same
   * session after a path was lost) never restarts a live path */
  if (ice->path == NULL && m->restart &&
      (ice->remote_ufrag == NULL || !g_str_equal (ice->remote_ufrag, m->ufrag)))
    {
      g_debug ("ignoring an ICE restart body from %s during an attempt", ice->peer_id);
      return;
    }
  if (ice->path != NULL && !m->restart &&
      (ice->remote_ufrag == NULL || !g_str_equal (ice->remote_ufrag, m->ufrag)))
    {
      g_debug ("ignoring another ICE attempt's body (ufrag %s) from %s on the live path",
               m->ufrag, ice->peer_id);
      return;
    }
  if (ice->remote_ufrag == NULL)
    {
      ice->remote_ufrag = g_strdup (m->ufrag);
      nice_agent_set_remote_credentials (ice->agent, ice->stream_id, m->ufrag, m->pwd);
    }
  else if (!g_str_equal (ice->remote_ufrag, m->ufrag))
    {
      if (ice->path == NULL)
        {
          g_debug ("ignoring ICE candidates of another generation (ufrag %s) from %s "
                   "during the attempt", m->ufrag, ice->peer_id);
          return;
        }
      /* the peer restarted ICE (its network changed): so do we */
      g_debug ("%s restarted ICE (new ufrag %s)", ice->peer_id, m->ufrag);
      if (!ice->restarting)
        start_restart (ice, FALSE);
      g_free (ice->remote_ufrag);
      ice->remote_ufrag = g_strdup (m->ufrag);
      g_hash_table_remove_all (ice->seen);
      ice->remote_count = 0;
      memset (ice->remote_types, 0, sizeof ice->remote_types);
      ice->remote_end = FALSE;
      nice_agent_set_remote_credentials (ice->agent, ice->stream_id, m->ufrag, m->pwd);
    }

  for (guint i = 0; i < m->candidates->len; i++)
    {
      NatkitIceCandidate *c = &g_array_index (m->candidates, NatkitIceCandidate, i);
      g_autofree char *ip = g_inet_address_to_string (g_inet_socket_address_get_address (c->address));
      guint16 port = g_inet_socket_address_get_port (c->address);
      g_autofree char *key = g_strdup_printf ("%s %s %u", natkit_ice_candidate_type_to_string (c->type),
                                              ip, port);
      const char *why = remote_forbidden (ice, c);
      NiceCandidate *nc;
      struct sockaddr_storage native;

      if (why == NULL && g_hash_table_contains (ice->seen, key))
        why = "a duplicate";
      if (why == NULL && natkit_address_is_virtual (g_inet_socket_address_get_address (c->address)))
        why = "an address of this node's virtual network (the path would run inside its own tunnel)";
      if (why != NULL)
        {
          g_debug ("dropped ICE candidate %s:%u (%s) from %s: %s", ip, port,
                   natkit_ice_candidate_type_to_string (c->type), ice->peer_id, why);
          ice->dropped++;
          continue;
        }
      if (!g_socket_address_to_native (G_SOCKET_ADDRESS (c->address), &native,
                                       sizeof native, NULL))
        continue;
      g_hash_table_add (ice->seen, g_steal_pointer (&key));
      nc = nice_candidate_new (c->type == NATKIT_ICE_CANDIDATE_HOST ? NICE_CANDIDATE_TYPE_HOST :
                               c->type == NATKIT_ICE_CANDIDATE_SRFLX ? NICE_CANDIDATE_TYPE_SERVER_REFLEXIVE :
                               c->type == NATKIT_ICE_CANDIDATE_PRFLX ? NICE_CANDIDATE_TYPE_PEER_REFLEXIVE :
                               NICE_CANDIDATE_TYPE_RELAYED);
      nc->transport = NICE_CANDIDATE_TRANSPORT_UDP;
      nc->stream_id = ice->stream_id;
      nc->component_id = 1;
      nc->priority = c->priority;
      nice_address_set_from_sockaddr (&nc->addr, (struct sockaddr *) &native);
      nc->base_addr = nc->addr;
      g_strlcpy (nc->foundation, c->foundation, sizeof nc->foundation);
      list = g_slist_prepend (list, nc);
      ice->remote_count++;
      ice->remote_types[c->type]++;
      added++;
    }
  if (list != NULL)
    {
      list = g_slist_reverse (list);
      nice_agent_set_remote_candidates (ice->agent, ice->stream_id, 1, list);
      g_slist_free_full (list, (GDestroyNotify) nice_candidate_free);
      g_debug ("%s sent %u ICE candidates (%u in all)", ice->peer_id, added, ice->remote_count);
    }
  if (m->end && !ice->remote_end)
    {
      ice->remote_end = TRUE;
      g_debug ("%s gathered all its ICE candidates", ice->peer_id);
      nice_agent_peer_candidate_gathering_done (ice->agent, ice->stream_id);
    }
}

static void
message_cb (NatkitSignaling *signaling,
            const char      *from,
            const char      *text,
            gpointer         user_data)
{
  Ice *ice = user_data;
  g_autoptr(NatkitIceMessage) m = NULL;
  g_autoptr(GError) error = NULL;

  if (ice->dead || g_strcmp0 (from, ice->peer_id) != 0 || text == NULL ||
      strstr (text, "\"ice\"") == NULL)
    return;
  m = natkit_ice_message_parse (text, &error);
  if (m == NULL)
    {
      if (strstr (text, ice->session_id) != NULL)
        g_debug ("ignoring an ICE message from %s: %s", from, error->message);
      return;
    }
  if (!g_str_equal (m->session, ice->session_id))
    return;
  ice_ref (ice);
  handle_message (ice, m);
  ice_unref (ice);
}

/* ---- the attempt -------------------------------------------------------- */

typedef struct
{
  Ice *ice;   /* NULL once the path took it */
} Attempt;

static void
attempt_free (gpointer data)
{
  Attempt *a = data;

  if (a->ice)
    {
      ice_shutdown (a->ice);
      ice_unref (a->ice);
    }
  g_free (a);
}

static void
attempt_fail (Ice    *ice,
              GError *error)
{
  g_autoptr(GTask) task = NULL;

  if (ice->task == NULL)
    {
      g_error_free (error);
      return;
    }
  task = g_steal_pointer (&ice->task);
  /* a server we could not use may be why (no relayed candidates) */
  if (ice->server_problems != NULL &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      GError *told = g_error_new (error->domain, error->code, "%s; %s", error->message,
                                  ice->server_problems);

      g_error_free (error);
      error = told;
    }
  ice_shutdown (ice);
  g_task_return_error (task, error);
}

static gboolean
early_idle_cb (gpointer user_data)
{
  Ice *ice = user_data;
  g_autoptr(NatkitIcePath) path = NULL;
  GBytes *datagram;

  g_clear_pointer (&ice->early_idle, g_source_unref);
  if (ice->path == NULL)
    return G_SOURCE_REMOVE;
  path = g_object_ref (ice->path);
  while ((datagram = g_queue_pop_head (&ice->early)) != NULL &&
         !natkit_path_is_closed (NATKIT_PATH (path)))
    {
      natkit_path_deliver (NATKIT_PATH (path), datagram);
      g_bytes_unref (datagram);
    }
  if (datagram)
    g_bytes_unref (datagram);
  return G_SOURCE_REMOVE;
}

static gint
compare_strings (gconstpointer a,
                 gconstpointer b)
{
  return g_strcmp0 (*(const char * const *) a, *(const char * const *) b);
}

/* With a virtual network up in this process, host candidates come from
 * the other interfaces only (libnice would gather on the tunnel too). */
static void
add_real_addresses (NiceAgent *agent)
{
  struct ifaddrs *list = NULL;
  gboolean any_virtual = FALSE;

  if (getifaddrs (&list) != 0)
    return;
  for (int pass = 0; pass < 2; pass++)
    for (struct ifaddrs *i = list; i != NULL; i = i->ifa_next)
      {
        g_autoptr(GSocketAddress) address = NULL;
        GInetAddress *ip;
        NiceAddress addr;

        if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK) ||
            (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
          continue;
        address = g_socket_address_new_from_native (i->ifa_addr,
                                                    i->ifa_addr->sa_family == AF_INET ?
                                                    sizeof (struct sockaddr_in) :
                                                    sizeof (struct sockaddr_in6));
        if (address == NULL)
          continue;
        ip = g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address));
        if (pass == 0)
          any_virtual = any_virtual || natkit_address_is_virtual (ip);
        else if (any_virtual && !natkit_address_is_virtual (ip) &&
                 !g_inet_address_get_is_link_local (ip))
          {
            nice_address_set_from_sockaddr (&addr, i->ifa_addr);
            nice_agent_add_local_address (agent, &addr);
          }
      }
  freeifaddrs (list);
}

static char *
local_addresses (void)
{
  struct ifaddrs *list = NULL;
  g_autoptr(GPtrArray) all = g_ptr_array_new_with_free_func (g_free);

  if (getifaddrs (&list) != 0)
    return g_strdup ("");
  for (struct ifaddrs *i = list; i != NULL; i = i->ifa_next)
    {
      g_autoptr(GSocketAddress) address = NULL;

      if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP) ||
          (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
        continue;
      address = g_socket_address_new_from_native (i->ifa_addr,
                                                  i->ifa_addr->sa_family == AF_INET ?
                                                  sizeof (struct sockaddr_in) :
                                                  sizeof (struct sockaddr_in6));
      if (address)
        g_ptr_array_add (all, g_inet_address_to_string (
          g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (address))));
    }
  freeifaddrs (list);
  g_ptr_array_sort (all, compare_strings);
  g_ptr_array_add (all, NULL);
  return g_strjoinv (" ", (char **) all->pdata);
}

static gboolean
restart_timeout_cb (gpointer user_data)
{
  Ice *ice = user_data;

  g_clear_pointer (&ice->restart_timer, g_source_unref);
  path_fail (ice, "the ICE restart with %s after a network change found no working "
             "pair in %d s", ice->peer_id, RESTART_MS / 1000);
  return G_SOURCE_REMOVE;
}

static void recv_cb (NiceAgent *agent, guint stream_id, guint component_id, guint len,
                     gchar *buf, gpointer user_data);

/* Replaces the stream by a new one (new credentials) with the same TURN
 * servers, and starts gathering on it; the old one's signals are ignored
 * from here on (they carry its id) */
static gboolean
renew_stream (Ice *ice)
{
  guint old = ice->stream_id;
  guint id = nice_agent_add_stream (ice->agent, 1);

  if (id == 0)
    return FALSE;
  nice_agent_attach_recv (ice->agent, old, 1, NULL, NULL, NULL);
  ice->stream_id = id;
  nice_agent_remove_stream (ice->agent, old);
  for (guint i = 0; ice->servers != NULL && i < ice->servers->len; i++)
    {
      Server *s = g_ptr_array_index (ice->servers, i);

      if (s->turn && s->ip != NULL &&
          !nice_agent_set_relay_info (ice->agent, id, 1, s->ip, s->port, s->username,
                                      s->password, s->relay_type))
        g_debug ("TURN server %s: libnice refused it on the new stream", s->name);
    }
  nice_agent_attach_recv (ice->agent, id, 1, g_main_context_get_thread_default (), recv_cb, ice);
  ice->gathered = FALSE;
  ice->state = NICE_COMPONENT_STATE_DISCONNECTED;
  g_debug ("ICE with %s: stream %u replaces stream %u, gathering again", ice->peer_id, id, old);
  return nice_agent_gather_candidates (ice->agent, id);
}

/* An ICE restart (RFC 8445 9): new credentials, the checks start over
 * with the candidates both sides send again. @ours: we saw the network
 * change (else the peer did, and its new credentials just came) */
static void
start_restart (Ice      *ice,
               gboolean  ours)
{
  GSList *locals;

  ice->restarting = TRUE;
  ice->generation++;
  clear_source (&ice->restart_timer);
  ice->restart_timer = add_source (g_timeout_source_new (RESTART_MS), restart_timeout_cb, ice,
                                   "[natkit-ice] restart");
  if (ours)
    {
      /* libnice 0.1.21's nice_agent_restart_stream() keeps the candidates
       * gathered before, and nice_agent_gather_candidates() does not
       * gather a stream twice: those of an address that went away would
       * be all the peer gets. A new stream gathers from the addresses the
       * host has now (new credentials too) */
      if (!renew_stream (ice))
        {
          path_fail (ice, "could not restart ICE with %s after a network change: libnice "
                     "could not gather candidates on a new stream", ice->peer_id);
          return;
        }
    }
  else if (!nice_agent_restart_stream (ice->agent, ice->stream_id))
    {
      path_fail (ice, "could not restart ICE with %s after a network change", ice->peer_id);
      return;
    }
  if (ours)
    {
      /* the peer's candidates are of its old generation until it answers */
      g_clear_pointer (&ice->remote_ufrag, g_free);
      g_hash_table_remove_all (ice->seen);
      ice->remote_count = 0;
      memset (ice->remote_types, 0, sizeof ice->remote_types);
      ice->remote_end = FALSE;
    }
  g_array_set_size (ice->pending, 0);
  ice->local_count = 0;
  memset (ice->local_types, 0, sizeof ice->local_types);
  ice->end_sent = FALSE;
  if (!ours)
    {
      /* the same candidates, under the new credentials */
      locals = nice_agent_get_local_candidates (ice->agent, ice->stream_id, 1);
      for (GSList *l = locals; l; l = l->next)
        queue_local (ice, l->data);
      g_slist_free_full (locals, (GDestroyNotify) nice_candidate_free);
      ice->gathered = TRUE;
    }
  /* (ours: the new stream's candidates come as gathered, trickled) */
  schedule_flush (ice);
  g_debug ("restarting ICE with %s (%s)", ice->peer_id,
           ours ? "the local network changed" : "the peer asked");
}

static gboolean
settle_cb (gpointer user_data)
{
  Ice *ice = user_data;
  g_autofree char *now = local_addresses ();

  g_clear_pointer (&ice->settle, g_source_unref);
  if (ice->path == NULL || g_strcmp0 (now, ice->addresses) == 0)
    return G_SOURCE_REMOVE;
  g_debug ("the local addresses changed (%s → %s)", ice->addresses, now);
  g_free (ice->addresses);
  ice->addresses = g_steal_pointer (&now);
  /* an address that came or went elsewhere does not concern the path */
  if (ice->base && !ice->restarting)
    {
      g_auto(GStrv) list = g_strsplit (ice->addresses, " ", -1);

      if (g_strv_contains ((const char * const *) list, ice->base))
        {
          g_debug ("the selected pair's local address %s is still here: no ICE restart",
                   ice->base);
          return G_SOURCE_REMOVE;
        }
    }
  start_restart (ice, TRUE);
  return G_SOURCE_REMOVE;
}

static void
network_changed_cb (GNetworkMonitor *monitor,
                    gboolean         available,
                    gpointer         user_data)
{
  Ice *ice = user_data;

  clear_source (&ice->settle);
  ice->settle = add_source (g_timeout_source_new (NETWORK_SETTLE_MS), settle_cb, ice,
                            "[natkit-ice] network changed");
}

static void
become_path (Ice *ice)
{
  g_autoptr(GTask) task = g_steal_pointer (&ice->task);
  Attempt *a = g_task_get_task_data (task);
  NiceCandidate *local = NULL, *remote = NULL;
  g_autofree char *laddr = NULL;
  g_autofree char *raddr = NULL;
  g_autofree char *ldesc = NULL;
  g_autofree char *rdesc = NULL;
  const char *transport = "udp";
  NatkitIcePath *path;

  if (!nice_agent_get_selected_pair (ice->agent, ice->stream_id, 1, &local, &remote))
    {
      ice->task = g_steal_pointer (&task);
      attempt_fail (ice, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                      "ICE with %s was ready without a selected pair",
                                      ice->peer_id));
      return;
    }
  laddr = describe_nice (local);
  raddr = describe_nice (remote);
  /* "turn-udp"… through our own TURN allocation, "turn" through the
   * peer's (its transport to its server is its own business) */
  if (local->type == NICE_CANDIDATE_TYPE_RELAYED)
    transport = ice->relay_transport ? ice->relay_transport : "turn";
  else if (remote->type == NICE_CANDIDATE_TYPE_RELAYED)
    transport = "turn";
  {
    char base[NICE_ADDRESS_STRING_LEN];

    /* a relayed candidate's base is the TURN server's side: no local
     * interface to watch (NULL: any change restarts) */
    nice_address_to_string (&local->base_addr, base);
    if (local->type != NICE_CANDIDATE_TYPE_RELAYED && nice_address_is_valid (&local->base_addr))
      ice->base = g_strdup (base);
  }
  ldesc = g_strdup_printf ("%s (ice %s)", laddr, nice_type_word (local->type));
  rdesc = g_strdup_printf ("%s (ice %s)", raddr, nice_type_word (remote->type));
  path = g_object_new (NATKIT_TYPE_ICE_PATH,
                       "method", "ice",
                       "transport", transport,
                       "local-address", ldesc,
                       "remote-address", rdesc,
                       "mtu", PATH_MTU,
                       /* through a TURN server: the manager keeps looking
                        * for a direct path and says it is relayed */
                       "relayed", local->type == NICE_CANDIDATE_TYPE_RELAYED ||
                                  remote->type == NICE_CANDIDATE_TYPE_RELAYED,
                       NULL);
  path->ice = a->ice;
  a->ice = NULL;
  ice->path = path;
  clear_source (&ice->timer);
  clear_source (&ice->cancel);
  g_debug ("ICE with %s selected %s ↔ %s (%s): %u local and %u remote candidates, "
           "%u of the peer's dropped", ice->peer_id, ldesc, rdesc, transport,
           ice->local_count, ice->remote_count, ice->dropped);

  /* the local network changing restarts ICE (RFC 8445 2.4) */
  ice->monitor = g_object_ref (g_network_monitor_get_default ());
  ice->addresses = local_addresses ();
  ice->network_id = g_signal_connect (ice->monitor, "network-changed",
                                      G_CALLBACK (network_changed_cb), ice);
  if (!g_queue_is_empty (&ice->early))
    ice->early_idle = add_source (g_idle_source_new (), early_idle_cb, ice,
                                  "[natkit-ice] early datagrams");
  g_task_return_pointer (task, path, g_object_unref);
}

static void
component_state_cb (NiceAgent *agent,
                    guint      stream_id,
                    guint      component_id,
                    guint      state,
                    gpointer   user_data)
{
  Ice *ice = user_data;
  NiceComponentState previous = ice->state;

  if (ice->dead || stream_id != ice->stream_id || component_id != 1)
    return;
  ice->state = state;
  g_debug ("ICE with %s: %s", ice->peer_id, nice_component_state_to_string (state));
  ice_ref (ice);
  if (ice->task)
    {
      if (state == NICE_COMPONENT_STATE_READY)
        become_path (ice);
      else if (state == NICE_COMPONENT_STATE_FAILED)
        {
          g_autofree char *ours = count_words (ice->local_types);
          g_autofree char *theirs = count_words (ice->remote_types);

          attempt_fail (ice, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                          "ICE with %s found no working candidate pair "
                                          "(our candidates: %s; the peer's: %s)%s",
                                          ice->peer_id, ours, theirs,
                                          ice->local_types[NATKIT_ICE_CANDIDATE_RELAY] +
                                          ice->remote_types[NATKIT_ICE_CANDIDATE_RELAY] == 0 &&
                                          ice->server_problems == NULL ?
                                          ". Where no direct path can work, configure a TURN "
                                          "server (\"turn\" in config.json, or nat-tool --turn)" :
                                          ""));
        }
    }
  else if (ice->path)
    {
      if (state == NICE_COMPONENT_STATE_READY && ice->restarting)
        {
          NiceCandidate *local = NULL, *remote = NULL;

          ice->restarting = FALSE;
          clear_source (&ice->restart_timer);
          /* the address to watch is the new pair's */
          g_clear_pointer (&ice->base, g_free);
          if (nice_agent_get_selected_pair (ice->agent, ice->stream_id, 1, &local, &remote) &&
              local->type != NICE_CANDIDATE_TYPE_RELAYED &&
              nice_address_is_valid (&local->base_addr))
            {
              char base[NICE_ADDRESS_STRING_LEN];

              nice_address_to_string (&local->base_addr, base);
              ice->base = g_strdup (base);
            }
          g_debug ("the ICE restart with %s succeeded (local base %s)", ice->peer_id,
                   ice->base ? ice->base : "relayed");
        }
      else if (state == NICE_COMPONENT_STATE_FAILED && ice->restarting)
        path_fail (ice, "the ICE restart with %s after a network change found no "
                   "working pair", ice->peer_id);
      else if (state == NICE_COMPONENT_STATE_FAILED &&
               previous != NICE_COMPONENT_STATE_FAILED)
        path_fail (ice, "%s stopped answering ICE consent checks (RFC 7675): "
                   "consent to send on the selected pair expired", ice->peer_id);
    }
  ice_unref (ice);
}

static void
new_candidate_cb (NiceAgent     *agent,
                  NiceCandidate *candidate,
                  gpointer       user_data)
{
  Ice *ice = user_data;

  if (ice->dead || candidate->stream_id != ice->stream_id)
    return;
  g_debug ("gathered a %s ICE candidate", nice_type_word (candidate->type));
  queue_local (ice, candidate);
}

static void
gathering_done_cb (NiceAgent *agent,
                   guint      stream_id,
                   gpointer   user_data)
{
  Ice *ice = user_data;

  if (ice->dead || stream_id != ice->stream_id)
    return;
  ice->gathered = TRUE;
  g_debug ("gathered all ICE candidates for %s", ice->peer_id);
  schedule_flush (ice);
}

static void
recv_cb (NiceAgent *agent,
         guint      stream_id,
         guint      component_id,
         guint      len,
         gchar     *buf,
         gpointer   user_data)
{
  Ice *ice = user_data;
  g_autoptr(GBytes) datagram = NULL;

  if (ice->dead || len == 0)
    return;
  datagram = g_bytes_new (buf, len);
  if (ice->path && g_queue_is_empty (&ice->early))
    {
      g_autoptr(NatkitIcePath) path = g_object_ref (ice->path);

      natkit_path_deliver (NATKIT_PATH (path), datagram);
      return;
    }
  /* the initiator's first records may come before this side is READY */
  if (ice->early.length < MAX_EARLY)
    g_queue_push_tail (&ice->early, g_steal_pointer (&datagram));
}

static gboolean
timer_cb (gpointer user_data)
{
  Ice *ice = user_data;
  g_autofree char *ours = count_words (ice->local_types);
  g_autofree char *theirs = count_words (ice->remote_types);

  g_clear_pointer (&ice->timer, g_source_unref);
  if (ice->remote_ufrag == NULL)
    attempt_fail (ice, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                    "no ICE answer from %s in %.1f s: it sent no "
                                    "credentials or candidates (is the ice plugin "
                                    "enabled on the peer?)", ice->peer_id,
                                    ice->timeout_ms / 1000.0));
  else
    attempt_fail (ice, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                    "ICE checks with %s found no working pair in %.1f s "
                                    "(our candidates: %s; the peer's: %s%s)", ice->peer_id,
                                    ice->timeout_ms / 1000.0, ours, theirs,
                                    ice->remote_end ? "" : ", not all sent yet"));
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled_cb (GCancellable *cancellable,
              gpointer      user_data)
{
  Ice *ice = user_data;

  g_clear_pointer (&ice->cancel, g_source_unref);
  attempt_fail (ice, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "ICE was cancelled"));
  return G_SOURCE_REMOVE;
}

/* ---- servers ------------------------------------------------------------ */

static const char *
relay_type_word (NiceRelayType type)
{
  switch (type)
    {
    case NICE_RELAY_TYPE_TURN_UDP:
      return "turn-udp";
    case NICE_RELAY_TYPE_TURN_TCP:
      return "turn-tcp";
    default:
      return "turn-tls";
    }
}

/* turn:HOST[:PORT][?transport=udp|tcp] or turns:HOST[:PORT] (RFC 7065).
 * Without a transport, turn: is UDP, or TCP on a network that blocks UDP */
static Server *
parse_turn_uri (const char  *uri,
                gboolean     udp_blocked,
                GError     **error)
{
  gboolean tls = g_str_has_prefix (uri, "turns:");
  const char *rest = uri + (tls ? 6 : 5);
  g_autofree char *hostport = NULL;
  const char *query = strchr (rest, '?');
  g_autoptr(GSocketConnectable) connectable = NULL;
  Server *s;

  if (!tls && !g_str_has_prefix (uri, "turn:"))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "“%s” is not a TURN URI", uri);
      return NULL;
    }
  hostport = query ? g_strndup (rest, query - rest) : g_strdup (rest);
  connectable = g_network_address_parse (hostport, tls ? 5349 : 3478, error);
  if (connectable == NULL)
    return NULL;
  s = g_new0 (Server, 1);
  s->name = g_strdup (uri);
  s->turn = TRUE;
  s->host = g_strdup (g_network_address_get_hostname (G_NETWORK_ADDRESS (connectable)));
  s->port = g_network_address_get_port (G_NETWORK_ADDRESS (connectable));
  if (tls)
    s->relay_type = NICE_RELAY_TYPE_TURN_TLS;
  else if (query && g_str_equal (query, "?transport=tcp"))
    s->relay_type = NICE_RELAY_TYPE_TURN_TCP;
  else if (query && g_str_equal (query, "?transport=udp"))
    s->relay_type = NICE_RELAY_TYPE_TURN_UDP;
  else if (query)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "TURN URI %s: the only parameter known is transport=udp or "
                   "transport=tcp", uri);
      server_free (s);
      return NULL;
    }
  else
    s->relay_type = udp_blocked ? NICE_RELAY_TYPE_TURN_TCP : NICE_RELAY_TYPE_TURN_UDP;
  return s;
}

typedef struct
{
  Ice       *ice;
  GPtrArray *servers;
  guint      resolving;
} Setup;

static void
setup_free (Setup *setup)
{
  ice_unref (setup->ice);
  g_ptr_array_unref (setup->servers);
  g_free (setup);
}

/* Remembered for the attempt's failure message: a server that could not
 * be used explains missing relayed or server-reflexive candidates */
static void
add_server_problem (Ice        *ice,
                    const char *problem)
{
  char *joined = ice->server_problems ?
                 g_strconcat (ice->server_problems, "; ", problem, NULL) : g_strdup (problem);

  g_free (ice->server_problems);
  ice->server_problems = joined;
}

static void
start_gathering (Setup *setup)
{
  Ice *ice = setup->ice;
  gboolean have_stun = FALSE;
  int relay_type = -1;

  if (ice->dead)
    return;
  for (guint i = 0; i < setup->servers->len; i++)
    {
      Server *s = g_ptr_array_index (setup->servers, i);

      if (s->ip == NULL)
        {
          g_autofree char *problem = g_strdup_printf ("%s %s not used: could not resolve "
                                                      "“%s”: %s",
                                                      s->turn ? "TURN server" : "STUN server",
                                                      s->name, s->host,
                                                      s->problem ? s->problem : "no address");

          g_debug ("%s", problem);
          add_server_problem (ice, problem);
          continue;
        }
      if (!s->turn && !have_stun)
        {
          g_object_set (ice->agent, "stun-server", s->ip, "stun-server-port", (guint) s->port, NULL);
          have_stun = TRUE;
          g_debug ("STUN server %s (%s:%u)", s->name, s->ip, s->port);
        }
      else if (s->turn)
        {
          if (!nice_agent_set_relay_info (ice->agent, ice->stream_id, 1, s->ip, s->port,
                                          s->username, s->password, s->relay_type))
            {
              g_autofree char *problem = g_strdup_printf ("TURN server %s not used: libnice "
                                                          "refused it", s->name);

              g_debug ("%s", problem);
              add_server_problem (ice, problem);
              continue;
            }
          g_debug ("TURN server %s (%s:%u, %s)", s->name, s->ip, s->port,
                   relay_type_word (s->relay_type));
          if (relay_type == -1)
            relay_type = s->relay_type;
          else if (relay_type != (int) s->relay_type)
            relay_type = -2;
        }
    }
  if (relay_type >= 0)
    ice->relay_transport = g_strdup (relay_type_word (relay_type));
  g_clear_pointer (&ice->servers, g_ptr_array_unref);
  ice->servers = g_ptr_array_ref (setup->servers);
  if (!nice_agent_gather_candidates (ice->agent, ice->stream_id))
    attempt_fail (ice, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                    "ICE could not gather candidates: no usable local "
                                    "address"));
}

typedef struct
{
  Setup *setup;
  guint  index;
} Lookup;

static void
resolved_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Lookup *lookup = user_data;
  Setup *setup = lookup->setup;
  Server *s = g_ptr_array_index (setup->servers, lookup->index);
  g_autoptr(GError) error = NULL;
  GList *addresses = g_resolver_lookup_by_name_with_flags_finish (G_RESOLVER (source),
                                                                  result, &error);

  if (addresses)
    s->ip = g_inet_address_to_string (addresses->data);
  else if (error != NULL)
    s->problem = g_strdup (error->message);
  g_resolver_free_addresses (addresses);
  g_free (lookup);
  if (--setup->resolving == 0)
    {
      start_gathering (setup);
      setup_free (setup);
    }
}

static void
add_servers (Setup                  *setup,
             NatkitTraversalRequest *request)
{
  const char * const *stun = natkit_traversal_request_get_stun_servers (request);
  NatkitConfig *config = natkit_traversal_request_get_config (request);
  NatkitNatInfo *nat = natkit_traversal_request_get_local_nat_info (request);
  gboolean udp_blocked = nat && natkit_nat_info_get_nat_type (nat) == NATKIT_NAT_TYPE_UDP_BLOCKED;
  const char * const *turn = config ? natkit_config_get_turn_uris (config) : NULL;

  /* libnice asks one STUN server: the first (natkit-server's own, when
   * the request has one) */
  for (guint i = 0; stun && stun[i]; i++)
    {
      g_autoptr(GSocketConnectable) c = g_network_address_parse (stun[i], 3478, NULL);
      Server *s;

      if (c == NULL)
        continue;
      s = g_new0 (Server, 1);
      s->name = g_strdup (stun[i]);
      s->host = g_strdup (g_network_address_get_hostname (G_NETWORK_ADDRESS (c)));
      s->port = g_network_address_get_port (G_NETWORK_ADDRESS (c));
      g_ptr_array_add (setup->servers, s);
      break;
    }
  for (guint i = 0; turn && turn[i]; i++)
    {
      g_autoptr(GError) error = NULL;
      g_autofree char *user = NULL;
      g_autofree char *password = NULL;
      g_autofree char *secret = NULL;
      Server *s = parse_turn_uri (turn[i], udp_blocked, &error);

      if (s == NULL)
        {
          g_warning ("ignoring TURN server %s: %s", turn[i], error->message);
          continue;
        }
      if (!natkit_config_get_turn_credentials (config, turn[i], &user, &password, &secret))
        {
          g_warning ("ignoring TURN server %s: it has no credentials in the configuration",
                     turn[i]);
          server_free (s);
          continue;
        }
      if (secret != NULL)
        {
          g_clear_pointer (&user, g_free);
          g_clear_pointer (&password, g_free);
          natkit_turn_rest_credentials (secret, natkit_traversal_request_get_local_peer_id (request),
                                        g_get_real_time () / G_USEC_PER_SEC + REST_TTL_S,
                                        &user, &password);
        }
      s->username = g_steal_pointer (&user);
      s->password = g_steal_pointer (&password);
      g_ptr_array_add (setup->servers, s);
    }
}

/* ---- the traversal ------------------------------------------------------ */

struct _NatkitIce
{
  GObject parent_instance;
};

static void natkit_ice_traversal_init (NatkitTraversalInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitIce, natkit_ice, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRAVERSAL,
                                                      natkit_ice_traversal_init))

static NatkitCost
natkit_ice_get_cost (NatkitTraversal *traversal)
{
  /* declared before running: what ICE is for. A pair through a TURN
   * relay says so in the path's transport ("turn-udp"…) */
  return NATKIT_COST_DIRECT;
}

static gboolean
natkit_ice_applies (NatkitTraversal         *traversal,
                    NatkitTraversalRequest  *request,
                    GError                 **error)
{
  NatkitConfig *config = natkit_traversal_request_get_config (request);
  NatkitNatInfo *nat = natkit_traversal_request_get_local_nat_info (request);
  const char * const *turn = config ? natkit_config_get_turn_uris (config) : NULL;

  if (natkit_traversal_request_get_signaling (request) == NULL ||
      natkit_traversal_request_get_session_id (request) == NULL)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "ICE needs a signaling channel to the peer to exchange "
                           "candidates over");
      return FALSE;
    }
  if (nat && natkit_nat_info_get_nat_type (nat) == NATKIT_NAT_TYPE_UDP_BLOCKED &&
      (turn == NULL || turn[0] == NULL))
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                           "this network blocks UDP and no TURN server is configured: "
                           "ICE could only work through TURN over TCP or TLS "
                           "(\"turn\" in config.json, or nat-tool --turn)");
      return FALSE;
    }
  return TRUE;
}

static void
natkit_ice_open_path_async (NatkitTraversal        *traversal,
                            NatkitTraversalRequest *request,
                            GCancellable           *cancellable,
                            GAsyncReadyCallback     callback,
                            gpointer                user_data)
{
  GTask *task = g_task_new (traversal, cancellable, callback, user_data);  /* ice->task */
  NatkitConfig *config = natkit_traversal_request_get_config (request);
  GVariant *locals = config ? natkit_config_get_plugin_setting (config, "ice", "local-addresses") : NULL;
  Attempt *a;
  Ice *ice;
  Setup *setup;
  guint timeout;

  g_task_set_source_tag (task, natkit_ice_open_path_async);
  g_task_set_name (task, "[natkit-ice] open path");
  ice = g_new0 (Ice, 1);
  ice->refs = 1;
  ice->task = task;
  ice->state = NICE_COMPONENT_STATE_DISCONNECTED;
  ice->pending = g_array_new (FALSE, TRUE, sizeof (NatkitIceCandidate));
  g_array_set_clear_func (ice->pending, (GDestroyNotify) natkit_ice_candidate_clear);
  ice->seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_queue_init (&ice->early);
  ice->session_id = g_strdup (natkit_traversal_request_get_session_id (request));
  ice->peer_id = g_strdup (natkit_traversal_request_get_remote_peer_id (request));
  ice->signaling = g_object_ref (natkit_traversal_request_get_signaling (request));
  ice->controlling = natkit_traversal_request_get_role (request) == NATKIT_ROLE_INITIATOR;
  a = g_new0 (Attempt, 1);
  a->ice = ice;
  g_task_set_task_data (task, a, attempt_free);

  ice->agent = nice_agent_new_full (g_main_context_get_thread_default (),
                                    NICE_COMPATIBILITY_RFC5245,
                                    NICE_AGENT_OPTION_ICE_TRICKLE |
                                    NICE_AGENT_OPTION_CONSENT_FRESHNESS |
                                    NICE_AGENT_OPTION_REGULAR_NOMINATION);
  /* never UPnP from libnice (the manager's port mappers do that, and only
   * where asked), no ICE-TCP candidates */
  g_object_set (ice->agent,
                "controlling-mode", ice->controlling,
                "upnp", FALSE,
                "ice-tcp", FALSE,
                NULL);

  /* plugins.ice.settings."local-addresses": "IP[,IP…]" gathers host
   * candidates on these addresses only (tests: "127.0.0.1") */
  if (locals && g_variant_is_of_type (locals, G_VARIANT_TYPE_STRING))
    {
      g_auto(GStrv) list = g_strsplit (g_variant_get_string (locals, NULL), ",", 8);
      gboolean all_loopback = TRUE;
      guint added = 0;

      for (guint i = 0; list[i]; i++)
        {
          g_autoptr(GInetAddress) ip = g_inet_address_new_from_string (g_strstrip (list[i]));
          NiceAddress addr;

          if (ip == NULL || !nice_address_set_from_string (&addr, list[i]))
            {
              g_warning ("plugins.ice.settings.local-addresses: “%s” is not an IP address",
                         list[i]);
              continue;
            }
          nice_agent_add_local_address (ice->agent, &addr);
          all_loopback = all_loopback && g_inet_address_get_is_loopback (ip);
          added++;
        }
      ice->loopback = added > 0 && all_loopback;
    }
  else
    add_real_addresses (ice->agent);

  ice->stream_id = nice_agent_add_stream (ice->agent, 1);
  if (ice->stream_id == 0)
    {
      attempt_fail (ice, g_error_new_literal (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                              "libnice could not add an ICE stream"));
      return;
    }
  g_signal_connect (ice->agent, "new-candidate-full", G_CALLBACK (new_candidate_cb), ice);
  g_signal_connect (ice->agent, "candidate-gathering-done", G_CALLBACK (gathering_done_cb), ice);
  g_signal_connect (ice->agent, "component-state-changed", G_CALLBACK (component_state_cb), ice);
  nice_agent_attach_recv (ice->agent, ice->stream_id, 1, g_main_context_get_thread_default (),
                          recv_cb, ice);
  /* listen before anything goes out: the peer's candidates may be quick */
  ice->message_id = g_signal_connect (ice->signaling, "message-received",
                                      G_CALLBACK (message_cb), ice);

  /* our own deadline, the request's: the manager waits a moment past it
   * for the reason we give */
  timeout = natkit_traversal_request_get_timeout (request);
  ice->timeout_ms = timeout;
  ice->timer = add_source (g_timeout_source_new (ice->timeout_ms), timer_cb, ice,
                           "[natkit-ice] timeout");
  if (cancellable)
    ice->cancel = add_source (g_cancellable_source_new (cancellable), G_SOURCE_FUNC (cancelled_cb),
                              ice, "[natkit-ice] cancel");

  setup = g_new0 (Setup, 1);
  setup->ice = ice_ref (ice);
  setup->servers = g_ptr_array_new_with_free_func (server_free);
  add_servers (setup, request);
  setup->resolving = 1;
  for (guint i = 0; i < setup->servers->len; i++)
    {
      Server *s = g_ptr_array_index (setup->servers, i);
      g_autoptr(GInetAddress) ip = g_inet_address_new_from_string (s->host);

      if (ip)
        s->ip = g_strdup (s->host);
      else
        {
          GResolver *resolver = g_resolver_get_default ();
          Lookup *lookup = g_new0 (Lookup, 1);

          lookup->setup = setup;
          lookup->index = i;
          setup->resolving++;
          g_resolver_lookup_by_name_with_flags_async (resolver, s->host,
                                                      G_RESOLVER_NAME_LOOKUP_FLAGS_IPV4_ONLY,
                                                      cancellable, resolved_cb, lookup);
          g_object_unref (resolver);
        }
    }
  if (--setup->resolving == 0)
    {
      start_gathering (setup);
      setup_free (setup);
    }
}

static NatkitPath *
natkit_ice_open_path_finish (NatkitTraversal  *traversal,
                             GAsyncResult     *result,
                             GError          **error)
{
  g_return_val_if_fail (g_task_is_valid (result, traversal), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

static void
natkit_ice_traversal_init (NatkitTraversalInterface *iface)
{
  iface->get_cost = natkit_ice_get_cost;
  iface->applies = natkit_ice_applies;
  iface->open_path_async = natkit_ice_open_path_async;
  iface->open_path_finish = natkit_ice_open_path_finish;
}

static void
natkit_ice_class_init (NatkitIceClass *klass)
{
}

static void
natkit_ice_init (NatkitIce *self)
{
}

static gboolean
ice_plugin_init (NatkitPlugin  *plugin,
                 GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRAVERSAL,
                               NATKIT_TYPE_ICE, NATKIT_RANK_SECONDARY);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("ice",
                      "ICE (RFC 8445, trickle) through libnice: host, server-reflexive "
                      "and TURN-relayed candidates",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      ice_plugin_init)
