#!/usr/bin/python3
# natkit lab test: a NAT binding that changes under a direct connection is
# noticed and punched again.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Host A behind a symmetric NAT (a new random public port per flow), host
B behind a full-cone one: they connect directly (hole punching) and a
12 MB stream runs from A to B. Then A's router forgets every binding (its
conntrack table is flushed, as when a home router reboots): A's packets
now leave from another public port, which B's path does not know, and
every other flow of A (its TLS connection to natkit-server too) is cut.

- the connection notices (probes unanswered) and moves to another path:
  a path-changed event from holepunch says why;
- it ends up direct again, over a newly punched path (a path-changed
  event to holepunch) within 30 s of the flush;
- the stream arrives byte-identical.

Needs root; skips (exit 77, or NATLAB_SKIP_EXIT) otherwise."""

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
from test_lab_relay import (NAT_TOOL, SERVER, start_listener,  # noqa: E402
                            start_server, stop)
from test_lab_direct import finish_feed, start_feed  # noqa: E402


def check_rebind(tap, tmp, nat_a="symmetric", nat_b="full-cone"):
    label = "rebind %s <-> %s" % (nat_a, nat_b)
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-rebind")
        if not tap.ok(bool(ready and address), "%s: server and listener are up" % label,
                      diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        outfile = os.path.join(tmp, "rebind-out")
        proc, ev, digest_file = start_feed(lab, tmp, "a-rebind", address, 12 << 20, 30, outfile)
        got = ev.wait("connected", 30) or {}
        tap.ok(got.get("method") == "holepunch",
               "%s: connected directly to %s" % (label, got.get("remote_address")),
               diag=ev.text[-2000:])
        time.sleep(3)
        lab.flush_conntrack("a")
        flushed = time.monotonic()
        left = ev.wait("path-changed", 20)
        tap.ok(left is not None and left.get("from") == "holepunch",
               "%s: %.1f s after the router forgot its bindings, the connection left %s "
               "for %s: %s" % (label, time.monotonic() - flushed, (left or {}).get("from"),
                               (left or {}).get("to"), (left or {}).get("reason")),
               diag=ev.text[-2000:])
        back = None
        deadline = flushed + 30
        while time.monotonic() < deadline and back is None:
            ev.poll(0.3)
            for e in ev.events:
                # straight back to a new punch, or via the relay
                if e.get("event") == "path-changed" and e.get("to") == "holepunch" and \
                        e.get("remote_address") != got.get("remote_address"):
                    back = e
        tap.ok(back is not None,
               "%s: direct again %.1f s after the flush, over a new punch to %s (%s)" % (
                   label, time.monotonic() - flushed, (back or {}).get("remote_address"),
                   (back or {}).get("reason")),
               diag=ev.text[-2500:])
        finish_feed(tap, proc, ev, digest_file, outfile,
                    "%s: the 12 MB stream arrived byte-identical" % label, 120)
        stop(listener)
        if os.environ.get("NATLAB_DEBUG"):
            lev.poll(0.5)
            for name, e in (("connect", ev), ("listen", lev)):
                with open("/tmp/nklab-rebind-%s.log" % name, "wb") as f:
                    f.write(e.text)
        stop(server)


def main():
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        skip_all(str(e))
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            skip_all("%s is not built" % prog)
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="nklab-rebind-")
    try:
        check_rebind(tap, tmp)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.done()


if __name__ == "__main__":
    main()
