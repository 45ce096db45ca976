#!/usr/bin/python3
# natkit lab test: direct connections by hole punching, the relay where
# they cannot work.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit-server runs in the lab's internet (rendezvous, STUN and relay).
For every pair of NAT behaviors host B runs `nat-tool listen --exec cat`
and host A `nat-tool connect` with every method allowed: the connection is
direct (holepunch) exactly where RFC 4787's behaviors let a hole punch
through, relayed otherwise, and a 256 KiB echo arrives byte-identical.

The expected table, in RFC 4787 terms (the lab's NATs: none = no NAT and
no filter; full-cone = endpoint-independent mapping (EIM) and filtering
(EIF); restricted = EIM + address-dependent filtering (ADF);
port-restricted = EIM + address-and-port-dependent filtering (APDF);
symmetric = address-and-port-dependent mapping (APDM) + APDF; udp-blocked
= no UDP at all):

- a UDP-blocked side: no direct UDP path, whatever the other does;
- EIM on both sides: each side's STUN address is the one the peer's
  packets reach, and its own outgoing punch opened its filter: direct;
- APDM on one side: its packets to the peer leave from a port nobody
  announced. The other side accepts them if its filter does not care
  about the source port (none, EIF, ADF), then answers to that port:
  direct. With APDF there (port-restricted) the plain punch never gets
  in, but the birthday punch does (docs/protocol.md 7.4): the symmetric
  side opens 256 sockets that all punch the other's public address, the
  port-restricted side probes random ports of the symmetric side's public
  address until one lands on a port one of those sockets got (about 1 -
  e^-8 within 2048 probes over the 64512 ports of fully-random
  masquerading): direct, both orders. The peers learn which side is which
  from the mapping each measured against two STUN servers (natkit-server
  and a second one on the lab's other server address, in the peers'
  config.json), so every pair here runs with both.
- APDM on both sides (symmetric <-> symmetric): no port on either side can
  be known or guessed in time; hole punching fails at once, saying so,
  and the relay carries the connection.

Sequential mapping (a NAT that hands out ports a small step apart, which
the peer then predicts and punches) cannot be tested here: Linux's NAT
either keeps the source port or picks one at random, never the next one.
The prediction is unit-tested in tests/unit/test-holepunch-proto.c with
synthetic port sequences.

For the symmetric <-> port-restricted pairs the test also counts the UDP
sockets each host has open while the connection runs: the birthday
punch's losing sockets are all closed. The connection may start on the
relay (it joins the race 250 ms in) and move to the punched path: that
counts as direct, and the test says which happened. With the birthday
punch cut down to 1 socket and 1 probe, hole punching alone fails and
says what the birthday punch did.

A UDP-blocked side still lets TCP out: TCP simultaneous open
("tcp-holepunch", docs/protocol.md 7.4) gives a direct path where both
NATs map the TCP port the same for every destination. For TCP every lab
NAT but symmetric is `masquerade`, which keeps the source port (EIM),
behind a stateful filter that drops unsolicited SYNs silently (APDF for
TCP: the full-cone and restricted DNAT maps are UDP only; the routers'
WAN input drops, so no RST): each side's SYN creates the conntrack entry
its own NAT lets the peer's SYN in by, and Linux conntrack tracks the
simultaneous open. symmetric is `masquerade fully-random`: its SYN to
the peer leaves from a port nobody announced, which the peer's APDF NAT
drops, and the peer's SYN to the announced port matches nothing. So,
with a UDP-blocked side:

| other side      | TCP (A: UDP-blocked)               | expected      |
|-----------------|------------------------------------|---------------|
| none            | no NAT, no filter: the listener    | tcp-holepunch |
|                 | accepts, or simultaneous open      |               |
| full-cone       | EIM + APDF for TCP                 | tcp-holepunch |
| restricted      | EIM + APDF for TCP                 | tcp-holepunch |
| port-restricted | EIM + APDF for TCP                 | tcp-holepunch |
| symmetric       | APDM vs APDF: the SYNs never meet  | relay         |
| udp-blocked     | EIM + APDF both                    | tcp-holepunch |

Whether the relay (second in the race) or the TCP path connects first
varies; if the relay does, the connection moves to the TCP path while
the echo runs (fed over a few seconds so that it is still running), and
the echo arrives byte-identical either way. For one pair, `--method
tcp-holepunch` alone connects directly.

Then: a third host in the lab's internet captures every punch packet it
sees and replays it from its own address, and sprays forged ones; the
connection is still direct, between A's and B's public addresses. With
B's own packets to A dropped on A's router, the only answers A gets are
the third host's replays: they are refused (an answer must echo the
nonce sent to the address it comes from), hole punching fails with that
reason. Likewise for TCP: A without NAT (its port open to anyone), B's
TCP to A dropped on A's router, a third host connects to both ends of
every SYN it sees and sends forged or reflected hellos; A closes every
such connection and tcp-holepunch fails saying so.

Needs root; skips (exit 77, or NATLAB_SKIP_EXIT) otherwise."""

import json
import os
import select
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natlab import NAT_TYPES, Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402
from test_lab_relay import (NAT_TOOL, PORT, SERVER, Events, connect,  # noqa: E402
                            file_sha, peer_env, start_listener, start_server,
                            stop, write_random)

FILTER_IGNORES_PORT = ("none", "full-cone", "restricted")


def tcp_expected(a, b):
    """Whether only TCP simultaneous open gives a direct path (see above)."""
    return "udp-blocked" in (a, b) and "symmetric" not in (a, b)


FEED = r"""
import os, sys, time
# copies the file SRC to stdout over about SECONDS, in 16 KiB pieces
data = open(sys.argv[1], "rb").read()
seconds = float(sys.argv[2])
n = (len(data) + 16383) // 16384
for i in range(n):
    os.write(1, data[i * 16384:(i + 1) * 16384])
    time.sleep(seconds / n)
"""


def connect_slowly(lab, tmp, ns, name, address, infile, outfile, seconds, timeout=60):
    """nat-tool connect (every method) with @infile fed over @seconds."""
    feed = os.path.join(tmp, "feed.py")
    with open(feed, "w") as f:
        f.write(FEED)
    env = peer_env(tmp, name)
    proc = lab.popen(ns, "exec python3 %s %s %s | env %s %s connect --json %s > %s" % (
        feed, infile, seconds, env, NAT_TOOL, address, outfile),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ev = Events(proc)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ev.poll(0.5)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    ev.poll(0.2)
    return proc.returncode, ev


def direct_expected(a, b):
    """Whether hole punching can connect A and B (see the module text)."""
    if "udp-blocked" in (a, b):
        return False
    if a == "symmetric" and b == "symmetric":
        return False
    if "symmetric" in (a, b):
        other = b if a == "symmetric" else a
        # the plain punch where the filter ignores ports, the birthday
        # punch against port-restricted
        return other in FILTER_IGNORES_PORT or other == "port-restricted"
    return True


ATTACKER = r"""
import os, random, socket, struct, sys, time
# Captures UDP packets that look like natkit punch packets ('N' 'H' 1)
# and sends a copy of each from this host to the same destination; also
# sprays forged ones (random MACs) at every endpoint it saw.
# ETH_P_ALL: the routers' WANs share a bridge here, and bridged frames
# only reach the taps of every protocol
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
cap.settimeout(0.05)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
out.bind((sys.argv[1], 0))
end = time.monotonic() + float(sys.argv[2])
seen = set()
replayed = forged = 0
next_forge = 0
while time.monotonic() < end:
    try:
        frame, where = cap.recvfrom(65536)
        if where[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00":
            frame = None
    except socket.timeout:
        frame = None
    if frame and len(frame) > 14 + 20 + 8:
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        if ip[9] == 17:
            udp = ip[ihl:]
            payload = udp[8:]
            dst = socket.inet_ntoa(ip[16:20])
            dport = struct.unpack("!H", udp[2:4])[0]
            src = socket.inet_ntoa(ip[12:16])
            if payload[:3] == b"NH\x01" and len(payload) == 36 and src != sys.argv[1]:
                try:
                    out.sendto(payload, (dst, dport))
                    seen.add((dst, dport))
                    replayed += 1
                except OSError:
                    pass  # a LAN address the lab's internet has no route to
    if time.monotonic() < next_forge:
        continue
    next_forge = time.monotonic() + 0.01
    for target in list(seen):
        for t in (1, 2, 3):
            pkt = b"NH\x01" + bytes([t]) + os.urandom(32)
            try:
                out.sendto(pkt, target)
                forged += 1
            except OSError:
                pass
open(sys.argv[3], "w").write("%d %d %d\n" % (replayed, forged, len(seen)))
"""


def start_second_stun(lab, tmp):
    """A second natkit-server in the lab's internet, on the other server
    address, used only for its STUN answers: with two STUN destinations
    hole punching learns how each NAT maps (same port, a step apart, or
    random), which the birthday punch needs."""
    proc = lab.popen("inet", "exec %s --json --listen %s:%d --udp-port %d" % (
        SERVER, lab.server_ips[1], PORT, PORT),
        stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "stun2.log"), "ab"))
    line = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            line += chunk
    try:
        ready = json.loads(line)
    except ValueError:
        ready = None
    return proc, ready


def stun_config(tmp, name, lab):
    """config.json of the peer @name (test_lab_relay.peer_env's folders):
    the second STUN server, after natkit-server's own UDP port."""
    folder = os.path.join(tmp, name, "config", "natkit")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"stun": ["%s:%d" % (lab.server_ips[1], PORT)]}, f)


def block_direct(lab, site, source_ip, proto="udp"):
    """Router of @site drops UDP (@proto) from @source_ip before NAT sees
    it; unblock() lifts the UDP block, a TCP one (its own table) stays."""
    router = lab.site(site).router
    table = "nklab_block" if proto == "udp" else "nklab_block_" + proto
    for cmd in (["nft", "add", "table", "ip", table],
                ["nft", "add", "chain", "ip", table, "pre",
                 "{ type filter hook prerouting priority -300 ; }"],
                ["nft", "add", "rule", "ip", table, "pre", "ip", "saddr",
                 source_ip, "meta", "l4proto", proto, "drop"]):
        lab.run(router, cmd, check=True)


def check_pair(tap, tmp, nat_a, nat_b, attacker=False, replay_only=False, method=None):
    label = "%s <-> %s" % (nat_a, nat_b)
    if method:
        label += " (--method %s)" % method
    if attacker:
        label += " with a third host replaying and forging punches"
    if replay_only:
        label += ", B's own packets to A dropped"
    direct = direct_expected(nat_a, nat_b)
    tcp = tcp_expected(nat_a, nat_b)
    if is_birthday_pair(nat_a, nat_b) and not attacker and not replay_only:
        check_birthday_pair(tap, tmp, nat_a, nat_b)
        return
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        stun2, ready2 = start_second_stun(lab, tmp)
        if not tap.ok(ready and ready.get("event") == "ready" and ready2,
                      "%s: natkit-server and the second STUN server are ready" % label,
                      diag=open(os.path.join(tmp, "server.log"), "rb").read()[-2000:]):
            stop(server)
            stop(stun2)
            return
        stun_config(tmp, "b-" + nat_b, lab)
        stun_config(tmp, "a-" + nat_a, lab)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-" + nat_b)
        if not address:
            tap.ok(False, "%s: B listens" % label, diag=lev.text[-2000:])
            stop(listener)
            stop(server)
            stop(stun2)
            return
        if replay_only:
            # only the third host's copies of B's punch packets reach A
            block_direct(lab, "a", lab.site("b").public_ip)
        spy = None
        if attacker:
            script = os.path.join(tmp, "attacker.py")
            with open(script, "w") as f:
                f.write(ATTACKER)
            report = os.path.join(tmp, "attacker.out")
            spy = lab.popen("inet", "exec python3 %s %s 20 %s" % (
                script, lab.server_ips[1], report))
            time.sleep(0.5)
        infile = os.path.join(tmp, "in")
        outfile = os.path.join(tmp, "out")
        digest = write_random(infile, 256 * 1024, label)
        if replay_only:
            # hole punching alone: it must fail, and say the replays were refused
            rc, cev = connect(lab, tmp, "host_a", "a-" + nat_a, address, infile, outfile,
                              timeout=60, method="holepunch")
            failed = cev.wait("connect-failed", 0) or {}
            why = failed.get("reason", "")
            tap.ok(rc != 0 and "were dropped" in why and "did not authenticate" in why,
                   "%s: hole punching fails, the replayed answers refused: %s" % (
                       label, why[-160:]),
                   diag="rc %s, stderr %r" % (rc, cev.text[-3000:]))
        elif tcp and method:
            # that method alone
            rc, cev = connect(lab, tmp, "host_a", "a-" + nat_a, address, infile, outfile,
                              timeout=60, method=method)
            got = cev.wait("connected", 0) or {}
            remote = got.get("remote_address") or ""
            tap.ok(rc == 0 and got.get("method") == method and
                   remote.startswith(lab.site("b").public_ip + ":"),
                   "%s: --method %s connects directly (%s ms, to %s)" % (
                       label, method, got.get("elapsed_ms"), remote),
                   diag="rc %s, stderr %r" % (rc, cev.text[-3000:]))
            same = os.path.exists(outfile) and file_sha(outfile) == digest
            tap.ok(same, "%s: 256 KiB echoed back byte-identical" % label,
                   diag="out %d bytes" % (os.path.getsize(outfile)
                                          if os.path.exists(outfile) else -1))
        elif tcp:
            rc, cev = connect_slowly(lab, tmp, "host_a", "a-" + nat_a, address, infile,
                                     outfile, 6)
            got = cev.wait("connected", 0) or {}
            moves = [e for e in cev.events if e.get("event") == "path-changed"]
            final = moves[-1] if moves else got
            how = got.get("method")
            if moves:
                how += " then " + " then ".join(str(m.get("to")) for m in moves)
            tap.ok(rc == 0 and final.get("to", final.get("method")) == "tcp-holepunch",
                   "%s: connected via %s: TCP simultaneous open where UDP is blocked "
                   "(to %s)" % (label, how, final.get("remote_address")),
                   diag="rc %s, stderr %r" % (rc, cev.text[-3000:]))
            tried = [e.get("method") for e in cev.events if e.get("event") == "attempt"]
            tap.ok("holepunch" in tried and "tcp-holepunch" in tried,
                   "%s: attempt events for %s" % (label, ", ".join(tried)),
                   diag=cev.text[-1500:])
            remote = final.get("remote_address") or ""
            tap.ok(remote.startswith(lab.site("b").public_ip + ":") and "/tcp" in remote,
                   "%s: the TCP path leads to B's public address %s" % (
                       label, lab.site("b").public_ip),
                   diag="remote address %r" % remote)
            same = os.path.exists(outfile) and file_sha(outfile) == digest
            tap.ok(same, "%s: 256 KiB echoed back byte-identical%s" % (
                label, " across the move" if moves else ""),
                   diag="out %d bytes" % (os.path.getsize(outfile)
                                          if os.path.exists(outfile) else -1))
        else:
            rc, cev = connect(lab, tmp, "host_a", "a-" + nat_a, address, infile, outfile,
                              timeout=60, method=None)
            got = cev.wait("connected", 0) or {}
            want = "holepunch" if direct else "relay"
            tap.ok(rc == 0 and got.get("method") == want,
                   "%s: connected via %s, as RFC 4787 says (%s ms, to %s)" % (
                       label, got.get("method"), got.get("elapsed_ms"),
                       got.get("remote_address")),
                   diag="expected %s; rc %s, stderr %r" % (want, rc, cev.text[-3000:]))
            if nat_a == nat_b == "symmetric":
                why = [e.get("reason", "") for e in cev.events
                       if e.get("event") == "attempt-failed" and e.get("method") == "holepunch"]
                tap.ok(any("new random port for every destination" in w for w in why),
                       "%s: hole punching gave up at once, saying why: %s" % (
                           label, (why[0][:140] if why else None)),
                       diag=cev.text[-2000:])
            tried = [e.get("method") for e in cev.events if e.get("event") == "attempt"]
            tap.ok("holepunch" in tried and (direct or "relay" in tried),
                   "%s: attempt events for %s" % (label, ", ".join(tried)),
                   diag=cev.text[-1500:])
            if direct:
                remote = got.get("remote_address") or ""
                tap.ok(remote.startswith(lab.site("b").public_ip + ":"),
                       "%s: the path leads to B's public address %s" % (
                           label, lab.site("b").public_ip),
                       diag="remote address %r" % remote)
            same = os.path.exists(outfile) and file_sha(outfile) == digest
            tap.ok(same, "%s: 256 KiB echoed back byte-identical" % label,
                   diag="out %d bytes" % (os.path.getsize(outfile)
                                          if os.path.exists(outfile) else -1))
        if spy:
            spy.wait(30)
            text = open(report).read().split() if os.path.exists(report) else []
            tap.ok(len(text) == 3 and int(text[0]) > 0 and int(text[1]) > 0,
                   "%s: the third host replayed %s and forged %s punch packets" % (
                       label, text[0] if text else "?", text[1] if text else "?"))
        stop(listener)
        stop(server)
        stop(stun2)


STRAY = r"""
import os, socket, struct, sys, time
# Watches the lab's internet for TCP SYNs and connects to both ends of
# each (but natkit-server's), again and again: to an end that accepts, it sends either a forged
# hello (a valid frame and header, a random MAC) or the hello it received
# there, reflected. Writes "connections forged reflected".
cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3))
cap.settimeout(0.05)
me, seconds, report, server = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
end = time.monotonic() + seconds
ends = {}
connections = forged = reflected = 0
next_round = 0
while time.monotonic() < end:
    try:
        frame, where = cap.recvfrom(65536)
    except socket.timeout:
        frame = None
    if frame and frame[12:14] == b"\x08\x00" and len(frame) > 14 + 20 + 20:
        ip = frame[14:]
        ihl = (ip[0] & 15) * 4
        tcp = ip[ihl:]
        if ip[9] == 6 and tcp[13] & 0x12 == 0x02:  # SYN without ACK
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            sport, dport = struct.unpack("!HH", tcp[:4])
            for e in ((src, sport), (dst, dport)):
                if e[0] not in (me, server) and not e[0].startswith("10."):
                    ends.setdefault(e, 0)
    if time.monotonic() < next_round:
        continue
    next_round = time.monotonic() + 0.3
    for e in list(ends):
        s = socket.socket()
        s.bind((me, 0))
        s.settimeout(0.3)
        try:
            s.connect(e)
            connections += 1
            ends[e] += 1
            if ends[e] % 2:
                s.sendall(b"\x00\x24NH\x01\x01" + os.urandom(32))
                forged += 1
            else:
                got = s.recv(38)
                s.sendall(got)
                reflected += 1
            s.recv(64)
        except OSError:
            pass
        finally:
            s.close()
open(report, "w").write("%d %d %d\n" % (connections, forged, reflected))
"""


def check_tcp_stray(tap, tmp, nat_a="none", nat_b="udp-blocked"):
    """A (no NAT: its TCP port is open to anyone) and B (UDP-blocked);
    A's router drops every TCP packet from B, so only strangers' connections
    reach A's port. A third host in the lab's internet connects to every
    end of every SYN it sees and sends a forged hello, or A's own hello
    reflected: A closes each of them, and tcp-holepunch fails saying so."""
    label = "%s <-> %s, B's TCP to A dropped, a third host connecting" % (nat_a, nat_b)
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-stray")
        if not (ready and address):
            tap.ok(False, "%s: server and listener are up" % label, diag=lev.text[-2000:])
            stop(listener)
            stop(server)
            return
        block_direct(lab, "a", lab.site("b").public_ip, proto="tcp")
        script = os.path.join(tmp, "stray.py")
        with open(script, "w") as f:
            f.write(STRAY)
        report = os.path.join(tmp, "stray.out")
        spy = lab.popen("inet", "exec python3 %s %s 15 %s %s" % (
            script, lab.server_ips[1], report, lab.server_ips[0]))
        time.sleep(0.5)
        infile = os.path.join(tmp, "in")
        write_random(infile, 1024, label)
        rc, cev = connect(lab, tmp, "host_a", "a-stray", address, infile,
                          os.path.join(tmp, "out"), timeout=60, method="tcp-holepunch")
        failed = cev.wait("connect-failed", 0) or {}
        why = failed.get("reason", "")
        closed = re.search(r"\((\d+) closed for not authenticating\)", why)
        tap.ok(rc != 0 and "none completed the authenticated hello" in why and
               closed is not None and int(closed.group(1)) > 0,
               "%s: tcp-holepunch fails, the strangers' connections closed: %s" % (
                   label, why[-200:]),
               diag="rc %s, stderr %r" % (rc, cev.text[-3000:]))
        spy.wait(30)
        text = open(report).read().split() if os.path.exists(report) else []
        tap.ok(len(text) == 3 and int(text[1]) > 0 and int(text[2]) > 0,
               "%s: the third host made %s connections (%s forged hellos, %s reflected)" % (
                   label, *(text if len(text) == 3 else ["?"] * 3)))
        stop(listener)
        stop(server)


FEEDER = r"""
import hashlib, os, sys, time
# writes SIZE bytes to stdout in 64 KiB chunks over about SECONDS
size, seconds, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
h = hashlib.sha256()
chunk = 65536
n = (size + chunk - 1) // chunk
for i in range(n):
    data = hashlib.sha256(b"%d" % i).digest() * (chunk // 32)
    os.write(1, data)
    h.update(data)
    time.sleep(seconds / n)
open(out, "w").write(h.hexdigest())
"""


def start_feed(lab, tmp, name, address, size, seconds, outfile):
    """Host A's `nat-tool connect ADDRESS` (peer folders of @name), fed
    @size bytes over about @seconds by FEEDER, B's echo into @outfile.
    Returns the process, its Events and the file the feeder writes its
    SHA-256 to."""
    feeder = os.path.join(tmp, "feeder.py")
    with open(feeder, "w") as f:
        f.write(FEEDER)
    digest_file = os.path.join(tmp, "feed.sha")
    proc = lab.popen("host_a", "exec python3 %s %d %s %s | env %s G_MESSAGES_DEBUG=%s %s "
                     "connect --json %s > %s"
                     % (feeder, size, seconds, digest_file, peer_env(tmp, name),
                        os.environ.get("NATLAB_DEBUG", ""), NAT_TOOL, address, outfile),
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, Events(proc), digest_file


def finish_feed(tap, proc, ev, digest_file, outfile, message, timeout):
    """Waits up to @timeout s for start_feed()'s process to end, then checks
    it exited 0 and the stream arrived byte-identical (tap line @message)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ev.poll(0.5)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    want = open(digest_file).read().strip() if os.path.exists(digest_file) else "?"
    same = os.path.exists(outfile) and file_sha(outfile) == want
    tap.ok(proc.returncode == 0 and same, message,
           diag="rc %s, out %d bytes; %r" % (
               proc.returncode, os.path.getsize(outfile) if os.path.exists(outfile) else -1,
               ev.text[-1500:]))


def udp_sockets(lab, ns):
    """The UDP sockets open in namespace @ns (only natkit runs there)."""
    out = lab.run(ns, ["ss", "-uanH"]).stdout or ""
    return [line for line in out.splitlines() if line.strip()]


def is_birthday_pair(a, b):
    return sorted((a, b)) == ["port-restricted", "symmetric"]


def check_birthday_pair(tap, tmp, nat_a, nat_b, one_server=False):
    """symmetric <-> port-restricted: the birthday punch. A streams 256 KiB
    to B's `cat` over 4 s. The connection is direct from the start, or (when
    the relay opened first: it starts 250 ms into the race) moves to the
    punched path within 10 s; the path leads to B's public address and is
    the birthday punch's. While it runs neither host keeps more than a
    handful of UDP sockets: the hard side's 255 losing sockets (and its
    first socket) were closed when the path was found. The echo arrives
    byte-identical."""
    label = "%s <-> %s (birthday punch%s)" % (
        nat_a, nat_b, ", natkit-server's two STUN ports only" if one_server else "")
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        if one_server:
            # no other STUN server: natkit-server's second port is enough
            stun2, ready2 = subprocess.Popen(["true"]), ready
            for name in ("b-bd", "a-bd"):
                path = os.path.join(tmp, name, "config", "natkit", "config.json")
                if os.path.exists(path):
                    os.unlink(path)
        else:
            stun2, ready2 = start_second_stun(lab, tmp)
            stun_config(tmp, "b-bd", lab)
            stun_config(tmp, "a-bd", lab)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-bd")
        if not tap.ok(ready and ready2 and address, "%s: servers and listener are up" % label,
                      diag=lev.text[-2000:]):
            for p in (listener, server, stun2):
                stop(p)
            return
        feeder = os.path.join(tmp, "feeder.py")
        with open(feeder, "w") as f:
            f.write(FEEDER)
        digest_file = os.path.join(tmp, "bd.sha")
        outfile = os.path.join(tmp, "bd-out")
        for old in (digest_file, outfile):
            if os.path.exists(old):
                os.unlink(old)
        env = peer_env(tmp, "a-bd")
        proc = lab.popen("host_a", "exec python3 %s %d 4 %s | env %s %s connect --json %s > %s"
                         % (feeder, 256 * 1024, digest_file, env, NAT_TOOL, address, outfile),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ev = Events(proc)
        got = ev.wait("connected", 30) or {}
        remote = got.get("remote_address") or ""
        how = "from the start"
        if got.get("method") == "relay":
            changed = ev.wait("path-changed", 10) or {}
            if changed.get("to") == "holepunch":
                remote = changed.get("remote_address") or ""
                how = "after the relay opened first (path-changed: %s)" % changed.get("reason")
            else:
                how = None
        elif got.get("method") != "holepunch":
            how = None
        tap.ok(how is not None,
               "%s: direct %s (connected via %s in %s ms)" % (
                   label, how, got.get("method"), got.get("elapsed_ms")),
               diag=ev.text[-3000:])
        if how is not None:
            tap.ok(remote.startswith(lab.site("b").public_ip + ":") and "(birthday)" in remote,
                   "%s: the path is the birthday punch's, to B's public address: %s" % (
                       label, remote), diag=ev.text[-2000:])
        ev.poll(1)
        a_sockets = udp_sockets(lab, "host_a")
        b_sockets = udp_sockets(lab, "host_b")
        tap.ok(proc.poll() is None and len(a_sockets) <= 8 and len(b_sockets) <= 8,
               "%s: while connected, A has %d UDP sockets open and B %d (the birthday "
               "punch opened 257 on the symmetric side)" % (
                   label, len(a_sockets), len(b_sockets)),
               diag="A:\n%s\nB:\n%s" % ("\n".join(a_sockets), "\n".join(b_sockets)))
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            ev.poll(0.5)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        want = open(digest_file).read().strip() if os.path.exists(digest_file) else "?"
        same = os.path.exists(outfile) and file_sha(outfile) == want
        tap.ok(proc.returncode == 0 and same, "%s: 256 KiB echoed back byte-identical" % label,
               diag="rc %s, out %d bytes; %r" % (
                   proc.returncode, os.path.getsize(outfile) if os.path.exists(outfile) else -1,
                   ev.text[-1500:]))
        for p in (listener, server, stun2):
            stop(p)


def check_birthday_failure(tap, tmp, nat_a="port-restricted", nat_b="symmetric"):
    """The birthday punch cut down to 1 socket and 1 probe for 1 s on both
    sides (NATKIT_HOLEPUNCH_BIRTHDAY_*: a probe lands with a probability of
    1 in 64512): hole punching alone fails, and the reason says what the
    birthday punch did (this side's probes)."""
    label = "%s <-> %s, birthday punch limited to 1 socket and 1 probe" % (nat_a, nat_b)
    limits = {"NATKIT_HOLEPUNCH_BIRTHDAY_SOCKETS": "1", "NATKIT_HOLEPUNCH_BIRTHDAY_PROBES": "1",
              "NATKIT_HOLEPUNCH_BIRTHDAY_MS": "1000"}
    saved = {k: os.environ.get(k) for k in limits}
    os.environ.update(limits)   # the lab's processes inherit them
    try:
        with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
            server, ready = start_server(lab, tmp)
            stun2, ready2 = start_second_stun(lab, tmp)
            stun_config(tmp, "b-bf", lab)
            stun_config(tmp, "a-bf", lab)
            listener, lev, address = start_listener(lab, tmp, "host_b", "b-bf")
            if not tap.ok(ready and ready2 and address, "%s: servers and listener are up" % label,
                          diag=lev.text[-2000:]):
                for p in (listener, server, stun2):
                    stop(p)
                return
            infile = os.path.join(tmp, "in")
            write_random(infile, 1024, label)
            rc, cev = connect(lab, tmp, "host_a", "a-bf", address, infile,
                              os.path.join(tmp, "out"), timeout=60, method="holepunch")
            why = (cev.wait("connect-failed", 0) or {}).get("reason", "")
            tap.ok(rc != 0 and "birthday punch" in why and
                   "the easy side: 1 probes to random ports of %s" % lab.site("b").public_ip in why,
                   "%s: hole punching fails, saying what the birthday punch did: %s" % (
                       label, why[why.find("the birthday punch"):][:200]),
                   diag="rc %s, stderr %r" % (rc, cev.text[-3000:]))
            for p in (listener, server, stun2):
                stop(p)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def unblock(lab, site):
    lab.run(lab.site(site).router, ["nft", "delete", "table", "ip", "nklab_block"],
            check=True)


def check_upgrade(tap, tmp, nat_a="port-restricted", nat_b="port-restricted"):
    """Direct UDP (and TCP, throughout) between the sites blocked at the
    start: the connection lands on the relay. The block lifted: it moves to a direct path within
    10 s, and the stream that runs all along arrives byte-identical."""
    label = "upgrade %s <-> %s" % (nat_a, nat_b)
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(lab, tmp, "host_b", "b-up")
        if not (ready and address):
            tap.ok(False, "%s: server and listener are up" % label, diag=lev.text[-2000:])
            stop(listener)
            stop(server)
            return
        block_direct(lab, "a", lab.site("b").public_ip)
        block_direct(lab, "b", lab.site("a").public_ip)
        # TCP between the sites stays blocked: the move is to UDP hole
        # punching (tcp-holepunch has its own checks above)
        block_direct(lab, "a", lab.site("b").public_ip, proto="tcp")
        block_direct(lab, "b", lab.site("a").public_ip, proto="tcp")
        outfile = os.path.join(tmp, "up-out")
        proc, ev, digest_file = start_feed(lab, tmp, "a-up", address, 12 << 20, 25, outfile)
        got = ev.wait("connected", 30) or {}
        tap.ok(got.get("method") == "relay",
               "%s: direct UDP blocked: connected via %s" % (label, got.get("method")),
               diag=ev.text[-2000:])
        time.sleep(6)
        ev.poll(0.1)
        failed = [e for e in ev.events if e.get("event") == "attempt-failed"]
        tap.ok(any(e.get("method") == "holepunch" and e.get("reason") for e in failed),
               "%s: while blocked, holepunch attempts fail with a reason: %s" % (
                   label, (failed[0].get("reason", "")[:120] if failed else None)),
               diag=ev.text[-2000:])
        unblock(lab, "a")
        unblock(lab, "b")
        lifted = time.monotonic()
        changed = ev.wait("path-changed", 20)
        delay = time.monotonic() - lifted
        tap.ok(changed is not None and changed.get("to") == "holepunch" and
               changed.get("from") == "relay" and delay <= 10,
               "%s: the block lifted, the connection moved to %s within %.1f s (%s)" % (
                   label, (changed or {}).get("to"), delay, (changed or {}).get("reason")),
               diag=ev.text[-2000:])
        finish_feed(tap, proc, ev, digest_file, outfile,
                    "%s: the 12 MB stream that ran across the move arrived byte-identical"
                    % label, 90)
        stop(listener)
        stop(server)


def check_failover(tap, tmp, nat_a="port-restricted", nat_b="port-restricted"):
    """A 50 MB stream from A to B on a direct path; the direct path cut
    mid-transfer (drop rules for UDP and TCP on both routers): the
    connection moves to the relay, a path-changed event says why, data
    flows again (the time from the cut is printed), and the transfer
    completes byte-identical. One way (B stores what arrives). Returns the
    seconds from the cut to data flowing again (None if it did not) and
    whether the transfer completed."""
    label = "failover %s <-> %s" % (nat_a, nat_b)
    size = int(os.environ.get("NATKIT_LAB_FAILOVER_MB", "50")) << 20
    received = os.path.join(tmp, "fo-received")
    with Lab(site_a=nat_a, site_b=nat_b, turn=False) as lab:
        server, ready = start_server(lab, tmp)
        listener, lev, address = start_listener(
            lab, tmp, "host_b", "b-fo", cmd=shlex.quote("sh -c 'cat > %s'" % received))
        if not (ready and address):
            tap.ok(False, "%s: server and listener are up" % label, diag=lev.text[-2000:])
            stop(listener)
            stop(server)
            return None, False
        feeder = os.path.join(tmp, "feeder.py")
        with open(feeder, "w") as f:
            f.write(FEEDER)
        digest_file = os.path.join(tmp, "fo.sha")
        env = peer_env(tmp, "a-fo")
        proc = lab.popen("host_a", "exec python3 %s %d 20 %s | env %s %s connect --json %s"
                         % (feeder, size, digest_file, env, NAT_TOOL, address),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ev = Events(proc)
        got = ev.wait("connected", 30) or {}
        tap.ok(got.get("method") == "holepunch",
               "%s: connected via %s" % (label, got.get("method")), diag=ev.text[-2000:])
        ev.poll(5)
        before = os.path.getsize(received) if os.path.exists(received) else 0
        # the direct paths cut: UDP, and TCP (or tcp-holepunch takes over)
        for proto in ("udp", "tcp"):
            block_direct(lab, "a", lab.site("b").public_ip, proto=proto)
            block_direct(lab, "b", lab.site("a").public_ip, proto=proto)
        cut = time.monotonic()
        # data flowing again: after what B receives stalled (no growth for
        # 0.5 s), the first growth
        resumed = None
        stalled = False
        seen, seen_at = before, cut
        while time.monotonic() - cut < 60:
            ev.poll(0.02)
            now = os.path.getsize(received) if os.path.exists(received) else 0
            t = time.monotonic()
            if now != seen:
                if stalled:
                    resumed = t - cut
                    break
                seen, seen_at = now, t
            elif t - seen_at >= 0.5:
                stalled = True
        changed = ev.wait("path-changed", 20)
        tap.ok(changed is not None and changed.get("from") == "holepunch" and
               changed.get("to") == "relay" and changed.get("reason"),
               "%s: path-changed from %s to %s: %s" % (
                   label, (changed or {}).get("from"), (changed or {}).get("to"),
                   (changed or {}).get("reason")),
               diag=ev.text[-2000:])
        tap.ok(resumed is not None,
               "%s: data flows again over the relay (%s s after the cut)" % (
                   label, "%.1f" % resumed if resumed else "?"))
        # the feeder takes 20 s; the outage and the move a few more
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            ev.poll(0.5)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        lrc = stop(listener)
        arrived = os.path.getsize(received) if os.path.exists(received) else -1
        want = open(digest_file).read().strip() if os.path.exists(digest_file) else "?"
        same = os.path.exists(received) and file_sha(received) == want
        completed = proc.returncode == 0 and same
        tap.ok(completed,
               "%s: the %d MB transfer completed byte-identical over the relay" % (
                   label, size >> 20),
               diag="rc %s (listener %s), %d of %d bytes arrived; %r" % (
                   proc.returncode, lrc, arrived, size, ev.text[-1500:]))
        stop(server)
    return resumed, completed


def main():
    try:
        check_requirements(turn=False)
    except LabSkip as e:
        skip_all(str(e))
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            skip_all("%s is not built" % prog)
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="nklab-direct-")
    # NATKIT_LAB_ONLY=failover (or upgrade, or both, comma-separated) runs
    # just those checks; NATKIT_LAB_FAILOVER_RUNS=N repeats the failover
    # check N times and prints each run's time to data flowing again.
    parts = [p for p in os.environ.get("NATKIT_LAB_ONLY", "").split(",") if p]
    try:
        only = os.environ.get("NATKIT_LAB_PAIRS")
        pairs = [(a, b) for i, a in enumerate(NAT_TYPES) for b in NAT_TYPES[i:]]
        if only:
            pairs = [tuple(p.split(":")) for p in only.split(",")]
        if parts:
            pairs = []
        for a, b in pairs:
            check_pair(tap, tmp, a, b)
        if not only and not parts:
            # both orders where the roles matter for the mapping arithmetic
            check_pair(tap, tmp, "restricted", "symmetric")
            # the birthday punch with the hard side as the initiator
            check_pair(tap, tmp, "symmetric", "port-restricted")
            check_birthday_pair(tap, tmp, "symmetric", "port-restricted", one_server=True)
            check_birthday_failure(tap, tmp)
            check_pair(tap, tmp, "udp-blocked", "port-restricted", method="tcp-holepunch")
            check_tcp_stray(tap, tmp)
            check_pair(tap, tmp, "full-cone", "full-cone", attacker=True)
            # the only answers that reach A are the third host's replays of
            # B's: A must not take the third host's address for B's
            check_pair(tap, tmp, "full-cone", "full-cone", attacker=True, replay_only=True)
        everything = not only and not parts
        if everything or os.environ.get("NATKIT_LAB_UPGRADE") or "upgrade" in parts:
            check_upgrade(tap, tmp)
        if everything or os.environ.get("NATKIT_LAB_UPGRADE") or "failover" in parts:
            runs = max(1, int(os.environ.get("NATKIT_LAB_FAILOVER_RUNS", "1")))
            results = [check_failover(tap, tmp) for _ in range(runs)]
            for i, (resumed, completed) in enumerate(results):
                print("# failover run %d: data flowing again %s after the cut; "
                      "transfer %s" % (i + 1, "%.1f s" % resumed if resumed else "never",
                                       "completed" if completed else "did NOT complete"))
            print("# failover: %d of %d runs completed" % (
                sum(1 for _, c in results if c), runs))
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.done()


if __name__ == "__main__":
    main()
