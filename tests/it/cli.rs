//! The real `jkmon` binary: `decode` and `read`, their output, their errors and exit codes.

use crate::common;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use jkmon::protocol::cell_info::{encode_jk02, JK02_32S};
use jkmon::protocol::hex;
use jkmon::transport::sim::{Rng, SimBattery, SimConfig};
use serde_json::Value;

fn jkmon(args: &[&str], env: &[(&str, &str)], stdin: Option<&[u8]>) -> Output {
    let dir = std::env::temp_dir().join(format!("jkmon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // an empty directory: no stray .env from the developer's checkout
    jkmon_in(&dir, args, env, stdin)
}

/// Runs the binary in `dir` (where it looks for `.env`) with jkmon's own variables cleared.
fn jkmon_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jkmon"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("JK_BMS_TRANSPORT")
        .env_remove("JK_BMS_VARIANT")
        .env_remove("JKMON_JSON")
        .env_remove("JK_BMS_ADDRESS")
        .env_remove("JK_BMS_NAMES")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("jkmon runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn sim_frame(cells: u8) -> ([u8; 300], jkmon::protocol::CellInfo) {
    let mut rng = Rng::new(5);
    let mut b = SimBattery::new(
        &SimConfig {
            cells,
            ..SimConfig::default()
        },
        &mut rng,
    );
    b.step(100.0, &mut rng);
    let info = b.cell_info(9);
    (encode_jk02(&info, &JK02_32S), info)
}

#[test]
fn decode_prints_one_json_object_per_frame_with_the_interface_names() {
    let (frame, info) = sim_frame(13);
    let arg = hex(&frame).replace(' ', "");
    let out = jkmon(&["decode", "--json", &arg], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let j = &lines[0];
    assert_eq!(j["frame_type"], "cell_info");
    assert_eq!(j["variant"], "jk02_32s");
    assert_eq!(j["cell_count"], 13);
    assert_eq!(j["cell_voltages_v"].as_array().unwrap().len(), 13);
    assert_eq!(
        j["total_voltage_v"],
        f64::from(info.total_voltage_mv) / 1000.0
    );
    assert_eq!(j["current_a"], f64::from(info.current_ma.unwrap()) / 1000.0);
    let stats = info.stats().unwrap();
    assert_eq!(j["cell_min_index"], stats.min_index);
    assert_eq!(j["cell_max_index"], stats.max_index);
    for key in [
        "cell_resistances_ohm",
        "cell_min_v",
        "cell_max_v",
        "cell_avg_v",
        "cell_delta_v",
        "power_w",
        "soc_pct",
        "remaining_capacity_ah",
        "nominal_capacity_ah",
        "cycle_count",
        "cycle_capacity_ah",
        "soh_pct",
        "temperatures_c",
        "balance_current_a",
        "balancing",
        "charging_enabled",
        "discharging_enabled",
        "heating",
        "alarms",
        "uptime_s",
    ] {
        assert!(j.get(key).is_some(), "missing {key} in {j}");
    }
    assert!(j["temperatures_c"]["mos"].is_number());
}

#[test]
fn decode_reads_a_noisy_fragmented_stream_from_stdin() {
    let (a, _) = sim_frame(8);
    let (b, _) = sim_frame(16);
    // notification pieces, one per line, with AT noise and junk, as a user would paste a log
    let mut input = String::from("41 54 0d 0a\n");
    for chunk in a.chunks(20) {
        input.push_str(&hex(chunk));
        input.push('\n');
    }
    input.push_str("30 f8 30 f8 0d 0a\n");
    for chunk in b.chunks(128) {
        input.push_str(&format!("0x{}\n", hex(chunk).replace(' ', "")));
    }
    let out = jkmon(&["decode", "--json", "-"], &[], Some(input.as_bytes()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let counts: Vec<u64> = text(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["cell_count"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(counts, vec![8, 16]);
    assert!(
        text(&out.stderr).contains("skipped 6 bytes"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_corrupt_frame_names_the_problem_and_fails() {
    let (mut frame, _) = sim_frame(4);
    frame[299] = frame[299].wrapping_add(1);
    let computed = frame[299].wrapping_sub(1);
    let out = jkmon(&["decode", &hex(&frame)], &[], None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "bad checksum: byte 299 is {:#04x}, computed {:#04x}",
            frame[299], computed
        )),
        "{err}"
    );
    assert!(err.contains("frame at byte 0"), "{err}");
}

#[test]
fn good_frames_still_print_when_a_bad_one_is_among_them() {
    let (good, _) = sim_frame(5);
    let mut bad = good;
    bad[50] ^= 0x10;
    let input = format!("{} {}", hex(&bad), hex(&good));
    let out = jkmon(&["decode", "--json", &input], &[], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stdout).lines().count(),
        1,
        "the good frame is printed"
    );
    assert!(text(&out.stderr).contains("bad checksum"));
}

#[test]
fn bad_hex_and_empty_input_get_clear_errors() {
    let out = jkmon(&["decode", "55aa", "zz"], &[], None);
    assert_ne!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    assert!(
        err.contains("\"zz\"") && err.contains("pairs of hex digits"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = jkmon(&["decode", "-"], &[], Some(b"  \n"));
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no hex bytes given"),
        "{}",
        text(&out.stderr)
    );

    let out = jkmon(&["decode", "01 02 03 04"], &[], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("no JK frame found in 4 bytes"),
        "{}",
        text(&out.stderr)
    );

    let out = jkmon(&["decode", "--variant", "jk05", "00"], &[], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("jk05"), "{}", text(&out.stderr));
}

#[test]
fn decode_reads_corpus_frames_readably() {
    let corpus = common::corpus();
    // a device-info frame and a cell-info frame in one call; the text shows the decoded values
    let dev = corpus.iter().find(|e| e["id"] == 9).unwrap();
    let cell = corpus.iter().find(|e| e["id"] == 10).unwrap();
    let input = format!(
        "{}\n{}",
        common::field(dev, "hex"),
        common::field(cell, "hex")
    );
    let out = jkmon(&["decode"], &[], Some(input.as_bytes()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("JK-PB2A16S20P") && s.contains("19.27"), "{s}");
    assert!(
        s.contains("54.028 V") && s.contains("-0.727 A (discharging)"),
        "{s}"
    );
    assert!(!s.to_lowercase().contains("passcode"), "{s}");
}

#[test]
fn read_from_the_simulated_bms() {
    let env = [
        ("JK_BMS_TRANSPORT", "sim"),
        ("JK_SIM_CELLS", "8"),
        ("JK_SIM_INTERVAL_MS", "50"),
    ];
    let out = jkmon(&["read", "--timeout", "10"], &env, None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("jkmon-sim") && s.contains("cells      8"), "{s}");
    assert!(
        s.contains("SOC ") && s.contains("(from curve; BMS says"),
        "{s}"
    );
    // the simulated JK-PB's last values, in words
    assert!(
        s.contains("  charger    bulk; precharge off; heating current 0.000 A; dry contacts DRY1 open, DRY2 open")
            || s.contains("  charger    float;")
            || s.contains("  charger    absorption;"),
        "{s}"
    );

    let out = jkmon(
        &["read", "--json", "--hex"],
        &[
            ("SOC_SOURCE", "bms"),
            ("JK_SIM_CELLS", "8"),
            ("JK_BMS_TRANSPORT", "sim"),
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (hex_lines, json_lines): (Vec<&str>, Vec<&str>) =
        stdout.lines().partition(|l| !l.starts_with('{'));
    assert!(
        hex_lines.len() >= 3
            && hex_lines
                .iter()
                .all(|l| l.len() == 600 && l.starts_with("55aaeb90")),
        "{hex_lines:?}"
    );
    let json: Vec<Value> = json_lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = json
        .iter()
        .map(|j| j["frame_type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["device_info", "settings", "cell_info"]);
    let snap = &json[2];
    assert_eq!(snap["cell_count"], 8);
    assert_eq!(snap["soc_source"], "bms");
    assert_eq!(snap["soc_effective_pct"].as_f64(), snap["soc_pct"].as_f64());
    assert!(["bulk", "absorption", "float"].contains(&snap["charge_status"].as_str().unwrap()));
    assert_eq!(
        snap["dry_contacts"],
        serde_json::json!({"dry1": false, "dry2": false})
    );
    assert!(!stdout.contains("passcode"));
}

#[test]
fn configuration_errors_name_the_variable() {
    let out = jkmon(
        &["read"],
        &[("JK_BMS_TRANSPORT", "sim"), ("JK_SIM_CELLS", "40")],
        None,
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("JK_SIM_CELLS=\"40\" is not valid: must be between 4 and 24"),
        "{}",
        text(&out.stderr)
    );

    let out = jkmon(
        &["read"],
        &[("JK_BMS_TRANSPORT", "sim"), ("SOC_CURVE", "3.3:50,2.5:0")],
        None,
    );
    assert!(
        text(&out.stderr).contains("SOC_CURVE=") && text(&out.stderr).contains("must increase"),
        "{}",
        text(&out.stderr)
    );

    // Bluetooth with nothing configured says how to configure it.
    let out = jkmon(&["read"], &[("JK_BMS_TRANSPORT", "ble")], None);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("JK_BMS_ADDRESS=AA:BB:CC:DD:EE:FF")
            && text(&out.stderr).contains("jkmon scan --save"),
        "{}",
        text(&out.stderr)
    );

    // Bad addresses, repeats and name counts are rejected before anything connects.
    for (env, expected) in [
        (
            vec![("JK_BMS_ADDRESS", "C8:47:80:12:AD")],
            "JK_BMS_ADDRESS=\"C8:47:80:12:AD\" is not valid",
        ),
        (
            vec![("JK_BMS_ADDRESS", "C8:47:80:12:AD:71,C8:47:80:12:AD:71")],
            "C8:47:80:12:AD:71 is listed twice",
        ),
        (
            vec![
                ("JK_BMS_ADDRESS", "C8:47:80:12:AD:71,C8:47:80:12:AD:72"),
                ("JK_BMS_NAMES", "Main"),
            ],
            "1 name(s) for 2 address(es)",
        ),
    ] {
        for command in ["read", "watch"] {
            let mut all = env.clone();
            all.push(("JK_BMS_TRANSPORT", "ble"));
            let out = jkmon(&[command], &all, None);
            assert_ne!(out.status.code(), Some(0));
            assert!(
                text(&out.stderr).contains(expected),
                "{command} {env:?}: {}",
                text(&out.stderr)
            );
        }
    }
}

/// A configuration error is not retried by systemd (`RestartPreventExitStatus=78`) or
/// Docker: it exits with EX_CONFIG, any other failure with 1.
#[test]
fn a_bad_variable_exits_with_ex_config_and_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = jkmon_in(
        dir.path(),
        &["poll"],
        &[
            ("JK_BMS_TRANSPORT", "sim"),
            ("JK_BMS_POLL_INTERVAL", "soon"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("JK_BMS_POLL_INTERVAL=\"soon\""),
        "{}",
        text(&out.stderr)
    );
    // not a configuration error: a database directory that does not exist
    let out = jkmon_in(
        dir.path(),
        &["poll"],
        &[
            ("JK_BMS_TRANSPORT", "sim"),
            ("DB_PATH", "/nonexistent-dir/x.db"),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn a_malformed_env_file_is_reported_with_its_line() {
    let dir = std::env::temp_dir().join(format!("jkmon-envfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(".env"),
        "JK_BMS_TRANSPORT=sim\nthis line is not an assignment\n",
    )
    .unwrap();
    let out = jkmon_in(&dir, &["read"], &[], None);
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    let err = text(&out.stderr);
    assert!(
        err.contains("could not read .env") && err.contains("NAME=value"),
        "{err}"
    );
}

#[test]
fn watch_streams_several_simulated_bmss_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jkmon"));
    cmd.args(["watch", "--json"])
        .current_dir(dir.path())
        .env("JK_BMS_TRANSPORT", "sim")
        .env("JK_BMS_ADDRESS", "C8:47:80:12:AD:71,C8:47:80:12:AD:72")
        .env("JK_BMS_NAMES", "Main,Garage")
        .env("JK_SIM_INTERVAL_MS", "20")
        .env_remove("JKMON_JSON")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = common::process::Running::spawn(cmd);
    let limit = std::time::Duration::from_secs(10);
    for name in ["Main", "Garage"] {
        let v = run.wait_for(limit, "a snapshot of each", |v| {
            v["event"] == "snapshot" && v["name"] == name
        });
        assert_eq!(v["snapshot"]["cell_count"], 16, "{v}");
    }
}

#[test]
fn blank_command_line_variables_mean_their_defaults() {
    for (var, args) in [
        ("JK_READ_TIMEOUT_SEC", &["read"][..]),
        ("JKMON_JSON", &["read"][..]),
        ("JKMON_HEX", &["read"][..]),
        ("JK_SCAN_TIMEOUT_SEC", &["decode", "--help"][..]),
    ] {
        for blank in ["", "  "] {
            let out = jkmon(args, &[("JK_BMS_TRANSPORT", "sim"), (var, blank)], None);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{var}={blank:?}: {}",
                text(&out.stderr)
            );
        }
    }
    // decode reads stdin; JKMON_JSON blank there too
    let out = jkmon(&["decode"], &[("JKMON_JSON", "")], Some(b"4e57"));
    assert!(
        !text(&out.stderr).contains("--json"),
        "{}",
        text(&out.stderr)
    );
}

/// `--help` of the service's commands lists every variable the configuration reads.
#[test]
fn the_services_help_lists_the_variables_it_reads() {
    for command in ["run", "poll", "web", "bot"] {
        let out = jkmon(&[command, "--help"], &[], None);
        assert!(out.status.success());
        let help = text(&out.stdout);
        for name in jkmon::config::VARIABLES {
            assert!(help.contains(name), "{command} --help misses {name}");
        }
        // wrapped (at the terminal's width on a terminal, 100 columns elsewhere)
        assert!(help.lines().all(|l| l.chars().count() <= 100), "{help}");
        let env = help
            .split("Environment")
            .nth(1)
            .expect("an environment section");
        assert!(env.lines().all(|l| l.chars().count() <= 80), "{env}");
    }
}

/// Shell completions and the manual page come from the parser's own definitions.
#[test]
fn completions_and_the_manual_page_are_printed() {
    let out = jkmon(&["completions", "bash"], &[], None);
    assert!(out.status.success());
    let bash = text(&out.stdout);
    assert!(
        bash.contains("complete -F") && bash.contains("fill-demo"),
        "{bash}"
    );
    let out = jkmon(&["completions", "zsh"], &[], None);
    assert!(text(&out.stdout).starts_with("#compdef jkmon"));
    let out = jkmon(&["man"], &[], None);
    assert!(out.status.success());
    let page = text(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH jkmon"),
        "{page}"
    );
    assert!(
        page.contains("JK_BMS_ADDRESS") && page.contains("healthcheck"),
        "{page}"
    );
}

/// `jkmon man --dir` writes every page the main page names (`jkmon-run(1)`, …), and the exit
/// codes jkmon uses are in the main page's EXIT STATUS and in `--help`.
#[test]
fn every_manual_page_the_manual_names_exists_and_the_exit_codes_are_documented() {
    let dir = tempfile::tempdir().unwrap();
    let out = jkmon(&["man", "--dir", dir.path().to_str().unwrap()], &[], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let main = std::fs::read_to_string(dir.path().join("jkmon.1")).unwrap();
    let named: Vec<String> = main
        .split("jkmon\\-")
        .skip(1)
        .filter_map(|rest| rest.split_once("(1)").map(|(n, _)| n.replace("\\-", "-")))
        .filter(|n| !n.contains(char::is_whitespace))
        .collect();
    assert!(named.len() >= 15, "{named:?}");
    for name in &named {
        let page = dir.path().join(format!("jkmon-{name}.1"));
        let body = std::fs::read_to_string(&page)
            .unwrap_or_else(|_| panic!("jkmon(1) names jkmon-{name}(1), which is missing"));
        assert!(body.contains(&format!(".TH jkmon-{name} 1")), "{body}");
    }
    let status = main
        .split(".SH \"EXIT STATUS\"")
        .nth(1)
        .expect("an EXIT STATUS section");
    for code in ["0", "1", "3", "78"] {
        assert!(status.contains(&format!(".TP\n{code}\n")), "{status}");
    }
    let help = text(&jkmon(&["--help"], &[], None).stdout);
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("Exit status:") && help.contains("78 configuration error"),
        "{help}"
    );
}

/// A reader that stops reading (`jkmon watch | head -2`) ends the watch quietly, with the
/// exit code of a program SIGPIPE stopped, not a panic.
#[test]
fn watch_into_a_closed_pipe_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_jkmon"))
        .arg("watch")
        .current_dir(dir.path())
        .env("JK_BMS_TRANSPORT", "sim")
        .env_remove("JK_BMS_ADDRESS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // read the first line, then close the pipe as `head -1` would
    let mut stdout = child.stdout.take().unwrap();
    let mut first = Vec::new();
    let mut byte = [0u8; 1];
    while std::io::Read::read(&mut stdout, &mut byte).unwrap() == 1 && byte[0] != b'\n' {
        first.push(byte[0]);
    }
    assert!(text(&first).contains("Simulated BMS"), "{}", text(&first));
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `jkmon set --dry-run` prints the exact bytes of each switch on the battery's link — the
/// protocol reference's own examples — and sends nothing; without the dry run the write needs
/// the running service, and its absence is named.
#[test]
fn set_dry_run_prints_the_references_bytes_and_a_live_write_needs_the_service() {
    let ble = jkmon(
        &["set", "1", "charging=on", "--dry-run"],
        &[("JK_BMS_TRANSPORT", "sim"), ("JK_BMS_VARIANT", "jk02_32s")],
        None,
    );
    assert!(ble.status.success(), "{}", text(&ble.stderr));
    assert_eq!(
        text(&ble.stdout).lines().nth(1).unwrap().trim(),
        "on a jk02_32s board: AA 55 90 EB 1D 04 01 00 00 00 00 00 00 00 00 00 00 00 00 9C"
    );
    let bus = jkmon(
        &["set", "2", "balancer=on", "heater=on", "--dry-run"],
        &[
            ("JK_BMS_TRANSPORT", "rs485"),
            ("JK_BMS_SERIAL_PORT", "/dev/ttyUSB9"),
            ("JK_RS485_ADDRESSES", "1,2"),
        ],
        None,
    );
    let out = text(&bus.stdout);
    assert!(
        out.contains("balancer=on: RS485 pack 2: 02 10 10 78 00 02 04 00 00 00 01 F6 69"),
        "{out}"
    );
    assert!(
        out.contains("heater=on: the heater switch cannot be set on the RS485 network"),
        "{out}"
    );
    // not a dry run: the write goes through the running service, which holds the link (and
    // decides, by its JK_BMS_CONTROL); with none running, that is what is said
    let refused = jkmon(
        &["set", "1", "charging=off", "--url", "http://127.0.0.1:1"],
        &[("JK_BMS_TRANSPORT", "sim")],
        None,
    );
    assert!(!refused.status.success());
    let e = text(&refused.stderr);
    assert!(
        e.contains("no jkmon answers at http://127.0.0.1:1") && e.contains("jkmon run"),
        "{e}"
    );
    let unknown = jkmon(
        &["set", "Loft", "charging=off", "--dry-run"],
        &[("JK_BMS_TRANSPORT", "sim")],
        None,
    );
    let e = text(&unknown.stderr);
    assert!(
        e.contains("no battery \"Loft\"") && e.contains("1 (Simulated BMS)"),
        "{e}"
    );
}
