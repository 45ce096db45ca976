#!/usr/bin/python3
# natkit NAT lab: coturn's own RFC 5780 client agrees with the lab.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs coturn's turnutils_natdiscovery from each LAN host against the lab's
coturn and checks it reports the behavior the site was built with; also
checks the server side (OTHER-ADDRESS, CHANGE-REQUEST) and a TURN relay with
the lab's long-term credentials.  TAP output; exit 77 (or NATLAB_SKIP_EXIT)
when not root or coturn's tools are missing.

natdiscovery is run with -L <host address>: without a bound local address
it compares 0.0.0.0:port with the reflexive address and can never say
"No NAT".
"""

import os
import re
import shutil
import subprocess
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from natlab import (Lab, LabError, LabSkip, check_requirements,  # noqa: E402
                    SERVER_IPS, STUN_PORT, STUN_ALT_PORT, _netns_list)
from labtap import Tap, skip_all  # noqa: E402

S1, S2 = SERVER_IPS
ND = "turnutils_natdiscovery"
UC = "turnutils_uclient"

EIM = "NAT with Endpoint Independent Mapping!"
ADM = "NAT with Address Dependent Mapping!"
APDM = "NAT with Address and Port Dependent Mapping!"
EIF = "NAT with Endpoint Independent Filtering!"
ADF = "NAT with Address Dependent Filtering!"
APDF = "NAT with Address and Port Dependent Filtering!"
NONAT = "No NAT! (Endpoint Independent Mapping)"
HAIRPIN_OK = "Received a request (maybe a successful hairpinning)"

# what natdiscovery must conclude (all result lines, in order) per section
EXPECT = {
    "none": {"Mapping": [NONAT, EIM], "Filtering": [NONAT, EIF]},
    "full-cone": {"Mapping": [EIM], "Filtering": [EIF]},
    "restricted": {"Mapping": [EIM], "Filtering": [ADF]},
    "port-restricted": {"Mapping": [EIM], "Filtering": [APDF]},
    "symmetric": {"Mapping": [APDM], "Filtering": [APDF]},
    "udp-blocked": {"Mapping": [], "Filtering": []},
}

FULL_LABS = [
    ("full-cone", True, "restricted", False),
    ("port-restricted", False, "symmetric", True),
    ("none", False, "udp-blocked", False),
]
HAIRPIN_LABS = [
    ("full-cone", False, "restricted", True),
    ("port-restricted", True, "symmetric", False),
]

_RESULT_RE = re.compile(r"^(No NAT!.*|NAT with .*!)$")
_SECTION_RE = re.compile(r"^-= (\w[\w ]*?) Behavior Discovery =-$")


def parse_natdiscovery(text):
    """{section: {"results": [...], "timeouts": n, "hairpin": bool,
    "reflexive": [...]}} from natdiscovery's stdout."""
    sections = {}
    cur = None
    for raw in text.splitlines():
        line = raw.strip()
        m = _SECTION_RE.match(line)
        if m:
            cur = sections.setdefault(m.group(1).split()[0], {
                "results": [], "timeouts": 0, "hairpin": False,
                "reflexive": []})
            continue
        if cur is None:
            continue
        if _RESULT_RE.match(line):
            cur["results"].append(line)
        elif line.startswith("STUN receive timeout"):
            cur["timeouts"] += 1
        elif line == HAIRPIN_OK:
            cur["hairpin"] = True
        elif "UDP reflexive addr" in line:
            cur["reflexive"].append(line.rsplit(" ", 1)[-1])
    return sections


def summary(sec):
    return "; ".join(sec.get("results") or
                     ["no conclusion (%d STUN timeouts)" %
                      sec.get("timeouts", 0)])


def start_nd(lab, s, flags):
    return lab.popen(s.host, [ND] + flags + ["-L", s.host_ip, S1],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     text=True)


def collect(p, timeout=60):
    try:
        out = p.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        p.kill()
        out = p.communicate()[0] + "\n(killed after %d s)" % timeout
    return out, p.returncode


def check_site(tap, s, mf_out, hp_out, report):
    sec = parse_natdiscovery(mf_out)
    exp = EXPECT[s.nat]
    for name in ("Mapping", "Filtering"):
        got = sec.get(name, {})
        report.setdefault(s.nat, {})[name] = summary(got)
        ok = got.get("results") == exp[name]
        if s.nat == "udp-blocked":
            ok = ok and got.get("timeouts", 0) >= 1
        tap.ok(ok, "natdiscovery on %s: %s -> %s" % (
            s.nat, name.lower(),
            "; ".join(exp[name]) or "no answer (STUN timeout)"),
            "got: %s\n--- output ---\n%s" % (got, mf_out))
    check_hairpin(tap, s, hp_out, report)


def check_hairpin(tap, s, hp_out, report):
    h = parse_natdiscovery(hp_out).get("Hairpinning", {})
    # none: the host sends to its own public address, trivially "hairpins"
    want = s.hairpin or s.nat == "none"
    key = "Hairpin" if s.nat == "none" else \
        "hairpin %s" % ("on" if s.hairpin else "off")
    report.setdefault(s.nat, {})[key] = (
        HAIRPIN_OK if h.get("hairpin") else
        "no hairpin (%d STUN timeouts)" % h.get("timeouts", 0))
    if s.nat == "none":
        desc = ("natdiscovery on none: -H reaches the host's own public "
                "address (trivial hairpin)")
    else:
        desc = "natdiscovery on %s, hairpin %s: %s" % (
            s.nat, "on" if s.hairpin else "off",
            "hairpinning detected" if want else "no hairpinning")
    tap.ok(bool(h.get("hairpin")) == want, desc,
           "--- output ---\n%s" % hp_out)


def check_server(tap, lab, s):
    """RFC 5780 server side, seen from the NAT-free host."""
    r = lab.probe(s.host, "stun", "--to", "%s:%d" % (S1, STUN_PORT))
    tap.ok(r["mapped"] and r["mapped"].startswith(s.host_ip + ":") and
           r["other"] == "%s:%d" % (S2, STUN_ALT_PORT),
           "coturn: binding to %s:%d maps to the host and gives "
           "OTHER-ADDRESS %s:%d" % (S1, STUN_PORT, S2, STUN_ALT_PORT), str(r))
    for ci, cp, frm in ((True, True, (S2, STUN_ALT_PORT)),
                        (False, True, (S1, STUN_ALT_PORT)),
                        (True, False, (S2, STUN_PORT))):
        args = ["stun", "--to", "%s:%d" % (S1, STUN_PORT)]
        if ci:
            args.append("--change-ip")
        if cp:
            args.append("--change-port")
        r = lab.probe(s.host, *args)
        tap.ok(r["from"] == "%s:%d" % frm,
               "coturn: CHANGE-REQUEST(%s) answered from %s:%d" % (
                   "+".join(x for x, y in (("ip", ci), ("port", cp)) if y),
                   frm[0], frm[1]), str(r))


def check_turn(tap, lab, s, password, uc_out, rc):
    if password == lab.turn_password:
        m = re.search(r"tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$",
                      uc_out, re.M)
        good = rc == 0 and m and int(m.group(1)) > 0 and \
            m.group(1) == m.group(2)
        tap.ok(good, "coturn TURN relay from behind %s with %s:%s realm %s "
               "(turnutils_uclient -y, all messages relayed)" % (
                   s.nat, lab.turn_user, password, lab.turn_realm),
               uc_out[-2000:])
    else:
        tap.ok(rc != 0 and "Cannot complete Allocation" in uc_out,
               "coturn rejects the allocation with a wrong password",
               uc_out[-2000:])


def main():
    try:
        check_requirements(turn=True)
    except LabSkip as e:
        skip_all(str(e))
    for tool in (ND, UC):
        if shutil.which(tool) is None:
            skip_all("%s (coturn) not installed: skipped" % tool)
    tap = Tap()
    report = {}
    labids = []

    def run_lab(labs, full):
        procs = []
        for lab in labs:
            for s in (lab.a, lab.b):
                mf = start_nd(lab, s, ["-m", "-f"]) if full else None
                hp = start_nd(lab, s, ["-H"])
                procs.append((lab, s, mf, hp))
        uc = []
        if full and labs[0].site_a == "port-restricted":
            lab = labs[0]
            good = lab.turn_password
            for s, pw in ((lab.a, good), (lab.b, good), (lab.a, "wrong")):
                p = lab.popen(s.host, [UC, "-y", "-c", "-n", "5", "-m", "1",
                                       "-u", lab.turn_user, "-w", pw,
                                       "-L", s.host_ip, S1],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
                uc.append((lab, s, pw, p))
        if full and labs[0].site_a == "none":
            try:
                check_server(tap, labs[0], labs[0].a)
            except Exception:
                tap.ok(False, "coturn RFC 5780 server checks",
                       traceback.format_exc())
        for lab, s, mf, hp in procs:
            hp_out, _ = collect(hp)
            if mf is not None:
                mf_out, _ = collect(mf)
                check_site(tap, s, mf_out, hp_out, report)
            else:
                check_hairpin(tap, s, hp_out, report)
        for lab, s, pw, p in uc:
            out, rc = collect(p)
            check_turn(tap, lab, s, pw, out, rc)

    for a, ha, b, hb in FULL_LABS:
        try:
            with Lab(a, b, hairpin_a=ha, hairpin_b=hb) as lab:
                labids.append(lab.labid)
                tap.diag("lab %s: A=%s%s B=%s%s, coturn on %s and %s" % (
                    lab.labid, a, " +hairpin" if lab.hairpin_a else "",
                    b, " +hairpin" if lab.hairpin_b else "", S1, S2))
                run_lab([lab], True)
        except (LabError, OSError, subprocess.SubprocessError) as e:
            tap.ok(False, "lab %s/%s came up" % (a, b), str(e))
    try:
        (a1, ha1, b1, hb1), (a2, ha2, b2, hb2) = HAIRPIN_LABS
        with Lab(a1, b1, hairpin_a=ha1, hairpin_b=hb1) as l1, \
                Lab(a2, b2, hairpin_a=ha2, hairpin_b=hb2) as l2:
            labids += [l1.labid, l2.labid]
            tap.diag("labs %s and %s up concurrently (two coturns)" % (
                l1.labid, l2.labid))
            run_lab([l1, l2], False)
    except (LabError, OSError, subprocess.SubprocessError) as e:
        tap.ok(False, "concurrent hairpin labs came up", str(e))

    left = [ns for ns in _netns_list()
            if any(ns.startswith(i + "-") for i in labids)]
    tap.ok(labids and not left, "every lab namespace (and coturn) was "
           "removed on teardown", "left: %s" % left)

    tap.diag("turnutils_natdiscovery summary:")
    for nat in EXPECT:
        for k, v in report.get(nat, {}).items():
            tap.diag("  %-16s %-28s %s" % (nat, k, v))
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
