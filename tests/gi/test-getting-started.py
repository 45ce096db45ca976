#!/usr/bin/python3
# The getting-started examples work as docs/getting-started.md shows them:
# a natkit-server on loopback, listen.py registers and prints its peer
# address, connect.py (Python) and connect.js (GJS) connect to it, and
# their message comes back.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = os.environ["NATKIT_SOURCE_DIR"]
EXAMPLES = os.path.join(SRC, "examples", "getting-started")
NATKIT_SERVER = os.environ["NATKIT_SERVER"]
PYTHON = sys.executable


def readline(proc, what, timeout=20):
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode().strip() if r else ""
    if not line:
        proc.kill()
        raise AssertionError("%s printed nothing: %s" % (what, proc.stderr.read().decode()))
    return line


class GettingStarted(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="natkit-getting-started-")
        self.server = subprocess.Popen([NATKIT_SERVER, "--listen", "127.0.0.1:0", "--json"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready = json.loads(readline(self.server, "natkit-server"))
        # the server's generated certificate, pinned
        self.address = "127.0.0.1:%d#%s" % (ready["tls_port"], ready["fingerprint"])

    def tearDown(self):
        self.server.terminate()
        self.assertEqual(self.server.wait(10), 0)
        self.server.stdout.close()
        self.server.stderr.close()
        shutil.rmtree(self.tmp)

    def env(self, who):
        # each peer its own identity
        env = dict(os.environ)
        env["XDG_CONFIG_HOME"] = os.path.join(self.tmp, who, "config")
        env["XDG_STATE_HOME"] = os.path.join(self.tmp, who, "state")
        return env

    def run_pair(self, connect, who):
        listener = subprocess.Popen([PYTHON, os.path.join(EXAMPLES, "listen.py"), self.address],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=self.env("listener-" + who))
        try:
            peer_address = readline(listener, "listen.py")
            self.assertRegex(peer_address, r"^[1-9A-HJ-NP-Za-km-z]{40,50}@127\.0\.0\.1:\d+")
            r = subprocess.run(connect + [peer_address, "hello from " + who],
                               capture_output=True, text=True, timeout=60,
                               env=self.env(who))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), "hello from " + who)
            self.assertIn("connected via", r.stderr)
            self.assertEqual(listener.wait(30), 0, listener.stderr.read().decode())
        finally:
            if listener.poll() is None:
                listener.kill()
                listener.wait()
            listener.stdout.close()
            listener.stderr.close()

    def test_python(self):
        self.run_pair([PYTHON, os.path.join(EXAMPLES, "connect.py")], "python")

    def test_gjs(self):
        gjs = shutil.which("gjs")
        if gjs is None:
            self.skipTest("gjs is not installed (apt-get install gjs)")
        self.run_pair([gjs, "-m", os.path.join(EXAMPLES, "connect.js")], "gjs")

    def test_documented(self):
        """docs/getting-started.md shows the examples as they are."""
        with open(os.path.join(SRC, "docs", "getting-started.md")) as f:
            page = f.read()
        for name in ("listen.py", "connect.py", "connect.js"):
            with open(os.path.join(EXAMPLES, name)) as f:
                code = f.read()
            # the page leaves out the licence header
            body = code[code.index("\nimport") + 1:] if name.endswith(".py") else \
                code[code.index("\nimport") + 1:]
            self.assertIn(body.strip(), page, name)


if __name__ == "__main__":
    unittest.main(verbosity=2)
