'''A fake BlueZ with JK BMSs on it, for jkmon's end-to-end Bluetooth tests.

Loaded by python-dbusmock on a private D-Bus (`python3 -m dbusmock --system -t fake_bluez.py -p JSON`).
It plays `org.bluez` closely enough for btleplug / bluez-async: an adapter that discovers devices,
devices that connect and resolve a GATT service 0xFFE0 with characteristic 0xFFE1, and notifications
delivered as PropertiesChanged on the characteristic, the way bluetoothd delivers them.

Each device plays a JK BMS from the frames the test gives it (hex fragments, exactly as they are
to be notified): device info after 0x97, settings after 0x96 (only once 0x97 was seen, as newer
firmware insists), then a cell-info frame every `interval_ms`. Behaviours a test can ask for:

  fail_connect         Connect() fails, as with an out-of-range BMS or one held by the phone app
  drop_after_frames N  once: after N cell frames, send half of the next one, then drop the link
  silent_after_frames N  once: after N cell frames, stay connected but send nothing more
  garbage              AT noise, random bytes, a corrupted frame and the C8 ack between frames
  layout "dual"        two 0xFFE1 characteristics: write on char0011, notify on char0013
  present false        not advertising (never discovered)
  refuse_writes        switch writes are acknowledged (C8) and change nothing
  drop_on_write        once: a switch write drops the link before the BMS applies it

Switch writes (JK02: 0x1D charging, 0x1E discharging, 0x1F balancer as a u32 at settings
offsets 118/122/126; 0x27 heating, bit 0 of the control word at 282 on 32S boards) change the
settings frame the next 0x96 request gets, checksum and all, as a real BMS does.

Parameters (JSON): {"adapter": true, "powered": true, "write_log": PATH, "devices": [{...}]}.
Every write a device receives is appended to `write_log` as "AA:BB:CC:DD:EE:FF hex".
Runtime control, on /org/bluez/hci0, interface org.jkmon.FakeBluez: Vanish(s address),
Appear(s address), Configure(s address, s json).
'''

import json
import os
import random
from xml.etree import ElementTree

import dbus
import dbus.service
from gi.repository import GLib

from dbusmock import OBJECT_MANAGER_IFACE, mockobject
from dbusmock.templates import bluez5

BUS_NAME = 'org.bluez'
MAIN_OBJ = '/'
SYSTEM_BUS = True
IS_OBJECT_MANAGER = True

ADAPTER_IFACE = 'org.bluez.Adapter1'
DEVICE_IFACE = 'org.bluez.Device1'
SERVICE_IFACE = 'org.bluez.GattService1'
CHAR_IFACE = 'org.bluez.GattCharacteristic1'
CONTROL_IFACE = 'org.jkmon.FakeBluez'
ADAPTER_PATH = '/org/bluez/hci0'

ACK = bytes.fromhex('aa5590ebc8010100000000000000000000000044')
COMMAND_HEADER = bytes.fromhex('aa5590eb')

STATE = {'devices': {}, 'write_log': None}


# bluez-async parses Introspect output with serde-xml-rs, which rejects an <interface> after the
# child <node>s; dbusmock appends property-only interfaces last. Move the nodes to the end.
_original_introspect = mockobject.DBusMockObject.Introspect


@dbus.service.method(dbus.INTROSPECTABLE_IFACE, in_signature='', out_signature='s',
                     path_keyword='object_path', connection_keyword='connection')
def _introspect_nodes_last(self, object_path, connection):
    xml = _original_introspect(self, object_path, connection)
    tree = ElementTree.fromstring(xml)
    nodes = [child for child in tree if child.tag == 'node']
    for node in nodes:
        tree.remove(node)
        tree.append(node)
    return ElementTree.tostring(tree, encoding='unicode')


mockobject.DBusMockObject.Introspect = _introspect_nodes_last


def dev_path(address):
    return ADAPTER_PATH + '/dev_' + address.upper().replace(':', '_')


def emit_props(obj, iface, changed):
    for key, value in changed.items():
        obj.props[iface][key] = value
    obj.EmitSignal(dbus.PROPERTIES_IFACE, 'PropertiesChanged', 'sa{sv}as', [iface, changed, []])


def load(mock, parameters):
    bluez5.load(mock, parameters)
    STATE['write_log'] = parameters.get('write_log')
    if not parameters.get('adapter', True):
        return
    mock.AddObject(ADAPTER_PATH, ADAPTER_IFACE, {
        'Address': dbus.String('00:1A:7D:DA:71:13', variant_level=1),
        'AddressType': dbus.String('public', variant_level=1),
        'Name': dbus.String('jkmon-test', variant_level=1),
        'Alias': dbus.String('jkmon-test', variant_level=1),
        'Modalias': dbus.String('usb:v1D6Bp0246d0537', variant_level=1),
        'Class': dbus.UInt32(0, variant_level=1),
        'Powered': dbus.Boolean(parameters.get('powered', True), variant_level=1),
        'Discovering': dbus.Boolean(False, variant_level=1),
        'Discoverable': dbus.Boolean(False, variant_level=1),
        'Pairable': dbus.Boolean(False, variant_level=1),
        'UUIDs': dbus.Array([], signature='s', variant_level=1),
    }, [
        ('SetDiscoveryFilter', 'a{sv}', '', ''),
        ('StartDiscovery', '', '', StartDiscovery),
        ('StopDiscovery', '', '', StopDiscovery),
        ('RemoveDevice', 'o', '', ''),
    ])
    adapter = mockobject.objects[ADAPTER_PATH]
    adapter.AddMethods(CONTROL_IFACE, [
        ('Vanish', 's', '', Vanish),
        ('Appear', 's', '', Appear),
        ('Configure', 'ss', '', Configure),
    ])
    mock.object_manager_emit_added(ADAPTER_PATH)
    for spec in parameters.get('devices', []):
        address = spec['address'].upper()
        STATE['devices'][address] = {
            'spec': spec, 'exported': False, 'gatt': False, 'connected': False,
            'got97': False, 'streaming': False, 'sent': 0, 'frame_index': 0,
            'dropped': False, 'silenced': False, 'epoch': 0,
        }


def StartDiscovery(adapter):
    emit_props(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(True, variant_level=1)})
    GLib.timeout_add(100, _announce_devices)


def StopDiscovery(adapter):
    emit_props(adapter, ADAPTER_IFACE, {'Discovering': dbus.Boolean(False, variant_level=1)})


def _announce_devices():
    for address, dev in STATE['devices'].items():
        if dev['spec'].get('present', True) and not dev['exported']:
            _export_device(address, dev)
    return False


def _export_device(address, dev):
    spec = dev['spec']
    adapter = mockobject.objects[ADAPTER_PATH]
    props = {
        'Address': dbus.String(address, variant_level=1),
        'AddressType': dbus.String('public', variant_level=1),
        'Name': dbus.String(spec.get('name', ''), variant_level=1),
        'Alias': dbus.String(spec.get('name', address), variant_level=1),
        'Adapter': dbus.ObjectPath(ADAPTER_PATH, variant_level=1),
        'Paired': dbus.Boolean(False, variant_level=1),
        'Bonded': dbus.Boolean(False, variant_level=1),
        'Trusted': dbus.Boolean(False, variant_level=1),
        'Blocked': dbus.Boolean(False, variant_level=1),
        'LegacyPairing': dbus.Boolean(False, variant_level=1),
        'Connected': dbus.Boolean(False, variant_level=1),
        'ServicesResolved': dbus.Boolean(False, variant_level=1),
        'RSSI': dbus.Int16(spec.get('rssi', -60), variant_level=1),
        'UUIDs': dbus.Array(spec.get('uuids', []), signature='s', variant_level=1),
    }
    if spec.get('manufacturer'):
        props['ManufacturerData'] = dbus.Dictionary(
            {dbus.UInt16(int(k)): dbus.Array(bytes.fromhex(v), signature='y', variant_level=1)
             for k, v in spec['manufacturer'].items()},
            signature='qv', variant_level=1)
    if not spec.get('name'):
        del props['Name']
    path = dev_path(address)
    adapter.AddObject(path, DEVICE_IFACE, props, [
        ('Connect', '', '', lambda obj: Connect(obj, address)),
        ('Disconnect', '', '', lambda obj: Disconnect(obj, address)),
        ('Pair', '', '', ''),
        ('CancelPairing', '', '', ''),
    ])
    adapter.object_manager_emit_added(path)
    dev['exported'] = True
    dev['gatt'] = False


def _export_gatt(address, dev):
    device = mockobject.objects[dev_path(address)]
    service_path = dev_path(address) + '/service0010'
    device.AddObject(service_path, SERVICE_IFACE, {
        'UUID': dbus.String('0000ffe0-0000-1000-8000-00805f9b34fb', variant_level=1),
        'Primary': dbus.Boolean(True, variant_level=1),
        'Device': dbus.ObjectPath(dev_path(address), variant_level=1),
        'Includes': dbus.Array([], signature='o', variant_level=1),
        'Handle': dbus.UInt16(0x10, variant_level=1),
    }, [])
    device.object_manager_emit_added(service_path)
    if dev['spec'].get('layout') == 'dual':
        chars = [('char0011', ['write-without-response', 'write']), ('char0013', ['read', 'notify'])]
    else:
        chars = [('char0011', ['read', 'write-without-response', 'write', 'notify'])]
    for name, flags in chars:
        path = service_path + '/' + name
        device.AddObject(path, CHAR_IFACE, {
            'UUID': dbus.String('0000ffe1-0000-1000-8000-00805f9b34fb', variant_level=1),
            'Service': dbus.ObjectPath(service_path, variant_level=1),
            'Value': dbus.Array([], signature='y', variant_level=1),
            'Notifying': dbus.Boolean(False, variant_level=1),
            'Flags': dbus.Array(flags, signature='s', variant_level=1),
            'MTU': dbus.UInt16(dev['spec'].get('mtu', 23), variant_level=1),
            'Handle': dbus.UInt16(int(name[4:], 16), variant_level=1),
        }, [
            ('ReadValue', 'a{sv}', 'ay', 'ret = dbus.Array([], signature="y")'),
            ('WriteValue', 'aya{sv}', '', lambda obj, value, options, a=address: WriteValue(a, value)),
            ('StartNotify', '', '', lambda obj: emit_props(
                obj, CHAR_IFACE, {'Notifying': dbus.Boolean(True, variant_level=1)})),
            ('StopNotify', '', '', lambda obj: emit_props(
                obj, CHAR_IFACE, {'Notifying': dbus.Boolean(False, variant_level=1)})),
        ])
        device.object_manager_emit_added(path)
    dev['gatt'] = True


def _notify_char(address, dev):
    name = 'char0013' if dev['spec'].get('layout') == 'dual' else 'char0011'
    return mockobject.objects.get(dev_path(address) + '/service0010/' + name)


def Connect(device, address):
    dev = STATE['devices'][address]
    if dev['spec'].get('fail_connect'):
        raise dbus.exceptions.DBusException('le-connection-abort-by-local', name='org.bluez.Error.Failed')
    dev.update(connected=True, got97=False, streaming=False, sent=0)
    dev['epoch'] += 1
    emit_props(device, DEVICE_IFACE, {'Connected': dbus.Boolean(True, variant_level=1)})

    def resolve():
        if not dev['gatt']:
            _export_gatt(address, dev)
        emit_props(device, DEVICE_IFACE, {'ServicesResolved': dbus.Boolean(True, variant_level=1)})
        return False
    GLib.timeout_add(30, resolve)


def Disconnect(device, address):
    _drop(address)


def _drop(address):
    dev = STATE['devices'][address]
    dev.update(connected=False, streaming=False)
    dev['epoch'] += 1
    device = mockobject.objects.get(dev_path(address))
    if device is None:
        return
    char = _notify_char(address, dev)
    if char is not None and char.props[CHAR_IFACE]['Notifying']:
        emit_props(char, CHAR_IFACE, {'Notifying': dbus.Boolean(False, variant_level=1)})
    emit_props(device, DEVICE_IFACE, {
        'ServicesResolved': dbus.Boolean(False, variant_level=1),
        'Connected': dbus.Boolean(False, variant_level=1),
    })


def _send(address, dev, chunks):
    '''Notifies each chunk, as the BLE module would, if the client subscribed.'''
    char = _notify_char(address, dev)
    if char is None or not dev['connected'] or not char.props[CHAR_IFACE]['Notifying']:
        return
    for chunk in chunks:
        emit_props(char, CHAR_IFACE, {'Value': dbus.Array(chunk, signature='y', variant_level=1)})


def _fragments(hex_list):
    return [bytes.fromhex(h) for h in hex_list]


# register -> (settings offset, width): the u32 switches, and the heating bit of the controls
SWITCH_REGISTERS = {0x1D: (118, 4), 0x1E: (122, 4), 0x1F: (126, 4), 0x27: (282, 'bit0')}


def _apply_switch(spec, register, value):
    '''The settings frame as it reads after the write, fragmented as before.'''
    pieces = _fragments(spec.get('settings', []))
    frame = bytearray(b''.join(pieces))
    # captures may carry noise before the frame (the module's "AT\r\n")
    start = frame.find(bytes.fromhex('55aaeb90'))
    offset, width = SWITCH_REGISTERS[register]
    offset += start
    on = int.from_bytes(value[:4], 'little') != 0
    if width == 'bit0':
        word = int.from_bytes(frame[offset:offset + 2], 'little')
        word = (word | 1) if on else (word & ~1)
        frame[offset:offset + 2] = word.to_bytes(2, 'little')
    else:
        frame[offset:offset + 4] = int(on).to_bytes(4, 'little')
    frame[start + 299] = sum(frame[start:start + 299]) & 0xFF
    out, at = [], 0
    for piece in pieces:
        out.append(bytes(frame[at:at + len(piece)]).hex())
        at += len(piece)
    spec['settings'] = out


def WriteValue(address, value):
    data = bytes(value)
    if STATE['write_log']:
        with open(STATE['write_log'], 'a') as log:
            log.write(address + ' ' + data.hex() + '\n')
    dev = STATE['devices'][address]
    if not dev['connected']:
        raise dbus.exceptions.DBusException('Not connected', name='org.bluez.Error.NotConnected')
    if len(data) < 5 or data[:4] != COMMAND_HEADER:
        return
    spec = dev['spec']
    if data[4] in SWITCH_REGISTERS:
        if spec.get('drop_on_write') and not dev.get('dropped_on_write'):
            dev['dropped_on_write'] = True
            _drop(address)
            return
        if not spec.get('refuse_writes'):
            _apply_switch(spec, data[4], data[6:10])
        _send(address, dev, [ACK])
        return
    if data[4] == 0x97:
        dev['got97'] = True
        _send(address, dev, _fragments(spec.get('device_info', [])) + [ACK])
    elif data[4] == 0x96 and dev['got97']:
        _send(address, dev, _fragments(spec.get('settings', [])) + [ACK])
        if not dev['streaming'] and spec.get('cell_info'):
            dev['streaming'] = True
            epoch = dev['epoch']
            GLib.timeout_add(spec.get('interval_ms', 100), lambda: _tick(address, epoch))


def _tick(address, epoch):
    dev = STATE['devices'][address]
    spec = dev['spec']
    if not dev['connected'] or dev['epoch'] != epoch:
        return False
    frames = spec['cell_info']
    frame = _fragments(frames[dev['frame_index'] % len(frames)])
    drop_after = spec.get('drop_after_frames')
    if drop_after is not None and not dev['dropped'] and dev['sent'] >= drop_after:
        dev['dropped'] = True
        whole = b''.join(frame)
        _send(address, dev, [whole[:150]])
        _drop(address)
        return False
    silent_after = spec.get('silent_after_frames')
    if silent_after is not None and not dev['silenced'] and dev['sent'] >= silent_after:
        dev['silenced'] = True
        return False
    if spec.get('garbage'):
        whole = bytearray(b''.join(frame))
        whole[100] ^= 0x5A
        noise = bytes(random.randrange(256) for _ in range(7))
        _send(address, dev, [b'AT\r\n', noise, bytes(whole[:150]), bytes(whole[150:]), ACK])
    _send(address, dev, frame)
    dev['sent'] += 1
    dev['frame_index'] += 1
    return True


def Vanish(adapter, address):
    address = address.upper()
    dev = STATE['devices'][address]
    dev['spec']['present'] = False
    if dev['connected']:
        _drop(address)
    path = dev_path(address)
    if path in mockobject.objects:
        for child in [p for p in mockobject.objects if p.startswith(path + '/')]:
            adapter.RemoveObject(child)
        mockobject.objects[MAIN_OBJ].EmitSignal(OBJECT_MANAGER_IFACE, 'InterfacesRemoved', 'oas', [
            dbus.ObjectPath(path), [DEVICE_IFACE, dbus.PROPERTIES_IFACE]])
        adapter.RemoveObject(path)
    dev.update(exported=False, gatt=False)


def Appear(adapter, address):
    STATE['devices'][address.upper()]['spec']['present'] = True


def Configure(adapter, address, settings):
    STATE['devices'][address.upper()]['spec'].update(json.loads(settings))
