/* natkit-nat-detector.c: RFC 5780 NAT behavior discovery
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The tests of RFC 5780 section 4, run in parallel and cut short as soon as
 * the answer is known:
 *
 *   t=0      resolve every server; Test I (Binding) to each, from one
 *            socket S1; a TCP connect to the first, to tell "UDP blocked"
 *            from "server unreachable" if no UDP answer comes.
 *   1 RTT    the first valid Test I answer names the primary server P, our
 *            mapped address M1 and P's OTHER-ADDRESS O. At once:
 *              from S1: mapping II → (O.ip, P.port), mapping III → (O.ip, O.port)
 *              from S3: filtering → P with CHANGE-REQUEST ip+port, and port
 *                       only (a fresh socket: S1 has written to O, which
 *                       would open the very filter being probed)
 *              from S2: a Binding request to M1 itself (hairpinning: does
 *                       S1 receive it?)
 *   2 RTT    mapping II equal to M1 → endpoint-independent (III cancelled);
 *            a change-ip+port answer → endpoint-independent filtering.
 *   wait     the filtering and hairpinning tests whose answer is "nothing
 *            comes back" need a wait: a few RTTs measured by Test I, with
 *            retransmissions, never past the overall timeout.
 *
 * Without OTHER-ADDRESS (a server with one address), the mapping is compared
 * across two servers and the filtering tests are reported as skipped.
 */
#include "config.h"

#include "natkit-binding-lifetime-private.h"
#include "natkit-nat-detector-private.h"
#include "natkit-nat-info-private.h"
#include "natkit-stun-client-private.h"

#define DEFAULT_TIMEOUT_MS 5000
#define DEFAULT_LIFETIME_TIMEOUT_MS (300 * 1000)
#define INITIAL_RTO_MS     500    /* RFC 8489 section 6.2.1 */
#define PROBE_COUNT        3

/* A circuit breaker per server, process-wide: a server that failed
 * BREAKER_FAILURES times in a row is left out for BREAKER_COOLDOWN, unless
 * every server is in that state. Main thread only. */
#define BREAKER_FAILURES 3
#define BREAKER_COOLDOWN (60 * G_USEC_PER_SEC)

typedef struct
{
  guint  failures;
  gint64 open_until;
} Breaker;

static GHashTable *breakers;   /* server name → Breaker */

static Breaker *
breaker_get (const char *name)
{
  Breaker *b;

  if (breakers == NULL)
    breakers = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  b = g_hash_table_lookup (breakers, name);
  if (b == NULL)
    {
      b = g_new0 (Breaker, 1);
      g_hash_table_insert (breakers, g_strdup (name), b);
    }
  return b;
}

static gboolean
breaker_is_open (const char *name)
{
  Breaker *b = breaker_get (name);

  return b->failures >= BREAKER_FAILURES && g_get_monotonic_time () < b->open_until;
}

static void
breaker_record (const char *name,
                gboolean    success)
{
  Breaker *b = breaker_get (name);

  if (success)
    b->failures = 0;
  else if (++b->failures >= BREAKER_FAILURES)
    b->open_until = g_get_monotonic_time () + BREAKER_COOLDOWN;
}

typedef enum {
  OP_TEST1,
  OP_MAP2,
  OP_MAP3,
  OP_FILTER_IP_PORT,
  OP_FILTER_PORT,
  OP_RESOLVE,
} OpKind;

typedef struct _Detect Detect;

typedef struct
{
  Detect             *d;
  OpKind              kind;
  guint               server;
  GCancellable       *cancellable;
  gboolean            done;
} Op;

typedef struct
{
  char               *name;
  GInetSocketAddress *address;
  char               *error;
  gboolean            answered;
  NatkitStunResponse  response;
} Server;

struct _Detect
{
  GTask                *task;
  GCancellable         *cancellable;      /* everything we started */
  gulong                cancelled_id;
  NatkitDetectProgress  progress;
  gpointer              progress_data;
  NatkitStunClient     *s1;
  NatkitStunClient     *s2;
  NatkitStunClient     *s3;               /* filtering tests */
  GPtrArray            *servers;          /* Server */
  GPtrArray            *ops;              /* Op, owned */
  guint                 pending;
  gint64                start;
  guint                 timeout_ms;
  GSource              *deadline;
  GSource              *wait;             /* the "nothing came back" window */
  int                   primary;          /* index into servers, or -1 */
  GInetAddress         *local_ip;
  GInetSocketAddress   *map2;
  GInetSocketAddress   *map3;
  gboolean              map2_failed, map3_failed;
  gboolean              filter_ip_port, filter_port;          /* answered */
  gboolean              filter_ip_port_done, filter_port_done;
  gboolean              filter_ip_port_error, filter_port_error;
  gboolean              filtering_started;
  guint8                probe_txids[PROBE_COUNT][16];
  guint                 probes_sent;
  GSource              *probe_timer;
  gulong                probe_handler;
  NatkitHairpinning     hairpinning;
  gboolean              hairpin_started;
  int                   tcp_state;        /* 0 running or not started, 1 ok, -1 failed */
  char                 *tcp_error;
  gboolean              tcp_started;
  GPtrArray            *skipped;          /* char* */
  gboolean              finished;
  NatkitDetectFlags     flags;
  guint                 total_timeout_ms;
  guint                 lifetime_step_ms;
};

static void maybe_finish (Detect *d);

static void
server_free (gpointer data)
{
  Server *s = data;

  g_free (s->name);
  g_clear_object (&s->address);
  g_free (s->error);
  natkit_stun_response_clear (&s->response);
  g_free (s);
}

static void
op_free (gpointer data)
{
  Op *op = data;

  g_clear_object (&op->cancellable);
  g_free (op);
}

static void
destroy_source (GSource **source)
{
  if (*source)
    {
      g_source_destroy (*source);
      g_clear_pointer (source, g_source_unref);
    }
}

static void
detect_free (gpointer data)
{
  Detect *d = data;

  destroy_source (&d->deadline);
  destroy_source (&d->wait);
  destroy_source (&d->probe_timer);
  if (d->probe_handler)
    g_signal_handler_disconnect (d->s1, d->probe_handler);
  g_clear_object (&d->s1);
  g_clear_object (&d->s2);
  g_clear_object (&d->s3);
  g_clear_pointer (&d->servers, g_ptr_array_unref);
  g_clear_pointer (&d->ops, g_ptr_array_unref);
  g_clear_object (&d->local_ip);
  g_clear_object (&d->map2);
  g_clear_object (&d->map3);
  g_free (d->tcp_error);
  g_clear_pointer (&d->skipped, g_ptr_array_unref);
  g_clear_object (&d->cancellable);
  g_free (d);
}

static void
progress (Detect     *d,
          const char *format,
          ...) G_GNUC_PRINTF (2, 3);

static void
progress (Detect     *d,
          const char *format,
          ...)
{
  g_autofree char *message = NULL;
  va_list args;

  va_start (args, format);
  message = g_strdup_vprintf (format, args);
  va_end (args);
  g_debug ("detect: %s", message);
  if (d->progress)
    d->progress (message, d->progress_data);
}

static guint
remaining_ms (Detect *d)
{
  gint64 elapsed = (g_get_monotonic_time () - d->start) / 1000;

  return elapsed >= d->timeout_ms ? 1 : (guint) (d->timeout_ms - elapsed);
}

static gboolean
same_endpoint (GInetSocketAddress *a,
               GInetSocketAddress *b)
{
  return a != NULL && b != NULL &&
         g_inet_socket_address_get_port (a) == g_inet_socket_address_get_port (b) &&
         g_inet_address_equal (g_inet_socket_address_get_address (a),
                               g_inet_socket_address_get_address (b));
}

static char *
endpoint_string (GInetSocketAddress *address)
{
  return g_socket_connectable_to_string (G_SOCKET_CONNECTABLE (address));
}

static Server *
primary (Detect *d)
{
  return d->primary >= 0 ? g_ptr_array_index (d->servers, d->primary) : NULL;
}

static void
cancel_kind (Detect *d,
             OpKind  kind)
{
  for (guint i = 0; i < d->ops->len; i++)
    {
      Op *op = g_ptr_array_index (d->ops, i);
      if (op->kind == kind && !op->done)
        g_cancellable_cancel (op->cancellable);
    }
}

static void
cancel_all (Detect *d)
{
  for (guint i = 0; i < d->ops->len; i++)
    g_cancellable_cancel (((Op *) g_ptr_array_index (d->ops, i))->cancellable);
  g_cancellable_cancel (d->cancellable);
}

static void binding_cb (GObject *source, GAsyncResult *result, gpointer user_data);

/* A new pending operation, with its own cancellable. */
static Op *
op_start (Detect *d,
          OpKind  kind,
          guint   server)
{
  Op *op = g_new0 (Op, 1);

  op->d = d;
  op->kind = kind;
  op->server = server;
  op->cancellable = g_cancellable_new ();
  g_ptr_array_add (d->ops, op);
  d->pending++;
  return op;
}

static void
start_binding (Detect             *d,
               NatkitStunClient   *client,
               OpKind              kind,
               guint               server,
               GInetSocketAddress *target,
               guint32             change,
               guint               rto_ms,
               guint               timeout_ms)
{
  Op *op = op_start (d, kind, server);

  natkit_stun_client_binding_async (client, target, change, rto_ms, timeout_ms,
                                    op->cancellable, binding_cb, op);
}

/* How long to wait for answers that may never come, from the RTT. */
static guint
wait_window_ms (Detect *d)
{
  Server *p = primary (d);
  guint rtt = p ? (guint) (p->response.rtt_us / 1000) : INITIAL_RTO_MS;

  /* Three sends at RTO 2×RTT (at least 50 ms) fit in the window: a loss
   * or two does not turn into a wrong "filtered" verdict. */
  return MIN (remaining_ms (d), CLAMP (4 * rtt + 150, 250, 3000));
}

static guint
short_rto_ms (Detect *d)
{
  Server *p = primary (d);
  guint rtt = p ? (guint) (p->response.rtt_us / 1000) : INITIAL_RTO_MS;

  return CLAMP (2 * rtt, 50, INITIAL_RTO_MS);
}

static gboolean
probe_timer_cb (gpointer user_data)
{
  Detect *d = user_data;
  Server *p = primary (d);

  if (d->probes_sent >= PROBE_COUNT || d->hairpinning != NATKIT_HAIRPINNING_UNKNOWN)
    {
      g_clear_pointer (&d->probe_timer, g_source_unref);
      return G_SOURCE_REMOVE;
    }
  natkit_stun_client_send_probe (d->s2, p->response.mapped, 0,
                                 d->probe_txids[d->probes_sent++]);
  return G_SOURCE_CONTINUE;
}

static void
probe_seen_cb (NatkitStunClient *client,
               gpointer          user_data)
{
  Detect *d = user_data;

  for (guint i = 0; i < d->probes_sent; i++)
    if (natkit_stun_client_saw_probe (d->s1, d->probe_txids[i]))
      {
        if (d->hairpinning == NATKIT_HAIRPINNING_UNKNOWN)
          progress (d, "Hairpinning works: a packet to our own public address came back");
        d->hairpinning = NATKIT_HAIRPINNING_SUPPORTED;
        destroy_source (&d->probe_timer);
        maybe_finish (d);
        return;
      }
}

static gboolean
wait_done_cb (gpointer user_data)
{
  Detect *d = user_data;

  g_clear_pointer (&d->wait, g_source_unref);
  /* What has not answered by now will not: stop waiting. */
  if (d->hairpin_started && d->hairpinning == NATKIT_HAIRPINNING_UNKNOWN)
    d->hairpinning = NATKIT_HAIRPINNING_UNSUPPORTED;
  destroy_source (&d->probe_timer);
  cancel_kind (d, OP_FILTER_IP_PORT);
  cancel_kind (d, OP_FILTER_PORT);
  cancel_kind (d, OP_TEST1);
  maybe_finish (d);
  return G_SOURCE_REMOVE;
}

static void
start_second_phase (Detect *d)
{
  Server *p = primary (d);
  GInetSocketAddress *other = p->response.other;
  g_autoptr(GError) error = NULL;
  guint window = wait_window_ms (d);
  gboolean other_usable = FALSE;

  if (other != NULL)
    {
      other_usable =
        !g_inet_address_equal (g_inet_socket_address_get_address (other),
                               g_inet_socket_address_get_address (p->address)) &&
        g_inet_socket_address_get_port (other) != g_inet_socket_address_get_port (p->address);
      if (!other_usable)
        {
          g_autofree char *text = endpoint_string (other);
          g_ptr_array_add (d->skipped, g_strdup_printf (
            "mapping and filtering: %s gave an OTHER-ADDRESS (%s) that does not "
            "differ in both address and port", p->name, text));
        }
    }

  if (other_usable)
    {
      g_autoptr(GInetSocketAddress) alt_ip = (GInetSocketAddress *)
        g_inet_socket_address_new (g_inet_socket_address_get_address (other),
                                   g_inet_socket_address_get_port (p->address));

      progress (d, "Testing mapping and filtering with %s's second address", p->name);
      /* The other Test I answers are not needed any more. */
      cancel_kind (d, OP_TEST1);
      start_binding (d, d->s1, OP_MAP2, d->primary, alt_ip, 0, short_rto_ms (d), remaining_ms (d));
      start_binding (d, d->s1, OP_MAP3, d->primary, other, 0, short_rto_ms (d), remaining_ms (d));

      /* Filtering runs at the same time from its own socket: S1's mapping
       * tests write to the second address, which would open the filter
       * that the filtering tests probe (RFC 5780 runs them one after the
       * other for that reason). A fresh socket has written only to P. */
      d->s3 = natkit_stun_client_new (g_inet_address_get_family (
                g_inet_socket_address_get_address (p->address)), &error);
      if (d->s3 != NULL)
        {
          d->filtering_started = TRUE;
          start_binding (d, d->s3, OP_FILTER_IP_PORT, d->primary, p->address,
                         NATKIT_STUN_CHANGE_IP | NATKIT_STUN_CHANGE_PORT,
                         short_rto_ms (d), window);
          start_binding (d, d->s3, OP_FILTER_PORT, d->primary, p->address,
                         NATKIT_STUN_CHANGE_PORT, short_rto_ms (d), window);
        }
      else
        {
          g_ptr_array_add (d->skipped, g_strdup_printf ("filtering: %s", error->message));
          g_clear_error (&error);
        }
    }
  else
    {
      if (other == NULL)
        g_ptr_array_add (d->skipped, g_strdup_printf (
          "filtering: %s has no second address (no OTHER-ADDRESS, RFC 5780); "
          "use a server that supports NAT behavior discovery", p->name));
      if (d->servers->len < 2)
        g_ptr_array_add (d->skipped, g_strdup (
          "mapping: needs a server with a second address, or a second server"));
      else
        progress (d, "%s has one address: comparing mappings across servers", p->name);
    }

  /* Hairpinning: send to our own mapped address from another socket. */
  d->s2 = natkit_stun_client_new (g_inet_address_get_family (
            g_inet_socket_address_get_address (p->address)), &error);
  if (d->s2 != NULL)
    {
      d->hairpin_started = TRUE;
      d->probe_handler = g_signal_connect (d->s1, "probe", G_CALLBACK (probe_seen_cb), d);
      probe_timer_cb (d);
      d->probe_timer = g_timeout_source_new (short_rto_ms (d));
      g_source_set_callback (d->probe_timer, probe_timer_cb, d, NULL);
      g_source_attach (d->probe_timer, g_main_context_get_thread_default ());
    }
  else
    g_ptr_array_add (d->skipped, g_strdup_printf ("hairpinning: %s", error->message));

  d->wait = g_timeout_source_new (window);
  g_source_set_callback (d->wait, wait_done_cb, d, NULL);
  g_source_attach (d->wait, g_main_context_get_thread_default ());
}

static void
binding_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Op *op = user_data;
  Detect *d = op->d;
  Server *server = g_ptr_array_index (d->servers, op->server);
  g_auto(NatkitStunResponse) response = { 0, };
  g_autoptr(GError) error = NULL;
  gboolean ok;

  ok = natkit_stun_client_binding_finish (NATKIT_STUN_CLIENT (source), result,
                                          &response, &error);
  op->done = TRUE;
  d->pending--;

  if (d->finished)
    {
      maybe_finish (d);
      return;
    }

  switch (op->kind)
    {
    case OP_TEST1:
      if (!ok)
        {
          if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
            {
              g_free (server->error);
              server->error = g_strdup (error->message);
              breaker_record (server->name, FALSE);
            }
          break;
        }
      breaker_record (server->name, TRUE);
      server->answered = TRUE;
      server->response = response;
      memset (&response, 0, sizeof response);
      if (d->primary < 0)
        {
          g_autofree char *mapped = endpoint_string (server->response.mapped);

          d->primary = op->server;
          progress (d, "%s answered in %" G_GINT64_FORMAT " ms: your public address is %s",
                    server->name, server->response.rtt_us / 1000, mapped);
          start_second_phase (d);
        }
      break;

    case OP_MAP2:
      if (ok)
        {
          d->map2 = g_steal_pointer (&response.mapped);
          if (same_endpoint (d->map2, primary (d)->response.mapped))
            cancel_kind (d, OP_MAP3);   /* endpoint-independent: known */
        }
      else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        d->map2_failed = TRUE;
      break;

    case OP_MAP3:
      if (ok)
        d->map3 = g_steal_pointer (&response.mapped);
      else if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        d->map3_failed = TRUE;
      break;

    case OP_FILTER_IP_PORT:
      d->filter_ip_port_done = TRUE;
      d->filter_ip_port = ok;
      if (!ok && g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_FAILED))
        d->filter_ip_port_error = TRUE;
      if (ok)
        cancel_kind (d, OP_FILTER_PORT);   /* endpoint-independent: known */
      break;

    case OP_FILTER_PORT:
      d->filter_port_done = TRUE;
      d->filter_port = ok;
      if (!ok && g_error_matches (error, NATKIT_ERROR, NATKIT_ERROR_FAILED))
        d->filter_port_error = TRUE;
      break;

    default:
      break;
    }

  maybe_finish (d);
}

static void
set_skipped_and_servers (Detect        *d,
                         NatkitNatInfo *info)
{
  g_autoptr(GStrvBuilder) used = g_strv_builder_new ();
  g_autoptr(GStrvBuilder) skipped = g_strv_builder_new ();

  for (guint i = 0; i < d->servers->len; i++)
    {
      Server *s = g_ptr_array_index (d->servers, i);
      if (s->answered)
        g_strv_builder_add (used, s->name);
    }
  for (guint i = 0; i < d->skipped->len; i++)
    g_strv_builder_add (skipped, g_ptr_array_index (d->skipped, i));

  g_strfreev (info->servers_used);
  info->servers_used = g_strv_builder_end (used);
  g_strfreev (info->tests_skipped);
  info->tests_skipped = g_strv_builder_end (skipped);
}


static void lifetime_cb (GObject *source, GAsyncResult *result, gpointer user_data);

typedef struct
{
  GTask         *task;
  NatkitNatInfo *info;
  Detect        *d;      /* alive as long as task is */
} LifetimeJob;

static void
lifetime_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  LifetimeJob *job = user_data;
  Detect *d = job->d;
  g_autoptr(GError) error = NULL;
  guint at_least = 0, less_than = 0, packets = 0;
  gboolean ok;

  ok = _natkit_probe_binding_lifetime_finish (result, &at_least, &less_than, &packets, &error);
  job->info->packets_sent += packets;
  if (ok)
    {
      job->info->lifetime_at_least_ms = at_least;
      job->info->lifetime_less_than_ms = less_than;
      if (less_than)
        progress (d, "An idle binding lives between %u and %u s", at_least / 1000, less_than / 1000);
      else
        progress (d, "An idle binding lives at least %u s", at_least / 1000);
    }
  else if (g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
    {
      g_task_return_error (job->task, g_steal_pointer (&error));
      goto out;
    }
  else
    g_ptr_array_add (d->skipped, g_strdup_printf ("binding lifetime: %s", error->message));

  set_skipped_and_servers (d, job->info);
  job->info->elapsed_ms = (g_get_monotonic_time () - d->start) / 1000;
  g_task_return_pointer (job->task, g_steal_pointer (&job->info), g_object_unref);

out:
  g_clear_object (&job->info);
  g_object_unref (job->task);
  g_free (job);
}

static void
finish_with_answer (Detect *d)
{
  g_autoptr(NatkitNatInfo) info = _natkit_nat_info_new ();
  Server *p = primary (d);
  GInetSocketAddress *m1 = p->response.mapped;
  GInetAddress *public_ip = g_inet_socket_address_get_address (m1);
  gboolean behind_nat;

  info->public_address = g_inet_address_to_string (public_ip);
  info->public_port = g_inet_socket_address_get_port (m1);
  if (d->local_ip)
    info->local_address = g_inet_address_to_string (d->local_ip);
  behind_nat = d->local_ip == NULL || !g_inet_address_equal (d->local_ip, public_ip);

  /* Mapping (RFC 5780 section 4.3). */
  if (!behind_nat)
    info->mapping = NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT;
  else if (d->map2 != NULL && same_endpoint (d->map2, m1))
    info->mapping = NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT;
  else if (d->map2 != NULL && d->map3 != NULL)
    info->mapping = same_endpoint (d->map2, d->map3) ?
                    NATKIT_NAT_BEHAVIOR_ADDRESS_DEPENDENT :
                    NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT;
  else if (d->map2 == NULL && d->filtering_started)
    g_ptr_array_add (d->skipped, g_strdup ("mapping: no answer from the server's second address"));
  else if (d->map2 != NULL)
    g_ptr_array_add (d->skipped, g_strdup ("mapping: no answer from the server's second address and port"));
  else
    {
      /* Two servers instead of one with two addresses. */
      for (guint i = 0; i < d->servers->len; i++)
        {
          Server *s = g_ptr_array_index (d->servers, i);

          if ((int) i == d->primary || !s->answered ||
              g_inet_address_equal (g_inet_socket_address_get_address (s->address),
                                    g_inet_socket_address_get_address (p->address)))
            continue;
          if (same_endpoint (s->response.mapped, m1))
            info->mapping = NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT;
          else
            g_ptr_array_add (d->skipped, g_strdup (
              "mapping: it changes with the destination, but telling address-"
              "dependent from address-and-port-dependent needs a server with a "
              "second port"));
          if (info->mapping == NATKIT_NAT_BEHAVIOR_UNKNOWN)
            info->nat_type = NATKIT_NAT_TYPE_SYMMETRIC;
          break;
        }
    }

  /* Filtering (RFC 5780 section 4.4). */
  if (d->filtering_started)
    {
      if (d->filter_ip_port)
        info->filtering = NATKIT_NAT_BEHAVIOR_ENDPOINT_INDEPENDENT;
      else if (d->filter_port)
        info->filtering = NATKIT_NAT_BEHAVIOR_ADDRESS_DEPENDENT;
      else if (d->filter_ip_port_error || d->filter_port_error)
        g_ptr_array_add (d->skipped, g_strdup ("filtering: the server refused CHANGE-REQUEST"));
      else
        info->filtering = NATKIT_NAT_BEHAVIOR_ADDRESS_AND_PORT_DEPENDENT;
    }

  info->hairpinning = behind_nat ? d->hairpinning : NATKIT_HAIRPINNING_UNKNOWN;
  if (info->nat_type == NATKIT_NAT_TYPE_UNKNOWN)
    info->nat_type = _natkit_nat_type_classify (behind_nat, info->mapping, info->filtering);

  info->packets_sent = natkit_stun_client_get_packets_sent (d->s1) +
                       (d->s2 ? natkit_stun_client_get_packets_sent (d->s2) : 0) +
                       (d->s3 ? natkit_stun_client_get_packets_sent (d->s3) : 0);

  if (d->flags & NATKIT_DETECT_BINDING_LIFETIME)
    {
      LifetimeJob *job = g_new0 (LifetimeJob, 1);

      progress (d, "Measuring how long an idle binding lives (this takes a while)");
      job->task = g_object_ref (d->task);
      job->info = g_steal_pointer (&info);
      job->d = d;
      gint64 elapsed_ms = (g_get_monotonic_time () - d->start) / 1000;
      guint left = elapsed_ms < d->total_timeout_ms ? d->total_timeout_ms - elapsed_ms : 1;

      _natkit_probe_binding_lifetime_async (p->address, d->lifetime_step_ms,
                                            left, g_task_get_cancellable (d->task),
                                            lifetime_cb, job);
      return;
    }

  set_skipped_and_servers (d, info);
  info->elapsed_ms = (g_get_monotonic_time () - d->start) / 1000;
  g_task_return_pointer (d->task, g_steal_pointer (&info), g_object_unref);
}

static void
finish_without_answer (Detect *d)
{
  GString *reasons = g_string_new (NULL);
  guint resolved = 0;

  for (guint i = 0; i < d->servers->len; i++)
    {
      Server *s = g_ptr_array_index (d->servers, i);

      if (s->address)
        resolved++;
      g_string_append_printf (reasons, "%s%s: %s", reasons->len ? "; " : "",
                              s->name, s->error ? s->error : "no answer");
    }

  if (resolved > 0 && d->tcp_state > 0)
    {
      g_autoptr(NatkitNatInfo) info = _natkit_nat_info_new ();

      info->nat_type = NATKIT_NAT_TYPE_UDP_BLOCKED;
      if (d->local_ip)
        info->local_address = g_inet_address_to_string (d->local_ip);
      g_ptr_array_add (d->skipped, g_strdup ("mapping, filtering, hairpinning: no UDP gets through"));
      set_skipped_and_servers (d, info);
      info->elapsed_ms = (g_get_monotonic_time () - d->start) / 1000;
      info->packets_sent = natkit_stun_client_get_packets_sent (d->s1);
      g_task_return_pointer (d->task, g_steal_pointer (&info), g_object_unref);
    }
  else if (resolved == 0)
    g_task_return_new_error (d->task, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND,
                             "Cannot find the STUN server: %s. Check the name "
                             "and your DNS settings.", reasons->str);
  else
    g_task_return_new_error (d->task, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                             "No STUN server answered within %.1f s (%s), and "
                             "the server is not reachable over TCP either (%s). "
                             "Check the server address and your connection.",
                             d->timeout_ms / 1000.0, reasons->str,
                             d->tcp_error ? d->tcp_error : "no answer");
  g_string_free (reasons, TRUE);
}

static void
cancel_kind_tcp (Detect *d)
{
  /* UDP works: the TCP probe has nothing to tell. */
  g_cancellable_cancel (d->cancellable);
}

static void
maybe_finish (Detect *d)
{
  if (d->finished)
    {
      if (d->pending == 0 && d->task != NULL)
        g_clear_object (&d->task);   /* the last operation is back: free */
      return;
    }

  if (g_cancellable_is_cancelled (g_task_get_cancellable (d->task)))
    {
      /* Cancelled: stop everything and return at once; what still runs
       * comes back cancelled later. */
      cancel_all (d);
      destroy_source (&d->probe_timer);
    }
  else
    {
      /* Waiting for the TCP verdict matters only when UDP got nothing. */
      if (d->primary >= 0 && d->tcp_state == 0)
        cancel_kind_tcp (d);
      if (d->pending > 0 || (d->primary < 0 && d->tcp_started && d->tcp_state == 0))
        return;
      if (d->hairpin_started && d->hairpinning == NATKIT_HAIRPINNING_UNKNOWN)
        return;
    }
  /* Every test has its answer: no need to wait out the window. */
  destroy_source (&d->wait);

  d->finished = TRUE;
  destroy_source (&d->deadline);
  if (d->cancelled_id)
    g_cancellable_disconnect (g_task_get_cancellable (d->task), d->cancelled_id);
  d->cancelled_id = 0;
  g_cancellable_cancel (d->cancellable);

  if (g_task_return_error_if_cancelled (d->task))
    ;
  else if (d->primary >= 0)
    finish_with_answer (d);
  else
    finish_without_answer (d);

  if (d->pending == 0)
    g_clear_object (&d->task);
}

static gboolean
deadline_cb (gpointer user_data)
{
  Detect *d = user_data;

  g_clear_pointer (&d->deadline, g_source_unref);
  progress (d, "Time is up");
  /* Servers that never answered while nobody did count as failures. */
  for (guint i = 0; d->primary < 0 && i < d->servers->len; i++)
    {
      Server *s = g_ptr_array_index (d->servers, i);

      if (s->address != NULL && !s->answered && s->error == NULL)
        {
          s->error = g_strdup ("no answer");
          breaker_record (s->name, FALSE);
        }
    }
  cancel_all (d);
  destroy_source (&d->wait);
  destroy_source (&d->probe_timer);
  if (d->hairpin_started && d->hairpinning == NATKIT_HAIRPINNING_UNKNOWN)
    g_ptr_array_add (d->skipped, g_strdup ("hairpinning: out of time"));
  d->hairpin_started = FALSE;
  if (d->tcp_state == 0)
    d->tcp_state = -1;
  maybe_finish (d);
  return G_SOURCE_REMOVE;
}

static void
tcp_cb (GObject      *source,
        GAsyncResult *result,
        gpointer      user_data)
{
  Detect *d = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketConnection) connection =
    g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);

  d->pending--;
  if (connection != NULL)
    {
      d->tcp_state = 1;
      g_io_stream_close (G_IO_STREAM (connection), NULL, NULL);
    }
  else
    {
      d->tcp_state = -1;
      if (!g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        d->tcp_error = g_strdup (error->message);
    }
  maybe_finish (d);
}

static void
start_test1 (Detect *d,
             guint   index)
{
  Server *s = g_ptr_array_index (d->servers, index);

  if (d->local_ip == NULL)
    {
      /* Which local address routes to the server? connect() on a UDP socket
       * sends nothing. */
      g_autoptr(GSocket) probe = g_socket_new (g_socket_address_get_family (G_SOCKET_ADDRESS (s->address)),
                                               G_SOCKET_TYPE_DATAGRAM, G_SOCKET_PROTOCOL_UDP, NULL);
      if (probe && g_socket_connect (probe, G_SOCKET_ADDRESS (s->address), NULL, NULL))
        {
          g_autoptr(GSocketAddress) local = g_socket_get_local_address (probe, NULL);
          if (local && G_IS_INET_SOCKET_ADDRESS (local))
            d->local_ip = g_object_ref (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (local)));
        }
    }

  progress (d, "Asking %s for our public address", s->name);
  /* Ends a little before the overall deadline, so its own error (which
   * says what was wrong with any answers) is the one reported. */
  start_binding (d, d->s1, OP_TEST1, index, s->address, 0, INITIAL_RTO_MS,
                 MAX (1, (int) remaining_ms (d) - 50));

  if (!d->tcp_started)
    {
      g_autoptr(GSocketClient) client = g_socket_client_new ();

      d->tcp_started = TRUE;
      d->pending++;
      g_socket_client_set_enable_proxy (client, FALSE);
      g_socket_client_set_timeout (client, MAX (1, remaining_ms (d) / 1000));
      g_socket_client_connect_async (client, G_SOCKET_CONNECTABLE (s->address),
                                     d->cancellable, tcp_cb, d);
    }
}

static gboolean
is_ipv4 (GSocketAddress *address)
{
  return G_IS_INET_SOCKET_ADDRESS (address) &&
         g_socket_address_get_family (address) == G_SOCKET_FAMILY_IPV4;
}

static void
resolve_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  Op *op = user_data;
  Detect *d = op->d;
  Server *s = g_ptr_array_index (d->servers, op->server);
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocketAddress) address =
    g_socket_address_enumerator_next_finish (G_SOCKET_ADDRESS_ENUMERATOR (source), result, &error);

  /* The sockets are IPv4: skip other addresses (an IPv6 one may come first). */
  if (address != NULL && !is_ipv4 (address) && !d->finished)
    {
      g_socket_address_enumerator_next_async (G_SOCKET_ADDRESS_ENUMERATOR (source),
                                              op->cancellable, resolve_cb, op);
      return;
    }

  op->done = TRUE;
  d->pending--;
  if (!d->finished)
    {
      if (address != NULL)
        {
          s->address = (GInetSocketAddress *) g_steal_pointer (&address);
          start_test1 (d, op->server);
        }
      else if (error && !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_CANCELLED))
        s->error = g_strdup_printf ("cannot resolve it: %s", error->message);
      else if (!error)
        s->error = g_strdup ("it has no IPv4 address (detection runs over IPv4)");
    }
  maybe_finish (d);
}

static void start_server (Detect *d, const char *name);

static gboolean
user_cancelled_idle_cb (gpointer user_data)
{
  GTask *task = user_data;
  Detect *d = g_task_get_task_data (task);

  if (!d->finished)
    maybe_finish (d);   /* cancelled: stops everything and returns */
  return G_SOURCE_REMOVE;
}

static void
user_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  GTask *task = user_data;
  GSource *idle = g_idle_source_new ();

  /* Runs in the cancelling thread, maybe not ours: carry on in the task's
   * context, where everything else runs. */
  g_source_set_callback (idle, user_cancelled_idle_cb, g_object_ref (task), g_object_unref);
  g_source_attach (idle, g_task_get_context (task));
  g_source_unref (idle);
}

void
_natkit_detect_nat_async (const char * const   *servers,
                          guint                 timeout_ms,
                          NatkitDetectFlags     flags,
                          guint                 lifetime_step_ms,
                          NatkitDetectProgress  progress_func,
                          gpointer              progress_data,
                          GCancellable         *cancellable,
                          GAsyncReadyCallback   callback,
                          gpointer              user_data)
{
  g_autoptr(GError) error = NULL;
  GTask *task = g_task_new (NULL, cancellable, callback, user_data);
  Detect *d = g_new0 (Detect, 1);

  g_task_set_source_tag (task, _natkit_detect_nat_async);
  g_task_set_name (task, "[natkit] detect NAT");

  d->task = task;
  d->cancellable = g_cancellable_new ();
  d->progress = progress_func;
  d->progress_data = progress_data;
  d->servers = g_ptr_array_new_with_free_func (server_free);
  d->ops = g_ptr_array_new_with_free_func (op_free);
  d->skipped = g_ptr_array_new_with_free_func (g_free);
  d->primary = -1;
  d->start = g_get_monotonic_time ();
  d->flags = flags;
  d->lifetime_step_ms = lifetime_step_ms;
  d->total_timeout_ms = timeout_ms ? timeout_ms :
                        (flags & NATKIT_DETECT_BINDING_LIFETIME) ? DEFAULT_LIFETIME_TIMEOUT_MS :
                        DEFAULT_TIMEOUT_MS;
  /* The RFC 5780 tests keep their own budget; the lifetime probe gets the
   * rest. */
  d->timeout_ms = MIN (d->total_timeout_ms, DEFAULT_TIMEOUT_MS);
  if (!(flags & NATKIT_DETECT_BINDING_LIFETIME))
    d->timeout_ms = d->total_timeout_ms;
  g_task_set_task_data (task, d, detect_free);

  /* Already cancelled: not a packet. */
  if (g_task_return_error_if_cancelled (task))
    {
      g_object_unref (task);
      return;
    }

  if (servers == NULL || servers[0] == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "No STUN server to ask: give one with --stun "
                               "HOST[:PORT], or add \"stun\" servers to the "
                               "configuration");
      g_object_unref (task);
      return;
    }

  d->s1 = natkit_stun_client_new (G_SOCKET_FAMILY_IPV4, &error);
  if (d->s1 == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                               "Cannot open a UDP socket: %s", error->message);
      g_object_unref (task);
      return;
    }

  if (cancellable)
    d->cancelled_id = g_cancellable_connect (cancellable, G_CALLBACK (user_cancelled_cb), task, NULL);

  d->deadline = g_timeout_source_new (d->timeout_ms);
  g_source_set_callback (d->deadline, deadline_cb, d, NULL);
  g_source_attach (d->deadline, g_main_context_get_thread_default ());

  {
    gboolean all_open = TRUE;

    for (guint i = 0; servers[i]; i++)
      all_open = all_open && breaker_is_open (servers[i]);
    for (guint i = 0; servers[i]; i++)
      {
        if (!all_open && breaker_is_open (servers[i]))
          {
            g_ptr_array_add (d->skipped, g_strdup_printf (
              "server %s: not asked, it failed %d times in a row; natkit tries "
              "it again in a minute", servers[i], BREAKER_FAILURES));
            continue;
          }
        start_server (d, servers[i]);
      }
  }

  maybe_finish (d);
}

static void
start_server (Detect     *d,
              const char *name)
{
  Server *s = g_new0 (Server, 1);
  guint index = d->servers->len;
  g_autoptr(GSocketConnectable) connectable = NULL;
  g_autoptr(GSocketAddressEnumerator) enumerator = NULL;
  g_autoptr(GError) error = NULL;
  Op *op;

  s->name = g_strdup (name);
  g_ptr_array_add (d->servers, s);
  connectable = g_network_address_parse (name, 3478, &error);
  if (connectable == NULL)
    {
      s->error = g_strdup_printf ("not a server address: %s", error->message);
      return;
    }

  enumerator = g_socket_connectable_enumerate (connectable);
  op = op_start (d, OP_RESOLVE, index);
  g_socket_address_enumerator_next_async (enumerator, op->cancellable, resolve_cb, op);
}

NatkitNatInfo *
_natkit_detect_nat_finish (GAsyncResult  *result,
                           GError       **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}
