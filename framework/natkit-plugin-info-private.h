/* natkit-plugin-info-private.h
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

struct _NatkitPluginInfo
{
  GObject            parent_instance;

  char              *name;
  char              *description;
  char              *version;
  char              *filename;
  NatkitPluginKind   kind;
  int                rank;
  int                default_rank;
  NatkitPluginState  state;
  char              *reason;
  GType              gtype;
};

NatkitPluginInfo *_natkit_plugin_info_new (const char *name,
                                           const char *filename);

G_END_DECLS
