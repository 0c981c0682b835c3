-- jkmon's own inverter poller (INVERTER_TRANSPORT=dongle|rtu|tcp, or the demo): where its link
-- stands and what the last poll read, for every process that reads the file — the web server
-- and the bot may run apart from the poller. One row, written by the poller's process at each
-- poll and each change of state; no row where another program polls the inverter.
CREATE TABLE inverter_poller (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    -- INVERTER_MODEL's key, and the link in words ("Modbus TCP to 192.168.1.60:502", ...)
    model TEXT NOT NULL,
    link TEXT NOT NULL,
    -- connecting, online, offline; stopped once the poller's process has stopped
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    -- the last poll: when, the working mode (register 201) and every value read, by jkmon's
    -- names with their units (JSON object of numbers: {"grid_voltage_v": 230.1, ...})
    polled_ms INTEGER,
    mode_code INTEGER,
    poll_values TEXT,
    -- the poll interval, so a reader knows when the last poll is old
    interval_ms INTEGER NOT NULL
);
