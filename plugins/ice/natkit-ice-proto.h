/* natkit-ice-proto.h: the "ice" signaling body (trickle ICE over
 * NatkitSignaling), built and strictly parsed
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Pure code (GLib, GIO, json-glib): the unit tests and the fuzz target
 * link it without libnice. See docs/protocol.md section 8.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define NATKIT_ICE_MAX_MESSAGE     8192  /* bytes of one body */
#define NATKIT_ICE_MAX_CANDIDATES  32    /* read from one body; also per attempt */
#define NATKIT_ICE_MAX_FOUNDATION  32

typedef enum
{
  NATKIT_ICE_CANDIDATE_HOST,
  NATKIT_ICE_CANDIDATE_SRFLX,
  NATKIT_ICE_CANDIDATE_PRFLX,
  NATKIT_ICE_CANDIDATE_RELAY,
} NatkitIceCandidateType;

typedef struct
{
  NatkitIceCandidateType  type;
  GInetSocketAddress     *address;
  guint32                 priority;
  char                    foundation[NATKIT_ICE_MAX_FOUNDATION + 1];
} NatkitIceCandidate;

typedef struct
{
  char      *session;
  char      *ufrag;
  char      *pwd;
  GArray    *candidates;   /* NatkitIceCandidate, all sendable */
  GPtrArray *dropped;      /* why a candidate was dropped, in words */
  gboolean   end;          /* the sender gathered all its candidates */
  gboolean   restart;      /* from a path that is up: an ICE restart */
} NatkitIceMessage;

const char       *natkit_ice_candidate_type_to_string (NatkitIceCandidateType type);
void              natkit_ice_candidate_clear          (NatkitIceCandidate    *candidate);

gboolean          natkit_ice_address_is_sendable      (GInetSocketAddress    *address,
                                                       const char           **why);

NatkitIceMessage *natkit_ice_message_parse            (const char            *text,
                                                       GError               **error);
void              natkit_ice_message_free             (NatkitIceMessage      *message);

char             *natkit_ice_message_build            (const char               *session,
                                                       const char               *ufrag,
                                                       const char               *pwd,
                                                       const NatkitIceCandidate *candidates,
                                                       guint                     n_candidates,
                                                       gboolean                  end,
                                                       gboolean                  restart);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (NatkitIceMessage, natkit_ice_message_free)

G_END_DECLS
