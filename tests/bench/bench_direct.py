#!/usr/bin/python3
# natkit benchmark: connect times per NAT pair on the lab at a set RTT.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""For every pair of the lab's NAT behaviors (or --pairs A:B,...), with
--latency MS one way on each WAN link (12.5 ms: 50 ms RTT between the two
hosts, 25 ms from each host to natkit-server), host B runs `nat-tool listen
--exec cat` and host A `nat-tool connect` with every method allowed, and
this prints per pair:

- the method the race picked;
- the whole connect time (from the call: registering at the server,
  connect/accept over signaling, the race, the secure handshake), in ms
  and in RTTs of the direct path;
- for hole punching (UDP, or TCP simultaneous open: tcp-holepunch), the
  time from the peer's candidates arriving (A's debug log) to the secure session being up, and from there to the first
  echoed byte, in ms and RTTs — the DESIGN goal is the first byte within
  3 RTT of the candidates arriving;
- the failover time of one run (a direct path cut on both routers while a
  stream flows; from the cut to the echo growing again), with --failover;
- the birthday punch (docs/protocol.md 7.4) for symmetric <-> port-restricted,
  both orders, --birthday-runs times each (default 5; 0 skips it): how often
  the punch found a path (and how often it did before the relay, so that
  the connection started direct), the easy side's probes and the hard
  side's packets and sockets, the time from the birthday's start to the
  path and the whole connect time. The figures come from the plugin's
  "birthday punch:" debug lines on both hosts. Every run has a second STUN
  server (the peers need two to learn how their NATs map). The limits can
  be changed with NATKIT_HOLEPUNCH_BIRTHDAY_SOCKETS, _PROBES, _RATE, _MS.

Needs root (the lab). Prints figures; asserts nothing.

With --method M only that method is allowed (`nat-tool connect --method
M`), e.g. tcp-holepunch on the pairs with a UDP-blocked side, where the
race would otherwise wait for the relay's handshake first.

Usage: bench_direct.py [--latency MS] [--pairs A:B,...] [--method M] [--failover]
                       [--birthday-runs N] [--birthday-only]
"""

import argparse
import datetime
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

from natlab import NAT_TYPES, Lab, LabSkip, check_requirements  # noqa: E402
import test_lab_direct  # noqa: E402
from test_lab_direct import start_second_stun, stun_config  # noqa: E402
from test_lab_relay import (NAT_TOOL, SERVER, Events, peer_env,  # noqa: E402
                            start_listener, start_server, stop)

STAMP = re.compile(rb"(\d\d):(\d\d):(\d\d)\.(\d\d\d): (.*)")


def day_seconds(h, m, s, ms):
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000.0


def now_day_seconds():
    t = datetime.datetime.now()
    return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6


def ping_rtt(lab, ns, target):
    """Median ICMP RTT in ms (bench_relay's ping: ping(8), or a raw socket)."""
    sys.path.insert(0, HERE)
    from bench_relay import ping
    values = ping(lab, ns, target)
    return sorted(values)[len(values) // 2] if values else None


def one_pair(tmp, nat_a, nat_b, latency, method=None):
    with Lab(site_a=nat_a, site_b=nat_b, turn=False, latency_ms=latency) as lab:
        rtt = None
        ra = ping_rtt(lab, "host_a", lab.server_ips[0])
        rb = ping_rtt(lab, "host_b", lab.server_ips[0])
        if ra and rb:
            rtt = ra + rb        # A -> inet -> B and back: both WAN links twice
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-" + nat_b)
        if not (ready and address):
            stop(listener)
            stop(server)
            return {"error": "server or listener did not start"}
        env = peer_env(tmp, "a-%s-%s" % (nat_a, nat_b))
        proc = lab.popen("host_a", "exec env %s G_MESSAGES_DEBUG=natkit,natkit-holepunch,"
                         "natkit-tcp-holepunch %s connect --json %s%s" % (
                             env, NAT_TOOL, "--method %s " % method if method else "",
                             address),
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
        res = {"rtt_ms": rtt}
        t_cand = t_session = t_first = None
        buf = b""
        deadline = time.monotonic() + 60
        sent = False
        while time.monotonic() < deadline and t_first is None:
            r, _, _ = select.select([proc.stderr, proc.stdout], [], [], 0.2)
            if proc.stdout in r:
                if os.read(proc.stdout.fileno(), 65536):
                    t_first = now_day_seconds()
            if proc.stderr in r:
                chunk = os.read(proc.stderr.fileno(), 65536)
                if not chunk:
                    break
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    m = STAMP.search(line)
                    if m:
                        t = day_seconds(*m.groups()[:4])
                        text = m.group(5)
                        if b"offered" in text and b"candidates" in text and t_cand is None:
                            t_cand = t
                        if b"established over" in text and t_session is None:
                            t_session = t
                        continue
                    try:
                        e = json.loads(line)
                    except ValueError:
                        continue
                    if e.get("event") == "connected":
                        res["method"] = e.get("method")
                        res["connect_ms"] = e.get("elapsed_ms")
                        proc.stdin.write(b"x")
                        proc.stdin.flush()
                        sent = True
                    elif e.get("event") == "connect-failed":
                        res["error"] = e.get("reason")
                        deadline = 0
        if sent:
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        stop(proc)
        stop(listener)
        stop(server)
        if res.get("method") in ("holepunch", "tcp-holepunch") and t_cand and t_session:
            res["cand_to_session_ms"] = (t_session - t_cand) * 1000
            if t_first:
                res["cand_to_first_byte_ms"] = (t_first - t_cand) * 1000
        return res


BIRTHDAY_WON = re.compile(
    rb"birthday punch: won \([a-z-]+\); the (hard|easy) side[^:]*: (\d+) (?:packets|probes)"
    rb"(?: from (\d+) sockets)?[^;]*? in (\d+) ms")
BIRTHDAY_SIDE = re.compile(
    rb"birthday punch: (?:won|not needed|out of time|every probe)[^;]*[;,] the (hard|easy) "
    rb"side[^:]*: (\d+) (?:packets|probes)(?: from (\d+) sockets)?")


def birthday_run(tmp, nat_a, nat_b, latency, run):
    """One connection between a symmetric and a port-restricted site, both
    hosts logging natkit-holepunch's debug lines."""
    name = "bd-%s-%s-%d" % (nat_a, nat_b, run)
    os.environ["NATLAB_DEBUG"] = "natkit-holepunch"   # the listener's log
    with Lab(site_a=nat_a, site_b=nat_b, turn=False, latency_ms=latency) as lab:
        server, ready = start_server(lab, tmp)
        stun2, ready2 = start_second_stun(lab, tmp)
        stun_config(tmp, "b-" + name, lab)
        stun_config(tmp, "a-" + name, lab)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-" + name)
        res = {}
        if not (ready and ready2 and address):
            for p in (listener, server, stun2):
                stop(p)
            return {"error": "servers or listener did not start"}
        env = peer_env(tmp, "a-" + name)
        proc = lab.popen("host_a", "exec env %s G_MESSAGES_DEBUG=natkit-holepunch "
                         "%s connect --json %s" % (env, NAT_TOOL, address),
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
        ev = Events(proc)
        got = ev.wait("connected", 30) or {}
        res["method"] = got.get("method")
        res["connect_ms"] = got.get("elapsed_ms")
        # the birthday punch goes on after a relay won the race (an
        # upgrade): wait for its end on both hosts
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            ev.poll(0.2)
            lev.poll(0.05)
            both = ev.text + lev.text
            if BIRTHDAY_WON.search(both) or b"birthday punch for the peer's" in both:
                ev.poll(0.5)
                lev.poll(0.5)
                break
        both = ev.text + lev.text
        won = BIRTHDAY_WON.search(both)
        res["won"] = bool(won)
        if won:
            res["won_ms"] = int(won.group(4))
        for m in BIRTHDAY_SIDE.finditer(both):
            if m.group(1) == b"easy":
                res["probes"] = max(res.get("probes", 0), int(m.group(2)))
            else:
                res["packets"] = max(res.get("packets", 0), int(m.group(2)))
                res["sockets"] = max(res.get("sockets", 0), int(m.group(3) or 0))
        for m in (won,) if won else ():
            if m.group(1) == b"easy":
                res["probes"] = max(res.get("probes", 0), int(m.group(2)))
            else:
                res["packets"] = max(res.get("packets", 0), int(m.group(2)))
                res["sockets"] = max(res.get("sockets", 0), int(m.group(3) or 0))
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
        for p in (proc, listener, server, stun2):
            stop(p)
        os.environ.pop("NATLAB_DEBUG", None)
        return res


def birthday_bench(tmp, runs, latency):
    print("\nbirthday punch, symmetric <-> port-restricted, %d runs per order, "
          "%.1f ms one way per WAN link" % (runs, latency))
    print("%-34s %4s %-9s %9s %8s %7s %8s %8s" % (
        "pair", "run", "method", "connect", "birthday", "probes", "packets", "sockets"))
    for a, b in (("port-restricted", "symmetric"), ("symmetric", "port-restricted")):
        results = []
        for i in range(runs):
            r = birthday_run(tmp, a, b, latency, i)
            results.append(r)
            print("%-34s %4d %-9s %9s %8s %7s %8s %8s%s" % (
                "%s <-> %s" % (a, b), i + 1, r.get("method") or "-",
                fmt(r.get("connect_ms")),
                ("%s ms" % r["won_ms"]) if r.get("won") else "lost",
                fmt(r.get("probes")), fmt(r.get("packets")), fmt(r.get("sockets")),
                ("  (%s)" % r["error"]) if r.get("error") else ""))
            sys.stdout.flush()
        won = [r for r in results if r.get("won")]
        first = [r for r in results if r.get("method") == "holepunch"]
        med = (lambda xs: sorted(xs)[len(xs) // 2] if xs else None)
        print("%s <-> %s: the birthday punch found a path in %d of %d runs (%d of them "
              "before the relay); median %s probes, %s hard-side packets, %s ms from its "
              "start; median connect %s ms" % (
                  a, b, len(won), runs, len(first),
                  fmt(med([r["probes"] for r in won if "probes" in r])),
                  fmt(med([r["packets"] for r in won if "packets" in r])),
                  fmt(med([r["won_ms"] for r in won])),
                  fmt(med([r["connect_ms"] for r in results
                           if isinstance(r.get("connect_ms"), int)]))))
        sys.stdout.flush()


def fmt(v, spec="%.0f"):
    return spec % v if isinstance(v, (int, float)) else "-"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--latency", type=float, default=12.5,
                   help="one-way ms on each WAN link (default 12.5: 50 ms RTT A<->B)")
    p.add_argument("--pairs", help="A:B,... (default: every pair)")
    p.add_argument("--method", help="allow only this method (default: the race)")
    p.add_argument("--failover", action="store_true",
                   help="also time a failover (port-restricted pair, 20 MB stream)")
    p.add_argument("--birthday-runs", type=int, default=5,
                   help="runs of the birthday punch per order (default 5; 0: none)")
    p.add_argument("--birthday-only", action="store_true",
                   help="only the birthday punch figures")
    args = p.parse_args()
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        print("skipped: %s" % e)
        return 0
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            print("skipped: %s is not built" % prog)
            return 0
    pairs = ([tuple(x.split(":")) for x in args.pairs.split(",")] if args.pairs else
             [(a, b) for i, a in enumerate(NAT_TYPES) for b in NAT_TYPES[i:]])
    tmp = tempfile.mkdtemp(prefix="nkbench-direct-")
    if args.birthday_only:
        birthday_bench(tmp, max(args.birthday_runs, 1), args.latency)
        subprocess.run(["rm", "-rf", tmp])
        return 0
    print("connect times, %.1f ms one way per WAN link" % args.latency)
    print("%-34s %-13s %7s %9s %7s %14s %8s %14s %8s" % (
        "pair", "method", "RTT ms", "connect", "in RTT", "cand->session", "in RTT",
        "cand->1st byte", "in RTT"))
    for a, b in pairs:
        r = one_pair(tmp, a, b, args.latency, args.method)
        rtt = r.get("rtt_ms")
        per = (lambda v: v / rtt if isinstance(v, (int, float)) and rtt else None)
        print("%-34s %-13s %7s %9s %7s %14s %8s %14s %8s%s" % (
            "%s <-> %s" % (a, b), r.get("method", "-"), fmt(rtt, "%.1f"),
            fmt(r.get("connect_ms")), fmt(per(r.get("connect_ms")), "%.1f"),
            fmt(r.get("cand_to_session_ms")), fmt(per(r.get("cand_to_session_ms")), "%.1f"),
            fmt(r.get("cand_to_first_byte_ms")), fmt(per(r.get("cand_to_first_byte_ms")), "%.1f"),
            ("  (%s)" % r["error"][:60]) if r.get("error") else ""))
        sys.stdout.flush()
    if args.failover:
        from labtap import Tap
        os.environ.setdefault("NATKIT_LAB_FAILOVER_MB", "20")
        print("\nfailover (port-restricted pair, %s MB stream, cut on both routers):"
              % os.environ["NATKIT_LAB_FAILOVER_MB"])
        resumed, completed = test_lab_direct.check_failover(Tap(), tmp)
        print("failover: data flowing again %s after the cut; transfer %s" % (
            "%.1f s" % resumed if resumed else "never",
            "completed byte-identical" if completed else "did not complete"))
    if args.birthday_runs > 0:
        birthday_bench(tmp, args.birthday_runs, args.latency)
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
