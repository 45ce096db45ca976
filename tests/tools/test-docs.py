#!/usr/bin/python3
# The man pages and the bash completion say what the programs do: every
# command and option that `--help` lists is in nat-tool(1), natkit-server(8)
# and the completion, which offers the installed plugins' methods.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import os
import re
import subprocess
import unittest

NAT_TOOL = os.environ["NAT_TOOL"]
NATKIT_SERVER = os.environ["NATKIT_SERVER"]
SRC = os.environ["NATKIT_DATA_DIR"]


def run(*args):
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def commands():
    out = run(NAT_TOOL, "--help")
    section = out.split("Commands:")[1].split("\n\n")[0]
    return [line.split()[0] for line in section.strip().splitlines()]


def options(*cmd):
    return sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", run(*cmd, "--help"))))


def man(name):
    with open(os.path.join(SRC, name)) as f:
        return f.read().replace("\\-", "-")


def complete(*words):
    """What the completion offers after `nat-tool WORDS...` (the last word
    being completed)."""
    script = os.path.join(SRC, "nat-tool.bash-completion")
    words = ("nat-tool",) + words
    cmd = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
           '_nat_tool; printf "%s\\n" "${COMPREPLY[@]}"')
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(NAT_TOOL) + ":" + env.get("PATH", "")
    r = subprocess.run(["bash", "-c", cmd, "bash", script] + list(words),
                       capture_output=True, text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.split("\n") if w]


class ManPages(unittest.TestCase):
    def test_nat_tool(self):
        page = man("nat-tool.1")
        self.assertGreater(len(commands()), 5)
        for cmd in commands():
            if cmd == "help":
                continue
            self.assertRegex(page, r"\n\.SS %s\b" % re.escape(cmd), cmd)
            for opt in options(NAT_TOOL, cmd):
                self.assertIn(opt, page, "nat-tool %s %s" % (cmd, opt))
        for section in ("EXIT STATUS", "ENVIRONMENT", "FILES", "EXAMPLES"):
            self.assertIn(".SH " + section, page)

    def test_natkit_server(self):
        page = man("natkit-server.8")
        opts = options(NATKIT_SERVER)
        self.assertIn("--turn-uri", opts)
        for opt in opts:
            if opt == "--help-all":
                continue
            self.assertIn(opt, page, opt)


class Completion(unittest.TestCase):
    def test_commands(self):
        self.assertEqual(sorted(complete("")), sorted(commands() + ["--help", "--version"]))
        self.assertEqual(complete("co"), ["connect"])
        self.assertEqual(sorted(complete("help", "")), sorted(commands()))

    def test_options(self):
        for cmd in commands():
            if cmd == "help":
                continue
            offered = set(complete(cmd, "--"))
            for opt in options(NAT_TOOL, cmd):
                self.assertIn(opt, offered, "nat-tool %s %s" % (cmd, opt))
            # nothing the command does not take
            self.assertLessEqual(offered, set(options(NAT_TOOL, cmd)), cmd)

    def test_method_values(self):
        offered = complete("connect", "--method", "")
        self.assertIn("relay", offered)
        self.assertIn("holepunch", offered)
        self.assertNotIn("natpmp", offered)  # a port mapper, not a method
        self.assertEqual(complete("connect", "--method", "=", "rel"), ["relay"])
        self.assertEqual(sorted(complete("map", "--method", "")), ["natpmp", "pcp", "upnp"])
        self.assertEqual(sorted(complete("map", "")), ["tcp", "udp"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
