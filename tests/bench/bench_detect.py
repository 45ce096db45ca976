#!/usr/bin/python3
# natkit benchmark: NAT behavior detection time and packets on the lab.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""For each lab NAT behavior, times `nat-tool detect --json` (process start
included; median of RUNS) and coturn's `turnutils_natdiscovery -m -f -H`
(the reference named in DESIGN.md, one run) from the same LAN host against
the same server, and prints the times, the ratio and the packets natkit
sent. Needs root (the lab); prints figures, asserts nothing.

  NAT_TOOL=_build/tools/nat-tool tests/bench/bench_detect.py [--runs N] [--latency MS]
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

from natlab import Lab  # noqa: E402

NAT_TOOL = os.environ.get("NAT_TOOL", "nat-tool")
LABS = [("full-cone", "restricted"), ("port-restricted", "symmetric")]


def timed(lab, host, cmd, timeout=120):
    start = time.monotonic()
    r = lab.run(host, cmd, timeout=timeout)
    return time.monotonic() - start, r


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency", type=int, default=0,
                        help="one-way delay in ms added on the sites' WAN links, "
                             "if the lab supports it")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_detect: needs root (the NAT lab): skipped")
        return 0

    rows = []
    for a, b in LABS:
        kwargs = {"site_a": a, "site_b": b, "hairpin_a": True, "hairpin_b": True}
        if args.latency:
            kwargs["latency_ms"] = args.latency
        with Lab(**kwargs) as lab:
            server = "%s:%d" % lab.stun_primary
            env = "NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH= XDG_CONFIG_HOME=%s" % lab.tmpdir
            for site in (lab.a, lab.b):
                times, packets = [], []
                for _ in range(args.runs):
                    t, r = timed(lab, site.host, "%s %s detect --stun %s --json"
                                 % (env, NAT_TOOL, server))
                    result = json.loads(r.stdout)
                    times.append(t)
                    packets.append(result["packets_sent"])
                ref, _ = timed(lab, site.host, ["turnutils_natdiscovery", "-m", "-f", "-H",
                                                lab.stun_primary[0]])
                rows.append((site.nat, statistics.median(times), min(times), max(times),
                             statistics.median(packets), ref, result["nat_type"]))

    print("NAT behavior detection on the lab (%d runs each, latency %d ms one way)"
          % (args.runs, args.latency))
    print("%-16s %-22s %10s %10s %8s %14s %7s" % ("site NAT", "detected", "natkit s",
                                                 "(min-max)", "packets", "natdiscovery s",
                                                 "ratio"))
    for nat, med, lo, hi, pk, ref, detected in rows:
        print("%-16s %-22s %10.3f %4.2f-%4.2f %8d %14.2f %7.3f"
              % (nat, detected, med, lo, hi, pk, ref, med / ref))
    return 0


if __name__ == "__main__":
    sys.exit(main())
