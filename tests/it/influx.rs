//! The InfluxDB sink against a real InfluxDB 1.x (Debian's `influxdb`, started here on the
//! loopback with its own data) and, for the 2.x API that no Debian package serves, a fake on
//! the loopback that checks what a 2.x server checks.
//!
//! What an owner relies on: the points say what `/api/v1/status` says; a minute with InfluxDB
//! down loses nothing and writes nothing twice, and neither the BMS sessions nor the dashboard
//! wait for it; a full buffer drops the oldest and says so; a refusal names the variable to fix,
//! once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::influx::Influxd;
use crate::common::process::{http_get, jkmon, Running};
use crate::common::{free_port, prometheus};

const LIMIT: Duration = Duration::from_secs(30);

/// `jkmon run --demo` in `dir` writing to InfluxDB with `env`; the process and its web address.
fn demo(dir: &std::path::Path, env: &[(&str, &str)]) -> (Running, String) {
    let mut cmd = jkmon(dir, &["run", "--demo"]);
    cmd.env("WEB_BIND", "127.0.0.1:0")
        .env("DB_PATH", dir.join("demo.db"))
        .envs(env.iter().copied());
    let mut run = Running::spawn(cmd);
    let web = run.web_address(LIMIT);
    (run, web)
}

fn status(web: &str) -> Value {
    let (code, body) = http_get(web, "/api/v1/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The status once `ready` holds of it (polled: the status is the event's only witness).
fn status_when(web: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = status(web);
        if ready(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "waited {LIMIT:?}; the status: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ms(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

fn metric(web: &str, name: &str) -> f64 {
    let (_, text) = http_get(web, "/metrics");
    let families = prometheus::parse(&text).unwrap();
    prometheus::get(&families, name, &[]).unwrap_or_else(|| panic!("no {name} in:\n{text}"))
}

/// "influx: N points written this run (D dropped, R refused)" from the log: (N, D, R).
fn run_totals(run: &mut Running) -> (u64, u64, u64) {
    let line = run.wait_for_log_ever(Duration::from_secs(5), "points written this run");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let n = numbers.len();
    (numbers[n - 3], numbers[n - 2], numbers[n - 1])
}

/// Every point of jkmon's four measurements, by measurement.
fn points(influx: &Influxd) -> BTreeMap<String, Vec<serde_json::Map<String, Value>>> {
    [
        "jkmon_battery",
        "jkmon_cell",
        "jkmon_temperature",
        "jkmon_inverter",
    ]
    .into_iter()
    .map(|m| {
        let q = format!("SELECT * FROM {m} GROUP BY *");
        (m.to_string(), influx.rows("jk", &q))
    })
    .collect()
}

/// `influx` (a point's field, absent when not written) says what `api` says (`null` when not
/// reported): numbers as numbers (InfluxDB prints 12.0 as 12), the rest exactly.
fn same(influx: Option<&Value>, api: Option<&Value>, what: &str) {
    let influx = influx.filter(|v| !v.is_null());
    let api = api.filter(|v| !v.is_null());
    match (influx.and_then(Value::as_f64), api.and_then(Value::as_f64)) {
        (Some(a), Some(b)) => assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: {a} != {b}"
        ),
        _ => assert_eq!(influx, api, "{what}"),
    }
}

/// One reading of the status as the test saw it, and how long `/` took then.
struct Seen {
    taken_ms: i64,
    snapshot: Value,
    page: Duration,
}

fn look(web: &str) -> Seen {
    let started = Instant::now();
    let (code, page) = http_get(web, "/");
    assert_eq!(code, 200, "{page}");
    let page = started.elapsed();
    let s = status(web);
    let b = &s["batteries"][0];
    Seen {
        taken_ms: ms(&b["taken_at"]),
        snapshot: b["snapshot"].clone(),
        page,
    }
}

/// Looks every `every` for `span`, the status and the dashboard.
fn watch(web: &str, span: Duration, every: Duration) -> Vec<Seen> {
    let end = Instant::now() + span;
    let mut seen = Vec::new();
    while Instant::now() < end {
        seen.push(look(web));
        std::thread::sleep(every); // the pace of the observer, not a wait for an event
    }
    seen
}

#[test]
fn every_snapshot_reaches_a_real_influxdb_once_across_a_minute_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut influx) = Influxd::start(dir.path(), false) else {
        return;
    };
    influx.query("", "CREATE DATABASE jk", None);
    let (mut run, web) = demo(
        dir.path(),
        &[
            ("INFLUX_URL", &influx.url()),
            ("INFLUX_DATABASE", "jk"),
            ("INFLUX_INTERVAL", "0"),
        ],
    );
    let line = run.wait_for_log_ever(LIMIT, "influx: writing to the database jk at");
    assert!(line.contains("(every snapshot, INFLUX_INTERVAL)"), "{line}");
    status_when(&web, |s| s["batteries"][0]["taken_at"].is_string());
    let before = watch(&web, Duration::from_secs(10), Duration::from_millis(500));
    let inverter = status_when(&web, |s| s["inverter_poller"]["polled_at"].is_string())
        ["inverter_poller"]
        .clone();
    influx.kill();
    let down = Instant::now();
    let during = watch(&web, Duration::from_secs(60), Duration::from_secs(1));
    let outage = down.elapsed();
    influx.resume();
    let line = run.wait_for_log(LIMIT, "influx: writing again");
    assert!(!line.contains("dropped"), "{line}");
    let after = watch(&web, Duration::from_secs(3), Duration::from_millis(500));
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    let (written, dropped, refused) = run_totals(&mut run);
    let log = run.stderr_seen.join("\n");
    assert_eq!(
        log.matches("influx: cannot write to").count(),
        1,
        "the outage is told once:\n{log}"
    );
    assert!(!log.contains("were not written"), "{log}");

    // exactly once: InfluxDB holds as many points as jkmon says it wrote (a point sent twice
    // would count twice in jkmon's total and once in InfluxDB)
    let all = points(&influx);
    let held: usize = all.values().map(Vec::len).sum();
    assert_eq!((held as u64, dropped, refused), (written, 0, 0));

    // every snapshot the status showed, before, during and after the outage, is a point with
    // the same values, its cells and probes at the same time
    let battery = &all["jkmon_battery"];
    let by_time: BTreeMap<i64, &serde_json::Map<String, Value>> = battery
        .iter()
        .map(|p| (p["time"].as_i64().unwrap(), p))
        .collect();
    let seen: Vec<&Seen> = before.iter().chain(&during).chain(&after).collect();
    for s in &seen {
        let p = by_time
            .get(&s.taken_ms)
            .unwrap_or_else(|| panic!("no point at {} ms", s.taken_ms));
        for key in [
            "total_voltage_v",
            "current_a",
            "soc_effective_pct",
            "soc_pct",
            "cell_delta_v",
            "cycle_count",
            "charge_status",
            "heating_current_a",
            "precharging",
        ] {
            same(
                p.get(key),
                s.snapshot.get(key),
                &format!("{key} at {} ms", s.taken_ms),
            );
        }
        assert_eq!(p["name"], "Simulated BMS");
        for (contact, key) in [("dry1", "dry_contact_1"), ("dry2", "dry_contact_2")] {
            same(p.get(key), s.snapshot["dry_contacts"].get(contact), key);
        }
        let cells: Vec<f64> = all["jkmon_cell"]
            .iter()
            .filter(|c| c["time"].as_i64() == Some(s.taken_ms))
            .map(|c| {
                let i: usize = c["cell"].as_str().unwrap().parse().unwrap();
                same(
                    Some(&c["voltage_v"]),
                    Some(&s.snapshot["cell_voltages_v"][i - 1]),
                    "cell",
                );
                i as f64
            })
            .collect();
        assert_eq!(
            cells.len(),
            s.snapshot["cell_voltages_v"].as_array().unwrap().len()
        );
    }
    // the inverter's point at its poll's time says what the status said
    let polled = ms(&inverter["polled_at"]);
    let p = all["jkmon_inverter"]
        .iter()
        .find(|p| p["time"].as_i64() == Some(polled))
        .expect("the inverter's point at its poll");
    for (name, v) in inverter["values"].as_object().unwrap() {
        if !name.starts_with("clock_") && name != "operating_mode" && !name.ends_with("_legacy_a") {
            same(p.get(name), Some(v), &format!("inverter {name}"));
        }
    }

    // the sessions never waited: the status moved on all minute, and the points of the
    // outage come as often as before it
    for pair in during.windows(2) {
        assert!(pair[1].taken_ms > pair[0].taken_ms, "the snapshots stalled");
    }
    let rate =
        |from: i64, to: i64| by_time.range(from..to).count() as f64 / ((to - from) as f64 / 1000.0);
    let (t0, t1) = (before[0].taken_ms, during[0].taken_ms);
    let t2 = during.last().unwrap().taken_ms;
    let (rate_before, rate_during) = (rate(t0, t1), rate(t1, t2));
    let times: Vec<i64> = by_time.keys().copied().collect();
    let gap = times.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    let slowest = |s: &[Seen]| s.iter().map(|s| s.page).max().unwrap();
    eprintln!(
        "outage {:.0} s: {rate_during:.2} snapshots/s written during it, {rate_before:.2} before \
         (ratio {:.2}); longest gap between points {gap} ms; slowest / {:?} during, {:?} before; \
         {written} points written",
        outage.as_secs_f64(),
        rate_during / rate_before,
        slowest(&during),
        slowest(&before),
    );
    assert!(
        rate_during >= 0.8 * rate_before,
        "{rate_during} < {rate_before}"
    );
    assert!(gap < 2_000, "a gap of {gap} ms between two points");
    assert!(
        slowest(&during) < Duration::from_secs(2),
        "the dashboard waited"
    );
    the_books_grafana_queries_draw(&influx);
}

/// Every InfluxQL query of the book's InfluxDB page, as Grafana fills its variables, answers
/// series from what jkmon wrote.
fn the_books_grafana_queries_draw(influx: &Influxd) {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/book/src/influxdb.md"),
    )
    .unwrap();
    let queries: Vec<&str> = page
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim())
        .collect();
    assert!(queries.len() >= 5, "the book's queries: {queries:?}");
    for q in queries {
        let filled = q
            .replace("$timeFilter", "time > now() - 1h")
            .replace("$__interval", "10s");
        let answer = influx.query("jk", &filled, None);
        let series = answer["results"][0]["series"].as_array();
        assert!(
            series.is_some_and(|s| !s.is_empty()),
            "the book's query drew nothing:\n{q}\n{answer}"
        );
    }
}

#[test]
fn a_full_buffer_drops_the_oldest_points_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there yet: InfluxDB is away
    let (mut run, web) = demo(
        dir.path(),
        &[
            ("INFLUX_URL", &format!("http://127.0.0.1:{port}")),
            ("INFLUX_DATABASE", "jk"),
            ("INFLUX_INTERVAL", "0"),
            ("INFLUX_BUFFER_POINTS", "100"),
        ],
    );
    run.wait_for_log_ever(LIMIT, "influx: the buffer is full");
    let dropped = metric(&web, "jkmon_influx_points_dropped_total");
    assert!(dropped > 0.0);
    assert!(metric(&web, "jkmon_influx_points_waiting") <= 100.0);
    assert_eq!(metric(&web, "jkmon_influx_points_written_total"), 0.0);
    // InfluxDB comes: what waited goes, and the log says what was dropped meanwhile
    let Some(influx) = Influxd::start_on(dir.path(), false, port) else {
        return;
    };
    influx.query("", "CREATE DATABASE jk", None);
    let line = run.wait_for_log(LIMIT, "influx: writing again");
    assert!(line.contains("points were dropped meanwhile"), "{line}");
    assert!(metric(&web, "jkmon_influx_sent_bytes_total") > 0.0);
    // the sink's families pass Prometheus' own linter
    let (_, page) = http_get(&web, "/metrics");
    assert!(page.contains("jkmon_influx_points_dropped_total"), "{page}");
    prometheus::promtool_accepts(&page);
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    let (written, dropped_in_all, _) = run_totals(&mut run);
    assert!(dropped_in_all as f64 >= dropped);
    let held: usize = points(&influx).values().map(Vec::len).sum();
    assert_eq!(held as u64, written);
    let log = run.stderr_seen.join("\n");
    assert_eq!(log.matches("the buffer is full").count(), 1, "{log}");
}

#[test]
fn doctor_checks_credentials_permission_and_database_on_a_real_influxdb() {
    let dir = tempfile::tempdir().unwrap();
    let Some(influx) = Influxd::start(dir.path(), true) else {
        return;
    };
    let admin = Some(("admin", "pw"));
    influx.query(
        "",
        "CREATE USER admin WITH PASSWORD 'pw' WITH ALL PRIVILEGES",
        None,
    );
    for q in [
        "CREATE DATABASE jk",
        "CREATE USER reader WITH PASSWORD 'hunter2'",
        "GRANT READ ON jk TO reader",
    ] {
        influx.query("", q, admin);
    }
    let doctor = |env: &[(&str, &str)]| {
        let out = jkmon(dir.path(), &["doctor"])
            .envs([
                ("JK_BMS_TRANSPORT", "sim"),
                ("WEB_BIND", "127.0.0.1:0"),
                ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
                ("INFLUX_URL", &influx.url()),
            ])
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(!text.contains("hunter2"), "{text}");
        text.lines()
            .find(|l| l.contains("InfluxDB"))
            .unwrap_or_else(|| panic!("no InfluxDB line in:\n{text}"))
            .to_string()
    };
    let user = |u, p| {
        [
            ("INFLUX_DATABASE", "jk"),
            ("INFLUX_USER", u),
            ("INFLUX_PASSWORD", p),
        ]
    };
    let ok = doctor(&user("admin", "pw"));
    assert!(ok.contains("may write to the database jk"), "{ok}");
    let read_only = doctor(&user("reader", "hunter2"));
    assert!(
        read_only.contains("not authorized to write")
            && read_only.contains("INFLUX_USER and INFLUX_PASSWORD"),
        "{read_only}"
    );
    let wrong = doctor(&user("admin", "hunter2"));
    assert!(
        wrong.contains("401") && wrong.contains("INFLUX_PASSWORD"),
        "{wrong}"
    );
    let missing = doctor(&[
        ("INFLUX_DATABASE", "solar"),
        ("INFLUX_USER", "admin"),
        ("INFLUX_PASSWORD", "pw"),
    ]);
    assert!(
        missing.contains("database not found") && missing.contains("INFLUX_DATABASE"),
        "{missing}"
    );
    // no point was added by the checks
    let added = influx.query("jk", "SHOW MEASUREMENTS", admin);
    assert!(added["results"][0].get("series").is_none(), "{added}");
}

/// One request the fake 2.x server took.
#[derive(Debug)]
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    fn text(&self) -> String {
        if self.header("content-encoding") == Some("gzip") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut text)
                .expect("a gzip body");
            text
        } else {
            String::from_utf8(self.body.clone()).unwrap()
        }
    }
}

/// A loopback HTTP server answering every request with the status `answer` holds (and 2.x's
/// own words for it; 0: no answer at all), sending each request to the returned channel.
fn fake_v2(answer: Arc<AtomicU16>) -> (u16, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (tx, answer) = (tx.clone(), Arc::clone(&answer));
            std::thread::spawn(move || serve_one(stream, &tx, &answer));
        }
    });
    (port, rx)
}

fn serve_one(stream: std::net::TcpStream, tx: &mpsc::Sender<Request>, answer: &AtomicU16) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    // keep-alive: one request after another on the connection, until it closes
    for _ in 0..10_000 {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.trim().is_empty() {
                break;
            }
            head.push_str(&line);
        }
        let request = Request {
            head,
            body: Vec::new(),
        };
        let length: usize = request
            .header("content-length")
            .map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request = Request { body, ..request };
        let code = answer.load(Ordering::SeqCst);
        if code == 0 {
            // a server that takes the request and never answers: hold the connection open
            let _ = tx.send(request);
            let mut rest = Vec::new();
            let _ = reader.read_to_end(&mut rest);
            return;
        }
        let message = match code {
            204 if request.body.is_empty() => Some((400, "writing requires points")),
            204 => None,
            401 => Some((401, "unauthorized access")),
            404 => Some((404, "bucket \"jk\" not found")),
            400 => Some((
                400,
                "failure writing points to database: partial write: field type conflict: input field \"soc_pct\" on measurement \"jkmon_battery\" is type integer, already exists as type float dropped=1",
            )),
            _ => Some((500, "internal error")),
        };
        let response = match message {
            None => "HTTP/1.1 204 No Content\r\n\r\n".to_string(),
            Some((code, m)) => {
                let body = format!(
                    "{{\"code\":\"x\",\"message\":\"{}\"}}",
                    m.replace('"', "\\\"")
                );
                format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            }
        };
        let _ = tx.send(request);
        if stream.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn the_2x_api_gets_the_token_org_bucket_and_gzip_and_a_refusal_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let answer = Arc::new(AtomicU16::new(401));
    let (port, requests) = fake_v2(Arc::clone(&answer));
    let url = format!("http://127.0.0.1:{port}");
    let env = [
        ("INFLUX_URL", url.as_str()),
        ("INFLUX_BUCKET", "jk"),
        ("INFLUX_ORG", "home"),
        ("INFLUX_TOKEN", "tok-hunter2"),
        ("INFLUX_INTERVAL", "1"),
    ];
    let (mut run, _web) = demo(dir.path(), &env);
    let refused = run.wait_for_log_ever(LIMIT, "influx: InfluxDB answered 401");
    assert!(refused.contains("check INFLUX_TOKEN"), "{refused}");
    // it goes on trying (1, 2, 4 s apart), and says it only once
    for _ in 0..3 {
        requests.recv_timeout(LIMIT).expect("another try");
    }
    answer.store(204, Ordering::SeqCst);
    run.wait_for_log(LIMIT, "influx: writing again");
    let request = requests.recv_timeout(LIMIT).unwrap();
    assert!(
        request.head.starts_with("POST /api/v2/write?"),
        "{}",
        request.head
    );
    let query: BTreeMap<String, String> =
        serde_urlencoded::from_str(request.target().split_once('?').unwrap().1).unwrap();
    assert_eq!(query["bucket"], "jk");
    assert_eq!(query["org"], "home");
    assert_eq!(query["precision"], "ms");
    assert_eq!(request.header("authorization"), Some("Token tok-hunter2"));
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    let text = request.text();
    assert!(text.lines().all(|l| l.starts_with("jkmon_")), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("jkmon_battery,battery=1,name=Simulated\\ BMS")),
        "{text}"
    );
    // points refused for good (a bucket another program filled with other types): named with
    // the fix, counted, not sent again, and said once
    answer.store(400, Ordering::SeqCst);
    let line = run.wait_for_log(LIMIT, "points refused, not sent again");
    assert!(
        line.contains("field type conflict") && line.contains("INFLUX_BUCKET"),
        "{line}"
    );
    for _ in 0..3 {
        requests.recv_timeout(LIMIT).expect("the next batch");
    }
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    let log = run.stderr_seen.join("\n");
    assert_eq!(log.matches("points refused").count(), 1, "{log}");
    assert_eq!(log.matches("check INFLUX_TOKEN").count(), 1, "{log}");
    assert!(!log.contains("hunter2"), "the token in the log:\n{log}");

    // the doctor: an empty write, which a 2.x server answers "requires points" when all else
    // is right; a missing bucket is named
    let doctor = || {
        let out = jkmon(dir.path(), &["doctor"])
            .envs([
                ("JK_BMS_TRANSPORT", "sim"),
                ("WEB_BIND", "127.0.0.1:0"),
                ("DB_PATH", dir.path().join("inverter.db").to_str().unwrap()),
            ])
            .envs(env)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.lines()
            .find(|l| l.contains("InfluxDB"))
            .unwrap()
            .to_string()
    };
    assert!(doctor().contains("may write to the bucket jk (org home)"));
    answer.store(404, Ordering::SeqCst);
    let line = doctor();
    assert!(line.contains("INFLUX_BUCKET"), "{line}");
}

#[test]
fn an_influxdb_that_never_answers_holds_up_neither_the_sessions_nor_the_dashboard_nor_the_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (port, requests) = fake_v2(Arc::new(AtomicU16::new(0)));
    let url = format!("http://127.0.0.1:{port}");
    let (mut run, web) = demo(
        dir.path(),
        &[
            ("INFLUX_URL", url.as_str()),
            ("INFLUX_BUCKET", "jk"),
            ("INFLUX_INTERVAL", "1"),
        ],
    );
    requests.recv_timeout(LIMIT).expect("a first write");
    status_when(&web, |s| s["batteries"][0]["taken_at"].is_string());
    // past the write's 10 s timeout: the status moves on and the dashboard answers
    let seen = watch(&web, Duration::from_secs(14), Duration::from_secs(1));
    for pair in seen.windows(2) {
        assert!(pair[1].taken_ms > pair[0].taken_ms, "the snapshots stalled");
    }
    let slowest = seen.iter().map(|s| s.page).max().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "the dashboard waited {slowest:?}"
    );
    let line = run.wait_for_log_ever(LIMIT, "influx: cannot write to");
    assert!(line.contains("no answer within 10 s"), "{line}");
    // a stop during a write that hangs: the points are counted as not written, and jkmon goes
    let stopping = Instant::now();
    run.signal("TERM");
    assert!(run.wait_exit(LIMIT).success());
    let took = stopping.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with a write hanging");
    assert!(took < Duration::from_secs(8), "the stop took {took:?}");
    run.wait_for_log_ever(Duration::from_secs(1), "points were not written");
}
