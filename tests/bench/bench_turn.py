#!/usr/bin/python3
# natkit benchmark: the TURN plugin through coturn (throughput, allocations).
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""TURN plugin figures in the NAT lab (root); prints figures, asserts nothing.

1. Throughput through the lab's coturn (198.51.100.1:3478, UDP), same lab,
   same run, --repeat times each in alternating order:
     natkit    `nat-tool connect --method turn` on host A piping --mb MB to
               `nat-tool listen --exec cat` on host B (both allocate, relay to
               relay, DTLS + the reliable stream on top): MB/s each way =
               size / time from "connected" to the last echoed byte.
     uclient   coturn's own `turnutils_uclient -y -z 0 -c` on host A (two
               clients relaying to each other through the same coturn,
               --uc-msgs messages of 1200 bytes each, unpaced, no RTCP):
               MB/s = bytes it received / its wall time.
   Medians and the ratio natkit / uclient. uclient moves bare datagrams
   (it reports its own loss); natkit moves an encrypted, reliable stream.

2. Allocations one process can make and hold: tests/bench/bench-turn-alloc
   on host A makes --allocs allocations on the lab's coturn (64 in flight),
   refreshes every one every --refresh s for --hold s, then deallocates
   them: allocations per second, refreshes answered per second against the
   number asked for.

  tests/bench/bench_turn.py [--mb N] [--repeat R] [--uc-msgs N]
      [--allocs N] [--refresh S] [--hold S] [--nat-a TYPE] [--nat-b TYPE]

Environment: NATKIT_BUILDDIR (default: _build of this source tree),
NAT_TOOL, NATKIT_SERVER, BENCH_TURN_ALLOC (default: in NATKIT_BUILDDIR).
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SRC, "tests", "lab"))

BUILDDIR = os.environ.get("NATKIT_BUILDDIR", os.path.join(SRC, "_build"))
os.environ.setdefault("NAT_TOOL", os.path.join(BUILDDIR, "tools", "nat-tool"))
os.environ.setdefault("NATKIT_SERVER", os.path.join(BUILDDIR, "tools", "natkit-server"))
os.environ.setdefault("NATKIT_PLUGIN_PATH", ":".join(
    os.path.join(BUILDDIR, "plugins", p) for p in ("turn", "relay")))
ALLOC = os.environ.get("BENCH_TURN_ALLOC",
                       os.path.join(BUILDDIR, "tests", "bench", "bench-turn-alloc"))

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
import test_lab_turn as T  # noqa: E402


def natkit_once(lab, tmp, size, n):
    opts = T.turn_options(T.TRANSPORTS["udp"], lab.turn_user, lab.turn_password)
    label = "bench-%d" % n
    listener, lev, address = T.start_listener(lab, tmp, "b-" + label, opts)
    if address is None:
        T.stop(listener)
        return None
    infile = os.path.join(tmp, "in")
    outfile = os.path.join(tmp, "out-%d" % n)
    if not os.path.exists(infile) or os.path.getsize(infile) != size:
        T.write_random(infile, size, "bench")
    proc, cev = T.start_connector(lab, tmp, "a-" + label, address, opts, outfile)
    if cev.wait("connected", 30) is None:
        T.stop(proc)
        T.stop(listener)
        return None
    t0 = time.monotonic()
    T.feed(proc, infile)
    rc = T.wait_exit(proc, cev, 300, also=[lev])
    took = time.monotonic() - t0
    T.wait_exit(listener, lev, 30)
    T.stop(listener)
    ok = rc == 0 and os.path.getsize(outfile) == size
    os.unlink(outfile)
    return size / 1e6 / took if ok else None


def uclient_once(lab, msgs):
    t0 = time.monotonic()
    r = lab.run("host_a", ["turnutils_uclient", "-y", "-z", "0", "-c", "-n", str(msgs),
                           "-l", "1200", "-m", "1", "-u", lab.turn_user, "-w",
                           lab.turn_password, lab.server_ips[0]], timeout=300)
    took = time.monotonic() - t0
    text = r.stdout + r.stderr
    m = re.findall(r"tot_recv_bytes ~ (\d+)", text)
    lost = re.findall(r"Total lost packets (\d+) \(([\d.]+)%\)", text)
    if r.returncode != 0 or not m:
        return None, None
    # -y: two clients, each receiving what the other sends: one direction
    # is half the bytes
    return int(m[-1]) / 2 / 1e6 / took, (lost[-1][1] if lost else "?")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=int, default=20)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--uc-msgs", type=int, default=20000)
    p.add_argument("--allocs", type=int, default=2000)
    p.add_argument("--refresh", type=int, default=2)
    p.add_argument("--hold", type=int, default=10)
    p.add_argument("--nat-a", default="none")
    p.add_argument("--nat-b", default="none")
    args = p.parse_args()
    try:
        check_requirements(turn=True)
    except LabSkip as e:
        print("skipped: %s" % e)
        return 0
    tmp = tempfile.mkdtemp(prefix="bench-turn-")
    size = args.mb * 1024 * 1024
    with Lab(site_a=args.nat_a, site_b=args.nat_b) as lab:
        server, ready = T.start_server(lab, tmp)
        natkit, uclient, losses = [], [], []
        for i in range(args.repeat):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for which in order:
                if which == 0:
                    v = natkit_once(lab, tmp, size, i)
                    print("  natkit  run %d: %s MB/s each way" % (
                        i, "%.1f" % v if v else "FAILED"), flush=True)
                    if v:
                        natkit.append(v)
                else:
                    v, lost = uclient_once(lab, args.uc_msgs)
                    print("  uclient run %d: %s MB/s one way (lost %s%%)" % (
                        i, "%.1f" % v if v else "FAILED", lost), flush=True)
                    if v:
                        uclient.append(v)
        T.stop(server)
        print("throughput through coturn (UDP, %s <-> %s):" % (args.nat_a, args.nat_b))
        if natkit and uclient:
            n, u = statistics.median(natkit), statistics.median(uclient)
            print("  natkit TURN plugin  %.1f MB/s each way (%d MB echo, median of %d)" % (
                n, args.mb, len(natkit)))
            print("  turnutils_uclient   %.1f MB/s one way (median of %d)" % (u, len(uclient)))
            print("  ratio natkit / uclient = %.2f" % (n / u))
        else:
            print("  incomplete: natkit %r uclient %r" % (natkit, uclient))

        if os.access(ALLOC, os.X_OK):
            r = lab.run("host_a", [ALLOC, "turn:%s:3478?transport=udp" % lab.server_ips[0],
                                   lab.turn_user, lab.turn_password, str(args.allocs), "64",
                                   str(args.refresh), str(args.hold)], timeout=600)
            print("allocations from one process (%d, refreshed every %d s for %d s):" % (
                args.allocs, args.refresh, args.hold))
            print("  " + (r.stdout.strip() or r.stderr.strip()[-500:]))
        else:
            print("allocations: %s is not built" % ALLOC)
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
