#!/usr/bin/python3
# natkit benchmark: `nat-tool vpn` (WireGuard over natkit connections)
# against wireguard-go configured by hand.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On the NAT lab (port-restricted <-> full-cone by default, --pair A:B),
prints:

- the time from starting host A's `nat-tool vpn up B-ADDRESS` to the first
  ping of B's virtual IP answered (A registers at natkit-server, brings up
  wireguard-go, connects to B, both exchange keys, WireGuard handshakes);
- TCP throughput through the tunnel over the direct path (--mb MB, A → B,
  median of --runs), and in the same run through wireguard-go configured
  by hand (`wg set` with static endpoints: the routers' public addresses,
  persistent keepalive) between the same two hosts and the same NATs: the
  ratio natkit / by hand (DESIGN goal ≥ 0.9);
- with --relay (default on), the same tunnel throughput through
  natkit-server's relay (symmetric <-> udp-blocked: B's side relays over
  TLS, A's over UDP).

Needs root, wireguard-go and wg. Prints figures; asserts nothing.

Usage: bench_wireguard.py [--mb N] [--runs N] [--pair A:B] [--no-relay]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
from test_lab_relay import start_server, stop  # noqa: E402
from test_lab_wireguard import PING, transfer, vpn_up, write_script  # noqa: E402

FIRST_PING = r"""
import os, socket, struct, sys, time
# ICMP echo every 20 ms until one is answered; prints the seconds since
# the start given (CLOCK_MONOTONIC, shared across namespaces)
dst, start, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.02)
ident = os.getpid() & 0xffff

def csum(b):
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff

seq = 0
while time.monotonic() - start < limit:
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + b"natkit!!"
    try:
        s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr), ident, seq) + b"natkit!!", (dst, 0))
    except OSError:
        pass
    end = time.monotonic() + 0.02
    while time.monotonic() < end:
        try:
            data, addr = s.recvfrom(2048)
        except (socket.timeout, OSError):
            break
        ihl = (data[0] & 15) * 4
        t, _, _, i, q = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if t == 0 and i == ident and addr[0] == dst:
            print("%.3f" % (time.monotonic() - start), flush=True)
            sys.exit(0)
    seq = (seq + 1) & 0xffff
sys.exit(1)
"""


def by_hand_up(lab, tmp):
    """wireguard-go on both hosts, configured with wg: static endpoints on
    the routers' public addresses. Returns the interfaces and processes."""
    tag = "%x" % (os.getpid() & 0xffff)
    names = {"a": "nkma" + tag, "b": "nkmb" + tag}
    ips = {"a": "10.99.0.1", "b": "10.99.0.2"}
    keys = {}
    procs = []
    for side in "ab":
        private = subprocess.run(["wg", "genkey"], stdout=subprocess.PIPE, text=True).stdout.strip()
        public = subprocess.run(["wg", "pubkey"], input=private, stdout=subprocess.PIPE,
                                text=True).stdout.strip()
        path = os.path.join(tmp, "wg-" + side + ".key")
        with open(path, "w") as f:
            f.write(private + "\n")
        os.chmod(path, 0o600)
        keys[side] = (path, public)
        ns = "host_" + side
        procs.append(lab.popen(ns, "exec env WG_PROCESS_FOREGROUND=1 wireguard-go -f %s"
                               % names[side], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL))
    for side in "ab":
        sock = "/var/run/wireguard/%s.sock" % names[side]
        deadline = time.monotonic() + 5
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.02)
    for side, other in (("a", "b"), ("b", "a")):
        ns = "host_" + side
        lab.run(ns, ["wg", "set", names[side], "private-key", keys[side][0], "listen-port",
                     "51820", "peer", keys[other][1], "endpoint",
                     "%s:51820" % lab.site(other).public_ip, "allowed-ips",
                     ips[other] + "/32", "persistent-keepalive", "1"], check=True)
        lab.run(ns, ["ip", "address", "add", ips[side] + "/24", "dev", names[side]], check=True)
        lab.run(ns, ["ip", "link", "set", names[side], "up"], check=True)
    return names, ips, procs


def by_hand_down(lab, names, procs):
    for p in procs:
        # the wrapper's child is wireguard-go itself (exec)
        stop(p)
    for side, name in names.items():
        lab.run("host_" + side, ["ip", "link", "del", name])
        try:
            os.unlink("/var/run/wireguard/%s.sock" % name)
        except OSError:
            pass


def natkit_up(lab, tmp, label):
    """B's and A's `nat-tool vpn up`; returns (a, b, up_b, seconds to the
    first ping answered)."""
    tag = "%x" % (os.getpid() & 0xffff)
    b, bev = vpn_up(lab, tmp, "host_b", "b-" + label, "nkb" + label[:3] + tag)
    up_b = bev.wait("up", 20)
    if not up_b:
        raise RuntimeError("B's vpn did not come up: %r" % bev.text)
    pinger = write_script(tmp, "first-ping.py", FIRST_PING)
    t0 = time.monotonic()
    a, aev = vpn_up(lab, tmp, "host_a", "a-" + label, "nka" + label[:3] + tag,
                    [up_b["peer_address"]])
    r = lab.run("host_a", ["/usr/bin/python3", pinger, up_b["address"], str(t0), "60"],
                timeout=90)
    first = float(r.stdout.strip()) if r.returncode == 0 else None
    peer = aev.wait("peer-up", 5) or {}
    return a, b, up_b, first, peer.get("method")


def throughput(lab, tmp, dst_ip, size, runs):
    rates = []
    for _ in range(runs):
        ok, secs, diag = transfer(lab, tmp, "host_a", "host_b", dst_ip, size, timeout=300)
        if ok and secs > 0:
            rates.append(size / 1e6 / secs)
        else:
            print("#   a transfer failed: %s" % diag[:300])
    return rates


def fmt(rates):
    if not rates:
        return "failed"
    return "%.1f MB/s (median of %d: %s)" % (statistics.median(rates), len(rates),
                                            ", ".join("%.1f" % r for r in rates))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mb", type=int, default=50)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--pair", default="port-restricted:full-cone")
    p.add_argument("--no-relay", action="store_true")
    args = p.parse_args()
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        print("skipped: %s" % e)
        return
    size = args.mb << 20
    nat_a, nat_b = args.pair.split(":")
    tmp = tempfile.mkdtemp(prefix="nkbench-wg-")
    _ = PING
    try:
        with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
            server, ready = start_server(lab, tmp)
            a, b, up_b, first, method = natkit_up(lab, tmp, "direct")
            print("%s <-> %s: natkit vpn via %s; vpn up → first ping answered: %s" % (
                nat_a, nat_b, method, "%.2f s" % first if first is not None else "never"))
            names, ips, procs = by_hand_up(lab, tmp)
            # the hand-made tunnel's first handshake (keepalive 1 s)
            pinger = write_script(tmp, "first-ping.py", FIRST_PING)
            r = lab.run("host_a", ["/usr/bin/python3", pinger, ips["b"], str(time.monotonic()),
                                   "30"], timeout=60)
            print("wireguard-go by hand: first ping after %s" % (r.stdout.strip() or "never"))
            natkit_rates, hand_rates = [], []
            for _ in range(args.runs):
                # interleaved, so that both see the same noise
                natkit_rates += throughput(lab, tmp, up_b["address"], size, 1)
                hand_rates += throughput(lab, tmp, ips["b"], size, 1)
            print("TCP %d MB A → B, direct path:" % args.mb)
            print("  natkit vpn (wireguard-go over the natkit connection): %s" % fmt(natkit_rates))
            print("  wireguard-go by hand (static endpoints):             %s" % fmt(hand_rates))
            if natkit_rates and hand_rates:
                print("  ratio natkit / by hand: %.2f (goal ≥ 0.9)" % (
                    statistics.median(natkit_rates) / statistics.median(hand_rates)))
            by_hand_down(lab, names, procs)
            stop(a)
            stop(b)
            stop(server)
        if not args.no_relay:
            with Lab(site_a="symmetric", site_b="udp-blocked", turn=False) as lab:
                server, ready = start_server(lab, tmp)
                a, b, up_b, first, method = natkit_up(lab, tmp, "relay")
                print("symmetric <-> udp-blocked: natkit vpn via %s; vpn up → first ping "
                      "answered: %s" % (method, "%.2f s" % first if first is not None
                                        else "never"))
                rates = throughput(lab, tmp, up_b["address"], size, args.runs)
                print("TCP %d MB A → B through natkit-server's relay (TLS on B's side): %s"
                      % (args.mb, fmt(rates)))
                stop(a)
                stop(b)
                stop(server)
    finally:
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
