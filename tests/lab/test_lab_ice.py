#!/usr/bin/python3
# natkit lab test: ICE (the ice plugin, libnice) between NAT behaviors,
# through the lab's coturn where nothing direct works.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit-server runs in the lab's internet for rendezvous and signaling
(198.51.100.1:7000) and answers STUN on its UDP port; coturn runs on
198.51.100.1/.2:3478 (UDP and TCP, long-term credentials). Both peers get
the lab's coturn as TURN server twice, over UDP and over TCP (nat-tool
--turn ...?transport=udp --turn ...?transport=tcp --turn-user
--turn-password).

For every pair of NAT behaviors (21 labs; NATLAB_ICE_QUICK=1: a
representative 7) host B runs `nat-tool listen --exec
cat` and host A `nat-tool connect --method ice`: the connection is made by
ICE and a 128 KiB echo (also through TURN over TCP, see SIZE_TCP)
arrives byte-identical. Where both NATs map
endpoint-independently (none, full-cone, restricted, port-restricted) the
selected pair must be direct (no relayed candidate: transport "udp");
where nothing direct can work — symmetric <-> symmetric, and anything
with a UDP-blocked side — it must go through a relayed candidate from
coturn (transport "turn-udp" / "turn-tcp" through this side's allocation,
"turn" through the peer's; an address "(ice relay)").
Pairs in between (symmetric against a cone NAT) may be either: ICE finds
a peer-reflexive pair or falls back to the relay, and both are right.

Then the manager races ice, holepunch and relay on two pairs, and those
and turn on symmetric <-> udp-blocked: the
`connected` event names one of the methods that can work there and the
echo is byte-identical (which one wins is timing, not asserted).

Needs root; skips (exit 77, or NATLAB_SKIP_EXIT) otherwise."""

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from natlab import NAT_TYPES, Lab, LabSkip, check_requirements  # noqa: E402
from labtap import Tap, skip_all  # noqa: E402
from test_lab_relay import (Events, NAT_TOOL, PORT, SERVER, peer_env,  # noqa: E402
                            start_server, stop)

SIZE = 128 * 1024
# through TURN over TCP (a UDP-blocked side) bursts of datagrams are lost
# (libnice's TCP TURN socket does not queue many in its non-reliable mode);
# before the session repaired losses itself a 128 KiB echo took 2.7 s to
# 45 s there. NATKIT_LAB_ICE_TCP_KB changes the size
SIZE_TCP = int(os.environ.get("NATKIT_LAB_ICE_TCP_KB", "128")) * 1024
EIM = ("none", "full-cone", "restricted", "port-restricted")

REPRESENTATIVE = [
    ("none", "port-restricted"),
    ("full-cone", "restricted"),
    ("port-restricted", "port-restricted"),
    ("restricted", "symmetric"),
    ("symmetric", "symmetric"),
    ("port-restricted", "udp-blocked"),
    ("udp-blocked", "udp-blocked"),
]


def expectation(a, b):
    """'direct', 'relay' or None (either is right)."""
    if "udp-blocked" in (a, b) or (a == "symmetric" and b == "symmetric"):
        return "relay"
    if a in EIM and b in EIM:
        return "direct"
    return None


def turn_args(lab):
    host, port = lab.turn_server
    return ("--turn turn:%s:%d?transport=udp --turn turn:%s:%d?transport=tcp "
            "--turn-user %s --turn-password %s" % (
                host, port, host, port, lab.turn_user, lab.turn_password))


def start_listener(lab, tmp, name, extra):
    env = peer_env(tmp, name)
    proc = lab.popen("host_b", "exec env %s G_MESSAGES_DEBUG=%s %s listen --json --server %s:%d "
                     "--exec cat --once %s" % (env, os.environ.get("NATLAB_DEBUG", ""),
                                               NAT_TOOL, lab.server_ips[0], PORT, extra),
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ev = Events(proc)
    listening = ev.wait("listening", 15)
    return proc, ev, (listening or {}).get("peer_address")


def connect(lab, tmp, name, address, infile, outfile, methods, extra, timeout=60):
    env = peer_env(tmp, name)
    cmd = "exec env %s G_MESSAGES_DEBUG=%s %s connect --json %s %s %s < %s > %s" % (
        env, os.environ.get("NATLAB_DEBUG", ""), NAT_TOOL,
        " ".join("--method " + m for m in methods), extra, address, infile, outfile)
    proc = lab.popen("host_a", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ev = Events(proc)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ev.poll(0.5)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    ev.poll(0.2)
    return proc.returncode, ev


def cpu_seconds(pid):
    """User + system CPU time of a running process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_quiet_after_close(tap, tmp):
    """A listener that stays up (no --once) is idle after an ICE connection
    with TURN servers closed. A closing agent once left what arrived unread,
    and its socket's source fired without end while the agent released its
    allocations: a core busy for about 2 s after every connection."""
    label = "after an ICE connection closed"
    with Lab(site_a="port-restricted", site_b="port-restricted", turn=True) as lab:
        server, ready = start_server(lab, tmp)
        extra = turn_args(lab)
        env = peer_env(tmp, "b-quiet")
        listener = lab.popen("host_b", "exec env %s %s listen --json --server %s:%d "
                             "--exec cat %s" % (env, NAT_TOOL, lab.server_ips[0], PORT, extra),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        lev = Events(listener)
        address = (lev.wait("listening", 15) or {}).get("peer_address")
        if not tap.ok(address is not None, "%s: B listens" % label, diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        infile = os.path.join(tmp, "in")
        outfile = os.path.join(tmp, "out")
        write_random(infile, 4096, label)
        rc, cev = connect(lab, tmp, "a-quiet", address, infile, outfile, ["ice"], extra)
        tap.ok(rc == 0, "%s: connected by ICE and echoed" % label, diag=cev.text[-1500:])
        lev.poll(0.5)
        before = cpu_seconds(listener.pid)
        lev.poll(2.0)
        used = cpu_seconds(listener.pid) - before
        tap.ok(used < 0.5, "%s: the listener used %.2f s of CPU in the next 2 s "
               "(no busy loop while the agent closes)" % (label, used))
        stop(listener)
        stop(server)


def write_random(path, size, seed):
    data = hashlib.sha256(seed.encode()).digest()
    out = bytearray()
    while len(out) < size:
        data = hashlib.sha256(data).digest()
        out += data
    with open(path, "wb") as f:
        f.write(out[:size])
    return hashlib.sha256(out[:size]).hexdigest()


def file_sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_pair(tap, tmp, nat_a, nat_b, methods, check):
    label = "%s <-> %s (%s)" % (nat_a, nat_b, "+".join(methods))
    with Lab(site_a=nat_a, site_b=nat_b, turn=True) as lab:
        server, ready = start_server(lab, tmp)
        if not tap.ok(ready and ready.get("event") == "ready",
                      "%s: natkit-server is ready" % label,
                      diag=open(os.path.join(tmp, "server.log"), "rb").read()[-2000:]):
            stop(server)
            return
        extra = turn_args(lab)
        tag = "%s-%s-%s" % (nat_a, nat_b, "+".join(methods))
        listener, lev, address = start_listener(lab, tmp, "b-" + tag, extra)
        if not tap.ok(address is not None, "%s: B listens" % label, diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        infile = os.path.join(tmp, "in")
        outfile = os.path.join(tmp, "out")
        tcp = "udp-blocked" in (nat_a, nat_b)
        size = SIZE_TCP if tcp else SIZE
        digest = write_random(infile, size, label)
        rc, cev = connect(lab, tmp, "a-" + tag, address, infile, outfile, methods, extra,
                          timeout=120 if tcp else 60)
        got = cev.wait("connected", 0) or {}
        check(tap, label, rc, got, cev)
        same = os.path.exists(outfile) and file_sha(outfile) == digest
        tap.ok(rc == 0 and same, "%s: %d bytes echoed back byte-identical" % (label, size),
               diag="rc %s, out %d bytes, stderr %r" % (
                   rc, os.path.getsize(outfile) if os.path.exists(outfile) else -1,
                   cev.text[-1500:]))
        if rc == 0:
            # --once: the listener ends by itself once the connection closed
            try:
                listener.wait(30)
            except subprocess.TimeoutExpired:
                pass
        stop(listener)
        stop(server)


def check_ice(nat_a, nat_b):
    want = expectation(nat_a, nat_b)

    def check(tap, label, rc, got, cev):
        transport = got.get("transport") or ""
        relayed = transport.startswith("turn")
        local = got.get("local_address") or ""
        remote = got.get("remote_address") or ""
        how = "relayed" if relayed else "direct"
        ok = (got.get("method") == "ice" and "(ice " in local and "(ice " in remote and
              (want is None or (want == "relay") == relayed))
        if relayed:
            ok = ok and ("(ice relay)" in local or "(ice relay)" in remote)
        # the path says it went through TURN: the explanation says relayed
        explanation = got.get("explanation") or ""
        ok = ok and (("relayed through" in explanation) == relayed) and \
            (explanation.startswith("direct:") != relayed)
        tap.ok(ok, "%s: connected by ICE, %s (%s, explained %s): %s -> %s in %s ms%s" % (
            label, how, transport, "relayed" if "relayed through" in explanation else "direct",
            local, remote, got.get("elapsed_ms"),
            "" if want is None else ", as expected: %s" % want),
            diag="rc %s, connected %r, stderr %r" % (rc, got, cev.text[-3000:]))
    return check


def check_race(can_win):
    def check(tap, label, rc, got, cev):
        tap.ok(got.get("method") in can_win,
               "%s: connected via %s (%s), one of %s" % (
                   label, got.get("method"), got.get("transport"), ", ".join(can_win)),
               diag="rc %s, connected %r, stderr %r" % (rc, got, cev.text[-3000:]))
    return check


def main():
    try:
        check_requirements(turn=True)
    except LabSkip as e:
        skip_all(str(e))
    for prog in (NAT_TOOL, SERVER):
        if not os.access(prog, os.X_OK):
            skip_all("%s is not built" % prog)
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="nklab-ice-")
    t0 = time.monotonic()
    try:
        if os.environ.get("NATLAB_ICE_QUICK"):
            pairs = REPRESENTATIVE
        else:
            pairs = [(a, b) for i, a in enumerate(NAT_TYPES) for b in NAT_TYPES[i:]]
        for a, b in pairs:
            run_pair(tap, tmp, a, b, ["ice"], check_ice(a, b))
        # the race: whichever completes first, among those that can work
        run_pair(tap, tmp, "port-restricted", "port-restricted", ["ice", "holepunch", "relay"],
                 check_race(("ice", "holepunch", "relay")))
        run_pair(tap, tmp, "symmetric", "symmetric", ["ice", "holepunch", "relay"],
                 check_race(("ice", "relay")))
        # and with the TURN plugin in the race too (the lab's coturn)
        run_pair(tap, tmp, "symmetric", "udp-blocked", ["ice", "holepunch", "relay", "turn"],
                 check_race(("ice", "relay", "turn")))
        check_quiet_after_close(tap, tmp)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.diag("test_lab_ice took %.0f s" % (time.monotonic() - t0))
    tap.done()


if __name__ == "__main__":
    main()
