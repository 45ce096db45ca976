/* natkit-traversal-request.c
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include "natkit.h"
#include "natkit-traversal-request-private.h"

/**
 * NatkitTraversalRequest:
 *
 * What the manager asks of a [iface@Natkit.Traversal]: who the two peers
 * are, which side this process is, and how long the attempt may take.
 *
 * The request grows as natkit does (signaling channel, both sides' NAT
 * information, candidates); plugins read it through its accessors.
 */
struct _NatkitTraversalRequest
{
  GObject     parent_instance;

  char       *local_peer_id;
  char       *remote_peer_id;
  NatkitRole  role;
  guint       timeout_ms;
  char       *session_id;
  NatkitSignaling  *signaling;
  NatkitRendezvous *rendezvous;
  NatkitIdentity   *identity;
  GStrv             stun_servers;
  NatkitNatInfo    *local_nat;
  NatkitNatInfo    *remote_nat;
  GWeakRef          manager;     /* for map_port_async() */
  NatkitConfig     *config;
};

G_DEFINE_FINAL_TYPE (NatkitTraversalRequest, natkit_traversal_request, G_TYPE_OBJECT)

enum {
  PROP_0,
  PROP_LOCAL_PEER_ID,
  PROP_REMOTE_PEER_ID,
  PROP_ROLE,
  PROP_TIMEOUT,
  N_PROPS
};
static GParamSpec *properties[N_PROPS];

#define DEFAULT_TIMEOUT_MS 30000

static void
natkit_traversal_request_finalize (GObject *object)
{
  NatkitTraversalRequest *self = NATKIT_TRAVERSAL_REQUEST (object);

  g_free (self->local_peer_id);
  g_free (self->remote_peer_id);
  g_free (self->session_id);
  g_clear_object (&self->signaling);
  g_clear_object (&self->rendezvous);
  g_clear_object (&self->identity);
  g_strfreev (self->stun_servers);
  g_clear_object (&self->local_nat);
  g_clear_object (&self->remote_nat);
  g_weak_ref_clear (&self->manager);
  g_clear_object (&self->config);

  G_OBJECT_CLASS (natkit_traversal_request_parent_class)->finalize (object);
}

static void
natkit_traversal_request_get_property (GObject    *object,
                                       guint       prop_id,
                                       GValue     *value,
                                       GParamSpec *pspec)
{
  NatkitTraversalRequest *self = NATKIT_TRAVERSAL_REQUEST (object);

  switch (prop_id)
    {
    case PROP_LOCAL_PEER_ID:
      g_value_set_string (value, self->local_peer_id);
      break;
    case PROP_REMOTE_PEER_ID:
      g_value_set_string (value, self->remote_peer_id);
      break;
    case PROP_ROLE:
      g_value_set_enum (value, self->role);
      break;
    case PROP_TIMEOUT:
      g_value_set_uint (value, self->timeout_ms);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_traversal_request_set_property (GObject      *object,
                                       guint         prop_id,
                                       const GValue *value,
                                       GParamSpec   *pspec)
{
  NatkitTraversalRequest *self = NATKIT_TRAVERSAL_REQUEST (object);

  switch (prop_id)
    {
    case PROP_LOCAL_PEER_ID:
      self->local_peer_id = g_value_dup_string (value);
      break;
    case PROP_REMOTE_PEER_ID:
      self->remote_peer_id = g_value_dup_string (value);
      break;
    case PROP_ROLE:
      self->role = g_value_get_enum (value);
      break;
    case PROP_TIMEOUT:
      natkit_traversal_request_set_timeout (self, g_value_get_uint (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_traversal_request_class_init (NatkitTraversalRequestClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = natkit_traversal_request_finalize;
  object_class->get_property = natkit_traversal_request_get_property;
  object_class->set_property = natkit_traversal_request_set_property;

  /**
   * NatkitTraversalRequest:local-peer-id:
   *
   * This process's peer ID.
   */
  properties[PROP_LOCAL_PEER_ID] =
    g_param_spec_string ("local-peer-id", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitTraversalRequest:remote-peer-id:
   *
   * The peer's ID.
   */
  properties[PROP_REMOTE_PEER_ID] =
    g_param_spec_string ("remote-peer-id", NULL, NULL, NULL,
                         G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                         G_PARAM_STATIC_STRINGS);

  /**
   * NatkitTraversalRequest:role:
   *
   * Which side of the attempt this process is.
   */
  properties[PROP_ROLE] =
    g_param_spec_enum ("role", NULL, NULL,
                       NATKIT_TYPE_ROLE, NATKIT_ROLE_INITIATOR,
                       G_PARAM_READWRITE | G_PARAM_CONSTRUCT_ONLY |
                       G_PARAM_STATIC_STRINGS);

  /**
   * NatkitTraversalRequest:timeout:
   *
   * How long one method may take, in milliseconds.
   */
  properties[PROP_TIMEOUT] =
    g_param_spec_uint ("timeout", NULL, NULL, 1, G_MAXUINT, DEFAULT_TIMEOUT_MS,
                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                       G_PARAM_STATIC_STRINGS);

  g_object_class_install_properties (object_class, N_PROPS, properties);
}

static void
natkit_traversal_request_init (NatkitTraversalRequest *self)
{
  self->timeout_ms = DEFAULT_TIMEOUT_MS;
}

/**
 * natkit_traversal_request_new:
 * @local_peer_id: this process's peer ID
 * @remote_peer_id: the peer's ID
 * @role: which side this process is
 *
 * Returns: (transfer full): a new request
 */
NatkitTraversalRequest *
natkit_traversal_request_new (const char *local_peer_id,
                              const char *remote_peer_id,
                              NatkitRole  role)
{
  g_return_val_if_fail (local_peer_id != NULL, NULL);
  g_return_val_if_fail (remote_peer_id != NULL, NULL);

  return g_object_new (NATKIT_TYPE_TRAVERSAL_REQUEST,
                       "local-peer-id", local_peer_id,
                       "remote-peer-id", remote_peer_id,
                       "role", role,
                       NULL);
}

/**
 * natkit_traversal_request_get_local_peer_id:
 * @self: a request
 *
 * Returns: this process's peer ID
 */
const char *
natkit_traversal_request_get_local_peer_id (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->local_peer_id;
}

/**
 * natkit_traversal_request_get_remote_peer_id:
 * @self: a request
 *
 * Returns: the peer's ID
 */
const char *
natkit_traversal_request_get_remote_peer_id (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->remote_peer_id;
}

/**
 * natkit_traversal_request_get_role:
 * @self: a request
 *
 * Returns: which side this process is
 */
NatkitRole
natkit_traversal_request_get_role (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NATKIT_ROLE_INITIATOR);
  return self->role;
}

/**
 * natkit_traversal_request_get_timeout:
 * @self: a request
 *
 * Returns: how long one method may take, in milliseconds
 */
guint
natkit_traversal_request_get_timeout (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), DEFAULT_TIMEOUT_MS);
  return self->timeout_ms;
}

/**
 * natkit_traversal_request_set_timeout:
 * @self: a request
 * @timeout_ms: how long one method may take, in milliseconds
 *
 * Sets [property@Natkit.TraversalRequest:timeout].
 */
void
natkit_traversal_request_set_timeout (NatkitTraversalRequest *self,
                                      guint                   timeout_ms)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_return_if_fail (timeout_ms > 0);

  if (self->timeout_ms == timeout_ms)
    return;
  self->timeout_ms = timeout_ms;
  g_object_notify_by_pspec (G_OBJECT (self), properties[PROP_TIMEOUT]);
}

/**
 * natkit_traversal_request_get_session_id:
 * @self: a #NatkitTraversalRequest
 *
 * The connection's session ID: both peers' requests carry the same one, so
 * a method can tie what arrives from the peer (a relay circuit, a signaling
 * message) to this attempt.
 *
 * Returns: (nullable): the session ID
 */
const char *
natkit_traversal_request_get_session_id (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->session_id;
}

/**
 * natkit_traversal_request_set_session_id:
 * @self: a #NatkitTraversalRequest
 * @session_id: (nullable): the session ID
 *
 * Sets the session ID both peers share for this connection.
 */
void
natkit_traversal_request_set_session_id (NatkitTraversalRequest *self,
                                         const char             *session_id)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_free (self->session_id);
  self->session_id = g_strdup (session_id);
}

/**
 * natkit_traversal_request_get_signaling:
 * @self: a #NatkitTraversalRequest
 *
 * Returns: (nullable) (transfer none): the signaling channel to the peer
 */
NatkitSignaling *
natkit_traversal_request_get_signaling (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->signaling;
}

/**
 * natkit_traversal_request_set_signaling:
 * @self: a #NatkitTraversalRequest
 * @signaling: (nullable): the signaling channel to the peer
 *
 * Sets the channel the two managers talk over.
 */
void
natkit_traversal_request_set_signaling (NatkitTraversalRequest *self,
                                        NatkitSignaling        *signaling)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_set_object (&self->signaling, signaling);
}

/**
 * natkit_traversal_request_get_rendezvous:
 * @self: a #NatkitTraversalRequest
 *
 * The natkit-server client for this connection: for the initiator, the
 * client of the server the peer is registered at; for the responder, the
 * client the request arrived through. %NULL when the peers signal over a
 * channel of the application's own and no server is configured.
 *
 * Returns: (nullable) (transfer none): the rendezvous client
 */
NatkitRendezvous *
natkit_traversal_request_get_rendezvous (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->rendezvous;
}

/**
 * natkit_traversal_request_set_rendezvous:
 * @self: a #NatkitTraversalRequest
 * @rendezvous: (nullable): the rendezvous client
 *
 * Sets the natkit-server client for this connection.
 */
void
natkit_traversal_request_set_rendezvous (NatkitTraversalRequest *self,
                                         NatkitRendezvous       *rendezvous)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_set_object (&self->rendezvous, rendezvous);
}

/**
 * natkit_traversal_request_get_identity:
 * @self: a #NatkitTraversalRequest
 *
 * Returns: (nullable) (transfer none): this node's identity
 */
NatkitIdentity *
natkit_traversal_request_get_identity (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->identity;
}

/**
 * natkit_traversal_request_set_identity:
 * @self: a #NatkitTraversalRequest
 * @identity: (nullable): this node's identity
 *
 * Sets this node's identity.
 */
void
natkit_traversal_request_set_identity (NatkitTraversalRequest *self,
                                       NatkitIdentity         *identity)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_set_object (&self->identity, identity);
}

/**
 * natkit_traversal_request_get_stun_servers:
 * @self: a #NatkitTraversalRequest
 *
 * The STUN servers a method may ask for this node's public address, as
 * `HOST[:PORT]`: the configured ones, and the natkit-server of this
 * connection (it answers STUN on its UDP port).
 *
 * Returns: (transfer none) (array zero-terminated=1) (nullable): the servers
 */
const char * const *
natkit_traversal_request_get_stun_servers (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return (const char * const *) self->stun_servers;
}

/**
 * natkit_traversal_request_set_stun_servers:
 * @self: a #NatkitTraversalRequest
 * @servers: (nullable) (array zero-terminated=1): `HOST[:PORT]` of each
 *
 * Sets the STUN servers a method may ask.
 */
void
natkit_traversal_request_set_stun_servers (NatkitTraversalRequest *self,
                                           const char * const     *servers)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_strfreev (self->stun_servers);
  self->stun_servers = g_strdupv ((char **) servers);
}

/**
 * natkit_traversal_request_get_local_nat_info:
 * @self: a traversal request
 *
 * What this machine's newest NAT detection found
 * ([method@Natkit.Manager.get_nat_info]), so that a traversal can tell in
 * [vfunc@Natkit.Traversal.applies] whether it can work for this pair of
 * networks.
 *
 * Returns: (transfer none) (nullable): the local NAT information, or %NULL
 *   when it is not known
 */
NatkitNatInfo *
natkit_traversal_request_get_local_nat_info (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->local_nat;
}

/**
 * natkit_traversal_request_set_local_nat_info:
 * @self: a traversal request
 * @info: (nullable): the local NAT information
 *
 * Sets what [method@Natkit.TraversalRequest.get_local_nat_info] returns.
 */
void
natkit_traversal_request_set_local_nat_info (NatkitTraversalRequest *self,
                                             NatkitNatInfo          *info)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_return_if_fail (info == NULL || NATKIT_IS_NAT_INFO (info));
  g_set_object (&self->local_nat, info);
}

/**
 * natkit_traversal_request_get_remote_nat_info:
 * @self: a traversal request
 *
 * What the peer said of its network when the connection was agreed: its
 * NAT type and mapping and filtering behaviors (no addresses).
 *
 * Returns: (transfer none) (nullable): the peer's NAT information, or
 *   %NULL when the peer did not know or say
 */
NatkitNatInfo *
natkit_traversal_request_get_remote_nat_info (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->remote_nat;
}

/**
 * natkit_traversal_request_set_remote_nat_info:
 * @self: a traversal request
 * @info: (nullable): the peer's NAT information
 *
 * Sets what [method@Natkit.TraversalRequest.get_remote_nat_info] returns.
 */
void
natkit_traversal_request_set_remote_nat_info (NatkitTraversalRequest *self,
                                              NatkitNatInfo          *info)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_return_if_fail (info == NULL || NATKIT_IS_NAT_INFO (info));
  g_set_object (&self->remote_nat, info);
}

void
_natkit_traversal_request_set_manager (NatkitTraversalRequest *self,
                                       NatkitManager          *manager)
{
  g_weak_ref_set (&self->manager, manager);
}

static void
map_port_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  g_autoptr(GTask) task = user_data;
  GError *error = NULL;
  NatkitPortMapping *mapping = natkit_manager_map_port_finish (NATKIT_MANAGER (source),
                                                               result, &error);

  if (mapping)
    g_task_return_pointer (task, mapping, g_object_unref);
  else
    g_task_return_error (task, error);
}

/**
 * natkit_traversal_request_map_port_async:
 * @self: a traversal request
 * @protocol: UDP or TCP
 * @internal_port: the local port of the traversal's socket
 * @cancellable: (nullable): a #GCancellable
 * @callback: (scope async): called with the mapping
 * @user_data: data for @callback
 *
 * Asks the gateway, through the manager's port mappers (UPnP-IGD,
 * NAT-PMP, PCP), to forward a public port to @internal_port of this
 * machine, so that a traversal can offer the peer a *mapped* candidate:
 * an address that reaches it whatever the NAT does with other flows. The
 * mapping is renewed while it is held; release it
 * ([method@Natkit.PortMapping.release_async]) when the traversal is done
 * with the port. Fails with %NATKIT_ERROR_NOT_APPLICABLE when the request
 * did not come from a manager (nothing to map with).
 */
void
natkit_traversal_request_map_port_async (NatkitTraversalRequest *self,
                                         NatkitIpProtocol        protocol,
                                         guint16                 internal_port,
                                         GCancellable           *cancellable,
                                         GAsyncReadyCallback     callback,
                                         gpointer                user_data)
{
  g_autoptr(GTask) task = NULL;
  g_autoptr(NatkitManager) manager = NULL;
  g_autoptr(NatkitPortMappingRequest) request = NULL;

  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));

  task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (task, natkit_traversal_request_map_port_async);
  manager = g_weak_ref_get (&self->manager);
  if (!manager)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
                               "no port mapper to ask: this traversal request does not "
                               "come from a NatkitManager");
      return;
    }
  request = natkit_port_mapping_request_new (protocol, internal_port);
  natkit_manager_map_port_async (manager, request, NULL, cancellable, map_port_cb,
                                 g_steal_pointer (&task));
}

/**
 * natkit_traversal_request_map_port_finish:
 * @self: a traversal request
 * @result: the result passed to the callback
 * @error: return location for a #GError
 *
 * Finishes [method@Natkit.TraversalRequest.map_port_async].
 *
 * Returns: (transfer full): the mapping, or %NULL with an error saying
 *   why none could be made
 */
NatkitPortMapping *
natkit_traversal_request_map_port_finish (NatkitTraversalRequest  *self,
                                          GAsyncResult            *result,
                                          GError                 **error)
{
  g_return_val_if_fail (g_task_is_valid (result, self), NULL);
  return g_task_propagate_pointer (G_TASK (result), error);
}

/**
 * natkit_traversal_request_get_config:
 * @self: a traversal request
 *
 * The manager's settings, for a plugin to read its own
 * ([method@Natkit.Config.get_plugin_setting]).
 *
 * Returns: (transfer none) (nullable): the configuration, or %NULL
 */
NatkitConfig *
natkit_traversal_request_get_config (NatkitTraversalRequest *self)
{
  g_return_val_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self), NULL);
  return self->config;
}

/**
 * natkit_traversal_request_set_config:
 * @self: a traversal request
 * @config: (nullable): the settings
 *
 * Sets what [method@Natkit.TraversalRequest.get_config] returns.
 */
void
natkit_traversal_request_set_config (NatkitTraversalRequest *self,
                                     NatkitConfig           *config)
{
  g_return_if_fail (NATKIT_IS_TRAVERSAL_REQUEST (self));
  g_return_if_fail (config == NULL || NATKIT_IS_CONFIG (config));
  g_set_object (&self->config, config);
}
