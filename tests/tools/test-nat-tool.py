#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""nat-tool's commands, JSON output, messages and exit codes."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

NAT_TOOL = os.environ.get("NAT_TOOL", "nat-tool")


class NatToolTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.env = dict(os.environ)
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.tmp.name, "config")
        self.env["XDG_STATE_HOME"] = os.path.join(self.tmp.name, "state")
        self.env.pop("NATKIT_PLUGIN_RANKS", None)

    def tearDown(self):
        self.tmp.cleanup()

    def run_tool(self, *args, env=None):
        return subprocess.run([NAT_TOOL, *args], capture_output=True, text=True,
                              env=env or self.env, timeout=60)

    def test_plugins_json(self):
        r = self.run_tool("plugins", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        data = json.loads(r.stdout)
        plugins = {p["name"]: p for p in data["plugins"]}
        self.assertIn("loopback", plugins)
        lb = plugins["loopback"]
        self.assertEqual(set(lb), {"name", "description", "kind", "rank", "default_rank",
                                   "state", "reason", "version", "file"})
        self.assertEqual(lb["kind"], "traversal")
        self.assertEqual(lb["state"], "loaded")
        self.assertEqual(lb["rank"], 0)
        self.assertIsNone(lb["reason"])
        self.assertTrue(lb["file"].endswith("libnatkit-loopback.so"))

    def test_plugins_env_rerank(self):
        env = dict(self.env, NATKIT_PLUGIN_RANKS="loopback:primary+2")
        data = json.loads(self.run_tool("plugins", "--json", env=env).stdout)
        lb = [p for p in data["plugins"] if p["name"] == "loopback"][0]
        self.assertEqual(lb["rank"], 258)
        self.assertEqual(lb["default_rank"], 0)

    def test_plugins_config_disable(self):
        cfg = os.path.join(self.tmp.name, "c.json")
        with open(cfg, "w") as f:
            f.write('{"plugins": {"loopback": {"enabled": false}}}')
        r = self.run_tool("plugins", "--config", cfg)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("disabled", r.stdout)
        self.assertIn("is disabled in the configuration " + cfg, r.stdout)

    def test_plugins_human(self):
        r = self.run_tool("plugins")
        self.assertEqual(r.returncode, 0)
        self.assertTrue(r.stdout.startswith("NAME"))
        self.assertIn("loopback", r.stdout)

    def test_id(self):
        r1 = self.run_tool("id", "--json")
        self.assertEqual(r1.returncode, 0, r1.stderr)
        first = json.loads(r1.stdout)
        self.assertTrue(first["created"])
        key = first["identity_file"]
        self.assertEqual(key, os.path.join(self.env["XDG_CONFIG_HOME"], "natkit", "identity.key"))
        self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
        r2 = self.run_tool("id")
        self.assertEqual(r2.returncode, 0)
        self.assertEqual(r2.stdout.strip(), first["peer_id"])
        self.assertEqual(r2.stderr, "")

    def test_id_refuses_readable_key(self):
        self.assertEqual(self.run_tool("id").returncode, 0)
        key = os.path.join(self.env["XDG_CONFIG_HOME"], "natkit", "identity.key")
        os.chmod(key, 0o644)
        r = self.run_tool("id")
        self.assertEqual(r.returncode, 1)
        self.assertIn("chmod 600", r.stderr)
        r = self.run_tool("id", "--json")
        self.assertEqual(r.returncode, 1)
        err = json.loads(r.stdout)["error"]
        self.assertEqual(err["domain"], "natkit-error-quark")
        self.assertIn("mode 0644", err["message"])

    def test_bad_config(self):
        cfg = os.path.join(self.tmp.name, "bad.json")
        with open(cfg, "w") as f:
            f.write('{\n  "stun": [\n}\n')
        r = self.run_tool("plugins", "--config", cfg)
        self.assertEqual(r.returncode, 1)
        self.assertIn(cfg + ":3:", r.stderr)
        self.assertIn("not valid JSON", r.stderr)

    def test_usage_errors(self):
        self.assertEqual(self.run_tool().returncode, 2)
        r = self.run_tool("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command", r.stderr)
        r = self.run_tool("plugins", "--no-such-option")
        self.assertEqual(r.returncode, 2)
        self.assertIn("nat-tool plugins --help", r.stderr)

    def test_help(self):
        r = self.run_tool("--help")
        self.assertEqual(r.returncode, 0)
        for cmd in ("plugins", "id", "version"):
            self.assertIn(cmd, r.stdout)
        for args in (("plugins", "--help"), ("help", "id")):
            r = self.run_tool(*args)
            self.assertEqual(r.returncode, 0)
            self.assertIn("--json", r.stdout)
            self.assertIn("Exit status", r.stdout)

    def test_detect_usage(self):
        r = self.run_tool("detect", "--timeout", "-1")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--timeout", r.stderr)
        # No server given and none configured: says how to give one.
        r = self.run_tool("detect", "--json")
        self.assertEqual(r.returncode, 1)
        self.assertIn("--stun", json.loads(r.stdout)["error"]["message"])

    def test_server_options(self):
        # --turn needs its credentials, and they need a --turn
        for cmd in ("connect", "listen", "detect"):
            r = self.run_tool(cmd, "--turn", "turn:127.0.0.1")
            self.assertEqual(r.returncode, 2, cmd)
            self.assertIn("--turn-user", r.stderr)
            r = self.run_tool(cmd, "--turn-user", "alice", "--turn-password", "x")
            self.assertEqual(r.returncode, 2, cmd)
            self.assertIn("go with --turn", r.stderr)
        # only where servers are used
        r = self.run_tool("plugins", "--turn", "turn:127.0.0.1")
        self.assertEqual(r.returncode, 2)
        # a URI that is not a TURN URI: says how to write one
        r = self.run_tool("detect", "--json", "--stun", "127.0.0.5:34799",
                          "--turn", "stun:127.0.0.1", "--turn-user", "a",
                          "--turn-password", "b")
        self.assertEqual(r.returncode, 1)
        self.assertIn("RFC 7065", json.loads(r.stdout)["error"]["message"])
        for cmd in ("connect", "listen", "detect"):
            r = self.run_tool(cmd, "--help")
            for opt in ("--stun", "--turn", "--turn-user", "--turn-password"):
                self.assertIn(opt, r.stdout, cmd)

    def test_detect_unreachable(self):
        # Nothing listens there (UDP or TCP): a clear error within the timeout.
        r = self.run_tool("detect", "--stun", "127.0.0.5:34799", "--timeout", "1", "--json")
        self.assertEqual(r.returncode, 1)
        err = json.loads(r.stdout)["error"]
        self.assertIn("No STUN server answered", err["message"])
        self.assertIn("not reachable over TCP", err["message"])

    def test_map_usage(self):
        for args in (("map",), ("map", "udp"), ("map", "sctp", "5000"),
                     ("map", "udp", "70000"), ("map", "udp", "0"),
                     ("map", "udp", "5000", "--lifetime", "0.5"),
                     ("map", "udp", "5000", "--external-port", "70000"),
                     ("unmap",)):
            r = self.run_tool(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertTrue(r.stderr.startswith("nat-tool "), r.stderr)

    def test_map_unknown_method(self):
        # refused before anything is sent: no port mapper speaks it
        r = self.run_tool("map", "udp", "5000", "--method", "carrier-pigeon", "--json")
        self.assertEqual(r.returncode, 1)
        err = json.loads(r.stdout)["error"]
        self.assertIn("carrier-pigeon", err["message"])
        self.assertIn("available:", err["message"])

    def test_unmap_nothing_recorded(self):
        with tempfile.TemporaryDirectory() as state:
            env = dict(self.env, XDG_STATE_HOME=state)
            r = self.run_tool("unmap", "--all", "--json", env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout), {"removed": 0, "skipped": 0})

    def test_history(self):
        r = self.run_tool("history")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("No connections yet", r.stdout)
        self.assertEqual(json.loads(self.run_tool("history", "--json").stdout),
                         {"version": 1, "peers": {}, "pairs": {}, "summary": {}})
        # a recorded history is shown, per peer and method
        path = os.path.join(self.env["XDG_STATE_HOME"], "natkit", "history.json")
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            json.dump({"version": 1, "peers": {"PeerOne1234": {"methods": {
                "holepunch": {"attempts": 2, "successes": 1, "failures": 1,
                              "failures_in_a_row": 1, "connect_ms": 42,
                              "last_reason": "no punch packet got through"}}}}}, f)
        r = self.run_tool("history")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("PeerOne1", r.stdout)
        self.assertIn("holepunch", r.stdout)
        self.assertIn("42 ms", r.stdout)
        self.assertIn("no punch packet got through", r.stdout)
        data = json.loads(self.run_tool("history", "--json").stdout)
        self.assertEqual(data["peers"]["PeerOne1234"]["methods"]["holepunch"]["successes"], 1)
        self.assertEqual(data["summary"], {"holepunch": {
            "attempts": 2, "successes": 1, "failures": 1, "peers": 1,
            "median_connect_ms": 42}})
        # a damaged file is an empty history, not an error
        with open(path, "w") as f:
            f.write("{not json")
        r = self.run_tool("history", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["peers"], {})

    def test_history_summary(self):
        """Per method over all peers: summed counts, median connect time."""
        path = os.path.join(self.env["XDG_STATE_HOME"], "natkit", "history.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        peers = {
            "PeerOne1234": {"methods": {
                "holepunch": {"attempts": 3, "successes": 2, "failures": 1, "connect_ms": 40},
                "relay": {"attempts": 1, "successes": 1, "failures": 0, "connect_ms": 90}}},
            "PeerTwo5678": {"methods": {
                "holepunch": {"attempts": 4, "successes": 0, "failures": 4,
                              "last_reason": "symmetric NAT"}}},
            "PeerThree90": {"methods": {
                "holepunch": {"attempts": 1, "successes": 1, "failures": 0, "connect_ms": 60},
                "relay": {"attempts": 2, "successes": 1, "failures": 1, "connect_ms": 130}}},
            "PeerFour123": {"methods": {
                "holepunch": {"attempts": 1, "successes": 1, "failures": 0, "connect_ms": 500}}},
        }
        with open(path, "w") as f:
            json.dump({"version": 1, "peers": peers}, f)
        data = json.loads(self.run_tool("history", "--json").stdout)
        self.assertEqual(data["peers"], peers)
        self.assertEqual(data["summary"], {
            # connect times 40, 60, 500 (one peer never connected): median 60
            "holepunch": {"attempts": 9, "successes": 4, "failures": 5, "peers": 4,
                          "median_connect_ms": 60},
            # 90 and 130: the mean of the middle two
            "relay": {"attempts": 3, "successes": 2, "failures": 1, "peers": 2,
                      "median_connect_ms": 110},
        })
        r = self.run_tool("history")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        header = [i for i, line in enumerate(lines) if line.startswith("METHOD")]
        self.assertEqual(len(header), 1, r.stdout)
        self.assertEqual(lines[header[0] + 1].split(),
                         ["holepunch", "9", "4", "5", "4", "60", "ms"])
        self.assertEqual(lines[header[0] + 2].split(),
                         ["relay", "3", "2", "1", "2", "110", "ms"])

    @unittest.skipUnless(os.environ.get("NATKIT_SERVER"), "NATKIT_SERVER is not set")
    def test_connect_events(self):
        """connect --json over natkit-server's relay on loopback: the
        connected event says how, the closed one how much and how it went;
        the human output ends with a summary line."""
        env = dict(self.env, NATKIT_PLUGIN_RANKS="natpmp:none,upnp:none")
        procs = []

        # the listener is another node: its own identity
        listener_env = dict(env, XDG_CONFIG_HOME=os.path.join(self.tmp.name, "listener"))

        def start(*args):
            p = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=listener_env)
            procs.append(p)
            return p

        def stop():
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait(timeout=10)
                p.stdout.close()
                p.stderr.close()
        self.addCleanup(stop)

        server = start(os.environ["NATKIT_SERVER"], "--listen", "127.0.0.1:0", "--json")
        port = json.loads(server.stdout.readline())["tls_port"]
        listener = start(NAT_TOOL, "listen", "--server", "127.0.0.1:%d" % port,
                         "--exec", "cat", "--json")
        address = None
        while address is None:
            line = listener.stderr.readline()
            self.assertTrue(line, "nat-tool listen ended before listening")
            event = json.loads(line) if line.startswith("{") else {}
            address = event.get("peer_address")

        data = bytes(range(256)) * 40 + b"end"
        r = subprocess.run([NAT_TOOL, "connect", "--json", "--method", "relay", address],
                           input=data, capture_output=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data)
        events = [json.loads(line) for line in r.stderr.decode().splitlines()
                  if line.startswith("{")]
        connected = [e for e in events if e["event"] == "connected"]
        closed = [e for e in events if e["event"] == "closed"]
        self.assertEqual(len(connected), 1, events)
        self.assertEqual(len(closed), 1, events)
        self.assertEqual(connected[0]["peer"], address)
        self.assertEqual(connected[0]["method"], "relay")
        self.assertIn(connected[0]["transport"], ("udp", "tls"))
        self.assertGreaterEqual(connected[0]["elapsed_ms"], 0)
        self.assertGreaterEqual(connected[0]["rtt_ms"], 0)
        self.assertEqual(closed[0]["last_method"], "relay")
        self.assertEqual(closed[0]["bytes_sent"], len(data))
        self.assertEqual(closed[0]["bytes_received"], len(data))
        history = closed[0]["state_history"]
        self.assertEqual(history[0]["state"], "connected")
        self.assertEqual(history[0]["reason"], "connected via relay (%s)"
                         % connected[0]["transport"])
        self.assertEqual(history[0]["at_ms"], 0)
        self.assertEqual(history[-1]["state"], "closed")
        self.assertRegex(history[-1]["time"], r"^\d{4}-\d\d-\d\dT")

        r = subprocess.run([NAT_TOOL, "connect", "--method", "relay", address],
                           input=data, capture_output=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data)
        last = r.stderr.decode().splitlines()[-1]
        self.assertRegex(last, r"^summary: via relay \((udp|tls)\), RTT [0-9.]+ ms, "
                         r"loss 0%, sent 10.2\skB, received 10.2\skB, up [0-9.]+ s$")

        # natkit remembers both connects: the summary counts them
        data = json.loads(self.run_tool("history", "--json", env=env).stdout)
        self.assertEqual(data["summary"]["relay"]["successes"], 2)
        self.assertEqual(data["summary"]["relay"]["peers"], 1)

    def test_version(self):
        data = json.loads(self.run_tool("version", "--json").stdout)
        self.assertRegex(data["version"], r"^\d+\.\d+\.\d+$")
        self.assertEqual(data["plugin_abi"], "1.0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
