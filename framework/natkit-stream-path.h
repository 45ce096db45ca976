/* natkit-stream-path.h: a datagram path over a byte stream (RFC 4571 framing)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#if !defined(__NATKIT_H_INSIDE__) && !defined(NATKIT_COMPILATION)
#error "Only <natkit/natkit.h> can be included directly."
#endif

#include <gio/gio.h>
#include "natkit-path.h"
#include "natkit-version-macros.h"

G_BEGIN_DECLS

/**
 * NATKIT_STREAM_PATH_MAX_QUEUED:
 *
 * How many bytes (frames with their length prefixes) a
 * [class@Natkit.StreamPath] holds waiting to be written before
 * [method@Natkit.Path.send] refuses more: 4 MiB.
 */
#define NATKIT_STREAM_PATH_MAX_QUEUED (4 * 1024 * 1024)

#define NATKIT_TYPE_STREAM_PATH (natkit_stream_path_get_type ())
NATKIT_AVAILABLE_IN_ALL
G_DECLARE_FINAL_TYPE (NatkitStreamPath, natkit_stream_path, NATKIT, STREAM_PATH, NatkitPath)

NATKIT_AVAILABLE_IN_ALL
NatkitPath *natkit_stream_path_new        (GIOStream        *stream,
                                           const char       *method,
                                           const char       *transport,
                                           const char       *local_address,
                                           const char       *remote_address);
NATKIT_AVAILABLE_IN_ALL
GIOStream  *natkit_stream_path_get_stream (NatkitStreamPath *self);

G_END_DECLS
