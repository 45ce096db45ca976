/* test-relay-udp.c: the relay plugin's UDP data channel against a scripted
 * relay on loopback
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The relay here speaks only the data plane of docs/protocol.md section 4
 * (BIND → BOUND, DATA forwarded between the two bound ends, CLOSED), and
 * does exactly what each test scripts: drop BINDs, stay silent, close the
 * circuit, send noise. natkit-server itself is exercised end to end by the
 * integration tests.
 */
#include "config.h"

#include <locale.h>
#include <string.h>

#include "natkit.h"
#include "natkit-relay-udp.h"

#define CIRCUIT 0x00c1c1c1u

static const guint8 token_a[16] = { 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a',
                                    'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a' };
static const guint8 token_b[16] = { 'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b',
                                    'b', 'b', 'b', 'b', 'b', 'b', 'b', 'b' };

/* ---- the scripted relay ------------------------------------------------- */

static gboolean
same_endpoint (GSocketAddress *a,
               GSocketAddress *b)
{
  GInetSocketAddress *ia = G_INET_SOCKET_ADDRESS (a);
  GInetSocketAddress *ib = G_INET_SOCKET_ADDRESS (b);

  return g_inet_socket_address_get_port (ia) == g_inet_socket_address_get_port (ib) &&
         g_inet_address_equal (g_inet_socket_address_get_address (ia),
                               g_inet_socket_address_get_address (ib));
}

typedef struct
{
  GSocket        *socket;
  guint16         port;
  GSource        *source;
  GSocketAddress *end[2];        /* bound endpoints of token_a, token_b */
  guint           binds;         /* BINDs received */
  guint           drop_binds;    /* drop this many BINDs first */
  gboolean        silent;        /* answer nothing */
  gboolean        data_not_bound;/* forward DATA, but never answer BOUND */
  gboolean        closed;        /* the circuit ended: answer CLOSED */
} Relay;

static void
relay_send (Relay          *relay,
            GSocketAddress *to,
            guint8          type,
            guint32         circuit,
            const guint8   *payload,
            gsize           length)
{
  guint8 packet[65536];
  g_autoptr(GError) error = NULL;

  natkit_relay_build_header (packet, type, circuit);
  if (length > 0)
    memcpy (packet + NATKIT_RELAY_HEADER_SIZE, payload, length);
  g_socket_send_to (relay->socket, to, (const char *) packet,
                    NATKIT_RELAY_HEADER_SIZE + length, NULL, &error);
  g_assert_no_error (error);
}

static gboolean
relay_receive_cb (GSocket      *socket,
                  GIOCondition  condition,
                  gpointer      user_data)
{
  Relay *relay = user_data;
  guint8 buffer[65536];
  g_autoptr(GSocketAddress) from = NULL;
  NatkitRelayPacket p;
  gssize n;

  n = g_socket_receive_from (socket, &from, (char *) buffer, sizeof buffer, NULL, NULL);
  if (n < 0 || !natkit_relay_parse (buffer, n, &p, NULL) || p.circuit != CIRCUIT)
    return G_SOURCE_CONTINUE;

  if (p.type == NATKIT_RELAY_BIND)
    {
      int which = memcmp (p.payload, token_a, 16) == 0 ? 0 :
                  memcmp (p.payload, token_b, 16) == 0 ? 1 : -1;

      relay->binds++;
      if (which < 0 || relay->silent)
        return G_SOURCE_CONTINUE;
      if (relay->drop_binds > 0)
        {
          relay->drop_binds--;
          return G_SOURCE_CONTINUE;
        }
      g_set_object (&relay->end[which], from);
      if (relay->closed)
        relay_send (relay, from, NATKIT_RELAY_CLOSED, CIRCUIT, NULL, 0);
      else if (!relay->data_not_bound)
        relay_send (relay, from, NATKIT_RELAY_BOUND, CIRCUIT, NULL, 0);
    }
  else if (p.type == NATKIT_RELAY_DATA && !relay->silent)
    {
      for (int i = 0; i < 2; i++)
        if (relay->end[i] != NULL && relay->end[1 - i] != NULL &&
            same_endpoint (relay->end[i], from))
          {
            if (relay->closed)
              relay_send (relay, from, NATKIT_RELAY_CLOSED, CIRCUIT, NULL, 0);
            else
              relay_send (relay, relay->end[1 - i], NATKIT_RELAY_DATA, CIRCUIT,
                          p.payload, p.payload_length);
            break;
          }
    }
  return G_SOURCE_CONTINUE;
}

static void
relay_start (Relay *relay)
{
  g_autoptr(GInetAddress) loopback = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) address = g_inet_socket_address_new (loopback, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;

  memset (relay, 0, sizeof *relay);
  relay->socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                                G_SOCKET_PROTOCOL_UDP, &error);
  g_assert_no_error (error);
  g_socket_set_blocking (relay->socket, FALSE);
  g_socket_bind (relay->socket, address, FALSE, &error);
  g_assert_no_error (error);
  bound = g_socket_get_local_address (relay->socket, &error);
  g_assert_no_error (error);
  relay->port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (bound));
  relay->source = g_socket_create_source (relay->socket, G_IO_IN, NULL);
  g_source_set_callback (relay->source, G_SOURCE_FUNC (relay_receive_cb), relay, NULL);
  g_source_attach (relay->source, NULL);
}

static void
relay_stop (Relay *relay)
{
  g_source_destroy (relay->source);
  g_source_unref (relay->source);
  g_clear_object (&relay->end[0]);
  g_clear_object (&relay->end[1]);
  g_socket_close (relay->socket, NULL);
  g_clear_object (&relay->socket);
}

/* ---- helpers ------------------------------------------------------------ */

typedef struct
{
  NatkitPath *path;
  GError     *error;
  gboolean    done;
  gint64      elapsed_us;
  gint64      started;
} Bind;

static void
bound_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Bind *b = user_data;

  g_assert_null (source);
  b->path = natkit_relay_udp_bind_finish (result, &b->error);
  b->elapsed_us = g_get_monotonic_time () - b->started;
  b->done = TRUE;
}

static void
bind_start (Bind         *b,
            guint16       port,
            const guint8 *token,
            guint         budget_ms,
            GCancellable *cancellable)
{
  memset (b, 0, sizeof *b);
  b->started = g_get_monotonic_time ();
  natkit_relay_udp_bind_async ("127.0.0.1", port, CIRCUIT, token, budget_ms,
                               cancellable, bound_cb, b);
}

static void
bind_wait (Bind *b)
{
  while (!b->done)
    g_main_context_iteration (NULL, TRUE);
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
  g_ptr_array_add (((Sink *) user_data)->received, g_bytes_ref (datagram));
}

static void
sink_closed_cb (NatkitPath   *path,
                const GError *error,
                gpointer      user_data)
{
  Sink *sink = user_data;

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
wait_received (Sink  *sink,
               guint  count)
{
  gint64 deadline = g_get_monotonic_time () + 5 * G_USEC_PER_SEC;

  while (sink->received->len < count && !sink->closed &&
         g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, FALSE);
  g_assert_cmpuint (sink->received->len, ==, count);
}

static gboolean
timeout_flag_cb (gpointer user_data)
{
  *(gboolean *) user_data = TRUE;
  return G_SOURCE_REMOVE;
}

static void
spin (guint ms)
{
  gboolean done = FALSE;

  g_timeout_add (ms, timeout_flag_cb, &done);
  while (!done)
    g_main_context_iteration (NULL, TRUE);
}

static void
drain (void)
{
  while (g_main_context_iteration (NULL, FALSE))
    ;
}

static GBytes *
pattern (gsize  size,
         guint8 seed)
{
  guint8 *data = g_malloc (size);

  for (gsize i = 0; i < size; i++)
    data[i] = (guint8) (seed + i * 13);
  return g_bytes_new_take (data, size);
}

/* ---- tests -------------------------------------------------------------- */

static void
test_exchange (void)
{
  Relay relay;
  Bind a, b;
  Sink sink_a, sink_b;
  g_autofree char *remote = NULL;

  relay_start (&relay);
  bind_start (&a, relay.port, token_a, 1500, NULL);
  bind_start (&b, relay.port, token_b, 1500, NULL);
  bind_wait (&a);
  bind_wait (&b);
  g_assert_no_error (a.error);
  g_assert_no_error (b.error);
  g_assert_cmpuint (relay.binds, ==, 2);

  g_assert_true (NATKIT_IS_RELAY_UDP_PATH (a.path));
  g_assert_cmpstr (natkit_path_get_method (a.path), ==, "relay");
  g_assert_cmpstr (natkit_path_get_transport (a.path), ==, "udp");
  g_assert_cmpuint (natkit_path_get_mtu (a.path), ==, 1392);
  g_assert_cmpuint (natkit_relay_udp_path_get_circuit (NATKIT_RELAY_UDP_PATH (a.path)), ==, CIRCUIT);
  remote = g_strdup_printf ("127.0.0.1:%u/udp (relay circuit %u)", relay.port, CIRCUIT);
  g_assert_cmpstr (natkit_path_get_remote_address (a.path), ==, remote);
  g_assert_true (g_str_has_prefix (natkit_path_get_local_address (a.path), "127.0.0.1:"));

  sink_init (&sink_a, a.path);
  sink_init (&sink_b, b.path);
  for (guint i = 0; i < 3; i++)
    {
      gsize size = (gsize[]) { 1, 700, 1392 }[i];
      g_autoptr(GBytes) to_b = pattern (size, i);
      g_autoptr(GBytes) to_a = pattern (size, 50 + i);
      g_autoptr(GError) error = NULL;

      g_assert_true (natkit_path_send (a.path, to_b, &error));
      g_assert_no_error (error);
      wait_received (&sink_b, i + 1);
      g_assert_true (g_bytes_equal (g_ptr_array_index (sink_b.received, i), to_b));
      g_assert_true (natkit_path_send (b.path, to_a, &error));
      wait_received (&sink_a, i + 1);
      g_assert_true (g_bytes_equal (g_ptr_array_index (sink_a.received, i), to_a));
    }

  {
    g_autoptr(GBytes) big = pattern (1393, 0);
    g_autoptr(GBytes) empty = g_bytes_new_static ("", 0);
    g_autoptr(GError) error = NULL;

    g_assert_false (natkit_path_send (a.path, big, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_MESSAGE_TOO_LARGE);
    g_clear_error (&error);
    g_assert_false (natkit_path_send (a.path, empty, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
  }

  natkit_path_close (a.path);
  g_assert_true (sink_a.closed);
  g_assert_null (sink_a.error);
  g_object_unref (a.path);
  g_object_unref (b.path);
  drain ();
  sink_clear (&sink_a);
  sink_clear (&sink_b);
  relay_stop (&relay);
}

/* Lost BINDs are sent again at 250, 500, 1000 ms. */
static void
test_resend (void)
{
  Relay relay;
  Bind a;

  relay_start (&relay);
  relay.drop_binds = 2;
  bind_start (&a, relay.port, token_a, 1500, NULL);
  bind_wait (&a);
  g_assert_no_error (a.error);
  g_assert_cmpuint (relay.binds, ==, 3);
  /* the third BIND goes out at 500 ms */
  g_assert_cmpint (a.elapsed_us, >=, 450 * 1000);
  g_assert_cmpint (a.elapsed_us, <, 1000 * 1000);
  g_object_unref (a.path);
  drain ();
  relay_stop (&relay);
}

/* Silence: UDP is blocked, the budget runs out. */
static void
test_budget (void)
{
  Relay relay;
  Bind a;

  relay_start (&relay);
  relay.silent = TRUE;
  bind_start (&a, relay.port, token_a, 600, NULL);
  bind_wait (&a);
  g_assert_null (a.path);
  g_assert_error (a.error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (a.error->message, "did not answer BIND over UDP within 600 ms"));
  g_assert_cmpint (a.elapsed_us, >=, 550 * 1000);
  /* at 0, 250 and 500 ms */
  g_assert_cmpuint (relay.binds, ==, 3);
  g_clear_error (&a.error);
  drain ();
  relay_stop (&relay);
}

/* Nothing listens: the ICMP error ends the attempt long before the budget. */
static void
test_refused (void)
{
  Relay relay;
  guint16 port;
  Bind a;

  relay_start (&relay);
  port = relay.port;
  relay_stop (&relay);

  bind_start (&a, port, token_a, 5000, NULL);
  bind_wait (&a);
  g_assert_null (a.path);
  g_assert_error (a.error, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE);
  g_assert_nonnull (strstr (a.error->message, "refused UDP"));
  g_assert_cmpint (a.elapsed_us, <, 1000 * 1000);
  g_clear_error (&a.error);
  drain ();
}

static void
test_cancel (void)
{
  Relay relay;
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  Bind a;

  relay_start (&relay);
  relay.silent = TRUE;
  bind_start (&a, relay.port, token_a, 5000, cancellable);
  spin (100);
  g_assert_false (a.done);
  g_cancellable_cancel (cancellable);
  bind_wait (&a);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_cmpint (a.elapsed_us, <, 1000 * 1000);
  g_clear_error (&a.error);

  /* cancelled before it started */
  bind_start (&a, relay.port, token_a, 5000, cancellable);
  bind_wait (&a);
  g_assert_error (a.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&a.error);
  drain ();
  relay_stop (&relay);
}

/* The circuit ends: the relay answers CLOSED. */
static void
test_closed (void)
{
  Relay relay;
  Bind a, b;
  Sink sink_a;
  g_autoptr(GBytes) datagram = g_bytes_new_static ("hello", 5);
  g_autoptr(GError) error = NULL;

  relay_start (&relay);
  bind_start (&a, relay.port, token_a, 1500, NULL);
  bind_start (&b, relay.port, token_b, 1500, NULL);
  bind_wait (&a);
  bind_wait (&b);
  g_assert_no_error (a.error);
  g_assert_no_error (b.error);
  sink_init (&sink_a, a.path);

  relay.closed = TRUE;
  g_assert_true (natkit_path_send (a.path, datagram, &error));
  while (!sink_a.closed)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (sink_a.error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
  g_assert_nonnull (strstr (sink_a.error->message, "The relay closed the circuit"));
  g_assert_true (natkit_path_is_closed (a.path));

  /* a BIND to an ended circuit: CLOSED instead of BOUND */
  {
    Bind c;

    bind_start (&c, relay.port, token_b, 1500, NULL);
    bind_wait (&c);
    g_assert_error (c.error, NATKIT_ERROR, NATKIT_ERROR_CLOSED);
    g_clear_error (&c.error);
  }

  g_object_unref (a.path);
  g_object_unref (b.path);
  drain ();
  sink_clear (&sink_a);
  relay_stop (&relay);
}

/* The keepalive: BIND every interval; the path fails after the server
 * stops answering for max_missed keepalives. */
static void
test_keepalive (void)
{
  Relay relay;
  Bind a;
  Sink sink;
  guint binds;

  relay_start (&relay);
  bind_start (&a, relay.port, token_a, 1500, NULL);
  bind_wait (&a);
  g_assert_no_error (a.error);
  sink_init (&sink, a.path);
  natkit_relay_udp_path_set_keepalive (NATKIT_RELAY_UDP_PATH (a.path), 50, 3);

  binds = relay.binds;
  spin (400);
  g_assert_false (sink.closed);
  g_assert_cmpuint (relay.binds - binds, >=, 4);

  relay.silent = TRUE;
  while (!sink.closed)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (sink.error, NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT);
  g_assert_nonnull (strstr (sink.error->message, "stopped answering"));

  g_object_unref (a.path);
  drain ();
  sink_clear (&sink);
  relay_stop (&relay);
}

/* Packets for other circuits, from STUN, or broken, are ignored. */
static void
test_noise (void)
{
  static const guint8 stun[20] = { 0x01, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42 };
  static const guint8 junk[] = { 0x4e, 1, 3 };
  Relay relay;
  Bind a, b;
  Sink sink_a;
  g_autoptr(GBytes) datagram = g_bytes_new_static ("real", 4);
  g_autoptr(GError) error = NULL;

  relay_start (&relay);
  bind_start (&a, relay.port, token_a, 1500, NULL);
  bind_start (&b, relay.port, token_b, 1500, NULL);
  bind_wait (&a);
  bind_wait (&b);
  g_assert_no_error (a.error);
  g_assert_no_error (b.error);
  sink_init (&sink_a, a.path);

  relay_send (&relay, relay.end[0], NATKIT_RELAY_DATA, CIRCUIT + 1, (const guint8 *) "x", 1);
  relay_send (&relay, relay.end[0], NATKIT_RELAY_BIND, CIRCUIT, token_a, 16);
  relay_send (&relay, relay.end[0], NATKIT_RELAY_CLOSED, CIRCUIT + 1, NULL, 0);
  relay_send (&relay, relay.end[0], NATKIT_RELAY_DATA, CIRCUIT, NULL, 0);
  g_socket_send_to (relay.socket, relay.end[0], (const char *) stun, sizeof stun, NULL, &error);
  g_assert_no_error (error);
  g_socket_send_to (relay.socket, relay.end[0], (const char *) junk, sizeof junk, NULL, &error);
  g_assert_no_error (error);
  g_assert_true (natkit_path_send (b.path, datagram, &error));

  wait_received (&sink_a, 1);
  g_assert_true (g_bytes_equal (g_ptr_array_index (sink_a.received, 0), datagram));
  g_assert_false (sink_a.closed);

  g_object_unref (a.path);
  g_object_unref (b.path);
  drain ();
  sink_clear (&sink_a);
  relay_stop (&relay);
}

/* DATA before BOUND proves the binding; it is delivered, not lost. */
static void
test_early_data (void)
{
  Relay relay;
  Bind a, b;
  Sink sink_b;
  g_autoptr(GBytes) datagram = g_bytes_new_static ("first", 5);
  g_autoptr(GError) error = NULL;

  relay_start (&relay);
  bind_start (&a, relay.port, token_a, 1500, NULL);
  bind_wait (&a);
  g_assert_no_error (a.error);

  relay.data_not_bound = TRUE;
  bind_start (&b, relay.port, token_b, 1500, NULL);
  while (relay.end[1] == NULL)
    g_main_context_iteration (NULL, TRUE);
  g_assert_false (b.done);
  g_assert_true (natkit_path_send (a.path, datagram, &error));
  bind_wait (&b);
  g_assert_no_error (b.error);
  g_assert_cmpint (b.elapsed_us, <, 250 * 1000);

  sink_init (&sink_b, b.path);
  wait_received (&sink_b, 1);
  g_assert_true (g_bytes_equal (g_ptr_array_index (sink_b.received, 0), datagram));

  g_object_unref (a.path);
  g_object_unref (b.path);
  drain ();
  sink_clear (&sink_b);
  relay_stop (&relay);
}

int
main (int    argc,
      char **argv)
{
  setlocale (LC_ALL, "");
  g_test_init (&argc, &argv, NULL);
  g_test_summary ("The relay plugin's UDP channel: BIND/BOUND, DATA, CLOSED, "
                  "keepalives, against a scripted relay on 127.0.0.1");

  g_test_add_func ("/natkit/relay/udp/exchange", test_exchange);
  g_test_add_func ("/natkit/relay/udp/resend", test_resend);
  g_test_add_func ("/natkit/relay/udp/budget", test_budget);
  g_test_add_func ("/natkit/relay/udp/refused", test_refused);
  g_test_add_func ("/natkit/relay/udp/cancel", test_cancel);
  g_test_add_func ("/natkit/relay/udp/closed", test_closed);
  g_test_add_func ("/natkit/relay/udp/keepalive", test_keepalive);
  g_test_add_func ("/natkit/relay/udp/noise", test_noise);
  g_test_add_func ("/natkit/relay/udp/early-data", test_early_data);

  return g_test_run ();
}
