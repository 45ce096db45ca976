/* bench-session.c: stream throughput of the secure session, in memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * Moves SIZE bytes (64 MiB by default) one way over an in-memory path pair
 * three ways and prints MB/s and ratios:
 *   memcpy    the same bytes copied in 64 KiB chunks (the ceiling)
 *   pseudotcp libnice PseudoTCP alone over the same path pair: the
 *             reliability layer without encryption
 *   session   the natkit secure session's stream: PseudoTCP inside DTLS 1.2
 *             (AES-GCM), through GIO's async stream API
 * Asserts nothing; the machine is shared, compare ratios, not absolutes.
 *
 * Built with the tests, not run by them:
 *   _build/tests/bench/bench-session [SIZE_MIB]
 */
#include "config.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include <nice/pseudotcp.h>

#include "natkit.h"
#include "natkit-session-private.h"
#include "test-memory-path.h"

#define CHUNK (64 * 1024)
#define MTU   1200
#define BUFFER (1024 * 1024)

static double
now_s (void)
{
  return g_get_monotonic_time () / 1e6;
}

/* memcpy */

static double
bench_memcpy (gsize size)
{
  guint8 *src = g_malloc (CHUNK), *dst = g_malloc (size);
  double start = now_s (), elapsed;
  volatile guint8 sink;

  memset (src, 0x5a, CHUNK);
  for (gsize off = 0; off < size; off += CHUNK)
    memcpy (dst + off, src, MIN (CHUNK, size - off));
  elapsed = now_s () - start;
  sink = dst[size - 1];
  (void) sink;
  g_free (src);
  g_free (dst);
  return elapsed;
}

/* raw PseudoTCP over the path pair */

typedef struct
{
  PseudoTcpSocket *tcp;
  NatkitPath      *path;
  GSource         *clock;
  gboolean         opened;
} Raw;

static guint64 raw_sent, raw_received, raw_size;
static guint8 raw_buffer[CHUNK];

static void raw_clock_update (Raw *raw);

static PseudoTcpWriteResult
raw_write_cb (PseudoTcpSocket *tcp, const gchar *buffer, guint32 len, gpointer data)
{
  Raw *raw = data;
  g_autoptr(GBytes) datagram = g_bytes_new (buffer, len);

  natkit_path_send (raw->path, datagram, NULL);
  return WR_SUCCESS;
}

static void
raw_pump (Raw *raw)
{
  while (raw_sent < raw_size)
    {
      gint n = pseudo_tcp_socket_send (raw->tcp, (const char *) raw_buffer,
                                       MIN (CHUNK, raw_size - raw_sent));
      if (n <= 0)
        break;
      raw_sent += n;
    }
  raw_clock_update (raw);
}

static void
raw_opened_cb (PseudoTcpSocket *tcp, gpointer data)
{
  Raw *raw = data;

  raw->opened = TRUE;
}

static void
raw_readable_cb (PseudoTcpSocket *tcp, gpointer data)
{
  gint n;

  while ((n = pseudo_tcp_socket_recv (tcp, (char *) raw_buffer, CHUNK)) > 0)
    raw_received += n;
  raw_clock_update (data);
}

static void
raw_writable_cb (PseudoTcpSocket *tcp, gpointer data)
{
  raw_pump (data);
}

static void
raw_closed_cb (PseudoTcpSocket *tcp, guint32 error, gpointer data)
{
  g_printerr ("bench-session: raw PseudoTCP closed: %s\n", g_strerror (error));
  exit (1);
}

static gboolean
raw_clock_cb (gpointer data)
{
  Raw *raw = data;

  pseudo_tcp_socket_notify_clock (raw->tcp);
  raw_clock_update (raw);
  return G_SOURCE_CONTINUE;
}

static void
raw_clock_update (Raw *raw)
{
  guint64 timeout = 0;
  gint32 delta;

  if (!pseudo_tcp_socket_get_next_clock (raw->tcp, &timeout))
    return;
  delta = (gint32) ((guint32) timeout - (guint32) (g_get_monotonic_time () / 1000));
  g_source_set_ready_time (raw->clock, g_get_monotonic_time () + MAX (delta, 0) * 1000);
}

static gboolean
clock_dispatch (GSource *source, GSourceFunc callback, gpointer data)
{
  g_source_set_ready_time (source, -1);
  return callback (data);
}

static GSourceFuncs clock_funcs = { NULL, NULL, clock_dispatch, NULL, NULL, NULL };

static void
raw_received_cb (NatkitPath *path, GBytes *datagram, gpointer data)
{
  Raw *raw = data;
  gsize len;
  const gchar *bytes = g_bytes_get_data (datagram, &len);

  pseudo_tcp_socket_notify_packet (raw->tcp, bytes, len);
  raw_clock_update (raw);
}

static void
raw_init (Raw *raw, NatkitPath *path, gboolean sender)
{
  PseudoTcpCallbacks callbacks = {
    raw, raw_opened_cb, raw_readable_cb, raw_writable_cb, raw_closed_cb, raw_write_cb,
  };

  raw->path = path;
  raw->tcp = g_object_new (PSEUDO_TCP_SOCKET_TYPE, "conversation", 1,
                           "callbacks", &callbacks, "no-delay", TRUE,
                           "support-fin-ack", TRUE, NULL);
  g_object_set (raw->tcp, sender ? "snd-buf" : "rcv-buf", BUFFER, NULL);
  /* same segment size as the session: the DTLS record less the type byte */
  pseudo_tcp_socket_notify_mtu (raw->tcp, MTU - 37 - 1 + 92);
  raw->clock = g_source_new (&clock_funcs, sizeof (GSource));
  g_source_set_callback (raw->clock, raw_clock_cb, raw, NULL);
  g_source_attach (raw->clock, NULL);
  g_signal_connect (path, "received", G_CALLBACK (raw_received_cb), raw);
}

static double
bench_pseudotcp (gsize size)
{
  TestMemoryPath *pa, *pb;
  Raw a = { 0, }, b = { 0, };
  double start;

  raw_size = size;
  test_memory_path_new_pair ("bench", MTU, &pa, &pb);
  raw_init (&a, NATKIT_PATH (pa), TRUE);
  raw_init (&b, NATKIT_PATH (pb), FALSE);
  pseudo_tcp_socket_connect (a.tcp);
  raw_clock_update (&a);
  while (!a.opened)
    g_main_context_iteration (NULL, TRUE);

  start = now_s ();
  raw_pump (&a);
  while (raw_received < size)
    g_main_context_iteration (NULL, TRUE);

  g_source_destroy (a.clock);
  g_source_destroy (b.clock);
  g_source_unref (a.clock);
  g_source_unref (b.clock);
  g_signal_handlers_disconnect_by_data (pa, &a);
  g_signal_handlers_disconnect_by_data (pb, &b);
  g_object_unref (a.tcp);
  g_object_unref (b.tcp);
  g_object_unref (pa);
  g_object_unref (pb);
  return now_s () - start;
}

/* the session */

typedef struct
{
  GOutputStream *out;
  GInputStream  *in;
  guint8        *wbuf, *rbuf;
  guint64        size, sent, received;
  gboolean       done;
  GRand         *produce;
} Flow;

static void
session_write_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Flow *flow = data;
  gsize written = 0;
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (flow->out, res, &written, &error))
    g_error ("bench-session: write: %s", error->message);
  flow->sent += written;
  /* an application that produces its bytes (as the tests do: random data
   * and a checksum) keeps the loop busy between writes, so what arrives is
   * handled in bursts, and the bursts overflow a small queue */
  if (flow->produce != NULL)
    for (gsize i = 0; i + 4 <= CHUNK; i += 4)
      {
        guint32 v = g_rand_int (flow->produce);
        memcpy (flow->wbuf + i, &v, 4);
      }
  if (flow->sent < flow->size)
    g_output_stream_write_all_async (flow->out, flow->wbuf,
                                     MIN (CHUNK, flow->size - flow->sent),
                                     G_PRIORITY_DEFAULT, NULL, session_write_cb, flow);
}

static void
session_read_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Flow *flow = data;
  GError *error = NULL;
  gssize n = g_input_stream_read_finish (flow->in, res, &error);

  if (n <= 0)
    g_error ("bench-session: read: %s", error ? error->message : "early end");
  flow->received += n;
  if (flow->received >= flow->size)
    {
      flow->done = TRUE;
      return;
    }
  g_input_stream_read_async (flow->in, flow->rbuf, CHUNK, G_PRIORITY_DEFAULT,
                             NULL, session_read_cb, flow);
}

static void
handshake_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  GError *error = NULL;

  if (!_natkit_session_handshake_finish (NATKIT_SESSION (source), res, &error))
    g_error ("bench-session: handshake: %s", error->message);
  (*(int *) data)++;
}

typedef struct
{
  guint    rate;        /* bytes/s, 0: no bottleneck */
  guint    queue;       /* bytes */
  guint    latency_ms;  /* each way */
  gboolean repair;
  guint64  dropped, repaired;
} Link;

static double
bench_session (gsize size,
               Link *link)
{
  NatkitIdentity *ia = natkit_identity_new_ephemeral (NULL);
  NatkitIdentity *ib = natkit_identity_new_ephemeral (NULL);
  TestMemoryPath *pa, *pb;
  NatkitSession *a, *b;
  Flow flow = { 0, }, back = { 0, };
  int established = 0;
  double start, elapsed;

  test_memory_path_new_pair ("bench", MTU, &pa, &pb);
  a = _natkit_session_new (ia, natkit_identity_get_peer_id (ib), NATKIT_ROLE_INITIATOR);
  b = _natkit_session_new (ib, natkit_identity_get_peer_id (ia), NATKIT_ROLE_RESPONDER);
  if (link != NULL)
    {
      _natkit_session_set_loss_repair (a, link->repair);
      _natkit_session_set_loss_repair (b, link->repair);
    }
  _natkit_session_handshake_async (b, NATKIT_PATH (pb), 5000, NULL, handshake_cb, &established);
  _natkit_session_handshake_async (a, NATKIT_PATH (pa), 5000, NULL, handshake_cb, &established);
  while (established < 2)
    g_main_context_iteration (NULL, TRUE);

  flow.out = g_io_stream_get_output_stream (_natkit_session_get_stream (a));
  flow.in = g_io_stream_get_input_stream (_natkit_session_get_stream (b));
  flow.size = size;
  flow.wbuf = g_malloc0 (CHUNK);
  flow.rbuf = g_malloc (CHUNK);
  if (link != NULL)
    {
      /* an echo: the same bytes come back at the same time */
      test_memory_path_set_bottleneck (pa, link->rate, link->queue);
      test_memory_path_set_bottleneck (pb, link->rate, link->queue);
      test_memory_path_set_latency (pa, link->latency_ms);
      test_memory_path_set_latency (pb, link->latency_ms);
      back.out = g_io_stream_get_output_stream (_natkit_session_get_stream (b));
      back.in = g_io_stream_get_input_stream (_natkit_session_get_stream (a));
      back.size = size / 4;
      flow.produce = g_rand_new_with_seed (1);
      back.produce = g_rand_new_with_seed (2);
      back.wbuf = g_malloc0 (CHUNK);
      back.rbuf = g_malloc (CHUNK);
      g_output_stream_write_all_async (back.out, back.wbuf, MIN (CHUNK, size),
                                       G_PRIORITY_DEFAULT, NULL, session_write_cb, &back);
      g_input_stream_read_async (back.in, back.rbuf, CHUNK, G_PRIORITY_DEFAULT,
                                 NULL, session_read_cb, &back);
    }
  else
    back.done = TRUE;

  start = now_s ();
  g_output_stream_write_all_async (flow.out, flow.wbuf, MIN (CHUNK, size),
                                   G_PRIORITY_DEFAULT, NULL, session_write_cb, &flow);
  g_input_stream_read_async (flow.in, flow.rbuf, CHUNK, G_PRIORITY_DEFAULT,
                             NULL, session_read_cb, &flow);
  while (!flow.done || !back.done)
    g_main_context_iteration (NULL, TRUE);
  elapsed = now_s () - start;
  if (link != NULL)
    {
      link->dropped = test_memory_path_get_dropped (pa) + test_memory_path_get_dropped (pb);
      link->repaired = _natkit_session_get_repaired_count (a) +
                       _natkit_session_get_repaired_count (b);
    }

  g_clear_pointer (&flow.produce, g_rand_free);
  g_clear_pointer (&back.produce, g_rand_free);
  g_free (back.wbuf);
  g_free (back.rbuf);
  g_free (flow.wbuf);
  g_free (flow.rbuf);
  g_object_unref (a);
  g_object_unref (b);
  g_object_unref (pa);
  g_object_unref (pb);
  g_object_unref (ia);
  g_object_unref (ib);
  return elapsed;
}

int
main (int    argc,
      char **argv)
{
  gsize mib = argc > 1 ? (gsize) g_ascii_strtoull (argv[1], NULL, 10) : 64;
  gsize size = mib * 1024 * 1024;
  double t_memcpy, t_raw, t_session;
  double mb = size / 1e6;

  setlocale (LC_ALL, "");
  if (mib == 0)
    {
      g_printerr ("usage: %s [SIZE_MIB]\n", argv[0]);
      return 2;
    }

  t_memcpy = bench_memcpy (size);
  t_raw = bench_pseudotcp (size);
  t_session = bench_session (size, NULL);

  g_print ("%" G_GSIZE_FORMAT " MiB one way over an in-memory path (MTU %d), "
           "1 MiB stream buffers\n", mib, MTU);
  g_print ("  memcpy     %10.1f MB/s\n", mb / t_memcpy);
  g_print ("  pseudotcp  %10.1f MB/s  (%.4f× memcpy)\n", mb / t_raw, t_memcpy / t_raw);
  g_print ("  session    %10.1f MB/s  (%.4f× memcpy, %.2f× raw PseudoTCP)\n",
           mb / t_session, t_memcpy / t_session, t_raw / t_session);

  /* A relay's full socket buffer: a 4 MB/s bottleneck behind a tail-drop
   * queue, 10 ms each way, bytes both ways at once. The same transfer with the session's loss
   * repair (SACK + tail loss probes) and with PseudoTCP's recovery alone;
   * at most 16 MiB, the slow case takes a while. */
  {
    gsize lsize = MIN (size, (gsize) 16 * 1024 * 1024);
    double lmb = lsize / 1e6;
    guint queues[] = { 8 * 1024, 16 * 1024, 48 * 1024 };

    g_print ("%" G_GSIZE_FORMAT " MiB one way and a quarter of it back at once, through a 4 MB/s bottleneck, "
             "10 ms each way (ideal %.2f s)\n", lsize / (1024 * 1024), lmb / 4.0);
    for (guint i = 0; i < G_N_ELEMENTS (queues); i++)
      {
        Link with = { 4 * 1000 * 1000, queues[i], 10, TRUE, 0, 0 };
        Link without = { 4 * 1000 * 1000, queues[i], 10, FALSE, 0, 0 };
        double t_with = bench_session (lsize, &with);
        double t_without = bench_session (lsize, &without);

        g_print ("  queue %3u KiB: repair %6.2f s (%5.2f MB/s, %" G_GUINT64_FORMAT
                 " dropped, %" G_GUINT64_FORMAT " resent), PseudoTCP alone %6.2f s "
                 "(%5.2f MB/s, %" G_GUINT64_FORMAT " dropped): %.1f× faster\n",
                 queues[i] / 1024, t_with, lmb / t_with, with.dropped, with.repaired,
                 t_without, lmb / t_without, without.dropped, t_without / t_with);
      }
  }
  return 0;
}
