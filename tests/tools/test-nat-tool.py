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
                         {"version": 1, "peers": {}, "pairs": {}})
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
        # a damaged file is an empty history, not an error
        with open(path, "w") as f:
            f.write("{not json")
        r = self.run_tool("history", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["peers"], {})

    def test_version(self):
        data = json.loads(self.run_tool("version", "--json").stdout)
        self.assertRegex(data["version"], r"^\d+\.\d+\.\d+$")
        self.assertEqual(data["plugin_abi"], "1.0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
