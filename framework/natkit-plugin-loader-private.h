/* natkit-plugin-loader-private.h: finding and loading plugin modules
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include "natkit.h"

G_BEGIN_DECLS

/* How the process runs, as far as plugin loading is concerned. */
typedef enum {
  NATKIT_PRIVILEGE_AUTO = -1,  /* detect */
  NATKIT_PRIVILEGE_NONE = 0,   /* an ordinary user */
  NATKIT_PRIVILEGE_ROOT = 1,   /* euid 0: plugin files must be root's and not writable by others */
  NATKIT_PRIVILEGE_SECURE = 2, /* setuid/setgid/capabilities (AT_SECURE): also ignore the environment */
} NatkitPrivilege;

GPtrArray *_natkit_plugin_loader_scan          (NatkitConfig    *config);
char     **_natkit_plugin_loader_get_dirs      (void);
void       _natkit_plugin_loader_set_privilege (NatkitPrivilege  privilege);
int        _natkit_plugin_info_compare         (gconstpointer    a,
                                                gconstpointer    b);

G_END_DECLS
