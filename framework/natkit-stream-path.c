/* natkit-stream-path.c: a datagram path over a byte stream (RFC 4571 framing)
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-stream-path.h"
#include "natkit-stream-path-private.h"

/**
 * NatkitStreamPath:
 *
 * A [class@Natkit.Path] over a byte stream: TCP, TLS, or any other
 * [class@Gio.IOStream].
 *
 * Every datagram travels as one frame, a 2-byte big-endian length followed
 * by the datagram (RFC 4571). This is how natkit carries datagrams over
 * natkit-server's TLS data channel, and how stream-only carriers (TURN over
 * TCP or TLS, TCP simultaneous open) will carry them.
 *
 * The path reads the stream continuously and delivers every complete frame
 * with [signal@Natkit.Path::received]. Sending never blocks: frames wait in
 * a queue that is written in the background. When more than
 * %NATKIT_STREAM_PATH_MAX_QUEUED bytes wait, [method@Natkit.Path.send]
 * refuses the datagram with %G_IO_ERROR_WOULD_BLOCK — like a full UDP
 * socket buffer, the datagram is dropped and the caller may try again later.
 *
 * The path fails (emits [signal@Natkit.Path::closed] with an error) when
 * the stream breaks, when the other end closes it, or on a framing error
 * (a zero-length frame). Closing the path, or dropping its last reference,
 * closes the stream.
 *
 * The largest datagram is 65535 bytes ([property@Natkit.Path:mtu]); empty
 * datagrams cannot be framed and are refused.
 */

/* Room for a whole maximum-size frame plus as much again, so that one read
 * takes many small frames. */
#define READ_BUFFER_SIZE  (2 * (NATKIT_FRAME_HEADER_SIZE + NATKIT_FRAME_MAX_BODY))
/* A write buffer that grew past this is given back once written. */
#define KEEP_WRITE_BUFFER (256 * 1024)
/* How long closing the stream (a TLS close_notify) may take. */
#define CLOSE_TIMEOUT_MS  5000

/* What the asynchronous reads and writes share. They outlive the path
 * object when it is dropped with operations in flight: the stream is closed
 * once the last of them has come back. */
typedef struct
{
  grefcount         ref;
  NatkitStreamPath *path;          /* NULL once the path closed */
  GIOStream        *stream;
  GCancellable     *cancellable;   /* cancels reads and writes */
  GCancellable     *close_cancellable;
  GSource          *close_timeout;
  char             *what;          /* "the tls stream to …", for messages */
  guint8           *buffer;        /* READ_BUFFER_SIZE bytes */
  gsize             buffered;      /* bytes at the start of @buffer */
  GByteArray       *pending;       /* frames waiting for the next write */
  GByteArray       *inflight;      /* frames being written */
  gboolean          reading;
  gboolean          writing;
  gboolean          closing;
} Channel;

struct _NatkitStreamPath
{
  NatkitPath  parent_instance;

  Channel    *channel;
};

G_DEFINE_FINAL_TYPE (NatkitStreamPath, natkit_stream_path, NATKIT_TYPE_PATH)

gssize
_natkit_frame_parse (const guint8  *data,
                     gsize          length,
                     const guint8 **body,
                     gsize         *body_length,
                     GError       **error)
{
  gsize size;

  if (length < NATKIT_FRAME_HEADER_SIZE)
    return 0;

  size = ((gsize) data[0] << 8) | data[1];
  if (size == 0)
    {
      g_set_error_literal (error, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                           "framing error: a zero-length frame (every frame "
                           "carries a datagram of 1 to 65535 bytes)");
      return -1;
    }
  if (length - NATKIT_FRAME_HEADER_SIZE < size)
    return 0;

  *body = data + NATKIT_FRAME_HEADER_SIZE;
  *body_length = size;
  return (gssize) (NATKIT_FRAME_HEADER_SIZE + size);
}

static Channel *
channel_ref (Channel *c)
{
  g_ref_count_inc (&c->ref);
  return c;
}

static void
channel_unref (Channel *c)
{
  if (!g_ref_count_dec (&c->ref))
    return;

  g_assert (c->path == NULL);
  if (c->close_timeout != NULL)
    {
      g_source_destroy (c->close_timeout);
      g_source_unref (c->close_timeout);
    }
  g_clear_object (&c->close_cancellable);
  g_clear_object (&c->cancellable);
  g_clear_object (&c->stream);
  g_free (c->what);
  g_free (c->buffer);
  g_byte_array_unref (c->pending);
  g_byte_array_unref (c->inflight);
  g_free (c);
}

static void
close_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Channel *c = user_data;
  g_autoptr(GError) error = NULL;

  if (!g_io_stream_close_finish (G_IO_STREAM (source), result, &error))
    g_debug ("closing %s: %s", c->what, error->message);
  if (c->close_timeout != NULL)
    {
      g_source_destroy (c->close_timeout);
      g_clear_pointer (&c->close_timeout, g_source_unref);
    }
  channel_unref (c);
}

static gboolean
close_timeout_cb (gpointer user_data)
{
  Channel *c = user_data;

  g_debug ("closing %s takes more than %u ms; giving up", c->what, CLOSE_TIMEOUT_MS);
  g_clear_pointer (&c->close_timeout, g_source_unref);
  g_cancellable_cancel (c->close_cancellable);
  return G_SOURCE_REMOVE;
}

/* Once the path is closed and no read or write is in flight, closes the
 * stream. */
static void
channel_maybe_close (Channel *c)
{
  if (c->path != NULL || c->reading || c->writing || c->closing)
    return;

  c->closing = TRUE;
  c->close_cancellable = g_cancellable_new ();
  c->close_timeout = g_timeout_source_new (CLOSE_TIMEOUT_MS);
  g_source_set_callback (c->close_timeout, close_timeout_cb, c, NULL);
  g_source_set_static_name (c->close_timeout, "[natkit] stream path close timeout");
  g_source_attach (c->close_timeout, g_main_context_get_thread_default ());
  g_io_stream_close_async (c->stream, G_PRIORITY_DEFAULT, c->close_cancellable,
                           close_cb, channel_ref (c));
}

static void read_cb (GObject      *source,
                     GAsyncResult *result,
                     gpointer      user_data);

static void
channel_read (Channel *c)
{
  c->reading = TRUE;
  g_input_stream_read_async (g_io_stream_get_input_stream (c->stream),
                             c->buffer + c->buffered,
                             READ_BUFFER_SIZE - c->buffered,
                             G_PRIORITY_DEFAULT, c->cancellable,
                             read_cb, channel_ref (c));
}

static void
read_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  Channel *c = user_data;
  g_autoptr(NatkitPath) path = NULL;
  g_autoptr(GError) error = NULL;
  gssize n;
  gsize offset = 0;

  n = g_input_stream_read_finish (G_INPUT_STREAM (source), result, &error);
  c->reading = FALSE;

  if (c->path == NULL)
    goto out;

  /* a "received" handler may drop the last reference of the path */
  path = g_object_ref (NATKIT_PATH (c->path));

  if (n < 0)
    {
      g_autoptr(GError) failure =
        g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                     "Could not read from %s: %s", c->what, error->message);

      natkit_path_fail (path, failure);
      goto out;
    }
  if (n == 0)
    {
      g_autoptr(GError) failure =
        g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                     "The other end closed %s", c->what);

      natkit_path_fail (path, failure);
      goto out;
    }

  c->buffered += n;
  while (c->path != NULL)
    {
      const guint8 *body = NULL;
      gsize body_length = 0;
      gssize used;
      g_autoptr(GBytes) datagram = NULL;

      used = _natkit_frame_parse (c->buffer + offset, c->buffered - offset,
                                  &body, &body_length, &error);
      if (used == 0)
        break;
      if (used < 0)
        {
          g_autoptr(GError) failure =
            g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                         "%s is broken: %s", c->what, error->message);

          natkit_path_fail (path, failure);
          break;
        }
      datagram = g_bytes_new (body, body_length);
      offset += used;
      natkit_path_deliver (path, datagram);
    }

  if (c->path != NULL)
    {
      /* keep the beginning of the next frame */
      if (offset > 0)
        {
          memmove (c->buffer, c->buffer + offset, c->buffered - offset);
          c->buffered -= offset;
        }
      channel_read (c);
    }

out:
  channel_maybe_close (c);
  channel_unref (c);
}

static void write_cb (GObject      *source,
                      GAsyncResult *result,
                      gpointer      user_data);

static void
channel_write (Channel *c)
{
  GByteArray *swap = c->inflight;

  c->inflight = c->pending;
  c->pending = swap;
  c->writing = TRUE;
  g_output_stream_write_all_async (g_io_stream_get_output_stream (c->stream),
                                   c->inflight->data, c->inflight->len,
                                   G_PRIORITY_DEFAULT, c->cancellable,
                                   write_cb, channel_ref (c));
}

static void
write_cb (GObject      *source,
          GAsyncResult *result,
          gpointer      user_data)
{
  Channel *c = user_data;
  g_autoptr(GError) error = NULL;
  gboolean ok;

  ok = g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error);
  c->writing = FALSE;

  if (c->inflight->len > KEEP_WRITE_BUFFER)
    {
      g_byte_array_unref (c->inflight);
      c->inflight = g_byte_array_new ();
    }
  else
    g_byte_array_set_size (c->inflight, 0);

  if (c->path != NULL && !ok)
    {
      g_autoptr(NatkitPath) path = g_object_ref (NATKIT_PATH (c->path));
      g_autoptr(GError) failure =
        g_error_new (NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                     "Could not write to %s: %s", c->what, error->message);

      natkit_path_fail (path, failure);
    }
  else if (c->path != NULL && c->pending->len > 0)
    channel_write (c);

  channel_maybe_close (c);
  channel_unref (c);
}

static gboolean
natkit_stream_path_send (NatkitPath  *path,
                         GBytes      *datagram,
                         GError     **error)
{
  NatkitStreamPath *self = NATKIT_STREAM_PATH (path);
  Channel *c = self->channel;
  gsize size;
  const guint8 *data = g_bytes_get_data (datagram, &size);
  guint8 header[NATKIT_FRAME_HEADER_SIZE];

  if (size == 0)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                   "An empty datagram cannot be sent on %s: frames carry "
                   "1 to 65535 bytes", c->what);
      return FALSE;
    }
  /* the base class checked the mtu, which is never above 65535 here */
  g_assert (size <= NATKIT_FRAME_MAX_BODY);

  if (c->pending->len + c->inflight->len + sizeof header + size > NATKIT_STREAM_PATH_MAX_QUEUED)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK,
                   "%s is congested: %u bytes are waiting to be written; "
                   "the datagram was dropped", c->what,
                   c->pending->len + c->inflight->len);
      return FALSE;
    }

  header[0] = size >> 8;
  header[1] = size & 0xff;
  g_byte_array_append (c->pending, header, sizeof header);
  g_byte_array_append (c->pending, data, size);
  if (!c->writing)
    channel_write (c);
  return TRUE;
}

static void
natkit_stream_path_close (NatkitPath *path)
{
  NatkitStreamPath *self = NATKIT_STREAM_PATH (path);
  Channel *c = self->channel;

  if (c == NULL || c->path == NULL)
    return;

  g_debug ("closing %s", c->what);
  c->path = NULL;
  g_cancellable_cancel (c->cancellable);
  channel_maybe_close (c);
}

static void
natkit_stream_path_constructed (GObject *object)
{
  NatkitStreamPath *self = NATKIT_STREAM_PATH (object);
  NatkitPath *path = NATKIT_PATH (object);
  const char *remote = natkit_path_get_remote_address (path);

  G_OBJECT_CLASS (natkit_stream_path_parent_class)->constructed (object);

  self->channel->what = g_strdup_printf ("the %s stream to %s",
                                         natkit_path_get_transport (path),
                                         remote ? remote : "the peer");
}

static void
natkit_stream_path_finalize (GObject *object)
{
  NatkitStreamPath *self = NATKIT_STREAM_PATH (object);

  /* dispose closed the path: the channel is on its way out */
  g_clear_pointer (&self->channel, channel_unref);

  G_OBJECT_CLASS (natkit_stream_path_parent_class)->finalize (object);
}

static void
natkit_stream_path_class_init (NatkitStreamPathClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  NatkitPathClass *path_class = NATKIT_PATH_CLASS (klass);

  object_class->constructed = natkit_stream_path_constructed;
  object_class->finalize = natkit_stream_path_finalize;
  path_class->send = natkit_stream_path_send;
  path_class->close = natkit_stream_path_close;
}

static void
natkit_stream_path_init (NatkitStreamPath *self)
{
  Channel *c = g_new0 (Channel, 1);

  g_ref_count_init (&c->ref);
  c->path = self;
  c->cancellable = g_cancellable_new ();
  c->buffer = g_malloc (READ_BUFFER_SIZE);
  c->pending = g_byte_array_new ();
  c->inflight = g_byte_array_new ();
  self->channel = c;
}

/**
 * natkit_stream_path_new:
 * @stream: a connected stream, such as a [class@Gio.SocketConnection] or a
 *   [class@Gio.TlsConnection] after its handshake
 * @method: the name of the traversal method that made the path, such as
 *   `relay`
 * @transport: what carries the stream: `"tcp"` or `"tls"`
 * @local_address: (nullable): a description of this end, such as
 *   `192.0.2.1:40312/tcp`
 * @remote_address: (nullable): a description of the far end, such as
 *   `198.51.100.9:7000/tls (relay)`
 *
 * Makes a datagram path of @stream, framing each datagram with a 2-byte
 * length (RFC 4571). The path starts reading at once, on the thread-default
 * main context; it owns @stream from now on and closes it when the path
 * closes. Do not read from or write to @stream yourself.
 *
 * Returns: (transfer full) (type Natkit.StreamPath): the new path
 */
NatkitPath *
natkit_stream_path_new (GIOStream  *stream,
                        const char *method,
                        const char *transport,
                        const char *local_address,
                        const char *remote_address)
{
  NatkitStreamPath *self;

  g_return_val_if_fail (G_IS_IO_STREAM (stream), NULL);
  g_return_val_if_fail (method != NULL, NULL);
  g_return_val_if_fail (transport != NULL, NULL);

  self = g_object_new (NATKIT_TYPE_STREAM_PATH,
                       "method", method,
                       "transport", transport,
                       "local-address", local_address,
                       "remote-address", remote_address,
                       "mtu", NATKIT_FRAME_MAX_BODY,
                       NULL);
  self->channel->stream = g_object_ref (stream);
  channel_read (self->channel);
  g_debug ("%s: framing datagrams (RFC 4571)", self->channel->what);
  return NATKIT_PATH (self);
}

/**
 * natkit_stream_path_get_stream:
 * @self: a stream path
 *
 * The stream the path frames its datagrams on: for example, to look at the
 * TLS connection's peer certificate. Reading or writing it breaks the path.
 *
 * Returns: (transfer none): the stream
 */
GIOStream *
natkit_stream_path_get_stream (NatkitStreamPath *self)
{
  g_return_val_if_fail (NATKIT_IS_STREAM_PATH (self), NULL);

  return self->channel->stream;
}
