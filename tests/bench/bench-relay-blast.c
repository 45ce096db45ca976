/* bench-relay-blast.c: datagram throughput through a relay, and natkit-server
 * memory per peer / per circuit
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * One program, several modes (tests/bench/bench_relay.py runs them all and
 * prints the comparison; each mode prints its own figures and a last line
 * "RESULT " + JSON):
 *
 *   natkit SERVER_HOST:TLS_PORT N SIZE
 *       two ephemeral identities register at natkit-server, B reserves, A
 *       opens a circuit to B (tag "bench"); each end binds its own UDP
 *       socket to the circuit (BIND/BOUND, docs/protocol.md section 4),
 *       then N DATA packets of SIZE payload bytes go A -> B, then B -> A.
 *   plain FWD_HOST:PORT N SIZE --b-bind HOST:PORT
 *       the same blast through the plain forwarder below (B's socket is
 *       bound to --b-bind, the forwarder's destination).
 *   turn TURN_HOST:PORT USER PASS N SIZE
 *       the same blast through a TURN server (coturn): A allocates (401,
 *       then long-term credentials), CreatePermission and ChannelBind for
 *       B's address, sends ChannelData; B is a plain UDP socket talking to
 *       the relayed address.  STUN messages are built here (a minimal
 *       RFC 8489/8656 encoder, MESSAGE-INTEGRITY = HMAC-SHA1 with key
 *       MD5(user:realm:pass)).
 *   forwarder LISTEN_PORT DEST_HOST:DEST_PORT [--listen-host H] [--batch B]
 *       the plain UDP forwarder: datagrams from DEST go to the last other
 *       source seen ("A", learnt from its packets), everything else goes to
 *       DEST.  recvmmsg/sendmmsg B at a time (--batch 1: one datagram per
 *       system call pair).  Prints "READY PORT" when listening; SIGTERM
 *       stops it (and prints its counters on stderr).
 *   peers SERVER_HOST:TLS_PORT COUNT [--circuits C] [--reg-window W]
 *       registers COUNT ephemeral identities at natkit-server (at most W
 *       registrations in flight: the server accepts 32 unauthenticated
 *       connections per source address), every even one with a relay
 *       reservation; prints "REGISTERED ok failed seconds keygen-seconds drops"
 *       and waits for a
 *       line on stdin; then opens C circuits (peer 2i+1 -> peer 2i), binds
 *       both ends over UDP and sends one DATA each way on every circuit;
 *       prints "CIRCUITS opened bound delivered seconds failed pairs drops"
 *       (drops: registered peers that lost their control connection so
 *       far; they reconnect by themselves) and waits for a
 *       line on stdin; then exits.  bench_relay.py reads the server's VmRSS
 *       at each pause.
 *
 * Flow control of a blast: at most --window packets (default 64) are in
 * flight (sent and not yet received: sender and receiver are two threads of
 * this process, so the sender sees the receiver's count); when nothing
 * arrives for 5 ms while the window is full, what is in flight is written
 * off as lost.  The figures are then the relay's own capacity, with little
 * loss.  --window 0 sends open loop: --burst packets (default 64), then a
 * pause of --gap-us (default 50 us).  The rate is payload bytes received
 * at the far end over the time from the first packet sent to the last one
 * received.  Each datagram's payload starts with a magic, a run number and
 * its sequence number; duplicates and strays are not counted.
 *
 * Build (bench_relay.py does it, into a temporary folder):
 *   gcc -O2 -Wall -Wextra -o /tmp/bench-relay-blast tests/bench/bench-relay-blast.c \
 *     $(PKG_CONFIG_PATH=_build/meson-uninstalled pkg-config --cflags --libs natkit-1) -lpthread
 * Without natkit (forwarder, plain and turn modes only: no natkit library
 * needed):
 *   gcc -O2 -Wall -Wextra -DNO_NATKIT -o /tmp/bench-relay-blast-nonk \
 *     tests/bench/bench-relay-blast.c $(pkg-config --cflags --libs gio-2.0) -lpthread
 */
#define _GNU_SOURCE
#include <gio/gio.h>
#include <glib-unix.h>
#ifndef NO_NATKIT
#include <natkit/natkit.h>
#endif

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH            64
#define PAYLOAD_MAGIC    0x4e4b424cu   /* "NKBL": a blast packet */
#define PROBE_MAGIC      0x4e4b5052u   /* "NKPR": a priming probe */
#define STALL_NS         (5 * 1000000LL)
#define DRAIN_IDLE_NS    (300 * 1000000LL)
#define SOCKET_BUFFER    (4 << 20)

/* natkit-server UDP data plane (docs/protocol.md section 4.1) */
#define NK_MAGIC         0x4e
#define NK_VERSION       1
#define NK_BIND          1
#define NK_BOUND         2
#define NK_DATA          3
#define NK_CLOSED        4
#define NK_HEADER        8
#define NK_TOKEN         16

/* ------------------------------------------------------------ options */

static int      opt_window = 64;
static int      opt_burst = 64;
static int      opt_gap_us = 50;
static char    *opt_direction = NULL;   /* ab, ba, both */
static char    *opt_b_bind = NULL;
static char    *opt_listen_host = NULL;
static int      opt_batch = BATCH;
static int      opt_circuits = 1000;
static int      opt_reg_window = 12;
static gboolean opt_verbose = FALSE;

static GOptionEntry entries[] = {
  { "window", 0, 0, G_OPTION_ARG_INT, &opt_window,
    "Packets in flight at most (default 64; 0: open loop)", "N" },
  { "burst", 0, 0, G_OPTION_ARG_INT, &opt_burst,
    "Open loop: packets between pauses (default 64)", "N" },
  { "gap-us", 0, 0, G_OPTION_ARG_INT, &opt_gap_us,
    "Open loop: pause after each burst in us (default 50)", "US" },
  { "direction", 0, 0, G_OPTION_ARG_STRING, &opt_direction,
    "ab, ba or both (default both)", "DIR" },
  { "b-bind", 0, 0, G_OPTION_ARG_STRING, &opt_b_bind,
    "plain: the address B binds (the forwarder's destination)", "HOST:PORT" },
  { "listen-host", 0, 0, G_OPTION_ARG_STRING, &opt_listen_host,
    "forwarder: address to listen on (default 127.0.0.1)", "HOST" },
  { "batch", 0, 0, G_OPTION_ARG_INT, &opt_batch,
    "forwarder: datagrams per recvmmsg/sendmmsg (default 64; 1: one at a time)", "N" },
  { "circuits", 0, 0, G_OPTION_ARG_INT, &opt_circuits,
    "peers: circuits to open (default 1000)", "N" },
  { "reg-window", 0, 0, G_OPTION_ARG_INT, &opt_reg_window,
    "peers: registrations (and circuit requests) in flight at most (default 12)", "N" },
  { "verbose", 'v', 0, G_OPTION_ARG_NONE, &opt_verbose, "More output", NULL },
  G_OPTION_ENTRY_NULL
};

/* ------------------------------------------------------------ helpers */

static gint64
now_ns (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
sleep_ns (long ns)
{
  struct timespec ts = { ns / 1000000000L, ns % 1000000000L };

  while (nanosleep (&ts, &ts) < 0 && errno == EINTR)
    ;
}

static void G_GNUC_NORETURN G_GNUC_PRINTF (1, 2)
die (const char *format, ...)
{
  va_list ap;

  va_start (ap, format);
  fprintf (stderr, "bench-relay-blast: ");
  vfprintf (stderr, format, ap);
  fprintf (stderr, "\n");
  va_end (ap);
  exit (1);
}

static void
raise_nofile (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == 0)
    {
      rlim_t want = 1 << 20;
      struct rlimit nl = rl;

      nl.rlim_cur = nl.rlim_max = MAX (rl.rlim_max, want);
      if (setrlimit (RLIMIT_NOFILE, &nl) < 0)   /* not root: up to the hard limit */
        {
          nl.rlim_cur = nl.rlim_max = rl.rlim_max;
          setrlimit (RLIMIT_NOFILE, &nl);
        }
    }
}

/* "HOST:PORT" (or "[V6]:PORT") to a sockaddr */
static gboolean
resolve (const char              *hostport,
         guint16                  default_port,
         struct sockaddr_storage *out,
         socklen_t               *out_len,
         GError                 **error)
{
  g_autoptr(GSocketConnectable) addr = NULL;
  g_autoptr(GSocketAddressEnumerator) en = NULL;
  g_autoptr(GSocketAddress) sa = NULL;

  addr = g_network_address_parse (hostport, default_port, error);
  if (!addr)
    return FALSE;
  en = g_socket_connectable_enumerate (addr);
  sa = g_socket_address_enumerator_next (en, NULL, error);
  if (!sa)
    {
      if (error && !*error)
        g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "%s: no address", hostport);
      return FALSE;
    }
  *out_len = g_socket_address_get_native_size (sa);
  return g_socket_address_to_native (sa, out, sizeof *out, error);
}

static struct sockaddr_storage
must_resolve (const char *hostport,
              socklen_t  *len)
{
  g_autoptr(GError) error = NULL;
  struct sockaddr_storage ss;

  if (!resolve (hostport, 0, &ss, len, &error))
    die ("%s: %s", hostport, error->message);
  return ss;
}

static char *
sockaddr_str (const struct sockaddr *sa,
              socklen_t              len)
{
  g_autoptr(GSocketAddress) a = g_socket_address_new_from_native ((gpointer) sa, len);
  g_autofree char *host = NULL;

  if (!a || !G_IS_INET_SOCKET_ADDRESS (a))
    return g_strdup ("?");
  host = g_inet_address_to_string (g_inet_socket_address_get_address (G_INET_SOCKET_ADDRESS (a)));
  return g_strdup_printf (strchr (host, ':') ? "[%s]:%u" : "%s:%u", host,
                          g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (a)));
}

static void
big_buffers (int fd)
{
  int size = SOCKET_BUFFER;

  /* root may exceed net.core.[rw]mem_max */
  if (setsockopt (fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    setsockopt (fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt (fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
    setsockopt (fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

/* a UDP socket, bound to bind_to (or the wildcard of the family of peer),
 * connected to peer when given */
static int
udp_socket (const struct sockaddr_storage *bind_to,
            socklen_t                      bind_len,
            const struct sockaddr_storage *peer,
            socklen_t                      peer_len,
            gboolean                       big)
{
  int family = bind_to ? bind_to->ss_family : peer ? peer->ss_family : AF_INET;
  int fd = socket (family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct timeval tv = { 0, 20000 };

  if (fd < 0)
    die ("socket: %s", g_strerror (errno));
  if (big)
    big_buffers (fd);
  setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (bind_to && bind (fd, (const struct sockaddr *) bind_to, bind_len) < 0)
    die ("bind: %s", g_strerror (errno));
  if (peer && connect (fd, (const struct sockaddr *) peer, peer_len) < 0)
    die ("connect: %s", g_strerror (errno));
  return fd;
}

static gboolean
wait_readable (int fd,
               int timeout_ms)
{
  struct pollfd p = { fd, POLLIN, 0 };

  return poll (&p, 1, timeout_ms) > 0;
}

/* ------------------------------------------------------------ blast engine */

typedef struct
{
  const char *label;
  int         tx_fd;
  guint8      hdr[32];     /* prepended to every payload (relay framing) */
  gsize       hdr_len;
  int         rx_fd;
  gsize       rx_strip;    /* relay framing in front of the payload at the receiver */
} Lane;

typedef struct
{
  guint64 n;
  gsize   size;
  guint32 run;
  /* results */
  guint64 sent;
  guint64 received;
  guint64 dups;
  guint64 strays;
  guint64 reordered;
  guint64 send_errors;
  guint64 written_off;
  guint64 stalls;
  double  seconds;        /* first send -> last receive */
  double  send_seconds;   /* first send -> last send */
  double  mb_s;           /* payload MB (1e6) received per second */
  double  kpps;
  double  loss;
} Blast;

typedef struct
{
  const Lane  *lane;
  Blast       *blast;
  guint8      *seen;        /* bitmap of sequence numbers */
  guint64      received;    /* atomic */
  gint64       t_first;     /* atomic-ish: written by the receiver only */
  gint64       t_last;
  guint64      max_seq;
  gint         stop;        /* atomic */
} Receiver;

static void
put32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static guint32
get32 (const guint8 *p)
{
  return ((guint32) p[0] << 24) | ((guint32) p[1] << 16) | ((guint32) p[2] << 8) | p[3];
}

static void
put64 (guint8 *p, guint64 v)
{
  put32 (p, v >> 32);
  put32 (p + 4, (guint32) v);
}

static guint64
get64 (const guint8 *p)
{
  return ((guint64) get32 (p) << 32) | get32 (p + 4);
}

static gpointer
receiver_thread (gpointer data)
{
  Receiver *r = data;
  const Lane *lane = r->lane;
  Blast *b = r->blast;
  static __thread guint8 bufs[BATCH][2048];
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  gboolean have_max = FALSE;

  for (int i = 0; i < BATCH; i++)
    {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = sizeof bufs[i];
      memset (&msgs[i], 0, sizeof msgs[i]);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
  while (!g_atomic_int_get (&r->stop))
    {
      int got = recvmmsg (lane->rx_fd, msgs, BATCH, MSG_WAITFORONE, NULL);
      gint64 t;
      guint64 fresh = 0;

      if (got <= 0)
        continue;   /* timeout (SO_RCVTIMEO), ECONNREFUSED, EINTR */
      t = now_ns ();
      for (int i = 0; i < got; i++)
        {
          const guint8 *p = bufs[i] + lane->rx_strip;
          gsize len = msgs[i].msg_len;
          guint64 seq;

          if (len < lane->rx_strip + 16 || get32 (p) != PAYLOAD_MAGIC ||
              get32 (p + 4) != b->run)
            {
              b->strays++;
              continue;
            }
          seq = get64 (p + 8);
          if (seq >= b->n)
            {
              b->strays++;
              continue;
            }
          if (r->seen[seq >> 3] & (1 << (seq & 7)))
            {
              b->dups++;
              continue;
            }
          r->seen[seq >> 3] |= 1 << (seq & 7);
          if (have_max && seq < r->max_seq)
            b->reordered++;
          if (!have_max || seq > r->max_seq)
            r->max_seq = seq;
          have_max = TRUE;
          fresh++;
        }
      if (fresh)
        {
          if (!r->t_first)
            r->t_first = t;
          r->t_last = t;
          __atomic_add_fetch (&r->received, fresh, __ATOMIC_RELEASE);
        }
    }
  return NULL;
}

static void
run_blast (const Lane *lane,
           Blast      *b)
{
  Receiver r = { .lane = lane, .blast = b };
  GThread *thread;
  gsize pkt_len = lane->hdr_len + b->size;
  guint8 *pkts = g_malloc (BATCH * pkt_len);
  struct mmsghdr msgs[BATCH];
  struct iovec iov[BATCH];
  guint64 i = 0, written_off = 0, last_rcv = 0;
  gint64 t0, t_sent, stall_start = 0, idle_since;

  r.seen = g_malloc0 (b->n / 8 + 1);
  for (int k = 0; k < BATCH; k++)
    {
      guint8 *p = pkts + k * pkt_len;

      memcpy (p, lane->hdr, lane->hdr_len);
      for (gsize j = 16; j < b->size; j++)
        p[lane->hdr_len + j] = (guint8) (j * 7 + k);
      put32 (p + lane->hdr_len, PAYLOAD_MAGIC);
      put32 (p + lane->hdr_len + 4, b->run);
      iov[k].iov_base = p;
      iov[k].iov_len = pkt_len;
      memset (&msgs[k], 0, sizeof msgs[k]);
      msgs[k].msg_hdr.msg_iov = &iov[k];
      msgs[k].msg_hdr.msg_iovlen = 1;
    }
  thread = g_thread_new ("receiver", receiver_thread, &r);

  t0 = now_ns ();
  while (i < b->n)
    {
      guint64 room, k;
      int sent;

      if (opt_window > 0)
        {
          guint64 rcv = __atomic_load_n (&r.received, __ATOMIC_ACQUIRE);
          guint64 inflight = i - rcv - MIN (written_off, i - rcv);

          if (inflight >= (guint64) opt_window)
            {
              gint64 t = now_ns ();

              if (rcv != last_rcv || stall_start == 0)
                {
                  last_rcv = rcv;
                  stall_start = t;
                }
              else if (t - stall_start > STALL_NS)
                {
                  /* nothing arrived for a while: what is in flight is lost */
                  written_off = i - rcv;
                  b->stalls++;
                  stall_start = 0;
                  continue;
                }
              sleep_ns (20000);
              continue;
            }
          room = opt_window - inflight;
        }
      else
        room = opt_burst - (i % opt_burst);
      k = MIN (MIN (room, (guint64) BATCH), b->n - i);
      for (guint64 j = 0; j < k; j++)
        put64 ((guint8 *) iov[j].iov_base + lane->hdr_len + 8, i + j);
      sent = sendmmsg (lane->tx_fd, msgs, k, 0);
      if (sent < 0)
        {
          if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR)
            sleep_ns (20000);
          else
            {
              /* e.g. ECONNREFUSED from an ICMP error: skip the packet */
              b->send_errors++;
              i++;
            }
          continue;
        }
      i += sent;
      if (opt_window <= 0 && i % opt_burst == 0 && opt_gap_us > 0)
        sleep_ns (opt_gap_us * 1000L);
    }
  t_sent = now_ns ();
  b->sent = i;

  /* drain: until everything arrived or nothing for DRAIN_IDLE_NS */
  idle_since = now_ns ();
  last_rcv = __atomic_load_n (&r.received, __ATOMIC_ACQUIRE);
  while (last_rcv < b->n)
    {
      guint64 rcv;

      sleep_ns (1000000);
      rcv = __atomic_load_n (&r.received, __ATOMIC_ACQUIRE);
      if (rcv != last_rcv)
        {
          last_rcv = rcv;
          idle_since = now_ns ();
        }
      else if (now_ns () - idle_since > DRAIN_IDLE_NS)
        break;
    }
  g_atomic_int_set (&r.stop, 1);
  g_thread_join (thread);

  b->received = r.received;
  b->written_off = written_off;
  b->send_seconds = (t_sent - t0) / 1e9;
  b->seconds = r.t_last > t0 ? (r.t_last - t0) / 1e9 : 0;
  b->mb_s = b->seconds > 0 ? b->received * (double) b->size / 1e6 / b->seconds : 0;
  b->kpps = b->seconds > 0 ? b->received / 1e3 / b->seconds : 0;
  b->loss = b->sent ? 1.0 - (double) b->received / b->sent : 0;
  g_free (r.seen);
  g_free (pkts);
}

/* sends probes on lane until one arrives (the relay learnt the path) */
static gboolean
prime (const Lane *lane,
       int         timeout_ms)
{
  guint8 pkt[64], buf[2048];
  gint64 deadline = now_ns () + timeout_ms * 1000000LL;

  memcpy (pkt, lane->hdr, lane->hdr_len);
  memset (pkt + lane->hdr_len, 0, 16);
  put32 (pkt + lane->hdr_len, PROBE_MAGIC);
  while (now_ns () < deadline)
    {
      gint64 until = now_ns () + 50000000LL;

      if (send (lane->tx_fd, pkt, lane->hdr_len + 16, 0) < 0 && opt_verbose)
        fprintf (stderr, "  probe %s: %s\n", lane->label, g_strerror (errno));
      while (now_ns () < until)
        {
          ssize_t n;

          if (!wait_readable (lane->rx_fd, 10))
            continue;
          n = recv (lane->rx_fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n >= (ssize_t) (lane->rx_strip + 4) &&
              get32 (buf + lane->rx_strip) == PROBE_MAGIC)
            return TRUE;
        }
    }
  return FALSE;
}

/* swallow whatever is queued (late probes) */
static void
drain_socket (int fd)
{
  guint8 buf[2048];

  while (recv (fd, buf, sizeof buf, MSG_DONTWAIT) >= 0)
    ;
}

static void
blast_json (GString     *json,
            const char  *name,
            const Blast *b)
{
  g_string_append_printf (json,
                          "\"%s\":{\"n\":%" G_GUINT64_FORMAT ",\"size\":%" G_GSIZE_FORMAT
                          ",\"sent\":%" G_GUINT64_FORMAT ",\"received\":%" G_GUINT64_FORMAT
                          ",\"dups\":%" G_GUINT64_FORMAT ",\"strays\":%" G_GUINT64_FORMAT
                          ",\"reordered\":%" G_GUINT64_FORMAT
                          ",\"send_errors\":%" G_GUINT64_FORMAT ",\"stalls\":%" G_GUINT64_FORMAT
                          ",\"seconds\":%.6f,\"send_seconds\":%.6f,\"mb_s\":%.3f,"
                          "\"kpps\":%.3f,\"loss\":%.6f}",
                          name, b->n, b->size, b->sent, b->received, b->dups, b->strays,
                          b->reordered, b->send_errors, b->stalls, b->seconds,
                          b->send_seconds, b->mb_s, b->kpps, b->loss);
}

static void
print_blast (const char  *mode,
             const char  *dir,
             const Blast *b)
{
  printf ("%s %s: %" G_GUINT64_FORMAT " x %" G_GSIZE_FORMAT " B: received %" G_GUINT64_FORMAT
          " (loss %.2f %%, %" G_GUINT64_FORMAT " stalls) in %.3f s (sending %.3f s): "
          "%.1f MB/s, %.1f kpps\n",
          mode, dir, b->sent, b->size, b->received, b->loss * 100, b->stalls, b->seconds,
          b->send_seconds, b->mb_s, b->kpps);
  fflush (stdout);
}

/* runs the blast(s) asked for by --direction over lanes ab and ba; prints
 * the RESULT line (with extra JSON members, if any) */
static int
blast_both (const char *mode,
            Lane       *ab,
            Lane       *ba,
            guint64     n,
            gsize       size,
            const char *extra_json)
{
  const char *dir = opt_direction ? opt_direction : "both";
  gboolean do_ab = g_str_equal (dir, "ab") || g_str_equal (dir, "both");
  gboolean do_ba = g_str_equal (dir, "ba") || g_str_equal (dir, "both");
  g_autoptr(GString) json = g_string_new ("{");
  Blast bab = { .n = n, .size = size, .run = g_random_int () };
  Blast bba = { .n = n, .size = size, .run = g_random_int () };

  if (!do_ab && !do_ba)
    die ("--direction: ab, ba or both");
  g_string_append_printf (json, "\"mode\":\"%s\",\"window\":%d", mode, opt_window);
  if (extra_json && *extra_json)
    g_string_append_printf (json, ",%s", extra_json);
  if (do_ab)
    {
      drain_socket (ab->rx_fd);
      run_blast (ab, &bab);
      print_blast (mode, "A->B", &bab);
      g_string_append_c (json, ',');
      blast_json (json, "ab", &bab);
    }
  if (do_ba)
    {
      drain_socket (ba->rx_fd);
      run_blast (ba, &bba);
      print_blast (mode, "B->A", &bba);
      g_string_append_c (json, ',');
      blast_json (json, "ba", &bba);
    }
  g_string_append_c (json, '}');
  printf ("RESULT %s\n", json->str);
  fflush (stdout);
  return 0;
}

static void
parse_n_size (const char *ns,
              const char *ss,
              guint64    *n,
              gsize      *size)
{
  *n = g_ascii_strtoull (ns, NULL, 10);
  *size = g_ascii_strtoull (ss, NULL, 10);
  if (*n == 0 || *n > 1000000000ULL)
    die ("N must be 1 .. 1e9");
  if (*size < 16 || *size > 1400)
    die ("SIZE must be 16 .. 1400 (one packet in 2048 bytes with any relay framing)");
}

/* ------------------------------------------------------------ forwarder */

static volatile sig_atomic_t stopping;

static void
on_stop_signal (int sig)
{
  (void) sig;
  stopping = 1;
}

static int
mode_forwarder (int    argc,
                char **argv)
{
  struct sockaddr_storage dest, listen_addr, a = { 0 };
  socklen_t dest_len, listen_len, a_len = 0;
  g_autofree char *listen_str = NULL;
  int fd, batch = CLAMP (opt_batch, 1, BATCH);
  static guint8 bufs[BATCH][2048];
  struct sockaddr_storage from[BATCH];
  struct mmsghdr in[BATCH], out[BATCH];
  struct iovec iov[BATCH], oiov[BATCH];
  guint64 to_b = 0, to_a = 0, dropped = 0, send_fail = 0, calls = 0;
  struct sigaction sa = { 0 };
  char *port_end;
  long port;

  if (argc != 4)
    die ("usage: forwarder LISTEN_PORT DEST_HOST:DEST_PORT");
  port = strtol (argv[2], &port_end, 10);
  if (*port_end || port < 0 || port > 65535)
    die ("bad LISTEN_PORT %s", argv[2]);
  dest = must_resolve (argv[3], &dest_len);
  listen_str = g_strdup_printf ("%s:%ld", opt_listen_host ? opt_listen_host :
                                dest.ss_family == AF_INET6 ? "[::1]" : "127.0.0.1", port);
  listen_addr = must_resolve (listen_str, &listen_len);
  fd = udp_socket (&listen_addr, listen_len, NULL, 0, TRUE);
  {
    struct timeval tv = { 0, 200000 };

    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  listen_len = sizeof listen_addr;
  getsockname (fd, (struct sockaddr *) &listen_addr, &listen_len);
  sa.sa_handler = on_stop_signal;
  sigaction (SIGTERM, &sa, NULL);
  sigaction (SIGINT, &sa, NULL);

  for (int i = 0; i < BATCH; i++)
    {
      iov[i].iov_base = bufs[i];
      iov[i].iov_len = sizeof bufs[i];
      memset (&in[i], 0, sizeof in[i]);
      in[i].msg_hdr.msg_iov = &iov[i];
      in[i].msg_hdr.msg_iovlen = 1;
      in[i].msg_hdr.msg_name = &from[i];
    }
  printf ("READY %u\n", ntohs (((struct sockaddr_in *) &listen_addr)->sin_port));
  fflush (stdout);

  while (!stopping)
    {
      int got, nout = 0;

      for (int i = 0; i < batch; i++)
        in[i].msg_hdr.msg_namelen = sizeof from[i];
      if (batch == 1)
        {
          ssize_t r = recvfrom (fd, bufs[0], sizeof bufs[0], 0,
                                (struct sockaddr *) &from[0], &in[0].msg_hdr.msg_namelen);

          got = r < 0 ? -1 : 1;
          if (r >= 0)
            in[0].msg_len = r;
        }
      else
        got = recvmmsg (fd, in, batch, MSG_WAITFORONE, NULL);
      calls++;
      if (got <= 0)
        continue;
      for (int i = 0; i < got; i++)
        {
          gboolean from_dest = in[i].msg_hdr.msg_namelen == dest_len &&
            memcmp (&from[i], &dest, dest_len) == 0;

          memset (&out[nout], 0, sizeof out[nout]);
          oiov[nout].iov_base = bufs[i];
          oiov[nout].iov_len = in[i].msg_len;
          out[nout].msg_hdr.msg_iov = &oiov[nout];
          out[nout].msg_hdr.msg_iovlen = 1;
          if (from_dest)
            {
              if (a_len == 0)
                {
                  dropped++;
                  continue;
                }
              out[nout].msg_hdr.msg_name = &a;
              out[nout].msg_hdr.msg_namelen = a_len;
              to_a++;
            }
          else
            {
              if (in[i].msg_hdr.msg_namelen != a_len ||
                  memcmp (&from[i], &a, a_len) != 0)
                {
                  memcpy (&a, &from[i], in[i].msg_hdr.msg_namelen);
                  a_len = in[i].msg_hdr.msg_namelen;
                }
              out[nout].msg_hdr.msg_name = &dest;
              out[nout].msg_hdr.msg_namelen = dest_len;
              to_b++;
            }
          nout++;
        }
      for (int done = 0; done < nout;)
        {
          int s;

          if (batch == 1)
            s = sendto (fd, oiov[done].iov_base, oiov[done].iov_len, 0,
                        out[done].msg_hdr.msg_name, out[done].msg_hdr.msg_namelen) < 0 ? -1 : 1;
          else
            s = sendmmsg (fd, out + done, nout - done, 0);
          if (s < 0)
            {
              if (errno == EINTR)
                continue;
              send_fail++;
              done++;     /* ENOBUFS, ECONNREFUSED: drop this one */
              continue;
            }
          done += s;
        }
    }
  fprintf (stderr, "forwarder: %" G_GUINT64_FORMAT " to B, %" G_GUINT64_FORMAT " to A, %"
           G_GUINT64_FORMAT " dropped (A unknown), %" G_GUINT64_FORMAT " send failures, %"
           G_GUINT64_FORMAT " receive calls\n", to_b, to_a, dropped, send_fail, calls);
  return 0;
}

/* ------------------------------------------------------------ plain */

static int
mode_plain (int    argc,
            char **argv)
{
  struct sockaddr_storage fwd, bb;
  socklen_t fwd_len, bb_len;
  guint64 n;
  gsize size;
  int fa, fb;
  Lane ab = { .label = "A->B" }, ba = { .label = "B->A" };

  if (argc != 5 || !opt_b_bind)
    die ("usage: plain FWD_HOST:PORT N SIZE --b-bind HOST:PORT");
  fwd = must_resolve (argv[2], &fwd_len);
  bb = must_resolve (opt_b_bind, &bb_len);
  parse_n_size (argv[3], argv[4], &n, &size);
  fa = udp_socket (NULL, 0, &fwd, fwd_len, TRUE);
  fb = udp_socket (&bb, bb_len, &fwd, fwd_len, TRUE);
  ab.tx_fd = fa; ab.rx_fd = fb;
  ba.tx_fd = fb; ba.rx_fd = fa;
  if (!prime (&ab, 5000))
    die ("plain: nothing came through the forwarder at %s from A to B", argv[2]);
  if (!prime (&ba, 5000))
    die ("plain: nothing came through the forwarder at %s from B to A", argv[2]);
  return blast_both ("plain", &ab, &ba, n, size, NULL);
}

/* ------------------------------------------------------------ TURN (coturn) */

#define STUN_COOKIE               0x2112A442u
#define STUN_ALLOCATE             0x0003
#define STUN_REFRESH              0x0004
#define STUN_CREATE_PERMISSION    0x0008
#define STUN_CHANNEL_BIND         0x0009
#define STUN_SUCCESS              0x0100
#define STUN_ERROR                0x0110
#define ATTR_USERNAME             0x0006
#define ATTR_MESSAGE_INTEGRITY    0x0008
#define ATTR_ERROR_CODE           0x0009
#define ATTR_CHANNEL_NUMBER       0x000C
#define ATTR_LIFETIME             0x000D
#define ATTR_XOR_PEER_ADDRESS     0x0012
#define ATTR_REALM                0x0014
#define ATTR_NONCE                0x0015
#define ATTR_XOR_RELAYED_ADDRESS  0x0016
#define ATTR_REQUESTED_TRANSPORT  0x0019
#define ATTR_XOR_MAPPED_ADDRESS   0x0020
#define CHANNEL                   0x4000

typedef struct
{
  guint8 buf[1500];
  gsize  len;
} StunMsg;

typedef struct
{
  int     fd;
  char   *user;
  char   *pass;
  char   *realm;
  char   *nonce;
  guint8  key[16];
  gboolean have_key;
} Turn;

static void
stun_init (StunMsg *m,
           guint16  type)
{
  m->buf[0] = type >> 8;
  m->buf[1] = type;
  m->buf[2] = m->buf[3] = 0;
  put32 (m->buf + 4, STUN_COOKIE);
  for (int i = 8; i < 20; i++)
    m->buf[i] = g_random_int_range (0, 256);
  m->len = 20;
}

static void
stun_set_length (StunMsg *m,
                 gsize    body)
{
  m->buf[2] = body >> 8;
  m->buf[3] = body;
}

static void
stun_add (StunMsg      *m,
          guint16       type,
          const void   *data,
          gsize         len)
{
  gsize padded = (len + 3) & ~3;

  g_assert (m->len + 4 + padded <= sizeof m->buf);
  m->buf[m->len] = type >> 8;
  m->buf[m->len + 1] = type;
  m->buf[m->len + 2] = len >> 8;
  m->buf[m->len + 3] = len;
  memcpy (m->buf + m->len + 4, data, len);
  memset (m->buf + m->len + 4 + len, 0, padded - len);
  m->len += 4 + padded;
  stun_set_length (m, m->len - 20);
}

static void
stun_add_u32 (StunMsg *m,
              guint16  type,
              guint32  v)
{
  guint8 b[4];

  put32 (b, v);
  stun_add (m, type, b, 4);
}

static void
stun_add_xor_addr (StunMsg                      *m,
                   guint16                       type,
                   const struct sockaddr_in     *sin)
{
  guint8 b[8];
  guint16 port = ntohs (sin->sin_port) ^ (STUN_COOKIE >> 16);
  guint32 addr = ntohl (sin->sin_addr.s_addr) ^ STUN_COOKIE;

  b[0] = 0;
  b[1] = 1;   /* IPv4 */
  b[2] = port >> 8;
  b[3] = port;
  put32 (b + 4, addr);
  stun_add (m, type, b, 8);
}

/* appends USERNAME, REALM, NONCE and MESSAGE-INTEGRITY */
static void
stun_add_auth (StunMsg *m,
               Turn    *t)
{
  g_autoptr(GHmac) hmac = NULL;
  guint8 digest[20];
  gsize dlen = sizeof digest;

  stun_add (m, ATTR_USERNAME, t->user, strlen (t->user));
  stun_add (m, ATTR_REALM, t->realm, strlen (t->realm));
  stun_add (m, ATTR_NONCE, t->nonce, strlen (t->nonce));
  /* the length covers MESSAGE-INTEGRITY itself (RFC 8489 14.5) */
  stun_set_length (m, m->len - 20 + 24);
  hmac = g_hmac_new (G_CHECKSUM_SHA1, t->key, sizeof t->key);
  g_hmac_update (hmac, m->buf, m->len);
  g_hmac_get_digest (hmac, digest, &dlen);
  stun_add (m, ATTR_MESSAGE_INTEGRITY, digest, 20);
}

/* the value of attribute type in a response, or NULL */
static const guint8 *
stun_find (const guint8 *msg,
           gsize         len,
           guint16       type,
           gsize        *out_len)
{
  gsize off = 20;

  while (off + 4 <= len)
    {
      guint16 at = (msg[off] << 8) | msg[off + 1];
      gsize al = (msg[off + 2] << 8) | msg[off + 3];

      if (off + 4 + al > len)
        return NULL;
      if (at == type)
        {
          *out_len = al;
          return msg + off + 4;
        }
      off += 4 + ((al + 3) & ~3);
    }
  return NULL;
}

static gboolean
stun_xor_addr (const guint8       *msg,
               gsize               len,
               guint16             type,
               struct sockaddr_in *out)
{
  gsize al;
  const guint8 *v = stun_find (msg, len, type, &al);

  if (!v || al < 8 || v[1] != 1)
    return FALSE;
  memset (out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons (((v[2] << 8) | v[3]) ^ (STUN_COOKIE >> 16));
  out->sin_addr.s_addr = htonl (get32 (v + 4) ^ STUN_COOKIE);
  return TRUE;
}

static char *
stun_string (const guint8 *msg,
             gsize         len,
             guint16       type)
{
  gsize al;
  const guint8 *v = stun_find (msg, len, type, &al);

  return v ? g_strndup ((const char *) v, al) : NULL;
}

/* one request/response exchange with retransmissions; returns the response
 * length (0: no answer), *code = 0 on success or the STUN error code */
static gsize
stun_transact (Turn    *t,
               StunMsg *req,
               guint8  *resp,
               gsize    resp_size,
               int     *code)
{
  int rto = 100;

  for (int attempt = 0; attempt < 7; attempt++, rto = MIN (rto * 2, 1600))
    {
      gint64 deadline = now_ns () + rto * 1000000LL;

      if (send (t->fd, req->buf, req->len, 0) < 0)
        die ("turn: send: %s", g_strerror (errno));
      while (now_ns () < deadline)
        {
          ssize_t n;
          guint16 type;

          if (!wait_readable (t->fd, MAX (1, (deadline - now_ns ()) / 1000000)))
            continue;
          n = recv (t->fd, resp, resp_size, MSG_DONTWAIT);
          if (n < 20 || memcmp (resp + 4, req->buf + 4, 16) != 0)
            continue;
          type = (resp[0] << 8) | resp[1];
          if ((type & 0x0110) == STUN_SUCCESS)
            *code = 0;
          else
            {
              gsize al;
              const guint8 *e = stun_find (resp, n, ATTR_ERROR_CODE, &al);

              *code = e && al >= 4 ? (e[2] & 7) * 100 + e[3] : 600;
            }
          return n;
        }
    }
  return 0;
}

/* request `type` with attributes added by fill(), authenticated, retried on
 * 401 / 438 with the server's realm and nonce */
typedef void (*StunFill) (StunMsg *m, gpointer data);

static gsize
turn_request (Turn       *t,
              guint16     type,
              StunFill    fill,
              gpointer    data,
              guint8     *resp,
              gsize       resp_size,
              const char *what)
{
  for (int tries = 0; tries < 3; tries++)
    {
      StunMsg m;
      int code = 0;
      gsize n;

      stun_init (&m, type);
      fill (&m, data);
      if (t->have_key)
        stun_add_auth (&m, t);
      n = stun_transact (t, &m, resp, resp_size, &code);
      if (n == 0)
        die ("turn: %s: no answer from the server", what);
      if (code == 0)
        return n;
      if (code == 401 || code == 438)
        {
          g_autofree char *realm = stun_string (resp, n, ATTR_REALM);
          g_autofree char *nonce = stun_string (resp, n, ATTR_NONCE);

          if (!nonce || (!realm && !t->realm))
            die ("turn: %s: error %d without realm/nonce", what, code);
          if (code == 401 && t->have_key && tries > 0)
            die ("turn: %s: the server refused the credentials (401)", what);
          if (realm)
            {
              g_autofree char *k = g_strdup_printf ("%s:%s:%s", t->user, realm, t->pass);
              gsize klen = sizeof t->key;
              g_autoptr(GChecksum) md5 = g_checksum_new (G_CHECKSUM_MD5);

              g_checksum_update (md5, (const guchar *) k, strlen (k));
              g_checksum_get_digest (md5, t->key, &klen);
              g_free (t->realm);
              t->realm = g_steal_pointer (&realm);
            }
          g_free (t->nonce);
          t->nonce = g_steal_pointer (&nonce);
          t->have_key = TRUE;
          continue;
        }
      {
        g_autofree char *reason = NULL;
        gsize al;
        const guint8 *e = stun_find (resp, n, ATTR_ERROR_CODE, &al);

        if (e && al > 4)
          reason = g_strndup ((const char *) e + 4, al - 4);
        die ("turn: %s: error %d %s", what, code, reason ? reason : "");
      }
    }
  die ("turn: %s: authentication did not succeed", what);
}

static void
fill_allocate (StunMsg *m, gpointer data)
{
  (void) data;
  stun_add_u32 (m, ATTR_REQUESTED_TRANSPORT, 17u << 24);
  stun_add_u32 (m, ATTR_LIFETIME, 600);
}

static void
fill_permission (StunMsg *m, gpointer data)
{
  stun_add_xor_addr (m, ATTR_XOR_PEER_ADDRESS, data);
}

static void
fill_channel_bind (StunMsg *m, gpointer data)
{
  stun_add_u32 (m, ATTR_CHANNEL_NUMBER, (guint32) CHANNEL << 16);
  stun_add_xor_addr (m, ATTR_XOR_PEER_ADDRESS, data);
}

static void
fill_refresh_zero (StunMsg *m, gpointer data)
{
  (void) data;
  stun_add_u32 (m, ATTR_LIFETIME, 0);
}

static int
mode_turn (int    argc,
           char **argv)
{
  struct sockaddr_storage server;
  socklen_t server_len;
  struct sockaddr_in relayed, mapped, b_addr;
  socklen_t b_len = sizeof b_addr;
  guint8 resp[1500];
  gsize n;
  guint64 count;
  gsize size;
  Turn t = { 0 };
  Lane ab = { .label = "A->B" }, ba = { .label = "B->A" };
  struct sockaddr_storage bind_b;
  socklen_t bind_b_len;
  g_autofree char *rs = NULL, *ms = NULL, *bs = NULL, *extra = NULL;
  gint64 t0, t_alloc, t_ready;
  int fb, ret;

  if (argc != 7)
    die ("usage: turn TURN_HOST:PORT USER PASS N SIZE");
  server = must_resolve (argv[2], &server_len);
  if (server.ss_family != AF_INET)
    die ("turn: IPv4 servers only");
  t.user = argv[3];
  t.pass = argv[4];
  parse_n_size (argv[5], argv[6], &count, &size);

  t.fd = udp_socket (NULL, 0, &server, server_len, TRUE);
  t0 = now_ns ();
  n = turn_request (&t, STUN_ALLOCATE, fill_allocate, NULL, resp, sizeof resp, "Allocate");
  if (!stun_xor_addr (resp, n, ATTR_XOR_RELAYED_ADDRESS, &relayed))
    die ("turn: Allocate answer without XOR-RELAYED-ADDRESS");
  if (!stun_xor_addr (resp, n, ATTR_XOR_MAPPED_ADDRESS, &mapped))
    memset (&mapped, 0, sizeof mapped);
  t_alloc = now_ns ();

  /* B: a plain UDP socket on the server's address family, talking to the
   * relayed address; the server sees it as B's address */
  bind_b = must_resolve ("127.0.0.1:0", &bind_b_len);
  if (((struct sockaddr_in *) &server)->sin_addr.s_addr != htonl (INADDR_LOOPBACK))
    {
      /* same source address as A would use */
      struct sockaddr_storage own;
      socklen_t own_len = sizeof own;

      getsockname (t.fd, (struct sockaddr *) &own, &own_len);
      ((struct sockaddr_in *) &own)->sin_port = 0;
      bind_b = own;
      bind_b_len = own_len;
    }
  {
    struct sockaddr_storage rel;

    memcpy (&rel, &relayed, sizeof relayed);
    fb = udp_socket (&bind_b, bind_b_len, &rel, sizeof relayed, TRUE);
  }
  getsockname (fb, (struct sockaddr *) &b_addr, &b_len);

  turn_request (&t, STUN_CREATE_PERMISSION, fill_permission, &b_addr, resp, sizeof resp,
                "CreatePermission");
  turn_request (&t, STUN_CHANNEL_BIND, fill_channel_bind, &b_addr, resp, sizeof resp,
                "ChannelBind");
  t_ready = now_ns ();

  rs = sockaddr_str ((struct sockaddr *) &relayed, sizeof relayed);
  ms = sockaddr_str ((struct sockaddr *) &mapped, sizeof mapped);
  bs = sockaddr_str ((struct sockaddr *) &b_addr, sizeof b_addr);
  printf ("turn: allocated %s (mapped %s, realm %s) in %.1f ms; permission + channel "
          "0x%04x for B %s after %.1f ms\n", rs, ms, t.realm, (t_alloc - t0) / 1e6,
          CHANNEL, bs, (t_ready - t0) / 1e6);
  fflush (stdout);

  ab.tx_fd = t.fd;
  ab.hdr[0] = CHANNEL >> 8;
  ab.hdr[1] = CHANNEL & 0xff;
  ab.hdr[2] = size >> 8;     /* ChannelData length: the application data */
  ab.hdr[3] = size & 0xff;
  ab.hdr_len = 4;
  ab.rx_fd = fb;
  ab.rx_strip = 0;
  ba.tx_fd = fb;
  ba.hdr_len = 0;
  ba.rx_fd = t.fd;
  ba.rx_strip = 4;
  /* probes are shorter: their ChannelData length must match */
  {
    Lane probe = ab;

    probe.hdr[2] = 0;
    probe.hdr[3] = 16;
    if (!prime (&probe, 5000))
      die ("turn: nothing came through the relay from A to B");
  }
  if (!prime (&ba, 5000))
    die ("turn: nothing came through the relay from B to A");

  extra = g_strdup_printf ("\"relayed\":\"%s\",\"setup_ms\":%.3f", rs, (t_ready - t0) / 1e6);
  ret = blast_both ("turn", &ab, &ba, count, size, extra);

  /* deallocate */
  turn_request (&t, STUN_REFRESH, fill_refresh_zero, NULL, resp, sizeof resp, "Refresh(0)");
  close (fb);
  close (t.fd);
  g_free (t.realm);
  g_free (t.nonce);
  return ret;
}

/* ------------------------------------------------------------ natkit */

#ifndef NO_NATKIT

static void
nk_header (guint8 *p,
           guint8  type,
           guint32 circuit)
{
  p[0] = NK_MAGIC;
  p[1] = NK_VERSION;
  p[2] = type;
  p[3] = 0;
  put32 (p + 4, circuit);
}

/* the UDP endpoint of a circuit's server */
static void
circuit_udp_addr (NatkitRendezvous        *rdv,
                  NatkitRelayCircuit      *c,
                  struct sockaddr_storage *out,
                  socklen_t               *out_len)
{
  g_autoptr(GError) error = NULL;
  const char *host = natkit_relay_circuit_get_server_host (c);
  guint16 port = natkit_relay_circuit_get_udp_port (c);

  if (!port)
    port = natkit_rendezvous_get_udp_port (rdv);
  if (!host)
    host = natkit_rendezvous_get_host (rdv);
  {
    g_autofree char *hp = g_strdup_printf (strchr (host, ':') ? "[%s]:%u" : "%s:%u",
                                           host, port);

    if (!resolve (hp, 0, out, out_len, &error))
      die ("natkit: relay UDP address %s: %s", hp, error->message);
  }
}

static void
bind_packet (NatkitRelayCircuit *c,
             guint8             *pkt)
{
  GBytes *token = natkit_relay_circuit_get_token (c);
  gsize len;
  const guint8 *t = g_bytes_get_data (token, &len);

  if (len != NK_TOKEN)
    die ("natkit: circuit token of %" G_GSIZE_FORMAT " bytes", len);
  nk_header (pkt, NK_BIND, natkit_relay_circuit_get_id (c));
  memcpy (pkt + NK_HEADER, t, NK_TOKEN);
}

/* BIND until BOUND (250 ms, 500 ms, 1 s, ... up to timeout_ms) */
static gboolean
udp_bind_circuit (int                 fd,
                  NatkitRelayCircuit *c,
                  int                 timeout_ms)
{
  guint8 pkt[NK_HEADER + NK_TOKEN], buf[2048];
  gint64 deadline = now_ns () + timeout_ms * 1000000LL;
  int rto = 250;

  bind_packet (c, pkt);
  while (now_ns () < deadline)
    {
      gint64 until = MIN (deadline, now_ns () + rto * 1000000LL);

      send (fd, pkt, sizeof pkt, 0);
      while (now_ns () < until)
        {
          ssize_t n;

          if (!wait_readable (fd, 10))
            continue;
          n = recv (fd, buf, sizeof buf, MSG_DONTWAIT);
          if (n >= NK_HEADER && buf[0] == NK_MAGIC && buf[2] == NK_BOUND &&
              get32 (buf + 4) == natkit_relay_circuit_get_id (c))
            return TRUE;
        }
      rto = MIN (rto * 2, 1000);
    }
  return FALSE;
}

typedef struct
{
  gboolean  done;
  GError   *error;
  gpointer  result;
} Wait;

static void
wait_until (gboolean *flag,
            int       timeout_ms,
            const char *what)
{
  gint64 deadline = now_ns () + timeout_ms * 1000000LL;

  while (!*flag)
    {
      if (now_ns () > deadline)
        die ("natkit: %s: no answer within %d ms", what, timeout_ms);
      g_main_context_iteration (NULL, FALSE) || (sleep_ns (200000), 0);
    }
}

static void
connected_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Wait *w = data;

  natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), res, &w->error);
  w->done = TRUE;
}

static void
lookup_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Wait *w = data;
  gboolean reservation = FALSE;

  if (natkit_rendezvous_lookup_finish (NATKIT_RENDEZVOUS (source), res, &reservation,
                                       &w->error))
    w->result = GINT_TO_POINTER (reservation);
  w->done = TRUE;
}

static void
opened_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Wait *w = data;

  w->result = natkit_rendezvous_open_circuit_finish (NATKIT_RENDEZVOUS (source), res,
                                                     &w->error);
  w->done = TRUE;
}

static void
offered_cb (NatkitRendezvous   *rdv,
            NatkitRelayCircuit *circuit,
            gpointer            data)
{
  Wait *w = data;

  (void) rdv;
  if (!w->result)
    w->result = g_object_ref (circuit);
  w->done = TRUE;
}

typedef struct
{
  Lane   *ab;
  Lane   *ba;
  guint64 n;
  gsize   size;
  char   *extra;
  gboolean done;
  int     ret;
} BlastJob;

static gboolean
job_done_cb (gpointer data)
{
  ((BlastJob *) data)->done = TRUE;
  return G_SOURCE_REMOVE;
}

static gpointer
blast_job_thread (gpointer data)
{
  BlastJob *job = data;

  job->ret = blast_both ("natkit", job->ab, job->ba, job->n, job->size, job->extra);
  g_idle_add (job_done_cb, job);
  return NULL;
}

static int
mode_natkit (int    argc,
             char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitIdentity) ida = NULL, idb = NULL;
  g_autoptr(NatkitRendezvous) ra = NULL, rb = NULL;
  NatkitRelayCircuit *ca, *cb;
  Wait wa = { 0 }, wb = { 0 }, wl = { 0 }, wo = { 0 }, woff = { 0 };
  struct sockaddr_storage ua, ub;
  socklen_t ua_len, ub_len;
  guint64 n;
  gsize size;
  int fa, fb;
  gint64 t0, t_reg, t_res, t_circ, t_bound;
  Lane ab = { .label = "A->B" }, ba = { .label = "B->A" };
  BlastJob job = { 0 };
  guint64 limit;

  if (argc != 5)
    die ("usage: natkit SERVER_HOST:PORT N SIZE");
  parse_n_size (argv[3], argv[4], &n, &size);

  ida = natkit_identity_new_ephemeral (&error);
  if (ida)
    idb = natkit_identity_new_ephemeral (&error);
  if (!ida || !idb)
    die ("natkit: identity: %s", error->message);
  ra = natkit_rendezvous_new (ida, argv[2], &error);
  if (ra)
    rb = natkit_rendezvous_new (idb, argv[2], &error);
  if (!ra || !rb)
    die ("natkit: %s", error->message);

  t0 = now_ns ();
  natkit_rendezvous_set_reserve_relay (rb, TRUE);
  g_signal_connect (rb, "circuit-offered", G_CALLBACK (offered_cb), &woff);
  natkit_rendezvous_connect_async (ra, NULL, connected_cb, &wa);
  natkit_rendezvous_connect_async (rb, NULL, connected_cb, &wb);
  wait_until (&wa.done, 15000, "register A");
  wait_until (&wb.done, 15000, "register B");
  if (wa.error || wb.error)
    die ("natkit: register: %s", (wa.error ? wa.error : wb.error)->message);
  t_reg = now_ns ();

  /* B's reservation is asked for right after it registered: wait for it */
  for (int i = 0;; i++)
    {
      memset (&wl, 0, sizeof wl);
      natkit_rendezvous_lookup_async (ra, natkit_identity_get_peer_id (idb), NULL,
                                      lookup_cb, &wl);
      wait_until (&wl.done, 10000, "lookup");
      if (wl.error)
        die ("natkit: lookup: %s", wl.error->message);
      if (wl.result)
        break;
      if (i > 500)
        die ("natkit: B has no relay reservation after 5 s");
      sleep_ns (10000000);
    }
  t_res = now_ns ();

  natkit_rendezvous_open_circuit_async (ra, natkit_identity_get_peer_id (idb), "bench",
                                        NULL, opened_cb, &wo);
  wait_until (&wo.done, 10000, "open circuit");
  if (wo.error)
    die ("natkit: %s", wo.error->message);
  wait_until (&woff.done, 10000, "circuit offered to B");
  t_circ = now_ns ();
  ca = wo.result;
  cb = woff.result;
  if (natkit_relay_circuit_get_id (ca) != natkit_relay_circuit_get_id (cb))
    fprintf (stderr, "natkit: circuit numbers differ: A %u, B %u\n",
             natkit_relay_circuit_get_id (ca), natkit_relay_circuit_get_id (cb));

  circuit_udp_addr (ra, ca, &ua, &ua_len);
  circuit_udp_addr (rb, cb, &ub, &ub_len);
  fa = udp_socket (NULL, 0, &ua, ua_len, TRUE);
  fb = udp_socket (NULL, 0, &ub, ub_len, TRUE);
  if (!udp_bind_circuit (fa, ca, 5000))
    die ("natkit: A's BIND got no BOUND");
  if (!udp_bind_circuit (fb, cb, 5000))
    die ("natkit: B's BIND got no BOUND");
  t_bound = now_ns ();
  {
    g_autofree char *us = sockaddr_str ((struct sockaddr *) &ua, ua_len);

    printf ("natkit: registered A and B in %.1f ms, B's reservation seen after %.1f ms, "
            "circuit %u open after %.1f ms, both ends bound (UDP %s) after %.1f ms\n",
            (t_reg - t0) / 1e6, (t_res - t0) / 1e6, natkit_relay_circuit_get_id (ca),
            (t_circ - t0) / 1e6, us, (t_bound - t0) / 1e6);
  }
  limit = natkit_relay_circuit_get_byte_limit (ca);
  if (limit && (opt_direction && !g_str_equal (opt_direction, "both") ? 1 : 2) *
      n * (size + NK_HEADER) > limit)
    printf ("natkit: warning: the blast (%" G_GUINT64_FORMAT " bytes) exceeds the circuit's "
            "byte limit (%" G_GUINT64_FORMAT "): start natkit-server with a larger "
            "--circuit-bytes\n", 2 * n * (size + NK_HEADER), limit);
  fflush (stdout);

  ab.tx_fd = fa;
  nk_header (ab.hdr, NK_DATA, natkit_relay_circuit_get_id (ca));
  ab.hdr_len = NK_HEADER;
  ab.rx_fd = fb;
  ab.rx_strip = NK_HEADER;
  ba.tx_fd = fb;
  nk_header (ba.hdr, NK_DATA, natkit_relay_circuit_get_id (cb));
  ba.hdr_len = NK_HEADER;
  ba.rx_fd = fa;
  ba.rx_strip = NK_HEADER;
  if (!prime (&ab, 5000))
    die ("natkit: nothing came through the circuit from A to B");
  if (!prime (&ba, 5000))
    die ("natkit: nothing came through the circuit from B to A");

  /* the blast runs in a thread; the main loop keeps the control
   * connections alive meanwhile */
  job.ab = &ab;
  job.ba = &ba;
  job.n = n;
  job.size = size;
  job.extra = g_strdup_printf ("\"circuit\":%u,\"setup_ms\":%.3f,\"register_ms\":%.3f,"
                               "\"byte_limit\":%" G_GUINT64_FORMAT,
                               natkit_relay_circuit_get_id (ca), (t_bound - t0) / 1e6,
                               (t_reg - t0) / 1e6, limit);
  g_thread_unref (g_thread_new ("blast", blast_job_thread, &job));
  while (!job.done)
    g_main_context_iteration (NULL, TRUE);

  natkit_relay_circuit_close (ca);
  {
    gint64 until = now_ns () + 100000000LL;

    while (now_ns () < until)
      g_main_context_iteration (NULL, FALSE) || (sleep_ns (1000000), 0);
  }
  natkit_rendezvous_close (ra);
  natkit_rendezvous_close (rb);
  g_object_unref (ca);
  g_object_unref (cb);
  g_free (job.extra);
  close (fa);
  close (fb);
  return job.ret;
}

/* ------------------------------------------------------------ peers */

typedef struct _Peers Peers;

typedef struct
{
  Peers              *peers;
  guint               index;
  NatkitIdentity     *identity;
  NatkitRendezvous   *rdv;
  gboolean            registered;
  NatkitRelayCircuit *circuit;   /* initiator: opened; target: offered */
  int                 fd;
} Peer;

struct _Peers
{
  guint    count;
  guint    circuits;
  Peer    *peer;
  guint    next;
  guint    in_flight;
  guint    ok;
  guint    failed;
  guint    shown;
  guint    offered;
  guint    drops;       /* registered peers that lost their connection */
  guint    stdin_lines;
  gboolean stdin_eof;
};

static void peers_register_next (Peers *ps);

static void
peer_registered_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  Peer *p = data;
  Peers *ps = p->peers;
  g_autoptr(GError) error = NULL;

  ps->in_flight--;
  if (natkit_rendezvous_connect_finish (NATKIT_RENDEZVOUS (source), res, &error))
    {
      p->registered = TRUE;
      ps->ok++;
    }
  else
    {
      ps->failed++;
      if (ps->shown++ < 5)
        fprintf (stderr, "peers: peer %u: %s\n", p->index, error->message);
      natkit_rendezvous_close (p->rdv);
    }
  peers_register_next (ps);
}

static void
peer_offered_cb (NatkitRendezvous   *rdv,
                 NatkitRelayCircuit *circuit,
                 gpointer            data)
{
  Peer *p = data;

  (void) rdv;
  if (!p->circuit)
    {
      p->circuit = g_object_ref (circuit);
      p->peers->offered++;
    }
}

static void
peer_registered_notify_cb (GObject    *object,
                           GParamSpec *pspec,
                           gpointer    data)
{
  Peer *p = data;

  (void) pspec;
  if (p->registered && !natkit_rendezvous_is_registered (NATKIT_RENDEZVOUS (object)))
    {
      p->peers->drops++;
      if (opt_verbose)
        fprintf (stderr, "peers: peer %u lost its connection\n", p->index);
    }
}

static void
peers_register_next (Peers *ps)
{
  while (ps->in_flight < (guint) MAX (1, opt_reg_window) && ps->next < ps->count)
    {
      Peer *p = &ps->peer[ps->next++];

      ps->in_flight++;
      natkit_rendezvous_connect_async (p->rdv, NULL, peer_registered_cb, p);
    }
}

/* lines from the harness on stdin: each lets one pause end; at end of
 * file (the harness went away) no pause waits any more */
static gboolean
stdin_cb (gint fd, GIOCondition cond, gpointer data)
{
  Peers *ps = data;
  char buf[256];
  ssize_t n = read (fd, buf, sizeof buf);

  (void) cond;
  if (n <= 0)
    {
      ps->stdin_eof = TRUE;
      return G_SOURCE_REMOVE;
    }
  for (ssize_t i = 0; i < n; i++)
    if (buf[i] == '\n')
      ps->stdin_lines++;
  return G_SOURCE_CONTINUE;
}

static void
wait_stdin (Peers *ps)
{
  while (ps->stdin_lines == 0 && !ps->stdin_eof)
    g_main_context_iteration (NULL, TRUE);
  if (ps->stdin_lines > 0)
    ps->stdin_lines--;
}

typedef struct
{
  Peers *ps;
  Peer  *from;
  guint  i;
} OpenJob;

static guint circ_next, circ_in_flight, circ_opened, circ_failed;
static void circuits_next (Peers *ps);

static void
peer_opened_cb (GObject *source, GAsyncResult *res, gpointer data)
{
  OpenJob *job = data;
  g_autoptr(GError) error = NULL;

  circ_in_flight--;
  job->from->circuit = natkit_rendezvous_open_circuit_finish (NATKIT_RENDEZVOUS (source),
                                                               res, &error);
  if (job->from->circuit)
    circ_opened++;
  else
    {
      circ_failed++;
      if (job->ps->shown++ < 10)
        fprintf (stderr, "peers: circuit %u: %s\n", job->i, error->message);
    }
  circuits_next (job->ps);
  g_free (job);
}

static void
circuits_next (Peers *ps)
{
  while (circ_in_flight < (guint) MAX (1, opt_reg_window) && circ_next < ps->circuits)
    {
      guint i = circ_next++;
      Peer *target = &ps->peer[2 * i], *from = &ps->peer[2 * i + 1];
      OpenJob *job;

      if (!target->registered || !from->registered)
        {
          circ_failed++;
          continue;
        }
      job = g_new0 (OpenJob, 1);
      job->ps = ps;
      job->from = from;
      job->i = i;
      circ_in_flight++;
      natkit_rendezvous_open_circuit_async (from->rdv,
                                            natkit_identity_get_peer_id (target->identity),
                                            "bench", NULL, peer_opened_cb, job);
    }
}

static int
mode_peers (int    argc,
            char **argv)
{
  g_autoptr(GError) error = NULL;
  Peers ps = { 0 };
  gint64 t0, t_keys, t_reg, t_circ;
  guint bound = 0, delivered = 0, pairs = 0;

  if (argc != 4)
    die ("usage: peers SERVER_HOST:PORT COUNT [--circuits C] [--reg-window W]");
  ps.count = g_ascii_strtoull (argv[3], NULL, 10);
  if (ps.count < 2 || ps.count > 1000000)
    die ("COUNT must be 2 .. 1e6");
  ps.circuits = MIN ((guint) MAX (0, opt_circuits), ps.count / 2);
  g_unix_fd_add (0, G_IO_IN | G_IO_HUP, stdin_cb, &ps);

  t0 = now_ns ();
  ps.peer = g_new0 (Peer, ps.count);
  for (guint i = 0; i < ps.count; i++)
    {
      Peer *p = &ps.peer[i];

      p->peers = &ps;
      p->index = i;
      p->fd = -1;
      p->identity = natkit_identity_new_ephemeral (&error);
      if (!p->identity)
        die ("peers: identity: %s", error->message);
      p->rdv = natkit_rendezvous_new (p->identity, argv[2], &error);
      if (!p->rdv)
        die ("peers: %s", error->message);
      g_signal_connect (p->rdv, "notify::registered",
                        G_CALLBACK (peer_registered_notify_cb), p);
      if (i % 2 == 0)
        {
          natkit_rendezvous_set_reserve_relay (p->rdv, TRUE);
          g_signal_connect (p->rdv, "circuit-offered", G_CALLBACK (peer_offered_cb), p);
        }
    }
  t_keys = now_ns ();
  peers_register_next (&ps);
  while (ps.ok + ps.failed < ps.count)
    g_main_context_iteration (NULL, TRUE);
  /* let the reservations (asked right after each registration) complete */
  {
    gint64 until = now_ns () + 500000000LL;

    while (now_ns () < until)
      g_main_context_iteration (NULL, FALSE) || (sleep_ns (1000000), 0);
  }
  t_reg = now_ns ();
  printf ("REGISTERED %u %u %.3f %.3f %u\n", ps.ok, ps.failed, (t_reg - t_keys) / 1e9,
          (t_keys - t0) / 1e9, ps.drops);
  fflush (stdout);
  wait_stdin (&ps);

  /* circuits */
  t_circ = now_ns ();
  circuits_next (&ps);
  while (circ_opened + circ_failed < ps.circuits || circ_in_flight > 0)
    g_main_context_iteration (NULL, TRUE);
  {
    /* the offers travel to the targets' connections */
    gint64 until = now_ns () + 3000000000LL;

    while (ps.offered < circ_opened && now_ns () < until)
      g_main_context_iteration (NULL, FALSE) || (sleep_ns (1000000), 0);
  }

  /* bind both ends of every circuit over UDP, all at once */
  {
    GArray *fds = g_array_new (FALSE, FALSE, sizeof (struct pollfd));
    GPtrArray *who = g_ptr_array_new ();
    gint64 deadline = now_ns () + 10000000000LL, next_send = 0;
    int rto = 250;

    for (guint i = 0; i < ps.circuits; i++)
      {
        Peer *pair[2] = { &ps.peer[2 * i + 1], &ps.peer[2 * i] };

        if (!pair[0]->circuit || !pair[1]->circuit)
          continue;
        pairs++;
        for (int k = 0; k < 2; k++)
          {
            struct sockaddr_storage ua;
            socklen_t ua_len;
            struct pollfd pfd = { -1, POLLIN, 0 };

            circuit_udp_addr (pair[k]->rdv, pair[k]->circuit, &ua, &ua_len);
            pair[k]->fd = udp_socket (NULL, 0, &ua, ua_len, FALSE);
            pfd.fd = pair[k]->fd;
            g_array_append_val (fds, pfd);
            g_ptr_array_add (who, pair[k]);
          }
      }
    /* who[j] is bound when fds[j].fd < 0 … tracked with a bitmap */
    {
      guint8 *is_bound = g_malloc0 (who->len);
      guint left = who->len;

      while (left > 0 && now_ns () < deadline)
        {
          if (now_ns () >= next_send)
            {
              for (guint j = 0; j < who->len; j++)
                if (!is_bound[j])
                  {
                    guint8 pkt[NK_HEADER + NK_TOKEN];
                    Peer *p = g_ptr_array_index (who, j);

                    bind_packet (p->circuit, pkt);
                    send (p->fd, pkt, sizeof pkt, 0);
                  }
              next_send = now_ns () + rto * 1000000LL;
              rto = MIN (rto * 2, 1000);
            }
          if (poll ((struct pollfd *) fds->data, fds->len, 20) <= 0)
            continue;
          for (guint j = 0; j < fds->len; j++)
            {
              struct pollfd *pfd = &g_array_index (fds, struct pollfd, j);
              guint8 buf[2048];
              ssize_t n;

              if (!(pfd->revents & POLLIN))
                continue;
              while ((n = recv (pfd->fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0)
                if (!is_bound[j] && n >= NK_HEADER && buf[0] == NK_MAGIC && buf[2] == NK_BOUND)
                  {
                    is_bound[j] = 1;
                    bound++;
                    left--;
                  }
            }
        }

      /* one DATA each way on every circuit whose two ends are bound */
      for (guint j = 0; j + 1 < who->len; j += 2)
        if (is_bound[j] && is_bound[j + 1])
          for (int k = 0; k < 2; k++)
            {
              Peer *p = g_ptr_array_index (who, j + k);
              guint8 pkt[NK_HEADER + 16];

              nk_header (pkt, NK_DATA, natkit_relay_circuit_get_id (p->circuit));
              memset (pkt + NK_HEADER, 0, 16);
              put32 (pkt + NK_HEADER, PROBE_MAGIC);
              send (p->fd, pkt, sizeof pkt, 0);
            }
      deadline = now_ns () + 2000000000LL;
      {
        guint8 *got = g_malloc0 (who->len);
        guint want = 0;

        for (guint j = 0; j + 1 < who->len; j += 2)
          if (is_bound[j] && is_bound[j + 1])
            want += 2;
        while (delivered < want && now_ns () < deadline)
          {
            if (poll ((struct pollfd *) fds->data, fds->len, 20) <= 0)
              continue;
            for (guint j = 0; j < fds->len; j++)
              {
                struct pollfd *pfd = &g_array_index (fds, struct pollfd, j);
                guint8 buf[2048];
                ssize_t n;

                if (!(pfd->revents & POLLIN))
                  continue;
                while ((n = recv (pfd->fd, buf, sizeof buf, MSG_DONTWAIT)) >= 0)
                  if (!got[j] && n >= NK_HEADER + 4 && buf[2] == NK_DATA &&
                      get32 (buf + NK_HEADER) == PROBE_MAGIC)
                    {
                      got[j] = 1;
                      delivered++;
                    }
              }
          }
        g_free (got);
      }
      g_free (is_bound);
    }
    g_array_free (fds, TRUE);
    g_ptr_array_free (who, TRUE);
  }
  printf ("CIRCUITS %u %u %u %.3f %u %u %u\n", circ_opened, bound / 2, delivered / 2,
          (now_ns () - t_circ) / 1e9, circ_failed, pairs, ps.drops);
  fflush (stdout);
  wait_stdin (&ps);
  /* no orderly teardown of thousands of connections: the server sees them drop */
  fflush (stdout);
  _exit (0);
}

#endif /* NO_NATKIT */

/* ------------------------------------------------------------ main */

int
main (int    argc,
      char **argv)
{
  g_autoptr(GOptionContext) ctx = NULL;
  g_autoptr(GError) error = NULL;
  const char *mode;

  setvbuf (stdout, NULL, _IOLBF, 0);
  prctl (PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);   /* 1 us: short sleeps stay short */
  signal (SIGPIPE, SIG_IGN);
  raise_nofile ();
  ctx = g_option_context_new ("MODE ARGS… — relay throughput and memory (see the source)");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_set_summary (ctx,
    "Modes:\n"
    "  natkit SERVER_HOST:TLS_PORT N SIZE\n"
    "  plain FWD_HOST:PORT N SIZE --b-bind HOST:PORT\n"
    "  turn TURN_HOST:PORT USER PASS N SIZE\n"
    "  forwarder LISTEN_PORT DEST_HOST:DEST_PORT\n"
    "  peers SERVER_HOST:TLS_PORT COUNT [--circuits C]");
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    die ("%s", error->message);
  if (argc < 2)
    die ("give a mode (see --help)");
  mode = argv[1];
  if (g_str_equal (mode, "forwarder"))
    return mode_forwarder (argc, argv);
  if (g_str_equal (mode, "plain"))
    return mode_plain (argc, argv);
  if (g_str_equal (mode, "turn"))
    return mode_turn (argc, argv);
#ifndef NO_NATKIT
  if (g_str_equal (mode, "natkit"))
    return mode_natkit (argc, argv);
  if (g_str_equal (mode, "peers"))
    return mode_peers (argc, argv);
#else
  if (g_str_equal (mode, "natkit") || g_str_equal (mode, "peers"))
    die ("built with -DNO_NATKIT: the %s mode needs natkit", mode);
#endif
  die ("unknown mode %s (see --help)", mode);
}
