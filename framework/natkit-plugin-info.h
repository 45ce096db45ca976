/* natkit-plugin-info.h: what the manager knows about one plugin
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

#define NATKIT_TYPE_PLUGIN_INFO (natkit_plugin_info_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitPluginInfo, natkit_plugin_info, NATKIT, PLUGIN_INFO, GObject)

NATKIT_AVAILABLE_IN_ALL
const char        *natkit_plugin_info_get_name         (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_plugin_info_get_description  (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_plugin_info_get_version      (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
NatkitPluginKind   natkit_plugin_info_get_kind         (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
int                natkit_plugin_info_get_rank         (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
int                natkit_plugin_info_get_default_rank (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
NatkitPluginState  natkit_plugin_info_get_state        (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_plugin_info_get_reason       (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
const char        *natkit_plugin_info_get_filename     (NatkitPluginInfo *self);
NATKIT_AVAILABLE_IN_ALL
GType              natkit_plugin_info_get_gtype        (NatkitPluginInfo *self);

NATKIT_AVAILABLE_IN_ALL
char              *natkit_rank_to_string               (int               rank);
NATKIT_AVAILABLE_IN_ALL
gboolean           natkit_rank_parse                   (const char       *text,
                                                        int              *rank,
                                                        GError          **error);

G_END_DECLS
