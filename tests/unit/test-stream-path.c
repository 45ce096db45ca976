/* test-stream-path.c: NatkitStreamPath, datagrams framed on a byte stream
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <locale.h>
#include <string.h>
#include <sys/socket.h>

#include "natkit.h"
#include "natkit-stream-path-private.h"

/* ---- helpers ------------------------------------------------------------ */

/* Two connected TCP streams on 127.0.0.1. */
static void
tcp_pair (GIOStream **out_a,
          GIOStream **out_b)
{
  g_autoptr(GSocketListener) listener = g_socket_listener_new ();
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any_port = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;
  GSocketConnection *a, *b;

  /* loopback only: no proxy (and no libproxy thread) */
  g_socket_client_set_enable_proxy (client, FALSE);
  g_socket_listener_add_address (listener, any_port, G_SOCKET_TYPE_STREAM,
                                 G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error);
  g_assert_no_error (error);
  /* the kernel completes the handshake from the backlog */
  a = g_socket_client_connect (client, G_SOCKET_CONNECTABLE (bound), NULL, &error);
  g_assert_no_error (error);
  b = g_socket_listener_accept (listener, NULL, NULL, &error);
  g_assert_no_error (error);
  *out_a = G_IO_STREAM (a);
  *out_b = G_IO_STREAM (b);
}

/* Two connected streams over socketpair(2). */
static void
unix_pair (GIOStream **out_a,
           GIOStream **out_b)
{
  g_autoptr(GSocket) sa = NULL;
  g_autoptr(GSocket) sb = NULL;
  g_autoptr(GError) error = NULL;
  int fds[2];

  g_assert_cmpint (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
  sa = g_socket_new_from_fd (fds[0], &error);
  g_assert_no_error (error);
  sb = g_socket_new_from_fd (fds[1], &error);
  g_assert_no_error (error);
  *out_a = G_IO_STREAM (g_socket_connection_factory_create_connection (sa));
  *out_b = G_IO_STREAM (g_socket_connection_factory_create_connection (sb));
}

typedef struct
{
  GPtrArray *received;
  gboolean   closed;
  GError    *error;
} Sink;

static void
sink_received_cb (NatkitPath *path,
                  GBytes     *datagram,
                  gpointer    user_data)
{
  Sink *sink = user_data;

  g_ptr_array_add (sink->received, g_bytes_ref (datagram));
}

static void
sink_closed_cb (NatkitPath   *path,
                const GError *error,
                gpointer      user_data)
{
  Sink *sink = user_data;

  g_assert_false (sink->closed);
  sink->closed = TRUE;
  if (error != NULL)
    sink->error = g_error_copy (error);
}

static void
sink_init (Sink       *sink,
           NatkitPath *path)
{
  sink->received = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  sink->closed = FALSE;
  sink->error = NULL;
  g_signal_connect (path, "received", G_CALLBACK (sink_received_cb), sink);
  g_signal_connect (path, "closed", G_CALLBACK (sink_closed_cb), sink);
}

static void
sink_clear (Sink *sink)
{
  g_clear_pointer (&sink->received, g_ptr_array_unref);
  g_clear_error (&sink->error);
}

static void
iterate_until (gboolean *flag)
{
  while (!*flag)
    g_main_context_iteration (NULL, TRUE);
}

static void
wait_for_count (Sink  *sink,
                guint  count)
{
  while (sink->received->len < count && !sink->closed)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (sink->received->len, ==, count);
}

static void
drain (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

/* Waits until the stream path has closed @stream (the path took a ref). */
static void
wait_closed (GIOStream *stream)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  while (!g_io_stream_is_closed (stream) && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE);
  g_assert_true (g_io_stream_is_closed (stream));
  drain ();
}

static GBytes *
pattern (gsize  size,
         guint8 seed)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (seed + i * 7);
  return g_bytes_new_take (data, size);
}

static void
write_raw (GIOStream    *stream,
           const guint8 *data,
           gsize         length)
{
  g_autoptr(GError) error = NULL;

  g_output_stream_write_all (g_io_stream_get_output_stream (stream), data, length,
                             NULL, NULL, &error);
  g_assert_no_error (error);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_parse (void)
{
  static const guint8 two[] = { 0, 1, 'x', 0, 2, 'y', 'z', 0 };
  static const guint8 zero[] = { 0, 0, 'x' };
  const guint8 *body = NULL;
  gsize length = 0;
  g_autoptr(GError) error = NULL;

  g_assert_cmpint (_natkit_frame_parse (two, 0, &body, &length, &error), ==, 0);
  g_assert_cmpint (_natkit_frame_parse (two, 1, &body, &length, &error), ==, 0);
  g_assert_cmpint (_natkit_frame_parse (two, 2, &body, &length, &error), ==, 0);
  g_assert_cmpint (_natkit_frame_parse (two, 3, &body, &length, &error), ==, 3);
  g_assert_no_error (error);
  g_assert_true (body == two + 2);
  g_assert_cmpuint (length, ==, 1);
  g_assert_cmpint (_natkit_frame_parse (two + 3, 3, &body, &length, &error), ==, 0);
  g_assert_cmpint (_natkit_frame_parse (two + 3, 5, &body, &length, &error), ==, 4);
  g_assert_cmpmem (body, length, "yz", 2);
  g_assert_cmpint (_natkit_frame_parse (two + 7, 1, &body, &length, &error), ==, 0);

  g_assert_cmpint (_natkit_frame_parse (zero, sizeof zero, &body, &length, &error), ==, -1);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "zero-length"));
}

static void
test_properties (void)
{
  GIOStream *a, *b;
  g_autoptr(NatkitPath) path = NULL;

  unix_pair (&a, &b);
  path = natkit_stream_path_new (a, "relay", "tls", "192.0.2.1:4000/tls",
                                 "198.51.100.9:7000/tls (relay)");
  g_assert_true (NATKIT_IS_STREAM_PATH (path));
  g_assert_cmpstr (natkit_path_get_method (path), ==, "relay");
  g_assert_cmpstr (natkit_path_get_transport (path), ==, "tls");
  g_assert_cmpstr (natkit_path_get_local_address (path), ==, "192.0.2.1:4000/tls");
  g_assert_cmpstr (natkit_path_get_remote_address (path), ==, "198.51.100.9:7000/tls (relay)");
  g_assert_cmpuint (natkit_path_get_mtu (path), ==, 65535);
  g_assert_true (natkit_stream_path_get_stream (NATKIT_STREAM_PATH (path)) == a);
  g_assert_false (natkit_path_is_closed (path));

  natkit_path_close (path);
  g_assert_true (natkit_path_is_closed (path));
  wait_closed (a);
  g_object_unref (a);
  g_object_unref (b);
}

static void
test_sizes (void)
{
  static const gsize sizes[] = { 1, 1200, 65535 };
  GIOStream *sa, *sb;
  g_autoptr(NatkitPath) a = NULL;
  g_autoptr(NatkitPath) b = NULL;
  Sink sink_a, sink_b;

  tcp_pair (&sa, &sb);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "b");
  b = natkit_stream_path_new (sb, "test", "tcp", "b", "a");
  sink_init (&sink_a, a);
  sink_init (&sink_b, b);

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      g_autoptr(GBytes) to_b = pattern (sizes[i], i);
      g_autoptr(GBytes) to_a = pattern (sizes[i], 100 + i);
      g_autoptr(GError) error = NULL;

      g_assert_true (natkit_path_send (a, to_b, &error));
      g_assert_no_error (error);
      g_assert_true (natkit_path_send (b, to_a, &error));
      g_assert_no_error (error);
    }
  wait_for_count (&sink_a, G_N_ELEMENTS (sizes));
  wait_for_count (&sink_b, G_N_ELEMENTS (sizes));

  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++)
    {
      g_autoptr(GBytes) to_b = pattern (sizes[i], i);
      g_autoptr(GBytes) to_a = pattern (sizes[i], 100 + i);

      g_assert_true (g_bytes_equal (g_ptr_array_index (sink_b.received, i), to_b));
      g_assert_true (g_bytes_equal (g_ptr_array_index (sink_a.received, i), to_a));
    }
  g_assert_cmpuint (natkit_path_get_bytes_sent (a), ==, 1 + 1200 + 65535);
  g_assert_cmpuint (natkit_path_get_bytes_received (b), ==, 1 + 1200 + 65535);

  /* too large for a frame; empty cannot be framed */
  {
    g_autoptr(GBytes) big = pattern (65536, 0);
    g_autoptr(GBytes) empty = g_bytes_new_static ("", 0);
    g_autoptr(GError) error = NULL;

    g_assert_false (natkit_path_send (a, big, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
    g_clear_error (&error);
    g_assert_false (natkit_path_send (a, empty, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
  }

  natkit_path_close (a);
  natkit_path_close (b);
  wait_closed (sa);
  wait_closed (sb);
  g_assert_null (sink_a.error);
  g_assert_null (sink_b.error);
  sink_clear (&sink_a);
  sink_clear (&sink_b);
  g_object_unref (sa);
  g_object_unref (sb);
}

/* Frames whose bytes arrive one read at a time, and many frames in one read. */
static void
test_split (void)
{
  GIOStream *sa, *raw;
  g_autoptr(NatkitPath) a = NULL;
  g_autoptr(GByteArray) wire = g_byte_array_new ();
  g_autoptr(GPtrArray) expected = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  Sink sink;

  tcp_pair (&sa, &raw);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "raw");
  sink_init (&sink, a);

  for (guint i = 0; i < 4; i++)
    {
      gsize size = (gsize[]) { 1, 2, 300, 65535 }[i];
      GBytes *datagram = pattern (size, i);
      guint8 header[2] = { size >> 8, size & 0xff };

      g_ptr_array_add (expected, datagram);
      g_byte_array_append (wire, header, 2);
      g_byte_array_append (wire, g_bytes_get_data (datagram, NULL), size);
    }

  /* one byte per read for the small frames, 1000 for the large one */
  for (gsize at = 0; at < wire->len;)
    {
      gsize step = at < 2 + 1 + 2 + 2 + 2 + 300 + 2 ? 1 : MIN (1000, wire->len - at);

      write_raw (raw, wire->data + at, step);
      at += step;
      drain ();
    }
  wait_for_count (&sink, 4);
  for (guint i = 0; i < 4; i++)
    g_assert_true (g_bytes_equal (g_ptr_array_index (sink.received, i),
                                  g_ptr_array_index (expected, i)));

  /* the same four frames, three times over, in one write */
  {
    g_autoptr(GByteArray) three = g_byte_array_new ();

    for (guint r = 0; r < 3; r++)
      g_byte_array_append (three, wire->data, wire->len);
    write_raw (raw, three->data, three->len);
  }
  wait_for_count (&sink, 16);
  for (guint i = 4; i < 16; i++)
    g_assert_true (g_bytes_equal (g_ptr_array_index (sink.received, i),
                                  g_ptr_array_index (expected, i % 4)));
  g_assert_false (sink.closed);

  g_clear_object (&a);
  wait_closed (sa);
  sink_clear (&sink);
  g_object_unref (sa);
  g_object_unref (raw);
}

static void
test_zero_length (void)
{
  static const guint8 wire[] = { 0, 3, 'a', 'b', 'c', 0, 0, 0, 1, 'x' };
  GIOStream *sa, *raw;
  g_autoptr(NatkitPath) a = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) datagram = g_bytes_new_static ("late", 4);
  Sink sink;

  unix_pair (&sa, &raw);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "raw");
  sink_init (&sink, a);

  write_raw (raw, wire, sizeof wire);
  iterate_until (&sink.closed);
  /* the frame before the bad one is delivered, nothing after it */
  g_assert_cmpuint (sink.received->len, ==, 1);
  g_assert_cmpmem (g_bytes_get_data (g_ptr_array_index (sink.received, 0), NULL), 3, "abc", 3);
  g_assert_error (sink.error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_assert_nonnull (strstr (sink.error->message, "zero-length frame"));
  g_assert_nonnull (strstr (sink.error->message, "the tcp stream to raw"));
  g_assert_true (natkit_path_is_closed (a));

  g_assert_false (natkit_path_send (a, datagram, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);

  wait_closed (sa);
  sink_clear (&sink);
  g_object_unref (sa);
  g_object_unref (raw);
}

static void
test_eof (void)
{
  static const guint8 wire[] = { 0, 2, 'o', 'k', 0, 9, 'p', 'a', 'r' };
  GIOStream *sa, *raw;
  g_autoptr(NatkitPath) a = NULL;
  g_autoptr(GError) error = NULL;
  Sink sink;

  tcp_pair (&sa, &raw);
  a = natkit_stream_path_new (sa, "relay", "tls", "a", "198.51.100.9:7000/tls");
  sink_init (&sink, a);

  /* a frame, then the beginning of one, then the end of the stream */
  write_raw (raw, wire, sizeof wire);
  g_io_stream_close (raw, NULL, &error);
  g_assert_no_error (error);
  iterate_until (&sink.closed);

  g_assert_cmpuint (sink.received->len, ==, 1);
  g_assert_error (sink.error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
  g_assert_cmpstr (sink.error->message, ==,
                   "The other end closed the tls stream to 198.51.100.9:7000/tls");

  wait_closed (sa);
  sink_clear (&sink);
  g_object_unref (sa);
  g_object_unref (raw);
}

static void
test_close (void)
{
  GIOStream *sa, *sb;
  NatkitPath *a, *b;
  g_autoptr(GBytes) datagram = g_bytes_new_static ("bye", 3);
  g_autoptr(GError) error = NULL;
  Sink sink_a, sink_b;

  tcp_pair (&sa, &sb);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "b");
  b = natkit_stream_path_new (sb, "test", "tcp", "b", "a");
  sink_init (&sink_a, a);
  sink_init (&sink_b, b);

  /* queued, then closed at once: the datagram may or may not make it */
  g_assert_true (natkit_path_send (a, datagram, &error));
  natkit_path_close (a);
  g_assert_true (sink_a.closed);
  g_assert_null (sink_a.error);
  g_assert_false (natkit_path_send (a, datagram, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
  natkit_path_close (a);                 /* twice: nothing */

  /* the other end sees the stream end */
  iterate_until (&sink_b.closed);
  g_assert_error (sink_b.error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);

  /* the path may go before its stream has finished closing */
  g_object_unref (a);
  g_object_unref (b);
  wait_closed (sa);
  wait_closed (sb);
  sink_clear (&sink_a);
  sink_clear (&sink_b);
  g_object_unref (sa);
  g_object_unref (sb);
}

/* Dropping the last reference closes the stream, silently. */
static void
test_unref (void)
{
  GIOStream *sa, *raw;
  NatkitPath *a;
  g_autoptr(GError) error = NULL;
  guint8 byte;

  unix_pair (&sa, &raw);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "raw");
  drain ();
  g_object_unref (a);
  wait_closed (sa);
  g_assert_cmpint (g_input_stream_read (g_io_stream_get_input_stream (raw), &byte, 1,
                                        NULL, &error), ==, 0);
  g_assert_no_error (error);
  g_object_unref (sa);
  g_object_unref (raw);
}

static void
test_burst (void)
{
  const guint n = 10000;
  GIOStream *sa, *sb;
  g_autoptr(NatkitPath) a = NULL;
  g_autoptr(NatkitPath) b = NULL;
  Sink sink;

  tcp_pair (&sa, &sb);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "b");
  b = natkit_stream_path_new (sb, "test", "tcp", "b", "a");
  sink_init (&sink, b);

  for (guint i = 0; i < n; i++)
    {
      guint8 data[300];
      gsize size = 4 + i % 290;
      g_autoptr(GBytes) datagram = NULL;
      g_autoptr(GError) error = NULL;

      memset (data, i & 0xff, sizeof data);
      data[0] = i >> 24;
      data[1] = (i >> 16) & 0xff;
      data[2] = (i >> 8) & 0xff;
      data[3] = i & 0xff;
      datagram = g_bytes_new (data, size);
      g_assert_true (natkit_path_send (a, datagram, &error));
      g_assert_no_error (error);
    }
  wait_for_count (&sink, n);
  for (guint i = 0; i < n; i++)
    {
      gsize size;
      const guint8 *data = g_bytes_get_data (g_ptr_array_index (sink.received, i), &size);

      g_assert_cmpuint (size, ==, 4 + i % 290);
      g_assert_cmpuint (((guint) data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3], ==, i);
      g_assert_cmpuint (data[size - 1], ==, i & 0xff);
    }

  natkit_path_close (a);
  natkit_path_close (b);
  wait_closed (sa);
  wait_closed (sb);
  sink_clear (&sink);
  g_object_unref (sa);
  g_object_unref (sb);
}

/* A queue over NATKIT_STREAM_PATH_MAX_QUEUED refuses datagrams; what it
 * accepted still arrives. */
static void
test_congested (void)
{
  GIOStream *sa, *sb;
  g_autoptr(NatkitPath) a = NULL;
  g_autoptr(NatkitPath) b = NULL;
  g_autoptr(GBytes) big = pattern (65535, 3);
  g_autoptr(GError) error = NULL;
  guint accepted = 0;
  Sink sink;

  unix_pair (&sa, &sb);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "b");
  b = natkit_stream_path_new (sb, "test", "tcp", "b", "a");
  sink_init (&sink, b);

  while (natkit_path_send (a, big, &error))
    {
      accepted++;
      g_assert_cmpuint (accepted, <, 1000);
    }
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK);
  g_assert_nonnull (strstr (error->message, "congested"));
  g_assert_cmpuint (accepted, >=, NATKIT_STREAM_PATH_MAX_QUEUED / 65537 - 1);
  g_assert_false (natkit_path_is_closed (a));

  wait_for_count (&sink, accepted);
  for (guint i = 0; i < accepted; i++)
    g_assert_true (g_bytes_equal (g_ptr_array_index (sink.received, i), big));

  /* and it takes datagrams again */
  g_clear_error (&error);
  g_assert_true (natkit_path_send (a, big, &error));
  g_assert_no_error (error);
  wait_for_count (&sink, accepted + 1);

  natkit_path_close (a);
  natkit_path_close (b);
  wait_closed (sa);
  wait_closed (sb);
  sink_clear (&sink);
  g_object_unref (sa);
  g_object_unref (sb);
}

/* Closing the path from inside a "received" handler stops delivery. */
static void
close_in_handler_cb (NatkitPath *path,
                     GBytes     *datagram,
                     gpointer    user_data)
{
  guint *count = user_data;

  (*count)++;
  natkit_path_close (path);
}

static void
test_close_in_handler (void)
{
  static const guint8 wire[] = { 0, 1, 'a', 0, 1, 'b', 0, 1, 'c' };
  GIOStream *sa, *raw;
  NatkitPath *a;
  guint count = 0;

  unix_pair (&sa, &raw);
  a = natkit_stream_path_new (sa, "test", "tcp", "a", "raw");
  g_signal_connect (a, "received", G_CALLBACK (close_in_handler_cb), &count);
  write_raw (raw, wire, sizeof wire);
  while (!natkit_path_is_closed (a))
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (count, ==, 1);
  g_object_unref (a);
  wait_closed (sa);
  g_object_unref (sa);
  g_object_unref (raw);
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("NatkitStreamPath: RFC 4571 datagram framing over a byte stream");

  g_test_add_func ("/natkit/stream-path/parse", test_parse);
  g_test_add_func ("/natkit/stream-path/properties", test_properties);
  g_test_add_func ("/natkit/stream-path/sizes", test_sizes);
  g_test_add_func ("/natkit/stream-path/split", test_split);
  g_test_add_func ("/natkit/stream-path/zero-length", test_zero_length);
  g_test_add_func ("/natkit/stream-path/eof", test_eof);
  g_test_add_func ("/natkit/stream-path/close", test_close);
  g_test_add_func ("/natkit/stream-path/unref", test_unref);
  g_test_add_func ("/natkit/stream-path/burst", test_burst);
  g_test_add_func ("/natkit/stream-path/congested", test_congested);
  g_test_add_func ("/natkit/stream-path/close-in-handler", test_close_in_handler);

  return g_test_run ();
}
