#!/usr/bin/python3
# natkit NAT lab: `nat-tool detect` reports exactly what the lab configured,
# and agrees with coturn's turnutils_natdiscovery run in the same lab.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""For every NAT behavior (on site A and site B of three labs), runs
`nat-tool detect --json` from the LAN host against the lab's coturn (two
addresses, RFC 5780) and checks nat_type, mapping, filtering, hairpinning and
the public address against the lab's configuration; then runs
`turnutils_natdiscovery -m -f` from the same host and checks that it names
the same mapping and filtering behavior. TAP; skips when not root."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402

NAT_TOOL = os.environ.get("NAT_TOOL", "nat-tool")

# What RFC 4787 says each lab NAT is, in nat-tool's words.
EXPECTED = {
    "none": ("open", "endpoint-independent", "endpoint-independent"),
    "full-cone": ("full-cone", "endpoint-independent", "endpoint-independent"),
    "restricted": ("restricted-cone", "endpoint-independent", "address-dependent"),
    "port-restricted": ("port-restricted-cone", "endpoint-independent",
                        "address-and-port-dependent"),
    "symmetric": ("symmetric", "address-and-port-dependent",
                  "address-and-port-dependent"),
    "udp-blocked": ("udp-blocked", "unknown", "unknown"),
}

# turnutils_natdiscovery's words for the same behaviors.
NATDISCOVERY_WORDS = {
    "endpoint-independent": "Endpoint Independent",
    "address-dependent": "Address Dependent",
    "address-and-port-dependent": "Address and Port Dependent",
}

LABS = [
    # (site A, site B, hairpin A, hairpin B)
    ("none", "full-cone", False, True),
    ("restricted", "port-restricted", True, False),
    ("symmetric", "udp-blocked", False, False),
]


def detect(lab, host, tap):
    server = "%s:%d" % lab.stun_primary
    env = "NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH= XDG_CONFIG_HOME=%s" % lab.tmpdir
    r = lab.run(host, "%s %s detect --stun %s --timeout 5 --json" % (env, NAT_TOOL, server),
                timeout=30)
    if r.returncode != 0:
        tap.diag("nat-tool detect exited %d: %s" % (r.returncode, r.stderr))
        return None
    return json.loads(r.stdout)


def natdiscovery(lab, host, local_ip):
    # -L: natdiscovery compares the mapped address with its local one.
    r = lab.run(host, ["turnutils_natdiscovery", "-m", "-f", "-L", local_ip,
                       lab.stun_primary[0]], timeout=60)
    text = r.stdout + r.stderr
    mapping = re.search(r"NAT with (.*?) Mapping", text)
    filtering = re.search(r"NAT with (.*?) Filtering", text)
    return (mapping.group(1).strip() if mapping else None,
            filtering.group(1).strip() if filtering else None, text)


def check_site(lab, site, tap):
    nat_type, mapping, filtering = EXPECTED[site.nat]
    label = "%s%s" % (site.nat, " with hairpinning" if site.hairpin else "")
    result = detect(lab, site.host, tap)
    if not tap.ok(result is not None, "%s: nat-tool detect succeeds" % label):
        return
    tap.diag("%s: %s" % (label, json.dumps(result, sort_keys=True)))
    got = (result["nat_type"], result["mapping"], result["filtering"])
    tap.ok(got == (nat_type, mapping, filtering),
           "%s: detect says %s / %s / %s" % (label, nat_type, mapping, filtering),
           "got %s" % (got,))
    if site.nat == "udp-blocked":
        tap.ok(result["public_address"] is None, "%s: no public address claimed" % label)
        return
    tap.ok(result["public_address"] == site.public_ip,
           "%s: public address is %s" % (label, site.public_ip),
           "got %s" % result["public_address"])
    tap.ok(result["servers_used"] == ["%s:%d" % lab.stun_primary] and
           result["tests_skipped"] == [],
           "%s: every RFC 5780 test ran against the lab server" % label,
           "servers %s, skipped %s" % (result["servers_used"], result["tests_skipped"]))
    if site.nat != "none":
        tap.ok(result["hairpinning"] is site.hairpin,
               "%s: hairpinning %s" % (label, "supported" if site.hairpin else "not supported"),
               "got %s" % result["hairpinning"])
        # Everything was measured in a few round trips, not seconds of waiting.
        tap.diag("%s: %d ms, %d packets" % (label, result["elapsed_ms"], result["packets_sent"]))

    nd_mapping, nd_filtering, text = natdiscovery(lab, site.host, site.host_ip)
    if site.nat == "none":
        tap.ok("No NAT!" in text and nd_filtering == "Endpoint Independent",
               "%s: turnutils_natdiscovery agrees (no NAT, nothing filtered)" % label, text)
        return
    tap.ok(nd_mapping == NATDISCOVERY_WORDS[mapping] and
           nd_filtering == NATDISCOVERY_WORDS[filtering],
           "%s: turnutils_natdiscovery agrees (%s mapping, %s filtering)"
           % (label, nd_mapping, nd_filtering), text)


def check_lifetime(lab, tap):
    """Binding lifetime (RFC 5780 section 4.6): the router forgets idle UDP
    bindings after 3 s; with 1 s, 2 s, 4 s… waits, natkit must bracket it."""
    site = lab.a
    for key in ("nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"):
        lab.run(site.router, ["sysctl", "-q", "-w", "net.netfilter.%s=3" % key], check=True)
    config = os.path.join(lab.tmpdir, "lifetime.json")
    with open(config, "w") as f:
        f.write('{"timers": {"lifetime-probe-step": 1}}')
    server = "%s:%d" % lab.stun_primary
    r = lab.run(site.host, "NATKIT_PLUGIN_SYSTEM_PATH= %s detect --config %s --stun %s "
                "--lifetime --timeout 30 --json" % (NAT_TOOL, config, server), timeout=60)
    ok = tap.ok(r.returncode == 0, "%s: nat-tool detect --lifetime succeeds" % site.nat, r.stderr)
    if not ok:
        return
    lifetime = json.loads(r.stdout)["binding_lifetime"]
    tap.diag("binding lifetime: %s" % lifetime)
    tap.ok(lifetime is not None and lifetime["at_least_ms"] <= 3000 and
           lifetime["less_than_ms"] is not None and lifetime["less_than_ms"] > 3000 and
           lifetime["less_than_ms"] <= 8000,
           "%s: an idle binding that the router drops after 3 s is measured as "
           "lasting between %s and %s ms" % (site.nat, lifetime and lifetime["at_least_ms"],
                                             lifetime and lifetime["less_than_ms"]))


def main():
    if os.geteuid() != 0:
        skip_all("lab tests need root (network namespaces, nftables): skipped")
    try:
        check_requirements()
    except LabSkip as e:
        skip_all(str(e))

    tap = Tap()
    with Lab(site_a="port-restricted", site_b="none") as lab:
        check_lifetime(lab, tap)
    for a, b, hairpin_a, hairpin_b in LABS:
        with Lab(site_a=a, site_b=b, hairpin_a=hairpin_a, hairpin_b=hairpin_b) as lab:
            for site in (lab.a, lab.b):
                check_site(lab, site, tap)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
