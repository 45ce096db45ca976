/* natkit-network.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"
#include "natkit-network-private.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <string.h>

#include <json-glib/json-glib.h>

/**
 * NatkitNetwork:
 *
 * A virtual network between peers: a WireGuard interface with one virtual
 * IPv4 address per peer, carried over each peer's [class@Natkit.Connection]
 * — direct or relayed, whichever path the manager found — and kept up
 * through the manager's failover: the tunnel's packets travel as the
 * connection's datagrams, so a path change under the secure session does
 * not interrupt them and needs no new WireGuard handshake.
 *
 * Join one with [method@Natkit.Manager.join_network_async]; add peers with
 * [method@Natkit.Network.add_peer_async] (by peer address) or
 * [method@Natkit.Network.add_connection_async] (a connection the manager
 * announced with [signal@Natkit.Manager::incoming]).
 *
 * Each node's WireGuard key pair is kept in `$XDG_STATE_HOME/natkit/
 * wireguard.key` (mode 0600). The public keys are exchanged over the
 * connection's authenticated stream: a peer's message must name the peer ID
 * the secure session authenticated, or the peer is refused. Each node's
 * address is derived from its peer ID inside the network
 * ([const@Natkit.NETWORK_DEFAULT] unless configured); an address that
 * another peer of the network already has is refused.
 *
 * Health: each peer's connection watches its path (keepalives; a path that
 * stops answering is replaced by the manager's failover, a path slower
 * than `timers.slow-rtt`, 200 ms by default, by a faster one when one
 * answers) — the tunnel carries on through every such move. Every 30 s
 * (the wireguard plugin's `health-interval` setting, in seconds) the
 * network asks the tunnel for its peers; a tunnel that does not answer
 * twice in a row is down ([signal@Natkit.Network::failed]). The counters
 * (bytes, last handshake) are read every 5 s. A peer whose connection
 * fails for good is [signal@Natkit.Network::peer-down]; one added by
 * address is then connected again, three times, 1, 2 and 4 s apart.
 *
 * [method@Natkit.Network.leave] (or the last reference going) deletes the
 * interface and its routes and stops the tunnel's process.
 */

#define HELLO_TIMEOUT_S      10
/* The interface's MTU follows the smallest datagram the peers' paths take
 * (a WireGuard data packet is the inner packet + 32 bytes); before any
 * peer, IPv6's minimum, which fits the paths of every in-tree plugin. */
#define TUNNEL_MTU_START     1280
#define TUNNEL_MTU_MIN       576
/* a direct UDP path's: a stream path (the relay over TLS) reports far more,
 * but its datagrams may leave the relay on the other side as UDP */
#define TUNNEL_MTU_MAX       1330
#define WIREGUARD_OVERHEAD   32
#define RECONNECT_TRIES      3
#define RECONNECT_FIRST_S    1
#define DEFAULT_HEALTH_S     30
#define COUNTERS_S           5
#define CARRIER_BATCH        32
#define CARRIER_PACKET_MAX   2048   /* a WireGuard packet at TUNNEL_MTU is 1312 bytes */

/* ---- the virtual networks of this process --------------------------------- */

typedef struct
{
  guint32 network;
  guint   prefix;
} Joined;

static GMutex joined_lock;
static GArray *joined;   /* Joined, one per network that is up */

static void
joined_add (guint32 network,
            guint   prefix)
{
  Joined j = { network, prefix };

  g_mutex_lock (&joined_lock);
  if (joined == NULL)
    joined = g_array_new (FALSE, FALSE, sizeof (Joined));
  g_array_append_val (joined, j);
  g_mutex_unlock (&joined_lock);
}

static void
joined_remove (guint32 network,
               guint   prefix)
{
  g_mutex_lock (&joined_lock);
  for (guint i = 0; joined && i < joined->len; i++)
    {
      Joined *j = &g_array_index (joined, Joined, i);

      if (j->network == network && j->prefix == prefix)
        {
          g_array_remove_index_fast (joined, i);
          break;
        }
    }
  g_mutex_unlock (&joined_lock);
}

/**
 * natkit_address_is_virtual:
 * @address: an IP address
 *
 * Whether @address lies in a virtual network that this process has joined
 * ([class@Natkit.Network]). Traversal plugins never use such an address as
 * a candidate, local or remote: a path through the tunnel cannot carry the
 * tunnel (it would run inside itself and die with the path beneath it).
 *
 * Returns: %TRUE for an address of a joined virtual network
 */
gboolean
natkit_address_is_virtual (GInetAddress *address)
{
  const guint8 *bytes;
  guint32 value;
  gboolean found = FALSE;

  g_return_val_if_fail (G_IS_INET_ADDRESS (address), FALSE);

  if (g_inet_address_get_family (address) != G_SOCKET_FAMILY_IPV4)
    return FALSE;
  bytes = g_inet_address_to_bytes (address);
  value = ((guint32) bytes[0] << 24) | ((guint32) bytes[1] << 16) |
          ((guint32) bytes[2] << 8) | bytes[3];
  g_mutex_lock (&joined_lock);
  for (guint i = 0; joined && i < joined->len && !found; i++)
    {
      Joined *j = &g_array_index (joined, Joined, i);

      found = (value & (0xffffffffu << (32 - j->prefix))) == j->network;
    }
  g_mutex_unlock (&joined_lock);
  return found;
}

/* ---- the pure parts ------------------------------------------------------ */

gboolean
_natkit_network_parse_cidr (const char  *cidr,
                            guint32     *network,
                            guint       *prefix,
                            GError     **error)
{
  g_autofree char *copy = g_strdup (cidr);
  char *slash = strchr (copy, '/');
  struct in_addr addr;
  guint64 bits;
  char *end = NULL;
  guint32 mask;

  if (slash == NULL)
    goto bad;
  *slash = '\0';
  if (inet_pton (AF_INET, copy, &addr) != 1)
    goto bad;
  if (!g_ascii_isdigit (slash[1]))
    goto bad;
  bits = g_ascii_strtoull (slash + 1, &end, 10);
  if (*end != '\0' || bits < 8 || bits > 30)
    goto bad;
  mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);
  *network = ntohl (addr.s_addr) & mask;
  *prefix = bits;
  return TRUE;

bad:
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
               "“%s” is not an IPv4 network with a prefix length from 8 to 30 "
               "(e.g. " NATKIT_NETWORK_DEFAULT ")", cidr);
  return FALSE;
}

/* A host address from the SHA-256 of the peer ID (and the attempt, for the
 * next candidate), never the network's first or last address. */
guint32
_natkit_network_address_for (guint32     network,
                             guint       prefix,
                             const char *peer_id,
                             guint       attempt)
{
  g_autoptr(GChecksum) sum = g_checksum_new (G_CHECKSUM_SHA256);
  guint8 digest[32];
  gsize len = sizeof digest;
  guint32 hosts = (1u << (32 - prefix)) - 2;
  guint32 value;
  char extra[16];

  g_checksum_update (sum, (const guchar *) peer_id, strlen (peer_id));
  if (attempt > 0)
    {
      g_snprintf (extra, sizeof extra, "#%u", attempt);
      g_checksum_update (sum, (const guchar *) extra, strlen (extra));
    }
  g_checksum_get_digest (sum, digest, &len);
  value = ((guint32) digest[0] << 24) | ((guint32) digest[1] << 16) |
          ((guint32) digest[2] << 8) | digest[3];
  return network + 1 + value % hosts;
}

static char *
format_address (guint32 address)
{
  struct in_addr addr = { htonl (address) };
  char text[INET_ADDRSTRLEN];

  inet_ntop (AF_INET, &addr, text, sizeof text);
  return g_strdup (text);
}

char *
_natkit_network_format_hello (const char *peer_id,
                              const char *public_key,
                              guint32     address)
{
  g_autoptr(JsonBuilder) builder = json_builder_new ();
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(JsonNode) root = NULL;
  g_autofree char *text = format_address (address);
  g_autofree char *json = NULL;

  json_builder_begin_object (builder);
  json_builder_set_member_name (builder, "wireguard");
  json_builder_add_int_value (builder, 1);
  json_builder_set_member_name (builder, "peer_id");
  json_builder_add_string_value (builder, peer_id);
  json_builder_set_member_name (builder, "public_key");
  json_builder_add_string_value (builder, public_key);
  json_builder_set_member_name (builder, "address");
  json_builder_add_string_value (builder, text);
  json_builder_end_object (builder);
  root = json_builder_get_root (builder);
  json_generator_set_root (generator, root);
  json = json_generator_to_data (generator, NULL);
  return g_strconcat (json, "\n", NULL);
}

static const char *
member_string (JsonObject *object,
               const char *name)
{
  JsonNode *node = json_object_get_member (object, name);

  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (node);
}

/* The peer's key-exchange message: one JSON object on one line, at most
 * NATKIT_NETWORK_HELLO_MAX bytes. */
gboolean
_natkit_network_parse_hello (const char  *data,
                             gsize        len,
                             const char  *expected_peer_id,
                             guint32      network,
                             guint        prefix,
                             char       **public_key,
                             guint32     *address,
                             GError     **error)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(GError) local = NULL;
  g_autofree guchar *key = NULL;
  g_autofree char *again = NULL;
  JsonNode *root, *version;
  JsonObject *object;
  const char *peer_id, *key_text, *address_text;
  struct in_addr addr;
  gsize key_len = 0;
  guint32 host, mask, last;

  if (len > NATKIT_NETWORK_HELLO_MAX || !g_utf8_validate (data, len, NULL) ||
      memchr (data, '\0', len) != NULL ||
      !json_parser_load_from_data (parser, data, len, &local) ||
      (root = json_parser_get_root (parser)) == NULL ||
      !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                   "%.8s… sent a malformed WireGuard key exchange: %s",
                   expected_peer_id, local ? local->message : "not a JSON object");
      return FALSE;
    }
  object = json_node_get_object (root);
  version = json_object_get_member (object, "wireguard");
  if (version == NULL || !JSON_NODE_HOLDS_VALUE (version) ||
      json_node_get_value_type (version) != G_TYPE_INT64 ||
      json_node_get_int (version) != 1)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                   "%.8s… does not speak natkit's WireGuard key exchange "
                   "(version 1): is it running “nat-tool vpn up”?", expected_peer_id);
      return FALSE;
    }
  peer_id = member_string (object, "peer_id");
  key_text = member_string (object, "public_key");
  address_text = member_string (object, "address");
  if (!peer_id || !key_text || !address_text)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                   "%.8s… sent a WireGuard key exchange without %s", expected_peer_id,
                   !peer_id ? "its peer ID" : !key_text ? "a public key" : "an address");
      return FALSE;
    }
  if (!g_str_equal (peer_id, expected_peer_id))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "refused a WireGuard key from %.8s…: it offers the key as %.8s…, "
                   "not as the peer ID its secure session proved", expected_peer_id,
                   peer_id);
      return FALSE;
    }
  if (strlen (key_text) != 44 ||
      (key = g_base64_decode (key_text, &key_len)) == NULL || key_len != 32 ||
      !g_str_equal ((again = g_base64_encode (key, key_len)), key_text))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                   "%.8s… sent a WireGuard public key that is not 32 bytes of base64",
                   expected_peer_id);
      return FALSE;
    }
  mask = 0xffffffffu << (32 - prefix);
  last = network | ~mask;
  if (inet_pton (AF_INET, address_text, &addr) != 1 ||
      ((host = ntohl (addr.s_addr)) & mask) != network ||
      host == network || host == last)
    {
      g_autofree char *net = format_address (network);

      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                   "%.8s… claims the address “%.64s”, which is not a host of the "
                   "network %s/%u: do both sides use the same network?",
                   expected_peer_id, address_text, net, prefix);
      return FALSE;
    }
  *public_key = g_strdup (key_text);
  *address = host;
  return TRUE;
}

/* ---- NatkitNetworkPeer ---------------------------------------------------- */

struct _NatkitNetworkPeer
{
  GObject           parent_instance;

  NatkitNetwork    *network;        /* weak */
  NatkitConnection *connection;
  char             *peer_id;
  char             *peer_address;
  char             *address;
  char             *public_key;
  guint64           bytes_sent;
  guint64           bytes_received;
  gint64            last_handshake;
  gboolean          up;

  GSocket          *carrier;        /* 127.0.0.1:port, the tunnel's endpoint for the peer */
  guint8           *carrier_buffer; /* CARRIER_BATCH × CARRIER_PACKET_MAX */
  GSource          *carrier_source;
  GSocketAddress   *tunnel_address; /* 127.0.0.1:the tunnel's port */
  gulong            datagram_id;
  gulong            state_id;
  gulong            path_id;
};

enum
{
  PEER_PROP_0,
  PEER_PROP_PEER_ID,
  PEER_PROP_PEER_ADDRESS,
  PEER_PROP_ADDRESS,
  PEER_PROP_PUBLIC_KEY,
  PEER_PROP_METHOD,
  PEER_PROP_RTT,
  PEER_PROP_BYTES_SENT,
  PEER_PROP_BYTES_RECEIVED,
  PEER_PROP_LAST_HANDSHAKE,
  PEER_PROP_CONNECTION,
  N_PEER_PROPS
};

static GParamSpec *peer_properties[N_PEER_PROPS];

G_DEFINE_FINAL_TYPE (NatkitNetworkPeer, natkit_network_peer, G_TYPE_OBJECT)

static void
peer_stop_carrier (NatkitNetworkPeer *self)
{
  if (self->carrier_source)
    {
      g_source_destroy (self->carrier_source);
      g_clear_pointer (&self->carrier_source, g_source_unref);
    }
  if (self->carrier)
    g_socket_close (self->carrier, NULL);
  g_clear_object (&self->carrier);
  if (self->connection)
    {
      g_clear_signal_handler (&self->datagram_id, self->connection);
      g_clear_signal_handler (&self->state_id, self->connection);
      g_clear_signal_handler (&self->path_id, self->connection);
    }
}

static void
natkit_network_peer_finalize (GObject *object)
{
  NatkitNetworkPeer *self = NATKIT_NETWORK_PEER (object);

  peer_stop_carrier (self);
  g_clear_object (&self->connection);
  g_clear_object (&self->tunnel_address);
  g_free (self->carrier_buffer);
  g_free (self->peer_id);
  g_free (self->peer_address);
  g_free (self->address);
  g_free (self->public_key);
  G_OBJECT_CLASS (natkit_network_peer_parent_class)->finalize (object);
}

static void
natkit_network_peer_get_property (GObject    *object,
                                  guint       prop_id,
                                  GValue     *value,
                                  GParamSpec *pspec)
{
  NatkitNetworkPeer *self = NATKIT_NETWORK_PEER (object);

  switch (prop_id)
    {
    case PEER_PROP_PEER_ID:
      g_value_set_string (value, self->peer_id);
      break;
    case PEER_PROP_PEER_ADDRESS:
      g_value_set_string (value, self->peer_address);
      break;
    case PEER_PROP_ADDRESS:
      g_value_set_string (value, self->address);
      break;
    case PEER_PROP_PUBLIC_KEY:
      g_value_set_string (value, self->public_key);
      break;
    case PEER_PROP_METHOD:
      g_value_set_string (value, natkit_network_peer_get_method (self));
      break;
    case PEER_PROP_RTT:
      g_value_set_int64 (value, natkit_network_peer_get_rtt (self));
      break;
    case PEER_PROP_BYTES_SENT:
      g_value_set_uint64 (value, self->bytes_sent);
      break;
    case PEER_PROP_BYTES_RECEIVED:
      g_value_set_uint64 (value, self->bytes_received);
      break;
    case PEER_PROP_LAST_HANDSHAKE:
      g_value_set_int64 (value, self->last_handshake);
      break;
    case PEER_PROP_CONNECTION:
      g_value_set_object (value, self->connection);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_network_peer_class_init (NatkitNetworkPeerClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;

  object_class->finalize = natkit_network_peer_finalize;
  object_class->get_property = natkit_network_peer_get_property;

  /**
   * NatkitNetworkPeer:peer-id:
   *
   * The peer's ID, as its secure session authenticated it.
   */
  peer_properties[PEER_PROP_PEER_ID] =
    g_param_spec_string ("peer-id", NULL, NULL, NULL, flags);
  /**
   * NatkitNetworkPeer:peer-address:
   *
   * The address the peer was reached at, %NULL for one that connected to us.
   */
  peer_properties[PEER_PROP_PEER_ADDRESS] =
    g_param_spec_string ("peer-address", NULL, NULL, NULL, flags);
  /**
   * NatkitNetworkPeer:address:
   *
   * The peer's virtual IPv4 address in the network.
   */
  peer_properties[PEER_PROP_ADDRESS] =
    g_param_spec_string ("address", NULL, NULL, NULL, flags);
  /**
   * NatkitNetworkPeer:public-key:
   *
   * The peer's WireGuard public key (base64).
   */
  peer_properties[PEER_PROP_PUBLIC_KEY] =
    g_param_spec_string ("public-key", NULL, NULL, NULL, flags);
  /**
   * NatkitNetworkPeer:method:
   *
   * The traversal method that carries the tunnel now (e.g. "holepunch",
   * "relay"), %NULL while the connection looks for a path.
   */
  peer_properties[PEER_PROP_METHOD] =
    g_param_spec_string ("method", NULL, NULL, NULL, flags);
  /**
   * NatkitNetworkPeer:rtt:
   *
   * The round-trip time of the path in microseconds, -1 before it is known.
   */
  peer_properties[PEER_PROP_RTT] =
    g_param_spec_int64 ("rtt", NULL, NULL, -1, G_MAXINT64, -1, flags);
  /**
   * NatkitNetworkPeer:bytes-sent:
   *
   * Bytes the tunnel sent to the peer (read every 5 s).
   */
  peer_properties[PEER_PROP_BYTES_SENT] =
    g_param_spec_uint64 ("bytes-sent", NULL, NULL, 0, G_MAXUINT64, 0, flags);
  /**
   * NatkitNetworkPeer:bytes-received:
   *
   * Bytes the tunnel received from the peer (read every 5 s).
   */
  peer_properties[PEER_PROP_BYTES_RECEIVED] =
    g_param_spec_uint64 ("bytes-received", NULL, NULL, 0, G_MAXUINT64, 0, flags);
  /**
   * NatkitNetworkPeer:last-handshake:
   *
   * When the last WireGuard handshake with the peer completed, in Unix
   * seconds, 0 for not yet.
   */
  peer_properties[PEER_PROP_LAST_HANDSHAKE] =
    g_param_spec_int64 ("last-handshake", NULL, NULL, 0, G_MAXINT64, 0, flags);
  /**
   * NatkitNetworkPeer:connection:
   *
   * The connection that carries the tunnel to the peer.
   */
  peer_properties[PEER_PROP_CONNECTION] =
    g_param_spec_object ("connection", NULL, NULL, NATKIT_TYPE_CONNECTION, flags);
  g_object_class_install_properties (object_class, N_PEER_PROPS, peer_properties);
}

static void
natkit_network_peer_init (NatkitNetworkPeer *self)
{
}

/**
 * natkit_network_peer_get_peer_id:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: the peer's authenticated peer ID
 */
const char *
natkit_network_peer_get_peer_id (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), NULL);
  return self->peer_id;
}

/**
 * natkit_network_peer_get_peer_address:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: (nullable): the peer address it was reached at, %NULL when it
 *   connected to us
 */
const char *
natkit_network_peer_get_peer_address (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), NULL);
  return self->peer_address;
}

/**
 * natkit_network_peer_get_address:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: the peer's virtual IPv4 address
 */
const char *
natkit_network_peer_get_address (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), NULL);
  return self->address;
}

/**
 * natkit_network_peer_get_public_key:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: the peer's WireGuard public key (base64)
 */
const char *
natkit_network_peer_get_public_key (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), NULL);
  return self->public_key;
}

/**
 * natkit_network_peer_get_method:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: (nullable): the traversal method carrying the tunnel now
 */
const char *
natkit_network_peer_get_method (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), NULL);
  return self->connection ? natkit_connection_get_method (self->connection) : NULL;
}

/**
 * natkit_network_peer_get_rtt:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: the path's round-trip time in microseconds, -1 if not known
 */
gint64
natkit_network_peer_get_rtt (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), -1);
  return self->connection ? natkit_connection_get_rtt (self->connection) : -1;
}

/**
 * natkit_network_peer_get_bytes_sent:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: bytes the tunnel sent to the peer, read every 5 s
 */
guint64
natkit_network_peer_get_bytes_sent (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), 0);
  return self->bytes_sent;
}

/**
 * natkit_network_peer_get_bytes_received:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: bytes the tunnel received from the peer, read every 5 s
 */
guint64
natkit_network_peer_get_bytes_received (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), 0);
  return self->bytes_received;
}

/**
 * natkit_network_peer_get_last_handshake:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: the last WireGuard handshake in Unix seconds, 0 for none yet
 */
gint64
natkit_network_peer_get_last_handshake (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), 0);
  return self->last_handshake;
}

/**
 * natkit_network_peer_get_connection:
 * @self: a #NatkitNetworkPeer
 *
 * Returns: (transfer none) (nullable): the connection carrying the tunnel
 */
NatkitConnection *
natkit_network_peer_get_connection (NatkitNetworkPeer *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK_PEER (self), NULL);
  return self->connection;
}

/* ---- NatkitNetwork -------------------------------------------------------- */

struct _NatkitNetwork
{
  GObject          parent_instance;

  NatkitManager   *manager;
  NatkitSignaling *signaling;
  NatkitTunnel    *tunnel;
  char            *cidr;
  guint32          network;
  guint            prefix;
  guint32          address_value;
  char            *address;
  GListStore      *peers;          /* NatkitNetworkPeer, up */
  GHashTable      *retries;        /* peer address → Retry */
  GCancellable    *cancellable;
  guint            health_id;
  guint            health_interval_s;
  guint            health_failures;
  guint            counters_id;
  gboolean         registered;     /* in joined[] */
  guint            mtu;            /* the interface's */
  guint            mtu_pending;    /* being set, 0 for none */
  gboolean         left;
};

enum
{
  PROP_0,
  PROP_INTERFACE_NAME,
  PROP_ADDRESS,
  PROP_NETWORK,
  PROP_IMPLEMENTATION,
  PROP_PUBLIC_KEY,
  PROP_PEER_ADDRESS,
  PROP_PEERS,
  N_PROPS
};

enum
{
  SIGNAL_PEER_UP,
  SIGNAL_PEER_DOWN,
  SIGNAL_FAILED,
  N_SIGNALS
};

static GParamSpec *properties[N_PROPS];
static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (NatkitNetwork, natkit_network, G_TYPE_OBJECT)

typedef struct
{
  NatkitNetwork *network;   /* weak */
  char          *peer_address;
  guint          tries;
  guint          timeout_id;
} Retry;

static void
retry_free (gpointer data)
{
  Retry *r = data;

  g_clear_handle_id (&r->timeout_id, g_source_remove);
  g_free (r->peer_address);
  g_free (r);
}

static void
natkit_network_dispose (GObject *object)
{
  NatkitNetwork *self = NATKIT_NETWORK (object);

  natkit_network_leave (self);
  G_OBJECT_CLASS (natkit_network_parent_class)->dispose (object);
}

static void
natkit_network_finalize (GObject *object)
{
  NatkitNetwork *self = NATKIT_NETWORK (object);

  g_clear_object (&self->manager);
  g_clear_object (&self->signaling);
  g_clear_object (&self->tunnel);
  g_clear_object (&self->peers);
  g_clear_pointer (&self->retries, g_hash_table_unref);
  g_clear_object (&self->cancellable);
  g_free (self->cidr);
  g_free (self->address);
  G_OBJECT_CLASS (natkit_network_parent_class)->finalize (object);
}

static void
natkit_network_get_property (GObject    *object,
                             guint       prop_id,
                             GValue     *value,
                             GParamSpec *pspec)
{
  NatkitNetwork *self = NATKIT_NETWORK (object);

  switch (prop_id)
    {
    case PROP_INTERFACE_NAME:
      g_value_set_string (value, natkit_network_get_interface_name (self));
      break;
    case PROP_ADDRESS:
      g_value_set_string (value, self->address);
      break;
    case PROP_NETWORK:
      g_value_set_string (value, self->cidr);
      break;
    case PROP_IMPLEMENTATION:
      g_value_set_string (value, natkit_network_get_implementation (self));
      break;
    case PROP_PUBLIC_KEY:
      g_value_set_string (value, natkit_network_get_public_key (self));
      break;
    case PROP_PEER_ADDRESS:
      g_value_set_string (value, natkit_network_get_peer_address (self));
      break;
    case PROP_PEERS:
      g_value_set_object (value, self->peers);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_network_class_init (NatkitNetworkClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GParamFlags flags = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS | G_PARAM_EXPLICIT_NOTIFY;

  object_class->dispose = natkit_network_dispose;
  object_class->finalize = natkit_network_finalize;
  object_class->get_property = natkit_network_get_property;

  /**
   * NatkitNetwork:interface-name:
   *
   * The network interface (e.g. "natkit0"), %NULL after leaving.
   */
  properties[PROP_INTERFACE_NAME] =
    g_param_spec_string ("interface-name", NULL, NULL, NULL, flags);
  /**
   * NatkitNetwork:address:
   *
   * This node's virtual IPv4 address.
   */
  properties[PROP_ADDRESS] =
    g_param_spec_string ("address", NULL, NULL, NULL, flags);
  /**
   * NatkitNetwork:network:
   *
   * The virtual network, e.g. "100.66.0.0/16".
   */
  properties[PROP_NETWORK] =
    g_param_spec_string ("network", NULL, NULL, NULL, flags);
  /**
   * NatkitNetwork:implementation:
   *
   * What runs the tunnel, e.g. "wireguard-go (userspace)".
   */
  properties[PROP_IMPLEMENTATION] =
    g_param_spec_string ("implementation", NULL, NULL, NULL, flags);
  /**
   * NatkitNetwork:public-key:
   *
   * This node's WireGuard public key (base64).
   */
  properties[PROP_PUBLIC_KEY] =
    g_param_spec_string ("public-key", NULL, NULL, NULL, flags);
  /**
   * NatkitNetwork:peer-address:
   *
   * This node's peer address, for peers to connect to.
   */
  properties[PROP_PEER_ADDRESS] =
    g_param_spec_string ("peer-address", NULL, NULL, NULL, flags);
  /**
   * NatkitNetwork:peers:
   *
   * The peers that are up, a #GListModel of [class@Natkit.NetworkPeer].
   */
  properties[PROP_PEERS] =
    g_param_spec_object ("peers", NULL, NULL, G_TYPE_LIST_MODEL, flags);
  g_object_class_install_properties (object_class, N_PROPS, properties);

  /**
   * NatkitNetwork::peer-up:
   * @self: the network
   * @peer: the peer
   *
   * A peer joined: its key is configured and its address routed.
   */
  signals[SIGNAL_PEER_UP] =
    g_signal_new ("peer-up", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, NATKIT_TYPE_NETWORK_PEER);
  /**
   * NatkitNetwork::peer-down:
   * @self: the network
   * @peer: the peer
   * @reason: why, in words
   *
   * A peer left: its connection closed or could not be kept up; its key
   * and route are removed. A peer added by address is tried again (three
   * times, with backoff) unless it closed the connection itself.
   */
  signals[SIGNAL_PEER_DOWN] =
    g_signal_new ("peer-down", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 2, NATKIT_TYPE_NETWORK_PEER,
                  G_TYPE_STRING);
  /**
   * NatkitNetwork::failed:
   * @self: the network
   * @reason: what happened, in words
   *
   * The tunnel stopped by itself (wireguard-go exited or was killed): the
   * network has been left, nothing of it is left behind.
   */
  signals[SIGNAL_FAILED] =
    g_signal_new ("failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                  0, NULL, NULL, NULL, G_TYPE_NONE, 1, G_TYPE_STRING);
}

static void
natkit_network_init (NatkitNetwork *self)
{
  self->peers = g_list_store_new (NATKIT_TYPE_NETWORK_PEER);
  self->retries = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, retry_free);
  self->cancellable = g_cancellable_new ();
  self->health_interval_s = DEFAULT_HEALTH_S;
}

/**
 * natkit_network_get_interface_name:
 * @self: a #NatkitNetwork
 *
 * Returns: (nullable): the network interface's name, %NULL after leaving
 */
const char *
natkit_network_get_interface_name (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return self->tunnel && !self->left ? natkit_tunnel_get_interface_name (self->tunnel) : NULL;
}

/**
 * natkit_network_get_address:
 * @self: a #NatkitNetwork
 *
 * Returns: this node's virtual IPv4 address
 */
const char *
natkit_network_get_address (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return self->address;
}

/**
 * natkit_network_get_network:
 * @self: a #NatkitNetwork
 *
 * Returns: the virtual network, e.g. "100.66.0.0/16"
 */
const char *
natkit_network_get_network (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return self->cidr;
}

/**
 * natkit_network_get_implementation:
 * @self: a #NatkitNetwork
 *
 * Returns: (nullable): what runs the tunnel, e.g. "wireguard-go (userspace)"
 */
const char *
natkit_network_get_implementation (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return self->tunnel ? natkit_tunnel_get_implementation (self->tunnel) : NULL;
}

/**
 * natkit_network_get_public_key:
 * @self: a #NatkitNetwork
 *
 * Returns: (nullable): this node's WireGuard public key (base64)
 */
const char *
natkit_network_get_public_key (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return self->tunnel ? natkit_tunnel_get_public_key (self->tunnel) : NULL;
}

/**
 * natkit_network_get_peer_address:
 * @self: a #NatkitNetwork
 *
 * Returns: (nullable): this node's peer address, for peers to connect to
 */
const char *
natkit_network_get_peer_address (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return natkit_signaling_get_local_address (self->signaling);
}

/**
 * natkit_network_get_peers:
 * @self: a #NatkitNetwork
 *
 * Returns: (transfer none): the peers that are up, a #GListModel of
 *   [class@Natkit.NetworkPeer]
 */
GListModel *
natkit_network_get_peers (NatkitNetwork *self)
{
  g_return_val_if_fail (NATKIT_IS_NETWORK (self), NULL);
  return G_LIST_MODEL (self->peers);
}

/* ---- the carrier: tunnel ↔ 127.0.0.1 ↔ connection datagrams --------------- */

static gboolean
carrier_readable_cb (GSocket      *socket,
                     GIOCondition  condition,
                     gpointer      user_data)
{
  NatkitNetworkPeer *peer = user_data;
  GInputVector vectors[CARRIER_BATCH];
  GInputMessage messages[CARRIER_BATCH];

  /* the socket is connected to the tunnel's port: the kernel delivers
   * nothing else. recvmmsg: one system call for a burst. */
  for (guint round = 0; round < 4; round++)
    {
      g_autoptr(GError) error = NULL;
      gint n;

      for (guint i = 0; i < CARRIER_BATCH; i++)
        {
          vectors[i].buffer = peer->carrier_buffer + i * CARRIER_PACKET_MAX;
          vectors[i].size = CARRIER_PACKET_MAX;
          messages[i] = (GInputMessage) { NULL, vectors + i, 1, 0, 0, NULL, NULL };
        }
      n = g_socket_receive_messages (socket, messages, CARRIER_BATCH, 0, NULL, &error);
      if (n <= 0)
        break;
      for (gint i = 0; i < n; i++)
        {
          g_autoptr(GBytes) datagram = NULL;
          g_autoptr(GError) send_error = NULL;

          /* larger than any WireGuard packet at our MTU: not one */
          if (messages[i].bytes_received > CARRIER_PACKET_MAX ||
              (messages[i].flags & MSG_TRUNC))
            continue;
          datagram = g_bytes_new (vectors[i].buffer, messages[i].bytes_received);
          if (!natkit_connection_send_datagram (peer->connection, datagram, &send_error))
            g_debug ("tunnel packet to %.8s… dropped: %s", peer->peer_id, send_error->message);
        }
      if (n < CARRIER_BATCH)
        break;
    }
  return G_SOURCE_CONTINUE;
}

static void
carrier_datagram_cb (NatkitConnection *connection,
                     GBytes           *datagram,
                     gpointer          user_data)
{
  NatkitNetworkPeer *peer = user_data;
  gsize len;
  const char *data = g_bytes_get_data (datagram, &len);

  if (peer->carrier == NULL)
    return;
  /* UDP semantics: a full socket buffer drops the packet, WireGuard's
   * inner TCP recovers */
  g_socket_send (peer->carrier, data, len, NULL, NULL);
}

static gboolean
peer_start_carrier (NatkitNetworkPeer  *peer,
                    guint16             tunnel_port,
                    GError            **error)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (loopback, 0);

  peer->carrier = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                                G_SOCKET_PROTOCOL_UDP, error);
  if (peer->carrier == NULL || !g_socket_bind (peer->carrier, any, FALSE, error))
    return FALSE;
  g_socket_set_blocking (peer->carrier, FALSE);
  if (peer->carrier_buffer == NULL)
    peer->carrier_buffer = g_malloc (CARRIER_BATCH * CARRIER_PACKET_MAX);
  /* bursts of a fast transfer: room for a few hundred packets */
  g_socket_set_option (peer->carrier, SOL_SOCKET, SO_RCVBUF, 4 << 20, NULL);
  g_socket_set_option (peer->carrier, SOL_SOCKET, SO_SNDBUF, 4 << 20, NULL);
  peer->tunnel_address = g_inet_socket_address_new (loopback, tunnel_port);
  if (!g_socket_connect (peer->carrier, peer->tunnel_address, NULL, error))
    return FALSE;
  peer->carrier_source = g_socket_create_source (peer->carrier, G_IO_IN, NULL);
  g_source_set_callback (peer->carrier_source, (GSourceFunc) (void (*) (void)) carrier_readable_cb,
                         peer, NULL);
  g_source_attach (peer->carrier_source, NULL);
  peer->datagram_id = g_signal_connect (peer->connection, "datagram-received",
                                        G_CALLBACK (carrier_datagram_cb), peer);
  return TRUE;
}

static guint16
peer_carrier_port (NatkitNetworkPeer *peer)
{
  g_autoptr(GSocketAddress) local = g_socket_get_local_address (peer->carrier, NULL);

  return local ? g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local)) : 0;
}

/* ---- peers coming and going ------------------------------------------------ */

static void schedule_retry (NatkitNetwork *self, const char *peer_address);

static NatkitNetworkPeer *
find_peer (NatkitNetwork *self,
           const char    *peer_id,
           guint         *position)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->peers));

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(NatkitNetworkPeer) peer = g_list_model_get_item (G_LIST_MODEL (self->peers), i);

      if (g_str_equal (peer->peer_id, peer_id))
        {
          if (position)
            *position = i;
          return peer;
        }
    }
  return NULL;
}

static void
remove_peer_done_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data)
{
  g_autoptr(GError) error = NULL;

  if (!natkit_tunnel_remove_peer_finish (NATKIT_TUNNEL (source), result, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_debug ("removing a tunnel peer: %s", error->message);
}

static void update_mtu (NatkitNetwork *self);

static void
mtu_set_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  NatkitNetwork *self = user_data;
  g_autoptr(GError) error = NULL;
  guint wanted = self->mtu_pending;

  self->mtu_pending = 0;
  if (natkit_tunnel_set_mtu_finish (NATKIT_TUNNEL (source), result, &error))
    {
      g_debug ("%s: MTU %u (the peers' paths take datagrams of %u bytes)",
               natkit_tunnel_get_interface_name (NATKIT_TUNNEL (source)), wanted,
               wanted + WIREGUARD_OVERHEAD);
      self->mtu = wanted;
      update_mtu (self);   /* the paths may have moved meanwhile */
    }
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_debug ("setting the tunnel's MTU to %u: %s", wanted, error->message);
  g_object_unref (self);
}

/* The MTU that fits every peer's current path. */
static void
update_mtu (NatkitNetwork *self)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->peers));
  gsize smallest = G_MAXSIZE;
  guint wanted;

  if (self->left || self->tunnel == NULL || self->mtu_pending)
    return;
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(NatkitNetworkPeer) peer = g_list_model_get_item (G_LIST_MODEL (self->peers), i);
      gsize max = natkit_connection_get_max_datagram (peer->connection);

      if (max > 0)
        smallest = MIN (smallest, max);
    }
  if (smallest == G_MAXSIZE)
    return;
  wanted = smallest > WIREGUARD_OVERHEAD ? smallest - WIREGUARD_OVERHEAD : 0;
  wanted = CLAMP (wanted, TUNNEL_MTU_MIN, TUNNEL_MTU_MAX);
  if (wanted == self->mtu)
    return;
  self->mtu_pending = wanted;
  natkit_tunnel_set_mtu_async (self->tunnel, wanted, self->cancellable, mtu_set_cb,
                               g_object_ref (self));
}

static void
peer_down (NatkitNetwork     *self,
           NatkitNetworkPeer *peer,
           const char        *reason,
           gboolean           retry)
{
  guint position;
  /* the peers list may hold the last reference: keep it to the end */
  G_GNUC_UNUSED g_autoptr(NatkitNetworkPeer) keep = g_object_ref (peer);

  if (!peer->up)
    return;
  peer->up = FALSE;
  peer_stop_carrier (peer);
  if (find_peer (self, peer->peer_id, &position) == peer)
    g_list_store_remove (self->peers, position);
  if (self->tunnel && !self->left)
    natkit_tunnel_remove_peer_async (self->tunnel, peer->public_key, self->cancellable,
                                     remove_peer_done_cb, NULL);
  update_mtu (self);
  g_debug ("peer %.8s… (%s) is down: %s", peer->peer_id, peer->address, reason);
  g_signal_emit (self, signals[SIGNAL_PEER_DOWN], 0, peer, reason);
  if (retry && peer->peer_address && !self->left)
    schedule_retry (self, peer->peer_address);
}

static void
peer_state_cb (NatkitConnection *connection,
               GParamSpec       *pspec,
               gpointer          user_data)
{
  NatkitNetworkPeer *peer = user_data;
  NatkitNetwork *self = peer->network;

  switch (natkit_connection_get_state (connection))
    {
    case NATKIT_CONNECTION_STATE_FAILED:
      peer_down (self, peer, "no path to the peer could be found again", TRUE);
      break;
    case NATKIT_CONNECTION_STATE_CLOSED:
      peer_down (self, peer, "the peer closed the connection", FALSE);
      break;
    case NATKIT_CONNECTION_STATE_CONNECTING:
    case NATKIT_CONNECTION_STATE_CONNECTED:
    case NATKIT_CONNECTION_STATE_DEGRADED:
    default:
      break;
    }
}

static void
peer_path_changed_cb (NatkitConnection *connection,
                      const char       *from,
                      const char       *reason,
                      gpointer          user_data)
{
  NatkitNetworkPeer *peer = user_data;

  g_debug ("the tunnel to %.8s… moved from %s to %s: %s", peer->peer_id,
           from ? from : "no path", natkit_connection_get_method (connection), reason);
  g_object_notify_by_pspec (G_OBJECT (peer), peer_properties[PEER_PROP_METHOD]);
  g_object_notify_by_pspec (G_OBJECT (peer), peer_properties[PEER_PROP_RTT]);
  if (peer->network)
    update_mtu (peer->network);
}

/* Adding a connection: send our key, read theirs, configure the tunnel. */

typedef struct
{
  NatkitNetworkPeer *peer;
  char              *hello;
  char               buffer[NATKIT_NETWORK_HELLO_MAX + 1];
  gsize              filled;
  guint              timeout_id;
  GCancellable      *cancellable;   /* the read's own, cancelled by the timeout */
  gulong             cancelled_id;
  gboolean           timed_out;
  gboolean           sent;
  gboolean           received;
  GError            *error;
} AddData;

static void
add_data_free (gpointer data)
{
  AddData *d = data;

  g_clear_handle_id (&d->timeout_id, g_source_remove);
  g_clear_object (&d->peer);
  g_clear_object (&d->cancellable);
  g_clear_error (&d->error);
  g_free (d->hello);
  g_free (d);
}

static void
add_fail (GTask  *task,
          GError *error)
{
  AddData *d = g_task_get_task_data (task);

  /* refused: tell the peer by closing the connection */
  if (d->peer->connection)
    natkit_connection_close (d->peer->connection);
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
set_peer_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;
  AddData *d = g_task_get_task_data (task);
  NatkitNetwork *self = g_task_get_source_object (task);
  NatkitNetworkPeer *peer = d->peer;
  NatkitNetworkPeer *old;
  GError *error = NULL;
  guint position;

  if (!natkit_tunnel_set_peer_finish (NATKIT_TUNNEL (source), result, &error))
    {
      peer_stop_carrier (peer);
      add_fail (task, error);
      return;
    }
  if (self->left)
    {
      peer_stop_carrier (peer);
      add_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                   "the network was left"));
      return;
    }
  /* the same peer again (it reconnected): the new connection replaces it */
  old = find_peer (self, peer->peer_id, &position);
  if (old)
    {
      g_object_ref (old);
      old->up = FALSE;
      peer_stop_carrier (old);
      g_list_store_remove (self->peers, position);
      if (old->connection && old->connection != peer->connection)
        natkit_connection_close (old->connection);
      g_object_unref (old);
    }
  peer->up = TRUE;
  peer->state_id = g_signal_connect (peer->connection, "notify::state",
                                     G_CALLBACK (peer_state_cb), peer);
  peer->path_id = g_signal_connect (peer->connection, "path-changed",
                                    G_CALLBACK (peer_path_changed_cb), peer);
  g_list_store_append (self->peers, peer);
  update_mtu (self);
  if (peer->peer_address)
    g_hash_table_remove (self->retries, peer->peer_address);
  g_debug ("peer %.8s… is up at %s via %s", peer->peer_id, peer->address,
           natkit_connection_get_method (peer->connection));
  g_signal_emit (self, signals[SIGNAL_PEER_UP], 0, peer);
  g_task_return_pointer (task, g_object_ref (peer), g_object_unref);
  g_object_unref (task);
}

static void
hello_exchanged (GTask *task)
{
  AddData *d = g_task_get_task_data (task);
  NatkitNetwork *self = g_task_get_source_object (task);
  NatkitNetworkPeer *peer = d->peer;
  g_autofree char *endpoint = NULL;
  g_autofree char *allowed = NULL;
  GError *error = NULL;
  char *newline;
  guint32 address;
  guint n;

  if (!d->sent || !d->received)
    return;
  g_clear_handle_id (&d->timeout_id, g_source_remove);
  if (d->error)
    {
      add_fail (task, g_steal_pointer (&d->error));
      return;
    }
  newline = memchr (d->buffer, '\n', d->filled);
  if (!_natkit_network_parse_hello (d->buffer, newline - d->buffer, peer->peer_id,
                                    self->network, self->prefix, &peer->public_key,
                                    &address, &error))
    {
      add_fail (task, error);
      return;
    }
  peer->address = format_address (address);
  if (address == self->address_value)
    {
      add_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                   "%.8s… claims %s, this node's own address in the "
                                   "network: refused", peer->peer_id, peer->address));
      return;
    }
  if (g_str_equal (peer->public_key, natkit_tunnel_get_public_key (self->tunnel)))
    {
      add_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                   "%.8s… offers this node's own WireGuard public key: "
                                   "refused", peer->peer_id));
      return;
    }
  n = g_list_model_get_n_items (G_LIST_MODEL (self->peers));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(NatkitNetworkPeer) other = g_list_model_get_item (G_LIST_MODEL (self->peers), i);

      if (g_str_equal (other->peer_id, peer->peer_id))
        continue;
      if (g_str_equal (other->address, peer->address) ||
          g_str_equal (other->public_key, peer->public_key))
        {
          add_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                       "%.8s… claims %s %s, which peer %.8s… already has: "
                                       "refused", peer->peer_id,
                                       g_str_equal (other->address, peer->address) ?
                                         "the address" : "the WireGuard key of",
                                       g_str_equal (other->address, peer->address) ?
                                         peer->address : "",
                                       other->peer_id));
          return;
        }
    }

  if (!peer_start_carrier (peer, natkit_tunnel_get_listen_port (self->tunnel), &error))
    {
      add_fail (task, error);
      return;
    }
  endpoint = g_strdup_printf ("127.0.0.1:%u", peer_carrier_port (peer));
  allowed = g_strdup_printf ("%s/32", peer->address);
  natkit_tunnel_set_peer_async (self->tunnel, peer->public_key, endpoint, allowed,
                                self->cancellable, set_peer_cb, task);
}

static gboolean
hello_timeout_cb (gpointer user_data)
{
  GTask *task = user_data;
  AddData *d = g_task_get_task_data (task);

  d->timeout_id = 0;
  d->timed_out = TRUE;
  g_cancellable_cancel (d->cancellable);
  return G_SOURCE_REMOVE;
}

static void
hello_set_error (AddData *d,
                 GError  *error)
{
  if (d->error == NULL)
    d->error = error;
  else
    g_error_free (error);
}

static void read_hello (GTask *task);

static void
hello_read_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  GTask *task = user_data;
  AddData *d = g_task_get_task_data (task);
  GError *error = NULL;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);

  if (n <= 0)
    {
      if (d->timed_out)
        {
          g_clear_error (&error);
          error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                               "%.8s… did not send its WireGuard key within %d s: is it "
                               "running “nat-tool vpn up”?", d->peer->peer_id,
                               HELLO_TIMEOUT_S);
        }
      else if (n == 0)
        error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                             "%.8s… closed the connection without sending its "
                             "WireGuard key", d->peer->peer_id);
      hello_set_error (d, error);
      d->received = TRUE;
      hello_exchanged (task);
      return;
    }
  d->filled += n;
  if (memchr (d->buffer, '\n', d->filled) != NULL)
    {
      d->received = TRUE;
      hello_exchanged (task);
      return;
    }
  if (d->filled >= NATKIT_NETWORK_HELLO_MAX)
    {
      hello_set_error (d, g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                                       "%.8s… sent a WireGuard key exchange longer than "
                                       "%d bytes: refused", d->peer->peer_id,
                                       NATKIT_NETWORK_HELLO_MAX));
      d->received = TRUE;
      hello_exchanged (task);
      return;
    }
  read_hello (task);
}

static void
read_hello (GTask *task)
{
  AddData *d = g_task_get_task_data (task);
  GIOStream *stream = natkit_connection_get_stream (d->peer->connection);

  /* one byte at a time is not needed: the peer sends nothing after its
   * line until it has ours, so a read never takes more than the line */
  g_input_stream_read_async (g_io_stream_get_input_stream (stream),
                             d->buffer + d->filled, NATKIT_NETWORK_HELLO_MAX - d->filled,
                             G_PRIORITY_DEFAULT, d->cancellable, hello_read_cb, task);
}

static void
hello_written_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  GTask *task = user_data;
  AddData *d = g_task_get_task_data (task);
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    hello_set_error (d, error);
  d->sent = TRUE;
  hello_exchanged (task);
}

static void
add_connection (NatkitNetwork       *self,
                NatkitConnection    *connection,
                const char          *peer_address,
                GCancellable        *cancellable,
                GAsyncReadyCallback  callback,
                gpointer             user_data,
                gpointer             source_tag)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  AddData *d = g_new0 (AddData, 1);
  GIOStream *stream;

  g_task_set_source_tag (task, source_tag);
  g_task_set_name (task, "natkit_network_add_connection");
  g_task_set_task_data (task, d, add_data_free);
  d->peer = g_object_new (NATKIT_TYPE_NETWORK_PEER, NULL);
  d->peer->network = self;
  d->peer->connection = g_object_ref (connection);
  d->peer->peer_id = g_strdup (natkit_connection_get_peer_id (connection));
  d->peer->peer_address = g_strdup (peer_address);
  d->cancellable = g_cancellable_new ();
  if (self->left)
    {
      add_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                                   "the network was left"));
      return;
    }
  d->hello = _natkit_network_format_hello (natkit_signaling_get_local_peer_id (self->signaling),
                                           natkit_tunnel_get_public_key (self->tunnel),
                                           self->address_value);
  d->timeout_id = g_timeout_add_seconds (HELLO_TIMEOUT_S, hello_timeout_cb, task);
  stream = natkit_connection_get_stream (connection);
  g_output_stream_write_all_async (g_io_stream_get_output_stream (stream), d->hello,
                                   strlen (d->hello), G_PRIORITY_DEFAULT, cancellable,
                                   hello_written_cb, task);
  read_hello (task);
}

/**
 * natkit_network_add_connection_async:
 * @self: a #NatkitNetwork
 * @connection: a connection to the peer, e.g. one the manager announced
 *   with [signal@Natkit.Manager::incoming]
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the peer is up, or was refused
 * @user_data: data for @callback
 *
 * Makes the peer at the other end of @connection a member of the network:
 * exchanges WireGuard keys and addresses over the connection's stream and
 * carries the tunnel over its datagrams. The network then owns the
 * connection's datagrams and stream; the connection is closed when the peer
 * is refused or the network is left.
 */
void
natkit_network_add_connection_async (NatkitNetwork       *self,
                                     NatkitConnection    *connection,
                                     GCancellable        *cancellable,
                                     GAsyncReadyCallback  callback,
                                     gpointer             user_data)
{
  g_return_if_fail (NATKIT_IS_NETWORK (self));
  g_return_if_fail (NATKIT_IS_CONNECTION (connection));

  add_connection (self, connection, NULL, cancellable, callback, user_data,
                  natkit_network_add_connection_async);
}

/**
 * natkit_network_add_connection_finish:
 * @self: a #NatkitNetwork
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (nullable): the peer, or %NULL with an error
 *   (%NATKIT_ERROR_IDENTITY when it offered its key under another peer ID)
 */
NatkitNetworkPeer *
natkit_network_add_connection_finish (NatkitNetwork  *self,
                                      GAsyncResult   *result,
                                      GError        **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Adding a peer by address: connect, then as above. */

typedef struct
{
  char         *peer_address;
  GCancellable *cancellable;
} ConnectData;

static void
connect_data_free (gpointer data)
{
  ConnectData *d = data;

  g_free (d->peer_address);
  g_clear_object (&d->cancellable);
  g_free (d);
}

static void
added_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  GTask *task = user_data;
  GError *error = NULL;
  NatkitNetworkPeer *peer = g_task_propagate_pointer (G_TASK (result), &error);

  if (peer)
    g_task_return_pointer (task, peer, g_object_unref);
  else
    g_task_return_error (task, error);
  g_object_unref (task);
}

static void
connected_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  GTask *task = user_data;
  NatkitNetwork *self = g_task_get_source_object (task);
  ConnectData *d = g_task_get_task_data (task);
  GError *error = NULL;
  g_autoptr(NatkitConnection) connection =
    natkit_manager_connect_finish (NATKIT_MANAGER (source), result, &error);

  if (connection == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  add_connection (self, connection, d->peer_address, d->cancellable, added_cb, task,
                  natkit_network_add_peer_async);
}

/**
 * natkit_network_add_peer_async:
 * @self: a #NatkitNetwork
 * @peer_address: the peer's address (`PEER-ID@HOST:PORT`)
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the peer is up, or could not be
 *   reached or was refused
 * @user_data: data for @callback
 *
 * Connects to a peer with [method@Natkit.Manager.connect_async] (every
 * method, by rank) and adds it as [method@Natkit.Network.add_connection_async]
 * does. When its connection later fails, it is connected again (three
 * tries, 1, 2 and 4 s apart).
 */
void
natkit_network_add_peer_async (NatkitNetwork       *self,
                               const char          *peer_address,
                               GCancellable        *cancellable,
                               GAsyncReadyCallback  callback,
                               gpointer             user_data)
{
  GTask *task;
  ConnectData *d;

  g_return_if_fail (NATKIT_IS_NETWORK (self));
  g_return_if_fail (peer_address != NULL);

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_network_add_peer_async);
  g_task_set_name (task, "natkit_network_add_peer");
  d = g_new0 (ConnectData, 1);
  d->peer_address = g_strdup (peer_address);
  d->cancellable = cancellable ? g_object_ref (cancellable) : NULL;
  g_task_set_task_data (task, d, connect_data_free);
  if (self->left)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "the network was left");
      g_object_unref (task);
      return;
    }
  /* the manager's rendezvous for the address's server: the one this node
   * registered at when it is the same server */
  natkit_manager_connect_async (self->manager, peer_address, NULL, NATKIT_CONNECT_NONE,
                                cancellable, connected_cb, task);
}

/**
 * natkit_network_add_peer_finish:
 * @self: a #NatkitNetwork
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (nullable): the peer, or %NULL with an error
 */
NatkitNetworkPeer *
natkit_network_add_peer_finish (NatkitNetwork  *self,
                                GAsyncResult   *result,
                                GError        **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* Reconnecting a peer that was added by address. */

static void
retry_done_cb (GObject      *source,
               GAsyncResult *result,
               gpointer      user_data)
{
  g_autofree char *peer_address = user_data;
  NatkitNetwork *self = NATKIT_NETWORK (source);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitNetworkPeer) peer = natkit_network_add_peer_finish (self, result, &error);

  if (peer || self->left)
    return;
  g_debug ("reconnecting %s: %s", peer_address, error->message);
  schedule_retry (self, peer_address);
}

static gboolean
retry_cb (gpointer user_data)
{
  Retry *r = user_data;

  r->timeout_id = 0;
  natkit_network_add_peer_async (r->network, r->peer_address, r->network->cancellable,
                                 retry_done_cb, g_strdup (r->peer_address));
  return G_SOURCE_REMOVE;
}

static void
schedule_retry (NatkitNetwork *self,
                const char    *peer_address)
{
  Retry *r = g_hash_table_lookup (self->retries, peer_address);

  if (r == NULL)
    {
      r = g_new0 (Retry, 1);
      r->network = self;
      r->peer_address = g_strdup (peer_address);
      g_hash_table_insert (self->retries, r->peer_address, r);
    }
  if (r->tries >= RECONNECT_TRIES)
    {
      g_debug ("gave up reconnecting %s after %u tries", peer_address, r->tries);
      g_hash_table_remove (self->retries, peer_address);
      return;
    }
  g_clear_handle_id (&r->timeout_id, g_source_remove);
  r->timeout_id = g_timeout_add_seconds (RECONNECT_FIRST_S << r->tries, retry_cb, r);
  r->tries++;
}

/* The tunnel's counters every COUNTERS_S; the health check every health
 * interval: the same question, and a tunnel that stops answering it twice
 * in a row is down. */

static void tunnel_stopped_cb (NatkitTunnel *tunnel,
                               const char   *reason,
                               gpointer      user_data);

static gboolean
apply_counters (NatkitNetwork *self,
                GObject       *source,
                GAsyncResult  *result,
                GError       **error)
{
  g_autoptr(GVariant) peers = natkit_tunnel_get_peers_finish (NATKIT_TUNNEL (source),
                                                               result, error);
  guint n;

  if (peers == NULL)
    return FALSE;
  n = g_list_model_get_n_items (G_LIST_MODEL (self->peers));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(NatkitNetworkPeer) peer = g_list_model_get_item (G_LIST_MODEL (self->peers), i);
      guint64 rx, tx;
      gint64 handshake;

      if (!g_variant_lookup (peers, peer->public_key, "(ttx)", &rx, &tx, &handshake))
        continue;
      g_object_freeze_notify (G_OBJECT (peer));
      if (rx != peer->bytes_received)
        {
          peer->bytes_received = rx;
          g_object_notify_by_pspec (G_OBJECT (peer), peer_properties[PEER_PROP_BYTES_RECEIVED]);
        }
      if (tx != peer->bytes_sent)
        {
          peer->bytes_sent = tx;
          g_object_notify_by_pspec (G_OBJECT (peer), peer_properties[PEER_PROP_BYTES_SENT]);
        }
      if (handshake != peer->last_handshake)
        {
          peer->last_handshake = handshake;
          g_object_notify_by_pspec (G_OBJECT (peer), peer_properties[PEER_PROP_LAST_HANDSHAKE]);
        }
      g_object_notify_by_pspec (G_OBJECT (peer), peer_properties[PEER_PROP_RTT]);
      g_object_thaw_notify (G_OBJECT (peer));
    }
  return TRUE;
}

static void
counters_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  NatkitNetwork *self = user_data;
  g_autoptr(GError) error = NULL;

  if (!apply_counters (self, source, result, &error) &&
      !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    g_debug ("reading the tunnel's counters: %s", error->message);
  g_object_unref (self);
}

static gboolean
counters_timeout_cb (gpointer user_data)
{
  NatkitNetwork *self = user_data;

  if (g_list_model_get_n_items (G_LIST_MODEL (self->peers)) > 0)
    natkit_tunnel_get_peers_async (self->tunnel, self->cancellable, counters_cb,
                                   g_object_ref (self));
  return G_SOURCE_CONTINUE;
}

static void
health_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  NatkitNetwork *self = user_data;
  g_autoptr(GError) error = NULL;

  if (apply_counters (self, source, result, &error))
    self->health_failures = 0;
  else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED) && !self->left)
    {
      g_debug ("health check: %s", error->message);
      if (++self->health_failures >= 2)
        {
          g_autofree char *reason =
            g_strdup_printf ("the tunnel stopped answering (%s)", error->message);

          tunnel_stopped_cb (NATKIT_TUNNEL (source), reason, self);
        }
    }
  g_object_unref (self);
}

static gboolean
health_timeout_cb (gpointer user_data)
{
  NatkitNetwork *self = user_data;

  natkit_tunnel_get_peers_async (self->tunnel, self->cancellable, health_cb,
                                 g_object_ref (self));
  return G_SOURCE_CONTINUE;
}

/**
 * natkit_network_leave:
 * @self: a #NatkitNetwork
 *
 * Leaves the network: closes the peers' connections, deletes the interface
 * and its routes, stops the tunnel's process. Nothing is left behind.
 * Happens by itself when the last reference goes; safe to call more than
 * once.
 */
void
natkit_network_leave (NatkitNetwork *self)
{
  guint n;

  g_return_if_fail (NATKIT_IS_NETWORK (self));

  if (self->left)
    return;
  self->left = TRUE;
  g_cancellable_cancel (self->cancellable);
  g_clear_handle_id (&self->health_id, g_source_remove);
  g_clear_handle_id (&self->counters_id, g_source_remove);
  g_hash_table_remove_all (self->retries);
  n = g_list_model_get_n_items (G_LIST_MODEL (self->peers));
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(NatkitNetworkPeer) peer = g_list_model_get_item (G_LIST_MODEL (self->peers), i);

      peer->up = FALSE;
      peer_stop_carrier (peer);
      if (peer->connection)
        natkit_connection_close (peer->connection);
    }
  g_list_store_remove_all (self->peers);
  if (self->tunnel)
    natkit_tunnel_down (self->tunnel);
  if (self->registered)
    joined_remove (self->network, self->prefix);
  self->registered = FALSE;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_INTERFACE_NAME]);
}

/* ---- joining ----------------------------------------------------------------- */

#define CLAIM_ATTEMPTS 8

typedef struct
{
  GPtrArray *candidates;   /* NatkitPluginInfo */
  guint      next;
  GString   *failures;
  char      *interface_name;
  char      *key_file;
  guint      attempt;      /* address candidate being claimed */
} JoinData;

static void
join_data_free (gpointer data)
{
  JoinData *d = data;

  g_clear_pointer (&d->candidates, g_ptr_array_unref);
  g_string_free (d->failures, TRUE);
  g_free (d->interface_name);
  g_free (d->key_file);
  g_free (d);
}

static void join_try_next (GTask *task);

static void
join_failed_attempt (GTask      *task,
                     const char *name,
                     GError     *error)
{
  JoinData *d = g_task_get_task_data (task);
  NatkitNetwork *self = g_object_get_data (G_OBJECT (task), "network");

  g_debug ("tunnel plugin %s: %s", name, error->message);
  if (self && self->tunnel)
    {
      natkit_tunnel_down (self->tunnel);
      g_clear_object (&self->tunnel);
    }
  if (d->failures->len)
    g_string_append (d->failures, "; ");
  /* one backend: its own message says it best */
  g_string_append (d->failures, error->message);
  g_error_free (error);
  join_try_next (task);
}

static void
tunnel_stopped_cb (NatkitTunnel *tunnel,
                   const char   *reason,
                   gpointer      user_data)
{
  NatkitNetwork *self = user_data;

  if (self->left)
    return;
  g_object_ref (self);
  natkit_network_leave (self);
  g_signal_emit (self, signals[SIGNAL_FAILED], 0, reason);
  g_object_unref (self);
}

static void
tunnel_up_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  GTask *task = user_data;
  NatkitNetwork *self = g_object_get_data (G_OBJECT (task), "network");
  GError *error = NULL;
  GVariant *setting;

  if (!natkit_tunnel_up_finish (NATKIT_TUNNEL (source), result, &error))
    {
      JoinData *d = g_task_get_task_data (task);
      NatkitPluginInfo *info = g_ptr_array_index (d->candidates, d->next - 1);

      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          natkit_tunnel_down (self->tunnel);
          g_task_return_error (task, error);
          g_object_unref (task);
          return;
        }
      join_failed_attempt (task, natkit_plugin_info_get_name (info), error);
      return;
    }
  setting = natkit_config_get_plugin_setting (natkit_manager_get_config (self->manager),
                                              "wireguard", "health-interval");
  if (setting && g_variant_is_of_type (setting, G_VARIANT_TYPE_INT64) &&
      g_variant_get_int64 (setting) > 0)
    self->health_interval_s = MIN (g_variant_get_int64 (setting), 3600);
  self->health_id = g_timeout_add_seconds (self->health_interval_s, health_timeout_cb, self);
  self->counters_id = g_timeout_add_seconds (COUNTERS_S, counters_timeout_cb, self);
  g_signal_connect_object (self->tunnel, "stopped", G_CALLBACK (tunnel_stopped_cb), self, 0);
  joined_add (self->network, self->prefix);
  self->registered = TRUE;
  g_debug ("joined %s as %s on %s (%s)", self->cidr, self->address,
           natkit_tunnel_get_interface_name (self->tunnel),
           natkit_tunnel_get_implementation (self->tunnel));
  g_task_return_pointer (task, g_object_ref (self), g_object_unref);
  g_object_unref (task);
}

static void
join_try_next (GTask *task)
{
  JoinData *d = g_task_get_task_data (task);
  NatkitNetwork *self = g_object_get_data (G_OBJECT (task), "network");
  NatkitPluginInfo *info;
  GError *error = NULL;

  if (d->next >= d->candidates->len)
    {
      if (d->candidates->len == 0)
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                                 "No tunnel plugin is loaded (the wireguard plugin; "
                                 "“nat-tool plugins” says why it is missing)");
      else
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                 "%s", d->failures->str);
      g_object_unref (task);
      return;
    }
  info = g_ptr_array_index (d->candidates, d->next++);
  self->tunnel = g_object_new (natkit_plugin_info_get_gtype (info), NULL);
  if (!natkit_tunnel_load_key (self->tunnel, d->key_file, &error))
    {
      join_failed_attempt (task, natkit_plugin_info_get_name (info), error);
      return;
    }
  self->mtu = TUNNEL_MTU_START;
  natkit_tunnel_up_async (self->tunnel, d->interface_name, self->address, self->prefix,
                          self->mtu, g_task_get_cancellable (task), tunnel_up_cb, task);
}

static void claim_next (GTask *task);

static void
claimed_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  GTask *task = user_data;
  JoinData *d = g_task_get_task_data (task);
  NatkitNetwork *self = g_object_get_data (G_OBJECT (task), "network");
  g_autoptr(GError) error = NULL;
  g_autofree char *holder = NULL;

  if (natkit_rendezvous_claim_address_finish (NATKIT_RENDEZVOUS (source), result, &holder,
                                              &error))
    {
      g_debug ("natkit-server granted %s in %s", self->address, self->cidr);
      join_try_next (task);
      return;
    }
  if (error)
    {
      if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        {
          g_task_return_error (task, g_steal_pointer (&error));
          g_object_unref (task);
          return;
        }
      /* an older server, or none reachable: the derived address, unchecked */
      g_debug ("could not claim %s at natkit-server (%s): using it unchecked",
               self->address, error->message);
      self->address_value = _natkit_network_address_for (self->network, self->prefix,
                                                         natkit_signaling_get_local_peer_id (self->signaling), 0);
      g_free (self->address);
      self->address = format_address (self->address_value);
      join_try_next (task);
      return;
    }
  g_debug ("%s in %s is %.8s…'s: trying the next address", self->address, self->cidr,
           holder);
  if (++d->attempt >= CLAIM_ATTEMPTS)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "natkit-server says the %u addresses this node may use in "
                               "%s are taken by other peers: pick another network with "
                               "--network", CLAIM_ATTEMPTS, self->cidr);
      g_object_unref (task);
      return;
    }
  claim_next (task);
}

static void
claim_next (GTask *task)
{
  JoinData *d = g_task_get_task_data (task);
  NatkitNetwork *self = g_object_get_data (G_OBJECT (task), "network");

  self->address_value = _natkit_network_address_for (self->network, self->prefix,
                                                     natkit_signaling_get_local_peer_id (self->signaling),
                                                     d->attempt);
  g_free (self->address);
  self->address = format_address (self->address_value);
  natkit_rendezvous_claim_address_async (NATKIT_RENDEZVOUS (self->signaling), self->cidr,
                                         self->address, g_task_get_cancellable (task),
                                         claimed_cb, task);
}

/**
 * natkit_manager_join_network_async:
 * @self: a #NatkitManager
 * @signaling: the signaling channel peers are reached through (e.g. a
 *   registered [class@Natkit.Rendezvous]); this node's address in the
 *   network derives from its peer ID, and a natkit-server
 *   ([class@Natkit.Rendezvous]) is asked to grant it first (the next
 *   candidate when another peer holds it)
 * @network: (nullable): the virtual network as "A.B.C.D/PREFIX", or %NULL
 *   for the `network` setting of the wireguard plugin, else
 *   [const@Natkit.NETWORK_DEFAULT]
 * @interface_name: (nullable): the interface to create, or %NULL for the
 *   first free "natkitN"
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called when the interface is up, or it could
 *   not be made
 * @user_data: data for @callback
 *
 * Brings up a virtual network interface through the best tunnel plugin
 * (the wireguard plugin: `wireguard-go`, needs root or `CAP_NET_ADMIN`).
 * Add peers to the returned [class@Natkit.Network]. On failure nothing is
 * left behind.
 */
void
natkit_manager_join_network_async (NatkitManager       *self,
                                   NatkitSignaling     *signaling,
                                   const char          *network,
                                   const char          *interface_name,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  GTask *task;
  JoinData *d;
  NatkitNetwork *net;
  g_autoptr(GPtrArray) plugins = NULL;
  GError *error = NULL;
  const char *peer_id;

  g_return_if_fail (NATKIT_IS_MANAGER (self));
  g_return_if_fail (NATKIT_IS_SIGNALING (signaling));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_manager_join_network_async);
  g_task_set_name (task, "natkit_manager_join_network");
  d = g_new0 (JoinData, 1);
  d->failures = g_string_new (NULL);
  d->interface_name = g_strdup (interface_name);
  d->key_file = g_build_filename (g_get_user_state_dir (), "natkit", "wireguard.key", NULL);
  d->candidates = g_ptr_array_new_with_free_func (g_object_unref);
  g_task_set_task_data (task, d, join_data_free);

  net = g_object_new (NATKIT_TYPE_NETWORK, NULL);
  g_object_set_data_full (G_OBJECT (task), "network", net, g_object_unref);
  net->manager = g_object_ref (self);
  net->signaling = g_object_ref (signaling);
  if (network == NULL)
    {
      GVariant *setting = natkit_config_get_plugin_setting (natkit_manager_get_config (self),
                                                            "wireguard", "network");

      network = setting && g_variant_is_of_type (setting, G_VARIANT_TYPE_STRING) ?
                g_variant_get_string (setting, NULL) : NATKIT_NETWORK_DEFAULT;
    }
  if (!_natkit_network_parse_cidr (network, &net->network, &net->prefix, &error))
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  {
    g_autofree char *base = format_address (net->network);

    net->cidr = g_strdup_printf ("%s/%u", base, net->prefix);
  }
  peer_id = natkit_signaling_get_local_peer_id (signaling);
  if (peer_id == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "The signaling channel has no peer ID yet: connect "
                               "(register) it first");
      g_object_unref (task);
      return;
    }
  net->address_value = _natkit_network_address_for (net->network, net->prefix, peer_id, 0);
  net->address = format_address (net->address_value);

  plugins = natkit_manager_list_plugins (self);
  for (guint i = 0; i < plugins->len; i++)
    {
      NatkitPluginInfo *info = g_ptr_array_index (plugins, i);

      if (natkit_plugin_info_get_state (info) == NATKIT_PLUGIN_STATE_LOADED &&
          natkit_plugin_info_get_kind (info) == NATKIT_PLUGIN_KIND_TRANSPORT &&
          g_type_is_a (natkit_plugin_info_get_gtype (info), NATKIT_TYPE_TUNNEL))
        g_ptr_array_add (d->candidates, g_object_ref (info));
    }
  /* through a natkit-server: claim the address there first, so that no
   * two peers of the network share one */
  if (NATKIT_IS_RENDEZVOUS (signaling) && d->candidates->len > 0)
    claim_next (task);
  else
    join_try_next (task);
}

/**
 * natkit_manager_join_network_finish:
 * @self: a #NatkitManager
 * @result: the result
 * @error: return location for a #GError
 *
 * Returns: (transfer full) (nullable): the network, or %NULL with an error
 *   that says what to do (install `wireguard-go`, make `/dev/net/tun`
 *   available, pick another interface name…)
 */
NatkitNetwork *
natkit_manager_join_network_finish (NatkitManager  *self,
                                    GAsyncResult   *result,
                                    GError        **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}
