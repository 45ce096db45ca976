#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""natkit through GObject introspection from Python (PyGObject)."""

import os
import tempfile
import unittest

import gi

gi.require_version("Natkit", "1")
from gi.repository import Gio, GLib, GObject, Natkit  # noqa: E402


class TestNatkit(unittest.TestCase):
    def test_list_plugins(self):
        manager = Natkit.Manager.new_with_config(Natkit.Config.new())
        plugins = manager.list_plugins()
        names = [p.get_name() for p in plugins]
        self.assertIn("loopback", names)
        loopback = manager.get_plugin("loopback")
        self.assertEqual(loopback.props.state, Natkit.PluginState.LOADED)
        self.assertEqual(loopback.props.kind, Natkit.PluginKind.TRAVERSAL)
        self.assertEqual(loopback.props.rank, Natkit.Rank.NONE)
        self.assertIsNone(loopback.props.reason)
        self.assertTrue(loopback.props.filename.endswith("libnatkit-loopback.so"))

    def test_config_error_is_gerror(self):
        with self.assertRaises(GLib.Error) as ctx:
            Natkit.Config.new_from_data('{"timers": {"keepalive": "x"}}', -1)
        self.assertTrue(ctx.exception.matches(Natkit.error_quark(), Natkit.Error.INVALID_CONFIG))
        self.assertIn("timers.keepalive", ctx.exception.message)

    def test_identity(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "identity.key")
            ident = Natkit.Identity.load_or_create(path)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
            peer_id = ident.get_peer_id()
            self.assertTrue(Natkit.peer_id_validate(peer_id))
            again = Natkit.Identity.load(path)
            self.assertEqual(again.props.peer_id, peer_id)
            data = GLib.Bytes.new(b"hello")
            sig = ident.sign(data)
            self.assertTrue(Natkit.Identity.verify(ident.get_public_key(), data, sig))

    def test_loopback_path(self):
        config = Natkit.Config.new()
        a = Natkit.Manager.new_with_config(config)
        b = Natkit.Manager.new_with_config(config)
        loop = GLib.MainLoop()
        paths = {}

        def done(manager, result, who):
            paths[who] = manager.open_path_finish(result)
            if len(paths) == 2:
                loop.quit()

        ra = Natkit.TraversalRequest.new("py-a", "py-b", Natkit.Role.INITIATOR)
        rb = Natkit.TraversalRequest.new("py-b", "py-a", Natkit.Role.RESPONDER)
        a.open_path_async(ra, ["loopback"], None, done, "a")
        b.open_path_async(rb, ["loopback"], None, done, "b")
        GLib.timeout_add_seconds(10, loop.quit)
        loop.run()
        self.assertEqual(set(paths), {"a", "b"})

        got = []

        def received(path, datagram):
            got.append(datagram.get_data())
            loop.quit()

        paths["b"].connect("received", received)
        self.assertTrue(paths["a"].send(GLib.Bytes.new(b"ping")))
        loop.run()
        self.assertEqual(got, [b"ping"])
        self.assertEqual(paths["a"].props.method, "loopback")

    def test_port_mapping_request(self):
        r = Natkit.PortMappingRequest.new(Natkit.IpProtocol.TCP, 8080)
        r.set_external_port(18080)
        r.props.lifetime = 600
        r.set_method("pcp")
        self.assertEqual(r.get_protocol(), Natkit.IpProtocol.TCP)
        self.assertEqual((r.get_internal_port(), r.get_external_port()), (8080, 18080))
        self.assertEqual(r.get_lifetime(), 600)
        self.assertEqual(r.props.method, "pcp")
        copy = r.copy()
        self.assertEqual(copy.get_external_port(), 18080)
        address = Natkit.resolve_gateway("10.0.0.1", 5351)
        self.assertEqual(address.get_port(), 5351)

    def test_map_port_unknown_method(self):
        manager = Natkit.Manager.new_with_config(Natkit.Config.new())
        loop = GLib.MainLoop()
        errors = []

        def done(source, result):
            try:
                source.map_port_finish(result)
            except GLib.Error as e:
                errors.append(e)
            loop.quit()

        request = Natkit.PortMappingRequest.new(Natkit.IpProtocol.UDP, 5000)
        manager.map_port_async(request, ["carrier-pigeon"], None, done)
        GLib.timeout_add_seconds(10, loop.quit)
        loop.run()
        self.assertEqual(len(errors), 1)
        self.assertIn("carrier-pigeon", errors[0].message)


    def test_connect_over_signaling_pair(self):
        """What an application does: two managers, its own signaling
        channel (here the in-process pair), connect, write, read."""
        config = Natkit.Config.new()
        ida, idb = Natkit.Identity.new_ephemeral(), Natkit.Identity.new_ephemeral()
        a = Natkit.Manager.new_with_config(config)
        b = Natkit.Manager.new_with_config(config)
        a.set_identity(ida)
        b.set_identity(idb)
        sig_a, sig_b = Natkit.Signaling.new_pair(ida.get_peer_id(), idb.get_peer_id())
        self.assertTrue(b.listen(sig_b))
        loop = GLib.MainLoop()
        got = {}

        def incoming(manager, connection):
            got["incoming"] = connection
            stream = connection.get_stream()

            def read_done(source, res):
                got["data"] = source.read_bytes_finish(res).get_data()
                loop.quit()
            stream.get_input_stream().read_bytes_async(100, GLib.PRIORITY_DEFAULT,
                                                       None, read_done)

        def connected(manager, res):
            conn = manager.connect_finish(res)
            got["outgoing"] = conn
            conn.get_stream().get_output_stream().write_bytes_async(
                GLib.Bytes.new(b"hello from python"), GLib.PRIORITY_DEFAULT, None,
                lambda s, r: s.write_bytes_finish(r))

        b.connect("incoming", incoming)
        a.connect_with_signaling_async(sig_a, idb.get_peer_id(), ["loopback"],
                                       Natkit.ConnectFlags.NONE, None, connected)
        GLib.timeout_add_seconds(20, loop.quit)
        loop.run()
        self.assertEqual(got.get("data"), b"hello from python")
        out = got["outgoing"]
        self.assertEqual(out.props.peer_id, idb.get_peer_id())
        self.assertEqual(out.props.method, "loopback")
        self.assertEqual(out.props.state, Natkit.ConnectionState.CONNECTED)
        self.assertEqual(got["incoming"].props.peer_id, ida.get_peer_id())
        out.close()
        self.assertEqual(out.props.state, Natkit.ConnectionState.CLOSED)

    def test_registry_and_metrics(self):
        """The live connections as a Gio.ListModel, their counters and state
        history, and the per-method metrics, from Python."""
        config = Natkit.Config.new()
        ida, idb = Natkit.Identity.new_ephemeral(), Natkit.Identity.new_ephemeral()
        a = Natkit.Manager.new_with_config(config)
        b = Natkit.Manager.new_with_config(config)
        a.set_identity(ida)
        b.set_identity(idb)
        sig_a, sig_b = Natkit.Signaling.new_pair(ida.get_peer_id(), idb.get_peer_id())
        self.assertTrue(b.listen(sig_b))
        model = a.get_connections()
        self.assertIsInstance(model, Gio.ListModel)
        self.assertEqual(model.get_item_type(), Natkit.Connection.__gtype__)
        self.assertEqual(model.get_n_items(), 0)
        changes = []
        model.connect("items-changed",
                      lambda m, pos, removed, added: changes.append((pos, removed, added)))
        loop = GLib.MainLoop()
        got = {}
        payload = b"counted by the registry"

        def incoming(manager, connection):
            got["incoming"] = connection

            def read_done(source, res):
                got["data"] = source.read_bytes_finish(res).get_data()
                loop.quit()
            connection.get_stream().get_input_stream().read_bytes_async(
                100, GLib.PRIORITY_DEFAULT, None, read_done)

        def connected(manager, res):
            conn = manager.connect_finish(res)
            got["outgoing"] = conn
            conn.get_stream().get_output_stream().write_bytes_async(
                GLib.Bytes.new(payload), GLib.PRIORITY_DEFAULT, None,
                lambda s, r: s.write_bytes_finish(r))

        b.connect("incoming", incoming)
        a.connect_with_signaling_async(sig_a, idb.get_peer_id(), ["loopback"],
                                       Natkit.ConnectFlags.NONE, None, connected)
        GLib.timeout_add_seconds(20, loop.quit)
        loop.run()
        self.assertEqual(got.get("data"), payload)
        out = got["outgoing"]
        self.assertEqual(changes, [(0, 0, 1)])
        self.assertEqual(model.get_n_items(), 1)
        self.assertEqual(list(model), [out])
        self.assertEqual(b.get_connections().get_n_items(), 1)
        self.assertEqual(out.props.method, "loopback")
        self.assertEqual(out.props.remote_address, out.get_path().get_remote_address())
        self.assertEqual(out.props.bytes_sent, len(payload))
        self.assertEqual(got["incoming"].props.bytes_received, len(payload))
        self.assertGreaterEqual(out.props.loss, 0.0)
        self.assertGreater(out.props.connected_at, 0)

        metrics = a.dup_metrics().unpack()
        self.assertEqual(metrics["loopback"]["attempts"], 1)
        self.assertEqual(metrics["loopback"]["successes"], 1)
        self.assertEqual(metrics["loopback"]["failures"], 0)
        self.assertEqual(metrics["loopback"]["failure-reasons"], {})
        self.assertEqual(metrics["loopback"]["connect-count"], 1)
        self.assertLessEqual(metrics["loopback"]["connect-min-us"],
                             metrics["loopback"]["connect-max-us"])

        out.close()
        self.assertEqual(model.get_n_items(), 0)
        self.assertEqual(changes, [(0, 0, 1), (0, 1, 0)])
        history = out.get_state_history().unpack()
        self.assertEqual([h[2] for h in history], ["connected", "closed"])
        self.assertEqual(history[0][0], out.props.connected_at)
        self.assertEqual(history[1][3], "closed by this side")

    def test_port_mappings_model(self):
        """The live port mappings as a Gio.ListModel of Natkit.PortMapping
        (filled by map_port_async; the scripted gateway is in test-natpmp.c)."""
        manager = Natkit.Manager.new_with_config(Natkit.Config.new())
        model = manager.get_port_mappings()
        self.assertIsInstance(model, Gio.ListModel)
        self.assertEqual(model.get_item_type(), Natkit.PortMapping.__gtype__)
        self.assertEqual(model.get_n_items(), 0)
        self.assertIsNone(model.get_item(0))

    def test_network_api(self):
        """The virtual network's API from Python: the wireguard plugin is a
        transport with the tunnel interface, a bad network is a GLib.Error,
        peers are a Gio.ListModel of Natkit.NetworkPeer, peer-up/peer-down
        are signals. (Bringing a network up needs root and wireguard-go:
        tests/lab/test_lab_wireguard.py.)"""
        manager = Natkit.Manager.new_with_config(Natkit.Config.new())
        wg = manager.get_plugin("wireguard")
        if wg is not None:
            self.assertEqual(wg.props.kind, Natkit.PluginKind.TRANSPORT)
            self.assertTrue(wg.get_gtype().is_a(Natkit.Tunnel))
        self.assertEqual(Natkit.NETWORK_DEFAULT, "100.66.0.0/16")
        self.assertFalse(Natkit.address_is_virtual(Gio.InetAddress.new_from_string("100.66.1.2")))
        props = [p.name for p in Natkit.Network.list_properties()]
        for name in ("interface-name", "address", "network", "implementation", "peers"):
            self.assertIn(name, props)
        for name in ("peer-up", "peer-down", "failed"):
            self.assertTrue(GObject.signal_lookup(name, Natkit.Network), name)
        props = [p.name for p in Natkit.NetworkPeer.list_properties()]
        for name in ("peer-id", "address", "method", "rtt", "bytes-sent", "bytes-received",
                     "last-handshake"):
            self.assertIn(name, props)
        ida, idb = Natkit.Identity.new_ephemeral(), Natkit.Identity.new_ephemeral()
        sig_a, _sig_b = Natkit.Signaling.new_pair(ida.get_peer_id(), idb.get_peer_id())
        loop = GLib.MainLoop()
        result = {}

        def joined(m, res):
            try:
                m.join_network_finish(res)
            except GLib.Error as e:
                result["error"] = e
            loop.quit()

        manager.join_network_async(sig_a, "100.66.0.0/33", None, None, joined)
        loop.run()
        self.assertTrue(result["error"].matches(Natkit.error_quark(),
                                                Natkit.Error.INVALID_ARGUMENT))
        self.assertIn("100.66.0.0/33", result["error"].message)

    def test_peer_address_error(self):
        with self.assertRaises(GLib.Error) as ctx:
            Natkit.peer_address_parse("not-an-address")
        self.assertTrue(ctx.exception.matches(Natkit.error_quark(),
                                              Natkit.Error.INVALID_ARGUMENT))
        self.assertIn("PEER-ID@HOST:PORT", ctx.exception.message)

if __name__ == "__main__":
    unittest.main(verbosity=2)
