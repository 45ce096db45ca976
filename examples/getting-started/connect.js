#!/usr/bin/env -S gjs -m
// natkit getting started, the connecting side (GJS).
//
//   gjs -m connect.js PEER-ID@HOST:PORT "a message"
//
// The same as connect.py: connect, say how, send, close our side, print
// what comes back.
//
// SPDX-License-Identifier: LGPL-2.1-or-later

import GLib from 'gi://GLib';
import Gio from 'gi://Gio';
import Natkit from 'gi://Natkit?version=1';
import System from 'system';

Gio._promisify(Natkit.Manager.prototype, 'connect_async', 'connect_finish');
Gio._promisify(Gio.OutputStream.prototype, 'write_bytes_async', 'write_bytes_finish');
Gio._promisify(Gio.InputStream.prototype, 'read_bytes_async', 'read_bytes_finish');

const [address, text] = ARGV;
const message = new TextEncoder().encode(text);
const loop = new GLib.MainLoop(null, false);
let status = 1;

async function main() {
    const manager = Natkit.Manager.new();
    // null: every method the plugins offer, raced
    const connection = await manager.connect_async(address, null,
        Natkit.ConnectFlags.NONE, null);
    printerr(`connected via ${connection.get_method()} (${connection.get_transport()}): ` +
             connection.dup_explanation());

    const stream = connection.get_stream();
    // GLib.Bytes, not the array itself: an async write keeps using its
    // buffer after the call returns, and only GLib.Bytes lives that long
    let rest = new GLib.Bytes(message);
    while (rest.get_size() > 0) {
        const written = await stream.get_output_stream().write_bytes_async(rest,
            GLib.PRIORITY_DEFAULT, null);
        rest = rest.new_from_bytes(written, rest.get_size() - written);
    }
    stream.get_output_stream().close(null);   // our side is done

    const chunks = [];
    for (;;) {
        const bytes = await stream.get_input_stream().read_bytes_async(65536,
            GLib.PRIORITY_DEFAULT, null);
        if (bytes.get_size() === 0)
            break;
        chunks.push(bytes.toArray());
    }
    const received = new TextDecoder().decode(
        Uint8Array.from(chunks.flatMap(c => Array.from(c))));
    print(received);
    status = received === text ? 0 : 1;
    connection.close();
}

main().catch(e => printerr(`cannot connect: ${e.message}`)).finally(() => loop.quit());
loop.run();
System.exit(status);
