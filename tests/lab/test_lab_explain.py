#!/usr/bin/python3
# natkit lab test: both peers know their NAT types, tell each other, and
# the connection says in words why it is relayed or how it went direct.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Each host first runs `nat-tool detect` against the lab's coturn (RFC
5780), which natkit remembers in $XDG_STATE_HOME/natkit/nat.json.  Then,
with natkit-server in the lab's internet, host B listens and host A
connects with every method allowed:

- the connected event names both NAT types (A's own and the one B
  announced in its accept);
- for a relayed pair, the explanation says why in words: symmetric ↔
  udp-blocked "… the peer's network blocks UDP, so UDP hole punching
  cannot work: relayed through …"; symmetric ↔ symmetric "… both behind
  symmetric NATs …";
- for a direct pair it names both NAT types;
- where a side's detection found no UDP, hole punching declines at once
  and says so (the responder's "declined" reason);
- the history records the method per pair of NAT types ("pairs" in
  `nat-tool history --json`), e.g. "symmetric/udp-blocked".

Needs root; skips (exit 77, or NATLAB_SKIP_EXIT) otherwise."""

import json
import os
import subprocess
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402
from test_lab_relay import (NAT_TOOL, SERVER, connect, file_sha,  # noqa: E402
                            peer_env, start_listener, start_server, stop,
                            write_random)

NICK = {"none": "open", "full-cone": "full-cone", "restricted": "restricted-cone",
        "port-restricted": "port-restricted-cone", "symmetric": "symmetric",
        "udp-blocked": "udp-blocked"}

# (A, B, expected method, words the explanation must contain)
CASES = [
    ("symmetric", "udp-blocked", "relay",
     ["you are behind a symmetric NAT", "the peer's network blocks UDP",
      "UDP hole punching cannot work", "relayed through"]),
    ("symmetric", "symmetric", "relay",
     ["both behind symmetric NATs", "hole punching cannot work", "relayed through"]),
    ("port-restricted", "full-cone", "holepunch",
     ["direct: hole punching", "a port-restricted NAT (you)", "a full-cone NAT (the peer)"]),
]


def detect(tap, lab, tmp, ns, name, nat):
    env = peer_env(tmp, name)
    r = lab.run(ns, "env %s %s detect --stun %s:%d --timeout 5 --json" % (
        env, NAT_TOOL, lab.stun_primary[0], lab.stun_primary[1]), timeout=30)
    try:
        got = json.loads(r.stdout).get("nat_type")
    except ValueError:
        got = None
    return tap.ok(r.returncode == 0 and got == NICK[nat],
                  "%s: nat-tool detect on %s says %s" % (nat, ns, got),
                  diag=r.stderr[-1500:])


def history(lab, tmp, ns, name):
    r = lab.run(ns, "env %s %s history --json" % (peer_env(tmp, name), NAT_TOOL), timeout=30)
    try:
        return json.loads(r.stdout)
    except ValueError:
        return {}


def check_case(tap, tmp, nat_a, nat_b, method, words):
    label = "%s <-> %s" % (nat_a, nat_b)
    name_a, name_b = "a-" + nat_a, "b-" + nat_b
    with Lab(site_a=nat_a, site_b=nat_b, turn=True) as lab:
        if not (detect(tap, lab, tmp, "host_a", name_a, nat_a) and
                detect(tap, lab, tmp, "host_b", name_b, nat_b)):
            return
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", name_b)
        if not tap.ok(bool(address), "%s: B listens" % label, diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        infile, outfile = os.path.join(tmp, "in"), os.path.join(tmp, "out")
        digest = write_random(infile, 64 * 1024, label)
        rc, cev = connect(lab, tmp, "host_a", name_a, address, infile, outfile,
                          timeout=60, method=None)
        got = cev.wait("connected", 0) or {}
        tap.ok(rc == 0 and got.get("method") == method and
               os.path.exists(outfile) and file_sha(outfile) == digest,
               "%s: connected via %s, echo intact" % (label, got.get("method")),
               diag=cev.text[-2000:])
        tap.ok(got.get("local_nat") == NICK[nat_a] and got.get("remote_nat") == NICK[nat_b],
               "%s: the connected event knows both NAT types (%s, %s)" % (
                   label, got.get("local_nat"), got.get("remote_nat")))
        why = got.get("explanation", "")
        missing = [w for w in words if w not in why]
        tap.ok(not missing, "%s: explained: %s" % (label, why),
               diag="missing %r" % missing)
        if "udp-blocked" in (nat_a, nat_b):
            # the plugin itself declines: the peer's detection found no UDP
            hp = [f.get("reason", "") for f in got.get("failed", [])
                  if f.get("method") == "holepunch"]
            tap.ok(any("blocks UDP" in r for r in hp),
                   "%s: hole punching is declined at once, with the reason: %s" % (
                       label, hp[0] if hp else None),
                   diag=json.dumps(got.get("failed")))
        pair = "%s/%s" % (NICK[nat_a], NICK[nat_b])
        h = history(lab, tmp, "host_a", name_a)
        entry = h.get("pairs", {}).get(pair, {})
        tap.ok(entry.get("last_method") == method and
               entry.get("methods", {}).get(method, {}).get("successes", 0) >= 1,
               "%s: the history remembers %s for the pair %s" % (label, method, pair),
               diag=json.dumps(h.get("pairs", {}))[:1500])
        stop(listener)
        stop(server)


def main():
    try:
        check_requirements(turn=True)
    except LabSkip as e:
        skip_all(str(e))
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            skip_all("%s is not built" % prog)
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="nklab-explain-")
    try:
        for case in CASES:
            check_case(tap, tmp, *case)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.done()


if __name__ == "__main__":
    main()
