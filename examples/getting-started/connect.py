#!/usr/bin/python3
# natkit getting started, the connecting side (Python).
#
#   python3 connect.py PEER-ID@HOST:PORT "a message"
#
# Connects to the peer by the best method that works (end-to-end encrypted,
# the peer's key checked against its ID), says how, sends the message,
# closes its side and prints what comes back.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys

import gi
gi.require_version("Natkit", "1")
from gi.repository import GLib, Natkit

loop = GLib.MainLoop()
manager = Natkit.Manager.new()
message = sys.argv[2].encode()
status = 1
received = bytearray()


def read_done(input, result, connection):
    global status
    data = input.read_bytes_finish(result)
    if data.get_size() > 0:
        received.extend(data.get_data())
        input.read_bytes_async(65536, GLib.PRIORITY_DEFAULT, None, read_done, connection)
        return
    print(received.decode(), flush=True)   # the end of the peer's stream
    status = 0 if bytes(received) == message else 1
    connection.close()
    loop.quit()


def written(output, result, connection):
    output.write_all_finish(result)
    output.close()                          # our side is done; the peer's goes on
    stream = connection.get_stream()
    stream.get_input_stream().read_bytes_async(65536, GLib.PRIORITY_DEFAULT, None,
                                               read_done, connection)


def connected(manager, result):
    try:
        connection = manager.connect_finish(result)
    except GLib.Error as e:
        print("cannot connect: %s" % e.message, file=sys.stderr)
        loop.quit()
        return
    print("connected via %s (%s): %s" % (connection.get_method(),
                                         connection.get_transport(),
                                         connection.dup_explanation()),
          file=sys.stderr, flush=True)
    output = connection.get_stream().get_output_stream()
    output.write_all_async(message, GLib.PRIORITY_DEFAULT, None, written, connection)


# None: every method the plugins offer, raced; Natkit.ConnectFlags.DATAGRAM
# would give datagrams instead of a byte stream
manager.connect_async(sys.argv[1], None, Natkit.ConnectFlags.NONE, None, connected)
loop.run()
sys.exit(status)
