/* natkit-plugin.h: what a plugin module exports
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gmodule.h>
#include <glib-object.h>
#include "natkit-enums.h"
#include "natkit-version.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

/**
 * NatkitPlugin:
 *
 * The handle a plugin's init function receives. It is valid only during
 * that call.
 */
typedef struct _NatkitPlugin NatkitPlugin;

/**
 * NatkitPluginInitFunc:
 * @plugin: the plugin being loaded
 * @error: return location for a #GError
 *
 * Registers the plugin's type with [method@Natkit.Plugin.register_type].
 * Returning %FALSE with an error (for example, "wireguard-go is not
 * installed") marks the plugin failed with that message as the reason.
 *
 * Returns: %TRUE on success
 */
typedef gboolean (*NatkitPluginInitFunc) (NatkitPlugin  *plugin,
                                          GError       **error);

/**
 * NatkitPluginDesc:
 * @abi_major: %NATKIT_PLUGIN_ABI_MAJOR the plugin was built with
 * @abi_minor: %NATKIT_PLUGIN_ABI_MINOR the plugin was built with
 * @name: the plugin's name: lower case, digits and `-`; the file must be
 *   called `libnatkit-NAME.so`
 * @description: one line saying what it does
 * @version: the plugin's version
 * @license: its licence, as an SPDX expression
 * @init: registers its type
 *
 * The one symbol, `natkit_plugin_desc`, that every plugin module exports.
 * Define it with %NATKIT_PLUGIN_DEFINE.
 */
typedef struct
{
  guint                 abi_major;
  guint                 abi_minor;
  const char           *name;
  const char           *description;
  const char           *version;
  const char           *license;
  NatkitPluginInitFunc  init;

  /*< private >*/
  gpointer              _natkit_reserved[8];
} NatkitPluginDesc;

/**
 * NATKIT_PLUGIN_DESC_SYMBOL:
 *
 * The name of the descriptor symbol the loader looks up.
 */
#define NATKIT_PLUGIN_DESC_SYMBOL "natkit_plugin_desc"

/**
 * NATKIT_PLUGIN_DEFINE:
 * @name: the plugin's name, a string literal
 * @description: one line saying what it does
 * @version: the plugin's version
 * @license: its licence, as an SPDX expression
 * @init: a [callback@Natkit.PluginInitFunc]
 *
 * Defines the plugin descriptor, stamped with the ABI version of the
 * headers the plugin is compiled against. Use it once per plugin module.
 */
#define NATKIT_PLUGIN_DEFINE(name, description, version, license, init) \
  G_MODULE_EXPORT const NatkitPluginDesc natkit_plugin_desc = {         \
    NATKIT_PLUGIN_ABI_MAJOR, NATKIT_PLUGIN_ABI_MINOR,                   \
    (name), (description), (version), (license), (init), { NULL, }      \
  };

NATKIT_AVAILABLE_IN_ALL
void natkit_plugin_register_type (NatkitPlugin     *plugin,
                                  NatkitPluginKind  kind,
                                  GType             type,
                                  int               rank);

G_END_DECLS
