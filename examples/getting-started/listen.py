#!/usr/bin/python3
# natkit getting started, the listening side (Python).
#
#   python3 listen.py HOST:PORT        # a natkit-server (HOST:PORT#sha256:… pins it)
#
# Registers at the server, prints this peer's address (give it to the other
# side), accepts one connection and echoes what arrives until the peer
# closes its side.
#
# SPDX-License-Identifier: LGPL-2.1-or-later

import sys

import gi
gi.require_version("Natkit", "1")
from gi.repository import GLib, Gio, Natkit

loop = GLib.MainLoop()
manager = Natkit.Manager.new()
rendezvous = manager.get_rendezvous(sys.argv[1])
status = 1
connections = []   # a connection lives as long as someone holds it


def echoed(output, result):
    global status
    output.splice_finish(result)
    status = 0
    loop.quit()


def incoming(manager, connection):
    connections.append(connection)
    print("%s connected via %s" % (connection.get_peer_id(), connection.get_method()),
          file=sys.stderr, flush=True)
    stream = connection.get_stream()
    # everything the peer sends goes back to it; closing our output when
    # its input ends closes the connection
    stream.get_output_stream().splice_async(
        stream.get_input_stream(),
        Gio.OutputStreamSpliceFlags.CLOSE_SOURCE | Gio.OutputStreamSpliceFlags.CLOSE_TARGET,
        GLib.PRIORITY_DEFAULT, None, echoed)


def registered(rendezvous, result):
    try:
        rendezvous.connect_finish(result)
    except GLib.Error as e:
        print("cannot register: %s" % e.message, file=sys.stderr)
        loop.quit()
        return
    manager.listen(rendezvous)
    # PEER-ID@HOST:PORT: what the other side connects to
    print(rendezvous.get_local_address(), flush=True)


manager.connect("incoming", incoming)
rendezvous.connect_async(None, registered)
loop.run()
sys.exit(status)
