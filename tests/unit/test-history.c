/* test-history.c: what natkit remembers — per peer, per pair of NAT
 * types — and what it knows and tells of its network
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>

#include "natkit.h"
#include "natkit-history-private.h"
#include "natkit-nat-info-private.h"

#define PAIR "symmetric/udp-blocked"

static char *
temp_file (const char *name)
{
  g_autofree char *dir = g_dir_make_tmp ("natkit-history-XXXXXX", NULL);

  g_assert_nonnull (dir);
  return g_build_filename (dir, name, NULL);
}

static void
remove_file (const char *filename)
{
  g_autofree char *dir = g_path_get_dirname (filename);

  g_unlink (filename);
  g_rmdir (dir);
}

/* A peer never met: what happened between networks of the same two NAT
 * types decides; the peer's own history, once there, wins. */
static void
test_pairs (void)
{
  g_autofree char *filename = temp_file ("history.json");
  g_autoptr(NatkitHistory) h = _natkit_history_new (filename);
  g_autoptr(NatkitHistory) again = NULL;

  for (guint i = 0; i < 3; i++)
    _natkit_history_record (h, "PeerOne", PAIR, "holepunch", FALSE, 0,
                            "no punch packet got through");
  _natkit_history_record (h, "PeerOne", PAIR, "relay", TRUE, 40000, NULL);

  g_assert_true (_natkit_history_keeps_failing (h, "PeerTwo", PAIR, "holepunch"));
  g_assert_false (_natkit_history_keeps_failing (h, "PeerTwo", PAIR, "relay"));
  g_assert_cmpstr (_natkit_history_last_method (h, "PeerTwo", PAIR), ==, "relay");
  /* another pair of networks, or none known: nothing to go by */
  g_assert_false (_natkit_history_keeps_failing (h, "PeerTwo", "full-cone/full-cone",
                                                 "holepunch"));
  g_assert_false (_natkit_history_keeps_failing (h, "PeerTwo", NULL, "holepunch"));
  g_assert_null (_natkit_history_last_method (h, "PeerTwo", NULL));

  /* PeerTwo's own record of hole punching overrides the pair's */
  _natkit_history_record (h, "PeerTwo", PAIR, "holepunch", TRUE, 30000, NULL);
  g_assert_false (_natkit_history_keeps_failing (h, "PeerTwo", PAIR, "holepunch"));
  g_assert_cmpstr (_natkit_history_last_method (h, "PeerTwo", PAIR), ==, "holepunch");
  /* a success between these networks does not clear "keeps failing" for
   * the pair: it has failed three times in a row there, and worked once */
  g_assert_false (_natkit_history_keeps_failing (h, "PeerThree", PAIR, "holepunch"));

  /* persisted */
  again = _natkit_history_new (filename);
  g_assert_cmpstr (_natkit_history_last_method (again, "PeerFour", PAIR), ==, "holepunch");
  g_assert_cmpstr (_natkit_history_last_method (again, "PeerOne", NULL), ==, "relay");
  remove_file (filename);
}

/* The pairs are bounded, the least recently used dropped. */
static void
test_pairs_bounded (void)
{
  g_autofree char *filename = temp_file ("history.json");
  g_autoptr(NatkitHistory) h = _natkit_history_new (filename);
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autofree char *text = NULL;
  JsonObject *pairs;

  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *pair = g_strdup_printf ("type%u/other", i);

      _natkit_history_record (h, "PeerOne", pair, "relay", TRUE, 1000, NULL);
    }
  text = _natkit_history_to_json (h);
  g_assert_true (json_parser_load_from_data (parser, text, -1, NULL));
  pairs = json_object_get_object_member (json_node_get_object (json_parser_get_root (parser)),
                                         "pairs");
  g_assert_cmpuint (json_object_get_size (pairs), <=, 64);
  g_assert_cmpuint (json_object_get_size (pairs), >, 0);
  remove_file (filename);
}

/* A file whose "pairs" is not an object, or holds junk, is read as far as
 * it makes sense; nothing crashes. */
static void
test_damaged (void)
{
  g_autofree char *filename = temp_file ("history.json");
  g_autoptr(NatkitHistory) h = NULL;
  g_autoptr(NatkitHistory) h2 = NULL;

  g_assert_true (g_file_set_contents (filename,
                                      "{\"version\":1,\"peers\":{},\"pairs\":[1,2]}", -1, NULL));
  h = _natkit_history_new (filename);
  g_assert_null (_natkit_history_last_method (h, "PeerOne", PAIR));
  _natkit_history_record (h, "PeerOne", PAIR, "relay", TRUE, 1000, NULL);
  g_assert_cmpstr (_natkit_history_last_method (h, "PeerTwo", PAIR), ==, "relay");

  g_assert_true (g_file_set_contents (filename,
                                      "{\"version\":1,\"pairs\":{\"" PAIR "\":{\"last_method\":7,"
                                      "\"methods\":{\"holepunch\":\"x\"}}}}", -1, NULL));
  h2 = _natkit_history_new (filename);
  g_assert_null (_natkit_history_last_method (h2, "PeerOne", PAIR));
  g_assert_false (_natkit_history_keeps_failing (h2, "PeerOne", PAIR, "holepunch"));
  remove_file (filename);
}

/* What a peer says of its network: enum nicks, every member optional,
 * unknown values read as unknown. */
static void
test_summary (void)
{
  g_autoptr(JsonParser) parser = json_parser_new ();
  g_autoptr(NatkitNatInfo) info = NULL;
  g_autoptr(NatkitNatInfo) back = NULL;
  g_autoptr(JsonObject) summary = NULL;

  g_assert_true (json_parser_load_from_data (parser,
                                             "{\"type\":\"symmetric\",\"mapping\":"
                                             "\"address-and-port-dependent\",\"filtering\":"
                                             "\"from-the-future\"}", -1, NULL));
  info = _natkit_nat_info_from_summary (json_node_get_object (json_parser_get_root (parser)));
  g_assert_nonnull (info);
  g_assert_cmpint (natkit_nat_info_get_nat_type (info), ==, NATKIT_NAT_TYPE_SYMMETRIC);
  g_assert_cmpint (natkit_nat_info_get_mapping (info), ==,
                   NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT);
  g_assert_cmpint (natkit_nat_info_get_filtering (info), ==, NATKIT_NAT_BEHAVIOR_UNKNOWN);
  g_assert_null (natkit_nat_info_get_public_address (info));

  summary = _natkit_nat_info_to_summary (info);
  back = _natkit_nat_info_from_summary (summary);
  g_assert_cmpint (natkit_nat_info_get_nat_type (back), ==, NATKIT_NAT_TYPE_SYMMETRIC);
  g_assert_cmpint (natkit_nat_info_get_mapping (back), ==,
                   NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT);

  /* nothing known, wrong types: no information at all */
  g_assert_true (json_parser_load_from_data (parser,
                                             "{\"type\":7,\"mapping\":[\"x\"],\"filtering\":null,"
                                             "\"public_address\":\"192.0.2.1\"}", -1, NULL));
  g_assert_null (_natkit_nat_info_from_summary (json_node_get_object (json_parser_get_root (parser))));
  g_assert_null (_natkit_nat_info_from_summary (NULL));
}

static NatkitNatInfo *
nat_of_type (const char *type)
{
  g_autoptr(JsonObject) o = json_object_new ();

  json_object_set_string_member (o, "type", type);
  return _natkit_nat_info_from_summary (o);
}

/* Why hole punching cannot work, in words, from both NAT types. */
static void
test_explain (void)
{
  g_autoptr(NatkitNatInfo) sym = nat_of_type ("symmetric");
  g_autoptr(NatkitNatInfo) blocked = nat_of_type ("udp-blocked");
  g_autoptr(NatkitNatInfo) prc = nat_of_type ("port-restricted-cone");
  g_autoptr(NatkitNatInfo) full = nat_of_type ("full-cone");
  g_autofree char *a = _natkit_nat_pair_explain (sym, blocked);
  g_autofree char *b = _natkit_nat_pair_explain (blocked, NULL);
  g_autofree char *c = _natkit_nat_pair_explain (sym, sym);
  g_autofree char *d = _natkit_nat_pair_explain (prc, sym);
  g_autofree char *e = _natkit_nat_pair_explain (blocked, blocked);

  g_assert_cmpstr (a, ==, "you are behind a symmetric NAT and the peer's network blocks UDP, "
                          "so UDP hole punching cannot work");
  g_assert_cmpstr (b, ==, "your network blocks UDP, so UDP hole punching cannot work");
  g_assert_nonnull (strstr (c, "both behind symmetric NATs"));
  g_assert_nonnull (strstr (d, "the peer is behind a symmetric NAT"));
  g_assert_nonnull (strstr (e, "both networks block UDP"));
  /* nothing rules hole punching out */
  g_assert_null (_natkit_nat_pair_explain (sym, full));
  g_assert_null (_natkit_nat_pair_explain (prc, prc));
  g_assert_null (_natkit_nat_pair_explain (NULL, NULL));
}

static void
write_nat_json (const char *local_address,
                gint64      detected)
{
  g_autofree char *dir = g_build_filename (g_get_user_state_dir (), "natkit", NULL);
  g_autofree char *file = g_build_filename (dir, "nat.json", NULL);
  g_autofree char *text =
    g_strdup_printf ("{\"type\":\"port-restricted-cone\",\"mapping\":\"endpoint-independent\","
                     "\"filtering\":\"address-and-port-dependent\",\"hairpinning\":\"unsupported\","
                     "\"public_address\":\"203.0.113.9\",\"public_port\":40000,"
                     "\"local_address\":\"%s\",\"detected\":%" G_GINT64_FORMAT "}",
                     local_address, detected);

  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_assert_true (g_file_set_contents (file, text, -1, NULL));
}

static NatkitNatInfo *
fresh_manager_nat_info (NatkitManager **manager)
{
  g_clear_object (manager);
  *manager = natkit_manager_new_with_config (natkit_config_new ());
  return natkit_manager_get_nat_info (*manager);
}

/* The newest detection is remembered in the state directory, for an hour
 * and only while the machine still has the local address it was measured
 * from. */
static void
test_manager_remembers (void)
{
  g_autoptr(NatkitManager) manager = NULL;
  gint64 now = g_get_real_time () / G_USEC_PER_SEC;
  NatkitNatInfo *info;

  g_assert_null (fresh_manager_nat_info (&manager));

  write_nat_json ("127.0.0.1", now - 60);
  info = fresh_manager_nat_info (&manager);
  g_assert_nonnull (info);
  g_assert_cmpint (natkit_nat_info_get_nat_type (info), ==,
                   NATKIT_NAT_TYPE_PORT_RESTRICTED_CONE);
  g_assert_cmpstr (natkit_nat_info_get_public_address (info), ==, "203.0.113.9");
  g_assert_cmpuint (natkit_nat_info_get_public_port (info), ==, 40000);
  g_assert_cmpint (natkit_nat_info_get_hairpinning (info), ==, NATKIT_HAIRPINNING_UNSUPPORTED);

  /* two hours old: another network, perhaps */
  write_nat_json ("127.0.0.1", now - 2 * 60 * 60);
  g_assert_null (fresh_manager_nat_info (&manager));

  /* measured from an address this machine does not have (TEST-NET-1) */
  write_nat_json ("192.0.2.77", now - 60);
  g_assert_null (fresh_manager_nat_info (&manager));

  /* damaged */
  {
    g_autofree char *file = g_build_filename (g_get_user_state_dir (), "natkit", "nat.json",
                                              NULL);

    g_assert_true (g_file_set_contents (file, "{\"type\":", -1, NULL));
    g_assert_null (fresh_manager_nat_info (&manager));
    g_unlink (file);
  }
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *state = g_dir_make_tmp ("natkit-state-XXXXXX", NULL);
  int ret;

  /* before GLib reads it */
  g_setenv ("XDG_STATE_HOME", state, TRUE);
  g_setenv ("NATKIT_PLUGIN_PATH", "", TRUE);
  g_setenv ("NATKIT_PLUGIN_SYSTEM_PATH", "", TRUE);
  g_unsetenv ("NATKIT_PLUGIN_RANKS");
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/natkit/history/pairs", test_pairs);
  g_test_add_func ("/natkit/history/pairs-bounded", test_pairs_bounded);
  g_test_add_func ("/natkit/history/damaged", test_damaged);
  g_test_add_func ("/natkit/nat-info/summary", test_summary);
  g_test_add_func ("/natkit/nat-info/explain", test_explain);
  g_test_add_func ("/natkit/manager/remembers-nat-info", test_manager_remembers);

  ret = g_test_run ();
  {
    g_autofree char *dir = g_build_filename (state, "natkit", NULL);

    g_rmdir (dir);
    g_rmdir (state);
  }
  return ret;
}
