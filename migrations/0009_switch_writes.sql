-- Every switch write jkmon made (JK_BMS_CONTROL): who asked, what, when and what the BMS
-- answered. Written by the process that runs the BMS sessions; read by every view (the
-- dashboard's battery card). Kept: a few rows a day at most, and the record of what was switched.
CREATE TABLE bms_switch_writes (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    -- the battery as configured (1-based position, name) and its device key in bms_devices
    position INTEGER NOT NULL,
    battery TEXT NOT NULL,
    device_key TEXT NOT NULL,
    -- charging, discharging, balancer or heater; 1 = asked on, 0 = asked off
    switch TEXT NOT NULL,
    turn_on INTEGER NOT NULL CHECK (turn_on IN (0, 1)),
    -- who asked: cli, api, web, mqtt or bot (with the chat)
    source TEXT NOT NULL,
    chat_id INTEGER,
    -- confirmed (the BMS's own settings frame shows it), or why not: refused, not_confirmed,
    -- offline, dropped, not_on_this_board, busy, unanswered, stopped
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX bms_switch_writes_by_battery ON bms_switch_writes (device_key, at_ms);
