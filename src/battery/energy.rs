//! Energy into and out of a battery, integrated from every snapshot's power, and what it
//! holds: stored energy and the time left at the recent average power. Pure: the caller gives
//! each snapshot's time and power; nothing here reads a clock.
//!
//! Between two snapshots the power is taken to change linearly (the trapezoid rule). Where it
//! changes sign in between, the interval is split where the line crosses zero, so charging
//! and discharging each get their own part and a battery that swings around 0 W is not
//! netted out. Where the interval crosses local midnight it is split there too, so each day
//! gets what happened in it. A gap longer than the meter's `max_gap` (the battery was offline,
//! jkmon was stopped) counts as no data: nothing is added for it.

use chrono::{DateTime, Duration, Local, NaiveDate, TimeZone};

/// The average power follows the snapshots with this time constant: "recent" for the time left.
pub const AVERAGE_TAU_S: f64 = 300.0;
/// Below this average power (either way) the battery is idle: no time to empty or full.
pub const IDLE_W: f64 = 10.0;

/// Energy charged and discharged, watt-hours (both never negative).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Energy {
    pub charged_wh: f64,
    pub discharged_wh: f64,
}

impl Energy {
    pub fn add(&mut self, other: Energy) {
        self.charged_wh += other.charged_wh;
        self.discharged_wh += other.discharged_wh;
    }

    pub fn is_zero(&self) -> bool {
        self.charged_wh == 0.0 && self.discharged_wh == 0.0
    }
}

/// What one snapshot added: at most two days' parts (an interval that crosses midnight).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    pub days: Vec<(NaiveDate, Energy)>,
}

impl Step {
    pub fn total(&self) -> Energy {
        let mut e = Energy::default();
        for (_, d) in &self.days {
            e.add(*d);
        }
        e
    }
}

/// One battery's meter: the last sample and the recent average power.
#[derive(Debug, Clone)]
pub struct Meter {
    max_gap: Duration,
    last: Option<(DateTime<Local>, f64)>,
    average_w: Option<f64>,
}

impl Meter {
    /// A meter that bridges gaps up to `max_gap` between two snapshots.
    pub fn new(max_gap: std::time::Duration) -> Meter {
        Meter {
            max_gap: Duration::from_std(max_gap).unwrap_or(Duration::MAX),
            last: None,
            average_w: None,
        }
    }

    /// The recent average power, W, signed like the current (positive = charging); `None`
    /// before the first snapshot and after a gap.
    pub fn average_w(&self) -> Option<f64> {
        self.average_w
    }

    /// A snapshot's power `power_w` (signed, positive = charging) at `at`: the energy since
    /// the previous one. A snapshot older than the previous one (clock stepped back) or after
    /// a gap longer than `max_gap` adds nothing and starts afresh.
    pub fn add(&mut self, at: DateTime<Local>, power_w: f64) -> Step {
        let power_w = if power_w.is_finite() { power_w } else { 0.0 };
        let previous = self.last.replace((at, power_w));
        let Some((t0, p0)) = previous else {
            self.average_w = Some(power_w);
            return Step::default();
        };
        let dt = at - t0;
        if dt <= Duration::zero() || dt > self.max_gap {
            self.average_w = Some(power_w);
            return Step::default();
        }
        let dt_s = dt.num_milliseconds() as f64 / 1000.0;
        let k = 1.0 - (-dt_s / AVERAGE_TAU_S).exp();
        let avg = self.average_w.unwrap_or(p0);
        self.average_w = Some(avg + k * ((p0 + power_w) / 2.0 - avg));
        let mut step = Step::default();
        match next_midnight(t0).filter(|m| *m < at) {
            Some(midnight) => {
                let f = (midnight - t0).num_milliseconds() as f64 / 1000.0 / dt_s;
                let p_mid = p0 + (power_w - p0) * f;
                step.days
                    .push((t0.date_naive(), trapezoid(p0, p_mid, dt_s * f)));
                step.days
                    .push((at.date_naive(), trapezoid(p_mid, power_w, dt_s * (1.0 - f))));
            }
            // both on one day, or the later one exactly at midnight: the earlier one's day
            None => step
                .days
                .push((t0.date_naive(), trapezoid(p0, power_w, dt_s))),
        }
        step.days.retain(|(_, e)| !e.is_zero());
        step
    }
}

/// When local day `day` begins (`None` where the calendar cannot say, which chrono only does
/// far outside any battery's life). A day whose midnight a DST change skips begins at its
/// first existing minute.
pub fn start_of(day: NaiveDate) -> Option<DateTime<Local>> {
    (0..=120).find_map(|m| {
        Local
            .from_local_datetime(
                &day.and_hms_opt(0, 0, 0)?
                    .checked_add_signed(Duration::minutes(m))?,
            )
            .earliest()
    })
}

/// The first local midnight after `t`.
fn next_midnight(t: DateTime<Local>) -> Option<DateTime<Local>> {
    start_of(t.date_naive().succ_opt()?)
}

/// The energy of a power going linearly from `p0` to `p1` over `dt_s` seconds, split into
/// charged and discharged at the zero crossing.
fn trapezoid(p0: f64, p1: f64, dt_s: f64) -> Energy {
    let wh = |a: f64, b: f64, s: f64| (a + b) / 2.0 * s / 3600.0;
    let (charged, discharged) = if p0 >= 0.0 && p1 >= 0.0 {
        (wh(p0, p1, dt_s), 0.0)
    } else if p0 <= 0.0 && p1 <= 0.0 {
        (0.0, -wh(p0, p1, dt_s))
    } else {
        // the line crosses zero at f of the way
        let f = p0 / (p0 - p1);
        let first = wh(p0, 0.0, dt_s * f);
        let second = wh(0.0, p1, dt_s * (1.0 - f));
        if p0 > 0.0 {
            (first, -second)
        } else {
            (second, -first)
        }
    };
    Energy {
        charged_wh: charged,
        discharged_wh: discharged,
    }
}

/// What a battery holds and how long that lasts.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outlook {
    /// Remaining capacity × pack voltage.
    pub stored_wh: Option<f64>,
    /// At the recent average discharging power; `None` while idle or charging.
    pub to_empty_s: Option<f64>,
    /// At the recent average charging power, up to the full-charge capacity; `None` while idle
    /// or discharging.
    pub to_full_s: Option<f64>,
}

impl Outlook {
    /// From the remaining and full-charge capacity (Ah), the pack voltage and the recent
    /// average power (W, positive = charging).
    pub fn new(
        remaining_ah: Option<f64>,
        full_ah: Option<f64>,
        voltage_v: f64,
        average_w: Option<f64>,
    ) -> Outlook {
        let stored_wh = remaining_ah.map(|ah| ah * voltage_v);
        let full_wh = full_ah.filter(|a| *a > 0.0).map(|ah| ah * voltage_v);
        Outlook::of_bank(stored_wh, full_wh, average_w)
    }

    /// From stored and full energy (Wh) and the average power: also the bank's, from its
    /// batteries' sums.
    pub fn of_bank(
        stored_wh: Option<f64>,
        full_wh: Option<f64>,
        average_w: Option<f64>,
    ) -> Outlook {
        let mut out = Outlook {
            stored_wh,
            ..Outlook::default()
        };
        match average_w {
            Some(p) if p <= -IDLE_W => out.to_empty_s = stored_wh.map(|s| s / -p * 3600.0),
            Some(p) if p >= IDLE_W => {
                out.to_full_s = stored_wh
                    .zip(full_wh)
                    .map(|(s, f)| (f - s).max(0.0) / p * 3600.0)
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> DateTime<Local> {
        Local.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn meter() -> Meter {
        Meter::new(std::time::Duration::from_secs(60))
    }

    #[test]
    fn a_constant_charge_is_power_times_time() {
        let mut m = meter();
        let mut total = Energy::default();
        for s in 0..=3_600 {
            total.add(m.add(at(s), 520.0).total());
        }
        assert!((total.charged_wh - 520.0).abs() < 1e-6, "{total:?}");
        assert_eq!(total.discharged_wh, 0.0);
    }

    #[test]
    fn a_sign_change_between_two_snapshots_is_split_at_zero() {
        let mut m = meter();
        m.add(at(0), 100.0);
        // 100 W to -300 W over 4 s: zero after 1 s
        let e = m.add(at(4), -300.0).total();
        assert!((e.charged_wh - 100.0 / 2.0 / 3600.0).abs() < 1e-12, "{e:?}");
        assert!((e.discharged_wh - 300.0 * 3.0 / 2.0 / 3600.0).abs() < 1e-12);
    }

    #[test]
    fn a_gap_longer_than_the_limit_counts_as_no_data() {
        let mut m = meter();
        m.add(at(0), 1_000.0);
        assert!(m.add(at(61), 1_000.0).days.is_empty());
        assert!(m.add(at(60), 1_000.0).days.is_empty(), "backwards in time");
        let e = m.add(at(90), 1_000.0).total();
        assert!((e.charged_wh - 1_000.0 * 30.0 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn an_interval_across_local_midnight_is_split_between_the_days() {
        let midnight = next_midnight(at(0)).unwrap();
        let mut m = meter();
        m.add(midnight - Duration::seconds(10), 360.0);
        let step = m.add(midnight + Duration::seconds(30), 360.0);
        assert_eq!(step.days.len(), 2, "{step:?}");
        let (d0, e0) = step.days[0];
        let (d1, e1) = step.days[1];
        assert_eq!(d1, d0.succ_opt().unwrap());
        assert!((e0.charged_wh - 1.0).abs() < 1e-9, "{e0:?}");
        assert!((e1.charged_wh - 3.0).abs() < 1e-9, "{e1:?}");
    }

    #[test]
    fn the_average_follows_the_power_and_is_lost_after_a_gap() {
        let mut m = meter();
        assert_eq!(m.average_w(), None);
        for s in 0..=1_800 {
            m.add(at(s), -1_000.0);
        }
        assert!((m.average_w().unwrap() + 1_000.0).abs() < 1e-6);
        for s in 1_801..=1_830 {
            m.add(at(s), 1_000.0);
        }
        let avg = m.average_w().unwrap();
        assert!(
            avg > -1_000.0 && avg < 0.0,
            "30 s of charging only moves it: {avg}"
        );
        m.add(at(2_000), 200.0);
        assert_eq!(m.average_w(), Some(200.0));
    }

    #[test]
    fn time_left_follows_the_direction_and_is_none_when_idle() {
        let o = Outlook::new(Some(100.0), Some(280.0), 52.0, Some(-1_040.0));
        assert_eq!(o.stored_wh, Some(5_200.0));
        assert_eq!(o.to_empty_s, Some(5.0 * 3600.0));
        assert_eq!(o.to_full_s, None);
        let o = Outlook::new(Some(100.0), Some(280.0), 52.0, Some(520.0));
        assert_eq!(o.to_full_s, Some(18.0 * 3600.0));
        assert_eq!(o.to_empty_s, None);
        let idle = Outlook::new(Some(100.0), Some(280.0), 52.0, Some(3.0));
        assert_eq!((idle.to_empty_s, idle.to_full_s), (None, None));
        assert_eq!(
            Outlook::new(None, None, 52.0, Some(-500.0)).to_empty_s,
            None
        );
    }

    #[test]
    fn nonsense_power_adds_nothing_odd() {
        let mut m = meter();
        m.add(at(0), f64::NAN);
        let e = m.add(at(1), f64::INFINITY).total();
        assert_eq!(e, Energy::default());
    }
}
