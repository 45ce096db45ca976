/* natkit-enums.h: public enumerations
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <glib.h>

G_BEGIN_DECLS

/**
 * NatkitRank:
 * @NATKIT_RANK_NONE: never chosen automatically; only used when asked for by
 *   name (for example `nat-tool connect --method NAME`)
 * @NATKIT_RANK_MARGINAL: tried after every better-ranked method
 * @NATKIT_RANK_SECONDARY: a good method that is not the first choice
 * @NATKIT_RANK_PRIMARY: a first choice
 *
 * How eagerly the manager tries a plugin, with the values of GStreamer's
 * `GstRank`. Any integer is a valid rank; the named values are landmarks.
 * Plugins of equal rank are ordered by name.
 *
 * Ranks can be changed without recompiling, in the configuration file
 * (`plugins.NAME.rank`) or with the `NATKIT_PLUGIN_RANKS` environment
 * variable (`NATKIT_PLUGIN_RANKS=help` lists the plugins and the syntax).
 */
typedef enum {
  NATKIT_RANK_NONE = 0,
  NATKIT_RANK_MARGINAL = 64,
  NATKIT_RANK_SECONDARY = 128,
  NATKIT_RANK_PRIMARY = 256,
} NatkitRank;

/**
 * NatkitPluginKind:
 * @NATKIT_PLUGIN_KIND_TRAVERSAL: produces a [class@Natkit.Path] to a peer
 *   (implements [iface@Natkit.Traversal])
 * @NATKIT_PLUGIN_KIND_PORT_MAPPER: asks a gateway to forward a port (UPnP,
 *   NAT-PMP, PCP) (implements [iface@Natkit.PortMapper]); its mappings give
 *   the direct methods a "mapped" candidate
 * @NATKIT_PLUGIN_KIND_TRANSPORT: runs on top of an established path
 *   (implements [iface@Natkit.Transport])
 *
 * What a plugin provides.
 */
typedef enum {
  NATKIT_PLUGIN_KIND_TRAVERSAL,
  NATKIT_PLUGIN_KIND_PORT_MAPPER,
  NATKIT_PLUGIN_KIND_TRANSPORT,
} NatkitPluginKind;

/**
 * NatkitPluginState:
 * @NATKIT_PLUGIN_STATE_LOADED: loaded and available
 * @NATKIT_PLUGIN_STATE_DISABLED: found but switched off (by configuration,
 *   the environment, or because another plugin of the same name comes first
 *   in the search path); the reason says which
 * @NATKIT_PLUGIN_STATE_FAILED: could not be loaded; the reason says why
 *
 * The state of a plugin found by the manager.
 */
typedef enum {
  NATKIT_PLUGIN_STATE_LOADED,
  NATKIT_PLUGIN_STATE_DISABLED,
  NATKIT_PLUGIN_STATE_FAILED,
} NatkitPluginState;

/**
 * NatkitCost:
 * @NATKIT_COST_DIRECT: packets go straight between the peers
 * @NATKIT_COST_MAPPED: direct, through a port the gateway forwards
 * @NATKIT_COST_RELAYED: packets go through a third host
 *
 * What a traversal method costs, cheapest first. The manager prefers
 * cheaper methods when it can choose.
 */
typedef enum {
  NATKIT_COST_DIRECT,
  NATKIT_COST_MAPPED,
  NATKIT_COST_RELAYED,
} NatkitCost;

/**
 * NatkitRole:
 * @NATKIT_ROLE_INITIATOR: this side asked for the connection
 * @NATKIT_ROLE_RESPONDER: this side accepts the connection
 *
 * Which side of a connection attempt this process is.
 */
typedef enum {
  NATKIT_ROLE_INITIATOR,
  NATKIT_ROLE_RESPONDER,
} NatkitRole;

/**
 * NatkitError:
 * @NATKIT_ERROR_FAILED: a failure with no more specific code
 * @NATKIT_ERROR_INVALID_CONFIG: the configuration file is malformed or holds
 *   a value of the wrong kind
 * @NATKIT_ERROR_INVALID_ARGUMENT: a value given by the user is malformed
 *   (a peer ID, an address, a rank)
 * @NATKIT_ERROR_IDENTITY: the identity key could not be created, read or
 *   trusted
 * @NATKIT_ERROR_PLUGIN: a plugin could not be loaded or misbehaved
 * @NATKIT_ERROR_NOT_FOUND: a named thing (plugin, method, peer) does not exist
 * @NATKIT_ERROR_NO_METHOD: no traversal method could reach the peer; the
 *   message lists why each one failed
 * @NATKIT_ERROR_TIMED_OUT: the operation ran past its time limit
 * @NATKIT_ERROR_CLOSED: the path or connection is closed
 * @NATKIT_ERROR_MESSAGE_TOO_LARGE: a datagram does not fit the path's MTU
 * @NATKIT_ERROR_NOT_APPLICABLE: a method cannot work in this situation (for
 *   example, the network blocks UDP); the message says why
 * @NATKIT_ERROR_REFUSED: a gateway or server answered and said no (a port
 *   mapping refused, a port already in use); the message gives its reason
 * @NATKIT_ERROR_UNAVAILABLE: nothing offers the service here (no UPnP
 *   gateway on the network, a gateway that does not speak PCP or NAT-PMP)
 *
 * Error codes in the `NATKIT_ERROR` domain. Every error carries a message a
 * person can act on.
 */
typedef enum {
  NATKIT_ERROR_FAILED,
  NATKIT_ERROR_INVALID_CONFIG,
  NATKIT_ERROR_INVALID_ARGUMENT,
  NATKIT_ERROR_IDENTITY,
  NATKIT_ERROR_PLUGIN,
  NATKIT_ERROR_NOT_FOUND,
  NATKIT_ERROR_NO_METHOD,
  NATKIT_ERROR_TIMED_OUT,
  NATKIT_ERROR_CLOSED,
  NATKIT_ERROR_MESSAGE_TOO_LARGE,
  NATKIT_ERROR_NOT_APPLICABLE,
  NATKIT_ERROR_REFUSED,
  NATKIT_ERROR_UNAVAILABLE,
} NatkitError;

/**
 * NatkitNatBehavior:
 * @NATKIT_NAT_BEHAVIOR_UNKNOWN: could not be measured
 * @NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT: the same for every destination
 * @NATKIT_NAT_BEHAVIOR_ADDRESS_DEPENDENT: depends on the destination's IP
 *   address
 * @NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT: depends on the
 *   destination's IP address and port
 *
 * A NAT's mapping or filtering behavior, in the terms of RFC 4787.
 */
typedef enum {
  NATKIT_NAT_BEHAVIOR_UNKNOWN,
  NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT,
  NATKIT_NAT_BEHAVIOR_ADDRESS_DEPENDENT,
  NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT,
} NatkitNatBehavior;

/**
 * NatkitNatType:
 * @NATKIT_NAT_TYPE_UNKNOWN: not enough was measured to say
 * @NATKIT_NAT_TYPE_OPEN: no NAT: the public address is the local one
 * @NATKIT_NAT_TYPE_FULL_CONE: endpoint-independent mapping and filtering
 * @NATKIT_NAT_TYPE_RESTRICTED_CONE: endpoint-independent mapping,
 *   address-dependent filtering
 * @NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE: endpoint-independent mapping,
 *   address-and-port-dependent filtering
 * @NATKIT_NAT_TYPE_SYMMETRIC: the mapping depends on the destination
 * @NATKIT_NAT_TYPE_UDP_BLOCKED: no UDP gets through, though the server is
 *   reachable
 *
 * The classic (RFC 3489) name of a NAT's behavior.
 */
typedef enum {
  NATKIT_NAT_TYPE_UNKNOWN,
  NATKIT_NAT_TYPE_OPEN,
  NATKIT_NAT_TYPE_FULL_CONE,
  NATKIT_NAT_TYPE_RESTRICTED_CONE,
  NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE,
  NATKIT_NAT_TYPE_SYMMETRIC,
  NATKIT_NAT_TYPE_UDP_BLOCKED,
} NatkitNatType;

/**
 * NatkitHairpinning:
 * @NATKIT_HAIRPINNING_UNKNOWN: not tested
 * @NATKIT_HAIRPINNING_SUPPORTED: a packet to our own public address comes
 *   back to us
 * @NATKIT_HAIRPINNING_UNSUPPORTED: it does not
 *
 * Whether the NAT hairpins (RFC 4787 section 6).
 */
typedef enum {
  NATKIT_HAIRPINNING_UNKNOWN,
  NATKIT_HAIRPINNING_SUPPORTED,
  NATKIT_HAIRPINNING_UNSUPPORTED,
} NatkitHairpinning;

/**
 * NatkitDetectFlags:
 * @NATKIT_DETECT_NONE: the RFC 5780 mapping, filtering and hairpinning tests
 * @NATKIT_DETECT_BINDING_LIFETIME: also measure how long an idle UDP binding
 *   lives (RFC 5780 section 4.6). Slow: it waits about twice the lifetime,
 *   within the detection timeout
 * @NATKIT_DETECT_NO_GATEWAY: do not ask the gateway which port mapping
 *   protocols (UPnP, NAT-PMP, PCP) it offers
 *
 * What [method@Natkit.Manager.detect_nat_async] measures.
 */
typedef enum /*< flags >*/ {
  NATKIT_DETECT_NONE = 0,
  NATKIT_DETECT_BINDING_LIFETIME = 1 << 0,
  NATKIT_DETECT_NO_GATEWAY = 1 << 1,
} NatkitDetectFlags;

/**
 * NatkitIpProtocol:
 * @NATKIT_IP_PROTOCOL_UDP: UDP
 * @NATKIT_IP_PROTOCOL_TCP: TCP
 *
 * The transport protocol of a port mapping.
 */
typedef enum {
  NATKIT_IP_PROTOCOL_UDP,
  NATKIT_IP_PROTOCOL_TCP,
} NatkitIpProtocol;

/**
 * NatkitPortMappingState:
 * @NATKIT_PORT_MAPPING_STATE_ACTIVE: the gateway forwards the port; it is
 *   renewed before it expires
 * @NATKIT_PORT_MAPPING_STATE_LOST: the mapping could not be renewed or
 *   re-created before it expired; see [signal@Natkit.PortMapping::lost]
 * @NATKIT_PORT_MAPPING_STATE_RELEASED: the mapping was deleted
 *
 * The state of a [class@Natkit.PortMapping].
 */
typedef enum {
  NATKIT_PORT_MAPPING_STATE_ACTIVE,
  NATKIT_PORT_MAPPING_STATE_LOST,
  NATKIT_PORT_MAPPING_STATE_RELEASED,
} NatkitPortMappingState;

/**
 * NatkitConnectionState:
 * @NATKIT_CONNECTION_STATE_CONNECTING: the secure session is being set up
 * @NATKIT_CONNECTION_STATE_CONNECTED: data flows and keepalives are answered
 * @NATKIT_CONNECTION_STATE_DEGRADED: the path stopped answering or closed;
 *   natkit is finding a new one (the stream waits, nothing is lost)
 * @NATKIT_CONNECTION_STATE_FAILED: no path could be found again in time;
 *   the connection is over
 * @NATKIT_CONNECTION_STATE_CLOSED: closed by either side
 *
 * The life of a [class@Natkit.Connection].
 */
typedef enum {
  NATKIT_CONNECTION_STATE_CONNECTING,
  NATKIT_CONNECTION_STATE_CONNECTED,
  NATKIT_CONNECTION_STATE_DEGRADED,
  NATKIT_CONNECTION_STATE_FAILED,
  NATKIT_CONNECTION_STATE_CLOSED,
} NatkitConnectionState;

/**
 * NatkitConnectFlags:
 * @NATKIT_CONNECT_NONE: a reliable byte stream ([method@Natkit.Connection.get_stream])
 * @NATKIT_CONNECT_DATAGRAM: the application sends datagrams
 *   ([method@Natkit.Connection.send_datagram]); the peer is told so
 *
 * How a connection will be used.
 */
typedef enum /*< flags >*/ {
  NATKIT_CONNECT_NONE = 0,
  NATKIT_CONNECT_DATAGRAM = 1 << 0,
} NatkitConnectFlags;

G_END_DECLS
