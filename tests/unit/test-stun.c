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

/* Starts detection in the thread-default main context; @progress, when
 * given, is connected to NatkitManager::detect-progress. */
static void
detect_start (const char * const *servers,
              guint               timeout_ms,
              NatkitDetectFlags   flags,
              GCancellable       *cancellable,
              GCallback           progress,
              gpointer            progress_data,
              DetectResult       *r)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();
  g_autoptr(NatkitManager) manager = natkit_manager_new_with_config (config);

  if (progress)
    g_signal_connect (manager, "detect-progress", progress, progress_data);
  /* the gateway probe is tested in the lab, against the lab's router */
  natkit_manager_detect_nat_async (manager, servers, timeout_ms,
                                   flags | NATKIT_DETECT_NO_GATEWAY, cancellable,
                                   detect_cb, r);
}

static NatkitNatInfo *
detect (const char * const *servers,
        guint               timeout_ms,
        GError            **error)
{
  DetectResult r = { NULL, NULL, FALSE };

  detect_start (servers, timeout_ms, NATKIT_DETECT_NONE, NULL, NULL, NULL, &r);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  if (r.error)
    g_propagate_error (error, r.error);
  return r.info;
}

static gboolean
set_true_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Iterates @context until *@done, for at most @ms. */
static void
iterate_until (GMainContext   *context,
               const gboolean *done,
               guint           ms)
{
  gboolean late = FALSE;
  GSource *timeout = g_timeout_source_new (ms);

  g_source_set_callback (timeout, set_true_cb, &late, NULL);
  g_source_attach (timeout, context);
  while (!*done && !late)
    g_main_context_iteration (context, TRUE);
  g_source_destroy (timeout);
  g_source_unref (timeout);
}

/* Cancels @cancellable @delay_ms after a progress message containing
 * @after, from the test's thread or from another one. */
typedef struct
{
  GCancellable *cancellable;
  const char   *after;
  guint         delay_ms;
  gboolean      from_thread;
  GSource      *timer;
  gint64        cancelled_at;
} Canceller;

static gpointer
cancel_thread (gpointer data)
{
  g_cancellable_cancel (data);
  return NULL;
}

static void
cancel_now (GCancellable *cancellable,
            gboolean      from_thread)
{
  if (from_thread)
    g_thread_join (g_thread_new ("canceller", cancel_thread, cancellable));
  else
    g_cancellable_cancel (cancellable);
}

static gboolean
canceller_timer_cb (gpointer user_data)
{
  Canceller *c = user_data;

  c->cancelled_at = g_get_monotonic_time ();
  cancel_now (c->cancellable, c->from_thread);
  return G_SOURCE_REMOVE;
}

static void
canceller_progress_cb (NatkitManager *manager,
                       const char    *message,
                       gpointer       user_data)
{
  Canceller *c = user_data;

  if (c->timer != NULL || strstr (message, c->after) == NULL)
    return;
  c->timer = g_timeout_source_new (c->delay_ms);
  g_source_set_callback (c->timer, canceller_timer_cb, c, NULL);
  g_source_attach (c->timer, g_main_context_get_thread_default ());
}

static void
canceller_clear (Canceller *c)
{
  if (c->timer)
    {
      g_source_destroy (c->timer);
      g_clear_pointer (&c->timer, g_source_unref);
    }
  g_clear_object (&c->cancellable);
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

/* The datagrams waiting on @socket, a silent server that never reads. */
static guint
count_datagrams (GSocket *socket)
{
  char buffer[1500];
  guint n = 0;

  g_socket_set_blocking (socket, FALSE);
  while (g_socket_receive (socket, buffer, sizeof buffer, NULL, NULL) > 0)
    n++;
  return n;
}

static GInetSocketAddress *
loopback (const char *ip,
          guint16     port)
{
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string (ip);

  return G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (address, port));
}

typedef struct
{
  NatkitStunResponse response;
  GError            *error;
  gboolean           done;
} BindingResult;

static void
binding_result_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  BindingResult *r = user_data;

  natkit_stun_client_binding_finish (NATKIT_STUN_CLIENT (source), result,
                                     &r->response, &r->error);
  r->done = TRUE;
}

static void
test_stun_retransmissions (void)
{
  g_autoptr(GSocket) silent = bound_udp (34822);
  g_autoptr(GInetSocketAddress) server = loopback ("127.0.0.1", 34822);
  g_autoptr(NatkitStunClient) client = natkit_stun_client_new (G_SOCKET_FAMILY_IPV4, NULL);
  BindingResult r = { { 0, }, NULL, FALSE };

  /* RFC 8489 section 6.2.1: Rc = 7 requests in all, then give up (an RTO
   * of 1 ms keeps it short). */
  natkit_stun_client_binding_async (client, server, 0, 1, 5000, NULL, binding_result_cb, &r);
  iterate_until (NULL, &r.done, 10000);
  g_assert_true (r.done);
  g_assert_error (r.error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (r.error->message, "after 7 requests"));
  g_assert_cmpuint (count_datagrams (silent), ==, 7);
  g_clear_error (&r.error);
}

static void
test_stun_change_request_refused (void)
{
  g_autoptr(GInetSocketAddress) server = loopback ("127.0.0.8", 34820);
  g_autoptr(NatkitStunClient) client = NULL;
  BindingResult r = { { 0, }, NULL, FALSE };
  gint64 start;

  if (turn_pid == 0)
    {
      g_test_skip ("turnserver (coturn) is not installed");
      return;
    }

  /* A server with one address refuses CHANGE-REQUEST (420 Unknown
   * Attribute) from the address the request went to, not from a changed
   * one: that error is the answer, not a forgery to wait past. */
  spawn_coturn ("127.0.0.8", NULL, 34820, 0);
  client = natkit_stun_client_new (G_SOCKET_FAMILY_IPV4, NULL);
  start = g_get_monotonic_time ();
  natkit_stun_client_binding_async (client, server,
                                    NATKIT_STUN_CHANGE_IP | NATKIT_STUN_CHANGE_PORT,
                                    100, 3000, NULL, binding_result_cb, &r);
  iterate_until (NULL, &r.done, 10000);
  g_assert_true (r.done);
  g_assert_error (r.error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_assert_nonnull (strstr (r.error->message, "STUN error 420"));
  g_assert_cmpint (g_get_monotonic_time () - start, <, 1 * G_USEC_PER_SEC);
  g_clear_error (&r.error);
}

static void
test_stun_cancel_from_thread (void)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  g_autoptr(GSocket) silent = bound_udp (34823);
  g_autoptr(GInetSocketAddress) server = loopback ("127.0.0.1", 34823);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autoptr(NatkitStunClient) client = NULL;
  BindingResult r = { { 0, }, NULL, FALSE };

  /* The transaction runs in a context of its own; another thread cancels
   * it: it ends, in its own context, at once. */
  g_main_context_push_thread_default (context);
  client = natkit_stun_client_new (G_SOCKET_FAMILY_IPV4, NULL);
  natkit_stun_client_binding_async (client, server, 0, 500, 5000, cancellable,
                                    binding_result_cb, &r);
  cancel_now (cancellable, TRUE);
  iterate_until (context, &r.done, 1000);
  g_assert_true (r.done);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpuint (count_datagrams (silent), ==, 1);   /* the first request only */
  g_clear_error (&r.error);
  g_clear_object (&client);
  g_main_context_pop_thread_default (context);
}

static void
test_detect_already_cancelled (void)
{
  g_autoptr(GSocket) silent = bound_udp (34824);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  DetectResult r = { NULL, NULL, FALSE };
  gint64 start = g_get_monotonic_time ();

  /* Cancelled before it starts: cancelled at once, and not a packet sent. */
  g_cancellable_cancel (cancellable);
  detect_start ((const char *[]) { "127.0.0.1:34824", NULL }, 2000, NATKIT_DETECT_NONE,
                cancellable, NULL, NULL, &r);
  iterate_until (NULL, &r.done, 5000);
  g_assert_true (r.done);
  g_assert_null (r.info);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_get_monotonic_time () - start, <, 500 * G_TIME_SPAN_MILLISECOND);
  g_assert_cmpuint (count_datagrams (silent), ==, 0);
  g_clear_error (&r.error);
}

/* A STUN server in the test process that answers Binding requests after
 * delay_ms, and names as our mapped address a socket that reads nothing:
 * the hairpinning probes never come back, so detection waits for them, a
 * few round trips. */
typedef struct
{
  GSocket *socket;
  GSocket *blackhole;
  guint    delay_ms;
} SlowServer;

typedef struct
{
  GSocket        *socket;
  GSocketAddress *to;
  GBytes         *answer;
} Delayed;

static void
delayed_free (gpointer data)
{
  Delayed *delayed = data;

  g_object_unref (delayed->socket);
  g_object_unref (delayed->to);
  g_bytes_unref (delayed->answer);
  g_free (delayed);
}

static gboolean
send_delayed_cb (gpointer user_data)
{
  Delayed *delayed = user_data;
  gsize len;
  const char *answer = g_bytes_get_data (delayed->answer, &len);

  g_socket_send_to (delayed->socket, delayed->to, answer, len, NULL, NULL);
  return G_SOURCE_REMOVE;
}

static gboolean
slow_server_cb (GSocket      *socket,
                GIOCondition  condition,
                gpointer      user_data)
{
  SlowServer *server = user_data;
  g_autoptr(GSocketAddress) from = NULL;
  g_autoptr(GSocketAddress) mapped = g_socket_get_local_address (server->blackhole, NULL);
  guint8 request[1500], answer[1500];
  struct sockaddr_storage native;
  StunAgent agent;
  StunMessage req, msg;
  Delayed *delayed;
  gssize n;
  gsize len;

  n = g_socket_receive_from (socket, &from, (char *) request, sizeof request, NULL, NULL);
  if (n <= 0)
    return G_SOURCE_CONTINUE;

  stun_agent_init (&agent, NULL, STUN_COMPATIBILITY_RFC5389, STUN_AGENT_USAGE_USE_FINGERPRINT |
                   STUN_AGENT_USAGE_IGNORE_CREDENTIALS);
  if (stun_agent_validate (&agent, &req, request, n, NULL, NULL) != STUN_VALIDATION_SUCCESS)
    return G_SOURCE_CONTINUE;
  stun_agent_init_response (&agent, &msg, answer, sizeof answer, &req);
  g_socket_address_to_native (mapped, &native, sizeof native, NULL);
  stun_message_append_xor_addr (&msg, STUN_ATTRIBUTE_XOR_MAPPED_ADDRESS,
                                &native, g_socket_address_get_native_size (mapped));
  len = stun_agent_finish_message (&agent, &msg, NULL, 0);

  delayed = g_new0 (Delayed, 1);
  delayed->socket = g_object_ref (socket);
  delayed->to = g_steal_pointer (&from);
  delayed->answer = g_bytes_new (answer, len);
  g_timeout_add_full (G_PRIORITY_DEFAULT, server->delay_ms, send_delayed_cb,
                      delayed, delayed_free);
  return G_SOURCE_CONTINUE;
}

static void
test_detect_cancel_in_hairpin_wait (void)
{
  SlowServer server = { bound_udp (34826), bound_udp (34827), 300 };
  GSource *source = g_socket_create_source (server.socket, G_IO_IN, NULL);
  Canceller c = { g_cancellable_new (), " answered in ", 100, FALSE, NULL, 0 };
  DetectResult r = { NULL, NULL, FALSE };

  g_source_set_callback (source, (GSourceFunc) (void (*) (void)) slow_server_cb, &server, NULL);
  g_source_attach (source, NULL);

  /* A 300 ms round trip makes the hairpinning wait about 1.3 s; cancelled
   * 100 ms into it, detection ends at once, not when the wait is over. */
  detect_start ((const char *[]) { "127.0.0.1:34826", NULL }, 5000, NATKIT_DETECT_NONE,
                c.cancellable, G_CALLBACK (canceller_progress_cb), &c, &r);
  iterate_until (NULL, &r.done, 10000);
  g_assert_true (r.done);
  g_assert_cmpint (c.cancelled_at, >, 0);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_get_monotonic_time () - c.cancelled_at, <, 300 * G_TIME_SPAN_MILLISECOND);
  g_clear_error (&r.error);

  canceller_clear (&c);
  g_source_destroy (source);
  g_source_unref (source);
  g_object_unref (server.socket);
  g_object_unref (server.blackhole);
}

static void
test_detect_cancel_lifetime_from_thread (void)
{
  g_autoptr(GMainContext) context = g_main_context_new ();
  Canceller c = { NULL, "Measuring how long an idle binding lives", 300, TRUE, NULL, 0 };
  DetectResult r = { NULL, NULL, FALSE };

  if (turn_pid == 0)
    {
      g_test_skip ("turnserver (coturn) is not installed");
      return;
    }

  /* Detection in a context of its own, cancelled from another thread
   * during the binding lifetime probe (which would take many seconds):
   * it ends at once, in its own context. */
  c.cancellable = g_cancellable_new ();
  g_main_context_push_thread_default (context);
  detect_start ((const char *[]) { "127.0.0.1:34780", NULL }, 30000,
                NATKIT_DETECT_BINDING_LIFETIME, c.cancellable,
                G_CALLBACK (canceller_progress_cb), &c, &r);
  iterate_until (context, &r.done, 10000);
  g_assert_true (r.done);
  g_assert_cmpint (c.cancelled_at, >, 0);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (g_get_monotonic_time () - c.cancelled_at, <, 300 * G_TIME_SPAN_MILLISECOND);
  g_clear_error (&r.error);
  canceller_clear (&c);
  g_main_context_pop_thread_default (context);
}

static void
test_detect_ipv4_only (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitNatInfo) info = NULL;

  if (turn_pid == 0)
    {
      g_test_skip ("turnserver (coturn) is not installed");
      return;
    }

  /* "localhost" resolves to ::1 first (GLib), and then 127.0.0.1: the
   * IPv4 socket asks the IPv4 address. */
  info = detect ((const char *[]) { "localhost:34780", NULL }, 3000, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (natkit_nat_info_get_public_address (info), ==, "127.0.0.1");

  /* No IPv4 address at all: said so. */
  g_assert_null (detect ((const char *[]) { "[::1]:34780", NULL }, 1000, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "no IPv4 address"));
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
  g_test_add_func ("/natkit/stun/retransmissions", test_stun_retransmissions);
  g_test_add_func ("/natkit/stun/change-request-refused", test_stun_change_request_refused);
  g_test_add_func ("/natkit/stun/cancel-from-thread", test_stun_cancel_from_thread);
  g_test_add_func ("/natkit/detect/loopback-coturn", test_detect_loopback);
  g_test_add_func ("/natkit/detect/silent-server", test_detect_silent_server);
  g_test_add_func ("/natkit/detect/bad-names", test_detect_bad_names);
  g_test_add_func ("/natkit/detect/circuit-breaker", test_detect_circuit_breaker);
  g_test_add_func ("/natkit/detect/liars", test_detect_liars);
  g_test_add_func ("/natkit/detect/two-servers", test_detect_two_servers);
  g_test_add_func ("/natkit/detect/ipv4-only", test_detect_ipv4_only);
  g_test_add_func ("/natkit/detect/already-cancelled", test_detect_already_cancelled);
  g_test_add_func ("/natkit/detect/cancel-in-hairpin-wait", test_detect_cancel_in_hairpin_wait);
  g_test_add_func ("/natkit/detect/cancel-lifetime-from-thread",
                   test_detect_cancel_lifetime_from_thread);

  turn_pid = spawn_coturn ("127.0.0.1", "127.0.0.2", 34780, 34781);
  ret = g_test_run ();
  stop_coturns ();
  return ret;
}
