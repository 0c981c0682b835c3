//! The bot's messages: Telegram HTML (only `<b>`, `<i>`, `<code>`), every dynamic text
//! escaped, units on every number. Pure: a status in, a message out.

use serde_json::Value;

use crate::alerts::rules::grid_state;
use crate::store::read::{BatteryView, StatusView};

/// Escapes text for Telegram's HTML mode (`&`, `<`, `>`, `"`).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn num(s: Option<&Value>, key: &str) -> Option<f64> {
    s.and_then(|s| s.get(key)).and_then(Value::as_f64)
}

fn fmt(v: Option<f64>, digits: usize, unit: &str) -> String {
    match v {
        Some(v) => format!("{v:.digits$} {unit}"),
        None => "–".into(),
    }
}

fn age(seconds: Option<f64>) -> String {
    match seconds {
        None => "never".into(),
        Some(s) if s < 90.0 => format!("{s:.0} s ago"),
        Some(s) if s < 5_400.0 => format!("{:.0} min ago", s / 60.0),
        Some(s) => format!("{:.1} h ago", s / 3_600.0),
    }
}

/// 🟢 ≥ 80 %, 🟡 ≥ 50 %, 🟠 ≥ 20 %, 🔴 below.
pub fn soc_mark(soc: f64) -> &'static str {
    match soc {
        s if s >= 80.0 => "🟢",
        s if s >= 50.0 => "🟡",
        s if s >= 20.0 => "🟠",
        _ => "🔴",
    }
}

fn online(b: &BatteryView) -> String {
    if b.online {
        "online".into()
    } else {
        format!("<b>offline</b> (last data {})", age(b.age_s))
    }
}

fn temperature(s: Option<&Value>) -> Option<f64> {
    let t = s?.get("temperatures_c")?.as_object()?;
    ["t1", "t2", "t3", "t4", "t5", "mos"]
        .iter()
        .find_map(|k| t.get(*k).and_then(Value::as_f64))
}

/// `/status`: the grid, load and PV, and a line per battery.
pub fn status(view: &StatusView) -> String {
    let mut out = String::from("<b>⚡ jkmon status</b>\n");
    let payload = view.inverter.as_ref().and_then(|i| i.payload.as_ref());
    let inv = |k: &str, unit: &str| {
        payload
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .filter(|v| *v != "N/A")
            .map(|v| format!("{} {unit}", escape(v)))
            .unwrap_or_else(|| "–".into())
    };
    match grid_state(view) {
        "up" => out += &format!("Grid: <b>online</b> ({})\n", inv("grid_voltage", "V")),
        "down" => out += "Grid: <b>OFFLINE</b>\n",
        _ => out += "Grid: unknown (no inverter data)\n",
    }
    if view.inverter.as_ref().is_some_and(|i| i.has_inverter_data) {
        out += &format!(
            "Load: {} · PV: {} · Grid: {}\n",
            inv("ac_output_power", "W"),
            inv("pv_input_power", "W"),
            inv("grid_power", "W")
        );
    }
    for b in &view.batteries {
        let s = b.snapshot.as_ref();
        out += &format!("\n<b>🔋 {}</b> — {}\n", escape(&b.name), online(b));
        out += &format!(
            "SOC {} · {} · {} · {} · {}\n",
            fmt(num(s, "soc_effective_pct"), 0, "%"),
            fmt(num(s, "total_voltage_v"), 2, "V"),
            fmt(num(s, "current_a"), 2, "A"),
            fmt(num(s, "power_w"), 0, "W"),
            fmt(temperature(s), 1, "°C"),
        );
    }
    if let Some(bank) = &view.bank {
        out += &format!(
            "\n<b>Bank</b>: SOC {} · {} · {}\n",
            fmt(bank.soc_pct, 0, "%"),
            fmt(Some(bank.current_a), 1, "A"),
            fmt(Some(bank.power_w), 0, "W")
        );
    }
    out += &format!("\n<i>Data: {}</i>", data_age(view));
    out
}

fn data_age(view: &StatusView) -> String {
    let newest = view
        .batteries
        .iter()
        .filter_map(|b| b.age_s)
        .fold(None, |m: Option<f64>, a| Some(m.map_or(a, |m| m.min(a))));
    format!("batteries {}", age(newest))
}

/// `/battery`: everything about each battery.
pub fn battery(view: &StatusView) -> String {
    let mut out = String::new();
    for b in &view.batteries {
        let s = b.snapshot.as_ref();
        out += &format!("<b>🔋 {}</b> — {}\n", escape(&b.name), online(b));
        if s.is_none() {
            out += "No data yet.\n\n";
            continue;
        }
        let soc = num(s, "soc_effective_pct");
        out += &format!(
            "SOC: <b>{}</b> {}\n",
            fmt(soc, 0, "%"),
            soc.map(soc_mark).unwrap_or("")
        );
        out += &format!("Voltage: {}\n", fmt(num(s, "total_voltage_v"), 2, "V"));
        let current = num(s, "current_a");
        let direction = match current {
            Some(a) if a > 0.05 => " (charging)",
            Some(a) if a < -0.05 => " (discharging)",
            Some(_) => " (idle)",
            None => "",
        };
        out += &format!("Current: {}{direction}\n", fmt(current, 2, "A"));
        out += &format!("Power: {}\n", fmt(num(s, "power_w"), 0, "W"));
        if let Some(t) = s
            .and_then(|s| s.get("temperatures_c"))
            .and_then(Value::as_object)
        {
            let list: Vec<String> = t
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{} {}",
                        if k == "mos" {
                            "MOS".into()
                        } else {
                            k.to_uppercase()
                        },
                        fmt(v.as_f64(), 1, "°C")
                    )
                })
                .collect();
            out += &format!("Temperatures: {}\n", escape(&list.join(", ")));
        }
        out += &format!(
            "Cells: min {} (#{}) · max {} (#{}) · delta {}\n",
            fmt(num(s, "cell_min_v"), 3, "V"),
            num(s, "cell_min_index").map_or("–".into(), |i| format!("{i:.0}")),
            fmt(num(s, "cell_max_v"), 3, "V"),
            num(s, "cell_max_index").map_or("–".into(), |i| format!("{i:.0}")),
            fmt(num(s, "cell_delta_v").map(|d| d * 1000.0), 0, "mV"),
        );
        out += &format!(
            "Cycles: {} · SOH: {}\n",
            num(s, "cycle_count").map_or("–".into(), |c| format!("{c:.0}")),
            fmt(num(s, "soh_pct"), 0, "%")
        );
        out += &format!(
            "Remaining: {} of {}\n",
            fmt(num(s, "remaining_capacity_ah"), 1, "Ah"),
            fmt(num(s, "nominal_capacity_ah"), 0, "Ah")
        );
        let alarms: Vec<String> = s
            .and_then(|s| s.get("alarms"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(escape)).collect())
            .unwrap_or_default();
        if alarms.is_empty() {
            out += "Alarms: none\n";
        } else {
            out += &format!("<b>⚠️ Alarms: {}</b>\n", alarms.join(", "));
        }
        out += &format!("<i>Updated {}</i>\n\n", age(b.age_s));
    }
    if out.is_empty() {
        out = "No battery is configured.".into();
    }
    out.trim_end().to_string()
}

/// `/cells`: every cell, four per line, ▼ on the lowest and ▲ on the highest.
pub fn cells(view: &StatusView) -> String {
    let mut out = String::new();
    for b in &view.batteries {
        let s = b.snapshot.as_ref();
        out += &format!("<b>🔋 {}</b>\n", escape(&b.name));
        let cells: Vec<f64> = s
            .and_then(|s| s.get("cell_voltages_v"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if cells.is_empty() {
            out += "No cell data.\n\n";
            continue;
        }
        let min = num(s, "cell_min_index").map(|i| i as usize);
        let max = num(s, "cell_max_index").map(|i| i as usize);
        out += "<code>";
        for (i, v) in cells.iter().enumerate() {
            let n = i + 1;
            let mark = if Some(n) == min {
                "▼"
            } else if Some(n) == max {
                "▲"
            } else {
                " "
            };
            out += &format!("{n:>2}:{v:.3}{mark}");
            out += if n % 4 == 0 { "\n" } else { " " };
        }
        out = out.trim_end().to_string();
        out += "</code>\n";
        out += &format!(
            "delta {} · {}\n\n",
            fmt(num(s, "cell_delta_v").map(|d| d * 1000.0), 0, "mV"),
            online(b)
        );
    }
    out.trim_end().to_string()
}

pub fn help() -> String {
    "<b>jkmon</b> — your batteries in your pocket\n\
     /status — grid, load, PV and every battery\n\
     /battery — everything about each battery\n\
     /cells — every cell's voltage\n\
     /chatid — this chat's id\n\
     /help — this list"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read::InverterView;
    use serde_json::json;

    fn view(name: &str) -> StatusView {
        StatusView {
            generated_at: chrono::Utc::now(),
            batteries: vec![BatteryView {
                position: 1,
                name: name.into(),
                address: None,
                state: "streaming".into(),
                state_detail: None,
                online: true,
                taken_at: None,
                age_s: Some(3.0),
                model: None,
                hardware_version: None,
                software_version: None,
                serial_number: None,
                snapshot: Some(json!({
                    "soc_effective_pct": 15.4, "total_voltage_v": 51.2, "current_a": -12.5,
                    "power_w": -640.0, "temperatures_c": {"mos": 25.0, "t1": 21.5},
                    "cell_min_v": 3.187, "cell_max_v": 3.215, "cell_delta_v": 0.028,
                    "cell_min_index": 3, "cell_max_index": 5,
                    "cell_voltages_v": [3.2, 3.201, 3.187, 3.2, 3.215],
                    "cycle_count": 12, "soh_pct": 100, "remaining_capacity_ah": 43.1,
                    "nominal_capacity_ah": 280.0, "alarms": ["Cell < undervoltage & co"],
                })),
            }],
            bank: None,
            inverter: Some(InverterView {
                id: 1,
                created_at: String::new(),
                age_s: Some(2.0),
                has_inverter_data: true,
                error: None,
                payload: Some(
                    json!({"grid_voltage": "231.4", "ac_output_power": "398", "pv_input_power": "0", "grid_power": "412"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            }),
        }
    }

    /// Only the tags Telegram allows, balanced, and no bare `&` or `<`.
    fn valid_html(s: &str) -> bool {
        let mut stack = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find(['<', '&']) {
            let tail = &rest[i..];
            if let Some(after) = tail.strip_prefix('&') {
                let ok = ["amp;", "lt;", "gt;", "quot;"]
                    .iter()
                    .any(|e| after.starts_with(e));
                if !ok {
                    return false;
                }
                rest = after;
                continue;
            }
            let end = match tail.find('>') {
                Some(e) => e,
                None => return false,
            };
            let tag = &tail[1..end];
            if let Some(closing) = tag.strip_prefix('/') {
                if stack.pop() != Some(closing.to_string()) {
                    return false;
                }
            } else if ["b", "i", "code"].contains(&tag) {
                stack.push(tag.to_string());
            } else {
                return false;
            }
            rest = &tail[end + 1..];
        }
        stack.is_empty()
    }

    #[test]
    fn every_message_is_valid_html_with_a_hostile_name() {
        let v = view("<b>& Garage");
        for msg in [status(&v), battery(&v), cells(&v), help()] {
            assert!(valid_html(&msg), "{msg}");
        }
        assert!(status(&v).contains("&lt;b&gt;&amp; Garage"));
        assert!(battery(&v).contains("Cell &lt; undervoltage &amp; co"));
    }

    #[test]
    fn the_values_carry_their_units() {
        let v = view("Main");
        let s = status(&v);
        assert!(s.contains("Grid: <b>online</b> (231.4 V)"), "{s}");
        assert!(
            s.contains("SOC 15 % · 51.20 V · -12.50 A · -640 W · 21.5 °C"),
            "{s}"
        );
        assert!(s.contains("Load: 398 W · PV: 0 W · Grid: 412 W"), "{s}");
        let b = battery(&v);
        assert!(b.contains("SOC: <b>15 %</b> 🔴"), "{b}");
        assert!(b.contains("Current: -12.50 A (discharging)"), "{b}");
        assert!(
            b.contains("Cells: min 3.187 V (#3) · max 3.215 V (#5) · delta 28 mV"),
            "{b}"
        );
        let c = cells(&v);
        assert!(c.contains(" 3:3.187▼") && c.contains(" 5:3.215▲"), "{c}");
    }

    #[test]
    fn no_inverter_data_is_unknown_not_offline() {
        let mut v = view("Main");
        v.inverter.as_mut().unwrap().has_inverter_data = false;
        assert!(status(&v).contains("Grid: unknown (no inverter data)"));
        v.inverter = None;
        assert!(status(&v).contains("Grid: unknown"));
    }
}
