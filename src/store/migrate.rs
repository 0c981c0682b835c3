//! Schema migrations: the numbered files of `migrations/`, compiled in, applied in order at
//! start-up, each in its own immediate transaction and recorded in `jkmon_schema`. Append-only:
//! a file that has shipped is never edited; a change is a new file.
//!
//! jkmon keeps its own record table rather than `PRAGMA user_version`, because the database
//! belongs to the inverter monitor too and that pragma is its to use.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// `(version, file name, SQL)`, in order.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "0001_readings.sql",
        include_str!("../../migrations/0001_readings.sql"),
    ),
    (
        2,
        "0002_bms.sql",
        include_str!("../../migrations/0002_bms.sql"),
    ),
    (
        3,
        "0003_merge.sql",
        include_str!("../../migrations/0003_merge.sql"),
    ),
    (
        4,
        "0004_inverter_history.sql",
        include_str!("../../migrations/0004_inverter_history.sql"),
    ),
    (
        5,
        "0005_alert_state.sql",
        include_str!("../../migrations/0005_alert_state.sql"),
    ),
    (
        6,
        "0006_merge_guard.sql",
        include_str!("../../migrations/0006_merge_guard.sql"),
    ),
    (
        7,
        "0007_energy.sql",
        include_str!("../../migrations/0007_energy.sql"),
    ),
    (
        8,
        "0008_inverter_poller.sql",
        include_str!("../../migrations/0008_inverter_poller.sql"),
    ),
    (
        9,
        "0009_switch_writes.sql",
        include_str!("../../migrations/0009_switch_writes.sql"),
    ),
];

/// The newest schema this build knows.
pub fn latest() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The schema version recorded in the database (0 for a new or foreign database).
pub fn current(conn: &Connection) -> Result<u32, StoreError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jkmon_schema')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM jkmon_schema",
        [],
        |r| r.get(0),
    )?)
}

/// Applies what is missing; returns the names applied. Safe when two jkmon processes start at
/// once: each migration is checked again inside its transaction.
pub fn apply(conn: &mut Connection, now_ms: i64) -> Result<Vec<&'static str>, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS jkmon_schema (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_ms INTEGER NOT NULL
         )",
    )?;
    let found = current(conn)?;
    if found > latest() {
        return Err(StoreError::TooNew {
            found,
            known: latest(),
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM jkmon_schema WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if done {
            continue;
        }
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration { name, source })?;
        tx.execute(
            "INSERT INTO jkmon_schema (version, name, applied_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![version, name, now_ms],
        )?;
        tx.commit()?;
        applied.push(name);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_migrations_is_compiled_in_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<&str> = MIGRATIONS.iter().map(|m| m.1).collect();
        assert_eq!(files, listed);
        for (i, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*version as usize, i + 1);
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
        }
    }

    #[test]
    fn applying_twice_changes_nothing_and_a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(apply(&mut conn, 1).unwrap().len(), MIGRATIONS.len());
        assert!(apply(&mut conn, 2).unwrap().is_empty());
        assert_eq!(current(&conn).unwrap(), latest());
        conn.execute(
            "INSERT INTO jkmon_schema VALUES (?1, 'future', 3)",
            [latest() + 1],
        )
        .unwrap();
        let e = apply(&mut conn, 4).unwrap_err().to_string();
        assert!(e.contains("newer jkmon"), "{e}");
    }
}
