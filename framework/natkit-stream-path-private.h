/* natkit-stream-path-private.h: the RFC 4571 framing, for the tests and the
 * fuzz target
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The length prefix, and the largest body it can announce. */
#define NATKIT_FRAME_HEADER_SIZE 2
#define NATKIT_FRAME_MAX_BODY    65535

/*
 * Looks for one complete frame at the start of @data.
 *
 * Returns the bytes the frame takes (prefix and body, > 0) and points
 * @body / @body_length at the body; 0 when @data holds only the beginning of
 * a frame (read more); -1 with @error set on a framing error (a zero-length
 * frame).
 */
gssize _natkit_frame_parse (const guint8  *data,
                            gsize          length,
                            const guint8 **body,
                            gsize         *body_length,
                            GError       **error);

G_END_DECLS
