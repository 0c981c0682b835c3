//! Deployment: the compose file, the systemd units and the Dockerfile say what they must;
//! `jkmon healthcheck` tells a healthy service from a stale or absent one; under systemd the
//! service says READY=1 and feeds the watchdog only while a BMS delivers; a misspelt variable
//! is named; the README's first command brings the dashboard up.

use crate::common;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{http_get, Running};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(file: &str) -> String {
    std::fs::read_to_string(root().join(file)).unwrap()
}

#[test]
fn the_compose_file_reaches_the_hosts_bluez_keeps_the_database_and_restarts() {
    if !common::have_program("/usr/bin/python3", &["-c", "import yaml"]) {
        return;
    }
    let out = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join("docker-compose.yml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &compose["services"]["jkmon"];
    assert_eq!(s["network_mode"], "host");
    let volumes: Vec<&str> = s["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        volumes.contains(&"/var/run/dbus:/var/run/dbus"),
        "{volumes:?}"
    );
    assert!(
        volumes.contains(&"jkmon-data:/var/lib/jkmon"),
        "{volumes:?}"
    );
    assert!(compose["volumes"].get("jkmon-data").is_some());
    assert!(
        volumes.contains(&"/etc/localtime:/etc/localtime:ro"),
        "the host's time zone: {volumes:?}"
    );
    assert_eq!(s["restart"], "unless-stopped");
    assert_eq!(s["environment"]["DB_PATH"], "/var/lib/jkmon/inverter.db");
    let test: Vec<&str> = s["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(test, ["CMD", "jkmon", "healthcheck", "--quiet"]);
    assert!(s.get("privileged").is_none(), "no privileged mode");
    // the short form: docker-compose 1.29 (Raspberry Pi OS's package) rejects `required:`
    assert_eq!(s["env_file"], ".env");
    assert_eq!(
        s["init"], true,
        "an init passes SIGTERM on and reaps children"
    );
    assert_eq!(
        s["logging"]["options"]["max-size"], "10m",
        "a log cap for SD cards"
    );
}

#[test]
fn the_image_build_leaves_out_build_output_history_and_the_owners_data() {
    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for entry in ["target/", ".git/", "*.db", ".env"] {
        assert!(lines.contains(&entry), "{entry} in .dockerignore");
    }
    let d = read("Dockerfile");
    let runtime = d.split("AS runtime").nth(1).unwrap();
    assert!(
        runtime.contains("COPY --from=build /etc/ssl/certs/ca-certificates.crt"),
        "mqtts:// needs the CAs"
    );
    // the dependencies' layer comes before jkmon's sources
    let deps = d.find("cargo build").unwrap();
    assert!(
        deps < d.find("COPY src ./src").unwrap(),
        "a dependency-cache layer"
    );
    assert!(
        !d.contains("FROM rust:1-"),
        "the Rust image is pinned to a release"
    );
    let base = runtime.lines().next().unwrap_or("");
    let debian = d
        .lines()
        .find_map(|l| l.strip_prefix("FROM debian:"))
        .expect("a Debian runtime");
    let release = debian.split('-').next().unwrap();
    assert!(
        release.split('.').count() == 2 && release.split('.').all(|n| n.parse::<u32>().is_ok()),
        "the Debian runtime is pinned to a point release, not {debian} {base}"
    );
}

#[test]
fn the_image_cross_compiles_for_a_raspberry_pi_without_emulation() {
    let d = read("Dockerfile");
    // the build stage runs on the build machine's own platform…
    assert!(d.contains("FROM --platform=$BUILDPLATFORM rust:"), "{d}");
    // …and the runtime stage runs nothing, so building it for arm needs no emulation
    let runtime = d.split("AS runtime").nth(1).unwrap();
    assert!(
        !runtime.lines().any(|l| l.trim_start().starts_with("RUN ")),
        "a RUN in the runtime stage runs under emulation for another platform"
    );
    // each platform maps to a Rust target that rustc knows, with its linker set
    let targets = Command::new("rustc")
        .args(["--print", "target-list"])
        .output()
        .unwrap();
    let targets = String::from_utf8_lossy(&targets.stdout);
    for (platform, triple) in [
        ("amd64", "x86_64-unknown-linux-gnu"),
        ("arm64", "aarch64-unknown-linux-gnu"),
        ("arm/v7", "armv7-unknown-linux-gnueabihf"),
    ] {
        assert!(
            d.contains(&format!("{platform}) triple={triple};")),
            "linux/{platform} builds {triple}"
        );
        assert!(targets.lines().any(|t| t == triple), "{triple}");
        let linker_var = format!(
            "CARGO_TARGET_{}_LINKER=",
            triple.to_uppercase().replace('-', "_")
        );
        assert!(d.contains(&linker_var), "{linker_var}");
    }
    // the binary is built for the target and copied from its directory
    assert!(d.contains("--target \"$(cat /rust-target)\""));
    assert!(d.contains("cp \"target/$(cat /rust-target)/release/jkmon\" /out/jkmon"));
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_a_user_with_a_healthcheck() {
    let d = read("Dockerfile");
    let lines: Vec<&str> = d.lines().map(str::trim).collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "build and runtime stages");
    assert!(froms[0].ends_with("AS build"));
    let runtime = d.split("AS runtime").nth(1).expect("a runtime stage");
    assert!(runtime.contains("COPY --from=build"));
    let user = runtime
        .lines()
        .find_map(|l| l.trim().strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert_ne!(user.trim(), "root");
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("\"jkmon\", \"healthcheck\""));
    for dir in ["src", "migrations", "templates", "static"] {
        assert!(
            d.contains(&format!("COPY {dir} ./{dir}")),
            "the build needs {dir}/"
        );
    }
}

#[test]
fn systemd_accepts_the_units_and_they_are_hardened() {
    if !common::have_program("systemd-analyze", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for entry in std::fs::read_dir(root().join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // verify checks that ExecStart exists: point it at the binary under test
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(
            &copy,
            text.replace("/usr/local/bin/jkmon", env!("CARGO_BIN_EXE_jkmon")),
        )
        .unwrap();
        units.push((copy, text));
    }
    assert_eq!(units.len(), 4, "jkmon and the poll/web/bot split");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(units.iter().map(|(p, _)| p))
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "{complaints}"
    );
    let main = &units
        .iter()
        .find(|(p, _)| p.ends_with("jkmon.service"))
        .unwrap()
        .1;
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "After=network-online.target bluetooth.target",
        "Wants=network-online.target bluetooth.target",
        "EnvironmentFile=",
        "User=jkmon",
        "SupplementaryGroups=bluetooth",
        "Restart=always",
        "ProtectSystem=strict",
        "StateDirectory=jkmon",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        // serial and RS485 adapters: visible, and opened as the group that owns them
        "SupplementaryGroups=bluetooth dialout",
        "DevicePolicy=closed",
        "DeviceAllow=char-ttyUSB rw",
        "DeviceAllow=char-ttyACM rw",
        "UMask=0077",
    ] {
        assert!(main.lines().any(|l| l.starts_with(line)), "{line}");
    }
    assert!(
        !main.lines().any(|l| l == "PrivateDevices=yes"),
        "PrivateDevices hides /dev/ttyUSB*"
    );
    // systemd's own exposure score: at most 2.0 for every unit
    for (path, _) in &units {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true"])
            .arg(path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let score: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1)?.split(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no score in {text}"));
        assert!(score <= 2.0, "{}: exposure {score}\n{text}", path.display());
    }
    // a configuration error (EX_CONFIG) is not retried every 10 s for ever
    for (path, text) in &units {
        assert!(
            text.lines().any(|l| l == "RestartPreventExitStatus=78"),
            "{}",
            path.display()
        );
    }
}

fn jkmon(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = common::process::jkmon(dir, args);
    cmd.envs(env.iter().copied());
    cmd
}

fn listening(run: &mut Running) -> String {
    run.web_address(Duration::from_secs(30))
}

#[test]
fn healthcheck_is_0_on_a_healthy_service_and_1_when_stale_or_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(jkmon(
        dir.path(),
        &["run", "--demo"],
        &[
            ("WEB_BIND", "127.0.0.1:0"),
            ("JK_BMS_POLL_INTERVAL", "0.2"),
            ("JK_SIM_INTERVAL_MS", "50"),
        ],
    ));
    let addr = listening(&mut run);
    run.wait_for_log(Duration::from_secs(30), "merged into readings #");
    let check = |bind: &str| {
        jkmon(dir.path(), &["healthcheck"], &[("WEB_BIND", bind)])
            .output()
            .unwrap()
    };
    let ok = check(&addr);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("healthy"));
    drop(run);

    // the same database served without its BMS sessions: the snapshot goes stale
    let mut web = Running::spawn(jkmon(
        dir.path(),
        &["web", "--demo"],
        &[
            ("WEB_BIND", "127.0.0.1:0"),
            ("JK_BMS_STALE_SEC", "1"),
            ("JK_BMS_POLL_INTERVAL", "0.2"),
        ],
    ));
    let addr = listening(&mut web);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stale = loop {
        // bounded: freshness is 1.2 s here
        let out = check(&addr);
        if !out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(!stale.status.success(), "stale must be unhealthy");
    let why = String::from_utf8_lossy(&stale.stderr);
    assert!(why.contains("Simulated BMS: last snapshot"), "{why}");
    drop(web);
    let down = check(&addr);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("nothing answers"));
}

/// systemd's notification socket in `dir` (30 s read timeout) and its path for NOTIFY_SOCKET.
fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    (socket, path.to_str().unwrap().to_string())
}

/// The next notification, `None` after the socket's read timeout.
fn recv(socket: &UnixDatagram) -> Option<String> {
    let mut buf = [0u8; 256];
    socket
        .recv(&mut buf)
        .ok()
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// `jkmon poll --demo` with `env` under a fake systemd (a notify socket, a 0.6 s watchdog),
/// once it said READY=1 and fed the watchdog after its first reading.
fn poll_under_systemd(dir: &Path, env: &[(&str, &str)]) -> (UnixDatagram, Running) {
    let (socket, path) = notify_socket(dir);
    let mut all = vec![
        ("NOTIFY_SOCKET", path.as_str()),
        ("WATCHDOG_USEC", "600000"),
    ];
    all.extend_from_slice(env);
    let run = Running::spawn(jkmon(dir, &["poll", "--demo"], &all));
    assert_eq!(recv(&socket).as_deref(), Some("READY=1"));
    assert_eq!(
        recv(&socket).as_deref(),
        Some("WATCHDOG=1"),
        "fed after the first reading"
    );
    (socket, run)
}

#[test]
fn under_systemd_it_says_ready_and_feeds_the_watchdog_only_while_a_bms_delivers() {
    let dir = tempfile::tempdir().unwrap();
    // a BMS that sends one frame a minute: healthy at first, then silent for the watchdog
    let (socket, mut run) = poll_under_systemd(
        dir.path(),
        &[("JK_SIM_INTERVAL_MS", "60000"), ("JK_BMS_STALE_SEC", "120")],
    );
    // after that one frame, at most the 0.6 s it counts as fresh: then nothing for 2 s
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut fed = 0;
    while let Some(m) = recv(&socket) {
        assert_eq!(m, "WATCHDOG=1");
        fed += 1;
        assert!(fed <= 5, "the watchdog is fed while the BMS is silent");
    }
    // and it says STOPPING=1 on the way out
    let pid = run.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(recv(&socket).as_deref(), Some("STOPPING=1"));
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

/// In periodic mode jkmon waits a whole cycle between two readings, longer than systemd's
/// watchdog interval if the owner sets it so: the watchdog is fed through the wait.
#[test]
fn in_periodic_mode_the_watchdog_is_fed_between_readings() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, mut run) = poll_under_systemd(
        dir.path(),
        &[
            ("JK_BMS_CONNECT_MODE", "periodic"),
            ("JK_BMS_POLL_INTERVAL", "30"),
        ],
    );
    let recv = || recv(&socket);
    // the next reading is 30 s away; the watchdog (0.6 s) is fed every 0.3 s meanwhile
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut fed = 0;
    for _ in 0..6 {
        match recv() {
            Some(m) => {
                assert_eq!(m, "WATCHDOG=1");
                fed += 1;
            }
            None => break,
        }
    }
    assert_eq!(fed, 6, "fed through the wait for the next reading");
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn a_misspelt_variable_is_named_with_the_closest_known_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = jkmon(
        dir.path(),
        &["decode", "00"],
        &[("JK_BMS_ADRESS", "C8:47:80:12:AD:71")],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "JK_BMS_ADRESS is not a variable jkmon reads (ignored); did you mean JK_BMS_ADDRESS?"
        ),
        "{err}"
    );
}

#[test]
fn the_readmes_first_command_brings_the_dashboard_up() {
    let readme = read("README.md");
    let first = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.lines().next())
        .unwrap();
    assert_eq!(first, "cargo run --release -- run --demo");
    // the same arguments on the binary under test (the port is chosen free here)
    let args: Vec<&str> = first.split(" -- ").nth(1).unwrap().split(' ').collect();
    let dir = tempfile::tempdir().unwrap();
    let mut run = Running::spawn(jkmon(dir.path(), &args, &[("WEB_BIND", "127.0.0.1:0")]));
    let addr = listening(&mut run);
    run.wait_for_log(
        Duration::from_secs(30),
        "Simulated BMS: handshake → streaming",
    );
    let (code, html) = http_get(&addr, "/");
    assert_eq!(code, 200);
    assert!(html.contains("id=\"battery-1\"") && html.contains("Simulated BMS"));
    assert!(
        dir.path().join("demo.db").exists(),
        "the demo writes demo.db"
    );
}

#[test]
fn doctor_names_a_bad_configuration_and_a_busy_port() {
    let dir = tempfile::tempdir().unwrap();
    let out = jkmon(dir.path(), &["doctor"], &[("JK_BMS_ADDRESS", "C8:47:80")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("✘ configuration: JK_BMS_ADDRESS=\"C8:47:80\" is not valid"),
        "{text}"
    );
    // the simulator needs no Bluetooth; a port in use and a missing directory are named
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().to_string();
    let out = jkmon(
        dir.path(),
        &["doctor"],
        &[
            ("JK_BMS_TRANSPORT", "sim"),
            ("WEB_BIND", &port),
            ("DB_PATH", "/nonexistent/jkmon/inverter.db"),
        ],
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(text.contains("· Bluetooth: not used"), "{text}");
    assert!(
        text.contains("✘ web port") && text.contains("already running"),
        "{text}"
    );
    assert!(
        text.contains("✘ database: the directory /nonexistent/jkmon does not exist"),
        "{text}"
    );
}

/// Under systemd, stderr is the journal's stream: each line carries its syslog priority, so
/// `journalctl -p warning` finds the warnings (and no time of its own: the journal has it).
/// A stream that is not the one `$JOURNAL_STREAM` names gets the plain format.
#[test]
fn log_lines_carry_their_priority_for_the_journal() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let run = |journal: &dyn Fn(&std::fs::File) -> String| -> String {
        let path = dir.path().join("stderr");
        let file = std::fs::File::create(&path).unwrap();
        let stream = journal(&file);
        let status = jkmon(
            dir.path(),
            &["decode", "00"],
            &[
                ("JK_BMS_ADRESS", "C8:47:80:12:AD:71"),
                ("JOURNAL_STREAM", &stream),
            ],
        )
        .stderr(file)
        .status()
        .unwrap();
        assert!(!status.success(), "00 is no frame");
        std::fs::read_to_string(&path).unwrap()
    };
    let journal = run(&|f| {
        let m = f.metadata().unwrap();
        format!("{}:{}", m.dev(), m.ino())
    });
    let warning = journal
        .lines()
        .find(|l| l.contains("JK_BMS_ADRESS"))
        .expect("the misspelt variable is named");
    assert!(warning.starts_with("<4> WARN "), "{journal}");
    // the fatal line that says why the command failed is an error to the journal
    let fatal = journal
        .lines()
        .find(|l| l.contains("error:"))
        .expect("the failure is named");
    assert!(fatal.starts_with("<3>error: "), "{journal}");
    let plain = run(&|_| "1:1".into());
    let warning = plain.lines().find(|l| l.contains("JK_BMS_ADRESS")).unwrap();
    assert!(!warning.starts_with('<'), "{plain}");
    assert!(warning.starts_with("20"), "the time first: {plain}");
}

/// On a terminal the log is coloured, unless `NO_COLOR` is set.
#[test]
fn no_color_turns_the_colours_off_on_a_terminal() {
    if !common::have_program("script", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let on_a_terminal = |no_color: bool| -> String {
        let command = format!(
            "{} {} decode 00",
            if no_color {
                "env NO_COLOR=1"
            } else {
                "env -u NO_COLOR"
            },
            env!("CARGO_BIN_EXE_jkmon")
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(dir.path())
            .env("JK_BMS_ADRESS", "C8:47:80:12:AD:71")
            .env("TERM", "xterm")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = on_a_terminal(false);
    assert!(coloured.contains("JK_BMS_ADRESS"), "{coloured}");
    assert!(
        coloured.contains("\x1b["),
        "coloured on a terminal: {coloured:?}"
    );
    let plain = on_a_terminal(true);
    assert!(plain.contains("JK_BMS_ADRESS"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR: {plain:?}");
}

/// The `SystemCallFilter=` lines of `unit`, in order.
fn syscall_filter(unit: &str) -> Vec<String> {
    read(unit)
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
        .map(str::to_string)
        .collect()
}

/// `cmd` again, run under `filter` as systemd installs it (tests/support/syscall_filter.py).
fn filtered(cmd: &Command, filter: &[String]) -> Command {
    let mut out = Command::new("/usr/bin/python3");
    out.arg(root().join("tests/support/syscall_filter.py"))
        .args(filter)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(dir) = cmd.get_current_dir() {
        out.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => out.env(key, v),
            None => out.env_remove(key),
        };
    }
    out
}

/// `jkmon read --json` (as `cmd`) under the filter: it succeeds with a snapshot of `cells`.
fn reads_under_filter(what: &str, cmd: &Command, filter: &[String], cells: u64) {
    let out = filtered(cmd, filter).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what} under the units' system-call filter: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["cell_count"], cells, "{what}: {last}");
}

#[test]
fn every_transport_works_under_the_units_system_call_filter() {
    if !common::have_program("/usr/bin/python3", &["-c", "import seccomp"])
        || !common::have_program("systemd-analyze", &["--version"])
    {
        return;
    }
    let filter = syscall_filter("systemd/jkmon.service");
    assert!(filter.len() >= 2, "{filter:?}");
    for unit in ["jkmon-poll", "jkmon-web", "jkmon-bot"] {
        let file = format!("systemd/{unit}.service");
        assert_eq!(syscall_filter(&file), filter, "{unit} filters the same");
    }
    // the filter is in force: a privileged call fails with EPERM
    let chroot = Command::new("chroot").args(["/", "true"]).status();
    if chroot.is_ok_and(|s| s.success()) {
        let out = filtered(&Command::new("chroot"), &filter)
            .args(["/", "true"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"));
    }
    let dir = tempfile::tempdir().unwrap();

    // the whole service on the simulator: sessions, writer, SQLite, web server, signals
    let mut run = common::process::jkmon(dir.path(), &["run", "--demo"]);
    run.env("WEB_BIND", "127.0.0.1:0")
        .env("DB_PATH", dir.path().join("demo.db"));
    let mut run = Running::spawn(filtered(&run, &filter));
    let addr = listening(&mut run);
    run.wait_for_log(Duration::from_secs(30), "merged into readings");
    let (code, body) = http_get(&addr, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["batteries"][0]["online"], true, "{body}");
    run.signal("TERM");
    assert!(run.wait_exit(Duration::from_secs(30)).success());

    // serial and RS485 on a pty pair, the BMS simulated at the other end (unfiltered)
    let Some(pty) = common::pty::PtyPair::open(dir.path()) else {
        return;
    };
    let (a, b) = (pty.a.to_str().unwrap(), pty.b.to_str().unwrap());
    for (transport, role, extra, read_extra) in [
        ("serial", "serial", vec![], vec![]),
        (
            "rs485",
            "rs485",
            vec!["--slaves", "1,2"],
            vec!["--address", "2"],
        ),
    ] {
        let mut args = vec!["simulate", role, "--port", b];
        args.extend(extra);
        let mut sim = Running::spawn(common::process::jkmon(dir.path(), &args));
        sim.wait_for_log(Duration::from_secs(20), "simulated");
        let mut read_args = vec!["read", "--json", "--timeout", "15"];
        read_args.extend(read_extra);
        let mut read = common::process::jkmon(dir.path(), &read_args);
        read.env("JK_BMS_TRANSPORT", transport)
            .env("JK_BMS_SERIAL_PORT", a)
            .env("JK_RS485_ADDRESSES", "1,2");
        reads_under_filter(transport, &read, &filter, 16);
    }

    // Bluetooth through BlueZ's D-Bus API, against the fake BlueZ with captured frames
    let corpus = common::corpus();
    let entry = |id: u64| corpus.iter().find(|e| e["id"] == id).unwrap();
    let fragments = |id| common::bluez::fragments(entry(id));
    let address = "C8:47:80:12:AD:71";
    let Some(fake) = common::bluez::FakeBluez::start(serde_json::json!({"devices": [{
        "address": address,
        "name": "JK_PB2A16S15P",
        "uuids": ["0000ffe0-0000-1000-8000-00805f9b34fb"],
        "device_info": fragments(92),
        "settings": fragments(93),
        "cell_info": [fragments(94)],
        "interval_ms": 100,
    }]})) else {
        return;
    };
    let read = fake.jkmon(&["read", "--json", "--address", address, "--timeout", "10"]);
    let cells = entry(94)["expected"]["cell_count"].as_u64().unwrap_or(16);
    reads_under_filter("ble", &read, &filter, cells);
}

#[test]
fn docker_compose_1_29_accepts_the_compose_file() {
    // what `apt install docker-compose` gives on Raspberry Pi OS and Debian 12; `config` reads
    // and validates the file without a Docker engine
    if !common::have_program("docker-compose", &["version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("docker-compose.yml"),
        dir.path().join("docker-compose.yml"),
    )
    .unwrap();
    let config = |dir: &Path| {
        Command::new("docker-compose")
            .args(["config", "-q"])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    // as the README says: `cp .env.example .env` first
    std::fs::copy(root().join(".env.example"), dir.path().join(".env")).unwrap();
    let out = config(dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the host's bluetooth group as the book says: its number in .env, the compose file names it
    let mut env = std::fs::read_to_string(dir.path().join(".env")).unwrap();
    env.push_str("BLUETOOTH_GID=112\n");
    std::fs::write(dir.path().join(".env"), env).unwrap();
    let with_group = read("docker-compose.yml").replace(
        "    # group_add:\n    #   - \"${BLUETOOTH_GID}\"\n",
        "    group_add:\n      - \"${BLUETOOTH_GID}\"\n",
    );
    assert_ne!(
        with_group,
        read("docker-compose.yml"),
        "the commented group_add is there"
    );
    std::fs::write(dir.path().join("docker-compose.yml"), &with_group).unwrap();
    let out = Command::new("docker-compose")
        .arg("config")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        shown.contains("group_add:") && shown.contains("'112'"),
        "{shown}"
    );
    // …where a shell substitution in the file itself is refused
    let shell = with_group.replace(
        "${BLUETOOTH_GID}",
        "$(getent group bluetooth | cut -d: -f3)",
    );
    std::fs::write(dir.path().join("docker-compose.yml"), shell).unwrap();
    let out = config(dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid interpolation"));
    // the check can fail: Compose v2's long env_file form is refused by 1.29
    let long = read("docker-compose.yml").replace(
        "    env_file: .env\n",
        "    env_file:\n      - path: .env\n        required: false\n",
    );
    std::fs::write(dir.path().join("docker-compose.yml"), long).unwrap();
    let out = config(dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("env_file"));
}

#[test]
fn the_dockerfiles_platform_step_picks_the_target_and_cross_compiler() {
    // the build stage's first RUN, run by sh with stand-ins for rustc, apt-get and rustup
    let d = read("Dockerfile");
    let start = d.find("RUN set -eu;").unwrap() + "RUN ".len();
    let end = d[start..].find("mkdir -p /out/home").unwrap() + start;
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().display().to_string();
    let script = d[start..end]
        .replace("\\\n", " ")
        .replace("/rust-target", &format!("{tmp}/rust-target"));
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, body) in [
        ("rustc", "echo 'host: x86_64-unknown-linux-gnu'"),
        ("apt-get", "echo \"apt-get $*\" >> \"$LOG\""),
        ("rustup", "echo \"rustup $*\" >> \"$LOG\""),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = |arch: &str, variant: &str| {
        let log = dir.path().join("log");
        let _ = std::fs::remove_file(&log);
        let out = Command::new("sh")
            .args(["-c", &format!("{script} true")])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("LOG", &log)
            .env("TARGETARCH", arch)
            .env("TARGETVARIANT", variant)
            .output()
            .unwrap();
        let target = std::fs::read_to_string(dir.path().join("rust-target")).unwrap_or_default();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        (
            out.status.success(),
            target.trim().to_string(),
            log,
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // this machine's own platform: no cross compiler, no extra target
    let (ok, target, log, _) = run("amd64", "");
    assert!(
        ok && target == "x86_64-unknown-linux-gnu" && log.is_empty(),
        "{log}"
    );
    // the classic builder sets nothing: the machine's own
    let (ok, target, _, _) = run("", "");
    assert!(ok && target == "x86_64-unknown-linux-gnu");
    for (arch, variant, triple, gcc) in [
        (
            "arm64",
            "",
            "aarch64-unknown-linux-gnu",
            "gcc-aarch64-linux-gnu",
        ),
        (
            "arm64",
            "v8",
            "aarch64-unknown-linux-gnu",
            "gcc-aarch64-linux-gnu",
        ),
        (
            "arm",
            "v7",
            "armv7-unknown-linux-gnueabihf",
            "gcc-arm-linux-gnueabihf",
        ),
    ] {
        let (ok, target, log, stderr) = run(arch, variant);
        assert!(ok, "{arch}/{variant}: {stderr}");
        assert_eq!(target, triple);
        assert!(
            log.contains(gcc) && log.contains(&format!("rustup target add {triple}")),
            "{log}"
        );
    }
    // a platform it cannot build is refused by name
    let (ok, _, _, stderr) = run("arm", "v6");
    assert!(!ok && stderr.contains("not linux/arm/v6"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_the_inverter_through_its_dongle_or_names_what_to_fix() {
    use jkmon::inverter::registers::SMG_II_6K;
    use jkmon::transport::sim::dongle::{SimDongle, SimDongleConfig};
    let dir = tempfile::tempdir().unwrap();
    let doctor = |udp_port: u16| {
        let mut cmd = jkmon(
            dir.path(),
            &["doctor"],
            &[
                ("JK_BMS_TRANSPORT", "sim"),
                ("WEB_BIND", "127.0.0.1:0"),
                ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
                ("INVERTER_TRANSPORT", "dongle"),
                ("INVERTER_IP", "127.0.0.1"),
                ("LOCAL_IP", "127.0.0.1"),
                ("INVERTER_MODEL", "ISOLAR_SMG_II_6K"),
                ("INVERTER_LISTEN_PORT", "0"),
            ],
        );
        cmd.env("INVERTER_UDP_PORT", udp_port.to_string());
        // the simulated dongle runs on this test's runtime while doctor runs
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
    };
    let sim = SimDongle::start(SimDongleConfig::new(&SMG_II_6K))
        .await
        .unwrap();
    let out = doctor(sim.udp_addr.port()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("✔ inverter: the dongle at 127.0.0.1 connected back to 127.0.0.1:")
            && text.contains(
                "34 registers from 201 read and checked (ISOLAR_SMG_II_6K), mode on mains"
            ),
        "{text}"
    );
    // a dongle that takes the announcement but never dials back: the port, LOCAL_IP, the fix
    let mut config = SimDongleConfig::new(&SMG_II_6K);
    config.dial_back = false;
    let silent = SimDongle::start(config).await.unwrap();
    let out = doctor(silent.udp_addr.port()).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("✘ inverter: the dongle at 127.0.0.1:")
            && text.contains("did not connect back")
            && text.contains("LOCAL_IP (127.0.0.1)")
            && text.contains("firewall"),
        "{text}"
    );
}

/// A wired inverter: `jkmon simulate modbus-tcp` plays a gateway, `jkmon doctor` reads one block
/// through it; with nothing there, the gateway is named with the variables to check.
#[test]
fn doctor_reads_a_wired_inverter_through_a_modbus_tcp_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let doctor = || {
        jkmon(
            dir.path(),
            &["doctor"],
            &[
                ("JK_BMS_TRANSPORT", "sim"),
                ("WEB_BIND", "127.0.0.1:0"),
                ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
                ("INVERTER_TRANSPORT", "tcp"),
                ("INVERTER_IP", "127.0.0.1"),
                ("MODBUS_PORT", &port.to_string()),
                ("INVERTER_MODEL", "ISOLAR_SMG_II_11K"),
            ],
        )
        .output()
        .unwrap()
    };
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains(&format!(
            "✘ inverter: cannot connect to the Modbus TCP gateway at 127.0.0.1:{port}"
        )) && text.contains("MODBUS_PORT"),
        "{text}"
    );
    let mut gateway = Running::spawn({
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jkmon"));
        cmd.args([
            "simulate",
            "modbus-tcp",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--fixed",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        cmd
    });
    gateway.wait_for_log(Duration::from_secs(10), "behind a Modbus TCP gateway");
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("✔ inverter: Modbus TCP to 127.0.0.1:{port}; 3 registers from 201 read and checked (ISOLAR_SMG_II_11K), mode on mains"))
            && text.contains("✔ readings: jkmon polls the inverter itself"),
        "{text}"
    );
    gateway.signal("TERM");
    assert!(gateway.wait_exit(Duration::from_secs(10)).success());
}

/// Every shell script of the repository (the scripts, the package's maintainer scripts, CI's
/// entry) passes shellcheck.
#[test]
fn every_shell_script_passes_shellcheck() {
    if !common::have_program("shellcheck", &["--version"]) {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut scripts: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["scripts", "packaging/debian", ".ci"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = e.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.starts_with("#!")
                && (text.contains("sh\n") || path.extension().is_some_and(|x| x == "sh"))
            {
                scripts.push(path);
            }
        }
    }
    assert!(scripts.len() >= 15, "{scripts:?}");
    let out = std::process::Command::new("shellcheck")
        .args(&scripts)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The runtime image, emulated in a minimal Debian 12 root (what `debian:12-slim` is: tzdata in
/// UTC) with jkmon where the Dockerfile puts it: alone it counts days in UTC and says so; with
/// the compose file's mount of the host's /etc/localtime (here a host in Berlin) it counts in
/// the host's zone, and `TZ` in .env chooses another.
#[test]
fn the_container_counts_days_in_the_hosts_time_zone() {
    let Some(root) = crate::package::Root::fresh() else {
        return;
    };
    let compose = read("docker-compose.yml");
    assert!(compose.contains("- /etc/localtime:/etc/localtime:ro"));
    std::fs::copy(
        env!("CARGO_BIN_EXE_jkmon"),
        root.file("/usr/local/bin/jkmon"),
    )
    .unwrap();
    let port = common::free_port().to_string();
    let doctor = |tz: Option<&str>| -> String {
        let mut args = vec![
            "env".to_string(),
            "DB_PATH=/var/lib/jkmon/inverter.db".into(),
            format!("WEB_BIND=127.0.0.1:{port}"),
            "JK_BMS_TRANSPORT=sim".into(),
        ];
        if let Some(tz) = tz {
            args.push(format!("TZ={tz}"));
        }
        args.push("jkmon".into());
        args.push("doctor".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = root.run(&args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .find(|l| l.contains("time zone:"))
            .unwrap_or_else(|| {
                panic!(
                    "no time zone line:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_string()
    };
    let offset = |zone: &str| -> String {
        let out = root.run(&["env", &format!("TZ={zone}"), "date", "+%:z"]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    std::fs::create_dir_all(root.file("/var/lib/jkmon")).unwrap();
    let alone = doctor(None);
    assert!(
        alone.contains("UTC+00:00") && alone.contains("set TZ"),
        "{alone}"
    );
    // the mount: the host's zone file in place of the image's link
    std::fs::remove_file(root.file("/etc/localtime")).unwrap();
    std::fs::copy(
        root.file("/usr/share/zoneinfo/Europe/Berlin"),
        root.file("/etc/localtime"),
    )
    .unwrap();
    let berlin = offset("Europe/Berlin");
    let mounted = doctor(None);
    assert!(mounted.contains(&format!("UTC{berlin} now")), "{mounted}");
    assert!(!mounted.contains("set TZ"), "{mounted}");
    let chosen = doctor(Some("America/New_York"));
    let new_york = offset("America/New_York");
    assert!(
        chosen.contains("America/New_York") && chosen.contains(&format!("UTC{new_york} now")),
        "{chosen}"
    );
}
