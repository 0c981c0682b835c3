//! MQTT end to end: a real mosquitto on a loopback port, `mosquitto_sub` as Home Assistant's
//! stand-in, and the jkmon binary reading a BMS on a socat pty that answers with a captured
//! `4E 57` response from the corpus — so every value published can be checked against the
//! decoder's reading of real bytes.

use crate::common;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::mqtt::{Broker, Msg, Subscriber};
use common::process::{jkmon, Running};
use common::pty::{answer_serial, PtyPair};
use common::{clean_serial_responses, corpus};
use jkmon::mqtt::discovery::{lookup, template_paths};
use jkmon::protocol::serial as serial_protocol;
use jkmon::report::json::CellInfoJson;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);

/// The clean serial responses of the corpus.
fn captured_responses() -> Vec<Vec<u8>> {
    let frames = clean_serial_responses(&corpus());
    assert!(!frames.is_empty(), "the corpus has clean serial responses");
    frames
}

/// A broker, a pty pair with a BMS answering `frame` on one end, and a temporary directory.
struct Rig {
    dir: tempfile::TempDir,
    broker: Broker,
    pty: PtyPair,
    answering: Arc<AtomicBool>,
    frame: Vec<u8>,
}

fn rig() -> Option<Rig> {
    let frame = captured_responses().remove(0);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path())?;
    let pty = PtyPair::open(dir.path())?;
    let answering = Arc::new(AtomicBool::new(true));
    answer_serial(&pty.b, vec![frame.clone()], answering.clone());
    Some(Rig {
        dir,
        broker,
        pty,
        answering,
        frame,
    })
}

/// `jkmon run` on the rig's port, publishing to its broker; returns once it is connected.
fn run_jkmon(rig: &Rig, extra: &[(&str, &str)]) -> Running {
    let mut cmd = jkmon(rig.dir.path(), &["run"]);
    cmd.envs([
        ("JK_BMS_TRANSPORT", "serial"),
        ("JK_BMS_SERIAL_PORT", rig.pty.a.to_str().unwrap()),
        ("JK_BMS_NAMES", "Garage"),
        ("JK_BMS_POLL_INTERVAL", "0.3"),
        ("JK_BMS_RESPONSE_TIMEOUT_MS", "200"),
        ("JK_BMS_RETRY_MIN_SEC", "0.2"),
        ("JK_BMS_RETRY_MAX_SEC", "0.5"),
        ("SOC_SOURCE", "bms"),
        ("INVERTER_TIMEOUT_SEC", "1"),
        ("WEB_BIND", "127.0.0.1:0"),
        (
            "DB_PATH",
            rig.dir.path().join("inverter.db").to_str().unwrap(),
        ),
        ("MQTT_URL", &rig.broker.url()),
        ("MQTT_STATE_SEC", "0.3"),
    ]);
    cmd.envs(extra.iter().copied());
    let mut run = Running::spawn(cmd);
    run.wait_for_log(LIMIT, "mqtt: connected to mqtt://127.0.0.1:");
    run
}

/// The message on `topic` already seen, or the next one.
fn on_topic(sub: &mut Subscriber, topic: &str) -> Msg {
    if let Some(m) = sub.seen.iter().rev().find(|m| m.topic == topic) {
        return m.clone();
    }
    sub.wait_for(LIMIT, topic, |m| m.topic == topic)
}

/// The discovery config of `object` (`total_voltage_v`, `cell_3`, …) of `component`.
fn config(sub: &mut Subscriber, component: &str, object: &str) -> Value {
    let matches = |m: &Msg| {
        m.topic
            .starts_with(&format!("homeassistant/{component}/jkmon_"))
            && m.topic.ends_with(&format!("/{object}/config"))
    };
    let m = match sub.seen.iter().find(|m| matches(m)) {
        Some(m) => m.clone(),
        None => sub.wait_for(LIMIT, &format!("the {component} {object}"), matches),
    };
    m.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_discovers_a_captured_bms_and_its_state_matches_the_decoded_bytes() {
    let Some(rig) = rig() else { return };
    let expected = serial_protocol::decode_response(&rig.frame).unwrap();
    let mut sub = Subscriber::start(&rig.broker);
    let _run = run_jkmon(
        &rig,
        &[
            ("MQTT_NODEJKBMS", "true"),
            ("WEB_URL", "http://jkmon.example:8000"),
        ],
    );

    // the state: the fields of `jkmon read --json`, each value the decoder's
    let state = sub
        .wait_for(LIMIT, "the state", |m| m.topic == "jkmon/battery1/state")
        .json();
    let cells = serde_json::to_value(CellInfoJson::new(&expected.cell_info, None)).unwrap();
    for (key, want) in cells.as_object().unwrap() {
        assert_eq!(&state[key], want, "state field {key}");
    }
    assert_eq!(state["soc_source"], "bms");
    assert_eq!(
        state["soc_effective_pct"],
        f64::from(expected.cell_info.soc_pct.unwrap())
    );
    let groups = expected.cell_info.alarms.groups();
    assert_eq!(
        state["alarm_groups"],
        serde_json::to_value(&groups).unwrap()
    );
    sub.seen_or_wait(LIMIT, "jkmon/battery1/availability", "online");
    sub.seen_or_wait(LIMIT, "jkmon/status", "online");
    let device = on_topic(&mut sub, "jkmon/battery1/device").json();
    assert_eq!(device["serial_number"], expected.device_info.serial_number);
    assert!(
        !device.to_string().to_lowercase().contains("passcode"),
        "{device}"
    );

    // discovery: the right classes and units, one device that names the BMS
    let check = |v: &Value, class: Option<&str>, unit: Option<&str>, state_class: Option<&str>| {
        assert_eq!(v["device_class"].as_str(), class, "{v}");
        assert_eq!(v["unit_of_measurement"].as_str(), unit, "{v}");
        assert_eq!(v["state_class"].as_str(), state_class, "{v}");
        assert_eq!(v["state_topic"], "jkmon/battery1/state");
        let d = &v["device"];
        assert_eq!(d["name"], "Garage");
        // what the BMS said about itself; a field it left empty is left out
        let said = |s: &str| match s.trim() {
            "" => Value::Null,
            t => Value::from(t),
        };
        let info = &expected.device_info;
        assert_eq!(d["model"], said(&info.model));
        assert_eq!(d["sw_version"], said(&info.software_version));
        assert_eq!(d["hw_version"], said(&info.hardware_version));
        assert_eq!(d["serial_number"], said(&info.serial_number));
        // this board's serial-number field holds the factory placeholder "Input Us": no
        // serial number to key on, so the port is (see the port-move test for one that has)
        assert_eq!(info.serial_number, "Input Us");
        assert!(
            v["unique_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("jkmon_tmp_")),
            "{v}"
        );
        assert_eq!(d["configuration_url"], "http://jkmon.example:8000/");
        // every field the template reads is in the state that is published
        for path in template_paths(v["value_template"].as_str().unwrap()) {
            let got = lookup(&state, &path);
            assert!(got.is_some_and(|g| !g.is_null()), "{path:?} of {v}");
        }
    };
    let m = Some("measurement");
    let sensor = |sub: &mut Subscriber, object: &str| config(sub, "sensor", object);
    check(
        &sensor(&mut sub, "total_voltage_v"),
        Some("voltage"),
        Some("V"),
        m,
    );
    check(
        &sensor(&mut sub, "current_a"),
        Some("current"),
        Some("A"),
        m,
    );
    check(&sensor(&mut sub, "power_w"), Some("power"), Some("W"), m);
    check(
        &sensor(&mut sub, "soc_effective_pct"),
        Some("battery"),
        Some("%"),
        m,
    );
    check(
        &sensor(&mut sub, "cell_delta_v"),
        Some("voltage"),
        Some("V"),
        m,
    );
    check(
        &sensor(&mut sub, "cell_min_v"),
        Some("voltage"),
        Some("V"),
        m,
    );
    check(
        &sensor(&mut sub, "cell_max_v"),
        Some("voltage"),
        Some("V"),
        m,
    );
    check(
        &sensor(&mut sub, "cycle_count"),
        None,
        None,
        Some("total_increasing"),
    );
    check(
        &sensor(&mut sub, "cycle_capacity_ah"),
        None,
        Some("Ah"),
        Some("total_increasing"),
    );
    check(
        &sensor(&mut sub, "nominal_capacity_ah"),
        None,
        Some("Ah"),
        None,
    );
    if expected.cell_info.soh_pct.is_some() {
        check(&sensor(&mut sub, "soh_pct"), None, Some("%"), m);
    }
    for i in 1..=expected.cell_info.cell_voltages_uv.len() {
        check(
            &sensor(&mut sub, &format!("cell_{i}")),
            Some("voltage"),
            Some("V"),
            m,
        );
    }
    let temps = state["temperatures_c"].as_object().unwrap();
    assert!(!temps.is_empty());
    for key in temps.keys() {
        let c = sensor(&mut sub, &format!("temperature_{key}"));
        check(&c, Some("temperature"), Some("°C"), m);
    }
    // energy: the counters as Home Assistant's Energy dashboard takes them for a battery
    assert!(state["energy"]["charged_kwh"].is_number(), "{state}");
    assert!(state["energy"]["discharged_kwh"].is_number(), "{state}");
    for object in ["energy_charged_kwh", "energy_discharged_kwh"] {
        check(
            &sensor(&mut sub, object),
            Some("energy"),
            Some("kWh"),
            Some("total_increasing"),
        );
    }
    // stored energy and time left: only for a BMS that reports its remaining capacity
    if expected.cell_info.remaining_capacity_mah.is_some() {
        check(
            &sensor(&mut sub, "energy_stored_kwh"),
            Some("energy_storage"),
            Some("kWh"),
            m,
        );
        let left = sensor(&mut sub, "energy_time_to_empty_s");
        assert_eq!(left["device_class"], "duration");
        assert_eq!(left["unit_of_measurement"], "s");
    } else {
        assert!(state["energy"]["stored_kwh"].is_null(), "{state}");
    }
    let binary = |sub: &mut Subscriber, object: &str| config(sub, "binary_sensor", object);
    check(
        &binary(&mut sub, "charging"),
        Some("battery_charging"),
        None,
        None,
    );
    check(&binary(&mut sub, "discharging"), None, None, None);
    check(&binary(&mut sub, "balancing"), Some("running"), None, None);
    for group in jkmon::protocol::alarms::ALARM_GROUPS {
        check(
            &binary(&mut sub, &format!("alarm_{group}")),
            Some("problem"),
            None,
            None,
        );
    }

    // NodeJKBMS's payloads for existing flows
    let pack = on_topic(&mut sub, "jkmon/pack").json();
    assert_eq!(
        pack["packV"],
        f64::from(expected.cell_info.total_voltage_mv) / 1000.0
    );
    assert_eq!(pack["packSOC"], expected.cell_info.soc_pct.unwrap());
    assert_eq!(
        pack["packNumberOfCells"],
        expected.cell_info.cell_voltages_uv.len()
    );
    let cells = on_topic(&mut sub, "jkmon/cells").json();
    assert_eq!(
        cells["cell0mV"],
        expected.cell_info.cell_voltages_uv[0] / 1000
    );

    // a subscriber that comes later (Home Assistant after a restart) gets the retained ones
    let mut late = Subscriber::start(&rig.broker);
    for topic in [
        "jkmon/battery1/state",
        "jkmon/battery1/availability",
        "jkmon/status",
    ] {
        assert!(on_topic(&mut late, topic).retained, "{topic} is retained");
    }
    let voltage = |m: &Msg| m.topic.ends_with("/total_voltage_v/config");
    let m = match late.seen.iter().find(|m| voltage(m)) {
        Some(m) => m.clone(),
        None => late.wait_for(LIMIT, "the voltage config", voltage),
    };
    assert!(m.retained, "{} is retained", m.topic);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bms_goes_offline_and_a_killed_jkmon_is_marked_offline_by_its_last_will() {
    let Some(rig) = rig() else { return };
    let mut sub = Subscriber::start(&rig.broker);
    let mut run = run_jkmon(&rig, &[]);
    let availability = "jkmon/battery1/availability";
    sub.wait_payload(LIMIT, availability, "online");

    // the BMS stops answering: offline after 3 unanswered requests, jkmon itself stays online
    rig.answering.store(false, Ordering::SeqCst);
    sub.wait_payload(LIMIT, availability, "offline");
    assert!(!sub
        .seen
        .iter()
        .any(|m| m.topic == "jkmon/status" && m.payload == "offline"));
    run.wait_for_log(LIMIT, "no answer to 3 requests in a row");
    // and back
    rig.answering.store(true, Ordering::SeqCst);
    sub.wait_payload(LIMIT, availability, "online");

    // jkmon dies without a word: the broker publishes its last will
    run.signal("KILL");
    sub.wait_payload(LIMIT, "jkmon/status", "offline");
    // the will is retained: a newcomer sees it too
    let mut late = Subscriber::start(&rig.broker);
    assert!(late.wait_payload(LIMIT, "jkmon/status", "offline").retained);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_is_survived_and_discovery_is_published_again() {
    let Some(mut rig) = rig() else { return };
    let mut sub = Subscriber::start(&rig.broker);
    let mut run = run_jkmon(&rig, &[]);
    config(&mut sub, "sensor", "total_voltage_v");
    sub.wait_for(LIMIT, "a state", |m| m.topic == "jkmon/battery1/state");
    drop(sub);

    // the broker forgets everything (no persistence) and comes back on the same port
    rig.broker.restart();
    run.wait_for_log(LIMIT, "trying again in");
    run.wait_for_log(LIMIT, "mqtt: connected to mqtt://127.0.0.1:");
    let mut sub = Subscriber::start(&rig.broker);
    let voltage = config(&mut sub, "sensor", "total_voltage_v");
    assert_eq!(voltage["device_class"], "voltage");
    config(&mut sub, "binary_sensor", "alarm_cell");
    sub.seen_or_wait(LIMIT, "jkmon/status", "online");
    sub.seen_or_wait(LIMIT, "jkmon/battery1/availability", "online");
    on_topic(&mut sub, "jkmon/battery1/state");

    // a clean stop says goodbye itself
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success(), "{:?}", run.stderr_seen);
    sub.wait_payload(LIMIT, "jkmon/battery1/availability", "offline");
    sub.wait_payload(LIMIT, "jkmon/status", "offline");
}

/// Runs `program args…` in `dir`, failing the test with its output when it fails.
fn must(dir: &std::path::Path, program: &str, args: &[&str]) {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_its_own_ca_and_a_password_and_a_wrong_password_named() {
    let frame = captured_responses().remove(0);
    let passwd = std::process::Command::new("mosquitto_passwd")
        .arg("-h")
        .output()
        .is_ok();
    if !common::have_program("openssl", &["version"])
        || !common::require(
            passwd,
            "mosquitto_passwd is not installed (apt-get install mosquitto)",
        )
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // a CA of the test's own, and a certificate for 127.0.0.1 signed by it
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req", "-x509", "-days", "1", "-keyout", "ca.key", "-out", "ca.pem",
    ];
    ca.extend(ec);
    ca.extend(["-subj", "/CN=jkmon test CA"]);
    must(d, "openssl", &ca);
    let mut csr = vec!["req", "-keyout", "server.key", "-out", "server.csr"];
    csr.extend(ec);
    csr.extend(["-subj", "/CN=127.0.0.1"]);
    must(d, "openssl", &csr);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    must(
        d,
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            "server.pem",
            "-extfile",
            "ext.cnf",
        ],
    );
    must(
        d,
        "mosquitto_passwd",
        &["-c", "-b", "passwd", "jk", "s@cret pass"],
    );
    // mosquitto started as root reads these after switching to its own user
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (d.to_path_buf(), 0o755),
        (d.join("server.key"), 0o644),
        (d.join("passwd"), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let conf = format!(
        "allow_anonymous false\npassword_file {}\ncafile {}\ncertfile {}\nkeyfile {}\n",
        d.join("passwd").display(),
        d.join("ca.pem").display(),
        d.join("server.pem").display(),
        d.join("server.key").display()
    );
    let Some(broker) = Broker::start_with(d, &conf) else {
        return;
    };
    let Some(pty) = PtyPair::open(d) else { return };
    answer_serial(&pty.b, vec![frame], Arc::new(AtomicBool::new(true)));
    let start = |url: String| {
        let mut cmd = jkmon(d, &["poll"]);
        cmd.envs([
            ("JK_BMS_TRANSPORT", "serial"),
            ("JK_BMS_SERIAL_PORT", pty.a.to_str().unwrap()),
            ("JK_BMS_POLL_INTERVAL", "0.3"),
            ("DB_PATH", d.join("inverter.db").to_str().unwrap()),
            ("MQTT_CA_FILE", d.join("ca.pem").to_str().unwrap()),
            ("MQTT_URL", url.as_str()),
        ]);
        Running::spawn(cmd)
    };
    // a wrong password: named, with the fix, and the password itself nowhere in the log
    let mut wrong = start(format!("mqtts://jk:hunter2@127.0.0.1:{}", broker.port));
    let line = wrong.wait_for_log(LIMIT, "mqtt: ");
    let line = if line.contains("connecting to") {
        wrong.wait_for_log(LIMIT, "mqtt: ")
    } else {
        line
    };
    assert!(line.contains("refused the user name or password"), "{line}");
    assert!(line.contains("MQTT_URL"), "{line}");
    wrong.drain_stderr();
    assert!(!wrong.stderr_seen.join("\n").contains("hunter2"));
    drop(wrong);
    // the right one (percent-encoded) over TLS: connected, and the state arrives
    let run = start(format!(
        "mqtts://jk:s%40cret%20pass@127.0.0.1:{}",
        broker.port
    ));
    let mut run = run;
    run.wait_for_log(LIMIT, "mqtt: connected to mqtts://jk@127.0.0.1:");
    let mut sub = std::process::Command::new("mosquitto_sub");
    sub.args([
        "-h",
        "127.0.0.1",
        "-p",
        &broker.port.to_string(),
        "-u",
        "jk",
        "-P",
        "s@cret pass",
    ])
    .args(["--cafile", d.join("ca.pem").to_str().unwrap()])
    .args(["-t", "jkmon/battery1/state", "-C", "1", "-W", "20"]);
    let out = sub.output().unwrap();
    let state: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let expected = serial_protocol::decode_response(&captured_responses()[0]).unwrap();
    assert_eq!(
        state["total_voltage_v"],
        f64::from(expected.cell_info.total_voltage_mv) / 1000.0
    );
}

#[test]
fn jkmon_doctor_checks_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    let doctor = |url: &str| {
        let out = jkmon(dir.path(), &["doctor"])
            .envs([
                ("JK_BMS_TRANSPORT", "sim"),
                ("WEB_BIND", "127.0.0.1:0"),
                ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
                ("MQTT_URL", url),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.contains("MQTT"))
            .unwrap_or_else(|| panic!("no MQTT line in:\n{text}"))
            .to_string();
        (out.status.success(), line)
    };
    let (ok, line) = doctor(&broker.url());
    assert!(ok, "{line}");
    assert!(line.contains("accepts jkmon"), "{line}");
    // a port where nothing listens: named, with the fix, and the doctor fails
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, line) = doctor(&format!("mqtt://jk:hunter2@127.0.0.1:{free}"));
    assert!(!ok);
    assert!(line.contains("is the broker running"), "{line}");
    assert!(!line.contains("hunter2"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistant_keeps_the_device_when_the_adapter_moves_to_another_path() {
    // a simulated serial BMS (it reports the serial number SIM00001) on a pty, reached first
    // as the pty itself, then through a /dev/serial/by-id-like link to it
    let dir = tempfile::tempdir().unwrap();
    let Some(mut broker) = Broker::start(dir.path()) else {
        return;
    };
    let Some(pty) = PtyPair::open(dir.path()) else {
        return;
    };
    let b = pty.b.to_str().unwrap();
    let mut sim = Running::spawn(common::process::jkmon(
        dir.path(),
        &["simulate", "serial", "--port", b],
    ));
    sim.wait_for_log(LIMIT, "simulated");
    let by_id = dir
        .path()
        .join("usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0");
    std::os::unix::fs::symlink(&pty.a, &by_id).unwrap();
    let mut seen = Vec::new();
    for port in [&pty.a, &by_id] {
        // a broker with nothing retained, so the config read is this run's
        broker.restart();
        let mut sub = Subscriber::start(&broker);
        let mut cmd = jkmon(dir.path(), &["run"]);
        cmd.envs([
            ("JK_BMS_TRANSPORT", "serial"),
            ("JK_BMS_SERIAL_PORT", port.to_str().unwrap()),
            ("JK_BMS_NAMES", "Shed"),
            ("JK_BMS_POLL_INTERVAL", "0.3"),
            ("INVERTER_TIMEOUT_SEC", "1"),
            ("WEB_BIND", "127.0.0.1:0"),
            ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
            ("MQTT_URL", &broker.url()),
            ("MQTT_STATE_SEC", "0.3"),
        ]);
        let mut run = Running::spawn(cmd);
        let voltage = config(&mut sub, "sensor", "total_voltage_v");
        seen.push((
            voltage["unique_id"].clone(),
            voltage["device"]["identifiers"][0].clone(),
            voltage["device"]["identifiers"][1].clone(),
        ));
        run.signal("TERM");
        assert!(run.wait_exit(LIMIT).success());
    }
    let (first, second) = (&seen[0], &seen[1]);
    assert_eq!(first.0, "jkmon_sn_sim00001_total_voltage_v");
    assert_eq!(first.0, second.0, "the entity stays");
    assert_eq!(first.1, second.1, "the device stays");
    // the port-based id differs: it alone would have made a new device
    assert_ne!(first.2, second.2, "{seen:?}");
}

/// jkmon's own inverter poller on MQTT: an inverter device in Home Assistant with a sensor per
/// register of the model's map, every one reading a field of the published state; the state
/// follows the simulated inverter (a grid loss), the availability its link, and a stopping
/// jkmon takes the inverter offline with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inverter_jkmon_polls_is_a_home_assistant_device_that_follows_it() {
    use jkmon::inverter::registers::SMG_II_11K;
    use jkmon::transport::sim::dongle::{SimDongle, SimDongleConfig};
    let Some(rig) = rig() else { return };
    let sim = SimDongle::start(SimDongleConfig::new(&SMG_II_11K))
        .await
        .unwrap();
    let mut sub = Subscriber::start(&rig.broker);
    let port = sim.udp_addr.port().to_string();
    let mut run = run_jkmon(
        &rig,
        &[
            ("INVERTER_TRANSPORT", "dongle"),
            ("INVERTER_IP", "127.0.0.1"),
            ("LOCAL_IP", "127.0.0.1"),
            ("INVERTER_UDP_PORT", &port),
            ("INVERTER_LISTEN_PORT", "0"),
            ("POLL_INTERVAL", "1"),
        ],
    );
    let availability = "jkmon/inverter/availability";
    sub.wait_payload(LIMIT, availability, "online");
    let state = sub
        .wait_for(LIMIT, "an inverter state with values", |m| {
            m.topic == "jkmon/inverter/state" && m.json().get("grid_voltage_v").is_some()
        })
        .json();
    let want = sim.values();
    assert_eq!(state["grid_voltage_v"], want["grid_voltage_v"], "{state}");
    assert_eq!(state["pv_energy_total_kwh"], want["pv_energy_total_kwh"]);
    assert_eq!(
        (&state["mode"], &state["grid"]),
        (&"on mains".into(), &"ON".into())
    );
    let voltage = config(&mut sub, "sensor", "grid_voltage_v");
    assert_eq!(voltage["unique_id"], "jkmon_jkmon_inverter_grid_voltage_v");
    assert_eq!(voltage["device"]["model"], SMG_II_11K.description);
    assert_eq!(voltage["unit_of_measurement"], "V");
    // every inverter entity reads a field the state has (none shows "unknown")
    let inverter_configs: Vec<Msg> = sub
        .seen
        .iter()
        .filter(|m| m.topic.contains("/jkmon_jkmon_inverter/") && !m.payload.is_empty())
        .cloned()
        .collect();
    // a sensor per measured register (not the clock, the mode code, the legacy current),
    // the mode, the grid and the link
    let measured = SMG_II_11K
        .registers
        .iter()
        .filter(|r| {
            !r.name.starts_with("clock_")
                && r.name != "operating_mode"
                && !r.name.ends_with("_legacy_a")
        })
        .count();
    // + jkmon's grid import, export and load energy, the mode, the grid and the link
    assert_eq!(inverter_configs.len(), measured + 6);
    // the link went out before the first values
    let link = sub
        .seen
        .iter()
        .rev()
        .find(|m| m.topic == "jkmon/inverter/link")
        .expect("the link's own message")
        .json();
    for c in &inverter_configs {
        let c = c.json();
        let read = if c["state_topic"] == "jkmon/inverter/link" {
            &link
        } else {
            &state
        };
        for path in template_paths(c["value_template"].as_str().unwrap()) {
            assert!(lookup(read, &path).is_some(), "{path:?} not in {read}");
        }
    }
    // off-grid by choice with the mains there, and the grid block refused: every key is
    // still in the state, the grid's values are null, the grid unknown — never "OFF"
    sim.inverter.set_value("operating_mode", 3.0);
    sim.inverter.refuse_block(Some(338));
    let partial = sub
        .wait_for(LIMIT, "a poll without the grid block", |m| {
            m.topic == "jkmon/inverter/state"
                && m.json()["mode"] == "off-grid (battery)"
                && m.json()["grid_voltage_v"].is_null()
        })
        .json();
    assert_eq!(partial["grid"], serde_json::Value::Null, "{partial}");
    assert_eq!(
        partial.as_object().unwrap().keys().collect::<Vec<_>>(),
        state.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert!(!sub
        .seen
        .iter()
        .any(|m| m.topic == "jkmon/inverter/state" && m.json()["grid"] == "OFF"));
    sim.inverter.refuse_block(None);
    // the grid goes: the inverter says so itself
    sim.set_grid(false);
    let lost = sub.wait_for(LIMIT, "the grid lost", |m| {
        m.topic == "jkmon/inverter/state" && m.json()["grid"] == "OFF"
    });
    assert_eq!(lost.json()["mode"], "off-grid (battery)");
    // the inverter stops answering: its link goes offline, jkmon stays online
    sim.inverter.set_silent(true);
    sub.wait_payload(LIMIT, availability, "offline");
    // (the link goes out with the availability, just before it)
    let link = sub
        .seen
        .iter()
        .rev()
        .find(|m| m.topic == "jkmon/inverter/link")
        .unwrap()
        .json();
    assert_eq!(link["state"], "offline", "{link}");
    assert!(link["detail"].as_str().unwrap().contains("no answer"));
    sim.inverter.set_silent(false);
    sub.wait_payload(LIMIT, availability, "online");
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    sub.wait_payload(LIMIT, availability, "offline");
}

/// `jkmon run` on the simulated BMS (which plays the switches), publishing to `broker`.
fn run_sim(dir: &std::path::Path, broker: &Broker, extra: &[(&str, &str)]) -> Running {
    let mut cmd = jkmon(dir, &["run"]);
    cmd.envs([
        ("JK_BMS_TRANSPORT", "sim"),
        ("JK_SIM_INTERVAL_MS", "100"),
        ("WEB_BIND", "127.0.0.1:0"),
        ("DB_PATH", dir.join("control.db").to_str().unwrap()),
        ("MQTT_URL", &broker.url()),
        ("MQTT_STATE_SEC", "0.3"),
    ]);
    cmd.envs(extra.iter().copied());
    let mut run = Running::spawn(cmd);
    run.wait_for_log(LIMIT, "mqtt: connected to mqtt://127.0.0.1:");
    run
}

fn publish(broker: &Broker, topic: &str, payload: &str, retain: bool) {
    let mut cmd = std::process::Command::new("mosquitto_pub");
    cmd.args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", topic, "-m", payload, "-q", "1"]);
    if retain {
        cmd.arg("-r");
    }
    assert!(cmd.status().unwrap().success(), "mosquitto_pub {topic}");
}

/// The first battery's switch as its states report it.
fn reported(m: &Msg, switch: &str) -> Option<bool> {
    (m.topic == "jkmon/battery1/state")
        .then(|| m.json()["switches"][switch].as_bool())
        .flatten()
}

/// Home Assistant switches the simulated BMS: with JK_BMS_CONTROL on, each switch the board
/// has is a `switch` entity whose command reaches the BMS through jkmon's session, and whose
/// state is what the BMS then reports. A retained command is ignored. With control off there
/// is no switch entity (the earlier run's are removed) and a command changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn home_assistant_switches_the_bms_only_where_control_is_on() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    // a command left retained on the broker (by a careless script) is not taken: it would
    // switch the BMS again at every reconnection
    let command = "jkmon/battery1/switch/charging/set";
    publish(&broker, command, "OFF", true);
    let mut sub = Subscriber::start(&broker);
    // states at most once a minute: the BMS's answer to a command goes out at once all the same
    let mut run = run_sim(
        dir.path(),
        &broker,
        &[("JK_BMS_CONTROL", "on"), ("MQTT_STATE_SEC", "60")],
    );
    // (jkmon asks the broker, with MQTT 5, never to send it a retained command: the records
    // at the end show it was not applied)
    publish(&broker, command, "", true); // cleared
    let charging = sub
        .wait_for(LIMIT, "the charging switch's config", |m| {
            m.topic.starts_with("homeassistant/switch/")
                && m.topic.ends_with("/switch_charging/config")
                && !m.payload.is_empty()
        })
        .json();
    assert_eq!(charging["command_topic"], command);
    assert_eq!(charging["state_topic"], "jkmon/battery1/state");
    let state = sub
        .wait_for(LIMIT, "a state with the switches", |m| {
            reported(m, "charging") == Some(true)
        })
        .json();
    // the simulated board is a JK02_32S: all four switches, each template in the state
    for switch in ["charging", "discharging", "balancer", "heater"] {
        let c = config(&mut sub, "switch", &format!("switch_{switch}"));
        for path in template_paths(c["value_template"].as_str().unwrap()) {
            assert!(lookup(&state, &path).is_some(), "{path:?} not in {state}");
        }
    }

    publish(&broker, command, "OFF", false);
    let asked = std::time::Instant::now();
    let off = sub.wait_for(LIMIT, "the BMS reporting charging off", |m| {
        reported(m, "charging") == Some(false)
    });
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the answer went out with the next snapshot, not at the next MQTT_STATE_SEC: {:?}",
        asked.elapsed()
    );
    assert_eq!(
        off.json()["charging_enabled"],
        false,
        "the BMS's own flag too"
    );
    publish(&broker, "jkmon/battery1/switch/balancer/set", "OFF", false);
    let after = sub.wait_for(LIMIT, "the balancer off", |m| {
        reported(m, "balancer") == Some(false)
    });
    assert_eq!(reported(&after, "charging"), Some(false), "still off");
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    // clearing the retained command (an empty payload) is no command, and no warning
    run.drain_stderr();
    let warned: Vec<&String> = run
        .stderr_seen
        .iter()
        .filter(|l| l.contains("neither ON nor OFF") || l.contains("WARN") && l.contains("\"\""))
        .collect();
    assert!(warned.is_empty(), "{warned:?}");
    assert_eq!(
        common::switch_writes(&dir.path().join("control.db")),
        [
            "Simulated BMS: charging=off by mqtt: confirmed",
            "Simulated BMS: balancer=off by mqtt: confirmed"
        ]
    );

    // control off (the default): the switches go from Home Assistant, commands do nothing
    let mut run = run_sim(dir.path(), &broker, &[]);
    sub.wait_for(LIMIT, "the charging switch removed", |m| {
        m.topic.starts_with("homeassistant/switch/")
            && m.topic.ends_with("/switch_charging/config")
            && m.payload.is_empty()
    });
    let mut fresh = Subscriber::start(&broker);
    fresh.wait_for(LIMIT, "a state with charging on", |m| {
        reported(m, "charging") == Some(true)
    });
    publish(&broker, command, "OFF", false);
    // three states after the command: the BMS still reports charging on
    for _ in 0..3 {
        let m = fresh.wait_for(LIMIT, "a state", |m| reported(m, "charging").is_some());
        assert_eq!(reported(&m, "charging"), Some(true));
    }
    assert!(
        !fresh
            .seen
            .iter()
            .any(|m| m.topic.starts_with("homeassistant/switch/") && !m.payload.is_empty()),
        "no switch entity while control is off"
    );
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
}

/// `jkmon run --demo` publishing to `broker`, the inverter polled every second (so the demo
/// dongle's dropped requests make partial polls within seconds).
fn run_demo(dir: &std::path::Path, broker: &Broker) -> Running {
    let mut cmd = jkmon(dir, &["run", "--demo"]);
    cmd.envs([
        ("WEB_BIND", "127.0.0.1:0"),
        ("DB_PATH", dir.join("demo.db").to_str().unwrap()),
        ("MQTT_URL", &broker.url()),
        ("MQTT_STATE_SEC", "1"),
        ("JK_SIM_INVERTER_SEC", "1"),
    ]);
    let mut run = Running::spawn(cmd);
    run.wait_for_log(LIMIT, "mqtt: connected to mqtt://127.0.0.1:");
    run
}

/// What Home Assistant itself makes of jkmon, with a real Home Assistant (2024.3, its MQTT
/// integration, recorder, history and Energy) beside `jkmon run --demo`: the entities and
/// their classes; a value a poll did not read shows unknown (never the previous value); the
/// grid never `off` while the demo's mains is there; the Energy dashboard's validation takes
/// the battery, solar and grid sensors; a switch turned in Home Assistant is confirmed by the
/// BMS; the same entity ids after a restart; and not one template or recorder warning about
/// jkmon's entities in Home Assistant's log over all of it.
#[test]
fn a_real_home_assistant_is_told_only_what_the_hardware_said() {
    use common::home_assistant::HomeAssistant;
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    let Some(ha) = HomeAssistant::start(dir.path(), broker.port) else {
        return;
    };
    let since = chrono::Utc::now().to_rfc3339();
    let mut sub = Subscriber::start(&broker);
    let mut run = run_demo(dir.path(), &broker);
    // every entity jkmon announces, by its unique id
    let limit = Duration::from_secs(60);
    let configs: BTreeMap<String, Value> = {
        let deadline = std::time::Instant::now() + limit;
        let mut configs = BTreeMap::new();
        // the inverter's and the battery's (with its switches, control being on in the demo)
        while !(configs.keys().any(|u: &String| u.contains("_inverter_"))
            && configs
                .keys()
                .any(|u: &String| u.ends_with("_switch_charging")))
        {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let m = sub.wait_for(left, "the discovery configs", |m| {
                m.topic.starts_with("homeassistant/") && m.topic.ends_with("/config")
            });
            if !m.payload.is_empty() {
                let c = m.json();
                configs.insert(c["unique_id"].as_str().unwrap().to_string(), c);
            }
        }
        configs
    };
    let by_unique = |entities: &[Value]| -> BTreeMap<String, String> {
        entities
            .iter()
            .map(|e| {
                (
                    e["unique_id"].as_str().unwrap().to_string(),
                    e["entity_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let mut ids = BTreeMap::new();
    for _ in 0..300 {
        ids = by_unique(&ha.jkmon_entities());
        if configs.keys().all(|u| ids.contains_key(u)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let missing: Vec<&String> = configs.keys().filter(|u| !ids.contains_key(*u)).collect();
    assert!(missing.is_empty(), "not in Home Assistant: {missing:?}");
    let entity = |unique_suffix: &str| -> String {
        ids.iter()
            .find(|(u, _)| u.ends_with(unique_suffix))
            .map(|(_, e)| e.clone())
            .unwrap_or_else(|| panic!("no entity for {unique_suffix}"))
    };
    // the classes and units Home Assistant took are the ones jkmon announced
    let states = ha.wait_states(limit, "the inverter's grid voltage", |s| {
        s.get(&entity("_inverter_grid_voltage_v")).is_some_and(|v| {
            v["state"]
                .as_str()
                .is_some_and(|t| t.parse::<f64>().is_ok())
        })
    });
    for (unique, c) in &configs {
        let state = &states[&ids[unique]];
        for (ours, theirs) in [
            ("device_class", "device_class"),
            ("unit_of_measurement", "unit_of_measurement"),
            ("state_class", "state_class"),
        ] {
            if let Some(want) = c.get(ours) {
                assert_eq!(&state["attributes"][theirs], want, "{unique}: {ours}");
            }
        }
    }
    // the simulated JK-PB's charger stage and dry contacts, as Home Assistant shows them
    let stage = &states[&entity("_charge_status")];
    assert!(
        ["bulk", "absorption", "float"].contains(&stage["state"].as_str().unwrap()),
        "{stage}"
    );
    assert_eq!(states[&entity("_dry_contact_1")]["state"], "off");
    assert_eq!(states[&entity("_precharging")]["state"], "off");
    // a poll that did not read a value: jkmon says null, Home Assistant shows unknown
    let partial = sub
        .wait_for(Duration::from_secs(90), "a partial inverter poll", |m| {
            m.topic == "jkmon/inverter/state"
                && m.json()
                    .as_object()
                    .is_some_and(|o| o.iter().any(|(k, v)| v.is_null() && k.ends_with("_v")))
        })
        .json();
    let key = partial
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, v)| v.is_null() && k.ends_with("_v"))
        .map(|(k, _)| k.clone())
        .unwrap();
    let unread = entity(&format!("_inverter_{key}"));
    let mut shown_unknown = false;
    for _ in 0..100 {
        let history = ha.history(&unread, &since);
        if history.iter().any(|s| s["state"] == "unknown") {
            shown_unknown = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        shown_unknown,
        "{unread} never showed unknown: {:?}",
        ha.history(&unread, &since)
    );

    // Energy: the battery, solar and grid sensors as the owner would pick them
    let numeric = |s: &BTreeMap<String, Value>, e: &str| {
        s.get(e).is_some_and(|v| {
            v["state"]
                .as_str()
                .is_some_and(|t| t.parse::<f64>().is_ok())
        })
    };
    let energy = [
        entity("_energy_charged_kwh"),
        entity("_energy_discharged_kwh"),
        entity("_inverter_pv_energy_today_kwh"),
        entity("_inverter_grid_import_today_kwh"),
        entity("_inverter_grid_export_today_kwh"),
        entity("_inverter_load_energy_today_kwh"),
    ];
    ha.wait_states(limit, "every energy sensor with a number", |s| {
        energy.iter().all(|e| numeric(s, e))
    });
    let prefs = json!({
        "type": "energy/save_prefs",
        "energy_sources": [
            {"type": "grid",
             "flow_from": [{"stat_energy_from": energy[3], "stat_cost": null,
                            "entity_energy_price": null, "number_energy_price": null}],
             "flow_to": [{"stat_energy_to": energy[4], "stat_compensation": null,
                          "entity_energy_price": null, "number_energy_price": null}],
             "cost_adjustment_day": 0.0},
            {"type": "solar", "stat_energy_from": energy[2], "config_entry_solar_forecast": null},
            {"type": "battery", "stat_energy_from": energy[1], "stat_energy_to": energy[0]},
        ],
        "device_consumption": [{"stat_consumption": energy[5]}],
    });
    let validation = ha
        .ws(&[prefs, json!({"type": "energy/validate"})])
        .remove(1);
    // statistics are compiled every five minutes on the clock; until then Home Assistant
    // says only that none is defined yet — every other finding is a fault of jkmon's
    let mut findings = Vec::new();
    for group in validation["energy_sources"]
        .as_array()
        .unwrap()
        .iter()
        .chain(validation["device_consumption"].as_array().unwrap())
    {
        for issue in group.as_array().unwrap() {
            if issue["type"] != "statistics_not_defined" {
                findings.push(issue.clone());
            }
        }
    }
    assert!(findings.is_empty(), "energy/validate: {findings:?}");

    // a switch turned in Home Assistant, confirmed by the BMS's own report
    let charge = entity("_switch_charging");
    for (service, want) in [("turn_off", "off"), ("turn_on", "on")] {
        ha.post(
            &format!("/api/services/switch/{service}"),
            &json!({"entity_id": charge}),
        );
        ha.wait_states(limit, &format!("{charge} {want}"), |s| {
            s.get(&charge).is_some_and(|v| v["state"] == want)
        });
    }

    // a restart: unavailable while jkmon is gone, the same entity ids when it is back
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    let grid_voltage = entity("_inverter_grid_voltage_v");
    ha.wait_states(limit, "the entities unavailable", |s| {
        s.get(&grid_voltage)
            .is_some_and(|v| v["state"] == "unavailable")
    });
    let mut run = run_demo(dir.path(), &broker);
    ha.wait_states(limit, "the entities back", |s| {
        numeric(s, &grid_voltage) && numeric(s, &energy[0])
    });
    let after = by_unique(&ha.jkmon_entities());
    assert_eq!(
        after, ids,
        "the same entities, with the same ids, after a restart"
    );
    // TEST_HA_SOAK_SEC: a longer run before the checks (the issue's 15-minute soak: Home
    // Assistant compiles statistics every five minutes, which is when the recorder warns)
    let soak = std::env::var("TEST_HA_SOAK_SEC")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    if let Some(soak) = soak {
        let end = std::time::Instant::now() + soak;
        let (mut polls, mut partial) = (0, 0);
        while std::time::Instant::now() < end {
            let m = sub.wait_for(LIMIT, "an inverter state", |m| {
                m.topic == "jkmon/inverter/state"
            });
            polls += 1;
            if m.json()
                .as_object()
                .is_some_and(|o| o.values().any(Value::is_null))
            {
                partial += 1;
            }
        }
        eprintln!("soak: {polls} inverter states in {soak:?}, {partial} of them partial");
    }
    // one more partial poll after the restart
    sub.wait_for(
        Duration::from_secs(90),
        "a partial poll after the restart",
        |m| {
            m.topic == "jkmon/inverter/state"
                && m.json()
                    .as_object()
                    .is_some_and(|o| o.iter().any(|(k, v)| v.is_null() && k.ends_with("_v")))
        },
    );
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());

    // the grid was never "off": the demo's mains is there all along
    let grid = entity("_inverter_grid");
    let history = ha.history(&grid, &since);
    assert!(
        !history.iter().any(|s| s["state"] == "off"),
        "{grid}: {history:?}"
    );
    // not one warning or error in Home Assistant's log about jkmon's entities
    let log = ha.log();
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARNING ") || l.contains(" ERROR "))
        .filter(|l| {
            l.contains("Template variable")
                || l.contains("not strictly increasing")
                || l.contains("jkmon")
                || l.contains("mqtt")
                || ids.values().any(|e| l.contains(e.as_str()))
        })
        .collect();
    assert!(
        complaints.is_empty(),
        "Home Assistant's log:\n{}",
        complaints.join("\n")
    );
}

/// `lines` published to `topic` by one `mosquitto_pub -l`, one message a line, in order.
fn publish_lines(broker: &Broker, topic: &str, lines: &[&str]) {
    use std::io::Write;
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.port.to_string()])
        .args(["-t", topic, "-l", "-q", "0"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for l in lines {
        writeln!(stdin, "{l}").unwrap();
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "mosquitto_pub -l {topic}");
}

/// Switch commands over MQTT are applied in the order they arrive, the last one wins, and a
/// flood is coalesced: `ON` then `OFF` back to back ends `OFF` every time (before, two tasks
/// raced for the write and a fifth of the pairs ended `ON`), and 10,000 alternating commands
/// end in the last one's state after a few dozen writes to the BMS at most.
#[tokio::test(flavor = "multi_thread")]
async fn switch_commands_are_applied_in_order_and_a_flood_is_coalesced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(broker) = Broker::start(dir.path()) else {
        return;
    };
    let command = "jkmon/battery1/switch/charging/set";
    // a 100 KB retained message a careless script left on a command topic: before, the
    // packet over jkmon's limit dropped its connection, again at every reconnection
    let big = "X".repeat(100 * 1024);
    publish(&broker, command, &big, true);
    let mut sub = Subscriber::start(&broker);
    let mut run = run_sim(
        dir.path(),
        &broker,
        &[
            ("JK_BMS_CONTROL", "on"),
            ("RUST_LOG", "warn,jkmon=info,jkmon::control=debug"),
        ],
    );
    // and one more, live
    publish(&broker, command, &big, false);
    sub.wait_for(LIMIT, "a state with the switches", |m| {
        reported(m, "charging") == Some(true)
    });
    let idle = "control: charging on Simulated BMS: no command waiting";
    // the state the BMS reports once the commands are done: `want`, and the three states after
    // it too (the subscriber may still hold states from before the commands)
    let settled = |sub: &mut Subscriber, want: bool| {
        sub.wait_for(LIMIT, "the last command's state", |m| {
            reported(m, "charging") == Some(want)
        });
        for _ in 0..3 {
            let m = sub.wait_for(LIMIT, "a later state", |m| {
                reported(m, "charging").is_some()
            });
            assert_eq!(reported(&m, "charging"), Some(want), "{}", m.payload);
        }
    };
    // TEST_SWITCH_PAIRS: more rounds (the issue's 100)
    let rounds: usize = std::env::var("TEST_SWITCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for round in 0..rounds {
        // a pair back to back, as an automation sends it; then the other way round
        let (first, last) = if round % 2 == 0 {
            ("ON", "OFF")
        } else {
            ("OFF", "ON")
        };
        publish_lines(&broker, command, &[first, last]);
        run.wait_for_log(LIMIT, idle);
        settled(&mut sub, last == "ON");
    }
    // a looping automation: 10,000 alternating commands, the last one OFF
    let flood: Vec<&str> = (0..10_000)
        .map(|i| if i % 2 == 0 { "ON" } else { "OFF" })
        .collect();
    let before = common::switch_writes(&dir.path().join("control.db")).len();
    publish_lines(&broker, command, &flood);
    run.wait_for_log(Duration::from_secs(60), "were replaced by newer ones");
    run.wait_for_log(LIMIT, idle);
    settled(&mut sub, false);
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    let writes = common::switch_writes(&dir.path().join("control.db"));
    let made = writes.len() - before;
    assert!(
        (1..=40).contains(&made),
        "{made} writes for 10,000 commands"
    );
    assert_eq!(
        writes.last().unwrap(),
        "Simulated BMS: charging=off by mqtt: confirmed"
    );
    // the connection held: jkmon never went offline and never reconnected
    assert!(
        !sub.seen
            .iter()
            .any(|m| m.topic == "jkmon/status" && m.payload == "offline"),
        "jkmon/status went offline"
    );
    let reconnects: Vec<&String> = run
        .stderr_seen
        .iter()
        .filter(|l| l.contains("trying again in"))
        .collect();
    assert!(reconnects.is_empty(), "{reconnects:?}");
    // no line per command in the log
    let warnings = run
        .stderr_seen
        .iter()
        .filter(|l| l.contains(" WARN "))
        .count();
    let sample: Vec<&String> = run
        .stderr_seen
        .iter()
        .filter(|l| l.contains(" WARN "))
        .take(3)
        .collect();
    assert!(warnings < 10, "{warnings} warnings: {sample:?}");
}
