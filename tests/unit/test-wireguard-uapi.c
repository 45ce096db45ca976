/* test-wireguard-uapi.c: the wireguard plugin's UAPI replies and keys
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <string.h>

#include "natkit.h"
#include "natkit-wireguard-uapi.h"

/* a reply of wireguard-go 0.0.2023 to get=1, two peers */
static const char reply[] =
  "private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a\n"
  "listen_port=51820\n"
  "public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n"
  "preshared_key=0000000000000000000000000000000000000000000000000000000000000000\n"
  "protocol_version=1\n"
  "endpoint=127.0.0.1:40001\n"
  "last_handshake_time_sec=1700000000\n"
  "last_handshake_time_nsec=5\n"
  "tx_bytes=38333\n"
  "rx_bytes=2224\n"
  "persistent_keepalive_interval=0\n"
  "allowed_ip=100.66.1.2/32\n"
  "public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376\n"
  "endpoint=127.0.0.1:40002\n"
  "last_handshake_time_sec=0\n"
  "tx_bytes=0\n"
  "rx_bytes=0\n"
  "errno=0\n";

static void
test_get (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GVariant) peers = NULL;
  guint16 port = 0;
  guint64 rx, tx;
  gint64 handshake;
  g_autofree char *k1 = NULL;
  guint8 raw[32];
  g_autofree char *hex = NULL;

  peers = natkit_wireguard_uapi_parse_get (reply, strlen (reply), &port, &error);
  g_assert_no_error (error);
  g_assert_nonnull (peers);
  g_assert_cmpuint (port, ==, 51820);
  g_assert_cmpuint (g_variant_n_children (peers), ==, 2);
  hex = g_strdup ("b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33");
  for (guint i = 0; i < 32; i++)
    raw[i] = g_ascii_xdigit_value (hex[2 * i]) << 4 | g_ascii_xdigit_value (hex[2 * i + 1]);
  k1 = g_base64_encode (raw, 32);
  g_assert_true (g_variant_lookup (peers, k1, "(ttx)", &rx, &tx, &handshake));
  g_assert_cmpuint (rx, ==, 2224);
  g_assert_cmpuint (tx, ==, 38333);
  g_assert_cmpint (handshake, ==, 1700000000);
  {
    g_autofree char *back = natkit_wireguard_key_base64_to_hex (k1);

    g_assert_cmpstr (back, ==, hex);
  }
}

static void
test_errno (void)
{
  g_autoptr(GError) error = NULL;
  const char *bad[] = { "", "errno=x\n", "errno=\n", "listen_port=1\n", "errno=99999999999\n" };

  g_assert_true (natkit_wireguard_uapi_check_errno ("errno=0\n", 8, &error));
  g_assert_no_error (error);
  g_assert_false (natkit_wireguard_uapi_check_errno ("errno=22\n", 9, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_FAILED);
  g_assert_nonnull (strstr (error->message, "errno 22"));
  g_clear_error (&error);
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (natkit_wireguard_uapi_check_errno (bad[i], strlen (bad[i]), &error));
      g_assert_nonnull (error);
      g_clear_error (&error);
    }
}

static void
test_get_bad (void)
{
  const char *bad[] = {
    "listen_port=70000\nerrno=0\n",
    "public_key=zz\nerrno=0\n",
    "public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\nrx_bytes=-1\nerrno=0\n",
    "errno=1\n",
    "public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33\n",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr(GError) error = NULL;
      guint16 port;
      g_autoptr(GVariant) peers = natkit_wireguard_uapi_parse_get (bad[i], strlen (bad[i]),
                                                                    &port, &error);

      g_assert_null (peers);
      g_assert_nonnull (error);
    }
}

static void
test_keys (void)
{
  guint8 key[32];

  g_assert_true (natkit_wireguard_key_from_base64 ("cO0cl0Temp/1A4B/xH2umGjGubGPu0hRxmKLyFXTHjE=", key));
  g_assert_false (natkit_wireguard_key_from_base64 ("cO0cl0Temp", key));
  g_assert_false (natkit_wireguard_key_from_base64 (NULL, key));
  g_assert_false (natkit_wireguard_key_from_base64 ("cO0cl0Temp/1A4B/xH2umGjGubGPu0hRxmKLyFXTH!E=", key));
  g_assert_null (natkit_wireguard_key_base64_to_hex ("short"));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/natkit/wireguard/uapi/get", test_get);
  g_test_add_func ("/natkit/wireguard/uapi/get-bad", test_get_bad);
  g_test_add_func ("/natkit/wireguard/uapi/errno", test_errno);
  g_test_add_func ("/natkit/wireguard/keys", test_keys);
  return g_test_run ();
}
