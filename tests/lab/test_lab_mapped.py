#!/usr/bin/python3
# natkit lab test: hole punching offers the gateway's port mapping as a
# candidate.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Both hosts behind symmetric NATs, where hole punching alone cannot
work (test_lab_direct). Site A's router runs miniupnpd (UPnP-IGD, NAT-PMP,
PCP). Host A runs `nat-tool detect` first, which finds the gateway's port
mapping services and remembers them (nat.json). Then B listens and A
connects with every method allowed:

- A's hole punching asks the gateway to map its socket's port and offers
  the mapping as a candidate: B's punches to it get through A's NAT, and
  the connection is direct (holepunch), its path at B leading to A's
  mapped address;
- the echo arrives byte-identical;
- once the connection is closed the mapping is gone from the router (A
  released it: nothing is left behind).

Needs root, coturn and miniupnpd; skips (exit 77, or NATLAB_SKIP_EXIT)
otherwise."""

import json
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402
from test_lab_relay import (NAT_TOOL, SERVER, connect, file_sha,  # noqa: E402
                            peer_env, start_listener, start_server, stop,
                            write_random)


def use_port_mappers():
    """The port mapper plugins too (natpmp, upnp), for every process the
    test starts (they inherit the environment)."""
    build = os.path.join(os.path.dirname(os.path.abspath(NAT_TOOL)), "..", "plugins")
    dirs = [d for d in os.environ.get("NATKIT_PLUGIN_PATH", "").split(":") if d]
    for p in ("holepunch", "relay", "natpmp", "upnp"):
        d = os.path.normpath(os.path.join(build, p))
        if not any(os.path.normpath(x) == d for x in dirs):
            dirs.append(d)
    os.environ["NATKIT_PLUGIN_PATH"] = ":".join(dirs)
    os.environ["NATKIT_PLUGIN_SYSTEM_PATH"] = ""
    os.environ["NATKIT_PLUGIN_RANKS"] = ""


def check_mapped(tap, tmp):
    label = "symmetric (with UPnP/PCP) <-> symmetric"
    use_port_mappers()
    with Lab(site_a="symmetric", site_b="symmetric", turn=True) as lab:
        lab.start_miniupnpd("a")
        env_a = peer_env(tmp, "a-mapped")
        r = lab.run("host_a", "env %s %s detect --json --stun %s:%d --timeout 5" % (
            env_a, NAT_TOOL, lab.stun_primary[0], lab.stun_primary[1]), timeout=60)
        try:
            info = json.loads(r.stdout)
        except ValueError:
            info = {}
        tap.ok(r.returncode == 0 and info.get("nat_type") == "symmetric" and
               info.get("gateway_services"),
               "%s: A's detection finds the gateway's services: %s" % (
                   label, info.get("gateway_services")), diag=r.stderr[-1500:])

        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-mapped")
        if not tap.ok(bool(ready and address), "%s: B listens" % label,
                      diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        infile, outfile = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        digest = write_random(infile, 256 * 1024, label)
        rc, cev = connect(lab, tmp, "host_a", "a-mapped", address, infile, outfile,
                          timeout=60, method=None)
        got = cev.wait("connected", 0) or {}
        tap.ok(rc == 0 and got.get("method") == "holepunch",
               "%s: connected directly (%s in %s ms), which hole punching alone cannot do "
               "between two symmetric NATs" % (label, got.get("method"), got.get("elapsed_ms")),
               diag=cev.text[-2500:])
        tap.ok(os.path.exists(outfile) and file_sha(outfile) == digest,
               "%s: 256 KiB echoed back byte-identical" % label)
        incoming = lev.wait("connected", 5) or {}
        tap.ok("(mapped)" in (incoming.get("remote_address") or "") and
               (incoming.get("remote_address") or "").startswith(lab.site("a").public_ip + ":"),
               "%s: B's path leads to A's mapped address %s" % (
                   label, incoming.get("remote_address")),
               diag=lev.text[-2000:])
        # closed: the mapping goes (release is asynchronous: give it a moment)
        deadline = time.monotonic() + 10
        rules = lab.miniupnpd_rules("a")
        while rules and time.monotonic() < deadline:
            time.sleep(0.5)
            rules = lab.miniupnpd_rules("a")
        tap.ok(not rules, "%s: after the connection the router holds no mapping (%s)" % (
            label, rules))
        stop(listener)
        stop(server)


def main():
    try:
        check_requirements(turn=True, miniupnpd=True)
    except LabSkip as e:
        skip_all(str(e))
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            skip_all("%s is not built" % prog)
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="nklab-mapped-")
    try:
        check_mapped(tap, tmp)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.done()


if __name__ == "__main__":
    main()
