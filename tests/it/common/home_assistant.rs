//! A real Home Assistant (2024.3, the last release for this machine's Python 3.11) on the
//! loopback, from the virtual environment `scripts/test.sh` keeps under the user's cache
//! directory: its MQTT integration set up through its own API against the test's broker, and
//! what it thinks read back through its REST and websocket APIs and its log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The Home Assistant release the suite runs (tests/home_assistant/constraints.txt pins the
/// rest).
pub const VERSION: &str = "2024.3.3";

/// Where `scripts/test.sh` installs it: `$TEST_HA_VENV`, else
/// `${XDG_CACHE_HOME:-~/.cache}/jkmon/home-assistant-<VERSION>`.
pub fn venv() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEST_HA_VENV") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"));
    cache
        .join("jkmon")
        .join(format!("home-assistant-{VERSION}"))
}

fn helper() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/home_assistant/ha.py")
}

pub struct HomeAssistant {
    pub url: String,
    addr: String,
    token: String,
    config: PathBuf,
    child: Child,
}

impl HomeAssistant {
    /// Starts Home Assistant in `dir` with MQTT on `broker_port`; `None` (a loud skip, a
    /// failure in CI) where it is not installed.
    pub fn start(dir: &Path, broker_port: u16) -> Option<HomeAssistant> {
        let venv = venv();
        let hass = venv.join("bin/hass");
        if !super::require(
            hass.is_file(),
            &format!(
                "Home Assistant {VERSION} is not installed at {} (scripts/test.sh installs it)",
                venv.display()
            ),
        ) {
            return None;
        }
        let port = super::free_port();
        let config = dir.join("home-assistant");
        run_helper(&["config", config.to_str().unwrap(), &port.to_string()]);
        let log = std::fs::File::create(dir.join("hass.out")).unwrap();
        let child = Command::new(&hass)
            .args(["-c", config.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let mut ha = HomeAssistant {
            url: format!("http://{addr}"),
            addr,
            token: String::new(),
            config,
            child,
        };
        ha.wait_ready(Duration::from_secs(240));
        ha.onboard();
        ha.add_mqtt(broker_port);
        Some(ha)
    }

    /// Ready when the API answers (401 without a token). The first start takes 30–60 s on
    /// two cores.
    fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "Home Assistant exited with {status} before it answered:\n{}",
                    self.log()
                );
            }
            if std::net::TcpStream::connect(&self.addr).is_ok()
                && super::process::http(&self.addr, "GET", "/api/", &[], "").0 == 401
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Home Assistant did not answer within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The owner's account, made through the onboarding API, and an access token for it.
    fn onboard(&mut self) {
        let client = format!("{}/", self.url);
        let (code, body) = super::process::http(
            &self.addr,
            "POST",
            "/api/onboarding/users",
            &[("Content-Type", "application/json")],
            &json!({"client_id": client, "name": "Owner", "username": "owner",
                    "password": "jkmon-test-password", "language": "en"})
            .to_string(),
        );
        assert_eq!(code, 200, "onboarding: {body}");
        let auth_code = serde_json::from_str::<Value>(&body).unwrap()["auth_code"]
            .as_str()
            .unwrap()
            .to_string();
        let form = format!(
            "grant_type=authorization_code&code={auth_code}&client_id={}",
            super::urlencode(&client)
        );
        let (code, body) = super::process::http(
            &self.addr,
            "POST",
            "/auth/token",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &form,
        );
        assert_eq!(code, 200, "token: {body}");
        self.token = serde_json::from_str::<Value>(&body).unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
    }

    /// The MQTT integration, set up as an owner does in the UI (a config flow).
    fn add_mqtt(&self, port: u16) {
        let flow = self.post(
            "/api/config/config_entries/flow",
            &json!({"handler": "mqtt"}),
        );
        let id = flow["flow_id"].as_str().unwrap_or_else(|| panic!("{flow}"));
        let done = self.post(
            &format!("/api/config/config_entries/flow/{id}"),
            &json!({"broker": "127.0.0.1", "port": port}),
        );
        assert_eq!(done["type"], "create_entry", "{done}");
    }

    fn headers(&self) -> [(&str, String); 2] {
        [
            ("Authorization", format!("Bearer {}", self.token)),
            ("Content-Type", "application/json".into()),
        ]
    }

    /// `POST path` with a JSON body; the answer's JSON.
    pub fn post(&self, path: &str, body: &Value) -> Value {
        let h = self.headers();
        let headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, text) =
            super::process::http(&self.addr, "POST", path, &headers, &body.to_string());
        assert!((200..300).contains(&code), "POST {path}: {code} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// `GET path`; the answer's JSON.
    pub fn get(&self, path: &str) -> Value {
        let h = self.headers();
        let headers: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, text) = super::process::http(&self.addr, "GET", path, &headers, "");
        assert_eq!(code, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Every entity's state, by entity id.
    pub fn states(&self) -> std::collections::BTreeMap<String, Value> {
        self.get("/api/states")
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["entity_id"].as_str().unwrap().to_string(), s.clone()))
            .collect()
    }

    /// The results of `messages` sent over the websocket API, in order; each must succeed.
    pub fn ws(&self, messages: &[Value]) -> Vec<Value> {
        let out = run_helper(&[
            "ws",
            &self.url,
            &self.token,
            &Value::from(messages.to_vec()).to_string(),
        ]);
        let results: Vec<Value> = serde_json::from_str(&out).unwrap();
        for (m, r) in messages.iter().zip(&results) {
            assert_eq!(r["success"], true, "{m} → {r}");
        }
        results.into_iter().map(|r| r["result"].clone()).collect()
    }

    /// The entity registry's entries of jkmon's MQTT entities (by their unique ids' prefix).
    pub fn jkmon_entities(&self) -> Vec<Value> {
        let list = self
            .ws(&[json!({"type": "config/entity_registry/list"})])
            .remove(0);
        list.as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["platform"] == "mqtt"
                    && e["unique_id"]
                        .as_str()
                        .is_some_and(|u| u.starts_with("jkmon_"))
            })
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds for the states, asking every 200 ms up to `limit`.
    pub fn wait_states(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&std::collections::BTreeMap<String, Value>) -> bool,
    ) -> std::collections::BTreeMap<String, Value> {
        let deadline = Instant::now() + limit;
        loop {
            let states = self.states();
            if pred(&states) {
                return states;
            }
            assert!(
                Instant::now() < deadline,
                "Home Assistant never showed {what} within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every state `entity` had since `since` (RFC 3339), oldest first.
    pub fn history(&self, entity: &str, since: &str) -> Vec<Value> {
        let path = format!(
            "/api/history/period/{}?filter_entity_id={entity}&minimal_response&no_attributes",
            super::urlencode(since)
        );
        self.get(&path)
            .as_array()
            .and_then(|a| a.first().cloned())
            .and_then(|a| a.as_array().cloned())
            .unwrap_or_default()
    }

    /// Home Assistant's own log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.join("home-assistant.log")).unwrap_or_default()
    }
}

impl Drop for HomeAssistant {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs tests/home_assistant/ha.py with Home Assistant's Python; its standard output.
fn run_helper(args: &[&str]) -> String {
    let out = Command::new(venv().join("bin/python"))
        .arg(helper())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ha.py {}: {}",
        args.first().unwrap_or(&""),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
