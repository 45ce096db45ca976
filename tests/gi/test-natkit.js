// SPDX-License-Identifier: LGPL-2.1-or-later
// natkit through GObject introspection from GJS.
imports.gi.versions.Natkit = '1';
const {GLib, Natkit} = imports.gi;

let failures = 0;
let count = 0;
function check(cond, what) {
    count++;
    if (cond) {
        print(`ok ${count} - ${what}`);
    } else {
        print(`not ok ${count} - ${what}`);
        failures++;
    }
}

const manager = Natkit.Manager.new_with_config(Natkit.Config.new());
const plugins = manager.list_plugins();
const names = plugins.map(p => p.get_name());
check(names.includes('loopback'), 'list_plugins includes loopback');
const info = manager.get_plugin('loopback');
check(info.state === Natkit.PluginState.LOADED, 'loopback is loaded');
check(info.kind === Natkit.PluginKind.TRAVERSAL, 'loopback is a traversal');

let threw = false;
try {
    Natkit.Config.new_from_data('{"stun": 5}', -1);
} catch (e) {
    threw = e.matches(Natkit.error_quark(), Natkit.Error.INVALID_CONFIG) &&
        e.message.includes('“stun”');
}
check(threw, 'config errors arrive as GLib.Error with the key');

const ident = Natkit.Identity.new_ephemeral();
check(Natkit.peer_id_validate(ident.peer_id), 'ephemeral identity has a valid peer ID');

const {Gio} = imports.gi;
const connections = manager.get_connections();
check(connections instanceof Gio.ListModel &&
      connections.get_item_type() === Natkit.Connection.$gtype &&
      connections.get_n_items() === 0, 'get_connections is a Gio.ListModel of Natkit.Connection');
const mappings = manager.get_port_mappings();
check(mappings instanceof Gio.ListModel &&
      mappings.get_item_type() === Natkit.PortMapping.$gtype &&
      mappings.get_n_items() === 0, 'get_port_mappings is a Gio.ListModel of Natkit.PortMapping');

print(`1..${count}`);
if (failures > 0)
    imports.system.exit(1);
