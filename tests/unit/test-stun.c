/* test-stun.c: STUN response parsing against the RFC 5769 test vectors,
 * forged and damaged answers, and the client on loopback
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include <sys/wait.h>
#include <unistd.h>
#include <glib/gstdio.h>

#include "natkit.h"
#include "natkit-stun-client-private.h"

#include <stun/stunagent.h>

/* RFC 5769 section 2.2: sample IPv4 response. */
static const guint8 rfc5769_ipv4[] = {
  0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42,
  0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
  0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
  0x74, 0x6f, 0x72, 0x20,
  0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
  0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
  0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7,
  0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
};

/* RFC 5769 section 2.3: sample IPv6 response. */
static const guint8 rfc5769_ipv6[] = {
  0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42,
  0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
  0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
  0x74, 0x6f, 0x72, 0x20,
  0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47,
  0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79,
  0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
  0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1,
  0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
  0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
};

static const char rfc5769_password[] = "VOkJxbRl1RmTxUk/WvJxBt";

/* The vectors' MESSAGE-INTEGRITY, checked independently with GLib: proves
 * the bytes above are the RFC's, so the parser is tested on the real thing. */
static void
assert_integrity (const guint8 *msg,
                  gsize         len)
{
  gsize mi = len - 8 - 24;   /* MESSAGE-INTEGRITY precedes FINGERPRINT */
  g_autofree guint8 *copy = g_memdup2 (msg, mi);
  g_autoptr(GHmac) hmac = g_hmac_new (G_CHECKSUM_SHA1, (const guchar *) rfc5769_password,
                                      strlen (rfc5769_password));
  guint8 digest[20];
  gsize digest_len = sizeof digest;
  guint16 adjusted = GUINT16_TO_BE (mi + 24 - 20);

  memcpy (copy + 2, &adjusted, 2);
  g_hmac_update (hmac, copy, mi);
  g_hmac_get_digest (hmac, digest, &digest_len);
  g_assert_cmpmem (digest, 20, msg + mi + 4, 20);
}

static void
test_rfc5769_ipv4 (void)
{
  g_auto(NatkitStunResponse) r = { 0, };
  g_autoptr(GError) error = NULL;
  g_autofree char *address = NULL;

  assert_integrity (rfc5769_ipv4, sizeof rfc5769_ipv4);
  g_assert_true (_natkit_stun_parse_binding_response (rfc5769_ipv4, sizeof rfc5769_ipv4,
                                                      rfc5769_ipv4 + 4, &r, &error));
  g_assert_no_error (error);
  address = g_inet_address_to_string (g_inet_socket_address_get_address (r.mapped));
  g_assert_cmpstr (address, ==, "192.0.2.1");
  g_assert_cmpuint (g_inet_socket_address_get_port (r.mapped), ==, 32853);
  g_assert_null (r.other);
}

static void
test_rfc5769_ipv6 (void)
{
  g_auto(NatkitStunResponse) r = { 0, };
  g_autoptr(GError) error = NULL;
  g_autofree char *address = NULL;

  assert_integrity (rfc5769_ipv6, sizeof rfc5769_ipv6);
  g_assert_true (_natkit_stun_parse_binding_response (rfc5769_ipv6, sizeof rfc5769_ipv6,
                                                      rfc5769_ipv6 + 4, &r, &error));
  g_assert_no_error (error);
  address = g_inet_address_to_string (g_inet_socket_address_get_address (r.mapped));
  g_assert_cmpstr (address, ==, "2001:db8:1234:5678:11:2233:4455:6677");
  g_assert_cmpuint (g_inet_socket_address_get_port (r.mapped), ==, 32853);
}

static void
assert_rejected (const guint8 *msg,
                 gsize         len,
                 const guint8 *txid,
                 const char   *pattern)
{
  g_auto(NatkitStunResponse) r = { 0, };
  g_autoptr(GError) error = NULL;

  g_assert_false (_natkit_stun_parse_binding_response (msg, len, txid, &r, &error));
  g_assert_nonnull (error);
  if (!g_pattern_match_simple (pattern, error->message))
    g_error ("“%s” does not match “%s”", error->message, pattern);
  g_assert_null (r.mapped);
}

static void
test_forged_and_damaged (void)
{
  guint8 msg[sizeof rfc5769_ipv4];
  guint8 other_txid[16];

  /* Wrong transaction. */
  memcpy (other_txid, rfc5769_ipv4 + 4, 16);
  other_txid[15] ^= 1;
  assert_rejected (rfc5769_ipv4, sizeof msg, other_txid, "*did not start*");

  /* A flipped bit in the mapped address: the FINGERPRINT catches it. */
  memcpy (msg, rfc5769_ipv4, sizeof msg);
  msg[47] ^= 0x01;
  assert_rejected (msg, sizeof msg, rfc5769_ipv4 + 4, "*FINGERPRINT does not match*");

  /* Truncated anywhere. */
  for (gsize len = 0; len < sizeof msg; len++)
    assert_rejected (rfc5769_ipv4, len, rfc5769_ipv4 + 4, "*");

  /* No magic cookie (RFC 3489). */
  memcpy (msg, rfc5769_ipv4, sizeof msg);
  msg[4] = 0;
  assert_rejected (msg, sizeof msg, NULL, "*magic cookie*");

  /* A request, not a response. */
  memcpy (msg, rfc5769_ipv4, sizeof msg);
  msg[0] = 0x00; msg[1] = 0x01;
  assert_rejected (msg, sizeof msg, rfc5769_ipv4 + 4, "*");

  /* Not STUN at all. */
  assert_rejected ((const guint8 *) "GET / HTTP/1.1\r\n\r\nxxxx", 22, NULL, "*not a STUN message*");
}

static void
test_build_request (void)
{
  guint8 buffer[256], txid[16], again[16];
  gsize len = _natkit_stun_build_binding_request (buffer, sizeof buffer, txid,
                                                  NATKIT_STUN_CHANGE_IP | NATKIT_STUN_CHANGE_PORT);

  /* Header, CHANGE-REQUEST (8), FINGERPRINT (8). */
  g_assert_cmpuint (len, ==, 20 + 8 + 8);
  g_assert_cmpuint (buffer[0], ==, 0x00);
  g_assert_cmpuint (buffer[1], ==, 0x01);
  g_assert_cmpmem (buffer + 4, 16, txid, 16);
  g_assert_cmpuint (buffer[20], ==, 0x00);
  g_assert_cmpuint (buffer[21], ==, 0x03);
  g_assert_cmpuint (buffer[27], ==, 0x06);
  _natkit_stun_build_binding_request (buffer, sizeof buffer, again, 0);
  g_assert_true (memcmp (txid, again, 16) != 0);
}

/* The client against a real STUN server (coturn) on loopback. */

static GPid turn_pid;          /* the RFC 5780 server: 127.0.0.1 + .2, ports 34780/34781 */
static GArray *turn_pids;      /* every coturn we started */

static void
die_with_parent (gpointer data)
{
  /* Nothing left behind, even if the test crashes. */
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

static char *
turn_db (guint n)
{
  return g_strdup_printf ("%s/natkit-test-turndb-%d-%u", g_get_tmp_dir (), (int) getpid (), n);
}

/* Starts coturn listening on @ip (and @ip2 with @alt_port for RFC 5780,
 * when given) and waits until it accepts connections. Returns 0 when coturn
 * is not installed. */
static GPid
spawn_coturn (const char *ip,
              const char *ip2,
              guint16     port,
              guint16     alt_port)
{
  g_autofree char *turnserver = g_find_program_in_path ("turnserver");
  g_autofree char *db = turn_db (turn_pids ? turn_pids->len : 0);
  g_autofree char *port_s = g_strdup_printf ("%u", port);
  g_autofree char *alt_s = g_strdup_printf ("%u", alt_port);
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_auto(GStrv) envp = g_get_environ ();
  g_autoptr(GError) error = NULL;
  GPid pid;

  if (turnserver == NULL)
    return 0;

  g_ptr_array_add (argv, turnserver);
  g_ptr_array_add (argv, "-n");
  g_ptr_array_add (argv, "--listening-ip");
  g_ptr_array_add (argv, (char *) ip);
  if (ip2)
    {
      g_ptr_array_add (argv, "--listening-ip");
      g_ptr_array_add (argv, (char *) ip2);
      g_ptr_array_add (argv, "--alt-listening-port");
      g_ptr_array_add (argv, alt_s);
    }
  g_ptr_array_add (argv, "--listening-port");
  g_ptr_array_add (argv, port_s);
  for (const char * const *a = (const char * const[]) {
         "--no-tls", "--no-dtls", "--no-cli", "--no-tcp-relay", "--log-file", "stdout",
         "--simple-log", "--lt-cred-mech", "--user", "test:test", "--realm", "natkit.test",
         "--min-port", "40000", "--max-port", "40100", "--pidfile", "/dev/null", NULL };
       *a; a++)
    g_ptr_array_add (argv, (char *) *a);
  g_ptr_array_add (argv, "--userdb");
  g_ptr_array_add (argv, db);
  g_ptr_array_add (argv, NULL);

  /* meson's MALLOC_PERTURB_ and our MALLOC_CHECK_ are for our code: coturn
   * 4.6 does not survive them. */
  envp = g_environ_unsetenv (envp, "MALLOC_PERTURB_");
  envp = g_environ_unsetenv (envp, "MALLOC_CHECK_");
  if (!g_spawn_async (NULL, (char **) argv->pdata, envp,
                      G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL |
                      G_SPAWN_STDERR_TO_DEV_NULL,
                      die_with_parent, NULL, &pid, &error))
    g_error ("cannot start turnserver: %s", error->message);
  if (turn_pids == NULL)
    turn_pids = g_array_new (FALSE, FALSE, sizeof (GPid));
  g_array_append_val (turn_pids, pid);

  /* Ready when it accepts TCP on the listening port (at most 10 s). */
  for (guint i = 0; i < 200; i++)
    {
      g_autoptr(GSocketClient) client = g_socket_client_new ();
      g_autoptr(GSocketConnection) connection = NULL;

      g_socket_client_set_enable_proxy (client, FALSE);
      connection = g_socket_client_connect_to_host (client, ip, port, NULL, NULL);
      if (connection != NULL)
        return pid;
      g_usleep (50 * G_TIME_SPAN_MILLISECOND);
    }
  g_error ("turnserver did not start listening on %s:%u", ip, port);
  return 0;
}

static void
stop_coturns (void)
{
  for (guint i = 0; turn_pids && i < turn_pids->len; i++)
    {
      GPid pid = g_array_index (turn_pids, GPid, i);
      g_autofree char *db = turn_db (i);

      kill (pid, SIGTERM);
      waitpid (pid, NULL, 0);
      g_spawn_close_pid (pid);
      g_unlink (db);
    }
  g_clear_pointer (&turn_pids, g_array_unref);
}

typedef struct
{
  NatkitNatInfo *info;
  GError        *error;
  gboolean       done;
} DetectResult;

static void
detect_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  DetectResult *r = user_data;

  r->info = natkit_manager_detect_nat_finish (NATKIT_MANAGER (source), result, &r->error);
  r->done = TRUE;
}

static NatkitNatInfo *
detect (const char * const *servers,
        guint               timeout_ms,
        GError            **error)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) manager = natkit_manager_new_with_config (config);
  DetectResult r = { NULL, NULL, FALSE };

  natkit_manager_detect_nat_async (manager, servers, timeout_ms, NATKIT_DETECT_NONE,
                                   NULL, detect_cb, &r);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  if (r.error)
    g_propagate_error (error, r.error);
  return r.info;
}

static void
test_detect_loopback (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitNatInfo) info = NULL;

  if (turn_pid == 0)
    {
      g_test_skip ("turnserver (coturn) is not installed");
      return;
    }

  info = detect ((const char *[]) { "127.0.0.1:34780", NULL }, 5000, &error);
  g_assert_no_error (error);
  /* Loopback: no NAT, nothing filtered, and every RFC 5780 test ran. */
  g_assert_cmpstr (natkit_nat_info_get_public_address (info), ==, "127.0.0.1");
  g_assert_cmpint (natkit_nat_info_get_nat_type (info), ==, NATKIT_NAT_TYPE_OPEN);
  g_assert_cmpint (natkit_nat_info_get_mapping (info), ==, NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT);
  g_assert_cmpint (natkit_nat_info_get_filtering (info), ==, NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT);
  g_assert_cmpuint (g_strv_length ((GStrv) natkit_nat_info_get_tests_skipped (info)), ==, 0);
  g_assert_cmpstrv (natkit_nat_info_get_servers_used (info),
                    ((const char *[]) { "127.0.0.1:34780", NULL }));
}

static void
test_detect_silent_server (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitNatInfo) info = NULL;
  gint64 start = g_get_monotonic_time ();

  /* Nobody listens on 127.0.0.3:34790 (UDP or TCP): "unreachable", within
   * the timeout, not "UDP blocked". */
  info = detect ((const char *[]) { "127.0.0.3:34790", NULL }, 1500, &error);
  g_assert_null (info);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (error->message, "127.0.0.3:34790"));
  g_assert_nonnull (strstr (error->message, "not reachable over TCP"));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 3 * G_USEC_PER_SEC);
}

static void
test_detect_bad_names (void)
{
  g_autoptr(GError) error = NULL;
  NatkitNatInfo *info;

  info = detect ((const char *[]) { "[::1", NULL }, 1000, &error);
  g_assert_null (info);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "not a server address"));
  g_clear_error (&error);

  info = detect ((const char *[]) { NULL }, 1000, &error);
  g_assert_null (info);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull (strstr (error->message, "--stun"));
}

static void
test_detect_circuit_breaker (void)
{
  g_autoptr(NatkitNatInfo) info = NULL;
  g_autoptr(GError) error = NULL;
  const char * const silent[] = { "127.0.0.4:34791", NULL };
  const char * const both[] = { "127.0.0.1:34780", "127.0.0.4:34791", NULL };
  gboolean found = FALSE;

  if (turn_pid == 0)
    {
      g_test_skip ("turnserver (coturn) is not installed");
      return;
    }

  /* Three failures in a row open the breaker for that server… */
  for (guint i = 0; i < 3; i++)
    {
      g_assert_null (detect (silent, 300, &error));
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
      g_clear_error (&error);
    }

  /* …so it is left out while another server can answer, and the result
   * says so. */
  info = detect (both, 3000, &error);
  g_assert_no_error (error);
  for (const char * const *s = natkit_nat_info_get_tests_skipped (info); *s; s++)
    if (g_str_has_prefix (*s, "server 127.0.0.4:34791: not asked"))
      found = TRUE;
  g_assert_true (found);
  g_clear_object (&info);

  /* Alone, it is still asked: the breaker never leaves nothing to try. */
  g_assert_null (detect (silent, 300, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
}

/* A lying STUN server in the test process: it answers every Binding
 * request, but wrongly, in the way @mode says. */
typedef enum {
  LIE_WRONG_SOURCE,     /* a good answer, from another port */
  LIE_BAD_FINGERPRINT,  /* a good answer with one bit flipped */
  LIE_GARBAGE,          /* random bytes */
  LIE_OTHER_TXID,       /* a good answer to another transaction */
} LieMode;

typedef struct
{
  GSocket *socket;
  GSocket *other;       /* for LIE_WRONG_SOURCE */
  LieMode  mode;
  guint    requests;
} Liar;

static gboolean
liar_cb (GSocket      *socket,
         GIOCondition  condition,
         gpointer      user_data)
{
  Liar *liar = user_data;
  g_autoptr(GSocketAddress) from = NULL;
  guint8 request[1500], answer[1500];
  struct sockaddr_storage native;
  StunAgent agent;
  StunMessage req, msg;
  gssize n;
  gsize len;

  n = g_socket_receive_from (socket, &from, (char *) request, sizeof request, NULL, NULL);
  if (n <= 0)
    return G_SOURCE_CONTINUE;
  liar->requests++;

  stun_agent_init (&agent, NULL, STUN_COMPATIBILITY_RFC5389, STUN_AGENT_USAGE_USE_FINGERPRINT |
                   STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
  if (stun_agent_validate (&agent, &req, request, n, NULL, NULL) != STUN_VALIDATION_SUCCESS)
    return G_SOURCE_CONTINUE;
  if (liar->mode == LIE_OTHER_TXID)
    request[19] ^= 0xff;
  stun_agent_init_response (&agent, &msg, answer, sizeof answer, &req);
  g_socket_address_to_native (from, &native, sizeof native, NULL);
  stun_message_append_xor_addr (&msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
                                &native, g_socket_address_get_native_size (from));
  len = stun_agent_finish_message (&agent, &msg, NULL, 0);

  switch (liar->mode)
    {
    case LIE_WRONG_SOURCE:
      g_socket_send_to (liar->other, from, (char *) answer, len, NULL, NULL);
      return G_SOURCE_CONTINUE;
    case LIE_BAD_FINGERPRINT:
      answer[len - 1] ^= 0x01;
      break;
    case LIE_GARBAGE:
      for (gsize i = 0; i < len; i++)
        answer[i] = g_random_int_range (0, 256);
      break;
    case LIE_OTHER_TXID:
    default:
      break;
    }
  g_socket_send_to (socket, from, (char *) answer, len, NULL, NULL);
  return G_SOURCE_CONTINUE;
}

static GSocket *
bound_udp (guint16 port)
{
  g_autoptr(GInetAddress) lo = g_inet_address_new_from_string ("127.0.0.1");
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (lo, port);
  GSocket *socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                                  G_SOCKET_PROTOCOL_UDP, NULL);

  g_assert_true (g_socket_bind (socket, address, TRUE, NULL));
  return socket;
}

static void
test_detect_liars (void)
{
  const struct { LieMode mode; const char *pattern; } cases[] = {
    { LIE_WRONG_SOURCE, "*answer came from the wrong address*" },
    { LIE_BAD_FINGERPRINT, "*FINGERPRINT does not match*" },
    { LIE_GARBAGE, "*No STUN server answered*" },
    { LIE_OTHER_TXID, "*No STUN server answered*" },
  };

  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      Liar liar = { bound_udp (34800), bound_udp (34801), cases[i].mode, 0 };
      GSource *source = g_socket_create_source (liar.socket, G_IO_IN, NULL);
      g_autoptr(GError) error = NULL;
      g_autoptr(NatkitNatInfo) info = NULL;
      gint64 start = g_get_monotonic_time ();

      g_source_set_callback (source, (GSourceFunc) (void (*) (void)) liar_cb, &liar, NULL);
      g_source_attach (source, NULL);

      /* No mapping is ever claimed from a lying answer, and it ends within
       * the timeout with an error that says what was wrong. */
      info = detect ((const char *[]) { "127.0.0.1:34800", NULL }, 1200, &error);
      g_assert_null (info);
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
      if (!g_pattern_match_simple (cases[i].pattern, error->message))
        g_error ("case %u: “%s” does not match “%s”", i, error->message, cases[i].pattern);
      g_assert_cmpuint (liar.requests, >=, 2);   /* it retransmitted */
      g_assert_cmpint (g_get_monotonic_time () - start, <, 3 * G_USEC_PER_SEC);

      g_source_destroy (source);
      g_source_unref (source);
      g_object_unref (liar.socket);
      g_object_unref (liar.other);
    }
}

static void
test_detect_two_servers (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitNatInfo) info = NULL;
  const char * const *skipped;

  if (turn_pid == 0)
    {
      g_test_skip ("turnserver (coturn) is not installed");
      return;
    }

  /* Two servers with one address each: no OTHER-ADDRESS, so the mapping is
   * compared across the servers and the filtering tests are reported as
   * not run, with the reason. */
  spawn_coturn ("127.0.0.6", NULL, 34810, 0);
  spawn_coturn ("127.0.0.7", NULL, 34810, 0);
  info = detect ((const char *[]) { "127.0.0.6:34810", "127.0.0.7:34810", NULL }, 3000, &error);
  g_assert_no_error (error);
  g_assert_cmpint (natkit_nat_info_get_mapping (info), ==, NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT);
  g_assert_cmpint (natkit_nat_info_get_filtering (info), ==, NATKIT_NAT_BEHAVIOR_UNKNOWN);
  g_assert_cmpuint (g_strv_length ((GStrv) natkit_nat_info_get_servers_used (info)), ==, 2);
  skipped = natkit_nat_info_get_tests_skipped (info);
  g_assert_cmpuint (g_strv_length ((GStrv) skipped), ==, 1);
  g_assert_true (g_str_has_prefix (skipped[0], "filtering: "));
  g_assert_nonnull (strstr (skipped[0], "no OTHER-ADDRESS"));
}

int
main (int    argc,
      char **argv)
{
  int ret;

  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("STUN: RFC 5769 vectors, bad answers, detection against coturn on loopback");

  g_test_add_func ("/natkit/stun/rfc5769-ipv4", test_rfc5769_ipv4);
  g_test_add_func ("/natkit/stun/rfc5769-ipv6", test_rfc5769_ipv6);
  g_test_add_func ("/natkit/stun/forged-and-damaged", test_forged_and_damaged);
  g_test_add_func ("/natkit/stun/build-request", test_build_request);
  g_test_add_func ("/natkit/detect/loopback-coturn", test_detect_loopback);
  g_test_add_func ("/natkit/detect/silent-server", test_detect_silent_server);
  g_test_add_func ("/natkit/detect/bad-names", test_detect_bad_names);
  g_test_add_func ("/natkit/detect/circuit-breaker", test_detect_circuit_breaker);
  g_test_add_func ("/natkit/detect/liars", test_detect_liars);
  g_test_add_func ("/natkit/detect/two-servers", test_detect_two_servers);

  turn_pid = spawn_coturn ("127.0.0.1", "127.0.0.2", 34780, 34781);
  ret = g_test_run ();
  stop_coturns ();
  return ret;
}
