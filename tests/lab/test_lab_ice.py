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
                            start_server, stop, wait_size)

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


def run_pair(tap, tmp, nat_a, nat_b, methods, check, hosts=None, turn_uri=None, what=""):
    """turn_uri: the TURN server both peers get (turn_args() otherwise);
    hosts: names for the lab (Lab(hosts=…))."""
    label = "%s <-> %s (%s%s)" % (nat_a, nat_b, "+".join(methods), what)
    with Lab(site_a=nat_a, site_b=nat_b, turn=True, hosts=hosts) as lab:
        server, ready = start_server(lab, tmp)
        if not tap.ok(ready and ready.get("event") == "ready",
                      "%s: natkit-server is ready" % label,
                      diag=open(os.path.join(tmp, "server.log"), "rb").read()[-2000:]):
            stop(server)
            return
        extra = turn_args(lab) if turn_uri is None else \
            "--turn %s --turn-user %s --turn-password %s" % (turn_uri, lab.turn_user,
                                                              lab.turn_password)
        tag = "%s-%s-%s%s" % (nat_a, nat_b, "+".join(methods), what.replace(" ", "-"))
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


TURN_NAME = "turn.lab.test"     # the lab's coturn, by name (Lab(hosts=…))
NO_NAME = "nowhere.lab.test"    # resolves nowhere (the lab's resolv.conf: 127.0.0.1)


def check_dns(tap, tmp):
    """The TURN server by name: between two symmetric NATs only a relayed
    candidate works, so the connection shows the name was resolved. A name
    that does not resolve leaves no relayed candidate there: the attempt
    fails, and its reason names the server it could not resolve."""
    hosts = {TURN_NAME: "198.51.100.1"}
    run_pair(tap, tmp, "symmetric", "symmetric", ["ice"], check_ice("symmetric", "symmetric"),
             hosts=hosts, turn_uri="turn:%s:3478?transport=udp" % TURN_NAME,
             what=", TURN by name")
    label = "symmetric <-> symmetric (ice, unresolvable TURN name)"
    with Lab(site_a="symmetric", site_b="symmetric", turn=True, hosts=hosts) as lab:
        server, ready = start_server(lab, tmp)
        bad = "--turn turn:%s:3478?transport=udp --turn-user %s --turn-password %s" % (
            NO_NAME, lab.turn_user, lab.turn_password)
        listener, lev, address = start_listener(lab, tmp, "b-noname", bad)
        infile = os.path.join(tmp, "in-noname")
        write_random(infile, 1024, label)
        t0 = time.monotonic()
        rc, cev = connect(lab, tmp, "a-noname", address, infile, "/dev/null", ["ice"], bad)
        elapsed = time.monotonic() - t0
        failed = [e for e in cev.events if e.get("event") == "attempt-failed" and
                  e.get("method") == "ice"]
        reason = failed[0].get("reason", "") if failed else ""
        want = ("TURN server turn:%s:3478?transport=udp not used: could not resolve “%s”"
                % (NO_NAME, NO_NAME))
        tap.ok(rc != 0 and want in reason,
               "%s: fails in %.1f s with “%s”" % (label, elapsed, reason),
               diag="rc %s, reason %r, stderr %r" % (rc, reason, cev.text[-2000:]))
        stop(listener)
        stop(server)


NEW_HOST_A = "10.0.1.3"        # host A's address after renumbering


def renumber(lab, site, new_ip):
    """Gives the site's host a new address on its LAN and takes the old
    one away (the default route goes with it: set again), as a DHCP
    renumbering would."""
    s = lab.site(site)
    r = lab.run(s.host, "sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1 && "
                "ip addr add %s/%d dev eth0 && ip addr del %s/%d dev eth0 && "
                "ip route replace default via %s" % (new_ip, s.prefixlen, s.host_ip,
                                                      s.prefixlen, s.gw))
    return r.returncode == 0, (r.stderr or "") + lab.run(s.host, ["ip", "-4", "addr"]).stdout


def check_renumber(tap, tmp, nat_a="port-restricted", nat_b="port-restricted"):
    """A live ICE connection (direct) while host A's address changes: data
    flows again, and through what: an ICE restart (the path's own
    "restarting ICE … succeeded", no path-changed event) or the manager's
    failover (path-changed)."""
    label = "renumber A %s <-> %s (ice)" % (nat_a, nat_b)
    with Lab(site_a=nat_a, site_b=nat_b, turn=True) as lab:
        server, ready = start_server(lab, tmp)
        extra = turn_args(lab)
        listener, lev, address = start_listener(lab, tmp, "b-renumber", extra)
        if not tap.ok(address is not None, "%s: B listens" % label, diag=lev.text[-2000:]):
            stop(listener)
            stop(server)
            return
        outfile = os.path.join(tmp, "out-renumber")
        env = peer_env(tmp, "a-renumber")
        proc = lab.popen("host_a", "exec env %s G_MESSAGES_DEBUG=natkit-ice,natkit %s connect "
                         "--json --method ice %s %s > %s" % (env, NAT_TOOL, extra, address,
                                                             outfile),
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
        cev = Events(proc)
        got = cev.wait("connected", 60) or {}
        first, second = os.urandom(2000), os.urandom(2000)
        echoed = -1
        try:
            proc.stdin.write(first)
            proc.stdin.flush()
            echoed = wait_size(outfile, len(first), 20, also=(cev, lev))
        except (BrokenPipeError, OSError):
            pass
        tap.ok(got.get("method") == "ice" and echoed == len(first),
               "%s: connected by ICE (%s: %s -> %s), first echo back" % (
                   label, got.get("transport"), got.get("local_address"),
                   got.get("remote_address")),
               diag="echoed %d; stderr %r" % (echoed, cev.text[-3000:]))
        mark = len(cev.events)
        text_mark = len(cev.text)
        ok, diag = renumber(lab, "a", NEW_HOST_A)
        tap.ok(ok, "%s: host A renumbered %s -> %s" % (label, lab.host_a_ip, NEW_HOST_A),
               diag=diag)
        t0 = time.monotonic()
        echoed = -1
        try:
            proc.stdin.write(second)
            proc.stdin.flush()
            echoed = wait_size(outfile, len(first) + len(second), 40, also=(cev, lev))
        except (BrokenPipeError, OSError):
            pass
        took = time.monotonic() - t0
        cev.poll(0.5)
        changed = [e for e in cev.events[mark:] if e.get("event") == "path-changed"]
        after = cev.text[text_mark:].decode("utf-8", "replace")
        restarted = "the ICE restart with" in after and "succeeded" in after
        tap.ok(echoed == len(first) + len(second),
               "%s: data flows again %.1f s after the address change (%s)" % (
                   label, took, "ICE restart" if restarted and not changed else
                   "failover: %s" % ", ".join("%s -> %s (%s)" % (
                       e.get("from"), e.get("to"), e.get("reason")) for e in changed)
                   if changed else "?"),
               diag="echoed %d; events %r\nstderr %s" % (echoed, cev.events[mark:],
                                                         after[-6000:]))
        tap.ok(restarted and not changed,
               "%s: the ICE path itself recovered (an ICE restart, no path change)" % label,
               diag="path-changed %r\nstderr %s" % (changed, after[-6000:]))
        try:
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        rc = wait_exit_proc(proc, cev, 30, lev)
        with open(outfile, "rb") as f:
            data = f.read()
        tap.ok(rc == 0 and data == first + second,
               "%s: the echo is byte-identical and A exits 0" % label,
               diag="rc %s, %d bytes" % (rc, len(data)))
        stop(listener)
        stop(server)


def wait_exit_proc(proc, ev, timeout, other):
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        ev.poll(0.25)
        other.poll(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    ev.poll(0.2)
    return proc.returncode


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
    # NATKIT_LAB_ONLY=pairs,race,dns,renumber,quiet (comma-separated) runs only
    # those parts
    only = [p for p in os.environ.get("NATKIT_LAB_ONLY", "").split(",") if p]

    def want(part):
        return not only or part in only
    try:
        if not want("pairs"):
            pairs = []
        elif os.environ.get("NATLAB_ICE_QUICK"):
            pairs = REPRESENTATIVE
        else:
            pairs = [(a, b) for i, a in enumerate(NAT_TYPES) for b in NAT_TYPES[i:]]
        for a, b in pairs:
            run_pair(tap, tmp, a, b, ["ice"], check_ice(a, b))
        if want("race"):
            # the race: whichever completes first, among those that can work
            run_pair(tap, tmp, "port-restricted", "port-restricted",
                     ["ice", "holepunch", "relay"], check_race(("ice", "holepunch", "relay")))
            run_pair(tap, tmp, "symmetric", "symmetric", ["ice", "holepunch", "relay"],
                     check_race(("ice", "relay")))
            # and with the TURN plugin in the race too (the lab's coturn)
            run_pair(tap, tmp, "symmetric", "udp-blocked", ["ice", "holepunch", "relay", "turn"],
                     check_race(("ice", "relay", "turn")))
        if want("dns"):
            check_dns(tap, tmp)
        if want("renumber"):
            check_renumber(tap, tmp)
        if want("quiet"):
            check_quiet_after_close(tap, tmp)
    except Exception:
        tap.ok(False, "unexpected exception", diag=traceback.format_exc())
    finally:
        subprocess.run(["rm", "-rf", tmp])
    tap.diag("test_lab_ice took %.0f s" % (time.monotonic() - t0))
    tap.done()


if __name__ == "__main__":
    main()
