#!/usr/bin/python3
# natkit benchmark: natkit-server's relay (throughput, memory, connect time).
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit-server relay figures; prints figures, asserts nothing.

1. Throughput on loopback: the same blast (--count datagrams of --size
   payload bytes, A -> B then B -> A, at most --window in flight; see
   tests/bench/bench-relay-blast.c) through
     natkit   natkit-server's UDP data plane (a circuit between two
              registered ephemeral peers, BIND/BOUND, DATA: docs/protocol.md 4)
     plain    the bench's own UDP forwarder (recvmmsg/sendmmsg, 64 a call)
     plain-1  the same forwarder one datagram per recvfrom/sendto
     coturn   coturn's turnserver (Allocate, CreatePermission, ChannelBind,
              ChannelData from A; B talks to the relayed address)
   --repeat times each, in rotating order, in the same run; medians of
   MB/s, packets/s, loss, the relay process's CPU time per GB, and the
   ratios natkit/plain and natkit/coturn.  natkit-server is started with
   --circuit-rate and --circuit-bytes raised (its defaults, 16 MiB/s and
   1 GiB per circuit, would cap and end the blast).

2. Memory: a fresh natkit-server; --peers peers register from
   --peer-procs processes (every other one with a relay reservation), then
   --circuits circuits open pairwise, both ends bound over UDP and one
   datagram sent each way.  natkit-server's VmRSS (and RssAnon) before,
   after the registrations and after the circuits: KB per registered peer
   (DESIGN.md goal: <= 8 KB per peer at 10,000 peers) and per active
   circuit.

3. --lab (root): connect time through the relay in the NAT lab (site A and
   B behind --lab-nat-a / --lab-nat-b NATs, --latency ms one way on each
   site's WAN link: host <-> server RTT 2x, A <-> B RTT 4x that, i.e. 50 ms
   by default).  natkit-server in the lab's internet on 198.51.100.1:7000,
   `nat-tool listen --exec cat` on host B, `nat-tool connect --json
   [--method relay]` on host A (a fresh identity each run); elapsed_ms of
   its "connected" event, median of --runs, in ms and in RTTs (ICMP echo
   from host A and from host B to 198.51.100.1; the relayed path's RTT is
   their sum).  Goal: <= 4 RTT.

  tests/bench/bench_relay.py [--count N] [--size B] [--repeat R]
      [--window W] [--peers N] [--circuits C] [--peer-procs P]
      [--lab] [--runs N] [--latency MS] [--skip-throughput] [--binary PATH]

Environment: NATKIT_BUILDDIR (default: _build of this source tree),
NAT_TOOL (default: $NATKIT_BUILDDIR/tools/nat-tool), NATKIT_SERVER
(default: $NATKIT_BUILDDIR/tools/natkit-server), TURNSERVER (default:
turnserver on PATH).  Everything but --lab runs on 127.0.0.1 only.

For the lead, once natkit-server and the relay plugin are merged
-----------------------------------------------------------------
Written before natkit-server existed: the forwarder, the coturn (TURN)
path, the harness and the compile step were run here; the natkit and
peers modes of bench-relay-blast.c were only run against a throw-away
Python imitation of the protocol (not part of the tree), and --lab never.
To check after the merge:

  * `meson compile -C _build` then
    `tests/bench/bench_relay.py --repeat 1 --count 20000 --peers 200 --circuits 50`
    (quick), then the defaults.  If the helper does not compile or link
    against natkit, the script says why and runs the non-natkit parts
    (it rebuilds with -DNO_NATKIT).
  * The server's command line (start_server()): `--listen 127.0.0.1:0
    --udp-port 0 --json`, plus `--circuit-rate`/`--circuit-bytes` for part 1
    (SERVER_LIMIT_ARGS).  If the server refuses those options the script
    retries without them and says so (then natkit's figures are capped at
    the default 16 MiB/s).  Port 0 must mean "any free port" and the ready
    line must report the ports actually bound; adjust start_server() if not.
  * Part 2 opens at most --reg-window (12) TLS registrations per process
    at a time, --peer-procs (2) processes: 24 < the server's 32
    unauthenticated connections per source address.  natkit-server's
    RLIMIT_NOFILE is raised to 65536 (preexec) for 10,000 peers.
  * Part 3 assumes the relay method is called "relay" (`--method relay`;
    --method '' lets natkit choose) and the plugin is in
    $NATKIT_BUILDDIR/plugins/*/ (NATKIT_PLUGIN_PATH is set to every such
    folder).
  * Found in NatkitRendezvous (framework/natkit-rendezvous.c) while
    testing against the imitation; they distort parts 2 and 3 until fixed:
    - make_socket_client() sets g_socket_client_set_timeout (10 s); that
      timeout stays on the connected socket, so a control connection that
      receives nothing for 10 s fails with "Socket I/O timed out" and
      reconnects (pings are every 25 s).  At 10,000 peers that is constant
      reconnect churn.  The peers helper counts these drops; part 2 prints
      a warning when there were any.  (Fix: g_socket_set_timeout (sock, 0)
      once connected, or time the connect with a source of its own.)
    - no TCP_NODELAY: GnuTLS writes the client's ChangeCipherSpec and
      Finished as two small segments, Nagle holds the second until the
      server's delayed ACK: ~40 ms per registration on loopback (62 ms ->
      21 ms per registration with TCP_NODELAY set by an LD_PRELOAD shim).
      Counts against the connect-time goal.
    - every connection reads and parses the system CA bundle (~20 ms of
      CPU here) although the client never uses it (it accepts any
      certificate or pins a fingerprint).
"""

import argparse
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lab"))
sys.path.insert(0, HERE)

BUILDDIR = os.path.abspath(os.environ.get("NATKIT_BUILDDIR",
                                          os.path.join(SRCDIR, "_build")))
NAT_TOOL = os.environ.get("NAT_TOOL", os.path.join(BUILDDIR, "tools", "nat-tool"))
NATKIT_SERVER = os.environ.get("NATKIT_SERVER",
                               os.path.join(BUILDDIR, "tools", "natkit-server"))
TURNSERVER = os.environ.get("TURNSERVER") or shutil.which("turnserver") or \
    "/usr/bin/turnserver"
BLAST_SOURCE = os.path.join(HERE, "bench-relay-blast.c")
PYTHON = "/usr/bin/python3"

TURN_USER, TURN_PASSWORD, TURN_REALM = "bench", "bench-password", "natkit.bench"
# part 1: lift natkit-server's per-circuit rate (16 MiB/s) and byte (1 GiB)
# limits, which would otherwise cap or end the blast
SERVER_LIMIT_ARGS = ["--circuit-rate", str(1 << 30), "--circuit-bytes", str(1 << 40)]
LAB_PORT = 7000


# ------------------------------------------------------------------ helpers

def free_udp_port(host="127.0.0.1"):
    """A UDP port free right now on host (tiny race: it is re-bound later)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_status(pid):
    """VmRSS, RssAnon, VmHWM in KB of pid, {} when gone."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "VmHWM", "Threads"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid):
    """utime + stime of pid (all threads), seconds; None when gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def fd_count(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def raise_nofile(limit=65536):
    def fn():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = max(limit, soft)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return fn


def stop(proc, sig=signal.SIGTERM, timeout=10):
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def read_line(proc, timeout, stream=None):
    """One line of proc's stdout (or stream) within timeout, '' otherwise."""
    f = stream or proc.stdout
    fd = f.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        c = os.read(fd, 1)
        if not c:
            break
        buf += c
    return buf.decode(errors="replace")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


# -------------------------------------------------------------- the helper

def pkg_config(args, env_path=None):
    env = dict(os.environ)
    if env_path:
        env["PKG_CONFIG_PATH"] = env_path
    r = subprocess.run(["pkg-config"] + args, env=env, capture_output=True, text=True)
    return r.returncode, r.stdout.split(), r.stderr.strip()


def build_blast(args, outdir):
    """(binary, has_natkit) or (None, False); messages printed."""
    if args.binary:
        return os.path.abspath(args.binary), not args.no_natkit
    out = os.path.join(outdir, "bench-relay-blast")
    base = ["gcc", "-O2", "-Wall", "-Wextra", "-o", out, BLAST_SOURCE]
    if not args.no_natkit:
        rc, flags, err = pkg_config(["--cflags", "--libs", "natkit-1"],
                                    os.path.join(BUILDDIR, "meson-uninstalled"))
        if rc == 0:
            cmd = base + flags + ["-Wl,-rpath," + os.path.join(BUILDDIR, "framework"),
                                  "-lpthread"]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode == 0:
                if r.stderr.strip():
                    print("   compiler warnings:\n%s" % r.stderr)
                return out, True
            print("   natkit parts skipped: %s did not compile/link against %s:\n   %s\n%s"
                  % (os.path.basename(BLAST_SOURCE), BUILDDIR, " ".join(cmd),
                     "\n".join(r.stderr.strip().splitlines()[-12:])))
        else:
            print("   natkit parts skipped: pkg-config natkit-1 (%s/meson-uninstalled) "
                  "failed: %s" % (BUILDDIR, err))
    rc, flags, err = pkg_config(["--cflags", "--libs", "gio-2.0"])
    if rc != 0:
        print("   pkg-config gio-2.0 failed: %s" % err)
        return None, False
    cmd = base + ["-DNO_NATKIT"] + flags + ["-lpthread"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("   could not compile %s:\n   %s\n%s" % (BLAST_SOURCE, " ".join(cmd), r.stderr))
        return None, False
    return out, False


# ----------------------------------------------------------------- servers

def start_server(tmp, name, extra=(), listen="127.0.0.1:0", udp_port=0, popen=None,
                 log=None):
    """Starts natkit-server; returns (proc, ready dict) or (None, reason)."""
    log = log or os.path.join(tmp, "%s.log" % name)
    cmd = [NATKIT_SERVER, "--listen", listen, "--udp-port", str(udp_port), "--json"] + \
        list(extra)
    with open(log, "ab") as err:
        if popen:
            proc = popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        else:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                    stdin=subprocess.DEVNULL, preexec_fn=raise_nofile())
    line = read_line(proc, 15)
    try:
        ready = json.loads(line)
    except ValueError:
        ready = None
    if not ready or ready.get("event") != "ready":
        stop(proc)
        with open(log, errors="replace") as f:
            tail = f.read()[-1500:]
        return None, "no ready line (%r); exit %s; log:\n%s" % (line, proc.returncode, tail)
    return proc, ready


def start_server_fast(tmp, name):
    """natkit-server on loopback for part 1, limits lifted if it accepts them."""
    proc, ready = start_server(tmp, name, SERVER_LIMIT_ARGS)
    if proc is None:
        proc2, ready2 = start_server(tmp, name + "-nolimits")
        if proc2 is not None:
            print("   note: natkit-server refused %s (%s); started with its default "
                  "per-circuit limits: natkit's rate may be capped"
                  % (" ".join(SERVER_LIMIT_ARGS), ready.strip().splitlines()[-1][:200]))
            return proc2, ready2
    return proc, ready


def start_forwarder(binary, tmp, b_port, batch):
    log = os.path.join(tmp, "forwarder-%d.log" % batch)
    with open(log, "w") as err:
        proc = subprocess.Popen([binary, "forwarder", "0", "127.0.0.1:%d" % b_port,
                                 "--batch", str(batch)],
                                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
    line = read_line(proc, 5)
    m = re.match(r"READY (\d+)", line)
    if not m:
        stop(proc)
        return None, None
    return proc, int(m.group(1))


def start_coturn(tmp):
    """coturn on 127.0.0.1 (long-term credentials, UDP only, loopback peers
    allowed, relay ports from a range of its own); (proc, port) or (None, why)."""
    if not os.access(TURNSERVER, os.X_OK):
        return None, "%s not found (set TURNSERVER)" % TURNSERVER
    port = free_udp_port()
    lo = 40000 + (os.getpid() % 200) * 100
    log = os.path.join(tmp, "turnserver.log")
    cmd = [TURNSERVER, "-n",
           "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
           "--listening-port", str(port),
           "--min-port", str(lo), "--max-port", str(lo + 99),
           "--lt-cred-mech", "--user", "%s:%s" % (TURN_USER, TURN_PASSWORD),
           "--realm", TURN_REALM,
           "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
           "--allow-loopback-peers",
           "--userdb", os.path.join(tmp, "turndb"),
           "--pidfile", os.path.join(tmp, "turnserver.pid"),
           "--log-file", log, "--simple-log", "--no-stdout-log"]
    out = open(os.path.join(tmp, "turnserver.out"), "w")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    out.close()
    deadline = time.monotonic() + 15
    want = "127.0.0.1:%d" % port
    while True:
        if proc.poll() is not None:
            return None, "turnserver exited with %d (see %s)" % (proc.returncode, log)
        r = subprocess.run(["ss", "-Hnlu"], capture_output=True, text=True)
        if any(len(f) >= 4 and f[3] == want for f in
               (line.split() for line in r.stdout.splitlines())):
            return proc, port
        if time.monotonic() > deadline:
            stop(proc)
            return None, "turnserver did not open %s (see %s)" % (want, log)
        time.sleep(0.05)


# ------------------------------------------------------------------ part 1

def run_blast(binary, mode_args, args, timeout=600):
    cmd = [binary] + mode_args + ["--window", str(args.window)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    result = None
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            try:
                result = json.loads(line[7:])
            except ValueError:
                pass
        elif args.verbose:
            print("   | %s" % line)
    if result is None:
        print("   %s failed (exit %s): %s%s" % (mode_args[0], r.returncode,
                                               r.stdout[-500:], r.stderr[-1500:]))
    return result


def part1(args, binary, has_natkit, tmp):
    n, size = args.count, args.size
    print("1. Throughput on loopback: %d datagrams x %d payload bytes each way, at most "
          "%d in flight (median of %d)" % (n, size, args.window, args.repeat))
    procs = []
    relays = {}          # name -> (argv for the client, pid of the relay)
    try:
        for name, batch in (("plain", 64), ("plain-1", 1)):
            b_port = free_udp_port()
            p, port = start_forwarder(binary, tmp, b_port, batch)
            if p is None:
                print("   %s: the forwarder did not start" % name)
                continue
            procs.append(p)
            relays[name] = (["plain", "127.0.0.1:%d" % port, str(n), str(size),
                             "--b-bind", "127.0.0.1:%d" % b_port], p.pid)
        turn, port = start_coturn(tmp)
        if turn is None:
            print("   coturn: skipped: %s" % port)
        else:
            procs.append(turn)
            relays["coturn"] = (["turn", "127.0.0.1:%d" % port, TURN_USER, TURN_PASSWORD,
                                 str(n), str(size)], turn.pid)
        if not has_natkit:
            print("   natkit: skipped (the helper was built without natkit)")
        elif not os.access(NATKIT_SERVER, os.X_OK):
            print("   natkit: skipped: %s not found (set NATKIT_SERVER or NATKIT_BUILDDIR)"
                  % NATKIT_SERVER)
        else:
            server, ready = start_server_fast(tmp, "server-throughput")
            if server is None:
                print("   natkit: skipped: natkit-server did not start: %s" % ready)
            else:
                procs.append(server)
                print("   natkit-server pid %d: TLS %s, UDP %s" % (
                    server.pid, ready.get("tls_port"), ready.get("udp_port")))
                relays["natkit"] = (["natkit", "127.0.0.1:%d" % ready["tls_port"], str(n),
                                     str(size)], server.pid)

        order = [k for k in ("natkit", "plain", "plain-1", "coturn") if k in relays]
        samples = {k: {"ab": [], "ba": []} for k in order}
        for rep in range(args.repeat):
            rot = order[rep % len(order):] + order[:rep % len(order)] if order else []
            for name in rot:
                argv, pid = relays[name]
                c0 = cpu_seconds(pid)
                res = run_blast(binary, argv, args)
                c1 = cpu_seconds(pid)
                if res is None:
                    continue
                res["relay_cpu_s"] = None if c0 is None or c1 is None else c1 - c0
                for d in ("ab", "ba"):
                    if d in res:
                        samples[name][d].append(res)
                if args.verbose or args.repeat == 1:
                    print("   [%d] %-8s A->B %s MB/s (loss %s %%), B->A %s MB/s (loss %s %%)"
                          % (rep + 1, name, fmt(res.get("ab", {}).get("mb_s")),
                             fmt(res.get("ab", {}).get("loss", 0) * 100, "%.2f"),
                             fmt(res.get("ba", {}).get("mb_s")),
                             fmt(res.get("ba", {}).get("loss", 0) * 100, "%.2f")), flush=True)
    finally:
        for p in procs:
            stop(p)

    print("   %-8s %-5s %9s %9s %8s %8s %10s" % ("relay", "dir", "MB/s", "kpps", "loss %",
                                                "stalls", "CPU s/GB"))
    med = {}
    for name in samples:
        for d in ("ab", "ba"):
            rs = samples[name][d]
            if not rs:
                continue
            mb = median([r[d]["mb_s"] for r in rs])
            kpps = median([r[d]["kpps"] for r in rs])
            loss = median([r[d]["loss"] * 100 for r in rs])
            stalls = median([r[d]["stalls"] for r in rs])
            # relay CPU per GB moved (both directions of one client run)
            cpu = median([r["relay_cpu_s"] / ((r.get("ab", {}).get("received", 0) +
                                              r.get("ba", {}).get("received", 0)) *
                                             size / 1e9)
                          for r in rs if r.get("relay_cpu_s") is not None and
                          (r.get("ab", {}).get("received", 0) +
                           r.get("ba", {}).get("received", 0))])
            med[(name, d)] = mb
            print("   %-8s %-5s %9s %9s %8s %8s %10s" % (
                name, {"ab": "A->B", "ba": "B->A"}[d], fmt(mb), fmt(kpps), fmt(loss, "%.2f"),
                fmt(stalls, "%.0f"), fmt(cpu, "%.2f") if d == "ab" else ""))
    for ref in ("plain", "plain-1", "coturn"):
        ratios = []
        for d in ("ab", "ba"):
            a, b = med.get(("natkit", d)), med.get((ref, d))
            ratios.append(None if a is None or not b else a / b)
        if any(r is not None for r in ratios):
            print("   natkit / %-8s A->B %sx, B->A %sx" % (ref, fmt(ratios[0], "%.2f"),
                                                      fmt(ratios[1], "%.2f")))
    for d in ("ab", "ba"):
        a, b = med.get(("coturn", d)), med.get(("plain", d))
        if a is not None and b:
            print("   coturn / plain    %s %.2fx" % ({"ab": "A->B", "ba": "B->A"}[d], a / b))
    print("   (CPU s/GB: the relay process's CPU time per GB delivered, both directions; "
          "coturn runs several relay threads, the forwarder one)")


# ------------------------------------------------------------------ part 2

def part2(args, binary, tmp):
    print("2. natkit-server memory: %d peers registered from %d process(es), then %d "
          "circuits (both ends bound over UDP, one datagram each way)"
          % (args.peers, args.peer_procs, args.circuits))
    if not os.access(NATKIT_SERVER, os.X_OK):
        print("   skipped: %s not found (set NATKIT_SERVER or NATKIT_BUILDDIR)" % NATKIT_SERVER)
        return
    server, ready = start_server(tmp, "server-memory")
    if server is None:
        print("   skipped: natkit-server did not start: %s" % ready)
        return
    clients = []
    try:
        time.sleep(0.5)
        m0 = proc_status(server.pid)
        nprocs = max(1, min(args.peer_procs, args.peers // 2))
        per = [args.peers // nprocs + (1 if i < args.peers % nprocs else 0)
               for i in range(nprocs)]
        per = [p - p % 2 for p in per]          # pairs within a process
        circ = [args.circuits // nprocs + (1 if i < args.circuits % nprocs else 0)
                for i in range(nprocs)]
        t0 = time.monotonic()
        for i in range(nprocs):
            cmd = [binary, "peers", "127.0.0.1:%d" % ready["tls_port"], str(per[i]),
                   "--circuits", str(circ[i]), "--reg-window", str(args.reg_window)]
            clients.append(subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=open(os.path.join(tmp, "peers-%d.log" % i),
                                                        "w")))
        reg = []
        for i, c in enumerate(clients):
            line = read_line(c, args.peer_timeout)
            m = re.match(r"REGISTERED (\d+) (\d+) ([\d.]+) ([\d.]+) (\d+)", line)
            if not m:
                with open(os.path.join(tmp, "peers-%d.log" % i)) as f:
                    print("   peers process %d did not register (%r):\n%s"
                          % (i, line, f.read()[-1500:]))
                return
            reg.append((int(m.group(1)), int(m.group(2)), float(m.group(3)),
                        float(m.group(4)), int(m.group(5))))
        t_reg = time.monotonic() - t0
        time.sleep(1.0)
        m1 = proc_status(server.pid)
        fds1 = fd_count(server.pid)
        ok = sum(r[0] for r in reg)
        failed = sum(r[1] for r in reg)
        for c in clients:
            c.stdin.write(b"go\n")
            c.stdin.flush()
        cres = []
        for i, c in enumerate(clients):
            line = read_line(c, args.peer_timeout)
            m = re.match(r"CIRCUITS (\d+) (\d+) (\d+) ([\d.]+) (\d+) (\d+) (\d+)", line)
            if not m:
                with open(os.path.join(tmp, "peers-%d.log" % i)) as f:
                    print("   peers process %d: no circuits (%r):\n%s"
                          % (i, line, f.read()[-1500:]))
                return
            cres.append([int(m.group(1)), int(m.group(2)), int(m.group(3)),
                         float(m.group(4)), int(m.group(5)), int(m.group(7))])
        time.sleep(1.0)
        m2 = proc_status(server.pid)
        fds2 = fd_count(server.pid)
        opened = sum(c[0] for c in cres)
        bound = sum(c[1] for c in cres)
        delivered = sum(c[2] for c in cres)
        cfailed = sum(c[4] for c in cres)
        for c in clients:
            try:
                c.stdin.write(b"go\n")
                c.stdin.flush()
            except OSError:
                pass
        for c in clients:
            try:
                c.wait(60)
            except subprocess.TimeoutExpired:
                c.kill()
        time.sleep(2.0)
        m3 = proc_status(server.pid)
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
        stop(server)

    def kb(a, b, key, count):
        if key not in a or key not in b or not count:
            return None
        return (b[key] - a[key]) / count

    print("   registered %d (%d failed) in %.1f s (%.0f/s; key generation %.1f s)"
          % (ok, failed, t_reg, ok / t_reg if t_reg else 0, max(r[3] for r in reg)))
    drops_reg, drops_circ = sum(r[4] for r in reg), sum(c[5] for c in cres)
    if drops_circ:
        print("   warning: registered peers lost their control connection %d times by the "
              "end (%d during the registrations) and reconnected: the figures include "
              "that churn" % (drops_circ, drops_reg))
    print("   natkit-server before: VmRSS %s KB (RssAnon %s KB); with %d peers: VmRSS %s KB "
          "(RssAnon %s KB), %s fds, %s threads"
          % (m0.get("VmRSS"), m0.get("RssAnon"), ok, m1.get("VmRSS"), m1.get("RssAnon"),
             fds1, m1.get("Threads")))
    print("   => %s KB per registered peer (VmRSS; RssAnon %s KB)  [goal <= 8 KB]"
          % (fmt(kb(m0, m1, "VmRSS", ok), "%.2f"), fmt(kb(m0, m1, "RssAnon", ok), "%.2f")))
    print("   circuits: %d opened (%d failed), %d with both ends bound, %d delivered a "
          "datagram each way, in %.1f s" % (opened, cfailed, bound, delivered,
                                           max(c[3] for c in cres)))
    print("   natkit-server with the circuits: VmRSS %s KB (RssAnon %s KB), %s fds"
          % (m2.get("VmRSS"), m2.get("RssAnon"), fds2))
    print("   => %s KB per active circuit (VmRSS; RssAnon %s KB)"
          % (fmt(kb(m1, m2, "VmRSS", opened), "%.2f"), fmt(kb(m1, m2, "RssAnon", opened),
                                                          "%.2f")))
    print("   after every peer disconnected: VmRSS %s KB (peak VmHWM %s KB)"
          % (m3.get("VmRSS"), m3.get("VmHWM")))


# ------------------------------------------------------------------ part 3

def ping(lab, ns, target, count=5):
    """RTTs in ms from namespace ns to target (ping if installed, else a
    raw-socket ICMP echo)."""
    if shutil.which("ping"):
        r = lab.run(ns, ["ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", target])
        return [float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout)]
    from bench_map import PING_PY
    r = lab.run(ns, [PYTHON, "-c", PING_PY, target, str(count)])
    try:
        return [x for x in json.loads(r.stdout)["rtts_ms"] if x is not None]
    except (ValueError, KeyError):
        return []


def peer_env(tmp, name):
    home = os.path.join(tmp, name)
    for sub in ("config", "state", "cache", "data"):
        os.makedirs(os.path.join(home, sub), exist_ok=True)
    plugins = ":".join(sorted(
        os.path.join(BUILDDIR, "plugins", d) for d in os.listdir(os.path.join(BUILDDIR, "plugins"))
        if os.path.isdir(os.path.join(BUILDDIR, "plugins", d)))) \
        if os.path.isdir(os.path.join(BUILDDIR, "plugins")) else ""
    return ("XDG_CONFIG_HOME=%s/config XDG_STATE_HOME=%s/state XDG_CACHE_HOME=%s/cache "
            "XDG_DATA_HOME=%s/data NATKIT_PLUGIN_SYSTEM_PATH= NATKIT_PLUGIN_PATH=%s "
            "NATKIT_PLUGIN_RANKS=" % (home, home, home, home, shlex.quote(plugins)))


def stderr_events(proc, want, timeout):
    """Reads JSON event lines of proc's stderr until one with event == want
    (returned with the monotonic time it arrived) or one of the failures."""
    buf = b""
    text = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, None, text.decode(errors="replace")
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if not r:
            if proc.poll() is not None:
                return None, None, text.decode(errors="replace")
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return None, None, text.decode(errors="replace")
        t = time.monotonic()
        text += chunk
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if e.get("event") == want or e.get("event") == "connect-failed":
                return e, t, text.decode(errors="replace")


def part3(args, tmp):
    from natlab import Lab
    print("3. Connect time through the relay on the lab: A behind %s, B behind %s, %g ms "
          "one way on each WAN link, natkit-server on 198.51.100.1:%d (median of %d)"
          % (args.lab_nat_a, args.lab_nat_b, args.latency, LAB_PORT, args.runs))
    for path, what in ((NAT_TOOL, "NAT_TOOL"), (NATKIT_SERVER, "NATKIT_SERVER")):
        if not os.access(path, os.X_OK):
            print("   skipped: %s not found (set %s or NATKIT_BUILDDIR)" % (path, what))
            return
    method = "--method %s" % shlex.quote(args.method) if args.method else ""
    with Lab(site_a=args.lab_nat_a, site_b=args.lab_nat_b, turn=False,
             latency_ms=args.latency) as lab:
        server_ip = lab.server_ips[0]
        server, ready = start_server(
            tmp, "server-lab", listen="%s:%d" % (server_ip, LAB_PORT), udp_port=LAB_PORT,
            popen=lambda cmd, **kw: lab.popen("inet", ["/bin/sh", "-c",
                                                        "ulimit -n 65536; exec " +
                                                        " ".join(map(shlex.quote, cmd))],
                                              **kw))
        if server is None:
            print("   skipped: natkit-server did not start in the lab: %s" % ready)
            return
        rtt_a = ping(lab, "host_a", server_ip)
        rtt_b = ping(lab, "host_b", server_ip)
        ra, rb = median(rtt_a), median(rtt_b)
        path_rtt = ra + rb if ra is not None and rb is not None else None
        print("   RTT (ICMP echo, median of 5): host A <-> server %s ms, host B <-> server "
              "%s ms; relayed path A <-> server <-> B %s ms (nominal %g ms)"
              % (fmt(ra, "%.1f"), fmt(rb, "%.1f"), fmt(path_rtt, "%.1f"), 4 * args.latency))
        listener = lab.popen("host_b", "exec env %s %s listen --json --server %s:%d --exec cat"
                             % (peer_env(tmp, "lab-b"), NAT_TOOL, server_ip, LAB_PORT),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        ev, _, text = stderr_events(listener, "listening", 20)
        address = (ev or {}).get("peer_address")
        if not address:
            print("   skipped: nat-tool listen did not print its address:\n%s" % text[-1500:])
            stop(listener)
            stop(server)
            return
        print("   B listens as %s" % address)
        elapsed, walls, methods = [], [], []
        for i in range(args.runs):
            cmd = "exec env %s %s connect --json %s %s < /dev/null" % (
                peer_env(tmp, "lab-a-%d" % i), NAT_TOOL, method, shlex.quote(address))
            t0 = time.monotonic()
            proc = lab.popen("host_a", cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            ev, t, text = stderr_events(proc, "connected", 60)
            stop(proc)
            if not ev or ev.get("event") != "connected":
                print("   run %d: no connection: %s" % (i + 1, (ev or {}).get("reason") or
                                                         text[-800:]))
                continue
            ms = ev.get("elapsed_ms")
            elapsed.append(ms)
            walls.append((t - t0) * 1000)
            methods.append("%s/%s" % (ev.get("method"), ev.get("transport")))
            print("   run %d: connected via %s in %s ms (process start to event %.0f ms)"
                  % (i + 1, methods[-1], ms, walls[-1]), flush=True)
            time.sleep(0.5)
        stop(listener)
        stop(server)
    if not elapsed:
        print("   no run connected")
        return
    med = median(elapsed)
    print("   connect time: median %.0f ms (min %.0f, max %.0f; process start to event %.0f "
          "ms)" % (med, min(elapsed), max(elapsed), median(walls)))
    if path_rtt:
        print("   = %.2f RTT of the relayed path (%.1f ms)  [goal <= 4 RTT]; = %.2f RTT "
              "host A <-> server" % (med / path_rtt, path_rtt, med / ra))


# -------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200000,
                        help="datagrams per direction and relay (default 200000)")
    parser.add_argument("--size", type=int, default=1200,
                        help="payload bytes per datagram (default 1200)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="blasts per relay, rotating the order (median; default 3)")
    parser.add_argument("--window", type=int, default=64,
                        help="datagrams in flight at most (default 64; 0: open loop)")
    parser.add_argument("--skip-throughput", action="store_true", help="skip part 1")
    parser.add_argument("--peers", type=int, default=10000,
                        help="part 2: registered peers (default 10000; 0 skips)")
    parser.add_argument("--circuits", type=int, default=1000,
                        help="part 2: circuits among them (default 1000)")
    parser.add_argument("--peer-procs", type=int, default=2,
                        help="part 2: processes the peers are spread over (default 2)")
    parser.add_argument("--reg-window", type=int, default=12,
                        help="part 2: registrations in flight per process (default 12; the "
                             "server accepts 32 unauthenticated connections per address)")
    parser.add_argument("--peer-timeout", type=float, default=900,
                        help="part 2: seconds a stage may take (default 900)")
    parser.add_argument("--lab", action="store_true",
                        help="part 3: connect time through the relay in the NAT lab (root)")
    parser.add_argument("--runs", type=int, default=5, help="part 3: connects (median; 5)")
    parser.add_argument("--latency", type=float, default=12.5,
                        help="part 3: one-way ms on each site's WAN link (default 12.5: "
                             "A <-> B RTT 50 ms)")
    parser.add_argument("--lab-nat-a", default="symmetric", help="part 3: NAT of site A")
    parser.add_argument("--lab-nat-b", default="symmetric", help="part 3: NAT of site B")
    parser.add_argument("--method", default="relay",
                        help="part 3: nat-tool connect --method (default relay; '' lets "
                             "natkit choose)")
    parser.add_argument("--binary", help="a built bench-relay-blast (default: compile it)")
    parser.add_argument("--no-natkit", action="store_true",
                        help="build the helper without natkit (forwarder and coturn only)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary folder (server, coturn and peer logs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="natkit-bench-relay-")
    try:
        binary, has_natkit = None, False
        if not args.skip_throughput or args.peers > 0:
            print("0. bench-relay-blast: %s" % (args.binary or "compiling %s against %s"
                                                 % (os.path.relpath(BLAST_SOURCE, SRCDIR),
                                                    BUILDDIR)))
            binary, has_natkit = build_blast(args, tmp)
            if binary is None:
                return 1
        if not args.skip_throughput:
            part1(args, binary, has_natkit, tmp)
        if args.peers > 0:
            if has_natkit:
                part2(args, binary, tmp)
            else:
                print("2. natkit-server memory: skipped (the helper was built without natkit)")
        if args.lab:
            if os.geteuid() != 0:
                print("3. connect time on the lab: skipped (needs root)")
            else:
                from natlab import LabError, LabSkip
                try:
                    part3(args, tmp)
                except LabSkip as e:
                    print("3. skipped: %s" % e)
                except LabError as e:
                    print("3. lab error: %s" % e)
    finally:
        if args.keep:
            print("logs kept in %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
