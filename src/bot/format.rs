//! The bot's messages: Telegram HTML (only `<b>`, `<i>`, `<code>`), every dynamic text
//! escaped, units on every number. Pure: a status in, a message out.

use crate::report::json::{CellInfoJson, SnapshotJson};
use crate::store::energy::{EnergyDay, EnergyView};
use crate::store::read::{BatteryView, Grid, StatusView};
use crate::telegram::escape;

/// A cell-info value of a battery that may have no snapshot.
fn cell<T>(s: Option<&SnapshotJson>, f: impl Fn(&CellInfoJson) -> Option<T>) -> Option<T> {
    s.and_then(|s| f(&s.cell_info))
}

/// What the bot says for a value the hardware did not report: never a 0, never the last value.
const NO_DATA: &str = "no data";

fn fmt(v: Option<f64>, digits: usize, unit: &str) -> String {
    match v {
        Some(v) => format!("{v:.digits$} {unit}"),
        None => NO_DATA.into(),
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

/// `45 min`, `5 h 10 min`, `2 d 3 h`.
pub fn duration(seconds: f64) -> String {
    let minutes = (seconds / 60.0).round() as u64;
    match minutes {
        m if m < 60 => format!("{m} min"),
        m if m < 48 * 60 => format!("{} h {} min", m / 60, m % 60),
        m => format!("{} d {} h", m / 1_440, m % 1_440 / 60),
    }
}

/// `empty in 5 h 10 min`, `full in 45 min`, or nothing while idle.
fn time_left(e: &EnergyView) -> Option<String> {
    match (e.time_to_empty_s, e.time_to_full_s) {
        (Some(s), _) => Some(format!("empty in {}", duration(s))),
        (_, Some(s)) => Some(format!("full in {}", duration(s))),
        _ => None,
    }
}

/// `Today: 1.23 kWh in · 0.45 kWh out · empty in 5 h 10 min`.
fn energy_line(e: &EnergyView) -> String {
    let mut out = format!(
        "Today: {} in · {} out",
        fmt(Some(e.today_charged_kwh), 2, "kWh"),
        fmt(Some(e.today_discharged_kwh), 2, "kWh")
    );
    if let Some(left) = time_left(e) {
        out += &format!(" · {left}");
    }
    out + "\n"
}

fn online(b: &BatteryView) -> String {
    if b.online {
        "online".into()
    } else {
        format!("<b>offline</b> (last data {})", age(b.age_s))
    }
}

/// `/status`: the grid, load and PV, and a line per battery.
pub fn status(view: &StatusView) -> String {
    let mut out = String::from("<b>⚡ jkmon status</b>\n");
    let inv = |k: &str, unit: &str| {
        view.inverter
            .as_ref()
            .and_then(|i| i.text(k))
            .map(|v| format!("{} {unit}", escape(v)))
            .unwrap_or_else(|| NO_DATA.into())
    };
    match view.grid() {
        Grid::Up => out += &format!("Grid: <b>online</b> ({})\n", inv("grid_voltage", "V")),
        Grid::Down => out += "Grid: <b>OFFLINE</b>\n",
        Grid::Unknown => {
            let polled = view.poller.as_ref().is_some_and(|p| p.online)
                || view.inverter.as_ref().is_some_and(|i| i.has_inverter_data);
            out += if polled {
                "Grid: unknown (the inverter's grid voltage was not read)\n"
            } else {
                "Grid: unknown (no inverter data)\n"
            };
        }
    }
    if let Some(p) = &view.poller {
        out += &match (p.online, &p.mode) {
            (true, Some(mode)) => format!("Inverter: online, {}\n", escape(mode)),
            (true, None) => "Inverter: online\n".to_string(),
            (false, _) => format!(
                "Inverter: <b>{}</b> ({})\n",
                escape(&p.state),
                escape(&p.detail)
            ),
        };
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
            fmt(s.and_then(|s| s.soc_effective_pct), 0, "%"),
            fmt(cell(s, |c| Some(c.total_voltage_v)), 2, "V"),
            fmt(cell(s, |c| c.current_a), 2, "A"),
            fmt(cell(s, |c| c.power_w), 0, "W"),
            fmt(cell(s, |c| c.temperatures_c.battery_c()), 1, "°C"),
        );
        if let Some(e) = &b.energy {
            out += &energy_line(e);
        }
    }
    if let Some(bank) = &view.bank {
        out += &format!(
            "\n<b>Bank</b>: SOC {} · {} · {}\n",
            fmt(bank.soc_pct, 0, "%"),
            fmt(Some(bank.current_a), 1, "A"),
            fmt(Some(bank.power_w), 0, "W")
        );
        out += &energy_line(&bank.energy);
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
        out += &format!("<b>🔋 {}</b> — {}\n", escape(&b.name), online(b));
        let Some(s) = b.snapshot.as_ref() else {
            out += "No data yet.\n\n";
            continue;
        };
        let c = &s.cell_info;
        let soc = s.soc_effective_pct;
        out += &format!(
            "SOC: <b>{}</b> {}\n",
            fmt(soc, 0, "%"),
            soc.map(soc_mark).unwrap_or("")
        );
        out += &format!("Voltage: {}\n", fmt(Some(c.total_voltage_v), 2, "V"));
        let current = c.current_a;
        let direction = match current {
            Some(a) if a > 0.05 => " (charging)",
            Some(a) if a < -0.05 => " (discharging)",
            Some(_) => " (idle)",
            None => "",
        };
        out += &format!("Current: {}{direction}\n", fmt(current, 2, "A"));
        out += &format!("Power: {}\n", fmt(c.power_w, 0, "W"));
        let temps: Vec<String> = c
            .temperatures_c
            .present()
            .map(|(k, t)| {
                let name = if k == "mos" {
                    "MOS".into()
                } else {
                    k.to_uppercase()
                };
                format!("{name} {}", fmt(Some(t), 1, "°C"))
            })
            .collect();
        if !temps.is_empty() {
            out += &format!("Temperatures: {}\n", escape(&temps.join(", ")));
        }
        let index = |i: Option<usize>| i.map_or(NO_DATA.into(), |i| i.to_string());
        out += &format!(
            "Cells: min {} (#{}) · max {} (#{}) · delta {}\n",
            fmt(c.cell_min_v, 3, "V"),
            index(c.cell_min_index),
            fmt(c.cell_max_v, 3, "V"),
            index(c.cell_max_index),
            fmt(c.cell_delta_v.map(|d| d * 1000.0), 0, "mV"),
        );
        out += &format!(
            "Cycles: {} · SOH: {}\n",
            c.cycle_count.map_or(NO_DATA.into(), |n| n.to_string()),
            fmt(c.soh_pct.map(f64::from), 0, "%")
        );
        out += &format!(
            "Remaining: {} of {}\n",
            fmt(c.remaining_capacity_ah, 1, "Ah"),
            fmt(c.nominal_capacity_ah, 0, "Ah")
        );
        let alarms: Vec<String> = c.alarms.iter().map(|a| escape(a)).collect();
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
        out += &format!("<b>🔋 {}</b>\n", escape(&b.name));
        let Some(c) = b
            .snapshot
            .as_ref()
            .map(|s| &s.cell_info)
            .filter(|c| !c.cell_voltages_v.is_empty())
        else {
            out += "No cell data.\n\n";
            continue;
        };
        let cells = &c.cell_voltages_v;
        let (min, max) = (c.cell_min_index, c.cell_max_index);
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
            fmt(c.cell_delta_v.map(|d| d * 1000.0), 0, "mV"),
            online(b)
        );
    }
    out.trim_end().to_string()
}

/// `/energy`: today's and yesterday's energy (the last two of `days`), this month's and last
/// month's (from `days`, which then reach back to the first of last month), and what the
/// batteries hold now.
pub fn energy(days: &[EnergyDay], view: &StatusView) -> String {
    let mut out = String::from("<b>⚡ Energy</b>\n");
    let kwh = |v: Option<f64>| fmt(v, 2, "kWh");
    for (label, day) in ["Yesterday", "Today"]
        .iter()
        .zip(&days[days.len().saturating_sub(2)..])
        .rev()
    {
        out += &format!("\n<b>{label}</b> ({})\n", day.date);
        out += &format!(
            "Batteries: {} charged · {} discharged\n",
            kwh(day.charged_kwh),
            kwh(day.discharged_kwh)
        );
        if day.pv_kwh.is_some() || day.load_kwh.is_some() || day.grid_import_kwh.is_some() {
            out += &format!(
                "PV: {} · Load: {} · Grid: {} in",
                kwh(day.pv_kwh),
                kwh(day.load_kwh),
                kwh(day.grid_import_kwh)
            );
            if day.grid_export_kwh.is_some_and(|e| e > 0.0) {
                out += &format!(", {} out", kwh(day.grid_export_kwh));
            }
            out += "\n";
        } else {
            out += "Inverter: no data\n";
        }
    }
    let months = crate::store::energy::months(days);
    for (label, m) in ["Last month", "This month"]
        .iter()
        .zip(&months[months.len().saturating_sub(2)..])
        .rev()
    {
        let sum = &m.sum;
        out += &format!("\n<b>{label}</b> ({})\n", m.month);
        if sum.days_with_data == 0 {
            out += "No data\n";
            continue;
        }
        out += &format!(
            "Batteries: {} charged · {} discharged\nPV: {} · Load: {} · Grid: {} in\n",
            kwh(sum.charged_kwh),
            kwh(sum.discharged_kwh),
            kwh(sum.pv_kwh),
            kwh(sum.load_kwh),
            kwh(sum.grid_import_kwh)
        );
        if sum.days_with_data < sum.days {
            out += &format!("({} of {} days with data)\n", sum.days_with_data, sum.days);
        }
    }
    let now = match &view.bank {
        Some(bank) => Some(&bank.energy),
        None => view.batteries.first().and_then(|b| b.energy.as_ref()),
    };
    if let Some(e) = now {
        out += &format!("\nStored now: {}", fmt(e.stored_kwh, 2, "kWh"));
        if let Some(left) = time_left(e) {
            out += &format!(" · {left}");
        }
        out += "\n";
    }
    out.trim_end().to_string()
}

pub fn help() -> String {
    "<b>jkmon</b> — your batteries in your pocket\n\
     /status — grid, load, PV and every battery\n\
     /energy — today's, yesterday's, this and last month's kWh, stored energy, time left\n\
     /battery — everything about each battery\n\
     /cells — every cell's voltage\n\
     /switch — charging, discharging, balancer, heater (where switching is on)\n\
     /chatid — this chat's id\n\
     /help — this list"
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::json::TemperaturesC;
    use crate::store::read::InverterView;
    use serde_json::json;

    fn snapshot() -> SnapshotJson {
        let mut s = SnapshotJson::example();
        s.soc_effective_pct = Some(15.4);
        let c = &mut s.cell_info;
        c.total_voltage_v = 51.2;
        c.current_a = Some(-12.5);
        c.power_w = Some(-640.0);
        c.temperatures_c = TemperaturesC {
            mos: Some(25.0),
            t1: Some(21.5),
            ..TemperaturesC::default()
        };
        (c.cell_min_v, c.cell_max_v, c.cell_delta_v) = (Some(3.187), Some(3.215), Some(0.028));
        (c.cell_min_index, c.cell_max_index) = (Some(3), Some(5));
        c.cell_voltages_v = vec![3.2, 3.201, 3.187, 3.2, 3.215];
        (c.cycle_count, c.soh_pct) = (Some(12), Some(100));
        (c.remaining_capacity_ah, c.nominal_capacity_ah) = (Some(43.1), Some(280.0));
        c.alarms = vec!["Cell < undervoltage & co".into()];
        s
    }

    fn view(name: &str) -> StatusView {
        StatusView {
            generated_at: chrono::Utc::now(),
            batteries: vec![BatteryView {
                taken_at: None,
                age_s: Some(3.0),
                snapshot: Some(snapshot()),
                ..BatteryView::example(1, name)
            }],
            bank: None,
            inverter: Some(InverterView {
                id: 1,
                created_at: String::new(),
                age_s: Some(2.0),
                stale: false,
                has_inverter_data: true,
                error: None,
                payload: Some(
                    json!({"grid_voltage": "231.4", "ac_output_power": "398", "pv_input_power": "0", "grid_power": "412"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            }),
            poller: None,
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

    fn day(date: &str, charged: f64, pv: Option<f64>) -> EnergyDay {
        EnergyDay {
            date: date.parse().unwrap(),
            charged_kwh: Some(charged),
            discharged_kwh: Some(0.5),
            batteries: Vec::new(),
            pv_kwh: pv,
            load_kwh: pv.map(|p| p / 2.0),
            grid_import_kwh: pv.map(|_| 1.0),
            grid_export_kwh: pv.map(|_| 0.0),
        }
    }

    #[test]
    fn energy_shows_this_month_and_last_month_with_their_gaps() {
        let v = view("Garage");
        let gap = |date: &str| EnergyDay {
            date: date.parse().unwrap(),
            ..EnergyDay::default()
        };
        let days = [
            day("2026-11-29", 2.0, Some(6.0)),
            gap("2026-11-30"),
            day("2026-12-01", 3.0, Some(4.0)),
            day("2026-12-02", 1.0, Some(2.0)),
        ];
        let msg = energy(&days, &v);
        assert!(valid_html(&msg), "{msg}");
        let this = msg.find("<b>This month</b> (2026-12)").expect(&msg);
        let last = msg.find("<b>Last month</b> (2026-11)").expect(&msg);
        assert!(this < last, "{msg}");
        assert!(
            msg[this..last]
                .contains("Batteries: 4.00 kWh charged · 1.00 kWh discharged\nPV: 6.00 kWh"),
            "{msg}"
        );
        assert!(msg[last..].contains("(1 of 2 days with data)"), "{msg}");
        let empty = energy(&[gap("2026-11-30"), gap("2026-12-01")], &v);
        assert!(
            empty.contains("<b>This month</b> (2026-12)\nNo data"),
            "{empty}"
        );
    }

    #[test]
    fn energy_shows_today_first_then_yesterday_and_the_time_left() {
        let mut v = view("Garage");
        v.batteries[0].energy = Some(EnergyView {
            today_charged_kwh: 1.234,
            today_discharged_kwh: 0.5,
            stored_kwh: Some(8.4),
            time_to_empty_s: Some(5.0 * 3_600.0 + 600.0),
            ..EnergyView::default()
        });
        let days = [
            day("2026-11-25", 9.0, None),
            day("2026-11-26", 2.0, Some(6.0)),
            day("2026-11-27", 3.5, None),
        ];
        let msg = energy(&days, &v);
        assert!(valid_html(&msg), "{msg}");
        let today = msg.find("<b>Today</b> (2026-11-27)").expect(&msg);
        let yesterday = msg.find("<b>Yesterday</b> (2026-11-26)").expect(&msg);
        assert!(today < yesterday, "{msg}");
        assert!(
            !msg.contains("2026-11-25") && !msg.contains("9.00"),
            "{msg}"
        );
        assert!(
            msg.contains("Batteries: 3.50 kWh charged · 0.50 kWh discharged"),
            "{msg}"
        );
        assert!(
            msg.contains("PV: 6.00 kWh · Load: 3.00 kWh · Grid: 1.00 kWh in\n"),
            "{msg}"
        );
        assert!(msg.contains("Inverter: no data"), "today has none: {msg}");
        assert!(
            msg.contains("Stored now: 8.40 kWh · empty in 5 h 10 min"),
            "{msg}"
        );
        let line = status(&v);
        assert!(
            line.contains("Today: 1.23 kWh in · 0.50 kWh out · empty in 5 h 10 min"),
            "{line}"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(45.0 * 60.0), "45 min");
        assert_eq!(duration(5.0 * 3_600.0 + 600.0), "5 h 10 min");
        assert_eq!(duration(51.0 * 3_600.0), "2 d 3 h");
    }

    #[test]
    fn every_message_is_valid_html_with_a_hostile_name() {
        let v = view("<b>& Garage");
        for msg in [status(&v), battery(&v), cells(&v), help(), energy(&[], &v)] {
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

    #[test]
    fn jkmons_own_poller_says_the_mode_or_why_it_is_offline_escaped() {
        let mut v = view("Main");
        let mut p = crate::store::poller::PollerView {
            model: "ISOLAR_SMG_II_6K".into(),
            link: "Modbus TCP to 10.0.0.5:502".into(),
            state: "online".into(),
            online: true,
            detail: String::new(),
            since: chrono::Utc::now(),
            polled_at: None,
            mode: Some("off-grid (battery)".into()),
            mode_code: Some(3),
            grid: crate::inverter::payload::Grid::Down,
            grid_lost: Some(true),
            values: Default::default(),
        };
        v.poller = Some(p.clone());
        let text = status(&v);
        assert!(
            text.contains("Inverter: online, off-grid (battery)"),
            "{text}"
        );
        assert!(
            text.contains("Grid: <b>OFFLINE</b>"),
            "the inverter's own word: {text}"
        );
        // a poll that did not read the grid voltage: unknown, never OFFLINE
        p.grid = crate::inverter::payload::Grid::Unknown;
        p.grid_lost = None;
        v.poller = Some(p.clone());
        let text = status(&v);
        assert!(
            text.contains("Grid: unknown (the inverter's grid voltage was not read)"),
            "{text}"
        );
        assert!(!text.contains("OFFLINE"), "{text}");
        p.state = "offline".into();
        p.online = false;
        p.detail = "no answer <from> the dongle".into();
        v.poller = Some(p);
        let text = status(&v);
        assert!(
            text.contains("Inverter: <b>offline</b> (no answer &lt;from&gt; the dongle)"),
            "{text}"
        );
    }
}
