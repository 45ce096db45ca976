/* natkit-wireguard-plugin.c: WireGuard tunnels for NatkitNetwork
 *
 * Runs `wireguard-go` (userspace WireGuard) and configures it over its
 * UAPI socket; the interface's address and MTU are set with iproute2.
 * Kernel WireGuard (netlink) is detected and named, not driven yet: the
 * plugin says which it uses (NatkitTunnel:get_implementation).
 *
 * Settings read from the environment (for tests and unusual installs):
 * NATKIT_WIREGUARD_GO, the wireguard-go program to run.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <natkit/natkit.h>
#include <glib/gstdio.h>
#include <nettle/curve25519.h>

#include "natkit-wireguard-uapi.h"

#define UAPI_DIR            "/var/run/wireguard"
#define SOCKET_WAIT_MS      5000
#define SOCKET_POLL_MS      20
#define UAPI_TIMEOUT_S      5
#define STOP_WAIT_MS        2000
#define MAX_DEFAULT_NAMES   64

#define NATKIT_TYPE_WIREGUARD (natkit_wireguard_get_type ())
G_DECLARE_FINAL_TYPE (NatkitWireguard, natkit_wireguard, NATKIT, WIREGUARD, GObject)

struct _NatkitWireguard
{
  GObject       parent_instance;

  guint8        private_key[NATKIT_WIREGUARD_KEY_LEN];
  gboolean      have_key;
  char         *public_key;        /* base64 */
  char         *implementation;
  char         *interface_name;
  char         *socket_path;
  guint16       listen_port;
  GSubprocess  *process;
  GOutputStream *output;           /* wireguard-go's output, for error messages */
  GCancellable *wait_cancellable;  /* watching wireguard-go while it runs */
  gboolean      created;           /* the interface is ours to delete */
};

enum
{
  PROP_0,
  PROP_PATH,
};

static void natkit_wireguard_transport_init (NatkitTransportInterface *iface);
static void natkit_wireguard_tunnel_init (NatkitTunnelInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (NatkitWireguard, natkit_wireguard, G_TYPE_OBJECT,
  G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TRANSPORT, natkit_wireguard_transport_init)
  G_IMPLEMENT_INTERFACE (NATKIT_TYPE_TUNNEL, natkit_wireguard_tunnel_init))

static void wireguard_down (NatkitTunnel *tunnel);

static void
natkit_wireguard_finalize (GObject *object)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (object);

  wireguard_down (NATKIT_TUNNEL (self));
  memset (self->private_key, 0, sizeof self->private_key);
  g_free (self->public_key);
  g_free (self->implementation);
  g_free (self->interface_name);
  g_free (self->socket_path);
  G_OBJECT_CLASS (natkit_wireguard_parent_class)->finalize (object);
}

static void
natkit_wireguard_get_property (GObject    *object,
                               guint       prop_id,
                               GValue     *value,
                               GParamSpec *pspec)
{
  switch (prop_id)
    {
    case PROP_PATH:
      g_value_set_object (value, NULL);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
natkit_wireguard_class_init (NatkitWireguardClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = natkit_wireguard_finalize;
  object_class->get_property = natkit_wireguard_get_property;
  g_object_class_override_property (object_class, PROP_PATH, "path");
}

static gboolean
kernel_wireguard_present (void)
{
  /* the module registers the "wireguard" generic netlink family; its sysfs
   * folder is the cheap sign of it */
  return g_file_test ("/sys/module/wireguard", G_FILE_TEST_IS_DIR);
}

static void
natkit_wireguard_init (NatkitWireguard *self)
{
  self->implementation = g_strdup (kernel_wireguard_present () ?
    "wireguard-go (userspace; kernel WireGuard is present but natkit does not drive it yet)" :
    "wireguard-go (userspace; this kernel has no WireGuard)");
}

/* ---- NatkitTransport: a network, not one path ---------------------------- */

static gboolean
wireguard_attach (NatkitTransport  *transport,
                  NatkitPath       *path,
                  GError          **error)
{
  g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_APPLICABLE,
               "The wireguard transport carries a whole network, not one path: "
               "join one with natkit_manager_join_network_async()");
  return FALSE;
}

static void
wireguard_detach (NatkitTransport *transport)
{
}

static void
natkit_wireguard_transport_init (NatkitTransportInterface *iface)
{
  iface->attach = wireguard_attach;
  iface->detach = wireguard_detach;
}

/* ---- keys ------------------------------------------------------------------ */

static void
set_key (NatkitWireguard *self,
         const guint8     private_key[NATKIT_WIREGUARD_KEY_LEN])
{
  guint8 public_key[NATKIT_WIREGUARD_KEY_LEN];

  memcpy (self->private_key, private_key, NATKIT_WIREGUARD_KEY_LEN);
  /* RFC 7748 clamping, as `wg genkey` does */
  self->private_key[0] &= 248;
  self->private_key[31] = (self->private_key[31] & 127) | 64;
  curve25519_mul_g (public_key, self->private_key);
  g_free (self->public_key);
  self->public_key = g_base64_encode (public_key, sizeof public_key);
  self->have_key = TRUE;
}

static gboolean
wireguard_load_key (NatkitTunnel  *tunnel,
                    const char    *filename,
                    GError       **error)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);
  g_autofree char *contents = NULL;
  g_autofree char *dir = NULL;
  g_autoptr(GError) local = NULL;
  guint8 key[NATKIT_WIREGUARD_KEY_LEN];
  GStatBuf st;

  if (g_file_get_contents (filename, &contents, NULL, &local))
    {
      if (g_stat (filename, &st) == 0 && (st.st_mode & 077) != 0)
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                       "The WireGuard key %s can be read by others (mode %03o): "
                       "make it private with “chmod 600 %s”", filename,
                       (guint) (st.st_mode & 0777), filename);
          return FALSE;
        }
      g_strstrip (contents);
      if (!natkit_wireguard_key_from_base64 (contents, key))
        {
          g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                       "The WireGuard key %s is not a base64 key of 32 bytes: "
                       "remove it to make a new one", filename);
          return FALSE;
        }
      set_key (self, key);
      memset (key, 0, sizeof key);
      g_strlcpy (contents, "", 1);
      return TRUE;
    }
  if (!g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "Cannot read the WireGuard key: %s", local->message);
      return FALSE;
    }

  if (getrandom (key, sizeof key, 0) != sizeof key)
    {
      g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                   "Cannot make a WireGuard key: no randomness (%s)", g_strerror (errno));
      return FALSE;
    }
  set_key (self, key);
  memset (key, 0, sizeof key);
  {
    g_autofree char *text = g_base64_encode (self->private_key, NATKIT_WIREGUARD_KEY_LEN);
    g_autofree char *line = g_strconcat (text, "\n", NULL);
    int fd;

    dir = g_path_get_dirname (filename);
    if (g_mkdir_with_parents (dir, 0700) != 0)
      {
        g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                     "Cannot make the folder %s for the WireGuard key: %s", dir,
                     g_strerror (errno));
        return FALSE;
      }
    fd = g_open (filename, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write (fd, line, strlen (line)) != (gssize) strlen (line))
      {
        int saved = errno;

        if (fd >= 0)
          {
            close (fd);
            g_unlink (filename);
          }
        g_set_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY,
                     "Cannot save the WireGuard key to %s: %s", filename, g_strerror (saved));
        return FALSE;
      }
    close (fd);
    memset (text, 0, strlen (text));
    memset (line, 0, strlen (line));
  }
  g_debug ("made a new WireGuard key pair in %s", filename);
  return TRUE;
}

static const char *
wireguard_get_public_key (NatkitTunnel *tunnel)
{
  return NATKIT_WIREGUARD (tunnel)->public_key;
}

static const char *
wireguard_get_implementation (NatkitTunnel *tunnel)
{
  return NATKIT_WIREGUARD (tunnel)->implementation;
}

static const char *
wireguard_get_interface_name (NatkitTunnel *tunnel)
{
  return NATKIT_WIREGUARD (tunnel)->interface_name;
}

static guint16
wireguard_get_listen_port (NatkitTunnel *tunnel)
{
  return NATKIT_WIREGUARD (tunnel)->listen_port;
}

/* ---- UAPI transactions -------------------------------------------------------- */

typedef struct
{
  char             *request;
  GSocketConnection *connection;
  GDataInputStream *in;
  GString          *reply;
  guint             timeout_id;
  GCancellable     *cancellable;
  gboolean          timed_out;
} UapiCall;

static void
uapi_call_free (gpointer data)
{
  UapiCall *c = data;

  g_clear_handle_id (&c->timeout_id, g_source_remove);
  if (c->connection)
    g_io_stream_close (G_IO_STREAM (c->connection), NULL, NULL);
  g_clear_object (&c->in);
  g_clear_object (&c->connection);
  g_clear_object (&c->cancellable);
  /* requests carry the private key */
  if (c->request)
    memset (c->request, 0, strlen (c->request));
  g_free (c->request);
  g_string_free (c->reply, TRUE);
  g_free (c);
}

static void
uapi_fail (GTask  *task,
           GError *error)
{
  UapiCall *c = g_task_get_task_data (task);
  NatkitWireguard *self = g_task_get_source_object (task);

  if (c->timed_out)
    {
      g_clear_error (&error);
      error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                           "wireguard-go did not answer on %s within %d s",
                           self->socket_path, UAPI_TIMEOUT_S);
    }
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void
uapi_line_cb (GObject      *source,
              GAsyncResult *result,
              gpointer      user_data)
{
  GTask *task = user_data;
  UapiCall *c = g_task_get_task_data (task);
  GError *error = NULL;
  gsize len = 0;
  g_autofree char *line = g_data_input_stream_read_line_finish (G_DATA_INPUT_STREAM (source),
                                                                result, &len, &error);

  if (line == NULL)
    {
      if (error == NULL)
        error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                             "wireguard-go closed its UAPI socket mid-reply");
      uapi_fail (task, error);
      return;
    }
  if (len == 0)
    {
      g_task_return_pointer (task, g_strdup (c->reply->str), g_free);
      g_object_unref (task);
      return;
    }
  if (c->reply->len + len + 1 > NATKIT_WIREGUARD_REPLY_MAX)
    {
      uapi_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                    "wireguard-go's reply is longer than %d bytes",
                                    NATKIT_WIREGUARD_REPLY_MAX));
      return;
    }
  g_string_append_len (c->reply, line, len);
  g_string_append_c (c->reply, '\n');
  g_data_input_stream_read_line_async (c->in, G_PRIORITY_DEFAULT, c->cancellable,
                                       uapi_line_cb, task);
}

static void
uapi_written_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  GTask *task = user_data;
  UapiCall *c = g_task_get_task_data (task);
  GError *error = NULL;

  if (!g_output_stream_write_all_finish (G_OUTPUT_STREAM (source), result, NULL, &error))
    {
      uapi_fail (task, error);
      return;
    }
  c->in = g_data_input_stream_new (g_io_stream_get_input_stream (G_IO_STREAM (c->connection)));
  g_data_input_stream_set_newline_type (c->in, G_DATA_STREAM_NEWLINE_TYPE_LF);
  g_data_input_stream_read_line_async (c->in, G_PRIORITY_DEFAULT, c->cancellable,
                                       uapi_line_cb, task);
}

static void
uapi_connected_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  GTask *task = user_data;
  UapiCall *c = g_task_get_task_data (task);
  GError *error = NULL;

  c->connection = g_socket_client_connect_finish (G_SOCKET_CLIENT (source), result, &error);
  if (c->connection == NULL)
    {
      uapi_fail (task, error);
      return;
    }
  g_output_stream_write_all_async (g_io_stream_get_output_stream (G_IO_STREAM (c->connection)),
                                   c->request, strlen (c->request), G_PRIORITY_DEFAULT,
                                   c->cancellable, uapi_written_cb, task);
}

static gboolean
uapi_timeout_cb (gpointer user_data)
{
  UapiCall *c = user_data;

  c->timeout_id = 0;
  c->timed_out = TRUE;
  g_cancellable_cancel (c->cancellable);
  return G_SOURCE_REMOVE;
}

static void
uapi_cancelled_cb (GCancellable *cancellable,
                   gpointer      user_data)
{
  g_cancellable_cancel (user_data);
}

/* Sends @request (ending with an empty line), returns the reply's text. */
static void
uapi_call_async (NatkitWireguard     *self,
                 char                *request,   /* transfer full */
                 GCancellable        *cancellable,
                 GAsyncReadyCallback  callback,
                 gpointer             user_data)
{
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  UapiCall *c = g_new0 (UapiCall, 1);
  g_autoptr(GSocketClient) client = g_socket_client_new ();
  g_autoptr(GSocketAddress) address = NULL;

  g_task_set_source_tag (task, uapi_call_async);
  g_task_set_name (task, "natkit-wireguard UAPI");
  c->request = request;
  c->reply = g_string_new (NULL);
  c->cancellable = g_cancellable_new ();
  g_task_set_task_data (task, c, uapi_call_free);
  if (self->socket_path == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "The WireGuard interface is down");
      g_object_unref (task);
      return;
    }
  if (cancellable)
    g_cancellable_connect (cancellable, G_CALLBACK (uapi_cancelled_cb),
                           g_object_ref (c->cancellable), g_object_unref);
  c->timeout_id = g_timeout_add_seconds (UAPI_TIMEOUT_S, uapi_timeout_cb, c);
  address = g_unix_socket_address_new (self->socket_path);
  g_socket_client_connect_async (client, G_SOCKET_CONNECTABLE (address), c->cancellable,
                                 uapi_connected_cb, task);
}

static char *
uapi_call_finish (NatkitWireguard  *self,
                  GAsyncResult     *result,
                  GError          **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- bringing the interface up -------------------------------------------------- */

typedef struct
{
  char    *address;
  guint    prefix;
  guint    mtu;
  guint    poll_id;
  gint64   deadline;
  guint    step;
} UpData;

static void
up_data_free (gpointer data)
{
  UpData *d = data;

  g_clear_handle_id (&d->poll_id, g_source_remove);
  g_free (d->address);
  g_free (d);
}

static char *
process_output (NatkitWireguard *self)
{
  gsize len;
  const char *data;

  if (!G_IS_MEMORY_OUTPUT_STREAM (self->output))
    return g_strdup ("");
  len = g_memory_output_stream_get_data_size (G_MEMORY_OUTPUT_STREAM (self->output));
  data = g_memory_output_stream_get_data (G_MEMORY_OUTPUT_STREAM (self->output));
  if (len > 400)
    {
      data += len - 400;
      len = 400;
    }
  return g_strstrip (g_strndup (data ? data : "", len));
}

static void
up_fail (GTask  *task,
         GError *error)
{
  wireguard_down (NATKIT_TUNNEL (g_task_get_source_object (task)));
  g_task_return_error (task, error);
  g_object_unref (task);
}

static void up_step (GTask *task);

static void
ip_done_cb (GObject      *source,
            GAsyncResult *result,
            gpointer      user_data)
{
  GTask *task = user_data;
  UpData *d = g_task_get_task_data (task);
  NatkitWireguard *self = g_task_get_source_object (task);
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  GError *error = NULL;

  if (!g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, &out, &err, &error))
    {
      up_fail (task, error);
      return;
    }
  if (!g_subprocess_get_successful (G_SUBPROCESS (source)))
    {
      g_strstrip (err);
      if (d->step == 3 && (strstr (err, "File exists") || strstr (err, "already")))
        error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                             "The address %s is already in use on this host (%s): pick "
                             "another network with --network", d->address, err);
      else
        error = g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                             "Configuring %s with ip failed: %s", self->interface_name, err);
      up_fail (task, error);
      return;
    }
  up_step (task);
}

static void
run_ip (GTask              *task,
        const char * const *argv)
{
  GError *error = NULL;
  g_autoptr(GSubprocess) ip = g_subprocess_newv (argv, G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                                       G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);

  if (ip == NULL)
    {
      g_prefix_error (&error, "Cannot run ip (install iproute2): ");
      up_fail (task, error);
      return;
    }
  g_subprocess_communicate_utf8_async (ip, NULL, g_task_get_cancellable (task), ip_done_cb,
                                       task);
}

static void
uapi_get_port_cb (GObject      *source,
                  GAsyncResult *result,
                  gpointer      user_data)
{
  GTask *task = user_data;
  NatkitWireguard *self = g_task_get_source_object (task);
  GError *error = NULL;
  g_autofree char *reply = uapi_call_finish (self, result, &error);
  g_autoptr(GVariant) peers = NULL;

  if (reply == NULL ||
      (peers = natkit_wireguard_uapi_parse_get (reply, strlen (reply), &self->listen_port,
                                                &error)) == NULL)
    {
      up_fail (task, error);
      return;
    }
  if (self->listen_port == 0)
    {
      up_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                  "wireguard-go did not say which UDP port it listens on"));
      return;
    }
  up_step (task);
}

static void
uapi_set_key_cb (GObject      *source,
                 GAsyncResult *result,
                 gpointer      user_data)
{
  GTask *task = user_data;
  NatkitWireguard *self = g_task_get_source_object (task);
  GError *error = NULL;
  g_autofree char *reply = uapi_call_finish (self, result, &error);

  if (reply == NULL || !natkit_wireguard_uapi_check_errno (reply, strlen (reply), &error))
    {
      up_fail (task, error);
      return;
    }
  up_step (task);
}

static void
up_step (GTask *task)
{
  NatkitWireguard *self = g_task_get_source_object (task);
  UpData *d = g_task_get_task_data (task);
  g_autofree char *mtu = g_strdup_printf ("%u", d->mtu);
  g_autofree char *cidr = g_strdup_printf ("%s/%u", d->address, d->prefix);

  switch (d->step++)
    {
    case 0:
      {
        g_autofree char *hex = natkit_wireguard_key_to_hex (self->private_key);

        /* listen_port 0: wireguard-go picks one, and says which below */
        uapi_call_async (self, g_strdup_printf ("set=1\nprivate_key=%s\nlisten_port=0\n"
                                                "replace_peers=true\n\n", hex),
                         g_task_get_cancellable (task), uapi_set_key_cb, task);
        memset (hex, 0, strlen (hex));
      }
      break;
    case 1:
      uapi_call_async (self, g_strdup ("get=1\n\n"), g_task_get_cancellable (task),
                       uapi_get_port_cb, task);
      break;
    case 2:
      {
        const char *argv[] = { "ip", "link", "set", "dev", self->interface_name, "mtu", mtu,
                               NULL };

        run_ip (task, argv);
      }
      break;
    case 3:
      {
        const char *argv[] = { "ip", "address", "add", cidr, "dev", self->interface_name,
                               NULL };

        run_ip (task, argv);
      }
      break;
    case 4:
      {
        const char *argv[] = { "ip", "link", "set", "dev", self->interface_name, "up", NULL };

        run_ip (task, argv);
      }
      break;
    default:
      g_debug ("%s is up: %s on UDP port %u of 127.0.0.1 (%s)", self->interface_name, cidr,
               self->listen_port, self->implementation);
      g_task_return_boolean (task, TRUE);
      g_object_unref (task);
      break;
    }
}

static void
process_exited_cb (GObject      *source,
                   GAsyncResult *result,
                   gpointer      user_data)
{
  NatkitWireguard *self = user_data;
  g_autoptr(GError) error = NULL;
  g_autofree char *output = NULL;
  g_autofree char *reason = NULL;
  GSubprocess *process = G_SUBPROCESS (source);

  if (!g_subprocess_wait_finish (process, result, &error))
    {
      g_object_unref (self);
      return;
    }
  if (self->process == process)
    {
      output = process_output (self);
      if (g_subprocess_get_if_signaled (process))
        reason = g_strdup_printf ("wireguard-go (%s) was killed by signal %d%s%s",
                                  self->interface_name, g_subprocess_get_term_sig (process),
                                  *output ? ": " : "", output);
      else
        reason = g_strdup_printf ("wireguard-go (%s) exited with status %d%s%s",
                                  self->interface_name, g_subprocess_get_exit_status (process),
                                  *output ? ": " : "", output);
      g_debug ("%s", reason);
      g_clear_object (&self->process);
      wireguard_down (NATKIT_TUNNEL (self));
      g_signal_emit_by_name (self, "stopped", reason);
    }
  g_object_unref (self);
}

static gboolean
socket_poll_cb (gpointer user_data)
{
  GTask *task = user_data;
  NatkitWireguard *self = g_task_get_source_object (task);
  UpData *d = g_task_get_task_data (task);

  if (g_task_return_error_if_cancelled (task))
    {
      d->poll_id = 0;
      wireguard_down (NATKIT_TUNNEL (self));
      g_object_unref (task);
      return G_SOURCE_REMOVE;
    }
  if (self->process && g_subprocess_get_identifier (self->process) == NULL)
    {
      g_autofree char *output = process_output (self);

      d->poll_id = 0;
      up_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_FAILED,
                                  "wireguard-go stopped before %s was up%s%s",
                                  self->interface_name, *output ? ": " : " (it said nothing)",
                                  output));
      return G_SOURCE_REMOVE;
    }
  if (g_file_test (self->socket_path, G_FILE_TEST_EXISTS))
    {
      d->poll_id = 0;
      self->created = TRUE;
      self->wait_cancellable = g_cancellable_new ();
      g_subprocess_wait_async (self->process, self->wait_cancellable, process_exited_cb,
                               g_object_ref (self));
      up_step (task);
      return G_SOURCE_REMOVE;
    }
  if (g_get_monotonic_time () > d->deadline)
    {
      d->poll_id = 0;
      up_fail (task, g_error_new (NATKIT_ERROR, NATKIT_ERROR_TIMED_OUT,
                                  "wireguard-go did not create %s within %d s",
                                  self->socket_path, SOCKET_WAIT_MS / 1000));
      return G_SOURCE_REMOVE;
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
interface_exists (const char *name)
{
  g_autofree char *sys = g_build_filename ("/sys/class/net", name, NULL);
  g_autofree char *sock = g_strdup_printf (UAPI_DIR "/%s.sock", name);

  return g_file_test (sys, G_FILE_TEST_EXISTS) || g_file_test (sock, G_FILE_TEST_EXISTS);
}

/* The interface that already has @address, or NULL. */
static char *
address_owner (const char *address)
{
  struct ifaddrs *list = NULL;
  struct in_addr want;
  char *owner = NULL;

  if (inet_pton (AF_INET, address, &want) != 1 || getifaddrs (&list) != 0)
    return NULL;
  for (struct ifaddrs *i = list; i != NULL && owner == NULL; i = i->ifa_next)
    if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
        ((struct sockaddr_in *) i->ifa_addr)->sin_addr.s_addr == want.s_addr)
      owner = g_strdup (i->ifa_name);
  freeifaddrs (list);
  return owner;
}

static gboolean
valid_interface_name (const char *name)
{
  gsize len = strlen (name);

  if (len == 0 || len > 15 || g_str_equal (name, ".") || g_str_equal (name, ".."))
    return FALSE;
  for (gsize i = 0; i < len; i++)
    if (!g_ascii_isalnum (name[i]) && name[i] != '-' && name[i] != '_' && name[i] != '.')
      return FALSE;
  return TRUE;
}

/* In the child, before exec: should this process die without stopping
 * it (SIGKILL, a crash), wireguard-go gets SIGTERM and removes its
 * interface — nothing is left behind. */
static void
child_setup (gpointer user_data)
{
  prctl (PR_SET_PDEATHSIG, SIGTERM);
}

static void
wireguard_up_async (NatkitTunnel        *tunnel,
                    const char          *interface_name,
                    const char          *address,
                    guint                prefix,
                    guint                mtu,
                    GCancellable        *cancellable,
                    GAsyncReadyCallback  callback,
                    gpointer             user_data)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  UpData *d = g_new0 (UpData, 1);
  g_autofree char *program = NULL;
  g_autoptr(GSubprocessLauncher) launcher = NULL;
  const char *override = g_getenv ("NATKIT_WIREGUARD_GO");
  GError *error = NULL;
  int fd;

  g_task_set_source_tag (task, wireguard_up_async);
  g_task_set_name (task, "natkit-wireguard up");
  d->address = g_strdup (address);
  d->prefix = prefix;
  d->mtu = mtu;
  g_task_set_task_data (task, d, up_data_free);

  if (!self->have_key || self->process)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "The WireGuard tunnel has no key yet, or is up already");
      g_object_unref (task);
      return;
    }
  program = override && *override ? g_strdup (override) : g_find_program_in_path ("wireguard-go");
  if (program == NULL || !g_file_test (program, G_FILE_TEST_IS_EXECUTABLE))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "wireguard-go was not found%s%s: install the wireguard-go "
                               "package", program ? " at " : " on PATH",
                               program ? program : "");
      g_object_unref (task);
      return;
    }
  fd = open ("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0)
    {
      int saved = errno;

      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "/dev/net/tun is unavailable (%s): WireGuard needs it — load "
                               "the tun module (modprobe tun), run as root or with "
                               "CAP_NET_ADMIN, and in a container pass the device in",
                               g_strerror (saved));
      g_object_unref (task);
      return;
    }
  close (fd);
  {
    g_autofree char *owner = address_owner (address);

    if (owner)
      {
        g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                 "The address %s is already in use on this host (by %s): "
                                 "is another “nat-tool vpn up” running? Otherwise pick "
                                 "another network with --network", address, owner);
        g_object_unref (task);
        return;
      }
  }

  if (interface_name)
    {
      if (!valid_interface_name (interface_name))
        {
          g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                                   "“%s” is not a valid interface name (1 to 15 letters, "
                                   "digits, “-”, “_” or “.”)", interface_name);
          g_object_unref (task);
          return;
        }
      if (interface_exists (interface_name))
        {
          g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                                   "An interface called %s already exists (or its "
                                   "WireGuard socket " UAPI_DIR "/%s.sock does): pick "
                                   "another name with --interface", interface_name,
                                   interface_name);
          g_object_unref (task);
          return;
        }
      self->interface_name = g_strdup (interface_name);
    }
  else
    for (guint i = 0; i < MAX_DEFAULT_NAMES && self->interface_name == NULL; i++)
      {
        g_autofree char *name = g_strdup_printf ("natkit%u", i);

        if (!interface_exists (name))
          self->interface_name = g_steal_pointer (&name);
      }
  if (self->interface_name == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_UNAVAILABLE,
                               "natkit0 to natkit%d are all taken: name the interface "
                               "with --interface", MAX_DEFAULT_NAMES - 1);
      g_object_unref (task);
      return;
    }
  self->socket_path = g_strdup_printf (UAPI_DIR "/%s.sock", self->interface_name);

  launcher = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_PIPE |
                                        G_SUBPROCESS_FLAGS_STDERR_MERGE);
  g_subprocess_launcher_setenv (launcher, "WG_PROCESS_FOREGROUND", "1", TRUE);
  g_subprocess_launcher_setenv (launcher, "LOG_LEVEL", "error", TRUE);
  g_subprocess_launcher_set_child_setup (launcher, child_setup, NULL, NULL);
  self->process = g_subprocess_launcher_spawn (launcher, &error, program, "-f",
                                               self->interface_name, NULL);
  if (self->process == NULL)
    {
      g_prefix_error (&error, "Cannot start wireguard-go (%s): ", program);
      g_clear_pointer (&self->interface_name, g_free);
      g_clear_pointer (&self->socket_path, g_free);
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  g_debug ("started %s for %s (pid %s)", program, self->interface_name,
           g_subprocess_get_identifier (self->process));
  /* its output, for the error message should it stop */
  self->output = g_memory_output_stream_new_resizable ();
  g_output_stream_splice_async (self->output, g_subprocess_get_stdout_pipe (self->process),
                                G_OUTPUT_STREAM_SPLICE_NONE, G_PRIORITY_DEFAULT, NULL,
                                NULL, NULL);
  d->deadline = g_get_monotonic_time () + SOCKET_WAIT_MS * 1000;
  d->poll_id = g_timeout_add (SOCKET_POLL_MS, socket_poll_cb, task);
}

static gboolean
wireguard_up_finish (NatkitTunnel  *tunnel,
                     GAsyncResult  *result,
                     GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ---- peers ----------------------------------------------------------------------- */

static void
set_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;
  GError *error = NULL;
  g_autofree char *reply = uapi_call_finish (NATKIT_WIREGUARD (source), result, &error);

  if (reply == NULL || !natkit_wireguard_uapi_check_errno (reply, strlen (reply), &error))
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static void
wireguard_set_peer_async (NatkitTunnel        *tunnel,
                          const char          *public_key,
                          const char          *endpoint,
                          const char          *allowed_ip,
                          GCancellable        *cancellable,
                          GAsyncReadyCallback  callback,
                          gpointer             user_data)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *hex = natkit_wireguard_key_base64_to_hex (public_key);

  g_task_set_source_tag (task, wireguard_set_peer_async);
  if (hex == NULL || strchr (endpoint, '\n') || strchr (allowed_ip, '\n'))
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "Not a WireGuard peer: key %s, endpoint %s, address %s",
                               public_key, endpoint, allowed_ip);
      g_object_unref (task);
      return;
    }
  uapi_call_async (self, g_strdup_printf ("set=1\npublic_key=%s\nreplace_allowed_ips=true\n"
                                          "endpoint=%s\nallowed_ip=%s\n\n", hex, endpoint,
                                          allowed_ip),
                   cancellable, set_done_cb, task);
}

static gboolean
wireguard_bool_finish (NatkitTunnel  *tunnel,
                       GAsyncResult  *result,
                       GError       **error)
{
  return g_task_propagate_boolean (G_TASK (result), error);
}

static void
wireguard_remove_peer_async (NatkitTunnel        *tunnel,
                             const char          *public_key,
                             GCancellable        *cancellable,
                             GAsyncReadyCallback  callback,
                             gpointer             user_data)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *hex = natkit_wireguard_key_base64_to_hex (public_key);

  g_task_set_source_tag (task, wireguard_remove_peer_async);
  if (hex == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT,
                               "Not a WireGuard key: %s", public_key);
      g_object_unref (task);
      return;
    }
  uapi_call_async (self, g_strdup_printf ("set=1\npublic_key=%s\nremove=true\n\n", hex),
                   cancellable, set_done_cb, task);
}

static void
get_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;
  GError *error = NULL;
  g_autofree char *reply = uapi_call_finish (NATKIT_WIREGUARD (source), result, &error);
  GVariant *peers;
  guint16 port;

  if (reply == NULL ||
      (peers = natkit_wireguard_uapi_parse_get (reply, strlen (reply), &port, &error)) == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, peers, (GDestroyNotify) g_variant_unref);
  g_object_unref (task);
}

static void
wireguard_get_peers_async (NatkitTunnel        *tunnel,
                           GCancellable        *cancellable,
                           GAsyncReadyCallback  callback,
                           gpointer             user_data)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);
  GTask *task = g_task_new (self, cancellable, callback, user_data);

  g_task_set_source_tag (task, wireguard_get_peers_async);
  uapi_call_async (self, g_strdup ("get=1\n\n"), cancellable, get_done_cb, task);
}

static GVariant *
wireguard_get_peers_finish (NatkitTunnel  *tunnel,
                            GAsyncResult  *result,
                            GError       **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ---- down ------------------------------------------------------------------------- */

static void
wireguard_down (NatkitTunnel *tunnel)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);

  if (self->wait_cancellable)
    {
      g_cancellable_cancel (self->wait_cancellable);
      g_clear_object (&self->wait_cancellable);
    }
  if (self->process)
    {
      gint64 deadline = g_get_monotonic_time () + STOP_WAIT_MS * 1000;

      /* wireguard-go removes its interface and socket when it stops */
      g_subprocess_send_signal (self->process, SIGTERM);
      while (g_subprocess_get_identifier (self->process) != NULL &&
             g_get_monotonic_time () < deadline)
        g_usleep (10 * 1000);
      if (g_subprocess_get_identifier (self->process) != NULL)
        {
          g_debug ("wireguard-go did not stop within %d ms: killing it", STOP_WAIT_MS);
          g_subprocess_force_exit (self->process);
          g_subprocess_wait (self->process, NULL, NULL);
        }
      g_clear_object (&self->process);
    }
  if (self->output)
    {
      g_output_stream_close (self->output, NULL, NULL);
      g_clear_object (&self->output);
    }
  if (self->created && self->interface_name)
    {
      g_autofree char *sys = g_build_filename ("/sys/class/net", self->interface_name, NULL);

      if (g_file_test (sys, G_FILE_TEST_EXISTS))
        {
          const char *argv[] = { "ip", "link", "delete", "dev", self->interface_name, NULL };

          g_spawn_sync (NULL, (char **) argv, NULL,
                        G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
                        G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        }
    }
  if (self->created && self->socket_path)
    g_unlink (self->socket_path);
  self->created = FALSE;
  self->listen_port = 0;
  g_clear_pointer (&self->socket_path, g_free);
}

static void
mtu_done_cb (GObject      *source,
             GAsyncResult *result,
             gpointer      user_data)
{
  GTask *task = user_data;
  g_autofree char *err = NULL;
  GError *error = NULL;

  if (!g_subprocess_communicate_utf8_finish (G_SUBPROCESS (source), result, NULL, &err, &error))
    g_task_return_error (task, error);
  else if (!g_subprocess_get_successful (G_SUBPROCESS (source)))
    g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_FAILED,
                             "Setting the MTU with ip failed: %s", g_strstrip (err));
  else
    g_task_return_boolean (task, TRUE);
  g_object_unref (task);
}

static void
wireguard_set_mtu_async (NatkitTunnel        *tunnel,
                         guint                mtu,
                         GCancellable        *cancellable,
                         GAsyncReadyCallback  callback,
                         gpointer             user_data)
{
  NatkitWireguard *self = NATKIT_WIREGUARD (tunnel);
  GTask *task = g_task_new (self, cancellable, callback, user_data);
  g_autofree char *text = g_strdup_printf ("%u", mtu);
  g_autoptr(GSubprocess) ip = NULL;
  GError *error = NULL;

  g_task_set_source_tag (task, wireguard_set_mtu_async);
  if (!self->created || self->interface_name == NULL)
    {
      g_task_return_new_error (task, NATKIT_ERROR, NATKIT_ERROR_CLOSED,
                               "The WireGuard interface is down");
      g_object_unref (task);
      return;
    }
  ip = g_subprocess_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE,
                         &error, "ip", "link", "set", "dev", self->interface_name, "mtu", text,
                         NULL);
  if (ip == NULL)
    {
      g_task_return_error (task, error);
      g_object_unref (task);
      return;
    }
  g_subprocess_communicate_utf8_async (ip, NULL, cancellable, mtu_done_cb, task);
}

static void
natkit_wireguard_tunnel_init (NatkitTunnelInterface *iface)
{
  iface->set_mtu_async = wireguard_set_mtu_async;
  iface->set_mtu_finish = wireguard_bool_finish;
  iface->load_key = wireguard_load_key;
  iface->get_public_key = wireguard_get_public_key;
  iface->get_implementation = wireguard_get_implementation;
  iface->get_interface_name = wireguard_get_interface_name;
  iface->get_listen_port = wireguard_get_listen_port;
  iface->up_async = wireguard_up_async;
  iface->up_finish = wireguard_up_finish;
  iface->set_peer_async = wireguard_set_peer_async;
  iface->set_peer_finish = wireguard_bool_finish;
  iface->remove_peer_async = wireguard_remove_peer_async;
  iface->remove_peer_finish = wireguard_bool_finish;
  iface->get_peers_async = wireguard_get_peers_async;
  iface->get_peers_finish = wireguard_get_peers_finish;
  iface->down = wireguard_down;
}

/* ---- the plugin --------------------------------------------------------------------- */

static gboolean
wireguard_plugin_init (NatkitPlugin  *plugin,
                       GError       **error)
{
  natkit_plugin_register_type (plugin, NATKIT_PLUGIN_KIND_TRANSPORT,
                               NATKIT_TYPE_WIREGUARD, NATKIT_RANK_PRIMARY);
  return TRUE;
}

NATKIT_PLUGIN_DEFINE ("wireguard",
                      "WireGuard virtual networks over natkit connections (wireguard-go)",
                      PACKAGE_VERSION, "LGPL-2.1-or-later",
                      wireguard_plugin_init)
