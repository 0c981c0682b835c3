//! `/metrics` end to end: the jkmon binary reads a BMS on a socat pty that answers with a
//! captured `4E 57` response (after one corrupted copy), and a strict reader of the exposition
//! format and Prometheus' own `promtool check metrics` check the page, and its values are
//! checked against the decoder's reading of the bytes.

use crate::common;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use common::process::{http_get, jkmon, Running};
use common::prometheus::{get, parse, promtool_accepts};
use common::pty::{answer_serial, PtyPair};
use common::{clean_serial_responses, corpus};
use jkmon::protocol::serial as serial_protocol;
use jkmon::report::json::CellInfoJson;

const LIMIT: Duration = Duration::from_secs(20);

#[test]
fn the_reader_is_strict() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"q\\\"\\\\\\n\"} 3\n# TYPE b gauge\nb -1.5e-3\nb{y=\"1\"} NaN\n";
    let families = parse(good).unwrap();
    assert_eq!(families.len(), 2);
    assert_eq!(get(&families, "a_total", &[("x", "q\"\\\n")]), Some(3.0));
    for (bad, why) in [
        ("# TYPE a gauge\na 1", "no final newline"),
        ("a 1\n", "no TYPE"),
        ("# TYPE a gauge\na 1\n# TYPE a gauge\n", "TYPE twice"),
        (
            "# TYPE a gauge\n# TYPE b gauge\nb 1\na 2\n",
            "a family in two places",
        ),
        ("# TYPE a counter\na 1\n", "a counter without _total"),
        ("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n", "a label twice"),
        (
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
            "a series twice",
        ),
        ("# TYPE a gauge\na{x=1} 1\n", "an unquoted label"),
        ("# TYPE a gauge\na{x=\"\\t\"} 1\n", "an unknown escape"),
        ("# TYPE a gauge\na one\n", "not a number"),
        ("# TYPE a gauge\na  1\n", "two spaces"),
        ("# TYPE a gauge\n\na 1\n", "a blank line"),
        ("# TYPE 1a gauge\n", "a bad name"),
        ("# TYPE a histogram\n", "a type jkmon does not write"),
    ] {
        assert!(parse(bad).is_err(), "accepted {why}: {bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_well_formed_and_their_values_are_the_decoded_bytes() {
    let corpus = corpus();
    let frame = clean_serial_responses(&corpus)
        .into_iter()
        .next()
        .expect("a clean serial response in the corpus");
    let expected = serial_protocol::decode_response(&frame).unwrap();
    let json = serde_json::to_value(CellInfoJson::new(&expected.cell_info, None)).unwrap();
    let mut corrupt = frame.clone();
    corrupt[40] ^= 0x55;
    let dir = tempfile::tempdir().unwrap();
    let Some(pty) = PtyPair::open(dir.path()) else {
        return;
    };
    answer_serial(
        &pty.b,
        vec![corrupt, frame],
        Arc::new(AtomicBool::new(true)),
    );
    let mut cmd = jkmon(dir.path(), &["run"]);
    cmd.envs([
        ("JK_BMS_TRANSPORT", "serial"),
        ("JK_BMS_SERIAL_PORT", pty.a.to_str().unwrap()),
        ("JK_BMS_NAMES", "Garage \"north\""),
        ("JK_BMS_POLL_INTERVAL", "0.2"),
        ("JK_BMS_RESPONSE_TIMEOUT_MS", "200"),
        ("SOC_SOURCE", "bms"),
        ("INVERTER_TIMEOUT_SEC", "1"),
        ("WEB_BIND", "127.0.0.1:0"),
        ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
    ]);
    let mut run = Running::spawn(cmd);
    let addr = run.web_address(LIMIT);
    // the store has the battery once jkmon says it merged a reading
    run.wait_for_log(LIMIT, "Garage \"north\": ");
    // a battery's own link is keyed by its position alone (a rename keeps its counters)
    let link = [("battery", "1")];
    let mut families = Vec::new();
    let mut page = String::new();
    // a reading and a rejected frame behind it: at most a few polls
    for _ in 0..50 {
        let (code, body) = http_get(&addr, "/metrics");
        assert_eq!(code, 200, "{body}");
        families = parse(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        page = body;
        let online = get(&families, "jkmon_battery_online", &[("battery", "1")]);
        let rejected = get(&families, "jkmon_frames_rejected_total", &link);
        if online == Some(1.0) && rejected.is_some_and(|r| r >= 1.0) {
            break;
        }
        run.wait_for_log(LIMIT, "Garage \"north\": ");
    }
    let b = [("battery", "1")];
    let value = |name: &str, labels: &[(&str, &str)]| {
        get(&families, name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"))
    };
    let field = |key: &str| {
        json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{key} in {json}"))
    };
    // base units: percent as a ratio, ampere-hours as coulombs
    for (metric, key, scale) in [
        ("jkmon_battery_voltage_volts", "total_voltage_v", 1.0),
        ("jkmon_battery_current_amperes", "current_a", 1.0),
        ("jkmon_battery_power_watts", "power_w", 1.0),
        ("jkmon_battery_soc_ratio", "soc_pct", 0.01),
        ("jkmon_battery_bms_soc_ratio", "soc_pct", 0.01),
        ("jkmon_battery_cycles_total", "cycle_count", 1.0),
        (
            "jkmon_battery_cycled_charge_coulombs_total",
            "cycle_capacity_ah",
            3600.0,
        ),
        (
            "jkmon_battery_nominal_charge_coulombs",
            "nominal_capacity_ah",
            3600.0,
        ),
        ("jkmon_battery_cell_min_volts", "cell_min_v", 1.0),
        ("jkmon_battery_cell_max_volts", "cell_max_v", 1.0),
        ("jkmon_battery_cell_delta_volts", "cell_delta_v", 1.0),
    ] {
        let want = field(key) * scale;
        let got = value(metric, &b);
        assert!(
            (got - want).abs() <= want.abs() * 1e-12,
            "{metric}: {got} ≠ {want}"
        );
    }
    // the name and the BMS's identity once, in the info series
    let info = families
        .iter()
        .find(|f| f.name == "jkmon_battery_info")
        .expect("jkmon_battery_info");
    assert_eq!(info.samples.len(), 1);
    let labels = &info.samples[0].labels;
    assert_eq!(labels["battery"], "1");
    assert_eq!(labels["name"], "Garage \"north\"");
    assert_eq!(
        labels["link"], "",
        "a battery's own link is its position, not a shared one"
    );
    for f in &families {
        for s in &f.samples {
            assert!(
                f.name == "jkmon_battery_info" || !s.labels.contains_key("name"),
                "{} carries the name",
                f.name
            );
        }
    }
    for (i, v) in json["cell_voltages_v"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let cell = (i + 1).to_string();
        let labels = [b[0], ("cell", cell.as_str())];
        assert_eq!(
            value("jkmon_battery_cell_voltage_volts", &labels),
            v.as_f64().unwrap()
        );
    }
    let temps = json["temperatures_c"].as_object().unwrap();
    assert!(!temps.is_empty());
    for (sensor, v) in temps {
        let labels = [b[0], ("sensor", sensor.as_str())];
        assert_eq!(
            value("jkmon_battery_temperature_celsius", &labels),
            v.as_f64().unwrap()
        );
    }
    for group in jkmon::protocol::alarms::ALARM_GROUPS {
        let labels = [b[0], ("group", group)];
        let raised = expected.cell_info.alarms.groups()[group];
        assert_eq!(
            value("jkmon_battery_alarm", &labels),
            f64::from(u8::from(raised))
        );
    }
    assert!(value("jkmon_frames_decoded_total", &link) >= 1.0);
    assert!(value("jkmon_frames_rejected_total", &link) >= 1.0);
    assert_eq!(value("jkmon_reconnects_total", &link), 0.0);
    assert!(value("process_resident_memory_bytes", &[]) > 1e6);
    assert!(value("process_cpu_seconds_total", &[]) >= 0.0);
    let kinds: Vec<(&str, &str)> = families
        .iter()
        .map(|f| (f.name.as_str(), f.kind.as_str()))
        .collect();
    assert!(
        kinds.contains(&("jkmon_frames_decoded_total", "counter")),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("jkmon_battery_voltage_volts", "gauge")));
    promtool_accepts(&page);
}

#[test]
fn promtool_is_the_judge() {
    // the check above could fail: promtool rejects what jkmon used to write
    if !common::have_program("promtool", &["--version"]) {
        return;
    }
    let bad = "# HELP jkmon_battery_remaining_capacity_amp_hours Remaining.\n# TYPE jkmon_battery_remaining_capacity_amp_hours gauge\njkmon_battery_remaining_capacity_amp_hours 1\n";
    let result = std::panic::catch_unwind(|| promtool_accepts(bad));
    assert!(result.is_err(), "promtool accepted a non-base unit");
}

/// The book's alerting rules pass `promtool check rules`, and `promtool test rules` shows the
/// one an owner most needs firing: jkmon itself down (`up == 0`), when "BMS offline" cannot.
#[test]
fn the_books_alert_rules_hold_and_jkmon_down_fires() {
    if !common::have_program("promtool", &["--version"]) {
        return;
    }
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/book/src/prometheus.md"),
    )
    .unwrap();
    let rules = page
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.starts_with("groups:"))
        .expect("the book has a rules file");
    assert!(rules.contains("up{job=\"jkmon\"} == 0"), "{rules}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jkmon-alerts.yml"), rules).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        common::succeeded(&out, &format!("promtool {args:?}"));
    };
    run(&["check", "rules", "jkmon-alerts.yml"]);
    // jkmon stops answering at minute 5: JkmonDown fires two minutes later, not before
    let tests = r#"rule_files: [jkmon-alerts.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="jkmon", instance="pi:8000"}'
        values: '1 1 1 1 1 0 0 0 0 0'
    alert_rule_test:
      - eval_time: 6m
        alertname: JkmonDown
        exp_alerts: []
      - eval_time: 8m
        alertname: JkmonDown
        exp_alerts:
          - exp_labels: {job: jkmon, instance: "pi:8000"}
            exp_annotations:
              summary: "jkmon on pi:8000 does not answer: no battery alert can fire while it is down"
"#;
    std::fs::write(dir.path().join("tests.yml"), tests).unwrap();
    run(&["test", "rules", "tests.yml"]);
}
