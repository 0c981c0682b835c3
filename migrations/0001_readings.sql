-- The inverter monitor's table, exactly as its poller creates it: one row per inverter poll,
-- `payload` a JSON object of strings ("231.4"), `error` set instead when the poll failed.
-- An existing table is used as it is; jkmon only adds the index on created_at that it lacks.
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at TEXT NOT NULL,
    payload TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS idx_readings_created_at ON readings (created_at);
