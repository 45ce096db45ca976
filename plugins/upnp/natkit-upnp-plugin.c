/* natkit-upnp-plugin.c: port mapping with UPnP-IGD through gupnp-igd
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * GUPnPSimpleIgd finds the gateway (SSDP), adds the mapping, renews the
 * lease at half its duration and re-adds every mapping when a gateway
 * (re)appears, e.g. after a restart; it signals each success and failure.
 * This plugin wraps it into an _async/_finish with a time limit and
 * cancellation, and handles what it leaves to the caller: error 725
 * (OnlyPermanentLeasesSupported: ask again with a permanent lease, deleted
 * on release), and knowing when a deletion went out.  Each mapping has its
 * own GUPnPSimpleIgd: gupnp-igd deletes a mapping asynchronously and says
 * nothing when it is done, but keeps the object alive until it is, so
 * dropping the object and waiting for it to finalize is the confirmation.
 *
 * The gateway probe uses a GUPnPControlPoint (libgupnp) directly: it
 * looks for a WANIPConnection or WANPPPConnection service without mapping
 * anything.
 */
#include <natkit/natkit.h>
#include <libgupnp/gupnp.h>
#include <libgupnp-igd/gupnp-simple-igd.h>
#include <string.h>

#define SSDP_PORT 1900
#define RELEASE_TIMEOUT_MS 5000

/* UPnP IGD error 725: OnlyPermanentLeasesSupported */
#define UPNP_ONLY_PERMANENT_LEASES 725

#define NATKIT_TYPE_UPNP_MAPPER (natkit_upnp_mapper_get_type ())
G_DECLARE_FINAL_TYPE (NatkitUpnpMapper, natkit_upnp_mapper, NATKIT, UPNP_MAPPER, GObject)

#define NATKIT_TYPE_UPNP_MAPPING (natkit_upnp_mapping_get_type ())
G_DECLARE_FINAL_TYPE (NatkitUpnpMapping, natkit_upnp_mapping, NATKIT, UPNP_MAPPING,
                      NatkitPortMapping)

struct _NatkitUpnpMapper
{
  GObject parent_instance;
};

struct _NatkitUpnpMapping
{
  NatkitPortMapping  parent_instance;

  GUPnPSimpleIgd    *igd;
  char              *proto;           /* "UDP" / "TCP" */
  char              *local_ip;
  guint16            local_port;
  guint16            requested_port;
  guint32            lease;
  char              *description;
  gboolean           permanent;       /* the gateway only does lease 0 */

  GTask             *pending;         /* map_async, until the first answer */
  GSource           *timeout;
  gulong             cancelled_id;
  guint              timeout_ms;
};

static void natkit_upnp_mapper_iface_init (NatkitPortMapperInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitUpnpMapper, natkit_upnp_mapper, G_TYPE_OBJECT,
                               G_IMPLEMENT_INTERFACE (NATKIT_TYPE_PORT_MAPPER,
                                                      natkit_upnp_mapper_iface_init))
G_DEFINE_FINAL_TYPE (NatkitUpnpMapping, natkit_upnp_mapping, NATKIT_TYPE_PORT_MAPPING)

/* ---- the mapping -------------------------------------------------------- */

static gboolean
is_ours (NatkitUpnpMapping *self,
         const char        *proto,
         const char        *local_ip,
         guint              local_port)
{
  return g_strcmp0 (proto, self->proto) == 0 &&
         g_strcmp0 (local_ip, self->local_ip) == 0 &&
         local_port == self->local_port;
}

static void
stop_igd (NatkitUpnpMapping *self)
{
  if (self->igd == NULL)
    return;
  g_signal_handlers_disconnect_by_data (self->igd, self);
  gupnp_simple_igd_remove_port_local (self->igd, self->proto, self->local_ip,
                                      self->local_port);
}

static void
settle_pending (NatkitUpnpMapping *self,
                GError            *error)
{
  GTask *task = g_steal_pointer (&self->pending);

  if (task == NULL)
    {
      g_clear_error (&error);
      return;
    }
  if (self->timeout != NULL)
    {
      g_source_destroy (self->timeout);
      g_clear_pointer (&self->timeout, g_source_unref);
    }
  if (self->cancelled_id != 0)
    g_cancellable_disconnect (g_task_get_cancellable (task), self->cancelled_id);
  self->cancelled_id = 0;

  if (error != NULL)
    {
      stop_igd (self);
      g_task_return_error (task, error);
    }
  else
    g_task_return_pointer (task, g_object_ref (self), g_object_unref);
  g_object_unref (task);
}

typedef struct
{
  NatkitUpnpMapping *self;
  char              *external_ip;
  guint              external_port;
} Mapped;

static void
mapped_free (gpointer data)
{
  Mapped *m = data;

  g_object_unref (m->self);
  g_free (m->external_ip);
  g_free (m);
}

static gboolean
mapped_idle_cb (gpointer user_data)
{
  Mapped *m = user_data;
  NatkitUpnpMapping *self = m->self;

  if (self->igd == NULL)
    return G_SOURCE_REMOVE;     /* released meanwhile */
  /* first answer: active; later ones (a gateway back from a restart, a new
   * public address): renewed or changed */
  natkit_port_mapping_update (NATKIT_PORT_MAPPING (self), m->external_ip, m->external_port,
                              self->permanent ? 0 : self->lease);
  settle_pending (self, NULL);
  return G_SOURCE_REMOVE;
}

static void
mapped_cb (GUPnPSimpleIgd *igd,
           const char     *proto,
           const char     *external_ip,
           const char     *replaces_external_ip,
           guint           external_port,
           const char     *local_ip,
           guint           local_port,
           const char     *description,
           gpointer        user_data)
{
  NatkitUpnpMapping *self = user_data;
  Mapped *m;
  GSource *idle;

  if (!is_ours (self, proto, local_ip, local_port))
    return;
  g_debug ("UPnP gateway maps %s %s:%u to %s:%u%s", proto, local_ip, local_port,
           external_ip, external_port, self->permanent ? " (permanent lease)" : "");
  /* not from inside the signal: gupnp-igd goes on using its mapping after
   * the handlers return, and whoever we tell may release it right away */
  m = g_new0 (Mapped, 1);
  m->self = g_object_ref (self);
  m->external_ip = g_strdup (external_ip);
  m->external_port = external_port;
  idle = g_idle_source_new ();
  g_source_set_callback (idle, mapped_idle_cb, m, mapped_free);
  g_source_attach (idle, g_main_context_get_thread_default ());
  g_source_unref (idle);
}

static void
error_cb (GUPnPSimpleIgd *igd,
          GError         *error,
          const char     *proto,
          guint           external_port,
          const char     *local_ip,
          guint           local_port,
          const char     *description,
          gpointer        user_data)
{
  NatkitUpnpMapping *self = user_data;
  g_autoptr(GError) ours = NULL;

  if (!is_ours (self, proto, local_ip, local_port))
    return;

  /* (gupnp-igd touches nothing of the mapping after emitting an error, so
   * removing or re-adding it from here is safe; after a success it does) */
  if (g_error_matches (error, GUPNP_CONTROL_ERROR, UPNP_ONLY_PERMANENT_LEASES) &&
      !self->permanent)
    {
      /* field pitfall: gateways that refuse any lease but “forever”; such a
       * mapping is deleted on release and listed for “unmap --all” */
      g_debug ("UPnP gateway only grants permanent leases: asking again");
      self->permanent = TRUE;
      gupnp_simple_igd_remove_port_local (igd, self->proto, self->local_ip, self->local_port);
      gupnp_simple_igd_add_port (igd, self->proto, self->requested_port, self->local_ip,
                                 self->local_port, 0, self->description);
      return;
    }

  ours = g_error_new (NATKIT_ERROR, NATKIT_ERROR_REFUSED,
                      "The UPnP gateway refused the mapping of %s %s:%u: %s%s",
                      proto, local_ip, local_port, error->message,
                      error->domain == GUPNP_CONTROL_ERROR && error->code == 718 ?
                      " (the public port is taken; ask for another one)" : "");
  if (self->pending != NULL)
    settle_pending (self, g_steal_pointer (&ours));
  else
    natkit_port_mapping_set_lost (NATKIT_PORT_MAPPING (self), ours);
}

static gboolean
map_timeout_cb (gpointer user_data)
{
  NatkitUpnpMapping *self = user_data;

  g_clear_pointer (&self->timeout, g_source_unref);
  settle_pending (self, g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                     "No UPnP-IGD gateway answered on the local network "
                                     "within %u ms (is UPnP enabled on the router?)",
                                     self->timeout_ms));
  return G_SOURCE_REMOVE;
}

static gboolean
cancelled_idle_cb (gpointer user_data)
{
  NatkitUpnpMapping *self = user_data;

  settle_pending (self, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                             "Operation was cancelled"));
  return G_SOURCE_REMOVE;
}

static void
map_cancelled_cb (GCancellable *cancellable,
                  gpointer      user_data)
{
  NatkitUpnpMapping *self = user_data;
  GSource *idle = g_idle_source_new ();

  /* the cancellable may fire in another thread: settle in ours */
  g_source_set_callback (idle, cancelled_idle_cb, g_object_ref (self), g_object_unref);
  g_source_attach (idle, g_task_get_context (self->pending));
  g_source_unref (idle);
}

typedef struct
{
  GTask   *task;
  GSource *timeout;
  gboolean done;
} Release;

static void
release_settle (Release  *r,
                gboolean  confirmed)
{
  if (r->done)
    return;
  r->done = TRUE;
  if (r->timeout != NULL)
    {
      g_source_destroy (r->timeout);
      g_clear_pointer (&r->timeout, g_source_unref);
    }
  if (confirmed)
    g_task_return_boolean (r->task, TRUE);
  else
    g_task_return_new_error (r->task, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                             "The UPnP gateway did not confirm the deletion within %u ms",
                             RELEASE_TIMEOUT_MS);
  g_object_unref (r->task);
}

static void
igd_finalized_cb (gpointer  user_data,
                  GObject  *where_the_object_was)
{
  release_settle (user_data, TRUE);
}

static gboolean
release_timeout_cb (gpointer user_data)
{
  Release *r = user_data;

  g_clear_pointer (&r->timeout, g_source_unref);
  release_settle (r, FALSE);
  return G_SOURCE_REMOVE;
}

static void
natkit_upnp_mapping_release_async (NatkitPortMapping   *mapping,
                                   GCancellable        *cancellable,
                                   GAsyncReadyCallback  callback,
                                   gpointer             user_data)
{
  NatkitUpnpMapping *self = NATKIT_UPNP_MAPPING (mapping);
  Release *r = g_new0 (Release, 1);

  r->task = g_task_new (self, cancellable, callback, user_data);
  g_task_set_source_tag (r->task, natkit_upnp_mapping_release_async);
  g_task_set_task_data (r->task, r, g_free);
  g_object_ref (r->task);        /* held until settled */

  if (self->igd == NULL)
    {
      release_settle (r, TRUE);
      g_object_unref (r->task);
      return;
    }
  /* DeletePortMapping goes out; gupnp-igd keeps the object alive until the
   * gateway answered, then it finalizes */
  stop_igd (self);
  r->timeout = g_timeout_source_new (RELEASE_TIMEOUT_MS);
  g_source_set_callback (r->timeout, release_timeout_cb, r, NULL);
  g_source_attach (r->timeout, g_task_get_context (r->task));
  g_object_weak_ref (G_OBJECT (self->igd), igd_finalized_cb, r);
  g_clear_object (&self->igd);
  g_object_unref (r->task);
}

static gboolean
natkit_upnp_mapping_release_finish (NatkitPortMapping  *mapping,
                                    GAsyncResult       *result,
                                    GError            **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_upnp_mapping_add_to_record (NatkitPortMapping *mapping,
                                   GVariantDict      *record)
{
  NatkitUpnpMapping *self = NATKIT_UPNP_MAPPING (mapping);

  g_variant_dict_insert (record, "permanent", "b", self->permanent);
}

static void
natkit_upnp_mapping_finalize (GObject *object)
{
  NatkitUpnpMapping *self = NATKIT_UPNP_MAPPING (object);

  g_assert (self->pending == NULL);
  if (self->igd != NULL)
    {
      stop_igd (self);
      g_clear_object (&self->igd);
    }
  g_free (self->proto);
  g_free (self->local_ip);
  g_free (self->description);

  G_OBJECT_CLASS (natkit_upnp_mapping_parent_class)->finalize (object);
}

static void
natkit_upnp_mapping_class_init (NatkitUpnpMappingClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  NatkitPortMappingClass *mapping_class = NATKIT_PORT_MAPPING_CLASS (klass);

  object_class->finalize = natkit_upnp_mapping_finalize;
  /* no renew_async: gupnp-igd renews the lease itself at half of it */
  mapping_class->release_async = natkit_upnp_mapping_release_async;
  mapping_class->release_finish = natkit_upnp_mapping_release_finish;
  mapping_class->add_to_record = natkit_upnp_mapping_add_to_record;
}

static void
natkit_upnp_mapping_init (NatkitUpnpMapping *self)
{
}

/* ---- the mapper --------------------------------------------------------- */

/* This host's address on the way to the gateway: a route lookup, no packet. */
static char *
local_address_towards (GInetSocketAddress  *gateway,
                       GError             **error)
{
  g_autoptr(GSocket) socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                                            G_SOCKET_PROTOCOL_UDP, error);
  g_autoptr(GSocketAddress) local = NULL;

  if (socket == NULL ||
      !g_socket_connect (socket, G_SOCKET_ADDRESS (gateway), NULL, error))
    return NULL;
  local = g_socket_get_local_address (socket, error);
  if (local == NULL)
    return NULL;
  return g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (local)));
}

static const char * const *
natkit_upnp_mapper_get_methods (NatkitPortMapper *mapper)
{
  static const char * const methods[] = { "upnp", NULL };

  return methods;
}

static void
natkit_upnp_mapper_map_async (NatkitPortMapper         *mapper,
                              NatkitPortMappingRequest *request,
                              GCancellable             *cancellable,
                              GAsyncReadyCallback       callback,
                              gpointer                  user_data)
{
  g_autoptr(GTask) task = g_task_new (mapper, cancellable, callback, user_data);
  g_autoptr(GInetSocketAddress) gateway = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *local_ip = NULL;
  g_autofree char *where = NULL;
  const char *method = natkit_port_mapping_request_get_method (request);
  const char *internal = natkit_port_mapping_request_get_internal_address (request);
  NatkitIpProtocol protocol = natkit_port_mapping_request_get_protocol (request);
  NatkitUpnpMapping *self;

  g_task_set_source_tag (task, natkit_upnp_mapper_map_async);
  if (method != NULL && !g_str_equal (method, "upnp"))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                               "The upnp plugin speaks upnp, not “%s”", method);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;

  /* the gateway is found by SSDP; the route to it names our address */
  gateway = natkit_resolve_gateway (natkit_port_mapping_request_get_gateway (request),
                                    SSDP_PORT, &error);
  if (gateway == NULL)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  where = g_inet_address_to_string (g_inet_socket_address_get_address (gateway));
  local_ip = internal != NULL ? g_strdup (internal) : local_address_towards (gateway, &error);
  if (local_ip == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "No route to the gateway %s: %s", where, error->message);
      return;
    }

  self = g_object_new (NATKIT_TYPE_UPNP_MAPPING,
                       "method", "upnp",
                       "protocol", protocol,
                       "internal-address", local_ip,
                       "internal-port", (guint) natkit_port_mapping_request_get_internal_port (request),
                       "gateway", where,
                       NULL);
  self->proto = g_strdup (protocol == NATKIT_IP_PROTOCOL_TCP ? "TCP" : "UDP");
  self->local_ip = g_steal_pointer (&local_ip);
  self->local_port = natkit_port_mapping_request_get_internal_port (request);
  self->requested_port = natkit_port_mapping_request_get_external_port (request);
  self->lease = natkit_port_mapping_request_get_lifetime (request);
  self->description = g_strdup (natkit_port_mapping_request_get_description (request));
  self->timeout_ms = natkit_port_mapping_request_get_timeout (request);
  self->pending = g_steal_pointer (&task);

  self->igd = gupnp_simple_igd_new ();
  g_signal_connect (self->igd, "mapped-external-port", G_CALLBACK (mapped_cb), self);
  g_signal_connect (self->igd, "error-mapping-port", G_CALLBACK (error_cb), self);
  self->timeout = g_timeout_source_new (self->timeout_ms);
  g_source_set_callback (self->timeout, map_timeout_cb, self, NULL);
  g_source_attach (self->timeout, g_task_get_context (self->pending));
  if (cancellable != NULL)
    self->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (map_cancelled_cb),
                                                self, NULL);
  /* external port 0 = the local port, then random ones if that is taken */
  gupnp_simple_igd_add_port (self->igd, self->proto, self->requested_port, self->local_ip,
                             self->local_port, self->lease, self->description);
  /* the pending task holds the mapping until it settles; the caller gets
   * its own reference */
  g_task_set_task_data (self->pending, self, g_object_unref);
}

static NatkitPortMapping *
natkit_upnp_mapper_map_finish (NatkitPortMapper  *mapper,
                               GAsyncResult      *result,
                               GError           **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* probe: is there a WANIPConnection or WANPPPConnection on the network? */

typedef struct
{
  GUPnPContextManager *manager;
  GSource             *timeout;
  GSource             *cancel;
  gboolean             found;
  gboolean             done;
} Probe;

static void
probe_free (gpointer data)
{
  Probe *p = data;

  if (p->timeout != NULL)
    g_source_destroy (p->timeout);
  if (p->cancel != NULL)
    g_source_destroy (p->cancel);
  g_clear_pointer (&p->timeout, g_source_unref);
  g_clear_pointer (&p->cancel, g_source_unref);
  g_clear_object (&p->manager);
  g_free (p);
}

static void
probe_settle (GTask *task)
{
  Probe *p = g_task_get_task_data (task);
  char **result;

  if (p->done)
    return;
  p->done = TRUE;
  if (p->manager != NULL)
    g_signal_handlers_disconnect_by_data (p->manager, task);
  result = g_new0 (char *, 2);
  if (p->found)
    result[0] = g_strdup ("upnp");
  g_task_return_pointer (task, result, (GDestroyNotify) g_strfreev);
  g_object_unref (task);
}

static void
probe_service_cb (GUPnPControlPoint *cp,
                  GUPnPServiceProxy *proxy,
                  gpointer           user_data)
{
  GTask *task = user_data;
  Probe *p = g_task_get_task_data (task);

  if (p->done)
    return;
  g_debug ("UPnP gateway service at %s",
           gupnp_service_info_get_location (GUPNP_SERVICE_INFO (proxy)));
  p->found = TRUE;
  probe_settle (task);
}

static void
probe_context_cb (GUPnPContextManager *manager,
                  GUPnPContext        *context,
                  gpointer             user_data)
{
  GTask *task = user_data;
  static const char * const targets[] = {
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
  };

  for (guint i = 0; i < G_N_ELEMENTS (targets); i++)
    {
      GUPnPControlPoint *cp = gupnp_control_point_new (context, targets[i]);

      g_signal_connect_object (cp, "service-proxy-available",
                               G_CALLBACK (probe_service_cb), task, 0);
      gssdp_resource_browser_set_active (GSSDP_RESOURCE_BROWSER (cp), TRUE);
      gupnp_context_manager_manage_control_point (manager, cp);
      g_object_unref (cp);
    }
}

static gboolean
probe_timeout_cb (gpointer user_data)
{
  GTask *task = user_data;
  Probe *p = g_task_get_task_data (task);

  g_clear_pointer (&p->timeout, g_source_unref);
  probe_settle (task);
  return G_SOURCE_REMOVE;
}

static gboolean
probe_cancelled_cb (GCancellable *cancellable,
                    gpointer      user_data)
{
  GTask *task = user_data;
  Probe *p = g_task_get_task_data (task);

  g_clear_pointer (&p->cancel, g_source_unref);
  probe_settle (task);
  return G_SOURCE_REMOVE;
}

static void
natkit_upnp_mapper_probe_async (NatkitPortMapper         *mapper,
                                NatkitPortMappingRequest *request,
                                GCancellable             *cancellable,
                                GAsyncReadyCallback       callback,
                                gpointer                  user_data)
{
  GTask *task = g_task_new (mapper, NULL, callback, user_data);
  Probe *p = g_new0 (Probe, 1);

  /* never an error: silence and cancellation mean “not offered” */
  g_task_set_source_tag (task, natkit_upnp_mapper_probe_async);
  g_task_set_task_data (task, p, probe_free);
  p->timeout = g_timeout_source_new (natkit_port_mapping_request_get_timeout (request));
  g_source_set_callback (p->timeout, probe_timeout_cb, task, NULL);
  g_source_attach (p->timeout, g_task_get_context (task));
  if (cancellable != NULL)
    {
      p->cancel = g_cancellable_source_new (cancellable);
      g_source_set_callback (p->cancel, G_SOURCE_FUNC (probe_cancelled_cb), task, NULL);
      g_source_attach (p->cancel, g_task_get_context (task));
    }
  p->manager = gupnp_context_manager_create (0);
  g_signal_connect (p->manager, "context-available", G_CALLBACK (probe_context_cb), task);
}

static char **
natkit_upnp_mapper_probe_finish (NatkitPortMapper  *mapper,
                                 GAsyncResult      *result,
                                 GError           **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* remove_record: add the same mapping to a fresh GUPnPSimpleIgd (which
 * finds the gateway), then delete it; the finalize confirms */

typedef struct
{
  GUPnPSimpleIgd *igd;
  char           *proto;
  char           *local_ip;
  guint16         local_port;
  GSource        *timeout;
  gboolean        done;
} Removal;

static void
removal_free (gpointer data)
{
  Removal *r = data;

  if (r->timeout != NULL)
    g_source_destroy (r->timeout);
  g_clear_pointer (&r->timeout, g_source_unref);
  g_clear_object (&r->igd);
  g_free (r->proto);
  g_free (r->local_ip);
  g_free (r);
}

static void
removal_finalized_cb (gpointer  user_data,
                      GObject  *where_the_object_was)
{
  GTask *task = user_data;
  Removal *r = g_task_get_task_data (task);

  if (r->done)
    return;
  r->done = TRUE;
  g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static void
removal_drop_igd (GTask *task)
{
  Removal *r = g_task_get_task_data (task);

  g_signal_handlers_disconnect_by_data (r->igd, task);
  gupnp_simple_igd_remove_port_local (r->igd, r->proto, r->local_ip, r->local_port);
  g_object_weak_ref (G_OBJECT (r->igd), removal_finalized_cb, task);
  g_clear_object (&r->igd);
}

static gboolean
removal_drop_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  Removal *r = g_task_get_task_data (task);

  if (r->igd != NULL && !r->done)
    removal_drop_igd (task);
  return G_SOURCE_REMOVE;
}

static void
removal_mapped_cb (GUPnPSimpleIgd *igd,
                   const char     *proto,
                   const char     *external_ip,
                   const char     *replaces_external_ip,
                   guint           external_port,
                   const char     *local_ip,
                   guint           local_port,
                   const char     *description,
                   gpointer        user_data)
{
  GTask *task = user_data;
  GSource *idle = g_idle_source_new ();

  /* not from inside the signal: gupnp-igd goes on using the mapping it
   * reports after the handlers return, and removing it frees that */
  g_signal_handlers_disconnect_by_func (igd, removal_mapped_cb, task);
  g_source_set_callback (idle, removal_drop_idle_cb, g_object_ref (task), g_object_unref);
  g_source_attach (idle, g_task_get_context (task));
  g_source_unref (idle);
}

static gboolean
removal_timeout_cb (gpointer user_data)
{
  GTask *task = user_data;
  Removal *r = g_task_get_task_data (task);

  g_clear_pointer (&r->timeout, g_source_unref);
  if (r->done)
    return G_SOURCE_REMOVE;
  r->done = TRUE;
  if (r->igd != NULL)
    {
      g_signal_handlers_disconnect_by_data (r->igd, task);
      gupnp_simple_igd_remove_port_local (r->igd, r->proto, r->local_ip, r->local_port);
    }
  g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                           "No UPnP-IGD gateway answered to delete %s %s:%u",
                           r->proto, r->local_ip, r->local_port);
  g_object_unref (task);
  return G_SOURCE_REMOVE;
}

static void
natkit_upnp_mapper_remove_record_async (NatkitPortMapper    *mapper,
                                        GVariant            *record,
                                        GCancellable        *cancellable,
                                        GAsyncReadyCallback  callback,
                                        gpointer             user_data)
{
  GTask *task = g_task_new (mapper, cancellable, callback, user_data);
  const char *protocol = NULL, *local_ip = NULL;
  guint16 local_port = 0, external_port = 0;
  Removal *r;

  g_task_set_source_tag (task, natkit_upnp_mapper_remove_record_async);
  g_variant_lookup (record, "protocol", "&s", &protocol);
  g_variant_lookup (record, "internal-address", "&s", &local_ip);
  g_variant_lookup (record, "internal-port", "q", &local_port);
  g_variant_lookup (record, "external-port", "q", &external_port);
  if (protocol == NULL || local_ip == NULL || local_port == 0 || external_port == 0)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "The mapping record is incomplete (it needs protocol, "
                               "internal-address, internal-port and external-port)");
      g_object_unref (task);
      return;
    }
  r = g_new0 (Removal, 1);
  r->proto = g_ascii_strup (protocol, -1);
  r->local_ip = g_strdup (local_ip);
  r->local_port = local_port;
  g_task_set_task_data (task, r, removal_free);
  /* re-adding the same mapping refreshes it; then it is deleted for good */
  r->igd = gupnp_simple_igd_new ();
  g_signal_connect (r->igd, "mapped-external-port", G_CALLBACK (removal_mapped_cb), task);
  r->timeout = g_timeout_source_new (4000);
  g_source_set_callback (r->timeout, removal_timeout_cb, task, NULL);
  g_source_attach (r->timeout, g_task_get_context (task));
  gupnp_simple_igd_add_port (r->igd, r->proto, external_port, r->local_ip, r->local_port,
                             60, "natkit (removing)");
}

static gboolean
natkit_upnp_mapper_remove_record_finish (NatkitPortMapper  *mapper,
                                         GAsyncResult      *result,
                                         GError           **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
natkit_upnp_mapper_class_init (NatkitUpnpMapperClass *klass)
{
}

static void
natkit_upnp_mapper_init (NatkitUpnpMapper *self)
{
}

static void
natkit_upnp_mapper_iface_init (NatkitPortMapperInterface *iface)
{
  iface->get_methods = natkit_upnp_mapper_get_methods;
  iface->map_async = natkit_upnp_mapper_map_async;
  iface->map_finish = natkit_upnp_mapper_map_finish;
  iface->probe_async = natkit_upnp_mapper_probe_async;
  iface->probe_finish = natkit_upnp_mapper_probe_finish;
  iface->remove_record_async = natkit_upnp_mapper_remove_record_async;
  iface->remove_record_finish = natkit_upnp_mapper_remove_record_finish;
}

static gboolean
upnp_plugin_init (NatkitPlugin  *plugin,
                  GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_PORT_MAPPER,
                               NATKIT_TYPE_UPNP_MAPPER, NATKIT_RANK_SECONDARY);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("upnp",
                      "Port mapping with UPnP-IGD (gupnp-igd)",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      upnp_plugin_init)
