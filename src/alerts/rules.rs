//! The alert rules: pure. A status (what the views see) and the time go in; the transitions
//! that happened come out, each once. The state is plain data, kept in the database between
//! runs so a restart announces nothing twice.
//!
//! Every watched thing is a *subject* with a state (`battery1.level` = `low`). A new state must
//! be seen `samples` times in a row, and for `debounce`, before it counts. Leaving `unknown`
//! for a calm state (`normal`, `online`, `up`, `cleared`) says nothing; everything else is a
//! transition. An inverter row without inverter data, or an error row, is `unknown` for the
//! grid and never counts as lost.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::store::read::{BatteryView, StatusView};

/// A BMS must stay offline this long before it is announced: a restart of jkmon, or one
/// reconnect, is not an outage.
pub const OFFLINE_DEBOUNCE: Duration = Duration::from_secs(120);

/// Grid voltage above this means the grid is there (V). Power is not used: a healthy grid
/// with 0 W drawn (SBU, battery first) is not an outage.
pub const GRID_PRESENT_V: f64 = 50.0;

/// `BMS_CELL_LEVELS`: any cell below `low_mv` → low; every cell above `high_mv` → normal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellLevels {
    pub low_mv: u32,
    pub high_mv: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// Per battery (battery 1 first); one pair applies to every battery.
    pub cell_levels: Vec<CellLevels>,
    /// `BMS_CELL_LEVEL_SAMPLES`: consecutive samples a new level needs.
    pub samples: u32,
    /// `ALERT_CELL_DELTA_MV`.
    pub delta_mv: Option<u32>,
    /// `ALERT_SOC_LOW`.
    pub soc_low_pct: Option<f64>,
    /// `GRID_DEBOUNCE_SEC`: a grid change must last this long.
    pub grid_debounce: Duration,
    /// `ALERT_REPEAT_MIN_SEC`: the same news (a subject reaching the same state) at most once
    /// in this time.
    pub repeat_min: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            cell_levels: Vec::new(),
            samples: 1,
            delta_mv: None,
            soc_low_pct: None,
            grid_debounce: Duration::from_secs(60),
            repeat_min: Duration::from_secs(300),
        }
    }
}

impl AlertConfig {
    fn levels_for(&self, position: usize) -> Option<CellLevels> {
        match self.cell_levels.len() {
            0 => None,
            1 => Some(self.cell_levels[0]),
            _ => self.cell_levels.get(position - 1).copied(),
        }
    }
}

/// One subject's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    pub state: String,
    /// A different state being seen: which, how many times, since when (unix ms).
    pub candidate: Option<(String, u32, i64)>,
    /// When a message about this subject reaching each state was last sent (unix ms).
    #[serde(default)]
    pub last_sent_ms: BTreeMap<String, i64>,
}

/// Everything the rules remember.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    pub subjects: BTreeMap<String, Tracker>,
}

/// One change worth telling.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// `battery1.level`, `grid`, `battery2.alarm.Cell overvoltage`, …
    pub subject: String,
    /// 1-based; `None` for the grid.
    pub battery: Option<usize>,
    pub battery_name: Option<String>,
    pub from: String,
    pub to: String,
    /// One line for people, plain text.
    pub message: String,
    /// The values behind it.
    pub values: Value,
    /// `false` when the message was held back by `ALERT_REPEAT_MIN_SEC` (the state changed
    /// all the same).
    pub notify: bool,
}

const CALM: [&str; 5] = ["normal", "online", "up", "cleared", "ok"];

impl AlertState {
    /// Feeds one observation of `subject`; returns the transition when its state changes.
    fn observe(
        &mut self,
        subject: &str,
        seen: &str,
        samples: u32,
        debounce: Duration,
        now_ms: i64,
        repeat_min: Duration,
    ) -> Option<(String, String, bool)> {
        let t = self.subjects.entry(subject.to_string()).or_default();
        if t.state.is_empty() {
            t.state = "unknown".into();
        }
        if t.state == seen {
            t.candidate = None;
            return None;
        }
        let (count, since) = match &t.candidate {
            Some((c, n, since)) if c == seen => (n + 1, *since),
            _ => (1, now_ms),
        };
        if count < samples.max(1) || now_ms - since < debounce.as_millis() as i64 {
            t.candidate = Some((seen.to_string(), count, since));
            return None;
        }
        let from = std::mem::replace(&mut t.state, seen.to_string());
        t.candidate = None;
        if from == "unknown" && CALM.contains(&seen) {
            return None;
        }
        // the same news again within `repeat_min` is held back (a flapping BMS); news of a
        // different state (recovery) always goes out
        let notify = t
            .last_sent_ms
            .get(seen)
            .is_none_or(|last| now_ms - last >= repeat_min.as_millis() as i64);
        if notify {
            t.last_sent_ms.insert(seen.to_string(), now_ms);
        }
        Some((from, seen.to_string(), notify))
    }

    /// Evaluates a status at `now_ms`.
    pub fn evaluate(
        &mut self,
        config: &AlertConfig,
        status: &StatusView,
        now_ms: i64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut push = |state: &mut AlertState,
                        subject: String,
                        battery: Option<&BatteryView>,
                        seen: &str,
                        samples: u32,
                        debounce: Duration,
                        message: &dyn Fn(&str, &str) -> String,
                        values: Value| {
            if let Some((from, to, notify)) =
                state.observe(&subject, seen, samples, debounce, now_ms, config.repeat_min)
            {
                out.push(Transition {
                    message: message(&from, &to),
                    subject,
                    battery: battery.map(|b| b.position),
                    battery_name: battery.map(|b| b.name.clone()),
                    from,
                    to,
                    values,
                    notify,
                });
            }
        };
        for b in &status.batteries {
            let p = b.position;
            let name = b.name.clone();
            let s = b.snapshot.as_ref();
            let num = |k: &str| s.and_then(|s| s.get(k)).and_then(Value::as_f64);
            let values = json!({
                "soc_pct": num("soc_effective_pct"),
                "voltage_v": num("total_voltage_v"),
                "current_a": num("current_a"),
                "cell_min_v": num("cell_min_v"),
                "cell_max_v": num("cell_max_v"),
                "cell_delta_v": num("cell_delta_v"),
            });
            let online = if b.online { "online" } else { "offline" };
            push(
                self,
                format!("battery{p}.online"),
                Some(b),
                online,
                1,
                if b.online {
                    Duration::ZERO
                } else {
                    OFFLINE_DEBOUNCE
                },
                &|_, to| {
                    if to == "offline" {
                        format!(
                            "{name}: BMS offline ({})",
                            b.state_detail
                                .clone()
                                .unwrap_or_else(|| "no fresh data".into())
                        )
                    } else {
                        format!("{name}: BMS back online")
                    }
                },
                values.clone(),
            );
            if !b.online {
                continue; // stale numbers decide nothing
            }
            if let (Some(levels), Some(min)) = (config.levels_for(p), num("cell_min_v")) {
                let min_mv = (min * 1000.0).round();
                let current = self
                    .subjects
                    .get(&format!("battery{p}.level"))
                    .map(|t| t.state.clone())
                    .unwrap_or_default();
                let seen = if min_mv < f64::from(levels.low_mv) {
                    "low"
                } else if min_mv > f64::from(levels.high_mv)
                    || current.is_empty()
                    || current == "unknown"
                {
                    // every cell above high; or, at start, between the levels: not low
                    "normal"
                } else {
                    current.as_str() // between the levels: the level holds
                };
                let seen = seen.to_string();
                push(
                    self,
                    format!("battery{p}.level"),
                    Some(b),
                    &seen,
                    config.samples,
                    Duration::ZERO,
                    &|_, to| {
                        if to == "low" {
                            format!(
                                "{name}: battery low: lowest cell {min:.3} V (below {:.3} V)",
                                f64::from(levels.low_mv) / 1000.0
                            )
                        } else {
                            format!(
                                "{name}: battery back to normal: every cell above {:.3} V",
                                f64::from(levels.high_mv) / 1000.0
                            )
                        }
                    },
                    values.clone(),
                );
            }
            if let (Some(limit), Some(delta)) = (config.delta_mv, num("cell_delta_v")) {
                let delta_mv = delta * 1000.0;
                let current = self.state_of(&format!("battery{p}.delta"));
                // 5 mV of hysteresis, so a delta at the limit does not flap
                let seen = if delta_mv > f64::from(limit) {
                    "high"
                } else if delta_mv <= f64::from(limit) - 5.0 || current != "high" {
                    "ok"
                } else {
                    "high"
                };
                push(
                    self,
                    format!("battery{p}.delta"),
                    Some(b),
                    seen,
                    config.samples,
                    Duration::ZERO,
                    &|_, to| {
                        if to == "high" {
                            format!("{name}: cell delta {delta_mv:.0} mV (above {limit} mV)")
                        } else {
                            format!("{name}: cell delta back to {delta_mv:.0} mV")
                        }
                    },
                    values.clone(),
                );
            }
            if let (Some(limit), Some(soc)) = (config.soc_low_pct, num("soc_effective_pct")) {
                let current = self.state_of(&format!("battery{p}.soc"));
                let seen = if soc < limit {
                    "low"
                } else if soc >= limit + 2.0 || current != "low" {
                    "ok"
                } else {
                    "low"
                };
                push(
                    self,
                    format!("battery{p}.soc"),
                    Some(b),
                    seen,
                    config.samples,
                    Duration::ZERO,
                    &|_, to| {
                        if to == "low" {
                            format!("{name}: SOC {soc:.0} % (below {limit:.0} %)")
                        } else {
                            format!("{name}: SOC back to {soc:.0} %")
                        }
                    },
                    values.clone(),
                );
            }
            let active: Vec<String> = s
                .and_then(|s| s.get("alarms"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let prefix = format!("battery{p}.alarm.");
            let known: Vec<String> = self
                .subjects
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix).map(String::from))
                .collect();
            let mut names: Vec<String> = known;
            for a in &active {
                if !names.contains(a) {
                    names.push(a.clone());
                }
            }
            for alarm in names {
                let seen = if active.contains(&alarm) {
                    "raised"
                } else {
                    "cleared"
                };
                push(
                    self,
                    format!("{prefix}{alarm}"),
                    Some(b),
                    seen,
                    1,
                    Duration::ZERO,
                    &|_, to| format!("{name}: BMS alarm {to}: {alarm}"),
                    values.clone(),
                );
            }
        }
        let grid = grid_state(status);
        if grid != "unknown" {
            let v = status
                .inverter
                .as_ref()
                .and_then(|i| i.payload.as_ref())
                .and_then(|p| p.get("grid_voltage"))
                .cloned()
                .unwrap_or(Value::Null);
            push(
                self,
                "grid".into(),
                None,
                grid,
                1,
                config.grid_debounce,
                &|_, to| {
                    if to == "down" {
                        "Grid lost".to_string()
                    } else {
                        "Grid restored".to_string()
                    }
                },
                json!({ "grid_voltage": v }),
            );
        }
        out
    }

    fn state_of(&self, subject: &str) -> String {
        self.subjects
            .get(subject)
            .map(|t| t.state.clone())
            .unwrap_or_default()
    }
}

/// `up`, `down`, or `unknown` (no inverter data, an error row, no readable grid voltage).
pub fn grid_state(status: &StatusView) -> &'static str {
    let Some(inv) = &status.inverter else {
        return "unknown";
    };
    if !inv.has_inverter_data || inv.error.is_some() {
        return "unknown";
    }
    let volts = inv
        .payload
        .as_ref()
        .and_then(|p| p.get("grid_voltage"))
        .and_then(|v| match v {
            Value::String(s) => s.parse::<f64>().ok(),
            other => other.as_f64(),
        });
    match volts {
        Some(v) if v > GRID_PRESENT_V => "up",
        Some(_) => "down",
        None => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::read::InverterView;

    fn battery(online: bool, cells: (f64, f64), soc: f64, alarms: &[&str]) -> BatteryView {
        BatteryView {
            position: 1,
            name: "Main".into(),
            address: None,
            state: if online { "streaming" } else { "disconnected" }.into(),
            state_detail: None,
            online,
            taken_at: None,
            age_s: Some(1.0),
            model: None,
            hardware_version: None,
            software_version: None,
            serial_number: None,
            snapshot: Some(json!({
                "cell_min_v": cells.0, "cell_max_v": cells.1, "cell_delta_v": cells.1 - cells.0,
                "soc_effective_pct": soc, "total_voltage_v": 52.0, "current_a": -3.0,
                "alarms": alarms,
            })),
        }
    }

    fn status(b: BatteryView, grid_v: Option<&str>) -> StatusView {
        StatusView {
            generated_at: chrono::Utc::now(),
            batteries: vec![b],
            bank: None,
            inverter: grid_v.map(|v| InverterView {
                id: 1,
                created_at: String::new(),
                age_s: None,
                has_inverter_data: v != "none",
                error: None,
                payload: Some(json!({ "grid_voltage": v }).as_object().unwrap().clone()),
            }),
        }
    }

    fn config() -> AlertConfig {
        AlertConfig {
            cell_levels: vec![CellLevels {
                low_mv: 3_000,
                high_mv: 3_100,
            }],
            samples: 2,
            delta_mv: Some(50),
            soc_low_pct: Some(20.0),
            grid_debounce: Duration::from_secs(30),
            repeat_min: Duration::ZERO,
        }
    }

    fn subjects(t: &[Transition]) -> Vec<String> {
        t.iter()
            .map(|t| format!("{}:{}", t.subject, t.to))
            .collect()
    }

    #[test]
    fn cell_levels_need_consecutive_samples_and_hold_between_the_levels() {
        let c = config();
        let mut s = AlertState::default();
        let at = |cells: (f64, f64), t: i64, s: &mut AlertState| {
            subjects(&s.evaluate(&c, &status(battery(true, cells, 50.0, &[]), None), t))
        };
        assert!(
            at((3.20, 3.21), 0, &mut s).is_empty(),
            "unknown → normal is quiet"
        );
        assert!(
            at((2.95, 3.0), 1, &mut s).is_empty(),
            "one low sample is not enough"
        );
        assert_eq!(at((2.95, 3.0), 2, &mut s), ["battery1.level:low"]);
        assert!(at((2.95, 3.0), 3, &mut s).is_empty(), "said once");
        // between the levels: still low (hysteresis)
        for t in 4..10 {
            assert!(at((3.05, 3.06), t, &mut s).is_empty());
        }
        assert!(at((3.15, 3.16), 10, &mut s).is_empty());
        assert_eq!(at((3.15, 3.16), 11, &mut s), ["battery1.level:normal"]);
    }

    #[test]
    fn offline_online_delta_soc_and_alarms_each_transition_once() {
        let c = AlertConfig {
            samples: 1,
            ..config()
        };
        let mut s = AlertState::default();
        let run = |b: BatteryView, t: i64, s: &mut AlertState| {
            subjects(&s.evaluate(&c, &status(b, None), t))
        };
        assert!(run(battery(true, (3.2, 3.21), 50.0, &[]), 0, &mut s).is_empty());
        assert_eq!(
            run(
                battery(true, (3.2, 3.27), 15.0, &["Cell overvoltage"]),
                1,
                &mut s
            ),
            [
                "battery1.delta:high",
                "battery1.soc:low",
                "battery1.alarm.Cell overvoltage:raised"
            ]
        );
        assert!(run(
            battery(true, (3.2, 3.27), 15.0, &["Cell overvoltage"]),
            2,
            &mut s
        )
        .is_empty());
        // 47 mV: within 5 mV of the limit, still high; SOC 21 %: within 2 % of the limit, still low
        assert!(run(battery(true, (3.2, 3.247), 21.0, &[]), 3, &mut s)
            .iter()
            .all(|t| t.contains("alarm")));
        assert_eq!(
            run(battery(true, (3.2, 3.24), 23.0, &[]), 4, &mut s),
            ["battery1.delta:ok", "battery1.soc:ok"]
        );
        // offline counts after two minutes, online at once
        assert!(run(battery(false, (3.2, 3.24), 23.0, &[]), 5, &mut s).is_empty());
        assert_eq!(
            run(battery(false, (3.2, 3.24), 23.0, &[]), 120_005, &mut s),
            ["battery1.online:offline"]
        );
        assert_eq!(
            run(battery(true, (3.2, 3.24), 23.0, &[]), 120_006, &mut s),
            ["battery1.online:online"]
        );
    }

    #[test]
    fn the_grid_is_debounced_and_unknown_never_counts() {
        let c = config();
        let mut s = AlertState::default();
        let b = || battery(true, (3.2, 3.21), 50.0, &[]);
        let grid = |v: Option<&str>, t: i64, s: &mut AlertState| {
            subjects(&s.evaluate(&c, &status(b(), v), t * 1000))
        };
        assert!(
            grid(Some("231.0"), 0, &mut s).is_empty(),
            "unknown → up is quiet"
        );
        assert!(grid(Some("0.0"), 10, &mut s).is_empty(), "not yet 30 s");
        assert!(grid(Some("231.0"), 20, &mut s).is_empty(), "a blip");
        assert!(grid(Some("0.0"), 30, &mut s).is_empty());
        assert!(
            grid(None, 45, &mut s).is_empty(),
            "no inverter row: unknown"
        );
        assert!(
            grid(Some("none"), 50, &mut s).is_empty(),
            "no inverter data: unknown"
        );
        assert!(grid(Some("N/A"), 55, &mut s).is_empty(), "N/A: unknown");
        assert_eq!(grid(Some("0.0"), 61, &mut s), ["grid:down"]);
        assert!(grid(Some("0.0"), 200, &mut s).is_empty());
        assert!(grid(Some("230.0"), 210, &mut s).is_empty());
        assert_eq!(grid(Some("230.0"), 241, &mut s), ["grid:up"]);
    }

    #[test]
    fn repeats_are_rate_limited_but_the_state_still_follows() {
        let c = AlertConfig {
            samples: 1,
            repeat_min: Duration::from_secs(300),
            ..config()
        };
        let mut s = AlertState::default();
        let mut notify = Vec::new();
        // offline counts after two minutes; the second "offline" comes within five minutes of
        // the first and is held back, the recovery between them is not
        for (at_s, online) in [
            (0, true),
            (10, false),
            (140, false),
            (150, true),
            (160, false),
            (290, false),
        ] {
            let at = at_s * 1000;
            for t in s.evaluate(
                &c,
                &status(battery(online, (3.2, 3.21), 50.0, &[]), None),
                at,
            ) {
                notify.push((t.to, t.notify));
            }
        }
        assert_eq!(
            notify,
            [
                ("offline".to_string(), true),
                ("online".to_string(), true),
                ("offline".to_string(), false)
            ]
        );
        assert_eq!(s.subjects["battery1.online"].state, "offline");
    }

    #[test]
    fn the_state_survives_a_round_trip_so_a_restart_says_nothing_new() {
        let c = AlertConfig {
            samples: 1,
            ..config()
        };
        let mut s = AlertState::default();
        s.evaluate(&c, &status(battery(true, (3.2, 3.21), 10.0, &[]), None), 0);
        let saved = serde_json::to_string(&s).unwrap();
        let mut restored: AlertState = serde_json::from_str(&saved).unwrap();
        assert!(restored
            .evaluate(&c, &status(battery(true, (3.2, 3.21), 10.0, &[]), None), 1)
            .is_empty());
    }
}
