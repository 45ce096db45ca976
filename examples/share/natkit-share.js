#!/usr/bin/env -S gjs -m
// SPDX-License-Identifier: LGPL-2.1-or-later
//
// natkit Share: send text and files to a peer behind any NAT, and see how
// natkit connected you. A GTK 4 + libadwaita application in GJS that uses
// only natkit's public API, through the Natkit-1 typelib.
//
// What it shows:
//   - what NAT detection found about this network, in plain words;
//   - this node's peer address (PEER-ID@SERVER), with a copy button;
//   - a field for a peer's address, and the live connections
//     (Natkit.Manager.get_connections(), a Gio.ListModel bound to a
//     Gtk.ListView), each with its method, RTT, relayed or direct and why,
//     updated as the path changes;
//   - text messages and file transfers with a progress bar and a cancel
//     button; files that peers send land in the Downloads folder.
//
// On the wire (the connection's reliable stream), every record is one line
// of JSON, then exactly "size" bytes:
//   {"type":"text","size":N}                    N bytes of UTF-8
//   {"type":"file","id":I,"name":S,"total":T,"size":0}  a file begins
//   {"type":"data","id":I,"size":N}             the next N bytes of file I
//   {"type":"end","id":I,"size":0}              file I is complete
//   {"type":"cancel","id":I,"size":0}           the sender gave up on file I
//   {"type":"ack","id":I,"size":0}              file I arrived whole
//   {"type":"bye","size":0}                     the sender is done and leaves
// After "bye" the sender closes its sending direction; the receiver closes
// the connection once it has read it (and finished sending its own files),
// which tells the sender that everything arrived.
//
// Everything runs on the main context without blocking it: each network or
// file operation is asynchronous and cancellable (a transfer's Cancel
// button, closing a connection, closing the window).
//
// Options (the same code paths as the buttons, for scripting and tests):
//   --server HOST:PORT   the natkit-server to register at
//   --stun HOST:PORT     the STUN server for detection (default: the server)
//   --method NAME        only try this traversal method (repeatable)
//   --connect ADDRESS    connect to this peer at start
//   --send FILE          then send this file
//   --cancel-after BYTES press the file's Cancel button once this much is sent
//   --message TEXT       then send this text
//   --screenshot PNG     then save a picture of the window
//   --quit-when-done     then finish sending, close and quit; the exit
//                        status says whether everything worked

import Adw from 'gi://Adw?version=1';
import Gdk from 'gi://Gdk?version=4.0';
import Gio from 'gi://Gio';
import GLib from 'gi://GLib';
import GObject from 'gi://GObject';
import Gtk from 'gi://Gtk?version=4.0';
import Natkit from 'gi://Natkit?version=1';
import System from 'system';

const APP_ID = 'org.natkit.Share';
const CHUNK = 64 * 1024;          // file data per record
const MAX_HEADER = 4096;          // a longer header line is a protocol error
const MAX_RECORD = 1024 * 1024;   // and so is a larger record
const MAX_TEXT = 64 * 1024;
const PRIORITY = GLib.PRIORITY_DEFAULT;

Gio._promisify(Gio.InputStream.prototype, 'read_bytes_async', 'read_bytes_finish');
Gio._promisify(Gio.OutputStream.prototype, 'write_bytes_async', 'write_bytes_finish');
Gio._promisify(Gio.InputStream.prototype, 'close_async', 'close_finish');
Gio._promisify(Gio.OutputStream.prototype, 'close_async', 'close_finish');
Gio._promisify(Gio.File.prototype, 'read_async', 'read_finish');
Gio._promisify(Gio.File.prototype, 'create_async', 'create_finish');
Gio._promisify(Gio.File.prototype, 'query_info_async', 'query_info_finish');
Gio._promisify(Gio.File.prototype, 'delete_async', 'delete_finish');
Gio._promisify(Gio.File.prototype, 'make_directory_async', 'make_directory_finish');
Gio._promisify(Natkit.Manager.prototype, 'connect_async', 'connect_finish');
Gio._promisify(Natkit.Manager.prototype, 'detect_nat_async', 'detect_nat_finish');
Gio._promisify(Natkit.Rendezvous.prototype, 'connect_async', 'connect_finish');

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', {fatal: true});

function isCancelled(e) {
    return e instanceof GLib.Error && e.matches(Gio.IOErrorEnum, Gio.IOErrorEnum.CANCELLED);
}

function errorText(e) {
    return e instanceof GLib.Error || e instanceof Error ? e.message : String(e);
}

function formatBytes(n) {
    if (n < 1000)
        return `${n} B`;
    if (n < 1000 * 1000)
        return `${(n / 1000).toFixed(1)} kB`;
    if (n < 1000 * 1000 * 1000)
        return `${(n / 1e6).toFixed(1)} MB`;
    return `${(n / 1e9).toFixed(2)} GB`;
}

function formatRtt(us) {
    if (us < 0)
        return 'measuring…';
    return us < 10000 ? `${(us / 1000).toFixed(1)} ms` : `${Math.round(us / 1000)} ms`;
}

function shortId(peerId) {
    return peerId ? `${peerId.slice(0, 8)}…` : 'a peer';
}

function stateWords(state) {
    switch (state) {
    case Natkit.ConnectionState.CONNECTING: return 'connecting';
    case Natkit.ConnectionState.CONNECTED: return 'connected';
    case Natkit.ConnectionState.DEGRADED: return 'looking for a new path';
    case Natkit.ConnectionState.FAILED: return 'failed';
    case Natkit.ConnectionState.CLOSED: return 'closed';
    default: return 'unknown';
    }
}

// The last reason in a connection's state history ("closed by the peer").
function lastReason(connection) {
    try {
        const history = connection.get_state_history().deepUnpack();
        return history.length ? history[history.length - 1][3] : null;
    } catch (e) {
        return null;
    }
}

// Writes all of @data (a Uint8Array) to @out.
async function writeAll(out, data, cancellable) {
    let offset = 0;
    while (offset < data.length) {
        // eslint-disable-next-line no-await-in-loop
        const n = await out.write_bytes_async(new GLib.Bytes(data.subarray(offset)),
            PRIORITY, cancellable);
        if (n <= 0)
            throw new Error('the stream took no data');
        offset += n;
    }
}

// One line of JSON on stdout for whoever runs a script, at once (print()
// would sit in stdio's buffer when stdout is a pipe).
let stdout = null;
function emit(object) {
    stdout ??= new Gio.UnixOutputStream({fd: 1, close_fd: false});
    stdout.write_all(encoder.encode(`${JSON.stringify(object)}\n`), null);
}

// Whether this process still has @path open (Linux: /proc/self/fd).
function isOpenHere(path) {
    const dir = Gio.File.new_for_path('/proc/self/fd');
    const children = dir.enumerate_children('standard::name', Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, null);
    let info;
    let open = false;
    while ((info = children.next_file(null)) !== null) {
        try {
            if (GLib.file_read_link(`/proc/self/fd/${info.get_name()}`) === path)
                open = true;
        } catch (e) {
            // closed meanwhile
        }
    }
    children.close(null);
    return open;
}

function concat(a, b) {
    const all = new Uint8Array(a.length + b.length);
    all.set(a);
    all.set(b, a.length);
    return all;
}

// Reads records (a JSON header line, then "size" bytes) from a stream.
class RecordReader {
    constructor(input, cancellable) {
        this._input = input;
        this._cancellable = cancellable;
        this._buffer = new Uint8Array(0);
        this._eof = false;
    }

    async _fill() {
        const bytes = await this._input.read_bytes_async(CHUNK, PRIORITY, this._cancellable);
        const data = bytes.get_size() > 0 ? bytes.get_data() : null;
        if (!data) {
            this._eof = true;
            return false;
        }
        this._buffer = this._buffer.length ? concat(this._buffer, data) : data;
        return true;
    }

    // The next record's header, or null at the end of the stream.
    async readHeader() {
        for (;;) {
            const nl = this._buffer.indexOf(10);
            if (nl >= 0) {
                const line = this._buffer.subarray(0, nl);
                this._buffer = this._buffer.subarray(nl + 1);
                let header;
                try {
                    header = JSON.parse(decoder.decode(line));
                } catch (e) {
                    throw new Error('a record header is not JSON');
                }
                if (typeof header !== 'object' || header === null ||
                    typeof header.type !== 'string' || !Number.isSafeInteger(header.size) ||
                    header.size < 0 || header.size > MAX_RECORD)
                    throw new Error('a record header lacks its type or size');
                return header;
            }
            if (this._buffer.length > MAX_HEADER)
                throw new Error(`a record header is longer than ${MAX_HEADER} bytes`);
            // eslint-disable-next-line no-await-in-loop
            if (!await this._fill()) {
                if (this._buffer.length)
                    throw new Error('the stream ended inside a record header');
                return null;
            }
        }
    }

    async readExact(size) {
        while (this._buffer.length < size) {
            // eslint-disable-next-line no-await-in-loop
            if (!await this._fill())
                throw new Error('the stream ended inside a record');
        }
        const data = this._buffer.slice(0, size);
        this._buffer = this._buffer.subarray(size);
        return data;
    }
}

// A row of the connection list: bound to one Natkit.Connection at a time.
const ConnectionRow = GObject.registerClass(
class ConnectionRow extends Gtk.Box {
    _init() {
        super._init({
            orientation: Gtk.Orientation.VERTICAL, spacing: 2,
            margin_top: 8, margin_bottom: 8, margin_start: 12, margin_end: 12,
        });
        this._title = new Gtk.Label({xalign: 0, css_classes: ['heading']});
        this._subtitle = new Gtk.Label({xalign: 0, wrap: true, css_classes: ['dim-label']});
        this.append(this._title);
        this.append(this._subtitle);
        this._connection = null;
        this._ids = [];
    }

    bind(connection) {
        this._connection = connection;
        for (const prop of ['state', 'method', 'transport', 'rtt', 'bytes-sent',
            'bytes-received', 'remote-address']) {
            this._ids.push(connection.connect(`notify::${prop}`, () => this._update()));
        }
        // the byte counters notify at most every keepalive tick (25 s when
        // idle); their getters are exact: read them every second
        this._tick = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 1, () => {
            this._update();
            return GLib.SOURCE_CONTINUE;
        });
        this._update();
    }

    unbind() {
        for (const id of this._ids)
            this._connection.disconnect(id);
        this._ids = [];
        GLib.source_remove(this._tick);
        this._tick = 0;
        this._connection = null;
    }

    refresh() {
        if (this._connection)
            this._update();
    }

    text() {
        return `${this._title.label}\n${this._subtitle.label}`;
    }

    _update() {
        const c = this._connection;
        const role = c.get_role() === Natkit.Role.INITIATOR ? 'to' : 'from';
        this._title.label = `${role} ${shortId(c.peer_id)} — ${stateWords(c.state)}`;
        const how = c.method
            ? `${c.method} (${c.transport}), ${c.is_relayed() ? 'relayed' : 'direct'}`
            : 'no path yet';
        this._subtitle.label = `${how} · RTT ${formatRtt(c.rtt)} · ` +
            `sent ${formatBytes(c.bytes_sent)}, received ${formatBytes(c.bytes_received)}`;
    }
});

// A row of the port mapping list.
const MappingRow = GObject.registerClass(
class MappingRow extends Gtk.Label {
    _init() {
        super._init({xalign: 0, wrap: true, margin_top: 6, margin_bottom: 6,
            margin_start: 12, margin_end: 12});
        this._mapping = null;
        this._ids = [];
    }

    bind(mapping) {
        this._mapping = mapping;
        for (const prop of ['state', 'external-address', 'external-port', 'lifetime'])
            this._ids.push(mapping.connect(`notify::${prop}`, () => this._update()));
        this._update();
    }

    unbind() {
        for (const id of this._ids)
            this._mapping.disconnect(id);
        this._ids = [];
        this._mapping = null;
    }

    _update() {
        const m = this._mapping;
        const state = m.state === Natkit.PortMappingState.LOST ? ' — lost, retrying' : '';
        this.label = `${m.method}: ${m.external_address}:${m.external_port} → ` +
            `${m.internal_address}:${m.internal_port}${state}`;
    }
});

// An outgoing or incoming file, with its progress bar and Cancel button.
class Transfer {
    constructor(peer, outgoing, name) {
        this.peer = peer;
        this.outgoing = outgoing;
        this.name = name;
        this.cancellable = new Gio.Cancellable();
        this.done = false;
        this.delivered = false;
        this.row = new Gtk.Box({orientation: Gtk.Orientation.VERTICAL, spacing: 4,
            margin_top: 6, margin_bottom: 6, margin_start: 12, margin_end: 12});
        const top = new Gtk.Box({spacing: 6});
        this.label = new Gtk.Label({xalign: 0, hexpand: true, wrap: true,
            label: `${outgoing ? 'Sending' : 'Receiving'} ${name}`});
        this.cancelButton = new Gtk.Button({label: 'Cancel', valign: Gtk.Align.CENTER});
        this.cancelButton.connect('clicked', () => this.cancel());
        top.append(this.label);
        top.append(this.cancelButton);
        this.bar = new Gtk.ProgressBar({show_text: true});
        this.row.append(top);
        this.row.append(this.bar);
    }

    progress(done, total) {
        this.bar.fraction = total > 0 ? Math.min(1, done / total) : 1;
        this.bar.text = `${formatBytes(done)} of ${formatBytes(total)}`;
    }

    cancel() {
        this.cancellable.cancel();
    }

    finish(text, ok) {
        this.done = true;
        this.label.label = text;
        this.cancelButton.visible = false;
        if (!ok)
            this.row.add_css_class('error');
    }
}

// One connection: its page in the window, the records it reads and the
// records it writes (one at a time: a text can go between two chunks of a
// file, never inside one).
class Peer {
    constructor(app, connection) {
        this.app = app;
        this.connection = connection;
        // writes and transfers: cancelled when the connection ends
        this.cancellable = new Gio.Cancellable();
        // the read loop and the closing of the stream: cancelled when this
        // side closes (the peer's last data is still read when it closes)
        this._readCancellable = new Gio.Cancellable();
        this._closedHere = false;
        this._writing = Promise.resolve();
        this._nextId = 1;
        this._incoming = new Map();   // id → {file, stream, received, total, transfer}
        this._outgoing = new Map();   // id → Transfer (waiting for its ack)
        this.transfers = new Set();
        this.ended = false;
        this.peerFinished = false;
        this.peerSaidBye = false;
        this._peerFinishedWaiters = [];
        this._endWaiters = [];
        this._sending = new Set();    // the promises of files being sent
        this.received = [];           // {name, path, size} of the files that arrived
        this._ids = [];
        this._buildPage();

        for (const prop of ['state', 'method', 'rtt', 'loss', 'bytes-sent', 'bytes-received',
            'local-address', 'remote-address'])
            this._ids.push(connection.connect(`notify::${prop}`, () => this._update()));
        this._ids.push(connection.connect('notify::state', () => this._stateChanged()));
        this._ids.push(connection.connect('path-changed', (c, from, reason) => {
            this.log(`Moved from ${from ?? 'no path'} to ${c.method}: ${reason}`);
            this._update();
        }));
        this._update();
        this._readLoop();
    }

    get id() {
        return this.connection.get_session_id();
    }

    _buildPage() {
        const c = this.connection;
        this.page = new Gtk.Box({orientation: Gtk.Orientation.VERTICAL, spacing: 18});

        const how = new Adw.PreferencesGroup({
            title: `Connection ${c.get_role() === Natkit.Role.INITIATOR ? 'to' : 'from'} ` +
                `${shortId(c.peer_id)}`,
            description: c.get_peer_address() ?? c.peer_id,
        });
        this._methodRow = new Adw.ActionRow({title: 'How', use_markup: false});
        this._rttRow = new Adw.ActionRow({title: 'Round trip', use_markup: false});
        this._whyRow = new Adw.ActionRow({title: 'Why', use_markup: false});
        this._pathRow = new Adw.ActionRow({title: 'Path', use_markup: false});
        for (const row of [this._methodRow, this._rttRow, this._whyRow, this._pathRow])
            how.add(row);
        const close = new Gtk.Button({label: 'Close', valign: Gtk.Align.CENTER,
            css_classes: ['destructive-action']});
        close.connect('clicked', () => this.close());
        how.set_header_suffix(close);
        this.page.append(how);

        const send = new Adw.PreferencesGroup({title: 'Send'});
        this._messageRow = new Adw.EntryRow({title: 'Message', show_apply_button: true});
        this._messageRow.connect('apply', () => {
            const text = this._messageRow.text;
            if (!text)
                return;
            this._messageRow.text = '';
            this.sendText(text).catch(() => {});
        });
        send.add(this._messageRow);
        const fileRow = new Adw.ActionRow({title: 'A file',
            subtitle: 'The peer gets it byte for byte, encrypted end to end'});
        const choose = new Gtk.Button({label: 'Send a File…', valign: Gtk.Align.CENTER});
        choose.connect('clicked', () => this._chooseFile());
        fileRow.add_suffix(choose);
        send.add(fileRow);
        this.page.append(send);

        this._transferList = new Gtk.ListBox({css_classes: ['boxed-list'],
            selection_mode: Gtk.SelectionMode.NONE, visible: false});
        this.page.append(this._transferList);

        const logGroup = new Adw.PreferencesGroup({title: 'Messages and events'});
        this._log = new Gtk.ListBox({css_classes: ['boxed-list'],
            selection_mode: Gtk.SelectionMode.NONE});
        logGroup.add(this._log);
        this.page.append(logGroup);
    }

    refresh() {
        this._update();
    }

    _update() {
        const c = this.connection;
        if (c.method) {
            const relayed = c.is_relayed();
            this._methodRow.subtitle = `${c.method} over ${c.transport}, ` +
                `${relayed ? 'relayed' : 'direct'} — ${stateWords(c.state)}`;
            this._pathRow.subtitle = `${c.local_address ?? '?'} ↔ ${c.remote_address ?? '?'}`;
        } else {
            this._methodRow.subtitle = `no path — ${stateWords(c.state)}`;
            this._pathRow.subtitle = 'natkit is finding a new path';
        }
        this._rttRow.subtitle = `${formatRtt(c.rtt)}, loss ${Math.round(c.loss * 100)}%, ` +
            `sent ${formatBytes(c.bytes_sent)}, received ${formatBytes(c.bytes_received)}`;
        this._whyRow.subtitle = c.dup_explanation() ?? '—';
    }

    _stateChanged() {
        const state = this.connection.state;
        if (state === Natkit.ConnectionState.DEGRADED)
            this.log('The path stopped answering: natkit is looking for another one.');
        if (state !== Natkit.ConnectionState.CLOSED && state !== Natkit.ConnectionState.FAILED)
            return;
        const reason = lastReason(this.connection);
        this.log(`${state === Natkit.ConnectionState.FAILED ? 'Failed' : 'Closed'}` +
            `${reason ? `: ${reason}` : ''}`);
        // no toast when this side closed it: the user (or a goodbye) did
        this._end(this._closedHere ? null
            : `The connection with ${shortId(this.connection.peer_id)} ` +
              `${state === Natkit.ConnectionState.FAILED ? 'failed' : 'closed'}` +
              `${reason ? `: ${reason}` : ''}`);
    }

    log(text) {
        const label = new Gtk.Label({label: text, xalign: 0, wrap: true, selectable: true,
            margin_top: 6, margin_bottom: 6, margin_start: 12, margin_end: 12});
        this._log.append(label);
    }

    // ---- writing

    _send(header, payload = null) {
        const job = this._writing.then(() => this._writeRecord(header, payload));
        this._writing = job.catch(() => {});
        return job;
    }

    async _writeRecord(header, payload) {
        header.size = payload ? payload.length : 0;
        const line = encoder.encode(`${JSON.stringify(header)}\n`);
        const out = this.connection.get_stream().get_output_stream();
        await writeAll(out, payload ? concat(line, payload) : line, this.cancellable);
    }

    async sendText(text) {
        const data = encoder.encode(text);
        if (data.length > MAX_TEXT) {
            this.app.toast(`That message is too long (${formatBytes(data.length)}); ` +
                `send it as a file instead.`);
            throw new Error('message too long');
        }
        try {
            await this._send({type: 'text'}, data);
            this.log(`You: ${text}`);
        } catch (e) {
            if (!isCancelled(e))
                this.log(`Could not send your message: ${errorText(e)}`);
            throw e;
        }
    }

    _chooseFile() {
        const chooser = new Gtk.FileChooserNative({
            title: 'Send a File', transient_for: this.app.window, modal: true,
            action: Gtk.FileChooserAction.OPEN, accept_label: 'Send',
        });
        chooser.connect('response', (dialog, response) => {
            const file = response === Gtk.ResponseType.ACCEPT ? dialog.get_file() : null;
            dialog.destroy();
            if (file)
                this.sendFile(file).catch(() => {});
        });
        chooser.show();
    }

    // Sends a file; resolves once the last byte is written to the stream.
    // @onProgress (transfer, bytes sent) is called after each chunk.
    sendFile(file, onProgress = null) {
        const job = this._sendFile(file, onProgress);
        const tracked = job.catch(() => {}).finally(() => this._sending.delete(tracked));
        this._sending.add(tracked);
        return job;
    }

    async _sendFile(file, onProgress) {
        const transfer = new Transfer(this, true, file.get_basename());
        this._addTransfer(transfer);
        // a closed connection stops the transfer too
        const linked = this.cancellable.connect(() => transfer.cancel());
        let input = null;
        let id = 0;
        let sent = 0;
        try {
            const info = await file.query_info_async('standard::size,standard::display-name,standard::type',
                Gio.FileQueryInfoFlags.NONE, PRIORITY, transfer.cancellable);
            if (info.get_file_type() !== Gio.FileType.REGULAR)
                throw new Error(`${file.get_parse_name()} is not a regular file`);
            const total = info.get_size();
            const name = info.get_display_name();
            input = await file.read_async(PRIORITY, transfer.cancellable);
            id = this._nextId++;
            transfer.progress(0, total);
            await this._send({type: 'file', id, name, total});
            for (;;) {
                // eslint-disable-next-line no-await-in-loop
                const chunk = await input.read_bytes_async(CHUNK, PRIORITY, transfer.cancellable);
                const data = chunk.get_size() > 0 ? chunk.get_data() : null;
                if (!data)
                    break;
                // eslint-disable-next-line no-await-in-loop
                await this._send({type: 'data', id}, data);
                sent += data.length;
                transfer.progress(sent, Math.max(total, sent));
                onProgress?.(transfer, sent);
                if (transfer.cancellable.is_cancelled())
                    throw new Gio.IOErrorEnum({code: Gio.IOErrorEnum.CANCELLED,
                        message: 'Operation was cancelled'});
            }
            if (sent !== total)
                throw new Error(`${name} changed while it was being sent ` +
                    `(${formatBytes(total)} before, ${formatBytes(sent)} now)`);
            await this._send({type: 'end', id});
            this._outgoing.set(id, transfer);
            transfer.finish(`Sent ${name} (${formatBytes(sent)}); waiting for the peer ` +
                'to confirm', true);
            this.log(`You sent ${name} (${formatBytes(sent)}).`);
            return transfer;
        } catch (e) {
            const cancelled = transfer.cancellable.is_cancelled();
            if (id && !this.cancellable.is_cancelled())
                await this._send({type: 'cancel', id}).catch(() => {});
            if (cancelled) {
                transfer.finish(`Cancelled sending ${transfer.name} after ` +
                    `${formatBytes(sent)}.`, false);
            } else {
                transfer.finish(`Could not send ${transfer.name}: ${errorText(e)}`, false);
                this.log(`Could not send ${transfer.name}: ${errorText(e)}`);
            }
            throw e;
        } finally {
            this.cancellable.disconnect(linked);
            if (input)
                await input.close_async(PRIORITY, null).catch(() => {});
        }
    }

    _addTransfer(transfer) {
        this.transfers.add(transfer);
        this._transferList.append(transfer.row);
        this._transferList.visible = true;
    }

    // Says goodbye and closes the sending direction: the peer reads the
    // end, and closes the connection. It may do so before the close here
    // completes: that is no error.
    async finishSending() {
        await this._send({type: 'bye'});
        try {
            await this.connection.get_stream().get_output_stream().close_async(PRIORITY,
                this._readCancellable);
        } catch (e) {
            if (this._closedHere || this.connection.state !== Natkit.ConnectionState.CLOSED)
                throw e;
        }
    }

    // Resolves, with the last state, when the connection has ended.
    waitClosed() {
        if (this.ended)
            return Promise.resolve(this.connection.state);
        return new Promise(resolve => this._endWaiters.push(resolve));
    }

    // Resolves when the peer has closed its sending direction.
    waitPeerFinished() {
        if (this._readDone)
            return Promise.resolve(this.peerFinished);
        return new Promise(resolve => this._peerFinishedWaiters.push(resolve));
    }

    // ---- reading

    async _readLoop() {
        if (!this.connection.get_stream()) {
            this.log('This peer sends datagrams only; natkit Share needs a stream. ' +
                'The connection is closed.');
            this.close();
            return;
        }
        const reader = new RecordReader(this.connection.get_stream().get_input_stream(),
            this._readCancellable);
        try {
            for (;;) {
                // eslint-disable-next-line no-await-in-loop
                const header = await reader.readHeader();
                if (!header)
                    break;
                // eslint-disable-next-line no-await-in-loop
                const payload = header.size ? await reader.readExact(header.size) : new Uint8Array(0);
                // eslint-disable-next-line no-await-in-loop
                await this._handle(header, payload);
            }
            this.peerFinished = true;
            for (const [, t] of this._incoming)
                this._dropIncoming(t, 'the peer stopped sending before the end');
            if (!this.ended)
                this.log('The peer has nothing more to send.');
        } catch (e) {
            if (isCancelled(e) || this.ended) {
                for (const [, t] of this._incoming)
                    this._dropIncoming(t, 'the connection ended');
                return;
            }
            this.log(`The peer sent something natkit Share does not understand ` +
                `(${errorText(e)}); the connection is closed.`);
            this.app.toast(`Closed the connection with ${shortId(this.connection.peer_id)}: ` +
                `it sent data natkit Share does not understand.`);
            this.close();
        } finally {
            this._readDone = true;
            if (this._drainId) {
                GLib.source_remove(this._drainId);
                this._drainId = 0;
            }
            for (const resolve of this._peerFinishedWaiters.splice(0))
                resolve(this.peerFinished);
        }
    }

    async _handle(header, payload) {
        const id = header.id;
        switch (header.type) {
        case 'text':
            this.log(`Peer: ${decoder.decode(payload)}`);
            return;
        case 'file': {
            if (!Number.isSafeInteger(id) || this._incoming.has(id) ||
                typeof header.name !== 'string' || !Number.isSafeInteger(header.total) ||
                header.total < 0)
                throw new Error('a file record is malformed');
            const transfer = new Transfer(this, false, header.name);
            this._addTransfer(transfer);
            const t = {id, name: header.name, total: header.total, received: 0, transfer,
                file: null, stream: null};
            this._incoming.set(id, t);
            transfer.cancelButton.connect('clicked', () => {
                if (!t.transfer.done)
                    this._dropIncoming(t, 'you cancelled it');
            });
            try {
                [t.file, t.stream] = await this.app.createDownload(header.name, transfer.cancellable);
                transfer.progress(0, header.total);
            } catch (e) {
                this._dropIncoming(t, isCancelled(e) ? 'you cancelled it' : errorText(e));
            }
            return;
        }
        case 'data': {
            const t = this._incoming.get(id);
            if (!t)
                return;   // a file we declined or cancelled
            if (t.received + payload.length > t.total)
                throw new Error(`the peer sent more of ${t.name} than it announced`);
            try {
                await writeAll(t.stream, payload, t.transfer.cancellable);
                t.received += payload.length;
                t.transfer.progress(t.received, t.total);
            } catch (e) {
                this._dropIncoming(t, isCancelled(e) ? 'you cancelled it' : errorText(e));
            }
            return;
        }
        case 'end': {
            const t = this._incoming.get(id);
            if (!t)
                return;
            if (t.received !== t.total) {
                this._dropIncoming(t, `the peer announced ${formatBytes(t.total)} but sent ` +
                    `${formatBytes(t.received)}`);
                return;
            }
            this._incoming.delete(id);
            try {
                await t.stream.close_async(PRIORITY, t.transfer.cancellable);
                t.transfer.finish(`Received ${t.name} (${formatBytes(t.total)}): ` +
                    `${t.file.get_parse_name()}`, true);
                this.log(`Received ${t.name}, saved as ${t.file.get_parse_name()}.`);
                this.received.push({name: t.name, path: t.file.get_path(), size: t.total});
                this._send({type: 'ack', id}).catch(() => {});
            } catch (e) {
                this._dropIncoming(t, errorText(e));
            }
            return;
        }
        case 'cancel': {
            const t = this._incoming.get(id);
            if (t)
                this._dropIncoming(t, 'the peer cancelled it');
            return;
        }
        case 'bye':
            this.peerSaidBye = true;
            // finish what we are sending, say goodbye too, and close: the
            // peer then knows everything arrived
            this.log('The peer is done and leaves.');
            Promise.all([...this._sending])
                .then(() => this.finishSending())
                .catch(() => {})
                .finally(() => {
                    if (!this.ended)
                        this.close();
                });
            return;
        case 'ack': {
            const transfer = this._outgoing.get(id);
            if (transfer) {
                this._outgoing.delete(id);
                transfer.delivered = true;
                transfer.finish(`Delivered ${transfer.name}: the peer has it.`, true);
            }
            return;
        }
        default:
            // a newer version's record: skip it
        }
    }

    // Stops receiving a file: closes and deletes what arrived of it.
    _dropIncoming(t, why) {
        if (!this._incoming.delete(t.id))
            return;
        t.transfer.cancel();
        t.transfer.finish(`Did not receive ${t.name}: ${why}.`, false);
        this.log(`Did not receive ${t.name}: ${why}.`);
        if (t.stream) {
            const {stream, file} = t;
            stream.close_async(PRIORITY, null).catch(() => {})
                .finally(() => file.delete_async(PRIORITY, null).catch(() => {}));
        }
    }

    // ---- ending

    close() {
        this._closedHere = true;
        this._readCancellable.cancel();
        this.connection.close();   // notify::state ends the rest
        this._end(null);
    }

    _end(message) {
        if (this.ended)
            return;
        this.ended = true;
        this.cancellable.cancel();
        // what the peer sent before it closed is still read to its end (a
        // file it finished arrives whole); a stream that stays silent is
        // given up after 10 s
        if (!this._readDone && !this._readCancellable.is_cancelled()) {
            this._drainId = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 10, () => {
                this._drainId = 0;
                this._readCancellable.cancel();
                return GLib.SOURCE_REMOVE;
            });
        }
        for (const transfer of this.transfers) {
            if (!transfer.done && transfer.outgoing)
                transfer.cancel();
        }
        for (const id of this._ids)
            this.connection.disconnect(id);
        this._ids = [];
        if (message)
            this.app.toast(message);
        this.app.peerEnded(this);
        for (const resolve of this._endWaiters.splice(0))
            resolve(this.connection.state);
    }
}

const ShareWindow = GObject.registerClass(
class ShareWindow extends Adw.ApplicationWindow {
    _init(app) {
        super._init({application: app, title: 'natkit Share',
            default_width: 1180, default_height: 820});
        this.app = app;
        const box = new Gtk.Box({orientation: Gtk.Orientation.VERTICAL});
        const header = new Adw.HeaderBar({
            title_widget: new Adw.WindowTitle({title: 'natkit Share',
                subtitle: 'Text and files to any peer, through any NAT'}),
        });
        box.append(header);
        this.toasts = new Adw.ToastOverlay({vexpand: true});
        box.append(this.toasts);
        // two columns: you, your peers and connections; the selected connection
        const columns = new Gtk.Box({homogeneous: true});
        this.toasts.set_child(columns);
        const column = () => {
            const scrolled = new Gtk.ScrolledWindow({hscrollbar_policy: Gtk.PolicyType.NEVER,
                hexpand: true});
            const clamp = new Adw.Clamp({maximum_size: 640, margin_top: 18, margin_bottom: 18,
                margin_start: 12, margin_end: 12});
            scrolled.set_child(clamp);
            const inner = new Gtk.Box({orientation: Gtk.Orientation.VERTICAL, spacing: 24});
            clamp.set_child(inner);
            columns.append(scrolled);
            return inner;
        };
        const content = column();
        const detail = column();
        this.set_content(box);

        // your network
        const network = new Adw.PreferencesGroup({title: 'Your network'});
        this.networkRow = new Adw.ActionRow({title: 'Not checked yet', use_markup: false});
        this.networkSpinner = new Gtk.Spinner({valign: Gtk.Align.CENTER});
        const again = new Gtk.Button({label: 'Check Again', valign: Gtk.Align.CENTER});
        again.connect('clicked', () => app.detect().catch(() => {}));
        this.networkRow.add_suffix(this.networkSpinner);
        this.networkRow.add_suffix(again);
        network.add(this.networkRow);
        content.append(network);

        // your address
        const you = new Adw.PreferencesGroup({title: 'Your address',
            description: 'Give it to your peer: they paste it to connect to you.'});
        this.addressRow = new Adw.ActionRow({title: 'Not registered yet', use_markup: false,
            title_selectable: true, css_classes: ['property']});
        this.copyButton = new Gtk.Button({icon_name: 'edit-copy-symbolic',
            valign: Gtk.Align.CENTER, tooltip_text: 'Copy your address', sensitive: false,
            css_classes: ['flat']});
        this.copyButton.connect('clicked', () => app.copyAddress());
        this.addressRow.add_suffix(this.copyButton);
        you.add(this.addressRow);
        this.serverRow = new Adw.EntryRow({title: 'natkit-server (HOST:PORT)',
            show_apply_button: true});
        this.serverRow.connect('apply', () => app.setServer(this.serverRow.text));
        you.add(this.serverRow);
        content.append(you);

        // connect
        const connect = new Adw.PreferencesGroup({title: 'Connect to a peer'});
        this.peerRow = new Adw.EntryRow({title: 'Peer address (PEER-ID@HOST:PORT)',
            show_apply_button: true});
        this.peerRow.connect('apply', () => app.connectTo(this.peerRow.text).catch(() => {}));
        this.connectSpinner = new Gtk.Spinner({valign: Gtk.Align.CENTER});
        this.cancelConnect = new Gtk.Button({label: 'Cancel', valign: Gtk.Align.CENTER,
            visible: false});
        this.cancelConnect.connect('clicked', () => app.cancelConnects());
        this.peerRow.add_suffix(this.connectSpinner);
        this.peerRow.add_suffix(this.cancelConnect);
        connect.add(this.peerRow);
        content.append(connect);
        this.connectStatus = new Gtk.Label({xalign: 0, wrap: true, selectable: true,
            visible: false, margin_start: 6, margin_end: 6});
        content.append(this.connectStatus);

        // connections: the manager's Gio.ListModel, straight into a Gtk.ListView
        const list = new Adw.PreferencesGroup({title: 'Connections'});
        this.selection = new Gtk.SingleSelection({model: app.manager.get_connections(),
            autoselect: true});
        const factory = new Gtk.SignalListItemFactory();
        factory.connect('setup', (f, item) => item.set_child(new ConnectionRow()));
        factory.connect('bind', (f, item) => item.get_child().bind(item.get_item()));
        factory.connect('unbind', (f, item) => item.get_child().unbind());
        this.connectionList = new Gtk.ListView({model: this.selection, factory,
            css_classes: ['card']});
        this.noConnections = new Gtk.Label({label: 'No connections yet. Connect to a ' +
            'peer above, or give them your address.', wrap: true, xalign: 0,
            css_classes: ['dim-label'], margin_start: 6});
        list.add(this.connectionList);
        list.add(this.noConnections);
        content.append(list);

        // the selected connection
        this.pages = new Gtk.Stack({vhomogeneous: false});
        this.noSelection = new Adw.StatusPage({icon_name: APP_ID,
            title: 'No connection selected',
            description: 'Connect to a peer, or select a connection, to send it text ' +
                'and files and to see how natkit reached it.'});
        detail.append(this.noSelection);
        detail.append(this.pages);
        this.selection.connect('notify::selected-item', () => this.showSelected());
        app.manager.get_connections().connect('items-changed', () => this.updateEmpty());
        this.updateEmpty();

        // port mappings: the same pattern
        const mappings = new Adw.PreferencesGroup({title: 'Port mappings',
            description: 'Ports your router forwards for natkit in this app.'});
        const mappingFactory = new Gtk.SignalListItemFactory();
        mappingFactory.connect('setup', (f, item) => item.set_child(new MappingRow()));
        mappingFactory.connect('bind', (f, item) => item.get_child().bind(item.get_item()));
        mappingFactory.connect('unbind', (f, item) => item.get_child().unbind());
        const mappingModel = app.manager.get_port_mappings();
        this.mappingList = new Gtk.ListView({
            model: new Gtk.NoSelection({model: mappingModel}),
            factory: mappingFactory, css_classes: ['card'],
        });
        this.noMappings = new Gtk.Label({label: 'None.', xalign: 0,
            css_classes: ['dim-label'], margin_start: 6});
        const updateMappings = () => {
            const n = mappingModel.get_n_items();
            this.mappingList.visible = n > 0;
            this.noMappings.visible = n === 0;
        };
        mappingModel.connect('items-changed', updateMappings);
        updateMappings();
        mappings.add(this.mappingList);
        mappings.add(this.noMappings);
        content.append(mappings);
    }

    // What the connection list shows: the text of each bound row.
    connectionRowTexts() {
        const texts = [];
        const walk = widget => {
            for (let child = widget.get_first_child(); child; child = child.get_next_sibling()) {
                if (child instanceof ConnectionRow && child.get_mapped())
                    texts.push(child.text());
                else
                    walk(child);
            }
        };
        walk(this.connectionList);
        return texts;
    }

    // Reads every shown row's connection again (for a picture of now).
    refreshRows() {
        const walk = widget => {
            for (let child = widget.get_first_child(); child; child = child.get_next_sibling()) {
                if (child instanceof ConnectionRow)
                    child.refresh();
                else
                    walk(child);
            }
        };
        walk(this.connectionList);
    }

    updateEmpty() {
        const n = this.app.manager.get_connections().get_n_items();
        this.connectionList.visible = n > 0;
        this.noConnections.visible = n === 0;
    }

    showSelected() {
        const connection = this.selection.get_selected_item();
        const peer = connection ? this.app.peers.get(connection.get_session_id()) : null;
        if (peer)
            this.pages.set_visible_child(peer.page);
        this.pages.visible = Boolean(peer);
        this.noSelection.visible = !peer;
    }

    selectPeer(peer) {
        const model = this.app.manager.get_connections();
        for (let i = 0; i < model.get_n_items(); i++) {
            if (model.get_item(i) === peer.connection)
                this.selection.set_selected(i);
        }
        this.showSelected();
    }

    showConnectStatus(text, isError) {
        this.connectStatus.label = text ?? '';
        this.connectStatus.visible = Boolean(text);
        if (isError)
            this.connectStatus.add_css_class('error');
        else
            this.connectStatus.remove_css_class('error');
    }
});

const ShareApplication = GObject.registerClass(
class ShareApplication extends Adw.Application {
    _init() {
        super._init({application_id: APP_ID,
            flags: Gio.ApplicationFlags.HANDLES_COMMAND_LINE});
        this.exitStatus = 0;
        this.peers = new Map();     // session ID → Peer
        this.window = null;
        this.manager = null;
        this._server = null;
        this._stun = null;
        this._rendezvous = null;
        this._registerCancellable = null;
        this._retryId = 0;
        this._retrySeconds = 1;
        this._detectCancellable = null;
        this._connectCancellables = new Set();
        this._incomingWaiters = [];
        this._methods = null;       // null: every method

        this.add_main_option('server', 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING,
            'The natkit-server to register at', 'HOST:PORT');
        this.add_main_option('stun', 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING,
            'The STUN server for detection (default: the natkit-server)', 'HOST:PORT');
        this.add_main_option('method', 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING_ARRAY,
            'Only try this traversal method (repeatable; default: every one)', 'NAME');
        this.add_main_option('connect', 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING,
            'Connect to this peer at start', 'PEER-ID@HOST:PORT');
        this.add_main_option('message', 0, GLib.OptionFlags.NONE, GLib.OptionArg.STRING,
            'Then send this text', 'TEXT');
        this.add_main_option('send', 0, GLib.OptionFlags.NONE, GLib.OptionArg.FILENAME,
            'Then send this file', 'FILE');
        this.add_main_option('receive', 0, GLib.OptionFlags.NONE, GLib.OptionArg.NONE,
            'Wait for a peer to connect, until it leaves', null);
        this.add_main_option('cancel-after', 0, GLib.OptionFlags.NONE, GLib.OptionArg.INT64,
            'Press the file\'s Cancel button once this many bytes are sent', 'BYTES');
        this.add_main_option('screenshot', 0, GLib.OptionFlags.NONE, GLib.OptionArg.FILENAME,
            'Then save a picture of the window', 'PNG');
        this.add_main_option('quit-when-done', 0, GLib.OptionFlags.NONE, GLib.OptionArg.NONE,
            'Then finish sending, close the connection and quit', null);

        this.connect('handle-local-options', (app, options) => {
            // a scripted run is its own instance, never a remote of another
            if (options.contains('connect') || options.contains('receive') ||
                options.contains('quit-when-done'))
                this.flags |= Gio.ApplicationFlags.NON_UNIQUE;
            return -1;
        });
    }

    vfunc_startup() {
        super.vfunc_startup();
        // run from the source tree: the icon is beside the script, not installed
        const [here] = GLib.filename_from_uri(import.meta.url);
        const data = GLib.build_filenamev([GLib.path_get_dirname(here), 'data']);
        if (GLib.file_test(GLib.build_filenamev([data, `${APP_ID}.svg`]), GLib.FileTest.EXISTS))
            Gtk.IconTheme.get_for_display(Gdk.Display.get_default()).add_search_path(data);
        let error = null;
        try {
            this.manager = Natkit.Manager.new();
        } catch (e) {
            // a broken config.json: say so, and go on with the defaults
            error = e;
            this.manager = Natkit.Manager.new_with_config(Natkit.Config.new());
        }
        this.manager.connect('incoming', (m, connection) => this._addPeer(connection));
        this.manager.connect('connect-progress', (m, session, peerId, event, method, reason) => {
            if (event === 'attempt')
                this._progress(`Trying ${method}…`);
            else if (event === 'attempt-failed')
                this._progress(`${method} did not work: ${reason ?? 'no reason given'}`);
        });
        this.manager.connect('detect-progress', (m, message) => {
            if (this.window)
                this.window.networkRow.subtitle = message;
        });
        const servers = this.manager.get_config().get_rendezvous_servers();
        this._server = servers && servers.length ? servers[0] : null;
        this._configError = error;
    }

    vfunc_command_line(commandLine) {
        const options = commandLine.get_options_dict().end().recursiveUnpack();
        const str = v => (v instanceof Uint8Array ? new TextDecoder().decode(v).replace(/\0$/, '') : v);
        if (options.server)
            this._server = str(options.server);
        if (options.stun)
            this._stun = str(options.stun);
        if (options.method)
            this._methods = options.method.map(str);
        this.activate();
        if (options.connect || options.receive || options['quit-when-done']) {
            this.hold();
            this._script({
                connect: str(options.connect),
                receive: Boolean(options.receive),
                message: str(options.message),
                send: options.send ? str(options.send) : null,
                cancelAfter: options['cancel-after'] ?? -1,
                screenshot: options.screenshot ? str(options.screenshot) : null,
                quit: Boolean(options['quit-when-done']),
                cwd: commandLine.get_cwd(),
            }).finally(() => this.release());
        }
        return 0;
    }

    vfunc_activate() {
        if (this.window) {
            this.window.present();
            return;
        }
        this.window = new ShareWindow(this);
        this.window.connect('close-request', () => {
            this._shutdownWork();
            return false;
        });
        this.window.serverRow.text = this._server ?? '';
        this.window.present();
        if (this._configError)
            this.toast(`Your natkit settings could not be read (${errorText(this._configError)}); ` +
                'using the defaults.');
        this._registered = this.register_at_server();
        this._detected = this.detect().catch(() => {});
    }

    vfunc_shutdown() {
        this._shutdownWork();
        super.vfunc_shutdown();
    }

    // Cancels everything under way and closes every connection.
    _shutdownWork() {
        this._detectCancellable?.cancel();
        this._registerCancellable?.cancel();
        this.cancelConnects();
        if (this._retryId) {
            GLib.source_remove(this._retryId);
            this._retryId = 0;
        }
        for (const peer of [...this.peers.values()])
            peer.close();
        if (this._rendezvous) {
            this.manager.stop_listening(this._rendezvous);
            this._rendezvous = null;
        }
    }

    toast(text) {
        if (this.window)
            this.window.toasts.add_toast(new Adw.Toast({title: GLib.markup_escape_text(text, -1),
                timeout: 8}));
        printerr(`natkit-share: ${text}`);
    }

    // ---- your network

    _stunServer() {
        if (this._stun)
            return this._stun;
        // natkit-server answers STUN on its own port
        return this._server;
    }

    async detect() {
        const win = this.window;
        const stun = this._stunServer();
        this._detectCancellable?.cancel();
        if (!stun) {
            win.networkRow.title = 'Not checked';
            win.networkRow.subtitle = 'Enter a natkit-server below: natkit asks it what ' +
                'your network looks like.';
            return null;
        }
        const cancellable = new Gio.Cancellable();
        this._detectCancellable = cancellable;
        win.networkRow.title = 'Checking your network…';
        win.networkRow.subtitle = `Asking ${stun}`;
        win.networkSpinner.spinning = true;
        try {
            const info = await this.manager.detect_nat_async([stun], 0,
                Natkit.DetectFlags.NONE, cancellable);
            win.networkRow.title = info.public_address
                ? `Seen from outside as ${info.public_address}:${info.public_port}`
                : 'No public address found';
            win.networkRow.subtitle = info.describe();
            return info;
        } catch (e) {
            if (!isCancelled(e)) {
                win.networkRow.title = 'Could not check your network';
                win.networkRow.subtitle = `${errorText(e)} Check that you are online and ` +
                    'that the server is right, then press Check Again.';
            }
            throw e;
        } finally {
            if (this._detectCancellable === cancellable) {
                win.networkSpinner.spinning = false;
                this._detectCancellable = null;
            }
        }
    }

    // ---- your address

    setServer(text) {
        const server = text.trim();
        if (server === this._server && this._rendezvous)
            return;
        this._server = server || null;
        this.register_at_server();
        this.detect().catch(() => {});
    }

    // Registers at the natkit-server and listens there; retries with backoff.
    // Resolves to true once registered, false if it gave up for now.
    async register_at_server() {
        const win = this.window;
        this._registerCancellable?.cancel();
        if (this._retryId) {
            GLib.source_remove(this._retryId);
            this._retryId = 0;
        }
        if (this._rendezvous) {
            this.manager.stop_listening(this._rendezvous);
            this._rendezvous = null;
        }
        win.copyButton.sensitive = false;
        if (!this._server) {
            win.addressRow.title = 'No natkit-server';
            win.addressRow.subtitle = 'Enter the natkit-server you and your peers use ' +
                '(HOST:PORT) below and press Enter.';
            return false;
        }
        let rendezvous;
        try {
            rendezvous = this.manager.get_rendezvous(this._server);
        } catch (e) {
            win.addressRow.title = 'Not registered';
            win.addressRow.subtitle = `“${this._server}” cannot be used: ${errorText(e)} ` +
                'Enter a natkit-server as HOST:PORT.';
            return false;
        }
        const cancellable = new Gio.Cancellable();
        this._registerCancellable = cancellable;
        win.addressRow.title = 'Registering…';
        win.addressRow.subtitle = `at ${this._server}`;
        try {
            await rendezvous.connect_async(cancellable);
            this.manager.listen(rendezvous);
        } catch (e) {
            if (isCancelled(e) || cancellable.is_cancelled())
                return false;
            const seconds = this._retrySeconds;
            this._retrySeconds = Math.min(this._retrySeconds * 2, 60);
            win.addressRow.title = 'Not registered';
            win.addressRow.subtitle = `Cannot reach natkit-server ${this._server}: ` +
                `${errorText(e)} Check the server address and that you are online; ` +
                `trying again in ${seconds} s.`;
            this._retryId = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, seconds, () => {
                this._retryId = 0;
                this.register_at_server();
                return GLib.SOURCE_REMOVE;
            });
            return false;
        }
        this._retrySeconds = 1;
        this._rendezvous = rendezvous;
        win.addressRow.title = rendezvous.get_local_address();
        win.addressRow.subtitle = `Registered at ${this._server}; peers can connect to you.`;
        win.copyButton.sensitive = true;
        const id = rendezvous.connect('notify::registered', () => {
            if (this._rendezvous !== rendezvous) {
                rendezvous.disconnect(id);
                return;
            }
            win.addressRow.subtitle = rendezvous.registered
                ? `Registered at ${this._server}; peers can connect to you.`
                : `Lost the connection to ${this._server}; natkit reconnects by itself. ` +
                  'Check that you are online.';
        });
        return true;
    }

    copyAddress() {
        if (!this._rendezvous)
            return;
        const address = this._rendezvous.get_local_address();
        this.window.get_clipboard().set_content(Gdk.ContentProvider.new_for_value(address));
        this.toast('Your address is on the clipboard.');
    }

    // ---- connecting

    _progress(text) {
        if (this._connectCancellables.size > 0)
            this.window.showConnectStatus(text, false);
    }

    cancelConnects() {
        for (const c of this._connectCancellables)
            c.cancel();
    }

    // Connects to a peer address; resolves to its Peer.
    async connectTo(text) {
        const win = this.window;
        const address = (text ?? '').trim();
        try {
            Natkit.peer_address_parse(address);
        } catch (e) {
            const text = `That is not a peer address: ${errorText(e)}. A peer ` +
                'address looks like PEER-ID@HOST:PORT: ask your peer to copy theirs ' +
                'from “Your address”.';
            win.showConnectStatus(text, true);
            throw new Error(text);
        }
        if (this._rendezvous && address === this._rendezvous.get_local_address()) {
            const text = 'That is your own address: paste the address of the peer you ' +
                'want to reach.';
            win.showConnectStatus(text, true);
            throw new Error(text);
        }
        const cancellable = new Gio.Cancellable();
        this._connectCancellables.add(cancellable);
        win.connectSpinner.spinning = true;
        win.cancelConnect.visible = true;
        win.showConnectStatus(`Connecting to ${shortId(address)}…`, false);
        try {
            const connection = await this.manager.connect_async(address, this._methods,
                Natkit.ConnectFlags.NONE, cancellable);
            const peer = this._addPeer(connection);
            win.showConnectStatus(`Connected to ${shortId(address)} ` +
                `via ${connection.method}.`, false);
            win.peerRow.text = '';
            win.selectPeer(peer);
            return peer;
        } catch (e) {
            if (isCancelled(e)) {
                win.showConnectStatus('Connecting was cancelled.', false);
                throw e;
            }
            const text = `Could not connect to ${shortId(address)}: ${errorText(e)}`;
            win.showConnectStatus(text, true);
            throw new Error(text);
        } finally {
            this._connectCancellables.delete(cancellable);
            if (this._connectCancellables.size === 0) {
                win.connectSpinner.spinning = false;
                win.cancelConnect.visible = false;
            }
        }
    }

    _addPeer(connection) {
        let peer = this.peers.get(connection.get_session_id());
        if (peer)
            return peer;
        peer = new Peer(this, connection);
        this.peers.set(peer.id, peer);
        this.window.pages.add_child(peer.page);
        peer.log(`Connected ${connection.get_role() === Natkit.Role.INITIATOR ? 'to' : 'from'} ` +
            `${connection.get_peer_address() ?? connection.peer_id}.`);
        if (connection.get_role() === Natkit.Role.RESPONDER) {
            this.toast(`${shortId(connection.peer_id)} connected to you.`);
            for (const resolve of this._incomingWaiters.splice(0))
                resolve(peer);
        }
        this.window.showSelected();
        return peer;
    }

    peerEnded(peer) {
        this.peers.delete(peer.id);
        // the page goes once the connection has left the list
        GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
            if (this.window && peer.page.get_parent())
                this.window.pages.remove(peer.page);
            this.window?.showSelected();
            return GLib.SOURCE_REMOVE;
        });
    }

    // Where a received file goes: a new file in Downloads.
    async createDownload(name, cancellable) {
        const dirPath = GLib.get_user_special_dir(GLib.UserDirectory.DIRECTORY_DOWNLOAD) ??
            GLib.build_filenamev([GLib.get_home_dir(), 'Downloads']);
        const dir = Gio.File.new_for_path(dirPath);
        try {
            await dir.make_directory_async(PRIORITY, cancellable);
        } catch (e) {
            if (!e.matches?.(Gio.IOErrorEnum, Gio.IOErrorEnum.EXISTS))
                throw e;
        }
        // never a path: the last component, no hidden files
        let base = name.split('/').pop().replace(/[\0-\x1f]/g, '').replace(/^\.+/, '');
        if (!base)
            base = 'received';
        const dot = base.lastIndexOf('.');
        const stem = dot > 0 ? base.slice(0, dot) : base;
        const ext = dot > 0 ? base.slice(dot) : '';
        for (let n = 0; n < 1000; n++) {
            const file = dir.get_child(n ? `${stem} (${n})${ext}` : base);
            try {
                // eslint-disable-next-line no-await-in-loop
                const stream = await file.create_async(Gio.FileCreateFlags.NONE, PRIORITY,
                    cancellable);
                return [file, stream];
            } catch (e) {
                if (!e.matches?.(Gio.IOErrorEnum, Gio.IOErrorEnum.EXISTS))
                    throw e;
            }
        }
        throw new Error(`${dirPath} already holds too many files called ${base}`);
    }

    // ---- scripted runs (--connect, --send, --screenshot, --quit-when-done)

    async screenshot(path) {
        const win = this.window;
        // wait until what changed last is on screen
        for (let i = 0; i < 2; i++) {
            // eslint-disable-next-line no-await-in-loop
            await new Promise(resolve => {
                const clock = win.get_frame_clock();
                const id = clock.connect('after-paint', () => {
                    clock.disconnect(id);
                    resolve();
                });
                win.queue_draw();
            });
        }
        const paintable = new Gtk.WidgetPaintable({widget: win});
        const snapshot = new Gtk.Snapshot();
        paintable.snapshot(snapshot, win.get_width(), win.get_height());
        const node = snapshot.to_node();
        if (!node)
            throw new Error('the window drew nothing');
        const texture = win.get_renderer().render_texture(node, null);
        if (!texture.save_to_png(path))
            throw new Error(`could not write ${path}`);
        // what the window says, for whoever runs the script
        emit(({event: 'screenshot', path,
            width: texture.get_width(), height: texture.get_height(),
            network_status: `${win.networkRow.title}: ${win.networkRow.subtitle}`,
            address_status: `${win.addressRow.title}: ${win.addressRow.subtitle}`,
            connect_status: win.connectStatus.visible ? win.connectStatus.label : null,
            connection_rows: win.connectionRowTexts()}));
    }

    _waitFor(object, signal, ready, cancellable) {
        if (ready())
            return Promise.resolve();
        return new Promise(resolve => {
            const id = object.connect(signal, () => {
                if (ready() || cancellable.is_cancelled()) {
                    object.disconnect(id);
                    resolve();
                }
            });
            cancellable.connect(() => GLib.idle_add(GLib.PRIORITY_DEFAULT, () => {
                try {
                    object.disconnect(id);
                } catch (e) {}
                resolve();
                return GLib.SOURCE_REMOVE;
            }));
        });
    }

    async _script(s) {
        const watchdog = new Gio.Cancellable();
        let failed = null;
        const timer = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 45, () => {
            failed = 'the scripted run did not finish within 45 s';
            watchdog.cancel();
            this._shutdownWork();
            return GLib.SOURCE_REMOVE;
        });
        const result = {event: 'done'};
        let shot = false;
        try {
            await new Promise(resolve => {
                if (this.window.get_mapped())
                    resolve();
                else
                    this.window.connect('map', () => resolve());
            });
            // the screenshot shows what detection and registration found
            await this._detected;
            result.registered = await this._registered;
            if (s.connect) {
                const peer = await this.connectTo(s.connect);
                const c = peer.connection;
                // the first keepalive answer gives the RTT (about one round trip)
                const rttWait = new Gio.Cancellable();
                const rttTimer = GLib.timeout_add_seconds(GLib.PRIORITY_DEFAULT, 3, () => {
                    rttWait.cancel();
                    return GLib.SOURCE_REMOVE;
                });
                await this._waitFor(c, 'notify::rtt', () => c.rtt >= 0, rttWait);
                if (!rttWait.is_cancelled())
                    GLib.source_remove(rttTimer);
                result.method = c.method;
                result.transport = c.transport;
                result.relayed = c.is_relayed();
                result.explanation = c.dup_explanation();
                result.rtt_us = c.rtt;
                emit(({event: 'connected', method: c.method,
                    relayed: result.relayed, explanation: result.explanation}));
                if (s.send) {
                    const file = Gio.File.new_for_commandline_arg_and_cwd(s.send, s.cwd);
                    if (s.cancelAfter >= 0) {
                        // what the Cancel button does, at a known point
                        let cancelledAt = -1;
                        try {
                            await peer.sendFile(file, (transfer, sent) => {
                                if (sent >= s.cancelAfter && cancelledAt < 0) {
                                    cancelledAt = sent;
                                    transfer.cancelButton.emit('clicked');
                                }
                            });
                            throw new Error('the transfer was not cancelled');
                        } catch (e) {
                            if (!isCancelled(e))
                                throw e;
                        }
                        result.cancelled_at = cancelledAt;
                        result.file_still_open = isOpenHere(file.get_path());
                    } else {
                        const transfer = await peer.sendFile(file);
                        result.sent = file.get_path();
                        result.transfer = transfer;
                    }
                }
                if (s.message)
                    await peer.sendText(s.message);
                if (s.screenshot) {
                    this.window.refreshRows();
                    peer.refresh();
                    shot = true;
                    await this.screenshot(s.screenshot);
                }
                if (s.quit) {
                    // the peer has everything once it closes the connection
                    // after reading the end of our stream
                    await peer.finishSending();
                    const state = await peer.waitClosed();
                    result.peer_finished = await peer.waitPeerFinished();
                    result.bytes_sent = c.bytes_sent;
                    // a natkit Share peer confirms each file (nat-tool does not)
                    if (result.transfer)
                        result.delivered = result.transfer.delivered;
                    // a natkit Share peer answers our goodbye with its own,
                    // and this side closes; nat-tool closes after the end
                    if (state !== Natkit.ConnectionState.CLOSED)
                        throw new Error(`the connection ${stateWords(state)} before the ` +
                            'peer had read everything');
                    result.peer_said_bye = peer.peerSaidBye;
                }
            } else if (s.receive) {
                if (!result.registered)
                    throw new Error(this.window.addressRow.subtitle);
                emit({event: 'listening', peer_address: this._rendezvous.get_local_address()});
                const peer = await new Promise(resolve => this._incomingWaiters.push(resolve));
                const state = await peer.waitClosed();
                await peer.waitPeerFinished();
                result.received = peer.received;
                result.state = stateWords(state);
            } else if (s.screenshot) {
                shot = true;
                await this.screenshot(s.screenshot);
            }
        } catch (e) {
            failed ??= errorText(e);
            // the window shows what went wrong: that is worth a picture too
            if (s.screenshot && !shot && !watchdog.is_cancelled())
                await this.screenshot(s.screenshot).catch(e2 => printerr(errorText(e2)));
        } finally {
            if (!watchdog.is_cancelled())
                GLib.source_remove(timer);
        }
        delete result.transfer;
        if (failed) {
            result.error = failed;
            this.exitStatus = 1;
        }
        emit((result));
        if (s.quit) {
            this._shutdownWork();
            this.quit();
        }
    }
});

GLib.set_prgname('natkit-share');
GLib.set_application_name('natkit Share');
Gtk.Window.set_default_icon_name(APP_ID);
const app = new ShareApplication();
const status = app.run(['natkit-share', ...ARGV]);
System.exit(status !== 0 ? status : app.exitStatus);
