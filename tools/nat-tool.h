/* nat-tool.h: what nat-tool's command files share
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <natkit/natkit.h>

#define EXIT_USAGE 2

typedef struct
{
  gboolean  json;
  char     *config_file;
  /* connect, listen, detect: servers named on the command line */
  char    **stun;
  char    **turn;
  char     *turn_user;
  char     *turn_password;
} CommonOptions;

typedef int (*CommandFunc) (CommonOptions *common,
                            int            argc,
                            char         **argv);

typedef struct
{
  const char  *name;
  const char  *parameters;
  const char  *summary;
  const char  *description;
  CommandFunc  func;
  const GOptionEntry *entries;
  gboolean     servers;   /* takes --stun, --turn, --turn-user, --turn-password */
} Command;

void           print_json     (JsonBuilder    *builder);
void           print_event    (JsonBuilder    *builder);
void           add_string     (JsonBuilder    *builder,
                               const char     *name,
                               const char     *value);
void           add_int        (JsonBuilder    *builder,
                               const char     *name,
                               gint64          value);
void           add_boolean    (JsonBuilder    *builder,
                               const char     *name,
                               gboolean        value);
int            fail           (CommonOptions  *common,
                               const GError   *error);
NatkitManager *make_manager   (CommonOptions  *common,
                               GError        **error);
const char    *enum_nick      (GType           type,
                               int             value);

/* nat-tool-connect.c */
void connection_event (CommonOptions    *common,
                       const char       *event,
                       NatkitConnection *connection,
                       gint64            elapsed_us,
                       const char       *message);
extern const GOptionEntry listen_entries[];
extern const GOptionEntry connect_entries[];
extern const GOptionEntry demo_entries[];
extern const GOptionEntry vpn_entries[];
int cmd_listen  (CommonOptions *common, int argc, char **argv);
int cmd_connect (CommonOptions *common, int argc, char **argv);
int cmd_demo    (CommonOptions *common, int argc, char **argv);
/* nat-tool-vpn.c */
int cmd_vpn     (CommonOptions *common, int argc, char **argv);
