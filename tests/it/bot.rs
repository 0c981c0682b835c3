//! The real `jkmon` binary's bot and alerts against a fake Bot API on 127.0.0.1, on a database
//! the store wrote: the commands and their values, a chat that is not allowed, Refresh, a
//! hostile battery name, alerts sent once (Telegram, webhook, command) and not again after a
//! restart, and a slow Bot API that does not slow the BMS side down.

use crate::common;
use std::path::Path;
use std::time::Duration;

use common::fake_telegram::FakeTelegram;
use common::process::Running;
use jkmon::battery::soc::{estimator, SocSource, VoltageCurve};
use jkmon::battery::Snapshot;
use jkmon::protocol::CellInfo;
use jkmon::store::{Battery, Store, StoreConfig};
use serde_json::Value;

const NAME: &str = "<b>& Garage";
const ADDRESS: &str = "C8:47:80:00:00:01";
const TOKEN: &str = "123456:SECRET-TOKEN-abc";

/// 8 cells from `base_mv` up, −12.5 A.
fn snapshot(base_mv: u32) -> Snapshot {
    let mut c = CellInfo::example();
    c.cell_voltages_uv = (0..8).map(|i| (base_mv + i * 2) * 1000).collect();
    c.cell_resistances_uohm = vec![60_000; 8];
    c.total_voltage_mv = c.cell_voltages_uv.iter().sum::<u32>() / 1000;
    c.current_ma = Some(-12_500);
    c.soc_pct = Some(64);
    c.alarms.bits = 0; // no BMS alarm: only the cell level decides here
    Snapshot::new(
        c,
        None,
        None,
        estimator(SocSource::Bms, &VoltageCurve::default()).as_ref(),
    )
}

fn battery() -> Battery {
    Battery {
        position: 1,
        name: NAME.into(),
        address: Some(ADDRESS.into()),
    }
}

/// Writes a fresh snapshot with cells from `base_mv`, as the writer would.
fn commit(path: &Path, base_mv: u32) {
    let mut store = Store::open(path, StoreConfig::default()).unwrap();
    store.register(&[battery()], 0).unwrap();
    store
        .set_state(1, jkmon::session::State::Streaming, "", 0)
        .unwrap();
    common::commit_one(&mut store, 1, &snapshot(base_mv));
    store.close().unwrap();
}

fn jkmon(args: &[&str], dir: &Path, env: &[(&str, &str)]) -> Running {
    let mut cmd = common::process::jkmon(dir, args);
    cmd.env("JK_BMS_ADDRESS", ADDRESS)
        .env("JK_BMS_NAMES", NAME)
        .env("DB_PATH", dir.join("inverter.db"))
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .envs(env.iter().copied());
    Running::spawn(cmd)
}

fn text(v: &Value) -> String {
    v["text"].as_str().unwrap_or_default().to_string()
}

/// `jkmon bot` with `env` on a database holding one fresh snapshot (cells from 3.300 V), against
/// a fake Bot API.
async fn bot_on_a_fresh_snapshot(
    env: &[(&str, &str)],
) -> (tempfile::TempDir, FakeTelegram, Running) {
    let dir = tempfile::tempdir().unwrap();
    commit(&dir.path().join("inverter.db"), 3_300);
    let api = FakeTelegram::start(Duration::ZERO).await;
    let url = api.url();
    let mut env = env.to_vec();
    env.push(("TELEGRAM_API_URL", &url));
    let bot = jkmon(&["bot"], dir.path(), &env);
    (dir, api, bot)
}

/// Refresh on a message that would not change: Telegram answers "message is not modified",
/// and the bot still answers the button press rather than leave it spinning.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_of_an_unchanged_message_is_still_answered() {
    let (_dir, mut api, mut bot) = bot_on_a_fresh_snapshot(&[("TELEGRAM_CHAT_ID", "42")]).await;
    let limit = Duration::from_secs(20);
    api.not_modified(true);
    api.press(42, 7, "refresh:status");
    api.wait("editmessagetext-not-modified", limit, |b| {
        b["chat_id"] == 42
    })
    .await;
    let answer = api.wait("answercallbackquery", limit, |_| true).await;
    assert_eq!(answer["text"], "✅ Updated", "{answer}");
    bot.signal("TERM");
    assert!(bot.wait_exit(limit).success());
}

/// `jkmon bot` beside a `jkmon run` elsewhere needs no BMS of its own: `/status` shows the
/// batteries the database holds.
#[tokio::test(flavor = "multi_thread")]
async fn the_bot_with_no_bms_configured_shows_the_batteries_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    commit(&dir.path().join("inverter.db"), 3_300);
    let mut api = FakeTelegram::start(Duration::ZERO).await;
    let url = api.url();
    let mut cmd = common::process::jkmon(dir.path(), &["bot"]);
    cmd.env("DB_PATH", dir.path().join("inverter.db"))
        .env("JK_BMS_TRANSPORT", "ble")
        .env("JK_DEVICES_FILE", "none.yaml")
        .env("TELEGRAM_BOT_TOKEN", TOKEN)
        .env("TELEGRAM_API_URL", &url)
        .env("TELEGRAM_CHAT_ID", "42");
    let mut bot = Running::spawn(cmd);
    api.message(42, "/status");
    let m = api
        .wait("sendmessage", Duration::from_secs(20), |b| {
            b["chat_id"] == 42
        })
        .await;
    let t = text(&m);
    assert!(
        t.contains("<b>🔋 &lt;b&gt;&amp; Garage</b> — online"),
        "{t}"
    );
    assert!(t.contains("SOC 64 % · 26.46 V · -12.50 A"), "{t}");
    bot.signal("TERM");
    assert!(bot.wait_exit(Duration::from_secs(10)).success());
}

/// `/energy`: today's and yesterday's counts as the writer stored them, today first, and the
/// inverter's absence said rather than shown as zeros.
#[tokio::test(flavor = "multi_thread")]
async fn energy_answers_today_and_yesterday_from_the_stored_counts() {
    let (dir, mut api, mut bot) = bot_on_a_fresh_snapshot(&[("TELEGRAM_CHAT_ID", "42")]).await;
    // what the writer's commits left: 2.5 kWh charged yesterday; 1.234 in, 0.5 out today
    let today = chrono::Local::now().date_naive();
    let mut pending = jkmon::store::energy::Pending::default();
    let e = |c: f64, d: f64| jkmon::battery::energy::Energy {
        charged_wh: c,
        discharged_wh: d,
    };
    pending
        .days
        .insert(today.pred_opt().unwrap(), e(2_500.0, 0.0));
    pending.days.insert(today, e(1_234.0, 500.0));
    {
        let mut store =
            Store::open(&dir.path().join("inverter.db"), StoreConfig::default()).unwrap();
        store.register(&[battery()], 0).unwrap();
        common::commit_with_energy(&mut store, 1, &snapshot(3_300), &pending);
        store.close().unwrap();
    }
    let limit = Duration::from_secs(20);
    api.message(42, "/energy");
    let m = api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await;
    let t = text(&m);
    let today_at = t.find(&format!("<b>Today</b> ({today})")).expect(&t);
    let yesterday_at = t.find("<b>Yesterday</b>").expect(&t);
    assert!(today_at < yesterday_at, "{t}");
    assert!(
        t[today_at..yesterday_at].contains("Batteries: 1.23 kWh charged · 0.50 kWh discharged"),
        "{t}"
    );
    assert!(
        t[yesterday_at..].contains("Batteries: 2.50 kWh charged · 0.00 kWh discharged"),
        "{t}"
    );
    assert!(t.contains("Inverter: no data"), "{t}");
    assert_eq!(
        m["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "refresh:energy"
    );
    // and /status has today's line
    api.message(42, "/status");
    let t = text(&api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await);
    assert!(t.contains("Today: 1.23 kWh in · 0.50 kWh out"), "{t}");
    bot.signal("TERM");
    assert!(bot.wait_exit(limit).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn commands_answer_with_the_values_only_to_allowed_chats() {
    let (_dir, mut api, mut bot) = bot_on_a_fresh_snapshot(&[
        ("TELEGRAM_CHAT_ID", "42"),
        ("TELEGRAM_ALLOWED_CHAT_IDS", "43, 44"),
    ])
    .await;
    let limit = Duration::from_secs(20);

    // the command menu Telegram shows under "/"
    let menu = api.wait("setmycommands", limit, |_| true).await;
    let names: Vec<&str> = menu["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["command"].as_str())
        .collect();
    for c in ["status", "battery", "cells", "energy", "chatid", "help"] {
        assert!(names.contains(&c), "{menu}");
    }
    assert!(menu["commands"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| !c["description"].as_str().unwrap_or("").is_empty()));

    api.message(42, "/status");
    let m = api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await;
    let t = text(&m);
    assert_eq!(m["parse_mode"], "HTML");
    assert!(
        t.contains("<b>🔋 &lt;b&gt;&amp; Garage</b> — online"),
        "{t}"
    );
    // 8 cells 3.300 … 3.314 V = 26.456 V; −12.5 A; SOC from the BMS 64 %
    assert!(t.contains("SOC 64 % · 26.46 V · -12.50 A"), "{t}");
    assert!(t.contains("Grid: unknown (no inverter data)"), "{t}");
    assert_eq!(
        m["reply_markup"]["inline_keyboard"][0][0]["callback_data"],
        "refresh:status"
    );

    api.message(43, "/battery");
    let t = text(&api.wait("sendmessage", limit, |b| b["chat_id"] == 43).await);
    assert!(
        t.contains("Cells: min 3.300 V (#1) · max 3.314 V (#8) · delta 14 mV"),
        "{t}"
    );
    assert!(t.contains("Current: -12.50 A (discharging)"), "{t}");

    api.message(44, "/cells@jkmon_bot");
    let t = text(&api.wait("sendmessage", limit, |b| b["chat_id"] == 44).await);
    assert!(t.contains(" 1:3.300▼") && t.contains(" 8:3.314▲"), "{t}");

    // a chat that is not allowed: one refusal with its id, no data
    api.message(99, "/status");
    let refusal = text(&api.wait("sendmessage", limit, |b| b["chat_id"] == 99).await);
    assert!(refusal.contains("Your chat id is 99"), "{refusal}");
    assert!(
        !refusal.contains("SOC") && !refusal.contains("Garage"),
        "{refusal}"
    );

    // Refresh edits the message in place
    api.press(42, 7, "refresh:battery");
    let edit = api
        .wait("editmessagetext", limit, |b| b["chat_id"] == 42)
        .await;
    assert_eq!(edit["message_id"], 7);
    assert!(text(&edit).contains("Cells: min 3.300 V"), "{edit}");
    api.wait("answercallbackquery", limit, |_| true).await;

    // nothing more went to chat 99, and the token is in no log line
    api.message(42, "/chatid");
    let id = text(&api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await);
    assert!(id.contains("<code>42</code>"), "{id}");
    let to_99 = api
        .drain()
        .iter()
        .filter(|(m, b)| m == "sendmessage" && b["chat_id"] == 99)
        .count();
    assert_eq!(to_99, 1);
    bot.drain_stderr();
    assert!(
        !bot.stderr_seen.iter().any(|l| l.contains("SECRET-TOKEN")),
        "{:?}",
        bot.stderr_seen
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_are_sent_once_everywhere_and_not_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    commit(&db, 3_300);
    let mut api = FakeTelegram::start(Duration::ZERO).await;
    let url = api.url();
    let hook = format!("{url}/hook");
    let out = dir.path().join("command.env");
    let command = format!("env | grep ^JKMON_ALERT_ | sort >> '{}'", out.display());
    let env = [
        ("TELEGRAM_API_URL", url.as_str()),
        ("TELEGRAM_CHAT_ID", "42"),
        ("ALERT_WEBHOOK_URL", hook.as_str()),
        ("ALERT_COMMAND", command.as_str()),
        ("BMS_CELL_LEVELS", "3.0,3.1"),
        ("ALERT_CHECK_SEC", "0.2"),
    ];
    let limit = Duration::from_secs(20);
    let mut bot = jkmon(&["bot"], dir.path(), &env);
    bot.wait_for_log(limit, "bot: @jkmon_bot answers");
    // the alert rules have looked once (their state is saved): the battery is normal
    let looked = tokio::task::block_in_place(|| {
        let conn = rusqlite::Connection::open(&db).unwrap();
        (0..2_000).any(|_| {
            let saved: Option<String> = conn
                .query_row("SELECT state FROM alert_state", [], |r| r.get(0))
                .ok();
            let normal = saved
                .and_then(|s| serde_json::from_str::<Value>(&s).ok())
                .is_some_and(|v| v["subjects"]["battery1.level"]["state"] == "normal");
            if normal {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
            false
        })
    });
    assert!(looked, "the alert rules never looked at the battery");

    // the lowest cell falls to 2.950 V: one message, one webhook POST, one command run
    commit(&db, 2_950);
    let m = api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await;
    let t = text(&m);
    assert!(
        t.contains("battery low: lowest cell 2.950 V (below 3.000 V)"),
        "{t}"
    );
    assert!(t.contains("&lt;b&gt;&amp; Garage"), "escaped: {t}");
    let h = api.wait("hook", limit, |_| true).await;
    assert_eq!(h["subject"], "battery1.level");
    assert_eq!(h["from"], "normal");
    assert_eq!(h["to"], "low");
    assert_eq!(h["battery_name"], NAME);
    bot.wait_for_log(limit, "ALERT_COMMAND for battery1.level → low exited 0");
    let env_text = std::fs::read_to_string(&out).unwrap();
    for line in [
        "JKMON_ALERT_SUBJECT=battery1.level",
        "JKMON_ALERT_BATTERY=1",
        "JKMON_ALERT_FROM=normal",
        "JKMON_ALERT_TO=low",
        "JKMON_ALERT_CELL_MIN_V=2.95",
    ] {
        assert!(env_text.contains(line), "{line} in {env_text}");
    }
    // between the levels (3.05 V): still low, nothing new; a restart announces nothing again
    commit(&db, 3_050);
    drop(bot);
    let mut bot = jkmon(&["bot"], dir.path(), &env);
    bot.wait_for_log(limit, "bot: @jkmon_bot answers");
    // back above 3.1 V: exactly one "normal"
    commit(&db, 3_150);
    let m = api
        .wait("sendmessage", limit, |b| {
            b["text"].as_str().unwrap_or("").contains("back to normal")
        })
        .await;
    assert_eq!(m["chat_id"], 42);
    api.wait("hook", limit, |h| h["to"] == "normal").await;
    bot.wait_for_log(limit, "ALERT_COMMAND for battery1.level → normal exited 0");
    let calls = api.drain();
    let alerts: Vec<String> = calls
        .iter()
        .filter(|(m, _)| m == "sendmessage")
        .map(|(_, b)| text(b))
        .collect();
    assert_eq!(alerts.len(), 2, "one low, one normal: {alerts:?}");
    let hooks = calls.iter().filter(|(m, _)| m == "hook").count();
    assert_eq!(hooks, 2);
    assert_eq!(
        std::fs::read_to_string(&out)
            .unwrap()
            .matches("JKMON_ALERT_SUBJECT=")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_bot_api_does_not_slow_the_bms_side() {
    let dir = tempfile::tempdir().unwrap();
    // every Bot API answer takes 3 s
    let api = FakeTelegram::start(Duration::from_secs(3)).await;
    let url = api.url();
    let mut run = jkmon(
        &["run", "--demo"],
        dir.path(),
        &[
            ("TELEGRAM_API_URL", &url),
            ("TELEGRAM_CHAT_ID", "42"),
            ("JK_BMS_ADDRESS", ""),
            ("JK_BMS_NAMES", ""),
            ("WEB_BIND", "127.0.0.1:0"),
            ("JK_BMS_POLL_INTERVAL", "0.2"),
            ("JK_SIM_INTERVAL_MS", "50"),
            ("ALERT_CHECK_SEC", "0.2"),
            ("ALERT_SOC_LOW", "99"),
        ],
    );
    // the commits keep coming every 0.2 s while the bot waits 3 s for each answer and an
    // alert (SOC below 99 %) is on its way: each must come well within the 3 s the Bot API
    // takes, or the bot would be holding the BMS side up
    run.wait_for_log(Duration::from_secs(20), "merged into readings #");
    run.wait_for_log(Duration::from_secs(20), "alert: Simulated BMS: SOC");
    for _ in 0..15 {
        run.wait_for_log(Duration::from_secs(2), "merged into readings #");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_poller_on_the_token_is_named_once_with_what_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    commit(&dir.path().join("inverter.db"), 3_300);
    let mut api = FakeTelegram::start(Duration::ZERO).await;
    // the Python monitor's telegram_bot.py already polls this token
    api.conflict(true);
    let url = api.url();
    let limit = Duration::from_secs(20);

    // jkmon doctor says so, with the fix, and fails
    let out = common::process::jkmon(dir.path(), &["doctor"])
        .envs([
            ("JK_BMS_TRANSPORT", "sim"),
            ("WEB_BIND", "127.0.0.1:0"),
            ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_API_URL", &url),
            ("TELEGRAM_CHAT_ID", "42"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("✘ Telegram")
            && l.contains("409")
            && l.contains("telegram_bot.py")),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");

    // jkmon bot: one clear line however often the Bot API says it again
    let mut bot = jkmon(
        &["bot"],
        dir.path(),
        &[("TELEGRAM_API_URL", &url), ("TELEGRAM_CHAT_ID", "42")],
    );
    let line = tokio::task::block_in_place(|| {
        bot.wait_for_log(limit, "another program polls Telegram with this bot token")
    });
    assert!(
        line.contains("ERROR") && line.contains("easun-bot") && !line.contains(TOKEN),
        "{line}"
    );
    for _ in 0..3 {
        api.wait("getupdates-conflict", limit, |_| true).await;
    }
    // the other poller stops: jkmon's bot answers
    api.conflict(false);
    api.message(42, "/status");
    api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await;
    bot.drain_stderr();
    let told = bot
        .stderr_seen
        .iter()
        .filter(|l| l.contains("another program polls Telegram"))
        .count();
    assert_eq!(told, 1, "{:?}", bot.stderr_seen);
    assert!(
        !bot.stderr_seen.iter().any(|l| l.contains(TOKEN)),
        "{:?}",
        bot.stderr_seen
    );
}

/// `/switch` on `jkmon run` with the simulated BMS: the menu shows the switches as the BMS
/// reports them; a press asks for confirmation and sends nothing; a press from a chat that
/// is not allowed is refused; the confirmation switches the BMS and says what it answered;
/// the write is recorded with the chat's id. With control off, `/switch` says so.
#[tokio::test(flavor = "multi_thread")]
async fn switch_asks_for_confirmation_then_switches_the_bms_for_allowed_chats_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("control.db");
    let limit = Duration::from_secs(20);
    let mut api = FakeTelegram::start(Duration::ZERO).await;
    let url = api.url();
    let run = |control: &str| {
        let mut cmd = common::process::jkmon(dir.path(), &["run"]);
        cmd.env("JK_BMS_TRANSPORT", "sim")
            .env("JK_SIM_INTERVAL_MS", "100")
            .env("DB_PATH", &db)
            .env("WEB_BIND", "127.0.0.1:0")
            .env("TELEGRAM_BOT_TOKEN", TOKEN)
            .env("TELEGRAM_API_URL", &url)
            .env("TELEGRAM_CHAT_ID", "42")
            .env("JK_BMS_CONTROL", control);
        Running::spawn(cmd)
    };
    let mut jk = run("on");
    jk.wait_for_log(limit, "bot: @");
    // the BMS has reported its switches (its settings frame) once a snapshot is in
    jk.wait_for_log(limit, " cells (delta ");
    api.message(42, "/switch");
    let menu = api.wait("sendmessage", limit, |b| b["chat_id"] == 42).await;
    let t = text(&menu);
    assert!(
        t.contains("charging: on") && t.contains("heater: off"),
        "{t}"
    );
    let buttons: Vec<String> = menu["reply_markup"]["inline_keyboard"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0]["callback_data"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        buttons,
        [
            "sw:ask:1:charging:0",
            "sw:ask:1:discharging:0",
            "sw:ask:1:balancer:0",
            "sw:ask:1:heater:1"
        ]
    );
    // a press asks first
    api.press(42, 7, "sw:ask:1:charging:0");
    let ask = api
        .wait("editmessagetext", limit, |b| b["chat_id"] == 42)
        .await;
    assert!(text(&ask).contains("Turn <b>charging</b> OFF"), "{ask}");
    let yes = ask["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(yes, "sw:do:1:charging:0");
    // someone else's chat: refused, nothing sent
    api.press(99, 8, &yes);
    let refused = api
        .wait("answercallbackquery", limit, |b| {
            b["text"] == "Not allowed here"
        })
        .await;
    assert_eq!(
        refused["callback_query_id"]
            .as_str()
            .map(|s| s.starts_with("cb")),
        Some(true)
    );
    // confirmed: the BMS's answer
    api.press(42, 7, &yes);
    let done = api
        .wait("editmessagetext", limit, |b| {
            b["chat_id"] == 42 && text(b).contains("confirmed by the BMS")
        })
        .await;
    assert_eq!(
        text(&done),
        "✅ charging off on Simulated BMS: confirmed by the BMS."
    );
    // Cancel sends nothing
    api.press(42, 9, "sw:cancel");
    api.wait("editmessagetext", limit, |b| {
        text(b) == "Nothing was changed."
    })
    .await;
    jk.signal("TERM");
    assert!(jk.wait_exit(limit).success());
    assert_eq!(
        common::switch_writes(&db),
        ["Simulated BMS: charging=off by bot chat 42: confirmed"],
        "one write: the refused chat's press sent nothing"
    );

    // control off: the command says so, and a forged press is refused by the controller
    let mut jk = run("off");
    jk.wait_for_log(limit, "bot: @");
    api.message(42, "/switch");
    let off = api
        .wait("sendmessage", limit, |b| {
            text(b).contains("Switching is off")
        })
        .await;
    assert!(off["reply_markup"].is_null(), "{off}");
    api.press(42, 7, "sw:do:1:charging:0");
    let refused = api
        .wait("editmessagetext", limit, |b| text(b).starts_with("❌"))
        .await;
    assert!(text(&refused).contains("JK_BMS_CONTROL"), "{refused}");
    jk.signal("TERM");
    assert!(jk.wait_exit(limit).success());
}
