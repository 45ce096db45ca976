/* test-session.c: the secure session (DTLS, identity pinning, stream) in memory
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "natkit.h"
#include "natkit-session-private.h"
#include "test-memory-path.h"

#include <nice/pseudotcp.h>

#define MIB (1024 * 1024)

typedef struct
{
  NatkitIdentity *id_a;
  NatkitIdentity *id_b;
  TestMemoryPath *pa;
  TestMemoryPath *pb;
  NatkitSession  *a;   /* initiator */
  NatkitSession  *b;   /* responder */
} Fixture;

static void
fixture_setup (Fixture       *f,
               gconstpointer  data)
{
  f->id_a = natkit_identity_new_ephemeral (NULL);
  f->id_b = natkit_identity_new_ephemeral (NULL);
  g_assert_nonnull (f->id_a);
  g_assert_nonnull (f->id_b);
  test_memory_path_new_pair ("memory", 1200, &f->pa, &f->pb);
  f->a = _natkit_session_new (f->id_a, natkit_identity_get_peer_id (f->id_b),
                              NATKIT_ROLE_INITIATOR);
  f->b = _natkit_session_new (f->id_b, natkit_identity_get_peer_id (f->id_a),
                              NATKIT_ROLE_RESPONDER);
}

static void
fixture_teardown (Fixture       *f,
                  gconstpointer  data)
{
  g_clear_object (&f->a);
  g_clear_object (&f->b);
  g_clear_object (&f->pa);
  g_clear_object (&f->pb);
  g_clear_object (&f->id_a);
  g_clear_object (&f->id_b);
  /* let sources that were destroyed go */
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* Iterates until *flag or the time limit, which fails the test. */
static void
run_until (const gboolean *flag,
           guint           seconds)
{
  gint64 deadline = g_get_monotonic_time () + (gint64) seconds * G_USEC_PER_SEC;

  while (!*flag)
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("test timed out after %u s", seconds);
      if (!g_main_context_iteration (NULL, FALSE))
        g_usleep (500);
    }
}

static void
run_for (guint ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) ms * 1000;

  while (g_get_monotonic_time () < end)
    if (!g_main_context_iteration (NULL, FALSE))
      g_usleep (1000);
}

typedef struct
{
  gboolean done;
  gboolean ok;
  GError  *error;
} Result;

static void
handshake_cb (GObject      *source,
              GAsyncResult *res,
              gpointer      user_data)
{
  Result *r = user_data;

  r->ok = _natkit_session_handshake_finish (NATKIT_SESSION (source), res, &r->error);
  r->done = TRUE;
}

static void
handshake_both (Fixture *f,
                guint    timeout_ms,
                Result  *ra,
                Result  *rb)
{
  _natkit_session_handshake_async (f->b, NATKIT_PATH (f->pb), timeout_ms, NULL,
                                   handshake_cb, rb);
  _natkit_session_handshake_async (f->a, NATKIT_PATH (f->pa), timeout_ms, NULL,
                                   handshake_cb, ra);
  run_until (&ra->done, timeout_ms / 1000 + 30);
  run_until (&rb->done, timeout_ms / 1000 + 30);
}

static void
establish (Fixture *f)
{
  Result ra = { 0, }, rb = { 0, };

  handshake_both (f, 10000, &ra, &rb);
  g_assert_no_error (ra.error);
  g_assert_no_error (rb.error);
  g_assert_true (ra.ok && rb.ok);
}

/* Handshake */

static void
test_handshake (Fixture       *f,
                gconstpointer  data)
{
  g_test_summary ("The initiator (DTLS client) and responder (server) "
                  "authenticate each other and agree on a datagram size");

  g_assert_false (_natkit_session_is_established (f->a));
  g_assert_cmpuint (_natkit_session_get_max_datagram (f->a), ==, 0);
  establish (f);

  g_assert_true (_natkit_session_is_established (f->a));
  g_assert_true (_natkit_session_is_established (f->b));
  g_assert_cmpstr (_natkit_session_get_peer_id (f->a), ==,
                   natkit_identity_get_peer_id (f->id_b));
  g_assert_true (_natkit_session_get_path (f->a) == NATKIT_PATH (f->pa));
  /* 1200 bytes minus at most 37 of DTLS, minus the type byte */
  g_assert_cmpuint (_natkit_session_get_max_datagram (f->a), >=, 1200 - 38);
  g_assert_cmpuint (_natkit_session_get_max_datagram (f->a), <, 1200);
  g_assert_cmpuint (_natkit_session_get_max_datagram (f->a), ==,
                    _natkit_session_get_max_datagram (f->b));
}

static void
test_handshake_identity_mismatch (Fixture       *f,
                                  gconstpointer  data)
{
  gboolean initiator_wrong = GPOINTER_TO_INT (data);
  g_autoptr(NatkitIdentity) mallory = natkit_identity_new_ephemeral (NULL);
  Result ra = { 0, }, rb = { 0, };
  GError *detector, *other;

  g_test_summary ("A peer whose key does not hash to the expected peer ID "
                  "is refused, and both sides fail with NATKIT_ERROR_IDENTITY");

  /* the side that is wrong expects someone else (mallory) */
  if (initiator_wrong)
    {
      g_clear_object (&f->a);
      f->a = _natkit_session_new (f->id_a, natkit_identity_get_peer_id (mallory),
                                  NATKIT_ROLE_INITIATOR);
    }
  else
    {
      g_clear_object (&f->b);
      f->b = _natkit_session_new (f->id_b, natkit_identity_get_peer_id (mallory),
                                  NATKIT_ROLE_RESPONDER);
    }

  handshake_both (f, 5000, &ra, &rb);
  g_assert_false (ra.ok);
  g_assert_false (rb.ok);
  g_assert_error (ra.error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
  g_assert_error (rb.error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);

  detector = initiator_wrong ? ra.error : rb.error;
  other = initiator_wrong ? rb.error : ra.error;
  g_test_message ("detecting side: %s", detector->message);
  g_test_message ("other side: %s", other->message);
  g_assert_nonnull (strstr (detector->message, "impersonating"));
  g_assert_nonnull (strstr (detector->message,
                            natkit_identity_get_peer_id (mallory)));
  g_assert_nonnull (strstr (detector->message,
                            natkit_identity_get_peer_id (initiator_wrong ? f->id_b : f->id_a)));
  g_assert_nonnull (strstr (other->message, "refused our identity"));
  g_assert_false (_natkit_session_is_established (f->a));
  g_assert_false (_natkit_session_is_established (f->b));
  g_clear_error (&ra.error);
  g_clear_error (&rb.error);
}

static void
test_handshake_loss (Fixture       *f,
                     gconstpointer  data)
{
  g_test_summary ("The handshake completes when 20% of the datagrams are "
                  "lost and some are duplicated or reordered");

  for (guint32 seed = 1; seed <= 6; seed++)
    {
      Result ra = { 0, }, rb = { 0, };
      gint64 start = g_get_monotonic_time ();

      if (seed > 1)
        {
          fixture_teardown (f, data);
          fixture_setup (f, data);
        }
      test_memory_path_set_seed (f->pa, seed * 7);
      test_memory_path_set_seed (f->pb, seed * 13);
      test_memory_path_set_loss (f->pa, 0.2);
      test_memory_path_set_loss (f->pb, 0.2);
      test_memory_path_set_duplicate (f->pa, 0.05);
      test_memory_path_set_reorder (f->pb, 0.1);
      test_memory_path_set_latency (f->pa, 5);
      test_memory_path_set_latency (f->pb, 5);
      /* a known RTT lets DTLS retransmit after 100 ms rather than 1 s */
      natkit_path_set_rtt (NATKIT_PATH (f->pa), 10000);
      natkit_path_set_rtt (NATKIT_PATH (f->pb), 10000);

      handshake_both (f, 30000, &ra, &rb);
      g_assert_no_error (ra.error);
      g_assert_no_error (rb.error);
      g_test_message ("seed %u: handshake in %.2f s, %" G_GUINT64_FORMAT
                      " + %" G_GUINT64_FORMAT " datagrams lost", seed,
                      (g_get_monotonic_time () - start) / 1e6,
                      test_memory_path_get_dropped (f->pa),
                      test_memory_path_get_dropped (f->pb));
    }
}

static void
test_handshake_timeout (Fixture       *f,
                        gconstpointer  data)
{
  Result ra = { 0, };

  g_test_summary ("A handshake with a silent peer fails with "
                  "NATKIT_ERROR_TIMED_OUT at the deadline, saying so");

  _natkit_session_handshake_async (f->a, NATKIT_PATH (f->pa), 700, NULL,
                                   handshake_cb, &ra);
  run_until (&ra.done, 10);
  g_assert_error (ra.error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
  g_test_message ("%s", ra.error->message);
  g_assert_nonnull (strstr (ra.error->message, "within 0.7 s over memory"));
  g_assert_nonnull (strstr (ra.error->message, "nothing came back"));
  g_assert_false (_natkit_session_is_established (f->a));
  g_clear_error (&ra.error);
}

static void
test_handshake_cancel (Fixture       *f,
                       gconstpointer  data)
{
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  NatkitSession *weak = f->a;
  Result ra = { 0, };

  g_test_summary ("Cancelling a handshake returns G_IO_ERROR_CANCELLED and "
                  "frees everything");

  g_object_add_weak_pointer (G_OBJECT (f->a), (gpointer *) &weak);
  _natkit_session_handshake_async (f->a, NATKIT_PATH (f->pa), 10000, cancellable,
                                   handshake_cb, &ra);
  run_for (50);
  g_assert_false (ra.done);
  g_cancellable_cancel (cancellable);
  run_until (&ra.done, 5);
  g_assert_error (ra.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&ra.error);

  g_clear_object (&f->a);
  g_assert_null (weak);
}

/* Datagrams, pings */

static void
collect_cb (NatkitSession *session,
            GBytes        *datagram,
            gpointer       user_data)
{
  g_ptr_array_add (user_data, g_bytes_ref (datagram));
}

static GBytes *
make_datagram (gsize  size,
               guint8 seed)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (seed + i * 7);
  return g_bytes_new_take (data, size);
}

static void
test_datagrams (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GPtrArray) at_a = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GPtrArray) at_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) too_large = NULL;
  g_autoptr(GBytes) largest = NULL;
  gsize max;
  const guint n = 50;

  g_test_summary ("Datagrams go both ways; one larger than the maximum "
                  "fails with NATKIT_ERROR_MESSAGE_TOO_LARGE");

  establish (f);
  g_signal_connect (f->a, "datagram-received", G_CALLBACK (collect_cb), at_a);
  g_signal_connect (f->b, "datagram-received", G_CALLBACK (collect_cb), at_b);

  max = _natkit_session_get_max_datagram (f->a);
  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GBytes) to_b = make_datagram (i * (max / n), i);
      g_autoptr(GBytes) to_a = make_datagram (max - i, 100 + i);

      g_assert_true (_natkit_session_send_datagram (f->a, to_b, &error));
      g_assert_no_error (error);
      g_assert_true (_natkit_session_send_datagram (f->b, to_a, &error));
      g_assert_no_error (error);
    }
  while (at_a->len < n || at_b->len < n)
    g_main_context_iteration (NULL, TRUE);

  for (guint i = 0; i < n; i++)
    {
      g_autoptr(GBytes) to_b = make_datagram (i * (max / n), i);
      g_autoptr(GBytes) to_a = make_datagram (max - i, 100 + i);

      g_assert_true (g_bytes_equal (g_ptr_array_index (at_b, i), to_b));
      g_assert_true (g_bytes_equal (g_ptr_array_index (at_a, i), to_a));
    }

  largest = make_datagram (max, 1);
  g_assert_true (_natkit_session_send_datagram (f->a, largest, &error));
  g_assert_no_error (error);

  too_large = make_datagram (max + 1, 1);
  g_assert_false (_natkit_session_send_datagram (f->a, too_large, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
  g_test_message ("%s", error->message);
  g_clear_error (&error);

  while (at_b->len < n + 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_bytes_equal (g_ptr_array_index (at_b, n), largest));
}

static void
pong_cb (NatkitSession *session,
         gint64         rtt_us,
         gpointer       user_data)
{
  *(gint64 *) user_data = rtt_us;
}

static void
test_ping (Fixture       *f,
           gconstpointer  data)
{
  gint64 rtt = -1;

  g_test_summary ("A ping's pong reports the round-trip time and sets the "
                  "path's RTT");

  establish (f);
  test_memory_path_set_latency (f->pa, 15);
  test_memory_path_set_latency (f->pb, 15);
  g_signal_connect (f->a, "pong", G_CALLBACK (pong_cb), &rtt);

  _natkit_session_ping (f->a);
  while (rtt < 0)
    g_main_context_iteration (NULL, TRUE);
  g_test_message ("rtt %" G_GINT64_FORMAT " µs", rtt);
  g_assert_cmpint (rtt, >=, 30000);
  g_assert_cmpint (rtt, <, 5 * G_USEC_PER_SEC);
  g_assert_cmpint (natkit_path_get_rtt (NATKIT_PATH (f->pa)), ==, rtt);
  g_signal_handlers_disconnect_by_data (f->a, &rtt);
}

/* What the connection's probes trust while a ping is unanswered: records
 * that authenticate over the path, not whatever arrives on its port. */
static void
test_records_on_path (Fixture       *f,
                      gconstpointer  data)
{
  g_autoptr(GPtrArray) at_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GRand) rand = g_rand_new_with_seed (7);
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
  g_autoptr(GError) error = NULL;
  guint64 before;

  g_test_summary ("Junk sent to a session's path does not count as the peer "
                  "answering there; its authenticated records do");

  establish (f);
  g_signal_connect (f->b, "datagram-received", G_CALLBACK (collect_cb), at_b);
  run_for (50);
  before = _natkit_session_get_records_on_path (f->b);

  for (guint i = 0; i < 200; i++)
    {
      guint8 junk[100];
      g_autoptr(GBytes) datagram = NULL;

      for (gsize j = 0; j < sizeof junk; j++)
        junk[j] = g_rand_int_range (rand, 0, 256);
      /* an application-data record of epoch 1, by its header */
      junk[0] = 23;
      junk[1] = 0xfe;
      junk[2] = 0xfd;
      junk[3] = 0;
      junk[4] = 1;
      junk[11] = 0;
      junk[12] = sizeof junk - 13;
      datagram = g_bytes_new (junk, sizeof junk);
      test_memory_path_inject (f->pb, datagram);
    }
  run_for (50);
  g_assert_cmpuint (_natkit_session_get_records_on_path (f->b), ==, before);
  g_assert_true (natkit_path_get_bytes_received (NATKIT_PATH (f->pb)) > 0);

  g_assert_true (_natkit_session_send_datagram (f->a, hello, &error));
  g_assert_no_error (error);
  while (at_b->len < 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (_natkit_session_get_records_on_path (f->b), ==, before + 1);
}

static void
test_unknown_and_garbage (Fixture       *f,
                          gconstpointer  data)
{
  g_autoptr(GPtrArray) at_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(GRand) rand = g_rand_new_with_seed (42);
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
  guint8 ping_short[3] = { 1, 2, 3 };

  g_test_summary ("Unknown inner messages, malformed ones and datagrams "
                  "that are not DTLS records of this session are dropped, "
                  "and the session goes on");

  establish (f);
  g_signal_connect (f->b, "datagram-received", G_CALLBACK (collect_cb), at_b);

  g_assert_true (_natkit_session_send_inner (f->a, 200, (const guint8 *) "x", 1, &error));
  g_assert_true (_natkit_session_send_inner (f->a, NATKIT_SESSION_MSG_PING,
                                             ping_short, sizeof ping_short, &error));
  g_assert_no_error (error);

  /* an empty datagram once made GnuTLS see the end of the transport */
  {
    g_autoptr(GBytes) empty = g_bytes_new_static ("", 0);

    test_memory_path_inject (f->pb, empty);
  }

  for (guint i = 0; i < 2000; i++)
    {
      gsize len = g_rand_int_range (rand, 0, 1300);
      guint8 *junk = g_malloc (len + 13);
      g_autoptr(GBytes) datagram = NULL;

      for (gsize j = 0; j < len + 13; j++)
        junk[j] = g_rand_int_range (rand, 0, 256);
      if (i % 2 == 0)
        {
          /* looks like an application-data record of epoch 1 */
          junk[0] = 23;
          junk[1] = 0xfe;
          junk[2] = 0xfd;
          junk[3] = 0;
          junk[4] = 1;
          junk[11] = len >> 8;
          junk[12] = len & 0xff;
        }
      datagram = g_bytes_new_take (junk, len + 13);
      test_memory_path_inject (f->pb, datagram);
      if (i % 100 == 0)
        g_main_context_iteration (NULL, FALSE);
    }
  run_for (50);

  g_assert_true (_natkit_session_is_established (f->b));
  g_assert_cmpuint (_natkit_session_get_ignored_count (f->b), >=, 2);
  g_test_message ("ignored %u", _natkit_session_get_ignored_count (f->b));

  g_assert_true (_natkit_session_send_datagram (f->a, hello, &error));
  g_assert_no_error (error);
  while (at_b->len < 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_bytes_equal (g_ptr_array_index (at_b, 0), hello));
}

/* Streams */

typedef struct
{
  const char    *name;
  GOutputStream *out;
  GInputStream  *in;
  guint64        to_send;
  guint64        sent;
  guint64        received;
  GChecksum     *sent_sum;
  GChecksum     *received_sum;
  GRand         *rand;
  guint8        *wbuf;
  guint8        *rbuf;
  gboolean       write_done;
  gboolean       read_done;
  GError        *error;
  void         (*on_progress) (gpointer data, guint64 received);
  gpointer       progress_data;
} Transfer;

#define CHUNK (64 * 1024)

static void write_next (Transfer *t);

static void
close_output_cb (GObject      *source,
                 GAsyncResult *res,
                 gpointer      user_data)
{
  Transfer *t = user_data;

  g_output_stream_close_finish (G_OUTPUT_STREAM (source), res, &t->error);
  t->write_done = TRUE;
}

static void
write_cb (GObject      *source,
          GAsyncResult *res,
          gpointer      user_data)
{
  Transfer *t = user_data;
  gsize written = 0;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), res,
                                         &written, &t->error))
    {
      t->write_done = TRUE;
      return;
    }
  t->sent += written;
  write_next (t);
}

static void
write_next (Transfer *t)
{
  gsize n = MIN (CHUNK, t->to_send - t->sent);

  if (n == 0)
    {
      g_output_stream_close_async (t->out, G_PRIORITY_DEFAULT, NULL,
                                   close_output_cb, t);
      return;
    }

  for (gsize i = 0; i + 4 <= n; i += 4)
    {
      guint32 v = g_rand_int (t->rand);
      memcpy (t->wbuf + i, &v, 4);
    }
  g_checksum_update (t->sent_sum, t->wbuf, n);
  g_output_stream_write_all_async (t->out, t->wbuf, n, G_PRIORITY_DEFAULT,
                                   NULL, write_cb, t);
}

static void
read_cb (GObject      *source,
         GAsyncResult *res,
         gpointer      user_data)
{
  Transfer *t = user_data;
  gssize n = g_input_stream_read_finish (G_INPUT_STREAM (source), res, &t->error);

  if (n <= 0)
    {
      t->read_done = TRUE;
      return;
    }
  g_checksum_update (t->received_sum, t->rbuf, n);
  t->received += n;
  if (t->on_progress != NULL)
    t->on_progress (t->progress_data, t->received);
  g_input_stream_read_async (t->in, t->rbuf, CHUNK, G_PRIORITY_DEFAULT, NULL,
                             read_cb, t);
}

/* Bytes from @from's stream to @to's. */
static void
transfer_start (Transfer      *t,
                const char    *name,
                NatkitSession *from,
                NatkitSession *to,
                guint64        size,
                guint32        seed)
{
  memset (t, 0, sizeof *t);
  t->name = name;
  t->out = g_io_stream_get_output_stream (_natkit_session_get_stream (from));
  t->in = g_io_stream_get_input_stream (_natkit_session_get_stream (to));
  t->to_send = size;
  t->sent_sum = g_checksum_new (G_CHECKSUM_SHA256);
  t->received_sum = g_checksum_new (G_CHECKSUM_SHA256);
  t->rand = g_rand_new_with_seed (seed);
  t->wbuf = g_malloc (CHUNK);
  t->rbuf = g_malloc (CHUNK);
  write_next (t);
  g_input_stream_read_async (t->in, t->rbuf, CHUNK, G_PRIORITY_DEFAULT, NULL,
                             read_cb, t);
}

static void
transfer_check (Transfer *t)
{
  g_assert_no_error (t->error);
  g_assert_true (t->write_done && t->read_done);
  g_assert_cmpuint (t->sent, ==, t->to_send);
  g_assert_cmpuint (t->received, ==, t->to_send);
  g_assert_cmpstr (g_checksum_get_string (t->sent_sum), ==,
                   g_checksum_get_string (t->received_sum));
  g_test_message ("%s: %" G_GUINT64_FORMAT " bytes, sha256 %s", t->name,
                  t->received, g_checksum_get_string (t->received_sum));
}

static void
transfer_clear (Transfer *t)
{
  g_checksum_free (t->sent_sum);
  g_checksum_free (t->received_sum);
  g_rand_free (t->rand);
  g_free (t->wbuf);
  g_free (t->rbuf);
  g_clear_error (&t->error);
}

static void
run_transfers (Transfer *t1,
               Transfer *t2,
               guint     seconds)
{
  gint64 start = g_get_monotonic_time ();
  gint64 deadline = start + (gint64) seconds * G_USEC_PER_SEC;

  while (!(t1->write_done && t1->read_done) ||
         (t2 != NULL && !(t2->write_done && t2->read_done)))
    {
      if (g_get_monotonic_time () > deadline)
        g_error ("transfer timed out: %s %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
                 " received", t1->name, t1->received, t1->to_send);
      g_main_context_iteration (NULL, TRUE);
    }
  g_test_message ("transfers took %.2f s", (g_get_monotonic_time () - start) / 1e6);
}

static void
test_stream_both_ways (Fixture       *f,
                       gconstpointer  data)
{
  Transfer ab, ba;
  guint8 byte;
  g_autoptr(GError) error = NULL;

  g_test_summary ("16 MiB each way at the same time arrive byte-identical; "
                  "closing the output gives the peer end of stream");

  establish (f);
  transfer_start (&ab, "a→b", f->a, f->b, 16 * MIB, 1);
  transfer_start (&ba, "b→a", f->b, f->a, 16 * MIB, 2);
  run_transfers (&ab, &ba, 240);
  transfer_check (&ab);
  transfer_check (&ba);

  /* EOF stays EOF */
  g_assert_cmpint (g_pollable_input_stream_read_nonblocking (G_POLLABLE_INPUT_STREAM (ab.in),
                                                             &byte, 1, NULL, &error), ==, 0);
  g_assert_no_error (error);

  g_assert_true (g_io_stream_close (_natkit_session_get_stream (f->a), NULL, &error));
  g_assert_no_error (error);
  g_assert_true (g_io_stream_close (_natkit_session_get_stream (f->b), NULL, &error));
  g_assert_no_error (error);
  run_for (50);
  g_assert_true (_natkit_session_is_established (f->a));

  transfer_clear (&ab);
  transfer_clear (&ba);
}

static void
test_stream_loss (Fixture       *f,
                  gconstpointer  data)
{
  Transfer ab, ba;

  g_test_summary ("The stream survives 5% loss with duplicates and "
                  "reordering, both ways");

  establish (f);
  test_memory_path_set_loss (f->pa, 0.05);
  test_memory_path_set_loss (f->pb, 0.05);
  test_memory_path_set_duplicate (f->pa, 0.02);
  test_memory_path_set_duplicate (f->pb, 0.02);
  test_memory_path_set_reorder (f->pa, 0.02);
  test_memory_path_set_reorder (f->pb, 0.02);
  test_memory_path_set_latency (f->pa, 2);
  test_memory_path_set_latency (f->pb, 2);

  transfer_start (&ab, "a→b", f->a, f->b, 256 * 1024, 3);
  transfer_start (&ba, "b→a", f->b, f->a, 128 * 1024, 4);
  run_transfers (&ab, &ba, 240);
  transfer_check (&ab);
  transfer_check (&ba);
  g_test_message ("lost %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " and %"
                  G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " datagrams",
                  test_memory_path_get_dropped (f->pa), test_memory_path_get_sent (f->pa),
                  test_memory_path_get_dropped (f->pb), test_memory_path_get_sent (f->pb));
  transfer_clear (&ab);
  transfer_clear (&ba);
}

static void
test_stream_bottleneck (Fixture       *f,
                        gconstpointer  data)
{
  Transfer ab, ba;

  g_test_summary ("Through a bottleneck with a small tail-drop queue (a relay's "
                  "socket buffer) the stream loses bursts of segments; it "
                  "recovers them without stalling, both ways");

  establish (f);
  /* 4 MB/s behind a 48 KB queue, 10 ms each way */
  test_memory_path_set_bottleneck (f->pa, 4 * 1000 * 1000, 48 * 1024);
  test_memory_path_set_bottleneck (f->pb, 4 * 1000 * 1000, 48 * 1024);
  test_memory_path_set_latency (f->pa, 10);
  test_memory_path_set_latency (f->pb, 10);

  transfer_start (&ab, "a→b", f->a, f->b, 8 * MIB, 5);
  transfer_start (&ba, "b→a", f->b, f->a, 2 * MIB, 6);
  run_transfers (&ab, &ba, 120);
  transfer_check (&ab);
  transfer_check (&ba);
  g_test_message ("dropped %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " and %"
                  G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " datagrams",
                  test_memory_path_get_dropped (f->pa), test_memory_path_get_sent (f->pa),
                  test_memory_path_get_dropped (f->pb), test_memory_path_get_sent (f->pb));
  g_test_message ("the session resent %" G_GUINT64_FORMAT " and %" G_GUINT64_FORMAT
                  " segments for SACKs and probes",
                  _natkit_session_get_repaired_count (f->a),
                  _natkit_session_get_repaired_count (f->b));
  /* the queue did overflow, and the session repaired what it lost */
  g_assert_cmpuint (test_memory_path_get_dropped (f->pa), >, 0);
  g_assert_cmpuint (_natkit_session_get_repaired_count (f->a), >, 0);
  transfer_clear (&ab);
  transfer_clear (&ba);
}

typedef struct
{
  Fixture        *f;
  TestMemoryPath *qa;
  TestMemoryPath *qb;
  gboolean        swapped;
  gboolean        old_closed;
  guint           path_lost;
} Swap;

static void
swap_progress (gpointer data,
               guint64  received)
{
  Swap *s = data;

  if (!s->swapped && received >= 4 * MIB)
    {
      g_test_message ("swapping paths after %" G_GUINT64_FORMAT " bytes", received);
      test_memory_path_new_pair ("memory-2", 1400, &s->qa, &s->qb);
      _natkit_session_set_path (s->f->a, NATKIT_PATH (s->qa));
      _natkit_session_set_path (s->f->b, NATKIT_PATH (s->qb));
      s->swapped = TRUE;
    }
  else if (s->swapped && !s->old_closed && received >= 8 * MIB)
    {
      g_test_message ("closing the old paths after %" G_GUINT64_FORMAT " bytes",
                      received);
      natkit_path_close (NATKIT_PATH (s->f->pa));
      s->old_closed = TRUE;
    }
}

static void
count_path_lost_cb (NatkitSession *session,
                    NatkitPath    *path,
                    const GError  *error,
                    gpointer       user_data)
{
  ((Swap *) user_data)->path_lost++;
}

static void
test_stream_path_swap (Fixture       *f,
                       gconstpointer  data)
{
  Swap swap = { f, NULL, NULL, FALSE, FALSE, 0 };
  Transfer ab;
  guint64 old_sent;

  g_test_summary ("Swapping the path under a 16 MiB transfer loses and "
                  "duplicates nothing; records in flight on the old path "
                  "still count");

  establish (f);
  g_signal_connect (f->a, "path-lost", G_CALLBACK (count_path_lost_cb), &swap);
  g_signal_connect (f->b, "path-lost", G_CALLBACK (count_path_lost_cb), &swap);

  transfer_start (&ab, "a→b", f->a, f->b, 16 * MIB, 5);
  ab.on_progress = swap_progress;
  ab.progress_data = &swap;
  run_transfers (&ab, NULL, 240);
  transfer_check (&ab);

  g_assert_true (swap.swapped && swap.old_closed);
  g_assert_cmpuint (swap.path_lost, ==, 0);
  g_assert_true (_natkit_session_get_path (f->a) == NATKIT_PATH (swap.qa));
  old_sent = test_memory_path_get_sent (f->pa);
  g_assert_cmpuint (test_memory_path_get_sent (swap.qa), >, 1000);
  g_test_message ("old path carried %" G_GUINT64_FORMAT ", new %" G_GUINT64_FORMAT
                  " datagrams", old_sent, test_memory_path_get_sent (swap.qa));
  /* the larger MTU of the new path is in use */
  g_assert_cmpuint (_natkit_session_get_max_datagram (f->a), >, 1200);

  transfer_clear (&ab);
  g_signal_handlers_disconnect_by_data (f->a, &swap);
  g_signal_handlers_disconnect_by_data (f->b, &swap);
  g_clear_object (&swap.qa);
  g_clear_object (&swap.qb);
}

/* An outage, then another path: what the outage swallowed is resent at
 * once, not one segment per (backed-off) PseudoTCP timeout. */

typedef struct
{
  Fixture        *f;
  Transfer       *t;
  TestMemoryPath *qa;
  TestMemoryPath *qb;
  guint64         at_cut;       /* received at the move */
  guint64         owed;         /* sent by then: must arrive after the move */
  guint64         new_sent;     /* datagrams a sent on the new path until then */
  gboolean        cut;
  gboolean        moved;
  gboolean        caught_up;
} Outage;

static gboolean
outage_move_cb (gpointer data)
{
  Outage *o = data;

  /* (what was on its way at the cut arrived still) */
  o->at_cut = o->t->received;
  o->owed = o->t->sent;
  g_test_message ("moving to another path: %" G_GUINT64_FORMAT " bytes received, "
                  "%" G_GUINT64_FORMAT " written", o->at_cut, o->owed);
  /* what NatkitConnection does: the dead path is closed, a new one set */
  test_memory_path_new_pair ("memory-2", 1400, &o->qa, &o->qb);
  natkit_path_close (NATKIT_PATH (o->f->pa));
  _natkit_session_set_path (o->f->a, NATKIT_PATH (o->qa));
  _natkit_session_set_path (o->f->b, NATKIT_PATH (o->qb));
  o->moved = TRUE;
  return G_SOURCE_REMOVE;
}

static void
outage_progress (gpointer data,
                 guint64  received)
{
  Outage *o = data;

  if (!o->cut && received >= 2 * MIB)
    {
      /* everything from here on is lost, both ways, for 3 s: long enough
       * for PseudoTCP's timeout to back off a few times */
      test_memory_path_set_loss (o->f->pa, 1.0);
      test_memory_path_set_loss (o->f->pb, 1.0);
      o->cut = TRUE;
      g_timeout_add_seconds (3, outage_move_cb, o);
    }
  else if (o->moved && !o->caught_up && received >= o->owed)
    {
      o->new_sent = test_memory_path_get_sent (o->qa);
      o->caught_up = TRUE;
    }
}

static void
test_stream_outage (Fixture       *f,
                    gconstpointer  data)
{
  Transfer ab;
  Outage o = { .f = f, .t = &ab };
  guint64 segments;

  g_test_summary ("After 3 s in which every datagram was lost, the stream "
                  "resumes on the next path: what was written before the move "
                  "arrives within a bounded number of datagrams, the transfer "
                  "byte-identical");

  establish (f);
  test_memory_path_set_latency (f->pa, 2);
  test_memory_path_set_latency (f->pb, 2);
  transfer_start (&ab, "a→b", f->a, f->b, 8 * MIB, 6);
  ab.on_progress = outage_progress;
  ab.progress_data = &o;
  /* one segment per timeout would take many minutes */
  run_transfers (&ab, NULL, 60);
  transfer_check (&ab);

  g_assert_true (o.cut && o.moved && o.caught_up);
  g_assert_cmpuint (o.owed, >, o.at_cut);
  /* what was owed, in segments: each sent about once (the resend, and
   * PseudoTCP's own retransmissions of the first few), plus slack */
  segments = (o.owed - o.at_cut) / 1176 + 1;
  g_test_message ("%" G_GUINT64_FORMAT " bytes owed after the outage (%"
                  G_GUINT64_FORMAT " segments) arrived after %" G_GUINT64_FORMAT
                  " datagrams on the new path", o.owed - o.at_cut, segments,
                  o.new_sent);
  g_assert_cmpuint (o.new_sent, <=, 2 * segments + 64);

  transfer_clear (&ab);
  g_clear_object (&o.qa);
  g_clear_object (&o.qb);
}

/* Close */

typedef struct
{
  gboolean done;
  GError  *error;
} Closed;

static void
closed_cb (NatkitSession *session,
           const GError  *error,
           gpointer       user_data)
{
  Closed *c = user_data;

  g_assert_false (c->done);
  c->done = TRUE;
  c->error = error ? g_error_copy (error) : NULL;
}

static void
path_lost_cb (NatkitSession *session,
              NatkitPath    *path,
              const GError  *error,
              gpointer       user_data)
{
  *(NatkitPath **) user_data = path;
}

static void
test_path_lost (Fixture       *f,
                gconstpointer  data)
{
  g_autoptr(GPtrArray) at_b = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  g_autoptr(TestMemoryPath) qa = NULL;
  g_autoptr(TestMemoryPath) qb = NULL;
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
  g_autoptr(GError) error = NULL;
  NatkitPath *lost_a = NULL, *lost_b = NULL;
  Closed closed = { 0, };

  g_test_summary ("When the path closes the session emits ::path-lost and "
                  "stays up until a new path is set");

  establish (f);
  g_signal_connect (f->a, "path-lost", G_CALLBACK (path_lost_cb), &lost_a);
  g_signal_connect (f->b, "path-lost", G_CALLBACK (path_lost_cb), &lost_b);
  g_signal_connect (f->a, "closed", G_CALLBACK (closed_cb), &closed);
  g_signal_connect (f->b, "datagram-received", G_CALLBACK (collect_cb), at_b);

  natkit_path_close (NATKIT_PATH (f->pa));
  while (lost_a == NULL || lost_b == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (lost_a == NATKIT_PATH (f->pa));
  g_assert_true (lost_b == NATKIT_PATH (f->pb));
  g_assert_true (_natkit_session_is_established (f->a));
  g_assert_true (_natkit_session_is_established (f->b));

  /* dropped, as by a network */
  g_assert_true (_natkit_session_send_datagram (f->a, hello, &error));
  g_assert_no_error (error);

  test_memory_path_new_pair ("memory-2", 1200, &qa, &qb);
  _natkit_session_set_path (f->a, NATKIT_PATH (qa));
  _natkit_session_set_path (f->b, NATKIT_PATH (qb));
  g_assert_true (_natkit_session_send_datagram (f->a, hello, &error));
  g_assert_no_error (error);
  while (at_b->len < 1)
    g_main_context_iteration (NULL, TRUE);
  g_assert_true (g_bytes_equal (g_ptr_array_index (at_b, 0), hello));
  g_assert_false (closed.done);
  g_signal_handlers_disconnect_by_data (f->a, &lost_a);
  g_signal_handlers_disconnect_by_data (f->b, &lost_b);
  g_signal_handlers_disconnect_by_data (f->a, &closed);
}

static void
test_close (Fixture       *f,
            gconstpointer  data)
{
  Closed ca = { 0, }, cb = { 0, };
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) hello = g_bytes_new_static ("hello", 5);
  GOutputStream *out;

  g_test_summary ("The peer's CLOSE emits ::closed with its reason; "
                  "everything after fails with a clear error");

  establish (f);
  g_signal_connect (f->a, "closed", G_CALLBACK (closed_cb), &ca);
  g_signal_connect (f->b, "closed", G_CALLBACK (closed_cb), &cb);
  out = g_io_stream_get_output_stream (_natkit_session_get_stream (f->b));

  _natkit_session_close (f->a, "user quit");
  g_assert_true (ca.done);
  g_assert_null (ca.error);
  g_assert_false (_natkit_session_is_established (f->a));
  run_until (&cb.done, 5);
  g_assert_error (cb.error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
  g_test_message ("%s", cb.error->message);
  g_assert_nonnull (strstr (cb.error->message, "user quit"));
  g_assert_cmpstr (_natkit_session_get_close_reason (f->b), ==, "user quit");
  g_assert_false (_natkit_session_is_established (f->b));

  /* the repeats and the close_notify change nothing */
  run_for (50);
  g_assert_false (_natkit_session_send_datagram (f->b, hello, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
  g_clear_error (&error);

  g_assert_cmpint (g_output_stream_write (out, "x", 1, NULL, &error), ==, -1);
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "closed"));
  g_clear_error (&error);

  g_clear_error (&cb.error);
  g_signal_handlers_disconnect_by_data (f->a, &ca);
  g_signal_handlers_disconnect_by_data (f->b, &cb);
}

static void
test_stream_reader_gone (Fixture       *f,
                         gconstpointer  data)
{
  GOutputStream *out;
  GInputStream *in;
  g_autofree guint8 *buffer = g_malloc0 (MIB);
  g_autoptr(GError) error = NULL;
  gint64 deadline;

  g_test_summary ("When the reader closes its input early, the writer gets "
                  "G_IO_ERROR_BROKEN_PIPE");

  establish (f);
  out = g_io_stream_get_output_stream (_natkit_session_get_stream (f->a));
  in = g_io_stream_get_input_stream (_natkit_session_get_stream (f->b));

  /* some data flows, then b stops reading */
  g_assert_cmpint (g_output_stream_write (out, buffer, 1000, NULL, &error), ==, 1000);
  g_assert_no_error (error);
  g_assert_cmpint (g_input_stream_read (in, buffer, 1000, NULL, &error), >, 0);
  g_assert_true (g_input_stream_close (in, NULL, &error));
  g_assert_no_error (error);

  deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < deadline)
    {
      if (g_pollable_output_stream_write_nonblocking (G_POLLABLE_OUTPUT_STREAM (out),
                                                      buffer, MIB, NULL, &error) < 0 &&
          !g_error_matches (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
        break;
      g_clear_error (&error);
      g_main_context_iteration (NULL, FALSE);
    }
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_BROKEN_PIPE);
  g_test_message ("%s", error->message);
}

static void
test_parse_inner (void)
{
  static const guint8 ping[] = { 3, 1, 2, 3, 4, 5, 6, 7, 8 };
  static const guint8 short_pong[] = { 4, 1, 2 };
  static const guint8 close_ok[] = { 5, 'b', 'y', 'e' };
  static const guint8 close_bad[] = { 5, 0xff, 0xfe };
  static const guint8 close_nul[] = { 5, 'a', 0, 'b' };
  static const guint8 stream_short[] = { 2, 0, 0, 0, 1 };
  static const guint8 unknown[] = { 77, 1 };
  static const guint8 empty_datagram[] = { 1 };
  /* conversation 1, acknowledged up to 100, ranges 200…300 and 400…500 */
  static const guint8 sack_ok[] = { 6, 0, 0, 0, 1, 0, 0, 0, 100,
                                    0, 0, 0, 200, 0, 0, 1, 44, 0, 0, 1, 144, 0, 0, 1, 244 };
  /* the ack wraps: 0xfffffff0, range 0x10…0x20 is after it */
  static const guint8 sack_wrap[] = { 6, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xf0,
                                      0, 0, 0, 0x10, 0, 0, 0, 0x20 };
  static const guint8 sack_none[] = { 6, 0, 0, 0, 1, 0, 0, 0, 100 };
  static const guint8 sack_ragged[] = { 6, 0, 0, 0, 1, 0, 0, 0, 100, 0, 0, 0, 200, 0 };
  static const guint8 sack_empty_range[] = { 6, 0, 0, 0, 1, 0, 0, 0, 100,
                                             0, 0, 0, 200, 0, 0, 0, 200 };
  static const guint8 sack_before_ack[] = { 6, 0, 0, 0, 1, 0, 0, 0, 100,
                                            0, 0, 0, 50, 0, 0, 0, 60 };
  static const guint8 sack_overlap[] = { 6, 0, 0, 0, 1, 0, 0, 0, 100,
                                         0, 0, 0, 200, 0, 0, 1, 44, 0, 0, 1, 0, 0, 0, 1, 244 };
  guint8 sack_long[1 + 8 + 8 * 17];
  NatkitSessionMsg type;
  const guint8 *payload;
  gsize len;
  g_autoptr(GError) error = NULL;

  g_test_summary ("The inner-message parser checks each known type's "
                  "framing and lets unknown types through");

  g_assert_true (_natkit_session_parse_inner (ping, sizeof ping, &type, &payload, &len, &error));
  g_assert_cmpint (type, ==, NATKIT_SESSION_MSG_PING);
  g_assert_cmpuint (len, ==, 8);
  g_assert_true (payload == ping + 1);

  g_assert_true (_natkit_session_parse_inner (close_ok, sizeof close_ok, &type, &payload, &len, &error));
  g_assert_cmpint (type, ==, NATKIT_SESSION_MSG_CLOSE);
  g_assert_true (_natkit_session_parse_inner (empty_datagram, 1, &type, &payload, &len, &error));
  g_assert_cmpuint (len, ==, 0);
  g_assert_true (_natkit_session_parse_inner (unknown, sizeof unknown, &type, &payload, &len, &error));
  g_assert_cmpint (type, ==, 77);
  g_assert_no_error (error);

  g_assert_false (_natkit_session_parse_inner (short_pong, sizeof short_pong, &type, &payload, &len, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_false (_natkit_session_parse_inner (close_bad, sizeof close_bad, &type, &payload, &len, &error));
  g_clear_error (&error);
  g_assert_false (_natkit_session_parse_inner (close_nul, sizeof close_nul, &type, &payload, &len, &error));
  g_clear_error (&error);
  g_assert_false (_natkit_session_parse_inner (stream_short, sizeof stream_short, &type, &payload, &len, &error));
  g_clear_error (&error);
  g_assert_false (_natkit_session_parse_inner (ping, 0, &type, &payload, &len, &error));
  g_clear_error (&error);
  g_assert_false (_natkit_session_parse_inner (NULL, 0, &type, &payload, &len, NULL));

  /* SACK: in order, after the acknowledgement, 1 … 16 ranges */
  g_assert_true (_natkit_session_parse_inner (sack_ok, sizeof sack_ok, &type, &payload, &len, &error));
  g_assert_no_error (error);
  g_assert_cmpint (type, ==, NATKIT_SESSION_MSG_SACK);
  g_assert_cmpuint (len, ==, 24);
  g_assert_true (_natkit_session_parse_inner (sack_wrap, sizeof sack_wrap, &type, &payload, &len, &error));
  g_assert_no_error (error);
  g_assert_false (_natkit_session_parse_inner (sack_none, sizeof sack_none, &type, &payload, &len, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_false (_natkit_session_parse_inner (sack_ragged, sizeof sack_ragged, &type, &payload, &len, NULL));
  g_assert_false (_natkit_session_parse_inner (sack_empty_range, sizeof sack_empty_range, &type, &payload, &len, NULL));
  g_assert_false (_natkit_session_parse_inner (sack_before_ack, sizeof sack_before_ack, &type, &payload, &len, NULL));
  g_assert_false (_natkit_session_parse_inner (sack_overlap, sizeof sack_overlap, &type, &payload, &len, NULL));
  /* 17 well-ordered ranges: one too many */
  memset (sack_long, 0, sizeof sack_long);
  sack_long[0] = 6;
  for (guint i = 0; i < 17; i++)
    {
      sack_long[1 + 8 + 8 * i + 3] = (guint8) (10 * i + 1);
      sack_long[1 + 8 + 8 * i + 7] = (guint8) (10 * i + 5);
    }
  g_assert_false (_natkit_session_parse_inner (sack_long, sizeof sack_long, &type, &payload, &len, NULL));
  g_assert_true (_natkit_session_parse_inner (sack_long, sizeof sack_long - 8, &type, &payload, &len, NULL));
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  /* PseudoTCP's own narration, when debugging these tests */
  if (g_getenv ("TEST_SESSION_PSEUDOTCP_DEBUG") != NULL)
    pseudo_tcp_set_debug_level (PSEUDO_TCP_DEBUG_VERBOSE);

#define ADD(path, func) \
  g_test_add ("/natkit/session/" path, Fixture, NULL, fixture_setup, func, fixture_teardown)

  ADD ("handshake", test_handshake);
  g_test_add ("/natkit/session/handshake/identity-mismatch/initiator", Fixture,
              GINT_TO_POINTER (TRUE), fixture_setup,
              test_handshake_identity_mismatch, fixture_teardown);
  g_test_add ("/natkit/session/handshake/identity-mismatch/responder", Fixture,
              GINT_TO_POINTER (FALSE), fixture_setup,
              test_handshake_identity_mismatch, fixture_teardown);
  ADD ("handshake/loss", test_handshake_loss);
  ADD ("handshake/timeout", test_handshake_timeout);
  ADD ("handshake/cancel", test_handshake_cancel);
  ADD ("datagrams", test_datagrams);
  ADD ("ping", test_ping);
  ADD ("garbage", test_unknown_and_garbage);
  ADD ("stream/both-ways", test_stream_both_ways);
  ADD ("stream/loss", test_stream_loss);
  ADD ("stream/bottleneck", test_stream_bottleneck);
  ADD ("stream/path-swap", test_stream_path_swap);
  ADD ("stream/outage", test_stream_outage);
  ADD ("records-on-path", test_records_on_path);
  ADD ("stream/reader-gone", test_stream_reader_gone);
  ADD ("path-lost", test_path_lost);
  ADD ("close", test_close);
  g_test_add_func ("/natkit/session/parse-inner", test_parse_inner);

  return g_test_run ();
}
