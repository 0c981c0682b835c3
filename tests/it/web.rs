//! The web router driven with `oneshot` over a real SQLite file the store wrote: every route,
//! status codes, the access token, security headers and the history buckets.

use crate::common;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::{Local, Utc};
use http_body_util::BodyExt;
use jkmon::battery::soc::{estimator, SocSource, VoltageCurve};
use jkmon::battery::Snapshot;
use jkmon::protocol::CellInfo;
use jkmon::store::read::{ReadConfig, Readers};
use jkmon::store::{Battery, Bucket, Retention, Store, StoreConfig, Update};
use jkmon::web::{router, AppState};
use serde_json::Value;
use tower::ServiceExt;

fn snapshot(current_ma: i32) -> Snapshot {
    let mut c = CellInfo::example();
    c.cell_voltages_uv = (0..8).map(|i| 3_300_000 + i * 1_000).collect();
    c.cell_resistances_uohm = vec![60_000; 8];
    c.total_voltage_mv = c.cell_voltages_uv.iter().sum::<u32>() / 1000;
    c.current_ma = Some(current_ma);
    Snapshot::new(
        c,
        None,
        None,
        estimator(SocSource::Bms, &VoltageCurve::default()).as_ref(),
    )
}

fn batteries() -> Vec<Battery> {
    vec![
        Battery {
            position: 1,
            name: "Main".into(),
            address: Some("C8:47:80:00:00:01".into()),
        },
        Battery {
            position: 2,
            name: "<script>alert(1)</script>".into(),
            address: None,
        },
    ]
}

/// A database where battery 1 is fresh and battery 2 last reported `age_2` ago, with one
/// inverter row.
fn database(path: &Path, age_2: chrono::Duration) -> Store {
    let mut store = Store::open(path, StoreConfig::default()).unwrap();
    store.register(&batteries(), 0).unwrap();
    store
        .connection()
        .execute(
            "INSERT INTO readings (created_at, payload) VALUES (?1, '{\"grid_voltage\": \"231.4\", \"grid_power\": \"400\", \"ac_output_power\": \"350\", \"status_text\": \"LINE\"}')",
            [Local::now().to_rfc3339()],
        )
        .unwrap();
    let (s1, s2) = (snapshot(10_000), snapshot(-4_000));
    let (mut b1, mut b2) = (Bucket::default(), Bucket::default());
    b1.add(&s1);
    b2.add(&s2);
    store
        .commit(
            &[
                Update {
                    position: 1,
                    snapshot: &s1,
                    taken_at: Local::now(),
                    bucket: &b1,
                    fresh: true,
                    energy: &jkmon::store::energy::NO_ENERGY,
                },
                Update {
                    position: 2,
                    snapshot: &s2,
                    taken_at: Local::now() - age_2,
                    bucket: &b2,
                    fresh: true,
                    energy: &jkmon::store::energy::NO_ENERGY,
                },
            ],
            Local::now(),
        )
        .unwrap();
    for p in [1, 2] {
        store
            .set_state(p, jkmon::session::State::Streaming, "", 0)
            .unwrap();
    }
    store
}

fn state(path: &Path, token: Option<&str>) -> Arc<AppState> {
    Arc::new(AppState::new(
        Readers::new(path, Duration::from_secs(5)),
        ReadConfig {
            batteries: batteries(),
            liveness: jkmon::session::Liveness {
                freshness: std::time::Duration::from_secs(60),
                mode: jkmon::session::ConnectMode::Persistent,
            },
            retention: Retention::default(),
            inverter_max_gap: Duration::from_secs(30),
        },
        token.map(String::from),
        jkmon::web::PageConfig::default(),
    ))
}

async fn get(
    state: &Arc<AppState>,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let (status, headers, text) = get_text(state, uri, headers).await;
    let body =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {text}"));
    (status, headers, body)
}

#[tokio::test]
async fn status_batteries_and_the_bank() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, None);
    let (code, headers, body) = get(&state, "/api/v1/status", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let b = &body["batteries"];
    assert_eq!(b.as_array().unwrap().len(), 2);
    assert_eq!(b[0]["name"], "Main");
    assert_eq!(b[0]["online"], true);
    assert_eq!(b[0]["snapshot"]["cell_count"], 8);
    assert_eq!(b[0]["snapshot"]["current_a"], 10.0);
    assert_eq!(
        b[1]["name"], "<script>alert(1)</script>",
        "JSON carries the name as data"
    );
    assert_eq!(body["bank"]["batteries_online"], 2);
    assert_eq!(body["bank"]["current_a"], 6.0);
    assert_eq!(body["inverter"]["has_inverter_data"], true);
    assert_eq!(body["inverter"]["payload"]["grid_voltage"], "231.4");
    assert_eq!(body["inverter"]["payload"]["bms_name"], "Main", "merged");

    let (code, _, body) = get(&state, "/api/v1/batteries", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn health_is_503_with_the_reason_when_a_bms_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("fresh.db");
    let _a = database(&fresh, chrono::Duration::seconds(1));
    let (code, _, body) = get(&state(&fresh, None), "/api/v1/health", &[]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");

    let stale = dir.path().join("stale.db");
    let _b = database(&stale, chrono::Duration::seconds(300));
    let (code, _, body) = get(&state(&stale, None), "/api/v1/health", &[]).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    let problems = body["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{body}");
    let p = problems[0].as_str().unwrap();
    assert!(
        p.starts_with("<script>alert(1)</script>: last snapshot 30"),
        "{p}"
    );
    assert!(p.contains("limit 60 s"), "{p}");
}

#[tokio::test]
async fn history_buckets_filters_and_bad_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let store = database(&path, chrono::Duration::seconds(1));
    // 2 hours of interval rows every 30 s for battery 1, current rising 1 mA a row
    let device: i64 = store
        .connection()
        .query_row("SELECT id FROM bms_devices WHERE position = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    let now_ms = Utc::now().timestamp_millis();
    let start_ms = (now_ms - 2 * 3_600_000) / 300_000 * 300_000;
    for i in 0..240i64 {
        let mut b = Bucket::default();
        b.add(&snapshot(1_000 + i as i32));
        b.to_row(device, 0, start_ms + i * 30_000)
            .insert(store.connection())
            .unwrap();
    }
    let state = state(&path, None);

    // defaults: every battery, the last 24 h, 300 s buckets
    let (code, _, body) = get(&state, "/api/v1/history", &[]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["bucket_s"], 300);
    assert_eq!(body["batteries"].as_array().unwrap().len(), 2);
    let points = body["batteries"][0]["points"].as_array().unwrap();
    assert!((24..=25).contains(&points.len()), "{} points", points.len());
    // the first bucket: rows 0..9, currents 1000..1009 mA → average 1.0045 A
    assert_eq!(points[0]["samples"], 10);
    assert_eq!(points[0]["current_a"]["avg"], 1.0045);
    assert_eq!(points[0]["current_a"]["min"], 1.0);
    assert_eq!(points[0]["current_a"]["max"], 1.009);
    assert_eq!(points[0]["cells_v"].as_array().unwrap().len(), 8);
    assert_eq!(
        body["inverter"][0]["grid_power_w"]["avg"], 400.0,
        "{}",
        body["inverter"]
    );

    // one battery, a range, an hourly bucket
    let from = (start_ms / 1000).to_string();
    let to = (start_ms / 1000 + 7_200).to_string();
    let uri = format!("/api/v1/history?battery=1&from={from}&to={to}&bucket=3600");
    let (code, _, body) = get(&state, &uri, &[]).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["batteries"].as_array().unwrap().len(), 1);
    let points = body["batteries"][0]["points"].as_array().unwrap();
    let samples: u64 = points.iter().map(|p| p["samples"].as_u64().unwrap()).sum();
    assert_eq!(samples, 240);

    for (uri, param) in [
        ("/api/v1/history?battery=9", "battery=\"9\""),
        ("/api/v1/history?bucket=7", "bucket=\"7\""),
        ("/api/v1/history?from=yesterday", "from=\"yesterday\""),
        (
            "/api/v1/history?from=2026-01-02&to=2026-01-01",
            "from must be before to",
        ),
    ] {
        let (code, _, body) = get(&state, uri, &[]).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            body["error"].as_str().unwrap().contains(param),
            "{uri}: {body}"
        );
    }
}

#[tokio::test]
async fn the_python_monitors_history_route_keeps_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let store = database(&path, chrono::Duration::seconds(1));
    store
        .connection()
        .execute(
            "INSERT INTO readings (created_at, error) VALUES (?1, 'timeout')",
            [Local::now().to_rfc3339()],
        )
        .unwrap();
    store
        .connection()
        .execute(
            "INSERT INTO readings (created_at, payload) VALUES ('2020-01-01T00:00:00+02:00', '{}')",
            [],
        )
        .unwrap();
    let state = state(&path, None);
    let (code, _, body) = get(&state, "/history?days=1", &[]).await;
    assert_eq!(code, StatusCode::OK);
    let rows = body.as_array().unwrap();
    assert_eq!(rows.len(), 2, "the 2020 row is older than a day: {body}");
    assert_eq!(rows[0]["error"], "timeout", "newest first");
    assert!(rows[0]["payload"].is_null());
    assert_eq!(rows[1]["payload"]["grid_voltage"], "231.4");
    assert!(rows[1]["created_at"].is_string());
    // no (or a bad) days: the newest rows, as the Python monitor did
    let (_, _, body) = get(&state, "/history?days=abc", &[]).await;
    assert_eq!(body.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn the_access_token_guards_everything_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, Some("s3cret-token"));
    for uri in [
        "/api/v1/status",
        "/api/v1/batteries",
        "/api/v1/history",
        "/history",
        "/metrics",
    ] {
        let (code, headers, body) = get(&state, uri, &[]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
        assert!(
            !body.to_string().contains("s3cret"),
            "the token is never echoed"
        );
        let (code, _, _) = get(&state, uri, &[("authorization", "Bearer wrong-token")]).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // five wrong tokens from one client lock it out for a while (see
    // guessing_the_token_is_stopped_per_client): the right ones come from a fresh server
    let state = self::state(&path, Some("s3cret-token"));
    let (code, _, _) = get(
        &state,
        "/api/v1/status",
        &[("authorization", "Bearer s3cret-token")],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, _) = get(
        &state,
        "/api/v1/status",
        &[("cookie", "theme=dark; jkmon_token=s3cret-token")],
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _, _) = get(&state, "/api/v1/health", &[]).await;
    assert_eq!(code, StatusCode::OK, "Docker's healthcheck needs no token");
}

#[tokio::test]
async fn security_headers_and_json_errors_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, None);
    for uri in ["/api/v1/status", "/no/such/page"] {
        let (code, headers, body) = get(&state, uri, &[]).await;
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert!(headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'"));
        if uri.starts_with("/no") {
            assert_eq!(code, StatusCode::NOT_FOUND);
            assert!(body["error"].is_string());
        }
    }
}

#[tokio::test]
async fn bms_only_rows_read_as_no_inverter_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bms-only.db");
    let mut store = Store::open(&path, StoreConfig::default()).unwrap();
    store.register(&batteries()[..1], 0).unwrap();
    common::commit_one(&mut store, 1, &snapshot(500));
    let (code, _, body) = get(&state(&path, None), "/api/v1/status", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(body["inverter"]["has_inverter_data"], false);
    assert_eq!(body["inverter"]["payload"]["source"], "jkmon");
}

async fn get_text(
    state: &Arc<AppState>,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, String) {
    let mut req = Request::builder().uri(uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = router(state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn the_dashboard_escapes_a_hostile_name_and_embeds_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, None);
    let (code, headers, html) = get_text(&state, "/", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(
        !html.contains("<script>alert"),
        "the name is text, not markup"
    );
    assert!(html.contains("<span class=\"name\">&#60;script&#62;alert(1)&#60;/script&#62;</span>"));
    assert!(html.contains("id=\"battery-1\"") && html.contains("id=\"battery-2\""));
    assert!(
        html.contains("id=\"bank\""),
        "two batteries: a bank summary"
    );
    // the embedded status is the API's JSON, escaped as an attribute
    let start = html.find("data-status=\"").unwrap() + 13;
    let end = start + html[start..].find('"').unwrap();
    let attr = html[start..end]
        .replace("&#34;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#39;", "'")
        .replace("&#38;", "&");
    let status: Value = serde_json::from_str(&attr).unwrap();
    assert_eq!(status["batteries"][0]["snapshot"]["cell_count"], 8);
    // no script or style is inline: the content policy allows only files from this server
    assert!(!html.contains("<script>") && !html.contains("style="));
    for src in [
        "/static/common.js",
        "/static/charts.js",
        "/static/dashboard.js",
    ] {
        assert!(html.contains(src), "{src}");
    }
}

#[tokio::test]
async fn the_history_page_and_the_assets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, None);
    let (code, _, html) = get_text(&state, "/charts", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("<option value=\"2\">&#60;script&#62;alert(1)&#60;/script&#62;</option>"));
    for id in [
        "c-voltage",
        "c-current",
        "c-power",
        "c-soc",
        "c-temps",
        "c-delta",
        "c-cells",
        "c-inverter",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
    }
    for (file, kind) in [
        ("app.css", "text/css"),
        ("charts.js", "text/javascript"),
        ("dashboard.js", "text/javascript"),
        ("history.js", "text/javascript"),
        ("common.js", "text/javascript"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let (code, headers, body) = get_text(&state, &format!("/static/{file}"), &[]).await;
        assert_eq!(code, StatusCode::OK, "{file}");
        assert!(headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        // nothing from the internet (the SVG namespace is a name, not a download)
        let external = body
            .match_indices("http")
            .filter(|(i, _)| !body[*i..].starts_with("http://www.w3.org/2000/svg"))
            .count();
        assert_eq!(external, 0, "{file} refers to the internet");
    }
    let (code, _, _) = get_text(&state, "/static/../Cargo.toml", &[]).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn live_events_start_with_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let response = router(state(&path, None))
        .oneshot(
            Request::builder()
                .uri("/api/v1/events")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("the first event comes at once")
        .unwrap()
        .unwrap();
    let text = String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap();
    assert!(text.starts_with("event: status\ndata: {"), "{text}");
    let json: Value =
        serde_json::from_str(text.trim_start_matches("event: status\ndata: ").trim()).unwrap();
    assert_eq!(json["batteries"][0]["name"], "Main");
}

#[tokio::test]
async fn pages_send_a_browser_without_the_token_to_the_login_form() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, Some("s3cret-token"));
    let (code, headers, _) = get_text(&state, "/", &[]).await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert_eq!(headers[header::LOCATION], "/login");
    let (code, _, html) = get_text(&state, "/login", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("name=\"token\""));
    let (code, _, _) = get_text(&state, "/static/app.css", &[]).await;
    assert_eq!(code, StatusCode::OK, "assets need no token");

    let post = |token: &str| {
        Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let wrong = router(state.clone()).oneshot(post("guess")).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    let right = router(state.clone())
        .oneshot(post("s3cret-token"))
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    let cookie = right.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap();
    let (code, _, html) = get_text(&state, "/", &[("cookie", pair)]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("id=\"battery-1\""));
}

/// A small deterministic generator for the query-string property test.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    /// Random bytes, percent-encoded, some raw.
    fn junk(&mut self) -> String {
        let n = self.next() % 40;
        (0..n)
            .map(|_| {
                let b = (self.next() % 256) as u8;
                if b.is_ascii_alphanumeric() || b"-._~:+".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}

/// Values that have broken date arithmetic, number parsing and ranges elsewhere.
const EXTREMES: &[&str] = &[
    "",
    "0",
    "-0",
    "1",
    "-1",
    "-8334601228800",
    "8334601228800",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999999999",
    "1e308",
    "-1e308",
    "NaN",
    "inf",
    "-inf",
    "0.0000001",
    "1.5",
    "3600",
    "300",
    "86400",
    "604800",
    "2026-01-16",
    "2026-02-30",
    "0000-01-01",
    "9999-12-31",
    "+275760-09-13",
    "2026-01-16T21:32:00+02:00",
    "2026-01-16T21:32:00+99:00",
    "2026-01-16T25:61:61Z",
    "1,2",
    "1,,2",
    ",",
    "999",
    "%00",
    "%FF%FE",
    "%E2%82%AC",
    "%ZZ",
    "%",
    "a=b",
    "[]",
    "{}",
    "\u{202e}",
    "%0A%0D",
    "1;DROP TABLE readings",
    "' OR 1=1 --",
    "<script>",
    "..%2F..%2Fetc%2Fpasswd",
];

#[tokio::test]
async fn thousands_of_random_and_extreme_query_strings_never_panic_or_fail_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, None);
    let routes = [
        "/",
        "/charts",
        "/api/v1/status",
        "/api/v1/batteries",
        "/api/v1/history",
        "/api/v1/health",
        "/history",
        "/metrics",
        "/login",
        "/static/app.js",
        "/static/..%2Fsecret",
        "/no/such/page",
    ];
    let keys = ["from", "to", "bucket", "battery", "days", "x"];
    let mut g = Gen(0x5eed_1234_abcd_0001);
    let mut bad_requests = 0;
    for i in 0..3_000 {
        let route = routes[i % routes.len()];
        let pairs = 1 + g.next() % 4;
        let query: Vec<String> = (0..pairs)
            .map(|_| {
                let key = g.pick(&keys);
                let value = if g.next().is_multiple_of(3) {
                    g.junk()
                } else {
                    g.pick(EXTREMES).to_string()
                };
                format!("{key}={}", value.replace(' ', "%20"))
            })
            .collect();
        let uri = format!("{route}?{}", query.join("&"));
        let Ok(request) = Request::builder().uri(&uri).body(Body::empty()) else {
            continue; // not a URI a client could send
        };
        let response = router(state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(!status.is_server_error(), "{uri}: {status} {text}");
        if status == StatusCode::BAD_REQUEST {
            bad_requests += 1;
            let named = keys
                .iter()
                .any(|k| text.contains(&format!("{k}=")) || text.contains(&format!("{k} ")));
            assert!(named, "{uri}: a 400 that names no parameter: {text}");
        }
    }
    assert!(
        bad_requests > 100,
        "the generator reached the checks ({bad_requests})"
    );
}

/// A request from `ip` (as the server marks each request with its peer).
async fn from(
    state: &Arc<AppState>,
    ip: [u8; 4],
    request: axum::http::request::Builder,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap) {
    let mut req = request.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            ip, 40_000,
        ))));
    let response = router(state.clone()).oneshot(req).await.unwrap();
    (response.status(), response.headers().clone())
}

#[tokio::test]
async fn guessing_the_token_is_stopped_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let state = state(&path, Some("s3cret-token"));
    let bearer = |token: &str| {
        Request::builder()
            .uri("/api/v1/status")
            .header("authorization", format!("Bearer {token}"))
    };
    let login = || {
        Request::builder()
            .method("POST")
            .uri("/login")
            .header("content-type", "application/x-www-form-urlencoded")
    };
    let guesser = [192, 0, 2, 7];
    // a few wrong guesses, on the form and as bearer tokens: refused one by one
    for i in 0..5 {
        let (code, _) = if i % 2 == 0 {
            from(&state, guesser, bearer(&format!("guess-{i}")), "").await
        } else {
            from(&state, guesser, login(), &format!("token=guess-{i}")).await
        };
        assert_eq!(code, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    // then the address waits, whatever it sends, even the right token
    for request in [bearer("wrong"), bearer("s3cret-token")] {
        let (code, headers) = from(&state, guesser, request, "").await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "{wait}");
    }
    let (code, _) = from(&state, guesser, login(), "token=s3cret-token").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    // the owner at another address is not affected
    let (code, _) = from(&state, [192, 0, 2, 8], bearer("s3cret-token"), "").await;
    assert_eq!(code, StatusCode::OK);
    let (code, headers) = from(&state, [192, 0, 2, 8], login(), "token=s3cret-token").await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert!(headers.contains_key(header::SET_COOKIE));
    // health stays open to everyone
    let (code, _) = from(
        &state,
        guesser,
        Request::builder().uri("/api/v1/health"),
        "",
    )
    .await;
    assert_eq!(code, StatusCode::OK);
}

#[tokio::test]
async fn the_python_monitors_history_route_returns_every_row_of_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let store = database(&path, chrono::Duration::seconds(1));
    // a week of rows every 10 s: more than the 50,000 an earlier jkmon cut the answer at
    let now = Utc::now().timestamp();
    {
        let conn = store.connection();
        conn.execute_batch("BEGIN").unwrap();
        let mut insert = conn
            .prepare(
                "INSERT INTO readings (created_at, payload) VALUES (?1, '{\"grid_power\": \"1\"}')",
            )
            .unwrap();
        for i in 0..60_480i64 {
            let t = chrono::DateTime::from_timestamp(now - 7 * 86_400 + i * 10, 0).unwrap();
            insert
                .execute([t.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string()])
                .unwrap();
        }
        drop(insert);
        conn.execute_batch("COMMIT").unwrap();
    }
    let state = state(&path, None);
    let (code, headers, text) = get_text(&state, "/history?days=30", &[]).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let rows: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(
        rows.len(),
        60_480 + 1,
        "every row of the range, and the inverter row"
    );
    assert!(rows
        .windows(2)
        .all(|w| w[0]["created_at"].as_str() >= w[1]["created_at"].as_str()));
    let (_, _, text) = get_text(&state, "/history?days=1", &[]).await;
    // the day ends when the route is asked: a row every 10 s falls out of it for each 10 s
    // the insert and the first request took (a loaded machine takes several)
    let waited_s = Utc::now().timestamp() - now;
    let day: Vec<Value> = serde_json::from_str(&text).unwrap();
    let least = 8_640 - (waited_s / 10 + 1) as usize;
    assert!(
        (least..=8_642).contains(&day.len()),
        "{} rows, {waited_s} s after the insert",
        day.len()
    );
}

/// The switch route in a process that runs no BMS session (`jkmon web` on its own): refused
/// without a token, and with one it says where switching happens; nothing is sent anywhere.
#[tokio::test]
async fn the_web_alone_refuses_switch_writes_and_says_where_to_send_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    let _store = database(&path, chrono::Duration::seconds(1));
    let post = |state: Arc<AppState>, auth: Option<&'static str>| async move {
        let mut req = Request::builder()
            .method("POST")
            .uri("/api/v1/batteries/1/switches")
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let body = Body::from(r#"{"switch": "charging", "on": false}"#);
        let response = router(state)
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text: Value = serde_json::from_slice(&bytes).unwrap();
        (
            status,
            text["error"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (code, e) = post(state(&path, None), None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(e.contains("needs WEB_AUTH_TOKEN"), "{e}");
    let (code, e) = post(state(&path, Some("t")), Some("Bearer t")).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(e.contains("`jkmon run` or `jkmon poll`"), "{e}");
}

/// A burst of page loads reads the file about once, not once or twice per page: `/`, the
/// health check and the status share one status read per half second, and requests that find
/// it expired wait for that one read (before, `/` read the battery list from the file on
/// every request, and above eight at once each opened a connection of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_pages_shares_one_read_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inverter.db");
    database(&path, chrono::Duration::seconds(5));
    let state = state(&path, None);
    let before = state.readers.reads();
    let app = router(state.clone());
    let requests = (0..60).map(|i| {
        let app = app.clone();
        let uri = ["/", "/api/v1/health", "/api/v1/status"][i % 3];
        async move {
            let response = app
                .oneshot(Request::builder().uri(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            (uri, response.status())
        }
    });
    for (uri, status) in futures_util::future::join_all(requests).await {
        assert!(
            status == StatusCode::OK || (uri == "/api/v1/health" && status.is_server_error()),
            "{uri}: {status}"
        );
    }
    let reads = state.readers.reads() - before;
    assert!(reads <= 2, "{reads} reads of the file for 60 requests");
}
