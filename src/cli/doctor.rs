//! `jkmon doctor`: a checklist of what jkmon needs, each failure with its fix — the
//! configuration, the database, D-Bus and the Bluetooth adapter, every configured BMS in a
//! short scan, the inverter's dongle, the Telegram token, the web port. Changes nothing; exit 0 when all is well.

use std::process::ExitCode;
use std::time::Duration;

use super::DoctorArgs;
use crate::config::Config;
use crate::store::migrate;
use crate::transport::ble::Bluetooth;
use crate::transport::TransportKind;

struct Report {
    failed: usize,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("✔ {what}: {}", detail.as_ref());
    }
    fn fail(&mut self, what: &str, problem: impl AsRef<str>) {
        self.failed += 1;
        println!("✘ {what}: {}", problem.as_ref());
    }
    fn skip(&mut self, what: &str, why: &str) {
        println!("· {what}: {why}");
    }
    /// Works, but not as the owner may think: said, not counted as a failure.
    fn note(&mut self, what: &str, detail: impl AsRef<str>) {
        println!("! {what}: {}", detail.as_ref());
    }
}

/// The checks in the order `jkmon doctor` prints them: the sequence is the report.
pub fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report { failed: 0 };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            r.fail("configuration", format!("{e}"));
            println!("\n1 problem: fix the configuration first (see .env.example)");
            return Ok(ExitCode::FAILURE);
        }
    };
    let batteries = batteries(&mut r, &config);
    database(&mut r, &config);
    time_zone(&mut r);
    let runtime = super::runtime()?;
    runtime.block_on(async {
        link(
            &mut r,
            &config,
            &batteries,
            Duration::from_secs(args.scan_timeout),
        )
        .await;
        inverter(&mut r, &config).await;
        telegram(&mut r, &config).await;
        mqtt(&mut r, &config).await;
        influx(&mut r, &config).await;
    });
    match std::net::TcpListener::bind(config.web.bind) {
        Ok(_) => r.ok("web port", format!("{} is free", config.web.bind)),
        Err(e) => r.fail(
            "web port",
            format!(
                "{} cannot be used ({e}): is jkmon already running (`systemctl status jkmon`)? Otherwise set WEB_BIND to a free port",
                config.web.bind
            ),
        ),
    }
    if r.failed == 0 {
        println!("\nAll checks passed.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\n{} problem(s), each with its fix above.", r.failed);
        Ok(ExitCode::FAILURE)
    }
}

/// The batteries the configuration names (with where it found them), or none.
fn batteries(r: &mut Report, config: &Config) -> Vec<crate::config::BatteryConfig> {
    match config.batteries() {
        Ok(b) => {
            r.ok(
                "configuration",
                format!(
                    "valid; {} BMS(s): {}{}",
                    b.len(),
                    b.iter()
                        .map(|b| b.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    match config.battery_source() {
                        Ok((from, _)) => format!(" (from {from})"),
                        Err(_) => String::new(),
                    }
                ),
            );
            if let Ok((_, Some(unused))) = config.battery_source() {
                r.note("batteries", unused);
            }
            b
        }
        Err(e) => {
            r.fail("configuration", e.to_string());
            Vec::new()
        }
    }
}

/// The time zone "today" counts in (the energy of a day, the bot's /energy): its name where
/// one is known (`TZ`, `/etc/timezone`, the `/etc/localtime` link) and its offset now. A
/// container without the host's zone counts in UTC, which the line then says.
fn time_zone(r: &mut Report) {
    let name = std::env::var("TZ")
        .ok()
        .filter(|z| !z.is_empty())
        .map(|z| z.trim_start_matches(':').to_string())
        .or_else(|| {
            std::fs::read_link("/etc/localtime").ok().and_then(|p| {
                let p = p.to_string_lossy().into_owned();
                p.split_once("zoneinfo/").map(|(_, z)| z.to_string())
            })
        })
        .or_else(|| {
            std::fs::read_to_string("/etc/timezone")
                .ok()
                .map(|z| z.trim().to_string())
        })
        .unwrap_or_else(|| "the system's".into());
    let now = chrono::Local::now();
    let offset = now.format("%:z");
    let mut detail = format!("{name} (UTC{offset} now; days count from local midnight)");
    if offset.to_string() == "+00:00" {
        detail.push_str(
            "; if that is not the battery's zone, set TZ (e.g. TZ=Europe/Berlin) or, in Docker, mount /etc/localtime",
        );
    }
    r.ok("time zone", detail);
}

/// The link to the BMSs: Bluetooth (a scan), the serial port (it opens), or none to check.
async fn link(
    r: &mut Report,
    config: &Config,
    batteries: &[crate::config::BatteryConfig],
    scan_timeout: Duration,
) {
    if config.transport == TransportKind::Ble {
        bluetooth(r, batteries, scan_timeout).await;
    } else if let (TransportKind::Serial | TransportKind::Rs485, Some(port)) =
        (config.transport, &config.wire.port)
    {
        // the wired transports (a port set for them is not checked while they are not used): the port must open (answers are `jkmon read`'s business)
        match crate::transport::serial::open(port) {
            Ok(_) => r.ok(
                "serial port",
                format!(
                    "{} opens at {} baud; `jkmon read` shows whether the BMS answers",
                    port.path.display(),
                    port.baud
                ),
            ),
            Err(e) => r.fail("serial port", e.to_string()),
        }
    } else {
        r.skip(
            "Bluetooth",
            &format!("not used (JK_BMS_TRANSPORT={})", config.transport.as_str()),
        );
    }
}

fn database(r: &mut Report, config: &Config) {
    let path = crate::service::database_path(config, false);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    if !dir.is_dir() {
        r.fail(
            "database",
            format!(
                "the directory {} does not exist: mkdir -p {0} (or set DB_PATH)",
                dir.display()
            ),
        );
        return;
    }
    let probe = dir.join(format!(".jkmon-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) => {
            r.fail(
                "database",
                format!(
                    "{} is not writable for this user ({e}): chown it to the user jkmon runs as",
                    dir.display()
                ),
            );
            return;
        }
    }
    if !path.exists() {
        r.ok(
            "database",
            format!("{} will be created at the first start", path.display()),
        );
        readings(r, &path, own_rows(config));
        return;
    }
    match rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| e.to_string())
        .and_then(|c| migrate::current(&c).map_err(|e| e.to_string()))
    {
        Ok(v) if v == migrate::latest() => r.ok(
            "database",
            format!("{} is writable, schema current ({v})", path.display()),
        ),
        Ok(v) if v < migrate::latest() => r.ok(
            "database",
            format!(
                "{}: schema {v}, jkmon brings it to {} at the next start",
                path.display(),
                migrate::latest()
            ),
        ),
        Ok(v) => r.fail(
            "database",
            format!(
                "{} was set up by a newer jkmon (schema {v}): upgrade jkmon",
                path.display()
            ),
        ),
        Err(e) => r.fail(
            "database",
            format!("{} cannot be read: {e}", path.display()),
        ),
    }
    readings(r, &path, own_rows(config));
}

/// What the service will take for `JKMON_OWN_ROWS`: with its own inverter poller, every row it
/// writes is an inverter row.
fn own_rows(config: &Config) -> crate::store::OwnRows {
    match config.inverter {
        Some(_) => crate::store::OwnRows::OwnPoller,
        None => config.store.own_rows,
    }
}

/// What jkmon will do to the inverter monitor's `readings` table, and why.
fn readings(r: &mut Report, path: &std::path::Path, setting: crate::store::OwnRows) {
    const NEW: &str = "the table is created at the first start; until an inverter writes into it, jkmon inserts rows of its own (JKMON_OWN_ROWS=off never does)";
    use crate::store::readings::decide;
    // only `auto` looks at the table; the other settings decide alone
    let decided = if setting == crate::store::OwnRows::Auto {
        if !path.exists() {
            r.ok("readings", NEW);
            return;
        }
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| decide(&c, setting))
    } else {
        rusqlite::Connection::open_in_memory().and_then(|c| decide(&c, setting))
    };
    match decided {
        Ok(d) => r.ok("readings", d.why),
        Err(e) if e.to_string().contains("no such table") => r.ok("readings", NEW),
        Err(e) => r.fail(
            "readings",
            format!("{} cannot be read: {e}", path.display()),
        ),
    }
}

async fn bluetooth(r: &mut Report, batteries: &[crate::config::BatteryConfig], scan: Duration) {
    let bt = match Bluetooth::open().await {
        Ok(bt) => {
            r.ok(
                "D-Bus and BlueZ",
                "the system bus answers; the adapter is present and powered",
            );
            bt
        }
        Err(e) => {
            r.fail("D-Bus and BlueZ", e.to_string());
            return;
        }
    };
    match bt.scan(scan, |_| {}).await {
        Ok(found) => {
            for b in batteries {
                let Some(address) = b.address else { continue };
                match found.iter().find(|f| f.address == address) {
                    Some(f) => r.ok(
                        &format!("BMS {}", b.name),
                        format!(
                            "{address} seen{}",
                            f.rssi_dbm.map(|d| format!(" at {d} dBm")).unwrap_or_default()
                        ),
                    ),
                    None => r.fail(
                        &format!("BMS {}", b.name),
                        format!(
                            "{address} not seen in {:.0} s: out of range or asleep, the JK phone app holds it (force-close the app), or the address is wrong (`jkmon scan` lists what is there)",
                            scan.as_secs_f64()
                        ),
                    ),
                }
            }
        }
        Err(e) => r.fail("Bluetooth scan", e.to_string()),
    }
}

/// The inverter through its link: for the dongle listening, the announcement, the dial-back;
/// for Modbus the port or the gateway; then one block read and checked.
async fn inverter(r: &mut Report, config: &Config) {
    use crate::inverter::{payload, registers};
    use crate::transport::inverter::{Link, LinkConfig};
    let Some(inverter) = &config.inverter else {
        r.skip(
            "inverter",
            "not read by jkmon (INVERTER_TRANSPORT=none): another program writes readings",
        );
        return;
    };
    let mut link_config = inverter.link.clone();
    if let LinkConfig::Dongle(d) = &mut link_config {
        d.dial_back_timeout = Duration::from_secs(20);
    }
    let mut link = match Link::open(&link_config).await {
        Ok(l) => l,
        Err(e) => return r.fail("inverter", e.to_string()),
    };
    let Some(&block) = registers::blocks(inverter.model).first() else {
        return;
    };
    match link.read(block.start, block.count).await {
        Ok(regs) => {
            let values = registers::decode(inverter.model, &[(block, regs)]).values;
            let mode =
                payload::mode(&values).map_or_else(|| "not in this block".into(), |m| m.describe());
            let how = match &link {
                crate::transport::inverter::Link::Dongle(d) => format!(
                    "the dongle at {} connected back to {}",
                    d.config().dongle.ip(),
                    d.listen_addr()
                ),
                other => other.describe(),
            };
            r.ok(
                "inverter",
                format!(
                    "{how}; {} registers from {} read and checked ({}), mode {mode}",
                    block.count, block.start, inverter.model.key,
                ),
            );
        }
        Err(e) => r.fail("inverter", e.to_string()),
    }
}

async fn mqtt(r: &mut Report, config: &Config) {
    let Some(mqtt) = &config.mqtt else {
        r.skip("MQTT", "not configured (MQTT_URL is empty)");
        return;
    };
    match crate::mqtt::client::probe(mqtt, Duration::from_secs(10)).await {
        Ok(()) => r.ok(
            "MQTT",
            format!(
                "{} accepts jkmon; topics under {}/, discovery {}",
                mqtt.broker,
                mqtt.base,
                mqtt.discovery_prefix
                    .as_deref()
                    .map_or_else(|| "off".to_string(), |p| format!("under {p}/"))
            ),
        ),
        Err(e) => r.fail("MQTT", format!("{}: {e}", mqtt.broker)),
    }
}

/// An empty write: InfluxDB checks the credentials, the permission and the database or
/// bucket, and no point is added.
async fn influx(r: &mut Report, config: &Config) {
    use crate::influx::client::{Client, Outcome};
    let Some(influx) = &config.influx else {
        r.skip("InfluxDB", "not configured (INFLUX_URL is empty)");
        return;
    };
    match Client::new(influx).check().await {
        Outcome::Written => r.ok(
            "InfluxDB",
            format!("jkmon may write to the {}", influx.describe()),
        ),
        Outcome::Refused(refusal) => r.fail("InfluxDB", refusal.to_string()),
        Outcome::Away(why) | Outcome::Rejected(why) => r.fail(
            "InfluxDB",
            format!(
                "{}: {why} (is InfluxDB running, and INFLUX_URL its address?)",
                influx.url
            ),
        ),
    }
}

async fn telegram(r: &mut Report, config: &Config) {
    let Some(bot) = &config.bot else {
        r.skip("Telegram", "not configured (TELEGRAM_BOT_TOKEN is empty)");
        return;
    };
    let client = match bot.bot() {
        Ok(c) => c,
        Err(e) => {
            r.fail("Telegram", e);
            return;
        }
    };
    use teloxide::payloads::GetUpdatesSetters;
    use teloxide::prelude::Requester;
    use teloxide::requests::Request;
    match tokio::time::timeout(Duration::from_secs(10), client.get_me()).await {
        Ok(Ok(me)) => r.ok(
            "Telegram",
            format!("the token is accepted: @{}", me.username()),
        ),
        Ok(Err(teloxide::RequestError::Api(e))) => r.fail(
            "Telegram",
            format!(
                "the Bot API refused the token ({}): copy it again from @BotFather",
                bot.redact(&e.to_string())
            ),
        ),
        Ok(Err(e)) => r.skip(
            "Telegram",
            &format!(
                "{} is not reachable from here ({}); the token was not checked",
                bot.api_url,
                bot.redact(&e.to_string())
            ),
        ),
        Err(_) => r.skip(
            "Telegram",
            "no answer within 10 s; the token was not checked",
        ),
    }
    // a second getUpdates poller on this token (the Python monitor's bot) shows up as a 409
    // within a short long-poll; nothing is confirmed, so no message is taken from it
    let poll = client.get_updates().timeout(3).limit(1);
    match tokio::time::timeout(Duration::from_secs(10), poll.send()).await {
        Ok(Err(e)) if crate::telegram::is_conflict(&e) => {
            r.fail("Telegram", crate::telegram::CONFLICT_FIX)
        }
        Ok(Ok(_)) => r.ok(
            "Telegram",
            "no other program polled this token within 3 s (one bot per token)",
        ),
        _ => {}
    }
    if bot.chat_id.is_none() {
        r.fail(
            "Telegram",
            "TELEGRAM_CHAT_ID is empty: alerts have nowhere to go (send /chatid to the bot)",
        );
    }
}
