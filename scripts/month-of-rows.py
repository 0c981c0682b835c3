"""Writes 30 days of the Python inverter poller's rows into a new SQLite file, as an upgrade
finds them: one row every 10 s (259,200), created_at naive UTC to the second, every value a
string, no jkmon tables. For scripts/load-lock.sh and scripts/load-history.sh.

    python3 scripts/month-of-rows.py PATH
"""
import json
import sqlite3
import sys
from datetime import datetime, timedelta, timezone

ROWS = 259_200

c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT,"
          " created_at TEXT NOT NULL, payload TEXT, error TEXT)")
end = datetime.now(timezone.utc).replace(tzinfo=None, microsecond=0)


def rows():
    for i in range(ROWS):
        t = end - timedelta(seconds=10 * (ROWS - i))
        p = {"grid_voltage": "%.1f" % (228 + i % 5), "grid_power": str(i % 900),
             "grid_current": "1.79", "ac_output_voltage": "230.1", "ac_output_freq": "50.00",
             "ac_output_power": str(i % 700), "ac_output_current": "1.7",
             "battery_voltage": "52.1", "battery_current": "-3.0", "battery_power": "-156",
             "battery_soc": "64", "battery_charge_power": "14", "pv_input_voltage": "0.0",
             "pv_input_power": str(i % 3000), "pv_input_current": "0.0", "temperature": "31",
             "status_text": "LINE"}
        yield (t.isoformat(timespec="seconds"), json.dumps(p))


c.executemany("INSERT INTO readings (created_at, payload) VALUES (?, ?)", rows())
c.commit()
