#!/usr/bin/python3
# natkit lab test: two peers behind NATs connect through coturn with the
# TURN plugin.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""coturn runs in the lab's internet (198.51.100.1: UDP and TCP on 3478,
TLS on 5349 with a self-signed certificate pinned in the URI); natkit-server
(198.51.100.1:7000) only carries signaling. For each transport to the TURN
server (UDP, TCP, TLS) and NAT behaviors on both sides (none,
port-restricted, symmetric, restricted, full-cone, udp-blocked where the
transport is TCP or TLS) host B runs `nat-tool listen --exec cat` and host
A `nat-tool connect --method turn`: the `connected` event says method turn
and the transport, an echo arrives byte-identical, both relayed ports are
open on coturn while connected and closed once both ends exit (the
allocations are gone). A UDP-blocked host given a plain turn: URI falls
back from UDP to TCP by itself. A wrong password ends the attempt with the
clear error naming the server and the user. TURN REST credentials work both
from natkit-server (`--turn-uri --turn-secret-file`, the peers given no
TURN options at all) and from a config.json "secret" entry, against a
coturn that only takes the shared secret.

Then a scripted TURN server that misbehaves (silent, garbage, 486, 508, a
relayed address we must not send to, 300 to coturn): every attempt fails
within its time limit with a reason that names the server and says what
went wrong, and the 300 is followed to coturn, which then carries the
connection.

Needs root; skips (exit 77, or NATLAB_SKIP_EXIT) otherwise."""

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natlab import SERVER_IPS, Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402
from test_lab_relay import (Events, peer_env, start_server, stop,  # noqa: E402
                            wait_size, write_random, file_sha, PORT)

NAT_TOOL = os.path.abspath(os.environ.get("NAT_TOOL", "nat-tool"))
SERVER = os.path.abspath(os.environ.get("NATKIT_SERVER", "natkit-server"))
SECRET = "natkit-lab-rest-secret"
# 256 KiB: coturn's relay sockets have 128 KiB buffers, so bursts
# overflow them (UdpRcvbufErrors in the lab's internet); the session's loss
# repair (SACK, tail loss probes; docs/session.md) must recover them. Bulk
# transfers are tests/bench/bench_turn.py's business
SIZE = int(os.environ.get("NATKIT_LAB_TURN_KB", "256")) * 1024

_PORT_RE = re.compile(r"^(\d+\.\d+\.\d+\.\d+):(\d+)")


def relayed(address):
    """"IP:PORT (relayed by …)" → "IP:PORT" """
    m = _PORT_RE.match(address or "")
    return "%s:%s" % (m.group(1), m.group(2)) if m else None


def coturn_udp_sockets(lab):
    """Local addresses of coturn's UDP sockets (relay ports included)."""
    out = lab.run("inet", ["ss", "-Hnua"]).stdout
    return {line.split()[3] for line in out.splitlines() if len(line.split()) >= 4}


def slug(label):
    return re.sub(r"[^A-Za-z0-9.-]+", "-", label)


def turn_options(uri, user, password):
    return "--turn '%s' --turn-user '%s' --turn-password '%s'" % (uri, user, password)


def start_listener(lab, tmp, name, options):
    env = peer_env(tmp, name)
    proc = lab.popen("host_b", "exec env %s G_MESSAGES_DEBUG=%s %s listen --json --server %s:%d "
                     "%s --exec cat --once" % (env, os.environ.get("NATLAB_DEBUG", ""),
                                               NAT_TOOL, lab.server_ips[0], PORT, options),
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ev = Events(proc)
    listening = ev.wait("listening", 15)
    return proc, ev, (listening or {}).get("peer_address")


def start_connector(lab, tmp, name, address, options, outfile):
    env = peer_env(tmp, name)
    proc = lab.popen("host_a", "exec env %s G_MESSAGES_DEBUG=%s %s connect --json --method turn "
                     "%s %s > %s" % (env, os.environ.get("NATLAB_DEBUG", ""), NAT_TOOL,
                                     options, address, outfile),
                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return proc, Events(proc)


def feed(proc, path):
    """Writes the file to the process's stdin and closes it, in a thread
    (the pipe fills while the events are read)."""
    def run():
        try:
            with open(path, "rb") as f:
                proc.stdin.write(f.read())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def wait_exit(proc, ev, timeout, also=()):
    """Waits for proc to exit, reading its events and those of the other
    processes in also (whose stderr must not fill up meanwhile)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ev.poll(0.25)
        for other in also:
            other.poll(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    ev.poll(0.2)
    return proc.returncode


def ports_gone(lab, ports, timeout=10):
    """Waits until none of ports is a coturn UDP socket (the allocations
    are released); returns the ones still open."""
    deadline = time.monotonic() + timeout
    while True:
        left = set(ports) & coturn_udp_sockets(lab)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def echo_through_turn(tap, tmp, lab, label, opts_a, opts_b, transport_a,
                      transport_b=None, relay_range=None, config=None):
    """One connection A → B with --method turn; checks the event, the echo,
    the allocations while connected and after both ends exit. config: a
    config.json (dict) for both peers, each in its own XDG_CONFIG_HOME."""
    if config is not None:
        for side in "ab":
            peer_env(tmp, "%s-%s" % (side, slug(label)))
            path = os.path.join(tmp, "%s-%s" % (side, slug(label)), "config", "natkit")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "config.json"), "w") as f:
                json.dump(config, f)
    listener, lev, address = start_listener(lab, tmp, "b-" + slug(label), opts_b)
    if not tap.ok(address is not None, "%s: B listens" % label, diag=lev.text[-2000:]):
        stop(listener)
        return
    infile = os.path.join(tmp, "in-" + slug(label))
    outfile = os.path.join(tmp, "out-" + slug(label))
    digest = write_random(infile, SIZE, label)
    proc, cev = start_connector(lab, tmp, "a-" + slug(label), address, opts_a, outfile)
    got = cev.wait("connected", 60) or {}
    mine, theirs = relayed(got.get("local_address")), relayed(got.get("remote_address"))
    tap.ok(got.get("method") == "turn" and got.get("transport") == transport_a,
           "%s: connected via turn over %s (%s → %s) in %s ms" % (
               label, got.get("transport"), mine, theirs, got.get("elapsed_ms")),
           diag="events %r\nstderr %r" % (cev.events, cev.text[-3000:]))
    lgot = lev.wait("connected", 10) or {}
    if transport_b is not None:
        tap.ok(lgot.get("method") == "turn" and lgot.get("transport") == transport_b,
               "%s: B accepted via turn over %s" % (label, lgot.get("transport")),
               diag=lev.text[-2000:])
    if mine and theirs:
        open_now = coturn_udp_sockets(lab)
        tap.ok(mine in open_now and theirs in open_now,
               "%s: coturn holds both relayed addresses while connected" % label,
               diag="relayed %s %s; coturn's UDP sockets %s" % (mine, theirs, sorted(open_now)))
        if relay_range:
            lo, hi = relay_range
            tap.ok(all(lo <= int(p.split(":")[1]) <= hi for p in (mine, theirs)),
                   "%s: both allocations come from the coturn relaying from ports %d-%d" % (
                       label, lo, hi), diag="%s %s" % (mine, theirs))
    feed(proc, infile)
    rc = wait_exit(proc, cev, 90, also=[lev])
    same = os.path.exists(outfile) and file_sha(outfile) == digest
    tap.ok(rc == 0 and same, "%s: %d bytes echoed back byte-identical" % (label, SIZE),
           diag="rc %s, out %d bytes, stderr %r" % (
               rc, os.path.getsize(outfile) if os.path.exists(outfile) else -1,
               cev.text[-2000:]))
    wait_exit(listener, lev, 30)
    lrc = listener.returncode
    tap.ok(lrc == 0, "%s: the listener exits 0 after the connection" % label,
           diag=lev.text[-2000:])
    if mine and theirs:
        left = ports_gone(lab, [mine, theirs])
        tap.ok(not left, "%s: both allocations are gone from coturn after close" % label,
               diag="still open: %s" % sorted(left))


TRANSPORTS = {
    "udp": "turn:198.51.100.1:3478?transport=udp",
    "tcp": "turn:198.51.100.1:3478?transport=tcp",
}


def tls_uri(lab):
    return "turns:198.51.100.1:%d#sha256:%s" % (lab.turn_tls_port, lab.turn_cert_sha256)


def check_transport(tap, tmp, transport, nat_a, nat_b):
    label = "%s %s<->%s" % (transport, nat_a, nat_b)
    with Lab(site_a=nat_a, site_b=nat_b, turn_tls=(transport == "tls")) as lab:
        server, ready = start_server(lab, tmp)
        if not tap.ok(ready and ready.get("event") == "ready",
                      "%s: natkit-server is ready" % label):
            stop(server)
            return
        uri = tls_uri(lab) if transport == "tls" else TRANSPORTS[transport]
        opts = turn_options(uri, lab.turn_user, lab.turn_password)
        echo_through_turn(tap, tmp, lab, label, opts, opts, transport, transport)
        stop(server)


def check_fallback(tap, tmp):
    """A plain turn: URI from a UDP-blocked host: UDP gets no answer, TCP
    does; the other side (UDP open) stays on UDP."""
    label = "fallback udp-blocked<->symmetric"
    with Lab(site_a="udp-blocked", site_b="symmetric") as lab:
        server, ready = start_server(lab, tmp)
        opts = turn_options("turn:198.51.100.1", lab.turn_user, lab.turn_password)
        echo_through_turn(tap, tmp, lab, label, opts, opts, "tcp", "udp")
        stop(server)


def check_wrong_password(tap, tmp):
    label = "wrong password"
    with Lab(site_a="port-restricted", site_b="none") as lab:
        server, ready = start_server(lab, tmp)
        good = turn_options(TRANSPORTS["udp"], lab.turn_user, lab.turn_password)
        bad = turn_options(TRANSPORTS["udp"], lab.turn_user, "not-" + lab.turn_password)
        listener, lev, address = start_listener(lab, tmp, "b-pw", good)
        proc, cev = start_connector(lab, tmp, "a-pw", address, bad, "/dev/null")
        proc.stdin.close()
        rc = wait_exit(proc, cev, 60)
        text = cev.text.decode("utf-8", "replace")
        want = ("TURN server 198.51.100.1:3478 refused the credentials of user “%s” (401"
                % lab.turn_user)
        tap.ok(rc != 0 and want in text and "turn.password" in text,
               "%s: the attempt fails with “%s …: check turn.username and turn.password”"
               % (label, want), diag="rc %s, stderr %r" % (rc, text[-3000:]))
        tap.ok(cev.wait("connected", 0) is None, "%s: no connection" % label)
        stop(listener)
        stop(server)


# A TURN server that misbehaves, one UDP port per way (198.51.100.2, in the
# lab's internet): it does the 401 nonce dance like a real one, then
# answers Allocate as told. Only the standard library.
BAD_SERVER = r"""
import hashlib, hmac, os, socket, struct, sys, zlib
COOKIE = 0x2112A442
ip, base, user, realm, password = sys.argv[1:6]
modes = sys.argv[6:]
key = hashlib.md5(("%s:%s:%s" % (user, realm, password)).encode()).digest()

def attr(t, v):
    return struct.pack("!HH", t, len(v)) + v + b"\0" * (-len(v) % 4)

def xaddr(ip, port, tid):
    a = bytes(b ^ c for b, c in zip(socket.inet_aton(ip), struct.pack("!I", COOKIE)))
    return struct.pack("!BBH", 0, 1, port ^ (COOKIE >> 16)) + a

def message(mtype, tid, attrs, sign):
    body = b"".join(attrs)
    if sign:
        head = struct.pack("!HHI", mtype, len(body) + 24, COOKIE) + tid
        body += attr(0x0008, hmac.new(key, head + body, hashlib.sha1).digest())
    head = struct.pack("!HHI", mtype, len(body) + 8, COOKIE) + tid
    crc = (zlib.crc32(head + body) ^ 0x5354554E) & 0xFFFFFFFF
    body += attr(0x8028, struct.pack("!I", crc))
    return struct.pack("!HHI", mtype, len(body), COOKIE) + tid + body

def error(code, reason):
    return attr(0x0009, struct.pack("!HBB", 0, code // 100, code % 100) + reason.encode())

socks = {}
for i, mode in enumerate(modes):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, int(base) + i))
    socks[s] = mode
print("READY", flush=True)
import select
while True:
    for s in select.select(list(socks), [], [])[0]:
        data, peer = s.recvfrom(2048)
        mode = socks[s]
        if len(data) < 20 or mode == "silent":
            continue
        mtype, = struct.unpack("!H", data[:2])
        tid = data[8:20]
        if mode == "garbage":
            s.sendto(os.urandom(64), peer)
            s.sendto(struct.pack("!HHI", 0x0113, 400, COOKIE) + tid + os.urandom(16), peer)
            continue
        if mtype != 0x0003:          # only Allocate gets an answer
            continue
        if mode == "redirect":
            alt = struct.pack("!BBH", 0, 1, 3478) + socket.inet_aton("198.51.100.1")
            s.sendto(message(0x0113, tid, [error(300, "Try Alternate"), attr(0x8023, alt)],
                             False), peer)
            continue
        if b"\x00\x06" not in data[20:]:   # no USERNAME yet: ask for credentials
            s.sendto(message(0x0113, tid, [error(401, "Unauthorized"),
                                           attr(0x0014, realm.encode()),
                                           attr(0x0015, b"lab-nonce-0123456789")], False), peer)
        elif mode in ("486", "508"):
            why = {"486": "Allocation Quota Reached", "508": "Insufficient Capacity"}[mode]
            s.sendto(message(0x0113, tid, [error(int(mode), why)], True), peer)
        elif mode == "liar":
            s.sendto(message(0x0103, tid, [attr(0x0016, xaddr("127.0.0.1", 9, tid)),
                                           attr(0x0020, xaddr(peer[0], peer[1], tid)),
                                           attr(0x000D, struct.pack("!I", 600))], True), peer)
"""

BAD_MODES = [
    # mode, what A's failed attempt must say (None: it connects)
    ("silent", "did not answer within"),
    ("garbage", "that were not TURN answers; is it a TURN server?"),
    ("486", "(486 Allocation Quota Reached): the user's quota is used up"),
    ("508", "has no capacity for another allocation (508"),
    ("liar", "gave an unusable relayed address (127.0.0.1:9)"),
    ("redirect", None),
]
BAD_BASE = 3600


def check_bad_servers(tap, tmp):
    """Each misbehaving server: a clear error naming it, within the
    attempt's time limit, nothing left behind; a 300 is followed once."""
    with Lab(site_a="port-restricted", site_b="none") as lab:
        bad = lab.popen("inet", [sys.executable, "-c", BAD_SERVER, lab.server_ips[1],
                                 str(BAD_BASE), lab.turn_user, lab.turn_realm,
                                 lab.turn_password] + [m for m, _ in BAD_MODES],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if not tap.ok(bad.stdout.readline().strip() == b"READY",
                      "bad TURN servers: the scripted servers are up",
                      diag=bad.stderr.read(2000) if bad.poll() is not None else ""):
            return
        server, ready = start_server(lab, tmp)
        for i, (mode, want) in enumerate(BAD_MODES):
            label = "bad TURN server (%s)" % mode
            where = "%s:%d" % (lab.server_ips[1], BAD_BASE + i)
            opts = turn_options("turn:%s?transport=udp" % where, lab.turn_user,
                                lab.turn_password)
            listener, lev, address = start_listener(lab, tmp, "b-bad-" + mode, opts)
            t0 = time.monotonic()
            proc, cev = start_connector(lab, tmp, "a-bad-" + mode, address, opts, "/dev/null")
            proc.stdin.close()
            rc = wait_exit(proc, cev, 90, also=(lev,))
            elapsed = time.monotonic() - t0
            text = cev.text.decode("utf-8", "replace")
            if want is None:
                got = cev.wait("connected", 0) or {}
                tap.ok(rc == 0 and got.get("method") == "turn" and
                       "relayed by 198.51.100.1:3478" in (got.get("local_address") or ""),
                       "%s: sent to coturn (300 Try Alternate) and connected through it" % label,
                       diag="rc %s, stderr %r" % (rc, text[-3000:]))
            else:
                failed = [e for e in cev.events if e.get("event") == "attempt-failed" and
                          e.get("method") == "turn"]
                reason = failed[0].get("reason", "") if failed else ""
                tap.ok(rc != 0 and want in reason and ("TURN server %s" % where) in reason,
                       "%s: fails in %.1f s with “…%s…”" % (label, elapsed, want),
                       diag="rc %s, reason %r, stderr %r" % (rc, reason, text[-2000:]))
            stop(listener)
        stop(server)
        bad.kill()
        bad.wait()


TURN_NAME = "turn.lab.test"     # the lab's coturn, by name (Lab(hosts=…))
NO_NAME = "nowhere.lab.test"    # resolves nowhere (the lab's resolv.conf: 127.0.0.1)


def check_dns(tap, tmp):
    """The TURN server by name (turn:turn.lab.test:3478, in the lab's
    /etc/netns hosts files): the connection goes through coturn; a name
    that does not resolve fails the attempt at once with an error naming
    it."""
    with Lab(site_a="port-restricted", site_b="symmetric",
             hosts={TURN_NAME: "198.51.100.1"}) as lab:
        server, ready = start_server(lab, tmp)
        good = turn_options("turn:%s:3478?transport=udp" % TURN_NAME, lab.turn_user,
                            lab.turn_password)
        echo_through_turn(tap, tmp, lab, "by name %s" % TURN_NAME, good, good, "udp", "udp")

        label = "unresolvable %s" % NO_NAME
        bad = turn_options("turn:%s:3478?transport=udp" % NO_NAME, lab.turn_user,
                           lab.turn_password)
        listener, lev, address = start_listener(lab, tmp, "b-noname", good)
        t0 = time.monotonic()
        proc, cev = start_connector(lab, tmp, "a-noname", address, bad, "/dev/null")
        proc.stdin.close()
        rc = wait_exit(proc, cev, 60, also=(lev,))
        elapsed = time.monotonic() - t0
        failed = [e for e in cev.events if e.get("event") == "attempt-failed" and
                  e.get("method") == "turn"]
        reason = failed[0].get("reason", "") if failed else ""
        want = "Could not resolve the TURN server %s:3478" % NO_NAME
        tap.ok(rc != 0 and want in reason,
               "%s: fails in %.1f s with “%s”" % (label, elapsed, reason or want),
               diag="rc %s, reason %r, stderr %r" % (rc, reason, cev.text[-2000:]))
        stop(listener)
        stop(server)


REFRESH_LIFETIME = 16      # coturn's allocation, permission and channel lifetimes


def coturn_sessions(lab):
    """From coturn's verbose log: allocations made, allocation refreshes
    (lifetime > 0), successful channel binds, permissions that expired
    ("peer … deleted"), and the lines about them (for diagnostics)."""
    try:
        with open(lab.turn_log, errors="replace") as f:
            text = f.read()
    except OSError:
        return 0, 0, 0, 0, ""
    refreshed = [int(n) for n in re.findall(r"refreshed, .*lifetime=(\d+)", text)]
    return (len(re.findall(r": new, realm=", text)),
            len([n for n in refreshed if n > 0]),
            len(re.findall(r"CHANNEL_BIND processed, success", text)),
            len(re.findall(r": peer \S+ deleted", text)),
            "\n".join(line for line in text.splitlines()
                      if re.search(r"refreshed|CHANNEL_BIND|new, |deleted|closed", line))[-4000:])


def check_refresh(tap, tmp):
    """A coturn whose allocations, permissions and channels last
    REFRESH_LIFETIME s (it grants that instead of the 600 s asked for):
    a TURN connection (UDP to the server) stays up for 1.5× that, data
    still flows both ways afterwards, both allocations are still on coturn,
    coturn made no new allocation meanwhile (a lost path would be replaced
    by new ones: that must not be what kept data flowing) and logged the
    refreshes and renewed channels, no permission expiring. The peers renew
    the channel every REFRESH_LIFETIME / 2 s (plugins.turn.settings.
    "channel-refresh"); the allocation's refresh follows the lifetime
    granted by itself."""
    label = "refresh past the lifetime"
    life = REFRESH_LIFETIME
    with Lab(site_a="port-restricted", site_b="symmetric",
             turn_lifetimes={"allocation": life, "channel": life, "permission": life}) as lab:
        server, ready = start_server(lab, tmp)
        config = {"plugins": {"turn": {"settings": {"channel-refresh": life // 2}}}}
        for side in "ab":
            path = os.path.join(tmp, "%s-refresh" % side, "config", "natkit")
            os.makedirs(path, exist_ok=True)
            with open(os.path.join(path, "config.json"), "w") as f:
                json.dump(config, f)
        opts = turn_options(TRANSPORTS["udp"], lab.turn_user, lab.turn_password)
        listener, lev, address = start_listener(lab, tmp, "b-refresh", opts)
        if not tap.ok(address is not None, "%s: B listens" % label, diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        outfile = os.path.join(tmp, "out-refresh")
        proc, cev = start_connector(lab, tmp, "a-refresh", address, opts, outfile)
        got = cev.wait("connected", 60) or {}
        mine, theirs = relayed(got.get("local_address")), relayed(got.get("remote_address"))
        first, second = os.urandom(3000), os.urandom(3000)
        echoed = -1
        try:
            proc.stdin.write(first)
            proc.stdin.flush()
            echoed = wait_size(outfile, len(first), 20, also=(cev, lev))
        except (BrokenPipeError, OSError):
            pass
        tap.ok(got.get("method") == "turn" and echoed == len(first),
               "%s: connected via turn (%s → %s), first echo back" % (label, mine, theirs),
               diag="echoed %d; events %r\nstderr %r" % (echoed, cev.events, cev.text[-3000:]))
        t0 = time.monotonic()
        while time.monotonic() - t0 < life * 1.5:
            cev.poll(0.25)
            lev.poll(0.25)
        open_now = coturn_udp_sockets(lab)
        tap.ok(bool(mine and theirs) and mine in open_now and theirs in open_now,
               "%s: after %.0f s (lifetime %d s) coturn still holds both relayed addresses"
               % (label, time.monotonic() - t0, life),
               diag="relayed %s %s; coturn's UDP sockets %s" % (mine, theirs, sorted(open_now)))
        echoed = -1
        try:
            proc.stdin.write(second)
            proc.stdin.flush()
            echoed = wait_size(outfile, len(first) + len(second), 20, also=(cev, lev))
        except (BrokenPipeError, OSError):
            pass
        # before anything closes: the same two allocations all along (a
        # lost path would have been replaced by new ones), each refreshed,
        # their channels renewed, no permission expired
        made, refreshed, bound, expired, lines = coturn_sessions(lab)
        tap.ok(made == 2 and refreshed >= 2 * 2 and bound >= 2 * 3 and expired == 0,
               "%s: coturn logged 2 allocations (no new one), %d refreshes, %d channel binds, "
               "no expired permission" % (label, refreshed, bound),
               diag="allocations %d, expired %d\n%s" % (made, expired, lines))
        try:
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = wait_exit(proc, cev, 30, also=[lev])
        with open(outfile, "rb") as f:
            data = f.read()
        tap.ok(rc == 0 and data == first + second,
               "%s: data still flows both ways after %d s (echo byte-identical, %d bytes)"
               % (label, int(life * 1.5), len(data)),
               diag="rc %s, echoed %d, stderr %r" % (rc, echoed, cev.text[-3000:]))
        wait_exit(listener, lev, 30)
        if mine and theirs:
            left = ports_gone(lab, [mine, theirs])
            tap.ok(not left, "%s: both allocations are gone from coturn after close" % label,
                   diag="still open: %s" % sorted(left))
        stop(server)


def check_rest(tap, tmp):
    """coturn with only --use-auth-secret (a second turnserver on 3480,
    relaying from 40000-49151): natkit-server hands out the credentials;
    then a config.json "secret" entry does the same without it."""
    with Lab(site_a="symmetric", site_b="port-restricted", turn_secret=SECRET) as lab:
        secret_file = os.path.join(tmp, "turn-secret")
        with open(secret_file, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(secret_file, 0o600)
        rest_uri = "turn:%s:%d" % lab.turn_rest_server
        server, ready = start_server(lab, tmp, extra="--turn-uri %s --turn-secret-file %s" % (
            rest_uri, secret_file))
        if tap.ok(ready and ready.get("event") == "ready",
                  "REST: natkit-server is ready with the TURN secret"):
            echo_through_turn(tap, tmp, lab, "REST from natkit-server", "", "", "udp", "udp",
                              relay_range=(40000, 49151))
        stop(server)

        # the secret in config.json instead
        server, ready = start_server(lab, tmp)
        echo_through_turn(tap, tmp, lab, "REST from config.json", "", "", "udp", "udp",
                          relay_range=(40000, 49151),
                          config={"turn": [{"uri": rest_uri, "secret": SECRET}]})
        stop(server)


def check_ca(tap, tmp):
    """turns: with no pin: the server's certificate is checked against the
    system's CA store and its name. The lab's coturn has a certificate
    from a CA of the lab's own for turn.lab.test, and the hosts trust that
    CA alone (Lab(turn_ca=[…])): by name both peers connect, UDP-blocked
    A over TLS; a name the certificate does not carry fails with a message
    that says what to do."""
    label = "TLS by the CA store"
    hosts = {"turn.lab.test": SERVER_IPS[0], "other.lab.test": SERVER_IPS[0]}
    with Lab(site_a="udp-blocked", site_b="port-restricted", turn_ca=["turn.lab.test"],
             hosts=hosts) as lab:
        server, ready = start_server(lab, tmp)
        good = turn_options("turns:turn.lab.test:%d" % lab.turn_tls_port,
                            lab.turn_user, lab.turn_password)
        echo_through_turn(tap, tmp, lab, label, good, good, "tls")
        # other.lab.test resolves to the same server, but the certificate
        # does not name it
        bad = turn_options("turns:other.lab.test:%d" % lab.turn_tls_port,
                           lab.turn_user, lab.turn_password)
        listener, lev, address = start_listener(lab, tmp, "b-ca-bad", good)
        proc, cev = start_connector(lab, tmp, "a-ca-bad", address, bad, "/dev/null")
        proc.stdin.close()
        rc = wait_exit(proc, cev, 60, also=[lev])
        text = cev.text.decode("utf-8", "replace")
        reason = re.search(r"TLS with the TURN server other[^\"]*", text)
        tap.diag("%s: %s" % (label, reason.group(0) if reason else "no reason"))
        tap.ok(rc != 0 and "TLS with the TURN server other.lab.test" in text and
               "its certificate is not for that name" in text and
               cev.wait("connected", 0) is None,
               "%s: a name the certificate does not carry: no connection, “TLS with "
               "the TURN server other.lab.test:%d failed: … its certificate is not for "
               "that name …”" % (label, lab.turn_tls_port),
               diag="rc %s, stderr %r" % (rc, text[-3000:]))
        stop(listener)
        stop(server)


def check_dropped(tap, tmp):
    """The TURN server drops both allocations (coturn restarted) while a
    connection runs through them: the secure session's probes go
    unanswered, the manager takes the path as lost and finds a new one
    (only turn allowed: two new allocations), the stream resends what was
    lost and the echo completes byte-identical; after exit coturn holds no
    relay port."""
    label = "allocations dropped"
    with Lab(site_a="port-restricted", site_b="symmetric") as lab:
        server, ready = start_server(lab, tmp)
        opts = turn_options(TRANSPORTS["udp"], lab.turn_user, lab.turn_password)
        listener, lev, address = start_listener(lab, tmp, "b-dropped", opts)
        if not tap.ok(address is not None, "%s: B listens" % label, diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        outfile = os.path.join(tmp, "out-dropped")
        proc, cev = start_connector(lab, tmp, "a-dropped", address, opts, outfile)
        got = cev.wait("connected", 60) or {}
        first, second = os.urandom(3000), os.urandom(30000)
        echoed = -1
        try:
            proc.stdin.write(first)
            proc.stdin.flush()
            echoed = wait_size(outfile, len(first), 20, also=(cev, lev))
        except (BrokenPipeError, OSError):
            pass
        tap.ok(got.get("method") == "turn" and echoed == len(first),
               "%s: connected via turn, first echo back" % label,
               diag="echoed %d; events %r\nstderr %r" % (echoed, cev.events, cev.text[-3000:]))
        before = len(cev.events)
        lab.restart_turn()
        t0 = time.monotonic()
        try:
            proc.stdin.write(second)
            proc.stdin.flush()
            echoed = wait_size(outfile, len(first) + len(second), 60, also=(cev, lev))
        except (BrokenPipeError, OSError):
            pass
        took = time.monotonic() - t0
        later = [e.get("event") for e in cev.events[before:]]
        relays = {a for a in coturn_udp_sockets(lab)
                  if int(a.rsplit(":", 1)[1]) >= 49152}
        tap.ok(echoed == len(first) + len(second),
               "%s: coturn restarted; the connection took a new path (%s) and the echo "
               "went on %.1f s later, through %d new relayed addresses"
               % (label, ", ".join(later) or "no event", took, len(relays)),
               diag="echoed %d; stderr %r" % (echoed, cev.text[-3000:]))
        try:
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = wait_exit(proc, cev, 30, also=[lev])
        with open(outfile, "rb") as f:
            data = f.read()
        tap.ok(rc == 0 and data == first + second,
               "%s: everything echoed byte-identical (%d bytes), connect exits 0"
               % (label, len(data)),
               diag="rc %s, stderr %r" % (rc, cev.text[-3000:]))
        wait_exit(listener, lev, 30)
        left = ports_gone(lab, relays)
        tap.ok(not left, "%s: after exit coturn holds none of the new relayed addresses%s"
               % (label, " (still: %s)" % ", ".join(sorted(left)) if left else ""))
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
    tmp = tempfile.mkdtemp(prefix="nklab-turn-")
    # NATKIT_LAB_ONLY=refresh,dns,… (comma-separated) runs only those parts:
    # transports, fallback, password, bad, rest, refresh, dns, dropped, ca
    only = [p for p in os.environ.get("NATKIT_LAB_ONLY", "").split(",") if p]

    def want(part):
        return not only or part in only
    try:
        # every NAT behavior on each transport to the server; UDP-blocked
        # only where the transport is TCP or TLS
        for transport, nat_a, nat_b in [] if not want("transports") else [
                ("udp", "none", "port-restricted"),
                ("udp", "symmetric", "restricted"),
                ("udp", "full-cone", "symmetric"),
                ("tcp", "none", "port-restricted"),
                ("tcp", "symmetric", "udp-blocked"),
                ("tls", "udp-blocked", "udp-blocked"),
                ("tls", "port-restricted", "symmetric"),
                ("tls", "none", "full-cone")]:
            check_transport(tap, tmp, transport, nat_a, nat_b)
        if want("fallback"):
            check_fallback(tap, tmp)
        if want("password"):
            check_wrong_password(tap, tmp)
        if want("bad"):
            check_bad_servers(tap, tmp)
        if want("rest"):
            check_rest(tap, tmp)
        if want("refresh"):
            check_refresh(tap, tmp)
        if want("dns"):
            check_dns(tap, tmp)
        if want("dropped"):
            check_dropped(tap, tmp)
        if want("ca"):
            check_ca(tap, tmp)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.done()


if __name__ == "__main__":
    main()
