#!/usr/bin/python3
# natkit benchmark: ICE connect time against hole punching on the same pair.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On one pair of the lab's NAT behaviors (--pair A:B, default
port-restricted:port-restricted) with --latency MS one way on each WAN link
(12.5 ms: 50 ms RTT between the two hosts), host B runs `nat-tool listen
--exec cat` and host A `nat-tool connect` --runs times (default 5) with
one method each:

- holepunch (the baseline, measured in the same run on the same lab);
- ice with natkit-server's STUN only;
- ice with the lab's coturn as TURN server too (UDP and TCP): the end of
  its candidates waits for the allocations.

It prints the median and the spread of the whole connect time (the
`connected` event's elapsed_ms: registering at natkit-server,
connect/accept, the method, the secure handshake) in ms and in RTTs of
the direct path, and the ratio of each ice median to holepunch's.

Needs root (the lab). Prints figures; asserts nothing.

Usage: bench_ice.py [--latency MS] [--pair A:B] [--runs N]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

from natlab import NAT_TYPES, Lab, LabSkip, check_requirements  # noqa: E402
from test_lab_relay import NAT_TOOL, SERVER, Events, peer_env, start_server, stop  # noqa: E402
from test_lab_ice import PORT, turn_args  # noqa: E402


def listener(lab, tmp, name, extra):
    env = peer_env(tmp, name)
    proc = lab.popen("host_b", "exec env %s %s listen --json --server %s:%d --exec cat %s" % (
        env, NAT_TOOL, lab.server_ips[0], PORT, extra),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ev = Events(proc)
    listening = ev.wait("listening", 15)
    return proc, (listening or {}).get("peer_address")


def one_connect(lab, tmp, name, address, method, extra):
    env = peer_env(tmp, name)
    infile = os.path.join(tmp, "bench-in")
    with open(infile, "wb") as f:
        f.write(b"natkit ice bench\n")
    proc = lab.popen("host_a", "exec env %s %s connect --json --method %s %s %s < %s" % (
        env, NAT_TOOL, method, extra, address, infile),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ev = Events(proc)
    got = ev.wait("connected", 30)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return (got or {}).get("elapsed_ms")


def variant(tmp, nat_a, nat_b, latency, runs, method, turn):
    times = []
    with Lab(site_a=nat_a, site_b=nat_b, turn=True, latency_ms=latency) as lab:
        server, ready = start_server(lab, tmp)
        extra = turn_args(lab) if turn else ""
        proc, address = listener(lab, tmp, "b-%s-%d" % (method, turn), extra)
        if address is None:
            stop(proc)
            stop(server)
            return times
        for i in range(runs):
            ms = one_connect(lab, tmp, "a-%s-%d" % (method, turn), address, method, extra)
            if ms is not None:
                times.append(ms)
        stop(proc)
        stop(server)
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=12.5)
    p.add_argument("--pair", default="port-restricted:port-restricted")
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    nat_a, nat_b = args.pair.split(":")
    if nat_a not in NAT_TYPES or nat_b not in NAT_TYPES:
        sys.exit("NAT behaviors are %s" % ", ".join(NAT_TYPES))
    try:
        check_requirements(turn=True)
    except LabSkip as e:
        print("bench_ice: %s" % e)
        return
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            sys.exit("%s is not built" % prog)
    rtt = 4 * args.latency
    tmp = tempfile.mkdtemp(prefix="nkbench-ice-")
    print("ICE connect time vs holepunch: %s <-> %s, %.1f ms one way per WAN link "
          "(%.0f ms RTT between the hosts), %d runs each" % (nat_a, nat_b, args.latency,
                                                            rtt, args.runs))
    results = {}
    try:
        for label, method, turn in (("holepunch", "holepunch", False),
                                    ("ice (STUN)", "ice", False),
                                    ("ice (STUN+TURN)", "ice", True)):
            times = variant(tmp, nat_a, nat_b, args.latency, args.runs, method, turn)
            results[label] = times
            if not times:
                print("%-16s  no connection" % label)
                continue
            med = statistics.median(times)
            print("%-16s  median %6.0f ms (%4.1f RTT)  min %6.0f  max %6.0f  (%d/%d runs)" % (
                label, med, med / rtt, min(times), max(times), len(times), args.runs))
        base = results.get("holepunch")
        if base:
            for label in ("ice (STUN)", "ice (STUN+TURN)"):
                if results.get(label):
                    print("ratio %-16s / holepunch: %.2f" % (
                        label, statistics.median(results[label]) / statistics.median(base)))
    finally:
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
