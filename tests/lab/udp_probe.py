#!/usr/bin/python3
# natkit NAT lab: tiny UDP/TCP/STUN probe run inside lab namespaces.
#
# SPDX-License-Identifier: LGPL-2.1-or-later
"""udp_probe.py - the lab's packet tool (stdlib only).

Run it inside a lab namespace (ip netns exec NS /usr/bin/python3 udp_probe.py
...).  Client sub-commands print one JSON object on stdout.

  reflector --udp IP:PORT ... [--tcp IP:PORT ...] [--log FILE]
        Observer server.  Prints "READY" once bound.  UDP JSON requests:
          {"op":"echo","id":N}            -> echo-reply {"seen": "ip:port"}
                                             from the receiving socket
          {"op":"probe","id":N,"from":[..]} -> echo-reply, then one
                                             probe-reply from each listed
                                             local socket to the seen address
          {"op":"inject","from":..,"to":..} -> (control) send unsolicited
                                             datagrams from socket "from"
        TCP: replies {"seen": "ip:port"} and closes.
        --log writes one JSON line per received datagram.
  mapping --to IP:PORT --to IP:PORT     one socket, echo to each destination
  filtering --to IP:PORT --from IP:PORT ... [--wait S]
        one socket sends a probe to --to; reports which --from sources got in
  hairpin --server IP:PORT [--wait S]
        socket 1 and 2 learn their mappings; 2 sends to 1's mapping
  tcp --to IP:PORT                      TCP connect + read the seen address
  stun --to IP:PORT [--change-ip] [--change-port] [--bind IP:PORT]
        RFC 5389/5780 Binding request; prints mapped/other/origin
  inject --via IP:PORT --from IP:PORT --to IP:PORT [--count N]
        (inside inet) ask the reflector at --via to send unsolicited
        datagrams from its socket --from to --to
  listen --bind IP:PORT [--wait S]      report every datagram received
  send --to IP:PORT [--bind IP:PORT] [--count N]
"""

import argparse
import json
import os
import selectors
import socket
import struct
import sys
import time


def hp(s):
    host, _, port = s.rpartition(":")
    return host, int(port)


def fmt(addr):
    return "%s:%d" % (addr[0], addr[1])


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def udp_socket(bind="0.0.0.0:0"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(hp(bind))
    return s


def recv_json(s, timeout):
    """Receive one JSON datagram within timeout; (obj, addr) or (None, None).
    Non-JSON datagrams are returned as {"raw": hex}."""
    s.settimeout(max(timeout, 0.001))
    try:
        data, addr = s.recvfrom(65535)
    except (socket.timeout, BlockingIOError):
        return None, None
    except ConnectionRefusedError:
        return None, None
    try:
        return json.loads(data.decode()), addr
    except (ValueError, UnicodeDecodeError):
        return {"raw": data.hex()}, addr


def request(s, dest, msg, want_op, timeout=1.5, tries=3):
    """Send msg to dest until a reply with op want_op and same id arrives."""
    per = timeout / tries
    for _ in range(tries):
        try:
            s.sendto(json.dumps(msg).encode(), dest)
        except OSError:
            pass
        end = time.monotonic() + per
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            obj, addr = recv_json(s, left)
            if obj is None:
                break
            if obj.get("op") == want_op and obj.get("id") == msg.get("id"):
                return obj, addr
    return None, None


# ------------------------------------------------------------------ server

# "inject" control requests are only taken from the inet namespace itself
LOCAL_CONTROL = ("127.0.0.1", "198.51.100.1", "198.51.100.2", "203.0.113.1")


def cmd_reflector(a):
    sel = selectors.DefaultSelector()
    udp = {}
    for b in a.udp:
        s = udp_socket(b)
        s.setblocking(False)
        udp[fmt(hp(b))] = s
        sel.register(s, selectors.EVENT_READ, ("udp", fmt(hp(b))))
    for b in a.tcp:
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind(hp(b))
        t.listen(16)
        t.setblocking(False)
        sel.register(t, selectors.EVENT_READ, ("tcp", fmt(hp(b))))
    log = open(a.log, "a", buffering=1) if a.log else None
    print("READY", flush=True)
    while True:
        for key, _ in sel.select():
            kind, local = key.data
            if kind == "tcp":
                try:
                    c, addr = key.fileobj.accept()
                except OSError:
                    continue
                try:
                    c.settimeout(1)
                    c.sendall(json.dumps({"seen": fmt(addr),
                                          "at": local}).encode())
                except OSError:
                    pass
                c.close()
                if log:
                    log.write(json.dumps({"proto": "tcp", "at": local,
                                          "src": fmt(addr)}) + "\n")
                continue
            s = key.fileobj
            try:
                data, addr = s.recvfrom(65535)
            except OSError:
                continue
            try:
                msg = json.loads(data.decode())
            except (ValueError, UnicodeDecodeError):
                msg = {}
            if log:
                log.write(json.dumps({"proto": "udp", "at": local,
                                      "src": fmt(addr),
                                      "op": msg.get("op")}) + "\n")
            op = msg.get("op")
            if op == "inject" and addr[0] in LOCAL_CONTROL:
                # control request (sent from inside inet): send unsolicited
                # datagrams from one of our sockets to a target
                sock = udp.get(msg.get("from"))
                sent = 0
                if sock is not None:
                    for i in range(int(msg.get("count", 3))):
                        try:
                            sock.sendto(json.dumps(
                                {"op": "unsolicited", "id": i}).encode(),
                                hp(msg["to"]))
                            sent += 1
                        except OSError:
                            pass
                ack = {"op": "inject-ack", "id": msg.get("id"), "sent": sent}
                try:
                    s.sendto(json.dumps(ack).encode(), addr)
                except OSError:
                    pass
                continue
            if op not in ("echo", "probe"):
                continue
            reply = {"op": "echo-reply", "id": msg.get("id"),
                     "seen": fmt(addr), "at": local}
            try:
                s.sendto(json.dumps(reply).encode(), addr)
            except OSError:
                pass
            if op == "probe":
                for src in msg.get("from", []):
                    sock = udp.get(src)
                    if sock is None:
                        continue
                    pr = {"op": "probe-reply", "id": msg.get("id"),
                          "from": src, "seen": fmt(addr)}
                    try:
                        sock.sendto(json.dumps(pr).encode(), addr)
                    except OSError:
                        pass


# ------------------------------------------------------------------ clients

def cmd_mapping(a):
    s = udp_socket(a.bind)
    res = {"local": fmt(s.getsockname()), "seen": {}}
    for i, dest in enumerate(a.to):
        obj, _ = request(s, hp(dest), {"op": "echo", "id": i}, "echo-reply",
                         a.timeout)
        res["seen"][dest] = obj["seen"] if obj else None
    out(res)


def cmd_filtering(a):
    s = udp_socket(a.bind)
    froms = list(a.from_)
    msg = {"op": "probe", "id": 1, "from": froms}
    obj, _ = request(s, hp(a.to), msg, "echo-reply", a.timeout)
    got = {}
    end = time.monotonic() + a.wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        o, addr = recv_json(s, left)
        if o is None:
            break
        if o.get("op") == "probe-reply":
            got[fmt(addr)] = o.get("from")
    out({"local": fmt(s.getsockname()),
         "mapped": obj["seen"] if obj else None,
         "replied": obj is not None,
         "received": sorted(got), "claimed": sorted(got.values())})


def cmd_hairpin(a):
    s1 = udp_socket()
    s2 = udp_socket()
    o1, _ = request(s1, hp(a.server), {"op": "echo", "id": 1}, "echo-reply",
                    a.timeout)
    o2, _ = request(s2, hp(a.server), {"op": "echo", "id": 2}, "echo-reply",
                    a.timeout)
    res = {"local1": fmt(s1.getsockname()), "local2": fmt(s2.getsockname()),
           "m1": o1 and o1["seen"], "m2": o2 and o2["seen"],
           "received": False, "from": None}
    if o1:
        target = hp(o1["seen"])
        end = time.monotonic() + a.wait
        nxt = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= nxt:
                try:
                    s2.sendto(json.dumps({"op": "hairpin"}).encode(), target)
                except OSError:
                    pass
                nxt = time.monotonic() + 0.2
            o, addr = recv_json(s1, min(0.1, max(0.001,
                                                 end - time.monotonic())))
            if o and o.get("op") == "hairpin":
                res["received"] = True
                res["from"] = fmt(addr)
                break
    out(res)


def cmd_tcp(a):
    res = {"connected": False, "seen": None, "error": None}
    try:
        c = socket.create_connection(hp(a.to), timeout=a.timeout)
        res["connected"] = True
        c.settimeout(a.timeout)
        data = b""
        while True:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        c.close()
        res["seen"] = json.loads(data.decode()).get("seen")
    except (OSError, ValueError) as e:
        res["error"] = str(e) or type(e).__name__
    out(res)


def cmd_listen(a):
    s = udp_socket(a.bind)
    got = []
    end = time.monotonic() + a.wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        o, addr = recv_json(s, left)
        if o is None:
            break
        got.append({"src": fmt(addr), "msg": o})
    out({"local": fmt(s.getsockname()), "received": got})


def cmd_inject(a):
    s = udp_socket()
    msg = {"op": "inject", "id": 7, "from": getattr(a, "from"),
           "to": a.to, "count": a.count}
    obj, _ = request(s, hp(a.via), msg, "inject-ack", a.timeout)
    out({"acked": obj is not None, "sent": obj["sent"] if obj else 0})


def cmd_send(a):
    s = udp_socket(a.bind)
    for i in range(a.count):
        try:
            s.sendto(json.dumps({"op": "unsolicited", "id": i}).encode(),
                     hp(a.to))
        except OSError:
            pass
        time.sleep(0.02)
    out({"local": fmt(s.getsockname()), "sent": a.count})


# ------------------------------------------------------------------ STUN

MAGIC = 0x2112A442


def _stun_addr(val, xor, tid):
    family = val[1]
    port = struct.unpack("!H", val[2:4])[0]
    if family != 1:
        return None
    ip = bytearray(val[4:8])
    if xor:
        port ^= MAGIC >> 16
        for i, b in enumerate(struct.pack("!I", MAGIC)):
            ip[i] ^= b
    return "%s:%d" % (socket.inet_ntoa(bytes(ip)), port)


def stun_binding(s, dest, change_ip=False, change_port=False, timeout=1.5,
                 tries=3):
    tid = os.urandom(12)
    attrs = b""
    if change_ip or change_port:
        flags = (4 if change_ip else 0) | (2 if change_port else 0)
        attrs += struct.pack("!HHI", 0x0003, 4, flags)
    req = struct.pack("!HHI", 0x0001, len(attrs), MAGIC) + tid + attrs
    per = timeout / tries
    for _ in range(tries):
        try:
            s.sendto(req, dest)
        except OSError:
            pass
        end = time.monotonic() + per
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, addr = s.recvfrom(65535)
            except (socket.timeout, ConnectionRefusedError):
                break
            if len(data) < 20 or data[8:20] != tid:
                continue
            mtype, mlen = struct.unpack("!HH", data[:4])
            res = {"from": fmt(addr), "type": "0x%04x" % mtype,
                   "mapped": None, "other": None, "origin": None}
            pos = 20
            while pos + 4 <= 20 + mlen and pos + 4 <= len(data):
                at, al = struct.unpack("!HH", data[pos:pos + 4])
                val = data[pos + 4:pos + 4 + al]
                if at == 0x0020:
                    res["mapped"] = _stun_addr(val, True, tid)
                elif at == 0x0001 and res["mapped"] is None:
                    res["mapped"] = _stun_addr(val, False, tid)
                elif at == 0x802C:
                    res["other"] = _stun_addr(val, False, tid)
                elif at == 0x802B:
                    res["origin"] = _stun_addr(val, False, tid)
                pos += 4 + ((al + 3) & ~3)
            return res
    return None


def cmd_stun(a):
    s = udp_socket(a.bind)
    r = stun_binding(s, hp(a.to), a.change_ip, a.change_port, a.timeout)
    res = {"local": fmt(s.getsockname()), "mapped": None, "other": None,
           "origin": None, "from": None}
    if r:
        res.update(r)
    out(res)


def main():
    ap = argparse.ArgumentParser(prog="udp_probe.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("reflector")
    p.add_argument("--udp", action="append", default=[])
    p.add_argument("--tcp", action="append", default=[])
    p.add_argument("--log")
    p.set_defaults(fn=cmd_reflector)
    p = sub.add_parser("mapping")
    p.add_argument("--to", action="append", required=True)
    p.add_argument("--bind", default="0.0.0.0:0")
    p.add_argument("--timeout", type=float, default=1.5)
    p.set_defaults(fn=cmd_mapping)
    p = sub.add_parser("filtering")
    p.add_argument("--to", required=True)
    p.add_argument("--from", dest="from_", action="append", default=[])
    p.add_argument("--bind", default="0.0.0.0:0")
    p.add_argument("--wait", type=float, default=0.6)
    p.add_argument("--timeout", type=float, default=1.5)
    p.set_defaults(fn=cmd_filtering)
    p = sub.add_parser("hairpin")
    p.add_argument("--server", required=True)
    p.add_argument("--wait", type=float, default=0.8)
    p.add_argument("--timeout", type=float, default=1.5)
    p.set_defaults(fn=cmd_hairpin)
    p = sub.add_parser("tcp")
    p.add_argument("--to", required=True)
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(fn=cmd_tcp)
    p = sub.add_parser("stun")
    p.add_argument("--to", required=True)
    p.add_argument("--bind", default="0.0.0.0:0")
    p.add_argument("--change-ip", action="store_true")
    p.add_argument("--change-port", action="store_true")
    p.add_argument("--timeout", type=float, default=1.5)
    p.set_defaults(fn=cmd_stun)
    p = sub.add_parser("listen")
    p.add_argument("--bind", required=True)
    p.add_argument("--wait", type=float, default=0.6)
    p.set_defaults(fn=cmd_listen)
    p = sub.add_parser("inject")
    p.add_argument("--via", required=True, help="a reflector socket")
    p.add_argument("--from", required=True, help="reflector socket to send "
                   "the unsolicited datagrams from")
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--timeout", type=float, default=1.5)
    p.set_defaults(fn=cmd_inject)
    p = sub.add_parser("send")
    p.add_argument("--to", required=True)
    p.add_argument("--bind", default="0.0.0.0:0")
    p.add_argument("--count", type=int, default=3)
    p.set_defaults(fn=cmd_send)
    a = ap.parse_args()
    try:
        a.fn(a)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
