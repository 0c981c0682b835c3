//! `.env.example` documents exactly the variables jkmon reads, and works as it is.

use crate::common;
use std::collections::BTreeSet;

#[test]
fn env_example_lists_exactly_the_variables_the_code_reads() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example")).unwrap();
    // `NAME=value`, or `# NAME=value` for a setting left at its default until it matters
    let documented: BTreeSet<&str> = text
        .lines()
        .map(|l| l.trim_start().trim_start_matches('#').trim_start())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    let read: BTreeSet<&str> = jkmon::config::VARIABLES
        .iter()
        .chain(jkmon::cli::VARIABLES)
        .copied()
        .collect();
    assert_eq!(documented, read);
    // and every value in the example is one the config accepts
    let pairs: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    jkmon::config::Config::from_lookup(|k| {
        pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .expect(".env.example is a valid configuration");
}

/// `cp .env.example .env` as the README says, and the service starts cleanly: no warning, and
/// the INFO lines an owner reads (the database, the web server, the first commit).
#[test]
fn the_example_copied_as_it_is_starts_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/.env.example"),
        dir.path().join(".env"),
    )
    .unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_jkmon"));
    cmd.args(["run", "--demo"])
        .current_dir(dir.path())
        .env_remove("JK_BMS_ADDRESS")
        .env_remove("JK_BMS_NAMES")
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        // loopback and a free port instead of the example's 0.0.0.0:8000
        .env("WEB_BIND", "127.0.0.1:0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut run = common::process::Running::spawn(cmd);
    run.wait_for_log(std::time::Duration::from_secs(30), "merged into readings #");
    run.signal("TERM");
    assert!(run.wait_exit(std::time::Duration::from_secs(20)).success());
    run.drain_stderr();
    let noisy: Vec<&String> = run
        .stderr_seen
        .iter()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(noisy.is_empty(), "{noisy:#?}");
    assert!(
        run.stderr_seen
            .iter()
            .any(|l| l.contains("web: listening on")),
        "the service's INFO lines: {:#?}",
        run.stderr_seen
    );
}
