//! A real browser on a real jkmon: headless Chromium, driven over the DevTools protocol, opens
//! the dashboard of `jkmon run --demo`, waits for live data, checks the cell chart and that a
//! value changes without a reload, then the history page; it saves both as PNG screenshots in
//! `target/test-artifacts/`.

use crate::common;
use std::path::PathBuf;
use std::time::Duration;

use common::browser::Browser;
use common::process::Running;
use serde_json::json;

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts")
}

/// What the dashboard shows of battery 1 after the next live update.
const NEXT_UPDATE: &str = r#"new Promise(resolve => document.addEventListener("jkmon:update", () => resolve({
    updates: Number(document.body.dataset.updates),
    bars: document.querySelectorAll('#battery-1 [data-f="cells"] rect.bar').length,
    marked: document.querySelectorAll('#battery-1 [data-f="cells"] rect.bar.min, #battery-1 [data-f="cells"] rect.bar.max').length,
    current: document.querySelector('#battery-1 [data-f="current"]').textContent,
    voltage: document.querySelector('#battery-1 [data-f="voltage"]').textContent,
    state: document.querySelector('#battery-1 [data-f="state"]').textContent,
    connection: document.getElementById("connection").textContent,
    inverter: document.querySelector('[data-f="inv.mode"]').textContent,
    poller: document.querySelector('[data-f="inv.poller"]').textContent,
    page: window.jkmonPageId,
}), { once: true }))"#;

/// `jkmon fill-demo --days 8` (a week of history for the charts), then `jkmon run --demo` on
/// that file with fast intervals, its web server on a free port.
fn demo_after_fill(dir: &std::path::Path) -> (Running, String) {
    let (mut jkmon, base) = common::process::demo_after_fill(
        std::path::Path::new(env!("CARGO_BIN_EXE_jkmon")),
        dir,
        8,
        &[
            ("WEB_LIVE_SEC", "0.5"),
            ("JK_BMS_POLL_INTERVAL", "0.5"),
            ("JK_SIM_INVERTER_SEC", "0.5"),
            ("JK_SIM_INTERVAL_MS", "100"),
        ],
    );
    jkmon.wait_for_log(Duration::from_secs(30), "merged into readings #");
    (jkmon, base)
}

/// Where screenshots go: `JKMON_SCREENSHOTS` (`docs/book/src/images` refreshes the book's and
/// the README's), else
/// `target/test-artifacts`.
fn shots() -> PathBuf {
    match std::env::var_os("JKMON_SCREENSHOTS") {
        Some(d) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(d),
        None => artifacts(),
    }
}

/// The power flow and what the status behind it says: the battery's and the grid's link
/// directions, and the battery's power and the grid's.
const FLOW: &str = r#"new Promise(resolve => document.addEventListener("jkmon:update", () => {
    const s = window.jkmonStatus, b = s.batteries[0], p = (s.inverter || {}).payload || {};
    const dir = (k) => document.querySelector('#flow [data-link="' + k + '"]').getAttribute("data-dir");
    resolve({ battery: dir("battery"), grid: dir("grid"), pv: dir("pv"), load: dir("load"),
      power_w: b.online && b.snapshot ? b.snapshot.power_w : null,
      grid_w: p.grid_power === undefined ? null : Number(p.grid_power), grid_state: s.grid,
      grid_text: document.querySelector('#flow [data-f="flow.grid.sub"]').textContent,
      animated: getComputedStyle(document.querySelector('#flow .link.in, #flow .link.out') || document.body).animationName });
  }, { once: true }))"#;

/// At a phone's width: whether anything is wider than the screen, and the smallest text on
/// the page (HTML text by its computed size; SVG text by its size times the drawing's scale).
const PHONE_CHECK: &str = r#"(() => {
    const small = [];
    const visible = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== "hidden";
    document.querySelectorAll("body *").forEach(e => {
      if (!visible(e) || !e.childNodes.length) return;
      const own = Array.from(e.childNodes).some(n => n.nodeType === 3 && n.textContent.trim());
      if (!own) return;
      let px = parseFloat(getComputedStyle(e).fontSize);
      const svg = e.ownerSVGElement;
      if (svg) {
        const vb = svg.viewBox.baseVal;
        if (vb && vb.width) px *= svg.getBoundingClientRect().width / vb.width;
      }
      if (px < 11) small.push((e.getAttribute("class") || e.tagName) + " " + px.toFixed(1) + "px: " + e.textContent.trim().slice(0, 20));
    });
    return { scroll: document.documentElement.scrollWidth, width: window.innerWidth, small: small.slice(0, 10) };
  })()"#;

/// At 390 px: nothing wider than the screen, no text under 11 px.
fn fits_a_phone(page: &mut common::browser::Page) {
    let phone = page.eval(PHONE_CHECK);
    assert!(
        phone["scroll"].as_f64().unwrap() <= phone["width"].as_f64().unwrap(),
        "horizontal scrolling at 390 px: {phone}"
    );
    assert_eq!(phone["small"], json!([]), "text under 11 px: {phone}");
}

#[test]
fn the_dashboard_is_live_in_a_real_browser_and_the_history_page_draws() {
    if !common::have_program("chromium", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_jkmon, base) = demo_after_fill(dir.path());

    let browser = Browser::start();
    let mut page = browser.page();
    page.navigate(&format!("{base}/"));
    let first = page.eval(NEXT_UPDATE);
    assert_eq!(first["bars"], 16, "one bar per simulated cell: {first}");
    assert_eq!(
        first["marked"], 2,
        "the lowest and the highest cell are marked"
    );
    assert_eq!(first["state"], "online");
    assert_eq!(first["connection"], "live");
    assert!(first["voltage"].as_str().unwrap().ends_with("V"), "{first}");
    // the demo inverter's mode as jkmon's own poller stores it (mains: SUB, off-grid: SBU)
    assert!(
        ["SUB", "SBU"].contains(&first["inverter"].as_str().unwrap()),
        "{first}"
    );
    let poller = first["poller"].as_str().unwrap();
    assert!(
        poller
            .starts_with("jkmon reads the ISOLAR_SMG_II_11K through the Wi-Fi dongle at 127.0.0.1")
            && poller.contains(": online · "),
        "{poller}"
    );
    // the simulated current moves; within 20 updates the page shows another value by itself
    let mut changed = None;
    for _ in 0..20 {
        let next = page.eval(NEXT_UPDATE);
        assert_eq!(next["page"], first["page"], "no reload");
        if next["current"] != first["current"] {
            changed = Some(next);
            break;
        }
    }
    let changed = changed.expect("the current changed without a reload");
    assert!(changed["updates"].as_u64().unwrap() > first["updates"].as_u64().unwrap());
    // Today: shown once the energy API answered, with kWh and a time left, never hidden zeros
    let today = page.eval(
        r##"new Promise((resolve) => {
              let seen = 0;
              const look = () => {
                const card = document.getElementById("today");
                const f = (k) => card.querySelector('[data-f="' + k + '"]').textContent;
                if (!card.hidden || ++seen > 40) {
                  document.removeEventListener("jkmon:update", look);
                  resolve({ hidden: card.hidden, charged: f("today.charged"), load: f("today.load"),
                            left: f("today.left_label") + ": " + f("today.left") });
                }
              };
              document.addEventListener("jkmon:update", look);
              look();
            })"##,
    );
    assert_eq!(today["hidden"], false, "{today}");
    assert!(
        today["charged"].as_str().unwrap().ends_with("kWh"),
        "{today}"
    );
    assert!(
        today["load"].as_str().unwrap().ends_with("kWh"),
        "the demo inverter's load: {today}"
    );
    assert!(
        today["left"].as_str().unwrap().starts_with("Time"),
        "{today}"
    );
    // the simulated JK-PB (firmware 15.38) reports its last values: the card shows each
    let charger = page.eval(
        r##"Array.from(document.querySelectorAll('#battery-1 [data-f="charger"] .pill')).map(p => p.textContent)"##,
    );
    let charger: Vec<&str> = charger
        .as_array()
        .unwrap()
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    assert!(
        charger
            .iter()
            .any(|p| ["charger bulk", "charger absorption", "charger float"].contains(p)),
        "{charger:?}"
    );
    for want in ["precharge off", "DRY1 open", "DRY2 open"] {
        assert!(charger.contains(&want), "{charger:?}");
    }
    assert!(
        charger.iter().any(|p| p.starts_with("heater current ")),
        "{charger:?}"
    );
    // the power flow shows the directions the status implies, in the same update
    for _ in 0..3 {
        let f = page.eval(FLOW);
        let expected = |w: Option<f64>, towards: &'static str, away: &'static str| match w {
            None => "none",
            Some(w) if w.abs() < 5.0 => "idle",
            Some(w) if w > 0.0 => towards,
            Some(_) => away,
        };
        // charging: from the inverter into the battery; import: from the grid into the inverter
        assert_eq!(
            f["battery"],
            expected(f["power_w"].as_f64(), "out", "in"),
            "{f}"
        );
        assert_eq!(
            f["grid"],
            expected(f["grid_w"].as_f64(), "in", "out"),
            "{f}"
        );
        let grid_text = f["grid_text"].as_str().unwrap();
        match f["grid_state"].as_str().unwrap() {
            "up" => assert!(grid_text.starts_with("online"), "{f}"),
            "down" => assert_eq!(grid_text, "OFFLINE", "{f}"),
            _ => assert_eq!(grid_text, "unknown", "{f}"),
        }
        assert_eq!(f["animated"], "flow", "moving while power flows: {f}");
    }
    page.screenshot(&shots().join("dashboard.png"));

    // a phone: nothing wider than the screen, no text under 11 px
    page.viewport(390, 844, true);
    page.eval(NEXT_UPDATE);
    fits_a_phone(&mut page);
    page.screenshot(&shots().join("dashboard-phone.png"));
    page.viewport(1280, 900, false);

    page.navigate(&format!("{base}/charts"));
    let drawn = page.eval(
        r##"(document.body.dataset.historyLoaded ? Promise.resolve() :
             new Promise(r => document.addEventListener("jkmon:history", r, { once: true })))
           .then(() => ({
             svgs: document.querySelectorAll(".chart svg").length,
             cells: document.querySelectorAll("#c-cells .legend button").length,
             lines: document.querySelectorAll("#c-voltage polyline").length,
             inverter: document.querySelectorAll("#c-inverter polyline").length,
             yticks: document.querySelectorAll("#c-voltage text.tick.y").length,
             ylabel: (document.querySelector("#c-voltage text.tick.y") || {}).textContent,
             zero: document.querySelectorAll("#c-current line.zero").length,
             currentTicks: Array.from(document.querySelectorAll("#c-current text.tick.y")).map(t => t.textContent),
           }))"##,
    );
    assert_eq!(drawn["svgs"], 8, "{drawn}");
    assert_eq!(drawn["cells"], 16, "a legend entry per cell: {drawn}");
    assert!(drawn["lines"].as_u64().unwrap() >= 1, "{drawn}");
    assert!(
        drawn["inverter"].as_u64().unwrap() >= 2,
        "grid and load: {drawn}"
    );
    assert!(
        drawn["yticks"].as_u64().unwrap() >= 4,
        "four labelled ticks at least: {drawn}"
    );
    assert!(
        drawn["ylabel"].as_str().unwrap().ends_with(" V"),
        "with the unit: {drawn}"
    );
    // the simulated current charges and discharges: a zero line, and "0 A" among the ticks
    assert_eq!(drawn["zero"], 1, "{drawn}");
    assert!(
        drawn["currentTicks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == "0 A"),
        "{drawn}"
    );

    // 7 days: day ticks with dates (no time of day on them)
    page.eval(r##"(() => { const p = new Promise(r => document.addEventListener("jkmon:history", r, { once: true }));
                  document.querySelector('[data-days="7"]').click(); return p; })()"##);
    let week = page.eval(
        r##"Array.from(document.querySelectorAll("#c-voltage text.tick.x")).map(t => t.textContent)"##,
    );
    let labels: Vec<&str> = week
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(labels.len() >= 3, "{labels:?}");
    assert!(
        labels
            .iter()
            .all(|l| !l.contains(':') && l.chars().any(|c| c.is_ascii_digit())),
        "dates on a week: {labels:?}"
    );

    // the crosshair: a pointer over the middle of the voltage chart shows the time and a value
    let tip = page.eval(
        r##"(() => { const hit = document.querySelector("#c-voltage rect.hit"), b = hit.getBoundingClientRect();
             hit.dispatchEvent(new PointerEvent("pointermove", { clientX: b.left + b.width / 2, clientY: b.top + b.height / 2, bubbles: true }));
             const tip = document.querySelector("#c-voltage .tip");
             return { hidden: tip.hidden, text: tip.textContent, line: document.querySelector("#c-voltage line.cross").getAttribute("visibility") }; })()"##,
    );
    assert_eq!(tip["hidden"], false, "{tip}");
    assert_eq!(tip["line"], "visible", "{tip}");
    let text = tip["text"].as_str().unwrap();
    assert!(
        text.contains(" V") && text.chars().any(|c| c.is_ascii_digit()),
        "{tip}"
    );

    // a legend entry hides its series and shows it again
    let toggled = page.eval(
        r##"(() => { const b = () => document.querySelector("#c-cells .legend button");
             b().click(); const off = b().getAttribute("aria-pressed"), lines = document.querySelectorAll("#c-cells polyline").length;
             b().click(); return { off: off, on: b().getAttribute("aria-pressed"), hiddenLines: lines,
               allLines: document.querySelectorAll("#c-cells polyline").length }; })()"##,
    );
    assert_eq!(toggled["off"], "false", "{toggled}");
    assert_eq!(toggled["on"], "true", "{toggled}");
    assert!(
        toggled["hiddenLines"].as_u64() < toggled["allLines"].as_u64(),
        "{toggled}"
    );
    page.screenshot(&shots().join("history.png"));

    // a resize (or a phone turned) redraws each chart at its new width
    let before = page.eval(
        r##"({ draws: Number(document.getElementById("c-voltage").dataset.draws),
        width: document.querySelector("#c-voltage svg").getAttribute("width") })"##,
    );
    page.viewport(390, 844, true);
    let after = page.eval(
        r##"new Promise(resolve => { let n = 0; const look = () => {
             const c = document.getElementById("c-voltage"), w = c.querySelector("svg").getAttribute("width");
             if (Number(c.dataset.draws) > 0 && w !== BEFORE || ++n > 120) resolve({ draws: Number(c.dataset.draws), width: w });
             else requestAnimationFrame(look); }; look(); })"##
            .replace("BEFORE", &before["width"].to_string())
            .as_str(),
    );
    assert!(
        after["draws"].as_u64() > before["draws"].as_u64(),
        "{before} → {after}"
    );
    assert_ne!(after["width"], before["width"]);
    fits_a_phone(&mut page);
    page.screenshot(&shots().join("history-phone.png"));

    // the energy page: bars per day and per month, each chart with its total; the days
    // before fill-demo's week are gaps, not zeros
    page.viewport(1280, 900, false);
    page.navigate(&format!("{base}/energy"));
    let energy = page.eval(
        r##"(() => { const sec = (id) => Array.from(document.querySelectorAll("#" + id + " section")).map(s => ({
               title: s.querySelector("h3").firstChild.textContent.trim(),
               total: s.querySelector("h3 .sub").textContent,
               bars: s.querySelectorAll("rect.bar").length,
               gaps: s.querySelectorAll("rect.gap").length,
               tip: (s.querySelector("rect.bar title") || {}).textContent }));
             return { days: sec("energy-days"), months: sec("energy-months"),
                      current: (document.querySelector('nav a[aria-current="page"]') || {}).textContent,
                      connection: !!document.getElementById("connection") }; })()"##,
    );
    assert_eq!(energy["current"], "Energy", "{energy}");
    assert_eq!(
        energy["connection"], false,
        "a page that is not live says nothing of a link"
    );
    let days = energy["days"].as_array().unwrap();
    let titles: Vec<&str> = days.iter().map(|c| c["title"].as_str().unwrap()).collect();
    assert_eq!(
        titles,
        [
            "Battery in",
            "Battery out",
            "PV",
            "Load",
            "Grid import",
            "Grid export"
        ]
    );
    let battery_in = &days[0];
    let slots = battery_in["bars"].as_u64().unwrap() + battery_in["gaps"].as_u64().unwrap();
    assert_eq!(slots, 30, "{battery_in}");
    // fill-demo wrote 8 days (and today runs): those have bars, the weeks before are gaps
    assert!(
        (8..=10).contains(&battery_in["bars"].as_u64().unwrap()),
        "{battery_in}"
    );
    assert!(battery_in["gaps"].as_u64().unwrap() >= 20, "{battery_in}");
    assert!(
        battery_in["total"].as_str().unwrap().ends_with(" kWh"),
        "{battery_in}"
    );
    assert!(
        battery_in["tip"].as_str().unwrap().contains(" kWh"),
        "{battery_in}"
    );
    let months = energy["months"].as_array().unwrap();
    let month_slots = months[0]["bars"].as_u64().unwrap() + months[0]["gaps"].as_u64().unwrap();
    assert_eq!(month_slots, 12, "{}", months[0]);
    assert!(
        (1..=2).contains(&months[0]["bars"].as_u64().unwrap()),
        "{}",
        months[0]
    );
    page.screenshot(&shots().join("energy.png"));
    page.viewport(390, 844, true);
    fits_a_phone(&mut page);
    page.screenshot(&shots().join("energy-phone.png"));
}

/// The battery card with control on: the switches as the BMS reports them, a form that asks
/// before it sends (a "no" sends nothing), and after "yes" the BMS's new state and the write,
/// with who made it, on the card.
#[test]
fn the_card_switches_the_bms_after_asking_and_shows_the_write() {
    if !common::have_program("chromium", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let token = "card-token";
    let mut cmd = common::process::jkmon(dir.path(), &["run"]);
    cmd.envs([
        ("JK_BMS_TRANSPORT", "sim"),
        ("JK_SIM_INTERVAL_MS", "100"),
        ("WEB_LIVE_SEC", "0.5"),
        ("WEB_BIND", "127.0.0.1:0"),
        ("WEB_AUTH_TOKEN", token),
        ("JK_BMS_CONTROL", "on"),
        ("DB_PATH", dir.path().join("card.db").to_str().unwrap()),
    ]);
    let mut jkmon = Running::spawn(cmd);
    let base = format!("http://{}", jkmon.web_address(Duration::from_secs(20)));
    jkmon.wait_for_log(Duration::from_secs(20), " cells (delta ");

    let browser = Browser::start();
    let mut page = browser.page();
    page.navigate(&format!("{base}/login"));
    // signed in as a person would be: the login form sets the cookie
    page.eval(&format!(
        r#"fetch("/login", {{ method: "POST", body: new URLSearchParams({{ token: "{token}" }}) }}).then(r => r.status)"#
    ));
    page.navigate(&format!("{base}/"));
    const CARD: &str = r#"new Promise(resolve => document.addEventListener("jkmon:update", () => resolve({
        switches: Array.from(document.querySelectorAll('#battery-1 [data-f="switches"] .pill')).map(p => p.textContent),
        forms: Array.from(document.querySelectorAll('#battery-1 form.switch-form')).map(f => f.dataset.switch),
        writes: Array.from(document.querySelectorAll('#battery-1 [data-f="writes"] li')).map(l => l.textContent),
    }), { once: true }))"#;
    let card = page.eval(CARD);
    assert_eq!(
        card["forms"],
        json!(["charging", "discharging", "balancer", "heater"]),
        "{card}"
    );
    assert!(
        card["switches"]
            .as_array()
            .unwrap()
            .contains(&json!("charging on")),
        "{card}"
    );
    assert_eq!(card["writes"], json!([]));
    // "no": nothing is sent
    page.eval(
        r#"window.confirm = () => false;
           document.querySelector('#battery-1 form[data-switch="discharging"] button[value="off"]').click();"#,
    );
    // "yes": the form posts, the write is confirmed, the page comes back to the card
    page.eval(
        r#"window.confirm = () => true;
           document.querySelector('#battery-1 form[data-switch="charging"] button[value="off"]').click();"#,
    );
    let mut loaded = false;
    for _ in 0..10_000 {
        if page.read()["method"] == "Page.loadEventFired" {
            loaded = true;
            break;
        }
    }
    assert!(loaded, "the form's answer brings the dashboard back");
    // bounded: at most 20 updates until the card shows the BMS's new report
    let mut card = page.eval(CARD);
    for _ in 0..20 {
        if card["switches"]
            .as_array()
            .unwrap()
            .contains(&json!("charging off"))
            && !card["writes"].as_array().unwrap().is_empty()
        {
            break;
        }
        card = page.eval(CARD);
    }
    let switches = card["switches"].as_array().unwrap();
    assert!(switches.contains(&json!("charging off")), "{card}");
    assert!(
        switches.contains(&json!("discharging on")),
        "the refused one stays: {card}"
    );
    let writes = card["writes"].as_array().unwrap();
    assert_eq!(writes.len(), 1, "{card}");
    assert!(
        writes[0]
            .as_str()
            .unwrap()
            .ends_with("charging off by web: confirmed"),
        "{card}"
    );
    page.screenshot(&artifacts().join("dashboard-switches.png"));
}

/// Right after an upgrade, before any BMS data, the file holds only the inverter's rows: the
/// history page draws the inverter's chart (before, it asked for battery 1 and showed
/// "HTTP 400").
#[test]
fn the_history_page_of_a_file_without_batteries_draws_the_inverter() {
    if !common::have_program("chromium", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("inverter.db");
    // the Python monitor's table and an hour of its poller's rows, one a minute
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE readings (id INTEGER PRIMARY KEY AUTOINCREMENT,
             created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP, payload TEXT, error TEXT);",
    )
    .unwrap();
    let now = chrono::Utc::now();
    for m in (0..60).rev() {
        let at = (now - chrono::Duration::minutes(m))
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        let payload = format!(
            r#"{{"grid_voltage": "230.1", "grid_power": "{}", "ac_output_power": "{}", "pv_input_power": "{}", "status_text": "SUB"}}"#,
            300 + m,
            450 + m,
            100 + m
        );
        conn.execute(
            "INSERT INTO readings (created_at, payload) VALUES (?1, ?2)",
            [at, payload],
        )
        .unwrap();
    }
    drop(conn);
    let mut cmd = common::process::jkmon(dir.path(), &["web"]);
    cmd.envs([
        ("WEB_BIND", "127.0.0.1:0"),
        ("DB_PATH", db.to_str().unwrap()),
    ]);
    let mut web = Running::spawn(cmd);
    let base = format!("http://{}", web.web_address(Duration::from_secs(20)));
    let browser = common::browser::Browser::start();
    let mut page = browser.page();
    page.navigate(&format!("{base}/charts"));
    let drawn = page.eval(
        r##"(document.body.dataset.historyLoaded ? Promise.resolve() :
             new Promise(r => document.addEventListener("jkmon:history", r, { once: true })))
           .then(() => ({
             inverter: document.querySelectorAll("#c-inverter polyline").length,
             status: (document.querySelector("[data-f=conn]") || document.body).textContent,
             select: document.getElementById("battery").hidden,
           }))"##,
    );
    assert!(
        drawn["inverter"].as_u64().unwrap() >= 3,
        "grid, load and PV: {drawn}"
    );
    assert!(
        !drawn["status"].as_str().unwrap().contains("HTTP 400"),
        "{drawn}"
    );
    assert_eq!(drawn["select"], true, "no battery to choose: {drawn}");
    page.screenshot(&artifacts().join("history-inverter-only.png"));
    web.signal("TERM");
    assert!(web.wait_exit(Duration::from_secs(20)).success());
}
