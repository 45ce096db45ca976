#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit-server against raw protocol clients (docs/protocol.md).

Every check runs a real natkit-server on 127.0.0.1 with ephemeral ports and
talks to it with clients written here: TLS + 2-byte length framing + JSON
for control connections and data channels, plain UDP for relay packets and
STUN. Nothing is sent anywhere but 127.0.0.1.
"""

import base64
import hashlib
import hmac
import json
import os
import random
import select
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

NATKIT_SERVER = os.environ.get("NATKIT_SERVER", "natkit-server")
HOST = "127.0.0.1"
MAGIC_COOKIE = 0x2112A442

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def b58encode(data):
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + out


def b64(data):
    return base64.b64encode(data).decode()


class Peer:
    """An Ed25519 identity and its peer ID."""

    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.id = b58encode(hashlib.sha256(self.public).digest())

    def sign_register(self, challenge, peer_id=None):
        peer_id = peer_id or self.id
        return self.key.sign(b"natkit-register-v1" + b"\0" + challenge + peer_id.encode())


TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
TLS.check_hostname = False
TLS.verify_mode = ssl.CERT_NONE


class Closed(Exception):
    pass


class Conn:
    """One TLS connection to the server: frames of JSON (or data)."""

    def __init__(self, port):
        raw = socket.create_connection((HOST, port), timeout=5)
        self.sock = TLS.wrap_socket(raw)
        self.buf = b""
        self.pending = []
        self.eof = False
        self.next_id = 1
        self.hello = self.recv()
        assert self.hello["type"] == "hello", self.hello
        self.challenge = base64.b64decode(self.hello["challenge"])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, body):
        self.send_raw(struct.pack("!H", len(body)) + body)

    def send(self, message):
        self.send_frame(json.dumps(message).encode())

    def _fill(self, deadline):
        if self.eof:
            raise Closed()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise TimeoutError() from None
        except (ssl.SSLError, ConnectionError, OSError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def recv_frame(self, timeout=3.0):
        """The next frame's body; Closed at the end; TimeoutError."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 2:
            self._fill(deadline)
        n = struct.unpack("!H", self.buf[:2])[0]
        while len(self.buf) < 2 + n:
            self._fill(deadline)
        body, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
        return body

    def recv(self, timeout=3.0):
        if self.pending:
            return self.pending.pop(0)
        return json.loads(self.recv_frame(timeout))

    def wait(self, pred, timeout=3.0):
        """The first message (pending ones first) for which pred is true."""
        for i, m in enumerate(self.pending):
            if pred(m):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            m = json.loads(self.recv_frame(max(0.001, deadline - time.monotonic())))
            if pred(m):
                return m
            self.pending.append(m)

    def wait_type(self, type_, timeout=3.0, **members):
        return self.wait(lambda m: m.get("type") == type_ and
                         all(m.get(k) == v for k, v in members.items()), timeout)

    def request(self, message, timeout=3.0):
        message = dict(message)
        if "id" not in message:
            message["id"] = self.next_id
            self.next_id += 1
        self.send(message)
        return self.wait(lambda m: m.get("id") == message["id"], timeout)

    def closed(self, timeout=3.0):
        """True if the server closes the connection within timeout (the
        messages before the end stay in pending)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.pending.append(json.loads(self.recv_frame(
                    max(0.001, deadline - time.monotonic()))))
        except Closed:
            return True
        except TimeoutError:
            return False
        except ValueError:
            return False

    def register(self, peer, version=1):
        return self.request({"type": "register", "version": version, "peer_id": peer.id,
                             "public_key": b64(peer.public),
                             "signature": b64(peer.sign_register(self.challenge))})


class Server:
    def __init__(self, *args):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([NATKIT_SERVER, "--json", "--listen", HOST + ":0", *args],
                                     stdout=subprocess.PIPE, stderr=self.log)
        r, _, _ = select.select([self.proc.stdout], [], [], 10)
        line = self.proc.stdout.readline() if r else b""
        if not line:
            self.proc.kill()
            raise RuntimeError("natkit-server did not start: " + self.stderr())
        ready = json.loads(line)
        assert ready["event"] == "ready", ready
        self.tls_port = ready["tls_port"]
        self.udp_port = ready["udp_port"]
        self.stun_port2 = ready.get("stun_port2", 0)
        self.fingerprint = ready["fingerprint"]

    def stderr(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self):
        """SIGTERM; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        return self.proc.returncode

    def connect(self):
        return Conn(self.tls_port)

    def registered(self, peer=None):
        peer = peer or Peer()
        c = self.connect()
        r = c.register(peer)
        assert r["type"] == "result", r
        c.peer = peer
        return c

    def udp(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        s.settimeout(2)
        s.connect((HOST, self.udp_port))
        return s


def relay(type_, circuit, payload=b""):
    return bytes([0x4E, 1, type_, 0]) + struct.pack("!I", circuit) + payload


BIND, BOUND, DATA, CLOSED = 1, 2, 3, 4


def udp_recv(sock, timeout=2.0):
    sock.settimeout(timeout)
    try:
        return sock.recv(70000)
    except (socket.timeout, TimeoutError):
        return None
    except ConnectionRefusedError:
        return None


def stun_request(txid, attrs=b""):
    return struct.pack("!HHI", 0x0001, len(attrs), MAGIC_COOKIE) + txid + attrs


def stun_fingerprint(msg):
    import zlib
    # length must include the 8-byte FINGERPRINT attribute
    body = msg[:2] + struct.pack("!H", len(msg) - 20 + 8) + msg[4:]
    crc = (zlib.crc32(body) ^ 0x5354554E) & 0xFFFFFFFF
    return body + struct.pack("!HHI", 0x8028, 4, crc)


def xor_mapped_address(response, txid):
    """(ip, port) of the response's XOR-MAPPED-ADDRESS (IPv4)."""
    mtype, length, cookie = struct.unpack("!HHI", response[:8])
    assert mtype == 0x0101, hex(mtype)
    assert cookie == MAGIC_COOKIE
    assert response[8:20] == txid
    assert length == len(response) - 20
    at = 20
    while at + 4 <= len(response):
        atype, alen = struct.unpack("!HH", response[at:at + 4])
        value = response[at + 4:at + 4 + alen]
        if atype == 0x0020:
            family = value[1]
            assert family == 1
            port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC_COOKIE >> 16)
            addr = struct.unpack("!I", value[4:8])[0] ^ MAGIC_COOKIE
            return socket.inet_ntoa(struct.pack("!I", addr)), port
        at += 4 + ((alen + 3) & ~3)
    raise AssertionError("no XOR-MAPPED-ADDRESS in the response")


class ServerTestCase(unittest.TestCase):
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(*cls.server_args)

    @classmethod
    def tearDownClass(cls):
        # a graceful stop with whatever the tests left open: exit status 0
        # (under ASan: no error, no leak)
        code = cls.server.stop()
        log = cls.server.stderr()
        cls.server.log.close()
        if code != 0:
            raise AssertionError("natkit-server exited with %s:\n%s" % (code, log))

    def setUp(self):
        self.conns = []
        self.socks = []

    def tearDown(self):
        for c in self.conns:
            c.close()
        for s in self.socks:
            s.close()
        if self.server.proc.poll() is not None:
            self.fail("natkit-server exited with %s:\n%s" % (self.server.proc.returncode,
                                                            self.server.stderr()))

    def conn(self):
        c = self.server.connect()
        self.conns.append(c)
        return c

    def registered(self, peer=None):
        c = self.server.registered(peer)
        self.conns.append(c)
        return c

    def udp(self):
        s = self.server.udp()
        self.socks.append(s)
        return s

    def assertError(self, message, code, id_=None):
        self.assertEqual(message.get("type"), "error", message)
        self.assertEqual(message.get("code"), code, message)
        self.assertTrue(message.get("message"), message)
        if id_ is not None:
            self.assertEqual(message.get("id"), id_, message)

    def circuit(self, a, b, tag="t"):
        """A circuit from a to b (b must hold a reservation): (id, token_a, token_b)."""
        r = a.request({"type": "connect", "peer_id": b.peer.id, "tag": tag})
        self.assertEqual(r["type"], "result", r)
        offer = b.wait_type("circuit", circuit=r["circuit"])
        self.assertEqual(offer["from"], a.peer.id)
        self.assertEqual(offer["tag"], tag)
        return r["circuit"], base64.b64decode(r["token"]), base64.b64decode(offer["token"])

    def bind(self, sock, circuit, token):
        sock.send(relay(BIND, circuit, token))
        answer = udp_recv(sock)
        self.assertEqual(answer, relay(BOUND, circuit))


class RegisterTest(ServerTestCase):
    def test_hello(self):
        c = self.conn()
        self.assertEqual(c.hello["version"], 1)
        self.assertEqual(c.hello["versions"], [1])
        self.assertEqual(len(c.challenge), 32)
        self.assertEqual(c.hello["udp_port"], self.server.udp_port)

    def test_register_ok(self):
        c = self.conn()
        peer = Peer()
        r = c.register(peer)
        self.assertEqual(r["type"], "result", r)
        self.assertEqual(r["id"], 1)
        self.assertEqual(r["peer_id"], peer.id)
        ip, port = r["observed_address"].rsplit(":", 1)
        self.assertEqual(ip, HOST)
        self.assertEqual(int(port), c.sock.getsockname()[1])
        self.assertEqual(r["udp_port"], self.server.udp_port)
        self.assertEqual(set(r["limits"]), {"max_circuits", "circuit_bytes", "circuit_duration",
                                            "circuit_rate", "reservation_ttl",
                                            "max_control_rate"})
        self.assertEqual(r["limits"]["max_circuits"], 16)
        self.assertEqual(c.request({"type": "ping"})["type"], "result")

    def test_register_wrong_signature(self):
        c = self.conn()
        peer = Peer()
        r = c.request({"type": "register", "version": 1, "peer_id": peer.id,
                       "public_key": b64(peer.public),
                       "signature": b64(peer.sign_register(bytes(32)))})
        self.assertError(r, "bad-signature", 1)
        self.assertTrue(c.closed())

    def test_register_key_not_matching_peer_id(self):
        c = self.conn()
        peer, other = Peer(), Peer()
        r = c.request({"type": "register", "version": 1, "peer_id": peer.id,
                       "public_key": b64(other.public),
                       "signature": b64(other.sign_register(c.challenge, peer.id))})
        self.assertError(r, "bad-signature", 1)
        self.assertTrue(c.closed())

    def test_register_unsupported_version(self):
        c = self.conn()
        r = c.register(Peer(), version=2)
        self.assertError(r, "unsupported-version", 1)
        self.assertIn("1", r["message"])
        self.assertTrue(c.closed())

    def test_request_before_register(self):
        c = self.conn()
        r = c.request({"type": "ping"})
        self.assertError(r, "unauthenticated", 1)
        self.assertTrue(c.closed())

    def test_register_same_peer_twice_replaces(self):
        peer = Peer()
        old = self.registered(peer)
        new = self.registered(peer)
        m = old.wait_type("error")
        self.assertError(m, "replaced")
        self.assertNotIn("id", m)
        self.assertTrue(old.closed())
        self.assertEqual(new.request({"type": "ping"})["type"], "result")
        a = self.registered()
        r = a.request({"type": "lookup", "peer_id": peer.id})
        self.assertTrue(r["online"])


class BadFramesTest(ServerTestCase):
    def test_zero_length_frame(self):
        c = self.registered()
        c.send_raw(b"\0\0")
        self.assertTrue(c.closed())

    def test_zero_length_frame_before_register(self):
        c = self.conn()
        c.send_raw(b"\0\0")
        self.assertTrue(c.closed())

    def test_control_frame_too_large(self):
        c = self.registered()
        c.send_raw(struct.pack("!H", 20000) + b"{" * 100)
        self.assertError(c.wait_type("error"), "too-large")
        self.assertTrue(c.closed())

    def _bad_request(self, body, registered=True):
        c = self.registered() if registered else self.conn()
        c.send_frame(body)
        self.assertError(c.wait_type("error"), "bad-request")
        self.assertTrue(c.closed())

    def test_invalid_json(self):
        self._bad_request(b'{"type": "ping", "id": 1')

    def test_invalid_json_before_register(self):
        self._bad_request(b'not json at all', registered=False)

    def test_json_array(self):
        self._bad_request(b'[{"type": "ping", "id": 1}]')

    def test_missing_type(self):
        self._bad_request(b'{"id": 1}')

    def test_type_not_a_string(self):
        self._bad_request(b'{"type": 7, "id": 1}')

    def test_not_utf8(self):
        self._bad_request(b'{"type": "\xff\xfe", "id": 1}')

    def test_unknown_type_keeps_connection(self):
        c = self.registered()
        self.assertError(c.request({"type": "frobnicate"}), "bad-request")
        self.assertEqual(c.request({"type": "ping"})["type"], "result")


class RendezvousTest(ServerTestCase):
    def test_lookup(self):
        a, b = self.registered(), self.registered()
        r = a.request({"type": "lookup", "peer_id": b.peer.id})
        self.assertEqual((r["type"], r["online"], r["reservation"]), ("result", True, False))
        self.assertEqual(b.request({"type": "reserve"})["type"], "result")
        r = a.request({"type": "lookup", "peer_id": b.peer.id})
        self.assertEqual((r["online"], r["reservation"]), (True, True))
        self.assertEqual(b.request({"type": "unreserve"})["type"], "result")
        r = a.request({"type": "lookup", "peer_id": b.peer.id})
        self.assertEqual((r["online"], r["reservation"]), (True, False))
        r = a.request({"type": "lookup", "peer_id": Peer().id})
        self.assertEqual((r["online"], r["reservation"]), (False, False))

    def test_claim(self):
        """Virtual network addresses (docs/protocol.md 3.9): first come,
        first served; held while the registration lives; one per network
        and peer; bad requests refused."""
        a, b = self.registered(), self.registered()
        net = "100.66.0.0/16"
        r = a.request({"type": "claim", "network": net, "address": "100.66.1.2"})
        self.assertEqual((r["type"], r["granted"]), ("result", True), r)
        # again by the same peer: still granted
        r = a.request({"type": "claim", "network": net, "address": "100.66.1.2"})
        self.assertTrue(r["granted"], r)
        r = b.request({"type": "claim", "network": net, "address": "100.66.1.2"})
        self.assertEqual((r["granted"], r["holder"]), (False, a.peer.id), r)
        # another network is another address space
        r = b.request({"type": "claim", "network": "100.67.0.0/16", "address": "100.66.1.2"})
        self.assertTrue(r["granted"], r)
        # a new claim in the same network releases the old one
        r = a.request({"type": "claim", "network": net, "address": "100.66.1.3"})
        self.assertTrue(r["granted"], r)
        r = b.request({"type": "claim", "network": net, "address": "100.66.1.2"})
        self.assertTrue(r["granted"], r)
        # gone with the registration
        a.close()
        c = self.registered()
        r = c.request({"type": "claim", "network": net, "address": "100.66.1.3"}, timeout=5)
        deadline = time.monotonic() + 3
        while not r.get("granted") and time.monotonic() < deadline:
            time.sleep(0.1)
            r = c.request({"type": "claim", "network": net, "address": "100.66.1.3"})
        self.assertTrue(r["granted"], r)
        for bad in ({"network": net}, {"address": "100.66.1.2"},
                    {"network": net, "address": "::1"},
                    {"network": "100.66.0.0", "address": "100.66.1.2"},
                    {"network": "x/16", "address": "100.66.1.2"},
                    {"network": net, "address": 7}):
            r = c.request(dict(bad, type="claim"))
            self.assertError(r, "bad-request")

    def test_signal_forwarded(self):
        a, b = self.registered(), self.registered()
        body = {"natkit": 1, "op": "connect", "session": "ab" * 16, "nested": {"x": [1, 2]}}
        r = a.request({"type": "signal", "to": b.peer.id, "body": body})
        self.assertEqual(r["type"], "result", r)
        m = b.wait_type("signal")
        self.assertEqual(m["from"], a.peer.id)
        self.assertEqual(m["body"], body)
        self.assertNotIn("id", m)

    def test_signal_unknown_peer(self):
        a = self.registered()
        r = a.request({"type": "signal", "to": Peer().id, "body": {}})
        self.assertError(r, "not-found")

    def test_signal_body_too_large(self):
        a, b = self.registered(), self.registered()
        r = a.request({"type": "signal", "to": b.peer.id, "body": {"pad": "x" * 9000}})
        self.assertError(r, "too-large")
        # the connection stays
        self.assertEqual(a.request({"type": "ping"})["type"], "result")
        with self.assertRaises(TimeoutError):
            b.wait_type("signal", timeout=0.3)


class RelayTest(ServerTestCase):
    def test_reserve(self):
        a = self.registered()
        r = a.request({"type": "reserve"})
        self.assertEqual(r["type"], "result", r)
        self.assertEqual(r["expires_in"], 600)
        self.assertIn("max_circuits", r["limits"])
        # renewing is fine
        self.assertEqual(a.request({"type": "reserve"})["type"], "result")

    def test_connect_without_reservation(self):
        a, b = self.registered(), self.registered()
        r = a.request({"type": "connect", "peer_id": b.peer.id, "tag": "x"})
        self.assertError(r, "no-reservation")
        with self.assertRaises(TimeoutError):
            b.wait_type("circuit", timeout=0.3)

    def test_connect_unknown_peer(self):
        a = self.registered()
        self.assertError(a.request({"type": "connect", "peer_id": Peer().id}), "not-found")

    def test_circuit_udp(self):
        a, b = self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, ta, tb = self.circuit(a, b, tag="attempt-42")
        self.assertNotEqual(cid, 0)
        self.assertEqual(len(ta), 16)
        self.assertEqual(len(tb), 16)
        self.assertNotEqual(ta, tb)
        ua, ub = self.udp(), self.udp()
        self.bind(ua, cid, ta)
        self.bind(ub, cid, tb)
        # DATA both ways, unchanged
        for size in (1, 100, 1392):
            payload = os.urandom(size)
            ua.send(relay(DATA, cid, payload))
            self.assertEqual(udp_recv(ub), relay(DATA, cid, payload))
            payload = os.urandom(size)
            ub.send(relay(DATA, cid, payload))
            self.assertEqual(udp_recv(ua), relay(DATA, cid, payload))

        # a wrong token gets no answer
        uc = self.udp()
        uc.send(relay(BIND, cid, bytes(16)))
        self.assertIsNone(udp_recv(uc, 0.3))
        # DATA from an unbound source is not forwarded
        uc.send(relay(DATA, cid, b"spoofed"))
        self.assertIsNone(udp_recv(ub, 0.3))
        self.assertIsNone(udp_recv(ua, 0.05))
        self.assertIsNone(udp_recv(uc, 0.05))
        # the bound ends still work
        ua.send(relay(DATA, cid, b"still"))
        self.assertEqual(udp_recv(ub), relay(DATA, cid, b"still"))

        # close-circuit: both ends hear it; DATA from a bound end → CLOSED
        self.assertEqual(a.request({"type": "close-circuit", "circuit": cid})["type"], "result")
        for c in (a, b):
            m = c.wait_type("circuit-closed", circuit=cid)
            self.assertTrue(m["reason"])
        ub.send(relay(DATA, cid, b"late"))
        self.assertEqual(udp_recv(ub), relay(CLOSED, cid))
        self.assertIsNone(udp_recv(ua, 0.2))

    def test_circuit_udp_and_tls_data_channel(self):
        a, b = self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, ta, tb = self.circuit(a, b)
        ua = self.udp()
        self.bind(ua, cid, ta)
        d = self.conn()
        r = d.request({"type": "attach", "version": 1, "circuit": cid, "token": b64(tb)})
        self.assertEqual((r["type"], r["circuit"]), ("result", cid), r)
        for size in (1, 700, 1400):
            payload = os.urandom(size)
            ua.send(relay(DATA, cid, payload))
            self.assertEqual(d.recv_frame(), payload)
            payload = os.urandom(size)
            d.send_frame(payload)
            self.assertEqual(udp_recv(ua), relay(DATA, cid, payload))
        # closing the circuit closes the data channel
        b.request({"type": "close-circuit", "circuit": cid})
        self.assertTrue(d.closed())

    def test_attach_wrong_token(self):
        a, b = self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, _, _ = self.circuit(a, b)
        d = self.conn()
        r = d.request({"type": "attach", "version": 1, "circuit": cid, "token": b64(bytes(16))})
        self.assertError(r, "not-found")
        self.assertTrue(d.closed())

    def test_disconnect_closes_circuits(self):
        a, b = self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, _, _ = self.circuit(a, b)
        a.close()
        m = b.wait_type("circuit-closed", circuit=cid)
        self.assertTrue(m["reason"])


class StunAndAmplificationTest(ServerTestCase):
    def test_stun_binding(self):
        s = self.udp()
        txid = os.urandom(12)
        s.send(stun_request(txid))
        answer = udp_recv(s)
        self.assertIsNotNone(answer, "no answer to a STUN Binding request")
        self.assertLessEqual(len(answer), 20 + 12)
        self.assertEqual(xor_mapped_address(answer, txid), s.getsockname())

    def test_stun_second_port(self):
        # a second UDP port answers STUN only, from that port, so that a
        # client sees whether its NAT maps two destinations alike
        port2 = self.server.stun_port2
        self.assertNotIn(port2, (0, self.server.udp_port))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socks.append(s)
        s.bind((HOST, 0))
        s.settimeout(2)
        txid = os.urandom(12)
        s.sendto(stun_request(txid), (HOST, port2))
        answer, source = s.recvfrom(2048)
        self.assertEqual(source, (HOST, port2))
        self.assertLessEqual(len(answer), 20 + 12)
        self.assertEqual(xor_mapped_address(answer, txid), s.getsockname())
        # nothing else is answered there: not a relay packet, not garbage
        s.sendto(relay(1, 1234, b"x" * 16), (HOST, port2))
        s.sendto(os.urandom(64), (HOST, port2))
        s.settimeout(0.5)
        with self.assertRaises(socket.timeout):
            s.recvfrom(2048)

    def test_stun_binding_with_fingerprint(self):
        s = self.udp()
        txid = os.urandom(12)
        request = stun_fingerprint(stun_request(txid))
        s.send(request)
        answer = udp_recv(s)
        self.assertIsNotNone(answer)
        self.assertLessEqual(len(answer), len(request) + 12)
        self.assertEqual(xor_mapped_address(answer, txid), s.getsockname())

    def test_stun_binding_rfc3489(self):
        # a classic Binding request (no magic cookie: libnice's
        # server-reflexive discovery sends these) gets MAPPED-ADDRESS back
        s = self.udp()
        txid = os.urandom(16)
        s.send(struct.pack("!HH", 0x0001, 0) + txid)
        answer = udp_recv(s)
        self.assertIsNotNone(answer, "no answer to an RFC 3489 Binding request")
        self.assertLessEqual(len(answer), 20 + 12)
        mtype, length = struct.unpack("!HH", answer[:4])
        self.assertEqual(mtype, 0x0101)
        self.assertEqual(answer[4:20], txid)
        self.assertEqual(length, len(answer) - 20)
        atype, alen = struct.unpack("!HH", answer[20:24])
        self.assertEqual((atype, alen), (0x0001, 8))
        port = struct.unpack("!H", answer[26:28])[0]
        self.assertEqual((socket.inet_ntoa(answer[28:32]), port), s.getsockname())

    def tcp_stun(self, request, split=None):
        """Sends @request over TCP to the TLS port (in two writes at
        @split); returns everything the server sent before it closed."""
        s = socket.create_connection((HOST, self.server.tls_port), timeout=3)
        self.socks.append(s)
        if split:
            s.sendall(request[:split])
            time.sleep(0.1)
            s.sendall(request[split:])
        else:
            s.sendall(request)
        got = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                chunk = b""  # closed with our bytes unread
            if not chunk:
                return s, got
            got += chunk

    def test_stun_binding_over_tcp(self):
        # RFC 8489 6.2.2: STUN over TCP, no framing, on the TLS port
        txid = os.urandom(12)
        s, answer = self.tcp_stun(stun_fingerprint(stun_request(txid)))
        self.assertTrue(answer, "no answer to a STUN Binding request over TCP")
        self.assertEqual(xor_mapped_address(answer, txid), s.getsockname())

    def test_stun_binding_over_tcp_in_pieces(self):
        txid = os.urandom(12)
        s, answer = self.tcp_stun(stun_request(txid), split=3)
        self.assertEqual(xor_mapped_address(answer, txid), s.getsockname())

    def test_stun_over_tcp_garbage_closed(self):
        # a STUN-looking first byte, then a length that is not a multiple
        # of 4: closed without an answer
        _, answer = self.tcp_stun(struct.pack("!HHI", 0x0001, 7, MAGIC_COOKIE) +
                                  os.urandom(19))
        self.assertEqual(answer, b"")
        # a Binding response is not answered
        _, answer = self.tcp_stun(struct.pack("!HHI", 0x0101, 0, MAGIC_COOKIE) +
                                  os.urandom(12))
        self.assertEqual(answer, b"")

    def test_silent_connections_limited_per_address(self):
        # connections that have not sent their first byte (TLS or STUN?)
        # count against the 32 unauthenticated connections per address
        silent = [socket.create_connection((HOST, self.server.tls_port), timeout=3)
                  for _ in range(32)]
        try:
            time.sleep(0.3)
            extra = socket.create_connection((HOST, self.server.tls_port), timeout=3)
            self.socks.append(extra)
            try:
                self.assertEqual(extra.recv(1), b"", "a 33rd silent connection was kept")
            except ConnectionResetError:
                pass
        finally:
            for s in silent:
                s.close()
        time.sleep(0.3)
        self.assertTrue(self.registered())

    def test_tls_after_stun_over_tcp(self):
        # the same port still serves TLS control connections
        self.tcp_stun(stun_request(os.urandom(12)))
        self.assertTrue(self.registered())

    def test_stun_short_request_dropped(self):
        s = self.udp()
        s.send(stun_request(os.urandom(12))[:19])
        self.assertIsNone(udp_recv(s, 0.2))

    def test_no_amplification(self):
        rng = random.Random(4711)
        s = self.udp()
        # a real circuit, so some relay headers name a live one
        a, b = self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, _, _ = self.circuit(a, b)

        def rand_bytes(n):
            return bytes(rng.getrandbits(8) for _ in range(n))

        def datagram(i):
            kind = i % 4
            if kind == 0:
                return rand_bytes(rng.randint(0, 1500))
            if kind == 1:
                # STUN-like: first bits 00, the magic cookie, random rest
                mtype = rng.choice([0x0001, 0x0001, 0x0011, 0x0101, 0x0111,
                                    rng.getrandbits(14)])
                attrs = rand_bytes(rng.choice([0, 4, 8, 12, rng.randint(0, 600)]))
                length = rng.choice([len(attrs), len(attrs), rng.getrandbits(16)])
                msg = struct.pack("!HHI", mtype, length, MAGIC_COOKIE) + rand_bytes(12) + attrs
                if rng.random() < 0.3:
                    msg = stun_fingerprint(msg)
                return msg[:rng.choice([len(msg), len(msg), rng.randint(0, len(msg))])]
            if kind == 2:
                circuit = rng.choice([cid, cid + 1, rng.getrandbits(32), 0])
                t = rng.choice([BIND, BOUND, DATA, CLOSED, rng.getrandbits(8)])
                payload = rand_bytes(rng.choice([0, 16, 16, rng.randint(0, 1400)]))
                return relay(t, circuit, payload)
            # mostly-valid STUN Binding requests with random attributes
            attrs = b""
            for _ in range(rng.randint(0, 4)):
                alen = rng.randint(0, 40)
                attrs += struct.pack("!HH", rng.getrandbits(16), alen) + rand_bytes(alen)
                attrs += bytes((4 - alen % 4) % 4)
            msg = stun_request(rand_bytes(12), attrs)
            return stun_fingerprint(msg) if rng.random() < 0.5 else msg

        def is_binding_request(d):
            return (len(d) >= 20 and (d[0] & 0xC0) == 0 and
                    struct.unpack("!HHI", d[:8])[0] == 0x0001 and
                    struct.unpack("!HHI", d[:8])[2] == MAGIC_COOKIE)

        # After each datagram a sentinel Binding request: the server answers
        # in order, so what arrives before the sentinel's answer belongs to
        # the datagram.
        answered = 0
        for i in range(2000):
            d = datagram(i)
            s.send(d)
            sentinel = os.urandom(12)
            s.send(stun_request(sentinel))
            while True:
                answer = udp_recv(s, 2.0)
                self.assertIsNotNone(answer, "no answer to the sentinel after datagram %d" % i)
                if len(answer) >= 20 and answer[8:20] == sentinel:
                    break
                answered += 1
                if is_binding_request(d):
                    self.assertLessEqual(len(answer), len(d) + 12,
                                         "datagram %d: %r → %r" % (i, d, answer))
                    self.assertEqual(answer[8:20], d[8:20])
                    self.assertEqual(xor_mapped_address(answer, d[8:20]), s.getsockname())
                else:
                    self.assertLessEqual(len(answer), len(d),
                                         "datagram %d: %r → %r" % (i, d, answer))
        self.assertGreater(answered, 0)  # the valid Binding requests at least


class LimitsTest(ServerTestCase):
    server_args = ("--circuit-bytes", "10000", "--max-control-rate", "5",
                   "--max-circuits", "1")

    def test_limits_announced(self):
        c = self.registered()
        r = c.request({"type": "reserve"})
        self.assertEqual(r["limits"]["circuit_bytes"], 10000)
        self.assertEqual(r["limits"]["max_control_rate"], 5)
        self.assertEqual(r["limits"]["max_circuits"], 1)

    def test_byte_limit(self):
        a, b = self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, ta, tb = self.circuit(a, b)
        ua, ub = self.udp(), self.udp()
        self.bind(ua, cid, ta)
        self.bind(ub, cid, tb)
        sent = 0
        while sent <= 10000:
            payload = os.urandom(1000)
            src, dst = (ua, ub) if sent % 2000 == 0 else (ub, ua)
            src.send(relay(DATA, cid, payload))
            sent += 1000
            if sent <= 10000:
                self.assertEqual(udp_recv(dst), relay(DATA, cid, payload))
        for c in (a, b):
            m = c.wait_type("circuit-closed", circuit=cid)
            self.assertIn("byte limit", m["reason"])
        # the datagram over the limit was not forwarded
        self.assertIsNone(udp_recv(ua, 0.1))
        self.assertIsNone(udp_recv(ub, 0.1))
        ua.send(relay(DATA, cid, b"more"))
        self.assertEqual(udp_recv(ua), relay(CLOSED, cid))
        ub.send(relay(DATA, cid, b"more"))
        self.assertEqual(udp_recv(ub), relay(CLOSED, cid))

    def test_max_circuits(self):
        a, b, c = self.registered(), self.registered(), self.registered()
        b.request({"type": "reserve"})
        cid, _, _ = self.circuit(a, b)
        self.assertError(a.request({"type": "connect", "peer_id": b.peer.id}), "limit")
        # b is at its limit too
        self.assertError(c.request({"type": "connect", "peer_id": b.peer.id}), "limit")
        a.request({"type": "close-circuit", "circuit": cid})
        b.wait_type("circuit-closed", circuit=cid)
        self.circuit(c, b)

    def test_flood(self):
        other = self.registered()
        c = self.registered()
        c.send_raw(b"".join(struct.pack("!H", len(f)) + f for f in
                            (json.dumps({"type": "ping", "id": i + 1}).encode()
                             for i in range(40))))
        m = c.wait_type("error", timeout=3)
        self.assertError(m, "flood")
        self.assertTrue(c.closed())
        results = [x for x in c.pending if x.get("type") == "result"]
        self.assertLess(len(results), 40)
        self.assertGreater(len(results), 0)
        self.assertEqual(other.request({"type": "ping"})["type"], "result")


class GracefulStopTest(unittest.TestCase):
    def test_sigterm(self):
        server = Server()
        try:
            a, b = server.registered(), server.registered()
            b.request({"type": "reserve"})
            r = a.request({"type": "connect", "peer_id": b.peer.id, "tag": "x"})
            cid = r["circuit"]
            b.wait_type("circuit", circuit=cid)
            idle = server.connect()  # not registered yet
            start = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            for c in (a, b):
                m = c.wait_type("circuit-closed", circuit=cid)
                self.assertTrue(m["reason"])
                m = c.wait_type("error")
                self.assertEqual(m["code"], "shutdown")
                self.assertTrue(c.closed())
            self.assertTrue(idle.closed())
            self.assertEqual(server.proc.wait(5), 0, server.stderr())
            self.assertLess(time.monotonic() - start, 5)
        finally:
            server.stop()


class CommandLineTest(unittest.TestCase):
    def run_server(self, *args):
        return subprocess.run([NATKIT_SERVER, *args], capture_output=True, text=True, timeout=10)

    def test_port_in_use(self):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((HOST, 0))
            s.listen()
            port = s.getsockname()[1]
            r = self.run_server("--listen", "%s:%d" % (HOST, port))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d" % (HOST, port), r.stderr)

    def test_udp_port_in_use(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            r = self.run_server("--listen", "%s:0" % HOST, "--udp-port", str(port))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d" % (HOST, port), r.stderr)

    def test_turn_options(self):
        with tempfile.NamedTemporaryFile("w") as secret, \
             tempfile.NamedTemporaryFile("w") as empty:
            secret.write("lab-secret\n")
            secret.flush()
            for args in (("--turn-uri", "turn:127.0.0.1"),
                         ("--turn-secret-file", secret.name),
                         ("--turn-uri", "stun:127.0.0.1", "--turn-secret-file", secret.name),
                         ("--turn-uri", "turn:127.0.0.1", "--turn-secret-file", secret.name,
                          "--turn-ttl", "5")):
                r = self.run_server("--listen", "%s:0" % HOST, *args)
                self.assertEqual(r.returncode, 2, (args, r.stderr))
                self.assertIn("--turn", r.stderr)
            r = self.run_server("--listen", "%s:0" % HOST, "--turn-uri", "turn:127.0.0.1",
                                "--turn-secret-file", empty.name)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("empty", r.stderr)
            # the register result carries REST credentials: EXPIRY:PEER-ID and
            # base64(HMAC-SHA1(secret, username)); "turn" asks for fresh ones
            server = Server("--turn-uri", "turns:127.0.0.1:5349", "--turn-uri",
                            "turn:127.0.0.1?transport=tcp", "--turn-secret-file",
                            secret.name, "--turn-ttl", "600")
            try:
                c = Conn(server.tls_port)
                peer = Peer()
                now = time.time()
                r = c.register(peer)
                self.assertEqual([t["uri"] for t in r["turn"]],
                                 ["turns:127.0.0.1:5349", "turn:127.0.0.1?transport=tcp"])
                for t in r["turn"]:
                    expiry, who = t["username"].split(":", 1)
                    self.assertEqual(who, peer.id)
                    self.assertTrue(now + 599 <= int(expiry) <= now + 605)
                    self.assertEqual(t["ttl"], 600)
                    mac = hmac.new(b"lab-secret", t["username"].encode(), hashlib.sha1)
                    self.assertEqual(t["password"], base64.b64encode(mac.digest()).decode())
                again = c.request({"type": "turn"})
                self.assertEqual(again["type"], "result")
                self.assertEqual(len(again["turn"]), 2)
                c.close()
            finally:
                self.assertEqual(server.stop(), 0, server.stderr())
                server.log.close()

    def test_stun_port2(self):
        # by default the UDP port + 1; 0 turns it off; taken: an error that
        # names it and the option
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            r = self.run_server("--listen", "%s:0" % HOST, "--stun-port2", str(port))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d" % (HOST, port), r.stderr)
        self.assertIn("--stun-port2", r.stderr)
        r = self.run_server("--stun-port2", "70000")
        self.assertEqual(r.returncode, 2, r.stderr)
        server = Server("--stun-port2", "0")
        try:
            self.assertEqual(server.stun_port2, 0)
        finally:
            server.stop()

    def test_same_port_taken_on_udp(self):
        # an explicit port is used for TLS and UDP, or the server fails:
        # it never moves UDP to another port on its own
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
            r = self.run_server("--listen", "%s:%d" % (HOST, port))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("%s:%d" % (HOST, port), r.stderr)
        self.assertIn("UDP", r.stderr)

    def test_listen_nonsense(self):
        r = self.run_server("--listen", "nonsense:x")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--listen", r.stderr)

    def test_unknown_option(self):
        self.assertEqual(self.run_server("--frobnicate").returncode, 2)

    def test_version(self):
        r = self.run_server("--version")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("natkit-server "))


if __name__ == "__main__":
    unittest.main(verbosity=2)
