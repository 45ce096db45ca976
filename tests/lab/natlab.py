#!/usr/bin/python3
# natkit NAT lab: network namespaces + veth + nftables + coturn (+ miniupnpd).
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit NAT lab.

Builds a small "internet" out of Linux network namespaces, two NATed sites
with selectable NAT behavior (RFC 4787 terms), a coturn STUN/TURN server and,
on request, miniupnpd (UPnP IGD, PCP, NAT-PMP) on a router, and removes all
of it again.  Standard library only; needs root.

    from natlab import Lab
    with Lab(site_a="port-restricted", site_b="symmetric") as lab:
        lab.run(lab.host_a, ["turnutils_natdiscovery", "-m", "-f",
                             "-L", lab.host_a_ip, "198.51.100.1"])

Every packet stays inside the namespaces created here: the root namespace
gets no address, route or interface from the lab.

CLI:
    natlab.py up [--a TYPE] [--b TYPE] [--hairpin-a] [--hairpin-b] [--no-turn]
                 [--latency MS] [--loss P] [--loss-seed N]
                 [--upnp-a] [--upnp-b]
    natlab.py sweep [--all]
    natlab.py run-check [--a TYPE] [--b TYPE] [--hairpin-a] [--hairpin-b]
                        [--latency MS] [--loss P] [--loss-seed N]
    natlab.py types
    natlab.py forward ...   (internal: the WAN link delay/loss forwarder)
    natlab.py ct-flush      (internal: flush conntrack of the current netns)

See README.md next to this file.
"""

import atexit
import collections
import errno
import glob
import hashlib
import json
import math
import os
import random
import re
import secrets
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

__all__ = ["Lab", "Reflector", "Site", "LabError", "LabSkip", "NAT_TYPES",
           "BEHAVIOR", "sweep", "check_requirements", "nft_ruleset",
           "SKIP_EXIT", "HERE", "PYTHON", "PROBE", "forward",
           "MiniUPnPd", "PortMapping", "miniupnpd_nft_ruleset",
           "parse_miniupnpd_rules", "ct_flush", "MINIUPNPD",
           "UPNP_HTTP_PORT", "PCP_PORT", "SSDP_PORT"]

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
PROBE = os.path.join(HERE, "udp_probe.py")

SKIP_EXIT = 77          # meson / automake "skipped"
PREFIX = "nklab"        # every namespace / temp dir of the lab starts with it
# nklab<owner pid>x<4 hex>-<role>
_NAME_RE = re.compile(r"^(%s(\d+)x[0-9a-f]{4})-([a-z0-9]+)$" % PREFIX)
_TMP_RE = re.compile(r"^(%s(\d+)x[0-9a-f]{4})-" % PREFIX)

NAT_TYPES = ("none", "full-cone", "restricted", "port-restricted",
             "symmetric", "udp-blocked")

# RFC 4787 / RFC 5780 vocabulary for each lab type: (mapping, filtering)
BEHAVIOR = {
    "none": ("no-nat", "open"),
    "full-cone": ("endpoint-independent", "endpoint-independent"),
    "restricted": ("endpoint-independent", "address-dependent"),
    "port-restricted": ("endpoint-independent", "address-and-port-dependent"),
    "symmetric": ("address-and-port-dependent", "address-and-port-dependent"),
    "udp-blocked": ("udp-blocked", "udp-blocked"),
}

# Addresses (documentation ranges only, and only inside lab namespaces)
SERVER_IPS = ("198.51.100.1", "198.51.100.2")
INET_GW = "203.0.113.1"          # inet's own address on the WAN segment
STUN_PORT = 3478
STUN_ALT_PORT = 3479
TURN_USER = "test"
TURN_PASSWORD = "test"
TURN_REALM = "natkit.test"
TURN_TLS_PORT = 5349
TURN_REST_PORT = 3480
TURN_LIFETIME_OPTIONS = {"allocation": "--max-allocate-lifetime",
                         "channel": "--channel-lifetime",
                         "permission": "--permission-lifetime"}

# miniupnpd on a site router (Lab.start_miniupnpd)
MINIUPNPD = "/usr/sbin/miniupnpd"
UPNP_HTTP_PORT = 2869      # fixed HTTP port: http://<gw>:2869/rootDesc.xml
PCP_PORT = 5351            # PCP and NAT-PMP (same socket)
SSDP_PORT = 1900           # SSDP, multicast 239.255.255.250
# the router's own ephemeral ports while miniupnpd runs: disjoint from the
# hosts' (32768-60999), so its STUN check never leaves a conntrack entry on
# a port a host could later want for its own (port-preserving) mapping
ROUTER_PORT_RANGE = "61000 61999"
# miniupnpd's chains (Debian's miniupnpd-nftables, compiled-in defaults:
# upnp_table_name / upnp_nat_table_name "filter", family inet)
UPNP_TABLE = "filter"
UPNP_CHAINS = ("miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd")

_SITES = {
    "a": {"wan": "203.0.113.10", "lan_net": "10.0.1.0/24", "gw": "10.0.1.1",
          "host": "10.0.1.2", "pub_net": "203.0.113.32/28",
          "pub_gw": "203.0.113.33", "pub_host": "203.0.113.34"},
    "b": {"wan": "203.0.113.20", "lan_net": "10.0.2.0/24", "gw": "10.0.2.1",
          "host": "10.0.2.2", "pub_net": "203.0.113.48/28",
          "pub_gw": "203.0.113.49", "pub_host": "203.0.113.50"},
}

NFT_TABLE = "natlab"
MAP_TIMEOUT = "120s"   # lifetime of a full-cone/restricted mapping record


class LabError(RuntimeError):
    """The lab could not be built or a command inside it failed."""


class LabSkip(RuntimeError):
    """The lab cannot run here (not root, tool missing)."""


def _log(msg):
    if os.environ.get("NATLAB_VERBOSE"):
        sys.stderr.write("natlab: %s\n" % msg)


# --------------------------------------------------------------------------
# requirements / process helpers

def check_requirements(turn=True, miniupnpd=False):
    """Raise LabSkip with a readable reason if the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabSkip("lab tests need root (network namespaces, nftables): "
                      "skipped")
    missing = [t for t in ("ip", "nft", "ss") if shutil.which(t) is None]
    if turn and shutil.which("turnserver") is None:
        missing.append("turnserver (coturn)")
    if miniupnpd and not os.access(MINIUPNPD, os.X_OK):
        missing.append("%s (miniupnpd-nftables)" % MINIUPNPD)
    if not os.path.exists(PYTHON):
        missing.append(PYTHON)
    if missing:
        raise LabSkip("lab tests need %s: skipped" % ", ".join(missing))
    try:
        r = subprocess.run(["ip", "netns", "list"], capture_output=True,
                           text=True, timeout=10)
    except OSError as e:
        raise LabSkip("cannot run ip netns (%s): skipped" % e)
    if r.returncode != 0:
        raise LabSkip("ip netns unusable (%s): skipped" % r.stderr.strip())


def _sh(cmd, input=None, check=True, timeout=30):
    r = subprocess.run(cmd, input=input, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise LabError("command failed (%d): %s\n%s%s" % (
            r.returncode, " ".join(cmd), r.stdout, r.stderr))
    return r


def _proc_starttime(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces / parentheses: split after the last ')'
    fields = data[data.rfind(")") + 2:].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _pid_alive(pid):
    """True if pid runs (a zombie, e.g. a kill -9'ed owner not yet reaped,
    counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not _is_zombie(pid)


def _netns_list():
    r = _sh(["ip", "netns", "list"], check=False)
    names = []
    for line in r.stdout.splitlines():
        if line.strip():
            names.append(line.split()[0])
    return names


def _netns_pids(ns):
    r = _sh(["ip", "netns", "pids", ns], check=False)
    pids = []
    for tok in r.stdout.split():
        if tok.isdigit():
            pids.append(int(tok))
    return pids


def _kill_pids(pids, grace=2.0):
    """SIGTERM the given pids (all of them lab processes), then SIGKILL."""
    pids = [p for p in pids if p != os.getpid()]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _pid_alive(p) and not _is_zombie(p)]
        if pids:
            time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
        return data[data.rfind(")") + 2:].split()[0] == "Z"
    except OSError:
        return True


NETNS_ETC = "/etc/netns"   # `ip netns exec NS` bind-mounts NETNS_ETC/NS/* over /etc/*


def _remove_netns_etc(ns):
    """Remove NETNS_ETC/ns (a lab's hosts and resolv.conf), and NETNS_ETC
    itself once empty."""
    shutil.rmtree(os.path.join(NETNS_ETC, ns), ignore_errors=True)
    try:
        os.rmdir(NETNS_ETC)
    except OSError:
        pass          # absent, or others' files in it


def _delete_netns(ns):
    """Kill whatever still runs inside a lab namespace, then delete it
    (and its NETNS_ETC folder, see Lab(hosts=…))."""
    for _ in range(3):
        pids = _netns_pids(ns)
        if not pids:
            break
        _kill_pids(pids)
    _sh(["ip", "netns", "del", ns], check=False)
    if os.path.isdir(os.path.join(NETNS_ETC, ns)):
        _remove_netns_etc(ns)


# --------------------------------------------------------------------------
# sweep: leftovers of killed runs

def _owner_is_alive(labid, pid):
    if not _pid_alive(pid):
        return False
    # pid reuse: compare with the start time recorded by the owner
    for d in glob.glob(os.path.join(tempfile.gettempdir(), labid + "-*")):
        try:
            with open(os.path.join(d, "owner")) as f:
                rec_pid, rec_start = f.read().split()
            if int(rec_pid) == pid and _proc_starttime(pid) != int(rec_start):
                return False
        except (OSError, ValueError):
            pass
    return True


def sweep(all_labs=False, verbose=False, exclude=()):
    """Remove lab namespaces, their processes and temp dirs.

    By default only labs whose owner process is gone (kill -9, crash) are
    removed; all_labs=True removes every natkit lab on the machine.
    Returns the list of removed lab ids."""
    labs = {}
    for ns in _netns_list():
        m = _NAME_RE.match(ns)
        if m:
            labs.setdefault(m.group(1), (int(m.group(2)), []))[1].append(ns)
    tmpbase = tempfile.gettempdir()
    tmpdirs = {}
    for d in os.listdir(tmpbase) if os.path.isdir(tmpbase) else []:
        m = _TMP_RE.match(d)
        if m and os.path.isdir(os.path.join(tmpbase, d)):
            tmpdirs.setdefault(m.group(1), (int(m.group(2)), []))[1].append(
                os.path.join(tmpbase, d))
            labs.setdefault(m.group(1), (int(m.group(2)), []))
    # NETNS_ETC/NS of namespaces already gone (a run killed in between)
    etc = {}
    for d in os.listdir(NETNS_ETC) if os.path.isdir(NETNS_ETC) else []:
        m = _NAME_RE.match(d)
        if m:
            etc.setdefault(m.group(1), []).append(d)
            labs.setdefault(m.group(1), (int(m.group(2)), []))
    removed = []
    for labid, (pid, nss) in sorted(labs.items()):
        if labid in exclude:
            continue
        if not all_labs and _owner_is_alive(labid, pid):
            continue
        if verbose:
            print("sweep: removing lab %s (owner pid %d%s): %s" % (
                labid, pid, "" if _pid_alive(pid) else ", dead",
                " ".join(nss) or "no namespaces"))
        # kill processes of all namespaces first (turnserver, probes)
        for ns in nss:
            _kill_pids(_netns_pids(ns))
        for ns in nss:
            _delete_netns(ns)
        for d in tmpdirs.get(labid, (0, []))[1]:
            shutil.rmtree(d, ignore_errors=True)
        for d in etc.get(labid, []):
            _remove_netns_etc(d)
        removed.append(labid)
    return removed


# --------------------------------------------------------------------------
# nftables rule generation

def nft_ruleset(nat, wan, lan_net, hairpin):
    """Return the nft script for a site router.

    Interfaces inside the router namespace are called "wan" and "lan"."""
    if nat not in NAT_TYPES:
        raise ValueError("unknown NAT type %r (one of %s)" % (
            nat, ", ".join(NAT_TYPES)))
    is_nat = nat != "none"
    hairpin = bool(hairpin) and nat not in ("none", "udp-blocked")
    random = " fully-random" if nat == "symmetric" else ""
    L = []
    a = L.append
    a("table ip %s {" % NFT_TABLE)
    # mapping records: mapped WAN port -> LAN endpoint, and for the
    # restricted cone the remote addresses each mapping has sent to
    a("  map emap { type inet_service : ipv4_addr . inet_service;"
      " flags dynamic,timeout; timeout %s; size 65535; }" % MAP_TIMEOUT)
    a("  set peers { type inet_service . ipv4_addr;"
      " flags dynamic,timeout; timeout %s; size 65535; }" % MAP_TIMEOUT)

    # --- DNAT: unsolicited inbound to a mapping, hairpin -------------------
    a("  chain prerouting {")
    a("    type nat hook prerouting priority dstnat; policy accept;")
    if nat == "full-cone":
        a("    iifname \"wan\" ip daddr %s udp dport @emap"
          " dnat ip to udp dport map @emap" % wan)
    elif nat == "restricted":
        a("    iifname \"wan\" ip daddr %s udp dport . ip saddr @peers"
          " dnat ip to udp dport map @emap" % wan)
    if hairpin:
        a("    iifname \"lan\" ip daddr %s udp dport @emap"
          " dnat ip to udp dport map @emap" % wan)
    a("  }")

    # --- SNAT --------------------------------------------------------------
    a("  chain postrouting {")
    a("    type nat hook postrouting priority srcnat; policy accept;")
    if hairpin:
        # hairpinned packet: source becomes the sender's public address
        a("    oifname \"lan\" ip saddr %s ct status dnat"
          " snat ip to %s%s" % (lan_net, wan, random))
    if is_nat:
        a("    oifname \"wan\" ip saddr %s masquerade%s" % (lan_net, random))
    a("  }")

    # --- record mappings (runs after srcnat: packet already rewritten) -----
    if nat in ("full-cone", "restricted") or hairpin:
        a("  chain record {")
        a("    type filter hook postrouting priority srcnat + 10;"
          " policy accept;")
        a("    oifname \"wan\" ip saddr %s ct direction original"
          " ct status snat update @emap { udp sport :"
          " ct original ip saddr . ct original proto-src }" % wan)
        if nat == "restricted":
            a("    oifname \"wan\" ip saddr %s"
              " ct status & (snat | dnat) != 0"
              " update @peers { udp sport . ip daddr }" % wan)
        a("  }")

    # --- forward filter ------------------------------------------------------
    a("  chain forward {")
    a("    type filter hook forward priority filter; policy %s;"
      % ("accept" if nat == "none" else "drop"))
    if nat == "udp-blocked":
        a("    meta l4proto udp drop")
    if nat != "none":
        a("    ct state invalid drop")
        a("    ct state established,related accept")
        a("    iifname \"lan\" oifname \"wan\" ip saddr %s accept" % lan_net)
        if nat in ("full-cone", "restricted"):
            a("    iifname \"wan\" oifname \"lan\" ct status dnat accept")
        if hairpin:
            a("    iifname \"lan\" oifname \"lan\" ct status dnat accept")
    a("  }")

    # --- the router's own input: nothing unsolicited from the WAN ----------
    # (an accepted unsolicited packet would confirm a conntrack entry that
    # collides with the LAN host's next mapping of that port)
    a("  chain input {")
    a("    type filter hook input priority filter; policy drop;")
    a("    iif \"lo\" accept")
    a("    ct state established,related accept")
    a("    iifname \"lan\" icmp type echo-request accept")
    a("  }")
    a("}")
    return "\n".join(L) + "\n"


def miniupnpd_nft_ruleset(nat, wan, http_port=UPNP_HTTP_PORT, upnp=True,
                          natpmp=True, setup=True):
    """Return the nft script that prepares a site router for miniupnpd.

    setup=True (first start on that router) creates miniupnpd's own table
    the way Debian's /etc/miniupnpd/nft_init.sh does (table inet filter:
    base chains forward / prerouting / postrouting jumping to the chains
    miniupnpd fills: miniupnpd, prerouting_miniupnpd,
    postrouting_miniupnpd), and hooks the lab's table to it: DNATed flows
    from the WAN pass the lab's forward filter (port-restricted and
    symmetric have no such rule of their own), and the router's input
    jumps to chain upnp_input.  Every call (re)writes upnp_input: from the
    LAN, udp 5351 (PCP / NAT-PMP) when natpmp, udp 1900 (SSDP, unicast and
    239.255.255.250) and tcp http_port when upnp; from the WAN, only the
    coturn answers to miniupnpd's STUN check (from 198.51.100.1/.2 ports
    3478/3479, and only while a local socket is bound to the port:
    `socket transparent 0` does not match without one), so the WAN stays
    closed to unsolicited packets.  A service that is off is dropped
    silently (no ICMP)."""
    L = []
    a = L.append
    if setup:
        a("table inet %s {" % UPNP_TABLE)
        a("  chain forward {")
        a("    type filter hook forward priority filter; policy accept;")
        a("    jump miniupnpd")
        a("  }")
        a("  chain miniupnpd {")
        a("  }")
        a("  chain prerouting {")
        a("    type nat hook prerouting priority dstnat; policy accept;")
        a("    jump prerouting_miniupnpd")
        a("  }")
        a("  chain postrouting {")
        a("    type nat hook postrouting priority srcnat; policy accept;")
        a("    jump postrouting_miniupnpd")
        a("  }")
        a("  chain prerouting_miniupnpd {")
        a("  }")
        a("  chain postrouting_miniupnpd {")
        a("  }")
        a("}")
        a("add chain ip %s upnp_input" % NFT_TABLE)
        a("add rule ip %s input jump upnp_input" % NFT_TABLE)
        if nat not in ("none", "full-cone", "restricted"):
            # the lab's forward chain (policy drop) must let miniupnpd's
            # DNATed flows through; both filter chains must accept
            a("add rule ip %s forward iifname \"wan\" oifname \"lan\""
              " ct status dnat accept" % NFT_TABLE)
    a("flush chain ip %s upnp_input" % NFT_TABLE)
    if natpmp:
        a("add rule ip %s upnp_input iifname \"lan\" udp dport %d accept"
          % (NFT_TABLE, PCP_PORT))
    if upnp:
        a("add rule ip %s upnp_input iifname \"lan\" udp dport %d accept"
          % (NFT_TABLE, SSDP_PORT))
        a("add rule ip %s upnp_input iifname \"lan\" tcp dport %d accept"
          % (NFT_TABLE, http_port))
    a("add rule ip %s upnp_input iifname \"wan\" ip daddr %s"
      " ip saddr { %s } udp sport { %d, %d } socket transparent 0 accept"
      % (NFT_TABLE, wan, ", ".join(SERVER_IPS), STUN_PORT, STUN_ALT_PORT))
    return "\n".join(L) + "\n"


PortMapping = collections.namedtuple(
    "PortMapping", ["proto", "ext_port", "int_ip", "int_port"])
PortMapping.__doc__ = """One DNAT rule of miniupnpd: proto "udp"/"tcp",
external port, internal address and port (a plain tuple too)."""

_IPPROTO_NAMES = {6: "tcp", 17: "udp"}


def parse_miniupnpd_rules(text):
    """Parse `nft list chain inet filter prerouting_miniupnpd` output
    (miniupnpd 2.3.1 writes e.g. `iif "wan" @nh,72,8 0x11 th dport 4000
    dnat ip to 10.0.1.2:4000`) into PortMapping tuples, in rule order."""
    res = []
    for line in text.splitlines():
        m = re.search(r"dnat ip to ([0-9.]+):(\d+)", line)
        if not m:
            continue
        proto = None
        p = re.search(r"@nh,72,8 (0x[0-9a-fA-F]+|\d+)", line)
        if p:
            num = int(p.group(1), 0)
            proto = _IPPROTO_NAMES.get(num, str(num))
        else:
            p = re.search(r"(?:ip protocol|meta l4proto) (\w+)", line)
            if p:
                proto = p.group(1)
        d = re.search(r"(?:th|udp|tcp) dport (\d+)", line)
        if proto is None:
            p = re.search(r"\b(udp|tcp) dport", line)
            proto = p.group(1) if p else None
        res.append(PortMapping(proto, int(d.group(1)) if d else None,
                               m.group(1), int(m.group(2))))
    return res


# --------------------------------------------------------------------------
# conntrack flush (no conntrack(8) needed): ctnetlink IPCTNL_MSG_CT_DELETE
# without attributes empties the table of the current namespace

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 2


def ct_flush(family=socket.AF_INET):
    """Delete every conntrack entry of `family` in the current network
    namespace (what `conntrack -F` does)."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        s.bind((0, 0))
        payload = struct.pack("=BBH", family, 0, 0)     # struct nfgenmsg
        msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
        s.send(struct.pack("=IHHII", 16 + len(payload), msg_type,
                           NLM_F_REQUEST | NLM_F_ACK, 1, 0) + payload)
        s.settimeout(5)
        data = s.recv(8192)
        _, typ, _, _, _ = struct.unpack_from("=IHHII", data)
        if typ == NLMSG_ERROR:
            err = struct.unpack_from("=i", data, 16)[0]
            if err not in (0, -errno.ENOENT):
                raise OSError(-err, "conntrack flush: %s" % os.strerror(-err))
    finally:
        s.close()


# --------------------------------------------------------------------------
# WAN link emulation: delay / loss forwarder (tc netem is not available)
#
# With Lab(latency_ms=..., loss=...) each site's WAN link is cut in two by a
# "delay" namespace <id>-d<site> holding two veth ends, "inet" (peer: the
# bridge port v<site> in inet) and "router" (peer: "wan" in the router).
# forward() runs there: two AF_PACKET sockets, every frame read on one side
# is written to the other side latency_ms later (FIFO per direction, so
# nothing is reordered), IPv4 frames are dropped with probability loss.  It is
# a plain L2 wire: ARP and everything else pass unchanged (and delayed);
# MAC addresses are those of the inet bridge port and the router's wan.

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_VNET_HDR = 15          # keep checksum-offload / GSO metadata
PACKET_IGNORE_OUTGOING = 23   # do not read back what we send (Linux 4.20)
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
VNET_HDR_LEN = 10             # struct virtio_net_hdr
ETH_P_IP = b"\x08\x00"
FWD_QUEUE_BYTES = 64 << 20    # per direction; more is tail-dropped
FWD_BATCH = 256               # frames read from one side per wakeup


def _packet_socket(ifname):
    # protocol 0 until bound: receive nothing from other interfaces
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    # frames carry a virtio_net_hdr: a frame whose checksum is left to the
    # NIC (CHECKSUM_PARTIAL) or a GSO super-frame is written out with the
    # same metadata, so the kernel completes it exactly as it would have
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass                  # old kernel: filtered by pkttype below
    for opt, size in ((socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, size)
        except OSError:
            pass
    s.bind((ifname, ETH_P_ALL))
    # promiscuous while the socket lives: frames for the MAC on the far side
    mreq = struct.pack("iHH8s", socket.if_nametoindex(ifname),
                       PACKET_MR_PROMISC, 0, b"")
    s.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    s.setblocking(False)
    return s


def _read_control(path):
    """The extra delay of a forwarder: (seconds, set of IPv4 destinations as
    4-byte strings) from the JSON file {"delay_ms": N, "to": [IP, ...]}."""
    try:
        with open(path) as f:
            c = json.load(f)
        return (max(0.0, float(c.get("delay_ms", 0))) / 1000.0,
                {socket.inet_aton(a) for a in c.get("to", [])})
    except (OSError, ValueError, TypeError):
        return 0.0, set()


def forward(if1, if2, latency_ms=0.0, loss=0.0, seed=None, owner=None,
            ready=None, stats=None, control=None):
    """Copy every frame between interfaces if1 and if2 (of the current
    namespace), each one latency_ms after it arrived, dropping IPv4 frames
    with probability loss (random.Random(seed)).  Returns the counters
    (also kept up to date in `stats` if given: per direction if1->if2,
    if2->if1) when an interface goes away or the process `owner` exits;
    blocks without a timeout while nothing is queued (no CPU when idle).
    control: a JSON file (see Lab.delay_to) naming IPv4 destinations whose
    frames from if2 to if1 get an extra delay, re-read when it changes;
    they wait in a queue of their own, so other traffic is not held up."""
    delay = max(0.0, float(latency_ms)) / 1000.0
    loss = float(loss)
    rng = random.Random(seed)
    socks = [_packet_socket(if1), _packet_socket(if2)]
    # queue[i]: frames read on socks[i], to be written to socks[1 - i]
    queues = [collections.deque(), collections.deque()]
    qbytes = [0, 0]
    # frames from if2 to destinations under the extra delay
    slowq = collections.deque()
    extra, slow_dst, control_mtime, control_checked = 0.0, set(), None, 0.0
    if stats is None:
        stats = {}
    for k in ("in", "out", "lost", "dropped"):
        stats[k] = [0, 0]
    ep = select.epoll()
    for i, s in enumerate(socks):
        ep.register(s.fileno(), select.EPOLLIN)
    fd_side = {s.fileno(): i for i, s in enumerate(socks)}
    owner_fd = None
    if owner:
        try:
            owner_fd = os.pidfd_open(owner)
            ep.register(owner_fd, select.EPOLLIN)
        except (AttributeError, OSError):
            if not _pid_alive(owner):
                return stats
    if ready:
        ready()
    buf = bytearray(VNET_HDR_LEN + 65536 + 4096)
    view = memoryview(buf)
    mono = time.monotonic
    dead = (errno.ENETDOWN, errno.ENXIO, errno.ENODEV)
    while True:
        now = mono()
        # release what is due, oldest first
        if control and now - control_checked >= 0.2:
            control_checked = now
            try:
                mtime = os.stat(control).st_mtime_ns
            except OSError:
                mtime = None
            if mtime != control_mtime:
                control_mtime = mtime
                extra, slow_dst = _read_control(control) if mtime else (0.0, set())
        for i, q in ((0, queues[0]), (1, queues[1]), (1, slowq)):
            out = socks[1 - i]
            while q and q[0][0] <= now:
                frame = q.popleft()[1]
                qbytes[i] -= len(frame)
                try:
                    out.send(frame)
                    stats["out"][i] += 1
                except OSError as e:
                    if e.errno in dead:
                        return stats
                    stats["dropped"][i] += 1
        due = [q[0][0] for q in (queues[0], queues[1], slowq) if q]
        timeout = max(0.0, min(due) - now) if due else None
        if control and (timeout is None or timeout > 0.2):
            timeout = 0.2
        try:
            events = ep.poll(timeout)
        except InterruptedError:
            continue
        now = mono()
        for fd, _ in events:
            if fd == owner_fd:
                return stats
            i = fd_side[fd]
            s = socks[i]
            for _ in range(FWD_BATCH):
                try:
                    n, addr = s.recvfrom_into(buf)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno in dead:
                        return stats
                    break
                if addr[2] == PACKET_OUTGOING or n <= VNET_HDR_LEN + 14:
                    continue
                stats["in"][i] += 1
                off = VNET_HDR_LEN + 12
                if loss > 0 and view[off:off + 2] == ETH_P_IP \
                        and rng.random() < loss:
                    stats["lost"][i] += 1
                    continue
                if qbytes[i] + n > FWD_QUEUE_BYTES:
                    stats["dropped"][i] += 1
                    continue
                frame = bytes(view[:n])
                if i == 1 and slow_dst and view[off:off + 2] == ETH_P_IP \
                        and bytes(view[off + 18:off + 22]) in slow_dst:
                    slowq.append((now + delay + extra, frame))
                    qbytes[i] += n
                    continue
                if delay <= 0 and not queues[i]:
                    try:
                        socks[1 - i].send(frame)
                        stats["out"][i] += 1
                    except OSError as e:
                        if e.errno in dead:
                            return stats
                        stats["dropped"][i] += 1
                    continue
                queues[i].append((now + delay, frame))
                qbytes[i] += n


def _cmd_forward(args):
    # the lab stops us with SIGTERM; a terminal's ^C is for the lab's owner
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

    def ready():
        print("READY", flush=True)
    stats = {}
    try:
        forward(args.ifs[0], args.ifs[1], args.latency, args.loss,
                args.seed, args.owner, ready, stats, args.control)
    finally:
        sys.stderr.write("natlab forward %s<->%s: %s\n" % (
            args.ifs[0], args.ifs[1], json.dumps(stats)))
    return 0


# --------------------------------------------------------------------------
# the lab

_ACTIVE = []
_HANDLERS_INSTALLED = False
_LOCK = threading.Lock()


def _cleanup_all():
    for lab in list(_ACTIVE):
        try:
            lab.teardown()
        except Exception as e:  # pragma: no cover - best effort
            sys.stderr.write("natlab: teardown failed: %s\n" % e)


def _on_signal(signum, frame):
    # no second signal in the middle of the cleanup
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    _cleanup_all()
    # SystemExit unwinds "with" blocks (already torn down) and runs atexit
    raise SystemExit(128 + signum)


def _install_handlers():
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


class Site:
    """One site: router namespace + LAN host namespace."""

    def __init__(self, name, nat, hairpin, router_ns, host_ns):
        cfg = _SITES[name]
        self.name = name
        self.nat = nat
        self.hairpin = bool(hairpin) and nat not in ("none", "udp-blocked")
        self.router = router_ns
        self.host = host_ns
        self.delay = None       # WAN link forwarder namespace, if any
        self.upnp_ready = False  # router prepared for miniupnpd (nft)
        self.wan = cfg["wan"]
        if nat == "none":
            self.lan_net = cfg["pub_net"]
            self.gw = cfg["pub_gw"]
            self.host_ip = cfg["pub_host"]
        else:
            self.lan_net = cfg["lan_net"]
            self.gw = cfg["gw"]
            self.host_ip = cfg["host"]
        self.prefixlen = int(self.lan_net.split("/")[1])

    @property
    def public_ip(self):
        """Address the world sees for this site's host."""
        return self.host_ip if self.nat == "none" else self.wan

    def info(self):
        d = {"nat": self.nat, "mapping": BEHAVIOR[self.nat][0],
             "filtering": BEHAVIOR[self.nat][1],
             "hairpin": self.hairpin, "router_ns": self.router,
             "host_ns": self.host, "wan_ip": self.wan,
             "lan_net": self.lan_net, "gateway": self.gw,
             "host_ip": self.host_ip, "public_ip": self.public_ip}
        if self.delay:
            d["delay_ns"] = self.delay
        return d


class Reflector:
    """Handle of a running udp_probe.py reflector."""

    def __init__(self, proc, log, udp, tcp):
        self.proc, self.log, self.udp, self.tcp = proc, log, udp, tcp

    def entries(self):
        """Datagrams / connections the reflector saw so far (list of dicts
        with proto, at, src, op)."""
        res = []
        try:
            with open(self.log) as f:
                for line in f:
                    try:
                        res.append(json.loads(line))
                    except ValueError:
                        pass
        except OSError:
            pass
        return res

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class MiniUPnPd:
    """Handle of miniupnpd running on a site router (Lab.start_miniupnpd).

    Attributes: site (name), router (namespace), proc (Popen: the
    miniupnpd process itself), upnp / natpmp (enabled services),
    http_port, gateway (LAN address it serves), url (rootDesc.xml URL,
    None without UPnP), conf / log / lease_file / pid_file (paths in the
    lab tmpdir), options / extra (what start_miniupnpd got), started_at
    (time.monotonic() when it was ready), start_s (seconds to get ready)."""

    def __init__(self, site, proc, upnp, natpmp, http_port, conf, log,
                 lease_file, pid_file, options, extra, log_offset):
        self.site = site.name
        self.router = site.router
        self.gateway = site.gw
        self.proc = proc
        self.upnp, self.natpmp = upnp, natpmp
        self.http_port = http_port
        self.conf, self.log = conf, log
        self.lease_file, self.pid_file = lease_file, pid_file
        self.options, self.extra = options, extra
        self.log_offset = log_offset
        self.started_at = None
        self.start_s = None

    @property
    def pid(self):
        return self.proc.pid

    @property
    def url(self):
        if not self.upnp:
            return None
        return "http://%s:%d/rootDesc.xml" % (self.gateway, self.http_port)

    def running(self):
        return self.proc.poll() is None

    def log_text(self, whole=False):
        """miniupnpd's output (stdout+stderr) since this start, or the
        whole log of the site's miniupnpd (every start) with whole=True."""
        try:
            with open(self.log, errors="replace") as f:
                if not whole:
                    f.seek(self.log_offset)
                return f.read()
        except OSError:
            return ""

    def info(self):
        return {"pid": self.pid, "running": self.running(),
                "upnp": self.upnp, "natpmp": self.natpmp,
                "http_port": self.http_port, "url": self.url,
                "gateway": self.gateway, "pcp_natpmp": "%s:%d" % (
                    self.gateway, PCP_PORT) if self.natpmp else None,
                "conf": self.conf, "log": self.log,
                "lease_file": self.lease_file}


class Lab:
    """A NAT lab instance.  Use as a context manager or call start() and
    teardown() yourself (teardown also runs at exit and on SIGTERM).

    latency_ms: ONE-WAY delay added on each site's WAN link, in each
    direction (host <-> server RTT grows by 2 * latency_ms, host A <-> host
    B by 4 * latency_ms).  loss: probability (0..1) that an IPv4 frame is
    dropped on a site's WAN link, independently per direction (ARP is never
    dropped); loss_seed seeds it (random when None, see info()).  With both
    0 (the default) the lab is exactly as without them: no forwarder, unless
    shaped=True asks for one anyway, so that delay_to() can slow down what a
    router sends to chosen addresses while the lab runs.

    upnp_a / upnp_b: start miniupnpd on that site's router once the lab is
    up (True, or a dict of start_miniupnpd() keyword arguments, e.g.
    {"natpmp": False}); needs turn=True (miniupnpd's STUN check)."""

    def __init__(self, site_a="port-restricted", site_b="port-restricted",
                 hairpin_a=False, hairpin_b=False, turn=True,
                 keep_tmp=False, latency_ms=0, loss=0.0, loss_seed=None,
                 upnp_a=False, upnp_b=False, shaped=False, turn_tls=False,
                 turn_secret=None, turn_lifetimes=None, hosts=None, turn_ca=False):
        for t in (site_a, site_b):
            if t not in NAT_TYPES:
                raise ValueError("unknown NAT type %r (one of %s)" % (
                    t, ", ".join(NAT_TYPES)))
        try:
            latency_ms = float(latency_ms or 0)
            loss = float(loss or 0)
        except (TypeError, ValueError):
            raise ValueError("latency_ms and loss must be numbers")
        if not math.isfinite(latency_ms) or not 0 <= latency_ms <= 10000:
            raise ValueError("latency_ms must be within 0..10000, not %r"
                             % latency_ms)
        if not 0 <= loss <= 1:
            raise ValueError("loss must be within 0..1, not %r" % loss)
        for opt in (upnp_a, upnp_b):
            if not isinstance(opt, (bool, dict)) and opt is not None:
                raise ValueError("upnp_a / upnp_b: bool or dict of "
                                 "start_miniupnpd() arguments, not %r"
                                 % (opt,))
        if (upnp_a or upnp_b) and not turn:
            raise ValueError("miniupnpd needs the lab's coturn (turn=True) "
                             "for its STUN check")
        self.want_upnp = {"a": upnp_a, "b": upnp_b}
        self.miniupnpd = {}       # site name -> MiniUPnPd (last started)
        self.latency_ms = int(latency_ms) if latency_ms.is_integer() \
            else latency_ms
        self.loss = loss
        # the WAN links get a delay/loss forwarder only when asked for
        # (shaped: for delay_to(), even without latency or loss)
        self.impaired = latency_ms > 0 or loss > 0 or bool(shaped)
        self.loss_seed = (loss_seed if loss_seed is not None
                          else secrets.randbits(31))
        self.labid = "%s%dx%s" % (PREFIX, os.getpid(), secrets.token_hex(2))
        p = self.labid + "-"
        self.inet = p + "inet"
        self.router_a, self.host_a = p + "ra", p + "ha"
        self.router_b, self.host_b = p + "rb", p + "hb"
        self.a = Site("a", site_a, hairpin_a, self.router_a, self.host_a)
        self.b = Site("b", site_b, hairpin_b, self.router_b, self.host_b)
        # delay namespaces (WAN link forwarders), None without impairment
        self.delay_a = p + "da" if self.impaired else None
        self.delay_b = p + "db" if self.impaired else None
        self.a.delay, self.b.delay = self.delay_a, self.delay_b
        self.forwarders = {}      # site name -> Popen of its forwarder
        self.site_a, self.site_b = site_a, site_b
        self.hairpin_a, self.hairpin_b = self.a.hairpin, self.b.hairpin
        self.wan_a, self.wan_b = self.a.wan, self.b.wan
        self.host_a_ip, self.host_b_ip = self.a.host_ip, self.b.host_ip
        self.gw_a, self.gw_b = self.a.gw, self.b.gw
        self.server_ips = SERVER_IPS
        self.inet_gw = INET_GW
        self.stun_primary = (SERVER_IPS[0], STUN_PORT)
        self.stun_alternate = (SERVER_IPS[1], STUN_ALT_PORT)
        self.turn_server = (SERVER_IPS[0], STUN_PORT)
        self.turn_user = TURN_USER
        self.turn_password = TURN_PASSWORD
        self.turn_realm = TURN_REALM
        self.want_turn = turn
        # turn_tls: coturn also serves TLS on TURN_TLS_PORT with a
        # self-signed certificate made in the lab tmpdir (turn_cert,
        # turn_cert_sha256); turn_secret: a second coturn on
        # TURN_REST_PORT (turn_rest_server) takes TURN REST credentials
        # made with that shared secret, see _start_turn_rest()
        # turn_ca: the TLS certificate is signed by a CA of the lab's own
        # (turn_ca_cert) for the server's IPs and the names in hosts that
        # point at them, and the hosts' namespaces trust that CA alone: an
        # /etc/netns/NS/ssl whose certs/ca-certificates.crt (GnuTLS's
        # system trust store) holds only it, which `ip netns exec` mounts
        # over /etc/ssl. Implies turn_tls. A list instead of True: the only
        # names the certificate carries.
        self.turn_ca = bool(turn_ca)
        self.turn_ca_names = (list(turn_ca) if isinstance(turn_ca, (list, tuple))
                              else None)
        self.turn_ca_cert = None
        self.turn_tls = bool(turn_tls) or self.turn_ca
        turn_tls = self.turn_tls
        self.turn_secret = turn_secret
        self.turn_tls_port = TURN_TLS_PORT if turn_tls else None
        self.turn_cert = None
        self.turn_cert_sha256 = None
        self.turn_rest_server = ((SERVER_IPS[0], TURN_REST_PORT)
                                 if turn_secret else None)
        self.turn_rest_proc = None
        self.turn_rest_log = None
        # turn_lifetimes: {"allocation": S, "channel": S, "permission": S},
        # any of them: coturn's --max-allocate-lifetime, --channel-lifetime,
        # --permission-lifetime (short ones test refreshes in seconds)
        self.turn_lifetimes = dict(turn_lifetimes or {})
        for k, v in self.turn_lifetimes.items():
            if k not in TURN_LIFETIME_OPTIONS:
                raise ValueError("turn_lifetimes: unknown key %r (one of %s)" % (
                    k, ", ".join(sorted(TURN_LIFETIME_OPTIONS))))
            if not isinstance(v, int) or not 1 <= v <= 3600:
                raise ValueError("turn_lifetimes[%r]: whole seconds 1..3600, not %r"
                                 % (k, v))
        # hosts: {NAME: IP} resolvable in every namespace of the lab (an
        # /etc/netns/NS/hosts, which `ip netns exec` mounts over /etc/hosts;
        # and a resolv.conf naming 127.0.0.1, so that any other name fails
        # at once and no DNS query leaves the lab); removed at teardown
        self.hosts = dict(hosts or {})
        for name, ip in self.hosts.items():
            if not re.match(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$", name or ""):
                raise ValueError("hosts: not a host name: %r" % (name,))
            try:
                socket.inet_aton(ip)
            except (OSError, TypeError):
                raise ValueError("hosts[%r]: not an IPv4 address: %r" % (name, ip))
        self._netns_etc = []
        self.keep_tmp = keep_tmp
        self.tmpdir = None
        self.turn_log = None
        self.turn_proc = None
        self._procs = []
        self._namespaces = []
        self._started = False
        self._torn_down = False

    # ---------------------------------------------------------------- names
    @property
    def namespaces(self):
        names = [self.inet, self.router_a, self.host_a, self.router_b,
                 self.host_b]
        if self.impaired:
            names += [self.delay_a, self.delay_b]
        return names

    def ns(self, which):
        """Map a role ("inet", "host_a", "ra", "router_b", ...) or a full
        namespace name to the namespace name."""
        roles = {"inet": self.inet, "server": self.inet,
                 "router_a": self.router_a, "ra": self.router_a,
                 "host_a": self.host_a, "ha": self.host_a,
                 "router_b": self.router_b, "rb": self.router_b,
                 "host_b": self.host_b, "hb": self.host_b}
        if self.impaired:
            roles.update({"delay_a": self.delay_a, "da": self.delay_a,
                          "delay_b": self.delay_b, "db": self.delay_b})
        if which in roles:
            return roles[which]
        if which in self.namespaces:
            return which
        raise KeyError("not a namespace of this lab: %r" % (which,))

    def site(self, which):
        if isinstance(which, Site):
            return which
        return {"a": self.a, "b": self.b}[which]

    def info(self):
        d = {"lab_id": self.labid, "tmpdir": self.tmpdir,
             "inet_ns": self.inet, "server_ips": list(SERVER_IPS),
             "inet_gw": INET_GW,
             "stun_primary": list(self.stun_primary),
             "stun_alternate": list(self.stun_alternate),
             "turn": {"enabled": bool(self.turn_proc),
                      "server": list(self.turn_server),
                      "user": TURN_USER, "password": TURN_PASSWORD,
                      "realm": TURN_REALM, "log": self.turn_log,
                      "tls_port": self.turn_tls_port,
                      "cert_sha256": self.turn_cert_sha256,
                      "secret": self.turn_secret,
                      "lifetimes": self.turn_lifetimes},
             "hosts": self.hosts,
             "site_a": self.a.info(), "site_b": self.b.info()}
        for name, h in self.miniupnpd.items():
            d["site_" + name]["miniupnpd"] = h.info()
        if self.impaired:
            d["wan_link"] = {
                "latency_ms_one_way": self.latency_ms, "loss": self.loss,
                "loss_seed": self.loss_seed,
                "delay_ns": {"a": self.delay_a, "b": self.delay_b},
                "forwarder_pids": {k: p.pid for k, p in
                                   self.forwarders.items()}}
        return d

    # ------------------------------------------------------------- commands
    def _cmd(self, ns, cmd):
        if isinstance(cmd, str):
            cmd = ["/bin/sh", "-c", cmd]
        return ["ip", "netns", "exec", self.ns(ns)] + list(cmd)

    def run(self, ns, cmd, check=False, timeout=60, capture=True, **kw):
        """Run cmd (list, or str for /bin/sh -c) in namespace ns and wait.
        Returns subprocess.CompletedProcess (text mode, output captured
        unless capture=False)."""
        if capture:
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        r = subprocess.run(self._cmd(ns, cmd), timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise LabError("in %s: %s exited %d\n%s%s" % (
                ns, cmd, r.returncode, r.stdout or "", r.stderr or ""))
        return r

    def popen(self, ns, cmd, **kw):
        """Start cmd in namespace ns; the process is killed at teardown."""
        p = subprocess.Popen(self._cmd(ns, cmd), **kw)
        self._procs.append(p)
        return p

    def probe(self, ns, *args, timeout=30):
        """Run udp_probe.py in ns and return its JSON output."""
        r = self.run(ns, [PYTHON, PROBE] + [str(a) for a in args],
                     timeout=timeout)
        if r.returncode != 0:
            raise LabError("udp_probe %s in %s failed (%d): %s" % (
                " ".join(map(str, args)), ns, r.returncode, r.stderr))
        try:
            return json.loads(r.stdout)
        except ValueError:
            raise LabError("udp_probe %s: bad output %r" % (args, r.stdout))

    def start_reflector(self, udp=None, tcp=None, ns="inet"):
        """Start udp_probe.py reflector (observer / echo server, see
        udp_probe.py) in ns, by default on ports 5000-5002 of both server
        addresses (UDP) and 5000 (TCP).  Returns a Reflector."""
        if udp is None:
            udp = ["%s:%d" % (ip, port) for ip in SERVER_IPS
                   for port in (5000, 5001, 5002)]
        if tcp is None:
            tcp = ["%s:5000" % ip for ip in SERVER_IPS]
        log = os.path.join(self.tmpdir, "reflector-%d.log" % len(self._procs))
        args = [PYTHON, PROBE, "reflector", "--log", log]
        for u in udp:
            args += ["--udp", u]
        for t in tcp:
            args += ["--tcp", t]
        errlog = log + ".stderr"
        with open(errlog, "w") as err:
            p = self.popen(ns, args, stdout=subprocess.PIPE, stderr=err,
                           stdin=subprocess.DEVNULL, text=True)
        ready, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline() if ready else ""
        if line.strip() != "READY":
            p.kill()
            with open(errlog) as f:
                raise LabError("reflector did not start: %s%s" % (
                    line, f.read()))
        return Reflector(p, log, udp, tcp)

    def nft(self, site):
        """Current nft ruleset of a site router (for debugging)."""
        return self.run(self.site(site).router,
                        ["nft", "list", "table", "ip", NFT_TABLE]).stdout

    # ------------------------------------------------------------ miniupnpd
    def start_miniupnpd(self, site, upnp=True, natpmp=True,
                        http_port=UPNP_HTTP_PORT, options=None, extra=(),
                        timeout=20):
        """Start miniupnpd (-d, foreground) on the router of `site` ("a" or
        "b") and wait until it serves.

        upnp: UPnP IGD (enable_upnp: SSDP on udp 1900, HTTP on tcp
        http_port of the LAN address, rootDesc at handle.url); natpmp: PCP
        and NAT-PMP on udp 5351 (enable_natpmp, as miniupnpd 2.3.1 names
        its enable_pcp_pmp).  It listens on the router's "lan" interface,
        ext_ifname is "wan", and it learns its external address with its
        STUN check against the lab's coturn (198.51.100.1:3478), which the
        lab must run (turn=True).  options: dict of miniupnpd.conf keys
        overriding the lab's defaults (value None drops a key); extra: raw
        config lines (e.g. "allow 1024-65535 10.0.1.0/24 1024-65535").
        Config, lease, pid and log files live in the lab tmpdir
        (miniupnpd-<site>.*).  The first start on a router also prepares
        nftables (miniupnpd_nft_ruleset()).

        Returns the MiniUPnPd handle (also in lab.miniupnpd[site]); raises
        LabError if it exits, disables port forwarding (failed STUN check)
        or does not open its sockets within `timeout` seconds."""
        s = self.site(site)
        if not self._started or self._torn_down:
            raise LabError("the lab is not running")
        if not (upnp or natpmp):
            raise ValueError("miniupnpd needs upnp or natpmp (or both)")
        if not self.turn_proc:
            raise LabError("miniupnpd needs the lab's coturn (turn=True) "
                           "for its STUN check")
        check_requirements(turn=False, miniupnpd=True)
        cur = self.miniupnpd.get(s.name)
        if cur is not None and cur.running():
            raise LabError("miniupnpd already runs on site %s (pid %d)"
                           % (s.name, cur.pid))
        http_port = int(http_port)
        _sh(["ip", "netns", "exec", s.router, "nft", "-f", "-"],
            input=miniupnpd_nft_ruleset(s.nat, s.wan, http_port, upnp,
                                        natpmp, setup=not s.upnp_ready))
        if not s.upnp_ready:
            self._sysctl(s.router,
                         {"net.ipv4.ip_local_port_range": ROUTER_PORT_RANGE})
            s.upnp_ready = True

        base = os.path.join(self.tmpdir, "miniupnpd-%s" % s.name)
        conf, log = base + ".conf", base + ".log"
        lease_file, pid_file = base + ".leases", base + ".pid"
        cfg = collections.OrderedDict([
            ("ext_ifname", "wan"),
            ("listening_ip", "lan"),
            ("http_port", http_port),
            ("enable_upnp", "yes" if upnp else "no"),
            ("enable_natpmp", "yes" if natpmp else "no"),
            ("ext_perform_stun", "yes"),
            ("ext_stun_host", SERVER_IPS[0]),
            ("ext_stun_port", STUN_PORT),
            ("lease_file", lease_file),
            ("ipv6_disable", "yes"),
            ("secure_mode", "yes"),
            ("system_uptime", "no"),      # epoch = daemon uptime
            ("notify_interval", 60),
            ("clean_ruleset_interval", 600),
            ("min_lifetime", 120),
            ("max_lifetime", 86400),
            ("friendly_name", "natkit lab router %s" % s.name.upper()),
            # miniupnpd numbers its sub-devices uuid+1, +2
            ("uuid", "3d3cec3a-8cf0-11e0-98ee-0000000%s0000" % s.name),
            ("serial", "natlab-%s" % s.name),
        ])
        for k, v in (options or {}).items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        with open(conf, "w") as f:
            f.write("# written by natlab.py for site %s\n" % s.name)
            for k, v in cfg.items():
                if isinstance(v, bool):
                    v = "yes" if v else "no"
                f.write("%s=%s\n" % (k, v))
            for line in extra:
                f.write("%s\n" % line)
        try:
            offset = os.path.getsize(log)
        except OSError:
            offset = 0
        t0 = time.monotonic()
        with open(log, "a") as out:
            out.write("--- natlab: start (%s)\n" % time.strftime("%H:%M:%S"))
            out.flush()
            proc = self.popen(s.router, [MINIUPNPD, "-d", "-f", conf,
                                         "-P", pid_file],
                              stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
        h = MiniUPnPd(s, proc, bool(upnp), bool(natpmp), http_port, conf,
                      log, lease_file, pid_file, dict(options or {}),
                      tuple(extra), offset)
        self.miniupnpd[s.name] = h
        try:
            self._wait_miniupnpd(h, timeout)
        except BaseException:
            self.miniupnpd_stop(s.name, flush=True)
            raise
        h.started_at = time.monotonic()
        h.start_s = h.started_at - t0
        _log("miniupnpd on %s up (pid %d, %.2f s)" % (s.router, h.pid,
                                                      h.start_s))
        return h

    def _wait_miniupnpd(self, h, timeout):
        want_udp = ([PCP_PORT] if h.natpmp else []) + \
            ([SSDP_PORT] if h.upnp else [])
        want_tcp = [h.http_port] if h.upnp else []
        deadline = time.monotonic() + timeout
        enabled = False
        while True:
            text = h.log_text()
            if h.proc.poll() is not None:
                raise LabError("miniupnpd on site %s exited with %d:\n%s"
                               % (h.site, h.proc.returncode, text[-3000:]))
            if "Port forwarding is now disabled" in text:
                raise LabError("miniupnpd on site %s disabled port "
                               "forwarding (STUN check failed):\n%s"
                               % (h.site, text[-3000:]))
            enabled = enabled or "Port forwarding is now enabled" in text
            if enabled:
                ok = True
                for proto, ports in (("-Hlnu", want_udp),
                                     ("-Hlnt", want_tcp)):
                    if not ports:
                        continue
                    r = self.run(h.router, ["ss", proto])
                    have = set()
                    for line in r.stdout.splitlines():
                        f = line.split()
                        if len(f) >= 4 and ":" in f[3]:
                            have.add(f[3].rsplit(":", 1)[1])
                    ok = ok and all(str(p) in have for p in ports)
                if ok:
                    return
            if time.monotonic() > deadline:
                raise LabError("miniupnpd on site %s not ready after %g s:"
                               "\n%s" % (h.site, timeout, text[-3000:]))
            time.sleep(0.02)

    def miniupnpd_stop(self, site, flush=True):
        """Stop miniupnpd on `site` (SIGTERM, SIGKILL after 3 s); no-op if
        it does not run.  miniupnpd itself leaves its nft rules behind on
        exit and keeps its lease file: flush=True (default) empties its
        chains (as Debian's init script does on stop), so nothing is
        forwarded any more.  The lease file stays: start_miniupnpd() again
        re-creates its mappings from it (miniupnpd_restart() removes it).
        The router's firewall openings stay: a request to a stopped
        miniupnpd gets an ICMP port unreachable.  Returns the exit status
        (None if it was not started)."""
        s = self.site(site)
        h = self.miniupnpd.get(s.name)
        if h is None:
            return None
        p = h.proc
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(3)
        if p in self._procs:
            self._procs.remove(p)
        if flush:
            self._miniupnpd_flush(s)
        return p.returncode

    def _miniupnpd_flush(self, s):
        if s.upnp_ready and not self._torn_down:
            _sh(["ip", "netns", "exec", s.router, "nft", "-f", "-"],
                input="".join("flush chain inet %s %s\n" % (UPNP_TABLE, c)
                              for c in UPNP_CHAINS))

    def miniupnpd_restart(self, site, flush_conntrack=True, timeout=20):
        """Restart miniupnpd on `site` the way a router reboots: stop it,
        flush its nft chains, delete its lease file (so every mapping is
        gone and the PCP / NAT-PMP epoch starts again from 0), by default
        flush the router's conntrack table too (a reboot loses it: flows
        DNATed by old mappings stop, and every NAT mapping starts afresh;
        the full-cone / restricted records in the lab's nft sets stay),
        then start it again with the same arguments.  Returns the new
        MiniUPnPd handle."""
        s = self.site(site)
        h = self.miniupnpd.get(s.name)
        if h is None:
            raise LabError("miniupnpd was never started on site %s" % s.name)
        self.miniupnpd_stop(s, flush=True)
        try:
            os.unlink(h.lease_file)
        except FileNotFoundError:
            pass
        if flush_conntrack:
            self.flush_conntrack(s)
        return self.start_miniupnpd(s, upnp=h.upnp, natpmp=h.natpmp,
                                    http_port=h.http_port,
                                    options=h.options, extra=h.extra,
                                    timeout=timeout)

    def miniupnpd_rules(self, site, text=False):
        """miniupnpd's port mappings on `site` as nftables has them: a list
        of PortMapping(proto, ext_port, int_ip, int_port) from its DNAT
        chain (prerouting_miniupnpd), in rule order; with text=True the
        nft text of its three chains (miniupnpd: filter accepts,
        prerouting_miniupnpd: DNAT, postrouting_miniupnpd: PCP PEER SNAT).
        Empty when the router was never prepared for miniupnpd."""
        s = self.site(site)
        if not s.upnp_ready:
            return "" if text else []
        chains = {}
        for c in UPNP_CHAINS:
            chains[c] = self.run(s.router, ["nft", "list", "chain", "inet",
                                            UPNP_TABLE, c], check=True).stdout
        if text:
            return "".join(chains[c] for c in UPNP_CHAINS)
        return parse_miniupnpd_rules(chains["prerouting_miniupnpd"])

    def miniupnpd_leases(self, site):
        """miniupnpd's lease file on `site`, parsed: list of dicts proto
        ("udp"/"tcp"), ext_port, int_ip, int_port, expires (Unix time the
        mapping ends, 0 for none) and desc (e.g. "libminiupnpc",
        "NAT-PMP 4000 udp", "PCP MAP <nonce>")."""
        h = self.miniupnpd.get(self.site(site).name)
        res = []
        if h is None:
            return res
        try:
            with open(h.lease_file) as f:
                lines = f.read().splitlines()
        except OSError:
            return res
        for line in lines:
            f = line.split(":", 5)
            if len(f) < 5:
                continue
            try:
                res.append({"proto": f[0].lower(), "ext_port": int(f[1]),
                            "int_ip": f[2], "int_port": int(f[3]),
                            "expires": int(f[4]),
                            "desc": f[5] if len(f) > 5 else ""})
            except ValueError:
                pass
        return res

    def miniupnpd_log(self, site, whole=False):
        """Output of miniupnpd on `site` since its last start (whole=True:
        of every start)."""
        h = self.miniupnpd.get(self.site(site).name)
        return h.log_text(whole) if h else ""

    def flush_conntrack(self, which):
        """Delete every IPv4 conntrack entry of a site's router ("a"/"b")
        or of any lab namespace (role or name), like `conntrack -F`."""
        ns = self.site(which).router if which in ("a", "b", self.a, self.b) \
            else self.ns(which)
        self.run(ns, [PYTHON, os.path.join(HERE, "natlab.py"), "ct-flush"],
                 check=True)

    # ---------------------------------------------------------------- build
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def start(self):
        if self._started:
            return self
        check_requirements(turn=self.want_turn,
                           miniupnpd=any(self.want_upnp.values()))
        self._started = True
        with _LOCK:
            _ACTIVE.append(self)
        _install_handlers()
        try:
            sweep(exclude=(self.labid,))
            self.tmpdir = tempfile.mkdtemp(prefix=self.labid + "-")
            with open(os.path.join(self.tmpdir, "owner"), "w") as f:
                f.write("%d %d\n" % (os.getpid(),
                                     _proc_starttime(os.getpid()) or 0))
            self._build()
            if self.impaired:
                self._start_forwarders()
            if self.want_turn:
                self._start_turn()
            for name in ("a", "b"):
                opt = self.want_upnp[name]
                if opt:
                    self.start_miniupnpd(
                        name, **(opt if isinstance(opt, dict) else {}))
        except BaseException:
            self.teardown()
            raise
        return self

    def _ip(self, ns, *args):
        _sh(["ip", "-n", ns] + list(args))

    def _ip_batch(self, ns, lines):
        _sh(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    def _sysctl(self, ns, settings):
        args = []
        for k, v in settings.items():
            args.append("%s=%s" % (k, v))
        _sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w"] + args)

    def _write_netns_etc(self, ns):
        d = os.path.join(NETNS_ETC, ns)
        self._netns_etc.append(ns)          # before: teardown may interrupt
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("127.0.0.1\tlocalhost\n")
            for name, ip in sorted(self.hosts.items()):
                f.write("%s\t%s\n" % (ip, name))
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write("# natkit lab %s: names from hosts only\n"
                    "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n" % self.labid)
        if self.turn_ca and ns in (self.a.host, self.b.host):
            os.makedirs(os.path.join(d, "ssl", "certs"), exist_ok=True)
            self._make_turn_ca()
            shutil.copy(self.turn_ca_cert, os.path.join(d, "ssl", "certs",
                                                        "ca-certificates.crt"))

    def _build(self):
        for ns in self.namespaces:
            if self.hosts or self.turn_ca:
                self._write_netns_etc(ns)
            self._namespaces.append(ns)     # before: teardown may interrupt
            _sh(["ip", "netns", "add", ns])
            self._sysctl(ns, {"net.ipv6.conf.all.disable_ipv6": 1,
                              "net.ipv6.conf.default.disable_ipv6": 1})
        inet = self.inet
        # "internet": one bridge, server addresses and inet gateway on it
        cmds = ["link set lo up",
                "link add br0 type bridge",
                "link set br0 up",
                "addr add %s/24 dev br0" % SERVER_IPS[0],
                "addr add %s/24 dev br0" % SERVER_IPS[1],
                "addr add %s/24 dev br0" % INET_GW]
        for s in (self.a, self.b):
            v = "v" + s.name
            # veth created inside inet, peer moved straight into the router
            # (or the delay namespace): the root namespace never holds a lab
            # interface
            if s.delay:
                cmds.append("link add %s type veth peer name inet netns %s"
                            % (v, s.delay))
            else:
                cmds.append("link add %s type veth peer name wan netns %s"
                            % (v, s.router))
            cmds += ["link set %s master br0" % v,
                     "link set %s up" % v]
            if s.nat == "none":
                cmds.append("route add %s via %s" % (s.lan_net, s.wan))
        self._ip_batch(inet, cmds)
        self._sysctl(inet, {"net.ipv4.ip_forward": 1,
                            "net.ipv4.conf.all.send_redirects": 0,
                            "net.ipv4.conf.default.send_redirects": 0})

        for s in (self.a, self.b):
            if not s.delay:
                continue
            # the WAN link's middle: no address, no IP, just the forwarder
            self._ip_batch(s.delay, [
                "link set lo up",
                "link add router type veth peer name wan netns %s" % s.router,
                "link set inet up",
                "link set router up"])

        for s in (self.a, self.b):
            other = self.b if s is self.a else self.a
            rcmds = ["link set lo up",
                     "link add lan type veth peer name eth0 netns %s" % s.host,
                     "addr add %s/24 dev wan" % s.wan,
                     "link set wan up",
                     "addr add %s/%d dev lan" % (s.gw, s.prefixlen),
                     "link set lan up",
                     "route add default via %s" % INET_GW]
            if other.nat == "none":
                # public LAN of the other site: straight over the segment
                rcmds.append("route add %s via %s" % (other.lan_net,
                                                      other.wan))
            self._ip_batch(s.router, rcmds)
            self._sysctl(s.router, {
                "net.ipv4.ip_forward": 1,
                "net.ipv4.conf.all.send_redirects": 0,
                "net.ipv4.conf.default.send_redirects": 0,
                "net.ipv4.conf.all.rp_filter": 0,
                "net.ipv4.conf.default.rp_filter": 0})
            self._ip_batch(s.host, [
                "link set lo up",
                "addr add %s/%d dev eth0" % (s.host_ip, s.prefixlen),
                "link set eth0 up",
                "route add default via %s" % s.gw])
            _sh(["ip", "netns", "exec", s.router, "nft", "-f", "-"],
                input=nft_ruleset(s.nat, s.wan, s.lan_net, s.hairpin))
        _log("built %s" % self.labid)

    def delay_to(self, site, addresses, delay_ms):
        """Delays, from now on, what site's router sends to each IPv4
        address of addresses by delay_ms more than the link's latency
        (other traffic is not held up); delay_ms=0 ends it.  Needs a
        forwarder: Lab(..., shaped=True), or latency or loss."""
        if not self.impaired:
            raise LabError("delay_to needs the WAN forwarders: "
                           "Lab(..., shaped=True)")
        path = os.path.join(self.tmpdir, "delay-%s.json" % self.site(site).name)
        with open(path + ".tmp", "w") as f:
            json.dump({"delay_ms": delay_ms, "to": list(addresses)}, f)
        os.rename(path + ".tmp", path)
        # the forwarder looks every 0.2 s
        time.sleep(0.5)

    def _start_forwarders(self):
        """Start the delay/loss forwarder of each site's WAN link and wait
        until both have their sockets bound."""
        pending = []
        for i, s in enumerate((self.a, self.b)):
            errlog = os.path.join(self.tmpdir, "forward-%s.log" % s.name)
            cmd = [PYTHON, os.path.join(HERE, "natlab.py"), "forward",
                   "--if", "inet", "--if", "router",
                   "--latency", repr(float(self.latency_ms)),
                   "--loss", repr(self.loss),
                   "--seed", str(self.loss_seed + i),
                   "--owner", str(os.getpid()),
                   "--control", os.path.join(self.tmpdir, "delay-%s.json" % s.name)]
            with open(errlog, "w") as err:
                p = self.popen(s.delay, cmd, stdout=subprocess.PIPE,
                               stderr=err, stdin=subprocess.DEVNULL,
                               text=True)
            self.forwarders[s.name] = p
            pending.append((s, p, errlog))
        for s, p, errlog in pending:
            ready, _, _ = select.select([p.stdout], [], [], 10)
            line = p.stdout.readline() if ready else ""
            if line.strip() != "READY":
                with open(errlog) as f:
                    raise LabError("forwarder of site %s did not start: %s%s"
                                   % (s.name, line, f.read()))
        _log("forwarders up: %s" % " ".join(
            "%s=%d" % (k, p.pid) for k, p in self.forwarders.items()))

    def _start_turn(self):
        self.turn_log = os.path.join(self.tmpdir, "turnserver.log")
        cmd = ["turnserver", "-n",
               "--listening-ip", SERVER_IPS[0],
               "--listening-ip", SERVER_IPS[1],
               "--relay-ip", SERVER_IPS[0],
               "--relay-ip", SERVER_IPS[1],
               "--listening-port", str(STUN_PORT),
               "--alt-listening-port", str(STUN_ALT_PORT),
               "--min-port", "49152", "--max-port", "65535",
               "--lt-cred-mech", "--user", "%s:%s" % (TURN_USER,
                                                      TURN_PASSWORD),
               "--realm", TURN_REALM, "--fingerprint",
               "--no-cli", "--no-dtls",
               "--userdb", os.path.join(self.tmpdir, "turndb"),
               "--pidfile", os.path.join(self.tmpdir, "turnserver.pid"),
               "--log-file", self.turn_log, "--simple-log",
               "--no-stdout-log"]
        for k, v in sorted(self.turn_lifetimes.items()):
            # "--option=value": coturn takes these only in that form
            cmd += ["%s=%d" % (TURN_LIFETIME_OPTIONS[k], v)]
        if self.turn_lifetimes:
            # the log then names each refresh, channel bind and timeout
            cmd += ["--verbose"]
        if self.turn_tls:
            self._make_turn_cert()
            cmd += ["--cert", self.turn_cert,
                    "--pkey", self.turn_cert + ".key",
                    "--tls-listening-port", str(TURN_TLS_PORT)]
        else:
            cmd += ["--no-tls"]
        out = open(os.path.join(self.tmpdir, "turnserver.out"), "w")
        self.turn_proc = self.popen(self.inet, cmd, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        out.close()
        want = {"%s:%d" % (ip, port) for ip in SERVER_IPS
                for port in (STUN_PORT, STUN_ALT_PORT)}
        if self.turn_tls:
            want |= {"%s:%d" % (ip, TURN_TLS_PORT) for ip in SERVER_IPS}
        deadline = time.monotonic() + 15
        while True:
            if self.turn_proc.poll() is not None:
                raise LabError("turnserver exited with %d, see %s" % (
                    self.turn_proc.returncode, self.turn_log))
            r = self.run(self.inet, ["ss", "-Hnlu"])
            lines = r.stdout.splitlines()
            if self.turn_tls:
                lines += self.run(self.inet, ["ss", "-Hnlt"]).stdout.splitlines()
            have = set()
            for line in lines:
                f = line.split()
                if len(f) >= 4:
                    have.add(f[3])
            if want <= have:
                break
            if time.monotonic() > deadline:
                raise LabError("turnserver did not open %s (see %s)" % (
                    ", ".join(sorted(want - have)), self.turn_log))
            time.sleep(0.05)
        _log("turnserver up (pid %d)" % self.turn_proc.pid)
        if self.turn_secret:
            self._start_turn_rest()

    def restart_turn(self):
        """Stops coturn and starts it again with the same options: every
        allocation, permission and channel it held is gone (what a TURN
        server that drops allocations, or restarts, does to its clients)."""
        if not self.turn_proc:
            raise LabError("restart_turn needs coturn: Lab(..., turn=True)")
        self.turn_proc.terminate()
        try:
            self.turn_proc.wait(5)
        except subprocess.TimeoutExpired:
            self.turn_proc.kill()
            self.turn_proc.wait()
        secret, self.turn_secret = self.turn_secret, None
        try:
            self._start_turn()
        finally:
            self.turn_secret = secret

    def _start_turn_rest(self):
        """A second coturn for TURN REST credentials: coturn does not take
        static users and a shared secret at once ("Shared secret overrides
        username/password based auth method"), so this one only takes
        credentials made with turn_secret, on TURN_REST_PORT of the first
        server address (UDP and TCP), relaying from ports 40000-49151."""
        self.turn_rest_log = os.path.join(self.tmpdir, "turnserver-rest.log")
        cmd = ["turnserver", "-n",
               "--listening-ip", SERVER_IPS[0],
               "--relay-ip", SERVER_IPS[0],
               "--listening-port", str(TURN_REST_PORT),
               "--min-port", "40000", "--max-port", "49151",
               "--use-auth-secret", "--static-auth-secret", self.turn_secret,
               "--realm", TURN_REALM, "--fingerprint",
               "--no-cli", "--no-tls", "--no-dtls",
               "--userdb", os.path.join(self.tmpdir, "turndb-rest"),
               "--pidfile", os.path.join(self.tmpdir, "turnserver-rest.pid"),
               "--log-file", self.turn_rest_log, "--simple-log",
               "--no-stdout-log"]
        out = open(os.path.join(self.tmpdir, "turnserver-rest.out"), "w")
        self.turn_rest_proc = self.popen(self.inet, cmd, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        out.close()
        want = "%s:%d" % (SERVER_IPS[0], TURN_REST_PORT)
        deadline = time.monotonic() + 15
        while True:
            if self.turn_rest_proc.poll() is not None:
                raise LabError("the REST turnserver exited with %d, see %s" % (
                    self.turn_rest_proc.returncode, self.turn_rest_log))
            r = self.run(self.inet, ["ss", "-Hnlt"])
            if any(len(f) >= 4 and f[3] == want
                   for f in (line.split() for line in r.stdout.splitlines())):
                break
            if time.monotonic() > deadline:
                raise LabError("the REST turnserver did not open %s (see %s)"
                               % (want, self.turn_rest_log))
            time.sleep(0.05)
        _log("REST turnserver up (pid %d)" % self.turn_rest_proc.pid)

    def _make_turn_ca(self):
        """The lab's own CA (once): turn_ca_cert and its key."""
        if self.turn_ca_cert:
            return
        self.turn_ca_cert = os.path.join(self.tmpdir, "lab-ca.pem")
        _sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", "/CN=natkit lab CA %s" % self.labid,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", self.turn_ca_cert + ".key", "-out", self.turn_ca_cert])

    def _make_turn_cert(self):
        """A certificate for coturn's TLS listener (CN and subjectAltName:
        the server's IPs, and with turn_ca the names in hosts that point at
        them), self-signed or signed by the lab's CA, and its SHA-256
        fingerprint."""
        self.turn_cert = os.path.join(self.tmpdir, "turn-cert.pem")
        san = ",".join("IP:%s" % ip for ip in SERVER_IPS)
        if not self.turn_ca:
            _sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                 "-subj", "/CN=%s" % SERVER_IPS[0], "-addext",
                 "subjectAltName=%s" % san, "-keyout", self.turn_cert + ".key",
                 "-out", self.turn_cert])
        else:
            self._make_turn_ca()
            names = (sorted(self.turn_ca_names) if self.turn_ca_names is not None else
                     sorted(n for n, ip in self.hosts.items() if ip in SERVER_IPS))
            san = ",".join(["DNS:%s" % n for n in names] + [san])
            csr = self.turn_cert + ".csr"
            _sh(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", "/CN=%s" % (names[0] if names else SERVER_IPS[0]),
                 "-keyout", self.turn_cert + ".key", "-out", csr])
            ext = self.turn_cert + ".ext"
            with open(ext, "w") as f:
                f.write("subjectAltName=%s\nextendedKeyUsage=serverAuth\n"
                        "basicConstraints=CA:FALSE\n" % san)
            _sh(["openssl", "x509", "-req", "-in", csr, "-CA", self.turn_ca_cert,
                 "-CAkey", self.turn_ca_cert + ".key", "-CAcreateserial", "-days", "2",
                 "-extfile", ext, "-out", self.turn_cert])
        der = subprocess.run(["openssl", "x509", "-in", self.turn_cert,
                              "-outform", "DER"], capture_output=True,
                             check=True, timeout=30).stdout
        self.turn_cert_sha256 = hashlib.sha256(der).hexdigest()

    # ------------------------------------------------------------- teardown
    def teardown(self):
        """Stop everything this lab started and delete its namespaces.
        Safe to call more than once and from any exit path."""
        if self._torn_down or not self._started:
            return
        self._torn_down = True
        procs, self._procs = self._procs, []
        for p in procs:
            if p.poll() is None:
                try:
                    p.terminate()
                except OSError:
                    pass
        deadline = time.monotonic() + 3
        for p in procs:
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    p.kill()
                    p.wait(2)
                except (OSError, subprocess.TimeoutExpired):
                    pass
        for p in self.forwarders.values():
            if p.stdout:
                p.stdout.close()
        for ns in reversed(self._namespaces):
            _delete_netns(ns)
        self._namespaces = []
        for ns in self._netns_etc:
            _remove_netns_etc(ns)
        self._netns_etc = []
        if self.tmpdir and not self.keep_tmp:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        with _LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        _log("torn down %s" % self.labid)


# --------------------------------------------------------------------------
# CLI

def _add_site_args(p):
    p.add_argument("--a", default="port-restricted", choices=NAT_TYPES,
                   help="NAT type of site A (default port-restricted)")
    p.add_argument("--b", default="port-restricted", choices=NAT_TYPES,
                   help="NAT type of site B (default port-restricted)")
    p.add_argument("--hairpin-a", action="store_true",
                   help="site A router hairpins")
    p.add_argument("--hairpin-b", action="store_true",
                   help="site B router hairpins")


def _add_link_args(p):
    p.add_argument("--latency", type=float, default=0, metavar="MS",
                   help="one-way delay added on each site's WAN link, each "
                   "direction (host<->server RTT +2*MS; default 0: none)")
    p.add_argument("--loss", type=float, default=0.0, metavar="P",
                   help="probability 0..1 of dropping an IPv4 frame on "
                   "each site's WAN link, per direction (default 0)")
    p.add_argument("--loss-seed", type=int, default=None, metavar="N",
                   help="seed of the loss pattern (default random)")


def _link_kwargs(args):
    return {"latency_ms": args.latency, "loss": args.loss,
            "loss_seed": args.loss_seed}


def _cmd_up(args):
    lab = Lab(args.a, args.b, args.hairpin_a, args.hairpin_b,
              turn=not args.no_turn, keep_tmp=args.keep_tmp,
              upnp_a=args.upnp_a, upnp_b=args.upnp_b,
              **_link_kwargs(args))
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGHUP, _stop)
    with lab:
        print(json.dumps(lab.info(), indent=2), flush=True)
        if args.ready_file:
            with open(args.ready_file + ".tmp", "w") as f:
                json.dump(lab.info(), f, indent=2)
            os.rename(args.ready_file + ".tmp", args.ready_file)
        sys.stderr.write("natlab: lab %s up; SIGINT/SIGTERM tears it down\n"
                         % lab.labid)
        while not stop.wait(0.5):
            pass
    sys.stderr.write("natlab: lab %s removed\n" % lab.labid)
    return 0


def _cmd_sweep(args):
    removed = sweep(all_labs=args.all, verbose=True)
    print("sweep: removed %d lab(s)" % len(removed))
    return 0


def _cmd_run_check(args):
    """Bring a lab up, do one STUN binding from each host to both server
    addresses and a TURN-port liveness check, print a report, tear down."""
    ok = True
    with Lab(args.a, args.b, args.hairpin_a, args.hairpin_b,
             **_link_kwargs(args)) as lab:
        report = {"lab": lab.info(), "checks": []}
        for s in (lab.a, lab.b):
            for server in (lab.stun_primary, (SERVER_IPS[1], STUN_PORT)):
                res = lab.probe(s.host, "stun", "--to",
                                "%s:%d" % server, "--timeout", "1")
                mapped = res.get("mapped")
                if s.nat == "udp-blocked":
                    good = mapped is None
                elif s.nat == "none":
                    good = mapped is not None and \
                        mapped.split(":")[0] == s.host_ip
                else:
                    good = mapped is not None and \
                        mapped.split(":")[0] == s.wan
                ok = ok and good
                report["checks"].append({
                    "site": s.name, "nat": s.nat,
                    "server": "%s:%d" % server, "local": res.get("local"),
                    "mapped": mapped, "other_address": res.get("other"),
                    "ok": good})
        print(json.dumps(report, indent=2))
    print("run-check: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="natlab.py",
                                 description="natkit NAT lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("up", help="build a lab, print JSON, wait for "
                       "SIGINT/SIGTERM, tear down")
    _add_site_args(p)
    _add_link_args(p)
    p.add_argument("--no-turn", action="store_true",
                   help="do not start coturn")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the lab temp dir (turnserver log)")
    p.add_argument("--ready-file",
                   help="also write the JSON here once the lab is up")
    p.add_argument("--upnp-a", action="store_true",
                   help="run miniupnpd (UPnP IGD, PCP, NAT-PMP) on router A")
    p.add_argument("--upnp-b", action="store_true",
                   help="run miniupnpd (UPnP IGD, PCP, NAT-PMP) on router B")
    p = sub.add_parser("sweep", help="remove leftovers of dead labs")
    p.add_argument("--all", action="store_true",
                   help="remove every natkit lab, even of live owners")
    p = sub.add_parser("run-check", help="build a lab, check STUN through "
                       "both sites, tear down")
    _add_site_args(p)
    _add_link_args(p)
    sub.add_parser("types", help="list NAT types")
    sub.add_parser("ct-flush", help="(internal) flush the conntrack table "
                   "of the current namespace")
    p = sub.add_parser("forward", help="(internal) WAN link forwarder, "
                       "started by the lab inside a delay namespace")
    p.add_argument("--if", dest="ifs", action="append", required=True,
                   help="interface; exactly two")
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--owner", type=int, default=None,
                   help="exit when this process exits")
    p.add_argument("--control", default=None,
                   help="JSON file of an extra delay per destination")
    args = ap.parse_args(argv)

    if args.cmd == "forward":
        if len(args.ifs) != 2:
            ap.error("forward needs exactly two --if")
        return _cmd_forward(args)
    if args.cmd == "ct-flush":
        ct_flush()
        return 0
    if args.cmd == "types":
        for t in NAT_TYPES:
            print("%-16s mapping=%s filtering=%s" % (t, *BEHAVIOR[t]))
        return 0
    try:
        check_requirements(turn=args.cmd in ("run-check",) or
                           (args.cmd == "up" and not args.no_turn),
                           miniupnpd=args.cmd == "up" and
                           (args.upnp_a or args.upnp_b))
    except LabSkip as e:
        sys.stderr.write("natlab: %s\n" % e)
        return SKIP_EXIT
    try:
        return {"up": _cmd_up, "sweep": _cmd_sweep,
                "run-check": _cmd_run_check}[args.cmd](args)
    except (LabError, ValueError) as e:
        sys.stderr.write("natlab: %s\n" % e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
