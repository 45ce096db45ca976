/* natkit-nat-info-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <json-glib/json-glib.h>

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

/* what two peers tell each other (connect / accept): the classic type and
 * the two behaviors, as enum nicks */
JsonObject    *_natkit_nat_info_to_summary   (NatkitNatInfo      *self);
NatkitNatInfo *_natkit_nat_info_from_summary (JsonObject         *summary);
/* persisted: the summary plus the addresses and when it was measured */
JsonObject    *_natkit_nat_info_to_json      (NatkitNatInfo      *self,
                                              gint64              detected);
NatkitNatInfo *_natkit_nat_info_from_json    (JsonObject         *object,
                                              gint64             *detected);
const char    *_natkit_nat_type_nick         (NatkitNatType       type);
const char    *_natkit_nat_type_words        (NatkitNatType       type);
char          *_natkit_nat_pair_explain      (NatkitNatInfo      *local,
                                              NatkitNatInfo      *remote);

G_END_DECLS
