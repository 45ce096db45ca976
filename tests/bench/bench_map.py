#!/usr/bin/python3
# natkit benchmark: port mapping on the lab's miniupnpd.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Port mapping figures on the NAT lab (host A behind router A running
miniupnpd 2.3.1). Needs root (the lab); prints figures, asserts nothing.

1. Time to a usable mapping per method: from process start of
   `nat-tool map udp PORT --method M --json` until its JSON object is
   complete on stdout (median of --runs; nat-tool is then stopped with
   SIGTERM and the router is checked for leftovers), against the reference
   clients in the same lab: `natpmpc -g GW -a PORT PORT udp 3600` (for PCP
   and NAT-PMP) and `upnpc -i -a HOST PORT PORT UDP` (UPnP, with SSDP
   discovery). DESIGN.md goals: UPnP <= 0.15x upnpc -a; NAT-PMP/PCP within
   0.2 s of natpmpc -a. Also the gateway RTT (ICMP echo, 5 probes) and the
   PCP/NAT-PMP time in gateway RTTs.

2. One manager holding --many mappings (default 1000): tests/bench/
   bench-map-many.c, compiled here against the build tree (or
   --many-binary), run on host A: creation time, renewals on time, lost
   mappings, release, memory per mapping. Its renewal lateness is timed
   at ::renewed, i.e. includes the gateway's answer time, so two more
   views separate natkit from the gateway: a packet watcher on host A's
   eth0 (how late natkit *sent* each renewal after the previous answer +
   5/8 of the lifetime, the gateway's answer times, retransmissions) and counters on
   the router (requests received, answers sent, receive-buffer drops,
   miniupnpd CPU time).

   The lab's own miniupnpd runs with -d: every debug line goes to stderr
   *and*, as the container has no /dev/log, through glibc's LOG_CONS
   fallback to /dev/console at ~1.3 ms a line. miniupnpd logs a few lines
   per existing rule for every PCP request, so a request costs ~3.3 ms per
   mapping already held (1 s at 300): 1,000 mappings cannot even be
   created. Part 2 therefore runs miniupnpd as a router does (no -d: it
   daemonizes and logs notices only) in a private mount namespace where
   /dev/console is /dev/null ("quiet"); it still reads its nft chains for
   every request (10-17 ms a request at 1,000 rules). --many-miniupnpd lab
   uses the lab's daemon instead (only sensible for small --many).

  tests/bench/bench_map.py [--runs N] [--many N] [--latency MS]
      [--many-lifetime S] [--many-window N] [--many-periods P]
      [--many-binary PATH] [--miniupnpd lab|quiet]
      [--many-miniupnpd quiet|lab]

Environment: NATKIT_BUILDDIR (default: _build of this source tree),
NAT_TOOL (default: $NATKIT_BUILDDIR/tools/nat-tool).
"""

import argparse
import json
import os
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

from natlab import Lab, LabError, LabSkip  # noqa: E402

BUILDDIR = os.path.abspath(os.environ.get("NATKIT_BUILDDIR",
                                          os.path.join(SRCDIR, "_build")))
NAT_TOOL = os.environ.get("NAT_TOOL", os.path.join(BUILDDIR, "tools", "nat-tool"))
PLUGIN_PATH = ":".join(os.path.join(BUILDDIR, "plugins", p) for p in ("natpmp", "upnp"))
MANY_SOURCE = os.path.join(HERE, "bench-map-many.c")
PYTHON = "/usr/bin/python3"
MINIUPNPD = "/usr/sbin/miniupnpd"

METHODS = ("pcp", "natpmp", "upnp")
# internal ports: one range per client so that nothing of one run (a
# conntrack entry, a lease being removed) meets the next
PORTS = {"pcp": 41000, "natpmp": 42000, "upnp": 43000,
         "natpmpc": 44000, "upnpc": 45000}

# ICMP echo for when iputils' ping is not installed (raw socket, root)
PING_PY = r"""
import json, os, socket, struct, sys, time
gw, count = sys.argv[1], int(sys.argv[2])
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xffff
payload = b"natkit-bench-map" + bytes(40)
rtts = []
for seq in range(1, count + 1):
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
    t0 = time.monotonic()
    s.sendto(pkt, (gw, 0))
    rtt = None
    while rtt is None:
        left = t0 + 1.0 - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        ihl = (data[0] & 15) * 4
        typ, _, _, i, sq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if typ == 0 and i == ident and sq == seq and addr[0] == gw:
            rtt = time.monotonic() - t0
    rtts.append(rtt)
    time.sleep(0.2)
print(json.dumps({"rtts_ms": [None if r is None else r * 1000 for r in rtts]}))
"""

# Watches host A's PCP traffic (AF_PACKET on eth0, inside the namespace) and,
# on SIGTERM, prints per-exchange timing as JSON.  natkit opens one socket
# per exchange (create, renew, release), so the host's source port and the
# mapping's nonce name an exchange: first request, retransmissions, first
# answer.
SNIFF_PY = r"""
import json, select, signal, socket, struct, sys, time
ifname, gw = sys.argv[1], socket.inet_aton(sys.argv[2])
limit = float(sys.argv[3])   # natkit's time limit of an exchange, s
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
# SOCK_RAW + ETH_P_ALL, not bound (a SOCK_DGRAM socket bound to eth0 saw
# nothing in this lab; not investigated further)
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
ex = {}   # (host port, nonce) -> its latest exchange
done = []  # every exchange
print("READY", flush=True)
while not stop:
    try:
        ready, _, _ = select.select([s], [], [], 0.2)
        if not ready:
            continue
        frame, addr = s.recvfrom(2048)
    except InterruptedError:
        continue
    if addr[0] != ifname or addr[1] != 0x0800:
        continue
    data = frame[14:]
    t = time.monotonic()
    if len(data) < 28 or data[9] != 17:
        continue
    ihl = (data[0] & 15) * 4
    sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
    pcp = data[ihl + 8:]
    if len(pcp) < 44 or pcp[0] != 2:
        continue
    if dport == 5351 and data[16:20] == gw and pcp[1] == 1:
        # a retransmission: same socket, same nonce, within the time limit
        # (a later exchange may reuse the source port, even for the same
        # mapping once natkit gave up on the last one)
        key = (sport, pcp[24:36])
        e = ex.get(key)
        if e is None or e.get("answer") is not None or t - e["first"] > limit:
            e = ex[key] = {"first": t, "sent": 0, "answer": None,
                           "life_req": struct.unpack("!I", pcp[4:8])[0],
                           "port": struct.unpack("!H", pcp[40:42])[0]}
            done.append(e)
        e["sent"] += 1
    elif sport == 5351 and data[12:16] == gw and pcp[1] == 0x81:
        e = ex.get((dport, pcp[24:36]))
        if e is not None and e["answer"] is None:
            e["answer"] = t
            e["result"] = pcp[3]
            e["life"] = struct.unpack("!I", pcp[4:8])[0]
try:
    st = s.getsockopt(263, 6, 8)        # SOL_PACKET, PACKET_STATISTICS
    captured, dropped = struct.unpack("II", st)
except OSError:
    dropped = None
by_port = {}
for e in done:
    by_port.setdefault(e["port"], []).append(e)
send_late, resp, resends, unanswered, after_failure = [], [], [], 0, 0
for port, lst in by_port.items():
    lst.sort(key=lambda e: e["first"])
    for i, e in enumerate(lst):
        resends.append(e["sent"] - 1)
        # an answer after natkit's time limit is one natkit no longer waited for
        if e["answer"] is not None and e["answer"] - e["first"] > limit:
            e["answer"] = None
        if e["answer"] is None:
            unanswered += 1
        else:
            resp.append(e["answer"] - e["first"])
        if i == 0 or e["life_req"] == 0:
            continue
        prev = lst[i - 1]
        if prev["answer"] is None or prev.get("result") != 0 or \
                prev["answer"] > e["first"]:
            after_failure += 1
            continue
        # natkit renews at a random point between 1/2 and 5/8 of the
        # lifetime (RFC 6887 11.2.1): due = the end of that window
        due = prev["answer"] + max(prev["life"] * 5 / 8.0, 0.5)
        send_late.append(e["first"] - due)
def q(v, f):
    v = sorted(v)
    return v[min(len(v) - 1, int(f * len(v)))] if v else None
print(json.dumps({
    "exchanges": len(done), "unanswered": unanswered,
    "retransmissions": sum(resends),
    "renewals_sent": len(send_late), "renewals_after_failure": after_failure,
    "send_late_min": min(send_late) if send_late else None,
    "send_late_median": q(send_late, 0.5), "send_late_p99": q(send_late, 0.99),
    "send_late_max": max(send_late) if send_late else None,
    "send_late_over_1s": sum(1 for x in send_late if x > 1),
    "send_late_over_100ms": sum(1 for x in send_late if x > 0.1),
    "resp_median": q(resp, 0.5), "resp_p99": q(resp, 0.99),
    "resp_max": max(resp) if resp else None, "capture_drops": dropped}), flush=True)
"""


def env_prefix(state_dir, extra=""):
    return ("NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH=%s XDG_STATE_HOME=%s "
            "XDG_CONFIG_HOME=%s %s" % (PLUGIN_PATH, shlex.quote(state_dir),
                                      shlex.quote(state_dir), extra)).strip()


# ---------------------------------------------------------------- miniupnpd

def start_quiet_miniupnpd(lab, site, options):
    """Start miniupnpd on `site` the way a router runs it (no -d: daemon,
    notices only) with /dev/console bound to /dev/null in a private mount
    namespace.  The lab prepares nftables and the config and checks the
    STUN test with its own start first.  Returns (handle, daemon pid)."""
    h = lab.start_miniupnpd(site, options=options)
    lab.miniupnpd_stop(site, flush=True)
    try:
        os.unlink(h.pid_file)
    except FileNotFoundError:
        pass
    s = lab.site(site)
    cmd = ("mount --bind /dev/null /dev/console && exec %s -f %s -P %s"
           % (MINIUPNPD, shlex.quote(h.conf), shlex.quote(h.pid_file)))
    errlog = os.path.join(lab.tmpdir, "miniupnpd-%s-quiet.err" % s.name)
    with open(errlog, "w") as err:
        p = lab.popen(s.router, ["unshare", "--mount", "--propagation", "private",
                                 "/bin/sh", "-c", cmd],
                      stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    pid = None
    while time.monotonic() < deadline:
        if pid is None and os.path.exists(h.pid_file):
            try:
                pid = int(open(h.pid_file).read().strip() or 0) or None
            except ValueError:
                pid = None
        if pid is not None:
            listening = lab.run(s.router, ["ss", "-Hlnu"]).stdout
            if re.search(r":5351\b", listening):
                break
        if p.poll() not in (None, 0):
            with open(errlog) as f:
                raise LabError("quiet miniupnpd did not start: %s" % f.read())
        time.sleep(0.02)
    else:
        raise LabError("quiet miniupnpd not ready after 15 s")
    # its STUN check runs before it listens; make sure it maps
    res = lab.probe(lab.site(site).host, "pcp", "--gw", s.gw, "--int-port", 9,
                    "--lifetime", 0)
    if not res.get("answered"):
        raise LabError("quiet miniupnpd does not answer PCP: %r" % res)
    return h, pid


def stop_quiet_miniupnpd(lab, site, pid):
    if pid is not None:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and os.path.exists("/proc/%d" % pid):
            time.sleep(0.05)
    lab.miniupnpd_stop(site, flush=True)


COUNTER_TABLE = "natkit_bench"


def add_gateway_counters(lab, site):
    """Counts PCP/NAT-PMP datagrams to and from the router's port 5351 (a
    table of our own in the router namespace, deleted with the lab)."""
    s = lab.site(site)
    script = ("table ip %s {\n"
              " chain input { type filter hook input priority -10; policy accept;\n"
              "  iifname \"lan\" udp dport 5351 counter\n }\n"
              " chain output { type filter hook output priority -10; policy accept;\n"
              "  oifname \"lan\" udp sport 5351 counter\n }\n"
              "}\n" % COUNTER_TABLE)
    lab.run(s.router, ["nft", "-f", "-"], input=script, check=True)


def gateway_counters(lab, site):
    """(requests in, answers out, UDP receive buffer drops) on the router."""
    s = lab.site(site)
    text = lab.run(s.router, ["nft", "list", "table", "ip", COUNTER_TABLE]).stdout
    counts = [int(x) for x in re.findall(r"counter packets (\d+)", text)]
    snmp = lab.run(s.router, ["cat", "/proc/net/snmp"]).stdout.splitlines()
    drops = None
    for head, vals in zip(snmp, snmp[1:]):
        if head.startswith("Udp:") and vals.startswith("Udp:"):
            row = dict(zip(head.split()[1:], vals.split()[1:]))
            drops = int(row.get("RcvbufErrors", 0))
            break
    if len(counts) != 2:
        return None, None, drops
    return counts[0], counts[1], drops


def cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------------- part 1

def read_json_object(proc, timeout):
    """Reads proc's stdout until it holds one complete JSON object; returns
    (object or None, text read, monotonic time it completed)."""
    fd = proc.stdout.fileno()
    buf = b""
    decoder = json.JSONDecoder()
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, buf.decode(errors="replace"), None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return None, buf.decode(errors="replace"), None
        buf += chunk
        text = buf.decode(errors="replace").lstrip()
        if text.startswith("{") and "}" in chunk.decode(errors="replace"):
            try:
                obj, _ = decoder.raw_decode(text)
                return obj, text, time.monotonic()
            except ValueError:
                pass


def time_nat_tool(lab, method, port, state_dir, timeout=30):
    cmd = "exec env %s %s map udp %d --method %s --json" % (
        env_prefix(state_dir), shlex.quote(NAT_TOOL), port, method)
    t0 = time.monotonic()
    p = lab.popen(lab.host_a, cmd, stdin=subprocess.DEVNULL,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    obj, text, t1 = read_json_object(p, timeout)
    rules_held = lab.miniupnpd_rules("a")
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    err = err.decode(errors="replace")
    if obj is None:
        raise LabError("nat-tool map --method %s printed no mapping (exit %s):\n%s%s"
                       % (method, p.returncode, text, err))
    problems = []
    if obj.get("method") != method:
        problems.append("method %r, asked %s" % (obj.get("method"), method))
    if not any(r.int_port == port for r in rules_held):
        problems.append("no rule for port %d on the router while it ran" % port)
    if p.returncode != 0:
        problems.append("exit status %s after SIGTERM: %s" % (p.returncode, err.strip()))
    left = lab.miniupnpd_rules("a")
    if left:
        problems.append("rules left after exit: %s" % (left,))
    return t1 - t0, obj, problems


def timed_run(lab, cmd, timeout=60):
    t0 = time.monotonic()
    r = lab.run(lab.host_a, cmd, timeout=timeout)
    return time.monotonic() - t0, r


def time_natpmpc(lab, port):
    t, r = timed_run(lab, ["natpmpc", "-g", lab.gw_a, "-a", str(port), str(port),
                           "udp", "3600"])
    problems = []
    if r.returncode != 0 or "Mapped public port %d" % port not in r.stdout:
        problems.append("natpmpc -a failed (%d): %s" % (r.returncode, r.stdout[-300:]))
    d = lab.run(lab.host_a, ["natpmpc", "-g", lab.gw_a, "-a", str(port), str(port),
                             "udp", "0"])
    if d.returncode != 0:
        problems.append("natpmpc delete failed (%d)" % d.returncode)
    left = lab.miniupnpd_rules("a")
    if left:
        problems.append("rules left: %s" % (left,))
    return t, problems


def time_upnpc(lab, port, url):
    t, r = timed_run(lab, ["upnpc", "-i", "-a", lab.host_a_ip, str(port), str(port),
                           "UDP"])
    problems = []
    if r.returncode != 0 or "is redirected to internal" not in r.stdout:
        problems.append("upnpc -a failed (%d): %s" % (r.returncode, r.stdout[-300:]))
    d = lab.run(lab.host_a, ["upnpc", "-i", "-u", url, "-d", str(port), "UDP"])
    if d.returncode != 0:
        problems.append("upnpc -d failed (%d)" % d.returncode)
    left = lab.miniupnpd_rules("a")
    if left:
        problems.append("rules left: %s" % (left,))
    return t, problems


def gateway_rtt(lab):
    """(average RTT in seconds, how it was measured)"""
    if shutil.which("ping"):
        r = lab.run(lab.host_a, ["ping", "-n", "-c", "5", "-i", "0.2", lab.gw_a])
        m = re.search(r"= [\d.]+/([\d.]+)/", r.stdout)
        if m:
            return float(m.group(1)) / 1000, "ping -c 5"
    r = lab.run(lab.host_a, [PYTHON, "-c", PING_PY, lab.gw_a, "5"])
    try:
        rtts = [x for x in json.loads(r.stdout)["rtts_ms"] if x is not None]
    except (ValueError, KeyError):
        rtts = []
    if not rtts:
        return None, "ICMP echo failed: %s" % r.stderr.strip()[-200:]
    return statistics.mean(rtts) / 1000, "ICMP echo x5 (no ping installed: raw socket)"


def fmt_range(values):
    return "%.3f-%.3f" % (min(values), max(values))


def part1(args, kwargs):
    state = tempfile.mkdtemp(prefix="natkit-bench-map-")
    problems = []
    times = {m: [] for m in METHODS}
    refs = {"natpmpc": [], "upnpc": []}
    try:
        with Lab(**kwargs) as lab:
            if args.miniupnpd == "quiet":
                h, _ = start_quiet_miniupnpd(lab, "a", None)
            else:
                h = lab.start_miniupnpd("a")
            for i in range(args.runs):
                for m in METHODS:
                    t, _, prob = time_nat_tool(lab, m, PORTS[m] + i, state)
                    times[m].append(t)
                    problems += ["nat-tool %s run %d: %s" % (m, i + 1, x) for x in prob]
                t, prob = time_natpmpc(lab, PORTS["natpmpc"] + i)
                refs["natpmpc"].append(t)
                problems += ["natpmpc run %d: %s" % (i + 1, x) for x in prob]
                t, prob = time_upnpc(lab, PORTS["upnpc"] + i, h.url)
                refs["upnpc"].append(t)
                problems += ["upnpc run %d: %s" % (i + 1, x) for x in prob]
            rtt, rtt_how = gateway_rtt(lab)
            records = os.path.join(state, "natkit", "mappings")
            if os.path.isdir(records) and os.listdir(records):
                problems.append("natkit records left in %s: %s"
                                % (records, sorted(os.listdir(records))))
    finally:
        shutil.rmtree(state, ignore_errors=True)

    print("1. Time to a usable mapping, host A -> router A (%s), %d runs, "
          "WAN latency %s ms one way (the gateway is on the LAN)"
          % ("miniupnpd 2.3.1 as the lab runs it (-d)" if args.miniupnpd == "lab"
             else "miniupnpd 2.3.1 quiet: no -d, console to /dev/null",
             args.runs, args.latency))
    print("   process start until the mapping is known (nat-tool: JSON object complete "
          "on stdout; references: exit)")
    print("   %-7s %9s %13s   %-22s %9s %13s %7s %8s   %s"
          % ("method", "natkit s", "(min-max)", "reference", "ref s", "(min-max)",
             "ratio", "diff s", "goal (DESIGN.md)"))
    for m in METHODS:
        ref = "upnpc" if m == "upnp" else "natpmpc"
        med, rmed = statistics.median(times[m]), statistics.median(refs[ref])
        if m == "upnp":
            goal = "<= 0.15x upnpc -a: %s" % ("met" if med <= 0.15 * rmed else "NOT met")
            refname = "upnpc -i -a (SSDP)"
        else:
            goal = "within 0.2 s of natpmpc -a: %s" % (
                "met" if med - rmed <= 0.2 else "NOT met")
            refname = "natpmpc -g GW -a"
        print("   %-7s %9.3f %13s   %-22s %9.3f %13s %7.2f %+8.3f   %s"
              % (m, med, fmt_range(times[m]), refname, rmed, fmt_range(refs[ref]),
                 med / rmed, med - rmed, goal))
    if rtt is None:
        print("   gateway RTT: not measured (%s)" % rtt_how)
    else:
        print("   gateway RTT (host A -> %s, %s): avg %.3f ms" % (lab.gw_a, rtt_how, rtt * 1000))
        for m in ("pcp", "natpmp"):
            print("   %s median = %.0f gateway RTTs (natpmpc -a = %.0f RTTs)"
                  % (m, statistics.median(times[m]) / rtt,
                     statistics.median(refs["natpmpc"]) / rtt))
    if problems:
        print("   problems:")
        for p in problems:
            print("     - %s" % p)
    else:
        print("   every mapping was on the router while held and gone after "
              "SIGTERM / delete; nat-tool exited 0 each time")


# ------------------------------------------------------------------- part 2

def build_many(args):
    """Path of the bench-map-many binary, or None (message printed)."""
    if args.many_binary:
        return os.path.abspath(args.many_binary)
    outdir = tempfile.mkdtemp(prefix="natkit-bench-map-many-")
    out = os.path.join(outdir, "bench-map-many")
    pc = subprocess.run(["pkg-config", "--cflags", "--libs", "natkit-1"],
                        env=dict(os.environ, PKG_CONFIG_PATH=os.path.join(
                            BUILDDIR, "meson-uninstalled")),
                        capture_output=True, text=True)
    if pc.returncode != 0:
        print("2. skipped: pkg-config natkit-1 (%s/meson-uninstalled) failed: %s"
              % (BUILDDIR, pc.stderr.strip()))
        return None
    # natkit-1-uninstalled.pc lacks framework/include, where <natkit/natkit.h> is
    cmd = ["gcc", "-O2", "-Wall", "-Wextra", "-o", out, MANY_SOURCE,
           "-I" + os.path.join(SRCDIR, "framework", "include")] + pc.stdout.split()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("2. skipped: could not compile %s:\n   %s\n%s"
              % (MANY_SOURCE, " ".join(cmd), r.stderr))
        return None
    if r.stderr.strip():
        print("   compiler warnings:\n%s" % r.stderr)
    return out


def part2(args, kwargs, binary):
    state = tempfile.mkdtemp(prefix="natkit-bench-map-many-state-")
    os.chmod(state, 0o700)
    result = None
    lines = []
    try:
        with Lab(**kwargs) as lab:
            options = {"min_lifetime": "10"}
            pid = None
            if args.many_miniupnpd == "quiet":
                h, pid = start_quiet_miniupnpd(lab, "a", options)
            else:
                h = lab.start_miniupnpd("a", options=options)
                pid = h.pid
            add_gateway_counters(lab, "a")
            sniffer = lab.popen(lab.host_a, [PYTHON, "-c", SNIFF_PY, "eth0", lab.gw_a,
                                              str(args.many_timeout / 1000.0)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
            if sniffer.stdout.readline().strip() != "READY":
                print("   (packet timing not available: %s)" % sniffer.stderr.read()[-300:])
                sniffer = None
            ticks0 = cpu_ticks(pid)
            cmd = ("exec env %s %s --gateway %s --count %d --lifetime %d --window %d "
                   "--periods %g --timeout %d" % (
                       env_prefix(state, "LD_LIBRARY_PATH=%s" % shlex.quote(
                           os.path.join(BUILDDIR, "framework"))),
                       shlex.quote(binary), lab.gw_a, args.many, args.many_lifetime,
                       args.many_window, args.many_periods, args.many_timeout))
            print("2. One manager holding %d mappings (PCP, lifetime %d s asked, %d in "
                  "flight at most) on router A's miniupnpd (%s, min_lifetime 10)"
                  % (args.many, args.many_lifetime, args.many_window,
                     args.many_miniupnpd))
            print("   %s" % cmd.replace("exec env ", ""))
            t0 = time.monotonic()
            p = lab.popen(lab.host_a, cmd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for line in p.stdout:
                line = line.rstrip("\n")
                if line.startswith("RESULT "):
                    try:
                        result = json.loads(line[7:])
                    except ValueError:
                        print("   bad RESULT line: %s" % line)
                    continue
                lines.append(line)
                print("   | %s" % line, flush=True)
            p.wait()
            wall = time.monotonic() - t0
            ticks1 = cpu_ticks(pid)
            requests, answers, drops = gateway_counters(lab, "a")
            wire = None
            if sniffer is not None:
                sniffer.send_signal(signal.SIGTERM)
                try:
                    out, err = sniffer.communicate(timeout=60)
                    wire = json.loads(out.strip().splitlines()[-1])
                except (subprocess.TimeoutExpired, ValueError, IndexError):
                    print("   (packet timing failed: %s)" % (err or "")[-300:])
            rules_left = lab.miniupnpd_rules("a")
            leases_left = lab.miniupnpd_leases("a")
            if args.many_miniupnpd == "quiet":
                stop_quiet_miniupnpd(lab, "a", pid)
            records = os.path.join(state, "natkit", "mappings")
            records_left = sorted(os.listdir(records)) if os.path.isdir(records) else []
    finally:
        shutil.rmtree(state, ignore_errors=True)

    print("   exit status %s, %.1f s in all" % (p.returncode, wall))
    if ticks0 is not None and ticks1 is not None:
        print("   miniupnpd CPU time during the run: %.1f s"
              % ((ticks1 - ticks0) / os.sysconf("SC_CLK_TCK")))
    if wire is not None:
        w = wire

        def ms(x):
            return "-" if x is None else "%.1f" % (x * 1000)
        print("   on the wire (host A, %d exchanges): natkit sent each renewal after the "
              "previous answer + 5/8 of the lifetime: late by median %s ms, p99 %s ms, max %s ms "
              "(min %s); > 100 ms: %d, > 1 s: %d of %d (+%d after a failed exchange)"
              % (w["exchanges"], ms(w["send_late_median"]), ms(w["send_late_p99"]),
                 ms(w["send_late_max"]), ms(w["send_late_min"]), w["send_late_over_100ms"],
                 w["send_late_over_1s"], w["renewals_sent"], w["renewals_after_failure"]))
        print("   gateway answer time (first request to first answer): median %s ms, "
              "p99 %s ms, max %s ms; retransmissions %d; exchanges not answered "
              "(within natkit's time limit) %d; capture drops %s"
              % (ms(w["resp_median"]), ms(w["resp_p99"]), ms(w["resp_max"]),
                 w["retransmissions"], w["unanswered"], w["capture_drops"]))
    if requests is not None:
        print("   at the gateway: %d PCP requests received, %d answers sent, %s UDP datagrams "
              "dropped (receive buffer full)" % (requests, answers, drops))
        if ticks0 is not None and ticks1 is not None and answers:
            print("   miniupnpd CPU per answer: %.1f ms"
                  % ((ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / answers * 1000))
    print("   left on the router after release: %d rules, %d leases; natkit records "
          "left: %d" % (len(rules_left), len(leases_left), len(records_left)))
    if result is None:
        print("   no RESULT line: the benchmark did not finish")
        return
    r = result
    print("   summary: created %d/%d in %.2f s (%.1f/s); granted lifetime %d s; "
          "held %.1f s" % (r["created"], r["count"], r["create_s"],
                           r["created"] / r["create_s"] if r["create_s"] else 0,
                           r["lifetime"], r["hold_s"]))
    print("            renewals %d (+%d changed) of ~%d due; late > 1 s: %d; max lateness "
          "%.3f s; after expiry: %d; lost: %d; overdue at the end: %d"
          % (r["renewals"], r["changed"], r["expected_renewals"], r["late_1s"],
             r["max_late_ms"] / 1000, r["after_expiry"], r["lost"], r["overdue_at_end"]))
    print("            released %d/%d in %.2f s (%d failed)"
          % (r["released"], r["created"], r["release_s"], r["release_failed"]))
    if requests is not None:
        ops = r["created"] + r["failed"] + r["renewals"] + r["changed"] + r["released"] + \
            r["release_failed"]
        print("            gateway saw %d requests for ~%d operations (%.2f each: "
              "retransmissions)" % (requests, ops, requests / ops if ops else 0))
    print("            memory per mapping: %.2f KB VmRSS (%.2f KB after a warm-up mapping), "
          "malloc in use %.2f KB; max fds %d; natkit CPU %.2f s"
          % (r["kb_per_mapping"], r["kb_per_mapping_warm"], r["heap_kb_per_mapping_warm"],
             r["max_fds"], r["cpu_s"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="runs per method and reference (median; default 5)")
    parser.add_argument("--many", type=int, default=1000,
                        help="mappings held by one manager (default 1000; 0 skips)")
    parser.add_argument("--latency", type=float, default=0,
                        help="one-way delay in ms on the sites' WAN links (the gateway "
                             "is on the LAN, so this only affects miniupnpd's STUN check)")
    parser.add_argument("--miniupnpd", choices=("lab", "quiet"), default="lab",
                        help="part 1 against the lab's miniupnpd (-d, default) or a "
                             "quiet one")
    parser.add_argument("--many-miniupnpd", choices=("quiet", "lab"), default="quiet",
                        help="part 2 against a quiet miniupnpd (default) or the lab's")
    parser.add_argument("--many-lifetime", type=int, default=120,
                        help="lifetime asked for in part 2 (default 120 s: miniupnpd "
                             "answers only ~60-80 requests/s with 1,000 rules, and "
                             "renewals come as fast as the creations did)")
    parser.add_argument("--many-window", type=int, default=50,
                        help="part 2: mapping requests in flight at most (default 50)")
    parser.add_argument("--many-periods", type=float, default=2.5,
                        help="part 2: renewal periods to hold the mappings (default 2.5)")
    parser.add_argument("--many-timeout", type=int, default=10000,
                        help="part 2: time limit of one request in ms (default 10000)")
    parser.add_argument("--many-binary",
                        help="a built bench-map-many (default: compile it to a temp dir)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench_map: needs root (the NAT lab): skipped")
        return 0
    if not os.access(NAT_TOOL, os.X_OK):
        print("bench_map: %s not found (set NAT_TOOL or NATKIT_BUILDDIR): skipped" % NAT_TOOL)
        return 0

    kwargs = {"site_a": "port-restricted", "site_b": "symmetric", "turn": True}
    if args.latency:
        kwargs["latency_ms"] = args.latency
    try:
        if args.runs > 0:
            part1(args, kwargs)
        if args.many > 0:
            binary = build_many(args)
            if binary is not None:
                try:
                    part2(args, kwargs, binary)
                finally:
                    if not args.many_binary:
                        shutil.rmtree(os.path.dirname(binary), ignore_errors=True)
    except LabSkip as e:
        print("bench_map: %s: skipped" % e)
        return 0
    except LabError as e:
        print("bench_map: lab error: %s" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
