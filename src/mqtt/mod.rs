//! MQTT: every battery's snapshot on a broker, for Home Assistant, Node-RED and friends.
//!
//! Under the base topic (`MQTT_TOPIC`, default `jkmon`):
//!
//! | topic | retained | what |
//! |---|---|---|
//! | `<base>/status` | yes | `online`, or `offline` (also the broker's last will for jkmon) |
//! | `<base>/batteryN/availability` | yes | `online` while battery N delivers fresh readings |
//! | `<base>/batteryN/state` | yes | the snapshot as JSON, the fields of `jkmon read --json` |
//! | `<base>/batteryN/device` | yes | model, versions, serial number (no passcodes) |
//! | `<base>/pack`, `<base>/cells` | no | NodeJKBMS's payloads (`MQTT_NODEJKBMS=true`) |
//! | `<base>/batteryN/switch/<switch>/set` | — | jkmon listens: `ON` or `OFF` sets the switch (only where JK_BMS_CONTROL allows it) |
//!
//! Home Assistant discovery configs go under `MQTT_DISCOVERY_PREFIX` (default `homeassistant`).
//!
//! The layers: [`feed`] is what the service knows of each battery (written without waiting),
//! [`payload`] and [`discovery`] turn a snapshot into messages (pure), [`publisher`] decides
//! what to send when (pure, an explicit state), and [`client`] is the thin rumqttc shell that
//! connects, reconnects with backoff and sends.
//!
//! Layer 6 (a view): may use `control` (switch commands), `battery` (the sessions' events,
//! `battery::link`), `inverter`, `store` (the battery list), `report` and `protocol`; not
//! `session`, never another view.

pub mod client;
pub mod discovery;
pub mod feed;
pub mod inverter;
pub mod payload;
pub mod publisher;

use std::fmt;
use std::path::PathBuf;

pub use client::run;
pub use feed::{BatteryFeed, Feed};

/// Where the broker is (`MQTT_URL`).
#[derive(Clone, PartialEq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl fmt::Display for Broker {
    /// The URL without the password, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{scheme}://{user}{host}:{}", self.port)
    }
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Broker({self})")
    }
}

/// The MQTT part of the configuration (present when `MQTT_URL` is set).
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub broker: Broker,
    /// `MQTT_TOPIC`.
    pub base: String,
    /// `MQTT_DISCOVERY_PREFIX`; `None` (`off`) publishes no Home Assistant discovery.
    pub discovery_prefix: Option<String>,
    /// `MQTT_NODEJKBMS`: also NodeJKBMS's `pack` and `cells` payloads.
    pub nodejkbms: bool,
    /// `MQTT_CA_FILE`: the CA of an `mqtts://` broker with its own certificate authority.
    pub ca_file: Option<PathBuf>,
    /// `MQTT_CLIENT_ID` (default `jkmon-<topic>`).
    pub client_id: String,
    /// `MQTT_STATE_SEC`: how often a battery's state may go out (default 5 s); it goes only
    /// when it changed, or once a minute.
    pub state_every: std::time::Duration,
    /// The dashboard's address (`WEB_URL`), the devices' `configuration_url`.
    pub dashboard_url: Option<String>,
}

/// One battery's place on the broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BatteryTopics {
    /// 1-based, as everywhere in jkmon.
    pub position: usize,
    pub name: String,
    /// `batteryN`: the topic level under the base.
    pub key: String,
    /// Stable across restarts and renames: from the battery's address (MAC, port and RS485
    /// address) when it has one, else from the base topic and position. Home Assistant keys
    /// its entities on it.
    pub uid: String,
    /// The BMS's Bluetooth address (`C8:47:80:12:34:56`), when it is read over Bluetooth.
    pub bluetooth: Option<String>,
    /// How jkmon switches it, where JK_BMS_CONTROL lets this process do so: then its
    /// switches get command topics and Home Assistant `switch` entities.
    pub control: Option<crate::control::WriteLink>,
    base: String,
}

impl BatteryTopics {
    pub fn new(base: &str, position: usize, name: &str, location: Option<&str>) -> BatteryTopics {
        let source = location
            .map(str::to_string)
            .unwrap_or_else(|| format!("{base}_battery{position}"));
        BatteryTopics {
            position,
            name: name.to_string(),
            key: format!("battery{position}"),
            uid: slug(&source),
            bluetooth: location.filter(|l| is_mac(l)).map(str::to_uppercase),
            control: None,
            base: base.to_string(),
        }
    }

    pub fn state(&self) -> String {
        format!("{}/{}/state", self.base, self.key)
    }
    pub fn availability(&self) -> String {
        format!("{}/{}/availability", self.base, self.key)
    }
    pub fn device(&self) -> String {
        format!("{}/{}/device", self.base, self.key)
    }
    /// Where a command for `switch` goes: `ON` or `OFF`.
    pub fn switch_command(&self, switch: crate::protocol::control::Switch) -> String {
        format!("{}/{}/switch/{switch}/set", self.base, self.key)
    }
}

/// Every topic jkmon publishes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub base: String,
    pub batteries: Vec<BatteryTopics>,
    pub discovery_prefix: Option<String>,
    pub nodejkbms: bool,
    /// The dashboard's address, the `configuration_url` of each device.
    pub dashboard_url: Option<String>,
}

impl Layout {
    pub fn new(config: &MqttConfig, batteries: &[crate::store::Battery]) -> Layout {
        Layout {
            base: config.base.clone(),
            batteries: batteries
                .iter()
                .map(|b| {
                    BatteryTopics::new(&config.base, b.position, &b.name, b.address.as_deref())
                })
                .collect(),
            discovery_prefix: config.discovery_prefix.clone(),
            nodejkbms: config.nodejkbms,
            dashboard_url: config.dashboard_url.clone(),
        }
    }

    /// Marks the batteries `controller` can switch from this process.
    pub fn with_control(mut self, controller: &crate::control::Controller) -> Layout {
        for b in &mut self.batteries {
            b.control = controller.slot(b.position).and_then(|s| s.link);
        }
        self
    }

    /// The command topics jkmon subscribes to: each switch of each battery it may switch,
    /// and no other (a wildcard would bring it every message on every topic below).
    pub fn command_topics(&self) -> Vec<String> {
        self.batteries
            .iter()
            .filter(|b| b.control.is_some())
            .flat_map(|b| {
                crate::protocol::control::Switch::ALL
                    .into_iter()
                    .filter(move |s| b.control.is_some_and(|l| l.can_set_somewhere(*s)))
                    .map(move |s| b.switch_command(s))
            })
            .collect()
    }

    /// The battery and switch a command topic names, and whether that battery takes them.
    pub fn command(&self, topic: &str) -> Option<(usize, crate::protocol::control::Switch)> {
        let rest = topic.strip_prefix(&self.base)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (key, word, switch, set) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if word != "switch" || set != "set" || parts.next().is_some() {
            return None;
        }
        let battery = self
            .batteries
            .iter()
            .find(|b| b.key == key && b.control.is_some())?;
        Some((battery.position, switch.parse().ok()?))
    }

    /// jkmon's own availability, with the last will.
    pub fn status(&self) -> String {
        format!("{}/status", self.base)
    }

    /// NodeJKBMS's `pack` and `cells` topics of battery `i`: right under the base with one
    /// battery (so `MQTT_TOPIC=NodeJKBMS` replaces NodeJKBMS as it was), under `batteryN`
    /// with several.
    pub fn nodejkbms(&self, i: usize) -> (String, String) {
        let under = if self.batteries.len() == 1 {
            self.base.clone()
        } else {
            format!("{}/{}", self.base, self.batteries[i].key)
        };
        (format!("{under}/pack"), format!("{under}/cells"))
    }
}

/// Six pairs of hex digits separated by colons.
fn is_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Lower-case letters and digits; everything else becomes one `_` (`C8:47:80:12:34:56` →
/// `c8_47_80_12_34_56`, `/dev/ttyUSB0 #2` → `dev_ttyusb0_2`).
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_end_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_come_from_the_address_and_topics_from_the_position() {
        let t = BatteryTopics::new("home/jk", 2, "Left", Some("C8:47:80:12:34:56"));
        assert_eq!(t.uid, "c8_47_80_12_34_56");
        assert_eq!(t.bluetooth.as_deref(), Some("C8:47:80:12:34:56"));
        assert_eq!(t.state(), "home/jk/battery2/state");
        assert_eq!(t.availability(), "home/jk/battery2/availability");
        let t = BatteryTopics::new("jkmon", 1, "Sim", None);
        assert_eq!(t.uid, "jkmon_battery1");
        assert_eq!(slug("/dev/ttyUSB0 #2"), "dev_ttyusb0_2");
    }

    #[test]
    fn the_broker_is_shown_without_its_password() {
        let b = Broker {
            host: "::1".into(),
            port: 1883,
            tls: false,
            user: Some("jk".into()),
            password: Some("hunter2".into()),
        };
        assert_eq!(b.to_string(), "mqtt://jk@[::1]:1883");
        assert!(!format!("{b:?}").contains("hunter2"));
    }
}
