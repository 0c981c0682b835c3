//! Helpers shared by the end-to-end tests.

use std::path::PathBuf;

/// The corpus of real captures, `tests/fixtures/jk-frames.json` (each entry names its source;
/// see `tests/fixtures/README.md`). `JKMON_CORPUS` points at another copy.
pub fn corpus() -> Vec<serde_json::Value> {
    let path = std::env::var_os("JKMON_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jk-frames.json")
        });
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the frame corpus at {}: {e}", path.display()));
    serde_json::from_str(&text).expect("jk-frames.json is valid JSON")
}

/// The checksum-valid serial `4E 57` responses of the corpus, as bytes.
pub fn clean_serial_responses(corpus: &[serde_json::Value]) -> Vec<Vec<u8>> {
    corpus
        .iter()
        .filter(|e| {
            e["transport"] == "serial_4e57"
                && e["frame_type"] == "response"
                && e["checksum_ok"] == true
        })
        .map(|e| hex_bytes(e["hex"].as_str().unwrap()))
        .collect()
}

/// Whether `program args…` runs and succeeds. Missing: a loud skip on a developer's machine, a
/// failure in CI (where `scripts/test.sh` installs everything).
pub fn have_program(program: &str, args: &[&str]) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(
        ok,
        &format!("`{program} {}` does not run here", args.join(" ")),
    )
}

/// What a finished program printed (stdout, then stderr), after asserting that it succeeded;
/// `what` names it in the failure.
pub fn succeeded(out: &std::process::Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

/// `s` percent-encoded for a URL's query (every byte but the unreserved ones).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// A TCP port on the loopback that was free a moment ago (for a server a test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `found`, after a loud skip (or, in CI, a failure) naming `missing` when it is false.
pub fn require(found: bool, missing: &str) -> bool {
    if !found {
        let msg = format!("SKIPPED: {missing}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "{msg} — in CI every program the tests need must be installed (scripts/test.sh)"
            );
        }
        eprintln!("\n*** {msg} ***\n");
    }
    found
}

/// The inverter keys battery 1's keys write over; the merge keeps their inverter values as
/// `inverter_<key>`.
pub const MOVED_INVERTER_KEYS: [&str; 5] = [
    "battery_voltage",
    "battery_current",
    "battery_soc",
    "battery_power",
    "temperature",
];

/// Every inverter value of `original` that `merged` does not hold any more (under
/// `inverter_<key>` for the moved keys), as `key=value became …` lines.
pub fn lost_inverter_keys(
    original: &serde_json::Map<String, serde_json::Value>,
    merged: &serde_json::Map<String, serde_json::Value>,
) -> Vec<String> {
    original
        .iter()
        .filter_map(|(k, v)| {
            let key = if MOVED_INVERTER_KEYS.contains(&k.as_str()) {
                format!("inverter_{k}")
            } else {
                k.clone()
            };
            let kept = merged.get(&key);
            (kept != Some(v)).then(|| format!("{k}={v} became {kept:?}"))
        })
        .collect()
}

/// Commits `snapshot` as battery `position`'s freshest, taken now, as the writer would.
pub fn commit_one(
    store: &mut jkmon::store::Store,
    position: usize,
    snapshot: &jkmon::battery::Snapshot,
) -> jkmon::store::ReadingsAction {
    commit_with_energy(store, position, snapshot, &jkmon::store::energy::NO_ENERGY)
}

/// Commits `snapshot` of battery `position` now, with the energy `pending` holds, as the
/// writer's commit does.
pub fn commit_with_energy(
    store: &mut jkmon::store::Store,
    position: usize,
    snapshot: &jkmon::battery::Snapshot,
    pending: &jkmon::store::energy::Pending,
) -> jkmon::store::ReadingsAction {
    let mut bucket = jkmon::store::Bucket::default();
    bucket.add(snapshot);
    store
        .commit(
            &[jkmon::store::Update {
                position,
                snapshot,
                taken_at: chrono::Local::now(),
                bucket: &bucket,
                fresh: true,
                energy: pending,
            }],
            chrono::Local::now(),
        )
        .unwrap()
}

pub fn hex_bytes(s: &str) -> Vec<u8> {
    hex::decode(s).expect("corpus hex")
}

pub fn field<'a>(entry: &'a serde_json::Value, key: &str) -> &'a str {
    entry[key].as_str().unwrap_or("")
}
pub mod bluez;
pub mod browser;
pub mod fake_telegram;
pub mod home_assistant;
pub mod influx;
pub mod mqtt;
pub mod process;
pub mod prometheus;
pub mod pty;

/// Every switch write recorded in `db`, oldest first, as
/// `"<battery>: <switch>=on|off by <source>[ chat <id>]: <outcome>"`.
pub fn switch_writes(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT battery, switch, turn_on, source, chat_id, outcome FROM bms_switch_writes
             ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        let chat = r
            .get::<_, Option<i64>>(4)?
            .map(|c| format!(" chat {c}"))
            .unwrap_or_default();
        Ok(format!(
            "{}: {}={} by {}{chat}: {}",
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            if r.get::<_, bool>(2)? { "on" } else { "off" },
            r.get::<_, String>(3)?,
            r.get::<_, String>(5)?
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}
