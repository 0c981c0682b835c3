"""The Python inverter monitor's side of the shared database, as its programs do it, for the
end-to-end tests of tests/python_monitor.rs. One JSON line per event on stdout, flushed, so the
test awaits events instead of sleeping.

  poller DB INTERVAL_S [COUNT]  insert a row every INTERVAL_S, as modbus_service.py does: a new
                                sqlite3 connection per row (Python's default 5 s busy timeout),
                                created_at naive UTC to the second (utcnow().isoformat(
                                timespec="seconds")), every value a string. Prints
                                {"id", "created_at", "wait_s"} per row; stops after COUNT rows
                                or when DB.stop-poller exists.
  bot DB INTERVAL_S             read the newest row every INTERVAL_S as telegram_bot.py does
                                (error rows skipped) and decide the grid with its is_grid_up
                                rule; prints {"grid": "up"|"down", "id", "first"} whenever the
                                state changes (the first observation only sets it). Stops when
                                DB.stop-bot exists.
  history DB MODIFIER           the web's /history?days=N query with MODIFIER ("-N days" there):
                                created_at compared as text with SQLite's UTC datetime('now',
                                MODIFIER); prints the rows.
"""

import json
import os
import sqlite3
import sys
import time
from datetime import datetime, timezone


def emit(obj):
    print(json.dumps(obj), flush=True)


def utcnow_naive():
    # datetime.utcnow().isoformat(timespec="seconds"), without its deprecation warning
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def payload(n):
    return {
        "grid_voltage": "%.1f" % (228 + n % 5), "grid_power": str(400 + n % 50),
        "grid_current": "1.79", "ac_output_voltage": "230.1", "ac_output_freq": "50.00",
        "ac_output_power": "398", "ac_output_current": "1.7", "battery_voltage": "52.1",
        "battery_current": "-3.0", "battery_power": "-156", "battery_soc": "64",
        "battery_charge_power": "14", "pv_input_voltage": "0.0", "pv_input_power": "0",
        "pv_input_current": "0.0", "temperature": "31", "status_text": "LINE",
    }


def poller(db, interval, count):
    n = 0
    while n < count and not os.path.exists(db + ".stop-poller"):
        n += 1
        started = time.monotonic()
        c = sqlite3.connect(db)  # timeout=5.0, as the poller leaves it
        cur = c.execute("INSERT INTO readings (created_at, payload) VALUES (?, ?)",
                        (utcnow_naive(), json.dumps(payload(n))))
        c.commit()
        row_id = cur.lastrowid
        c.close()
        waited = time.monotonic() - started
        emit({"id": row_id, "created_at": utcnow_naive(), "wait_s": waited})
        time.sleep(max(0.0, interval - waited))


def to_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def is_grid_up(p):
    # telegram_bot.py: grid_power > 10 when it parses, else grid_voltage > 50, else False
    power = to_float(p.get("grid_power"))
    if power is not None:
        return power > 10
    voltage = to_float(p.get("grid_voltage"))
    if voltage is not None:
        return voltage > 50
    return False


def bot(db, interval):
    state = None
    while not os.path.exists(db + ".stop-bot"):
        c = sqlite3.connect(db)
        row = c.execute(
            "SELECT id, created_at, payload, error FROM readings ORDER BY id DESC LIMIT 1"
        ).fetchone()
        c.close()
        if row is not None and row[3] is None and row[2]:
            try:
                p = json.loads(row[2])
            except ValueError:
                p = None
            if isinstance(p, dict):
                up = is_grid_up(p)
                if up != state:
                    emit({"grid": "up" if up else "down", "id": row[0], "first": state is None,
                          "created_at": row[1]})
                    state = up
        time.sleep(interval)
    emit({"stopped": True})


def history(db, modifier):
    c = sqlite3.connect(db)
    rows = c.execute(
        "SELECT id, created_at, payload, error FROM readings "
        "WHERE created_at >= datetime('now', ?) ORDER BY id DESC",
        (modifier,),
    ).fetchall()
    c.close()
    emit({"rows": [{"id": r[0], "created_at": r[1]} for r in rows]})


if __name__ == "__main__":
    what, db = sys.argv[1], sys.argv[2]
    if what == "poller":
        poller(db, float(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 100000)
    elif what == "bot":
        bot(db, float(sys.argv[3]))
    elif what == "history":
        history(db, sys.argv[3])
    else:
        sys.exit("unknown command " + what)
