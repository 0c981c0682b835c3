-- jkmon's own tables. Times are unix milliseconds (UTC) unless the name says otherwise.

-- Every BMS jkmon has read. `device_key` is the Bluetooth address, or "name:<name>" for a
-- BMS without one (the simulator). `position` is its place in the configuration (1 = battery 1,
-- whose readings keys carry no prefix; N >= 2 uses "batteryN_").
CREATE TABLE bms_devices (
    id INTEGER PRIMARY KEY,
    device_key TEXT NOT NULL UNIQUE,
    address TEXT,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    model TEXT,
    hardware_version TEXT,
    software_version TEXT,
    serial_number TEXT,
    manufacturing_date TEXT,
    variant TEXT,
    cell_count INTEGER,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER,
    -- The session: disconnected, connecting, handshake or streaming, and why.
    state TEXT NOT NULL DEFAULT 'disconnected',
    state_detail TEXT,
    state_changed_ms INTEGER
);

-- The freshest snapshot of each BMS, whole: the JSON of `jkmon read --json`.
CREATE TABLE bms_latest (
    device_id INTEGER PRIMARY KEY REFERENCES bms_devices (id),
    taken_ms INTEGER NOT NULL,
    snapshot TEXT NOT NULL
);

-- History at full precision. `bucket_s` 0 holds one row per store interval (every snapshot of
-- the interval folded in); 300 and 3600 hold the downsampled 5-minute and hourly rows. Each row
-- has the average and the extremes of its samples; `cells_uv` is every cell's average voltage,
-- cell 1 first, as little-endian u32 microvolts.
CREATE TABLE bms_history (
    device_id INTEGER NOT NULL REFERENCES bms_devices (id),
    bucket_s INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    voltage_mv INTEGER NOT NULL,
    voltage_min_mv INTEGER NOT NULL,
    voltage_max_mv INTEGER NOT NULL,
    current_ma INTEGER,
    current_min_ma INTEGER,
    current_max_ma INTEGER,
    power_w REAL,
    power_min_w REAL,
    power_max_w REAL,
    soc_pct REAL,
    soc_min_pct REAL,
    soc_max_pct REAL,
    remaining_mah INTEGER,
    temp_mos_dc INTEGER,
    temp_t1_dc INTEGER,
    temp_t2_dc INTEGER,
    temp_t3_dc INTEGER,
    temp_t4_dc INTEGER,
    temp_t5_dc INTEGER,
    temp_min_dc INTEGER,
    temp_max_dc INTEGER,
    cell_min_uv INTEGER,
    cell_max_uv INTEGER,
    cell_delta_uv INTEGER,
    cell_delta_max_uv INTEGER,
    cells_uv BLOB,
    PRIMARY KEY (device_id, bucket_s, ts_ms)
) WITHOUT ROWID;
