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
        (until --wait is over or {"op":"stop"} arrives from 127.0.0.1)
  send --to IP:PORT [--bind IP:PORT] [--count N]
  natpmp --gw IP [--map udp|tcp --int-port N [--ext-port M] [--lifetime L]]
        RFC 6886 NAT-PMP: public address request, or a mapping request
        (lifetime 0 removes); prints result code, epoch, ports, lifetime
  pcp --gw IP [--opcode map|announce] [--proto udp|tcp|N] [--int-port N]
      [--ext-port M] [--ext-ip IP] [--lifetime L] [--nonce HEX]
        RFC 6887 PCP request (version 2) to IP:5351; prints the response
  ssdp [--st ST] [--wait S]
        SSDP M-SEARCH to 239.255.255.250:1900; reports every answer
        (source, LOCATION, ST, SERVER, USN) received within --wait
  mlisten --group IP --port N [--wait S]
        join a multicast group (224.0.0.1:5350: PCP ANNOUNCE / NAT-PMP
        address announcements) and report every datagram, decoded
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
        if o.get("op") == "stop" and addr[0] == "127.0.0.1":
            break       # end early: everything sent before it was read
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



# ------------------------------------------------------- NAT-PMP / PCP
#
# Reference clients for the lab's miniupnpd (port 5351 on the gateway).
# Retransmission as RFC 6886 / 6887: 250 ms, doubling, until --timeout.

PCP_PORT = 5351
PCP_RESULTS = {
    0: "SUCCESS", 1: "UNSUPP_VERSION", 2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST", 4: "UNSUPP_OPCODE", 5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION", 7: "NETWORK_FAILURE", 8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL", 10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL", 12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS"}
NATPMP_RESULTS = {0: "SUCCESS", 1: "UNSUPP_VERSION", 2: "NOT_AUTHORIZED",
                  3: "NETWORK_FAILURE", 4: "OUT_OF_RESOURCES",
                  5: "UNSUPP_OPCODE"}
PCP_OPCODES = {"announce": 0, "map": 1, "peer": 2}
IP_PROTOS = {"udp": 17, "tcp": 6, "all": 0}


def _v4mapped(ip):
    return b"\0" * 10 + b"\xff\xff" + socket.inet_aton(ip)


def _from_v6(b):
    if b[:12] == b"\0" * 10 + b"\xff\xff":
        return socket.inet_ntoa(b[12:16])
    return socket.inet_ntop(socket.AF_INET6, b)


def decode_pmp(data):
    """Decode a NAT-PMP (version 0) or PCP (version 1/2) response."""
    if len(data) < 2:
        return {"raw": data.hex()}
    d = {"version": data[0]}
    if data[0] == 0:                        # NAT-PMP
        op = data[1]
        d["opcode"] = op
        if len(data) >= 8:
            rc = struct.unpack("!H", data[2:4])[0]
            d.update(result=rc, result_name=NATPMP_RESULTS.get(rc, str(rc)),
                     epoch=struct.unpack("!I", data[4:8])[0])
        if op == 128 and len(data) >= 12:
            d["ext_ip"] = socket.inet_ntoa(data[8:12])
        elif op in (129, 130) and len(data) >= 16:
            ip_, ep_, lt = struct.unpack("!HHI", data[8:16])
            d.update(proto="udp" if op == 129 else "tcp", int_port=ip_,
                     ext_port=ep_, lifetime=lt)
        return d
    if len(data) < 24:
        d["raw"] = data.hex()
        return d
    op = data[1] & 0x7f
    d.update(response=bool(data[1] & 0x80), opcode=op, result=data[3],
             result_name=PCP_RESULTS.get(data[3], str(data[3])),
             lifetime=struct.unpack("!I", data[4:8])[0],
             epoch=struct.unpack("!I", data[8:12])[0])
    if op in (1, 2) and len(data) >= 60:
        body = data[24:60]
        d.update(nonce=body[:12].hex(), proto=body[12],
                 int_port=struct.unpack("!H", body[16:18])[0],
                 ext_port=struct.unpack("!H", body[18:20])[0],
                 ext_ip=_from_v6(body[20:36]))
        if op == 2 and len(data) >= 80:
            peer = data[60:80]
            d.update(remote_port=struct.unpack("!H", peer[0:2])[0],
                     remote_ip=_from_v6(peer[4:20]))
    if len(data) > 60 or op == 0:
        d["options_len"] = max(0, len(data) - (60 if op in (1, 2) else 24))
    return d


def _exchange(req, gw, timeout, bind, match):
    """Send req to gw:5351 with RFC retransmission until a datagram from
    the gateway that match() accepts arrives; returns the result dict."""
    s = udp_socket(bind)
    s.connect((gw, PCP_PORT))
    res = {"local": fmt(s.getsockname()), "gateway": "%s:%d" % (gw, PCP_PORT),
           "answered": False, "sent": 0}
    t0 = time.monotonic()
    end = t0 + timeout
    interval = 0.25
    refused = False
    while time.monotonic() < end:
        try:
            s.send(req)
            res["sent"] += 1
        except ConnectionRefusedError:
            refused = True
        next_send = min(end, time.monotonic() + interval)
        interval *= 2
        while True:
            left = next_send - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data = s.recv(1100)
            except socket.timeout:
                break
            except ConnectionRefusedError:
                refused = True      # ICMP port unreachable
                continue
            d = decode_pmp(data)
            if not match(d):
                continue
            res.update(d)
            res["answered"] = True
            res["rtt_ms"] = round((time.monotonic() - t0) * 1000, 2)
            return res
    if refused:
        res["icmp_refused"] = True
    return res


def cmd_natpmp(a):
    if a.map:
        op = 1 if a.map == "udp" else 2
        req = struct.pack("!BBHHHI", 0, op, 0, a.int_port,
                          a.ext_port if a.ext_port is not None else a.int_port,
                          a.lifetime)
    else:
        op = 0
        req = bytes([0, 0])
    res = _exchange(req, a.gw, a.timeout, a.bind,
                    lambda d: d.get("version") == 0 and
                    d.get("opcode") == 128 + op)
    res["request"] = {"opcode": op, "map": a.map, "int_port": a.int_port,
                      "ext_port": a.ext_port, "lifetime": a.lifetime}
    out(res)


def cmd_pcp(a):
    op = PCP_OPCODES[a.opcode]
    s = udp_socket(a.bind)
    s.connect((a.gw, PCP_PORT))
    client_ip = a.client_ip or s.getsockname()[0]
    bind = fmt(s.getsockname())
    s.close()
    proto = IP_PROTOS.get(a.proto)
    if proto is None:
        proto = int(a.proto)
    nonce = bytes.fromhex(a.nonce) if a.nonce else os.urandom(12)
    if len(nonce) != 12:
        raise SystemExit("--nonce must be 12 bytes (24 hex digits)")
    req = struct.pack("!BBHI", a.version, op, 0, a.lifetime) + \
        _v4mapped(client_ip)
    if op in (1, 2):
        ext_ip = a.ext_ip or "0.0.0.0"
        req += nonce + struct.pack("!B3xHH", proto, a.int_port,
                                   a.ext_port or 0) + _v4mapped(ext_ip)
    if op == 2:
        rhost, rport = hp(a.remote)
        req += struct.pack("!H2x", rport) + _v4mapped(rhost)

    def match(d):
        if d.get("opcode") != op or not d.get("response"):
            return False
        return op == 0 or d.get("nonce") == nonce.hex() or \
            d.get("version") != a.version
    res = _exchange(req, a.gw, a.timeout, bind, match)
    res["request"] = {"version": a.version, "opcode": a.opcode,
                      "proto": proto, "int_port": a.int_port,
                      "ext_port": a.ext_port, "ext_ip": a.ext_ip,
                      "lifetime": a.lifetime, "client_ip": client_ip,
                      "nonce": nonce.hex()}
    out(res)


def cmd_ssdp(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
    s.bind(("0.0.0.0", 0))
    msg = ("M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
           "ST: %s\r\nMAN: \"ssdp:discover\"\r\nMX: %d\r\n\r\n"
           % (a.st, a.mx)).encode()
    t0 = time.monotonic()
    s.sendto(msg, ("239.255.255.250", 1900))
    got = []
    end = t0 + a.wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(4096)
        except socket.timeout:
            break
        hdr = {}
        for line in data.decode("latin-1").split("\r\n")[1:]:
            k, sep, v = line.partition(":")
            if sep:
                hdr[k.strip().lower()] = v.strip()
        got.append({"src": fmt(addr), "location": hdr.get("location"),
                    "st": hdr.get("st"), "server": hdr.get("server"),
                    "usn": hdr.get("usn"),
                    "ms": round((time.monotonic() - t0) * 1000, 2)})
    out({"local": fmt(s.getsockname()), "st": a.st, "responses": got})


def cmd_mlisten(a):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.group, a.port))
    mreq = socket.inet_aton(a.group) + socket.inet_aton(a.iface_ip)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    if a.ready:
        sys.stderr.write("READY\n")
        sys.stderr.flush()
    got = []
    end = time.monotonic() + a.wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        d = decode_pmp(data)
        d["src"] = fmt(addr)
        d["at"] = round(time.monotonic(), 3)
        got.append(d)
    out({"group": "%s:%d" % (a.group, a.port), "received": got})


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
    p = sub.add_parser("natpmp")
    p.add_argument("--gw", required=True)
    p.add_argument("--map", choices=("udp", "tcp"))
    p.add_argument("--int-port", type=int, default=0)
    p.add_argument("--ext-port", type=int, default=None,
                   help="suggested external port (default: --int-port)")
    p.add_argument("--lifetime", type=int, default=7200)
    p.add_argument("--bind", default="0.0.0.0:0")
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(fn=cmd_natpmp)
    p = sub.add_parser("pcp")
    p.add_argument("--gw", required=True)
    p.add_argument("--opcode", choices=sorted(PCP_OPCODES), default="map")
    p.add_argument("--version", type=int, default=2)
    p.add_argument("--proto", default="udp", help="udp, tcp, all or number")
    p.add_argument("--int-port", type=int, default=0)
    p.add_argument("--ext-port", type=int, default=0,
                   help="suggested external port (0: none)")
    p.add_argument("--ext-ip", default=None,
                   help="suggested external address (default 0.0.0.0)")
    p.add_argument("--lifetime", type=int, default=7200)
    p.add_argument("--nonce", default=None, help="24 hex digits")
    p.add_argument("--remote", default="0.0.0.0:0",
                   help="PEER: remote IP:PORT")
    p.add_argument("--client-ip", default=None,
                   help="PCP client address field (default: source address)")
    p.add_argument("--bind", default="0.0.0.0:0")
    p.add_argument("--timeout", type=float, default=2.0)
    p.set_defaults(fn=cmd_pcp)
    p = sub.add_parser("ssdp")
    p.add_argument("--st", default="urn:schemas-upnp-org:device:"
                   "InternetGatewayDevice:1")
    p.add_argument("--mx", type=int, default=1)
    p.add_argument("--wait", type=float, default=1.5)
    p.set_defaults(fn=cmd_ssdp)
    p = sub.add_parser("mlisten")
    p.add_argument("--group", default="224.0.0.1")
    p.add_argument("--port", type=int, default=5350)
    p.add_argument("--iface-ip", default="0.0.0.0")
    p.add_argument("--wait", type=float, default=3.0)
    p.add_argument("--ready", action="store_true",
                   help="print READY on stderr once joined")
    p.set_defaults(fn=cmd_mlisten)
    a = ap.parse_args()
    try:
        a.fn(a)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
