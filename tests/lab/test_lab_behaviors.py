#!/usr/bin/python3
# natkit NAT lab self-test: every NAT type behaves as advertised.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Proves the lab's NAT behaviors with plain UDP/TCP sockets (udp_probe.py)
run inside the namespaces.  TAP output; exit 77 (or NATLAB_SKIP_EXIT) when
not root.

Checked for each NAT type:
  mapping      one socket -> S1:5000, S2:5001, S1:5001; the reflector reports
               the source it saw (EIM: one ip:port, symmetric: all differ)
  filtering    after a probe to S1:5000 the reflector answers from S1:5000,
               S1:5001, S2:5000, S2:5001; which of them get in
  unsolicited  an unsolicited datagram to the site is dropped (NAT) or
               delivered (none), and, for EIM NATs, does not take the port
               mapping away from the LAN host afterwards
  hairpin      datagram to the host's own mapping loops back (on) or not (off)
  tcp          TCP still connects (also through udp-blocked)
"""

import json
import os
import random
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from natlab import (Lab, LabError, LabSkip, check_requirements,  # noqa: E402
                    PYTHON, PROBE, SERVER_IPS, _netns_list)
from labtap import Tap, skip_all  # noqa: E402

S1, S2 = SERVER_IPS
P, P2, P3 = 5000, 5001, 5002

EIM = ("full-cone", "restricted", "port-restricted")
NATTED = EIM + ("symmetric",)

# filtering expectation after the host sent to (S1, P):
#   (from S1:P, from S1:other port, from S2:any port)
FILTER = {
    "none": (True, True, True),
    "full-cone": (True, True, True),
    "restricted": (True, True, False),
    "port-restricted": (True, False, False),
    "symmetric": (True, False, False),
    "udp-blocked": (False, False, False),
}

# (site_a, hairpin_a, site_b, hairpin_b): the first three labs run every
# check, the last two (up at the same time) cover the other hairpin setting
FULL_LABS = [
    ("full-cone", True, "restricted", False),
    ("port-restricted", False, "symmetric", True),
    ("none", False, "udp-blocked", False),
]
HAIRPIN_LABS = [
    ("full-cone", False, "restricted", True),
    ("port-restricted", True, "symmetric", False),
]


def ep(ip, port):
    return "%s:%d" % (ip, port)


def ip_of(endpoint):
    return endpoint.rsplit(":", 1)[0] if endpoint else None


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1]) if endpoint else None


def t_mapping(tap, lab, refl, s):
    dests = [ep(S1, P), ep(S2, P2), ep(S1, P2)]
    args = ["mapping"]
    for d in dests:
        args += ["--to", d]
    r = lab.probe(s.host, *args)
    seen = [r["seen"][d] for d in dests]
    lport = port_of(r["local"])
    diag = json.dumps(r)
    if s.nat == "udp-blocked":
        mine = [e for e in refl.entries() if e.get("proto") == "udp" and
                ip_of(e.get("src")) in (s.wan, s.host_ip)]
        tap.ok(seen == [None] * 3 and not mine,
               "udp-blocked: no UDP datagram from the LAN reaches the "
               "internet", diag + "\nreflector saw: %s" % mine)
    elif s.nat == "none":
        tap.ok(seen == [ep(s.host_ip, lport)] * 3,
               "none: host seen under its own address %s:%d by every "
               "destination" % (s.host_ip, lport), diag)
    elif s.nat in EIM:
        tap.ok(None not in seen and len(set(seen)) == 1 and
               ip_of(seen[0]) == s.wan,
               "%s: endpoint-independent mapping (one %s:port toward %s)" %
               (s.nat, s.wan, ", ".join(dests)), diag)
    else:
        tap.ok(None not in seen and len(set(seen)) == 3 and
               all(ip_of(x) == s.wan for x in seen),
               "symmetric: address-and-port-dependent mapping (a different "
               "%s:port toward each of %s)" % (s.wan, ", ".join(dests)), diag)


def t_filtering(tap, lab, s):
    froms = [ep(S1, P), ep(S1, P2), ep(S2, P), ep(S2, P2)]
    args = ["filtering", "--to", ep(S1, P), "--wait", "0.6"]
    for f in froms:
        args += ["--from", f]
    r = lab.probe(s.host, *args)
    got = set(r["received"])
    exp = FILTER[s.nat]
    classes = [("%s (the server it sent to)" % ep(S1, P), [ep(S1, P)], exp[0]),
               ("%s (same address, other port)" % ep(S1, P2), [ep(S1, P2)],
                exp[1]),
               ("%s and %s (other address)" % (ep(S2, P), ep(S2, P2)),
                [ep(S2, P), ep(S2, P2)], exp[2])]
    for label, srcs, want in classes:
        tap.ok(all((x in got) == want for x in srcs),
               "%s: after sending to %s, a datagram from %s %s" % (
                   s.nat, ep(S1, P), label,
                   "gets in" if want else "is filtered"), json.dumps(r))


def t_unsolicited(tap, lab, s):
    port = random.randint(20000, 29999)
    target = ep(s.public_ip, port)
    listener = lab.popen(s.host, [PYTHON, PROBE, "listen", "--bind",
                                  ep("0.0.0.0", port), "--wait", "0.8"],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(0.2)   # let the listener bind
    inj = lab.probe(lab.inet, "inject", "--via", ep(S1, P),
                    "--from", ep(S1, P3), "--to", target)
    res = json.loads(listener.communicate(timeout=10)[0])
    received = bool(res["received"])
    diag = "inject: %s\nlistener: %s" % (inj, res)
    if not inj.get("acked"):
        tap.ok(False, "%s: reflector injected unsolicited datagrams" % s.nat,
               diag)
        return
    if s.nat == "none":
        tap.ok(received, "none: unsolicited datagram from %s reaches the "
               "host at %s" % (ep(S1, P3), target), diag)
        return
    tap.ok(not received, "%s: unsolicited datagram from %s to %s is "
           "dropped" % (s.nat, ep(S1, P3), target), diag)
    if s.nat in EIM:
        # the router must not have confirmed a conntrack entry for it,
        # otherwise the host's mapping of that port toward S1:P3 moves
        m = lab.probe(s.host, "mapping", "--bind", ep("0.0.0.0", port),
                      "--to", ep(S1, P3))
        seen = m["seen"][ep(S1, P3)]
        tap.ok(seen == target,
               "%s: the dropped datagram did not take the mapping: host "
               "port %d toward %s is still mapped to %s" % (
                   s.nat, port, ep(S1, P3), target), json.dumps(m))


def t_hairpin(tap, lab, s):
    if s.nat not in NATTED:
        return
    r = lab.probe(s.host, "hairpin", "--server", ep(S1, P), "--wait", "0.8")
    diag = json.dumps(r)
    if r["m1"] is None or r["m2"] is None:
        tap.ok(False, "%s: hairpin test got its mappings" % s.nat, diag)
        return
    if s.hairpin:
        good = r["received"] and ip_of(r["from"]) == s.wan
        what = "source NATed to %s" % s.wan
        if s.nat in EIM:
            good = good and r["from"] == r["m2"]
            what = "source = the sender's own mapping"
        tap.ok(good, "%s, hairpin on: datagram to its own mapping %s comes "
               "back to the host, %s" % (s.nat, r["m1"], what), diag)
    else:
        tap.ok(not r["received"], "%s, hairpin off: datagram to its own "
               "mapping %s is dropped" % (s.nat, r["m1"]), diag)


def t_tcp(tap, lab, s):
    r = lab.probe(s.host, "tcp", "--to", ep(S1, P))
    tap.ok(r["connected"] and ip_of(r["seen"]) == s.public_ip,
           "%s: TCP connects to %s, seen from %s" % (s.nat, ep(S1, P),
                                                     s.public_ip),
           json.dumps(r))


def guarded(tap, name, fn, *args):
    try:
        fn(tap, *args)
    except Exception:
        tap.ok(False, name, traceback.format_exc())


def main():
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        skip_all(str(e))
    tap = Tap()
    labids = []

    for a, ha, b, hb in FULL_LABS:
        try:
            with Lab(a, b, hairpin_a=ha, hairpin_b=hb, turn=False) as lab:
                labids.append(lab.labid)
                tap.diag("lab %s: A=%s%s B=%s%s" % (
                    lab.labid, a, " +hairpin" if lab.hairpin_a else "",
                    b, " +hairpin" if lab.hairpin_b else ""))
                refl = lab.start_reflector()
                for s in (lab.a, lab.b):
                    n = s.nat
                    guarded(tap, n + ": mapping", t_mapping, lab, refl, s)
                    guarded(tap, n + ": filtering", t_filtering, lab, s)
                    guarded(tap, n + ": unsolicited", t_unsolicited, lab, s)
                    guarded(tap, n + ": hairpin", t_hairpin, lab, s)
                    guarded(tap, n + ": tcp", t_tcp, lab, s)
        except (LabError, OSError, subprocess.SubprocessError) as e:
            tap.ok(False, "lab %s/%s came up" % (a, b), str(e))

    # two labs up at the same time: they must not see each other
    try:
        (a1, ha1, b1, hb1), (a2, ha2, b2, hb2) = HAIRPIN_LABS
        with Lab(a1, b1, hairpin_a=ha1, hairpin_b=hb1, turn=False) as l1, \
                Lab(a2, b2, hairpin_a=ha2, hairpin_b=hb2, turn=False) as l2:
            labids += [l1.labid, l2.labid]
            tap.diag("labs %s and %s up concurrently" % (l1.labid, l2.labid))
            for lab in (l1, l2):
                lab.start_reflector()
                for s in (lab.a, lab.b):
                    guarded(tap, s.nat + ": hairpin", t_hairpin, lab, s)
    except (LabError, OSError, subprocess.SubprocessError) as e:
        tap.ok(False, "concurrent hairpin labs came up", str(e))

    left = [ns for ns in _netns_list()
            if any(ns.startswith(i + "-") for i in labids)]
    tap.ok(labids and not left, "every lab namespace was removed on "
           "teardown", "left: %s" % left)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
