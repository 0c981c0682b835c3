"""The Python inverter poller's way of working, for scripts/load-inverter.sh to measure jkmon
against: asyncio, the dongle's reverse connection, one request at a time with a 5 s read and a
0.1 s pause, the 11K's seven register groups, every register decoded as a signed 16-bit value
times its scale, a payload of strings, and one INSERT on a fresh sqlite3 connection per row,
then a sleep of POLL_INTERVAL. It is written from the description of the monitor's
modbus_service.py and easunpy client (their source is not part of jkmon), so it does the same
kind and amount of work; it is not that program.

  python3 scripts/python-poller.py DB DONGLE_IP DONGLE_UDP_PORT LOCAL_IP LISTEN_PORT INTERVAL_S
"""

import asyncio
import json
import sqlite3
import struct
import sys
from datetime import datetime, timezone

DB, DONGLE_IP, UDP_PORT, LOCAL_IP, LISTEN_PORT, INTERVAL = (
    sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), float(sys.argv[6]))

# the 11K's groups (start, count) and the registers the payload takes (address: scale)
GROUPS = [(201, 1), (277, 5), (302, 4), (338, 16), (389, 3), (607, 1), (696, 8)]
SCALES = {201: 1, 277: 0.1, 278: 0.1, 279: 1, 280: 1, 281: 1, 302: 1, 338: 0.1, 340: 1,
          346: 0.1, 347: 0.1, 348: 1, 351: 0.1, 352: 0.1, 353: 1, 391: 1, 607: 0.01}
MODES = {2: "SUB", 3: "SBU"}


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def request(tid, start, count):
    rtu = struct.pack(">BBHH", 1, 3, start, count)
    rtu += struct.pack("<H", crc16(rtu))
    return struct.pack(">HHH", tid, 1, len(rtu) + 2) + b"\xff\x04" + rtu


class Link:
    def __init__(self):
        self.reader = self.writer = None
        self.connected = asyncio.Event()
        self.server = None

    async def on_client(self, reader, writer):
        if self.connected.is_set():
            writer.close()
            return
        self.reader, self.writer = reader, writer
        self.connected.set()

    async def ensure(self):
        if self.connected.is_set():
            return
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(LOCAL_IP, 0))
        transport.sendto(("set>server=%s:%d;" % (LOCAL_IP, LISTEN_PORT)).encode(),
                         (DONGLE_IP, UDP_PORT))
        transport.close()
        if self.server is None:
            self.server = await asyncio.start_server(self.on_client, LOCAL_IP, LISTEN_PORT,
                                                     reuse_address=True)
        await asyncio.wait_for(self.connected.wait(), 10)

    async def read(self, tid, start, count):
        self.writer.write(request(tid, start, count))
        await self.writer.drain()
        data = await asyncio.wait_for(self.reader.read(1024), 5)
        while len(data) >= 6 and len(data) < 6 + struct.unpack(">H", data[4:6])[0]:
            data += await asyncio.wait_for(self.reader.read(1024), 5)
        await asyncio.sleep(0.1)
        return [struct.unpack(">h", data[11 + 2 * i:13 + 2 * i])[0] for i in range(count)]


async def poll(link, tid):
    await link.ensure()
    values = {}
    for start, count in GROUPS:
        tid += 1
        try:
            regs = await link.read(tid, start, count)
        except (ValueError, struct.error):
            continue
        for i, raw in enumerate(regs):
            if start + i in SCALES:
                values[start + i] = raw * SCALES[start + i]
    return values, tid


def fmt(v, decimals):
    return "N/A" if v is None else "%.*f" % (decimals, v)


def payload(v):
    gv, gw, ow = v.get(338), v.get(340), v.get(348)
    grid_a = gw / gv if gv and gw else None
    return {
        "grid_voltage": fmt(gv, 1), "grid_power": fmt(gw, 0), "grid_current": fmt(grid_a, 2),
        "ac_output_voltage": fmt(v.get(346) or gv, 1), "ac_output_freq": fmt(v.get(607), 2),
        "ac_output_power": fmt(ow, 0), "ac_output_current": fmt(v.get(347), 1),
        "battery_voltage": fmt(v.get(277), 1), "battery_current": fmt(v.get(278), 1),
        "battery_power": fmt(v.get(279), 0), "battery_soc": fmt(v.get(280), 0),
        "battery_charge_power": fmt((gw or 0) - (ow or 0), 0),
        "pv_input_voltage": fmt(v.get(351), 1),
        "pv_input_power": fmt(v.get(302) or v.get(353) or v.get(391), 0),
        "pv_input_current": fmt(v.get(352), 1), "temperature": fmt(v.get(281), 0),
        "status_text": MODES.get(v.get(201), "UNKNOWN (%s)" % v.get(201)),
    }


def save(p, error=None):
    c = sqlite3.connect(DB)
    c.execute("INSERT INTO readings (created_at, payload, error) VALUES (?, ?, ?)",
              (datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds"),
               None if p is None else json.dumps(p), error))
    c.commit()
    c.close()


async def main():
    c = sqlite3.connect(DB)
    c.execute("CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY AUTOINCREMENT, "
              "created_at TEXT NOT NULL, payload TEXT, error TEXT)")
    c.commit()
    c.close()
    link, tid = Link(), 0x0772
    while True:
        try:
            values, tid = await asyncio.wait_for(poll(link, tid), 2 * INTERVAL)
            save(payload(values))
        except Exception as e:  # the poller saves an error row and goes on
            save(None, str(e))
            link = Link()
        await asyncio.sleep(INTERVAL)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
