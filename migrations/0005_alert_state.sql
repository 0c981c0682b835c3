-- What the alert rules remember (JSON of `alerts::rules::AlertState`: each subject's state,
-- the change being confirmed, when it was last announced), so a restart announces nothing
-- twice. One row.
CREATE TABLE alert_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
