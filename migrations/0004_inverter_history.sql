-- The inverter's rows aggregated for charts, so a 30-day or one-year chart reads a few thousand
-- rows instead of decoding the JSON of hundreds of thousands. Made by jkmon from `readings`
-- (which stays as the inverter monitor wrote it), 5-minute and hourly buckets, each with the
-- average and extremes of its rows. Values the inverter wrote as "N/A" are left out.
CREATE TABLE inverter_history (
    bucket_s INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    rows INTEGER NOT NULL,
    grid_power_w REAL,
    grid_power_min_w REAL,
    grid_power_max_w REAL,
    load_power_w REAL,
    load_power_min_w REAL,
    load_power_max_w REAL,
    pv_power_w REAL,
    pv_power_min_w REAL,
    pv_power_max_w REAL,
    grid_voltage_v REAL,
    PRIMARY KEY (bucket_s, ts_ms)
) WITHOUT ROWID;

-- How far each background job of jkmon has got (unix ms), so an empty stretch (the inverter
-- switched off for a week) is not scanned again and again.
CREATE TABLE jkmon_progress (
    job TEXT PRIMARY KEY,
    upto_ms INTEGER NOT NULL
);
