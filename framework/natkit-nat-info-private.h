/* natkit-nat-info-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

struct _NatkitNatInfo
{
  GObject            parent_instance;

  char              *public_address;
  guint              public_port;
  char              *local_address;
  NatkitNatBehavior  mapping;
  NatkitNatBehavior  filtering;
  NatkitNatType      nat_type;
  NatkitHairpinning  hairpinning;
  GStrv              servers_used;
  GStrv              tests_skipped;
  guint              elapsed_ms;
  guint              packets_sent;
  guint              lifetime_at_least_ms;
  guint              lifetime_less_than_ms;
  GStrv              gateway_services;   /* NULL: not probed */
};

NatkitNatInfo *_natkit_nat_info_new (void);
void           _natkit_nat_info_set_gateway_services (NatkitNatInfo      *self,
                                                      const char * const *services);
NatkitNatType  _natkit_nat_type_classify (gboolean          behind_nat,
                                          NatkitNatBehavior mapping,
                                          NatkitNatBehavior filtering);

G_END_DECLS
