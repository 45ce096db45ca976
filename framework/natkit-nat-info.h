/* natkit-nat-info.h: what NAT behavior detection found
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <glib-object.h>
#include "natkit-enums.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_NAT_INFO (natkit_nat_info_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitNatInfo, natkit_nat_info, NATKIT, NAT_INFO, GObject)

NATKIT_AVAILABLE_IN_ALL
const char         *natkit_nat_info_get_public_address (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_nat_info_get_public_port    (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char         *natkit_nat_info_get_local_address  (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
NatkitNatBehavior   natkit_nat_info_get_mapping        (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
NatkitNatBehavior   natkit_nat_info_get_filtering      (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
NatkitNatType       natkit_nat_info_get_nat_type       (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
NatkitHairpinning   natkit_nat_info_get_hairpinning    (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_nat_info_get_servers_used   (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_nat_info_get_tests_skipped  (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_nat_info_get_elapsed        (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_nat_info_get_packets_sent   (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_nat_info_get_gateway_services (NatkitNatInfo *self);
NATKIT_AVAILABLE_IN_ALL
gboolean            natkit_nat_info_get_binding_lifetime (NatkitNatInfo *self,
                                                          guint         *at_least_ms,
                                                          guint         *less_than_ms);
NATKIT_AVAILABLE_IN_ALL
char               *natkit_nat_info_describe           (NatkitNatInfo *self);

G_END_DECLS
