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
use serde_json::Value;

use crate::report::json::SnapshotJson;
use crate::store::read::{BatteryView, Grid, StatusView};

/// A BMS must stay offline this long before it is announced: a restart of jkmon, or one
/// reconnect, is not an outage.
pub const OFFLINE_DEBOUNCE: Duration = Duration::from_secs(120);

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

/// Every state a subject can be in. The names are kept in the database (`alert_state`) and
/// told to `ALERT_COMMAND` and the webhook, so they do not change.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Never seen yet (`""` is how an early jkmon saved it).
    #[default]
    #[serde(alias = "")]
    Unknown,
    Online,
    Offline,
    Low,
    Normal,
    High,
    Ok,
    Raised,
    Cleared,
    Up,
    Down,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Online => "online",
            Level::Offline => "offline",
            Level::Low => "low",
            Level::Normal => "normal",
            Level::High => "high",
            Level::Ok => "ok",
            Level::Raised => "raised",
            Level::Cleared => "cleared",
            Level::Up => "up",
            Level::Down => "down",
        }
    }

    /// A state that needs no telling when it is the first one seen.
    pub fn is_calm(self) -> bool {
        matches!(
            self,
            Level::Normal | Level::Online | Level::Up | Level::Cleared | Level::Ok
        )
    }

    /// A state worth a warning sign.
    pub fn is_bad(self) -> bool {
        matches!(
            self,
            Level::Low | Level::Offline | Level::Down | Level::High | Level::Raised
        )
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One subject's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    pub state: Level,
    /// A different state being seen: which, how many times, since when (unix ms).
    pub candidate: Option<(Level, u32, i64)>,
    /// When a message about this subject reaching each state was last sent (unix ms).
    #[serde(default)]
    pub last_sent_ms: BTreeMap<Level, i64>,
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
    pub from: Level,
    pub to: Level,
    /// One line for people, plain text.
    pub message: String,
    /// The values behind it (the webhook's and `ALERT_COMMAND`'s JSON).
    pub values: Values,
    /// `false` when the message was held back by `ALERT_REPEAT_MIN_SEC` (the state changed
    /// all the same).
    pub notify: bool,
}

/// The values behind a transition: a battery's main numbers, or the grid voltage as the
/// inverter's row has it. In JSON (the webhook's `values`, `JKMON_ALERT_VALUES`) an object
/// with these keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Values {
    Battery(BatteryValues),
    Grid {
        /// As the poller wrote it (usually text like `"231.4"`).
        grid_voltage: Value,
    },
    /// jkmon's own inverter poller: its state, why, and the inverter's working mode.
    Inverter {
        state: String,
        detail: String,
        mode: Option<String>,
    },
}

/// A battery's numbers at a transition (`null` where the BMS reports none).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BatteryValues {
    pub soc_pct: Option<f64>,
    pub voltage_v: Option<f64>,
    pub current_a: Option<f64>,
    pub cell_min_v: Option<f64>,
    pub cell_max_v: Option<f64>,
    pub cell_delta_v: Option<f64>,
}

impl BatteryValues {
    pub fn of(s: Option<&SnapshotJson>) -> BatteryValues {
        let c = s.map(|s| &s.cell_info);
        BatteryValues {
            soc_pct: s.and_then(|s| s.soc_effective_pct),
            voltage_v: c.map(|c| c.total_voltage_v),
            current_a: c.and_then(|c| c.current_a),
            cell_min_v: c.and_then(|c| c.cell_min_v),
            cell_max_v: c.and_then(|c| c.cell_max_v),
            cell_delta_v: c.and_then(|c| c.cell_delta_v),
        }
    }
}

/// How a new state must be seen before it counts.
#[derive(Debug, Clone, Copy)]
struct Confirm {
    /// In a row.
    samples: u32,
    /// For at least this long.
    debounce: Duration,
}

impl Confirm {
    const AT_ONCE: Confirm = Confirm {
        samples: 1,
        debounce: Duration::ZERO,
    };
}

impl AlertState {
    /// Feeds one observation of `subject`; returns `(from, to, notify)` when its state changes.
    fn observe(
        &mut self,
        subject: &str,
        seen: Level,
        confirm: Confirm,
        now_ms: i64,
        repeat_min: Duration,
    ) -> Option<(Level, Level, bool)> {
        let t = self.subjects.entry(subject.to_string()).or_default();
        if t.state == seen {
            t.candidate = None;
            return None;
        }
        let (count, since) = match t.candidate {
            Some((c, n, since)) if c == seen => (n + 1, since),
            _ => (1, now_ms),
        };
        if count < confirm.samples.max(1) || now_ms - since < confirm.debounce.as_millis() as i64 {
            t.candidate = Some((seen, count, since));
            return None;
        }
        let from = std::mem::replace(&mut t.state, seen);
        t.candidate = None;
        if from == Level::Unknown && seen.is_calm() {
            return None;
        }
        // the same news again within `repeat_min` is held back (a flapping BMS); news of a
        // different state (recovery) always goes out
        let notify = t
            .last_sent_ms
            .get(&seen)
            .is_none_or(|last| now_ms - last >= repeat_min.as_millis() as i64);
        if notify {
            t.last_sent_ms.insert(seen, now_ms);
        }
        Some((from, seen, notify))
    }

    fn state_of(&self, subject: &str) -> Level {
        self.subjects
            .get(subject)
            .map(|t| t.state)
            .unwrap_or_default()
    }

    /// Evaluates a status at `now_ms`: every rule on every battery, then the grid.
    pub fn evaluate(
        &mut self,
        config: &AlertConfig,
        status: &StatusView,
        now_ms: i64,
    ) -> Vec<Transition> {
        let mut eval = Evaluation {
            state: self,
            config,
            now_ms,
            out: Vec::new(),
        };
        for b in &status.batteries {
            eval.battery(b);
        }
        eval.inverter(status);
        eval.grid(status);
        eval.out
    }
}

/// One evaluation under way: the state it updates and the transitions it found.
struct Evaluation<'a> {
    state: &'a mut AlertState,
    config: &'a AlertConfig,
    now_ms: i64,
    out: Vec<Transition>,
}

/// A threshold with hysteresis: `bad` once past the limit, [`Level::Ok`] again only when
/// `clear` of it by the margin; in between the state holds.
fn hysteresis(past_limit: bool, clear: bool, current: Level, bad: Level) -> Level {
    if past_limit {
        bad
    } else if clear || current != bad {
        Level::Ok
    } else {
        bad
    }
}

impl Evaluation<'_> {
    /// `BMS_CELL_LEVEL_SAMPLES` observations in a row.
    fn in_a_row(&self) -> Confirm {
        Confirm {
            samples: self.config.samples,
            debounce: Duration::ZERO,
        }
    }

    /// Records that `subject` was seen in `seen`; a confirmed change becomes a transition
    /// with the message `message(to)`.
    fn push(
        &mut self,
        subject: String,
        battery: Option<&BatteryView>,
        seen: Level,
        confirm: Confirm,
        message: impl Fn(Level) -> String,
        values: &Values,
    ) {
        let now_ms = self.now_ms;
        let repeat = self.config.repeat_min;
        if let Some((from, to, notify)) =
            self.state.observe(&subject, seen, confirm, now_ms, repeat)
        {
            self.out.push(Transition {
                message: message(to),
                subject,
                battery: battery.map(|b| b.position),
                battery_name: battery.map(|b| b.name.clone()),
                from,
                to,
                values: values.clone(),
                notify,
            });
        }
    }

    /// Every rule on one battery; stale numbers decide nothing, so an offline battery gets
    /// only the online rule.
    fn battery(&mut self, b: &BatteryView) {
        let s = b.snapshot.as_ref();
        let values = Values::Battery(BatteryValues::of(s));
        self.online(b, &values);
        let Some(s) = s.filter(|_| b.online) else {
            return;
        };
        self.cell_level(b, s, &values);
        self.cell_delta(b, s, &values);
        self.soc(b, s, &values);
        self.alarms(b, s, &values);
    }

    /// `batteryN.online`: offline only after [`OFFLINE_DEBOUNCE`], online at once.
    fn online(&mut self, b: &BatteryView, values: &Values) {
        let (seen, debounce) = if b.online {
            (Level::Online, Duration::ZERO)
        } else {
            (Level::Offline, OFFLINE_DEBOUNCE)
        };
        let detail = b.state_detail.as_deref().unwrap_or("no fresh data");
        let name = &b.name;
        self.push(
            format!("battery{}.online", b.position),
            Some(b),
            seen,
            Confirm {
                samples: 1,
                debounce,
            },
            |to| match to {
                Level::Offline => format!("{name}: BMS offline ({detail})"),
                _ => format!("{name}: BMS back online"),
            },
            values,
        );
    }

    /// `batteryN.level` (`BMS_CELL_LEVELS`): low when any cell is below the low level, normal
    /// again only when every cell is above the high one; in between the level holds.
    fn cell_level(&mut self, b: &BatteryView, s: &SnapshotJson, values: &Values) {
        let p = b.position;
        let (Some(levels), Some(min)) = (self.config.levels_for(p), s.cell_info.cell_min_v) else {
            return;
        };
        let subject = format!("battery{p}.level");
        let min_mv = (min * 1000.0).round();
        let current = self.state.state_of(&subject);
        let seen = if min_mv < f64::from(levels.low_mv) {
            Level::Low
        } else if min_mv > f64::from(levels.high_mv) || current == Level::Unknown {
            // every cell above high; or, at start, between the levels: not low
            Level::Normal
        } else {
            current // between the levels: the level holds
        };
        let name = &b.name;
        self.push(
            subject,
            Some(b),
            seen,
            self.in_a_row(),
            |to| match to {
                Level::Low => format!(
                    "{name}: battery low: lowest cell {min:.3} V (below {:.3} V)",
                    f64::from(levels.low_mv) / 1000.0
                ),
                _ => format!(
                    "{name}: battery back to normal: every cell above {:.3} V",
                    f64::from(levels.high_mv) / 1000.0
                ),
            },
            values,
        );
    }

    /// `batteryN.delta` (`ALERT_CELL_DELTA_MV`), with 5 mV of hysteresis so a delta at the
    /// limit does not flap.
    fn cell_delta(&mut self, b: &BatteryView, s: &SnapshotJson, values: &Values) {
        let (Some(limit), Some(delta)) = (self.config.delta_mv, s.cell_info.cell_delta_v) else {
            return;
        };
        let subject = format!("battery{}.delta", b.position);
        let delta_mv = delta * 1000.0;
        let current = self.state.state_of(&subject);
        let limit_mv = f64::from(limit);
        let seen = hysteresis(
            delta_mv > limit_mv,
            delta_mv <= limit_mv - 5.0,
            current,
            Level::High,
        );
        let name = &b.name;
        self.push(
            subject,
            Some(b),
            seen,
            self.in_a_row(),
            |to| match to {
                Level::High => format!("{name}: cell delta {delta_mv:.0} mV (above {limit} mV)"),
                _ => format!("{name}: cell delta back to {delta_mv:.0} mV"),
            },
            values,
        );
    }

    /// `batteryN.soc` (`ALERT_SOC_LOW`), with 2 % of hysteresis.
    fn soc(&mut self, b: &BatteryView, s: &SnapshotJson, values: &Values) {
        let (Some(limit), Some(soc)) = (self.config.soc_low_pct, s.soc_effective_pct) else {
            return;
        };
        let subject = format!("battery{}.soc", b.position);
        let current = self.state.state_of(&subject);
        let seen = hysteresis(soc < limit, soc >= limit + 2.0, current, Level::Low);
        let name = &b.name;
        self.push(
            subject,
            Some(b),
            seen,
            self.in_a_row(),
            |to| match to {
                Level::Low => format!("{name}: SOC {soc:.0} % (below {limit:.0} %)"),
                _ => format!("{name}: SOC back to {soc:.0} %"),
            },
            values,
        );
    }

    /// `batteryN.alarm.<name>`: each alarm the BMS raises, and clears, once.
    fn alarms(&mut self, b: &BatteryView, s: &SnapshotJson, values: &Values) {
        let active = &s.cell_info.alarms;
        let prefix = format!("battery{}.alarm.", b.position);
        let mut names: Vec<String> = self
            .state
            .subjects
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix).map(String::from))
            .collect();
        for a in active {
            if !names.contains(a) {
                names.push(a.clone());
            }
        }
        let name = &b.name;
        for alarm in names {
            let seen = if active.contains(&alarm) {
                Level::Raised
            } else {
                Level::Cleared
            };
            self.push(
                format!("{prefix}{alarm}"),
                Some(b),
                seen,
                Confirm::AT_ONCE,
                |to| format!("{name}: BMS alarm {to}: {alarm}"),
                values,
            );
        }
    }

    /// `inverter.online`, where jkmon polls the inverter itself: offline only after
    /// [`OFFLINE_DEBOUNCE`] (a restart of the dongle is not an outage), online at once. A
    /// poller that is still connecting, or stopped with jkmon, changes nothing.
    fn inverter(&mut self, status: &StatusView) {
        let Some(p) = &status.poller else { return };
        let (seen, debounce) = match p.state.as_str() {
            "online" => (Level::Online, Duration::ZERO),
            "offline" => (Level::Offline, OFFLINE_DEBOUNCE),
            _ => return,
        };
        let detail = p.detail.clone();
        self.push(
            "inverter.online".into(),
            None,
            seen,
            Confirm {
                samples: 1,
                debounce,
            },
            |to| match to {
                Level::Offline => format!("Inverter offline ({detail})"),
                _ => "Inverter back online".to_string(),
            },
            &Values::Inverter {
                state: p.state.clone(),
                detail: p.detail.clone(),
                mode: p.mode.clone(),
            },
        );
    }

    /// `grid` (`GRID_DEBOUNCE_SEC`): up or down as the inverter tells jkmon's own poller, or
    /// as the latest `readings` row tells; an unknown grid (no inverter data, an error row)
    /// changes nothing.
    fn grid(&mut self, status: &StatusView) {
        let seen = match status.grid() {
            Grid::Up => Level::Up,
            Grid::Down => Level::Down,
            Grid::Unknown => return,
        };
        let polled = status
            .poller
            .as_ref()
            .filter(|p| p.online)
            .and_then(|p| p.values.get("grid_voltage_v"))
            .map(|v| Value::String(format!("{v:.1}")));
        let volts = polled
            .or_else(|| {
                status
                    .inverter
                    .as_ref()
                    .and_then(|i| i.payload.as_ref())
                    .and_then(|p| p.get("grid_voltage"))
                    .cloned()
            })
            .unwrap_or(Value::Null);
        let confirm = Confirm {
            samples: 1,
            debounce: self.config.grid_debounce,
        };
        self.push(
            "grid".into(),
            None,
            seen,
            confirm,
            |to| match to {
                Level::Down => "Grid lost".to_string(),
                _ => "Grid restored".to_string(),
            },
            &Values::Grid {
                grid_voltage: volts,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::battery::link::State;
    use crate::store::read::InverterView;

    fn battery(online: bool, cells: (f64, f64), soc: f64, alarms: &[&str]) -> BatteryView {
        BatteryView {
            state: if online {
                State::Streaming
            } else {
                State::Disconnected
            },
            online,
            taken_at: None,
            snapshot: Some({
                let mut s = SnapshotJson::example();
                s.soc_effective_pct = Some(soc);
                let c = &mut s.cell_info;
                (c.cell_min_v, c.cell_max_v) = (Some(cells.0), Some(cells.1));
                c.cell_delta_v = Some(cells.1 - cells.0);
                (c.total_voltage_v, c.current_a) = (52.0, Some(-3.0));
                c.alarms = alarms.iter().map(|a| a.to_string()).collect();
                s
            }),
            ..BatteryView::example(1, "Main")
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
                stale: false,
                has_inverter_data: v != "none",
                error: None,
                payload: Some(
                    serde_json::json!({ "grid_voltage": v })
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            }),
            poller: None,
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

    /// The webhook's and `ALERT_COMMAND`'s `values` keep their keys.
    #[test]
    fn the_values_of_a_transition_keep_their_json_keys() {
        let b = battery(true, (3.2, 3.25), 40.0, &[]);
        let v =
            serde_json::to_value(Values::Battery(BatteryValues::of(b.snapshot.as_ref()))).unwrap();
        assert_eq!(v["soc_pct"], 40.0);
        assert_eq!(v["cell_min_v"], 3.2);
        assert_eq!(v["voltage_v"], 52.0);
        assert!(v["cell_delta_v"]
            .as_f64()
            .is_some_and(|d| (d - 0.05).abs() < 1e-9));
        let grid = Values::Grid {
            grid_voltage: "231.4".into(),
        };
        assert_eq!(
            serde_json::to_value(grid).unwrap(),
            serde_json::json!({"grid_voltage": "231.4"})
        );
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

    fn poller(state: &str, mode: u16, grid_v: f64) -> crate::store::poller::PollerView {
        let mode_ = crate::inverter::payload::Mode::from_code(mode);
        crate::store::poller::PollerView {
            model: "ISOLAR_SMG_II_11K".into(),
            link: "the Wi-Fi dongle".into(),
            state: state.into(),
            online: state == "online",
            detail: "no answer".into(),
            since: chrono::Utc::now(),
            polled_at: None,
            mode: Some(mode_.describe()),
            mode_code: Some(mode),
            grid: if state == "online" {
                crate::inverter::payload::grid(Some(mode_), Some(grid_v))
            } else {
                crate::inverter::payload::Grid::Unknown
            },
            grid_lost: None,
            values: [("grid_voltage_v".to_string(), grid_v)]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_inverter_poller_is_announced_offline_and_back_and_its_mode_tells_the_grid() {
        let c = config();
        let mut s = AlertState::default();
        let run = |p: crate::store::poller::PollerView,
                   row_v: Option<&str>,
                   t: i64,
                   s: &mut AlertState| {
            let mut st = status(battery(true, (3.2, 3.21), 50.0, &[]), row_v);
            st.poller = Some(p);
            subjects(&s.evaluate(&c, &st, t * 1000))
        };
        assert!(run(poller("online", 2, 230.0), None, 0, &mut s).is_empty());
        // off-grid with no grid voltage: lost, even where the last row still says 230 V
        assert!(run(poller("online", 3, 0.0), Some("230.0"), 10, &mut s).is_empty());
        assert_eq!(
            run(poller("online", 3, 0.0), Some("230.0"), 41, &mut s),
            ["grid:down"]
        );
        // off-grid by choice with the grid there is not a loss
        assert!(run(poller("online", 3, 229.0), None, 50, &mut s).is_empty());
        assert_eq!(
            run(poller("online", 3, 229.0), None, 81, &mut s),
            ["grid:up"]
        );
        // offline counts after two minutes, the grid is then unknown (nothing about it said)
        assert!(run(poller("offline", 3, 0.0), None, 100, &mut s).is_empty());
        assert_eq!(
            run(poller("offline", 3, 0.0), None, 221, &mut s),
            ["inverter.online:offline"]
        );
        assert_eq!(
            run(poller("online", 2, 230.0), None, 230, &mut s),
            ["inverter.online:online"]
        );
        // a poller stopped with jkmon is not an outage
        assert!(run(poller("stopped", 2, 230.0), None, 500, &mut s).is_empty());
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
                (Level::Offline, true),
                (Level::Online, true),
                (Level::Offline, false)
            ]
        );
        assert_eq!(s.subjects["battery1.online"].state, Level::Offline);
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
