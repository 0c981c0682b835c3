-- The merge of BMS fields into the inverter's rows.
--
-- jkmon keeps the latest fields of each battery in `bms_merge`, already named and formatted as
-- the readings payload wants them ("battery_voltage": "52.6", "battery2_bms_cell_count": 16, ...),
-- with the moment they stop being fresh. Two things apply them:
--   * the trigger below, inside the INSERT of whoever writes a new reading (the inverter poller
--     is usually another program, often Python), so a new row carries the fresh BMS fields from
--     its first moment: no flicker in the latest row, no zigzag in history;
--   * jkmon itself, when it updates the latest row with fresher fields.
-- Both use the one expression in the view `bms_merged_readings`, so they cannot disagree.
--
-- Battery 1 writes unprefixed keys, some of which the inverter also writes (its own view of the
-- battery). The inverter's value is kept beside it as "inverter_<key>", the first time a row is
-- merged ("bms_updated_at" absent), so no inverter value is ever lost.
--
-- Only SQL that every SQLite with JSON1 (3.9+, every Debian and Raspberry Pi OS) understands is
-- used here, because the trigger runs inside the other program's SQLite library.
CREATE TABLE bms_merge (
    position INTEGER PRIMARY KEY,
    fields TEXT NOT NULL,
    -- unix seconds; after this the fields are stale and merged nowhere.
    fresh_until_s INTEGER NOT NULL
);

CREATE VIEW bms_merge_fresh AS
SELECT f.key AS key, f.value AS value
FROM bms_merge AS m, json_each(m.fields) AS f
WHERE m.fresh_until_s > CAST(strftime('%s', 'now') AS INTEGER);

CREATE VIEW bms_merged_readings AS
SELECT r.id AS id,
       json_patch(
           json_patch(
               r.payload,
               (SELECT json_group_object('inverter_' || e.key, e.value)
                FROM json_each(r.payload) AS e
                WHERE e.key IN ('battery_voltage', 'battery_current', 'battery_soc',
                                'battery_power', 'temperature')
                  AND json_type(r.payload, '$.bms_updated_at') IS NULL
                  AND json_type(r.payload, '$.inverter_' || e.key) IS NULL
                  AND e.key IN (SELECT key FROM bms_merge_fresh))),
           (SELECT json_group_object(key, value) FROM bms_merge_fresh)) AS payload
FROM readings AS r
WHERE r.payload IS NOT NULL AND r.error IS NULL
  AND json_valid(r.payload) AND json_type(r.payload) = 'object';

CREATE TRIGGER bms_merge_into_new_reading AFTER INSERT ON readings
WHEN NEW.payload IS NOT NULL AND NEW.error IS NULL
 AND json_valid(NEW.payload) AND json_type(NEW.payload) = 'object'
 AND EXISTS (SELECT 1 FROM bms_merge WHERE fresh_until_s > CAST(strftime('%s', 'now') AS INTEGER))
BEGIN
    UPDATE readings
    SET payload = (SELECT payload FROM bms_merged_readings WHERE id = NEW.id)
    WHERE id = NEW.id;
END;
