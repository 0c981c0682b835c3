-- Energy, integrated by jkmon (watt-hours). See src/battery/energy.rs for how.

-- Each battery's energy charged and discharged since jkmon first read it: only ever added to,
-- one commit per store interval. `average_power_w` is the recent average power (positive =
-- charging) the time to empty or full is computed from.
CREATE TABLE bms_energy (
    device_id INTEGER PRIMARY KEY REFERENCES bms_devices (id),
    charged_wh REAL NOT NULL DEFAULT 0,
    discharged_wh REAL NOT NULL DEFAULT 0,
    average_power_w REAL,
    updated_ms INTEGER NOT NULL
);

-- The same per local day (`day` is YYYY-MM-DD in jkmon's time zone); kept as long as the
-- hourly history.
CREATE TABLE bms_energy_daily (
    device_id INTEGER NOT NULL REFERENCES bms_devices (id),
    day TEXT NOT NULL,
    charged_wh REAL NOT NULL DEFAULT 0,
    discharged_wh REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, day)
) WITHOUT ROWID;

-- The inverter's energy per local day, integrated from `readings` (which stays as the
-- inverter monitor wrote it): PV, load (AC output), grid import and export. NULL where the
-- inverter wrote none of that value that day. `jkmon_progress` job 'inverter_energy' says how
-- far the rows are counted; the rows after it are counted when read.
CREATE TABLE inverter_energy_daily (
    day TEXT PRIMARY KEY,
    pv_wh REAL,
    load_wh REAL,
    grid_import_wh REAL,
    grid_export_wh REAL
) WITHOUT ROWID;
