/* test-network.c: NatkitNetwork's pure parts — networks, addresses from
 * peer IDs, the WireGuard key exchange message
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include "natkit.h"
#include "natkit-network-private.h"

#define PEER_A "7HkVq3cXo9mBq6z1n2yTtT3aUu4p5Q6r7S8t9U1v2W3x"
#define PEER_B "Fhd3CH4bezKZEzNYwPcmzET6rgKz91NF4AYtdnUrPxbp"
#define KEY    "cO0cl0Temp/1A4B/xH2umGjGubGPu0hRxmKLyFXTHjE="

static guint32
ip (const char *text)
{
  struct in_addr a;

  g_assert_cmpint (inet_pton (AF_INET, text, &a), ==, 1);
  return ntohl (a.s_addr);
}

static void
test_cidr (void)
{
  guint32 net;
  guint prefix;
  g_autoptr(GError) error = NULL;
  const char *bad[] = { "100.66.0.0", "100.66.0.0/", "100.66.0.0/33", "100.66.0.0/31",
                        "100.66.0.0/7", "x/16", "100.66.0.0/16x", "100.66.0.0/-1",
                        "::1/64", "" };

  g_assert_true (_natkit_network_parse_cidr (NATKIT_NETWORK_DEFAULT, &net, &prefix, &error));
  g_assert_no_error (error);
  g_assert_cmphex (net, ==, ip ("100.66.0.0"));
  g_assert_cmpuint (prefix, ==, 16);
  /* host bits are dropped */
  g_assert_true (_natkit_network_parse_cidr ("10.9.8.7/24", &net, &prefix, NULL));
  g_assert_cmphex (net, ==, ip ("10.9.8.0"));
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (_natkit_network_parse_cidr (bad[i], &net, &prefix, &error));
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_INVALID_ARGUMENT);
      g_clear_error (&error);
    }
}

static void
test_address (void)
{
  guint32 net = ip ("100.66.0.0");
  guint32 a = _natkit_network_address_for (net, 16, PEER_A, 0);
  guint32 b = _natkit_network_address_for (net, 16, PEER_B, 0);

  g_test_summary ("A peer's address is derived from its ID, inside the network, "
                  "never its first or last address");
  g_assert_cmphex (a, ==, _natkit_network_address_for (net, 16, PEER_A, 0));
  g_assert_cmphex (a, !=, b);
  g_assert_cmphex (a, !=, _natkit_network_address_for (net, 16, PEER_A, 1));
  /* a /30 has two hosts: every ID lands on one of them */
  for (guint i = 0; i < 200; i++)
    {
      g_autofree char *id = g_strdup_printf ("peer-%u", i);
      guint32 h16 = _natkit_network_address_for (net, 16, id, 0);
      guint32 h30 = _natkit_network_address_for (ip ("192.0.2.0"), 30, id, 0);

      g_assert_cmphex (h16 & 0xffff0000, ==, net);
      g_assert_cmphex (h16, !=, net);
      g_assert_cmphex (h16, !=, net | 0xffff);
      g_assert_true (h30 == ip ("192.0.2.1") || h30 == ip ("192.0.2.2"));
    }
}

static void
test_hello_roundtrip (void)
{
  guint32 net = ip ("100.66.0.0");
  g_autofree char *hello = _natkit_network_format_hello (PEER_A, KEY, ip ("100.66.1.2"));
  g_autofree char *key = NULL;
  g_autoptr(GError) error = NULL;
  guint32 address = 0;

  g_assert_true (g_str_has_suffix (hello, "}\n"));
  g_assert_cmpuint (strlen (hello), <=, NATKIT_NETWORK_HELLO_MAX);
  g_assert_true (_natkit_network_parse_hello (hello, strlen (hello) - 1, PEER_A, net, 16,
                                              &key, &address, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (key, ==, KEY);
  g_assert_cmphex (address, ==, ip ("100.66.1.2"));
}

static void
test_hello_impostor (void)
{
  guint32 net = ip ("100.66.0.0");
  g_autofree char *hello = _natkit_network_format_hello (PEER_B, KEY, ip ("100.66.1.2"));
  g_autofree char *key = NULL;
  g_autoptr(GError) error = NULL;
  guint32 address = 0;

  g_test_summary ("A key offered under another peer ID than the session "
                  "authenticated is refused, naming both");
  g_assert_false (_natkit_network_parse_hello (hello, strlen (hello), PEER_A, net, 16,
                                               &key, &address, &error));
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_IDENTITY);
  g_assert_nonnull (strstr (error->message, "7HkVq3cX"));
  g_assert_nonnull (strstr (error->message, "Fhd3CH4b"));
  g_assert_null (key);
}

static void
test_hello_bad (void)
{
  guint32 net = ip ("100.66.0.0");
  const char *bad[] = {
    "",
    "[]",
    "{",
    "{\"wireguard\":2,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":\"100.66.1.2\"}",
    "{\"wireguard\":\"1\",\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":\"100.66.1.2\"}",
    "{\"wireguard\":1,\"public_key\":\"" KEY "\",\"address\":\"100.66.1.2\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"address\":\"100.66.1.2\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"AAAA\",\"address\":\"100.66.1.2\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"cO0cl0Temp/1A4B/xH2umGjGubGPu0hRxmKLyFXTHj==\",\"address\":\"100.66.1.2\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":\"100.67.1.2\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":\"100.66.0.0\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":\"100.66.255.255\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":\"100.66.1.2.3\"}",
    "{\"wireguard\":1,\"peer_id\":\"" PEER_A "\",\"public_key\":\"" KEY "\",\"address\":7}",
  };

  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *key = NULL;
      g_autoptr(GError) error = NULL;
      guint32 address = 0;

      g_assert_false (_natkit_network_parse_hello (bad[i], strlen (bad[i]), PEER_A, net, 16,
                                                   &key, &address, &error));
      g_assert_nonnull (error);
      g_assert_null (key);
    }
  /* too long */
  {
    g_autofree char *big = g_strnfill (NATKIT_NETWORK_HELLO_MAX + 1, ' ');
    g_autofree char *key = NULL;
    g_autoptr(GError) error = NULL;
    guint32 address = 0;

    g_assert_false (_natkit_network_parse_hello (big, strlen (big), PEER_A, net, 16, &key,
                                                 &address, &error));
    g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_REFUSED);
  }
}

static void
test_is_virtual (void)
{
  g_autoptr(GInetAddress) a = g_inet_address_new_from_string ("100.66.1.2");

  /* nothing joined in this process */
  g_assert_false (natkit_address_is_virtual (a));
}

int
main (int    argc,
      char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/natkit/network/cidr", test_cidr);
  g_test_add_func ("/natkit/network/address", test_address);
  g_test_add_func ("/natkit/network/hello/roundtrip", test_hello_roundtrip);
  g_test_add_func ("/natkit/network/hello/impostor", test_hello_impostor);
  g_test_add_func ("/natkit/network/hello/bad", test_hello_bad);
  g_test_add_func ("/natkit/network/is-virtual", test_is_virtual);
  return g_test_run ();
}
