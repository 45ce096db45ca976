#!/usr/bin/env python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit Share (examples/share) under Xvfb, as a user meets it.

A natkit-server and a peer (`nat-tool listen --exec`, writing what it
receives to a file) run on 127.0.0.1. The real window starts under
xvfb-run and is driven by its command-line options, which run the same
code as its buttons: detect (against the test's server only), register,
connect to the peer's address, send a text and a file, save a screenshot,
finish sending and quit. The peer's file must hold exactly the records of
the protocol in examples/share/natkit-share.js, the file's bytes identical.

Then: two natkit Share windows sending to each other; a transfer cancelled
part way over the relay; and the bad inputs (a malformed peer address
while the natkit-server is down, a peer that is not registered, a peer
that never answers), each of which must give a clear message in the
window, the app exiting on its own.

Screenshots go to SHARE_ARTIFACTS_DIR (the build folder): share-window.png,
share-relayed-cancelled.png and share-bad-input.png.

Skips (77) when xvfb-run, gjs, or the GTK 4 / libadwaita typelibs are
missing.
"""

import hashlib
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest

NAT_TOOL = os.environ.get("NAT_TOOL", "")
NATKIT_SERVER = os.environ.get("NATKIT_SERVER", "")
SHARE = os.environ.get("NATKIT_SHARE", "")
ARTIFACTS = os.environ.get("SHARE_ARTIFACTS_DIR") or tempfile.gettempdir()

# every natkit process here: the build tree's plugins, no port mappers
# (they would talk to this machine's real gateway), nothing of the user's
BASE_ENV = dict(os.environ)
BASE_ENV.update({
    "GSK_RENDERER": "cairo",        # no GL needed under Xvfb
    "GDK_BACKEND": "x11",
    "GTK_A11Y": "none",             # no accessibility bus in a test
    "NO_AT_BRIDGE": "1",
    "GSETTINGS_BACKEND": "memory",
    "LC_ALL": "C.UTF-8",
})
BASE_ENV.pop("WAYLAND_DISPLAY", None)
BASE_ENV.pop("DISPLAY", None)
BASE_ENV.pop("DBUS_SESSION_BUS_ADDRESS", None)


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def check_requirements():
    if not (NAT_TOOL and NATKIT_SERVER and SHARE):
        skip("NAT_TOOL, NATKIT_SERVER and NATKIT_SHARE must be set (run through meson test)")
    for program in ("xvfb-run", "xauth", "gjs"):
        if shutil.which(program) is None:
            skip("%s is not installed (Debian: apt-get install --no-install-recommends "
                 "xvfb xauth gjs)" % program)
    probe = subprocess.run(
        ["gjs", "-c", "imports.gi.versions.Gtk = '4.0'; imports.gi.versions.Adw = '1';"
         "imports.gi.Gtk; imports.gi.Adw;"],
        capture_output=True, text=True, env=BASE_ENV, timeout=30)
    if probe.returncode != 0:
        skip("the GTK 4 or libadwaita typelib is missing (Debian: apt-get install "
             "gir1.2-gtk-4.0 gir1.2-adw-1): " + probe.stderr.strip()[-300:])


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise AssertionError("%s is not a PNG" % path)
    return struct.unpack(">II", head[16:24])


def parse_records(raw):
    """The records of natkit Share's stream protocol: (header, payload)."""
    records = []
    i = 0
    while i < len(raw):
        nl = raw.index(b"\n", i)
        header = json.loads(raw[i:nl])
        i = nl + 1
        payload = raw[i:i + header["size"]]
        if len(payload) != header["size"]:
            raise AssertionError("the stream ends inside a record: %r" % header)
        i += header["size"]
        records.append((header, payload))
    return records


def free_port():
    """A TCP and UDP port on 127.0.0.1 where nothing listens (a server that is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ShareTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="natkit-share-test-")
        self.addCleanup(self.tmp.cleanup)
        self.procs = []
        self.addCleanup(self.stop_all)

    def node_env(self, name):
        """Each node its own identity, settings, state and home."""
        home = os.path.join(self.tmp.name, name)
        env = dict(BASE_ENV)
        env.update({
            "HOME": home,
            "XDG_CONFIG_HOME": os.path.join(home, "config"),
            "XDG_STATE_HOME": os.path.join(home, "state"),
            "XDG_CACHE_HOME": os.path.join(home, "cache"),
            "XDG_DATA_HOME": os.path.join(home, "data"),
        })
        os.makedirs(env["XDG_CONFIG_HOME"], exist_ok=True)
        return env

    def start(self, args, env):
        log = open(os.path.join(self.tmp.name, "%s-%d.log" % (
            os.path.basename(args[0]), len(self.procs))), "w+")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=log, text=True, env=env)
        p.log = log
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            if p.stdout:
                p.stdout.close()
            if p.stderr:
                p.stderr.close()
            p.log.close()

    def log_of(self, p):
        p.log.flush()
        p.log.seek(0)
        return p.log.read()[-4000:]

    def read_json_line(self, p, what, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], deadline - time.monotonic())
            if not r:
                break
            line = p.stdout.readline()
            if not line:
                break
            if line.startswith("{"):
                return json.loads(line)
        self.fail("%s printed no JSON line within %d s:\n%s" % (what, timeout, self.log_of(p)))

    def start_server(self):
        server = self.start([NATKIT_SERVER, "--listen", "127.0.0.1:0", "--json"],
                            self.node_env("server"))
        ready = self.read_json_line(server, "natkit-server")
        self.assertEqual(ready["event"], "ready", ready)
        return "127.0.0.1:%d" % ready["tls_port"], "127.0.0.1:%d" % ready["udp_port"]

    def run_share(self, env, *args, timeout=90):
        """The real window under Xvfb; returns (exit status, JSON lines)."""
        cmd = ["xvfb-run", "--auto-servernum", "--server-args=-screen 0 1280x1024x24 -nolisten tcp",
               "gjs", "-m", SHARE, *args]
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=env, timeout=timeout)
        events = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
        return r, events

    def start_peer(self, server):
        """The peer: registers at the server, writes the stream it receives
        to a file; returns (process, its peer address, the file)."""
        raw = os.path.join(self.tmp.name, "received.raw")
        peer_env = self.node_env("peer")
        log = open(os.path.join(self.tmp.name, "peer.log"), "w+")
        listener = subprocess.Popen(
            [NAT_TOOL, "listen", "--server", server, "--json", "--once",
             "--exec", "sh -c 'cat > \"$0\"' %s" % raw],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
            text=True, env=peer_env)
        listener.log = log
        self.procs.append(listener)
        address = None
        deadline = time.monotonic() + 20
        while address is None and time.monotonic() < deadline:
            log.seek(0)
            for line in log:
                if line.startswith("{"):
                    address = json.loads(line).get("peer_address") or address
            if address is None:
                self.assertIsNone(listener.poll(), "nat-tool listen ended before listening:\n"
                                  + self.log_of(listener))
                time.sleep(0.05)
        self.assertIsNotNone(address, "nat-tool listen printed no address")
        return listener, address, raw

    def test_send_file_to_peer(self):
        server, stun = self.start_server()
        listener, address, raw = self.start_peer(server)

        payload = os.path.join(self.tmp.name, "holiday photos.bin")
        data = os.urandom(1024 * 1024 + 123)
        with open(payload, "wb") as f:
            f.write(data)
        message = "hello from the desktop test ✓"
        screenshot = os.path.join(ARTIFACTS, "share-window.png")
        if os.path.exists(screenshot):
            os.unlink(screenshot)

        r, events = self.run_share(self.node_env("app"), "--server", server, "--stun", stun,
                                   "--connect", address, "--message", message,
                                   "--send", payload, "--screenshot", screenshot,
                                   "--quit-when-done")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + "\npeer:\n" +
                         self.log_of(listener))
        done = [e for e in events if e.get("event") == "done"]
        self.assertEqual(len(done), 1, events)
        done = done[0]
        self.assertNotIn("error", done)
        self.assertTrue(done["registered"], done)
        self.assertTrue(done["peer_finished"], done)
        # over loopback hole punching or the relay wins; either way the
        # window says which, and whether (and why) it is relayed
        self.assertIn(done["method"], ("holepunch", "relay"), done)
        self.assertEqual(done["relayed"], done["method"] == "relay", done)
        if done["relayed"]:
            self.assertIn("relayed through", done["explanation"])
        else:
            self.assertTrue(done["explanation"].startswith("direct: "), done)
        self.assertGreaterEqual(done["rtt_us"], 0, done)

        # the peer saw the whole stream end and quit (--once)
        listener.wait(timeout=20)
        self.assertEqual(listener.returncode, 0, self.log_of(listener))

        with open(raw, "rb") as f:
            records = parse_records(f.read())
        types = [h["type"] for h, _ in records]
        self.assertEqual(types[0], "file", types)
        self.assertEqual(records[0][0]["name"], "holiday photos.bin")
        self.assertEqual(records[0][0]["total"], len(data))
        file_id = records[0][0]["id"]
        self.assertEqual(types[-3], "end", types)
        self.assertEqual(set(types[1:-3]), {"data"}, types)
        self.assertEqual(types[-2], "text", types)
        self.assertEqual(records[-2][1].decode(), message)
        self.assertEqual(types[-1], "bye", types)
        got = b"".join(p for h, p in records if h["type"] == "data" and h["id"] == file_id)
        self.assertEqual(len(got), len(data))
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest(),
                         "the file did not arrive byte-identical")
        self.assertEqual(done["bytes_sent"], os.path.getsize(raw))

        # the connection list (a Gtk.ListView on natkit's Gio.ListModel)
        # showed the live connection, with what its properties said
        shown = [e for e in events if e.get("event") == "screenshot"]
        self.assertEqual(len(shown), 1, events)
        rows = shown[0]["connection_rows"]
        self.assertEqual(len(rows), 1, shown)
        self.assertIn("— connected", rows[0])
        self.assertIn("%s (%s), %s" % (done["method"], done["transport"],
                                       "relayed" if done["relayed"] else "direct"), rows[0])
        self.assertRegex(rows[0], r"RTT [0-9.]+ ms")
        self.assertIn("sent 1.0 MB", rows[0])

        width, height = png_size(screenshot)
        self.assertGreater(width, 600)
        self.assertGreater(height, 400)
        print("screenshot: %s (%dx%d)" % (screenshot, width, height))

    def test_app_to_app(self):
        """Two natkit Share windows: one receives (--receive), one sends a
        file; it lands in the receiver's Downloads byte-identical, the
        receiver confirms it, and both close cleanly."""
        server, stun = self.start_server()
        receiver_env = self.node_env("receiver")
        receiver = self.start(["xvfb-run", "--auto-servernum",
                               "--server-args=-screen 0 1280x1024x24 -nolisten tcp",
                               "gjs", "-m", SHARE, "--server", server, "--stun", stun,
                               "--receive", "--quit-when-done"], receiver_env)
        listening = self.read_json_line(receiver, "natkit Share --receive", timeout=60)
        self.assertEqual(listening["event"], "listening", listening)

        payload = os.path.join(self.tmp.name, "report.pdf")
        data = os.urandom(700 * 1000 + 1)
        with open(payload, "wb") as f:
            f.write(data)
        r, events = self.run_share(self.node_env("sender"), "--server", server, "--stun", stun,
                                   "--connect", listening["peer_address"], "--send", payload,
                                   "--message", "here is the report", "--quit-when-done")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        done = [e for e in events if e.get("event") == "done"][0]
        self.assertNotIn("error", done)
        self.assertTrue(done["delivered"], "the receiver did not confirm the file: %r" % done)
        self.assertTrue(done["peer_said_bye"], done)

        got = self.read_json_line(receiver, "natkit Share --receive", timeout=60)
        self.assertEqual(got.get("event"), "done", got)
        self.assertNotIn("error", got)
        self.assertEqual(receiver.wait(timeout=30), 0, self.log_of(receiver))
        self.assertEqual(len(got["received"]), 1, got)
        received = got["received"][0]
        self.assertEqual(received["name"], "report.pdf")
        self.assertEqual(os.path.dirname(received["path"]),
                         os.path.join(receiver_env["HOME"], "Downloads"))
        with open(received["path"], "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                             hashlib.sha256(data).hexdigest(),
                             "the file did not arrive byte-identical")

    def test_cancel_transfer(self):
        """The file's Cancel button part way, over the relay: the peer is
        told, nothing of the file stays open in the app, and the connection
        goes on."""
        server, stun = self.start_server()
        listener, address, raw = self.start_peer(server)
        screenshot = os.path.join(ARTIFACTS, "share-relayed-cancelled.png")
        if os.path.exists(screenshot):
            os.unlink(screenshot)
        payload = os.path.join(self.tmp.name, "big.bin")
        size = 4 * 1024 * 1024
        with open(payload, "wb") as f:
            f.write(os.urandom(size))
        r, events = self.run_share(self.node_env("app"), "--server", server, "--stun", stun,
                                   "--method", "relay",
                                   "--connect", address, "--send", payload,
                                   "--cancel-after", "200000", "--message", "after the cancel",
                                   "--screenshot", screenshot, "--quit-when-done")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + "\npeer:\n" +
                         self.log_of(listener))
        done = [e for e in events if e.get("event") == "done"][0]
        self.assertNotIn("error", done)
        # through the relay (--method relay): the window says so, and why
        self.assertEqual(done["method"], "relay", done)
        self.assertTrue(done["relayed"], done)
        self.assertIn("relayed through", done["explanation"])
        self.assertGreaterEqual(done["cancelled_at"], 200000)
        self.assertLess(done["cancelled_at"], size)
        self.assertFalse(done["file_still_open"], "the cancelled file is still open")
        self.assertTrue(done["peer_finished"], done)
        listener.wait(timeout=20)
        self.assertEqual(listener.returncode, 0)
        with open(raw, "rb") as f:
            records = parse_records(f.read())
        types = [h["type"] for h, _ in records]
        # the file up to the cancel; the stream goes on: the text comes after
        self.assertEqual(types[0], "file", types)
        self.assertEqual(types[-3], "cancel", types)
        self.assertEqual(set(types[1:-3]), {"data"}, types)
        self.assertEqual(types[-2], "text", types)
        self.assertEqual(records[-2][1].decode(), "after the cancel")
        self.assertEqual(types[-1], "bye", types)
        got = b"".join(p for h, p in records if h["type"] == "data")
        self.assertEqual(len(got), done["cancelled_at"])
        with open(payload, "rb") as f:
            self.assertEqual(got, f.read(len(got)))
        png_size(screenshot)
        print("screenshot: %s" % screenshot)

    def test_unknown_peer(self):
        """A well-formed address of a peer that is not there: a clear
        message, and the app goes on (exits on its own here)."""
        server, stun = self.start_server()
        r = subprocess.run([NAT_TOOL, "id", "--json"], capture_output=True, text=True,
                           env=self.node_env("nobody"), timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        nobody = "%s@%s" % (json.loads(r.stdout)["peer_id"], server)
        r, events = self.run_share(self.node_env("app"), "--server", server, "--stun", stun,
                                   "--connect", nobody, "--quit-when-done")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        done = [e for e in events if e.get("event") == "done"][0]
        self.assertTrue(done["registered"], done)
        self.assertTrue(done["error"].startswith("Could not connect to "), done)
        print("unknown peer: " + done["error"])

    def test_peer_never_answers(self):
        """A peer that is registered but never answers (stopped): natkit
        gives up waiting for its answer (10 s) with a clear message."""
        server, stun = self.start_server()
        listener, address, raw = self.start_peer(server)
        listener.send_signal(signal.SIGSTOP)
        self.addCleanup(listener.send_signal, signal.SIGCONT)
        r, events = self.run_share(self.node_env("app"), "--server", server, "--stun", stun,
                                   "--connect", address, "--quit-when-done")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        done = [e for e in events if e.get("event") == "done"][0]
        self.assertTrue(done["registered"], done)
        self.assertTrue(done["error"].startswith("Could not connect to "), done)
        print("peer never answers: " + done["error"])

    def test_bad_input(self):
        # the natkit-server is down (nothing listens on its port), and the
        # pasted address is not a peer address: clear messages, no hang
        down = "127.0.0.1:%d" % free_port()
        screenshot = os.path.join(ARTIFACTS, "share-bad-input.png")
        if os.path.exists(screenshot):
            os.unlink(screenshot)
        r, events = self.run_share(self.node_env("bad"), "--server", down, "--stun", down,
                                   "--connect", "this is not a peer address",
                                   "--screenshot", screenshot, "--quit-when-done")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        done = [e for e in events if e.get("event") == "done"]
        self.assertEqual(len(done), 1, events)
        self.assertFalse(done[0]["registered"])
        self.assertIn("That is not a peer address", done[0]["error"])
        self.assertIn("PEER-ID@HOST:PORT", done[0]["error"])
        # what the window said
        shown = [e for e in events if e.get("event") == "screenshot"]
        self.assertEqual(len(shown), 1, events)
        self.assertIn("Cannot reach natkit-server %s" % down, shown[0]["address_status"])
        self.assertIn("Could not check your network", shown[0]["network_status"])
        self.assertIn("That is not a peer address", shown[0]["connect_status"])
        self.assertEqual(shown[0]["connection_rows"], [])
        png_size(screenshot)
        print("screenshot: %s" % screenshot)


if __name__ == "__main__":
    check_requirements()
    unittest.main(verbosity=2)
