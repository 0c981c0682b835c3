//! The inverter on MQTT, where jkmon polls it itself: `<base>/inverter/state` (every value of
//! the last poll by jkmon's names, the working mode in words and the grid), the inverter's
//! `<base>/inverter/availability`, and a Home Assistant device of its own with a sensor per
//! register of its model's map (units and classes from the map) and binary sensors for the grid
//! and the link. Pure, like [`super::publisher`].

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::Layout;
use crate::inverter::payload;
use crate::inverter::registers::{self, Register};
use crate::session::inverter::{InverterPoll, InverterState};

/// The inverter as the publisher sees it (the service records each poller event).
#[derive(Debug, Clone)]
pub struct InverterFeed {
    pub model: &'static str,
    pub link: String,
    pub state: InverterState,
    pub detail: String,
    pub poll: Option<Arc<InverterPoll>>,
    /// Counts polls, so the publisher can tell a new one from the one it sent.
    pub seq: u64,
}

impl InverterFeed {
    pub fn online(&self) -> bool {
        self.state == InverterState::Online
    }
}

pub fn state_topic(layout: &Layout) -> String {
    format!("{}/inverter/state", layout.base)
}

pub fn availability_topic(layout: &Layout) -> String {
    format!("{}/inverter/availability", layout.base)
}

/// The state JSON: every value read, by name; the mode; whether mains is lost; the link.
pub fn state(feed: &InverterFeed) -> Value {
    let mut out = Map::new();
    if let Some(poll) = &feed.poll {
        for (name, v) in &registers::at_resolution(poll.model, &poll.values) {
            out.insert((*name).to_string(), json!(v));
        }
        if let Some(mode) = poll.mode {
            out.insert("mode".into(), json!(mode.describe()));
            out.insert("status_text".into(), json!(mode.status_text()));
            let lost = payload::grid_lost(mode, poll.values.get("grid_voltage_v").copied());
            out.insert("grid".into(), json!(if lost { "OFF" } else { "ON" }));
        }
        out.insert("polled_at".into(), json!(poll.at.to_rfc3339()));
    }
    out.insert("link".into(), json!(feed.link));
    out.insert("link_state".into(), json!(feed.state.as_str()));
    out.insert("link_detail".into(), json!(feed.detail));
    Value::Object(out)
}

/// The Home Assistant class and state class of a register, from its unit and name.
fn classes(r: &Register) -> (Option<&'static str>, Option<&'static str>) {
    let measurement = Some("measurement");
    match r.unit {
        "V" => (Some("voltage"), measurement),
        "A" => (Some("current"), measurement),
        "W" => (Some("power"), measurement),
        "VA" => (Some("apparent_power"), measurement),
        "Hz" => (Some("frequency"), measurement),
        "°C" => (Some("temperature"), measurement),
        "%" if r.name.starts_with("battery_soc") => (Some("battery"), measurement),
        "%" => (None, measurement),
        // the total only grows; today's starts again at midnight, which Home Assistant reads
        // as a new cycle of the same meter
        "kWh" => (Some("energy"), Some("total_increasing")),
        _ => (None, None),
    }
}

/// `grid_voltage_v` → `Grid voltage`.
fn title(name: &str) -> String {
    let stem = ["_kwh", "_pct", "_va", "_hz", "_v", "_a", "_w", "_c"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let words = stem.replace('_', " ");
    let mut chars = words.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
        .replace("Pv", "PV")
        .replace("Dcdc", "DC-DC")
}

/// The inverter device's discovery configs (topic, config).
pub fn configs(layout: &Layout, prefix: &str, feed: &InverterFeed) -> Vec<(String, Value)> {
    let Some(model) = registers::model(feed.model) else {
        return Vec::new();
    };
    let node = format!("jkmon_{}_inverter", super::slug(&layout.base));
    let mut device = Map::new();
    device.insert("identifiers".into(), json!([node]));
    device.insert("name".into(), json!("Inverter"));
    device.insert("manufacturer".into(), json!("Easun / ISolar"));
    device.insert("model".into(), json!(model.description));
    if let Some(url) = &layout.dashboard_url {
        device.insert("configuration_url".into(), json!(url));
    }
    let common = |name: &str, object: &str, template: String, availability: bool| {
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        c.insert("unique_id".into(), json!(format!("{node}_{object}")));
        c.insert("state_topic".into(), json!(state_topic(layout)));
        c.insert("value_template".into(), json!(template));
        let mut topics = vec![json!({"topic": layout.status()})];
        if availability {
            topics.push(json!({"topic": availability_topic(layout)}));
        }
        c.insert("availability".into(), json!(topics));
        c.insert("availability_mode".into(), json!("all"));
        c.insert("device".into(), Value::Object(device.clone()));
        c.insert(
            "origin".into(),
            json!({"name": "jkmon", "sw_version": env!("CARGO_PKG_VERSION")}),
        );
        c
    };
    let mut out = Vec::new();
    for r in model
        .registers
        .iter()
        .filter(|r| registers::is_measurement(r.name))
    {
        let template = format!("{{{{ value_json.{} }}}}", r.name);
        let mut c = common(&title(r.name), r.name, template, true);
        let (class, state_class) = classes(r);
        if let Some(class) = class {
            c.insert("device_class".into(), json!(class));
        }
        if let Some(sc) = state_class {
            c.insert("state_class".into(), json!(sc));
        }
        if !r.unit.is_empty() {
            c.insert("unit_of_measurement".into(), json!(r.unit));
        }
        c.insert("suggested_display_precision".into(), json!(r.decimals()));
        let topic = format!("{prefix}/sensor/{node}/{}/config", r.name);
        out.push((topic, Value::Object(c)));
    }
    let mode = common("Mode", "mode", "{{ value_json.mode }}".into(), true);
    out.push((
        format!("{prefix}/sensor/{node}/mode/config"),
        Value::Object(mode),
    ));
    let mut grid = common("Grid", "grid", "{{ value_json.grid }}".into(), true);
    grid.insert("device_class".into(), json!("power"));
    out.push((
        format!("{prefix}/binary_sensor/{node}/grid/config"),
        Value::Object(grid),
    ));
    // the link itself stays available while jkmon runs, to say the inverter is unreachable
    let mut link = common(
        "Link",
        "link",
        "{{ 'ON' if value_json.link_state == 'online' else 'OFF' }}".into(),
        false,
    );
    link.insert("device_class".into(), json!("connectivity"));
    link.insert("entity_category".into(), json!("diagnostic"));
    link.insert("json_attributes_topic".into(), json!(state_topic(layout)));
    link.insert(
        "json_attributes_template".into(),
        json!("{{ {'link': value_json.link, 'detail': value_json.link_detail} | tojson }}"),
    );
    out.push((
        format!("{prefix}/binary_sensor/{node}/link/config"),
        Value::Object(link),
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inverter::registers::{SMG_II_11K, SMG_II_6K};
    use crate::transport::sim::inverter::image_values;

    fn layout() -> Layout {
        Layout {
            base: "jkmon".into(),
            batteries: Vec::new(),
            discovery_prefix: Some("homeassistant".into()),
            nodejkbms: false,
            dashboard_url: Some("http://pi.local:8000/".into()),
        }
    }

    fn feed(model: &'static crate::inverter::registers::Model, grid: bool) -> InverterFeed {
        let values = image_values(model, grid);
        InverterFeed {
            model: model.key,
            link: "the Wi-Fi dongle at 192.168.1.50".into(),
            state: InverterState::Online,
            detail: String::new(),
            poll: Some(Arc::new(InverterPoll {
                model,
                at: chrono::Utc::now(),
                mode: crate::inverter::payload::mode(&values),
                values,
                row: Ok(String::new()),
                errors: Vec::new(),
                took: std::time::Duration::ZERO,
                state: InverterState::Online,
            })),
            seq: 1,
        }
    }

    #[test]
    fn every_entity_reads_a_field_the_state_has_with_the_maps_unit() {
        for model in [&SMG_II_6K, &SMG_II_11K] {
            let f = feed(model, true);
            let state = state(&f);
            let configs = configs(&layout(), "homeassistant", &f);
            assert!(configs.len() > 15, "{}", configs.len());
            for (topic, c) in &configs {
                let template = c["value_template"].as_str().unwrap();
                for path in super::super::discovery::template_paths(template) {
                    assert!(
                        super::super::discovery::lookup(&state, &path).is_some(),
                        "{topic}: {path:?} not in {state}"
                    );
                }
                assert_eq!(c["device"]["model"], model.description);
                assert!(c["unique_id"]
                    .as_str()
                    .unwrap()
                    .starts_with("jkmon_jkmon_inverter_"));
            }
            let by_id = |id: &str| {
                configs
                    .iter()
                    .find(|(t, _)| t.ends_with(&format!("/{id}/config")))
                    .map(|(_, c)| c.clone())
                    .unwrap_or_else(|| panic!("{id}"))
            };
            let v = by_id("grid_voltage_v");
            assert_eq!(
                (&v["device_class"], &v["unit_of_measurement"], &v["name"]),
                (&json!("voltage"), &json!("V"), &json!("Grid voltage"))
            );
            assert_eq!(by_id("battery_soc_pct")["device_class"], "battery");
            assert_eq!(by_id("grid")["device_class"], "power");
            assert!(by_id("link")["availability"].as_array().unwrap().len() == 1);
        }
        let total = configs(&layout(), "homeassistant", &feed(&SMG_II_11K, true));
        let energy = total
            .iter()
            .find(|(t, _)| t.contains("/pv_energy_total_kwh/"))
            .unwrap();
        assert_eq!(energy.1["state_class"], "total_increasing");
        assert_eq!(energy.1["name"], "PV energy total");
    }

    #[test]
    fn the_state_says_the_mode_and_a_grid_loss() {
        let s = state(&feed(&SMG_II_6K, true));
        assert_eq!((&s["mode"], &s["grid"]), (&json!("on mains"), &json!("ON")));
        assert_eq!(s["grid_voltage_v"], 230.3);
        let s = state(&feed(&SMG_II_6K, false));
        assert_eq!(
            (&s["mode"], &s["grid"]),
            (&json!("off-grid (battery)"), &json!("OFF"))
        );
        assert_eq!(s["status_text"], "SBU");
    }
}
