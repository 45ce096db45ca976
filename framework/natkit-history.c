/* natkit-history.c: what worked, per peer — persisted, and fed to the race
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * `$XDG_STATE_HOME/natkit/history.json` (mode 0600):
 *
 *   {"version": 1,
 *    "peers": {"PEER-ID": {"methods": {"holepunch": {
 *        "attempts": 3, "successes": 2, "failures": 1,
 *        "failures_in_a_row": 0, "last_success": 1795450000,
 *        "last_failure": 1795449000, "last_reason": "…",
 *        "connect_ms": 42}}}},
 *    "pairs": {"symmetric/port-restricted": {"methods": {…}}}}
 *
 * connect_ms is the latest time to connect through that method. The race
 * reads it back: the method that last carried a connection to the peer
 * starts first, and a method that failed its last three attempts with the
 * peer, and never worked, starts after the relay. The file is small (at
 * most MAX_PEERS peers, the least recently used dropped) and rewritten
 * whole, atomically.
 *
 * "pairs" keeps the same counts per pair of NAT types (ours / the peer's,
 * as [enum@Natkit.NatType] nicks) when both sides knew theirs: for a peer
 * never met before, what worked between networks like these decides the
 * same way.
 */
#include "config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "natkit-history-private.h"
#include "natkit-wire-private.h"

#define MAX_PEERS   1000
#define MAX_PAIRS   64     /* 7 × 7 NAT types, and room for newer ones */
#define MAX_REASON  300

struct _NatkitHistory
{
  GObject     parent_instance;

  char       *filename;
  JsonObject *peers;      /* PEER-ID → {"methods": …, "used": time} */
  JsonObject *pairs;      /* "OURS/THEIRS" → {"methods": …, "used": time} */
  gboolean    loaded;
};

G_DEFINE_FINAL_TYPE (NatkitHistory, _natkit_history, G_TYPE_OBJECT)

static void
natkit_history_finalize (GObject *object)
{
  NatkitHistory *self = NATKIT_HISTORY (object);

  g_free (self->filename);
  g_clear_pointer (&self->peers, json_object_unref);
  g_clear_pointer (&self->pairs, json_object_unref);
  G_OBJECT_CLASS (_natkit_history_parent_class)->finalize (object);
}

static void
_natkit_history_class_init (NatkitHistoryClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = natkit_history_finalize;
}

static void
_natkit_history_init (NatkitHistory *self)
{
  self->peers = json_object_new ();
  self->pairs = json_object_new ();
}

NatkitHistory *
_natkit_history_new (const char *filename)
{
  NatkitHistory *self = g_object_new (NATKIT_TYPE_HISTORY, NULL);

  self->filename = g_strdup (filename);
  return self;
}

char *
_natkit_history_default_filename (void)
{
  return g_build_filename (g_get_user_state_dir (), "natkit", "history.json", NULL);
}

/* Reads the file once; a missing or damaged file is an empty history (it
 * only ever speeds things up). */
static void
ensure_loaded (NatkitHistory *self)
{
  g_autofree char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) root = NULL;
  gsize len = 0;
  JsonNode *peers;

  if (self->loaded)
    return;
  self->loaded = TRUE;
  if (!self->filename || !g_file_get_contents (self->filename, &text, &len, &error))
    return;
  /* checked like anything read from outside, then parsed mutable (the
   * checked parse is immutable) */
  root = _natkit_wire_json_object (text, len, &error);
  if (!root)
    {
      g_debug ("ignoring the connection history %s: %s", self->filename, error->message);
      return;
    }
  {
    g_autoptr(JsonNode) mutable = json_from_string (text, NULL);

    if (!mutable || !JSON_NODE_HOLDS_OBJECT (mutable))
      return;
    peers = json_object_get_member (json_node_get_object (mutable), "peers");
    if (peers && JSON_NODE_HOLDS_OBJECT (peers))
      {
        json_object_unref (self->peers);
        self->peers = json_object_ref (json_node_get_object (peers));
      }
    peers = json_object_get_member (json_node_get_object (mutable), "pairs");
    if (peers && JSON_NODE_HOLDS_OBJECT (peers))
      {
        json_object_unref (self->pairs);
        self->pairs = json_object_ref (json_node_get_object (peers));
      }
  }
}

static JsonObject *
child_object (JsonObject *parent,
              const char *name)
{
  JsonNode *node = json_object_get_member (parent, name);

  if (!node || !JSON_NODE_HOLDS_OBJECT (node))
    {
      json_object_set_object_member (parent, name, json_object_new ());
      node = json_object_get_member (parent, name);
    }
  return json_node_get_object (node);
}

static gint64
get_int (JsonObject *o,
         const char *name)
{
  JsonNode *node = json_object_get_member (o, name);

  if (!node || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return 0;
  return json_node_get_int (node);
}

static void
drop_oldest (JsonObject *entries,
             guint       max)
{
  g_autoptr(GList) names = NULL;
  const char *oldest = NULL;
  gint64 oldest_used = G_MAXINT64;

  if (json_object_get_size (entries) <= max)
    return;
  names = json_object_get_members (entries);
  for (GList *l = names; l; l = l->next)
    {
      JsonNode *node = json_object_get_member (entries, l->data);
      gint64 used = node && JSON_NODE_HOLDS_OBJECT (node) ?
        get_int (json_node_get_object (node), "used") : 0;

      if (used < oldest_used)
        {
          oldest_used = used;
          oldest = l->data;
        }
    }
  if (oldest)
    json_object_remove_member (entries, oldest);
}

static void
save (NatkitHistory *self)
{
  g_autoptr(JsonObject) root = json_object_new ();
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);
  g_autoptr(JsonGenerator) generator = json_generator_new ();
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = NULL;
  g_autofree char *text = NULL;

  if (!self->filename)
    return;
  json_object_set_int_member (root, "version", 1);
  json_object_set_object_member (root, "peers", json_object_ref (self->peers));
  json_object_set_object_member (root, "pairs", json_object_ref (self->pairs));
  json_node_set_object (node, root);
  json_generator_set_root (generator, node);
  json_generator_set_pretty (generator, TRUE);
  text = json_generator_to_data (generator, NULL);

  dir = g_path_get_dirname (self->filename);
  if (g_mkdir_with_parents (dir, 0700) != 0 ||
      !g_file_set_contents_full (self->filename, text, -1,
                                 G_FILE_SET_CONTENTS_CONSISTENT, 0600, &error))
    g_debug ("cannot save the connection history in %s: %s", self->filename,
             error ? error->message : g_strerror (errno));
}

/* Counts one attempt of @method in @entry (a peer's or a pair's). */
static void
record_into (JsonObject *entry,
             const char *method,
             gboolean    success,
             gint64      connect_us,
             const char *reason,
             gint64      now)
{
  JsonObject *methods, *m;

  json_object_set_int_member (entry, "used", now);
  methods = child_object (entry, "methods");
  m = child_object (methods, method);
  json_object_set_int_member (m, "attempts", get_int (m, "attempts") + 1);
  if (success)
    {
      json_object_set_int_member (m, "successes", get_int (m, "successes") + 1);
      json_object_set_int_member (m, "failures_in_a_row", 0);
      json_object_set_int_member (m, "last_success", now);
      json_object_set_int_member (m, "connect_ms", connect_us / 1000);
      json_object_set_string_member (entry, "last_method", method);
    }
  else
    {
      g_autofree char *why = g_utf8_make_valid (reason ? reason : "", -1);

      if (g_utf8_strlen (why, -1) > MAX_REASON)
        *g_utf8_offset_to_pointer (why, MAX_REASON) = '\0';
      json_object_set_int_member (m, "failures", get_int (m, "failures") + 1);
      json_object_set_int_member (m, "failures_in_a_row",
                                  get_int (m, "failures_in_a_row") + 1);
      json_object_set_int_member (m, "last_failure", now);
      json_object_set_string_member (m, "last_reason", why);
    }
}

/* @pair: "OURS/THEIRS" NAT types, or %NULL when either is unknown */
void
_natkit_history_record (NatkitHistory *self,
                        const char    *peer_id,
                        const char    *pair,
                        const char    *method,
                        gboolean       success,
                        gint64         connect_us,
                        const char    *reason)
{
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;

  g_return_if_fail (NATKIT_IS_HISTORY (self));
  if (!peer_id || !method)
    return;

  ensure_loaded (self);
  record_into (child_object (self->peers, peer_id), method, success, connect_us, reason, now);
  drop_oldest (self->peers, MAX_PEERS);
  if (pair)
    {
      record_into (child_object (self->pairs, pair), method, success, connect_us, reason, now);
      drop_oldest (self->pairs, MAX_PAIRS);
    }
  save (self);
}

static JsonObject *
lookup (JsonObject *entries,
        const char *key)
{
  JsonNode *node = key ? json_object_get_member (entries, key) : NULL;

  return node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
}

static const char *
entry_last_method (JsonObject *entry)
{
  JsonNode *last = entry ? json_object_get_member (entry, "last_method") : NULL;

  if (!last || !JSON_NODE_HOLDS_VALUE (last) ||
      json_node_get_value_type (last) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (last);
}

static JsonObject *
entry_method (JsonObject *entry,
              const char *method)
{
  JsonObject *methods = entry ? lookup (entry, "methods") : NULL;

  return methods ? lookup (methods, method) : NULL;
}

/* The method that last carried a connection to @peer_id — or, when none
 * ever did, between networks of the NAT types of @pair — or %NULL. */
const char *
_natkit_history_last_method (NatkitHistory *self,
                             const char    *peer_id,
                             const char    *pair)
{
  const char *last;

  ensure_loaded (self);
  last = entry_last_method (lookup (self->peers, peer_id));
  if (!last)
    last = entry_last_method (lookup (self->pairs, pair));
  return last;
}

static gboolean
method_keeps_failing (JsonObject *m)
{
  return m && get_int (m, "successes") == 0 && get_int (m, "failures_in_a_row") >= 3;
}

/* Whether @method never worked with @peer_id and failed its last three
 * attempts with it; for a method never tried with the peer, the same
 * between networks of the NAT types of @pair. */
gboolean
_natkit_history_keeps_failing (NatkitHistory *self,
                               const char    *peer_id,
                               const char    *pair,
                               const char    *method)
{
  JsonObject *m;

  ensure_loaded (self);
  m = entry_method (lookup (self->peers, peer_id), method);
  if (m)
    return method_keeps_failing (m);
  return method_keeps_failing (entry_method (lookup (self->pairs, pair), method));
}

char *
_natkit_history_to_json (NatkitHistory *self)
{
  g_autoptr(JsonObject) root = json_object_new ();
  g_autoptr(JsonNode) node = json_node_new (JSON_NODE_OBJECT);

  ensure_loaded (self);
  json_object_set_int_member (root, "version", 1);
  json_object_set_object_member (root, "peers", json_object_ref (self->peers));
  json_object_set_object_member (root, "pairs", json_object_ref (self->pairs));
  json_node_set_object (node, root);
  return json_to_string (node, TRUE);
}
