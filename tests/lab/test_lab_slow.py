#!/usr/bin/python3
# natkit lab test: a path that turns slow is swapped for a faster one.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Two hosts behind port-restricted NATs connect directly (hole punching)
while a 12 MB stream runs from A to B. Then A's router delays every packet
to B's public address by 300 ms (the lab's WAN forwarder, natlab.py
Lab.delay_to(): other traffic is not held up), so the direct path's round trip is above the default
200 ms threshold while the relay, whose server is not delayed, answers in
a few milliseconds:

- after three slow probes the connection tries the other methods, one at
  a time, on trial: tcp-holepunch goes to the same slow place and is left
  again ("no faster"), the relay is faster and keeps the connection; the
  path-changed events say why ("answered in more than 200 ms … trying
  relay");
- it stays there: the background upgrade does not move it back to the
  slow direct path;
- the stream arrives byte-identical.

Then the opposite case: the delay is put on the server's address too, so
the relay is no faster: the connection tries each, finds it no faster and
moves back ("no faster … back to holepunch").

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


def run_case(tap, tmp, label, delayed, expect_stay):
    tag = label.replace(" ", "-")
    with Lab(site_a="port-restricted", site_b="port-restricted", turn=False,
             shaped=True) as lab:
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-" + tag)
        if not tap.ok(bool(ready and address), "%s: server and listener are up" % label,
                      diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        outfile = os.path.join(tmp, "slow-out")
        proc, ev, digest_file = start_feed(lab, tmp, "a-" + tag, address, 12 << 20, 30, outfile)
        got = ev.wait("connected", 30) or {}
        tap.ok(got.get("method") == "holepunch",
               "%s: connected directly (%s)" % (label, got.get("method")),
               diag=ev.text[-2000:])
        time.sleep(2)
        targets = [lab.site("b").public_ip] + ([lab.server_ips[0]] if "relay" in delayed
                                               else [])
        lab.delay_to("a", targets, 300)
        slowed = time.monotonic()
        # the other methods are tried one at a time, on trial; one to the
        # same place (tcp-holepunch) is just as slow and is left again
        moves = []
        deadline = slowed + 30
        while time.monotonic() < deadline:
            ev.poll(0.3)
            moves = [e for e in ev.events if e.get("event") == "path-changed"]
            if expect_stay and any(m.get("to") == "relay" for m in moves):
                break
            if not expect_stay and sum("no faster" in m.get("reason", "") for m in moves) >= 2:
                break
        words = "; ".join("%s -> %s: %s" % (m.get("from"), m.get("to"), m.get("reason"))
                          for m in moves)
        first = moves[0] if moves else {}
        tap.ok(first.get("from") == "holepunch" and
               "answered in more than 200 ms" in first.get("reason", ""),
               "%s: the slow path is noticed and another tried: %s" % (
                   label, first.get("reason")), diag=ev.text[-2000:])
        if expect_stay:
            to_relay = [m for m in moves if m.get("to") == "relay"]
            tap.ok(bool(to_relay),
                   "%s: %.1f s after the slowdown the connection is on the relay (%s)" % (
                       label, time.monotonic() - slowed, words), diag=ev.text[-2000:])
            after = len(ev.events)
            back = ev.wait("path-changed", 12, after=after)
            tap.ok(back is None,
                   "%s: stays on the relay (no move back to a slow direct path)" % label,
                   diag=repr(back))
        else:
            backs = [m for m in moves if "no faster" in m.get("reason", "")]
            tap.ok(len(backs) >= 1 and all(m.get("to") == "holepunch" for m in backs),
                   "%s: nothing is faster: each trial moves back to holepunch (%s)" % (
                       label, words), diag=ev.text[-2000:])
        finish_feed(tap, proc, ev, digest_file, outfile,
                    "%s: the 12 MB stream arrived byte-identical" % label, 120)
        stop(listener)
        lev.poll(0.5)
        if os.environ.get("NATLAB_DEBUG"):
            for name, e in (("connect", ev), ("listen", lev)):
                with open("/tmp/nklab-slow-%s-%s.log" % (tag, name), "wb") as f:
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
    tmp = tempfile.mkdtemp(prefix="nklab-slow-")
    try:
        only = os.environ.get("NATKIT_LAB_SLOW_CASE")
        if only in (None, "", "1"):
            run_case(tap, tmp, "slow direct path", ["direct"], expect_stay=True)
        if only in (None, "", "2"):
            run_case(tap, tmp, "slow everywhere", ["direct", "relay"], expect_stay=False)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.done()


if __name__ == "__main__":
    main()
