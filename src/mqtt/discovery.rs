//! Home Assistant MQTT discovery: one device per BMS, with a sensor for every value the BMS
//! reports and a binary sensor for each state and alarm group. Pure: built from the state JSON
//! the entities read, so an entity exists exactly when its value does.

use crate::protocol::cell_info::ChargeStatus;
use serde_json::{json, Map, Value};

use super::{BatteryTopics, Layout};
use crate::protocol::alarms::{label, ALARM_GROUPS};
use crate::protocol::control::Switch;
use crate::protocol::DeviceInfo;

/// A sensor read from one state field.
struct Spec {
    /// The state field (`value_json.<field>`).
    field: &'static str,
    name: &'static str,
    device_class: Option<&'static str>,
    unit: Option<&'static str>,
    state_class: Option<&'static str>,
    precision: Option<u8>,
    diagnostic: bool,
    /// For a sensor without a device class (Home Assistant draws the class's icon otherwise).
    icon: Option<&'static str>,
}

const fn spec(
    field: &'static str,
    name: &'static str,
    device_class: Option<&'static str>,
    unit: Option<&'static str>,
    state_class: Option<&'static str>,
    precision: Option<u8>,
) -> Spec {
    Spec {
        field,
        name,
        device_class,
        unit,
        state_class,
        precision,
        diagnostic: false,
        icon: None,
    }
}

/// `spec` with an icon.
const fn with_icon(spec: Spec, icon: &'static str) -> Spec {
    Spec {
        icon: Some(icon),
        ..spec
    }
}

const V: Option<&str> = Some("voltage");
const VOLT: Option<&str> = Some("V");
const M: Option<&str> = Some("measurement");

const SENSORS: [Spec; 23] = [
    spec("total_voltage_v", "Voltage", V, VOLT, M, Some(2)),
    spec(
        "heating_current_a",
        "Heating current",
        Some("current"),
        Some("A"),
        M,
        Some(3),
    ),
    spec(
        "current_a",
        "Current",
        Some("current"),
        Some("A"),
        M,
        Some(2),
    ),
    spec("power_w", "Power", Some("power"), Some("W"), M, Some(0)),
    spec(
        "charge_power_w",
        "Charging power",
        Some("power"),
        Some("W"),
        M,
        Some(0),
    ),
    spec(
        "discharge_power_w",
        "Discharging power",
        Some("power"),
        Some("W"),
        M,
        Some(0),
    ),
    spec(
        "soc_effective_pct",
        "State of charge",
        Some("battery"),
        Some("%"),
        M,
        Some(0),
    ),
    spec(
        "soc_pct",
        "State of charge (BMS)",
        Some("battery"),
        Some("%"),
        M,
        Some(0),
    ),
    with_icon(
        spec("soh_pct", "State of health", None, Some("%"), M, Some(0)),
        "mdi:heart-pulse",
    ),
    with_icon(
        spec(
            "remaining_capacity_ah",
            "Remaining capacity",
            None,
            Some("Ah"),
            M,
            Some(1),
        ),
        "mdi:battery-50",
    ),
    with_icon(
        spec(
            "nominal_capacity_ah",
            "Nominal capacity",
            None,
            Some("Ah"),
            None,
            Some(0),
        ),
        "mdi:battery-high",
    ),
    with_icon(
        spec(
            "cycle_capacity_ah",
            "Cycle capacity",
            None,
            Some("Ah"),
            Some("total_increasing"),
            Some(0),
        ),
        "mdi:battery-sync",
    ),
    with_icon(
        spec(
            "cycle_count",
            "Cycles",
            None,
            None,
            Some("total_increasing"),
            Some(0),
        ),
        "mdi:counter",
    ),
    spec("cell_delta_v", "Cell delta", V, VOLT, M, Some(3)),
    spec("cell_min_v", "Cell minimum", V, VOLT, M, Some(3)),
    spec("cell_max_v", "Cell maximum", V, VOLT, M, Some(3)),
    spec("cell_avg_v", "Cell average", V, VOLT, M, Some(3)),
    // a precision makes them numbers to Home Assistant, so a missing value reads as unknown
    with_icon(
        spec("cell_min_index", "Lowest cell", None, None, None, Some(0)),
        "mdi:arrow-down-bold",
    ),
    with_icon(
        spec("cell_max_index", "Highest cell", None, None, None, Some(0)),
        "mdi:arrow-up-bold",
    ),
    spec(
        "balance_current_a",
        "Balance current",
        Some("current"),
        Some("A"),
        M,
        Some(3),
    ),
    // Home Assistant's rule: an uptime is the time the device started, not a count
    Spec {
        diagnostic: true,
        ..spec(
            "bms_started_at",
            "Started",
            Some("timestamp"),
            None,
            None,
            None,
        )
    },
    Spec {
        diagnostic: true,
        ..with_icon(
            spec("cell_count", "Cells", None, None, None, Some(0)),
            "mdi:numeric",
        )
    },
    Spec {
        diagnostic: true,
        ..with_icon(
            spec("soc_source", "SOC source", None, None, None, None),
            "mdi:information-outline",
        )
    },
];

const KWH: Option<&str> = Some("kWh");
const ENERGY: Option<&str> = Some("energy");
const TOTAL_INCREASING: Option<&str> = Some("total_increasing");

/// Sensors of the state's `energy` object (object id `energy_<field>`). The counters are what
/// Home Assistant's Energy dashboard takes for a battery: class `energy`, state class
/// `total_increasing`, kWh; today's restart at midnight, which that state class allows.
const ENERGY_COUNTERS: [Spec; 4] = [
    spec(
        "charged_kwh",
        "Energy charged",
        ENERGY,
        KWH,
        TOTAL_INCREASING,
        Some(3),
    ),
    spec(
        "discharged_kwh",
        "Energy discharged",
        ENERGY,
        KWH,
        TOTAL_INCREASING,
        Some(3),
    ),
    spec(
        "today_charged_kwh",
        "Energy charged today",
        ENERGY,
        KWH,
        TOTAL_INCREASING,
        Some(2),
    ),
    spec(
        "today_discharged_kwh",
        "Energy discharged today",
        ENERGY,
        KWH,
        TOTAL_INCREASING,
        Some(2),
    ),
];

/// The `energy` object's levels: stored energy and time left, only for a BMS that reports its
/// remaining capacity (they are computed from it).
const ENERGY_LEVELS: [Spec; 3] = [
    spec(
        "stored_kwh",
        "Stored energy",
        Some("energy_storage"),
        KWH,
        M,
        Some(2),
    ),
    spec(
        "time_to_empty_s",
        "Time to empty",
        Some("duration"),
        Some("s"),
        M,
        Some(0),
    ),
    spec(
        "time_to_full_s",
        "Time to full",
        Some("duration"),
        Some("s"),
        M,
        Some(0),
    ),
];

/// A binary sensor: its object id, name, device class, the field it needs and the test that
/// makes it on (of the field's value `v`).
struct Binary {
    id: &'static str,
    name: &'static str,
    device_class: Option<&'static str>,
    needs: &'static str,
    on_when: &'static str,
}

const BINARIES: [Binary; 6] = [
    Binary {
        id: "charging",
        name: "Charging",
        device_class: Some("battery_charging"),
        needs: "current_a",
        on_when: "v > 0",
    },
    Binary {
        id: "discharging",
        name: "Discharging",
        device_class: None,
        needs: "current_a",
        on_when: "v < 0",
    },
    // the MOSFETs as the BMS reports them (its cell-info frame), which protection may open
    // while the switch (the settings frame's, a `switch` entity where control is on) is on
    Binary {
        id: "charging_enabled",
        name: "Charge MOSFET",
        device_class: Some("power"),
        needs: "charging_enabled",
        on_when: "v",
    },
    Binary {
        id: "discharging_enabled",
        name: "Discharge MOSFET",
        device_class: Some("power"),
        needs: "discharging_enabled",
        on_when: "v",
    },
    Binary {
        id: "balancing",
        name: "Balancing",
        device_class: Some("running"),
        needs: "balancing",
        on_when: "v",
    },
    Binary {
        id: "heating",
        name: "Heating",
        device_class: Some("heat"),
        needs: "heating",
        on_when: "v",
    },
];

/// A template that gives `ON` where `on_when` holds for the value at `path`, `OFF` where it
/// does not, and `None` — unknown to Home Assistant — where the value is null (not reported
/// this time).
pub fn on_off(path: &str, on_when: &str) -> String {
    format!(
        "{{% set v = value_json.{path} %}}{{{{ none if v is none else ('ON' if {on_when} else 'OFF') }}}}"
    )
}

/// Where the value at `path` is null the entity is unavailable: for a sensor Home Assistant
/// takes as text, a timestamp or an option (it reads `None` as a word there, not as unknown).
fn available_when_reported(state_topic: &str, path: &str) -> Value {
    json!({
        "topic": state_topic,
        "value_template": format!(
            "{{{{ 'online' if value_json.{path} is not none else 'offline' }}}}"
        ),
    })
}

fn temperature_name(key: &str) -> String {
    match key {
        "mos" => "MOSFET temperature".into(),
        t => format!("Temperature {}", t.trim_start_matches('t')),
    }
}

/// The serial number `info` reports, when it can key a device: at least 4 characters with a
/// digit among them, not all zeros. Some boards leave a placeholder there (`Input Us`, the
/// start of the factory's "Input Userdata"); those are keyed on their address.
pub fn serial_of(info: Option<&DeviceInfo>) -> Option<&str> {
    let serial = info?.serial_number.trim();
    let digits = serial.bytes().any(|b| b.is_ascii_digit());
    let zeros = serial.bytes().all(|b| b == b'0');
    (serial.len() >= 4 && digits && !zeros).then_some(serial)
}

/// The node id that keys a battery's device and entities in Home Assistant (the start of every
/// `unique_id` and a topic level): `jkmon_sn_<serial>` from the BMS's serial number, which
/// stays when the battery moves to another port, adapter or transport; without one,
/// `jkmon_<uid>` from its address.
pub fn node_id(topics: &BatteryTopics, serial: Option<&str>) -> String {
    match serial {
        Some(sn) => format!("jkmon_sn_{}", super::slug(sn)),
        None => format!("jkmon_{}", topics.uid),
    }
}

/// The `device` block: who the BMS is, as far as it said; its Bluetooth address as a
/// connection (so Home Assistant merges it with the device its Bluetooth integration saw);
/// the dashboard as its configuration URL.
fn device(layout: &Layout, topics: &BatteryTopics, node: &str, info: Option<&DeviceInfo>) -> Value {
    let mut d = Map::new();
    // the address-based id too: a device created before the BMS reported its serial number
    // (or by an older jkmon) is the same device
    let by_address = node_id(topics, None);
    let mut ids = vec![node.to_string()];
    if by_address != node {
        ids.push(by_address);
    }
    d.insert("identifiers".into(), json!(ids));
    if let Some(mac) = &topics.bluetooth {
        d.insert("connections".into(), json!([["bluetooth", mac]]));
    }
    d.insert("name".into(), json!(topics.name));
    d.insert("manufacturer".into(), json!("JK (Jikong)"));
    let model = info.map(|i| i.model.trim()).filter(|m| !m.is_empty());
    d.insert("model".into(), json!(model.unwrap_or("JK BMS")));
    if let Some(i) = info {
        for (key, v) in [
            ("sw_version", &i.software_version),
            ("hw_version", &i.hardware_version),
            ("serial_number", &i.serial_number),
        ] {
            if !v.trim().is_empty() {
                d.insert(key.into(), json!(v.trim()));
            }
        }
    }
    if let Some(url) = &layout.dashboard_url {
        d.insert("configuration_url".into(), json!(url));
    }
    Value::Object(d)
}

/// What a battery's configs depend on besides the layout: the fields its state has, its
/// probes, its cell count and who the BMS says it is. Equal shapes give equal configs.
pub fn shape(state: &Value, info: Option<&DeviceInfo>) -> String {
    let mut s = String::new();
    if let Some(fields) = state.as_object() {
        for (key, v) in fields.iter().filter(|(_, v)| !v.is_null()) {
            s.push_str(key);
            s.push(',');
            match v {
                Value::Object(o) => o.keys().for_each(|k| {
                    s.push_str(k);
                    s.push(',');
                }),
                Value::Array(a) => s.push_str(&format!("[{}],", a.len())),
                _ => {}
            }
        }
    }
    if let Some(i) = info {
        for v in [
            &i.model,
            &i.software_version,
            &i.hardware_version,
            &i.serial_number,
        ] {
            s.push('|');
            s.push_str(v);
        }
    }
    s
}

/// Every discovery config of one battery: `(topic, payload)`, sensors first. `state` is the
/// battery's state JSON ([`super::payload::state`]); `node` its [`node_id`].
#[expect(
    clippy::too_many_lines,
    reason = "every entity of a battery in one place, in the order Home Assistant lists them: sensors, energy, probes, cells, alarms, binaries, switches"
)]
pub fn configs(
    layout: &Layout,
    prefix: &str,
    topics: &BatteryTopics,
    node: &str,
    state: &Value,
    info: Option<&DeviceInfo>,
) -> Vec<(String, Value)> {
    let mut c = Configs {
        layout,
        prefix,
        topics,
        info,
        node: node.to_string(),
        out: Vec::new(),
    };
    let present = |field: &str| state.get(field).is_some_and(|v| !v.is_null());
    for s in SENSORS.iter().filter(|s| present(s.field)) {
        let template = format!("{{{{ value_json.{} }}}}", s.field);
        c.sensor(s.field.to_string(), s.name, template, s);
    }
    // every energy sensor exists while the state has the object: a time to empty that is
    // null while charging reads as unknown, and the entity stays
    // (stored energy and time left only for a BMS that reports its remaining capacity)
    if state.get("energy").is_some_and(Value::is_object) {
        let levels: &[Spec] = if present("remaining_capacity_ah") {
            &ENERGY_LEVELS
        } else {
            &[]
        };
        for s in ENERGY_COUNTERS.iter().chain(levels) {
            let template = format!("{{{{ value_json.energy.{} }}}}", s.field);
            c.sensor(format!("energy_{}", s.field), s.name, template, s);
        }
    }
    if let Some(temps) = state.get("temperatures_c").and_then(Value::as_object) {
        let shape = spec("", "", Some("temperature"), Some("°C"), M, Some(1));
        for key in temps.keys() {
            let template = format!("{{{{ value_json.temperatures_c.{key} }}}}");
            c.sensor(
                format!("temperature_{key}"),
                &temperature_name(key),
                template,
                &shape,
            );
        }
    }
    let cells = state
        .get("cell_voltages_v")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let shape = spec("", "", V, VOLT, M, Some(3));
    for i in 0..cells {
        let template = format!("{{{{ value_json.cell_voltages_v[{i}] }}}}");
        c.sensor(
            format!("cell_{}", i + 1),
            &format!("Cell {}", i + 1),
            template,
            &shape,
        );
    }
    // in words and within Home Assistant's 255 characters (`payload::alarms_text`)
    let alarms = "{{ value_json.alarms_text }}";
    let plain = with_icon(
        spec("", "", None, None, None, None),
        "mdi:alert-circle-outline",
    );
    c.sensor("alarms".into(), "Alarms", alarms.into(), &plain);
    for b in BINARIES.iter().filter(|b| present(b.needs)) {
        c.binary(
            b.id.into(),
            b.name,
            b.device_class,
            on_off(b.needs, b.on_when),
        );
    }
    c.charger(state);
    // switches jkmon may set: their state is what the BMS's settings frame reports
    if let (Some(link), Some(reported)) = (
        topics.control,
        state.get("switches").and_then(Value::as_object),
    ) {
        let variant = state
            .get("variant")
            .and_then(|v| serde_json::from_value(v.clone()).ok());
        for switch in Switch::ALL {
            if reported.contains_key(switch.as_str()) && link.can_set(variant, switch) {
                c.switch(switch);
            }
        }
    }
    for group in ALARM_GROUPS {
        c.binary(
            format!("alarm_{group}"),
            &format!("{} alarm", label(group)),
            Some("problem"),
            on_off(&format!("alarm_groups.{group}"), "v"),
        );
    }
    c.out
}

/// The discovery topic of a battery's `switch` entity.
pub fn switch_topic(prefix: &str, node: &str, switch: Switch) -> String {
    format!("{prefix}/switch/{node}/switch_{switch}/config")
}

/// The configs of one battery, being built.
struct Configs<'a> {
    layout: &'a Layout,
    prefix: &'a str,
    topics: &'a BatteryTopics,
    info: Option<&'a DeviceInfo>,
    /// The device's [`node_id`], the start of every `unique_id`.
    node: String,
    out: Vec<(String, Value)>,
}

impl Configs<'_> {
    /// What every entity has: name, ids, topics, availability, device and origin.
    fn common(&self, name: &str, object: &str, template: String) -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("name".into(), json!(name));
        c.insert("unique_id".into(), json!(format!("{}_{object}", self.node)));
        c.insert("state_topic".into(), json!(self.topics.state()));
        c.insert("value_template".into(), json!(template));
        c.insert(
            "availability".into(),
            json!([{"topic": self.layout.status()}, {"topic": self.topics.availability()}]),
        );
        c.insert("availability_mode".into(), json!("all"));
        let device = device(self.layout, self.topics, &self.node, self.info);
        c.insert("device".into(), device);
        c.insert(
            "origin".into(),
            json!({
                "name": "jkmon",
                "sw_version": env!("CARGO_PKG_VERSION"),
            }),
        );
        c
    }

    /// A sensor with the class, unit, state class, precision and category of `shape`.
    fn sensor(&mut self, object: String, name: &str, template: String, shape: &Spec) {
        let path = template_paths(&template);
        let mut c = self.common(name, &object, template);
        for (key, v) in [
            ("device_class", shape.device_class),
            ("unit_of_measurement", shape.unit),
            ("state_class", shape.state_class),
        ] {
            if let Some(v) = v {
                c.insert(key.into(), json!(v));
            }
        }
        if let Some(p) = shape.precision {
            c.insert("suggested_display_precision".into(), json!(p));
        }
        if shape.diagnostic {
            c.insert("entity_category".into(), json!("diagnostic"));
        }
        if let Some(icon) = shape.icon {
            c.insert("icon".into(), json!(icon));
        }
        // a sensor Home Assistant takes as text or a timestamp: unavailable while not reported
        let numeric =
            shape.unit.is_some() || shape.state_class.is_some() || shape.precision.is_some();
        if let (false, Some(path), Some(Value::Array(a))) =
            (numeric, path.first(), c.get_mut("availability"))
        {
            a.push(available_when_reported(
                &self.topics.state(),
                &path.join("."),
            ));
        }
        let topic = format!("{}/sensor/{}/{object}/config", self.prefix, self.node);
        self.out.push((topic, Value::Object(c)));
    }

    /// A JK-PB's charger stage (an `enum` sensor, unavailable while not reported), its
    /// precharge and its dry contacts (binary sensors), where the battery reports them.
    fn charger(&mut self, state: &Value) {
        let present = |field: &str| state.get(field).is_some_and(|v| !v.is_null());
        if present("charge_status") {
            let shape = with_icon(
                spec("", "", Some("enum"), None, None, None),
                "mdi:battery-charging-medium",
            );
            let template = "{{ value_json.charge_status }}".to_string();
            self.sensor("charge_status".into(), "Charge status", template, &shape);
            if let Some((_, Value::Object(c))) = self.out.last_mut() {
                let options: Vec<&str> = ChargeStatus::ALL.iter().map(|s| s.as_str()).collect();
                c.insert("options".into(), json!(options));
            }
        }
        if present("precharging") {
            let template = on_off("precharging", "v");
            self.binary("precharging".into(), "Precharge", Some("running"), template);
        }
        if state.get("dry_contacts").is_some_and(Value::is_object) {
            for (n, key) in [(1, "dry1"), (2, "dry2")] {
                let template = on_off(&format!("dry_contacts.{key}"), "v");
                self.binary(
                    format!("dry_contact_{n}"),
                    &format!("Dry contact {n}"),
                    None,
                    template,
                );
            }
        }
    }

    /// A switch jkmon sets through its command topic; its state is the BMS's report. No entity
    /// category: control is the owner's choice per battery (`JK_BMS_CONTROL`), and an owner who
    /// made it wants the switches where Home Assistant puts controls — on the generated
    /// dashboard and for voice assistants — not among the configuration entities.
    fn switch(&mut self, switch: Switch) {
        let object = format!("switch_{switch}");
        let (name, icon) = match switch {
            Switch::Charging => ("Charge", "mdi:battery-arrow-up"),
            Switch::Discharging => ("Discharge", "mdi:battery-arrow-down"),
            Switch::Balancer => ("Balancer", "mdi:scale-balance"),
            Switch::Heater => ("Heater", "mdi:heat-wave"),
        };
        let template = on_off(&format!("switches.{switch}"), "v");
        let mut c = self.common(name, &object, template);
        c.insert("icon".into(), json!(icon));
        c.insert(
            "command_topic".into(),
            json!(self.topics.switch_command(switch)),
        );
        c.insert("payload_on".into(), json!("ON"));
        c.insert("payload_off".into(), json!("OFF"));
        c.insert("state_on".into(), json!("ON"));
        c.insert("state_off".into(), json!("OFF"));
        c.insert("optimistic".into(), json!(false));
        let topic = switch_topic(self.prefix, &self.node, switch);
        self.out.push((topic, Value::Object(c)));
    }

    /// A binary sensor whose template gives `ON` or `OFF`.
    fn binary(&mut self, object: String, name: &str, class: Option<&str>, template: String) {
        let mut c = self.common(name, &object, template);
        c.insert("payload_on".into(), json!("ON"));
        c.insert("payload_off".into(), json!("OFF"));
        if let Some(class) = class {
            c.insert("device_class".into(), json!(class));
        }
        let topic = format!(
            "{}/binary_sensor/{}/{object}/config",
            self.prefix, self.node
        );
        self.out.push((topic, Value::Object(c)));
    }
}

/// The fields a template reads: `value_json.a.b[3]` → `["a", "b", "3"]`, for every
/// `value_json` in it (tests check them against the state).
pub fn template_paths(template: &str) -> Vec<Vec<String>> {
    template
        .split("value_json.")
        .skip(1)
        .map(|rest| {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || "_.[]".contains(c)))
                .unwrap_or(rest.len());
            rest[..end]
                .split(['.', '[', ']'])
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The value at `path` in `state` (array indexes as numbers).
pub fn lookup<'a>(state: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(state, |v, key| match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key.as_str()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::energy::Energy;
    use crate::battery::{Snapshot, SocSource};
    use crate::mqtt::payload;
    use crate::protocol::CellInfo;
    use crate::store::energy::Counters;

    fn layout() -> Layout {
        Layout {
            base: "jkmon".into(),
            batteries: vec![BatteryTopics::new(
                "jkmon",
                1,
                "Garage",
                Some("C8:47:80:00:00:01"),
            )],
            discovery_prefix: Some("homeassistant".into()),
            nodejkbms: false,
            dashboard_url: Some("http://pi.local:8000/".into()),
        }
    }

    /// The configs of the layout's battery under its address-based node.
    fn configs_of(
        l: &Layout,
        prefix: &str,
        state: &Value,
        info: Option<&DeviceInfo>,
    ) -> Vec<(String, Value)> {
        let topics = &l.batteries[0];
        let node = node_id(topics, serial_of(info));
        configs(l, prefix, topics, &node, state, info)
    }

    fn example() -> (Snapshot, Value) {
        let cells = CellInfo::example();
        let s = Snapshot {
            soc_effective_pct: Some(50.0),
            soc_source: SocSource::Bms,
            cell_info: cells,
            device_info: None,
            settings: None,
        };
        let counters = Counters {
            total: Energy {
                charged_wh: 1_234.0,
                discharged_wh: 987.0,
            },
            ..Counters::default()
        };
        let state = payload::state(&s, Some(&counters), chrono::Local::now(), true);
        (s, state)
    }

    fn find<'a>(configs: &'a [(String, Value)], object: &str) -> &'a Value {
        &configs
            .iter()
            .find(|(t, _)| t.ends_with(&format!("/{object}/config")))
            .unwrap_or_else(|| panic!("no {object}"))
            .1
    }

    /// What Home Assistant's Energy dashboard accepts for a battery's (or solar) energy:
    /// device class `energy`, state class `total` or `total_increasing`, and an energy unit.
    fn energy_dashboard_accepts(config: &Value) -> bool {
        config["device_class"] == "energy"
            && ["total", "total_increasing"].contains(&config["state_class"].as_str().unwrap_or(""))
            && ["Wh", "kWh", "MWh", "GJ", "MJ"]
                .contains(&config["unit_of_measurement"].as_str().unwrap_or(""))
    }

    #[test]
    fn names_places_and_unknowns_as_home_assistant_expects() {
        let mut l = layout();
        l.batteries[0].control = Some(crate::control::WriteLink::Bluetooth);
        let (_, mut state) = example();
        state["switches"] = json!({"charging": true, "discharging": true, "balancer": true});
        let c = configs_of(&l, "homeassistant", &state, None);
        let names: Vec<&str> = c.iter().filter_map(|(_, v)| v["name"].as_str()).collect();
        // one word for one thing: the MOSFETs the cell-info frame reports, the switches the
        // settings frame reports; no domain word in a name; abbreviations in capitals
        for name in [
            "Charge MOSFET",
            "Discharge MOSFET",
            "Charge",
            "Discharge",
            "MOSFET alarm",
        ] {
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        for name in &names {
            assert!(!name.to_lowercase().contains("switch"), "{name}");
            assert!(!name.contains("Mosfet") && !name.contains("soc "), "{name}");
        }
        // switches where an owner finds them: no entity category, an icon each
        let charge = find(&c, "switch_charging");
        assert!(charge.get("entity_category").is_none(), "{charge}");
        assert_eq!(charge["icon"], "mdi:battery-arrow-up");
        // a sensor without a device class has an icon
        for (topic, v) in &c {
            if topic.contains("/sensor/") && v.get("device_class").is_none() {
                assert!(v.get("icon").is_some(), "{topic}");
            }
        }
        // null-safe: every on/off template says None (unknown) for a null value
        assert_eq!(
            find(&c, "charging")["value_template"],
            "{% set v = value_json.current_a %}{{ none if v is none else ('ON' if v > 0 else 'OFF') }}"
        );
        // a number without a unit still reads a null as unknown: it has a precision
        assert_eq!(find(&c, "cell_min_index")["suggested_display_precision"], 0);
        // text and timestamps are unavailable while not reported (None is a word to them)
        let started = find(&c, "bms_started_at");
        let availability = started["availability"].as_array().unwrap();
        assert_eq!(availability.len(), 3, "{started}");
        assert_eq!(
            availability[2]["value_template"],
            "{{ 'online' if value_json.bms_started_at is not none else 'offline' }}"
        );
        assert_eq!(
            find(&c, "total_voltage_v")["availability"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn energy_sensors_are_what_the_energy_dashboard_accepts() {
        let l = layout();
        let (_, state) = example();
        let c = configs_of(&l, "homeassistant", &state, None);
        for object in ["energy_charged_kwh", "energy_discharged_kwh"] {
            let v = find(&c, object);
            assert!(energy_dashboard_accepts(v), "{object}: {v}");
            assert_eq!(
                v["value_template"],
                format!("{{{{ value_json.energy.{} }}}}", &object[7..])
            );
        }
        assert_eq!(state["energy"]["charged_kwh"], 1.234);
        assert_eq!(state["energy"]["discharged_kwh"], 0.987);
        let stored = find(&c, "energy_stored_kwh");
        assert_eq!(stored["device_class"], "energy_storage");
        assert_eq!(stored["state_class"], "measurement");
        assert!(!energy_dashboard_accepts(stored), "a level, not a counter");
        for object in ["energy_time_to_empty_s", "energy_time_to_full_s"] {
            let v = find(&c, object);
            assert_eq!(v["device_class"], "duration");
            assert_eq!(v["unit_of_measurement"], "s");
        }
        // idle: both times are null, and the entities stay
        assert!(state["energy"]["time_to_empty_s"].is_null());
        // without counters (a state built before the writer counted): no energy entity
        let (s, _) = example();
        let bare = payload::state(&s, None, chrono::Local::now(), true);
        let c = configs_of(&l, "homeassistant", &bare, None);
        assert!(!c.iter().any(|(t, _)| t.contains("/energy_")));
    }

    #[test]
    fn sensors_carry_the_right_classes_units_and_state_classes() {
        let l = layout();
        let (s, state) = example();
        let c = configs_of(&l, "homeassistant", &state, None);
        let check = |object: &str, class: Option<&str>, unit: Option<&str>, sc: Option<&str>| {
            let v = find(&c, object);
            assert_eq!(v["device_class"].as_str(), class, "{object}");
            assert_eq!(v["unit_of_measurement"].as_str(), unit, "{object}");
            assert_eq!(v["state_class"].as_str(), sc, "{object}");
        };
        check(
            "total_voltage_v",
            Some("voltage"),
            Some("V"),
            Some("measurement"),
        );
        check("current_a", Some("current"), Some("A"), Some("measurement"));
        check("power_w", Some("power"), Some("W"), Some("measurement"));
        check(
            "charge_power_w",
            Some("power"),
            Some("W"),
            Some("measurement"),
        );
        check(
            "discharge_power_w",
            Some("power"),
            Some("W"),
            Some("measurement"),
        );
        check(
            "soc_effective_pct",
            Some("battery"),
            Some("%"),
            Some("measurement"),
        );
        check("soh_pct", None, Some("%"), Some("measurement"));
        check("cycle_count", None, None, Some("total_increasing"));
        check(
            "remaining_capacity_ah",
            None,
            Some("Ah"),
            Some("measurement"),
        );
        check(
            "temperature_mos",
            Some("temperature"),
            Some("°C"),
            Some("measurement"),
        );
        check("cell_4", Some("voltage"), Some("V"), Some("measurement"));
        let cells = c
            .iter()
            .filter_map(|(t, _)| {
                t.rsplit('/')
                    .nth(1)?
                    .strip_prefix("cell_")?
                    .parse::<usize>()
                    .ok()
            })
            .count();
        assert_eq!(cells, s.cell_info.cell_voltages_uv.len());
        assert_eq!(find(&c, "charging")["device_class"], "battery_charging");
        assert_eq!(find(&c, "alarm_temperature")["device_class"], "problem");
        let voltage = find(&c, "total_voltage_v");
        assert_eq!(voltage["state_topic"], "jkmon/battery1/state");
        assert_eq!(
            voltage["unique_id"],
            "jkmon_c8_47_80_00_00_01_total_voltage_v"
        );
        assert_eq!(voltage["availability"][0]["topic"], "jkmon/status");
        assert_eq!(
            voltage["availability"][1]["topic"],
            "jkmon/battery1/availability"
        );
        assert_eq!(voltage["device"]["name"], "Garage");
        assert!(c[0]
            .0
            .starts_with("homeassistant/sensor/jkmon_c8_47_80_00_00_01/"));
    }

    #[test]
    fn every_template_reads_a_value_the_state_has() {
        let l = layout();
        let (_, state) = example();
        for (topic, config) in configs_of(&l, "homeassistant", &state, None) {
            let template = config["value_template"].as_str().unwrap();
            let paths = template_paths(template);
            assert!(!paths.is_empty(), "{topic}: {template}");
            for path in paths {
                let v = lookup(&state, &path);
                // only a time left may be null (idle: Home Assistant shows unknown)
                let may_be_null = path.first().is_some_and(|p| p == "energy");
                assert!(
                    v.is_some_and(|v| may_be_null || !v.is_null()),
                    "{topic}: {path:?} not in the state"
                );
            }
        }
    }

    #[test]
    fn values_the_bms_does_not_report_get_no_entity_and_the_device_names_the_bms() {
        let l = layout();
        let (mut s, _) = example();
        s.cell_info.soh_pct = None;
        s.cell_info.temperatures.sensors_dc = [None; 5];
        s.cell_info.heating = None;
        s.device_info = Some(DeviceInfo {
            model: "JK_PB2A16S20P".into(),
            hardware_version: "19A".into(),
            software_version: "19.08".into(),
            serial_number: "5082B12345".into(),
            ..DeviceInfo::default()
        });
        let state = payload::state(&s, None, chrono::Local::now(), true);
        let c = configs_of(&l, "ha", &state, s.device_info.as_ref());
        let objects: Vec<&str> = c
            .iter()
            .map(|(t, _)| t.rsplit('/').nth(1).unwrap())
            .collect();
        assert!(!objects.contains(&"soh_pct"));
        assert!(!objects.contains(&"heating"));
        assert!(
            !objects.iter().any(|o| o.starts_with("temperature_t")),
            "{objects:?}"
        );
        let device = &c[0].1["device"];
        assert_eq!(device["model"], "JK_PB2A16S20P");
        assert_eq!(device["sw_version"], "19.08");
        assert_eq!(device["hw_version"], "19A");
        assert_eq!(device["serial_number"], "5082B12345");
        // keyed on the serial number, and still the device its address named
        assert_eq!(
            device["identifiers"],
            json!(["jkmon_sn_5082b12345", "jkmon_c8_47_80_00_00_01"])
        );
        assert!(
            c[0].0.starts_with("ha/sensor/jkmon_sn_5082b12345/"),
            "{}",
            c[0].0
        );
        let voltage = find(&c, "total_voltage_v");
        assert_eq!(voltage["unique_id"], "jkmon_sn_5082b12345_total_voltage_v");
        // merged with Home Assistant's own Bluetooth device; a link to the dashboard
        assert_eq!(
            device["connections"],
            json!([["bluetooth", "C8:47:80:00:00:01"]])
        );
        assert_eq!(device["configuration_url"], "http://pi.local:8000/");
    }

    #[test]
    fn a_serial_number_keys_the_device_only_when_it_is_one() {
        let info = |sn: &str| DeviceInfo {
            serial_number: sn.into(),
            ..DeviceInfo::default()
        };
        assert_eq!(serial_of(Some(&info(" 4042313022 "))), Some("4042313022"));
        for blank in ["", "   ", "0000000000", "12", "Input Us"] {
            assert_eq!(serial_of(Some(&info(blank))), None, "{blank:?}");
        }
        assert_eq!(serial_of(None), None);
        let wired = BatteryTopics::new("jkmon", 2, "Shed", Some("/dev/ttyUSB0 #2"));
        assert_eq!(node_id(&wired, None), "jkmon_dev_ttyusb0_2");
        assert_eq!(node_id(&wired, Some("SN 7/1")), "jkmon_sn_sn_7_1");
        assert_eq!(wired.bluetooth, None, "a port is not a Bluetooth address");
    }

    #[test]
    fn a_jk_pbs_charger_stage_is_an_enum_and_its_dry_contacts_binaries_unknown_when_null() {
        let l = layout();
        // the example's cell info carries every last value (a JK-PB on firmware 15)
        let (_, state) = example();
        let c = configs_of(&l, "homeassistant", &state, None);
        let stage = find(&c, "charge_status");
        assert_eq!(stage["device_class"], "enum");
        assert_eq!(stage["options"], json!(["bulk", "absorption", "float"]));
        assert!(
            stage["availability"].to_string().contains("charge_status"),
            "unavailable while not reported: {stage}"
        );
        assert_eq!(state["charge_status"], "float");
        let dry1 = find(&c, "dry_contact_1");
        assert_eq!(
            dry1["value_template"],
            "{% set v = value_json.dry_contacts.dry1 %}{{ none if v is none else ('ON' if v else 'OFF') }}"
        );
        assert_eq!(find(&c, "heating_current_a")["unit_of_measurement"], "A");
        // a frame without them later: every key there, each null (unknown), none "off"
        let mut reported = Value::Null;
        payload::remember(&mut reported, &state);
        let mut later = state.clone();
        later["dry_contacts"] = Value::Null;
        later["charge_status"] = Value::Null;
        payload::fill_unreported(&mut later, &reported);
        assert_eq!(later["dry_contacts"], json!({"dry1": null, "dry2": null}));
        // a board without them (JK02_24S) has none of these entities
        let mut s24 = example().0;
        s24.cell_info.extended = Default::default();
        let state = payload::state(&s24, None, chrono::Local::now(), true);
        let c = configs_of(&l, "homeassistant", &state, None);
        for object in [
            "charge_status",
            "dry_contact_1",
            "precharging",
            "heating_current_a",
        ] {
            assert!(
                !c.iter()
                    .any(|(t, _)| t.ends_with(&format!("/{object}/config"))),
                "{object}"
            );
        }
    }

    #[test]
    fn template_paths_are_read_back() {
        assert_eq!(
            template_paths("{{ value_json.cell_voltages_v[12] }}"),
            [["cell_voltages_v", "12"]]
        );
        assert_eq!(
            template_paths("{{ 'ON' if value_json.alarm_groups.cell else 'OFF' }}"),
            [["alarm_groups", "cell"]]
        );
    }
}
