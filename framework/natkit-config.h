/* natkit-config.h: settings from config.json
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-version-macros.h"

G_BEGIN_DECLS

#define NATKIT_TYPE_CONFIG (natkit_config_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitConfig, natkit_config, NATKIT, CONFIG, GObject)

NATKIT_AVAILABLE_IN_ALL
NatkitConfig       *natkit_config_new                      (void);
NATKIT_AVAILABLE_IN_ALL
NatkitConfig       *natkit_config_new_from_file            (const char    *filename,
                                                            GError       **error);
NATKIT_AVAILABLE_IN_ALL
NatkitConfig       *natkit_config_new_from_data            (const char    *data,
                                                            gssize         length,
                                                            GError       **error);
NATKIT_AVAILABLE_IN_ALL
NatkitConfig       *natkit_config_load_default             (GError       **error);
NATKIT_AVAILABLE_IN_ALL
char               *natkit_config_get_default_filename     (void);

NATKIT_AVAILABLE_IN_ALL
const char         *natkit_config_get_filename             (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
const char         *natkit_config_get_identity_filename    (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_set_identity_filename    (NatkitConfig  *self,
                                                            const char    *filename);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_config_get_stun_servers         (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_set_stun_servers         (NatkitConfig  *self,
                                                            const char * const *servers);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_config_get_rendezvous_servers   (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_set_rendezvous_servers   (NatkitConfig  *self,
                                                            const char * const *servers);
NATKIT_AVAILABLE_IN_ALL
const char * const *natkit_config_get_turn_uris            (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
gboolean            natkit_config_get_turn_credentials     (NatkitConfig  *self,
                                                            const char    *uri,
                                                            char         **username,
                                                            char         **password,
                                                            char         **secret);
NATKIT_AVAILABLE_IN_ALL
gboolean            natkit_config_add_turn_server          (NatkitConfig  *self,
                                                            const char    *uri,
                                                            const char    *username,
                                                            const char    *password,
                                                            const char    *secret,
                                                            GError       **error);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_clear_turn_servers       (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
void                natkit_turn_rest_credentials           (const char    *secret,
                                                            const char    *user,
                                                            gint64         expiry,
                                                            char         **username,
                                                            char         **password);
NATKIT_AVAILABLE_IN_ALL
gboolean            natkit_config_get_plugin_enabled       (NatkitConfig  *self,
                                                            const char    *name);
NATKIT_AVAILABLE_IN_ALL
gboolean            natkit_config_get_plugin_rank          (NatkitConfig  *self,
                                                            const char    *name,
                                                            int           *rank);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_set_plugin_rank          (NatkitConfig  *self,
                                                            const char    *name,
                                                            int            rank);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_set_plugin_enabled       (NatkitConfig  *self,
                                                            const char    *name,
                                                            gboolean       enabled);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_keepalive_interval   (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_connect_timeout      (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_stun_timeout         (NatkitConfig  *self);

NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_lifetime_probe_step  (NatkitConfig  *self);

NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_map_timeout          (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_slow_rtt             (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
guint               natkit_config_get_stagger              (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
GVariant           *natkit_config_get_plugin_setting       (NatkitConfig  *self,
                                                            const char    *plugin,
                                                            const char    *key);
NATKIT_AVAILABLE_IN_ALL
const char         *natkit_config_get_gateway              (NatkitConfig  *self);
NATKIT_AVAILABLE_IN_ALL
void                natkit_config_set_gateway              (NatkitConfig  *self,
                                                            const char    *gateway);

G_END_DECLS
