//! The inverter on MQTT, where jkmon polls it itself: `<base>/inverter/state` (every value of
//! the last poll by jkmon's names, the working mode in words and the grid), the inverter's
//! `<base>/inverter/availability`, and a Home Assistant device of its own with a sensor per
//! register of its model's map (units and classes from the map) and binary sensors for the grid
//! and the link. Pure, like [`super::publisher`].

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::Layout;
use crate::inverter::payload::{self, Mode};
use crate::inverter::poll::{InverterPoll, InverterState};
use crate::inverter::registers::{self, Model, Register};
use crate::store::energy::InverterEnergy;

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
    /// Today's energy as jkmon counts it from the polls (`/api/v1/energy`'s today), as of
    /// the poll before.
    pub energy_today: Option<InverterEnergy>,
}

impl InverterFeed {
    pub fn online(&self) -> bool {
        self.state == InverterState::Online
    }
}

/// The values: each a value the poll read, or `null` where it did not.
pub fn state_topic(layout: &Layout) -> String {
    format!("{}/inverter/state", layout.base)
}

/// The link: how jkmon reaches the inverter, and how that goes (apart from the values, so a
/// change of the link never touches them).
pub fn link_topic(layout: &Layout) -> String {
    format!("{}/inverter/link", layout.base)
}

pub fn availability_topic(layout: &Layout) -> String {
    format!("{}/inverter/availability", layout.base)
}

/// One of jkmon's energy counters on the inverter's device.
struct Counter {
    /// The state key.
    key: &'static str,
    name: &'static str,
    /// The day's value, Wh.
    wh: fn(&InverterEnergy) -> Option<f64>,
}

const ENERGY: [Counter; 4] = [
    Counter {
        key: "grid_import_today_kwh",
        name: "Grid import today",
        wh: |e| e.grid_import_wh,
    },
    Counter {
        key: "grid_export_today_kwh",
        name: "Grid export today",
        wh: |e| e.grid_export_wh,
    },
    Counter {
        key: "load_energy_today_kwh",
        name: "Load energy today",
        wh: |e| e.load_wh,
    },
    // only where the model has no PV energy register of its own (see `energy_counters`)
    Counter {
        key: "pv_energy_counted_today_kwh",
        name: "PV energy today",
        wh: |e| e.pv_wh,
    },
];

/// jkmon's energy counters for `model`: PV only where the inverter does not count it itself.
fn energy_counters(model: &Model) -> impl Iterator<Item = &'static Counter> + '_ {
    let own_pv = model
        .registers
        .iter()
        .any(|r| r.name == "pv_energy_today_kwh");
    ENERGY
        .iter()
        .filter(move |c| !(own_pv && c.key.starts_with("pv_")))
}

/// The state JSON: every measured value of the model's map by name — the poll's value, or
/// `null` where this poll did not read it (so a Home Assistant template always finds its key
/// and shows unknown, never the previous value) — the mode in words, the grid (`ON`, `OFF`,
/// or `null` when unknown: [`crate::inverter::payload::grid`]) and jkmon's energy counters for
/// today. `None` before the first poll: the values topic carries values only.
pub fn state(feed: &InverterFeed) -> Option<Value> {
    let poll = feed.poll.as_ref()?;
    let model = poll.model;
    let values = registers::at_resolution(model, &poll.values);
    let mut out = Map::new();
    for r in model
        .registers
        .iter()
        .filter(|r| registers::is_measurement(r.name))
    {
        out.insert(r.name.into(), json!(values.get(r.name)));
    }
    out.insert("mode".into(), json!(poll.mode.map(Mode::describe)));
    out.insert(
        "status_text".into(),
        json!(poll.mode.map(Mode::status_text)),
    );
    let grid = payload::grid(poll.mode, poll.values.get("grid_voltage_v").copied());
    out.insert(
        "grid".into(),
        json!(grid.is_up().map(|up| if up { "ON" } else { "OFF" })),
    );
    // to the watt-hour, as `/api/v1/energy`
    let kwh = |wh: Option<f64>| wh.map(|wh| wh.round() / 1000.0);
    for c in energy_counters(model) {
        let wh = feed.energy_today.as_ref().and_then(c.wh);
        out.insert(c.key.into(), json!(kwh(wh)));
    }
    out.insert("polled_at".into(), json!(poll.at.to_rfc3339()));
    Some(Value::Object(out))
}

/// The link JSON: what jkmon polls through, its state and why.
pub fn link(feed: &InverterFeed) -> Value {
    json!({
        "link": feed.link,
        "state": feed.state.as_str(),
        "detail": feed.detail,
    })
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

/// `grid_voltage_v` → `Grid voltage`, `battery_soc_pct` → `Battery SOC`: the name without its
/// unit, in words, capitalised as Home Assistant's naming guidelines ask (the first word, and
/// abbreviations throughout).
fn title(name: &str) -> String {
    let stem = ["_kwh", "_pct", "_va", "_hz", "_v", "_a", "_w", "_c"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name);
    let words: Vec<String> = stem
        .split('_')
        .enumerate()
        .map(|(i, w)| match w {
            "soc" => "SOC".into(),
            "dcdc" => "DC-DC".into(),
            w if w.starts_with("pv") => w.to_uppercase(),
            w if i == 0 => {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                    .unwrap_or_default()
            }
            w => w.into(),
        })
        .collect();
    words.join(" ")
}

/// The working modes as the mode sensor says them (an `enum` sensor's options).
pub fn mode_options() -> Vec<String> {
    (0..=6)
        .map(|code| Mode::from_code(code).describe())
        .collect()
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
        match class {
            Some(class) => _ = c.insert("device_class".into(), json!(class)),
            None => _ = c.insert("icon".into(), json!("mdi:gauge")),
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
    out.extend(energy_configs(model, prefix, &node, &common));
    out.extend(state_configs(layout, prefix, &node, &common));
    out
}

/// What every inverter entity has, made by [`configs`]: name, object id, template, whether it
/// follows the inverter's availability.
type Common<'a> = dyn Fn(&str, &str, String, bool) -> Map<String, Value> + 'a;

/// jkmon's own counters, for the Energy dashboard's grid (and solar where the inverter does
/// not count it).
fn energy_configs(
    model: &Model,
    prefix: &str,
    node: &str,
    common: &Common,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for counter in energy_counters(model) {
        let key = counter.key;
        let template = format!("{{{{ value_json.{key} }}}}");
        let mut c = common(counter.name, key, template, true);
        c.insert("device_class".into(), json!("energy"));
        c.insert("state_class".into(), json!("total_increasing"));
        c.insert("unit_of_measurement".into(), json!("kWh"));
        c.insert("suggested_display_precision".into(), json!(3));
        out.push((
            format!("{prefix}/sensor/{node}/{key}/config"),
            Value::Object(c),
        ));
    }
    out
}

/// The mode, the grid and the link.
fn state_configs(
    layout: &Layout,
    prefix: &str,
    node: &str,
    common: &Common,
) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut mode = common("Mode", "mode", "{{ value_json.mode }}".into(), true);
    // Home Assistant reads a None into an enum as a word, not as unknown: unavailable while
    // the mode was not read (and Home Assistant 2024.5 and later check the options)
    if let Some(Value::Array(a)) = mode.get_mut("availability") {
        a.push(json!({
            "topic": state_topic(layout),
            "value_template": "{{ 'online' if value_json.mode is not none else 'offline' }}",
        }));
    }
    mode.insert("device_class".into(), json!("enum"));
    mode.insert("options".into(), json!(mode_options()));
    mode.insert("icon".into(), json!("mdi:sine-wave"));
    out.push((
        format!("{prefix}/sensor/{node}/mode/config"),
        Value::Object(mode),
    ));
    // `null` (unknown) renders as None, which Home Assistant shows as unknown
    let mut grid = common("Grid", "grid", "{{ value_json.grid }}".into(), true);
    grid.insert("device_class".into(), json!("power"));
    grid.insert("payload_on".into(), json!("ON"));
    grid.insert("payload_off".into(), json!("OFF"));
    out.push((
        format!("{prefix}/binary_sensor/{node}/grid/config"),
        Value::Object(grid),
    ));
    // the link itself stays available while jkmon runs, to say the inverter is unreachable
    let mut link = common(
        "Link",
        "link",
        "{{ 'ON' if value_json.state == 'online' else 'OFF' }}".into(),
        false,
    );
    link.insert("state_topic".into(), json!(link_topic(layout)));
    link.insert("device_class".into(), json!("connectivity"));
    link.insert("entity_category".into(), json!("diagnostic"));
    link.insert("json_attributes_topic".into(), json!(link_topic(layout)));
    link.insert(
        "json_attributes_template".into(),
        json!("{{ {'link': value_json.link, 'detail': value_json.detail} | tojson }}"),
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
            energy_today: Some(InverterEnergy {
                pv_wh: Some(1_234.0),
                load_wh: Some(2_000.0),
                grid_import_wh: Some(500.0),
                grid_export_wh: None,
            }),
        }
    }

    #[test]
    fn every_entity_reads_a_field_the_state_has_with_the_maps_unit() {
        for model in [&SMG_II_6K, &SMG_II_11K] {
            let f = feed(model, true);
            let state = state(&f).unwrap();
            let link = link(&f);
            let configs = configs(&layout(), "homeassistant", &f);
            assert!(configs.len() > 15, "{}", configs.len());
            for (topic, c) in &configs {
                let template = c["value_template"].as_str().unwrap();
                let read = if c["state_topic"] == link_topic(&layout()) {
                    &link
                } else {
                    &state
                };
                for path in super::super::discovery::template_paths(template) {
                    assert!(
                        super::super::discovery::lookup(read, &path).is_some(),
                        "{topic}: {path:?} not in {read}"
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
            assert_eq!(by_id("battery_soc_pct")["name"], "Battery SOC");
            assert_eq!(by_id("grid")["device_class"], "power");
            assert_eq!(by_id("load_pct")["icon"], "mdi:gauge");
            let mode = by_id("mode");
            assert_eq!(mode["device_class"], "enum");
            let options = mode["options"].as_array().unwrap();
            assert!(options.contains(&state["mode"]), "{options:?}");
            // the grid import, export and load for the Energy dashboard, from jkmon's counters
            for key in [
                "grid_import_today_kwh",
                "grid_export_today_kwh",
                "load_energy_today_kwh",
            ] {
                let c = by_id(key);
                assert_eq!(
                    (
                        &c["device_class"],
                        &c["state_class"],
                        &c["unit_of_measurement"]
                    ),
                    (&json!("energy"), &json!("total_increasing"), &json!("kWh")),
                    "{key}"
                );
            }
            // PV counted by jkmon only where the inverter has no PV energy register
            let own_pv = model
                .registers
                .iter()
                .any(|r| r.name == "pv_energy_today_kwh");
            assert_eq!(
                configs
                    .iter()
                    .any(|(t, _)| t.contains("/pv_energy_counted_today_kwh/")),
                !own_pv
            );
            assert!(by_id("link")["availability"].as_array().unwrap().len() == 1);
        }
        let total = configs(&layout(), "homeassistant", &feed(&SMG_II_11K, true));
        let energy = total
            .iter()
            .find(|(t, _)| t.contains("/pv_energy_total_kwh/"))
            .unwrap();
        assert_eq!(energy.1["state_class"], "total_increasing");
        assert_eq!(energy.1["name"], "PV energy total");
        assert_eq!(title("pv1_voltage_v"), "PV1 voltage");
        assert_eq!(title("dcdc_temperature_c"), "DC-DC temperature");
    }

    #[test]
    fn a_value_not_read_is_null_and_every_key_is_there() {
        let mut f = feed(&SMG_II_11K, true);
        let full = state(&f).unwrap();
        // a poll that could not read the grid block (338..353), off-grid
        let mut poll = (**f.poll.as_ref().unwrap()).clone();
        poll.values
            .retain(|name, _| !name.starts_with("grid_") && !name.starts_with("output_"));
        poll.values.insert("operating_mode", 3.0);
        poll.mode = Some(Mode::OffGrid);
        f.poll = Some(Arc::new(poll));
        f.energy_today = None;
        let partial = state(&f).unwrap();
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&full), keys(&partial), "the same keys, always");
        assert_eq!(partial["grid_voltage_v"], Value::Null);
        assert_eq!(partial["output_power_w"], Value::Null);
        assert_eq!(partial["grid_import_today_kwh"], Value::Null);
        // unknown, not "OFF": the inverter said nothing of the grid
        assert_eq!(partial["grid"], Value::Null);
        assert_eq!(partial["mode"], "off-grid (battery)");
        assert!(partial.get("link").is_none(), "the link has its own topic");
        // before the first poll there is no values message at all
        f.poll = None;
        assert_eq!(state(&f), None);
        assert_eq!(link(&f)["state"], "online");
    }

    #[test]
    fn the_state_says_the_mode_and_a_grid_loss() {
        let s = state(&feed(&SMG_II_6K, true)).unwrap();
        assert_eq!((&s["mode"], &s["grid"]), (&json!("on mains"), &json!("ON")));
        assert_eq!(s["grid_voltage_v"], 230.3);
        let s = state(&feed(&SMG_II_6K, false)).unwrap();
        assert_eq!(
            (&s["mode"], &s["grid"]),
            (&json!("off-grid (battery)"), &json!("OFF"))
        );
        assert_eq!(s["status_text"], "SBU");
    }
}
