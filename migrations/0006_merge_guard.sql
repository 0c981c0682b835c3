-- The merge touches only rows whose payload is JSON text holding an object. A payload that is
-- not text (a BLOB: SQLite would read it as JSON, and the merge would turn it into text), not
-- JSON, or nested deeper than SQLite's JSON functions go, passes through exactly as its
-- writer stored it. Each test is guarded by CASE, so no JSON function ever sees a payload that
-- is not valid JSON (SQLite may evaluate both sides of an AND, and json_type() raises
-- "malformed JSON" where json_valid() only says 0).
DROP TRIGGER bms_merge_into_new_reading;
DROP VIEW bms_merged_readings;

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
WHERE CASE WHEN typeof(r.payload) = 'text' AND r.error IS NULL AND json_valid(r.payload)
           THEN json_type(r.payload) = 'object' ELSE 0 END;

CREATE TRIGGER bms_merge_into_new_reading AFTER INSERT ON readings
WHEN CASE WHEN typeof(NEW.payload) = 'text' AND NEW.error IS NULL AND json_valid(NEW.payload)
          THEN json_type(NEW.payload) = 'object' ELSE 0 END
 AND EXISTS (SELECT 1 FROM bms_merge WHERE fresh_until_s > CAST(strftime('%s', 'now') AS INTEGER))
BEGIN
    UPDATE readings
    SET payload = (SELECT payload FROM bms_merged_readings WHERE id = NEW.id)
    WHERE id = NEW.id;
END;
