/* natkit-path.h: a datagram path to a peer
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

#define NATKIT_TYPE_PATH (natkit_path_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_DERIVABLE_TYPE (NatkitPath, natkit_path, NATKIT, PATH, GObject)

/**
 * NatkitPathClass:
 * @parent_class: the parent class
 * @send: sends one datagram without blocking; returns %FALSE with an error
 *   when it cannot (the base class has already checked the size and that the
 *   path is open)
 * @close: releases what the path holds (sockets, allocations); called once
 *
 * The virtual functions a traversal plugin implements for its paths.
 */
struct _NatkitPathClass
{
  GObjectClass parent_class;

  gboolean (*send)  (NatkitPath  *self,
                     GBytes      *datagram,
                     GError     **error);
  void     (*close) (NatkitPath  *self);

  /*< private >*/
  gpointer padding[12];
};

NATKIT_AVAILABLE_IN_ALL
gboolean      natkit_path_send               (NatkitPath   *self,
                                              GBytes       *datagram,
                                              GError      **error);
NATKIT_AVAILABLE_IN_ALL
void          natkit_path_close              (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
gboolean      natkit_path_is_closed          (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_path_get_method         (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_path_get_transport      (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_path_get_local_address  (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
const char   *natkit_path_get_remote_address (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
guint         natkit_path_get_mtu            (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
gboolean      natkit_path_get_relayed        (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
gint64        natkit_path_get_rtt            (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
guint64       natkit_path_get_bytes_sent     (NatkitPath   *self);
NATKIT_AVAILABLE_IN_ALL
guint64       natkit_path_get_bytes_received (NatkitPath   *self);

/* For implementations. */
NATKIT_AVAILABLE_IN_ALL
void          natkit_path_deliver            (NatkitPath   *self,
                                              GBytes       *datagram);
NATKIT_AVAILABLE_IN_ALL
void          natkit_path_set_rtt            (NatkitPath   *self,
                                              gint64        rtt_us);
NATKIT_AVAILABLE_IN_ALL
void          natkit_path_fail               (NatkitPath   *self,
                                              const GError *error);

G_END_DECLS
