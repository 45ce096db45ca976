#!/usr/bin/python3
# natkit NAT lab: WAN link latency / loss emulation (Lab(latency_ms, loss)).
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Self-test of the lab's WAN link forwarder (tc netem is not available, the
lab copies frames between two veth ends with a userspace forwarder):

  plain        latency_ms=0, loss=0: no delay namespace, no forwarder
  latency      latency_ms=25 (one way): UDP echo RTT host -> server has a
               median within 45-70 ms on both sites, never below 2 x 25 ms;
               the NATs still behave (port-restricted: one mapping for
               three destinations and address-and-port-dependent filtering;
               symmetric: a mapping per destination); TCP gets through; the
               forwarders use no CPU while idle; teardown leaves no
               forwarder process and no namespace
  loss         loss=0.3 (seeded): some but not all of 50 echo probes lost

TAP; skips when not root."""

import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from natlab import Lab, LabSkip, PYTHON, check_requirements, _netns_list  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402

S1, S2 = "198.51.100.1", "198.51.100.2"
LATENCY = 25

# Sends COUNT echo requests to the reflector one after the other (one try
# each, TIMEOUT s) and prints the round-trip times in ms (null = lost).
# One unmeasured warm-up first when WARMUP: the first packet also waits for
# ARP through the delayed link.
PINGER = r'''
import json, socket, sys, time
dest, count, timeout, warmup = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
host, port = dest.rsplit(":", 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def one(i):
    t = time.monotonic()
    s.sendto(json.dumps({"op": "echo", "id": i}).encode(), (host, int(port)))
    end = t + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            d = s.recv(2048)
        except socket.timeout:
            return None
        if json.loads(d).get("id") == i:
            return (time.monotonic() - t) * 1000.0
if warmup:
    one(-1)
print(json.dumps([one(i) for i in range(count)]))
'''


def pings(lab, ns, dest, count, timeout, warmup=True):
    r = lab.run(ns, [PYTHON, "-c", PINGER, dest, str(count), str(timeout),
                     "1" if warmup else "0"], timeout=count * timeout + 30)
    if r.returncode != 0:
        raise RuntimeError("pinger failed: %s" % r.stderr)
    return json.loads(r.stdout)


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])      # utime + stime


def t_plain(tap):
    with Lab(turn=False) as lab:
        tap.ok(not lab.impaired and lab.forwarders == {} and
               len(lab.namespaces) == 5 and lab.a.delay is None and
               "wan_link" not in lab.info(),
               "latency_ms=0, loss=0: no delay namespace, no forwarder",
               lab.namespaces)
        lab.start_reflector()
        m = lab.probe(lab.host_a, "mapping", "--to", "%s:5000" % S1)
        tap.ok(m and m["seen"]["%s:5000" % S1].startswith(lab.wan_a + ":"),
               "latency_ms=0: traffic flows as before", m)


def t_latency(tap):
    lab = Lab(site_a="port-restricted", site_b="symmetric", turn=False,
              latency_ms=LATENCY)
    with lab:
        pids = {k: p.pid for k, p in lab.forwarders.items()}
        tap.ok(sorted(pids) == ["a", "b"] and
               all(p.poll() is None for p in lab.forwarders.values()) and
               lab.delay_a in _netns_list() and lab.delay_b in _netns_list(),
               "latency_ms=%d: a forwarder runs in each site's delay "
               "namespace" % LATENCY, lab.info().get("wan_link"))
        lab.start_reflector()
        for s in (lab.a, lab.b):
            rtts = pings(lab, s.host, "%s:5000" % S1, 10, 1.0)
            got = [x for x in rtts if x is not None]
            med = statistics.median(got) if got else None
            tap.diag("site %s RTT ms: %s" % (
                s.name, " ".join("%.1f" % x if x is not None else "lost"
                                 for x in rtts)))
            tap.ok(len(got) == 10 and 45 <= med <= 70,
                   "site %s: UDP RTT host -> server median %s ms "
                   "(expected 45-70 for %d ms one way)" % (
                       s.name, "%.1f" % med if med else "-", LATENCY), rtts)
            tap.ok(got and min(got) >= 2 * LATENCY - 1,
                   "site %s: no RTT below 2 x %d ms" % (s.name, LATENCY),
                   rtts)

        # NAT behavior through the forwarder
        dests = ["%s:5000" % S1, "%s:5001" % S2, "%s:5001" % S1]
        for s, want_eim in ((lab.a, True), (lab.b, False)):
            args = ["mapping"]
            for d in dests:
                args += ["--to", d]
            m = lab.probe(s.host, *args)
            seen = [m["seen"][d] for d in dests]
            ok = None not in seen and all(
                x.split(":")[0] == s.wan for x in seen)
            if want_eim:
                ok = ok and len(set(seen)) == 1
                what = "endpoint-independent mapping (one external endpoint)"
            else:
                ok = ok and len(set(seen)) == 3
                what = "address-and-port-dependent mapping (3 endpoints)"
            tap.ok(ok, "%s through the delayed link: %s" % (s.nat, what), m)
        f = lab.probe(lab.host_a, "filtering", "--to", "%s:5000" % S1,
                      "--from", "%s:5000" % S1, "--from", "%s:5001" % S1,
                      "--from", "%s:5000" % S2, "--wait", "0.4")
        tap.ok(f["replied"] and f["claimed"] == ["%s:5000" % S1],
               "port-restricted through the delayed link: only S1:5000 "
               "gets in (address-and-port-dependent filtering)", f)
        t = lab.probe(lab.host_a, "tcp", "--to", "%s:5000" % S1)
        tap.ok(t.get("connected") and
               t.get("seen", "").startswith(lab.wan_a + ":"),
               "TCP through the delayed link", t)

        # idle: nothing queued, the forwarders sleep in epoll
        time.sleep(0.2)
        before = {k: cpu_ticks(p) for k, p in pids.items()}
        time.sleep(2.0)
        used = {k: cpu_ticks(p) - before[k] for k, p in pids.items()}
        tap.diag("forwarder CPU ticks over 2 s idle: %s" % used)
        tap.ok(all(v <= 2 for v in used.values()),
               "forwarders idle: <= 2 CPU ticks in 2 s", used)
        namespaces = lab.namespaces
    gone = [p for p in pids.values() if os.path.exists("/proc/%d" % p)]
    left = sorted(set(namespaces) & set(_netns_list()))
    tap.ok(not gone and not left,
           "teardown: no forwarder process, no namespace left",
           "processes %s, namespaces %s" % (gone, left))


def t_loss(tap):
    with Lab(turn=False, loss=0.3, loss_seed=4787) as lab:
        lab.start_reflector()
        # a round trip crosses site A's link twice: ~51% lost
        rtts = pings(lab, lab.host_a, "%s:5000" % S1, 50, 0.15, warmup=False)
        lost = sum(1 for x in rtts if x is None)
        tap.diag("loss=0.3: %d of 50 echo probes lost" % lost)
        tap.ok(0 < lost < 50, "loss=0.3: some but not all of 50 probes "
               "lost (%d)" % lost, rtts)
        pids = [p.pid for p in lab.forwarders.values()]
    tap.ok(not [p for p in pids if os.path.exists("/proc/%d" % p)],
           "teardown after the loss lab: no forwarder process")


def main():
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        skip_all(str(e))
    tap = Tap()
    for t in (t_plain, t_latency, t_loss):
        try:
            t(tap)
        except Exception as e:  # report, go on with the next lab
            tap.ok(False, "%s raised %s: %s" % (t.__name__,
                                                type(e).__name__, e))
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
