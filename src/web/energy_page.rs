//! `/energy`: energy as bars, per day for the last 30 days and per month for the last 12 — the
//! batteries in and out, PV, load, grid import and export — each chart with its total. Drawn on
//! the server as SVG (no script): a day or a month without data is an empty slot marked as a
//! gap, never a bar of 0.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::{pages, AppState};
use crate::store::energy::{self, EnergyDay, EnergySum};
use crate::store::read;

/// Days and months the page shows.
const DAYS: usize = 30;
const MONTHS: u32 = 12;

/// The chart's drawing box (the SVG scales to the card's width).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 120.0;

/// One slot of a chart: a bar, or a gap where there is no data.
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// The date or month and the value, for the bar's tooltip and for screen readers.
    pub label: String,
    pub gap: bool,
}

/// One quantity over the days or the months.
pub struct Chart {
    pub title: &'static str,
    pub total: String,
    pub max: String,
    pub bars: Vec<Bar>,
    pub first: String,
    pub last: String,
}

/// Reads one quantity of a sum.
type Pick = fn(&EnergySum) -> Option<f64>;

/// The quantities, in the order the page shows them.
const QUANTITIES: [(&str, Pick); 6] = [
    ("Battery in", |s| s.charged_kwh),
    ("Battery out", |s| s.discharged_kwh),
    ("PV", |s| s.pv_kwh),
    ("Load", |s| s.load_kwh),
    ("Grid import", |s| s.grid_import_kwh),
    ("Grid export", |s| s.grid_export_kwh),
];

fn kwh(v: Option<f64>) -> String {
    v.map_or_else(|| "no data".into(), |v| format!("{v:.1} kWh"))
}

/// A chart of `slots` (label, sum), the bars scaled to the largest value.
pub fn chart(
    title: &'static str,
    pick: fn(&EnergySum) -> Option<f64>,
    slots: &[(String, EnergySum)],
) -> Chart {
    let values: Vec<Option<f64>> = slots.iter().map(|(_, s)| pick(s)).collect();
    let max = values.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
    let slot_w = WIDTH / slots.len().max(1) as f64;
    let bars = slots
        .iter()
        .zip(&values)
        .enumerate()
        .map(|(i, ((label, _), v))| {
            let h = match v {
                Some(v) if max > 0.0 => (v / max * HEIGHT).max(1.0),
                Some(_) => 1.0,
                None => HEIGHT,
            };
            Bar {
                x: format!("{:.1}", i as f64 * slot_w + slot_w * 0.15),
                y: format!("{:.1}", HEIGHT - h),
                w: format!("{:.1}", slot_w * 0.7),
                h: format!("{h:.1}"),
                label: format!("{label}: {}", kwh(*v)),
                gap: v.is_none(),
            }
        })
        .collect();
    let known: Vec<f64> = values.iter().flatten().copied().collect();
    let total = (!known.is_empty()).then(|| known.iter().sum::<f64>());
    Chart {
        title,
        total: kwh(total),
        max: if max > 0.0 {
            format!("{max:.1} kWh")
        } else {
            String::new()
        },
        bars,
        first: slots.first().map(|s| s.0.clone()).unwrap_or_default(),
        last: slots.last().map(|s| s.0.clone()).unwrap_or_default(),
    }
}

/// Every quantity's chart over the last [`DAYS`] of `days` and over its months.
pub fn charts(days: &[EnergyDay]) -> (Vec<Chart>, Vec<Chart>) {
    let recent = &days[days.len().saturating_sub(DAYS)..];
    let per_day: Vec<(String, EnergySum)> = recent
        .iter()
        .map(|d| {
            (
                d.date.format("%d %b").to_string(),
                EnergySum::of(std::slice::from_ref(d)),
            )
        })
        .collect();
    let per_month: Vec<(String, EnergySum)> = energy::months(days)
        .into_iter()
        .map(|m| (m.month, m.sum))
        .collect();
    let build = |slots: &[(String, EnergySum)]| -> Vec<Chart> {
        QUANTITIES
            .iter()
            .map(|(t, pick)| chart(t, *pick, slots))
            .collect()
    };
    (build(&per_day), build(&per_month))
}

#[derive(Template)]
#[template(path = "energy.html")]
struct EnergyPage {
    version: &'static str,
    page: &'static str,
    days: Vec<Chart>,
    months: Vec<Chart>,
    kept_days: u32,
}

pub async fn page(State(state): State<Arc<AppState>>) -> Response {
    let today = read::local_day(Utc::now());
    let wanted = energy::days_for_months(today, MONTHS).max(DAYS as u32);
    let days = match state.readers.energy(&state.read, wanted).await {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let (days, months) = charts(&days);
    pages::render(EnergyPage {
        version: pages::VERSION,
        page: "energy",
        days,
        months,
        kept_days: state.read.retention.hourly_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_without_data_is_a_gap_and_a_day_of_zero_a_sliver() {
        let slots = vec![
            (
                "a".to_string(),
                EnergySum {
                    pv_kwh: Some(4.0),
                    ..EnergySum::default()
                },
            ),
            ("b".to_string(), EnergySum::default()),
            (
                "c".to_string(),
                EnergySum {
                    pv_kwh: Some(0.0),
                    ..EnergySum::default()
                },
            ),
            (
                "d".to_string(),
                EnergySum {
                    pv_kwh: Some(2.0),
                    ..EnergySum::default()
                },
            ),
        ];
        let c = chart("PV", |s| s.pv_kwh, &slots);
        assert_eq!(c.total, "6.0 kWh");
        assert_eq!(c.bars[0].h, "120.0", "the largest fills the height");
        assert!(c.bars[1].gap && c.bars[1].label == "b: no data");
        assert!(
            !c.bars[2].gap && c.bars[2].h == "1.0",
            "0 is drawn, thin, not as a gap"
        );
        assert_eq!(c.bars[3].h, "60.0");
        let none = chart("PV", |s| s.pv_kwh, &slots[1..2]);
        assert_eq!(none.total, "no data");
    }
}
