/* natkit-port-mapping-request.h: what a port mapper is asked for
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-enums.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_PORT_MAPPING_REQUEST (natkit_port_mapping_request_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitPortMappingRequest, natkit_port_mapping_request,
                      NATKIT, PORT_MAPPING_REQUEST, GObject)

NATKIT_AVAILABLE_IN_ALL
NatkitPortMappingRequest *natkit_port_mapping_request_new (NatkitIpProtocol protocol,
                                                           guint16          internal_port);
NATKIT_AVAILABLE_IN_ALL
NatkitPortMappingRequest *natkit_port_mapping_request_copy (NatkitPortMappingRequest *self);

NATKIT_AVAILABLE_IN_ALL
NatkitIpProtocol natkit_port_mapping_request_get_protocol         (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
guint16          natkit_port_mapping_request_get_internal_port    (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
guint16          natkit_port_mapping_request_get_external_port    (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_external_port    (NatkitPortMappingRequest *self,
                                                                   guint16                   port);
NATKIT_AVAILABLE_IN_ALL
guint32          natkit_port_mapping_request_get_lifetime         (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_lifetime         (NatkitPortMappingRequest *self,
                                                                   guint32                   seconds);
NATKIT_AVAILABLE_IN_ALL
const char      *natkit_port_mapping_request_get_method           (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_method           (NatkitPortMappingRequest *self,
                                                                   const char               *method);
NATKIT_AVAILABLE_IN_ALL
const char      *natkit_port_mapping_request_get_gateway          (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_gateway          (NatkitPortMappingRequest *self,
                                                                   const char               *gateway);
NATKIT_AVAILABLE_IN_ALL
const char      *natkit_port_mapping_request_get_internal_address (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_internal_address (NatkitPortMappingRequest *self,
                                                                   const char               *address);
NATKIT_AVAILABLE_IN_ALL
const char      *natkit_port_mapping_request_get_description      (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_description      (NatkitPortMappingRequest *self,
                                                                   const char               *description);
NATKIT_AVAILABLE_IN_ALL
guint            natkit_port_mapping_request_get_timeout          (NatkitPortMappingRequest *self);
NATKIT_AVAILABLE_IN_ALL
void             natkit_port_mapping_request_set_timeout          (NatkitPortMappingRequest *self,
                                                                   guint                     timeout_ms);

NATKIT_AVAILABLE_IN_ALL
GInetSocketAddress *natkit_resolve_gateway (const char  *gateway,
                                            guint16      default_port,
                                            GError     **error);

G_END_DECLS
