//! A real browser on a real jkmon: headless Chromium, driven over the DevTools protocol, opens
//! the dashboard of `jkmon run --demo`, waits for live data, checks the cell chart and that a
//! value changes without a reload, then the history page; it saves both as PNG screenshots in
//! `target/test-artifacts/`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::Running;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// Chromium, killed when the test ends.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1280,1700",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            // keep the Bluetooth tests' private bus away from the browser
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        // Chromium says where DevTools listens; that line is the event to wait for.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium announces its DevTools port");
        let port = url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Browser {
            child,
            _profile: profile,
            port,
        }
    }

    /// The DevTools connection of the first page.
    fn page(&self) -> Page {
        let (_, list) =
            common::process::http_get(&format!("127.0.0.1:{}", self.port), "/json/list");
        let targets: Vec<Value> = serde_json::from_str(&list).unwrap();
        let ws = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let (socket, _) = tungstenite::client(ws.as_str(), stream).expect("DevTools handshake");
        let mut page = Page { socket, next_id: 0 };
        page.call("Page.enable", json!({}));
        page.call("Runtime.enable", json!({}));
        page
    }
}

struct Page {
    socket: WebSocket<TcpStream>,
    next_id: u64,
}

impl Page {
    fn read(&mut self) -> Value {
        loop {
            match self.socket.read().expect("DevTools message (60 s at most)") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                Message::Close(_) => panic!("DevTools closed the connection"),
                _ => continue,
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.socket.send(Message::text(msg)).unwrap();
        // events in between are skipped; the read timeout bounds the wait
        for _ in 0..10_000 {
            let v = self.read();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
        panic!("no answer to {method}");
    }

    fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        for _ in 0..10_000 {
            if self.read()["method"] == "Page.loadEventFired" {
                return;
            }
        }
        panic!("{url} never finished loading");
    }

    /// Evaluates `expression` (a promise is awaited) and returns its JSON value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, path: &Path) {
        use base64_decode as decode;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = decode(r["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

/// Standard base64 (what DevTools sends), without a crate for one call.
fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').map(value).collect();
    bytes
        .chunks(4)
        .flat_map(|q| {
            let n = q.iter().fold(0u32, |acc, v| acc << 6 | u32::from(*v)) << (6 * (4 - q.len()));
            let all = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            all.into_iter().take(q.len() * 3 / 4)
        })
        .collect()
}

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
    page: window.jkmonPageId,
}), { once: true }))"#;

#[test]
fn the_dashboard_is_live_in_a_real_browser_and_the_history_page_draws() {
    if !common::have_program("chromium", &["--version"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jkmon"));
    cmd.args(["run", "--demo"])
        .current_dir(dir.path())
        .env_remove("JK_BMS_ADDRESS")
        .env_remove("JK_BMS_NAMES")
        .env("DB_PATH", dir.path().join("demo.db"))
        .env("WEB_BIND", "127.0.0.1:0")
        .env("WEB_LIVE_SEC", "0.5")
        .env("JK_BMS_POLL_INTERVAL", "0.5")
        .env("JK_SIM_INVERTER_SEC", "0.5")
        .env("JK_SIM_INTERVAL_MS", "100")
        .env("RUST_LOG", "warn,jkmon=info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut jkmon = Running::spawn(cmd);
    let base = format!("http://{}", jkmon.web_address(Duration::from_secs(30)));
    jkmon.wait_for_log(Duration::from_secs(30), "merged into readings #");

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
    assert!(["LINE", "SBU"].contains(&first["inverter"].as_str().unwrap()));
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
    page.screenshot(&artifacts().join("dashboard.png"));

    page.navigate(&format!("{base}/charts"));
    let drawn = page.eval(
        r##"(document.body.dataset.historyLoaded ? Promise.resolve() :
             new Promise(r => document.addEventListener("jkmon:history", r, { once: true })))
           .then(() => ({
             svgs: document.querySelectorAll(".chart svg").length,
             cells: document.querySelectorAll("#c-cells .legend span").length,
             lines: document.querySelectorAll("#c-voltage polyline").length,
             inverter: document.querySelectorAll("#c-inverter polyline").length,
           }))"##,
    );
    assert_eq!(drawn["svgs"], 8, "{drawn}");
    assert_eq!(drawn["cells"], 16, "a line per cell");
    assert_eq!(drawn["lines"], 1);
    assert!(
        drawn["inverter"].as_u64().unwrap() >= 2,
        "grid and load: {drawn}"
    );
    page.screenshot(&artifacts().join("history.png"));
}
