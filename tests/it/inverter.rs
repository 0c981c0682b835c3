//! The inverter over the SmartESS dongle's reverse-connect scheme, on the loopback: jkmon's
//! dongle link against the simulated dongle (real UDP announcement, real TCP dial-back, real
//! Eybond frames with CRC). Every register of each model, the faults a real link has (a bad
//! CRC, an exception, a dropped request, a closed connection), a dongle that never connects
//! back, a grid loss, and the `readings` row the Python poller would write. Then the same
//! registers over Modbus RTU on a socat pty pair and Modbus TCP, read with `tokio-modbus`.

use crate::common;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::process::Running;
use jkmon::inverter::payload::{self, Mode};
use jkmon::inverter::registers::{self, Model, Values, MODELS, SMG_II_11K, SMG_II_6K};
use jkmon::transport::inverter::dongle::{Dongle, DongleConfig, DongleError};
use jkmon::transport::inverter::modbus::{ModbusConfig, ModbusError, ModbusLink};
use jkmon::transport::inverter::{poll as poll_decoded, LinkError, ReadRegisters};
use jkmon::transport::serial::{self, PortConfig};
use jkmon::transport::sim::dongle::{Event, Faults, SimDongle, SimDongleConfig};
use jkmon::transport::sim::inverter::{SimInverter, SimInverterConfig};
use jkmon::transport::sim::modbus as sim_modbus;

/// Every block of `model` read over `link`: the plausible values and the errors.
async fn poll(link: &mut impl ReadRegisters, model: &'static Model) -> (Values, Vec<LinkError>) {
    let (decoded, errors) = poll_decoded(link, model).await;
    (decoded.values, errors)
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// jkmon's side of the link to `sim`: a free port, short waits.
fn link_to(sim: &SimDongle, dial_back_timeout: Duration) -> DongleConfig {
    let mut link = DongleConfig::new(LOOPBACK, LOOPBACK);
    link.dongle = sim.udp_addr;
    link.listen_port = 0;
    link.read_timeout = Duration::from_millis(500);
    link.dial_back_timeout = dial_back_timeout;
    link.announce_every = Duration::from_millis(200);
    link
}

async fn pair(config: SimDongleConfig) -> (SimDongle, Dongle) {
    let sim = SimDongle::start(config).await.unwrap();
    let dongle = Dongle::bind(link_to(&sim, Duration::from_secs(5)))
        .await
        .unwrap();
    (sim, dongle)
}

/// How many of `events` match `which`.
fn count(events: &[Event], which: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| which(e)).count()
}

/// `got` holds `want`'s value of every register of `model`, to the register's resolution.
fn same_values(model: &Model, got: &Values, want: &Values) {
    for r in model.registers {
        let (g, w) = (got[r.name], want[r.name]);
        assert!(
            (g - w).abs() <= r.scale / 2.0 + 1e-9,
            "{} {}: read {g}, the inverter holds {w}",
            model.key,
            r.name
        );
    }
}

#[tokio::test]
async fn every_register_of_each_model_arrives_with_its_scale_and_sign() {
    for model in MODELS {
        let (sim, mut dongle) = pair(SimDongleConfig::new(model)).await;
        let (values, errors) = poll(&mut dongle, model).await;
        assert!(errors.is_empty(), "{}: {errors:?}", model.key);
        assert_eq!(values.len(), model.registers.len(), "{}", model.key);
        same_values(model, &values, &sim.values());
        // signed registers stay negative (the 11K's PV temperature is -3 °C in the image)
        if model.key == SMG_II_11K.key {
            assert_eq!(values["pv_temperature_c"], -3.0);
            assert!((values["pv_energy_total_kwh"] - 98_765.43).abs() < 0.006);
        }
        // the handshake: one announcement naming the listener, one connection
        let events = sim.events();
        let announced = format!("set>server={};", dongle.listen_addr());
        assert_eq!(events[0], Event::Announced(announced));
        assert!(matches!(events[1], Event::Connected(_)));
        // one request per block, the connection kept across polls
        let blocks = registers::blocks(model).len();
        let answered = |events: &[Event]| {
            events
                .iter()
                .filter(|e| matches!(e, Event::Answered(_)))
                .count()
        };
        assert_eq!(answered(&events), blocks);
        let (again, _) = poll(&mut dongle, model).await;
        assert_eq!(again, values);
        assert_eq!(dongle.connections, 1);
        assert_eq!(answered(&sim.events()), 2 * blocks);
    }
}

#[tokio::test]
async fn the_row_is_what_the_python_poller_writes_for_these_registers() {
    let (sim, mut dongle) = pair(SimDongleConfig::new(&SMG_II_6K)).await;
    let (values, errors) = poll(&mut dongle, &SMG_II_6K).await;
    assert!(errors.is_empty(), "{errors:?}");
    // the registers behind the Python poller's stored example row give that row
    assert_eq!(
        payload::payload(&values).unwrap(),
        r#"{"grid_voltage": "230.3", "grid_power": "1163", "grid_current": "5.05", "ac_output_voltage": "230.0", "ac_output_freq": "50.00", "ac_output_power": "1148", "ac_output_current": "5.4", "battery_voltage": "52.8", "battery_current": "42.5", "battery_power": "2219", "battery_soc": "65", "battery_charge_power": "15", "pv_input_voltage": "343.9", "pv_input_power": "2294", "pv_input_current": "6.7", "temperature": "36", "status_text": "SUB"}"#
    );
    drop(sim);
}

#[tokio::test]
async fn bad_crcs_exceptions_and_dropped_requests_give_no_values_and_never_wrong_ones() {
    // the 11K reads 7 blocks a poll: request 2 has a bad CRC, 3 an exception, 5 is dropped
    let mut config = SimDongleConfig::new(&SMG_II_11K);
    config.inverter.faults = Faults {
        bad_crc_every: 2,
        exception_every: 3,
        drop_every: 5,
        close_every: 0,
    };
    let (sim, mut dongle) = pair(config).await;
    let (values, errors) = poll(&mut dongle, &SMG_II_11K).await;
    let truth = sim.values();
    // every value read is the inverter's; the failed blocks' values are missing, not guessed
    for (name, v) in &values {
        let scale = SMG_II_11K
            .registers
            .iter()
            .find(|r| r.name == *name)
            .unwrap()
            .scale;
        assert!((v - truth[name]).abs() <= scale / 2.0 + 1e-9, "{name}");
    }
    assert!(values.len() < SMG_II_11K.registers.len());
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(texts.iter().any(|t| t.contains("bad CRC")), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.contains("illegal data address")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("no answer")), "{texts:?}");
    // the late answer to nothing and the next request's answer are not confused: the link
    // is kept and the next poll reads what it can again
    assert_eq!(dongle.connections, 1);
    let (next, _) = poll(&mut dongle, &SMG_II_11K).await;
    assert!(!next.is_empty());
}

#[tokio::test]
async fn a_dongle_that_closes_the_connection_is_taken_back_on_the_same_port() {
    let mut config = SimDongleConfig::new(&SMG_II_6K);
    config.inverter.faults.close_every = 2;
    let (sim, mut dongle) = pair(config).await;
    let port = dongle.listen_addr().port();
    let mut read = 0;
    for _ in 0..6 {
        let (values, _) = poll(&mut dongle, &SMG_II_6K).await;
        if !values.is_empty() {
            read += 1;
            same_values(&SMG_II_6K, &values, &sim.values());
        }
    }
    // every other request closes the link: half the polls read, each after a new dial-back
    assert!(read >= 3, "{read} polls read");
    assert!(
        dongle.connections >= 3,
        "{} connections",
        dongle.connections
    );
    assert_eq!(dongle.listen_addr().port(), port, "no port creep");
    let announced: Vec<Event> = sim
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Announced(_)))
        .collect();
    assert!(announced
        .iter()
        .all(|e| *e == Event::Announced(format!("set>server=127.0.0.1:{port};"))));
}

#[tokio::test]
async fn a_dongle_that_never_connects_back_is_named_with_the_port_and_local_ip() {
    let mut config = SimDongleConfig::new(&SMG_II_6K);
    config.dial_back = false;
    let sim = SimDongle::start(config).await.unwrap();
    let link = link_to(&sim, Duration::from_secs(1));
    let mut dongle = Dongle::bind(link).await.unwrap();
    let port = dongle.listen_addr().port();
    let e = dongle.read(201, 34).await.unwrap_err();
    assert!(matches!(e, DongleError::NoDialBack { .. }), "{e:?}");
    let text = e.to_string();
    for needle in [
        format!("TCP port {port}"),
        "LOCAL_IP (127.0.0.1)".to_string(),
        "firewall".to_string(),
        format!("{}", sim.udp_addr),
    ] {
        assert!(text.contains(&needle), "{needle} in: {text}");
    }
    // it kept announcing while it waited
    let announcements = sim
        .events()
        .iter()
        .filter(|e| matches!(e, Event::Announced(_)))
        .count();
    assert!(announcements >= 3, "{announcements}");
}

#[tokio::test]
async fn a_grid_loss_is_a_mode_change_seen_first_hand() {
    let (sim, mut dongle) = pair(SimDongleConfig::new(&SMG_II_11K)).await;
    let (before, _) = poll(&mut dongle, &SMG_II_11K).await;
    assert_eq!(payload::mode(&before), Some(Mode::Mains));
    sim.set_grid(false);
    let (after, _) = poll(&mut dongle, &SMG_II_11K).await;
    assert_eq!(payload::mode(&after), Some(Mode::OffGrid));
    assert_eq!(after["grid_voltage_v"], 0.0);
    assert!(after["battery_current_a"] < 0.0, "discharging off-grid");
    let row = payload::payload(&after).unwrap();
    assert!(row.ends_with(r#""status_text": "SBU"}"#), "{row}");
    sim.set_grid(true);
    let (back, _) = poll(&mut dongle, &SMG_II_11K).await;
    assert_eq!(payload::mode(&back), Some(Mode::Mains));
}

#[tokio::test]
async fn a_firmware_that_refuses_function_03_is_read_with_04() {
    let mut config = SimDongleConfig::new(&SMG_II_6K);
    config.inverter.input_registers_only = true;
    let (sim, mut dongle) = pair(config).await;
    let (values, errors) = poll(&mut dongle, &SMG_II_6K).await;
    assert!(errors.is_empty(), "{errors:?}");
    same_values(&SMG_II_6K, &values, &sim.values());
    // one refusal, then 04 for the rest of the connection
    let refusals = count(&sim.events(), |e| matches!(e, Event::Exception(_, 0x01)));
    assert_eq!(refusals, 1);
    let (again, errors) = poll(&mut dongle, &SMG_II_6K).await;
    assert!(errors.is_empty() && again == values);
}

/// A simulated inverter answering Modbus RTU on the far end of a socat pty pair, as an RS485
/// adapter wired to its port carries it.
fn rtu_inverter(
    pty: &common::pty::PtyPair,
    config: SimInverterConfig,
    unit: u8,
) -> (SimInverter, tokio::task::JoinHandle<()>) {
    let inverter = SimInverter::new(config);
    let port = serial::open(&PortConfig {
        path: pty.b.clone(),
        baud: 9_600,
    })
    .expect("the simulator's end of the pty opens");
    let task = tokio::spawn(sim_modbus::serve_rtu(port, unit, inverter.clone()));
    (inverter, task)
}

#[tokio::test]
async fn modbus_rtu_over_a_serial_line_reads_every_register_of_each_model() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pty) = common::pty::PtyPair::open(dir.path()) else {
        return;
    };
    for model in MODELS {
        let (inverter, task) = rtu_inverter(&pty, SimInverterConfig::new(model), 1);
        let mut config = ModbusConfig::rtu(&pty.a, 9_600);
        config.read_timeout = Duration::from_millis(500);
        let mut link = ModbusLink::new(config);
        let (values, errors) = poll(&mut link, model).await;
        assert!(errors.is_empty(), "{}: {errors:?}", model.key);
        assert_eq!(values.len(), model.registers.len(), "{}", model.key);
        same_values(model, &values, &inverter.values());
        // the row is the dongle's row for the same registers
        assert_eq!(
            payload::payload(&values).unwrap(),
            payload::payload(&inverter.values()).unwrap()
        );
        // the next model's inverter takes the line
        drop(link);
        task.abort();
        let _ = task.await;
    }
}

#[tokio::test]
async fn modbus_rtu_skips_a_bad_crc_and_another_units_silence() {
    let dir = tempfile::tempdir().unwrap();
    let Some(pty) = common::pty::PtyPair::open(dir.path()) else {
        return;
    };
    let mut sim = SimInverterConfig::new(&SMG_II_6K);
    sim.faults.bad_crc_every = 2;
    let (inverter, _task) = rtu_inverter(&pty, sim, 1);
    let mut config = ModbusConfig::rtu(&pty.a, 9_600);
    config.read_timeout = Duration::from_millis(400);
    let mut link = ModbusLink::new(config.clone());
    let mut seen_bad = 0;
    for _ in 0..4 {
        match link.read(201, 34).await {
            Ok(regs) => assert_eq!(regs.len(), 34),
            // the corrupted answer is never taken: the read fails and the next one is clean
            Err(e) => {
                seen_bad += 1;
                assert!(
                    matches!(e, ModbusError::Timeout { .. } | ModbusError::Answer { .. }),
                    "{e:?}"
                );
            }
        }
    }
    let bad = count(&inverter.events(), |e| matches!(e, Event::BadCrc(_)));
    assert_eq!(seen_bad, bad, "each bad CRC is one failed read, no other");
    assert!(bad >= 1);
    // a unit that is not on the line: silence, named with what to check
    config.unit = 7;
    let e = ModbusLink::new(config).read(201, 1).await.unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("unit 7") && text.contains("INVERTER_BAUD") && text.contains("A/B"),
        "{text}"
    );
}

#[tokio::test]
async fn modbus_tcp_reads_the_same_registers_and_falls_back_to_function_04() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut sim = SimInverterConfig::new(&SMG_II_11K);
    sim.input_registers_only = true;
    let inverter = SimInverter::new(sim);
    tokio::spawn(sim_modbus::serve_tcp(listener, 1, inverter.clone()));
    let mut link = ModbusLink::new(ModbusConfig::tcp(addr));
    let (values, errors) = poll(&mut link, &SMG_II_11K).await;
    assert!(errors.is_empty(), "{errors:?}");
    same_values(&SMG_II_11K, &values, &inverter.values());
    let refusals = count(&inverter.events(), |e| {
        matches!(e, Event::Exception(_, 0x01))
    });
    assert_eq!(refusals, 1, "one refusal of 03, then 04");
    // a grid loss over TCP too
    inverter.set_grid(false);
    let (after, _) = poll(&mut link, &SMG_II_11K).await;
    assert_eq!(payload::mode(&after), Some(Mode::OffGrid));
    // an exception is named, and gives no value
    let e = link.read(201, 200).await.unwrap_err();
    assert!(
        matches!(e, ModbusError::Exception { code: 0x03, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("illegal data value"), "{e}");
    // nothing listening: the gateway is named with the variables to check
    drop(link);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let e = ModbusLink::new(ModbusConfig::tcp(closed))
        .read(201, 1)
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains(&closed.to_string()) && text.contains("MODBUS_PORT"),
        "{text}"
    );
}

/// The keys the BMS writes over in an inverter row; the inverter's own value stays beside it as
/// `inverter_<key>` (`migrations/0003_merge.sql`).
const MERGED_OVER: [&str; 5] = [
    "battery_voltage",
    "battery_current",
    "battery_soc",
    "battery_power",
    "temperature",
];

/// `jkmon run` with its own inverter poller on `sim`, the simulated BMS and the web server on
/// a free port.
fn jkmon_polling(dir: &std::path::Path, db: &std::path::Path, sim: &SimDongle) -> Running {
    Running::spawn(polling_command(dir, db, sim))
}

/// `jkmon run` on the simulated BMS, polling `sim`'s inverter every second.
fn polling_command(
    dir: &std::path::Path,
    db: &std::path::Path,
    sim: &SimDongle,
) -> std::process::Command {
    let mut cmd = common::process::jkmon(dir, &["run"]);
    cmd.env("JK_BMS_TRANSPORT", "sim")
        .env("JK_SIM_INTERVAL_MS", "50")
        .env("DB_PATH", db)
        // the BMS commits every 5 s; the inverter's rows must not wait for that
        .env("JK_BMS_POLL_INTERVAL", "5")
        .env("INVERTER_TRANSPORT", "dongle")
        .env("INVERTER_IP", "127.0.0.1")
        .env("LOCAL_IP", "127.0.0.1")
        .env("INVERTER_UDP_PORT", sim.udp_addr.port().to_string())
        .env("INVERTER_LISTEN_PORT", "0")
        .env("INVERTER_MODEL", sim.inverter.model().key)
        .env("POLL_INTERVAL", "1")
        .env("WEB_BIND", "127.0.0.1:0")
        .env("RUST_LOG", "warn,jkmon=info,jkmon::store::writer=debug");
    cmd
}

/// The grid as every reader of `web` tells it: the status's `grid` and the poller's, and
/// `jkmon_inverter_grid_up` in `/metrics` (`None` where the series is absent).
fn grid_everywhere(web: &str, model: &str) -> (String, String, Option<f64>) {
    let status = api_status(web);
    let (_, page) = common::process::http_get(web, "/metrics");
    let families = common::prometheus::parse(&page).unwrap();
    let up = common::prometheus::get(&families, "jkmon_inverter_grid_up", &[("model", model)]);
    (
        status["grid"].as_str().unwrap_or_default().to_string(),
        status["inverter_poller"]["grid"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        up,
    )
}

/// The probe that told Home Assistant, `/metrics`, the status and the alerts "grid lost" for
/// nothing: the inverter in off-grid (SBU) mode with the mains present, behind a link that
/// answers the mode but refuses the grid block. Unknown everywhere, no alert — and a real
/// loss afterwards still is one (so the quiet is not a dead alert path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grid_block_not_read_is_unknown_everywhere_and_never_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let sim = SimDongle::start(SimDongleConfig::new(&SMG_II_11K))
        .await
        .unwrap();
    // SBU by choice: battery first, the mains there
    sim.inverter.set_value("operating_mode", 3.0);
    sim.inverter.refuse_block(Some(338));
    let alerts = dir.path().join("alerts.txt");
    let mut cmd = polling_command(dir.path(), &db, &sim);
    cmd.env(
        "ALERT_COMMAND",
        format!("echo \"$JKMON_ALERT_SUBJECT\" >> '{}'", alerts.display()),
    )
    .env("ALERT_CHECK_SEC", "0.2")
    .env("GRID_DEBOUNCE_SEC", "1");
    let mut run = Running::spawn(cmd);
    let web = run.web_address(Duration::from_secs(20));
    run.wait_for_log_ever(Duration::from_secs(20), "inverter online");
    // the debounce (1 s) several times over, at five checks a second
    for _ in 0..5 {
        run.wait_for_log(Duration::from_secs(20), "inverter: readings #");
    }
    let status = api_status_once(&web, "online", Duration::from_secs(10));
    assert_eq!(status["inverter_poller"]["mode"], "off-grid (battery)");
    assert_eq!(
        status["inverter_poller"]["grid_lost"],
        serde_json::Value::Null,
        "{status}"
    );
    assert_eq!(
        grid_everywhere(&web, SMG_II_11K.key),
        ("unknown".into(), "unknown".into(), None)
    );
    let row: serde_json::Value =
        serde_json::from_str(rows(&db).last().unwrap().2.as_deref().unwrap()).unwrap();
    assert_eq!(row["grid_voltage"], "N/A");
    assert!(
        !alerts.exists(),
        "{}",
        std::fs::read_to_string(&alerts).unwrap_or_default()
    );
    // the block read again, the mains present: up
    sim.inverter.refuse_block(None);
    run.wait_for_log(Duration::from_secs(20), "inverter: readings #");
    run.wait_for_log(Duration::from_secs(20), "inverter: readings #");
    assert_eq!(
        grid_everywhere(&web, SMG_II_11K.key),
        ("up".into(), "up".into(), Some(1.0))
    );
    // a real loss, as the inverter reads it: down everywhere, and the alert goes out
    sim.set_grid(false);
    run.wait_for_log(Duration::from_secs(20), "ALERT_COMMAND for grid");
    assert_eq!(
        grid_everywhere(&web, SMG_II_11K.key),
        ("down".into(), "down".into(), Some(0.0))
    );
    let sent = std::fs::read_to_string(&alerts).unwrap();
    assert!(sent.to_lowercase().contains("grid"), "{sent}");
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

/// Values no inverter can show (a confused gateway answering 0x7FFF) are unknown: left out of
/// the row's values, `/metrics` and the energy, with one warning per poll naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_register_values_are_unknown_and_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let sim = SimDongle::start(SimDongleConfig::new(&SMG_II_11K))
        .await
        .unwrap();
    // 0x7FFF in the grid voltage, 0x8000 in the grid power, 0xFFFF in the SOC
    sim.inverter.set_value("grid_voltage_v", 3276.7);
    sim.inverter.set_value("grid_power_w", -32768.0);
    sim.inverter.set_value("battery_soc_pct", 65535.0);
    let mut run = jkmon_polling(dir.path(), &db, &sim);
    let web = run.web_address(Duration::from_secs(20));
    let warning =
        run.wait_for_log_ever(Duration::from_secs(20), "outside what an inverter can show");
    for name in [
        "grid_voltage_v (register 338) raw 32767",
        "grid_power_w (register 340) raw -32768",
        "battery_soc_pct (register 280) raw 65535",
    ] {
        assert!(warning.contains(name), "{name}: {warning}");
    }
    for _ in 0..3 {
        run.wait_for_log(Duration::from_secs(20), "inverter: readings #");
    }
    let row: serde_json::Value =
        serde_json::from_str(rows(&db).last().unwrap().2.as_deref().unwrap()).unwrap();
    // (the BMS's own SOC stands in `battery_soc`; the inverter's moves aside)
    for key in ["grid_voltage", "grid_power", "inverter_battery_soc"] {
        assert_eq!(row[key], "N/A", "{key}: {row}");
    }
    let status = api_status_once(&web, "online", Duration::from_secs(10));
    let values = &status["inverter_poller"]["values"];
    for key in ["grid_voltage_v", "grid_power_w", "battery_soc_pct"] {
        assert!(values.get(key).is_none(), "{key}: {values}");
    }
    assert_eq!(status["grid"], "unknown");
    let (_, page) = common::process::http_get(&web, "/metrics");
    for metric in [
        "jkmon_inverter_grid_voltage_volts",
        "jkmon_inverter_grid_power_watts",
        "jkmon_inverter_battery_soc_ratio",
    ] {
        assert!(!page.contains(metric), "{metric} in /metrics");
    }
    // the energy: no grid power was read, so no grid energy was counted
    let (_, energy) = common::process::http_get(&web, "/api/v1/energy?days=1");
    let energy: serde_json::Value = serde_json::from_str(&energy).unwrap();
    let today = energy["days"]
        .as_array()
        .and_then(|d| d.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        today["grid_export_kwh"],
        serde_json::Value::Null,
        "{energy}"
    );
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

fn api_status(web: &str) -> serde_json::Value {
    let (code, body) = common::process::http_get(web, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The status once the poller's `state` shows there. The poller logs a change before the
/// database writer has recorded it, and the views read the database: asked until `limit`.
fn api_status_once(web: &str, state: &str, limit: Duration) -> serde_json::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let status = api_status(web);
        if status["inverter_poller"]["state"] == state {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the poller never showed {state} within {limit:?}: {}",
            status["inverter_poller"]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rows(db: &std::path::Path) -> Vec<(i64, String, Option<String>, Option<String>)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, created_at, payload, error FROM readings ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jkmon_polls_the_inverter_and_writes_the_python_pollers_rows_with_the_battery_in_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    let sim = SimDongle::start(SimDongleConfig::new(&SMG_II_6K))
        .await
        .unwrap();
    let mut run = jkmon_polling(dir.path(), &db, &sim);
    let web = run.web_address(Duration::from_secs(20));
    // the web server, the poller and the session start together: their lines come in any order
    run.wait_for_log_ever(Duration::from_secs(20), "inverter online");
    run.wait_for_log_ever(Duration::from_secs(20), "handshake → streaming");
    // three rows inserted after the BMS streams, well inside one BMS commit interval
    let first = run.wait_for_log(Duration::from_secs(20), "inverter: readings #");
    for _ in 0..3 {
        run.wait_for_log(Duration::from_secs(20), "inverter: readings #");
    }
    let python: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&payload::payload(&sim.values()).unwrap()).unwrap();
    let all = rows(&db);
    let first_id: i64 = first
        .split("readings #")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    let with_battery: Vec<_> = all.iter().filter(|r| r.0 > first_id).collect();
    assert!(with_battery.len() >= 3, "{all:?}");
    for (id, created_at, payload, error) in with_battery {
        assert_eq!(error, &None, "#{id}");
        // created_at as the table writes it on a new database: naive UTC to the second
        assert!(
            chrono::NaiveDateTime::parse_from_str(created_at, "%Y-%m-%dT%H:%M:%S").is_ok(),
            "#{id}: {created_at}"
        );
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(payload.as_deref().unwrap()).unwrap();
        // every key of the Python poller's row, string for string
        for (key, want) in &python {
            let key_in_row = if MERGED_OVER.contains(&key.as_str()) {
                format!("inverter_{key}")
            } else {
                key.clone()
            };
            assert_eq!(row.get(&key_in_row), Some(want), "#{id} {key_in_row}");
        }
        // the battery as it was at the poll, not as of the last BMS commit (5 s apart)
        let bms_at = chrono::DateTime::parse_from_rfc3339(row["bms_updated_at"].as_str().unwrap())
            .unwrap()
            .to_utc();
        let row_at = chrono::NaiveDateTime::parse_from_str(created_at, "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc();
        let lag_s = (row_at - bms_at).num_milliseconds() as f64 / 1000.0;
        assert!(
            (-1.0..2.0).contains(&lag_s),
            "#{id}: battery {lag_s} s older than the row"
        );
        assert_ne!(
            row["battery_voltage"], python["battery_voltage"],
            "the BMS's voltage"
        );
    }
    // the views: the poller's state and mode, and /metrics in base units
    let status = api_status(&web);
    let poller = &status["inverter_poller"];
    assert_eq!(
        (&poller["state"], &poller["mode"], &poller["model"]),
        (&"online".into(), &"on mains".into(), &SMG_II_6K.key.into()),
        "{poller}"
    );
    assert_eq!(status["grid"], "up");
    let (code, page) = common::process::http_get(&web, "/metrics");
    assert_eq!(code, 200);
    common::prometheus::promtool_accepts(&page);
    let families = common::prometheus::parse(&page).unwrap();
    let metric = |name: &str| {
        common::prometheus::get(&families, name, &[("model", SMG_II_6K.key)])
            .unwrap_or_else(|| panic!("{name} in {page}"))
    };
    let want = sim.values();
    assert_eq!(metric("jkmon_inverter_up"), 1.0);
    assert_eq!(metric("jkmon_inverter_mode"), 2.0);
    assert!((metric("jkmon_inverter_grid_voltage_volts") - want["grid_voltage_v"]).abs() < 0.05);
    assert!(
        (metric("jkmon_inverter_battery_soc_ratio") - want["battery_soc_pct"] / 100.0).abs() < 1e-9
    );
    assert!(
        (metric("jkmon_inverter_battery_current_amperes") - want["battery_current_a"]).abs() < 0.05
    );
    // the inverter goes quiet behind its dongle: error rows as the Python poller stores them
    sim.inverter.set_silent(true);
    run.wait_for_log(Duration::from_secs(30), "inverter offline");
    let status = api_status_once(&web, "offline", Duration::from_secs(10));
    let poller = &status["inverter_poller"];
    assert_eq!(poller["state"], "offline", "{poller}");
    assert!(
        poller["detail"].as_str().unwrap().contains("no answer"),
        "{poller}"
    );
    let (_, page) = common::process::http_get(&web, "/metrics");
    let families = common::prometheus::parse(&page).unwrap();
    assert_eq!(
        common::prometheus::get(&families, "jkmon_inverter_up", &[("model", SMG_II_6K.key)]),
        Some(0.0)
    );
    assert_eq!(
        common::prometheus::get(
            &families,
            "jkmon_inverter_grid_voltage_volts",
            &[("model", SMG_II_6K.key)]
        ),
        None,
        "no stale values while offline"
    );
    let errors: Vec<_> = rows(&db).into_iter().filter(|r| r.3.is_some()).collect();
    assert!(!errors.is_empty());
    for (id, _, payload, error) in &errors {
        assert_eq!(payload, &None, "#{id}");
        let text = error.as_deref().unwrap();
        assert!(
            text.contains("no register block") && text.contains("no answer"),
            "#{id}: {text}"
        );
    }
    sim.inverter.set_silent(false);
    run.wait_for_log(Duration::from_secs(30), "inverter online");
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(10)).success());
    // one link all along: the dongle was announced to one port
    let ports: std::collections::BTreeSet<String> = sim
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Announced(text) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(ports.len(), 1, "{ports:?}");
}
