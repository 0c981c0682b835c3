//! Readable text for people: one block per decoded frame, and the status of a battery.

use std::fmt::Write;

use crate::battery::Snapshot;
use crate::protocol::alarms::label;
use crate::protocol::cell_info::CellInfo;
use crate::protocol::decoder::Decoded;
use crate::protocol::device_info::DeviceInfo;
use crate::protocol::settings::Settings;
use crate::protocol::{rs485::Rs485Register, Variant};

fn v(uv: u32) -> String {
    format!("{:.3} V", f64::from(uv) / 1e6)
}

fn opt<T: std::fmt::Display>(x: Option<T>, unit: &str) -> String {
    match x {
        Some(x) => format!("{x}{unit}"),
        None => "n/a".into(),
    }
}

/// The cell-info block: the cells, the pack, then the switches and alarms.
pub fn cell_info(c: &CellInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "cell info ({}, frame {})", c.variant, c.counter);
    cells(&mut s, c);
    pack(&mut s, c);
    switches_and_alarms(&mut s, c);
    s
}

/// Every cell's voltage, eight to a line; the lowest, highest, average and delta; the wire
/// resistances.
fn cells(s: &mut String, c: &CellInfo) {
    let _ = writeln!(s, "  cells      {}", c.cell_count());
    for (row, chunk) in c.cell_voltages_uv.chunks(8).enumerate() {
        let cells: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, uv)| format!("{:>2}: {:.3}", row * 8 + i + 1, f64::from(*uv) / 1e6))
            .collect();
        let _ = writeln!(s, "    {}", cells.join("  "));
    }
    if let Some(st) = c.stats() {
        let _ = writeln!(
            s,
            "  min / max  {} (cell {}) / {} (cell {})",
            v(st.min_uv),
            st.min_index,
            v(st.max_uv),
            st.max_index
        );
        let _ = writeln!(
            s,
            "  avg / delta {} / {:.0} mV",
            v(st.avg_uv),
            f64::from(st.delta_uv) / 1000.0
        );
    }
    if !c.cell_resistances_uohm.is_empty() && c.cell_resistances_uohm.iter().any(|r| *r != 0) {
        let r: Vec<String> = c
            .cell_resistances_uohm
            .iter()
            .map(|r| format!("{:.0}", f64::from(*r) / 1000.0))
            .collect();
        let _ = writeln!(s, "  wire resistance (mΩ) {}", r.join(" "));
    }
}

/// Voltage, current, power, SOC, capacity, cycles and temperatures.
fn pack(s: &mut String, c: &CellInfo) {
    let _ = writeln!(
        s,
        "  voltage    {:.3} V",
        f64::from(c.total_voltage_mv) / 1000.0
    );
    if let Some(ma) = c.current_ma {
        let dir = match ma {
            x if x > 0 => "charging",
            x if x < 0 => "discharging",
            _ => "idle",
        };
        let _ = writeln!(s, "  current    {:.3} A ({dir})", f64::from(ma) / 1000.0);
    }
    if let Some(p) = c.power_mw() {
        let _ = writeln!(s, "  power      {:.1} W", p as f64 / 1000.0);
    }
    if let Some(soc) = c.soc_pct {
        let _ = writeln!(s, "  SOC (BMS)  {soc} %");
    }
    if let (Some(rem), Some(full)) = (c.remaining_capacity_mah, c.nominal_capacity_mah) {
        let _ = writeln!(
            s,
            "  capacity   {:.3} / {:.3} Ah",
            f64::from(rem) / 1000.0,
            f64::from(full) / 1000.0
        );
    }
    if c.cycle_count.is_some() || c.soh_pct.is_some() {
        let _ = writeln!(
            s,
            "  cycles     {} ({} Ah in total), SOH {}",
            opt(c.cycle_count, ""),
            opt(
                c.cycle_capacity_mah
                    .map(|m| format!("{:.1}", f64::from(m) / 1000.0)),
                ""
            ),
            opt(c.soh_pct, " %")
        );
    }
    let mut temps = Vec::new();
    if let Some(t) = c.temperatures.mos_dc {
        temps.push(format!("MOS {:.1}", f64::from(t) / 10.0));
    }
    for (i, t) in c.temperatures.sensors_dc.iter().enumerate() {
        if let Some(t) = t {
            temps.push(format!("T{} {:.1}", i + 1, f64::from(*t) / 10.0));
        }
    }
    if !temps.is_empty() {
        let _ = writeln!(s, "  temps (°C) {}", temps.join(", "));
    }
}

fn closed(b: bool) -> &'static str {
    if b {
        "closed"
    } else {
        "open"
    }
}

/// The MOSFETs, the heater, the balancer, the alarms and the uptime.
fn switches_and_alarms(s: &mut String, c: &CellInfo) {
    let onoff = |b: Option<bool>| match b {
        Some(true) => "on",
        Some(false) => "off",
        None => "n/a",
    };
    let _ = writeln!(
        s,
        "  MOSFETs    charge {}, discharge {}; heating {}",
        onoff(c.charging_enabled),
        onoff(c.discharging_enabled),
        onoff(c.heating)
    );
    let e = &c.extended;
    if *e != crate::protocol::cell_info::Extended::default() {
        let _ = writeln!(
            s,
            "  charger    {}; precharge {}; heating current {}; dry contacts {}",
            e.charge_status.map_or("n/a", |c| c.as_str()),
            onoff(e.precharging),
            e.heating_current_ma.map_or_else(
                || "n/a".into(),
                |ma| format!("{:.3} A", f64::from(ma) / 1000.0)
            ),
            e.dry_contacts.map_or_else(
                || "n/a".into(),
                |d| format!("DRY1 {}, DRY2 {}", closed(d.dry1), closed(d.dry2))
            ),
        );
    }
    let _ = writeln!(
        s,
        "  balancing  {:?}{}",
        c.balancing,
        c.balance_current_ma
            .map(|ma| format!(", {:.3} A", f64::from(ma) / 1000.0))
            .unwrap_or_default()
    );
    let alarms = c.alarms.names();
    let _ = writeln!(
        s,
        "  alarms     {}",
        if alarms.is_empty() {
            "none".to_string()
        } else {
            alarms
                .iter()
                .map(|a| label(a))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if let Some(up) = c.uptime_s {
        let _ = writeln!(s, "  uptime     {}", duration(up));
    }
}

/// `3d 04:05:06`.
pub fn duration(secs: u32) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    format!("{d}d {h:02}:{m:02}:{s:02}")
}

pub fn device_info(d: &DeviceInfo, variant: Variant) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "device info ({variant})");
    let _ = writeln!(s, "  model      {}", d.model);
    let _ = writeln!(
        s,
        "  versions   hardware {}, software {}",
        d.hardware_version, d.software_version
    );
    let _ = writeln!(s, "  name       {}", d.device_name);
    let _ = writeln!(s, "  serial     {}", d.serial_number);
    let _ = writeln!(s, "  made       {}", d.manufacturing_date);
    if let Some(up) = d.uptime_s {
        let _ = writeln!(
            s,
            "  uptime     {}, powered on {} times",
            duration(up),
            opt(d.power_on_count, "")
        );
    }
    s
}

pub fn settings(st: &Settings) -> String {
    let mv = |x: Option<u32>| opt(x.map(|m| format!("{:.3}", f64::from(m) / 1000.0)), " V");
    let a = |x: Option<u32>| opt(x.map(|m| format!("{:.1}", f64::from(m) / 1000.0)), " A");
    let onoff = |b: Option<bool>| opt(b.map(crate::protocol::control::on_off), "");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "settings ({})",
        st.variant
            .map_or("unknown layout".into(), |v| v.to_string())
    );
    let _ = writeln!(s, "  cells      {}", st.cell_count);
    let _ = writeln!(
        s,
        "  cell OVP / UVP {} / {}",
        mv(st.cell_ovp_mv),
        mv(st.cell_uvp_mv)
    );
    let _ = writeln!(
        s,
        "  balance    start {}, trigger {}, switch {}",
        mv(st.balance_start_mv),
        mv(st.balance_trigger_mv),
        onoff(st.balancer_switch)
    );
    let _ = writeln!(
        s,
        "  max current charge {}, discharge {}",
        a(st.max_charge_current_ma),
        a(st.max_discharge_current_ma)
    );
    let _ = writeln!(
        s,
        "  capacity   {}",
        opt(
            st.nominal_capacity_mah
                .map(|m| format!("{:.1}", f64::from(m) / 1000.0)),
            " Ah"
        )
    );
    let _ = writeln!(
        s,
        "  switches   charge {}, discharge {}",
        onoff(st.charge_switch),
        onoff(st.discharge_switch)
    );
    s
}

/// Text for any decoded item.
pub fn decoded(d: &Decoded, rs485_address: Option<u8>) -> String {
    let mut s = match d {
        Decoded::CellInfo(c) => cell_info(c),
        Decoded::DeviceInfo(info, variant) => device_info(info, *variant),
        Decoded::Settings(st) => settings(st),
        Decoded::Logbook(l) => {
            let mut s = format!("logbook ({} entries)\n", l.log_count);
            for e in &l.entries {
                let _ = writeln!(s, "  {:>10} s  {}", e.time_s, e.description());
            }
            s
        }
        Decoded::Serial(r) => format!(
            "{}{}{}",
            cell_info(&r.cell_info),
            device_info(&r.device_info, Variant::Serial4e57),
            settings(&r.settings)
        ),
        Decoded::Command(c) => format!("command: {}\n", c.describe()),
        Decoded::Rs485Switch(w) => match w.on {
            Some(on) => format!(
                "RS485 switch write to address {:#04x}: {} {}\n",
                w.address,
                w.switch,
                crate::protocol::control::on_off(on)
            ),
            None => format!(
                "RS485 switch write answered by address {:#04x} ({})\n",
                w.address, w.switch
            ),
        },
        Decoded::Rs485Request(e) | Decoded::Rs485Tail(e) => format!(
            "RS485 {} address {:#04x}, register {:#06x} ({})\n",
            if matches!(d, Decoded::Rs485Request(_)) {
                "request to"
            } else {
                "answer from"
            },
            e.address,
            e.register,
            Rs485Register::from_address(e.register).map_or("unknown", Rs485Register::name)
        ),
    };
    if let Some(addr) = rs485_address {
        s = format!("[RS485 address {addr:#04x}] {s}");
    }
    s
}

/// The status block of `jkmon read`.
pub fn snapshot(snap: &Snapshot) -> String {
    let mut s = String::new();
    if let Some(d) = &snap.device_info {
        let _ = writeln!(
            s,
            "{} — {} (hw {}, sw {}, serial {})",
            if d.device_name.is_empty() {
                "BMS"
            } else {
                &d.device_name
            },
            d.model,
            d.hardware_version,
            d.software_version,
            d.serial_number
        );
    }
    let _ = writeln!(
        s,
        "SOC {} (from {}; BMS says {})",
        opt(snap.soc_effective_pct.map(|p| format!("{p:.1}")), " %"),
        snap.soc_source,
        opt(snap.bms_soc_pct(), " %")
    );
    s.push_str(&cell_info(&snap.cell_info));
    s
}
