#!/usr/bin/python3
# natkit lab test: `nat-tool vpn`, WireGuard (wireguard-go) over natkit
# connections.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit-server runs in the lab's internet. Host B runs `nat-tool vpn up`,
host A `nat-tool vpn up B-ADDRESS`; each brings up a WireGuard interface
(wireguard-go, driven over its UAPI socket) with a virtual IP from its peer
ID in 100.66.0.0/16, and the tunnel runs over the natkit connection
between them.

- port-restricted <-> full-cone: the connection is direct (holepunch). A
  pings B's virtual IP; a 20 MB TCP transfer from A to B over the virtual
  IPs arrives byte-identical although the direct path is cut in the middle
  of it (the connection moves to the relay under the tunnel: no new
  WireGuard handshake is needed, the inner TCP recovers what was lost).
- symmetric <-> udp-blocked: only natkit-server's relay (TLS on A's side)
  connects them. Ping and a 20 MB transfer, byte-identical.
- each node's WireGuard key is in its state folder, mode 0600, and is the
  key `wg pubkey` derives; `nat-tool vpn status --json` shows the peer.
- SIGTERM: both exit 0; afterwards no interface, no route to the virtual
  network, no wireguard-go process, no UAPI socket is left.
- bad input: wireguard-go missing (NATKIT_WIREGUARD_GO pointing nowhere), /dev/net/tun
  missing (hidden by a tmpfs in a mount namespace of its own),
  an interface name that is taken: a clear error, exit 1, nothing left.

- B's nat-tool killed with SIGKILL: its wireguard-go stops with it (no
  interface left); A reports peer-down, connects again once B is back and
  pings it (A's timers: keepalive 2 s, connect-timeout 3 s, so that the
  lost connection fails within about 10 s).
- addresses are claimed at natkit-server: with B's first address held by
  another peer there, B takes its next candidate.
- a peer (a PyGObject script on the typelib) that connects to B and offers
  a WireGuard key under another peer ID than its secure session proved is
  refused: B reports peer-failed naming both IDs, closes the connection,
  and has no peer (the parser is also unit-tested, tests/unit/
  test-network.c, and fuzzed).

Needs root and wireguard-go; skips (exit 77, or NATLAB_SKIP_EXIT)
otherwise."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natlab import Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402
from test_lab_relay import (Events, NAT_TOOL, PORT, SERVER, peer_env,  # noqa: E402
                            start_server, stop)
from test_lab_direct import block_direct  # noqa: E402

SIZE = int(os.environ.get("NATKIT_LAB_WG_MB", "20")) << 20
WG_GO = shutil.which("wireguard-go")
UAPI_DIR = "/var/run/wireguard"


def vpn_up(lab, tmp, ns, name, interface, peers=(), extra_env="", wrapper=""):
    """nat-tool vpn up on @ns; @wrapper: a command it runs under (exec)."""
    env = peer_env(tmp, name)
    log = open(os.path.join(tmp, name + ".log"), "ab")
    proc = lab.popen(ns, "exec %s env %s %s G_MESSAGES_DEBUG=%s %s vpn up --json --server %s:%d "
                     "--interface %s %s" % (
                         wrapper, env, extra_env, os.environ.get("NATLAB_DEBUG", ""), NAT_TOOL,
                         lab.server_ips[0], PORT, interface, " ".join(peers)),
                     stdout=subprocess.PIPE, stderr=log)
    return proc, Events(proc, proc.stdout)


def log_tail(tmp, name, n=2000):
    try:
        return open(os.path.join(tmp, name + ".log"), "rb").read()[-n:].decode(errors="replace")
    except OSError:
        return ""


PING = r"""
import os, socket, struct, sys, time
# ICMP echo (the lab hosts have no ping): COUNT requests, exit 0 if one is answered
dst, count = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(1.0)
ident = os.getpid() & 0xffff

def csum(b):
    if len(b) % 2:
        b += b"\0"
    t = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    t = (t >> 16) + (t & 0xffff)
    t += t >> 16
    return ~t & 0xffff

answered = 0
t0 = time.monotonic()
for seq in range(count):
    payload = b"natkit" * 8
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + payload), ident, seq) + payload
    sent = time.monotonic()
    s.sendto(pkt, (dst, 0))
    end = sent + 2.0
    while time.monotonic() < end:
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            continue
        ihl = (data[0] & 15) * 4
        t, _, _, i, q = struct.unpack("!BBHHH", data[ihl:ihl + 8])
        if t == 0 and i == ident and q == seq and addr[0] == dst:
            answered += 1
            print("reply from %s seq %d in %.1f ms, %.3f s after start" % (
                dst, seq, (time.monotonic() - sent) * 1000, time.monotonic() - t0), flush=True)
            break
    time.sleep(0.2)
sys.exit(0 if answered else 1)
"""


def ping(lab, tmp, ns, dst, count=3):
    return lab.run(ns, ["/usr/bin/python3", write_script(tmp, "ping.py", PING), dst,
                        str(count)], timeout=30)


RECEIVER = r"""
import hashlib, socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(float(sys.argv[3]))
c, _ = s.accept()
c.settimeout(float(sys.argv[3]))
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
print(n, h.hexdigest(), flush=True)
"""

SENDER = r"""
import hashlib, socket, sys, time
size, rate = int(sys.argv[3]), float(sys.argv[4])
block = hashlib.sha256(b"natkit-wireguard").digest() * 2048
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.settimeout(120)
h = hashlib.sha256()
sent, t0 = 0, time.monotonic()
i = 0
while sent < size:
    chunk = bytes([(b + i) & 0xff for b in block[:min(size - sent, len(block))]]) if i % 5 == 0 \
        else block[:min(size - sent, len(block))]
    s.sendall(chunk)
    h.update(chunk)
    sent += len(chunk)
    i += 1
    if rate > 0:
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(sent, h.hexdigest(), "%.3f" % (time.monotonic() - t0), flush=True)
"""


def write_script(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def transfer(lab, tmp, src_ns, dst_ns, dst_ip, size, rate=0.0, during=None, timeout=90):
    """A TCP transfer of @size bytes from @src_ns to @dst_ip:5001 (in
    @dst_ns); @during(elapsed) is called while it runs. Returns (ok, sent
    digest, received digest, seconds, diag)."""
    recv = lab.popen(dst_ns, ["/usr/bin/python3", write_script(tmp, "recv.py", RECEIVER),
                              dst_ip, "5001", str(timeout)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    send = lab.popen(src_ns, ["/usr/bin/python3", write_script(tmp, "send.py", SENDER),
                              dst_ip, "5001", str(size), str(rate)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    fired = False
    while send.poll() is None and time.monotonic() - t0 < timeout:
        if during and not fired:
            fired = during(time.monotonic() - t0)
        time.sleep(0.05)
    if send.poll() is None:
        send.kill()
    if recv.poll() is None:
        try:
            recv.wait(10)
        except subprocess.TimeoutExpired:
            recv.kill()
    sout, serr = send.communicate()
    rout, rerr = recv.communicate()
    s = sout.split()
    r = rout.split()
    ok = len(s) == 3 and len(r) == 2 and s[0] == r[0] == str(size) and s[1] == r[1]
    secs = float(s[2]) if len(s) == 3 else -1
    return ok, secs, "sender %r %r; receiver %r %r" % (sout, serr[-500:], rout, rerr[-500:])


def leftovers(lab, interfaces, namespaces=("host_a", "host_b")):
    """What a node left behind: interfaces, routes, processes, sockets."""
    found = []
    for ns in namespaces:
        links = lab.run(ns, ["ip", "-o", "link", "show"]).stdout
        routes = lab.run(ns, ["ip", "route", "show"]).stdout
        for name in interfaces:
            if name + ":" in links or name + "@" in links:
                found.append("interface %s in %s" % (name, ns))
        if "100.66." in routes:
            found.append("route in %s: %s" % (ns, routes.strip()))
    ps = subprocess.run(["ps", "-eo", "pid,args"], stdout=subprocess.PIPE, text=True).stdout
    for name in interfaces:
        for line in ps.splitlines():
            if "wireguard-go" in line and line.rstrip().endswith(" " + name):
                found.append("process: " + line.strip())
        sock = os.path.join(UAPI_DIR, name + ".sock")
        if os.path.exists(sock):
            found.append("socket " + sock)
    return found


def check_keys(tap, tmp, name, up):
    key_file = os.path.join(tmp, name, "state", "natkit", "wireguard.key")
    try:
        mode = os.stat(key_file).st_mode & 0o777
        private = open(key_file, "rb").read()
    except OSError as e:
        tap.ok(False, "%s: its WireGuard key is in the state folder" % name, diag=str(e))
        return
    pub = subprocess.run(["wg", "pubkey"], input=private, stdout=subprocess.PIPE).stdout.strip()
    tap.ok(mode == 0o600 and pub.decode() == up.get("public_key"),
           "%s: WireGuard key in the state folder, mode %o, public key matches `wg pubkey`"
           % (name, mode), diag="wg pubkey %r, announced %r" % (pub, up.get("public_key")))


def check_pair(tap, tmp, nat_a, nat_b, expect, cut):
    label = "%s <-> %s" % (nat_a, nat_b)
    tag = "%x" % (os.getpid() & 0xffff)
    if_a, if_b = "nkwa%s%s" % (tag, nat_a[0]), "nkwb%s%s" % (tag, nat_b[0])
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        b, bev = vpn_up(lab, tmp, "host_b", "b-" + nat_b, if_b)
        up_b = bev.wait("up", 20)
        if not tap.ok(ready and up_b and up_b.get("interface") == if_b,
                      "%s: B's network is up: %s" % (label, up_b),
                      diag=log_tail(tmp, "b-" + nat_b)):
            stop(b)
            stop(server)
            return
        a, aev = vpn_up(lab, tmp, "host_a", "a-" + nat_a, if_a, [up_b["peer_address"]])
        up_a = aev.wait("up", 20) or {}
        peer_a = aev.wait("peer-up", 40) or {}
        peer_b = bev.wait("peer-up", 10) or {}
        tap.ok(peer_a.get("address") == up_b["address"] and
               peer_b.get("address") == up_a.get("address") and
               peer_a.get("method") == expect,
               "%s: peers up, A sees B at %s, B sees A at %s, via %s" % (
                   label, peer_a.get("address"), peer_b.get("address"), peer_a.get("method")),
               diag="A %r\nB %r\n%s" % (aev.events, bev.events, log_tail(tmp, "a-" + nat_a)))
        if cut:
            check_keys(tap, tmp, "a-" + nat_a, up_a)
            check_keys(tap, tmp, "b-" + nat_b, up_b)
        answer = ping(lab, tmp, "host_a", up_b["address"])
        tap.ok(answer.returncode == 0, "%s: A pings B's virtual IP %s" % (label, up_b["address"]),
               diag=answer.stdout + answer.stderr)
        answer = ping(lab, tmp, "host_b", up_a.get("address", "?"), 1)
        tap.ok(answer.returncode == 0, "%s: B pings A's virtual IP" % label,
               diag=answer.stdout + answer.stderr)

        status = lab.run("host_a", "env %s %s vpn status --json" % (
            peer_env(tmp, "a-" + nat_a), NAT_TOOL))
        try:
            nets = json.loads(status.stdout)["networks"]
        except (ValueError, KeyError):
            nets = []
        tap.ok(len(nets) == 1 and nets[0].get("interface") == if_a and
               [p.get("address") for p in nets[0].get("peers", [])] == [up_b["address"]],
               "%s: vpn status shows %s with peer %s" % (label, if_a, up_b["address"]),
               diag=status.stdout + status.stderr)

        cut_at = [None]

        def do_cut(elapsed):
            if elapsed < 2.5:
                return False
            for proto in ("udp", "tcp"):
                block_direct(lab, "a", lab.site("b").public_ip, proto=proto)
                block_direct(lab, "b", lab.site("a").public_ip, proto=proto)
            cut_at[0] = elapsed
            return True

        # paced so that the cut lands in the middle (about 7 s in all)
        if os.environ.get("NATKIT_LAB_WG_NOCUT"):
            cut = False
        ok, secs, diag = transfer(lab, tmp, "host_a", "host_b", up_b["address"], SIZE,
                                  rate=SIZE / 7.0 if cut else 0.0,
                                  during=do_cut if cut else None)
        what = "%d MB TCP transfer A → B through the tunnel" % (SIZE >> 20)
        if cut:
            what += ", the direct path cut %.1f s in," % (cut_at[0] or -1)
        tap.ok(ok, "%s: %s arrives byte-identical (%.1f s, %.1f MB/s)" % (
            label, what, secs, SIZE / 1e6 / max(secs, 1e-3)),
            diag=diag + "\n" + log_tail(tmp, "a-" + nat_a))
        # the counters (read every 5 s) in vpn status on B
        got = {}
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            status = lab.run("host_b", "env %s %s vpn status --json" % (
                peer_env(tmp, "b-" + nat_b), NAT_TOOL))
            try:
                got = json.loads(status.stdout)["networks"][0]["peers"][0]
            except (ValueError, KeyError, IndexError):
                got = {}
            if got.get("bytes_received", 0) >= SIZE:
                break
            time.sleep(1)
        tap.ok(got.get("bytes_received", 0) >= SIZE and got.get("last_handshake", 0) > 0 and
               got.get("method") in ("holepunch", "relay"),
               "%s: vpn status on B: %s received from A, last handshake %s, via %s" % (
                   label, got.get("bytes_received"), got.get("last_handshake"),
                   got.get("method")), diag=repr(got))
        if cut:
            moved = aev.wait("path-changed", 5) or {}
            tap.ok(cut_at[0] is not None and moved.get("method") == "relay",
                   "%s: the tunnel moved to %s after the cut" % (label, moved.get("method")),
                   diag=repr(aev.events))

        rc_a, rc_b = stop(a), stop(b)
        aev.poll(0.5)
        bev.poll(0.5)
        tap.ok(rc_a == 0 and rc_b == 0 and aev.wait("down", 1) and bev.wait("down", 1),
               "%s: both exit 0 on SIGTERM and say so (down)" % label,
               diag="rc %s %s\n%s\n%s" % (rc_a, rc_b, log_tail(tmp, "a-" + nat_a),
                                          log_tail(tmp, "b-" + nat_b)))
        left = leftovers(lab, [if_a, if_b])
        tap.ok(not left, "%s: nothing left behind (interfaces, routes, wireguard-go, sockets)"
               % label, diag="\n".join(left))
        stop(server)


IMPOSTOR = r"""
import sys
import gi
gi.require_version("Natkit", "1")
from gi.repository import GLib, Natkit
# connects to argv[1] and offers a WireGuard key under the peer ID argv[2]
manager = Natkit.Manager.new()
loop = GLib.MainLoop()
out = {}

def connected(m, res):
    try:
        out["c"] = m.connect_finish(res)
    except GLib.Error as e:
        print("connect failed:", e.message, flush=True)
    loop.quit()

manager.connect_async(sys.argv[1], None, Natkit.ConnectFlags.NONE, None, connected)
loop.run()
c = out.get("c")
if c is None:
    sys.exit(2)
hello = ('{"wireguard":1,"peer_id":"%s","public_key":"cO0cl0Temp/1A4B/xH2umGjGubGPu0hRxmKLyFXTHjE=",'
         '"address":"100.66.7.7"}\n' % sys.argv[2]).encode()
stream = c.get_stream()
stream.get_output_stream().write_all(hello, None)
# wait for the connection to be closed by the peer (or 10 s)
def state(conn, pspec):
    if conn.get_state() in (Natkit.ConnectionState.CLOSED, Natkit.ConnectionState.FAILED):
        loop.quit()
c.connect("notify::state", state)
GLib.timeout_add_seconds(10, loop.quit)
loop.run()
print("state", c.get_state().value_nick, flush=True)
"""


SQUATTER = r"""
import sys
import gi
gi.require_version("Natkit", "1")
from gi.repository import GLib, Natkit
# registers at argv[1] and claims address argv[3] in network argv[2], then
# waits (until killed)
ident = Natkit.Identity.new_ephemeral()
rv = Natkit.Rendezvous.new(ident, sys.argv[1])
loop = GLib.MainLoop()

def registered(r, res):
    r.connect_finish(res)
    r.claim_address_async(sys.argv[2], sys.argv[3], None, claimed)

def claimed(r, res):
    ok, holder = r.claim_address_finish(res)
    print("granted" if ok else "taken by %s" % holder, flush=True)

rv.connect_async(None, registered)
loop.run()
"""


def candidate(peer_id, n, network=0x64420000, prefix=16):
    """NatkitNetwork's n-th address candidate (docs/protocol.md 9)."""
    data = peer_id.encode() + (("#%d" % n).encode() if n else b"")
    value = int.from_bytes(hashlib.sha256(data).digest()[:4], "big")
    host = network + 1 + value % ((1 << (32 - prefix)) - 2)
    return ".".join(str((host >> s) & 255) for s in (24, 16, 8, 0))


def check_collision(tap, tmp):
    """Another peer holds this node's first address at natkit-server: it
    takes the next one."""
    build = os.path.dirname(os.path.dirname(NAT_TOOL))
    env = "GI_TYPELIB_PATH=%s/framework LD_LIBRARY_PATH=%s/framework" % (build, build)
    tag = "%x" % (os.getpid() & 0xffff)
    with Lab(site_a="none", site_b="none", turn=False) as lab:
        server, ready = start_server(lab, tmp)
        ident = lab.run("host_b", "env %s %s id --json" % (peer_env(tmp, "b-col"), NAT_TOOL))
        peer_id = json.loads(ident.stdout)["peer_id"]
        first, second = candidate(peer_id, 0), candidate(peer_id, 1)
        squatter = lab.popen("host_a", "exec env %s %s /usr/bin/python3 %s %s:%d 100.66.0.0/16 %s"
                             % (peer_env(tmp, "a-col"), env,
                                write_script(tmp, "squatter.py", SQUATTER),
                                lab.server_ips[0], PORT, first),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = squatter.stdout.readline().strip()
        b, bev = vpn_up(lab, tmp, "host_b", "b-col", "nkwc" + tag)
        up_b = bev.wait("up", 20) or {}
        tap.ok(line == "granted" and up_b.get("address") == second,
               "collision: with %s held by another peer at natkit-server, B takes the next "
               "candidate %s (got %s)" % (first, second, up_b.get("address")),
               diag="squatter %r; %s" % (line, log_tail(tmp, "b-col")))
        stop(b)
        squatter.kill()
        squatter.wait()
        stop(server)


def check_reconnect(tap, tmp):
    """B's nat-tool killed (SIGKILL): its wireguard-go stops with it and
    removes the interface; A reports peer-down, connects again when B is
    back (with the same identity), and the tunnel works again."""
    tag = "%x" % (os.getpid() & 0xffff)
    if_a, if_b = "nkra" + tag, "nkrb" + tag
    with Lab(site_a="none", site_b="none", turn=False) as lab:
        server, ready = start_server(lab, tmp)
        peer_env(tmp, "a-rc")
        with open(os.path.join(tmp, "a-rc", "config", "natkit", "config.json")
                  if os.path.isdir(os.path.join(tmp, "a-rc", "config", "natkit"))
                  else _mkconfig(tmp, "a-rc"), "w") as f:
            # an idle path probed every 2 s instead of 25, a lost connection
            # failed after 2 x 3 s instead of 2 x 30 s
            json.dump({"timers": {"keepalive": 2, "connect-timeout": 3}}, f)
        b, bev = vpn_up(lab, tmp, "host_b", "b-rc", if_b)
        up_b = bev.wait("up", 20) or {}
        a, aev = vpn_up(lab, tmp, "host_a", "a-rc", if_a, [up_b.get("peer_address", "?")])
        first = aev.wait("peer-up", 30)
        if not tap.ok(first is not None and bev.wait("peer-up", 10),
                      "reconnect: A and B are peers", diag=log_tail(tmp, "a-rc")):
            stop(a)
            stop(b)
            stop(server)
            return
        b.kill()
        b.wait()
        time.sleep(1.5)
        left = leftovers(lab, [if_b], namespaces=("host_b",))
        tap.ok(not left, "reconnect: B's nat-tool killed with SIGKILL: its wireguard-go stopped "
               "with it, nothing left behind", diag="\n".join(left))
        b2, bev2 = vpn_up(lab, tmp, "host_b", "b-rc", if_b)
        up_b2 = bev2.wait("up", 20) or {}
        down = aev.wait("peer-down", 30)
        again = aev.wait("peer-up", 30, after=aev.events.index(down) + 1 if down else 0)
        answer = ping(lab, tmp, "host_a", up_b2.get("address", "?"))
        tap.ok(down is not None and again is not None and up_b2.get("address") == up_b.get("address")
               and answer.returncode == 0,
               "reconnect: A saw peer-down (%s), connected again (via %s), pings B at %s" % (
                   (down or {}).get("reason"), (again or {}).get("method"), up_b2.get("address")),
               diag="A %r\n%s" % (aev.events, log_tail(tmp, "a-rc")))
        tap.ok(stop(a) == 0 and stop(b2) == 0 and not leftovers(lab, [if_a, if_b]),
               "reconnect: both exit 0, nothing left behind")
        stop(server)


def _mkconfig(tmp, name):
    path = os.path.join(tmp, name, "config", "natkit")
    os.makedirs(path, exist_ok=True)
    return os.path.join(path, "config.json")


def check_impostor(tap, tmp):
    """A key offered under another peer ID is refused."""
    build = os.path.dirname(os.path.dirname(NAT_TOOL))
    env = "GI_TYPELIB_PATH=%s/framework LD_LIBRARY_PATH=%s/framework" % (build, build)
    tag = "%x" % (os.getpid() & 0xffff)
    with Lab(site_a="none", site_b="none", turn=False) as lab:
        server, ready = start_server(lab, tmp)
        b, bev = vpn_up(lab, tmp, "host_b", "b-imp", "nkwi" + tag)
        up_b = bev.wait("up", 20)
        if not tap.ok(up_b is not None, "impostor: B's network is up",
                      diag=log_tail(tmp, "b-imp")):
            stop(b)
            stop(server)
            return
        claimed = "EGVrsYzsHkrVRDXWuqs8RS4RjKxi8rDfuLV4XedmX9xp"
        script = write_script(tmp, "impostor.py", IMPOSTOR)
        r = lab.run("host_a", "env %s %s /usr/bin/python3 %s %s %s" % (
            peer_env(tmp, "a-imp"), env, script, up_b["peer_address"], claimed), timeout=60)
        failed = bev.wait("peer-failed", 10) or {}
        status = lab.run("host_b", "env %s %s vpn status --json" % (
            peer_env(tmp, "b-imp"), NAT_TOOL))
        try:
            peers = json.loads(status.stdout)["networks"][0]["peers"]
        except (ValueError, KeyError, IndexError):
            peers = None
        tap.ok("refused a WireGuard key" in failed.get("reason", "") and
               claimed[:8] in failed.get("reason", "") and peers == [] and
               "state closed" in r.stdout and not bev.wait("peer-up", 0),
               "impostor: a key offered under another peer ID is refused: %s"
               % failed.get("reason"),
               diag="impostor: %r %r\nB: %r\nstatus %r" % (r.stdout, r.stderr[-1500:],
                                                           bev.events, status.stdout))
        tap.ok(stop(b) == 0, "impostor: B exits 0")
        stop(server)


def check_bad_input(tap, tmp):
    tag = "%x" % (os.getpid() & 0xffff)
    with Lab(site_a="none", site_b="none", turn=False) as lab:
        server, ready = start_server(lab, tmp)
        # wireguard-go missing
        name = "nkwx" + tag
        p, ev = vpn_up(lab, tmp, "host_a", "a-bad", name,
                       extra_env="NATKIT_WIREGUARD_GO=/nonexistent/wireguard-go")
        rc = p.wait(30)
        err = log_tail(tmp, "a-bad")
        tap.ok(rc == 1 and "wireguard-go was not found" in err and
               "install the wireguard-go package" in err and not leftovers(lab, [name]),
               "wireguard-go missing: exit %s, “%s”" % (rc, err.strip().splitlines()[-1:]),
               diag=err)
        # wireguard-go that dies at once
        fake = write_script(tmp, "dying-wg", "#!/bin/sh\necho 'cannot create TUN device' >&2\n"
                                             "exit 3\n")
        os.chmod(fake, 0o755)
        p, ev = vpn_up(lab, tmp, "host_a", "a-bad2", name, extra_env="NATKIT_WIREGUARD_GO=" + fake)
        rc = p.wait(30)
        err = log_tail(tmp, "a-bad2")
        tap.ok(rc == 1 and "wireguard-go stopped before" in err and "cannot create TUN" in err
               and not leftovers(lab, [name]),
               "wireguard-go dying: exit %s, “%s”" % (rc, err.strip().splitlines()[-1:]),
               diag=err)
        # no /dev/net/tun: in a mount namespace of its own, an empty tmpfs
        # hides /dev/net
        hide = write_script(tmp, "no-tun", "#!/bin/sh\nmount -t tmpfs none /dev/net || exit 9\n"
                                           "exec \"$@\"\n")
        os.chmod(hide, 0o755)
        p, ev = vpn_up(lab, tmp, "host_a", "a-notun", name, wrapper="unshare -m " + hide)
        rc = p.wait(30)
        err = log_tail(tmp, "a-notun")
        tap.ok(rc == 1 and "/dev/net/tun is unavailable" in err and "modprobe tun" in err
               and not leftovers(lab, [name]),
               "/dev/net/tun missing: exit %s, “%s”" % (rc, err.strip().splitlines()[-1:]),
               diag=err)
        # the interface name is taken
        lab.run("host_a", ["ip", "tuntap", "add", name, "mode", "tun"], check=True)
        p, ev = vpn_up(lab, tmp, "host_a", "a-bad3", name)
        rc = p.wait(30)
        err = log_tail(tmp, "a-bad3")
        lab.run("host_a", ["ip", "link", "del", name])
        tap.ok(rc == 1 and "already exists" in err and not leftovers(lab, [name]),
               "interface name taken: exit %s, “%s”" % (rc, err.strip().splitlines()[-1:]),
               diag=err)
        # the address is taken by another interface
        lab.run("host_a", ["ip", "tuntap", "add", "nkwd" + tag, "mode", "tun"], check=True)
        env = peer_env(tmp, "a-bad4")
        ident = lab.run("host_a", "env %s %s id --json" % (env, NAT_TOOL)).stdout
        p, ev = vpn_up(lab, tmp, "host_a", "a-bad4", name)
        up = ev.wait("up", 20)
        if up:
            stop(p)
            lab.run("host_a", ["ip", "addr", "add", up["address"] + "/32", "dev", "nkwd" + tag])
            p, ev = vpn_up(lab, tmp, "host_a", "a-bad4", name)
            rc = p.wait(30)
            err = log_tail(tmp, "a-bad4", 400)
        else:
            rc, err = None, log_tail(tmp, "a-bad4") + ident
        lab.run("host_a", ["ip", "link", "del", "nkwd" + tag])
        tap.ok(rc == 1 and "already in use" in err and not leftovers(lab, [name]),
               "address in use: exit %s, “%s”" % (rc, err.strip().splitlines()[-1:]),
               diag=err)
        # wireguard-go killed while the network runs
        p, ev = vpn_up(lab, tmp, "host_a", "a-bad5", name)
        up = ev.wait("up", 20)
        ps = subprocess.run(["ps", "-eo", "pid,args"], stdout=subprocess.PIPE, text=True).stdout
        pids = [int(line.split()[0]) for line in ps.splitlines()
                if "wireguard-go" in line and line.rstrip().endswith(" " + name)]
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        try:
            rc = p.wait(20)
        except subprocess.TimeoutExpired:
            rc = stop(p)
        ev.poll(0.5)
        failed = ev.wait("failed", 1) or {}
        tap.ok(up and pids and rc == 1 and "killed by signal 9" in failed.get("reason", "")
               and not leftovers(lab, [name]),
               "wireguard-go killed: exit %s, event %s, nothing left" % (rc, failed),
               diag=log_tail(tmp, "a-bad5") + "\n".join(leftovers(lab, [name])))
        stop(server)


def main():
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        skip_all(str(e))
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            skip_all("%s is not built" % prog)
    if not WG_GO or not shutil.which("wg"):
        skip_all("wireguard-go and wg (wireguard-tools) are needed")
    if not os.path.exists("/dev/net/tun"):
        skip_all("/dev/net/tun is unavailable")
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="nklab-wg-")
    try:
        only = os.environ.get("NATKIT_LAB_ONLY", "")
        if not only or "direct" in only:
            check_pair(tap, tmp, "port-restricted", "full-cone", "holepunch", cut=True)
        if not only or "relay" in only:
            check_pair(tap, tmp, "symmetric", "udp-blocked", "relay", cut=False)
        if not only or "bad" in only:
            check_bad_input(tap, tmp)
        if not only or "impostor" in only:
            check_impostor(tap, tmp)
        if not only or "collision" in only:
            check_collision(tap, tmp)
        if not only or "reconnect" in only:
            check_reconnect(tap, tmp)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        if not os.environ.get("NATKIT_LAB_KEEP"):
            subprocess.run(["rm", "-rf", tmp])
        else:
            print("# kept " + tmp)
    tap.done()


if __name__ == "__main__":
    main()
