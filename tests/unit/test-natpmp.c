/* test-natpmp.c: the PCP / NAT-PMP messages and the natpmp plugin against a
 * scripted gateway on loopback
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 *
 * The real gateway (miniupnpd) is exercised by tests/lab/test_lab_map.py;
 * here the gateway answers exactly what each test scripts: every PCP result
 * code, a wrong nonce, a wrong opcode, a truncated packet, an answer from
 * another address, silence.
 */
#include "config.h"

#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "natkit.h"
#include "natkit-pcp-proto.h"

/* ---- the parsers on their own ------------------------------------------- */

static const guint8 client_v4[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 1, 2 };
static const guint8 nonce_a[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static gsize
pcp_map_response (guint8       *out,
                  guint8        result,
                  guint32       lifetime,
                  guint32       epoch,
                  const guint8 *nonce,
                  guint8        protocol,
                  guint16       internal_port,
                  guint16       external_port)
{
  memset (out, 0, 60);
  out[0] = 2;
  out[1] = 0x80 | NATKIT_PCP_OP_MAP;
  out[3] = result;
  out[4] = lifetime >> 24; out[5] = lifetime >> 16; out[6] = lifetime >> 8; out[7] = lifetime;
  out[8] = epoch >> 24; out[9] = epoch >> 16; out[10] = epoch >> 8; out[11] = epoch;
  memcpy (out + 24, nonce, 12);
  out[36] = protocol;
  out[40] = internal_port >> 8; out[41] = internal_port;
  out[42] = external_port >> 8; out[43] = external_port;
  out[54] = out[55] = 0xff;
  out[56] = 192; out[57] = 0; out[58] = 2; out[59] = 7;
  return 60;
}

static void
test_pcp_build_map (void)
{
  guint8 buf[64];
  guint8 any[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0 };
  gsize n = natkit_pcp_build_map (buf, 7200, client_v4, nonce_a, NATKIT_IPPROTO_UDP,
                                  5000, 0, any);

  /* RFC 6887 sections 7.1 and 11.1 */
  g_assert_cmpuint (n, ==, 60);
  g_assert_cmpuint (buf[0], ==, 2);
  g_assert_cmpuint (buf[1], ==, 1);
  g_assert_cmpuint ((buf[4] << 24 | buf[5] << 16 | buf[6] << 8 | buf[7]), ==, 7200);
  g_assert_cmpmem (buf + 8, 16, client_v4, 16);
  g_assert_cmpmem (buf + 24, 12, nonce_a, 12);
  g_assert_cmpuint (buf[36], ==, 17);
  g_assert_cmpuint ((buf[40] << 8 | buf[41]), ==, 5000);
  g_assert_cmpuint ((buf[42] << 8 | buf[43]), ==, 0);
  g_assert_cmpmem (buf + 44, 16, any, 16);
}

static void
test_pcp_parse (void)
{
  guint8 buf[128];
  NatkitPcpResponse r;
  g_autoptr(GError) error = NULL;
  gsize n = pcp_map_response (buf, 0, 3600, 77, nonce_a, 17, 5000, 40000);

  g_assert_true (natkit_pcp_parse_response (buf, n, &r, &error));
  g_assert_no_error (error);
  g_assert_cmpuint (r.version, ==, 2);
  g_assert_cmpuint (r.opcode, ==, 1);
  g_assert_cmpuint (r.result, ==, 0);
  g_assert_cmpuint (r.lifetime, ==, 3600);
  g_assert_cmpuint (r.epoch, ==, 77);
  g_assert_cmpmem (r.nonce, 12, nonce_a, 12);
  g_assert_cmpuint (r.internal_port, ==, 5000);
  g_assert_cmpuint (r.external_port, ==, 40000);

  /* truncated below the header, a success without MAP data, a request,
   * a length that is not a multiple of 4, an option running off the end */
  g_assert_false (natkit_pcp_parse_response (buf, 20, &r, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_assert_nonnull (strstr (error->message, "truncated"));
  g_clear_error (&error);
  g_assert_false (natkit_pcp_parse_response (buf, 24, &r, &error));
  g_clear_error (&error);
  buf[1] = 1;
  g_assert_false (natkit_pcp_parse_response (buf, n, &r, &error));
  g_clear_error (&error);
  buf[1] = 0x81;
  g_assert_false (natkit_pcp_parse_response (buf, 62, &r, &error));
  g_clear_error (&error);
  buf[60] = 1; buf[61] = 0; buf[62] = 0; buf[63] = 200;
  g_assert_false (natkit_pcp_parse_response (buf, 64, &r, &error));
  g_assert_nonnull (strstr (error->message, "option"));
  g_clear_error (&error);
  /* a well-formed option is skipped */
  buf[63] = 0;
  g_assert_true (natkit_pcp_parse_response (buf, 64, &r, &error));
  g_assert_no_error (error);

  /* an error answer may stop after the header */
  n = pcp_map_response (buf, NATKIT_PCP_NOT_AUTHORIZED, 30, 1, nonce_a, 17, 5000, 0);
  g_assert_true (natkit_pcp_parse_response (buf, 24, &r, &error));
  g_assert_cmpuint (r.result, ==, NATKIT_PCP_NOT_AUTHORIZED);

  /* a NAT-PMP gateway's answer to a PCP request (RFC 6887 section 9) */
  memset (buf, 0, 8);
  buf[1] = 0x81;
  buf[3] = 1;
  g_assert_true (natkit_pcp_parse_response (buf, 8, &r, &error));
  g_assert_cmpuint (r.version, ==, 0);
  g_assert_cmpuint (r.result, ==, 1);
}

static void
test_natpmp_parse (void)
{
  guint8 buf[16] = { 0, 0x81, 0, 0, 0, 0, 0, 9, 0x13, 0x88, 0x9c, 0x40, 0, 0, 0x0e, 0x10 };
  guint8 address[12] = { 0, 0x80, 0, 0, 0, 0, 0, 9, 203, 0, 113, 10 };
  guint8 request[12];
  NatkitNatpmpResponse r;
  g_autoptr(GError) error = NULL;

  /* RFC 6886 section 3.3 */
  g_assert_cmpuint (natkit_natpmp_build_map (request, 1, 5000, 0, 7200), ==, 12);
  g_assert_cmpuint (request[0], ==, 0);
  g_assert_cmpuint (request[1], ==, 1);
  g_assert_cmpuint ((request[4] << 8 | request[5]), ==, 5000);

  g_assert_true (natkit_natpmp_parse_response (buf, 16, &r, &error));
  g_assert_cmpuint (r.opcode, ==, 1);
  g_assert_cmpuint (r.epoch, ==, 9);
  g_assert_cmpuint (r.internal_port, ==, 5000);
  g_assert_cmpuint (r.external_port, ==, 40000);
  g_assert_cmpuint (r.lifetime, ==, 3600);
  g_assert_false (natkit_natpmp_parse_response (buf, 12, &r, &error));
  g_assert_nonnull (strstr (error->message, "truncated"));
  g_clear_error (&error);
  g_assert_true (natkit_natpmp_parse_response (address, 12, &r, &error));
  g_assert_cmpuint (r.external_address[0], ==, 203);
  g_assert_false (natkit_natpmp_parse_response (address, 10, &r, &error));
  g_clear_error (&error);
  address[0] = 2;
  g_assert_false (natkit_natpmp_parse_response (address, 12, &r, &error));
  g_assert_nonnull (strstr (error->message, "version"));
}

static void
test_epoch (void)
{
  /* RFC 6887 section 8.5 */
  g_assert_false (natkit_pcp_epoch_lost_state (100, 1000, 110, 1010));
  g_assert_false (natkit_pcp_epoch_lost_state (100, 1000, 111, 1010));
  g_assert_true (natkit_pcp_epoch_lost_state (100, 1000, 5, 1010));       /* restarted */
  g_assert_true (natkit_pcp_epoch_lost_state (100, 1000, 100, 1100));     /* stalled */
  g_assert_true (natkit_pcp_epoch_lost_state (100, 1000, 500, 1010));     /* jumped */
}

/* ---- the plugin against a scripted gateway ------------------------------ */

typedef enum {
  ANSWER_SUCCESS,
  ANSWER_RESULT,          /* PCP result code = gw->result */
  ANSWER_WRONG_NONCE,
  ANSWER_WRONG_OPCODE,
  ANSWER_TRUNCATED,
  ANSWER_GARBAGE,
  ANSWER_OTHER_SOURCE,
  ANSWER_NOTHING,
  ANSWER_NATPMP_ONLY,     /* a NAT-PMP gateway: UNSUPP_VERSION to PCP */
  ANSWER_REFUSE_PORT_ZERO,
} Answer;

typedef struct
{
  GSocket      *socket;
  GSocket      *other;        /* bound to 127.0.0.2 */
  guint16       port;
  GSource      *source;
  Answer        answer;
  guint8        result;
  guint32       epoch;
  guint32       grant;        /* lifetime granted */
  GPtrArray    *requests;     /* GBytes */
} Gateway;

static gboolean
gateway_cb (GSocket      *socket,
            GIOCondition  condition,
            gpointer      user_data)
{
  Gateway *gw = user_data;
  guint8 in[1100], out[1100];
  g_autoptr(GSocketAddress) from = NULL;
  gssize n = g_socket_receive_from (socket, &from, (char *) in, sizeof in, NULL, NULL);
  gsize len = 0;
  GSocket *sender = socket;

  if (n <= 0)
    return G_SOURCE_CONTINUE;
  g_ptr_array_add (gw->requests, g_bytes_new (in, n));

  if (in[0] == 2 && n >= 60 && (in[1] & 0x7f) == NATKIT_PCP_OP_MAP)
    {
      guint32 lifetime = (guint32) in[4] << 24 | in[5] << 16 | in[6] << 8 | in[7];
      guint16 internal = in[40] << 8 | in[41];
      guint16 suggested = in[42] << 8 | in[43];
      guint8 nonce[12];

      memcpy (nonce, in + 24, 12);
      switch (gw->answer)
        {
        case ANSWER_SUCCESS:
          len = pcp_map_response (out, 0, lifetime ? MIN (lifetime, gw->grant) : 0,
                                  gw->epoch, nonce, in[36], internal,
                                  lifetime ? (suggested ? suggested : 40000) : 0);
          break;
        case ANSWER_REFUSE_PORT_ZERO:
          len = pcp_map_response (out, suggested == 0 && lifetime > 0 ? NATKIT_PCP_MALFORMED_REQUEST : 0,
                                  lifetime, gw->epoch, nonce, in[36], internal, suggested);
          break;
        case ANSWER_RESULT:
          len = pcp_map_response (out, gw->result, 30, gw->epoch, nonce, in[36], internal, 0);
          break;
        case ANSWER_WRONG_NONCE:
          nonce[0] ^= 0xff;
          len = pcp_map_response (out, 0, lifetime, gw->epoch, nonce, in[36], internal, 40000);
          break;
        case ANSWER_WRONG_OPCODE:
          len = pcp_map_response (out, 0, lifetime, gw->epoch, nonce, in[36], internal, 40000);
          out[1] = 0x80 | 2;   /* PEER */
          break;
        case ANSWER_TRUNCATED:
          len = pcp_map_response (out, 0, lifetime, gw->epoch, nonce, in[36], internal, 40000) - 20;
          break;
        case ANSWER_GARBAGE:
          memset (out, 0xa5, 48);
          len = 48;
          break;
        case ANSWER_OTHER_SOURCE:
          len = pcp_map_response (out, 0, lifetime, gw->epoch, nonce, in[36], internal, 40000);
          sender = gw->other;
          break;
        case ANSWER_NATPMP_ONLY:
          memset (out, 0, 8);
          out[1] = 0x81;
          out[3] = 1;
          len = 8;
          break;
        case ANSWER_NOTHING:
        default:
          break;
        }
    }
  else if (in[0] == 0 && n >= 2 && gw->answer == ANSWER_NATPMP_ONLY)
    {
      memset (out, 0, sizeof out);
      out[1] = 0x80 | in[1];
      out[4] = gw->epoch >> 24; out[5] = gw->epoch >> 16; out[6] = gw->epoch >> 8; out[7] = gw->epoch;
      if (in[1] == 0)
        {
          out[8] = 198; out[9] = 51; out[10] = 100; out[11] = 9;
          len = 12;
        }
      else if (n >= 12)
        {
          memcpy (out + 8, in + 4, 2);              /* internal port */
          out[10] = 0x9c; out[11] = 0x41;           /* external 40001 */
          memcpy (out + 12, in + 8, 4);             /* lifetime */
          len = 16;
        }
    }

  if (len > 0)
    g_socket_send_to (sender, from, (const char *) out, len, NULL, NULL);
  return G_SOURCE_CONTINUE;
}

static GSocket *
bound_socket (const char *ip,
              guint16    *port)
{
  g_autoptr(GInetAddress) address = g_inet_address_new_from_string (ip);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new (address, 0);
  g_autoptr(GSocketAddress) local = NULL;
  GSocket *socket = g_socket_new (G_SOCKET_FAMILY_IPV4, G_SOCKET_TYPE_DATAGRAM,
                                  G_SOCKET_PROTOCOL_UDP, NULL);

  g_assert_nonnull (socket);
  g_assert_true (g_socket_bind (socket, any, FALSE, NULL));
  local = g_socket_get_local_address (socket, NULL);
  if (port != NULL)
    *port = g_inet_socket_address_get_port (G_INET_SOCKET_ADDRESS (local));
  return socket;
}

static Gateway *
gateway_new (Answer answer)
{
  Gateway *gw = g_new0 (Gateway, 1);

  gw->socket = bound_socket ("127.0.0.1", &gw->port);
  gw->other = bound_socket ("127.0.0.2", NULL);
  gw->answer = answer;
  gw->epoch = 1000;
  gw->grant = 3600;
  gw->requests = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  gw->source = g_socket_create_source (gw->socket, G_IO_IN, NULL);
  g_source_set_callback (gw->source, G_SOURCE_FUNC (gateway_cb), gw, NULL);
  g_source_attach (gw->source, NULL);
  return gw;
}

static void
gateway_free (Gateway *gw)
{
  g_source_destroy (gw->source);
  g_source_unref (gw->source);
  g_object_unref (gw->socket);
  g_object_unref (gw->other);
  g_ptr_array_unref (gw->requests);
  g_free (gw);
}

typedef struct
{
  NatkitPortMapping *mapping;
  GError            *error;
  gboolean           done;
} MapResult;

static void
map_cb (GObject      *source,
        GAsyncResult *result,
        gpointer      user_data)
{
  MapResult *r = user_data;

  r->mapping = natkit_manager_map_port_finish (NATKIT_MANAGER (source), result, &r->error);
  r->done = TRUE;
}

static void
done_cb (GObject      *source,
         GAsyncResult *result,
         gpointer      user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

static NatkitManager *
new_manager (void)
{
  g_autoptr(NatkitConfig) config = natkit_config_new ();

  return natkit_manager_new_with_config (config);
}

static NatkitPortMapping *
map_with (Gateway     *gw,
          const char  *method,
          guint        timeout_ms,
          guint32      lifetime,
          GError     **error,
          gint64      *elapsed_us)
{
  g_autoptr(NatkitManager) manager = new_manager ();
  g_autoptr(NatkitPortMappingRequest) request =
    natkit_port_mapping_request_new (NATKIT_IP_PROTOCOL_UDP, 5000);
  g_autofree char *gateway = g_strdup_printf ("127.0.0.1:%u", gw->port);
  g_auto(GStrv) methods = g_strsplit (method, ",", 0);
  MapResult r = { NULL, NULL, FALSE };
  gint64 start = g_get_monotonic_time ();

  natkit_port_mapping_request_set_gateway (request, gateway);
  natkit_port_mapping_request_set_timeout (request, timeout_ms);
  natkit_port_mapping_request_set_lifetime (request, lifetime);
  natkit_manager_map_port_async (manager, request, (const char * const *) methods,
                                 NULL, map_cb, &r);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  if (elapsed_us != NULL)
    *elapsed_us = g_get_monotonic_time () - start;
  if (r.error != NULL)
    g_propagate_error (error, r.error);
  return r.mapping;
}

static void
release (NatkitPortMapping *mapping)
{
  GAsyncResult *result = NULL;
  g_autoptr(GError) error = NULL;

  natkit_port_mapping_release_async (mapping, NULL, done_cb, &result);
  while (result == NULL)
    g_main_context_iteration (NULL, TRUE);
  natkit_port_mapping_release_finish (mapping, result, &error);
  g_assert_no_error (error);
  g_object_unref (result);
}

static void
test_map_success (void)
{
  Gateway *gw = gateway_new (ANSWER_SUCCESS);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping = map_with (gw, "pcp", 2000, 7200, &error, NULL);
  GBytes *last;
  const guint8 *req, *first;

  g_assert_no_error (error);
  g_assert_nonnull (mapping);
  g_assert_cmpstr (natkit_port_mapping_get_method (mapping), ==, "pcp");
  g_assert_cmpstr (natkit_port_mapping_get_external_address (mapping), ==, "192.0.2.7");
  g_assert_cmpuint (natkit_port_mapping_get_external_port (mapping), ==, 40000);
  g_assert_cmpuint (natkit_port_mapping_get_lifetime (mapping), ==, 3600);
  g_assert_cmpstr (natkit_port_mapping_get_internal_address (mapping), ==, "127.0.0.1");
  g_assert_cmpint (natkit_port_mapping_get_state (mapping), ==, NATKIT_PORT_MAPPING_STATE_ACTIVE);

  /* deleting sends lifetime 0 with the same nonce (RFC 6887 section 15) */
  release (mapping);
  g_assert_cmpint (natkit_port_mapping_get_state (mapping), ==, NATKIT_PORT_MAPPING_STATE_RELEASED);
  first = g_bytes_get_data (g_ptr_array_index (gw->requests, 0), NULL);
  last = g_ptr_array_index (gw->requests, gw->requests->len - 1);
  req = g_bytes_get_data (last, NULL);
  g_assert_cmpuint ((req[4] | req[5] | req[6] | req[7]), ==, 0);
  g_assert_cmpmem (req + 24, 12, first + 24, 12);
  gateway_free (gw);
}

static void
test_map_result_codes (void)
{
  /* every PCP error result: a clear error naming the gateway's reason,
   * no mapping */
  for (guint code = 1; code <= 13; code++)
    {
      Gateway *gw = gateway_new (ANSWER_RESULT);
      g_autoptr(GError) error = NULL;
      g_autoptr(NatkitPortMapping) mapping = NULL;
      g_autofree char *tag = g_strdup_printf ("(result %u)", code);

      gw->result = code;
      mapping = map_with (gw, "pcp", 2000, 600, &error, NULL);
      g_assert_null (mapping);
      g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
      if (code == NATKIT_PCP_UNSUPP_VERSION)
        g_assert_nonnull (strstr (error->message, "does not speak PCP"));
      else
        {
          g_assert_nonnull (strstr (error->message, tag));
          g_assert_nonnull (strstr (error->message, natkit_pcp_result_describe (code)));
        }
      /* “any port” refused: asked again for the internal port, once */
      if (code == NATKIT_PCP_MALFORMED_REQUEST || code == NATKIT_PCP_CANNOT_PROVIDE_EXTERNAL ||
          code == NATKIT_PCP_UNSUPP_OPTION)
        g_assert_cmpuint (gw->requests->len, ==, 2);
      else
        g_assert_cmpuint (gw->requests->len, ==, 1);
      gateway_free (gw);
    }
}

static void
test_map_refuses_port_zero (void)
{
  Gateway *gw = gateway_new (ANSWER_REFUSE_PORT_ZERO);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping = map_with (gw, "pcp", 2000, 600, &error, NULL);

  g_assert_no_error (error);
  g_assert_cmpuint (natkit_port_mapping_get_external_port (mapping), ==, 5000);
  release (mapping);
  gateway_free (gw);
}

static void
check_ignored (Answer      answer,
               const char *expect)
{
  Gateway *gw = gateway_new (answer);
  g_autoptr(GError) error = NULL;
  gint64 elapsed;
  g_autoptr(NatkitPortMapping) mapping = map_with (gw, "pcp", 700, 600, &error, &elapsed);

  g_assert_null (mapping);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NO_METHOD);
  if (strstr (error->message, "within 700 ms") == NULL)
    g_error ("%s", error->message);
  if (expect != NULL)
    g_assert_nonnull (strstr (error->message, expect));
  /* sent at 0 and 250 ms (the next would be at 750 ms): the bad answers
   * ended nothing early */
  g_assert_cmpuint (gw->requests->len, ==, 2);
  (void) elapsed;
  gateway_free (gw);
}

static void
test_map_wrong_nonce (void)
{
  check_ignored (ANSWER_WRONG_NONCE, "nonce mismatch");
}

static void
test_map_wrong_opcode (void)
{
  check_ignored (ANSWER_WRONG_OPCODE, "wrong opcode");
}

static void
test_map_truncated (void)
{
  check_ignored (ANSWER_TRUNCATED, "truncated");
}

static void
test_map_garbage (void)
{
  check_ignored (ANSWER_GARBAGE, "invalid");
}

static void
test_map_other_source (void)
{
  /* the connected socket never even sees it */
  check_ignored (ANSWER_OTHER_SOURCE, "did not answer");
}

static void
test_map_silence (void)
{
  check_ignored (ANSWER_NOTHING, "did not answer PCP");
}

static void
test_map_natpmp_fallback (void)
{
  Gateway *gw = gateway_new (ANSWER_NATPMP_ONLY);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping = map_with (gw, "natpmp", 2000, 600, &error, NULL);

  /* asked for NAT-PMP alone: no PCP request at all */
  g_assert_no_error (error);
  g_assert_cmpstr (natkit_port_mapping_get_method (mapping), ==, "natpmp");
  for (guint i = 0; i < gw->requests->len; i++)
    g_assert_cmpuint (((const guint8 *) g_bytes_get_data (g_ptr_array_index (gw->requests, i), NULL))[0], ==, 0);
  release (mapping);
  g_clear_object (&mapping);
  gateway_free (gw);

  /* any method: PCP first, then NAT-PMP after UNSUPP_VERSION */
  gw = gateway_new (ANSWER_NATPMP_ONLY);
  mapping = map_with (gw, "pcp,natpmp", 2000, 600, &error, NULL);
  g_assert_no_error (error);
  g_assert_cmpstr (natkit_port_mapping_get_method (mapping), ==, "natpmp");
  g_assert_cmpstr (natkit_port_mapping_get_external_address (mapping), ==, "198.51.100.9");
  g_assert_cmpuint (natkit_port_mapping_get_external_port (mapping), ==, 40001);
  g_assert_cmpuint (((const guint8 *) g_bytes_get_data (g_ptr_array_index (gw->requests, 0), NULL))[0], ==, 2);
  release (mapping);
  gateway_free (gw);
}

static void
count_cb (NatkitPortMapping *mapping,
          gpointer           user_data)
{
  (*(guint *) user_data)++;
}

static void
test_map_renew_and_restart (void)
{
  Gateway *gw = gateway_new (ANSWER_SUCCESS);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping = NULL;
  guint renewed = 0;
  const guint8 *req;

  gw->grant = 2;    /* renewed after 1 s */
  mapping = map_with (gw, "pcp", 2000, 600, &error, NULL);
  g_assert_no_error (error);
  g_signal_connect (mapping, "renewed", G_CALLBACK (count_cb), &renewed);
  while (renewed < 1)
    g_main_context_iteration (NULL, TRUE);
  /* the renewal asks for the port it has, with the same nonce */
  req = g_bytes_get_data (g_ptr_array_index (gw->requests, 1), NULL);
  g_assert_cmpuint ((req[42] << 8 | req[43]), ==, 40000);
  g_assert_cmpmem (req + 24, 12,
                   (const guint8 *) g_bytes_get_data (g_ptr_array_index (gw->requests, 0), NULL) + 24, 12);

  /* the gateway restarts: its epoch goes back; the next answer re-creates */
  gw->epoch = 3;
  while (renewed < 2)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (natkit_port_mapping_get_state (mapping), ==, NATKIT_PORT_MAPPING_STATE_ACTIVE);
  g_assert_cmpuint (natkit_port_mapping_get_renewals (mapping), >=, 2);
  release (mapping);
  gateway_free (gw);
}

static void
lost_cb (NatkitPortMapping *mapping,
         const GError      *error,
         gpointer           user_data)
{
  g_assert_nonnull (error);
  (*(guint *) user_data)++;
}

static void
test_map_lost (void)
{
  Gateway *gw = gateway_new (ANSWER_SUCCESS);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping = NULL;
  guint lost = 0, renewed = 0;

  gw->grant = 1;
  mapping = map_with (gw, "pcp", 400, 600, &error, NULL);
  g_assert_no_error (error);
  g_signal_connect (mapping, "lost", G_CALLBACK (lost_cb), &lost);
  g_signal_connect (mapping, "renewed", G_CALLBACK (count_cb), &renewed);
  gw->answer = ANSWER_NOTHING;     /* the gateway goes away */
  while (lost == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (natkit_port_mapping_get_state (mapping), ==, NATKIT_PORT_MAPPING_STATE_LOST);
  gw->answer = ANSWER_SUCCESS;     /* and comes back */
  while (renewed == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (natkit_port_mapping_get_state (mapping), ==, NATKIT_PORT_MAPPING_STATE_ACTIVE);
  release (mapping);
  gateway_free (gw);
}

static void
test_map_cancel (void)
{
  Gateway *gw = gateway_new (ANSWER_NOTHING);
  g_autoptr(NatkitManager) manager = new_manager ();
  g_autoptr(NatkitPortMappingRequest) request =
    natkit_port_mapping_request_new (NATKIT_IP_PROTOCOL_TCP, 5000);
  g_autoptr(GCancellable) cancellable = g_cancellable_new ();
  g_autofree char *gateway = g_strdup_printf ("127.0.0.1:%u", gw->port);
  const char *methods[] = { "pcp", NULL };
  MapResult r = { NULL, NULL, FALSE };

  natkit_port_mapping_request_set_gateway (request, gateway);
  natkit_port_mapping_request_set_timeout (request, 60000);
  natkit_manager_map_port_async (manager, request, methods, cancellable, map_cb, &r);
  while (gw->requests->len == 0)
    g_main_context_iteration (NULL, TRUE);
  g_cancellable_cancel (cancellable);
  while (!r.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_error (r.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&r.error);
  gateway_free (gw);
}

static void
model_changed_cb (GListModel *model,
                  guint       position,
                  guint       removed,
                  guint       added,
                  gpointer    user_data)
{
  GString *changes = user_data;

  g_assert_cmpuint (position + added, <=, g_list_model_get_n_items (model));
  g_string_append_printf (changes, "%s%u-%u+%u", changes->len ? " " : "",
                          position, removed, added);
}

static void
notify_count_cb (GObject    *object,
                 GParamSpec *pspec,
                 gpointer    user_data)
{
  (*(guint *) user_data)++;
}

/* natkit_manager_get_port_mappings(): a mapping is in the model from
 * map_port_finish() until it is released, a lost one stays, and the model
 * does not keep one alive */
static void
test_map_model (void)
{
  Gateway *gw = gateway_new (ANSWER_SUCCESS);
  g_autoptr(NatkitManager) manager = new_manager ();
  g_autoptr(NatkitPortMappingRequest) request =
    natkit_port_mapping_request_new (NATKIT_IP_PROTOCOL_UDP, 5000);
  g_autofree char *gateway = g_strdup_printf ("127.0.0.1:%u", gw->port);
  g_autoptr(GString) changes = g_string_new (NULL);
  g_autoptr(NatkitPortMapping) item = NULL;
  GListModel *model = natkit_manager_get_port_mappings (manager);
  const char *methods[] = { "pcp", NULL };
  MapResult first = { NULL, NULL, FALSE };
  MapResult second = { NULL, NULL, FALSE };
  guint lost = 0, state_notified = 0;
  GWeakRef weak;

  g_assert_true (G_IS_LIST_MODEL (model));
  g_assert_true (g_list_model_get_item_type (model) == NATKIT_TYPE_PORT_MAPPING);
  g_assert_cmpuint (g_list_model_get_n_items (model), ==, 0);
  g_assert_true (model == natkit_manager_get_port_mappings (manager));
  g_signal_connect (model, "items-changed", G_CALLBACK (model_changed_cb), changes);

  gw->grant = 1;
  natkit_port_mapping_request_set_gateway (request, gateway);
  natkit_port_mapping_request_set_timeout (request, 400);
  natkit_manager_map_port_async (manager, request, methods, NULL, map_cb, &first);
  while (!first.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (first.error);
  g_clear_object (&request);
  request = natkit_port_mapping_request_new (NATKIT_IP_PROTOCOL_UDP, 5001);
  natkit_port_mapping_request_set_gateway (request, gateway);
  natkit_port_mapping_request_set_timeout (request, 400);
  natkit_manager_map_port_async (manager, request, methods, NULL, map_cb, &second);
  while (!second.done)
    g_main_context_iteration (NULL, TRUE);
  g_assert_no_error (second.error);

  g_assert_cmpuint (g_list_model_get_n_items (model), ==, 2);
  item = g_list_model_get_item (model, 0);
  g_assert_true (item == first.mapping);
  g_clear_object (&item);
  item = g_list_model_get_item (model, 1);
  g_assert_true (item == second.mapping);
  g_clear_object (&item);
  g_assert_null (g_list_model_get_item (model, 2));
  g_assert_cmpstr (changes->str, ==, "0-0+1 1-0+1");

  /* the gateway goes away: the first mapping is lost but stays, and its
   * state notifies */
  g_signal_connect (first.mapping, "lost", G_CALLBACK (lost_cb), &lost);
  g_signal_connect (first.mapping, "notify::state", G_CALLBACK (notify_count_cb),
                    &state_notified);
  gw->answer = ANSWER_NOTHING;
  while (lost == 0)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpuint (state_notified, >=, 1);
  g_assert_cmpuint (g_list_model_get_n_items (model), ==, 2);
  gw->answer = ANSWER_SUCCESS;

  /* released: it leaves */
  release (first.mapping);
  g_assert_cmpuint (g_list_model_get_n_items (model), ==, 1);
  item = g_list_model_get_item (model, 0);
  g_assert_true (item == second.mapping);
  g_clear_object (&item);
  g_assert_cmpstr (changes->str, ==, "0-0+1 1-0+1 0-1+0");

  /* nobody holds it: the model does not keep it alive, and it leaves */
  g_weak_ref_init (&weak, second.mapping);
  g_clear_object (&second.mapping);
  while ((item = g_weak_ref_get (&weak)) != NULL)
    {
      g_clear_object (&item);
      g_main_context_iteration (NULL, TRUE);
    }
  g_weak_ref_clear (&weak);
  g_assert_cmpuint (g_list_model_get_n_items (model), ==, 0);
  g_assert_cmpstr (changes->str, ==, "0-0+1 1-0+1 0-1+0 0-1+0");

  g_signal_handlers_disconnect_by_data (model, changes);
  g_clear_object (&first.mapping);
  gateway_free (gw);
}

static void
test_map_unknown_method (void)
{
  Gateway *gw = gateway_new (ANSWER_SUCCESS);
  g_autoptr(GError) error = NULL;
  g_autoptr(NatkitPortMapping) mapping = map_with (gw, "carrier-pigeon", 500, 600, &error, NULL);

  g_assert_null (mapping);
  g_assert_error (error, NATKIT_ERROR, NATKIT_ERROR_NOT_FOUND);
  g_assert_nonnull (strstr (error->message, "pcp"));
  g_assert_cmpuint (gw->requests->len, ==, 0);
  gateway_free (gw);
}

int
main (int    argc,
      char **argv)
{
  g_autofree char *state = g_dir_make_tmp ("natkit-natpmp-state-XXXXXX", NULL);
  g_autofree char *command = NULL;
  int status;

  setlocale (LC_ALL, "");
  /* mapping records go to a folder of our own (GLib 2.74's
   * G_TEST_OPTION_ISOLATE_DIRS leaks, which ASan reports) */
  g_setenv ("XDG_STATE_HOME", state, TRUE);
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/pcp/build-map", test_pcp_build_map);
  g_test_add_func ("/pcp/parse", test_pcp_parse);
  g_test_add_func ("/pcp/epoch", test_epoch);
  g_test_add_func ("/natpmp/parse", test_natpmp_parse);
  g_test_add_func ("/map/success-and-release", test_map_success);
  g_test_add_func ("/map/result-codes", test_map_result_codes);
  g_test_add_func ("/map/refuses-port-zero", test_map_refuses_port_zero);
  g_test_add_func ("/map/wrong-nonce", test_map_wrong_nonce);
  g_test_add_func ("/map/wrong-opcode", test_map_wrong_opcode);
  g_test_add_func ("/map/truncated", test_map_truncated);
  g_test_add_func ("/map/garbage", test_map_garbage);
  g_test_add_func ("/map/other-source", test_map_other_source);
  g_test_add_func ("/map/silence", test_map_silence);
  g_test_add_func ("/map/natpmp-fallback", test_map_natpmp_fallback);
  g_test_add_func ("/map/renew-and-restart", test_map_renew_and_restart);
  g_test_add_func ("/map/lost-and-back", test_map_lost);
  g_test_add_func ("/map/cancel", test_map_cancel);
  g_test_add_func ("/map/unknown-method", test_map_unknown_method);
  g_test_add_func ("/map/model", test_map_model);

  status = g_test_run ();
  command = g_strdup_printf ("rm -rf '%s'", state);
  if (system (command) != 0)
    g_printerr ("could not remove %s\n", state);
  return status;
}
