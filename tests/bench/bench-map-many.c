/* bench-map-many.c: one NatkitManager holding many port mappings
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Creates COUNT UDP mappings (internal ports BASE .. BASE+COUNT-1) on one
 * gateway through one manager, at most WINDOW requests in flight, keeps
 * them for PERIODS renewal periods (a period is half the granted lifetime),
 * then releases them all.  Prints: time to create them, memory per mapping
 * (VmRSS and malloc's in-use bytes, before and after), renewals seen and
 * how late each came compared with its due time (the previous grant + 5/8
 * of the lifetime granted then: natkit renews at a random point between
 * 1/2 and 5/8, RFC 6887 section 11.2.1), mappings lost, and whether every mapping was
 * released.  A renewal is timed when ::renewed is emitted, i.e. when the
 * gateway's answer arrived: gateway delays count as lateness.  The first
 * grant is timed when map_port_async's callback runs, which can be a few
 * main-loop turns after natkit scheduled the renewal, so the first
 * renewal may look up to ~0.1 s early.  The last line is "RESULT " followed by the same figures as
 * JSON (for tests/bench/bench_map.py).  Asserts nothing.
 *
 * Build against the build tree:
 *   gcc -O2 -Wall -Wextra -o /tmp/bench-map-many tests/bench/bench-map-many.c \
 *     -I framework/include \
 *     $(PKG_CONFIG_PATH=_build/meson-uninstalled pkg-config --cflags --libs natkit-1)
 * Run (on a LAN host whose gateway runs a PCP server; bench_map.py does
 * this inside the NAT lab):
 *   NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH=_build/plugins/natpmp \
 *   XDG_STATE_HOME=$(mktemp -d) LD_LIBRARY_PATH=_build/framework \
 *   /tmp/bench-map-many --gateway 10.0.1.1 --count 1000 --lifetime 10
 */
#include <natkit/natkit.h>

#include <dirent.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#define MAX_ERRORS_SHOWN 5

typedef struct _Bench Bench;

typedef struct
{
  Bench             *bench;
  guint              index;
  NatkitPortMapping *mapping;
  gint64             created_at;   /* monotonic µs */
  gint64             granted_at;   /* last grant: creation or renewal */
  guint32            lifetime;     /* granted then */
  guint32            first_lifetime;
} Slot;

typedef enum { PHASE_CREATE, PHASE_HOLD, PHASE_RELEASE, PHASE_DONE } Phase;

struct _Bench
{
  GMainLoop     *loop;
  NatkitManager *manager;
  Phase          phase;

  /* options */
  int            count;
  char          *gateway;
  int            lifetime;
  int            window;
  double         periods;
  int            timeout_ms;
  int            base_port;
  char          *method;

  Slot          *slots;
  guint          next;            /* next slot to start (create or release) */
  guint          in_flight;
  guint          created;
  guint          failed;
  guint          errors_shown;

  gint64         t0;
  gint64         t_created;       /* all creations answered */
  gint64         t_hold_end;
  gint64         t_released;

  long           rss_start_kb;    /* manager created, no mapping */
  long           rss_base_kb;     /* after the warm-up mapping */
  long           rss_created_kb;  /* after all mappings */
  long           rss_released_kb;
  gsize          heap_start;
  gsize          heap_base;
  gsize          heap_created;
  gsize          heap_released;

  guint          renewals;        /* ::renewed */
  guint          changed;         /* ::changed */
  guint          late_1s;         /* renewals more than 1 s after due */
  guint          after_expiry;    /* renewals after the previous lease ended */
  gint64         max_late_us;
  gint64         min_late_us;
  double         sum_late_us;
  guint          lost;            /* ::lost */
  guint          expected_renewals;
  guint          overdue_at_end;  /* no renewal yet, > 1 s past due */

  guint          released_ok;
  guint          release_failed;
  guint          not_released_state;
  guint          release_done;

  guint          max_fds;
  guint          fd_sampler;
};

/* ---- measurements ------------------------------------------------------ */

static long
rss_kb (void)
{
  FILE *f = fopen ("/proc/self/status", "r");
  char line[256];
  long kb = -1;

  if (f == NULL)
    return -1;
  while (fgets (line, sizeof line, f) != NULL)
    if (sscanf (line, "VmRSS: %ld kB", &kb) == 1)
      break;
  fclose (f);
  return kb;
}

static gsize
heap_in_use (void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2 ();

  return mi.uordblks + mi.hblkhd;
#else
  return 0;
#endif
}

static guint
count_fds (void)
{
  DIR *d = opendir ("/proc/self/fd");
  struct dirent *e;
  guint n = 0;

  if (d == NULL)
    return 0;
  while ((e = readdir (d)) != NULL)
    if (e->d_name[0] != '.')
      n++;
  closedir (d);
  return n > 0 ? n - 1 : 0;   /* the directory's own fd */
}

static gboolean
sample_fds_cb (gpointer user_data)
{
  Bench *b = user_data;
  guint n = count_fds ();

  b->max_fds = MAX (b->max_fds, n);
  return G_SOURCE_CONTINUE;
}

static double
seconds (gint64 us)
{
  return us / (double) G_USEC_PER_SEC;
}

static double
cpu_seconds (void)
{
  struct rusage ru;

  if (getrusage (RUSAGE_SELF, &ru) != 0)
    return -1;
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- signals ------------------------------------------------------------ */

static void
note_grant (Slot *s)
{
  Bench *b = s->bench;
  gint64 now = g_get_monotonic_time ();
  /* natkit renews at a random point between 1/2 and 5/8 of the lifetime
   * (500 ms at least); due = the end of that window */
  gint64 window_end = MAX ((gint64) s->lifetime * G_USEC_PER_SEC * 5 / 8, 500000);
  gint64 due = s->granted_at + window_end;
  gint64 late = now - due;

  if (s->lifetime > 0)
    {
      b->sum_late_us += late;
      if (b->renewals + b->changed == 0 || late > b->max_late_us)
        b->max_late_us = late;
      if (b->renewals + b->changed == 0 || late < b->min_late_us)
        b->min_late_us = late;
      if (late > G_USEC_PER_SEC)
        b->late_1s++;
      if (now > s->granted_at + (gint64) s->lifetime * G_USEC_PER_SEC)
        b->after_expiry++;
    }
  s->granted_at = now;
  s->lifetime = natkit_port_mapping_get_lifetime (s->mapping);
}

static void
renewed_cb (NatkitPortMapping *mapping,
            gpointer           user_data)
{
  Slot *s = user_data;

  (void) mapping;
  note_grant (s);
  s->bench->renewals++;
}

static void
changed_cb (NatkitPortMapping *mapping,
            gpointer           user_data)
{
  Slot *s = user_data;

  (void) mapping;
  note_grant (s);
  s->bench->changed++;
}

static void
lost_cb (NatkitPortMapping *mapping,
         const GError      *error,
         gpointer           user_data)
{
  Slot *s = user_data;
  Bench *b = s->bench;

  b->lost++;
  if (b->errors_shown++ < MAX_ERRORS_SHOWN)
    g_printerr ("bench-map-many: mapping of port %u lost: %s\n",
                natkit_port_mapping_get_internal_port (mapping), error->message);
}

/* ---- release ------------------------------------------------------------ */

static void release_more (Bench *b);
static void finish (Bench *b);

static void
released_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  Slot *s = user_data;
  Bench *b = s->bench;
  g_autoptr(GError) error = NULL;

  b->in_flight--;
  b->release_done++;
  if (natkit_port_mapping_release_finish (NATKIT_PORT_MAPPING (source), result, &error))
    b->released_ok++;
  else
    {
      b->release_failed++;
      if (b->errors_shown++ < MAX_ERRORS_SHOWN)
        g_printerr ("bench-map-many: releasing port %u: %s\n",
                    natkit_port_mapping_get_internal_port (s->mapping), error->message);
    }
  if (natkit_port_mapping_get_state (s->mapping) != NATKIT_PORT_MAPPING_STATE_RELEASED)
    b->not_released_state++;
  release_more (b);
}

static void
release_more (Bench *b)
{
  while (b->in_flight < (guint) b->window && b->next < (guint) b->count)
    {
      Slot *s = &b->slots[b->next++];

      if (s->mapping == NULL)
        continue;
      b->in_flight++;
      natkit_port_mapping_release_async (s->mapping, NULL, released_cb, s);
    }
  if (b->in_flight == 0 && b->next >= (guint) b->count)
    finish (b);
}

static gboolean
hold_over_cb (gpointer user_data)
{
  Bench *b = user_data;
  gint64 now = g_get_monotonic_time ();

  b->t_hold_end = now;
  for (int i = 0; i < b->count; i++)
    {
      Slot *s = &b->slots[i];
      gint64 half;

      if (s->mapping == NULL || s->first_lifetime == 0)
        continue;
      half = MAX ((gint64) s->first_lifetime * G_USEC_PER_SEC / 2, 500000);
      b->expected_renewals += (now - s->created_at) / half;
      if (now > s->granted_at + MAX ((gint64) s->lifetime * G_USEC_PER_SEC * 5 / 8, 500000) +
                G_USEC_PER_SEC)
        b->overdue_at_end++;
    }
  b->phase = PHASE_RELEASE;
  b->next = 0;
  release_more (b);
  return G_SOURCE_REMOVE;
}

/* ---- creation ----------------------------------------------------------- */

static void create_more (Bench *b);

static void
all_created (Bench *b)
{
  guint first_lifetime = 0;
  double hold_s;

  b->t_created = g_get_monotonic_time ();
  b->rss_created_kb = rss_kb ();
  b->heap_created = heap_in_use ();
  for (int i = 0; i < b->count; i++)
    if (b->slots[i].mapping != NULL)
      {
        first_lifetime = b->slots[i].first_lifetime;
        break;
      }
  hold_s = b->periods * MAX (first_lifetime, 1) / 2.0;
  printf ("created %u of %d mappings in %.3f s (%u failed); granted lifetime %u s\n",
          b->created, b->count, seconds (b->t_created - b->t0), b->failed, first_lifetime);
  printf ("holding them for %.1f s (%.1f renewal periods)\n", hold_s, b->periods);
  fflush (stdout);
  b->phase = PHASE_HOLD;
  g_timeout_add ((guint) (hold_s * 1000), hold_over_cb, b);
}

static void
mapped_cb (GObject      *source,
           GAsyncResult *result,
           gpointer      user_data)
{
  Slot *s = user_data;
  Bench *b = s->bench;
  g_autoptr(GError) error = NULL;
  NatkitPortMapping *mapping;

  b->in_flight--;
  mapping = natkit_manager_map_port_finish (NATKIT_MANAGER (source), result, &error);
  if (mapping == NULL)
    {
      b->failed++;
      if (b->errors_shown++ < MAX_ERRORS_SHOWN)
        g_printerr ("bench-map-many: mapping port %d: %s\n", b->base_port + (int) s->index,
                    error->message);
    }
  else
    {
      s->mapping = mapping;
      s->created_at = s->granted_at = g_get_monotonic_time ();
      s->lifetime = s->first_lifetime = natkit_port_mapping_get_lifetime (mapping);
      g_signal_connect (mapping, "renewed", G_CALLBACK (renewed_cb), s);
      g_signal_connect (mapping, "changed", G_CALLBACK (changed_cb), s);
      g_signal_connect (mapping, "lost", G_CALLBACK (lost_cb), s);
      b->created++;
    }

  if (s->index == 0)
    {
      /* the warm-up mapping: plugin, mapper and first-use allocations are done */
      b->rss_base_kb = rss_kb ();
      b->heap_base = heap_in_use ();
    }
  create_more (b);
}

static void
start_one (Bench *b,
           Slot  *s)
{
  const char *methods[] = { b->method, NULL };
  g_autoptr(NatkitPortMappingRequest) request =
    natkit_port_mapping_request_new (NATKIT_IP_PROTOCOL_UDP, (guint16) (b->base_port + s->index));

  natkit_port_mapping_request_set_lifetime (request, (guint32) b->lifetime);
  natkit_port_mapping_request_set_gateway (request, b->gateway);
  natkit_port_mapping_request_set_timeout (request, (guint) b->timeout_ms);
  natkit_port_mapping_request_set_description (request, "natkit bench-map-many");
  b->in_flight++;
  natkit_manager_map_port_async (b->manager, request, methods, NULL, mapped_cb, s);
}

static void
create_more (Bench *b)
{
  /* slot 0 alone first (the warm-up), then a window of requests in flight */
  if (b->next == 0)
    {
      start_one (b, &b->slots[b->next++]);
      return;
    }
  while (b->next < (guint) b->count && b->in_flight < (guint) b->window)
    start_one (b, &b->slots[b->next++]);
  if (b->in_flight == 0 && b->next >= (guint) b->count && b->phase == PHASE_CREATE)
    all_created (b);
}

/* ---- the end ------------------------------------------------------------ */

static void
finish (Bench *b)
{
  guint n = b->created;
  double per_kb_all, per_kb_warm;
  double per_heap_all, per_heap_warm, mean_late;
  guint timed = b->renewals + b->changed;

  if (b->phase == PHASE_DONE)
    return;
  b->phase = PHASE_DONE;
  b->t_released = g_get_monotonic_time ();
  /* count before dropping our references: what the mappings still hold */
  b->rss_released_kb = rss_kb ();
  b->heap_released = heap_in_use ();

  per_kb_all = n ? (double) (b->rss_created_kb - b->rss_start_kb) / n : 0;
  per_kb_warm = n > 1 ? (double) (b->rss_created_kb - b->rss_base_kb) / (n - 1) : 0;
  per_heap_all = n ? (double) ((gssize) b->heap_created - (gssize) b->heap_start) / n / 1024 : 0;
  per_heap_warm = n > 1 ?
                  (double) ((gssize) b->heap_created - (gssize) b->heap_base) / (n - 1) / 1024 : 0;
  mean_late = timed ? b->sum_late_us / timed / 1000.0 : 0;

  printf ("renewals seen: %u (+%u changed), expected about %u; "
          "late by more than 1 s: %u; after the lease ended: %u\n",
          b->renewals, b->changed, b->expected_renewals, b->late_1s, b->after_expiry);
  printf ("renewal lateness vs due time: min %.1f ms, mean %.1f ms, max %.1f ms\n",
          timed ? b->min_late_us / 1000.0 : 0, mean_late, timed ? b->max_late_us / 1000.0 : 0);
  printf ("mappings lost: %u; overdue (no renewal > 1 s after due) at the end: %u\n",
          b->lost, b->overdue_at_end);
  printf ("released %u of %u in %.3f s (%u failed, %u not in state RELEASED)\n",
          b->released_ok, n, seconds (b->t_released - b->t_hold_end), b->release_failed,
          b->not_released_state);
  printf ("VmRSS: %ld kB with the manager, %ld kB after the warm-up mapping, "
          "%ld kB with %u mappings, %ld kB after releasing them\n",
          b->rss_start_kb, b->rss_base_kb, b->rss_created_kb, n, b->rss_released_kb);
  printf ("memory per mapping: %.2f KB VmRSS (%.2f KB after warm-up); "
          "malloc in use %.2f KB (%.2f KB after warm-up)\n",
          per_kb_all, per_kb_warm, per_heap_all, per_heap_warm);
  printf ("max open fds: %u; CPU time: %.2f s\n", b->max_fds, cpu_seconds ());
  printf ("RESULT {\"count\": %d, \"created\": %u, \"failed\": %u, \"create_s\": %.4f, "
          "\"lifetime\": %u, \"hold_s\": %.2f, \"renewals\": %u, \"changed\": %u, "
          "\"expected_renewals\": %u, \"late_1s\": %u, \"after_expiry\": %u, "
          "\"min_late_ms\": %.2f, \"mean_late_ms\": %.2f, \"max_late_ms\": %.2f, "
          "\"lost\": %u, \"overdue_at_end\": %u, \"released\": %u, \"release_failed\": %u, "
          "\"not_released_state\": %u, \"release_s\": %.4f, "
          "\"rss_start_kb\": %ld, \"rss_base_kb\": %ld, \"rss_created_kb\": %ld, "
          "\"rss_released_kb\": %ld, \"kb_per_mapping\": %.3f, \"kb_per_mapping_warm\": %.3f, "
          "\"heap_kb_per_mapping\": %.3f, \"heap_kb_per_mapping_warm\": %.3f, "
          "\"max_fds\": %u, \"cpu_s\": %.3f}\n",
          b->count, n, b->failed, seconds (b->t_created - b->t0),
          n ? b->slots[0].first_lifetime : 0, seconds (b->t_hold_end - b->t_created),
          b->renewals, b->changed, b->expected_renewals, b->late_1s, b->after_expiry,
          timed ? b->min_late_us / 1000.0 : 0, mean_late, timed ? b->max_late_us / 1000.0 : 0,
          b->lost, b->overdue_at_end, b->released_ok, b->release_failed,
          b->not_released_state, seconds (b->t_released - b->t_hold_end),
          b->rss_start_kb, b->rss_base_kb, b->rss_created_kb, b->rss_released_kb,
          per_kb_all, per_kb_warm, per_heap_all, per_heap_warm,
          b->max_fds, cpu_seconds ());
  fflush (stdout);
  g_main_loop_quit (b->loop);
}

int
main (int   argc,
      char *argv[])
{
  Bench b = { 0 };
  g_autoptr(GOptionContext) context = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitConfig) config = NULL;
  GOptionEntry entries[] = {
    { "count", 'n', 0, G_OPTION_ARG_INT, &b.count, "Mappings to hold (default 1000)", "N" },
    { "gateway", 'g', 0, G_OPTION_ARG_STRING, &b.gateway, "Gateway (PCP/NAT-PMP server)", "HOST[:PORT]" },
    { "lifetime", 'l', 0, G_OPTION_ARG_INT, &b.lifetime, "Lifetime to ask for (default 10)", "S" },
    { "window", 'w', 0, G_OPTION_ARG_INT, &b.window, "Requests in flight at most (default 50)", "N" },
    { "periods", 'p', 0, G_OPTION_ARG_DOUBLE, &b.periods, "Renewal periods to hold them (default 2.5)", "P" },
    { "timeout", 't', 0, G_OPTION_ARG_INT, &b.timeout_ms, "Time limit of one request (default 10000)", "MS" },
    { "base-port", 'b', 0, G_OPTION_ARG_INT, &b.base_port, "First internal port (default 20000)", "PORT" },
    { "method", 'm', 0, G_OPTION_ARG_STRING, &b.method, "pcp or natpmp (default pcp)", "NAME" },
    { NULL, 0, 0, 0, NULL, NULL, NULL }
  };

  b.count = 1000;
  b.lifetime = 10;
  b.window = 50;
  b.periods = 2.5;
  b.timeout_ms = 10000;
  b.base_port = 20000;

  context = g_option_context_new ("— one natkit manager holding many port mappings");
  g_option_context_add_main_entries (context, entries, NULL);
  if (!g_option_context_parse (context, &argc, &argv, &error))
    {
      g_printerr ("bench-map-many: %s\n", error->message);
      return 2;
    }
  if (b.gateway == NULL || b.count < 1 || b.count + b.base_port > 65536 ||
      b.lifetime < 1 || b.window < 1 || b.periods < 0 || b.timeout_ms < 1)
    {
      g_printerr ("bench-map-many: needs --gateway, and sane --count, --lifetime, --window, "
                  "--periods, --timeout, --base-port\n");
      return 2;
    }
  if (b.method == NULL)
    b.method = g_strdup ("pcp");

  b.loop = g_main_loop_new (NULL, FALSE);
  config = natkit_config_new ();
  b.manager = natkit_manager_new_with_config (config);
  b.slots = g_new0 (Slot, b.count);
  for (int i = 0; i < b.count; i++)
    {
      b.slots[i].bench = &b;
      b.slots[i].index = (guint) i;
    }
  b.rss_start_kb = rss_kb ();
  b.heap_start = heap_in_use ();
  b.fd_sampler = g_timeout_add (100, sample_fds_cb, &b);

  printf ("mapping %d UDP ports (%d..%d) by %s on %s, lifetime %d s, %d in flight at most\n",
          b.count, b.base_port, b.base_port + b.count - 1, b.method, b.gateway, b.lifetime,
          b.window);
  fflush (stdout);
  b.t0 = g_get_monotonic_time ();
  create_more (&b);
  g_main_loop_run (b.loop);

  g_source_remove (b.fd_sampler);
  for (int i = 0; i < b.count; i++)
    g_clear_object (&b.slots[i].mapping);
  g_free (b.slots);
  g_object_unref (b.manager);
  g_main_loop_unref (b.loop);
  g_free (b.gateway);
  g_free (b.method);
  return b.created == (guint) b.count && b.released_ok == b.created ? 0 : 1;
}
