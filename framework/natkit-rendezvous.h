/* natkit-rendezvous.h: the client of natkit-server (signaling and relay control)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */

#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>

#include "natkit-identity.h"
#include "natkit-signaling.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_RELAY_CIRCUIT (natkit_relay_circuit_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitRelayCircuit, natkit_relay_circuit, NATKIT, RELAY_CIRCUIT, GObject)

#define NATKIT_TYPE_RENDEZVOUS (natkit_rendezvous_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitRendezvous, natkit_rendezvous, NATKIT, RENDEZVOUS, GObject)

/**
 * NatkitRendezvousState:
 * @NATKIT_RENDEZVOUS_STATE_DISCONNECTED: not connected (yet, or any more)
 * @NATKIT_RENDEZVOUS_STATE_CONNECTING: connecting and registering
 * @NATKIT_RENDEZVOUS_STATE_REGISTERED: registered; messages flow
 * @NATKIT_RENDEZVOUS_STATE_CLOSED: closed by natkit_rendezvous_close()
 */

/* circuits: what the relay plugin uses */
NATKIT_AVAILABLE_IN_ALL
guint32       natkit_relay_circuit_get_id              (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_relay_circuit_get_peer_id         (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_relay_circuit_get_tag             (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
GBytes       *natkit_relay_circuit_get_token           (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_relay_circuit_get_server_host     (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
guint16       natkit_relay_circuit_get_server_port     (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
guint16       natkit_relay_circuit_get_udp_port        (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
guint64       natkit_relay_circuit_get_byte_limit      (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
guint         natkit_relay_circuit_get_duration_limit  (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
gboolean      natkit_relay_circuit_is_closed           (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_relay_circuit_get_close_reason    (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
void          natkit_relay_circuit_close               (NatkitRelayCircuit *self);
NATKIT_AVAILABLE_IN_ALL
GIOStream    *natkit_relay_circuit_open_tls_finish     (NatkitRelayCircuit *self,
                                                        GAsyncResult       *result,
                                                        GError            **error);
NATKIT_AVAILABLE_IN_ALL
void          natkit_relay_circuit_open_tls_async      (NatkitRelayCircuit  *self,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);

/* the client */
NATKIT_AVAILABLE_IN_ALL
NatkitRendezvous *natkit_rendezvous_new                (NatkitIdentity      *identity,
                                                        const char          *server,
                                                        GError             **error);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_rendezvous_get_server         (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_rendezvous_get_host           (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
guint16           natkit_rendezvous_get_port           (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
NatkitIdentity   *natkit_rendezvous_get_identity       (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
gboolean          natkit_rendezvous_is_registered      (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
const char       *natkit_rendezvous_get_observed_address (NatkitRendezvous  *self);
NATKIT_AVAILABLE_IN_ALL
guint16           natkit_rendezvous_get_udp_port       (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_rendezvous_connect_async      (NatkitRendezvous    *self,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean          natkit_rendezvous_connect_finish     (NatkitRendezvous    *self,
                                                        GAsyncResult        *result,
                                                        GError             **error);
NATKIT_AVAILABLE_IN_ALL
void              natkit_rendezvous_close              (NatkitRendezvous    *self);
NATKIT_AVAILABLE_IN_ALL
void              natkit_rendezvous_set_reserve_relay  (NatkitRendezvous    *self,
                                                        gboolean             reserve);
NATKIT_AVAILABLE_IN_ALL
void              natkit_rendezvous_lookup_async       (NatkitRendezvous    *self,
                                                        const char          *peer_id,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
NATKIT_AVAILABLE_IN_ALL
void              natkit_rendezvous_claim_address_async  (NatkitRendezvous    *self,
                                                          const char          *network,
                                                          const char          *address,
                                                          GCancellable        *cancellable,
                                                          GAsyncReadyCallback  callback,
                                                          gpointer             user_data);
NATKIT_AVAILABLE_IN_ALL
gboolean          natkit_rendezvous_claim_address_finish (NatkitRendezvous    *self,
                                                          GAsyncResult        *result,
                                                          char               **out_holder,
                                                          GError             **error);
NATKIT_AVAILABLE_IN_ALL
gboolean          natkit_rendezvous_lookup_finish      (NatkitRendezvous    *self,
                                                        GAsyncResult        *result,
                                                        gboolean            *out_reservation,
                                                        GError             **error);
NATKIT_AVAILABLE_IN_ALL
void              natkit_rendezvous_open_circuit_async (NatkitRendezvous    *self,
                                                        const char          *peer_id,
                                                        const char          *tag,
                                                        GCancellable        *cancellable,
                                                        GAsyncReadyCallback  callback,
                                                        gpointer             user_data);
NATKIT_AVAILABLE_IN_ALL
NatkitRelayCircuit *natkit_rendezvous_open_circuit_finish (NatkitRendezvous *self,
                                                        GAsyncResult        *result,
                                                        GError             **error);

G_END_DECLS
