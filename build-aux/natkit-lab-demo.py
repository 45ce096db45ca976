#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The demo's second half (build-aux/natkit-dev.sh demo, as root): two peers
# behind NATs of the lab (network namespaces) connect through natkit-server
# and echo 4 MiB. Also a lab test (tests/lab/meson.build: lab-demo), so
# that CI runs what the README's first command shows.
#
# Environment: NAT_TOOL and NATKIT_SERVER (the programs), NATKIT_PLUGIN_PATH
# (the plugins' folders). Exit status: 0 echoed byte-identical, 1 not, 77
# skipped (not root).
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "lab"))

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
from test_lab_relay import connect, start_listener, start_server, stop  # noqa: E402


def main():
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        print("natkit lab demo: %s" % e)
        return 77
    tmp = tempfile.mkdtemp(prefix="natkit-demo-")
    try:
        with Lab(site_a="port-restricted", site_b="symmetric", turn=False) as lab:
            server, ready = start_server(lab, tmp)
            if not ready:
                print("natkit-server did not start (NATKIT_SERVER=%s)" %
                      os.environ.get("NATKIT_SERVER"), flush=True)
                stop(server)
                return 1
            print("natkit-server on %s:7000 in the lab's internet (TLS and UDP), certificate %s"
                  % (lab.server_ips[0], ready["fingerprint"]), flush=True)
            print("host B, behind a %s NAT: nat-tool listen --exec cat" % lab.b.nat, flush=True)
            listener, lev, address = start_listener(lab, tmp, "host_b", "b")
            print("   listening as %s" % address, flush=True)
            infile = os.path.join(tmp, "in")
            outfile = os.path.join(tmp, "out")
            with open(infile, "wb") as f:
                f.write(os.urandom(4 << 20))
            print("host A, behind a %s NAT: nat-tool connect %s < 4 MiB" % (lab.a.nat, address),
                  flush=True)
            t0 = time.monotonic()
            rc, cev = connect(lab, tmp, "host_a", "a", address, infile, outfile)
            took = time.monotonic() - t0
            c = cev.wait("connected", 0) or {}
            if c:
                print("   connected via %s (%s) in %s ms, rtt %s ms" % (
                    c.get("method"), c.get("transport"), c.get("elapsed_ms"), c.get("rtt_ms")),
                    flush=True)
            else:
                print("   no connection: %s" % cev.text.decode("utf-8", "replace")[-1500:],
                      flush=True)
            with open(infile, "rb") as a, open(outfile, "rb") as b:
                same = a.read() == b.read()
            print("   4 MiB sent and echoed back %s in %.2f s" % (
                "byte-identical" if same else "CORRUPTED", took), flush=True)
            stop(listener)
            stop(server)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if rc == 0 and same else 1


if __name__ == "__main__":
    sys.exit(main())
