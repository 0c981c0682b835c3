//! Bluetooth end to end: the real jkmon binary, through btleplug and bluez-async, against a fake
//! BlueZ on a private D-Bus playing JK BMSs with frames from the real capture corpus.

use crate::common;
use std::collections::BTreeMap;
use std::time::Duration;

use common::bluez::{fragments, FakeBluez};
use common::process::Running;
use common::{corpus, hex_bytes};
use jkmon::battery::soc::BmsSoc;
use jkmon::battery::Snapshot;
use jkmon::protocol::command::{self, CMD_CELL_INFO, CMD_DEVICE_INFO};
use jkmon::protocol::VariantChoice;
use jkmon::report::json::{DeviceInfoJson, SnapshotJson};
use jkmon::session::{FrameStream, StreamEvent};
use serde_json::{json, Value};

const A: &str = "C8:47:80:12:AD:71";
const B: &str = "20:21:11:00:00:02";

fn by_id(corpus: &[Value]) -> BTreeMap<u64, Value> {
    corpus
        .iter()
        .map(|e| (e["id"].as_u64().unwrap(), e.clone()))
        .collect()
}

/// A fake JK built from corpus captures: device info, settings, and cell frames in turn.
fn device(address: &str, c: &BTreeMap<u64, Value>, dev: u64, set: u64, cells: &[u64]) -> Value {
    json!({
        "address": address,
        "name": "JK_PB2A16S15P",
        "uuids": ["0000ffe0-0000-1000-8000-00805f9b34fb"],
        "device_info": fragments(&c[&dev]),
        "settings": fragments(&c[&set]),
        "cell_info": cells.iter().map(|id| fragments(&c[id])).collect::<Vec<_>>(),
        "interval_ms": 100,
    })
}

/// A fake BlueZ with one JK at `A` built by [`device`], plus the given behaviour keys
/// (`drop_after_frames`, `garbage`, `layout`, …).
fn one_jk(
    c: &BTreeMap<u64, Value>,
    dev: u64,
    set: u64,
    cells: &[u64],
    behaviour: Value,
) -> Option<FakeBluez> {
    let mut spec = device(A, c, dev, set, cells);
    for (k, v) in behaviour.as_object().unwrap() {
        spec[k] = v.clone();
    }
    FakeBluez::start(json!({ "devices": [spec] }))
}

/// What decoding the capture's bytes directly gives: (device-info JSON, snapshot JSON per cell
/// frame). The transport must deliver exactly these values.
fn expected(c: &BTreeMap<u64, Value>, dev: u64, set: u64, cells: &[u64]) -> (Value, Vec<Value>) {
    let mut s = FrameStream::new("expected", VariantChoice::Auto);
    s.push(&hex_bytes(c[&dev]["hex"].as_str().unwrap()));
    s.push(&hex_bytes(c[&set]["hex"].as_str().unwrap()));
    let snaps = cells
        .iter()
        .map(|id| {
            let events = s.push(&hex_bytes(c[id]["hex"].as_str().unwrap()));
            let Some(StreamEvent::Cells(cells)) = events.into_iter().next() else {
                panic!("corpus frame {id} is not a cell frame")
            };
            let snap = Snapshot::new(*cells, s.device_info.clone(), s.settings.clone(), &BmsSoc);
            serde_json::to_value(SnapshotJson::new(&snap)).unwrap()
        })
        .collect();
    let dev_json = serde_json::to_value(DeviceInfoJson::new(
        s.device_info.as_ref().unwrap(),
        s.variant().unwrap(),
        None,
    ))
    .unwrap();
    (dev_json, snaps)
}

fn watch(fake: &FakeBluez, env: &[(&str, &str)]) -> Running {
    let mut cmd = fake.jkmon(&["watch", "--json"]);
    cmd.env("SOC_SOURCE", "bms")
        .env("JK_BMS_CONNECT_TIMEOUT_SEC", "3")
        .env("JK_BMS_RETRY_MIN_SEC", "0.2")
        .env("JK_BMS_RETRY_MAX_SEC", "0.8")
        .envs(env.iter().copied());
    Running::spawn(cmd)
}

fn is_state(v: &Value, name: &str, state: &str) -> bool {
    v["event"] == "state" && v["name"] == name && v["state"] == state
}

fn is_snapshot(v: &Value, name: &str) -> bool {
    v["event"] == "snapshot" && v["name"] == name
}

#[test]
fn scan_finds_a_renamed_jk_by_its_advertisement_and_save_keeps_the_users_file() {
    let Some(fake) = FakeBluez::start(json!({"devices": [
        {"address": A, "name": "Garage 2", "rssi": -61,
         "uuids": ["0000ffe0-0000-1000-8000-00805f9b34fb"], "manufacturer": {"2917": "88a0c8478012ad71"}},
        {"address": "20:21:11:00:00:09", "rssi": -70, "manufacturer": {"19274": "0001"}},
        {"address": "C8:47:80:12:AD:72", "name": "Spare", "rssi": -75,
         "uuids": ["0000ffe0-0000-1000-8000-00805f9b34fb"]},
        {"address": "11:22:33:44:55:66", "name": "Headphones", "rssi": -40,
         "uuids": ["0000110b-0000-1000-8000-00805f9b34fb"], "manufacturer": {"76": "0215"}},
    ]})) else {
        return;
    };
    let file = fake.dir().join("jk_devices.yaml");
    let original = "# my batteries, edited by hand\n# C8:47:80:12:AD:72:\n#   name: Spare\n";
    std::fs::write(&file, original).unwrap();
    let out = fake
        .jkmon(&["scan", "--timeout", "2", "--save"])
        .env("JK_DEVICES_FILE", &file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stdout}\n{stderr}\n{}",
        fake.mock_errors()
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("RSSI"),
        "{stdout}"
    );
    // Strongest first; the headphones are not a JK.
    assert!(
        lines[1].contains("Garage 2") && lines[1].contains(A) && lines[1].contains("-61 dBm"),
        "{stdout}"
    );
    assert!(lines[1].contains("service FFE0 + JK maker id"), "{stdout}");
    assert!(
        lines[2].contains("20:21:11:00:00:09")
            && lines[2].contains("-70 dBm")
            && lines[2].contains("JK maker id"),
        "{stdout}"
    );
    assert!(lines[3].contains("Spare"), "{stdout}");
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(!stdout.contains("Headphones"));
    assert!(
        stderr.contains("found Garage 2 (C8:47:80:12:AD:71) -61 dBm"),
        "{stderr}"
    );
    assert!(
        stderr.contains("2 added, 0 updated, 1 left disabled"),
        "{stderr}"
    );

    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.starts_with(original), "{saved}");
    assert!(
        saved.contains("C8:47:80:12:AD:71:\n  address: C8:47:80:12:AD:71\n  last_seen: '"),
        "{saved}"
    );
    assert!(saved.contains("  name: 'Garage 2'\n"), "{saved}");
    assert!(
        !saved.contains("\nC8:47:80:12:AD:72:"),
        "a disabled device came back:\n{saved}"
    );

    // The saved file is what `read` and `watch` use when JK_BMS_ADDRESS is not set.
    let parsed = jkmon::config::DevicesFile::load(&file).unwrap();
    assert_eq!(parsed.devices.len(), 2);
}

#[test]
fn read_returns_the_corpus_values_for_every_fragmentation() {
    let c = corpus();
    let c = by_id(&c);
    // (device info, settings, cell info): 150+150; 20-byte MTU (JK04); 128+22+128+22 with
    // `AT\r\n` before the settings header; 128+128+44 with the ack glued on.
    for (dev, set, cell) in [
        (92, 93, 94),
        (98, 99, 100),
        (121, 122, 123),
        (105, 106, 107),
    ] {
        let Some(fake) = one_jk(&c, dev, set, &[cell], json!({})) else {
            return;
        };
        let out = fake
            .jkmon(&["read", "--json", "--address", A, "--timeout", "10"])
            .env("SOC_SOURCE", "bms")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "frames {dev}/{set}/{cell}: {stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            fake.mock_errors()
        );
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (dev_json, snaps) = expected(&c, dev, set, &[cell]);
        assert_eq!(lines[0], dev_json, "device info of {dev}");
        assert_eq!(lines.last().unwrap(), &snaps[0], "cell info of {cell}");

        let writes = fake.writes();
        assert!(writes.len() >= 2, "{writes:?}");
        assert_eq!(
            writes[0].1,
            command::request(CMD_DEVICE_INFO),
            "0x97 goes first"
        );
        assert_eq!(writes[1].1, command::request(CMD_CELL_INFO), "then 0x96");
    }
}

#[test]
fn a_module_with_two_ffe1_characteristics_works() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 128, 129, &[130], json!({"layout": "dual"})) else {
        return;
    };
    let out = fake
        .jkmon(&["read", "--json", "--timeout", "10"])
        .env("JK_BMS_ADDRESS", A)
        .env("SOC_SOURCE", "bms")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last, expected(&c, 128, 129, &[130]).1[0]);
    let writes = fake.writes();
    assert_eq!(writes[0].1, command::request(CMD_DEVICE_INFO));
}

#[test]
fn a_bms_that_is_not_there_fails_within_the_timeout_naming_the_usual_causes() {
    let Some(fake) = FakeBluez::start(json!({"devices": [
        {"address": A, "name": "JK", "present": false}
    ]})) else {
        return;
    };
    let started = std::time::Instant::now();
    let out = fake
        .jkmon(&["read", "--address", A, "--timeout", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(A)
            && stderr.contains("out of range")
            && stderr.contains("phone app")
            && stderr.contains("adapter is off"),
        "{stderr}"
    );
}

#[test]
fn a_missing_or_powered_off_adapter_says_what_to_check() {
    let Some(fake) = FakeBluez::start(json!({"adapter": false})) else {
        return;
    };
    let out = fake.jkmon(&["scan", "--timeout", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no Bluetooth adapter found") && stderr.contains("rfkill"),
        "{stderr}"
    );
    drop(fake);

    let Some(fake) = FakeBluez::start(json!({"powered": false})) else {
        return;
    };
    let out = fake
        .jkmon(&["read", "--address", A, "--timeout", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("powered off") && stderr.contains("bluetoothctl power on"),
        "{stderr}"
    );
}

#[test]
fn streaming_reconnects_after_a_drop_in_the_middle_of_a_frame() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 121, 122, &[123, 124], json!({"drop_after_frames": 3})) else {
        return;
    };
    let (_, snaps) = expected(&c, 121, 122, &[123, 124]);
    let mut run = watch(&fake, &[("JK_BMS_ADDRESS", A), ("JK_BMS_NAMES", "Main")]);
    let limit = Duration::from_secs(15);
    run.wait_for(limit, "streaming", |v| is_state(v, "Main", "streaming"));
    let lost = run.wait_for(limit, "the drop", |v| is_state(v, "Main", "disconnected"));
    assert!(
        lost["detail"].as_str().unwrap().contains("link closed"),
        "{lost}"
    );
    assert!(
        lost["retry_in_ms"].as_u64().unwrap() <= 200,
        "first retry after a good connection is quick: {lost}"
    );
    run.wait_for(limit, "the reconnection", |v| {
        is_state(v, "Main", "streaming")
    });
    // Every snapshot, before and after, is one of the real frames: nothing half-joined.
    let mut after = 0;
    while after < 3 {
        let v = run.wait_for(limit, "snapshots after reconnecting", |v| {
            is_snapshot(v, "Main")
        });
        assert!(
            snaps.contains(&v["snapshot"]),
            "a snapshot that is not a sent frame: {v}"
        );
        after += 1;
    }
    // Each change is logged with the BMS's name.
    run.drain_stderr();
    let log = run.stderr_seen.join("\n");
    for change in [
        "connecting → handshake",
        "handshake → streaming",
        "streaming → disconnected: the link closed",
    ] {
        assert!(log.contains(&format!("Main: {change}")), "{change}:\n{log}");
    }
    let writes = fake.writes();
    let handshakes = writes
        .iter()
        .filter(|(_, w)| w[4] == CMD_DEVICE_INFO)
        .count();
    assert_eq!(handshakes, 2, "a full handshake on each connection");
}

#[test]
fn a_silent_bms_goes_offline_within_the_stale_limit_and_comes_back() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 136, 122, &[137, 138], json!({"silent_after_frames": 2})) else {
        return;
    };
    let mut run = watch(
        &fake,
        &[
            ("JK_BMS_ADDRESS", A),
            ("JK_BMS_NAMES", "Shed"),
            ("JK_BMS_STALE_SEC", "2"),
        ],
    );
    let limit = Duration::from_secs(15);
    run.wait_for(limit, "first snapshot", |v| is_snapshot(v, "Shed"));
    let started = std::time::Instant::now();
    let offline = run.wait_for(limit, "offline", |v| is_state(v, "Shed", "disconnected"));
    assert_eq!(
        offline["detail"], "offline: no valid frame for 2 s",
        "{offline}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    run.wait_for(limit, "back online", |v| is_state(v, "Shed", "streaming"));
    run.wait_for(limit, "a snapshot after", |v| is_snapshot(v, "Shed"));
}

#[test]
fn garbage_between_frames_never_makes_a_corrupt_snapshot() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 121, 122, &[123, 124], json!({"garbage": true})) else {
        return;
    };
    let (_, snaps) = expected(&c, 121, 122, &[123, 124]);
    let mut run = watch(&fake, &[("JK_BMS_ADDRESS", A), ("JK_BMS_NAMES", "Main")]);
    let mut rejected = 0;
    for _ in 0..6 {
        let v = run.wait_for(Duration::from_secs(15), "snapshots", |v| {
            is_snapshot(v, "Main")
        });
        assert!(snaps.contains(&v["snapshot"]), "{v}");
        rejected = v["rejected"].as_u64().unwrap();
    }
    assert!(
        rejected >= 4,
        "the corrupted copies were seen and rejected: {rejected}"
    );
}

#[test]
fn a_device_that_disappears_is_retried_with_a_growing_capped_backoff() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 121, 122, &[123], json!({})) else {
        return;
    };
    let mut run = watch(
        &fake,
        &[
            ("JK_BMS_ADDRESS", A),
            ("JK_BMS_NAMES", "Main"),
            ("JK_BMS_CONNECT_TIMEOUT_SEC", "1"),
        ],
    );
    run.wait_for(Duration::from_secs(15), "first snapshot", |v| {
        is_snapshot(v, "Main")
    });
    fake.control("Vanish", &[A]);
    let events = run.collect_for(Duration::from_secs(7));
    let retries: Vec<u64> = events
        .iter()
        .filter(|v| is_state(v, "Main", "disconnected"))
        .map(|v| v["retry_in_ms"].as_u64().unwrap())
        .collect();
    let attempts = events
        .iter()
        .filter(|v| is_state(v, "Main", "connecting"))
        .count();
    // Each attempt waits for the scan (1 s) and then the backoff: no busy loop.
    assert!(
        (3..=8).contains(&attempts),
        "{attempts} attempts in 7 s: {events:?}"
    );
    assert!(
        retries.iter().all(|&ms| ms <= 800),
        "capped at 0.8 s: {retries:?}"
    );
    assert!(retries[0] <= 200, "{retries:?}");
    assert!(
        retries[3..].iter().all(|&ms| ms >= 400),
        "grew towards the cap: {retries:?}"
    );
    let failures: Vec<&str> = events
        .iter()
        .filter(|v| is_state(v, "Main", "disconnected"))
        .skip(1)
        .map(|v| v["detail"].as_str().unwrap())
        .collect();
    assert!(
        failures.iter().all(|d| d.contains("was not seen")),
        "{failures:?}"
    );

    fake.control("Appear", &[A]);
    run.wait_for(Duration::from_secs(10), "back after it reappeared", |v| {
        is_snapshot(v, "Main")
    });
}

#[test]
fn two_bmss_at_once_one_failing_never_stalls_the_other() {
    let c = corpus();
    let c = by_id(&c);
    let good = device(A, &c, 121, 122, &[123, 124]);
    let mut bad = device(B, &c, 128, 129, &[130]);
    bad["fail_connect"] = json!(true);
    let Some(fake) = FakeBluez::start(json!({"devices": [good, bad]})) else {
        return;
    };
    let mut run = watch(
        &fake,
        &[
            ("JK_BMS_ADDRESS", &format!("{A},{B}")),
            ("JK_BMS_NAMES", "Main,Garage"),
        ],
    );
    run.wait_for(Duration::from_secs(15), "Main streaming", |v| {
        is_snapshot(v, "Main")
    });
    let events = run.collect_for(Duration::from_secs(3));
    let main_snaps = events.iter().filter(|v| is_snapshot(v, "Main")).count();
    let garage_failures: Vec<&Value> = events
        .iter()
        .filter(|v| is_state(v, "Garage", "disconnected"))
        .collect();
    assert!(
        main_snaps >= 10,
        "Main kept streaming (~10/s): {main_snaps}"
    );
    assert!(
        !garage_failures.is_empty(),
        "Garage kept retrying: {events:?}"
    );
    assert!(
        garage_failures[0]["detail"]
            .as_str()
            .unwrap()
            .contains("le-connection-abort-by-local"),
        "{garage_failures:?}"
    );
    assert!(!events.iter().any(|v| is_snapshot(v, "Garage")));
    assert!(events
        .iter()
        .all(|v| v["battery"] == if v["name"] == "Main" { 1 } else { 2 }));
}

#[test]
fn the_watchdog_exits_non_zero_when_every_bms_is_silent() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 121, 122, &[123], json!({"fail_connect": true})) else {
        return;
    };
    let mut run = watch(&fake, &[("JK_BMS_ADDRESS", A), ("BMS_TIMEOUT_SEC", "2")]);
    let status = run.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "{:?}", run.stderr_seen);
    let stderr = run.stderr_seen.join("\n");
    assert!(
        stderr.contains("watchdog: no BMS delivered a valid frame")
            && stderr.contains("BMS_TIMEOUT_SEC"),
        "{stderr}"
    );
}

#[test]
fn periodic_mode_connects_reads_and_lets_go_between_polls() {
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 121, 122, &[123, 124], json!({})) else {
        return;
    };
    let (_, snaps) = expected(&c, 121, 122, &[123, 124]);
    let mut run = watch(
        &fake,
        &[
            ("JK_BMS_ADDRESS", A),
            ("JK_BMS_NAMES", "Main"),
            ("JK_BMS_CONNECT_MODE", "periodic"),
            ("JK_BMS_POLL_INTERVAL", "1"),
        ],
    );
    let limit = Duration::from_secs(15);
    for _ in 0..2 {
        let v = run.wait_for(limit, "a periodic snapshot", |v| is_snapshot(v, "Main"));
        assert!(snaps.contains(&v["snapshot"]), "{v}");
        let idle = run.wait_for(limit, "the disconnect after it", |v| {
            is_state(v, "Main", "disconnected")
        });
        assert_eq!(idle["detail"], "periodic mode: next reading in 1 s");
        assert_eq!(idle["retry_in_ms"], 1000);
    }
    run.wait_for(limit, "the third connection", |v| {
        is_state(v, "Main", "connecting")
    });
    // One full handshake per reading: the link was really let go in between.
    let handshakes = fake
        .writes()
        .iter()
        .filter(|(_, w)| w[4] == CMD_DEVICE_INFO)
        .count();
    assert!(handshakes >= 2, "{handshakes}");
}

/// `jkmon doctor` with the fake's bus, a fresh database directory and a free port.
fn doctor(fake: &FakeBluez, addresses: &str) -> (bool, String) {
    let out = fake
        .jkmon(&["doctor", "--scan-timeout", "2"])
        .env("JK_BMS_ADDRESS", addresses)
        .env("DB_PATH", fake.dir().join("inverter.db"))
        .env("WEB_BIND", "127.0.0.1:0")
        .env_remove("TELEGRAM_BOT_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn doctor_checks_bluez_the_adapter_and_every_configured_bms() {
    let Some(fake) = FakeBluez::start(json!({"devices": [
        {"address": A, "name": "JK_PB2A16S15P", "rssi": -61,
         "uuids": ["0000ffe0-0000-1000-8000-00805f9b34fb"]},
    ]})) else {
        return;
    };
    let (ok, out) = doctor(&fake, &format!("{A},{B}"));
    assert!(!ok, "one BMS is missing: {out}");
    assert!(out.contains("✔ configuration: valid; 2 BMS(s)"), "{out}");
    assert!(
        out.contains("✔ database:") && out.contains("will be created"),
        "{out}"
    );
    assert!(out.contains("✔ D-Bus and BlueZ"), "{out}");
    assert!(
        out.contains(&format!("✔ BMS Battery 1: {A} seen at -61 dBm")),
        "{out}"
    );
    assert!(
        out.contains(&format!("✘ BMS Battery 2: {B} not seen")) && out.contains("phone app"),
        "{out}"
    );
    assert!(out.contains("· Telegram: not configured"), "{out}");
    assert!(out.contains("✔ web port"), "{out}");
    assert!(out.contains("1 problem(s)"), "{out}");
    let (ok, out) = doctor(&fake, A);
    assert!(ok, "{out}");
    assert!(out.contains("All checks passed."), "{out}");
    drop(fake);

    for (params, says) in [
        (json!({"adapter": false}), "no Bluetooth adapter found"),
        (json!({"powered": false}), "powered off"),
    ] {
        let Some(fake) = FakeBluez::start(params) else {
            return;
        };
        let (ok, out) = doctor(&fake, A);
        assert!(!ok);
        assert!(
            out.contains("✘ D-Bus and BlueZ") && out.contains(says),
            "{out}"
        );
    }
}

/// Switching over Bluetooth, through btleplug and the fake BlueZ playing a JK02_32S from the
/// corpus (121/122/123): the bytes on the write characteristic are the protocol reference's
/// (charging on: `AA 55 90 EB 1D 04 01 00 … 9C`), each followed by the request for the settings
/// frame that confirms it; a BMS that acknowledges and changes nothing is "refused"; a link
/// that drops as the write arrives gets it once more after reconnecting.
#[test]
fn switch_writes_go_out_as_the_reference_bytes_and_are_confirmed_by_the_settings_frame() {
    use common::process::http;
    let c = corpus();
    let c = by_id(&c);
    let Some(fake) = one_jk(&c, 121, 122, &[123], json!({})) else {
        return;
    };
    let token = "ble-token";
    let mut cmd = fake.jkmon(&["run"]);
    cmd.envs([
        ("JK_BMS_ADDRESS", A),
        ("JK_BMS_NAMES", "Main"),
        ("JK_BMS_CONTROL", "on"),
        ("JK_BMS_RETRY_MIN_SEC", "0.2"),
        ("JK_BMS_RETRY_MAX_SEC", "0.8"),
        ("WEB_AUTH_TOKEN", token),
        ("WEB_BIND", "127.0.0.1:0"),
        ("RUST_LOG", "warn,jkmon=info"),
    ])
    .env("DB_PATH", fake.dir().join("ble.db"));
    let mut run = Running::spawn(cmd);
    let limit = Duration::from_secs(20);
    let addr = run.web_address(limit);
    run.wait_for_log(limit, "Main: handshake → streaming");
    let bearer = format!("Bearer {token}");
    let set = |switch: &str, on: bool| -> (u16, Value) {
        let (code, body) = http(
            &addr,
            "POST",
            "/api/v1/batteries/1/switches",
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &json!({"switch": switch, "on": on}).to_string(),
        );
        (code, serde_json::from_str(&body).unwrap())
    };
    for (switch, on) in [("charging", false), ("charging", true), ("heater", true)] {
        let (code, answer) = set(switch, on);
        assert_eq!(code, 200, "{switch}={on}: {answer}");
        assert_eq!(answer["confirmed"], true);
    }
    // a BMS that takes nothing: acknowledged (C8), yet its settings frame says otherwise
    fake.control("Configure", &[A, r#"{"refuse_writes": true}"#]);
    let (code, answer) = set("discharging", false);
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("did not take it"),
        "{answer}"
    );
    // the link drops as the write arrives: sent again after the reconnection, confirmed
    fake.control(
        "Configure",
        &[A, r#"{"refuse_writes": false, "drop_on_write": true}"#],
    );
    let (code, answer) = set("balancer", false);
    assert_eq!(code, 200, "{answer}");

    // what went out on the write characteristic, switch writes with what followed each
    let writes: Vec<Vec<u8>> = fake.writes().into_iter().map(|(_, w)| w).collect();
    let switch_writes: Vec<(usize, String)> = writes
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w[4], 0x1D | 0x1E | 0x1F | 0x27))
        .map(|(i, w)| (i, jkmon::protocol::hex(w).to_uppercase()))
        .collect();
    let sent: Vec<&str> = switch_writes.iter().map(|(_, h)| h.as_str()).collect();
    assert_eq!(
        sent,
        [
            "AA 55 90 EB 1D 04 00 00 00 00 00 00 00 00 00 00 00 00 00 9B",
            "AA 55 90 EB 1D 04 01 00 00 00 00 00 00 00 00 00 00 00 00 9C",
            "AA 55 90 EB 27 04 01 00 00 00 00 00 00 00 00 00 00 00 00 A6",
            "AA 55 90 EB 1E 04 00 00 00 00 00 00 00 00 00 00 00 00 00 9C",
            // dropped before the BMS saw it, then sent again on the next connection
            "AA 55 90 EB 1F 04 00 00 00 00 00 00 00 00 00 00 00 00 00 9D",
            "AA 55 90 EB 1F 04 00 00 00 00 00 00 00 00 00 00 00 00 00 9D",
        ]
    );
    // each is followed by the request for the settings frame that confirms it
    for (i, _) in switch_writes.iter().take(4).chain(switch_writes.last()) {
        assert_eq!(
            writes.get(i + 1).map(|w| w[4]),
            Some(CMD_CELL_INFO),
            "after #{i}"
        );
    }
    // and between the dropped one and its second sending, a whole new handshake
    let (dropped, again) = (switch_writes[4].0, switch_writes[5].0);
    assert!(
        writes[dropped + 1..again]
            .iter()
            .any(|w| w[4] == CMD_DEVICE_INFO),
        "a reconnection between the two sendings"
    );
    // the BMS's report, as the status shows it: what took, not what was asked
    // (the records reach the database a moment after the answers: at most 5 s)
    let mut b = Value::Null;
    for _ in 0..20 {
        let (_, body) = http(
            &addr,
            "GET",
            "/api/v1/status",
            &[("Authorization", &bearer)],
            "",
        );
        let status: Value = serde_json::from_str(&body).unwrap();
        b = status["batteries"][0].clone();
        if b["switch_writes"].as_array().is_some_and(|w| w.len() == 5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let writes = b["switch_writes"].as_array().unwrap();
    let outcomes: Vec<&str> = writes
        .iter()
        .map(|w| w["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "confirmed",
            "refused",
            "confirmed",
            "confirmed",
            "confirmed"
        ],
        "{b}"
    );
    run.signal("TERM");
    assert!(run.wait_exit(limit).success());
}
