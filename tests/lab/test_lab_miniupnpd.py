#!/usr/bin/python3
# natkit NAT lab self-test: miniupnpd on a site router.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Proves the lab's miniupnpd (Lab(upnp_a=...), lab.start_miniupnpd()) with
the reference clients upnpc (miniupnpc), natpmpc and udp_probe.py's pcp /
natpmp / ssdp.  TAP output; exit 77 (or NATLAB_SKIP_EXIT) when not root or
miniupnpd / upnpc / natpmpc are missing.

Lab 1: port-restricted A, symmetric B, miniupnpd on both routers
  startup      STUN check against coturn succeeds (port forwarding
               enabled, public address = WAN address), from the router's
               own port range
  UPnP         upnpc -u <rootDesc> -a maps a port: the DNAT rule shows in
               miniupnpd_rules() and the lease file, and an unsolicited
               datagram from the inet namespace to WAN:port reaches the
               host (before the mapping it does not); upnpc -d removes it
  discovery    upnpc with SSDP discovery (site A) and udp_probe ssdp
  NAT-PMP      natpmpc: public address, -a maps, lifetime 0 removes
  PCP          MAP with no suggested port gets the internal port, a taken
               suggested port another one; lifetime 0 removes
  restart      miniupnpd_restart(): rules and leases gone, epoch starts
               again, PCP ANNOUNCE on 224.0.0.1:5350, old port closed,
               new mappings work
Lab 2: miniupnpd without UPnP on A, without PCP/NAT-PMP on B
  upnp=False   no SSDP answer, HTTP port closed (upnpc fails), PCP works
  natpmp=False no answer at all on 5351 (PCP and NAT-PMP), UPnP works
  stop/start   miniupnpd_stop() flushes the rules, a stopped daemon's
               port answers ICMP unreachable, start again restores the
               mappings from the lease file
Finally: no namespace and no miniupnpd process is left.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from natlab import (Lab, LabError, LabSkip, check_requirements,  # noqa: E402
                    PYTHON, PROBE, SERVER_IPS, PortMapping, _netns_list,
                    _pid_alive)
from labtap import Tap, skip_all  # noqa: E402

S1 = SERVER_IPS[0]
_sport = [7000]
TIMINGS = {}


def fresh_sport():
    """A new source port in inet for every unsolicited probe: a conntrack
    entry left by an earlier probe must not decide the next one."""
    _sport[0] += 1
    return _sport[0]


def timing(name, seconds):
    TIMINGS.setdefault(name, []).append(seconds)


def run_timed(lab, ns, cmd, name=None, timeout=60):
    t0 = time.monotonic()
    r = lab.run(ns, cmd, timeout=timeout)
    dt = time.monotonic() - t0
    if name:
        timing(name, dt)
    return r, dt


def wait_bound(lab, ns, port, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = lab.run(ns, ["ss", "-Hlnu"])
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 4 and f[3].endswith(":%d" % port):
                return True
        time.sleep(0.02)
    return False


def inbound(lab, s, ext_port, int_port=None):
    """Send two unsolicited datagrams from inet (S1, fresh port) to
    WAN:ext_port; return (sources seen by a listener on the host's
    int_port, the inet source used)."""
    int_port = int_port or ext_port
    p = lab.popen(s.host, [PYTHON, PROBE, "listen", "--bind",
                           "0.0.0.0:%d" % int_port, "--wait", "10"],
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    src = "%s:%d" % (S1, fresh_sport())
    try:
        if not wait_bound(lab, s.host, int_port):
            raise LabError("listener on %s:%d did not bind" % (s.host,
                                                                int_port))
        lab.probe(lab.inet, "send", "--to", "%s:%d" % (s.wan, ext_port),
                  "--bind", src, "--count", "2")
        # a few ms through veths and nftables; then end the listener
        time.sleep(0.1)
        lab.run(s.host, [PYTHON, "-c", STOP % int_port], check=True)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    res = json.loads(out)
    return [g["src"] for g in res["received"]], src


STOP = ("import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)"
        ".sendto(b'{\"op\": \"stop\"}', ('127.0.0.1', %d))")


def mapping(s, port, int_port=None, proto="udp"):
    return PortMapping(proto, port, s.host_ip, int_port or port)


def natpmp_epoch(lab, s):
    r = lab.probe(s.host, "natpmp", "--gw", s.gw)
    return r.get("epoch") if r.get("answered") else None


# ---------------------------------------------------------------- lab 1

def t_startup(tap, lab, s):
    h = lab.miniupnpd[s.name]
    log = h.log_text()
    tap.ok(h.running() and "Port forwarding is now enabled" in log and
           "public IP address %s" % s.wan in log,
           "%s (%s): miniupnpd up in %.2f s, STUN check: public address %s,"
           " port forwarding enabled" % (s.name, s.nat, h.start_s, s.wan),
           log[-2000:])
    m = re.search(r"perform_stun: local ports ([\d ]+)", log)
    ports = [int(x) for x in m.group(1).split()] if m else []
    tap.ok(len(ports) == 4 and all(61000 <= p <= 61999 for p in ports),
           "%s: STUN check sockets use the router's own port range "
           "61000-61999 (%s)" % (s.name, ports))
    tap.ok(lab.miniupnpd_rules(s.name) == [] and
           lab.miniupnpd_leases(s.name) == [],
           "%s: no mapping at start" % s.name)
    info = lab.info()["site_" + s.name].get("miniupnpd", {})
    tap.ok(info.get("url") == "http://%s:2869/rootDesc.xml" % s.gw and
           info.get("pid") == h.pid,
           "%s: lab.info() names miniupnpd (%s)" % (s.name, info.get("url")))


def t_upnp(tap, lab, s, port):
    h = lab.miniupnpd[s.name]
    got, _ = inbound(lab, s, port)
    tap.ok(got == [], "%s: before mapping, inbound to WAN:%d is filtered"
           % (s.name, port), got)
    r, dt = run_timed(lab, s.host, ["upnpc", "-i", "-u", h.url, "-a",
                                    s.host_ip, str(port), str(port), "UDP"],
                      "upnpc -u -a")
    tap.ok(r.returncode == 0 and "is redirected to internal %s:%d"
           % (s.host_ip, port) in r.stdout,
           "%s: upnpc -i -u %s -a %s %d %d UDP (%.3f s)"
           % (s.name, h.url, s.host_ip, port, port, dt), r.stdout + r.stderr)
    rules = lab.miniupnpd_rules(s.name)
    tap.ok(mapping(s, port) in rules,
           "%s: DNAT rule udp %d -> %s:%d in miniupnpd_rules()"
           % (s.name, port, s.host_ip, port), rules)
    leases = lab.miniupnpd_leases(s.name)
    tap.ok(any(le["ext_port"] == port and le["desc"] == "libminiupnpc"
               for le in leases),
           "%s: lease file has the UPnP mapping" % s.name, leases)
    got, src = inbound(lab, s, port)
    tap.ok(got and all(g == src for g in got),
           "%s: unsolicited datagrams %s -> %s:%d reach the host "
           "(source unchanged)" % (s.name, src, s.wan, port), got)
    r, dt = run_timed(lab, s.host, ["upnpc", "-i", "-u", h.url, "-d",
                                    str(port), "UDP"], "upnpc -u -d")
    rules = lab.miniupnpd_rules(s.name)
    tap.ok(r.returncode == 0 and mapping(s, port) not in rules,
           "%s: upnpc -d %d UDP removes the rule (%.3f s)"
           % (s.name, port, dt), r.stdout + r.stderr + str(rules))
    got, _ = inbound(lab, s, port)
    tap.ok(got == [], "%s: after removal, inbound to WAN:%d is filtered"
           % (s.name, port), got)


def t_discovery(tap, lab, s, port):
    r = lab.probe(s.host, "ssdp", "--wait", "1")
    locs = [x["location"] for x in r["responses"]]
    tap.ok(lab.miniupnpd[s.name].url in locs,
           "%s: SSDP M-SEARCH answered with LOCATION %s"
           % (s.name, lab.miniupnpd[s.name].url), r)
    r, dt = run_timed(lab, s.host, ["upnpc", "-i", "-a", s.host_ip,
                                    str(port), str(port), "UDP"],
                      "upnpc -a (SSDP discovery)")
    tap.ok(r.returncode == 0 and "is redirected" in r.stdout and
           mapping(s, port) in lab.miniupnpd_rules(s.name),
           "%s: upnpc -i -a with SSDP discovery maps %d (%.2f s)"
           % (s.name, port, dt), r.stdout + r.stderr)


def t_natpmp(tap, lab, s, port):
    r, dt = run_timed(lab, s.host, ["natpmpc", "-g", s.gw], "natpmpc")
    tap.ok(r.returncode == 0 and
           "Public IP address : %s" % s.wan in r.stdout,
           "%s: natpmpc -g %s: public address %s (%.3f s)"
           % (s.name, s.gw, s.wan, dt), r.stdout + r.stderr)
    r, dt = run_timed(lab, s.host, ["natpmpc", "-g", s.gw, "-a", str(port),
                                    str(port), "udp", "3600"],
                      "natpmpc -a")
    tap.ok(r.returncode == 0 and
           "Mapped public port %d protocol UDP to local port %d" %
           (port, port) in r.stdout,
           "%s: natpmpc -a %d %d udp 3600 (%.3f s)" % (s.name, port, port,
                                                       dt),
           r.stdout + r.stderr)
    tap.ok(mapping(s, port) in lab.miniupnpd_rules(s.name),
           "%s: NAT-PMP mapping in miniupnpd_rules()" % s.name)
    got, src = inbound(lab, s, port)
    tap.ok(got and all(g == src for g in got),
           "%s: inbound to the NAT-PMP mapping %s:%d reaches the host"
           % (s.name, s.wan, port), got)
    r, dt = run_timed(lab, s.host, ["natpmpc", "-g", s.gw, "-a", str(port),
                                    str(port), "udp", "0"],
                      "natpmpc -a (lifetime 0)")
    tap.ok(r.returncode == 0 and
           mapping(s, port) not in lab.miniupnpd_rules(s.name),
           "%s: natpmpc lifetime 0 removes the rule" % s.name,
           r.stdout + r.stderr)
    got, _ = inbound(lab, s, port)
    tap.ok(got == [], "%s: after NAT-PMP removal, inbound is filtered"
           % s.name, got)


def t_pcp(tap, lab, s, port, taken):
    nonce = "00112233445566778899aa%02x" % (port % 256)
    r = lab.probe(s.host, "pcp", "--gw", s.gw, "--int-port", port,
                  "--lifetime", 600, "--nonce", nonce)
    timing("pcp MAP (udp_probe)", r.get("rtt_ms", 0) / 1000.0)
    tap.ok(r["answered"] and r["result_name"] == "SUCCESS" and
           r["ext_ip"] == s.wan and r["ext_port"] == port and
           r["lifetime"] == 600,
           "%s: PCP MAP int %d, no suggestion: SUCCESS %s:%s lifetime %s "
           "(%s ms)" % (s.name, port, r.get("ext_ip"), r.get("ext_port"),
                        r.get("lifetime"), r.get("rtt_ms")), r)
    got, src = inbound(lab, s, port)
    tap.ok(mapping(s, port) in lab.miniupnpd_rules(s.name) and got and
           all(g == src for g in got),
           "%s: PCP mapping in the rules, inbound reaches the host"
           % s.name, got)
    # suggested external port already taken: another one is assigned
    r2 = lab.probe(s.host, "pcp", "--gw", s.gw, "--int-port", port + 1,
                   "--ext-port", taken, "--lifetime", 600)
    tap.ok(r2["answered"] and r2["result_name"] == "SUCCESS" and
           r2["ext_port"] not in (taken, 0) and
           mapping(s, r2["ext_port"], port + 1) in
           lab.miniupnpd_rules(s.name),
           "%s: PCP MAP suggesting taken port %d: SUCCESS with port %s"
           % (s.name, taken, r2.get("ext_port")), r2)
    r = lab.probe(s.host, "pcp", "--gw", s.gw, "--int-port", port,
                  "--lifetime", 0, "--nonce", nonce)
    tap.ok(r["answered"] and r["result_name"] == "SUCCESS" and
           mapping(s, port) not in lab.miniupnpd_rules(s.name),
           "%s: PCP MAP lifetime 0 removes the rule" % s.name, r)


def t_restart(tap, lab, s, port):
    r = lab.run(s.host, ["natpmpc", "-g", s.gw, "-a", str(port), str(port),
                         "udp", "3600"])
    ok = r.returncode == 0 and mapping(s, port) in lab.miniupnpd_rules(
        s.name)
    # the epoch must have moved on for its restart to be visible
    end = time.monotonic() + 5
    before = natpmp_epoch(lab, s)
    while before is not None and before < 2 and time.monotonic() < end:
        time.sleep(0.25)
        before = natpmp_epoch(lab, s)
    listener = lab.popen(s.host, [PYTHON, PROBE, "mlisten", "--wait", "2.5",
                                  "--ready"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    listener.stderr.readline()
    old_pid = lab.miniupnpd[s.name].pid
    t0 = time.monotonic()
    h = lab.miniupnpd_restart(s.name)
    dt = time.monotonic() - t0
    timing("miniupnpd_restart", dt)
    after = natpmp_epoch(lab, s)
    tap.ok(ok and h.running() and h.pid != old_pid and not _pid_alive(
        old_pid),
        "%s: miniupnpd_restart() (%.2f s): new process" % (s.name, dt))
    rules = lab.miniupnpd_rules(s.name)
    tap.ok(rules == [] and lab.miniupnpd_leases(s.name) == [],
           "%s: after restart no rule and no lease" % s.name, rules)
    tap.ok(before is not None and after is not None and after < before,
           "%s: NAT-PMP epoch restarts (%s -> %s)" % (s.name, before, after))
    got, _ = inbound(lab, s, port)
    tap.ok(got == [], "%s: the old mapping's port is filtered after "
           "restart" % s.name, got)
    out, _ = listener.communicate(timeout=10)
    ann = [a for a in json.loads(out)["received"]
           if a.get("version") == 2 and a.get("opcode") == 0]
    tap.ok(ann and ann[0]["src"] == "%s:5351" % s.gw and
           ann[0]["epoch"] <= 1,
           "%s: restart sends a PCP ANNOUNCE to 224.0.0.1:5350 (epoch %s)"
           % (s.name, ann[0]["epoch"] if ann else None), out)
    r = lab.run(s.host, ["natpmpc", "-g", s.gw, "-a", str(port), str(port),
                         "udp", "3600"])
    got, src = inbound(lab, s, port)
    tap.ok(r.returncode == 0 and got and all(g == src for g in got),
           "%s: mapping again after restart works" % s.name,
           r.stdout + str(got))


def lab1(tap):
    with Lab("port-restricted", "symmetric", upnp_a=True,
             upnp_b=True) as lab:
        tap.diag("lab 1 %s: A port-restricted, B symmetric, miniupnpd on "
                 "both" % lab.labid)
        pids = [h.pid for h in lab.miniupnpd.values()]
        for s in (lab.a, lab.b):
            t_startup(tap, lab, s)
            t_upnp(tap, lab, s, 4000)
            if s is lab.a:
                t_discovery(tap, lab, s, 4300)
            else:
                lab.run(s.host, ["upnpc", "-i", "-u",
                                 lab.miniupnpd[s.name].url, "-a",
                                 s.host_ip, "4300", "4300", "UDP"],
                        check=True)
            t_natpmp(tap, lab, s, 4100)
            t_pcp(tap, lab, s, 4200, taken=4300)
            t_restart(tap, lab, s, 4400)
        # a second upnpc -u timing sample on each site
        for s in (lab.a, lab.b):
            run_timed(lab, s.host, ["upnpc", "-i", "-u",
                                    lab.miniupnpd[s.name].url, "-a",
                                    s.host_ip, "4500", "4500", "UDP"],
                      "upnpc -u -a")
            run_timed(lab, s.host, ["natpmpc", "-g", s.gw, "-a", "4600",
                                    "4600", "udp", "60"], "natpmpc -a")
        pids += [h.pid for h in lab.miniupnpd.values()]
        labid = lab.labid
    return labid, pids


# ---------------------------------------------------------------- lab 2

def lab2(tap):
    with Lab("port-restricted", "port-restricted",
             upnp_a={"upnp": False}) as lab:
        tap.diag("lab 2 %s: miniupnpd without UPnP on A, without "
                 "PCP/NAT-PMP on B" % lab.labid)
        a, b = lab.a, lab.b
        hb = lab.start_miniupnpd("b", natpmp=False)
        tap.ok(hb.running() and lab.miniupnpd["a"].url is None and
               hb.url == "http://%s:2869/rootDesc.xml" % b.gw,
               "start_miniupnpd('b', natpmp=False) (%.2f s)" % hb.start_s)
        pids = [lab.miniupnpd["a"].pid, hb.pid]
        # upnp=False: the HTTP port is silently dropped, upnpc times out;
        # run it in the background meanwhile
        url_a = "http://%s:2869/rootDesc.xml" % a.gw
        t0 = time.monotonic()
        slow = lab.popen(a.host, ["upnpc", "-i", "-u", url_a, "-s"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
        r = lab.probe(a.host, "ssdp", "--wait", "1")
        tap.ok(r["responses"] == [], "A (upnp=False): no SSDP answer",
               r)
        r = lab.probe(a.host, "pcp", "--gw", a.gw, "--int-port", 4000)
        tap.ok(r["answered"] and r["result_name"] == "SUCCESS" and
               mapping(a, 4000) in lab.miniupnpd_rules("a"),
               "A (upnp=False): PCP still maps", r)
        r = lab.run(a.host, ["natpmpc", "-g", a.gw, "-a", "4100", "4100",
                             "udp", "600"])
        tap.ok(r.returncode == 0 and
               mapping(a, 4100) in lab.miniupnpd_rules("a"),
               "A (upnp=False): natpmpc still maps", r.stdout)

        r = lab.probe(b.host, "natpmp", "--gw", b.gw, "--timeout", "1.5")
        tap.ok(not r["answered"] and not r.get("icmp_refused"),
               "B (natpmp=False): NAT-PMP on %s:5351 gets no answer at all"
               % b.gw, r)
        r = lab.probe(b.host, "pcp", "--gw", b.gw, "--int-port", 4000,
                      "--timeout", "1.5")
        tap.ok(not r["answered"] and not r.get("icmp_refused"),
               "B (natpmp=False): PCP gets no answer at all", r)
        r = lab.probe(b.host, "ssdp", "--wait", "1")
        tap.ok(hb.url in [x["location"] for x in r["responses"]],
               "B (natpmp=False): SSDP answers", r)
        r = lab.run(b.host, ["upnpc", "-i", "-u", hb.url, "-a", b.host_ip,
                             "4000", "4000", "UDP"])
        tap.ok(r.returncode == 0 and mapping(b, 4000) in
               lab.miniupnpd_rules("b"),
               "B (natpmp=False): upnpc maps", r.stdout + r.stderr)

        out, _ = slow.communicate(timeout=60)
        dt = time.monotonic() - t0
        tap.ok(slow.returncode != 0 and "No valid UPNP Internet Gateway"
               in out,
               "A (upnp=False): upnpc -u %s finds no IGD (%.1f s: TCP "
               "connect timeout)" % (url_a, dt), out)

        # stop: rules flushed, process gone, the closed port refuses
        ret = lab.miniupnpd_stop("b")
        tap.ok(ret is not None and not hb.running() and
               lab.miniupnpd_rules("b") == [] and
               not _pid_alive(hb.pid),
               "miniupnpd_stop('b'): exited (%s), rules flushed" % ret)
        got, _ = inbound(lab, b, 4000)
        tap.ok(got == [], "B stopped: inbound to the old mapping filtered",
               got)
        r, dt = run_timed(lab, b.host, ["upnpc", "-i", "-u", hb.url, "-s"])
        tap.ok(r.returncode != 0 and dt < 3,
               "B stopped: upnpc fails at once (%.3f s, %s)"
               % (dt, r.stderr.strip().splitlines()[0] if r.stderr.strip()
                  else ""), r.stdout + r.stderr)
        # start again: the lease file brings the mapping back
        hb2 = lab.start_miniupnpd("b", natpmp=False)
        pids.append(hb2.pid)
        got, src = inbound(lab, b, 4000)
        tap.ok(mapping(b, 4000) in lab.miniupnpd_rules("b") and got,
               "B started again: mapping restored from the lease file",
               lab.miniupnpd_rules("b"))
        labid = lab.labid
    return labid, pids


def t_cleanup(tap, labid, pids):
    left = [ns for ns in _netns_list() if ns.startswith(labid)]
    tap.ok(left == [], "%s: no namespace left" % labid, left)
    alive = [p for p in pids if _pid_alive(p)]
    tap.ok(alive == [], "%s: no miniupnpd process left (%s)" % (
        labid, " ".join(map(str, pids))), alive)


def main():
    try:
        check_requirements(turn=True, miniupnpd=True)
    except LabSkip as e:
        skip_all(str(e))
    missing = [t for t in ("upnpc", "natpmpc") if shutil.which(t) is None]
    if missing:
        skip_all("lab miniupnpd test needs %s (miniupnpc, natpmpc): skipped"
                 % ", ".join(missing))
    tap = Tap()
    try:
        for fn in (lab1, lab2):
            labid, pids = fn(tap)
            t_cleanup(tap, labid, pids)
    except Exception:
        tap.ok(False, "lab test crashed", traceback.format_exc())
    for name, vals in sorted(TIMINGS.items()):
        tap.diag("timing %-28s %s" % (name, " ".join(
            "%.3f" % v for v in vals)))
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
